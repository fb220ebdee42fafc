"""``ClusterDB``: the agent-memory API over shards of native HNSW indexes on Ray, with
PostgreSQL as the system of record and the ordered change log.

>>> # db = ClusterDB(None, "postgresql://...", shards=3, replicas=2)
>>> # pid = db.store_pattern("parse ISO dates", reward=0.9, success=True)
>>> # db.search_patterns("parse dates", k=5)[0].id == pid

**Data.** Records live in :class:`~agentdb.storage.postgres.PostgresStore` tables -- the same
schema as ``agentdb.open(backend="postgres", url=...)``, which can open a cluster's data
directly. Every write is *one* PostgreSQL transaction: the row change, its entries in
``<prefix>cluster_log`` and a ``pg_notify`` (see :mod:`.log`); it returns once committed, so
an acknowledged write is never lost, whatever happens to the Ray actors.

**Shards and replicas.** A :class:`~.ring.HashRing` (stored in ``<prefix>cluster_meta``) maps
each record id to a shard; each shard has ``replicas`` :class:`~.replica.ShardReplica` Ray
actors holding an HNSW index + filter columns of that shard's records, built from PostgreSQL
and kept current by following the log. Actors are *detached* and named
``"{namespace}/shard{s}/replica{r}"`` (Ray namespace ``namespace``), so they outlive the
process that created them and any process (``agentdb cluster status``, another
``ClusterDB``) finds them by name; ``close(shutdown=True)`` removes them.

**Placement.** One detached placement group per shard (``"{namespace}/shard{s}/pg"``) with
``replicas`` bundles of ``{"CPU": 0.01}``. The strategy is ``STRICT_SPREAD`` when the cluster
has at least ``replicas`` alive nodes (replicas of a shard never share a node: losing a node
costs at most one replica per shard) and ``SPREAD`` otherwise (best effort: with fewer nodes
than replicas some must share a node; STRICT_SPREAD would leave them unscheduled).
``placement="spread"`` / ``"strict_spread"`` forces one. After a node dies, Ray reschedules its
bundles on other nodes (under STRICT_SPREAD only on nodes without another replica of that
shard -- if none is left the replica waits for a node to join) and restarts the actors there.

**Search.** The query goes to *one* replica per shard (round-robin), filters are pushed down
(evaluated by each replica's filter columns inside the HNSW walk), each shard returns its
top-``k``, and the handle merges by distance (ids deduplicated) and applies ``threshold``.
Every record is in exactly one shard and each shard's index is a full HNSW over its subset,
so recall is that of one index over all rows (tested). A replica that fails, is not ready,
lags or does not answer within its share of ``search_timeout`` is marked suspect for a few
seconds and the shard is retried on another replica within the deadline. A slow replica is
also *hedged*: once a call takes 8x the running mean shard latency (at least 50 ms), a second
replica is asked while the first may still answer -- so a replica that Ray is restarting
(calls to it wait rather than fail) costs a search tens of milliseconds, not seconds.

**Consistency.** ``last_seq`` is the log seq of this handle's last write. By default a search
waits for ``min_seq = last_seq`` on every replica it asks (read-your-writes for this handle);
``min_seq=0`` reads whatever the replicas have applied (lowest latency, possibly stale);
``min_seq=db.log_seq()`` reads everything committed by anyone before the call.

**Rebalancing.** :meth:`ClusterDB.add_shard` grows the ring online: the new shard's replicas
build from PostgreSQL with the new ring while searches keep using the old one; once they are
ready the ring is stored, routing switches and old replicas drop the keys they lost (about
``1/(N+1)`` of them). A handle in another process that still routes by the old ring is told
so by the replicas (``StaleRing``) and reloads it. :meth:`ClusterDB.remove_shard` shrinks it:
the remaining replicas load the removed shard's keys first, then the ring switches and the
shard's actors are deleted; a handle still naming that shard reloads the ring when its
replicas are gone.

**Scope.** Patterns (store / store many / get / update / delete / search), episodes (store,
with the named skills' statistics updated and logged in the same transaction; get / update /
delete / search), skills (store / get / update / delete / search) and the causal graph
(``db.graph``: events, hyperedges, removal, ``khop`` over per-shard slices; see
:mod:`.graph`), ``critique_summary``, ``iter_records``, ``count``, events (``on``: this
handle's committed writes, as in the embedded store) and the learning layer (below). Not
served: Cypher and path queries; use ``agentdb.open(backend="postgres")`` on the same data for
those. Writes must go through ``ClusterDB``: a write made by another client straight into the
tables is not in the log, so replicas only see it after their next rebuild.

**Learning.** ``db.learning`` is the embedded store's :class:`~agentdb.learning.Learner`
with its state in PostgreSQL (the ``meta`` row ``agentdb.open(backend="postgres")`` uses):
``feedback`` / ``feedback_trajectory`` train the query adapter (negatives are what the cluster
retrieves now), adapted queries are scattered with ``ef_factor`` x ``ef_search``, and
``rerank="attention"`` / ``"attention+reward"`` and ``synthesize_context`` read the
candidates' stored vectors from PostgreSQL. The adapter lives in the handle that learns: it
is saved every ``save_every`` updates, on ``checkpoint()`` and ``close()``, and a handle
opened later (or after ``db.learning.reload()``) loads it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray
from psycopg import sql

from ..embedders import (
    Embedder,
    check_embedder,
    embedder_identity,
    get_embedder,
    recorded_embedder,
)
from ..engines.diversity import check_diversity, diversity_candidates, mmr
from ..engines.fusion import check_mode, check_text_weight, hybrid_max_df, rrf, text_max_df
from ..errors import (
    ConflictError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
)
from ..learning.learner import Learner
from ..memory.core import MemoryCore
from ..memory.forgetting import expiry
from ..memory.namespaces import DEFAULT, listed, register
from ..memory.validation import (
    KIND,
    as_id,
    check_rate,
    check_text,
    opt_id,
    rerank_candidates,
    reward_prior,
    stored_vectors,
    to_record,
)
from ..storage.events import EventBus
from ..storage.filters import where_sql
from ..storage.mirror import redact_url
from ..storage.pg_backend import existing_dim, existing_meta
from ..storage.postgres import PostgresStore
from ..storage.records import SearchResult, Skill, check_metadata, check_reward
from .graph import ClusterGraph
from .log import ClusterLog
from .ring import HashRing
from .scatter import Scatter
from .shards import ClusterUnavailable, Shards

__all__ = ["ClusterDB", "ClusterUnavailable"]

log = logging.getLogger("agentdb.cluster")

_KINDS = ("patterns", "episodes", "skills")


def _ensure_pythonpath() -> None:
    """Make the in-tree package importable by Ray workers started from this process."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *parts])


def start_local_ray(namespace: str, **kwargs: Any) -> None:
    """Start a single-node Ray bound to 127.0.0.1 (for ``ray_address=None``).

    Ray replaces a loopback address by the host's routable IP unless "cluster mode" is off:
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read by Ray and by every Ray process started from
    here) plus the same constant patched in this already-imported Ray.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    _ensure_pythonpath()
    ray.init(namespace=namespace, _node_ip_address="127.0.0.1", include_dashboard=False,
             ignore_reinit_error=True, **kwargs)


class ClusterDB(MemoryCore):
    """Agent memory on a Ray cluster; see the module docstring.

    ``ray_address``: ``None`` starts a local single-node Ray on 127.0.0.1 (unless Ray is
    already initialised in this process), ``"auto"`` joins the running cluster,
    ``"ray://host:10001"`` uses Ray Client; when Ray is already initialised in this process
    it is used as is. Ray workers must be able to ``import agentdb`` (install it on every
    node, or start the nodes with ``PYTHONPATH`` pointing at the package).
    ``postgres_url`` (or ``AGENTDB_POSTGRES_URL``): the system of record. ``shards`` /
    ``virtual_nodes`` define the ring of a *new* cluster; an existing cluster (a ring in
    ``cluster_meta``) keeps its ring and its ``replicas`` per shard (the arguments only apply
    to a new cluster).
    ``dim`` defaults to the store's, else the embedder's, else 384. ``ready_timeout``: how
    long the constructor waits for every shard to have a ready replica.
    ``pgvector_index=False`` drops pgvector's HNSW indexes on the collection tables (they are
    not used by the cluster and cut the ingest rate ~70x); the data stays readable by
    ``agentdb.open(backend="postgres")`` (``search="native"`` rebuilds an index; pgvector
    search becomes an exact scan). ``True`` (default) leaves the tables as they are.
    ``M`` / ``ef_construction`` / ``index_threads`` configure the replicas' native indexes,
    ``ef_search`` the default search ``ef``; ``poll_interval`` is how often replicas poll the
    log besides LISTEN/NOTIFY. ``learning``: as in :func:`agentdb.open` (``None``: the stored
    switch, on for a new store; ``True`` / ``False``; or a dict of learning options).
    ``fast_path`` (default on): searches go straight to the replicas' TCP listeners
    (:mod:`agentdb.cluster.fastpath`, authenticated by a secret kept in ``cluster_meta``),
    falling back to Ray actor calls for any search they cannot answer; ``False``: always
    Ray.
    """

    def __init__(
        self,
        ray_address: str | None = None,
        postgres_url: str | None = None,
        shards: int = 3,
        replicas: int = 2,
        virtual_nodes: int = 150,
        *,
        dim: int | None = None,
        schema: str = "public",
        table_prefix: str = "",
        namespace: str = "agentdb",
        ef_search: int = 64,
        search_timeout: float = 5.0,
        embedder: Embedder | str | None = None,
        M: int = 16,
        ef_construction: int = 200,
        index_threads: int = 1,
        placement: str = "auto",
        ready_timeout: float = 120.0,
        poll_interval: float = 0.15,
        pgvector_index: bool = True,
        learning: bool | dict[str, Any] | None = None,
        fast_path: bool = True,
    ) -> None:
        url = postgres_url or os.environ.get("AGENTDB_POSTGRES_URL")
        if not url:
            raise InvalidArgumentError("ClusterDB needs postgres_url=... or AGENTDB_POSTGRES_URL")
        for label, v in (("shards", shards), ("replicas", replicas)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(f"{label} must be an integer >= 1, got {v!r}")
        if placement not in ("auto", "spread", "strict_spread"):
            raise InvalidArgumentError(
                f"placement must be 'auto', 'spread' or 'strict_spread', got "
                f"{placement!r}")
        if not search_timeout > 0:
            raise InvalidArgumentError(f"search_timeout must be positive, got {search_timeout!r}")
        self.url = url
        self.schema = schema
        self.table_prefix = table_prefix
        #: the Ray namespace of this cluster's actors (the ``namespace`` argument)
        self.ray_namespace = namespace
        #: the memory namespace of this handle (see :meth:`namespace`)
        self.namespace_name = DEFAULT
        self._children: dict[str, ClusterDB] = {}
        self.replicas = replicas
        self.ef_search = ef_search
        self.search_timeout = float(search_timeout)
        self.placement = placement
        self.ready_timeout = float(ready_timeout)
        self.last_seq = 0
        self._closed = False
        self._lock = threading.RLock()
        self._owns_ray = False
        self._graph: ClusterGraph | None = None
        self._attention: Any = None
        self._events = EventBus()

        stored_dim = existing_dim(url, schema, table_prefix)
        recorded = existing_meta(url, "embedder", schema, table_prefix) if stored_dim else None
        if embedder is None and recorded:  # the embedder the store was built with
            embedder = recorded_embedder(recorded)
        if dim is None:
            dim = stored_dim or (getattr(embedder, "dim", None) if embedder is not None
                                 and not isinstance(embedder, str) else None) or 384
        if stored_dim and stored_dim != dim:
            raise InvalidArgumentError(f"dimension mismatch: the store has dim {stored_dim}, "
                                       f"opened with dim {dim}")
        self.dim = int(dim)
        self.embedder = get_embedder(embedder, self.dim)
        if self.embedder.dim != self.dim:
            raise InvalidArgumentError(f"dimension mismatch: embedder has dim {self.embedder.dim}, "
                                       f"store has dim {self.dim}")
        identity = check_embedder(recorded, self.embedder, redact_url(url))
        self.store = PostgresStore(url, self.dim, schema=schema, table_prefix=table_prefix,
                                   pool_size=6)
        try:
            if stored_dim is None and self.store.meta("embedder") is None:
                self.store.set_meta("embedder", json.dumps(identity, sort_keys=True))
            self.log = ClusterLog(url, schema=schema, table_prefix=table_prefix)
            self.log.ensure()
            if not pgvector_index:
                self._drop_pgvector_indexes()
            ring_json = self.log.init_meta("ring", json.dumps(
                HashRing(list(range(shards)), virtual_nodes).to_dict(), sort_keys=True))
            ring = HashRing.from_dict(json.loads(ring_json))
            self.replicas = int(self.log.init_meta("replicas", str(replicas)))
            self.log.init_meta("namespace", namespace)
            self.learning = Learner.attach(self.store, self.dim, learning, False)
            self.last_seq = 0
            self._config = {"url": url, "schema": schema, "table_prefix": table_prefix,
                            "dim": self.dim, "M": M, "ef_construction": ef_construction,
                            "ef_search": ef_search, "threads": index_threads,
                            "poll_interval": poll_interval}
            self._child_args = dict(
                dim=self.dim, schema=schema, ef_search=ef_search,
                search_timeout=search_timeout, embedder=self.embedder, M=M,
                ef_construction=ef_construction, index_threads=index_threads,
                placement=placement, ready_timeout=ready_timeout, poll_interval=poll_interval,
                pgvector_index=pgvector_index, learning=learning, fast_path=fast_path)
            if not ray.is_initialized():
                if ray_address is None:
                    start_local_ray(namespace)
                else:
                    ray.init(address=ray_address, namespace=namespace,
                             ignore_reinit_error=True)
                self._owns_ray = True
            self.shards = Shards(self.log, ring, namespace=namespace, replicas=self.replicas,
                                 placement=placement, ready_timeout=self.ready_timeout,
                                 config=self._config)
            fast = None
            if fast_path:  # the replicas' TCP listeners (.fastpath), keyed by a secret
                from .fastpath import Client

                fast = Client(self.log.init_meta("fastpath_token", secrets.token_hex(16)))
            self.scatter = Scatter(self.shards, self.search_timeout, ef_search, fast)
            self.shards.start()
        except BaseException:
            self.store.close()
            raise

    def _drop_pgvector_indexes(self) -> None:
        """Drop the pgvector HNSW indexes of the collection tables (``pgvector_index=False``):
        the cluster searches its own indexes, and maintaining pgvector's graph on every insert
        costs ~70x in ingest rate (measured: ~430 vs ~30,000 rows/s at dim 384)."""
        from ..storage.postgres import TABLES

        with self.store.write() as w:
            for tbl in TABLES.values():
                w.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(
                    sql.Identifier(self.schema, f"{self.table_prefix}{tbl}_hnsw")))

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self, shutdown: bool = False) -> None:
        """Close this handle. ``shutdown=True`` also kills the actors and placement groups
        this handle created (others' stay) and stops a Ray that it started."""
        if self._closed:
            return
        with self._lock:
            children, self._children = list(self._children.values()), {}
        for child in children:
            child.close(shutdown=shutdown)
        self._closed = True
        try:
            if shutdown and ray.is_initialized():
                self.shards.remove_created()
                if self._owns_ray:
                    ray.shutdown()
        finally:
            try:
                self.learning.save()  # the query adapter's state, if it changed
            except Exception as exc:  # never let a failed save keep the connections open
                log.warning("could not save the learning state on close: %s", exc)
            self.scatter.close()
            self.log.close()
            self.store.close()

    # ---- namespaces ---------------------------------------------------------------------------
    def namespace(self, name: str, *, shards: int = 1, replicas: int = 1) -> ClusterDB:
        """The handle of namespace ``name`` (:mod:`agentdb.memory.namespaces`): a cluster of
        its own over tables of its own (a table prefix derived from the name) and its own
        actors (Ray namespace ``<this one>-<slug>``; ``shards`` / ``replicas`` for a new
        namespace), created on first use and registered in this store's ``meta``;
        ``"default"`` is this handle. Closed with this handle (``shutdown`` included).

        >>> ClusterDB.namespace  # doctest: +ELLIPSIS
        <function ClusterDB.namespace at ...>
        """
        self._check_open()
        with self._lock:
            stem = register(self.store, name, self.table_prefix, self.namespace_name, False)
            if stem is None:
                return self
            child = self._children.get(name)
            if child is not None and not child._closed:
                return child
            child = ClusterDB(None, self.url, shards, replicas, table_prefix=stem + "_",
                              namespace=f"{self.ray_namespace}-{stem}", **self._child_args)
            child.namespace_name = name
            child._events.namespace = name
            self._children[name] = child
            return child

    def namespaces(self) -> list[str]:
        """The namespaces this store holds, ``"default"`` included, sorted."""
        self._check_open()
        return listed(self.store)

    def checkpoint(self) -> None:
        """Save the learning state now (records are committed by every write already)."""
        self._check_open()
        self.learning.save()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ClusterDB handle is closed")

    @property
    def graph(self) -> ClusterGraph:
        """The causal hypergraph: writes through PostgreSQL and the log, topology sliced
        over the shards, ``khop`` as scatter rounds (see :mod:`.graph`)."""
        self._check_open()
        if self._graph is None:
            self._graph = ClusterGraph(self)
        return self._graph

    # ---- writes -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[tuple[Any, Any]]:
        """One PostgreSQL transaction; yields ``(w, log)`` where ``w`` is the store's write
        transaction and ``log(collection, op, ids, action=None)`` appends log rows in it (the
        replicas apply them). ``last_seq`` advances after the commit, then the events of the
        logged record changes are emitted. Used by every write, including :mod:`.graph`'s."""
        self._check_open()
        seqs: list[int] = []
        events: list[tuple[str, str, list[int], str | None]] = []

        def log_op(collection: str, op: str, ids: Iterable[int], action: str | None = None,
                   reason: str | None = None) -> None:
            ids = list(ids)
            seqs.append(self.log.append(w, collection, op, ids))
            if collection in KIND:  # record events (``action`` defaults by op)
                events.append((collection, action or ("deleted" if op == "delete"
                                                      else "updated"), ids, reason))

        with self.store.write() as w:
            yield w, log_op
        if seqs:
            with self._lock:
                self.last_seq = max(self.last_seq, *seqs)
        for name, action, ids, reason in events:  # the same payloads as the embedded store's
            if action == "deleted":
                extra = {} if reason is None else {"reason": reason}
                for i in ids:
                    self._events.emit(f"{KIND[name]}:deleted", {"id": i, **extra})
            else:
                self._emit_rows(name, ids, action)

    def _insert(self, w: Any, name: str, rows: list[tuple[dict[str, Any], np.ndarray,
                                                           int | None, float | None]]
                ) -> list[int]:
        if len(rows) > 1 and all(r[2] is None for r in rows):
            batch = [dict(values, **({} if created is None else {"created_at": created}))
                     for values, _v, _r, created in rows]
            return list(self.store.bulk_insert(w, name, batch, np.stack([r[1] for r in rows])))
        out = []
        for values, vec, rid, created in rows:
            try:
                out.append(self.store.insert(w, name, values, vec, row_id=rid,
                                             created_at=created))
            except ValueError as exc:
                if "UNIQUE" in str(exc):
                    raise ConflictError(f"{name[:-1]} already exists ({exc})") from None
                raise
        return out

    def _write_rows(self, name: str, rows: list[Any],
                    extra: Any = None) -> list[int]:
        with self.transaction() as (w, log_op):
            ids = self._insert(w, name, rows)
            log_op(name, "upsert", ids, "stored")
            if extra is not None:
                extra(w, log_op)
        return ids

    def _pattern_vectors(self, ids: list[int]) -> np.ndarray:
        return stored_vectors(self.store, "patterns", ids)

    def _retrieve_ids(self, q: np.ndarray, n: int) -> np.ndarray:
        return self.search_ids("patterns", q, k=n)[0]

    def _get(self, name: str, rid: Any) -> Any:
        self._check_open()
        rid = as_id(rid)
        rows = self.store.get(name, [rid])
        if rid not in rows:
            raise NotFoundError(f"unknown {name[:-1]} id {rid}")
        return to_record(name, rows[rid])

    def _delete(self, name: str, rid: Any) -> None:
        rid = as_id(rid)
        if not self.store.existing(name, [rid]):
            raise NotFoundError(f"unknown {name[:-1]} id {rid}")
        with self.transaction() as (w, log_op):
            self.store.delete(w, name, [rid])
            log_op(name, "delete", [rid])

    def _delete_many(self, name: str, ids: list[int], reason: str | None = None) -> None:
        """Delete records in one logged transaction (events come from the log)."""
        ids = sorted(self.store.existing(name, ids))
        if ids:
            with self.transaction() as (w, log_op):
                self.store.delete(w, name, ids)
                log_op(name, "delete", ids, reason=reason)

    def _update(self, name: str, rid: int, values: dict[str, Any],
                vec: np.ndarray | None) -> Any:
        with self.transaction() as (w, log_op):
            self.store.update(w, name, rid, values, vec)
            log_op(name, "upsert", [rid])
        return self._get(name, rid)

    # ---- patterns ---------------------------------------------------------------------------
    def store_pattern(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, metadata: dict[str, Any] | None = None,
                      id: int | None = None, ttl: Any = None, expires_at: Any = None,
                      dedupe: float | None = None) -> int:
        """Store a pattern (committed to PostgreSQL with its log entry); returns its id.
        ``ttl`` / ``expires_at`` / ``dedupe`` as in :meth:`agentdb.AgentDB.store_pattern`
        (the duplicate check searches the shards, so two handles storing the same pattern
        at the same moment may both add it)."""
        values, vec = self._pattern_row(task, embedding, reward, success, session_id, input,
                                        output, critique, metadata, expiry(ttl, expires_at))
        if dedupe is not None:
            if id is not None:
                raise InvalidArgumentError("dedupe and an explicit id do not combine")
            merged = self._merge_duplicate(values, vec, dedupe)
            if merged is not None:
                return merged
        return self._write_rows("patterns", [(values, vec, opt_id(id), None)])[0]

    def store_patterns(self, patterns: Iterable[dict[str, Any]]) -> list[int]:
        """Store many patterns in one transaction (one binary COPY); returns their ids."""
        rows = self._pattern_rows(patterns)
        if not rows:
            return []
        return self._write_rows("patterns", rows)

    def search_patterns(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success_only: bool = False,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        min_seq: int | None = None, adapt: bool = True,
                        rerank: str | None = None, candidates: int | None = None,
                        heads: int = 1, temperature: float = 0.05,
                        diversity: float | None = None, mode: str = "vector",
                        text_weight: float = 0.5) -> list[SearchResult]:
        """The ``k`` most similar patterns passing every filter, best first, over all shards.

        ``min_seq`` (default: this handle's ``last_seq``) is the log position every asked
        replica must have applied; ``0`` accepts any. ``adapt``, ``rerank``, ``candidates``,
        ``heads`` and ``temperature`` as in :meth:`agentdb.AgentDB.search_patterns`: the
        learned adapter maps the query before the scatter, and a re-ranked search merges
        ``candidates`` hits from the shards, then orders them by attention over their stored
        vectors (read from PostgreSQL with the records, in one query). ``diversity`` picks
        the ``k`` from ``candidates`` merged hits by maximal marginal relevance, as embedded;
        ``mode="text"`` / ``"hybrid"`` rank by (or fuse in) PostgreSQL's full-text index.
        """
        filters = self._filters(min_reward, True if success_only else None, session_id, where)
        if rerank is not None and diversity is not None:
            raise InvalidArgumentError("diversity and rerank do not combine; pass one")
        if rerank is not None and mode != "vector":
            raise InvalidArgumentError(f"rerank applies to vector searches, not mode={mode!r}")
        if mode != "vector":
            return self._search("patterns", task_or_vector, k, filters, threshold, ef, min_seq,
                                diversity, candidates, mode, text_weight)
        n = k if rerank is None else rerank_candidates(rerank, k, candidates)
        q = self.query_vector(task_or_vector)
        if adapt and self.learning.active:
            q = self.learning.apply(q)
            if ef is None:  # off-distribution queries need a wider beam (LearningConfig)
                ef = math.ceil(self.learning.config.ef_factor * self.ef_search)
        if rerank is None:
            return self._search("patterns", q, k, filters, threshold, ef, min_seq, diversity,
                                candidates)
        hits = self._hits("patterns", q, n, filters, threshold,
                          None if ef is None else max(int(ef), n), min_seq)
        rows = self.store.get("patterns", [i for i, _ in hits])
        hits = [h for h in hits if h[0] in rows]  # deleted meanwhile
        if not hits:
            return []
        vecs = np.stack([np.asarray(rows[i]["embedding"], np.float32) for i, _ in hits])
        prior = (reward_prior([float(rows[i]["reward"]) for i, _ in hits])
                 if rerank == "attention+reward" else None)
        order, scores = self.attention.rerank(q, vecs, heads=heads, temperature=temperature,
                                              prior=prior)
        out = []
        for j, score in zip(order[:k], scores[:k]):
            i, d = hits[j]
            row = {key: v for key, v in rows[i].items() if key != "embedding"}
            out.append(SearchResult(i, 1.0 - d, d, to_record("patterns", row), float(score)))
        return out

    # ---- episodes ---------------------------------------------------------------------------
    def store_episodes(self, episodes: Iterable[dict[str, Any]]) -> list[int]:
        """Store many episodes in one transaction (all or nothing)."""
        rows, outcomes = self._episode_rows(episodes)
        if not rows:
            return []
        missing = sorted({s for s, _ in outcomes
                          if self.store.find("skills", "name", s) is None})
        if missing:
            raise NotFoundError(f"unknown skill(s): {', '.join(missing)}")
        skills_t = sql.Identifier(self.schema, f"{self.table_prefix}skills")

        def record_skills(w: Any, log_op: Any) -> None:
            touched = []
            for s, ok in outcomes:
                row = w.execute(sql.SQL(
                    "UPDATE {} SET success_rate = (success_rate * uses + %s) / (uses + 1), "
                    "uses = uses + 1, updated_at = %s, gen = %s WHERE name = %s RETURNING id"
                ).format(skills_t), [1.0 if ok else 0.0, time.time(), self.store.pending_gen,
                                     s]).fetchone()
                touched.append(int(row[0]))
            if touched:
                log_op("skills", "upsert", sorted(set(touched)))

        return self._write_rows("episodes", rows, extra=record_skills if outcomes else None)

    # the same validation and fields as the embedded store (they use _get / _update /
    # _episode_row / _skill_id / store.find / _vector, which this class provides)
    def search_episodes(self, task_or_vector: str | Any, k: int = 5, *,
                        min_reward: float | None = None, success: bool | None = None,
                        session_id: str | None = None, where: dict[str, Any] | None = None,
                        threshold: float | None = None, ef: int | None = None,
                        min_seq: int | None = None, diversity: float | None = None,
                        candidates: int | None = None, mode: str = "vector",
                        text_weight: float = 0.5) -> list[SearchResult]:
        """The ``k`` most similar episodes; ``success=False`` keeps only failures."""
        filters = self._filters(min_reward, success, session_id, where)
        return self._search("episodes", task_or_vector, k, filters, threshold, ef, min_seq,
                            diversity, candidates, mode, text_weight)

    # ---- skills -----------------------------------------------------------------------------
    def store_skill(self, name: str, description: str = "", *, signature: str | None = None,
                    code: str | None = None, success_rate: float = 0.0, uses: int = 0,
                    metadata: dict[str, Any] | None = None, embedding: Any = None,
                    id: int | None = None, ttl: Any = None, expires_at: Any = None) -> int:
        """Store a skill (unique name); embeds ``"name: description"`` by default.
        ``ttl`` / ``expires_at`` as in :meth:`agentdb.AgentDB.store_skill`."""
        check_text("name", name, required=True)
        for fname, val in (("description", description), ("signature", signature),
                           ("code", code)):
            check_text(fname, val)
        if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 0:
            raise InvalidArgumentError(f"uses must be an integer >= 0, got {uses!r}")
        values = {"name": name, "description": description or "", "signature": signature,
                  "code": code, "success_rate": check_rate(success_rate), "uses": int(uses),
                  "metadata": check_metadata(metadata), "expires_at": expiry(ttl, expires_at)}
        vec = self._vector(embedding, f"{name}: {description or ''}")
        if len(self.store.filter_ids("skills", expired=True)):
            self.forget("skills")  # an expired skill's name is free again
        return self._write_rows("skills", [(values, vec, opt_id(id), None)])[0]

    def get_skill(self, id_or_name: int | str) -> Skill:
        """A skill by id or name (``KeyError`` if unknown)."""
        return self._get("skills", self._skill_id(id_or_name))

    def search_skills(self, query: str | Any, k: int = 5, *,
                      min_success_rate: float | None = None,
                      where: dict[str, Any] | None = None, threshold: float | None = None,
                      ef: int | None = None, min_seq: int | None = None,
                      diversity: float | None = None, candidates: int | None = None,
                      mode: str = "vector", text_weight: float = 0.5) -> list[SearchResult]:
        """The ``k`` skills most similar to the query."""
        rate = None if min_success_rate is None else check_rate(min_success_rate)
        filters = self._filters(None, None, None, where)
        filters["min_reward"] = rate  # the skills' reward column is the success rate
        return self._search("skills", query, k, filters, threshold, ef, min_seq, diversity,
                            candidates, mode, text_weight)

    # ---- search -----------------------------------------------------------------------------
    @staticmethod
    def _filters(min_reward: float | None, success: bool | None, session_id: str | None,
                 where: dict[str, Any] | None) -> dict[str, Any]:
        if where:
            where_sql(where)  # validates keys and operators with the documented errors
        if min_reward is not None:
            min_reward = check_reward(min_reward, "min_reward")
        if success is not None and not isinstance(success, (bool, np.bool_)):
            raise InvalidTypeError(f"success must be True, False or None, got {success!r}")
        if session_id is not None and not isinstance(session_id, str):
            raise InvalidTypeError(f"session_id must be a string, got {type(session_id).__name__}")
        return {"min_reward": min_reward, "success": None if success is None else bool(success),
                "session_id": session_id, "where": where or None}

    def _search(self, name: str, query: str | Any, k: int, filters: dict[str, Any],
                threshold: float | None, ef: int | None, min_seq: int | None,
                diversity: float | None = None, candidates: int | None = None,
                mode: str = "vector", text_weight: float = 0.5) -> list[SearchResult]:
        mode = check_mode(mode, query)
        diversity = check_diversity(diversity)
        if mode != "vector" and diversity is not None:
            raise InvalidArgumentError("diversity applies to vector searches, not mode="
                                       f"{mode!r}")
        q = self.query_vector(query)
        if mode != "vector":  # the records' full-text column in PostgreSQL (+ the shards)
            w = check_text_weight(text_weight)
            n = diversity_candidates(k, candidates)
            rows = self.store.approx_count(name)
            extra = ({"max_df": hybrid_max_df(rows)} if mode == "hybrid" else
                     {"max_df": text_max_df(rows), "keep_common": True})
            found = self.store.text_search(name, str(query), k if mode == "text" else n,
                                           **filters, **extra)
            if mode == "text":
                ranked = found[:k]
            else:
                vec = self._hits(name, q, n, filters, None,
                                 None if ef is None else max(int(ef), n), min_seq)
                ranked = rrf([[i for i, _ in found], [i for i, _ in vec]], [w, 1.0 - w])[:k]
            rows = self.store.get(name, [i for i, _ in ranked])
            qn = q / max(float(np.linalg.norm(q)), 1e-30)
            out = []
            for i, score in ranked:
                if i not in rows:
                    continue  # deleted meanwhile
                v = np.asarray(rows[i]["embedding"], np.float64)
                d = float(1.0 - (v @ qn) / max(float(np.linalg.norm(v)), 1e-30))
                if threshold is not None and 1.0 - d < float(threshold):
                    continue
                row = {c: x for c, x in rows[i].items() if c != "embedding"}
                out.append(SearchResult(i, 1.0 - d, d, to_record(name, row), float(score)))
            return out
        if diversity is None:  # the records come with the hits, from the replicas
            hits, rows = self._hits_and_rows(name, q, k, filters, threshold, ef, min_seq)
        else:  # MMR over the merged candidates, with their vectors read with the records
            n = diversity_candidates(k, candidates)
            hits = self._hits(name, q, n, filters, threshold,
                              None if ef is None else max(int(ef), n), min_seq)
            rows = self.store.get(name, [i for i, _ in hits])
            hits = [h for h in hits if h[0] in rows]  # deleted meanwhile
            vecs = [np.asarray(rows[i]["embedding"], np.float32) for i, _ in hits]
            hits = [hits[j] for j in mmr(q, np.stack(vecs), k, diversity)] if hits else []
            rows = {i: {c: v for c, v in r.items() if c != "embedding"} for i, r in rows.items()}
        return [SearchResult(i, 1.0 - d, d, to_record(name, rows[i])) for i, d in hits if i in rows]

    def _hits(self, name: str, q: np.ndarray, k: Any, filters: dict[str, Any],
              threshold: float | None, ef: int | None, min_seq: int | None
              ) -> list[tuple[int, float]]:
        """``(id, cosine distance)`` of the merged top-``k``, best first, over ``threshold``."""
        return self._scatter_hits(name, q, k, filters, threshold, ef, min_seq, False)[0]

    def _hits_and_rows(self, name: str, q: np.ndarray, k: Any, filters: dict[str, Any],
                       threshold: float | None, ef: int | None, min_seq: int | None
                       ) -> tuple[list[tuple[int, float]], dict[int, dict[str, Any]]]:
        """:meth:`_hits` and the hits' rows (without vectors), as the replicas hold them
        after applying the log up to ``min_seq``; a row a replica lacks is read from
        PostgreSQL. Expired records are left out, as a read of the store does."""
        hits, got = self._scatter_hits(name, q, k, filters, threshold, ef, min_seq, True)
        now = time.time()
        rows: dict[int, dict[str, Any]] = {}
        missing = []
        for (i, _), row in zip(hits, got or [None] * len(hits)):
            if row is None:
                missing.append(i)
            elif row.get("expires_at") is None or float(row["expires_at"]) > now:
                rows[i] = row
        if missing:
            rows.update(self.store.get(name, missing, with_embedding=False))
        return hits, rows

    def _scatter_hits(self, name: str, q: np.ndarray, k: Any, filters: dict[str, Any],
                      threshold: float | None, ef: int | None, min_seq: int | None,
                      with_rows: bool) -> tuple[list[tuple[int, float]], list[Any] | None]:
        self._check_open()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"k must be an integer >= 1, got {k!r}")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(
                    threshold, (int, float, np.integer, np.floating)):
                raise InvalidTypeError(
                    f"threshold must be a number, got {type(threshold).__name__}")
            if not (-1.0 <= float(threshold) <= 1.0):
                raise InvalidArgumentError(
                    f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        want = self.last_seq if min_seq is None else int(min_seq)
        ids, dists, rows = self.scatter.routed(
            lambda: self.scatter.search(name, q, int(k), ef, filters, want, with_rows))
        hits = [(int(i), float(d)) for i, d in zip(ids, dists)]
        if threshold is not None:
            keep = [j for j, (_, d) in enumerate(hits) if 1.0 - d >= float(threshold)]
            hits = [hits[j] for j in keep]
            rows = None if rows is None else [rows[j] for j in keep]
        return hits, rows

    def search_ids(self, collection: str, query: Any, k: int = 10, *, ef: int | None = None,
                   filters: dict[str, Any] | None = None, min_seq: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine distances only (no record fetch from PostgreSQL): the cheapest
        cluster search, for benchmarks and id-level callers."""
        self._check_open()
        if collection not in _KINDS:
            raise InvalidArgumentError(f"unknown collection {collection!r}")
        f = self._filters(None, None, None, None) if filters is None else dict(filters)
        want = self.last_seq if min_seq is None else int(min_seq)
        q = self.query_vector(query)
        ids, dists, _ = self.scatter.routed(
            lambda: self.scatter.search(collection, q, int(k), ef, f, want))
        return ids, dists

    # ---- shards -----------------------------------------------------------------------------
    @property
    def ring(self) -> HashRing:
        """The hash ring this handle routes by (reloaded from PostgreSQL when stale)."""
        return self.shards.ring

    def actor_name(self, shard: int, replica: int) -> str:
        """The Ray actor name of one replica."""
        return self.shards.actor_name(shard, replica)

    def add_shard(self) -> int:
        """Add a shard online; returns its id. See the module docstring."""
        self._check_open()
        return self.shards.add_shard()

    def remove_shard(self, shard: int | None = None, timeout: float | None = None
                     ) -> dict[str, Any]:
        """Remove a shard online (default: the highest id); its keys move to the others.
        See :meth:`agentdb.cluster.shards.Shards.remove_shard` for the steps and refusals."""
        self._check_open()
        return self.shards.remove_shard(shard, timeout)

    def compact_log(self, timeout: float = 5.0) -> dict[str, int]:
        """Delete the log entries every replica has applied, so the log does not grow without
        bound; returns ``{"deleted", "upto", "oldest"}`` (the oldest seq kept).

        Safe because a replica that (re)starts rebuilds from the tables and only replays the
        log from the position it read them at. Entries are kept unless *every* replica of
        every shard answers its status: a replica that cannot be asked might be alive and
        behind (it is then ``ClusterUnavailable``), and a replica still building holds the
        minimum at its start position.
        """
        self._check_open()
        return self.shards.compact_log(timeout)

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """Log position, ring, every replica (state, applied seq, lag, node) and the nodes."""
        return self.shards.status(timeout)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every replica of every shard is ready (the constructor only waits for
        one per shard); :class:`~agentdb.errors.ClusterUnavailable` naming the shards and
        their replicas' states after ``timeout`` seconds (default: ``ready_timeout``).

        >>> # db = ClusterDB(...); db.wait_ready(60)
        """
        self._check_open()
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float))):
            raise InvalidArgumentError(f"timeout must be a number of seconds, got {timeout!r}")
        wait = self.ready_timeout if timeout is None else float(timeout)
        if not math.isfinite(wait) or wait <= 0:
            raise InvalidArgumentError(f"timeout must be a positive number of seconds, got "
                                       f"{timeout!r}")
        self.shards.wait_ready(list(self.ring.shards), wait, every=True)

    # ---- introspection ----------------------------------------------------------------------
    def log_seq(self) -> int:
        """The last committed log sequence number (anyone's writes)."""
        return self.log.max_seq()

    def stats(self) -> dict[str, Any]:
        """Counts from PostgreSQL plus the cluster layout."""
        self._check_open()
        return {"store": "postgres+ray", "dim": self.dim,
                "embedder": embedder_identity(self.embedder)["name"],
                **{k: self.store.count(k) for k in _KINDS},
                "log_seq": self.log.max_seq(), "last_seq": self.last_seq,
                "shards": list(self.ring.shards), "replicas": self.replicas,
                "namespace": self.namespace_name, "ray_namespace": self.ray_namespace,
                "db_bytes": self.store.file_size(),
                "learning": self.learning.stats()}
