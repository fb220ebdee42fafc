"""Causal memory: events and what caused what, as a hypergraph with a Cypher front end.

Topology lives in the native CSR hypergraph (``agentdb._native.Hypergraph``, or the numpy
fallback); node and edge rows live in the store (tables ``graph_nodes``, ``graph_edges``), so
they survive restarts. An embedded store keeps a snapshot of the CSR, the edge columns and the
property indexes beside its file (:mod:`agentdb.graph.snapshot`), so a large graph opens in a
fraction of a second; property maps are read from the store when first needed and cached
(:mod:`agentdb.graph.tables`). A hyperedge has a type, a tail (causes), a head (effects), a
confidence in [0, 1] and a timestamp. Cypher sees the binary projection: a hyperedge matches
``(a)-[:TYPE]->(b)`` for every ``a`` in its tail and ``b`` in its head.

>>> import agentdb
>>> db = agentdb.open(":memory:", dim=8)
>>> g = db.graph
>>> a = g.add_event(type="root_cause", name="disk full")
>>> b = g.add_event(type="symptom", name="writes fail")
>>> c = g.add_event(type="outcome", name="job crashed")
>>> _ = g.add_causal_chain([a, b, c], confidence=0.9)
>>> rows = g.query("MATCH (x:Event)-[:CAUSED_BY*1..3]->(y:Event {name: $n}) "
...                "RETURN x.name AS cause ORDER BY cause", {"n": "job crashed"})
>>> [r["cause"] for r in rows]
['disk full', 'writes fail']
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from ..engines import loader as _loader
from ..errors import (
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
    QueryCancelledError,
    QueryTimeoutError,
)
from ..storage import SQLiteStore
from ..storage.events import EventBus
from .checks import (
    check_confidence,
    check_edge,
    check_props,
    check_time,
    index_key,
    link_records,
    same_value,
)
from .cypher import CypherError, execute_stats
from .cypher.budget import QueryBudget, check_limits
from .cypher.budget import active as active_budget
from .cypher.executor import PlanCache
from .cypher.graphview import UNBOUNDED_HOPS
from .loading import LARGE as _LARGE
from .loading import GraphParts, build_index, snapshot_of, uses_snapshot
from .loading import load as _load_parts
from .locks import SharedLock
from .snapshot import write as _write_snapshot

__all__ = ["CausalMemoryGraph", "MAX_PATH_HOPS"]

#: Longest variable-length path the engine enumerates (``*`` means ``*1..MAX_PATH_HOPS``).
MAX_PATH_HOPS = 64
_PATH_LIMIT = 200_000
_WRITES = re.compile(r"\b(CREATE|MERGE|SET|DELETE|REMOVE)\b", re.IGNORECASE)


class KHops(NamedTuple):
    """Per-seed k-hop results as flat arrays: seed ``i`` reaches ``nodes[offsets[i]:
    offsets[i + 1]]`` at ``hops[...]`` hops (see :meth:`CausalMemoryGraph.khop_batch`)."""

    offsets: np.ndarray
    nodes: np.ndarray
    hops: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """How many nodes each seed reaches."""
        return np.diff(self.offsets)

    def of(self, i: int) -> dict[int, int]:
        """Seed ``i``'s ``{node: min hops}`` (what :meth:`CausalMemoryGraph.khop` gives)."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return dict(zip(self.nodes[lo:hi].tolist(), self.hops[lo:hi].tolist()))


class CausalMemoryGraph:
    """Events and causal hyperedges with persistence, property indexes and Cypher.

    Implements :class:`agentdb.graph.cypher.GraphView`. Obtain it as ``db.graph``.
    """

    def __init__(self, store: SQLiteStore, events: EventBus | None = None) -> None:
        self._store = store
        self._events = events
        # writes hold it alone, Cypher reads share it (agentdb.graph.locks)
        self._lock = SharedLock()
        self._cache_lock = threading.Lock()  # the indexed-lookup cache (_found)
        self._tx: Any = None
        self._query_timeout: float | None = None
        self._query_max_rows: int | None = None
        #: compiled Cypher plans by query text (agentdb.graph.cypher.executor.PlanCache)
        self.plan_cache = PlanCache()
        self.plan_generation = 0  # changes when the indexes do: cached plans chose by them
        self._load()

    # ---- loading ------------------------------------------------------------------------------
    def _load(self) -> None:
        """(Re)read the graph: the snapshot and what came after it, or every row."""
        parts = _load_parts(self._store)
        self._parts: GraphParts = parts
        self._g = parts.g
        self._nodes = parts.nodes
        self._edges = parts.edges
        self._index = parts.indexes
        self.plan_generation += 1
        self._gen = getattr(self, "_gen", 0) + 1
        self._found: dict[Any, tuple[int, tuple[int, ...]]] = {}
        self._ids_cache: dict[str | None, tuple[int, list[int]]] = {}
        self._ends_arr: tuple[Any, np.ndarray] | None = None
        node_ids = self._g.node_ids()
        edge_ids = self._edges.ids()
        self._next_node = int(node_ids[-1]) + 1 if len(node_ids) else 1
        self._next_edge = int(edge_ids[-1]) + 1 if len(edge_ids) else 1
        # a snapshot to (re)write on the next checkpoint: rebuilt or caught up here
        self._dirty = parts.source == "rows" or parts.replayed > 0
        if (parts.source == "rows" and parts.rows >= _LARGE and not self._store.readonly
                and self._tx is None):
            self.save_snapshot()  # a rebuild this large is worth keeping at once

    def _type_codes(self, types: list[str] | None) -> list[int] | None:
        if types is None:
            return None
        codes = self._edges.codes
        return [codes[t] for t in types if t in codes]

    # ---- snapshot -----------------------------------------------------------------------------
    def save_snapshot(self) -> bool:
        """Write the graph's snapshot beside an embedded store if the graph changed since the
        last one (``db.checkpoint()`` and ``db.close()`` call it); True if written. The next
        open then reads the snapshot and replays only later rows, instead of every row.

        >>> import agentdb, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "g.db")
        >>> db = agentdb.open(path, dim=8); _ = db.graph.add_event(name="a")
        >>> db.graph.save_snapshot(), os.path.exists(path + ".graph")
        (True, True)
        >>> db.close(); db = agentdb.open(path, dim=8); db.graph.stats()["loaded_from"]
        'snapshot'
        """
        store = self._store
        if not uses_snapshot(store) or store.readonly or not self._dirty:
            return False
        with self._lock:
            if self._g.num_nodes() == 0:
                return False  # nothing to save: opening an empty graph costs nothing
            token = uuid.uuid4().hex
            _write_snapshot(store.path, self._g,
                            snapshot_of(self._parts, store.generation, token))
            store.set_meta("graph_snapshot", token)  # only now does the snapshot count
            self._dirty = False
        return True

    # ---- property indexes ---------------------------------------------------------------------
    def _build_index(self, label: str, prop: str) -> None:
        self._index[(label, prop)] = build_index(self._parts, label, prop)
        self._dirty = True
        self.plan_generation += 1

    def _index_update(self, nid: int, old_labels: list[str], old_props: dict[str, Any],
                      new_labels: list[str], new_props: dict[str, Any]) -> None:
        for (label, prop), ix in self._index.items():
            if label in old_labels and prop in old_props:
                ix.remove(nid, old_props[prop])
            if label in new_labels and prop in new_props:
                ix.add(nid, new_props[prop])

    def create_index(self, label: str, prop: str) -> None:
        """Declare a property index (persisted); the Cypher planner uses it for lookups.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> g.create_index("Event", "type"); g.has_index("Event", "type")
        True
        """
        if not label or not prop or not isinstance(label, str) or not isinstance(prop, str):
            raise InvalidArgumentError("create_index needs a label and a property name")
        with self._lock:
            self._store.add_graph_index(label, prop)
            self._build_index(label, prop)

    def indexes(self) -> list[tuple[str, str]]:
        """Declared (label, property) indexes."""
        return sorted(self._index)

    # ---- transactions -------------------------------------------------------------------------
    def _bind(self, w: Any) -> None:
        """Point lazy property reads at the open write transaction (None: at a reader)."""
        self._tx = w
        self._nodes.conn = self._edges.conn = w

    @contextmanager
    def _write(self) -> Iterator[Any]:
        self._gen += 1  # any write invalidates the find_nodes cache
        self._dirty = True
        if self._tx is not None:
            yield self._tx
            return
        with self._lock, self._store.write() as w:
            self._bind(w)
            try:
                yield w
            finally:
                self._bind(None)

    @contextmanager
    def transaction(self) -> Iterator[CausalMemoryGraph]:
        """Group writes in one SQLite transaction; on an exception nothing is kept.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> with g.transaction():
        ...     a = g.add_event(name="a"); b = g.add_event(name="b")
        >>> g.stats()["nodes"]
        2
        """
        with self._lock:
            if self._tx is not None:
                yield self
                return
            try:
                with self._store.write() as w:
                    self._bind(w)
                    try:
                        yield self
                    finally:
                        self._bind(None)
            except BaseException:
                self._load()  # memory may hold writes that were rolled back: re-read
                raise

    # ---- GraphView: reads ---------------------------------------------------------------------
    def node_ids(self, label: str | None = None) -> list[int]:
        """Ids of all nodes, or of those with ``label`` (ascending; the list is kept until the
        next write and shared by the callers: do not modify it)."""
        hit = self._ids_cache.get(label)
        if hit is not None and hit[0] == self._gen:
            return hit[1]
        gen = self._gen
        ids = self._g.node_ids().tolist() if label is None else self._nodes.with_label(label)
        if len(self._ids_cache) >= 8:  # label lists can be large: keep a few
            self._ids_cache.clear()
        self._ids_cache[label] = (gen, ids)
        return ids

    def edge_ids(self) -> list[int]:
        """Ids of every hyperedge (ascending).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b = g.add_event(), g.add_event(); e = g.add_causal_edge([a], [b])
        >>> g.edge_ids() == [e]
        True
        """
        return [int(e) for e in self._edges.ids().tolist()]

    def find_nodes(self, label: str | None, props: dict[str, Any]) -> list[int]:
        """Nodes with ``label`` and all of ``props`` (through an index when one exists)."""
        return list(self.index_lookup(label, props))

    def index_lookup(self, label: str | None, props: dict[str, Any]) -> Sequence[int]:
        """:meth:`find_nodes` as an immutable tuple; indexed lookups are cached until the next
        write (the same tuple comes back), so a query repeated with the same parameters does
        not re-verify thousands of candidates."""
        ck: Any = None
        if label is not None and all(index_key(v) is not None for v in props.values()):
            ck = (label, tuple(sorted((k, isinstance(v, bool), index_key(v))
                                      for k, v in props.items())))
            with self._cache_lock:
                hit = self._found.get(ck)
                if hit is not None and hit[0] == self._gen:
                    return hit[1]
        with self._lock.shared():
            gen = self._gen
            out = tuple(self._find_nodes(label, props))
        if ck is not None and any((label, k) in self._index for k in props):
            with self._cache_lock:
                if len(self._found) >= 256:
                    self._found.clear()
                self._found[ck] = (gen, out)
        return out

    def _find_nodes(self, label: str | None, props: dict[str, Any]) -> list[int]:
        cands: list[int] | None = None
        if label is not None:
            for prop, value in props.items():
                ix = self._index.get((label, prop))
                if ix is not None:  # candidates: their labels are checked below
                    cands = ix.candidates(value) if index_key(value) is not None else []
                    break
        check_label = cands is not None
        if cands is None:
            cands = self.node_ids(label)
        if not props and not check_label:
            return list(cands)
        got = self._nodes.props_many(cands)
        out = []
        for nid in cands:
            p = got.get(nid)
            if p is None:
                continue  # deleted
            if check_label and label not in self._nodes.labels(nid):
                continue
            if all(k in p and same_value(p[k], v) for k, v in props.items()):
                out.append(nid)
        return out

    def has_index(self, label: str, prop: str) -> bool:
        """Is there a property index on (label, prop)?"""
        return (label, prop) in self._index

    def node(self, nid: int) -> tuple[list[str], dict[str, Any]]:
        """``(labels, properties)`` of a node (KeyError if unknown)."""
        labels = self._nodes.labels(nid)  # NotFoundError if unknown
        return labels, dict(self._nodes.props(nid))

    def expand(self, nid: int, direction: str, types: list[str] | None
               ) -> list[tuple[int, int, int]]:
        """Projected relationships touching ``nid`` as ``(edge_id, start, end)``."""
        codes = self._type_codes(types)
        if codes is not None and not codes:
            return []
        out: list[tuple[int, int, int]] = []
        if direction in ("out", "both"):
            nb, eids = self._g.neighbors(nid, "out", codes)
            out = [(e, nid, b) for b, e in zip(nb.tolist(), eids.tolist())]
        if direction in ("in", "both"):
            nb, eids = self._g.neighbors(nid, "in", codes)
            if direction == "both":
                out.extend((e, a, nid) for a, e in zip(nb.tolist(), eids.tolist()) if a != nid)
            else:  # a self-loop was already listed once for "both"
                out = [(e, a, nid) for a, e in zip(nb.tolist(), eids.tolist())]
        return out

    def relationship(self, edge_id: int) -> tuple[str, dict[str, Any]]:
        """``(type, properties)`` of a hyperedge (KeyError if unknown)."""
        return self._edges.type(edge_id), self._edges.props(edge_id)

    def var_paths(self, src: int, min_hops: int, max_hops: int, direction: str,
                  types: list[str] | None, dst: int | None = None,
                  ends: Collection[int] | None = None,
                  ) -> Iterator[tuple[list[int], list[tuple[int, int, int]]]]:
        """Paths from ``src`` with ``min_hops..max_hops`` relationships (no repeated node;
        ``*`` is capped at :data:`MAX_PATH_HOPS`); only those ending in ``ends`` if given."""
        codes = self._type_codes(types)
        if (codes is not None and not codes) or not self._nodes.exists(src):
            return
        if max_hops >= UNBOUNDED_HOPS or max_hops > MAX_PATH_HOPS:
            max_hops = MAX_PATH_HOPS
        if min_hops > max_hops:
            return
        end_ids = None
        if ends is not None:
            cached = self._ends_arr
            if cached is not None and cached[0] is ends:
                end_ids = cached[1]  # the same find_nodes tuple as the previous query
            else:
                end_ids = np.fromiter(ends, np.int64, len(ends))
                if isinstance(ends, tuple):
                    self._ends_arr = (ends, end_ids)
        if min_hops == 0:
            if (dst is None or dst == src) and (ends is None or src in ends):
                yield [src], []
            min_hops = 1
        try:
            nodes_a, noff_a, edges_a, eoff_a, *_ = self._native_call(
                self._g.paths, src, min_hops=min_hops, max_hops=max_hops, direction=direction,
                types=codes, dst=dst, limit=_PATH_LIMIT, ends=end_ids, as_arrays=True)
        except ValueError as exc:
            raise CypherError(f"variable-length pattern from node {src}: {exc}") from None
        all_nodes = nodes_a.tolist()
        all_edges = edges_a.tolist()
        noff = noff_a.tolist()
        eoff = eoff_a.tolist()
        for i in range(len(noff) - 1):
            nodes = all_nodes[noff[i]:noff[i + 1]]
            edges = all_edges[eoff[i]:eoff[i + 1]]
            if direction == "out":
                rels = [(e, nodes[j], nodes[j + 1]) for j, e in enumerate(edges)]
            elif direction == "in":
                rels = [(e, nodes[j + 1], nodes[j]) for j, e in enumerate(edges)]
            else:
                rels = []
                for j, e in enumerate(edges):
                    a, b = nodes[j], nodes[j + 1]
                    rels.append((e, a, b) if self._forward(e, a, b) else (e, b, a))
            yield nodes, rels

    def reach(self, src: int, max_hops: int, direction: str, types: list[str] | None,
              end_label: str | None = None) -> list[int] | None:
        """Nodes other than ``src`` reachable from it by 1..``max_hops`` relationships (with
        ``end_label`` if given): one native k-hop (GraphView extension, used by the Cypher
        aggregation pushdown; a simple path never returns to its start, and any node within
        reach has a shortest path, which is simple).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=n) for n in "abc")
        >>> _ = g.add_causal_chain([a, b, c, a])
        >>> sorted(g.reach(a, 5, "out", ["CAUSED_BY"])) == sorted([b, c])
        True
        """
        codes = self._type_codes(types)
        if (codes is not None and not codes) or not self._nodes.exists(src):
            return []
        max_hops = min(max_hops, MAX_PATH_HOPS)
        if max_hops < 1:
            return []
        nodes, _hops = self._native_call(self._g.khop, [src], max_hops, direction, codes)
        out = [n for n in nodes.tolist() if n != src]
        if end_label is not None:
            labels = self._nodes.labels
            out = [n for n in out if end_label in labels(n)]
        return out

    def path_totals(self, src: int, min_hops: int, max_hops: int, direction: str,
                    types: list[str] | None, end_label: str | None = None,
                    ) -> tuple[int, float, float, float] | None:
        """``(count, sum, min, max)`` of the confidence products of the simple paths
        :meth:`var_paths` would give (ending at ``end_label`` if given; min and max NaN
        without a path), reduced in the core while walking (GraphView extension); None when
        ``end_label`` is some node's second label, which the core does not index (the caller
        then enumerates).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=n) for n in "abc")
        >>> _ = g.add_causal_chain([a, b, c], confidence=[0.5, 0.5])
        >>> g.path_totals(a, 1, 2, "out", ["CAUSED_BY"])
        (2, 0.75, 0.25, 0.5)
        """
        none = (0, 0.0, math.nan, math.nan)
        codes = self._type_codes(types)
        if (codes is not None and not codes) or not self._nodes.exists(src):
            return none
        max_hops = min(max_hops, MAX_PATH_HOPS)
        if min_hops > max_hops:
            return none
        label_code = None
        if end_label is not None:
            if end_label in self._nodes.secondary:
                return None
            if end_label not in self._nodes.codes:
                return none
            label_code = self._nodes.codes[end_label]
        n, total, lo, hi = self._native_call(self._g.path_totals, src, min_hops, max_hops,
                                             direction, codes, label_code)
        return int(n), float(total), float(lo), float(hi)

    def top_product_paths(self, src: int, min_hops: int, max_hops: int, direction: str,
                          types: list[str] | None, end_label: str | None, n: int,
                          ) -> list[tuple[list[int], list[tuple[int, int, int]]]] | None:
        """The ``n`` simple paths from ``src`` with the highest confidence product, best
        first (ties in path order), as ``(nodes, relationships)`` like :meth:`var_paths`
        gives them; the core's branch-and-bound walk (GraphView extension). ``direction``
        is "out" or "in".

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=n) for n in "abc")
        >>> _ = g.add_causal_chain([a, b, c], confidence=[0.5, 0.5])
        >>> [len(r) for _n, r in g.top_product_paths(a, 1, 3, "out", ["CAUSED_BY"], None, 5)]
        [1, 2]
        """
        codes = self._type_codes(types)
        if (codes is not None and not codes) or not self._nodes.exists(src) or n < 1:
            return []
        max_hops = min(max_hops, MAX_PATH_HOPS)
        if min_hops > max_hops:
            return []
        ends = None
        if end_label is not None:
            ends = np.asarray(self._nodes.with_label(end_label), np.int64)
        nodes_a, noff, edges_a, eoff, *_ = self._native_call(
            self._g.top_paths, src, min_hops=min_hops, max_hops=max_hops, direction=direction,
            types=codes, n=n, score="product", ends=ends, as_arrays=True)
        all_nodes, all_edges = nodes_a.tolist(), edges_a.tolist()
        no, eo = noff.tolist(), eoff.tolist()
        out = []
        for i in range(len(no) - 1):
            nodes = all_nodes[no[i]:no[i + 1]]
            edges = all_edges[eo[i]:eo[i + 1]]
            if direction == "in":
                rels = [(e, nodes[j + 1], nodes[j]) for j, e in enumerate(edges)]
            else:
                rels = [(e, nodes[j], nodes[j + 1]) for j, e in enumerate(edges)]
            out.append((nodes, rels))
        return out

    def match_chain(self, types: list[list[str] | None], directions: list[str],
                    allowed: list[Sequence[int] | None], labels: list[list[str]] | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """Every chain ``n0 -r1- n1 ... nL`` of projected relationships (GraphView extension).

        ``types[i]`` / ``directions[i]`` ("out" or "in") constrain hop ``i``; ``allowed[j]``
        (None or node ids) and ``labels[j]`` constrain position ``j``. No relationship repeats
        within a row (Cypher's rule). Returns ``(nodes (rows, L+1), hyperedge ids (rows, L),
        exact)``, rows sorted by node row; ``exact[j]`` tells whether every label of
        ``labels[j]`` was enforced (otherwise the caller checks the rest).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(type=t) for t in ("x", "y", "z"))
        >>> _ = g.add_causal_chain([a, b, c])
        >>> nodes, _e, _x = g.match_chain([["CAUSED_BY"], ["CAUSED_BY"]], ["out", "out"],
        ...                               [None, None, None], [["Event"], [], []])
        >>> nodes.tolist() == [[a, b, c]]
        True
        """
        width = len(directions) + 1
        codes_l = [-1] * width
        exact = [True] * width
        for j, labs in enumerate(labels or [[]] * width):
            if not labs:
                continue
            lab = labs[0]
            if lab in self._nodes.secondary:
                exact[j] = False  # some node carries it second: the native label misses it
                continue
            if lab not in self._nodes.codes:  # no node has ever carried this label
                empty = np.zeros((0, width), np.int64)
                return empty, np.zeros((0, width - 1), np.int64), exact
            codes_l[j] = self._nodes.codes[lab]
            exact[j] = len(labs) == 1
        codes: list[list[int] | None] = []
        for t in types:
            c = self._type_codes(t)
            if c is not None and not c:
                empty = np.zeros((0, width), np.int64)
                return empty, np.zeros((0, width - 1), np.int64), exact
            codes.append(c)
        arrays: list[np.ndarray | None] = []
        for ids in allowed:
            if ids is None:
                arrays.append(None)
                continue
            cached = self._ends_arr
            if cached is not None and cached[0] is ids:
                arrays.append(cached[1])
            else:
                arr = np.fromiter(ids, np.int64, len(ids))
                if isinstance(ids, tuple) and len(ids) > 64:
                    self._ends_arr = (ids, arr)
                arrays.append(arr)
        with self._lock.shared():
            try:
                nodes, edges = self._native_call(self._g.match_chain, codes_l, codes,
                                                 list(directions), None, arrays,
                                                 "relationships")
            except ValueError as exc:
                raise CypherError(str(exc)) from None
        return nodes, edges, exact

    def _forward(self, eid: int, a: int, b: int) -> bool:
        _, tail, head, _, _ = self._g.edge(eid)
        return a in set(tail.tolist()) and b in set(head.tolist())

    # ---- GraphView: writes --------------------------------------------------------------------
    def create_node(self, labels: list[str], props: dict[str, Any]) -> int:
        """Create a node; returns its id."""
        for label in labels:
            if not isinstance(label, str) or not label:
                raise InvalidArgumentError(f"labels must be non-empty strings, got {label!r}")
        props = check_props(props, "node")
        with self._lock, self._write() as w:
            nid = self._next_node
            self._store.put_graph_node(w, nid, labels, props)
            self._g.add_node(nid, self._nodes.code(labels))
            self._nodes.remember(nid, labels, props)
            self._index_update(nid, [], {}, labels, props)
            self._next_node += 1
        return nid

    def create_relationship(self, type: str, start: int, end: int,  # noqa: A002
                            props: dict[str, Any]) -> int:
        """Create a one-cause, one-effect hyperedge; returns its id."""
        props = dict(props)
        conf = props.pop("confidence", 1.0)
        ts = props.pop("timestamp", None)
        return self.add_causal_edge([start], [end], type=type, confidence=conf, timestamp=ts,
                                    **props)

    def _set_node(self, nid: int, labels: list[str], props: dict[str, Any]) -> None:
        old_labels, old_props = self._nodes.labels(nid), self._nodes.props(nid)
        props = check_props(props, "node")
        with self._lock, self._write() as w:
            self._store.put_graph_node(w, nid, labels, props)
            self._nodes.remember(nid, labels, props)
            self._index_update(nid, old_labels, old_props, labels, props)
            if (labels[:1] or [None]) != (old_labels[:1] or [None]):
                self._g.add_node(nid, self._nodes.code(labels))  # upsert: new primary label

    def set_node_property(self, nid: int, key: str, value: Any) -> None:
        """Set (or with None remove) one node property."""
        labels, props = self.node(nid)
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
        self._set_node(nid, labels, props)

    def add_label(self, nid: int, label: str) -> None:
        """Add a label to a node."""
        labels, props = self.node(nid)
        if label not in labels:
            self._set_node(nid, labels + [label], props)

    def remove_label(self, nid: int, label: str) -> None:
        """Remove a label from a node."""
        labels, props = self.node(nid)
        if label in labels:
            self._set_node(nid, [x for x in labels if x != label], props)

    def set_relationship_property(self, eid: int, key: str, value: Any) -> None:
        """Set (or with None remove) one edge property; ``confidence``/``timestamp`` too."""
        etype, props = self.relationship(eid)
        _, tail, head, _, _ = self._g.edge(eid)
        conf, ts = props["confidence"], props["timestamp"]  # exact (the CSR keeps float32)
        if key == "confidence":
            conf = check_confidence(1.0 if value is None else value)
        elif key == "timestamp":
            ts = check_time(time.time() if value is None else value)
        elif value is None:
            props.pop(key, None)
        else:
            props[key] = value
        extra = {k: v for k, v in props.items() if k not in ("confidence", "timestamp")}
        extra = check_props(extra, "edge")
        with self._lock, self._write() as w:
            self._store.put_graph_edge(w, eid, etype, tail.tolist(), head.tolist(), conf, ts,
                                       extra)
            if key in ("confidence", "timestamp"):  # same topology; re-add with the new value
                self._g.remove_edge(eid)
                self._g.add_edge(eid, self._edges.code(etype), tail.tolist(), head.tolist(),
                                 conf, ts)
            self._edges.put(eid, etype, conf, ts, extra)

    def delete_node(self, nid: int, detach: bool) -> None:
        """Delete a node; with ``detach`` also every hyperedge touching it."""
        labels, props = self.node(nid)
        touching = sorted({e for e, _, _ in self.expand(nid, "both", None)})
        if touching and not detach:
            raise CypherError(f"cannot delete node {nid}: it still has relationships; "
                              "use DETACH DELETE")
        with self._lock, self._write() as w:
            self._store.delete_graph(w, [nid], touching)
            self._g.remove_node(nid)  # also removes the incident hyperedges
            for e in touching:
                self._edges.drop(e)
            self._nodes.forget(nid)
            self._index_update(nid, labels, props, [], {})

    def delete_relationship(self, eid: int) -> None:
        """Delete a hyperedge (every projected relationship it makes goes with it)."""
        self.relationship(eid)
        with self._lock, self._write() as w:
            self._store.delete_graph(w, [], [eid])
            self._g.remove_edge(eid)
            self._edges.drop(eid)

    # ---- the causal-memory API ----------------------------------------------------------------
    def add_event(self, labels: str | Sequence[str] = "Event", *, pattern_id: int | None = None,
                  episode_id: int | None = None, skill_id: int | None = None,
                  **props: Any) -> int:
        """Add an event node (label ``Event`` by default); returns its id.

        ``pattern_id`` / ``episode_id`` / ``skill_id`` link the event to a memory record of
        this store (checked to exist; stored as the ``patternId`` / ``episodeId`` /
        ``skillId`` properties, so Cypher can join on them).

        >>> import agentdb; db = agentdb.open(":memory:", dim=8); g = db.graph
        >>> g.add_event(type="tool_call", agentId="a1") >= 1
        True
        >>> p = db.store_pattern("retry with backoff", reward=0.9, success=True)
        >>> e = g.add_event(type="action", pattern_id=p)
        >>> g.query("MATCH (e:Event {patternId: $p}) RETURN id(e) AS e", {"p": p}) == [{"e": e}]
        True
        """
        labels = [labels] if isinstance(labels, str) else list(labels)
        link_records(self._store, props, pattern_id, episode_id, skill_id)
        return self.create_node(labels, props)

    def add_node(self, labels: str | Sequence[str] = "Event",
                 properties: dict[str, Any] | None = None, **props: Any) -> int:
        """Add a node with ``labels`` and ``properties`` (or keyword properties); its id.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> n = g.add_node("Tool", {"name": "grep"})
        >>> g.node(n)
        (['Tool'], {'name': 'grep'})
        """
        if properties is not None and not isinstance(properties, dict):
            raise InvalidTypeError(f"properties must be a dict, got {type(properties).__name__}")
        return self.add_event(labels, **{**(properties or {}), **props})

    def add_hyperedge(self, nodes: Sequence[int] | None = None, *,
                      tail: Sequence[int] | None = None, head: Sequence[int] | None = None,
                      label: str = "CAUSED_BY", properties: dict[str, Any] | None = None,
                      confidence: float = 1.0, timestamp: float | None = None) -> int:
        """Add one hyperedge of type ``label``: from ``tail`` (causes) to ``head`` (effects),
        or over ``nodes = [n1, ..., nk]`` read as causes ``n1..n(k-1)`` and effect ``nk`` (the
        shape of a causal chain's hyperedge). Returns the edge id.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=x) for x in "abc")
        >>> e = g.add_hyperedge([a, b, c], label="LED_TO", properties={"why": "retry"})
        >>> g.get_edge(e)["causes"] == [a, b] and g.get_edge(e)["effects"] == [c]
        True
        """
        if nodes is not None:
            if tail is not None or head is not None:
                raise InvalidArgumentError("give either nodes or tail/head, not both")
            members = [int(x) for x in nodes]
            if len(members) < 2:
                raise InvalidArgumentError("a hyperedge over nodes needs at least two nodes")
            tail, head = members[:-1], members[-1:]
        elif tail is None or head is None:
            raise InvalidArgumentError("add_hyperedge needs nodes, or both tail and head")
        if properties is not None and not isinstance(properties, dict):
            raise InvalidTypeError(f"properties must be a dict, got {type(properties).__name__}")
        extra = dict(properties or {})
        for reserved in ("confidence", "timestamp"):
            if reserved in extra:
                raise InvalidArgumentError(
                    f"pass {reserved} as its own argument, not in properties")
        return self.add_causal_edge(tail, head, type=label, confidence=confidence,
                                    timestamp=timestamp, **extra)

    def query_causal_path(self, outcome_id: int | str, max_depth: int = 5, limit: int = 10,
                          root_type: str | None = "root_cause",
                          edge_type: str = "CAUSED_BY") -> list[dict[str, Any]]:
        """The ``limit`` most confident causal chains into an outcome (reference query 1).

        ``outcome_id`` is the outcome's node id (int) or its ``id`` property (str); roots must
        have ``type = root_type`` (None: any event). Rows: ``path``, ``depth``,
        ``chain_confidence`` (product of the links), best first.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> r = g.add_event(type="root_cause", id="r"); o = g.add_event(type="outcome", id="o")
        >>> _ = g.add_causal_edge([r], [o], confidence=0.8)
        >>> [(x["depth"], x["chain_confidence"]) for x in g.query_causal_path("o")]
        [(1, 0.8)]
        """
        for name, v in (("max_depth", max_depth), ("limit", limit)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {v!r}")
        if int(max_depth) > MAX_PATH_HOPS:
            raise InvalidArgumentError(f"max_depth must be <= {MAX_PATH_HOPS}, got {max_depth}")
        if not isinstance(edge_type, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*",
                                                              edge_type):
            raise InvalidArgumentError(f"edge_type must be an identifier, got {edge_type!r}")
        if isinstance(outcome_id, (int, np.integer)) and not isinstance(outcome_id, bool):
            anchor, params = "(outcome:Event)", {"oid": int(outcome_id)}
            cond = ["id(outcome) = $oid"]
        elif isinstance(outcome_id, str):
            anchor, params, cond = "(outcome:Event {id: $oid})", {"oid": outcome_id}, []
        else:
            raise InvalidTypeError(
                f"outcome_id must be a node id or an id string, got {outcome_id!r}")
        if root_type is not None:
            cond.append("root.type = $rootType")
            params["rootType"] = root_type
        where = f"WHERE {' AND '.join(cond)} " if cond else ""
        q = (f"MATCH path = (root:Event)-[:{edge_type}*1..{int(max_depth)}]->{anchor} {where}"
             "RETURN path, length(path) AS depth, "
             "reduce(conf = 1.0, r IN relationships(path) | conf * r.confidence) "
             f"AS chain_confidence ORDER BY chain_confidence DESC LIMIT {int(limit)}")
        return self.query(q, params)

    def find_similar_patterns(self, start_type: str, middle_type: str,
                              edge_type: str = "CAUSED_BY",
                              limit: int | None = None) -> list[dict[str, Any]]:
        """Two-step causal patterns ``a -> b -> c`` with ``a.type = start_type`` and
        ``b.type = middle_type`` (reference query 2); rows ``{"a", "b", "c"}`` of nodes.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> ids = [g.add_event(type=t) for t in ("root_cause", "symptom", "outcome")]
        >>> _ = g.add_causal_chain(ids)
        >>> [r["c"].properties["type"] for r in g.find_similar_patterns("root_cause", "symptom")]
        ['outcome']
        """
        if not isinstance(edge_type, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*",
                                                              edge_type):
            raise InvalidArgumentError(f"edge_type must be an identifier, got {edge_type!r}")
        tail = ""
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
                raise InvalidArgumentError(f"limit must be an integer >= 1, got {limit!r}")
            tail = f" LIMIT {int(limit)}"
        q = (f"MATCH (a:Event)-[:{edge_type}]->(b:Event)-[:{edge_type}]->(c:Event) "
             "WHERE a.type = $type1 AND b.type = $type2 RETURN a, b, c" + tail)
        return self.query(q, {"type1": start_type, "type2": middle_type})

    def cypher(self, query: str, /, *, timeout: float | None = None,
               max_rows: int | None = None, **params: Any) -> list[dict[str, Any]]:
        """Run a Cypher query with keyword parameters; rows of plain Python values.

        ``timeout`` and ``max_rows`` are the query's limits (see :meth:`query`), not
        parameters; pass a ``$timeout`` or ``$max_rows`` parameter through :meth:`query`.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> _ = g.add_event(type="x", n=2)
        >>> g.cypher("MATCH (e:Event) WHERE e.n >= $min RETURN e.type AS t", min=1)
        [{'t': 'x'}]
        >>> g.cypher("MATCH (e:Event) RETURN e.n AS n", timeout=5)
        [{'n': 2}]
        """
        return self.query(query, params, timeout=timeout, max_rows=max_rows)

    @property
    def query_timeout(self) -> float | None:
        """Seconds a Cypher query may run when it gives no ``timeout`` (None, the default: no
        limit; ``agentdb serve`` bounds its requests with ``--cypher-timeout`` instead).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> g.query_timeout = 30; g.query_timeout
        30.0
        """
        return self._query_timeout

    @query_timeout.setter
    def query_timeout(self, value: float | None) -> None:
        self._query_timeout = check_limits(value, None)[0]

    @property
    def query_max_rows(self) -> int | None:
        """Rows a Cypher query may return when it gives no ``max_rows`` (None: no limit).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> g.query_max_rows = 1000; g.query_max_rows
        1000
        """
        return self._query_max_rows

    @query_max_rows.setter
    def query_max_rows(self, value: int | None) -> None:
        self._query_max_rows = check_limits(None, value)[1]

    def add_causal_edge(self, causes: Sequence[int], effects: Sequence[int], *,
                        type: str = "CAUSED_BY", confidence: float = 1.0,  # noqa: A002
                        timestamp: float | None = None, **props: Any) -> int:
        """Add a hyperedge from ``causes`` (tail) to ``effects`` (head); returns its id.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=n) for n in "abc")
        >>> e = g.add_causal_edge([a, b], [c], confidence=0.7)
        >>> g.relationship(e)[1]["confidence"]
        0.7
        """
        tail, head, conf, ts, props = check_edge(type, causes, effects, confidence, timestamp,
                                                 props)
        for n in tail + head:
            if not self._nodes.exists(n):
                raise NotFoundError(f"unknown node {n}")
        with self._lock, self._write() as w:
            eid = self._next_edge
            self._store.put_graph_edge(w, eid, type, tail, head, conf, ts, props)
            self._g.add_edge(eid, self._edges.code(type), tail, head, conf, ts)
            self._edges.put(eid, type, conf, ts, props)
            self._next_edge += 1
        return eid

    def add_causal_chain(self, events: Sequence[int], *, type: str = "CAUSED_BY",  # noqa: A002
                         confidence: float | Sequence[float] = 1.0,
                         chain_type: str = "CAUSAL_CHAIN", **props: Any) -> tuple[int, list[int]]:
        """Record a chain ``e1 -> e2 -> ... -> en``: one hyperedge of ``chain_type`` over all
        events (causes ``e1..e(n-1)``, effect ``en``) and one ``type`` edge between each
        consecutive pair. Returns ``(chain_edge_id, [pair edge ids])``. ``confidence`` is one
        value or one per pair; the chain edge gets their product and, as the seed system's
        contract has it, ``chain_length`` (the number of events).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> ids = [g.add_event(step=i) for i in range(3)]
        >>> chain, pairs = g.add_causal_chain(ids, confidence=[0.9, 0.5])
        >>> round(g.relationship(chain)[1]["confidence"], 2), len(pairs)
        (0.45, 2)
        >>> g.relationship(chain)[1]["chain_length"]
        3
        """
        ev = [int(e) for e in events]
        if len(ev) < 2:
            raise InvalidArgumentError("a causal chain needs at least two events")
        confs = ([confidence] * (len(ev) - 1) if isinstance(confidence, (int, float))
                 else list(confidence))
        if len(confs) != len(ev) - 1:
            raise InvalidArgumentError(f"got {len(confs)} confidences for {len(ev) - 1} links")
        confs = [check_confidence(c) for c in confs]
        with self.transaction():
            pairs = [self.add_causal_edge([a], [b], type=type, confidence=c, **props)
                     for a, b, c in zip(ev, ev[1:], confs)]
            chain = self.add_causal_edge(ev[:-1], ev[-1:], type=chain_type,
                                         confidence=float(np.prod(confs)),
                                         **{**props, "chain_length": len(ev)})
        return chain, pairs

    def remove_event(self, nid: int) -> None:
        """Remove an event and every hyperedge touching it (KeyError if unknown)."""
        self.delete_node(int(nid), detach=True)

    def remove_edge(self, eid: int) -> None:
        """Remove a hyperedge (KeyError if unknown)."""
        self.delete_relationship(int(eid))

    def get_event(self, nid: int) -> dict[str, Any]:
        """``{"id", "labels", "properties"}`` of a node (KeyError if unknown)."""
        labels, props = self.node(int(nid))
        return {"id": int(nid), "labels": labels, "properties": props}

    def get_edge(self, eid: int) -> dict[str, Any]:
        """``{"id", "type", "causes", "effects", "confidence", "timestamp", "properties"}``."""
        etype, props = self.relationship(int(eid))
        _, tail, head, conf, ts = self._g.edge(int(eid))
        extra = {k: v for k, v in props.items() if k not in ("confidence", "timestamp")}
        return {"id": int(eid), "type": etype, "causes": tail.tolist(), "effects": head.tolist(),
                "confidence": props["confidence"], "timestamp": props["timestamp"],
                "properties": extra}

    def khop(self, seeds: int | Sequence[int], k: int, direction: str = "out",
             types: Sequence[str] | None = None) -> dict[int, int]:
        """Nodes within ``k`` hops of the seeds: ``{node: min hops}`` (native BFS).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=n) for n in "abc")
        >>> _ = g.add_causal_chain([a, b, c])
        >>> g.khop(a, 2, types=["CAUSED_BY"]) == {b: 1, c: 2}
        True
        """
        seeds = [int(seeds)] if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
        for s in seeds:
            if not self._nodes.exists(s):
                raise NotFoundError(f"unknown node {s}")
        codes = self._type_codes(list(types) if types is not None else None)
        if codes is not None and not codes:
            return {}
        nodes, hops = self._g.khop(seeds, k, direction, codes)
        return {int(n): int(h) for n, h in zip(nodes, hops)}

    def khop_batch(self, seeds: Sequence[int], k: int, direction: str = "out",
                   types: Sequence[str] | None = None, *, threads: int = 0) -> KHops:
        """One :meth:`khop` per seed in one native call (spread over ``threads``, 0 = all
        cores): a :class:`KHops` of flat arrays, ``counts`` per seed and ``of(i)`` as a dict.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=n) for n in "abc")
        >>> _ = g.add_causal_chain([a, b, c])
        >>> r = g.khop_batch([a, b, c], 2, types=["CAUSED_BY"])
        >>> r.counts.tolist(), r.of(0) == {b: 1, c: 2}
        ([2, 1, 0], True)
        """
        seed_list = [int(s) for s in seeds]
        for s in seed_list:
            if not self._nodes.exists(s):
                raise NotFoundError(f"unknown node {s}")
        codes = self._type_codes(list(types) if types is not None else None)
        if codes is not None and not codes:
            z = np.zeros(len(seed_list) + 1, np.int64)
            return KHops(z, np.zeros(0, np.int64), np.zeros(0, np.int32))
        offsets, nodes, hops = self._native_call(self._g.khop_batch, seed_list, k, direction,
                                                 codes, threads=threads)
        return KHops(offsets, nodes, hops)

    def paths(self, src: int, *, min_hops: int = 1, max_hops: int = 5, direction: str = "out",
              types: Sequence[str] | None = None, dst: int | None = None, n: int | None = None,
              score: str = "product") -> list[dict[str, Any]]:
        """Causal paths from ``src``: ``[{"nodes", "edges", "confidence": {"product", "min",
        "sum"}}]``; with ``n``, only the ``n`` best by ``score`` (native, pruned).

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> a, b, c = (g.add_event(name=x) for x in "abc")
        >>> _ = g.add_causal_chain([a, b, c], confidence=0.5)
        >>> [p["nodes"] for p in g.paths(a, types=["CAUSED_BY"])] == [[a, b], [a, b, c]]
        True
        """
        if not self._nodes.exists(int(src)):
            raise NotFoundError(f"unknown node {src}")
        codes = self._type_codes(list(types) if types is not None else None)
        if codes is not None and not codes:
            return []
        if n is not None:
            found = self._g.top_paths(int(src), min_hops=min_hops, max_hops=max_hops,
                                      direction=direction, types=codes, n=n, score=score,
                                      dst=dst)
        else:
            found = self._g.paths(int(src), min_hops=min_hops, max_hops=max_hops,
                                  direction=direction, types=codes, dst=dst)
        return [{"nodes": [int(x) for x in nodes], "edges": [int(e) for e in edges],
                 "confidence": {"product": float(p), "min": float(m), "sum": float(s)}}
                for nodes, edges, p, m, s in found]

    def query(self, cypher: str, params: dict[str, Any] | None = None, *,
              timeout: float | None = None, max_rows: int | None = None,
              budget: QueryBudget | None = None) -> list[dict[str, Any]]:
        """Run a Cypher query; returns rows as dicts. Writes run in one transaction.

        ``timeout`` (seconds; default :attr:`query_timeout`) bounds the whole query, the wait
        for another query or write included, and the native walks check it too: past it the
        query stops with :class:`~agentdb.errors.QueryTimeoutError` (a ``TimeoutError``), and a
        write query keeps none of its writes. ``max_rows`` (default :attr:`query_max_rows`)
        caps the rows returned (:class:`~agentdb.errors.QueryLimitError`). ``budget`` (a
        :class:`~agentdb.graph.cypher.budget.QueryBudget`) gives both and a cancel flag that
        another thread may raise (:class:`~agentdb.errors.QueryCancelledError`); it replaces
        ``timeout`` and ``max_rows``.

        >>> import agentdb; g = agentdb.open(":memory:", dim=8).graph
        >>> g.query("CREATE (a:Event {type: 'x'})-[:CAUSED_BY {confidence: 0.5}]->(b:Event)")
        []
        >>> g.query("MATCH (a)-[r]->(b) RETURN r.confidence AS c")
        [{'c': 0.5}]
        >>> try:
        ...     g.query("UNWIND range(1, 10) AS x RETURN x", max_rows=5)
        ... except agentdb.errors.QueryLimitError as exc:
        ...     print(exc)
        query returned more than max_rows=5 rows (add LIMIT or aggregate, or raise max_rows)
        """
        return self.query_stats(cypher, params, timeout=timeout, max_rows=max_rows,
                                budget=budget).rows

    def query_stats(self, cypher: str, params: dict[str, Any] | None = None, *,
                    timeout: float | None = None, max_rows: int | None = None,
                    budget: QueryBudget | None = None) -> Any:
        """Like :meth:`query` but returns the result object with ``rows``, ``columns`` and
        ``stats`` (write counters)."""
        if not isinstance(cypher, str):
            raise InvalidTypeError(f"query must be a string, got {type(cypher).__name__}")
        if budget is None:
            timeout, max_rows = check_limits(timeout, max_rows)
            timeout = self._query_timeout if timeout is None else timeout
            max_rows = self._query_max_rows if max_rows is None else max_rows
            if timeout is not None or max_rows is not None:  # else nothing to check per row
                budget = QueryBudget(timeout, max_rows)
        if _WRITES.search(cypher):
            with self._locked(budget, shared=False), self.transaction():
                return execute_stats(self, cypher, params, budget=budget)
        with self._locked(budget, shared=True):
            return execute_stats(self, cypher, params, budget=budget)

    @contextmanager
    def _locked(self, budget: QueryBudget | None, shared: bool) -> Iterator[None]:
        """Hold the graph lock (shared for a read query, alone for a write), waiting no longer
        than the budget allows (in slices, so a cancel is seen while waiting)."""
        take = self._lock.acquire_shared if shared else self._lock.acquire
        while not take(timeout=-1 if budget is None else min(0.05, max(budget.remaining(), 0.0))):
            assert budget is not None
            if budget.cancelled:
                budget.check()
            if budget.remaining() <= 0:
                raise QueryTimeoutError(
                    f"query exceeded its timeout of {budget.timeout:g} s waiting for "
                    + ("a graph write" if shared else "other graph queries and writes")
                    + " to finish")
        try:
            yield
        finally:
            (self._lock.release_shared if shared else self._lock.release)()

    def _native_call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A native walk under the running query's budget (deadline and cancel flag); its
        TimeoutError becomes the typed error."""
        budget = active_budget()
        if budget is None:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs, **budget.native_args())
        except (QueryTimeoutError, QueryCancelledError):
            raise
        except TimeoutError as exc:
            raise budget.interrupted(exc) from None

    def stats(self) -> dict[str, Any]:
        """Counts and memory.

        >>> import agentdb; agentdb.open(":memory:", dim=8).graph.stats()["edges"]
        0
        """
        return {"nodes": int(self._g.num_nodes()), "edges": self._edges.count,
                "labels": self._nodes.present_labels(), "types": self._edges.present_types(),
                "indexes": [f"{a}.{b}" for a, b in self.indexes()],
                "native": _loader.graph_backend().__name__.endswith("_native"),
                "csr_memory_bytes": int(self._g.memory_usage()),
                "csr_mapped": bool(self._g.is_mapped()),
                "csr_mapped_resident_bytes": int(self._g.mapped_resident_bytes()),
                "loaded_from": self._parts.source, "replayed_rows": self._parts.replayed,
                "cached_node_props": self._nodes.cached(),
                "cached_edge_props": self._edges.cached()}

