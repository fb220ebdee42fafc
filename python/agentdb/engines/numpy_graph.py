"""Pure-Python fallback of the causal hypergraph (twin of ``agentdb._native.Hypergraph``).

Implements the contract of ``spec_graph.md`` with the same API, results and errors as the C++
class in ``cpp/hypergraph.hpp``; storage here is plain dicts (node -> incident edge ids, edge
id -> record), so it favours correctness over speed.

Model: nodes have an int64 id (not -1) and an int32 label (-1 = none); a hyperedge has an id,
a type code >= 0, a tail (causes) and a head (effects) of distinct known nodes, a float32
confidence in [0, 1] and a float64 timestamp.  Traversals use the binary projection: hyperedge
``e`` gives ``a -[e]-> b`` for every ``a`` in its tail and ``b`` in its head ("out" walks
tail->head, "in" head->tail, "both" either; a pair ``(b, e)`` is reported once).

Rules shared with the native backend:

* Paths are simple: no node repeats and no hyperedge repeats.  Scores are accumulated over the
  edge confidences (float32 values) in returned order in float64: product ``((1*c1)*c2)...``,
  min, sum ``((0+c1)+c2)...``; an empty path scores ``(1.0, 1.0, 0.0)``.
* ``buffered()`` counts edges added since the last compaction (removed ones included); after
  an insert, when it exceeds ``max(1024, csr_edges // 4)`` (``csr_edges`` = live edges at the
  last compaction) the graph compacts itself.  Here compaction is bookkeeping only.
* Files use the "AGDBHYPG" version 1 format (see :data:`FILE_FORMAT`); both backends write
  byte-identical files for the same graph and read each other's.

:class:`Hypergraph` converts the arguments (:mod:`.numpy_graph_args`), holds the lock and
delegates to the modules beside it: :mod:`.numpy_graph_state` (the dict storage and its
writes), :mod:`.numpy_graph_walks` (khop, paths, top paths, chain matching) and
:mod:`.numpy_graph_file` (the file format).

Example:
    >>> g = Hypergraph()
    >>> g.add_nodes([1, 2, 3], [0, 1, 1])
    >>> g.add_edge(10, 0, [1], [2, 3], confidence=0.5)
    >>> g.add_edge(11, 0, [2], [3], confidence=0.75)
    >>> g.neighbors(1)[0].tolist()
    [2, 3]
    >>> [(p[0], p[1], p[2]) for p in g.paths(1, max_hops=2)]
    [([1, 2], [10], 0.5), ([1, 3], [10], 0.5), ([1, 2, 3], [10, 11], 0.375)]
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np

from . import numpy_graph_walks as walks
from .fileio import write_crc_file
from .numpy_graph_args import (
    I32,
    I32_MAX,
    I64,
    SCORES,
    as_arrays_arg,
    check_hops,
    check_len,
    direction_arg,
    float_arg,
    floats_arg,
    i32_arg,
    ids_arg,
    int_arg,
    opt_ids_arg,
    opt_label_arg,
    path_arrays,
    types_arg,
)
from .numpy_graph_file import FILE_FORMAT, decode, encode
from .numpy_graph_state import GraphState

__all__ = ["BACKEND", "FILE_FORMAT", "Hypergraph"]

BACKEND: Final = "numpy"


class Hypergraph:
    """Causal hypergraph with hyperedges tail -> head (pure-Python backend).

    All methods are thread-safe (one re-entrant lock).  See the module docstring for the
    model, and ``spec_graph.md`` for the full contract.

    Example:
        >>> g = Hypergraph()
        >>> g.add_node(1, label=3)
        >>> g.add_node(2)
        >>> g.add_edge(7, 0, [1], [2], confidence=0.9, timestamp=12.5)
        >>> g.num_nodes(), g.num_edges(), g.node_label(1)
        (2, 1, 3)
        >>> t, tail, head, c, ts = g.edge(7)
        >>> t, tail.tolist(), head.tolist(), round(c, 6), ts
        (0, [1], [2], 0.9, 12.5)
    """

    def __init__(self) -> None:
        """An empty graph (see the class docstring for an example)."""
        self._lock = threading.RLock()
        self._g = GraphState()

    def __repr__(self) -> str:
        """``Hypergraph(nodes=..., edges=..., backend='numpy')``."""
        return f"Hypergraph(nodes={self.num_nodes()}, edges={self.num_edges()}, backend='numpy')"

    # -- writes -------------------------------------------------------------------------
    def add_node(self, id: int, label: int = -1) -> None:  # noqa: A002 - contract name
        """Insert a node, or change the label of an existing one (upsert).

        Example:
            >>> g = Hypergraph()
            >>> g.add_node(5, 2); g.add_node(5, 4)
            >>> g.node_label(5), g.num_nodes()
            (4, 1)
        """
        nid = int_arg(id, "id")
        lab = int_arg(label, "label")
        with self._lock:
            self._g.upsert_nodes([nid], [lab])

    def add_nodes(self, ids: Any, labels: Any = None) -> None:
        """Bulk upsert; ``labels`` defaults to -1 for every node.  All-or-nothing.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes(np.array([3, 1, 2]), np.array([0, 0, 1], dtype=np.int32))
            >>> g.node_ids().tolist(), g.nodes_with_label(0).tolist()
            ([1, 2, 3], [1, 3])
        """
        id_list = ids_arg(ids, "ids")
        lab_list: list[int] | None = None
        if labels is not None:
            lab_list = ids_arg(labels, "labels")
            check_len(len(lab_list), len(id_list), "labels", "len(ids)")
        with self._lock:
            self._g.upsert_nodes(
                id_list, lab_list if lab_list is not None else [-1] * len(id_list)
            )

    def add_edge(
        self,
        id: int,  # noqa: A002 - contract name
        type: int,  # noqa: A002 - contract name
        tail: Any,
        head: Any,
        confidence: float = 1.0,
        timestamp: float = 0.0,
    ) -> None:
        """Insert hyperedge ``tail -> head``; edge ids are not upserted.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2])
            >>> g.add_edge(1, 0, [1], [2], confidence=0.5)
            >>> try:
            ...     g.add_edge(1, 0, [1], [2])
            ... except ValueError as exc:
            ...     print(exc)
            duplicate edge id 1
        """
        eid = int_arg(id, "id")
        etype = int_arg(type, "type")
        tl = ids_arg(tail, "tail")
        hd = ids_arg(head, "head")
        c = float_arg(confidence, "confidence")
        ts = float_arg(timestamp, "timestamp")
        with self._lock:
            self._g.insert_edges([eid], [etype], [0, len(tl)], tl, [0, len(hd)], hd, [c], [ts])

    def add_edges(
        self,
        ids: Any,
        types: Any,
        tail_offsets: Any,
        tail_nodes: Any,
        head_offsets: Any,
        head_nodes: Any,
        confidences: Any = None,
        timestamps: Any = None,
    ) -> None:
        """Bulk insert with CSR-style offsets (``len = len(ids) + 1``).  All-or-nothing.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edges([5, 6], [0, 1], [0, 1, 3], [1, 1, 2], [0, 1, 2], [2, 3],
            ...             [0.5, 1.0], [1.0, 2.0])
            >>> g.edge(6)[1].tolist(), g.edge(6)[2].tolist()
            ([1, 2], [3])
        """
        id_list = ids_arg(ids, "ids")
        type_list = ids_arg(types, "types")
        toff = ids_arg(tail_offsets, "tail_offsets")
        tn = ids_arg(tail_nodes, "tail_nodes")
        hoff = ids_arg(head_offsets, "head_offsets")
        hn = ids_arg(head_nodes, "head_nodes")
        conf = None if confidences is None else floats_arg(confidences, "confidences")
        ts = None if timestamps is None else floats_arg(timestamps, "timestamps")
        n = len(id_list)
        check_len(len(type_list), n, "types", "len(ids)")
        check_len(len(toff), n + 1, "tail_offsets", "len(ids) + 1")
        check_len(len(hoff), n + 1, "head_offsets", "len(ids) + 1")
        if conf is not None:
            check_len(len(conf), n, "confidences", "len(ids)")
        if ts is not None:
            check_len(len(ts), n, "timestamps", "len(ids)")
        with self._lock:
            self._g.insert_edges(
                id_list,
                type_list,
                toff,
                tn,
                hoff,
                hn,
                conf if conf is not None else [1.0] * n,
                ts if ts is not None else [0.0] * n,
            )

    def remove_node(self, id: int) -> None:  # noqa: A002 - contract name
        """Remove a node and every edge incident to it (KeyError if unknown).

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2]); g.add_edge(9, 0, [1], [2])
            >>> g.remove_node(2)
            >>> g.has_edge(9), g.num_nodes()
            (False, 1)
        """
        nid = int_arg(id, "id")
        with self._lock:
            self._g.remove_node(nid)

    def remove_edge(self, id: int) -> None:  # noqa: A002 - contract name
        """Remove one hyperedge (KeyError if unknown)."""
        eid = int_arg(id, "id")
        with self._lock:
            self._g.remove_edge(eid)

    def compact(self) -> None:
        """Merge the append buffer (bookkeeping only in this backend)."""
        with self._lock:
            self._g.compact()

    # -- simple reads -------------------------------------------------------------------
    def has_node(self, id: int) -> bool:  # noqa: A002 - contract name
        """Whether ``id`` is a node."""
        nid = int_arg(id, "id")
        with self._lock:
            return nid in self._g.labels

    def has_edge(self, id: int) -> bool:  # noqa: A002 - contract name
        """Whether ``id`` is a hyperedge."""
        eid = int_arg(id, "id")
        with self._lock:
            return eid in self._g.edges

    def node_label(self, id: int) -> int:  # noqa: A002 - contract name
        """The label of node ``id`` (-1 = none); KeyError if unknown."""
        nid = int_arg(id, "id")
        with self._lock:
            return self._g.labels[self._g.require_node(nid)]

    def edge(self, id: int) -> tuple[int, I64, I64, float, float]:  # noqa: A002
        """``(type, tail ids, head ids, confidence, timestamp)``; KeyError if unknown."""
        eid = int_arg(id, "id")
        with self._lock:
            t, tail, head, c, ts = self._g.require_edge(eid)
        return t, np.array(tail, dtype=np.int64), np.array(head, dtype=np.int64), c, ts

    def num_nodes(self) -> int:
        """Number of nodes."""
        with self._lock:
            return len(self._g.labels)

    def num_edges(self) -> int:
        """Number of hyperedges."""
        with self._lock:
            return len(self._g.edges)

    def node_ids(self) -> I64:
        """Node ids, ascending, as int64."""
        with self._lock:
            return np.array(sorted(self._g.labels), dtype=np.int64)

    def edge_ids(self) -> I64:
        """Hyperedge ids, ascending, as int64."""
        with self._lock:
            return np.array(sorted(self._g.edges), dtype=np.int64)

    def nodes_with_label(self, label: int) -> I64:
        """Ids of the nodes labelled ``label``, ascending."""
        lab = i32_arg(label, "label", -1)
        with self._lock:
            return np.array(sorted(v for v, x in self._g.labels.items() if x == lab), np.int64)

    def buffered(self) -> int:
        """Edges added since the last compaction (removed ones included)."""
        with self._lock:
            return self._g.buffered

    def memory_usage(self) -> int:
        """Rough bytes held (dict and tuple overheads estimated)."""
        with self._lock:
            return self._g.memory_usage()

    # -- traversals ---------------------------------------------------------------------
    def neighbors(
        self,
        id: int,  # noqa: A002 - contract name
        direction: str = "out",
        types: Any = None,
    ) -> tuple[I64, I64]:
        """One hop: every ``(b, e)`` with ``id -[e]-> b``, sorted by ``(b, e)``.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(5, 0, [1], [2, 3]); g.add_edge(4, 1, [3], [1])
            >>> [a.tolist() for a in g.neighbors(1, "both")]
            [[2, 3, 3], [5, 4, 5]]
        """
        d = direction_arg(direction)
        tf = types_arg(types)
        nid = int_arg(id, "id")
        with self._lock:
            pairs = sorted(self._g.neighbours(self._g.require_node(nid), d, tf))
        return (
            np.array([b for b, _ in pairs], dtype=np.int64),
            np.array([e for _, e in pairs], dtype=np.int64),
        )

    def khop(
        self, seeds: Any, k: int, direction: str = "out", types: Any = None, *,
        timeout: float | None = None, cancel: Any = None,
    ) -> tuple[I64, I32]:
        """Nodes within 1..k hops with their minimum hop count, sorted by id.

        Seeds are reported only when re-reached through a cycle.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(1, 0, [1], [2]); g.add_edge(2, 0, [2], [3]); g.add_edge(3, 0, [3], [1])
            >>> [a.tolist() for a in g.khop(1, 2)]
            [[2, 3], [1, 2]]
            >>> [a.tolist() for a in g.khop([1], 3)]
            [[1, 2, 3], [3, 1, 2]]
        """
        seed_list, kk, d, tf = _khop_args(seeds, k, direction, types)
        with self._lock, walks.budget(timeout, cancel):
            return walks.khop(self._g, seed_list, kk, d, tf)

    def khop_batch(
        self, seeds: Any, k: int, direction: str = "out", types: Any = None, *,
        threads: int = 0, timeout: float | None = None, cancel: Any = None,
    ) -> tuple[I64, I64, I32]:
        """One :meth:`khop` per seed in one call: ``(offsets, nodes, hops)``, seed ``i``'s
        nodes and hops being ``[offsets[i], offsets[i + 1])``. ``threads`` is accepted for
        the native API (this backend runs the seeds one after another).

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(1, 0, [1], [2]); g.add_edge(2, 0, [2], [3])
            >>> off, nodes, hops = g.khop_batch([1, 2, 3], 2)
            >>> off.tolist(), nodes.tolist(), hops.tolist()
            ([0, 2, 3, 3], [2, 3, 3], [1, 2, 1])
        """
        seed_list, kk, d, tf = _khop_args(seeds, k, direction, types)
        if int_arg(threads, "threads") < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        offsets = [0]
        parts_n: list[I64] = []
        parts_h: list[I32] = []
        with self._lock, walks.budget(timeout, cancel):
            for s in seed_list:
                self._g.require_node(s)
            for s in seed_list:
                nodes, hops = walks.khop(self._g, [s], kk, d, tf)
                parts_n.append(nodes)
                parts_h.append(hops)
                offsets.append(offsets[-1] + len(nodes))
        return (np.array(offsets, dtype=np.int64),
                np.concatenate(parts_n) if parts_n else np.zeros(0, np.int64),
                np.concatenate(parts_h) if parts_h else np.zeros(0, np.int32))

    def paths(
        self,
        src: int,
        min_hops: int = 1,
        max_hops: int = 5,
        direction: str = "out",
        types: Any = None,
        dst: int | None = None,
        dst_label: int | None = None,
        src_label: int | None = None,
        limit: int = 100000,
        ends: Any = None,
        as_arrays: bool = False,
        *,
        timeout: float | None = None,
        cancel: Any = None,
    ) -> Any:
        """Simple paths from ``src`` with ``min_hops..max_hops`` relationships.

        Returns ``[(node_ids, edge_ids, product, min, sum)]`` ordered by length, then node
        ids, then edge ids.  ValueError when more than ``limit`` paths match.  ``ends`` keeps
        only paths whose last node is one of those ids (unknown ids are ignored).  With
        ``as_arrays=True`` the same paths come back as flat numpy arrays ``(nodes,
        node_offsets, edges, edge_offsets, product, min, sum)``: path ``i`` is
        ``nodes[node_offsets[i]:node_offsets[i + 1]]``.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3], [0, 0, 7])
            >>> g.add_edge(1, 0, [1], [2, 3]); g.add_edge(2, 0, [2], [3])
            >>> [p[0] for p in g.paths(1, dst_label=7)]
            [[1, 3], [1, 2, 3]]
            >>> try:
            ...     g.paths(1, limit=2)
            ... except ValueError as exc:
            ...     print(exc)
            more than 2 paths; narrow the query or raise limit
        """
        d = direction_arg(direction)
        tf = types_arg(types)
        mn = int_arg(min_hops, "min_hops")
        mx = int_arg(max_hops, "max_hops")
        lim = int_arg(limit, "limit")
        s = int_arg(src, "src")
        dv = None if dst is None else int_arg(dst, "dst")
        dl = opt_label_arg(dst_label, "dst_label")
        sl = opt_label_arg(src_label, "src_label")
        allowed = opt_ids_arg(ends, "ends")
        arrays = as_arrays_arg(as_arrays)
        check_hops(mn, mx)
        if lim < 1:
            raise ValueError(f"limit must be >= 1, got {lim}")
        with self._lock, walks.budget(timeout, cancel):
            out = walks.paths(self._g, s, mn, mx, d, tf, dv, dl, sl, lim, allowed)
        return path_arrays(out) if arrays else out

    def path_totals(
        self,
        src: int,
        min_hops: int = 1,
        max_hops: int = 5,
        direction: str = "out",
        types: Any = None,
        dst_label: int | None = None,
        *,
        timeout: float | None = None,
        cancel: Any = None,
    ) -> tuple[int, float, float, float]:
        """``(count, sum, min, max)`` of the confidence products of the paths :meth:`paths`
        would give (no limit; min and max are NaN without a path; nothing is kept per path in
        the native core).

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(1, 0, [1], [2], 0.5); g.add_edge(2, 0, [2], [3], 0.5)
            >>> g.path_totals(1)
            (2, 0.75, 0.25, 0.5)
        """
        found = self.paths(src, min_hops, max_hops, direction, types, dst_label=dst_label,
                           limit=2**62, timeout=timeout, cancel=cancel)
        products = [float(p[2]) for p in found]
        if not products:
            return 0, 0.0, math.nan, math.nan
        return len(found), float(sum(products)), min(products), max(products)

    def paths_to(
        self,
        dst: int,
        min_hops: int = 1,
        max_hops: int = 5,
        types: Any = None,
        src_label: int | None = None,
        limit: int = 100000,
        sources: Any = None,
        as_arrays: bool = False,
        *,
        timeout: float | None = None,
        cancel: Any = None,
    ) -> Any:
        """Simple paths ``a -> ... -> dst`` ("out" semantics), enumerated backwards.

        Node ids are returned in forward order (first = source, last = ``dst``).  ``sources``
        keeps only paths starting at one of those ids; ``as_arrays`` as in :meth:`paths`.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3], [5, 0, 0])
            >>> g.add_edge(1, 0, [1], [2]); g.add_edge(2, 0, [2], [3])
            >>> [p[0] for p in g.paths_to(3)]
            [[2, 3], [1, 2, 3]]
            >>> [p[0] for p in g.paths_to(3, src_label=5)]
            [[1, 2, 3]]
        """
        tf = types_arg(types)
        mn = int_arg(min_hops, "min_hops")
        mx = int_arg(max_hops, "max_hops")
        lim = int_arg(limit, "limit")
        t = int_arg(dst, "dst")
        sl = opt_label_arg(src_label, "src_label")
        allowed = opt_ids_arg(sources, "sources")
        arrays = as_arrays_arg(as_arrays)
        check_hops(mn, mx)
        if lim < 1:
            raise ValueError(f"limit must be >= 1, got {lim}")
        with self._lock, walks.budget(timeout, cancel):
            out = walks.paths_to(self._g, t, mn, mx, tf, sl, lim, allowed)
        return path_arrays(out) if arrays else out

    def top_paths(
        self,
        src: int,
        min_hops: int = 1,
        max_hops: int = 5,
        direction: str = "out",
        types: Any = None,
        n: int = 10,
        score: str = "product",
        dst: int | None = None,
        ends: Any = None,
        as_arrays: bool = False,
        *,
        timeout: float | None = None,
        cancel: Any = None,
    ) -> Any:
        """The ``n`` best simple paths by ``score`` ("product", "min" or "sum"), best first.

        ``ends`` keeps only paths ending at one of those ids; ``as_arrays`` as in
        :meth:`paths`.

        Ties keep the deterministic path order.  Branches are pruned when their score bound
        (product and min never grow along a path; a sum grows by at most 1 per hop) falls
        below the current n-th best.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(1, 0, [1], [2], 0.5); g.add_edge(2, 0, [2], [3], 0.5)
            >>> g.add_edge(3, 0, [1], [3], 0.2)
            >>> [(p[0], p[2]) for p in g.top_paths(1, n=2, dst=3)]
            [([1, 2, 3], 0.25), ([1, 3], 0.20000000298023224)]
        """
        d = direction_arg(direction)
        tf = types_arg(types)
        mn = int_arg(min_hops, "min_hops")
        mx = int_arg(max_hops, "max_hops")
        nn = int_arg(n, "n")
        if not isinstance(score, str):
            raise TypeError(f"score must be 'product', 'min' or 'sum', got {score!r}")
        if score not in SCORES:
            raise ValueError(f"score must be 'product', 'min' or 'sum', got '{score}'")
        s = int_arg(src, "src")
        dv = None if dst is None else int_arg(dst, "dst")
        allowed = opt_ids_arg(ends, "ends")
        arrays = as_arrays_arg(as_arrays)
        check_hops(mn, mx)
        if nn < 1:
            raise ValueError(f"n must be >= 1, got {nn}")
        which = SCORES.index(score)
        with self._lock, walks.budget(timeout, cancel):
            out = walks.top_paths(self._g, s, mn, mx, d, tf, nn, which, dv, allowed)
        return path_arrays(out) if arrays else out

    def match_chain(
        self,
        labels: Any,
        types: Any = None,
        directions: Any = None,
        start: Any = None,
        allowed: Any = None,
        distinct: str = "edges",
        *,
        timeout: float | None = None,
        cancel: Any = None,
    ) -> tuple[I64, I64]:
        """Every binding of a 2-4 node label chain ``(n0)-[e1]->(n1)-...``.

        ``labels``: node label per position (-1 = any); ``types``: per hop None, a type code
        or a list of codes; ``directions``: per hop "out"/"in"/"both" (default "out");
        ``start``: optional allowed start node ids (unknown ids are ignored); ``allowed``:
        optional list of ``len(labels)`` entries, None or the node ids allowed at that
        position.  ``distinct="edges"`` (default): no hyperedge repeats within a binding;
        ``"relationships"``: no projected relationship ``(edge, start, end)`` repeats
        (Cypher's rule; every direction must be "out" or "in").  Nodes may repeat.  Returns
        ``(nodes (n, L), edges (n, L-1))`` sorted by node row, then edge row.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3], [0, 1, 2])
            >>> g.add_edge(7, 0, [1], [2]); g.add_edge(8, 3, [2], [3])
            >>> nodes, edges = g.match_chain([0, 1, 2], [0, [3, 4]], ["out", "out"])
            >>> nodes.tolist(), edges.tolist()
            ([[1, 2, 3]], [[7, 8]])
        """
        lab: list[int] = []
        for v in ids_arg(labels, "labels"):
            if not -1 <= v <= I32_MAX:
                raise ValueError(f"labels must be in [-1, 2147483647], got {v}")
            lab.append(v)
        width = len(lab)
        if not 2 <= width <= 4:
            raise ValueError(f"labels must have 2 to 4 entries, got {width}")

        def seq(value: object, what: str, want: int | None = None) -> list[Any]:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{what} must be a list")
            n = width - 1 if want is None else want
            check_len(len(value), n, what, "len(labels)" if n == width else "len(labels) - 1")
            return list(value)

        tfs = [None] * (width - 1) if types is None else [types_arg(t) for t in seq(types, "types")]
        dirs = (
            ["out"] * (width - 1)
            if directions is None
            else [direction_arg(x) for x in seq(directions, "directions")]
        )
        start_ids = None if start is None else ids_arg(start, "start")
        allow: list[set[int] | None] = [None] * width
        if allowed is not None:
            allow = [None if a is None else set(ids_arg(a, "allowed"))
                     for a in seq(allowed, "allowed", width)]
        if not isinstance(distinct, str):
            raise TypeError(f"distinct must be 'edges' or 'relationships', got {distinct!r}")
        if distinct not in ("edges", "relationships"):
            raise ValueError(f"distinct must be 'edges' or 'relationships', got '{distinct}'")
        by_rel = distinct == "relationships"
        if by_rel and "both" in dirs:
            raise ValueError("distinct='relationships' needs 'out' or 'in' directions")
        with self._lock, walks.budget(timeout, cancel):
            return walks.match_chain(self._g, lab, tfs, dirs, start_ids, allow, by_rel)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, mappable: bool = False) -> None:
        """Write the graph to ``path`` in the AGDBHYPG format (atomic replace).

        ``mappable=True`` asks the native backend for version 2, which its ``load`` reads in
        place (memory-mapped); this backend always writes version 1, which both backends
        read (it reads version 2 too).

        Example:
            >>> import os, tempfile
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2], [4, 5]); g.add_edge(3, 0, [1], [2], 0.25)
            >>> path = os.path.join(tempfile.mkdtemp(), "g.agdbg")
            >>> g.save(path)
            >>> h = Hypergraph.load(path)
            >>> h.node_label(2), h.edge(3)[3]
            (5, 0.25)
        """
        target = Path(os.fspath(path))
        with self._lock:
            header, sections = encode(self._g)
        write_crc_file(target, header, sections)

    def is_mapped(self) -> bool:
        """Always False: this backend holds its graph in Python objects.

        Example:
            >>> Hypergraph().is_mapped()
            False
        """
        return False

    def mapped_resident_bytes(self) -> int:
        """Always 0 (nothing is memory-mapped by this backend).

        Example:
            >>> Hypergraph().mapped_resident_bytes()
            0
        """
        return 0

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Hypergraph:
        """Read a hypergraph file written by either backend.

        FileNotFoundError for a missing file; ValueError naming the problem for a file that
        is not a hypergraph file, has another version, is truncated or corrupt.

        Example:
            >>> import os, tempfile
            >>> path = os.path.join(tempfile.mkdtemp(), "bad.agdbg")
            >>> with open(path, "wb") as fh:
            ...     _ = fh.write(b"definitely not a graph")
            >>> try:
            ...     Hypergraph.load(path)
            ... except ValueError as exc:
            ...     print("bad magic" in str(exc))
            True
        """
        target = Path(os.fspath(path))
        state = decode(target.read_bytes(), f"'{target}'")
        graph = cls()
        graph._g = state
        return graph


def _khop_args(seeds: Any, k: Any, direction: Any, types: Any
               ) -> tuple[list[int], int, str, frozenset[int] | None]:
    """The checked arguments of ``khop`` / ``khop_batch``: seeds, k (>= 1), direction, types."""
    d = direction_arg(direction)
    tf = types_arg(types)
    kk = int_arg(k, "k")
    seed_list = ids_arg(seeds, "seeds")
    if kk < 1:
        raise ValueError(f"k must be >= 1, got {kk}")
    return seed_list, kk, d, tf
