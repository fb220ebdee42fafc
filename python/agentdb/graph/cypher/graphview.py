"""The graph interface the Cypher executor runs on, and an in-memory reference implementation.

A causal memory hypergraph has nodes (labels + properties) and hyperedges (a type, a tail set of
causes, a head set of effects, a ``confidence``, a ``timestamp`` and properties). Cypher sees its
*binary projection*: hyperedge ``e`` matches ``(a)-[r:TYPE]->(b)`` for every ``a`` in ``tail(e)``
and ``b`` in ``head(e)``. A projected relationship is identified by ``(edge_id, start, end)``.

:class:`GraphView` is the whole interface the executor uses (reads, a planner hint, and
writes). :class:`MemoryGraphView` implements it with plain dicts; it is what the tests use and
is handy for small graphs:

>>> g = MemoryGraphView()
>>> a = g.add_node(["Event"], {"name": "rain"})
>>> b = g.add_node(["Event"], {"name": "wet"})
>>> c = g.add_node(["Event"], {"name": "slippery"})
>>> e = g.add_edge("CAUSED_BY", [a], [b, c], confidence=0.9, timestamp=1.0)
>>> sorted(g.expand(a, "out", None))
[(0, 0, 1), (0, 0, 2)]
>>> g.relationship(e)
('CAUSED_BY', {'confidence': 0.9, 'timestamp': 1.0})
>>> [p for p in g.var_paths(a, 1, 2, "out", ["CAUSED_BY"], dst=c)]
[([0, 2], [(0, 0, 2)])]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from ...errors import InvalidArgumentError
from .budget import active
from .errors import CypherError

__all__ = ["GraphView", "MemoryGraphView", "UNBOUNDED_HOPS"]

UNBOUNDED_HOPS = 2**31 - 1
"""``max_hops`` the executor passes to :meth:`GraphView.var_paths` for an unbounded ``*``."""


@runtime_checkable
class GraphView(Protocol):
    """What the Cypher executor may call on a graph.

    Node ids and edge ids are ints (int64). ``direction`` is ``"out"`` (``nid`` is the start of
    the projected relationship), ``"in"`` (``nid`` is the end) or ``"both"``. ``types`` is a list
    of allowed relationship types, or None for any.
    """

    def node_ids(self, label: str | None = None) -> Iterable[int]:
        """Ids of all nodes, or of the nodes carrying ``label``."""
        ...

    def find_nodes(self, label: str | None, props: dict[str, Any]) -> Iterable[int]:
        """Exactly the nodes with ``label`` (if given) and all of ``props``' values.

        May use property indexes.
        """
        ...

    def has_index(self, label: str, prop: str) -> bool:
        """Planner hint: is ``find_nodes(label, {prop: v})`` an index lookup?"""
        ...

    def node(self, nid: int) -> tuple[list[str], dict[str, Any]]:
        """``(labels, properties)`` of node ``nid``; KeyError if unknown."""
        ...

    def expand(
        self, nid: int, direction: str, types: list[str] | None
    ) -> Iterable[tuple[int, int, int]]:
        """``(edge_id, start, end)`` of every projected relationship touching ``nid``.

        ``"both"`` yields each relationship once (a self-loop appears once).
        """
        ...

    def relationship(self, edge_id: int) -> tuple[str, dict[str, Any]]:
        """``(type, properties)`` of a hyperedge; properties include confidence and timestamp."""
        ...

    def var_paths(
        self,
        src: int,
        min_hops: int,
        max_hops: int,
        direction: str,
        types: list[str] | None,
        dst: int | None = None,
    ) -> Iterable[tuple[list[int], list[tuple[int, int, int]]]]:
        """All trails from ``src`` with ``min_hops..max_hops`` relationships (each used once).

        Yields ``(node ids, relationships)`` in traversal order (``len(nodes) == hops + 1``);
        only paths ending at ``dst`` when it is given. ``min_hops`` may be 0.

        Optional extension: a view that also defines ``index_lookup(label, props)`` (like
        ``find_nodes``, returning an immutable sequence it may cache until the next write)
        must accept ``var_paths(..., ends=ids)`` and then yield only paths whose last node is
        in ``ids``; the planner uses the pair to push an indexed equality on the far node of
        a variable-length hop into the traversal.
        """
        ...

    def create_node(self, labels: list[str], props: dict[str, Any]) -> int:
        """Create a node; return its id."""
        ...

    def create_relationship(self, type: str, start: int, end: int, props: dict[str, Any]) -> int:
        """Create a 1-tail/1-head hyperedge ``start -> end``; return the edge id."""
        ...

    def set_node_property(self, nid: int, key: str, value: Any) -> None:
        """Set a node property (``None`` removes it)."""
        ...

    def set_relationship_property(self, eid: int, key: str, value: Any) -> None:
        """Set a hyperedge property (``None`` removes it)."""
        ...

    def add_label(self, nid: int, label: str) -> None:
        """Add a label to a node (no-op when present)."""
        ...

    def remove_label(self, nid: int, label: str) -> None:
        """Remove a label from a node (no-op when absent)."""
        ...

    def delete_node(self, nid: int, detach: bool) -> None:
        """Delete a node; with ``detach`` also its hyperedges, else CypherError if it has any."""
        ...

    def delete_relationship(self, eid: int) -> None:
        """Delete a hyperedge."""
        ...


def _index_key(v: Any) -> Any:
    """Hashable key under which an indexed property value is stored (None: not indexable)."""
    t = type(v)
    if t is bool:
        return ("b", v)
    if t is int or t is float:
        return ("n", v)
    if t is str:
        return ("s", v)
    if t is list or t is tuple:
        keys = tuple(_index_key(x) for x in v)
        return None if any(k is None for k in keys) else ("l", keys)
    return None


def _same(a: Any, b: Any) -> bool:
    """Property value equality that keeps booleans apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - exotic user values
        return False


class _Edge:
    __slots__ = ("type", "tail", "head", "props")

    def __init__(self, type: str, tail: list[int], head: list[int], props: dict[str, Any]):
        self.type = type
        self.tail = tail
        self.head = head
        self.props = props


class MemoryGraphView:
    """A pure-Python hypergraph implementing :class:`GraphView`.

    Iteration orders are insertion orders, so results are deterministic. Property indexes
    (:meth:`create_index`) make ``find_nodes`` a dict lookup and are reported by ``has_index``.
    ``clock`` supplies default hyperedge timestamps (``time.time`` by default).

    >>> g = MemoryGraphView(clock=lambda: 0.0)
    >>> n = g.create_node(["A"], {"x": 1})
    >>> g.create_index("A", "x")
    >>> list(g.find_nodes("A", {"x": 1})), g.has_index("A", "x"), g.has_index("A", "y")
    ([0], True, False)
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock: Callable[[], float] = clock or time.time
        self._nodes: dict[int, tuple[list[str], dict[str, Any]]] = {}
        self._edges: dict[int, _Edge] = {}
        self._out: dict[int, dict[int, None]] = {}
        self._in: dict[int, dict[int, None]] = {}
        self._labels: dict[str, dict[int, None]] = {}
        self._indexes: dict[tuple[str, str], dict[Any, dict[int, None]]] = {}
        self._next_node = 0
        self._next_edge = 0
        self._nrels = 0  # number of projected relationships (bounds trail length)

    # ---- building ----------------------------------------------------------------------------

    def add_node(self, labels: Iterable[str] = (), props: dict[str, Any] | None = None) -> int:
        """Add a node; return its id (same as :meth:`create_node`)."""
        return self.create_node(list(labels), dict(props or {}))

    def add_edge(
        self,
        type: str,
        tail: Iterable[int],
        head: Iterable[int],
        confidence: float = 1.0,
        timestamp: float | None = None,
        props: dict[str, Any] | None = None,
    ) -> int:
        """Add a hyperedge ``tail -> head``; return its id."""
        tail_l = list(dict.fromkeys(tail))
        head_l = list(dict.fromkeys(head))
        if not tail_l or not head_l:
            raise InvalidArgumentError("a hyperedge needs at least one tail and one head node")
        for nid in tail_l + head_l:
            if nid not in self._nodes:
                raise KeyError(nid)
        p = dict(props or {})
        p["confidence"] = float(confidence)
        p["timestamp"] = float(self._clock() if timestamp is None else timestamp)
        eid = self._next_edge
        self._next_edge += 1
        self._edges[eid] = _Edge(type, tail_l, head_l, p)
        self._nrels += len(tail_l) * len(head_l)
        for nid in tail_l:
            self._out[nid][eid] = None
        for nid in head_l:
            self._in[nid][eid] = None
        return eid

    def create_index(self, label: str, prop: str) -> None:
        """Index property ``prop`` of nodes labelled ``label`` (idempotent)."""
        if (label, prop) in self._indexes:
            return
        idx: dict[Any, dict[int, None]] = {}
        self._indexes[(label, prop)] = idx
        for nid in self._labels.get(label, {}):
            self._index_add(label, prop, nid)

    def edges(self) -> dict[int, tuple[str, list[int], list[int], dict[str, Any]]]:
        """Snapshot of all hyperedges: ``{eid: (type, tail, head, props)}``."""
        return {
            eid: (e.type, list(e.tail), list(e.head), dict(e.props))
            for eid, e in self._edges.items()
        }

    def __len__(self) -> int:
        return len(self._nodes)

    # ---- index maintenance -------------------------------------------------------------------

    def _index_add(self, label: str, prop: str, nid: int) -> None:
        props = self._nodes[nid][1]
        if prop in props:
            key = _index_key(props[prop])
            if key is not None:
                self._indexes[(label, prop)].setdefault(key, {})[nid] = None

    def _index_remove(self, label: str, prop: str, nid: int) -> None:
        props = self._nodes[nid][1]
        if prop in props:
            key = _index_key(props[prop])
            bucket = self._indexes[(label, prop)].get(key) if key is not None else None
            if bucket is not None:
                bucket.pop(nid, None)
                if not bucket:
                    del self._indexes[(label, prop)][key]

    def _indexes_of(self, nid: int, prop: str | None = None) -> list[tuple[str, str]]:
        labels = self._nodes[nid][0]
        return [
            (lab, p)
            for (lab, p) in self._indexes
            if lab in labels and (prop is None or p == prop)
        ]

    # ---- GraphView: reads --------------------------------------------------------------------

    def node_ids(self, label: str | None = None) -> list[int]:
        if label is None:
            return list(self._nodes)
        return list(self._labels.get(label, ()))

    def find_nodes(self, label: str | None, props: dict[str, Any]) -> list[int]:
        candidates: Iterable[int] | None = None
        if label is not None:
            for key, value in props.items():
                idx = self._indexes.get((label, key))
                ik = _index_key(value)
                if idx is not None and ik is not None:
                    candidates = list(idx.get(ik, ()))
                    break
            if candidates is None:
                candidates = self._labels.get(label, ())
        else:
            candidates = self._nodes
        out = []
        for nid in candidates:
            labels, nprops = self._nodes[nid]
            if label is not None and label not in labels:
                continue
            if all(k in nprops and _same(nprops[k], v) for k, v in props.items()):
                out.append(nid)
        return out

    def index_lookup(self, label: str | None, props: dict[str, Any]) -> Sequence[int]:
        return tuple(self.find_nodes(label, props))

    def has_index(self, label: str, prop: str) -> bool:
        return (label, prop) in self._indexes

    def node(self, nid: int) -> tuple[list[str], dict[str, Any]]:
        labels, props = self._nodes[nid]
        return list(labels), dict(props)

    def expand(
        self, nid: int, direction: str, types: list[str] | None
    ) -> Iterator[tuple[int, int, int]]:
        if direction in ("out", "both"):
            for eid in self._out.get(nid, ()):
                e = self._edges[eid]
                if types is None or e.type in types:
                    for h in e.head:
                        yield (eid, nid, h)
        if direction in ("in", "both"):
            for eid in self._in.get(nid, ()):
                e = self._edges[eid]
                if types is None or e.type in types:
                    for t in e.tail:
                        if direction == "both" and t == nid:
                            continue  # a self-loop was already yielded as outgoing
                        yield (eid, t, nid)
        if direction not in ("out", "in", "both"):
            raise InvalidArgumentError(
                f"direction must be 'out', 'in' or 'both', got {direction!r}")

    def relationship(self, edge_id: int) -> tuple[str, dict[str, Any]]:
        e = self._edges[edge_id]
        return e.type, dict(e.props)

    def _distances_to(
        self, dst: int, direction: str, types: list[str] | None, limit: int
    ) -> dict[int, int]:
        """Hop distance from every node within ``limit`` hops to ``dst`` along ``direction``."""
        back = {"out": "in", "in": "out", "both": "both"}[direction]
        dist = {dst: 0}
        frontier = [dst]
        d = 0
        while frontier and d < limit:
            d += 1
            nxt = []
            for nid in frontier:
                for _eid, s, e in self.expand(nid, back, types):
                    other = e if s == nid else s
                    if other not in dist:
                        dist[other] = d
                        nxt.append(other)
            frontier = nxt
        return dist

    def var_paths(
        self,
        src: int,
        min_hops: int,
        max_hops: int,
        direction: str,
        types: list[str] | None,
        dst: int | None = None,
        ends: Collection[int] | None = None,
    ) -> Iterator[tuple[list[int], list[tuple[int, int, int]]]]:
        if src not in self._nodes or max_hops < min_hops or max_hops < 0:
            return
        if ends is not None and not isinstance(ends, (set, frozenset)):
            ends = set(ends)
        limit = min(max_hops, self._nrels)
        src_ok = (dst is None or dst == src) and (ends is None or src in ends)
        if limit < min_hops:
            if min_hops == 0 and src_ok:
                yield [src], []
            return
        dist: dict[int, int] | None = None
        if dst is not None:
            dist = self._distances_to(dst, direction, types, limit)
            if src not in dist:
                return
        nodes = [src]
        rels: list[tuple[int, int, int]] = []
        used: set[tuple[int, int, int]] = set()
        if min_hops == 0 and src_ok:
            yield [src], []
        if limit < 1:
            return
        # iterative DFS: a stack of expansion iterators, one per depth
        stack: list[Iterator[tuple[int, int, int]]] = [iter(self.expand(src, direction, types))]
        budget = active()
        while stack:
            if budget is not None:
                budget.tick()
            rel = next(stack[-1], None)
            if rel is None:
                stack.pop()
                if rels:
                    used.discard(rels.pop())
                    nodes.pop()
                continue
            if rel in used:
                continue
            cur = nodes[-1]
            other = rel[2] if rel[1] == cur else rel[1]
            hops = len(rels) + 1
            if dist is not None:
                need = dist.get(other)
                if need is None or hops + need > limit:
                    continue
            rels.append(rel)
            used.add(rel)
            nodes.append(other)
            if hops >= min_hops and (dst is None or other == dst) and (
                ends is None or other in ends
            ):
                yield list(nodes), list(rels)
            if hops < limit:
                stack.append(iter(self.expand(other, direction, types)))
            else:
                used.discard(rels.pop())
                nodes.pop()

    # ---- GraphView: writes -------------------------------------------------------------------

    def create_node(self, labels: list[str], props: dict[str, Any]) -> int:
        nid = self._next_node
        self._next_node += 1
        labels = list(dict.fromkeys(labels))
        self._nodes[nid] = (labels, {k: v for k, v in props.items() if v is not None})
        self._out[nid] = {}
        self._in[nid] = {}
        for lab in labels:
            self._labels.setdefault(lab, {})[nid] = None
        for lab, p in self._indexes_of(nid):
            self._index_add(lab, p, nid)
        return nid

    def create_relationship(self, type: str, start: int, end: int, props: dict[str, Any]) -> int:
        p = {k: v for k, v in props.items() if v is not None}
        return self.add_edge(
            type,
            [start],
            [end],
            confidence=p.pop("confidence", 1.0),
            timestamp=p.pop("timestamp", None),
            props=p,
        )

    def set_node_property(self, nid: int, key: str, value: Any) -> None:
        props = self._nodes[nid][1]
        idxs = self._indexes_of(nid, key)
        for lab, p in idxs:
            self._index_remove(lab, p, nid)
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
        for lab, p in idxs:
            self._index_add(lab, p, nid)

    def set_relationship_property(self, eid: int, key: str, value: Any) -> None:
        props = self._edges[eid].props
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value

    def add_label(self, nid: int, label: str) -> None:
        labels = self._nodes[nid][0]
        if label in labels:
            return
        labels.append(label)
        self._labels.setdefault(label, {})[nid] = None
        for (lab, p) in self._indexes:
            if lab == label:
                self._index_add(lab, p, nid)

    def remove_label(self, nid: int, label: str) -> None:
        labels = self._nodes[nid][0]
        if label not in labels:
            return
        for (lab, p) in self._indexes:
            if lab == label:
                self._index_remove(lab, p, nid)
        labels.remove(label)
        self._labels[label].pop(nid, None)

    def delete_node(self, nid: int, detach: bool) -> None:
        if nid not in self._nodes:
            raise KeyError(nid)
        touching = list(dict.fromkeys(list(self._out[nid]) + list(self._in[nid])))
        if touching and not detach:
            raise CypherError(
                f"cannot delete node {nid}: it still has relationships; use DETACH DELETE"
            )
        for eid in touching:
            self.delete_relationship(eid)
        for lab, p in self._indexes_of(nid):
            self._index_remove(lab, p, nid)
        for lab in self._nodes[nid][0]:
            self._labels[lab].pop(nid, None)
        del self._nodes[nid]
        del self._out[nid]
        del self._in[nid]

    def delete_relationship(self, eid: int) -> None:
        e = self._edges.pop(eid)
        self._nrels -= len(e.tail) * len(e.head)
        for nid in e.tail:
            self._out[nid].pop(eid, None)
        for nid in e.head:
            self._in[nid].pop(eid, None)
