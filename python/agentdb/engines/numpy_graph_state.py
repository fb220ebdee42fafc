"""The storage of the numpy hypergraph: plain dicts, node -> incident edges, edge -> record.

:class:`GraphState` holds the nodes (id -> label), the hyperedges (id -> :data:`EdgeRecord`)
and, per node, the edges with the node in their tail (``out_edges``) or head (``in_edges``);
it answers the binary projection (:meth:`GraphState.neighbours`) the traversals of
:mod:`.numpy_graph_walks` walk on, and keeps the compaction bookkeeping of the native CSR
(``buffered`` / ``csr_edges``).  It is not thread-safe:
:class:`~agentdb.engines.numpy_graph.Hypergraph` holds its lock around every call, and
converts the arguments first (:mod:`.numpy_graph_args`).

Example:
    >>> g = GraphState()
    >>> g.upsert_nodes([1, 2, 3], [0, 0, 0])
    >>> g.insert_edges([9], [0], [0, 1], [1], [0, 2], [2, 3], [0.5], [0.0])
    >>> g.neighbours(1, "out", None)
    [(2, 9), (3, 9)]
"""

from __future__ import annotations

from typing import Final

from .numpy_graph_args import I32_MAX, check_distinct, check_offsets, f32

__all__ = ["EdgeRecord", "GraphState"]

#: One hyperedge: ``(type, tail node ids, head node ids, confidence, timestamp)``.
EdgeRecord = tuple[int, tuple[int, ...], tuple[int, ...], float, float]

_MIN_BUFFER: Final = 1024


def _num(v: float) -> str:
    return repr(v)


class GraphState:
    """Nodes, hyperedges and incidence dicts of one hypergraph (see the module docstring)."""

    def __init__(self) -> None:
        """An empty graph.

        Example:
            >>> GraphState().labels
            {}
        """
        self.labels: dict[int, int] = {}
        self.edges: dict[int, EdgeRecord] = {}
        self.out_edges: dict[int, dict[int, None]] = {}  # node -> edges with it in the tail
        self.in_edges: dict[int, dict[int, None]] = {}  # node -> edges with it in the head
        self.csr_edges = 0  # live edges at the last compaction
        self.buffered = 0  # edges added since the last compaction (removed ones included)

    # -- lookups --------------------------------------------------------------------------
    def require_node(self, nid: int) -> int:
        """``nid`` if it is a node, else KeyError ``unknown node``."""
        if nid not in self.labels:
            raise KeyError(f"unknown node {nid}")
        return nid

    def require_edge(self, eid: int) -> EdgeRecord:
        """The record of edge ``eid``, else KeyError ``unknown edge``."""
        rec = self.edges.get(eid)
        if rec is None:
            raise KeyError(f"unknown edge {eid}")
        return rec

    def neighbours(
        self, a: int, direction: str, tf: frozenset[int] | None
    ) -> list[tuple[int, int]]:
        """Every distinct (b, e) with a -[e]-> b in ``direction`` (edge types in ``tf``)."""
        out: list[tuple[int, int]] = []
        edges = self.edges
        if direction != "in":
            for e in self.out_edges[a]:
                t, _tail, head, _c, _ts = edges[e]
                if tf is None or t in tf:
                    for b in head:
                        out.append((b, e))
        if direction != "out":
            both = direction == "both"
            for e in self.in_edges[a]:
                t, tail, head, _c, _ts = edges[e]
                if tf is None or t in tf:
                    a_in_tail = both and a in tail
                    for b in tail:
                        if a_in_tail and b in head:
                            continue  # already reported by the "out" half
                        out.append((b, e))
        return out

    def memory_usage(self) -> int:
        """Rough bytes held (dict and tuple overheads estimated)."""
        n, m = len(self.labels), len(self.edges)
        inc = sum(len(r[1]) + len(r[2]) for r in self.edges.values())
        return 64 + n * 400 + m * 300 + inc * 120

    # -- writes ---------------------------------------------------------------------------
    def upsert_nodes(self, ids: list[int], labels: list[int]) -> None:
        """Insert nodes or change their labels; every pair is checked before any is written."""
        for nid, lab in zip(ids, labels):
            if nid == -1:
                raise ValueError("node id -1 is reserved")
            if not -1 <= lab <= I32_MAX:
                raise ValueError(f"label must be in [-1, 2147483647], got {lab}")
        for nid, lab in zip(ids, labels):
            if nid not in self.labels:
                self.out_edges[nid] = {}
                self.in_edges[nid] = {}
            self.labels[nid] = lab

    def insert_edges(
        self,
        ids: list[int],
        types: list[int],
        toff: list[int],
        tn: list[int],
        hoff: list[int],
        hn: list[int],
        conf: list[float],
        ts: list[float],
    ) -> None:
        """Insert hyperedges given CSR-style tails and heads; all-or-nothing.

        Edge ``i`` has tail ``tn[toff[i]:toff[i + 1]]`` and head ``hn[hoff[i]:hoff[i + 1]]``
        (distinct known nodes, non-empty); ids must be new.  May compact afterwards.
        """
        n = len(ids)
        check_offsets(toff, n, len(tn), "tail_offsets", "tail_nodes")
        check_offsets(hoff, n, len(hn), "head_offsets", "head_nodes")
        batch: set[int] = set()
        records: list[tuple[int, EdgeRecord]] = []
        for i in range(n):
            eid, t, c = ids[i], types[i], conf[i]
            if eid == -1:
                raise ValueError("edge id -1 is reserved")
            if not 0 <= t <= I32_MAX:
                raise ValueError(f"edge type must be in [0, 2147483647], got {t}")
            if not 0.0 <= c <= 1.0:
                raise ValueError(f"confidence must be in [0, 1], got {_num(c)} (edge {eid})")
            tail = tn[toff[i] : toff[i + 1]]
            head = hn[hoff[i] : hoff[i + 1]]
            if not tail:
                raise ValueError(f"edge {eid} has an empty tail")
            if not head:
                raise ValueError(f"edge {eid} has an empty head")
            check_distinct(tail, eid, "tail")
            check_distinct(head, eid, "head")
            if eid in self.edges or eid in batch:
                raise ValueError(f"duplicate edge id {eid}")
            batch.add(eid)
            for v in tail:
                self.require_node(v)
            for v in head:
                self.require_node(v)
            records.append((eid, (t, tuple(tail), tuple(head), f32(c), float(ts[i]))))
        for eid, rec in records:
            self.edges[eid] = rec
            for v in rec[1]:
                self.out_edges[v][eid] = None
            for v in rec[2]:
                self.in_edges[v][eid] = None
        self._maybe_compact(n)

    def remove_node(self, nid: int) -> None:
        """Remove a node and every edge incident to it (KeyError if unknown)."""
        self.require_node(nid)
        for e in list(self.out_edges[nid]) + list(self.in_edges[nid]):
            if e in self.edges:
                self.remove_edge(e)
        del self.labels[nid], self.out_edges[nid], self.in_edges[nid]

    def remove_edge(self, eid: int) -> None:
        """Remove one hyperedge (KeyError if unknown)."""
        self.require_edge(eid)
        _t, tail, head, _c, _ts = self.edges.pop(eid)
        for v in tail:
            self.out_edges[v].pop(eid, None)
        for v in head:
            self.in_edges[v].pop(eid, None)

    def compact(self) -> None:
        """Merge the append buffer (bookkeeping only in this backend)."""
        self.csr_edges = len(self.edges)
        self.buffered = 0

    def _maybe_compact(self, added: int) -> None:
        if self.buffered + added > max(_MIN_BUFFER, self.csr_edges // 4):
            self.compact()
        else:
            self.buffered += added
