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

import itertools
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray
from psycopg import sql
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..embedders import Embedder, get_embedder
from ..errors import (
    ClusterError,
    ConflictError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
)
from ..learning.learner import Learner
from ..memory.core import MemoryCore
from ..memory.validation import (
    KIND,
    as_id,
    check_rate,
    check_text,
    dict_items,
    opt_id,
    opt_time,
    rerank_candidates,
    reward_prior,
    stored_vectors,
    to_record,
)
from ..storage.events import EventBus
from ..storage.filters import where_sql
from ..storage.pg_backend import existing_dim
from ..storage.postgres import PostgresStore
from ..storage.records import SearchResult, Skill, check_metadata, check_reward
from .graph import ClusterGraph
from .log import ClusterLog
from .replica import remote_class
from .ring import HashRing

__all__ = ["ClusterDB", "ClusterUnavailable"]

log = logging.getLogger("agentdb.cluster")

_BUNDLE_CPU = 0.01
_SUSPECT_SECONDS = 3.0
_HEDGE_FACTOR = 8.0  # ask another replica after 8x the usual shard latency...
_MIN_HEDGE_SECONDS = 0.05  # ...but not before 50 ms
_KINDS = ("patterns", "episodes", "skills")


class ClusterUnavailable(ClusterError):
    """No replica of some shard could answer within the deadline."""


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
        self.namespace = namespace
        self.replicas = replicas
        self.ef_search = ef_search
        self.search_timeout = float(search_timeout)
        self.placement = placement
        self.ready_timeout = float(ready_timeout)
        self.last_seq = 0
        self._closed = False
        self._lock = threading.RLock()
        self._rr: dict[int, itertools.count[int]] = {}
        self._suspect: dict[str, float] = {}
        self._latency_ewma = 0.02  # seconds: running mean of one shard's search call
        self._created: list[str] = []
        self._created_pgs: list[str] = []
        self._owns_ray = False
        self._graph: ClusterGraph | None = None
        self._attention: Any = None
        self._events = EventBus()

        stored_dim = existing_dim(url, schema, table_prefix)
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
        self.store = PostgresStore(url, self.dim, schema=schema, table_prefix=table_prefix,
                                   pool_size=6)
        try:
            self.log = ClusterLog(url, schema=schema, table_prefix=table_prefix)
            self.log.ensure()
            if not pgvector_index:
                self._drop_pgvector_indexes()
            ring_json = self.log.init_meta("ring", json.dumps(
                HashRing(list(range(shards)), virtual_nodes).to_dict(), sort_keys=True))
            self.ring = HashRing.from_dict(json.loads(ring_json))
            self.replicas = int(self.log.init_meta("replicas", str(replicas)))
            self.log.init_meta("namespace", namespace)
            self.learning = Learner.attach(self.store, self.dim, learning, False)
            self.last_seq = 0
            self._config = {"url": url, "schema": schema, "table_prefix": table_prefix,
                            "dim": self.dim, "M": M, "ef_construction": ef_construction,
                            "ef_search": ef_search, "threads": index_threads,
                            "poll_interval": poll_interval}
            if not ray.is_initialized():
                if ray_address is None:
                    start_local_ray(namespace)
                else:
                    ray.init(address=ray_address, namespace=namespace,
                             ignore_reinit_error=True)
                self._owns_ray = True
            self._routing: dict[int, list[Any]] = {
                s: self._ensure_shard(s, self.ring) for s in self.ring.shards}
            self._wait_ready(list(self.ring.shards), self.ready_timeout, every=False)
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

    # ---- actors -----------------------------------------------------------------------------
    def actor_name(self, shard: int, replica: int) -> str:
        """The Ray actor name of one replica."""
        return f"{self.namespace}/shard{shard}/replica{replica}"

    def _placement_group(self, shard: int) -> Any:
        name = f"{self.namespace}/shard{shard}/pg"
        try:
            return ray.util.get_placement_group(name)
        except ValueError:
            pass
        alive = sum(1 for n in ray.nodes() if n.get("Alive"))
        strategy = {"spread": "SPREAD", "strict_spread": "STRICT_SPREAD"}.get(
            self.placement, "STRICT_SPREAD" if alive >= self.replicas else "SPREAD")
        pg = placement_group([{"CPU": _BUNDLE_CPU}] * self.replicas, strategy=strategy,
                             name=name, lifetime="detached")
        try:
            ray.get(pg.ready(), timeout=self.ready_timeout)
        except ray.exceptions.GetTimeoutError:
            ray.util.remove_placement_group(pg)
            raise ClusterUnavailable(f"placement group {name} ({strategy}, {self.replicas} x "
                                     f"{_BUNDLE_CPU} CPU) not schedulable within "
                                     f"{self.ready_timeout:g}s") from None
        self._created_pgs.append(name)
        return pg

    def _ensure_shard(self, shard: int, ring: HashRing) -> list[Any]:
        """Handles of a shard's replicas, creating missing actors (idempotent)."""
        pg = self._placement_group(shard)
        cls = remote_class()
        handles = []
        for r in range(self.replicas):
            name = self.actor_name(shard, r)
            try:
                handles.append(ray.get_actor(name, namespace=self.namespace))
                continue
            except ValueError:
                pass
            cfg = dict(self._config, shard=shard, replica=r, ring=ring.to_dict())
            handles.append(cls.options(
                name=name, namespace=self.namespace, lifetime="detached", get_if_exists=True,
                num_cpus=_BUNDLE_CPU,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=r)).remote(cfg))
            self._created.append(name)
        return handles

    def _wait_ready(self, shards: list[int], timeout: float, every: bool) -> None:
        """Wait until each shard has one ready replica (``every``: all replicas ready)."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = self._statuses(shards, 2.0)
            pending = []
            for s in shards:
                states = [st.get("state") for st in statuses[s]]
                ok = (all(x == "ready" for x in states) if every
                      else any(x == "ready" for x in states))
                if not ok:
                    pending.append((s, states))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"shards not ready after {timeout:g}s: {pending}")
            time.sleep(0.2)

    def _statuses(self, shards: list[int], timeout: float) -> dict[int, list[dict[str, Any]]]:
        """``status()`` of every replica of ``shards``, asked in parallel; a replica that
        does not answer within ``timeout`` is reported ``unreachable``."""
        refs: dict[tuple[int, int], Any] = {}
        for s in shards:
            handles = self._routing.get(s) or [self._get_actor(s, r)
                                               for r in range(self.replicas)]
            for r, h in enumerate(handles):
                refs[(s, r)] = (None if h is None else
                                h.status.options(concurrency_group="control").remote())
        deadline = time.monotonic() + timeout
        out: dict[int, list[dict[str, Any]]] = {s: [] for s in shards}
        for (s, r), ref in refs.items():
            st: dict[str, Any] = {"shard": s, "replica": r, "state": "missing",
                                  "alive": False}
            if ref is not None:
                try:
                    left = max(0.01, deadline - time.monotonic())
                    st = dict(ray.get(ref, timeout=left), alive=True)
                except Exception as exc:
                    st = {"shard": s, "replica": r, "state": "unreachable", "alive": False,
                          "error": f"{type(exc).__name__}: {exc}"[:300]}
            out[s].append(st)
        return out

    def _get_actor(self, shard: int, replica: int) -> Any:
        try:
            return ray.get_actor(self.actor_name(shard, replica), namespace=self.namespace)
        except ValueError:
            return None

    def _reload_ring(self) -> bool:
        """Route by the ring stored in PostgreSQL; True when it differs from this handle's."""
        stored = self.log.load_ring()
        if stored is None:
            return False
        ring = HashRing.from_dict(stored)
        with self._lock:
            if ring == self.ring:
                return False
            routing = dict(self._routing)
            for s in ring.shards:
                if s not in routing:
                    handles = [self._get_actor(s, r) for r in range(self.replicas)]
                    routing[s] = [h for h in handles if h is not None]
            self._routing = {s: routing[s] for s in ring.shards}
            self.ring = ring
        return True

    def _routed(self, call: Any) -> Any:
        """``call()`` routed by this handle's ring; when the ring turns out to be stale (a
        replica says so, or a shard it names is gone after ``remove_shard``), reload it from
        PostgreSQL and call once more."""
        try:
            return call()
        except _StaleRing:
            self._reload_ring()
        except ClusterUnavailable:
            if not self._reload_ring():
                raise
        return call()

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self, shutdown: bool = False) -> None:
        """Close this handle. ``shutdown=True`` also kills the actors and placement groups
        this handle created (others' stay) and stops a Ray that it started."""
        if self._closed:
            return
        self._closed = True
        try:
            if shutdown and ray.is_initialized():
                for name in self._created:
                    try:
                        ray.kill(ray.get_actor(name, namespace=self.namespace),
                                 no_restart=True)
                    except Exception:  # already gone
                        pass
                for name in self._created_pgs:
                    try:
                        ray.util.remove_placement_group(ray.util.get_placement_group(name))
                    except Exception:
                        pass
                if self._owns_ray:
                    ray.shutdown()
        finally:
            try:
                self.learning.save()  # the query adapter's state, if it changed
            except Exception as exc:  # never let a failed save keep the connections open
                log.warning("could not save the learning state on close: %s", exc)
            self.log.close()
            self.store.close()

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
    def _tx(self) -> Iterator[tuple[Any, Any]]:
        """One PostgreSQL transaction; yields ``(w, log)`` where ``log(collection, op, ids)``
        appends log rows in it. ``last_seq`` advances after the commit."""
        self._check_open()
        seqs: list[int] = []
        events: list[tuple[str, str, list[int]]] = []

        def log_op(collection: str, op: str, ids: Iterable[int], action: str | None = None
                   ) -> None:
            ids = list(ids)
            seqs.append(self.log.append(w, collection, op, ids))
            if collection in KIND:  # record events (``action`` defaults by op)
                events.append((collection, action or ("deleted" if op == "delete"
                                                      else "updated"), ids))

        with self.store.write() as w:
            yield w, log_op
        if seqs:
            with self._lock:
                self.last_seq = max(self.last_seq, *seqs)
        for name, action, ids in events:  # the same payloads as the embedded store's
            if action == "deleted":
                for i in ids:
                    self._events.emit(f"{KIND[name]}:deleted", {"id": i})
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
        with self._tx() as (w, log_op):
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
        with self._tx() as (w, log_op):
            self.store.delete(w, name, [rid])
            log_op(name, "delete", [rid])

    def _update(self, name: str, rid: int, values: dict[str, Any],
                vec: np.ndarray | None) -> Any:
        with self._tx() as (w, log_op):
            self.store.update(w, name, rid, values, vec)
            log_op(name, "upsert", [rid])
        return self._get(name, rid)

    # ---- patterns ---------------------------------------------------------------------------
    def store_pattern(self, task: str, *, embedding: Any = None, reward: float = 0.0,
                      success: bool = False, session_id: str | None = None,
                      input: str | None = None, output: str | None = None,
                      critique: str | None = None, metadata: dict[str, Any] | None = None,
                      id: int | None = None) -> int:
        """Store a pattern (committed to PostgreSQL with its log entry); returns its id."""
        values, vec = self._pattern_row(task, embedding, reward, success, session_id, input,
                                        output, critique, metadata)
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
                        heads: int = 1, temperature: float = 0.05) -> list[SearchResult]:
        """The ``k`` most similar patterns passing every filter, best first, over all shards.

        ``min_seq`` (default: this handle's ``last_seq``) is the log position every asked
        replica must have applied; ``0`` accepts any. ``adapt``, ``rerank``, ``candidates``,
        ``heads`` and ``temperature`` as in :meth:`agentdb.AgentDB.search_patterns`: the
        learned adapter maps the query before the scatter, and a re-ranked search merges
        ``candidates`` hits from the shards, then orders them by attention over their stored
        vectors (read from PostgreSQL with the records, in one query).
        """
        filters = self._filters(min_reward, True if success_only else None, session_id, where)
        n = k if rerank is None else rerank_candidates(rerank, k, candidates)
        q = self._query_vector(task_or_vector)
        if adapt and self.learning.active:
            q = self.learning.apply(q)
            if ef is None:  # off-distribution queries need a wider beam (LearningConfig)
                ef = math.ceil(self.learning.config.ef_factor * self.ef_search)
        if rerank is None:
            return self._search("patterns", q, k, filters, threshold, ef, min_seq)
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
        items = dict_items(episodes, "episodes")
        if not items:
            return []
        self._embed_missing(items, "task")
        rows, outcomes = [], []
        for n, e in enumerate(items):
            try:
                rid = opt_id(e.pop("id", None))
                created = opt_time(e.pop("created_at", None))
                e.pop("updated_at", None)
                values, vec = self._episode_row(e)
                if e:
                    raise InvalidArgumentError(f"unknown episode field(s): {', '.join(sorted(e))}")
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"episodes[{n}]: {exc}") from None
            rows.append((values, vec, rid, created))
            outcomes += [(s, bool(values["success"])) for s in json.loads(values["skills"])]
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
                        min_seq: int | None = None) -> list[SearchResult]:
        """The ``k`` most similar episodes; ``success=False`` keeps only failures."""
        filters = self._filters(min_reward, success, session_id, where)
        return self._search("episodes", task_or_vector, k, filters, threshold, ef, min_seq)

    # ---- skills -----------------------------------------------------------------------------
    def store_skill(self, name: str, description: str = "", *, signature: str | None = None,
                    code: str | None = None, success_rate: float = 0.0, uses: int = 0,
                    metadata: dict[str, Any] | None = None, embedding: Any = None,
                    id: int | None = None) -> int:
        """Store a skill (unique name); embeds ``"name: description"`` by default."""
        check_text("name", name, required=True)
        for fname, val in (("description", description), ("signature", signature),
                           ("code", code)):
            check_text(fname, val)
        if isinstance(uses, bool) or not isinstance(uses, (int, np.integer)) or uses < 0:
            raise InvalidArgumentError(f"uses must be an integer >= 0, got {uses!r}")
        values = {"name": name, "description": description or "", "signature": signature,
                  "code": code, "success_rate": check_rate(success_rate), "uses": int(uses),
                  "metadata": check_metadata(metadata)}
        vec = self._vector(embedding, f"{name}: {description or ''}")
        return self._write_rows("skills", [(values, vec, opt_id(id), None)])[0]

    def get_skill(self, id_or_name: int | str) -> Skill:
        """A skill by id or name (``KeyError`` if unknown)."""
        return self._get("skills", self._skill_id(id_or_name))

    def search_skills(self, query: str | Any, k: int = 5, *,
                      min_success_rate: float | None = None,
                      where: dict[str, Any] | None = None, threshold: float | None = None,
                      ef: int | None = None, min_seq: int | None = None
                      ) -> list[SearchResult]:
        """The ``k`` skills most similar to the query."""
        rate = None if min_success_rate is None else check_rate(min_success_rate)
        filters = self._filters(None, None, None, where)
        filters["min_reward"] = rate  # the skills' reward column is the success rate
        return self._search("skills", query, k, filters, threshold, ef, min_seq)

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
                threshold: float | None, ef: int | None, min_seq: int | None
                ) -> list[SearchResult]:
        hits = self._hits(name, self._query_vector(query), k, filters, threshold, ef, min_seq)
        rows = self.store.get(name, [i for i, _ in hits], with_embedding=False)
        return [SearchResult(i, 1.0 - d, d, to_record(name, rows[i])) for i, d in hits if i in rows]

    def _hits(self, name: str, q: np.ndarray, k: Any, filters: dict[str, Any],
              threshold: float | None, ef: int | None, min_seq: int | None
              ) -> list[tuple[int, float]]:
        """``(id, cosine distance)`` of the merged top-``k``, best first, over ``threshold``."""
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
        ids, dists = self._routed(lambda: self._scatter(name, q, int(k), ef, filters, want))
        hits = [(int(i), float(d)) for i, d in zip(ids, dists)]
        if threshold is not None:
            hits = [(i, d) for i, d in hits if 1.0 - d >= float(threshold)]
        return hits

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
        q = self._query_vector(query)
        return self._routed(lambda: self._scatter(collection, q, int(k), ef, f, want))

    def _candidates(self, shard: int, handles: list[Any]) -> list[tuple[int, Any]]:
        """Replicas of a shard to try, round-robin, suspects last."""
        n = len(handles)
        start = next(self._rr.setdefault(shard, itertools.count())) % max(n, 1)
        order = [(r % n) for r in range(start, start + n)]
        now = time.monotonic()
        good = [r for r in order if self._suspect.get(self.actor_name(shard, r), 0) <= now]
        bad = [r for r in order if r not in good]
        return [(r, handles[r]) for r in good + bad]

    def _mark_suspect(self, shard: int, replica: int) -> None:
        self._suspect[self.actor_name(shard, replica)] = time.monotonic() + _SUSPECT_SECONDS

    def _scatter(self, name: str, q: np.ndarray, k: int, ef: int | None,
                 filters: dict[str, Any], min_seq: int) -> tuple[np.ndarray, np.ndarray]:
        """Ask one replica per shard (retrying / hedging on others); merged top-k."""
        ef = self.ef_search if ef is None else int(ef)
        ef = max(ef, k)
        with self._lock:
            routing = dict(self._routing)
            ring_shards = list(self.ring.shards)
        results = self._fanout(
            routing, lambda _s, h, budget: h.search.remote(name, q, k, ef, filters, min_seq,
                                                           budget, ring_shards), min_seq)
        all_ids = np.concatenate([results[s][0] for s in routing]) if results else \
            np.zeros(0, np.int64)
        all_d = np.concatenate([results[s][1] for s in routing]) if results else \
            np.zeros(0, np.float32)
        order = np.lexsort((all_ids, all_d))
        seen: set[int] = set()
        out_i, out_d = [], []
        for j in order:  # dedupe: during a ring change a record may be in two shards
            i = int(all_ids[j])
            if i in seen:
                continue
            seen.add(i)
            out_i.append(i)
            out_d.append(float(all_d[j]))
            if len(out_i) == k:
                break
        return np.asarray(out_i, np.int64), np.asarray(out_d, np.float32)

    def _expand(self, frontier: list[int], direction: str, types: list[str] | None,
                min_seq: int) -> list[int]:
        """One graph hop from ``frontier``: each owning shard expands its nodes (one replica
        per shard, with the same retry / hedging as search); the sorted union."""
        return self._routed(lambda: self._expand_once(frontier, direction, types, min_seq))

    def _expand_once(self, frontier: list[int], direction: str, types: list[str] | None,
                     min_seq: int) -> list[int]:
        with self._lock:
            ring = self.ring
            routing = dict(self._routing)
        owner = ring.shards_for(frontier)
        parts = {s: [n for n, o in zip(frontier, owner) if o == s] for s in routing}
        parts = {s: p for s, p in parts.items() if p}
        ring_shards = list(ring.shards)
        results = self._fanout(
            {s: routing[s] for s in parts},
            lambda s, h, budget: h.expand.remote(parts[s], direction, types, min_seq, budget,
                                                 ring_shards), min_seq)
        return sorted({n for res in results.values() for n in res})

    def _fanout(self, routing: dict[int, list[Any]], call: Any, min_seq: int
                ) -> dict[int, Any]:
        """Run ``call(shard, handle, budget)`` on one replica of every shard in ``routing``,
        retrying on another replica after a failure and hedging after a slow answer, within
        ``search_timeout``; the results by shard."""
        deadline = time.monotonic() + self.search_timeout
        todo = {s: self._candidates(s, routing[s]) for s in routing}
        pending: dict[Any, tuple[int, int, float]] = {}  # ref -> (shard, replica, give_up_at)
        results: dict[int, Any] = {}
        errors: dict[int, list[str]] = {s: [] for s in routing}

        started: dict[Any, float] = {}

        def launch(s: int) -> bool:
            if not todo[s]:
                return False
            r, h = todo[s].pop(0)
            now = time.monotonic()
            left = max(0.05, deadline - now)
            budget = left / 2 if todo[s] else left  # keep time for another replica
            ref = call(s, h, budget)
            # hedge on another replica once this one is much slower than usual (a restarting
            # actor makes calls wait rather than fail), not only when its budget runs out
            patience = budget + 0.5
            if todo[s]:
                patience = min(patience, max(_MIN_HEDGE_SECONDS,
                                             _HEDGE_FACTOR * self._latency_ewma))
            pending[ref] = (s, r, now + patience)
            started[ref] = now
            return True

        for s in routing:
            if not launch(s):
                raise ClusterUnavailable(f"shard {s} has no replicas")
        while any(s not in results for s in routing):
            now = time.monotonic()
            if now > deadline:
                missing = [s for s in routing if s not in results]
                raise ClusterUnavailable(
                    f"cluster call timed out after {self.search_timeout:g}s waiting for shards "
                    f"{missing} (min_seq={min_seq}); errors: "
                    f"{ {s: errors[s] for s in missing} }")
            refs = list(pending)
            if not refs:  # every replica of some shard failed
                missing = [s for s in routing if s not in results]
                raise ClusterUnavailable(f"no replica of shards {missing} could answer: "
                                         f"{ {s: errors[s] for s in missing} }")
            wait_for = min(deadline, min(g for _, _, g in pending.values())) - now
            done, _ = ray.wait(refs, num_returns=1, timeout=max(0.01, wait_for))
            for ref in done:
                s, r, _ = pending.pop(ref)
                if s in results:
                    continue  # a hedged duplicate
                try:
                    results[s] = ray.get(ref)
                    took = time.monotonic() - started.get(ref, time.monotonic())
                    self._latency_ewma += 0.1 * (took - self._latency_ewma)
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    if type(cause).__name__ == "StaleRing":
                        raise _StaleRing(str(cause)) from None
                    errors[s].append(f"replica {r}: {type(cause).__name__}: "
                                     f"{str(cause).splitlines()[0][:200] if str(cause) else ''}")
                    self._mark_suspect(s, r)
                    if not any(ps == s for ps, _, _ in pending.values()):
                        launch(s)
            now = time.monotonic()
            for ref, (s, r, give_up) in list(pending.items()):
                if s in results:
                    pending.pop(ref)
                elif now > give_up and ref in pending:
                    # slow replica: keep waiting for it but hedge on another one
                    pending[ref] = (s, r, deadline)
                    self._mark_suspect(s, r)
                    errors[s].append(f"replica {r}: no answer in time")
                    launch(s)
        return results

    # ---- rebalancing ------------------------------------------------------------------------
    def add_shard(self) -> int:
        """Add a shard online; returns its id. See the module docstring."""
        self._check_open()
        self._reload_ring()
        with self._lock:
            old = self.ring
        new_id = max(old.shards) + 1
        while self._get_actor(new_id, 0) is not None:  # a removed shard's name may linger
            new_id += 1
        new = old.with_shard(new_id)
        handles = self._ensure_shard(new_id, new)
        tmp_routing = {**self._routing, new_id: handles}
        saved = self._routing
        self._routing = tmp_routing  # so _wait_ready can find them; searches use self.ring
        try:
            self._wait_ready([new_id], self.ready_timeout, every=True)
        except BaseException:
            self._routing = saved
            raise
        self.log.store_ring(new.to_dict())
        with self._lock:
            self.ring = new
            self._routing = tmp_routing
        refs = [h.set_ring.options(concurrency_group="control").remote(new.to_dict())
                for s in old.shards for h in tmp_routing[s]]
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except Exception as exc:  # a dead replica rebuilds with the stored ring
                log.warning("set_ring failed on a replica: %s", exc)
        return new_id

    def remove_shard(self, shard: int | None = None, timeout: float | None = None
                     ) -> dict[str, Any]:
        """Remove a shard online (default: the highest id); its keys move to the others.

        Every replica of the remaining shards first loads the records (and graph edges) it
        gains from PostgreSQL and starts routing by the smaller ring, while searches keep
        going to the old shard; then the ring is stored, this handle switches, and the
        removed shard's replicas and placement group are deleted. Another handle notices on
        its next call (a shard it names is gone) and reloads the ring.

        Refuses (``ClusterUnavailable``, nothing changed) unless every replica of the
        remaining shards is ready, and (``ValueError``) to remove the last shard or an
        unknown one. Returns ``{"shard", "ring", "loaded"}`` (records loaded per replica).
        """
        self._check_open()
        self._reload_ring()
        with self._lock:
            old = self.ring
        if shard is not None and (isinstance(shard, bool)
                                  or not isinstance(shard, (int, np.integer))):
            raise InvalidTypeError(f"shard must be a shard id (int) or None, got {shard!r}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InvalidArgumentError(
                f"timeout must be a positive number of seconds, got {timeout!r}")
        sid = max(old.shards) if shard is None else int(shard)
        if sid not in old.shards:
            raise InvalidArgumentError(f"shard {sid} is not on the ring {old.shards}")
        if len(old.shards) == 1:
            raise InvalidArgumentError("cannot remove the last shard of a cluster")
        new = old.without_shard(sid)
        wait = self.ready_timeout if timeout is None else float(timeout)
        keep = list(new.shards)
        statuses = self._statuses(keep, 5.0)
        bad = [(s, st.get("replica"), st.get("state")) for s in keep for st in statuses[s]
               if st.get("state") != "ready"]
        if bad:
            raise ClusterUnavailable(f"cannot remove shard {sid}: replicas not ready "
                                     f"(shard, replica, state): {bad}")
        handles = {(s, r): h for s in keep for r, h in enumerate(self._routing[s])}
        refs = {key: h.set_ring.options(concurrency_group="control").remote(new.to_dict())
                for key, h in handles.items()}
        loaded, failed = {}, {}
        for key, ref in refs.items():
            try:
                loaded[f"{key[0]}/{key[1]}"] = ray.get(ref, timeout=wait)["loaded"]
            except Exception as exc:
                failed[key] = f"{type(exc).__name__}: {exc}"[:300]
        if failed:  # undo: the replicas that switched drop the keys they loaded
            for key in loaded:
                s, r = (int(x) for x in key.split("/"))
                try:
                    ray.get(handles[(s, r)].set_ring.options(concurrency_group="control")
                            .remote(old.to_dict()), timeout=wait)
                except Exception as exc:  # pragma: no cover - it rebuilds by the stored ring
                    log.warning("could not restore the ring on shard %s replica %s: %s",
                                s, r, exc)
            raise ClusterUnavailable(f"cannot remove shard {sid}: replicas failed to take "
                                     f"its keys: {failed}")
        self.log.store_ring(new.to_dict())
        with self._lock:
            self.ring = new
            self._routing = {s: self._routing[s] for s in keep}
        # a replica that restarted meanwhile rebuilt by the old ring: move it too
        for s, reps in self._statuses(keep, 5.0).items():
            for st in reps:
                if st.get("state") == "ready" and st.get("ring_shards") != keep:
                    ray.get(handles[(s, int(st["replica"]))].set_ring.options(
                        concurrency_group="control").remote(new.to_dict()), timeout=wait)
        for r in range(self.replicas):
            actor = self._get_actor(sid, r)
            if actor is not None:
                ray.kill(actor, no_restart=True)
        try:
            ray.util.remove_placement_group(
                ray.util.get_placement_group(f"{self.namespace}/shard{sid}/pg"))
        except ValueError:  # already gone
            pass
        return {"shard": sid, "ring": new.to_dict(), "loaded": loaded}

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
        self._reload_ring()
        statuses = self._statuses(list(self.ring.shards), timeout)
        applied = []
        for s, reps in statuses.items():
            for st in reps:
                if not st.get("alive") or st.get("applied_seq") is None:
                    raise ClusterUnavailable(
                        f"cannot compact the log: shard {s} replica {st.get('replica')} is "
                        f"{st.get('state')} ({st.get('error') or st.get('last_error')})")
                applied.append(int(st["applied_seq"]) if st.get("state") == "ready" else 0)
        upto = min(applied, default=0)
        deleted = self.log.truncate(upto) if upto > 0 else 0
        return {"deleted": deleted, "upto": upto, "oldest": self.log.min_seq()}

    # ---- introspection ----------------------------------------------------------------------
    def log_seq(self) -> int:
        """The last committed log sequence number (anyone's writes)."""
        return self.log.max_seq()

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """Log position, ring, every replica (state, applied seq, lag, node) and the nodes."""
        self._reload_ring()
        seq = self.log.max_seq()
        shards = []
        statuses = self._statuses(list(self.ring.shards), timeout)
        for s in self.ring.shards:
            reps = []
            for st in statuses[s]:
                applied = st.get("applied_seq")
                reps.append({
                    "replica": st.get("replica"), "state": st.get("state"),
                    "applied_seq": applied,
                    "lag": None if applied is None else max(0, seq - int(applied)),
                    "vectors": st.get("vectors"), "graph": st.get("graph"),
                    "node_id": st.get("node_id"),
                    "node_ip": st.get("node_ip"), "pid": st.get("pid"),
                    "alive": bool(st.get("alive")), "last_error": st.get("last_error"),
                    "error": st.get("error")})
            shards.append({"shard": s, "replicas": reps})
        nodes = [{"node_id": n.get("NodeID"), "ip": n.get("NodeManagerAddress"),
                  "alive": bool(n.get("Alive")), "resources": n.get("Resources", {})}
                 for n in ray.nodes()]
        return {"log_seq": seq, "ring": self.ring.to_dict(), "namespace": self.namespace,
                "shards": shards, "nodes": nodes}

    def stats(self) -> dict[str, Any]:
        """Counts from PostgreSQL plus the cluster layout."""
        self._check_open()
        return {"store": "postgres+ray", "dim": self.dim,
                "embedder": getattr(self.embedder, "name", type(self.embedder).__name__),
                **{k: self.store.count(k) for k in _KINDS},
                "log_seq": self.log.max_seq(), "last_seq": self.last_seq,
                "shards": list(self.ring.shards), "replicas": self.replicas,
                "namespace": self.namespace, "db_bytes": self.store.file_size(),
                "learning": self.learning.stats()}


class _StaleRing(Exception):
    """Internal: a replica reported that this handle's ring is out of date."""
