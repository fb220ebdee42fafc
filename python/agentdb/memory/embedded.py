"""The agent memory users import: ``db = agentdb.open("memory.db")``.

Patterns (the ReasoningBank), Reflexion episodes and skills live in one SQLite file (the
system of record); each collection has an HNSW index saved beside it
(``memory.db.patterns.hnsw``, ...). On open, a missing, corrupt or stale index is detected and
brought up to date from SQLite (only the changes since it was saved, or a full rebuild).

>>> import agentdb
>>> db = agentdb.open(":memory:", dim=64)
>>> pid = db.store_pattern("parse ISO dates in logs", reward=0.9, success=True)
>>> hits = db.search_patterns("parse dates from log lines", k=1)
>>> hits[0].id == pid
True
>>> db.close()
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..embedders import Embedder, check_embedder, embedder_identity, get_embedder, recorded_embedder
from ..engines.diversity import check_diversity, diversity_candidates, mmr
from ..engines.fusion import check_mode, check_text_weight, hybrid_max_df, rrf, text_max_df
from ..engines.loader import backend
from ..errors import (
    ConflictError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
    StoreClosedError,
    StoreError,
)
from ..learning.learner import Learner
from ..storage import SQLiteStore
from ..storage.events import EventBus
from ..storage.filters import where_sql
from ..storage.records import SearchResult, Skill, check_metadata, check_reward
from .collections import Collections
from .core import MemoryCore
from .forgetting import Forgetter, expiry
from .locations import (
    existing_pg_meta,
    existing_sqlite_meta,
    path_table_prefix,
)
from .namespaces import DEFAULT, listed, register
from .validation import (
    KIND,
    as_id,
    check_ef,
    check_k_threshold,
    check_rate,
    check_text,
    opt_id,
    opt_time,
    rerank_candidates,
    reward_prior,
    stored_vectors,
    to_record,
)

__all__ = ["AgentDB", "MemoryCore", "open"]


#: Up to this many expired, not yet forgotten records, an unfiltered search asks the index
#: for that many more hits and drops them; past it they become a filter.
_OVERFETCH_EXPIRED = 64

class AgentDB(MemoryCore):
    """Agent memory on SQLite + a native HNSW index per collection. Use :func:`open`.

    >>> db = AgentDB(":memory:", dim=32)
    >>> db.stats()["patterns"]
    0
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        dim: int | None = None,
        embedder: Embedder | str | None = None,
        readonly: bool = False,
        durability: str = "full",
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        threads: int = 0,
        precision: str = "mixed",
        progress: bool | None = None,
        backend: str | None = None,
        url: str | None = None,
        schema: str = "public",
        table_prefix: str = "",
        search: str | None = None,
        mirror: str | None = None,
        mirror_schema: str = "public",
        mirror_prefix: str = "",
        learning: bool | dict[str, Any] | None = None,
        forget_every: float | None = None,
    ) -> None:
        if backend is None and str(path).startswith(("postgresql://", "postgres://")):
            backend = "postgres"  # agentdb.open("postgresql://...")
        kind = backend if backend is not None else os.environ.get("AGENTDB_BACKEND", "sqlite")
        kind = (kind or "sqlite").strip().lower()
        if kind not in ("sqlite", "postgres"):
            raise InvalidArgumentError(f"backend must be 'sqlite' or 'postgres', got {kind!r}")
        if kind == "postgres":
            from_env = backend is None and url is None and not str(path).startswith(
                ("postgresql://", "postgres://"))
            if from_env:
                # AGENTDB_BACKEND=postgres: code written for files runs unchanged; each file
                # path gets its own tables (a prefix derived from the path) in the schema
                # $AGENTDB_POSTGRES_SCHEMA (default public), so two paths are two stores
                schema = os.environ.get("AGENTDB_POSTGRES_SCHEMA", schema) or schema
                if not table_prefix:
                    table_prefix = path_table_prefix(path)
            url = url or os.environ.get("AGENTDB_POSTGRES_URL") or (
                str(path) if str(path).startswith(("postgresql://", "postgres://")) else None)
            if not url:
                raise InvalidArgumentError(
                    "backend='postgres' needs url=... or AGENTDB_POSTGRES_URL")
            search = search or "pgvector"
            if search not in ("pgvector", "native"):
                raise InvalidArgumentError(f"search must be 'pgvector' or 'native', got {search!r}")
            if mirror is not None:
                raise InvalidArgumentError(
                    "mirror= applies to the SQLite backend (PostgreSQL is already "
                    "the system of record)")
        elif search not in (None, "native"):
            raise InvalidArgumentError("search='pgvector' needs backend='postgres'")
        self.backend_name = kind
        self.search_mode = search or "native"
        self._mirror: Any = None
        from ..storage.mirror import redact_url

        self.path = redact_url(url) if kind == "postgres" and url else str(path)
        self._progress = progress
        #: this handle's namespace ("default": the store's own tables; see namespace())
        self.namespace_name = DEFAULT
        self._children: dict[str, AgentDB] = {}
        self._ns_lock = threading.Lock()
        self._ns_args: dict[str, Any] = dict(
            readonly=readonly, durability=durability, M=M, ef_construction=ef_construction,
            ef_search=ef_search, threads=threads, precision=precision, progress=progress,
            backend=kind, url=url, schema=schema, search=search, learning=learning,
            forget_every=forget_every)
        self._ns_salt = table_prefix
        self._lock = threading.RLock()
        self._follow_lock = threading.Lock()
        self._events = EventBus()
        self._closed = False
        self._graph: Any = None
        self._attention: Any = None
        if precision not in ("mixed", "f32", "int8"):
            raise InvalidArgumentError(
                f"precision must be 'mixed', 'f32' or 'int8', got {precision!r}")
        self._index_params = {"M": M, "ef_construction": ef_construction,
                              "ef_search": ef_search, "threads": threads,
                              "precision": precision}
        def existing(key: str) -> str | None:
            return (existing_pg_meta(url, schema, table_prefix, key) if kind == "postgres"
                    else existing_sqlite_meta(self.path, key))

        existing_dim = int(existing("dim") or 0) or None
        recorded = existing("embedder") if existing_dim else None
        if embedder is None and recorded:  # reopen with the embedder the store was built with
            embedder = recorded_embedder(recorded)
        if dim is None:
            dim = existing_dim or (getattr(embedder, "dim", None) if embedder is not None
                                   and not isinstance(embedder, str) else None) or 384
        if existing_dim and existing_dim != dim:
            raise InvalidArgumentError(
                f"dimension mismatch: '{self.path}' stores dim {existing_dim}, "
                f"opened with dim {dim}")
        self.dim = int(dim)
        self.embedder = get_embedder(embedder, self.dim)
        if self.embedder.dim != self.dim:
            raise InvalidArgumentError(f"dimension mismatch: embedder has dim {self.embedder.dim}, "
                                       f"store has dim {self.dim}")
        identity = check_embedder(recorded, self.embedder, self.path)
        if kind == "postgres":
            from ..storage.postgres import PostgresStore

            self.store: Any = PostgresStore(url, self.dim, schema=schema,
                                            table_prefix=table_prefix, readonly=readonly)
        else:
            self.store = SQLiteStore(self.path, self.dim, readonly=readonly,
                                     durability=durability)
        self.readonly = readonly
        try:
            self._collections = Collections(
                self.store, self.dim, self.path, postgres=kind == "postgres",
                search_mode=self.search_mode, index_params=self._index_params,
                progress=progress)
            self._cols = self._collections.cols
            self.index_status = self._collections.status
            self.learning = Learner.attach(self.store, self.dim, learning, readonly)
            if existing_dim is None and not readonly and self.store.meta("embedder") is None:
                # a new store remembers its embedder (older stores have no record: any
                # embedder of the right dimension opens them, as before)
                self.store.set_meta("embedder", json.dumps(identity, sort_keys=True))
            if mirror is not None:
                if readonly:
                    raise InvalidArgumentError("a read-only store cannot feed a mirror")
                from ..storage.mirror import Mirror

                self._mirror = Mirror(self.store, mirror, schema=mirror_schema,
                                      table_prefix=mirror_prefix)
        except BaseException:
            self.store.close()
            raise
        self._forgetter: Forgetter | None = None
        if forget_every is not None:
            if readonly:
                self.store.close()
                raise InvalidArgumentError("forget_every needs a writable store")
            self._forgetter = Forgetter(self, forget_every)
        if not self.store.memory and not readonly:
            ref = weakref.ref(self)
            atexit.register(lambda: (db := ref()) is not None and db.close())

    # ---- lifecycle --------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Save every index file that changed, and the causal graph's snapshot if it changed,
        so the next open needs no catch-up.

        >>> AgentDB(":memory:", dim=8).checkpoint()
        """
        if not self.readonly:
            self.learning.save()  # the query adapter's state, if it changed
        with self._ns_lock:
            children = list(self._children.values())
        for child in children:
            child.checkpoint()
        if self.store.memory or self.readonly or self.backend_name == "postgres":
            return  # PostgreSQL: pgvector persists itself; a native index is rebuilt on open
        with self._lock:
            self._collections.save()
            if self._graph is not None:
                self._graph.save_snapshot()  # the graph's CSR, edge columns and indexes

    def backup(self, dest: str | os.PathLike[str]) -> dict[str, Any]:
        """A consistent copy of this store at ``dest`` while it stays in use: SQLite's online
        backup of the rows (writers go on meanwhile), and the index files and graph snapshot
        that belong to exactly those rows (hard links where possible); a file that does not
        is left out and rebuilt when the copy opens (:mod:`agentdb.memory.backup`). Call
        :meth:`checkpoint` first to carry fresh index files. Returns ``path``,
        ``generation``, ``records`` (counts per table), ``files`` and ``rebuilt_on_open``.

        >>> import os, tempfile
        >>> db = AgentDB(os.path.join(tempfile.mkdtemp(), "m.db"), dim=8)
        >>> db.backup(db.path + ".bak")["records"]["patterns"]
        0
        """
        self._check_open()
        if self.backend_name == "postgres":
            raise StoreError("db.backup copies an embedded store; back PostgreSQL up with "
                             "pg_dump (docs/migration.md)")
        from .backup import backup_store

        info = backup_store(self.store, dest, files_lock=self._lock)
        registry = json.loads(self.store.meta("namespaces") or "{}")
        if registry and self.namespace_name == DEFAULT:  # each namespace beside it
            folder = os.fspath(dest) + ".ns"
            os.makedirs(folder, exist_ok=True)
            info["namespaces"] = {
                name: self.namespace(name).backup(os.path.join(folder, stem + ".db"))["records"]
                for name, stem in sorted(registry.items())}
        return info

    def close(self) -> None:
        """Save changed indexes and close the store (idempotent).

        >>> db = AgentDB(":memory:", dim=8); db.close(); db.close()
        """
        if self._closed:
            return
        if self._forgetter is not None:
            self._forgetter.stop()
        with self._ns_lock:
            children, self._children = list(self._children.values()), {}
        for child in children:
            child.close()
        try:
            self.checkpoint()
            if self._mirror is not None:
                self._mirror.close()
        finally:
            self._closed = True
            self.store.close()

    def follow(self) -> int:
        """Bring a read-only handle up to date with what the store's writer (another
        process) committed since this handle opened or last followed: indexes and filter
        columns (so searches see the new, changed and deleted records; a newly saved index
        file is mapped again), and the causal graph, which is re-read on its next use.
        Cheap when nothing changed (one read of the store's generation). Returns the
        generation this handle now reflects. A writable, in-memory or PostgreSQL handle
        has nothing to follow and returns its own generation. ``agentdb serve --workers``
        calls it before every search a read worker answers.

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "m.db")
        >>> writer = AgentDB(path, dim=8)
        >>> reader = AgentDB(path, dim=8, readonly=True)
        >>> pid = writer.store_pattern("new", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
        >>> _ = reader.follow()
        >>> reader.search_hits([1, 0, 0, 0, 0, 0, 0, 0], 1)[0]["id"] == pid
        True
        """
        self._check_open()
        if not self.readonly or self.store.memory or self.backend_name == "postgres":
            return int(self.store.generation)
        gen = int(self.store.meta("generation") or 0)
        if gen == self.store.generation:
            return gen
        with self._follow_lock:
            since = int(self.store.generation)
            gen = int(self.store.meta("generation") or 0)  # read before the rows: a commit
            if gen == since:                                # after it is caught next time
                return gen
            with self._lock:
                self._collections.follow(since)
                self._graph = None
                self.store.generation = gen
        return gen

    # ---- namespaces ---------------------------------------------------------------------------
    def namespace(self, name: str) -> AgentDB:
        """The handle of namespace ``name`` of this store, created on first use (a read-only
        store: ``NotFoundError`` for one it does not hold). It has this handle's whole API
        over records, graph, events and learning of its own (:mod:`agentdb.memory.namespaces`);
        ``"default"`` is this store itself. Handles stay open until this one closes.

        >>> db = AgentDB(":memory:", dim=8)
        >>> alice = db.namespace("alice")
        >>> _ = alice.store_pattern("alice's note")
        >>> alice.count(), db.count(), db.namespaces()
        (1, 0, ['alice', 'default'])
        """
        self._check_open()
        with self._ns_lock:
            stem = register(self.store, name, self._ns_salt, self.namespace_name,
                            self.readonly)
            if stem is None:
                return self
            child = self._children.get(name)
            if child is not None and not child.closed:
                return child
            args = dict(self._ns_args, dim=self.dim, embedder=self.embedder)
            if args["backend"] == "postgres":
                child = AgentDB(self.path, table_prefix=stem + "_", **args)
            elif self.store.memory:
                child = AgentDB(":memory:", **args)
            else:
                folder = self.path + ".ns"
                if not self.readonly:
                    os.makedirs(folder, exist_ok=True)
                child = AgentDB(os.path.join(folder, stem + ".db"), **args)
            child.namespace_name = name
            child._events.namespace = name
            self._children[name] = child
            return child

    def namespaces(self) -> list[str]:
        """The namespaces this store holds, ``"default"`` included, sorted.

        >>> AgentDB(":memory:", dim=8).namespaces()
        ['default']
        """
        self._check_open()
        return listed(self.store)

    # ---- PostgreSQL mirror ------------------------------------------------------------------
    def mirror_status(self) -> dict[str, Any]:
        """Health and lag of the PostgreSQL mirror (``open(..., mirror=url)``): ``pending``
        writes not yet copied, ``lag_seconds`` (age of the oldest), ``connected``,
        ``last_error``, ``acked_seq`` / ``last_seq``, ``applied``, ``last_sync``.

        >>> AgentDB(":memory:", dim=8).mirror_status()
        {'enabled': False}
        """
        self._check_open()
        if self._mirror is None:
            return {"enabled": False}
        return {"enabled": True, **self._mirror.status()}

    def mirror_flush(self, timeout: float = 30.0) -> bool:
        """Block until every committed write is in PostgreSQL (False after ``timeout`` s)."""
        self._check_open()
        if self._mirror is None:
            raise InvalidArgumentError(
                "this store has no mirror (open it with mirror='postgresql://...')")
        return bool(self._mirror.flush(timeout))

    @property
    def write_lock(self) -> threading.RLock:
        """The lock every write of this handle holds. Hold it too to make a read-check-write
        sequence atomic against the other threads of this process (re-entrant).

        >>> db = open(":memory:", dim=8)
        >>> with db.write_lock:
        ...     pid = db.store_pattern("t", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
        """
        return self._lock

    def search_hits(self, vector: Any, k: int = 5, *, ef: int | None = None,
                    min_reward: float | None = None, success_only: bool = False,
                    session_id: str | None = None, where: dict[str, Any] | None = None,
                    threshold: float | None = None, diversity: float | None = None,
                    candidates: int | None = None) -> list[dict[str, Any]]:
        """The cheapest pattern search: ``{"id", "similarity", "distance", "metadata"}`` per
        hit, best first. Same filters, order and answer as :meth:`search_patterns` with
        ``adapt=False``, but the metadata comes from the in-memory filter columns (kept
        current by every write) instead of a read of the records. The HTTP server's
        ``/vectors/search`` runs on it. A pgvector store answers through
        :meth:`search_patterns`. ``diversity`` / ``candidates`` as in :meth:`search_patterns`.

        >>> db = open(":memory:", dim=8)
        >>> pid = db.store_pattern("t", embedding=[1, 0, 0, 0, 0, 0, 0, 0], metadata={"a": 1})
        >>> db.search_hits([1, 0.1, 0, 0, 0, 0, 0, 0], 1, where={"a": 1})[0]["metadata"]
        {'a': 1}
        """
        col = self._cols["patterns"] if not self._closed else None
        if col is None or col.attrs is None:
            return [{"id": h.id, "similarity": h.similarity, "distance": h.distance,
                     "metadata": h.record.metadata} for h in self.search_patterns(
                vector, k, min_reward=min_reward, success_only=success_only,
                session_id=session_id, where=where, threshold=threshold, ef=ef, adapt=False,
                diversity=diversity, candidates=candidates)]
        threshold = check_k_threshold(k, threshold)
        ef = check_ef(ef)
        diversity = check_diversity(diversity)
        allowed = self._allowed("patterns", min_reward, True if success_only else None,
                                session_id, where)
        q = self.query_vector(vector)
        index = col.index
        n = len(index)
        if n == 0 or (allowed is not None and allowed.size == 0):
            return []
        if diversity is None:
            ids, dists = self._index_search("patterns", q, min(int(k), n), ef, allowed)
        else:  # MMR over a wider candidate set (engines.diversity)
            m = min(diversity_candidates(k, candidates), n)
            ids, dists = self._index_search("patterns", q, m,
                                            None if ef is None else max(int(ef), m), allowed)
            pick = self._diverse_pick("patterns", q, ids.tolist(), k, diversity)
            ids, dists = ids[pick], dists[pick]
        return _hit_dicts(col.attrs, [ids.tolist()], [dists.tolist()], threshold)[0]

    def search_hits_many(self, vectors: Any, k: int = 5, *, ef: int | None = None,
                         threshold: float | None = None) -> list[list[dict[str, Any]]]:
        """:meth:`search_hits` for each row of ``vectors`` (no filters), as one batch search
        of the index: the same answers, for less per query when many come at once (the HTTP
        server combines concurrent ``/vectors/search`` requests through it).

        >>> db = open(":memory:", dim=8)
        >>> a = db.store_pattern("a", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
        >>> b = db.store_pattern("b", embedding=[0, 1, 0, 0, 0, 0, 0, 0])
        >>> [[h["id"] for h in hits] for hits in db.search_hits_many(
        ...     [[1, 0.1, 0, 0, 0, 0, 0, 0], [0.1, 1, 0, 0, 0, 0, 0, 0]], 1)]
        [[1], [2]]
        """
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InvalidArgumentError(f"vectors must be 2-D with {self.dim} columns (one query "
                                       f"per row), got shape {arr.shape}")
        threshold = check_k_threshold(k, threshold)
        ef = check_ef(ef)
        col = self._cols["patterns"] if not self._closed else None
        if (col is None or col.attrs is None or len(arr) < 2
                or len(col.attrs.expired_ids(time.time()))):
            # pgvector, a closed store (its error), one query, or expired records to skip
            return [self.search_hits(v, k, ef=ef, threshold=threshold) for v in arr]
        qs = np.stack([self.query_vector(v) for v in arr])
        n = len(col.index)
        if n == 0:
            return [[] for _ in arr]
        ids, dists = col.index.search(qs, k=min(int(k), n), ef=ef)
        return _hit_dicts(col.attrs, ids.tolist(), dists.tolist(), threshold)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"AgentDB '{self.path}' is closed")

    # ---- causal graph ---------------------------------------------------------------------------
    @property
    def graph(self) -> Any:
        """The causal memory hypergraph of this store
        (:class:`agentdb.graph.causal.CausalMemoryGraph`),
        loaded on first use.

        >>> db = AgentDB(":memory:", dim=8)
        >>> db.graph.stats()["nodes"]
        0
        """
        self._check_open()
        if self._graph is None:
            from ..graph.causal import CausalMemoryGraph

            with self._lock:
                if self._graph is None:
                    self._graph = CausalMemoryGraph(self.store, self._events)
        return self._graph

    # ---- helpers ----------------------------------------------------------------------------
    def _write_rows(self, name: str,
                    rows: list[tuple[dict[str, Any], np.ndarray, int | None, float | None]],
                    extra: Callable[[Any], None] | None = None) -> list[int]:
        """Insert validated rows in one transaction and index them; all or nothing."""
        self._check_open()
        col = self._cols[name]
        with self._lock:
            added: list[int] = []
            try:
                with self.store.write() as w:
                    added = self._insert_rows(w, name, rows)
                    if extra is not None:
                        extra(w)
                    col.index.add(np.asarray(added, np.int64), np.stack([r[1] for r in rows]))
            except BaseException:
                present = [i for i in added if col.index.contains(i)]
                if present:
                    col.index.remove(present)
                raise
            col.changed_gen = self.store.generation
            if col.attrs is not None:
                for (values, _, _, _), rid in zip(rows, added):
                    if name == "skills":
                        col.attrs.set(rid, values["success_rate"], False, None,
                                      json.loads(values["metadata"]), values.get("expires_at"))
                    else:
                        col.attrs.set(rid, values["reward"], bool(values["success"]),
                                      values.get("session_id"), json.loads(values["metadata"]),
                                      values.get("expires_at"))
        return added

    def _insert_rows(self, w: Any, name: str,
                     rows: list[tuple[dict[str, Any], np.ndarray, int | None, float | None]]
                     ) -> list[int]:
        """Insert rows inside transaction ``w``: one binary COPY on PostgreSQL for a batch
        without explicit ids, else row by row (duplicates become a ValueError)."""
        bulk = getattr(self.store, "bulk_insert", None)
        if bulk is not None and len(rows) > 1 and all(r[2] is None for r in rows):
            batch = [dict(values, **({} if created is None else {"created_at": created}))
                     for values, _v, _r, created in rows]
            try:
                return list(bulk(w, name, batch, np.stack([r[1] for r in rows])))
            except Exception as exc:
                if "UNIQUE" in str(exc) and name == "skills":
                    raise ConflictError(f"a skill with one of these names already exists ({exc})"
                                        ) from None
                raise
        added: list[int] = []
        for values, vec, rid, created in rows:
            try:
                added.append(self.store.insert(w, name, values, vec, row_id=rid,
                                               created_at=created))
            except Exception as exc:
                msg = str(exc)
                if "UNIQUE" in msg or "PRIMARY KEY" in msg or "duplicate key" in msg:
                    what = (f"name {values.get('name')!r}" if name == "skills"
                            and values.get("name") else f"id {rid}")
                    raise ConflictError(f"{KIND[name]} with {what} already exists") from None
                raise
        return added

    def _get(self, name: str, rid: int) -> Any:
        self._check_open()
        rid = as_id(rid)
        rows = self.store.get(name, [rid])
        if rid not in rows:
            raise NotFoundError(f"unknown {KIND[name]} id {rid}")
        return to_record(name, rows[rid])

    def _delete(self, name: str, rid: int) -> None:
        self._check_open()
        rid = as_id(rid)
        col = self._cols[name]
        with self._lock:
            if not self.store.existing(name, [rid]):
                raise NotFoundError(f"unknown {KIND[name]} id {rid}")
            with self.store.write() as w:
                self.store.delete(w, name, [rid])
            col.index.remove([rid])
            col.changed_gen = self.store.generation
            if col.attrs is not None:
                col.attrs.remove(rid)
        self._events.emit(f"{KIND[name]}:deleted", {"id": rid})

    def _delete_many(self, name: str, ids: list[int], reason: str | None = None) -> None:
        """Delete records in one transaction (ids that vanished meanwhile are skipped); the
        events carry ``reason`` when given."""
        self._check_open()
        col = self._cols[name]
        with self._lock:
            ids = sorted(self.store.existing(name, ids))
            if not ids:
                return
            with self.store.write() as w:
                self.store.delete(w, name, ids)
            col.index.remove(ids)
            col.changed_gen = self.store.generation
            if col.attrs is not None:
                for rid in ids:
                    col.attrs.remove(rid)
        extra = {} if reason is None else {"reason": reason}
        for rid in ids:
            self._events.emit(f"{KIND[name]}:deleted", {"id": rid, **extra})

    def _dedupe_guard(self) -> threading.RLock:
        return self._lock

    def _update(self, name: str, rid: int, values: dict[str, Any],
                vec: np.ndarray | None) -> Any:
        self._check_open()
        col = self._cols[name]
        with self._lock:
            old_vec = col.index.get_vector(rid) if vec is not None else None
            try:
                with self.store.write() as w:
                    self.store.update(w, name, rid, values, vec)
                    if vec is not None:
                        col.index.add([rid], vec)
            except BaseException:
                if old_vec is not None:
                    col.index.add([rid], old_vec)
                raise
            col.changed_gen = self.store.generation
            rec = self._get(name, rid)
            self._refresh_columns(name, rec)
        self._events.emit(f"{KIND[name]}:updated", rec.to_dict())
        return rec

    def _refresh_columns(self, name: str, rec: Any) -> None:
        attrs = self._cols[name].attrs
        if attrs is None:
            return
        if name == "skills":
            attrs.set(rec.id, rec.success_rate, False, None, rec.metadata, rec.expires_at)
        else:
            attrs.set(rec.id, rec.reward, rec.success, rec.session_id, rec.metadata,
                      rec.expires_at)

    def _search(self, name: str, query: str | Any, k: int, allowed: np.ndarray | None,
                threshold: float | None, ef: int | None, adapt: bool = False,
                diversity: float | None = None, candidates: int | None = None,
                mode: str = "vector", text_weight: float = 0.5,
                text_filters: dict[str, Any] | None = None) -> list[SearchResult]:
        self._check_open()
        threshold = check_k_threshold(k, threshold)
        ef = check_ef(ef)
        diversity = check_diversity(diversity)
        mode = check_mode(mode, query)
        if mode != "vector" and diversity is not None:
            raise InvalidArgumentError("diversity applies to vector searches, not mode="
                                       f"{mode!r}")
        q = self.query_vector(query)
        if adapt and self.learning.active:
            q = self.learning.apply(q)
            if ef is None:  # off-distribution queries need a wider beam (LearningConfig)
                ef = max(int(k), math.ceil(self.learning.config.ef_factor
                                           * (self._index_params["ef_search"] or 64)))
        if mode != "vector":
            return self._text_search(name, str(query), q, k, allowed, threshold, ef, mode,
                                     text_weight, candidates, text_filters or {})
        if diversity is None:
            return self._results(name, self._hits(name, q, k, allowed, threshold, ef))
        n = diversity_candidates(k, candidates)
        hits = self._hits(name, q, n, allowed, threshold,
                          None if ef is None else max(int(ef), n))
        pick = self._diverse_pick(name, q, [i for i, _ in hits], k, diversity)
        return self._results(name, [hits[j] for j in pick])

    def _live_vectors(self, name: str, ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
        """The positions in ``ids`` of the records still stored (others were deleted
        meanwhile) and their vectors."""
        col = self._cols[name]
        pos = [j for j, i in enumerate(ids) if i >= 0
               and (col.attrs is None or col.index.contains(int(i)))]
        if not pos:
            return [], np.zeros((0, self.dim), np.float32)
        return pos, self._vectors(name, [int(ids[j]) for j in pos])

    def _diverse_pick(self, name: str, q: np.ndarray, ids: Sequence[int], k: int,
                      diversity: float) -> list[int]:
        """Positions in ``ids`` of the ``k`` picked by MMR (:mod:`agentdb.engines.diversity`),
        in pick order."""
        pos, vecs = self._live_vectors(name, ids)
        return [pos[j] for j in mmr(q, vecs, k, diversity)]

    def _text_search(self, name: str, text: str, q: np.ndarray, k: int, allowed: Any,
                     threshold: float | None, ef: int | None, mode: str, text_weight: float,
                     candidates: int | None, filters: dict[str, Any]) -> list[SearchResult]:
        """``mode="text"``: the full-text index's BM25 order; ``"hybrid"``: that and the
        HNSW order over ``candidates`` each, fused by reciprocal rank
        (:func:`agentdb.engines.fusion.rrf`, ``text_weight`` for the text side; the text
        side uses the query's selective terms, :func:`~agentdb.engines.fusion.hybrid_max_df`).
        Each hit's
        ``score`` is its BM25 or fused score; ``similarity`` stays the cosine to the query."""
        w = check_text_weight(text_weight)
        n = diversity_candidates(k, candidates)
        col = self._cols[name]
        rows = len(col.index) if col.attrs is not None else self.store.approx_count(name)
        filters = {**filters, **({"max_df": hybrid_max_df(rows)} if mode == "hybrid" else
                                 {"max_df": text_max_df(rows), "keep_common": True})}
        found = self.store.text_search(name, text, k if mode == "text" else n, **filters)
        if mode == "text":
            ranked = found[:k]
        else:
            vec = self._hits(name, q, n, allowed, None, None if ef is None else max(int(ef), n))
            ranked = rrf([[i for i, _ in found], [i for i, _ in vec]], [w, 1.0 - w])[:k]
        dist = self._distances(name, q, [i for i, _ in ranked])
        hits, scores = [], []
        for i, score in ranked:
            d = dist.get(i)
            if d is None or (threshold is not None and 1.0 - d < threshold):
                continue  # deleted meanwhile, or below the threshold
            hits.append((i, d))
            scores.append(score)
        return self._results(name, hits, scores)

    def _distances(self, name: str, q: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosine distance of the query to each stored id (ids gone meanwhile are absent)."""
        pos, vecs = self._live_vectors(name, ids)
        if not pos:
            return {}
        ids = [ids[j] for j in pos]
        qn = q / max(float(np.linalg.norm(q)), 1e-30)
        vn = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-30)
        return {int(i): float(1.0 - c) for i, c in zip(ids, vn @ qn)}

    def _hits(self, name: str, q: np.ndarray, k: int, allowed: Any, threshold: float | None,
              ef: int | None) -> list[tuple[int, float]]:
        """``(id, cosine distance)`` of the index search, best first, over ``threshold``."""
        col = self._cols[name]
        if isinstance(allowed, dict):  # pgvector: the filters become the query's WHERE clause
            if threshold is not None:
                allowed["max_distance"] = 1.0 - threshold
            ids, dists = col.index.search(q, k=int(k), ef=ef, filters=allowed)
        else:
            if len(col.index) == 0 or (allowed is not None and allowed.size == 0):
                return []
            k = min(int(k), len(col.index))  # never allocate more than there is to return
            ids, dists = self._index_search(name, q, k, ef, allowed)
        hits = [(int(i), float(d)) for i, d in zip(ids, dists) if i >= 0]
        if threshold is not None:
            hits = [(i, d) for i, d in hits if 1.0 - d >= threshold]
        return hits

    def _index_search(self, name: str, q: np.ndarray, k: int, ef: int | None,
                      allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The native index's search, leaving out expired records: through ``allowed`` (the
        in-memory columns leave them out of every filter), or, unfiltered, by searching past
        the few expired ones and dropping them (cheaper than an all-ids filter; many of
        them, until ``forget()`` runs, make it a filter)."""
        index = self._cols[name].index
        attrs = self._cols[name].attrs
        gone = attrs.expired_ids(time.time()) if allowed is None and attrs is not None else ()
        if len(gone):  # one look at the (cached) expired set per search
            if len(gone) > _OVERFETCH_EXPIRED:
                allowed = attrs.select(None, None, None, None)
            else:
                kk = min(k + len(gone), len(index))
                ids, dists = index.search(q, k=kk, ef=ef)
                out = set(gone.tolist())  # a few: cheaper than np.isin
                keep = [j for j, i in enumerate(ids.tolist()) if i not in out][:k]
                return ids[keep], dists[keep]
        return index.search(q, k=k, ef=ef, allowed=allowed)

    def _results(self, name: str, hits: list[tuple[int, float]],
                 scores: Sequence[float] | None = None) -> list[SearchResult]:
        """The hits with their records (one read); hits deleted meanwhile are dropped."""
        rows = self.store.get(name, [i for i, _ in hits], with_embedding=False)
        sc = [None] * len(hits) if scores is None else [float(x) for x in scores]
        return [SearchResult(i, 1.0 - d, d, to_record(name, rows[i]), s)
                for (i, d), s in zip(hits, sc) if i in rows]

    def _allowed(self, name: str, min_reward: float | None, success: bool | None,
                 session_id: str | None, where: dict[str, Any] | None) -> np.ndarray | None:
        """Sorted ids passing the filters (from in-memory columns), or None for no filter
        (expired records are left out: by the in-memory columns, or in SQL for pgvector)."""
        if min_reward is None and success is None and session_id is None and not where:
            # no filter (expired records are left out by _index_search)
            return {} if self._cols[name].attrs is None else None
        if where:
            where_sql(where)  # validates keys and operators with the documented errors
        if min_reward is not None:
            min_reward = check_reward(min_reward, "min_reward")
        if success is not None and not isinstance(success, (bool, np.bool_)):
            raise InvalidTypeError(f"success must be True, False or None, got {success!r}")
        if session_id is not None and not isinstance(session_id, str):
            raise InvalidTypeError(f"session_id must be a string, got {type(session_id).__name__}")
        attrs = self._cols[name].attrs
        if attrs is None:  # pgvector search: pushed into SQL
            return {"min_reward": min_reward, "success": None if success is None else bool(success),
                    "session_id": session_id, "where": where or None}
        return attrs.select(min_reward, success, session_id, where or None)

    # ---- patterns ---------------------------------------------------------------------------
    def store_pattern(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, metadata: dict[str, Any] | None = None,
                      id: int | None = None, ttl: Any = None, expires_at: Any = None,
                      dedupe: float | None = None) -> int:
        """Store a reasoning pattern; returns its id. The task text is embedded unless an
        ``embedding`` is given. ``reward`` must be in [-1, 1].

        ``ttl`` (seconds or a ``timedelta``) or ``expires_at`` (epoch seconds or a
        ``datetime``): the pattern is invisible from then on and removed by
        :meth:`forget`. ``dedupe=0.95``: when a stored pattern is at least that similar
        (cosine), it absorbs this one instead (one more ``uses``, the reward their running
        mean; see :meth:`_merge_duplicate`) and its id comes back, with a
        ``pattern:updated`` event.

        >>> db = AgentDB(":memory:", dim=16)
        >>> db.store_pattern("cache API responses", reward=0.8, success=True) >= 1
        True
        >>> a = db.store_pattern("retry", reward=1.0); b = db.store_pattern("retry", dedupe=0.95)
        >>> a == b, db.get_pattern(a).uses, db.get_pattern(a).reward
        (True, 2, 0.5)
        """
        values, vec = self._pattern_row(task, embedding, reward, success, session_id, input,
                                        output, critique, metadata, expiry(ttl, expires_at))
        if dedupe is not None:
            if id is not None:
                raise InvalidArgumentError("dedupe and an explicit id do not combine")
            with self._dedupe_guard():
                merged = self._merge_duplicate(values, vec, dedupe)
                if merged is not None:
                    return merged
                rid = self._write_rows("patterns", [(values, vec, None, None)])[0]
        else:
            rid = self._write_rows("patterns", [(values, vec, opt_id(id), None)])[0]
        self._emit_rows("patterns", [rid])
        return rid

    def store_patterns(self, patterns: Iterable[dict[str, Any]]) -> list[int]:
        """Store many patterns in one transaction (all or nothing); returns their ids.

        Each item is a dict of :meth:`store_pattern`'s arguments. Texts without an embedding
        are embedded in one batch.

        >>> db = AgentDB(":memory:", dim=16)
        >>> len(db.store_patterns([{"task": "a"}, {"task": "b", "reward": 0.5}]))
        2
        """
        rows = self._pattern_rows(patterns)
        if not rows:
            return []
        ids = self._write_rows("patterns", rows)
        self._emit_rows("patterns", ids)
        return ids

    def search_patterns(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success_only: bool = False,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        adapt: bool = True, rerank: str | None = None,
                        candidates: int | None = None, heads: int = 1,
                        temperature: float = 0.05, diversity: float | None = None,
                        mode: str = "vector", text_weight: float = 0.5
                        ) -> list[SearchResult]:
        """The ``k`` most similar patterns that pass every filter, best first.

        Filters run inside the index search, so ``k`` results come back whenever ``k``
        patterns match. ``threshold`` drops hits with cosine similarity below it.
        When learning is active (``db.learning``, see :meth:`feedback`) the query goes
        through the learned adapter first and similarities are to the adapted query;
        ``adapt=False`` searches with the raw query.

        ``rerank="attention"``: fetch ``candidates`` hits (default ``max(4k, 20)``) and
        order them by :meth:`agentdb.engines.attention.AttentionService.rerank` -- the
        head-averaged multi-head attention of the query over their stored vectors
        (``heads`` column slices, softmax ``temperature``), computed exactly on the
        vectors, so ``heads=1`` is exact cosine order over a wider HNSW candidate set.
        ``rerank="attention+reward"`` multiplies the attention by the prior
        ``max(0.05, (1 + reward) / 2)``, so of two near-equal memories the one that worked
        comes first. Each hit's ``score`` holds its attention weight (summing to 1 over the
        candidates); ``similarity`` stays the cosine.

        ``diversity=d`` (0..1) picks the ``k`` hits from ``candidates`` (default
        ``max(4k, 20)``) by maximal marginal relevance (:mod:`agentdb.engines.diversity`):
        0 is plain similarity order, higher values skip near-duplicates of what was already
        picked. It does not combine with ``rerank``.

        ``mode="text"`` ranks by the full-text index instead (BM25 over task, input, output
        and critique; every word of the query is a term, identifiers stay whole), and
        ``mode="hybrid"`` fuses that ranking with the vector one by reciprocal rank over
        ``candidates`` hits each, ``text_weight`` (default 0.5) for the text side. Both need
        a text query; filters apply to both sides; ``score`` holds the BM25 or fused score.

        >>> db = AgentDB(":memory:", dim=32)
        >>> _ = db.store_pattern("sort a list", reward=0.9, success=True)
        >>> _ = db.store_pattern("sort a list badly", reward=0.1)
        >>> [r.record.reward for r in db.search_patterns("sort list", success_only=True)]
        [0.9]
        """
        allowed = self._allowed("patterns", min_reward, True if success_only else None,
                                session_id, where)
        if rerank is None:
            return self._search("patterns", task_or_vector, k, allowed, threshold, ef,
                                adapt=bool(adapt), diversity=diversity, candidates=candidates,
                                mode=mode, text_weight=text_weight, text_filters={
                                    "min_reward": min_reward, "session_id": session_id,
                                    "success": True if success_only else None,
                                    "where": where or None})
        if diversity is not None:
            raise InvalidArgumentError("diversity and rerank do not combine; pass one")
        if mode != "vector":
            raise InvalidArgumentError(f"rerank applies to vector searches, not mode={mode!r}")
        n = rerank_candidates(rerank, k, candidates)
        ef = check_ef(ef)
        q = self.query_vector(task_or_vector)
        if adapt and self.learning.active:
            q = self.learning.apply(q)
            if ef is None:
                ef = math.ceil(self.learning.config.ef_factor
                               * (self._index_params["ef_search"] or 64))
        self._check_open()
        hits = self._hits("patterns", q, int(n), allowed, threshold,
                          None if ef is None else max(int(ef), int(n)))
        if not hits:
            return []
        vecs = self._pattern_vectors([i for i, _ in hits])
        prior = None
        if rerank == "attention+reward":
            prior = reward_prior(self._rewards("patterns", [i for i, _ in hits]))
        order, scores = self.attention.rerank(q, vecs, heads=heads, temperature=temperature,
                                              prior=prior)
        return self._results("patterns", [hits[j] for j in order[:k]], scores[:k])

    def _rewards(self, name: str, ids: Sequence[int]) -> np.ndarray:
        """Current rewards of records (the in-memory columns, else one store read)."""
        attrs = self._cols[name].attrs
        if attrs is not None:
            with attrs.lock:
                pos = [attrs.pos.get(i) for i in ids]
                if None not in pos:
                    return attrs.reward[np.asarray(pos, np.int64)].astype(np.float64)
        rows = self.store.get(name, list(ids), with_embedding=False)
        return np.array([float(rows[i]["reward"]) if i in rows else 0.0 for i in ids])

    # ---- learning from outcomes ---------------------------------------------------------------
    def _retrieve_ids(self, q: np.ndarray, n: int) -> np.ndarray:
        """Ids of the (at most) ``n`` patterns nearest to ``q``, unfiltered: what the
        current adapter retrieves, the negatives of a feedback event."""
        col = self._cols["patterns"]
        if col.attrs is None:  # pgvector search
            ids, _ = col.index.search(q, k=n, filters={})
        else:
            ids, _ = col.index.search(q, k=max(1, min(n, len(col.index))))
        return np.asarray(ids)

    def _pattern_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored embeddings of pattern ids, in order (``KeyError`` naming an unknown id)."""
        return self._vectors("patterns", ids)

    def _vectors(self, name: str, ids: Sequence[int]) -> np.ndarray:
        """Stored embeddings of a collection's ids, in order (``KeyError`` naming an unknown
        id): from the index, or the table on pgvector."""
        col = self._cols[name]
        if col.attrs is None:  # pgvector: the table is the only copy
            return stored_vectors(self.store, name, ids)
        for i in ids:
            if not col.index.contains(i):
                raise NotFoundError(f"unknown {name[:-1]} id {i}")
        return np.stack([col.index.get_vector(i) for i in ids])

    # ---- episodes ---------------------------------------------------------------------------
    def store_episodes(self, episodes: Iterable[dict[str, Any]], *,
                       update_skills: bool = True) -> list[int]:
        """Store many episodes in one transaction (all or nothing). With
        ``update_skills=False`` the named skills' statistics are left alone (imports).

        >>> db = AgentDB(":memory:", dim=16)
        >>> len(db.store_episodes([{"task": "a", "critique": "x"}]))
        1
        """
        rows, outcomes = self._episode_rows(episodes)
        if not rows:
            return []
        if not update_skills:
            outcomes = []
        names = {s for s, _ in outcomes}
        missing = sorted(n for n in names if self.store.find("skills", "name", n) is None)
        if missing:
            raise NotFoundError(f"unknown skill(s): {', '.join(missing)}")

        def record_skills(w: Any) -> None:
            now = time.time()
            for s, ok in outcomes:
                self.store.record_skill_outcome(w, s, ok, now)

        ids = self._write_rows("episodes", rows, extra=record_skills if outcomes else None)
        self._emit_rows("episodes", ids)
        for s in sorted(names):
            rec = self.get_skill(s)
            self._refresh_columns("skills", rec)
            self._events.emit("skill:updated", rec.to_dict())
        return ids

    def search_episodes(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success: bool | None = None,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        diversity: float | None = None, candidates: int | None = None,
                        mode: str = "vector", text_weight: float = 0.5
                        ) -> list[SearchResult]:
        """The ``k`` most similar episodes; ``success=False`` keeps only failures
        (``diversity`` / ``candidates`` / ``mode`` / ``text_weight`` as in
        :meth:`search_patterns`).

        >>> db = AgentDB(":memory:", dim=16)
        >>> _ = db.store_episode("deploy", success=False, critique="forgot migrations")
        >>> db.search_episodes("deploy", success=False)[0].record.critique
        'forgot migrations'
        """
        allowed = self._allowed("episodes", min_reward, success, session_id, where)
        return self._search("episodes", task_or_vector, k, allowed, threshold, ef,
                            diversity=diversity, candidates=candidates, mode=mode,
                            text_weight=text_weight, text_filters={
                                "min_reward": min_reward, "success": success,
                                "session_id": session_id, "where": where or None})

    # ---- skills -----------------------------------------------------------------------------
    def store_skill(self, name: str, description: str = "", *, signature: str | None = None,
                    code: str | None = None, success_rate: float = 0.0, uses: int = 0,
                    metadata: dict[str, Any] | None = None, embedding: Any = None,
                    id: int | None = None, created_at: float | None = None,
                    ttl: Any = None, expires_at: Any = None) -> int:
        """Store a skill (names are unique); embeds ``"name: description"`` by default.
        ``ttl`` / ``expires_at`` as in :meth:`store_pattern` (an expired skill's name is
        free again: the expired skills are forgotten first).

        >>> db = AgentDB(":memory:", dim=16)
        >>> db.store_skill("grep", "search files") >= 1
        True
        """
        check_text("name", name, required=True)
        check_text("description", description)
        check_text("signature", signature)
        check_text("code", code)
        rate = check_rate(success_rate)
        if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 0:
            raise InvalidArgumentError(f"uses must be an integer >= 0, got {uses!r}")
        values = {"name": name, "description": description or "", "signature": signature,
                  "code": code, "success_rate": rate, "uses": int(uses),
                  "metadata": check_metadata(metadata), "expires_at": expiry(ttl, expires_at)}
        vec = self._vector(embedding, f"{name}: {description or ''}")
        if not self.readonly and len(self.store.filter_ids("skills", expired=True)):
            self.forget("skills")
        rid = self._write_rows("skills",
                               [(values, vec, opt_id(id), opt_time(created_at))])[0]
        self._emit_rows("skills", [rid])
        return rid

    def get_skill(self, id_or_name: int | str) -> Skill:
        """A skill by id or name (``KeyError`` if unknown).

        >>> db = AgentDB(":memory:", dim=8); _ = db.store_skill("s")
        >>> db.get_skill("s").name
        's'
        """
        self._check_open()
        return self._get("skills", self._skill_id(id_or_name))

    def search_skills(self, query: str | Any, k: int = 5, *,
                      min_success_rate: float | None = None,
                      where: dict[str, Any] | None = None, threshold: float | None = None,
                      ef: int | None = None, diversity: float | None = None,
                      candidates: int | None = None, mode: str = "vector",
                      text_weight: float = 0.5) -> list[SearchResult]:
        """The ``k`` skills most similar to the query (``diversity`` / ``candidates`` /
        ``mode`` / ``text_weight`` as in :meth:`search_patterns`; the text index holds name,
        description and signature).

        >>> db = AgentDB(":memory:", dim=32)
        >>> _ = db.store_skill("http_retry", "retry HTTP calls with backoff")
        >>> db.search_skills("retry http")[0].record.name
        'http_retry'
        """
        allowed = None
        if min_success_rate is not None or where:
            if where:
                where_sql(where)  # validates keys and operators
            rate = None if min_success_rate is None else check_rate(min_success_rate)
            attrs = self._cols["skills"].attrs
            if attrs is None:  # pgvector search: the skills table's success_rate column
                allowed = {"min_reward": rate, "where": where or None}
            else:
                allowed = attrs.select(rate, None, None, where or None)
        elif self._cols["skills"].attrs is None:
            allowed = {}
        return self._search("skills", query, k, allowed, threshold, ef, diversity=diversity,
                            candidates=candidates, mode=mode, text_weight=text_weight,
                            text_filters={"min_reward": None if min_success_rate is None
                                          else check_rate(min_success_rate),
                                          "where": where or None})

    # ---- bulk, stats ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Real counts and sizes.

        >>> AgentDB(":memory:", dim=8).stats()["dim"]
        8
        """
        self._check_open()
        files = {n: os.path.getsize(self._collections.index_path(n)) for n in self._cols
                 if not self.store.memory and os.path.exists(self._collections.index_path(n))}
        return {
            "path": self.path,
            "dim": self.dim,
            "backend": backend.BACKEND,
            "store": self.backend_name,
            "search": self.search_mode,
            "embedder": embedder_identity(self.embedder)["name"],
            "embedder_checksum": embedder_identity(self.embedder)["checksum"],
            "patterns": self.store.count("patterns"),
            "episodes": self.store.count("episodes"),
            "skills": self.store.count("skills"),
            "generation": self.store.generation,
            "db_bytes": self.store.file_size(),
            "index_memory_bytes": {n: int(c.index.memory_usage()) for n, c in self._cols.items()},
            "index_file_bytes": files,
            "index_status": dict(self.index_status),
            "learning": self.learning.stats(),
        }


# ---- module helpers ---------------------------------------------------------------------------
def open(path: str | os.PathLike[str] = ":memory:", **options: Any) -> AgentDB:  # noqa: A001
    """Open (or create) an agent memory: a SQLite file, or ``":memory:"``.

    Options: ``dim`` (default: the store's, else the embedder's, else 384), ``embedder``
    (an object, ``"hashing"`` -- lexical, the default --, ``"minilm"`` / ``"minilm-int8"``
    -- all-MiniLM-L6-v2 on onnxruntime, the ``embed`` extra --, ``"onnx:<model dir>"`` or
    ``"st:<model>"``; a new store records it and refuses another one later, and reopening
    without ``embedder=`` uses the recorded one), ``readonly``, ``durability``
    (``"full"``/``"normal"``), ``M``, ``ef_construction``, ``ef_search``, ``threads``,
    ``precision`` (what the index walk reads: ``"mixed"`` -- binary16, the default --,
    ``"int8"`` -- a quarter of float32's bytes -- or ``"f32"``; results are re-ranked in
    float32 either way), ``progress``, ``forget_every`` (seconds between background
    :meth:`~agentdb.memory.core.MemoryCore.forget` passes that remove expired records).

    PostgreSQL (the ``postgres`` extra): ``backend="postgres"`` with ``url=`` (or the
    environment: ``AGENTDB_BACKEND=postgres`` and ``AGENTDB_POSTGRES_URL``; a
    ``postgresql://`` path also works), ``schema``, ``table_prefix``, and ``search`` --
    ``"pgvector"`` (default: SQL with an HNSW index) or ``"native"`` (a native index rebuilt
    from the table on open). ``mirror="postgresql://..."`` (with ``mirror_schema``,
    ``mirror_prefix``) keeps SQLite as the system of record and copies every write to
    PostgreSQL through a durable outbox (:mod:`agentdb.storage.mirror`).

    ``learning`` (:mod:`agentdb.learning`): ``None`` (default: the stored switch; on for a
    new store, where the query adapter stays the identity until the first
    :meth:`AgentDB.feedback`), ``True`` / ``False`` (turn learning on / off, persisted), or a
    dict of :class:`agentdb.learning.LearningConfig` fields (``rank``, ``lr``, ``tau``,
    ``negatives``, ``ewc_lambda``, ``fisher_decay``, ``consolidate_every``, ``save_every``,
    ...) plus ``enabled`` and ``reset`` (discard the stored learning state).

    >>> import agentdb
    >>> with agentdb.open(":memory:", dim=16) as db:
    ...     db.count()
    0
    """
    return AgentDB(path, **options)


def _hit_dicts(attrs: Any, ids: list[list[int]], dists: list[list[float]],
               threshold: float | None) -> list[list[dict[str, Any]]]:
    """Each row of an index search as ``search_hits`` answers it: ``{"id", "similarity",
    "distance", "metadata"}`` (from the in-memory columns ``attrs``) per live hit over
    ``threshold``."""
    out = []
    with attrs.lock:
        pos, meta = attrs.pos, attrs.meta
        for row_ids, row_d in zip(ids, dists):
            hits = []
            for i, d in zip(row_ids, row_d):
                p = pos.get(i) if i >= 0 else None
                if p is None or (threshold is not None and 1.0 - d < threshold):
                    continue  # padding, deleted meanwhile, or below the threshold
                d = min(max(d, 0.0), 2.0)  # float32 rounding at an exact match
                hits.append({"id": i, "similarity": 1.0 - d, "distance": d,
                             "metadata": meta[p]})
            out.append(hits)
    return out
