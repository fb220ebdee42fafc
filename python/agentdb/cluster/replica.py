"""One replica of one shard: a native HNSW index + filter columns over the records the hash
ring assigns to the shard, kept current by following the PostgreSQL log.

:class:`ShardReplica` is a plain class; :func:`remote_class` wraps it as a Ray actor
(``max_restarts=-1``, ``max_task_retries=0``, a *threaded* actor with
``max_concurrency=4`` plus a 2-thread ``"control"`` concurrency group for status calls, so
searches run while the log is applied -- the native index allows
concurrent searches during ``add`` / ``remove``).

Life cycle (the same on first start and after Ray restarts a dead actor, whose memory is gone):

1. ``state = "building"``: remember ``start = max(seq)`` of the log, then read every
   collection with one binary ``COPY`` (``export_vectors``) plus ``scalar_columns`` and keep
   the rows whose ``ring.shard_for(id) == shard``.
2. Catch up: apply log entries with ``seq > start``. Rows read in step 1 may already include
   some of them; applying an entry re-reads the record's *current* row (or removes it when it
   is gone), so replay is idempotent and the result converges.
3. ``state = "ready"``; a background thread keeps applying new entries in seq order, woken by
   ``LISTEN`` notifications and polling every ``poll_interval`` seconds anyway (notifications
   can be missed).

``search`` refuses (``ReplicaNotReady``) until the replica is ready, and waits until
``applied_seq >= min_seq`` (``ReplicaLagging`` after ``timeout``), so a caller that passes the
seq of its last write reads its writes.

Which ring: the ring in ``cluster_meta`` when it contains this shard, else the ring the actor
was created with (a shard being added is not in the stored ring until it is ready).
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from typing import Any

import numpy as np

from ..engines.loader import backend
from ..errors import InvalidArgumentError
from ..storage.columns import FilterColumns
from .graph import GraphSlice
from .log import ClusterLog
from .ring import HashRing

__all__ = ["ReplicaLagging", "ReplicaNotReady", "ShardReplica", "StaleRing", "remote_class"]

log = logging.getLogger("agentdb.cluster")

COLLECTIONS = ("patterns", "episodes", "skills")


class ReplicaNotReady(RuntimeError):
    """The replica is still building its index (or failed to); ask another replica."""


class ReplicaLagging(TimeoutError):
    """The replica did not apply the log up to the requested ``min_seq`` in time."""


class StaleRing(RuntimeError):
    """The caller routes by a ring that lacks shards this replica knows: it must reload the
    ring (``cluster_meta``) and search again, or it would miss records that moved."""


class ShardReplica:
    """The index of one shard; see the module docstring. ``config`` keys: ``url``,
    ``schema``, ``table_prefix``, ``dim``, ``shard``, ``replica``, ``ring`` (dict), and
    optionally ``M`` (16), ``ef_construction`` (200), ``ef_search`` (64), ``threads`` (1),
    ``poll_interval`` (0.15 s), ``batch`` (2000 log entries per apply)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.cfg = dict(config)
        self.shard = int(config["shard"])
        self.replica = int(config["replica"])
        self.dim = int(config["dim"])
        self.state = "building"
        self.applied_seq = 0
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.build_seconds: float | None = None
        self.last_error: str | None = None
        self.ring = HashRing.from_dict(config["ring"])
        self.indexes: dict[str, Any] = {}
        self.graph = GraphSlice(self._owned_mask)
        self.attrs: dict[str, FilterColumns] = {}
        #: the shard's records without their vectors, by collection and id, as of
        #: ``applied_seq``: a search returns its hits' rows, so the caller needs no read
        #: of PostgreSQL
        self.rows: dict[str, dict[int, dict[str, Any]]] = {}
        self._apply_lock = threading.Lock()
        self._advanced = threading.Condition()
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._store: Any = None
        self._log: ClusterLog | None = None
        self._fast: Any = None  # the fast path's listener (:mod:`.fastpath`), once ready
        self._thread = threading.Thread(target=self._main, name=f"shard{self.shard}-follow",
                                        daemon=True)
        self._thread.start()

    # ---- building -----------------------------------------------------------------------------
    def _new_index(self) -> Any:
        c = self.cfg
        return backend.HNSWIndex(self.dim, metric="cosine", M=int(c.get("M", 16)),
                                 ef_construction=int(c.get("ef_construction", 200)),
                                 ef_search=int(c.get("ef_search", 64)),
                                 threads=int(c.get("threads", 1)))

    def _open(self) -> None:
        from ..storage.postgres import PostgresStore

        c = self.cfg
        if self._store is None:
            self._store = PostgresStore(c["url"], self.dim, schema=c.get("schema", "public"),
                                        table_prefix=c.get("table_prefix", ""), pool_size=3)
        if self._log is None:
            self._log = ClusterLog(c["url"], schema=c.get("schema", "public"),
                                   table_prefix=c.get("table_prefix", ""))

    def _pick_ring(self) -> None:
        assert self._log is not None
        stored = self._log.load_ring()
        if stored is not None and self.shard in stored.get("shards", []):
            self.ring = HashRing.from_dict(stored)

    def _owned_mask(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros(0, bool)
        return self.ring.shards_for(ids.tolist()) == self.shard

    def _build(self) -> None:
        t0 = time.perf_counter()
        self._open()
        assert self._log is not None and self._store is not None
        self._pick_ring()
        start = self._log.max_seq()  # before reading the rows: replay covers the overlap
        indexes, attrs, rows = {}, {}, {}
        for name in COLLECTIONS:
            index = self._new_index()
            ids, vecs = self._store.export_vectors(name)
            mask = self._owned_mask(ids)
            if mask.any():
                index.add(ids[mask], vecs[mask])
            cols = FilterColumns()
            rows[name] = self._load_rows(name, ids[mask].tolist())
            for rid, row in rows[name].items():
                cols.set_row(name, rid, row)
            indexes[name], attrs[name] = index, cols
        graph = GraphSlice(self._owned_mask)
        batch: dict[int, tuple[str, list[int], list[int], float, float, dict[str, Any]]] = {}
        for eid, etype, tail, head, conf, ts, props in self._store.graph_edges():
            batch[eid] = (etype, tail, head, conf, ts, props)
        graph.put_edges(batch)
        graph.g.compact()
        with self._apply_lock:
            self.indexes, self.attrs, self.graph = indexes, attrs, graph
            self.rows = rows
            self._set_applied(start)
        while self._apply_batch():  # catch up before serving
            pass
        self.build_seconds = time.perf_counter() - t0

    def _load_rows(self, name: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The rows of ``ids`` (expired ones too, without vectors), read in chunks."""
        assert self._store is not None
        out: dict[int, dict[str, Any]] = {}
        for lo in range(0, len(ids), 20_000):
            out.update(self._store.get(name, ids[lo:lo + 20_000], with_embedding=False,
                                       expired=True))
        return out

    # ---- following the log --------------------------------------------------------------------
    def _set_applied(self, seq: int) -> None:
        with self._advanced:
            self.applied_seq = seq
            self._advanced.notify_all()

    def _apply_batch(self) -> bool:
        """Apply the next batch of log entries; True when there may be more."""
        assert self._log is not None and self._store is not None
        batch = int(self.cfg.get("batch", 2000))
        entries = self._log.read_since(self.applied_seq, batch)
        if not entries:
            return False
        with self._apply_lock:
            last: dict[str, dict[int, str]] = {}
            for e in entries:  # in seq order: the last op per id wins
                if e.collection in self.indexes or e.collection == "graph_edges":
                    last.setdefault(e.collection, {})[e.id] = e.op
            edge_ops = last.pop("graph_edges", None)
            if edge_ops:
                ups = [i for i, op in edge_ops.items() if op == "upsert"]
                rows = self._store.get_graph_edges(ups) if ups else {}
                self.graph.put_edges(rows)
                self.graph.remove_edges([i for i in edge_ops if i not in rows])
            for name, ops in last.items():
                ids = np.fromiter(ops, np.int64, len(ops))
                owned = ids[self._owned_mask(ids)]
                index, cols = self.indexes[name], self.attrs[name]
                ups = [int(i) for i in owned if ops[int(i)] == "upsert"]
                # expired rows too: their columns carry the expiry the searches check
                rows = self._store.get(name, ups, expired=True) if ups else {}
                add_ids = [i for i in ups if i in rows]
                kept = self.rows.setdefault(name, {})
                if add_ids:
                    index.add(np.asarray(add_ids, np.int64),
                              np.stack([rows[i]["embedding"] for i in add_ids]))
                    for i in add_ids:
                        cols.set_row(name, i, rows[i])
                        kept[i] = {c: v for c, v in rows[i].items()
                                   if c not in ("embedding", "gen")}
                gone = [int(i) for i in owned if int(i) not in rows]
                present = [i for i in gone if index.contains(i)]
                if present:
                    index.remove(present)
                for i in gone:
                    cols.remove(i)
                    kept.pop(i, None)
            self._set_applied(entries[-1].seq)
        return len(entries) == batch

    def _main(self) -> None:
        delay = 0.2
        while not self._stop.is_set():  # build, retrying while PostgreSQL is unreachable
            try:
                self._build()
                self.state, self.ready_at, self.last_error = "ready", time.time(), None
                break
            except Exception as exc:  # keep the actor alive; status() shows the error
                self.last_error = f"build failed: {type(exc).__name__}: {exc}"
                log.warning("shard %s replica %s: %s", self.shard, self.replica,
                            self.last_error)
                self.state = "building"
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        assert self._log is not None
        self._start_fast_path()
        listener = self._log.listener()
        poll = float(self.cfg.get("poll_interval", 0.15))
        try:
            while not self._stop.is_set():
                try:
                    while self._apply_batch():
                        pass
                    self.last_error = None
                except Exception as exc:
                    self.last_error = f"apply failed: {type(exc).__name__}: {exc}"
                    log.warning("shard %s replica %s: %s", self.shard, self.replica,
                                self.last_error)
                    self._stop.wait(0.5)
                    continue
                if self._poke.is_set():
                    self._poke.clear()
                    continue
                listener.wait(poll)
        finally:
            listener.close()

    def _start_fast_path(self) -> None:
        """Listen for searches on a TCP port of this node (:mod:`.fastpath`), when the
        cluster has a token; a failure only leaves the Ray path."""
        from .fastpath import Server

        try:
            assert self._log is not None
            token = self._log.get_meta("fastpath_token")
            if not token:
                return
            try:
                import ray

                host = ray.util.get_node_ip_address()
            except Exception:  # not inside Ray (tests of the plain class)
                host = "127.0.0.1"
            self._fast = Server(host, token, self._search_entries, (self.shard, self.replica))
        except Exception as exc:  # noqa: BLE001 - searches still work through Ray
            log.warning("shard %s replica %s: no fast path: %s", self.shard, self.replica, exc)

    # ---- actor methods ------------------------------------------------------------------------
    def ping(self) -> bool:
        """Liveness probe."""
        return True

    def fast_address(self) -> tuple[str, int] | None:
        """Where this replica answers fast-path searches (:mod:`.fastpath`), or None."""
        return None if self._fast is None else self._fast.address

    def _serve_at(self, min_seq: int, timeout: float) -> None:
        """Raise unless ready; wait until the log is applied up to ``min_seq``."""
        if self.state != "ready":
            raise ReplicaNotReady(f"shard {self.shard} replica {self.replica} is "
                                  f"{self.state}" + (f" ({self.last_error})"
                                                     if self.last_error else ""))
        if self.applied_seq < min_seq:
            self._poke.set()
            deadline = time.monotonic() + max(0.0, float(timeout))
            with self._advanced:
                while self.applied_seq < min_seq:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ReplicaLagging(
                            f"shard {self.shard} replica {self.replica}: applied seq "
                            f"{self.applied_seq} < {min_seq} after {timeout:g}s"
                            + (f" ({self.last_error})" if self.last_error else ""))
                    self._advanced.wait(min(left, 0.05))

    def _check_ring(self, ring_shards: list[int] | None) -> None:
        if ring_shards is not None and not set(self.ring.shards) <= set(ring_shards):
            raise StaleRing(f"caller ring {sorted(ring_shards)} lacks shards of "
                            f"{self.ring.shards}")

    def expand(self, nodes: list[int], direction: str = "out", types: list[str] | None = None,
               min_seq: int = 0, timeout: float = 5.0, ring_shards: list[int] | None = None
               ) -> list[int]:
        """One graph hop from the given nodes this shard owns (see :class:`GraphSlice`),
        with the same readiness / ``min_seq`` / ring checks as :meth:`search`."""
        self._check_ring(ring_shards)
        self._serve_at(min_seq, timeout)
        with self._apply_lock:
            return self.graph.expand(nodes, direction, types)

    def search_packed(self, request: bytes) -> bytes:
        """:meth:`search` with its arguments in one pickled tuple (from
        :func:`pack_search`, whose last field asks for the hits' rows too), answered as one
        pickled ``(ids, distances, rows or None)``: what the scatter sends, so that Ray
        serialises one bytes object each way instead of eight arguments and two arrays
        (measured: a third of a search's cost on the caller, and ~0.2 ms per call)."""
        *args, with_rows = pickle.loads(request)
        ids, dists = self.search(*args)
        return pickle.dumps((ids, dists, self._rows_of(args[0], ids) if with_rows else None),
                            protocol=pickle.HIGHEST_PROTOCOL)

    def search_batch_packed(self, request: bytes) -> bytes:
        """Several searches in one call (from :func:`pack_batch`): the readiness, ``min_seq``
        and ring checks once, then each ``(collection, q, k, ef, filters, with_rows)`` in
        order; the answers (as :meth:`search_packed`'s) in the same order, pickled
        together. The scatter sends concurrent searches this way."""
        entries, min_seq, timeout, ring_shards = pickle.loads(request)
        return pickle.dumps(self._search_entries(min_seq, timeout, ring_shards, entries),
                            protocol=pickle.HIGHEST_PROTOCOL)

    def _search_entries(self, min_seq: int, timeout: float, ring_shards: list[int] | None,
                        entries: list[tuple[Any, ...]]
                        ) -> list[tuple[np.ndarray, np.ndarray, Any]]:
        """The checks once, then each ``(collection, q, k, ef, filters, with_rows)``."""
        self._check_ring(ring_shards)
        self._serve_at(min_seq, timeout)
        out = []
        for *e, with_rows in entries:
            ids, dists = self._search_local(*e)
            out.append((ids, dists, self._rows_of(e[0], ids) if with_rows else None))
        return out

    def _rows_of(self, collection: str, ids: np.ndarray) -> list[dict[str, Any] | None]:
        """The kept rows of ``ids`` (None for one this replica does not hold)."""
        kept = self.rows.get(collection, {})
        return [kept.get(int(i)) for i in ids.tolist()]

    def search(self, collection: str, q: Any, k: int, ef: int | None = None,
               filters: dict[str, Any] | None = None, min_seq: int = 0,
               timeout: float = 5.0, ring_shards: list[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest records of this shard (ids int64, cosine distances float32),
        after waiting until the log is applied up to ``min_seq``.

        ``filters``: ``min_reward``, ``success``, ``session_id``, ``where`` (as
        ``FilterColumns.select``). Raises :class:`ReplicaNotReady` while building and
        :class:`ReplicaLagging` when ``min_seq`` is not reached within ``timeout`` seconds;
        :class:`StaleRing` when ``ring_shards`` (the caller's ring) misses one of ours.
        """
        self._check_ring(ring_shards)
        self._serve_at(min_seq, timeout)
        return self._search_local(collection, q, k, ef, filters)

    def _search_local(self, collection: str, q: Any, k: int, ef: int | None,
                      filters: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` once the replica may answer."""
        index = self.indexes[collection]
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        f = filters or {}
        allowed = None
        if any(f.get(key) not in (None, {}) for key in ("min_reward", "success", "session_id",
                                                          "where")) or \
                self.attrs[collection].has_expired(time.time()):  # expired: left out
            allowed = self.attrs[collection].select(f.get("min_reward"), f.get("success"),
                                                    f.get("session_id"), f.get("where") or None)
            if allowed.size == 0:
                return empty
        n = len(index)
        if n == 0:
            return empty
        ids, dists = index.search(np.asarray(q, np.float32), k=min(int(k), n), ef=ef,
                                  allowed=allowed)
        ids = np.asarray(ids, np.int64)
        keep = ids >= 0
        return ids[keep], np.asarray(dists, np.float32)[keep]

    def set_ring(self, ring: dict[str, Any]) -> dict[str, int]:
        """Route by a new ring: drop the records this shard no longer owns and load the ones
        it newly owns from PostgreSQL; returns ``{"dropped", "loaded"}``.

        Growing the ring (:meth:`ClusterDB.add_shard`) only drops; shrinking it
        (:meth:`ClusterDB.remove_shard`) only loads. Loading runs with the log paused at
        ``applied_seq``, after the rows are read: replaying from there re-reads every changed
        row, so a change committed meanwhile is applied either way. Only a ``ready`` replica
        changes its ring (a building one picks the stored ring when it starts).
        """
        new = HashRing.from_dict(ring)
        if self.shard not in new.shards:
            raise InvalidArgumentError(f"shard {self.shard} is not on the new ring {new}")
        if self.state != "ready":
            raise ReplicaNotReady(f"shard {self.shard} replica {self.replica} is "
                                  f"{self.state}: it cannot change its ring now")
        assert self._store is not None
        dropped = loaded = 0
        with self._apply_lock:
            old, self.ring = self.ring, new
            grown = set(new.shards) >= set(old.shards)  # then this shard gains no keys
            for name, index in self.indexes.items():
                ids = np.asarray(index.ids(), np.int64)
                gone = ids[~self._owned_mask(ids)] if len(ids) else ids
                if len(gone):
                    index.remove(gone.tolist())
                    for i in gone.tolist():
                        self.attrs[name].remove(int(i))
                        self.rows.get(name, {}).pop(int(i), None)
                    dropped += len(gone)
                if grown:
                    continue
                all_ids, vecs = self._store.export_vectors(name)
                gained = self._owned_mask(all_ids) & (old.shards_for(all_ids.tolist())
                                                      != self.shard)
                if gained.any():
                    index.add(all_ids[gained], vecs[gained])
                    for i, row in self._load_rows(name, all_ids[gained].tolist()).items():
                        self.attrs[name].set_row(name, i, row)
                        self.rows.setdefault(name, {})[i] = row
                    loaded += int(gained.sum())
            if not grown:  # the edges touching the nodes it gained
                self.graph.put_edges({eid: (etype, tail, head, conf, ts, props)
                                      for eid, etype, tail, head, conf, ts, props
                                      in self._store.graph_edges()})
        return {"dropped": dropped, "loaded": loaded}

    def status(self) -> dict[str, Any]:
        """State, applied seq, sizes and where this replica runs."""
        try:
            import ray

            ctx = ray.get_runtime_context()
            node_id: str | None = ctx.get_node_id()
            node_ip: str | None = ray.util.get_node_ip_address()
        except Exception:  # not inside Ray (tests of the plain class)
            node_id, node_ip = None, None
        return {
            "shard": self.shard, "replica": self.replica, "state": self.state,
            "applied_seq": int(self.applied_seq),
            "vectors": int(sum(len(i) for i in self.indexes.values())),
            "collections": {n: len(i) for n, i in self.indexes.items()},
            "ring_shards": list(self.ring.shards),
            "graph": self.graph.stats(),
            "node_id": node_id, "node_ip": node_ip, "pid": os.getpid(),
            "started_at": self.started_at, "ready_at": self.ready_at,
            "build_seconds": self.build_seconds, "last_error": self.last_error,
        }

    def stop(self) -> None:
        """Stop following the log and close connections (used by tests of the plain class)."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self._fast is not None:
            self._fast.close()
        if self._store is not None:
            self._store.close()
        if self._log is not None:
            self._log.close()


def pack_search(collection: str, q: np.ndarray, k: int, ef: int | None,
                filters: dict[str, Any] | None, min_seq: int, timeout: float,
                ring_shards: list[int] | None, with_rows: bool = False) -> bytes:
    """The arguments of :meth:`ShardReplica.search` (and whether to send the hits' rows) as
    one bytes object (:meth:`ShardReplica.search_packed`).

    >>> args = pickle.loads(pack_search("patterns", np.ones(2, np.float32), 5, None, {}, 0,
    ...                                 1.0, [0]))
    >>> args[0], args[2], args[-2:]
    ('patterns', 5, ([0], False))
    """
    return pickle.dumps((collection, np.asarray(q, np.float32), int(k), ef, filters,
                         int(min_seq), float(timeout), ring_shards, bool(with_rows)),
                        protocol=pickle.HIGHEST_PROTOCOL)


def pack_batch(entries: list[tuple[str, np.ndarray, int, int | None, dict[str, Any], bool]],
               min_seq: int, timeout: float, ring_shards: list[int] | None) -> bytes:
    """The request of :meth:`ShardReplica.search_batch_packed`: ``(collection, q, k, ef,
    filters, with_rows)`` per search, and the checks they share.

    >>> req = pack_batch([("patterns", np.ones(2, np.float32), 3, None, {}, False)], 7, 1.0,
    ...                  None)
    >>> pickle.loads(req)[1:]
    (7, 1.0, None)
    """
    return pickle.dumps(([(c, np.asarray(q, np.float32), int(k), ef, f, bool(r))
                          for c, q, k, ef, f, r in entries], int(min_seq), float(timeout),
                         ring_shards), protocol=pickle.HIGHEST_PROTOCOL)


def remote_class() -> Any:
    """:class:`ShardReplica` as a Ray actor class (threaded, restarted forever by Ray,
    tasks never retried: a search that failed is re-routed by the caller instead).

    Searches use the default group (4 threads); callers send ``status`` / ``ping`` /
    ``set_ring`` to the ``"control"`` group (``h.status.options(concurrency_group="control")``)
    so they are answered even while four searches wait for the log to catch up."""
    import ray

    return ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=4,
                      concurrency_groups={"control": 2})(ShardReplica)
