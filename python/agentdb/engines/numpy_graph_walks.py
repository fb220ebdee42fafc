"""Traversal algorithms of the numpy hypergraph, over a :class:`~.numpy_graph_state.GraphState`.

Every function here takes converted arguments (see :mod:`.numpy_graph_args`) and expects the
caller -- :class:`~agentdb.engines.numpy_graph.Hypergraph` -- to hold its lock.  Paths are
simple (no node and no hyperedge repeats) and walk the binary projection of
:meth:`GraphState.neighbours`; scores are accumulated over the edge confidences in float64
in returned order: product ``((1*c1)*c2)...``, min, sum ``((0+c1)+c2)...``.

Example:
    >>> g = GraphState()
    >>> g.upsert_nodes([1, 2, 3], [0, 0, 0])
    >>> g.insert_edges([7, 8], [0, 0], [0, 1, 2], [1, 2], [0, 1, 2], [2, 3], [0.5, 0.5],
    ...                [0.0, 0.0])
    >>> [p[0] for p in paths(g, 1, 1, 2, "out", None, None, None, None, 100, None)]
    [[1, 2], [1, 2, 3]]
"""

from __future__ import annotations

import bisect
import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import numpy as np

from .numpy_graph_args import I32, I64, PathTuple
from .numpy_graph_state import GraphState

__all__ = [
    "budget",
    "dist_to",
    "khop",
    "match_chain",
    "paths",
    "paths_to",
    "sorted_paths",
    "top_paths",
    "walk",
]

_INF: Final = float("inf")
#: Rows match_chain may materialise before it refuses (the native core's limit too).
MAX_CHAIN_ROWS: Final = 1 << 24

Admit = Callable[[int, int, int, list[int], list[int]], bool]
Step = Callable[[int, int, list[int], list[int]], bool]

_current = threading.local()


def _check_budget_args(timeout: Any, cancel: Any) -> tuple[float, Any]:
    t = 0.0
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        t = float(timeout)
        if math.isnan(t):
            raise ValueError("timeout must not be NaN")
    if cancel is not None and not (isinstance(cancel, np.ndarray) and cancel.dtype == np.uint8
                                   and cancel.size >= 1):
        raise TypeError("cancel must be a uint8 numpy array of at least one element")
    return t, cancel


@contextlib.contextmanager
def budget(timeout: Any = None, cancel: Any = None) -> Iterator[None]:
    """Bound the walks run in the block (this thread): ``timeout`` seconds (<= 0 or None:
    none) and a ``cancel`` flag (a uint8 numpy array another thread sets to 1). A walk past
    either raises ``TimeoutError`` ("query timed out" / "query cancelled"), as the native
    walks do.

    >>> flag = np.ones(1, np.uint8)
    >>> try:
    ...     with budget(cancel=flag):
    ...         pass
    ... except TimeoutError as exc:
    ...     print(exc)
    query cancelled
    """
    t, flag = _check_budget_args(timeout, cancel)
    prev = getattr(_current, "b", None)
    _current.b = None if t <= 0 and flag is None else [
        time.monotonic() + t if t > 0 else _INF, flag, 0]
    try:
        _tick(force=True)
        yield
    finally:
        _current.b = prev


def _tick(force: bool = False) -> None:
    b = getattr(_current, "b", None)
    if b is None:
        return
    b[2] += 1
    if not force and b[2] & 1023:
        return
    if b[1] is not None and b[1][0]:
        raise TimeoutError("query cancelled")
    if time.monotonic() > b[0]:
        raise TimeoutError("query timed out")


def _path_scores(confs: list[float]) -> tuple[float, float, float]:
    p, m, s = 1.0, 1.0, 0.0
    for c in confs:
        p *= c
        m = min(m, c)
        s += c
    return p, m, s


# =========================================================================================
# building blocks
# =========================================================================================
def dist_to(
    g: GraphState, dst: int, max_d: int, direction: str, tf: frozenset[int] | None
) -> dict[int, int]:
    """Hops from every node within ``max_d`` hops of ``dst`` to it (walking ``direction``)."""
    rev = {"out": "in", "in": "out", "both": "both"}[direction]
    dist = {dst: 0}
    frontier = [dst]
    depth = 0
    while depth < max_d and frontier:
        nxt = []
        for u in frontier:
            for b, _e in g.neighbours(u, rev, tf):
                if b not in dist:
                    dist[b] = depth + 1
                    nxt.append(b)
        frontier = nxt
        depth += 1
    return dist


def walk(
    g: GraphState,
    root: int,
    max_hops: int,
    direction: str,
    tf: frozenset[int] | None,
    admit: Admit,
    step: Step,
) -> None:
    """DFS over simple paths (no repeated node or edge) from ``root``.

    ``admit(len, b, e, nodes, edges)`` filters a candidate (pruning); ``step(len, b,
    nodes, edges)`` sees the path with ``b`` appended and says whether to go deeper.
    """
    nodes = [root]
    edges: list[int] = []
    on_node = {root}
    on_edge: set[int] = set()

    def rec(v: int, depth: int) -> None:
        _tick()
        cands = [
            (b, e)
            for b, e in g.neighbours(v, direction, tf)
            if b not in on_node and e not in on_edge and admit(depth + 1, b, e, nodes, edges)
        ]
        for b, e in cands:
            _tick()
            nodes.append(b)
            edges.append(e)
            if step(depth + 1, b, nodes, edges) and depth + 1 < max_hops:
                on_node.add(b)
                on_edge.add(e)
                rec(b, depth + 1)
                on_node.discard(b)
                on_edge.discard(e)
            nodes.pop()
            edges.pop()

    if max_hops > 0:
        rec(root, 0)


def sorted_paths(g: GraphState, found: list[tuple[list[int], list[int]]]) -> list[PathTuple]:
    """``found`` (node ids, edge ids) pairs ordered by length, then node ids, then edge ids,
    with their ``(product, min, sum)`` scores."""
    found.sort(key=lambda p: (len(p[1]), p[0], p[1]))
    edges = g.edges
    return [(n, e, *_path_scores([edges[x][3] for x in e])) for n, e in found]


# =========================================================================================
# traversals
# =========================================================================================
def khop(
    g: GraphState, seed_list: list[int], kk: int, d: str, tf: frozenset[int] | None
) -> tuple[I64, I32]:
    """Nodes within 1..``kk`` hops of the seeds with their minimum hop count, sorted by id
    (seeds only when re-reached through a cycle); KeyError for an unknown seed."""
    for s in seed_list:
        g.require_node(s)
    dist: dict[int, int] = {}
    frontier: list[int] = []
    for s in seed_list:
        if s not in dist:
            dist[s] = 0
            frontier.append(s)
    seeds_set = set(frontier)
    seed_hop: dict[int, int] = {}
    depth = 0
    while depth < kk and frontier:
        nxt: list[int] = []
        for u in frontier:
            _tick()
            for b, _e in g.neighbours(u, d, tf):
                if b in seeds_set:
                    seed_hop.setdefault(b, depth + 1)
                elif b not in dist:
                    dist[b] = depth + 1
                    nxt.append(b)
        frontier = nxt
        depth += 1
    found = {v: h for v, h in dist.items() if v not in seeds_set}
    found.update(seed_hop)
    order = sorted(found)
    return (
        np.array(order, dtype=np.int64),
        np.array([found[v] for v in order], dtype=np.int32),
    )


def paths(
    g: GraphState,
    s: int,
    mn: int,
    mx: int,
    d: str,
    tf: frozenset[int] | None,
    dv: int | None,
    dl: int | None,
    sl: int | None,
    lim: int,
    allowed: set[int] | None,
) -> list[PathTuple]:
    """Simple paths from ``s`` with ``mn..mx`` hops, optionally ending at ``dv``, at a node
    labelled ``dl`` or in ``allowed``; none when ``s`` is not labelled ``sl``.  ValueError
    when more than ``lim`` match; KeyError for an unknown ``s`` or ``dv``."""
    g.require_node(s)
    if dv is not None:
        g.require_node(dv)
    if sl is not None and g.labels[s] != sl:
        return []
    labels = g.labels
    dist = dist_to(g, dv, mx - 1, d, tf) if dv is not None else None
    found: list[tuple[list[int], list[int]]] = []

    def ends_ok(v: int) -> bool:
        return (
            (dv is None or v == dv)
            and (dl is None or labels[v] == dl)
            and (allowed is None or v in allowed)
        )

    def emit(nodes: list[int], edges: list[int]) -> None:
        found.append((list(nodes), list(edges)))
        if len(found) > lim:
            raise ValueError(f"more than {lim} paths; narrow the query or raise limit")

    def admit(ln: int, b: int, e: int, nodes: list[int], edges: list[int]) -> bool:
        return dist is None or dist.get(b, _INF) <= mx - ln

    def step(ln: int, b: int, nodes: list[int], edges: list[int]) -> bool:
        if ln >= mn and ends_ok(b):
            emit(nodes, edges)
        return not (dv is not None and b == dv)

    if mn == 0 and ends_ok(s):
        emit([s], [])
    walk(g, s, mx, d, tf, admit, step)
    return sorted_paths(g, found)


def paths_to(
    g: GraphState,
    t: int,
    mn: int,
    mx: int,
    tf: frozenset[int] | None,
    sl: int | None,
    lim: int,
    allowed: set[int] | None,
) -> list[PathTuple]:
    """Simple paths ``a -> ... -> t`` ("out" semantics, enumerated backwards from ``t``),
    starting at a node labelled ``sl`` / in ``allowed``; node ids in forward order."""
    g.require_node(t)
    labels = g.labels
    found: list[tuple[list[int], list[int]]] = []

    def src_ok(v: int) -> bool:
        return (sl is None or labels[v] == sl) and (allowed is None or v in allowed)

    def emit(nodes: list[int], edges: list[int]) -> None:
        found.append((nodes[::-1], edges[::-1]))
        if len(found) > lim:
            raise ValueError(f"more than {lim} paths; narrow the query or raise limit")

    def step(ln: int, b: int, nodes: list[int], edges: list[int]) -> bool:
        if ln >= mn and src_ok(b):
            emit(nodes, edges)
        return True

    if mn == 0 and src_ok(t):
        emit([t], [])
    walk(g, t, mx, "in", tf, lambda *_: True, step)
    return sorted_paths(g, found)


def top_paths(
    g: GraphState,
    s: int,
    mn: int,
    mx: int,
    d: str,
    tf: frozenset[int] | None,
    nn: int,
    which: int,
    dv: int | None,
    allowed: set[int] | None,
) -> list[PathTuple]:
    """The ``nn`` best simple paths from ``s`` by score ``which`` (0 product, 1 min, 2 sum),
    best first; branches whose score bound falls below the current ``nn``-th are pruned."""
    cap = min(nn, 1 << 20)
    g.require_node(s)
    if dv is not None:
        g.require_node(dv)
    dist = dist_to(g, dv, mx - 1, d, tf) if dv is not None else None
    edges_db = g.edges
    # best: ascending keys (-score, length, nodes, edges) -> best first
    best: list[tuple[float, int, tuple[int, ...], tuple[int, ...]]] = []
    sc_stack: list[tuple[float, float, float]] = [(1.0, 1.0, 0.0)]

    def bound(ln: int, p: float, m: float, sm: float) -> float:
        return (p, m, sm + (mx - ln) + 1e-9)[which]

    def worst() -> float:
        return -best[-1][0]

    def offer(nodes: list[int], edges: list[int], sc: float) -> None:
        if len(best) >= cap and sc < worst():
            return
        bisect.insort(best, (-sc, len(edges), tuple(nodes), tuple(edges)))
        if len(best) > cap:
            best.pop()

    def admit(ln: int, b: int, e: int, nodes: list[int], edges: list[int]) -> bool:
        if dist is not None and dist.get(b, _INF) > mx - ln:
            return False
        if len(best) < cap:
            return True
        c = edges_db[e][3]
        p, m, sm = sc_stack[ln - 1]
        return not bound(ln, p * c, min(m, c), sm + c) < worst()

    def step(ln: int, b: int, nodes: list[int], edges: list[int]) -> bool:
        c = edges_db[edges[-1]][3]
        p, m, sm = sc_stack[ln - 1]
        cur = (p * c, min(m, c), sm + c)
        del sc_stack[ln:]
        sc_stack.append(cur)
        if ln >= mn and (dv is None or b == dv) and (allowed is None or b in allowed):
            offer(nodes, edges, cur[which])
        if dv is not None and b == dv:
            return False
        return not (len(best) >= cap and bound(ln, *cur) < worst())

    if mn == 0 and (dv is None or s == dv) and (allowed is None or s in allowed):
        offer([s], [], (1.0, 1.0, 0.0)[which])
    walk(g, s, mx, d, tf, admit, step)
    out: list[PathTuple] = []
    for _neg, _ln, nodes, edges in best:
        out.append((list(nodes), list(edges), *_path_scores([edges_db[x][3] for x in edges])))
    return out


def match_chain(
    g: GraphState,
    lab: list[int],
    tfs: list[frozenset[int] | None],
    dirs: list[str],
    start_ids: list[int] | None,
    allow: list[set[int] | None],
    by_rel: bool,
) -> tuple[I64, I64]:
    """Every binding ``(nodes (n, L), edges (n, L-1))`` of the label chain ``lab`` (-1 = any),
    hop ``j`` along ``dirs[j]`` with a type in ``tfs[j]``, sorted by node row then edge row.
    No hyperedge repeats in a binding, or with ``by_rel`` no ``(edge, start, end)``."""
    width = len(lab)
    rows: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    node_label = g.labels
    if start_ids is not None:
        starts = sorted({v for v in start_ids if v in node_label})
    elif allow[0] is not None:
        starts = sorted(v for v in allow[0] if v in node_label)
    else:
        starts = list(node_label)

    def ok(i: int, v: int) -> bool:
        a = allow[i]
        return (lab[i] == -1 or node_label[v] == lab[i]) and (a is None or v in a)

    def rel(j: int, a: int, b: int, e: int) -> tuple[int, int, int]:
        return (e, b, a) if dirs[j] == "in" else (e, a, b)

    def fresh(i: int, nodes: list[int], edges: list[int], b: int, e: int) -> bool:
        if not by_rel:
            return e not in edges
        mine = rel(i - 1, nodes[-1], b, e)
        return all(
            rel(j, nodes[j], nodes[j + 1], edges[j]) != mine for j in range(i - 1)
        )

    def rec(i: int, nodes: list[int], edges: list[int]) -> None:
        if i == width:
            if len(rows) >= MAX_CHAIN_ROWS:
                raise ValueError(f"the pattern matches more than {MAX_CHAIN_ROWS} rows; "
                                 "narrow it (labels, properties, LIMIT)")
            rows.append((tuple(nodes), tuple(edges)))
            return
        for b, e in g.neighbours(nodes[-1], dirs[i - 1], tfs[i - 1]):
            _tick()
            if ok(i, b) and fresh(i, nodes, edges, b, e):
                nodes.append(b)
                edges.append(e)
                rec(i + 1, nodes, edges)
                nodes.pop()
                edges.pop()

    for v in starts:
        _tick()
        if ok(0, v):
            rec(1, [v], [])
    rows.sort()
    node_tab = np.array([r[0] for r in rows], dtype=np.int64).reshape(len(rows), width)
    edge_tab = np.array([r[1] for r in rows], dtype=np.int64).reshape(len(rows), width - 1)
    return node_tab, edge_tab
