"""Parity suite for the causal hypergraph (spec_graph.md).

Every test taking ``graph_cls`` runs against both implementations: the native
``agentdb._native.Hypergraph`` (when the extension loaded) and the pure-Python
``agentdb.engines.numpy_graph.Hypergraph``.  Randomised tests build the same graph in both backends
and require identical results for every traversal (and agreement with a small brute-force
reference written here), before and after compaction and removals.
"""

from __future__ import annotations

import random
import struct
import threading
import zlib

import numpy as np
import pytest
from _requires import unavailable
from agentdb.engines import loader as _loader
from agentdb.engines import numpy_graph as _numpy_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NATIVE_GRAPH = getattr(_loader.backends().get("native"), "Hypergraph", None)
GRAPH_CLASSES = {"numpy": _numpy_graph.Hypergraph}
if NATIVE_GRAPH is not None:
    GRAPH_CLASSES["native"] = NATIVE_GRAPH
NAMES = [n for n in ("numpy", "native") if n in GRAPH_CLASSES]


def _native_or_skip():
    if NATIVE_GRAPH is None:
        unavailable("NATIVE", "native Hypergraph (agentdb._native) not available")
    return NATIVE_GRAPH


@pytest.fixture(params=NAMES, ids=NAMES)
def graph_cls(request):
    """The Hypergraph class under test ("numpy" always, "native" when it loaded)."""
    return GRAPH_CLASSES[request.param]


@pytest.fixture
def both():
    """(numpy class, native class); skips without the native extension."""
    return _numpy_graph.Hypergraph, _native_or_skip()


# ---------------------------------------------------------------------------------- helpers


def f32(x):
    return float(np.float32(x))


def snapshot(g):
    """Everything observable about a graph's contents."""
    nodes = g.node_ids().tolist()
    edges = []
    for e in g.edge_ids().tolist():
        t, tail, head, c, ts = g.edge(e)
        edges.append((e, t, tail.tolist(), head.tolist(), c, ts))
    return (
        nodes,
        [g.node_label(v) for v in nodes],
        edges,
        g.num_nodes(),
        g.num_edges(),
        g.buffered(),
    )


def plain(x):
    """Normalise results (arrays, tuples, lists) for equality checks."""
    if isinstance(x, np.ndarray):
        return ("array", str(x.dtype), x.shape, x.tolist())
    if isinstance(x, (list, tuple)):
        return type(x).__name__, [plain(v) for v in x]
    return x


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", plain(fn(*args, **kwargs)))
    except (KeyError, ValueError, TypeError) as exc:
        return ("error", type(exc).__name__, str(exc) if isinstance(exc, KeyError) else None)


def build(cls, nodes, labels, edges, bulk_from=None):
    """Build a graph: edges as (id, type, tail, head, conf, ts); edges from index
    ``bulk_from`` on are inserted with one add_edges call."""
    g = cls()
    g.add_nodes(np.asarray(nodes, dtype=np.int64), np.asarray(labels, dtype=np.int32))
    cut = len(edges) if bulk_from is None else bulk_from
    for e in edges[:cut]:
        g.add_edge(*e)
    rest = edges[cut:]
    if rest:
        add_bulk(g, rest)
    return g


def add_bulk(g, edges):
    toff, tn, hoff, hn = [0], [], [0], []
    for _, _, tail, head, _, _ in edges:
        tn += list(tail)
        hn += list(head)
        toff.append(len(tn))
        hoff.append(len(hn))
    g.add_edges(
        np.array([e[0] for e in edges], dtype=np.int64),
        np.array([e[1] for e in edges], dtype=np.int32),
        np.array(toff, dtype=np.int64),
        np.array(tn, dtype=np.int64),
        np.array(hoff, dtype=np.int64),
        np.array(hn, dtype=np.int64),
        np.array([e[4] for e in edges], dtype=np.float64),
        np.array([e[5] for e in edges], dtype=np.float64),
    )


def random_graph(seed, n_nodes=250, n_edges=500, n_types=4, n_labels=4, wide=0.0):
    """Random hypergraph; ``wide`` is the share of edges with 6-12 tails and heads (more than
    the native projection's 64 pairs, so they take the incidence path)."""
    rng = random.Random(seed)
    ids = rng.sample(range(-5000, 5000), n_nodes)
    ids = [v for v in ids if v != -1]
    labels = [rng.randrange(-1, n_labels) for _ in ids]
    edge_ids = [v for v in rng.sample(range(-100000, 100000), n_edges) if v != -1]
    edges = []
    for eid in edge_ids:
        big = rng.random() < wide
        tail = rng.sample(ids, rng.randint(6, 12) if big else rng.randint(1, 3))
        head = rng.sample(ids, rng.randint(6, 12) if big else rng.randint(1, 3))
        if big and rng.random() < 0.5:
            head = list(dict.fromkeys(head + tail[:3]))  # overlapping tail and head
        if rng.random() < 0.05 and tail[0] not in head:
            head.append(tail[0])  # self-loop a -> a
        conf = rng.choice([0.0, 1.0, 0.5, rng.random(), rng.random(), rng.random()])
        edges.append((eid, rng.randrange(n_types), tail, head, conf, rng.uniform(-1e6, 1e6)))
    return ids, labels, edges


# ---- brute-force reference over the binary projection ---------------------------------------


class Ref:
    """Tiny independent model: a list of projected relationships (a, e, b)."""

    def __init__(self, labels, edges):
        self.labels = dict(labels)
        self.edges = {e[0]: e for e in edges}

    def rels(self, direction, types=None):
        out = set()
        for eid, t, tail, head, _c, _ts in self.edges.values():
            if types is not None and t not in types:
                continue
            for a in tail:
                for b in head:
                    if direction in ("out", "both"):
                        out.add((a, eid, b))
                    if direction in ("in", "both"):
                        out.add((b, eid, a))
        return out

    def nbrs(self, a, direction, types=None):
        return sorted((b, e) for x, e, b in self.rels(direction, types) if x == a)

    def khop(self, seeds, k, direction, types=None):
        adj = {}
        for a, _e, b in self.rels(direction, types):
            adj.setdefault(a, set()).add(b)
        best = {}
        frontier = set(seeds)
        for hop in range(1, k + 1):
            nxt = set()
            for u in frontier:
                for b in adj.get(u, ()):
                    if b not in best:
                        best[b] = hop
                        nxt.add(b)
            frontier = nxt
        return sorted(best.items())

    def paths(self, src, mn, mx, direction, types=None):
        adj = {}
        for a, e, b in sorted(self.rels(direction, types)):
            adj.setdefault(a, []).append((b, e))
        out = []

        def rec(nodes, edges):
            if len(edges) >= mn:
                out.append((list(nodes), list(edges)))
            if len(edges) == mx:
                return
            for b, e in adj.get(nodes[-1], ()):
                if b not in nodes and e not in edges:
                    rec(nodes + [b], edges + [e])

        rec([src], [])
        out.sort(key=lambda p: (len(p[1]), p[0], p[1]))
        return out

    def score(self, edges):
        p, m, s = 1.0, 1.0, 0.0
        for e in edges:
            c = f32(self.edges[e][4])
            p *= c
            m = min(m, c)
            s += c
        return p, m, s


# ============================================================================ basic behaviour


def test_nodes_and_edges_basics(graph_cls):
    g = graph_cls()
    assert g.num_nodes() == 0 and g.num_edges() == 0 and g.buffered() == 0
    g.add_node(5, label=2)
    g.add_node(-7)
    g.add_nodes([3, 9], [1, 1])
    assert g.node_ids().tolist() == [-7, 3, 5, 9]
    assert g.node_ids().dtype == np.int64
    assert g.node_label(5) == 2 and g.node_label(-7) == -1
    g.add_node(5, label=4)  # upsert
    assert g.node_label(5) == 4 and g.num_nodes() == 4
    assert g.nodes_with_label(1).tolist() == [3, 9]
    assert g.nodes_with_label(-1).tolist() == [-7]
    g.add_edge(100, 3, [5, 3], [9], confidence=0.7, timestamp=12.25)
    g.add_edge(50, 0, [9], [9, -7])  # defaults, self-loop on 9
    t, tail, head, c, ts = g.edge(100)
    assert (t, tail.tolist(), head.tolist(), ts) == (3, [5, 3], [9], 12.25)
    assert c == f32(0.7) and tail.dtype == np.int64 and head.dtype == np.int64
    assert g.edge(50)[3:] == (1.0, 0.0)
    assert g.edge_ids().tolist() == [50, 100]
    assert g.has_node(5) and not g.has_node(6) and not g.has_node(-1)
    assert g.has_edge(50) and not g.has_edge(51)
    assert g.num_edges() == 2 and g.buffered() == 2
    assert g.memory_usage() > 0
    assert "Hypergraph(nodes=4, edges=2" in repr(g)
    assert isinstance(g.node_label(np.int64(5)), int)


def test_numpy_integer_arguments(graph_cls):
    g = graph_cls()
    g.add_nodes(np.arange(4, dtype=np.uint16), None)
    g.add_edge(np.int32(1), np.int8(2), np.array([0], np.int32), (1, 2), np.float32(0.5))
    assert g.neighbors(np.int64(0))[0].tolist() == [1, 2]
    assert g.khop(np.array([0]), np.int16(1))[0].tolist() == [1, 2]
    assert [p[0] for p in g.paths(np.uint8(0), max_hops=np.int64(1))] == [[0, 1], [0, 2]]


def test_neighbors_directions_and_types(graph_cls):
    g = graph_cls()
    g.add_nodes([1, 2, 3, 4])
    g.add_edge(10, 0, [1], [2, 3])
    g.add_edge(11, 1, [3], [1])
    g.add_edge(12, 2, [1, 4], [1, 2])  # 1 in tail and head: a self-loop on 1
    n, e = g.neighbors(1)
    assert list(zip(n.tolist(), e.tolist())) == [(1, 12), (2, 10), (2, 12), (3, 10)]
    assert n.dtype == np.int64 and e.dtype == np.int64
    n, e = g.neighbors(1, "in")
    assert list(zip(n.tolist(), e.tolist())) == [(1, 12), (3, 11), (4, 12)]
    n, e = g.neighbors(1, "both")  # (1, 12) once, although it is found both ways
    assert list(zip(n.tolist(), e.tolist())) == [
        (1, 12),
        (2, 10),
        (2, 12),
        (3, 10),
        (3, 11),
        (4, 12),
    ]
    n, e = g.neighbors(1, "both", types=[0, 1])
    assert list(zip(n.tolist(), e.tolist())) == [(2, 10), (3, 10), (3, 11)]
    assert g.neighbors(1, types=[])[0].tolist() == []
    assert g.neighbors(4)[0].tolist() == [1, 2]
    assert g.neighbors(2)[0].tolist() == []
    assert g.neighbors(1, types=7)[0].tolist() == []


def test_khop(graph_cls):
    g = graph_cls()
    g.add_nodes(range(1, 8))
    g.add_edge(1, 0, [1], [2])
    g.add_edge(2, 0, [2], [3, 4])
    g.add_edge(3, 1, [4], [1])  # cycle back to the seed
    g.add_edge(4, 0, [3], [5])
    g.add_edge(5, 0, [6], [7])
    nodes, hops = g.khop(1, 1)
    assert nodes.tolist() == [2] and hops.tolist() == [1] and hops.dtype == np.int32
    nodes, hops = g.khop([1], 2)
    assert (nodes.tolist(), hops.tolist()) == ([2, 3, 4], [1, 2, 2])
    nodes, hops = g.khop([1], 3)  # the seed re-reached via the cycle, at hop 3
    assert (nodes.tolist(), hops.tolist()) == ([1, 2, 3, 4, 5], [3, 1, 2, 2, 3])
    nodes, hops = g.khop([1, 6], 10**9)
    assert (nodes.tolist(), hops.tolist()) == ([1, 2, 3, 4, 5, 7], [3, 1, 2, 2, 3, 1])
    nodes, hops = g.khop([1], 3, types=[0])
    assert (nodes.tolist(), hops.tolist()) == ([2, 3, 4, 5], [1, 2, 2, 3])
    nodes, hops = g.khop(5, 2, direction="in")
    assert (nodes.tolist(), hops.tolist()) == ([2, 3], [2, 1])
    nodes, hops = g.khop(3, 1, direction="both")
    assert (nodes.tolist(), hops.tolist()) == ([2, 5], [1, 1])
    assert g.khop([], 2)[0].tolist() == []
    # two seeds re-reaching each other
    nodes, hops = g.khop([1, 2], 1)
    assert (nodes.tolist(), hops.tolist()) == ([2, 3, 4], [1, 1, 1])


@pytest.fixture
def diamond(graph_cls):
    """1 -> {2, 3} (one hyperedge) -> 4 -> 1, plus a typed shortcut 1 -> 4."""
    g = graph_cls()
    g.add_nodes([1, 2, 3, 4, 5], [0, 1, 1, 2, 2])
    g.add_edge(10, 0, [1], [2, 3], confidence=0.5)
    g.add_edge(11, 0, [2], [4], confidence=0.8)
    g.add_edge(12, 0, [3], [4], confidence=0.25)
    g.add_edge(13, 1, [1], [4], confidence=0.1)
    g.add_edge(14, 0, [4], [1, 5], confidence=1.0)
    return g


def test_paths_basic_order_and_scores(diamond):
    ps = diamond.paths(1, max_hops=3)
    got = [(p[0], p[1]) for p in ps]
    assert got == [
        ([1, 2], [10]),
        ([1, 3], [10]),
        ([1, 4], [13]),
        ([1, 2, 4], [10, 11]),
        ([1, 3, 4], [10, 12]),
        ([1, 4, 5], [13, 14]),
        ([1, 2, 4, 5], [10, 11, 14]),
        ([1, 3, 4, 5], [10, 12, 14]),
    ]
    by = {tuple(p[1]): p for p in ps}
    assert by[(10, 11)][2:] == (0.5 * f32(0.8), 0.5, 0.5 + f32(0.8))
    assert by[(13, 14)][2:] == (f32(0.1), f32(0.1), f32(0.1) + 1.0)
    for p in ps:
        assert isinstance(p, tuple) and len(p) == 5
        assert all(isinstance(v, int) for v in p[0] + p[1])
        assert all(isinstance(v, float) for v in p[2:])


def test_paths_filters(diamond):
    assert [p[0] for p in diamond.paths(1, dst=4)] == [[1, 4], [1, 2, 4], [1, 3, 4]]
    assert [p[0] for p in diamond.paths(1, dst=4, types=[0])] == [[1, 2, 4], [1, 3, 4]]
    assert [p[0] for p in diamond.paths(1, dst_label=2, max_hops=2)] == [
        [1, 4],
        [1, 2, 4],
        [1, 3, 4],
        [1, 4, 5],
    ]
    assert [p[0] for p in diamond.paths(1, min_hops=3, max_hops=3)] == [
        [1, 2, 4, 5],
        [1, 3, 4, 5],
    ]
    assert diamond.paths(1, src_label=1) == []
    assert len(diamond.paths(1, src_label=0)) == 8
    zero = diamond.paths(1, min_hops=0, max_hops=0)
    assert zero == [([1], [], 1.0, 1.0, 0.0)]
    assert diamond.paths(1, min_hops=0, max_hops=1, dst=1) == [([1], [], 1.0, 1.0, 0.0)]
    assert diamond.paths(1, dst=1) == []  # simple paths never return to the source
    assert [p[0] for p in diamond.paths(4, max_hops=1, direction="in")] == [
        [4, 1],
        [4, 2],
        [4, 3],
    ]
    assert [p[1] for p in diamond.paths(4, max_hops=1, direction="both")] == [
        [13],
        [14],
        [11],
        [12],
        [14],
    ]
    assert len(diamond.paths(1, limit=8, max_hops=3)) == 8
    with pytest.raises(ValueError, match="more than 7 paths; narrow the query or raise limit"):
        diamond.paths(1, limit=7, max_hops=3)


def test_paths_edges_are_distinct(graph_cls):
    # e has tail {1, 3} and head {2, 4}: 1 -[e]-> 2 -[f]-> 3 -[e]-> 4 reuses e
    g = graph_cls()
    g.add_nodes([1, 2, 3, 4])
    g.add_edge(7, 0, [1, 3], [2, 4])
    g.add_edge(8, 0, [2], [3])
    got = [(p[0], p[1]) for p in g.paths(1, max_hops=4)]
    assert got == [([1, 2], [7]), ([1, 4], [7]), ([1, 2, 3], [7, 8])]


def test_paths_to(diamond):
    ps = diamond.paths_to(4, max_hops=2)
    assert [(p[0], p[1]) for p in ps] == [
        ([1, 4], [13]),
        ([2, 4], [11]),
        ([3, 4], [12]),
        ([1, 2, 4], [10, 11]),
        ([1, 3, 4], [10, 12]),
    ]
    forward = {(tuple(p[0]), tuple(p[1])): p for p in diamond.paths(1, dst=4)}
    for p in ps:
        if p[0][0] == 1:
            assert forward[(tuple(p[0]), tuple(p[1]))] == p
    assert [p[0] for p in diamond.paths_to(4, src_label=1, types=[0])] == [[2, 4], [3, 4]]
    assert diamond.paths_to(4, min_hops=0, max_hops=0) == [([4], [], 1.0, 1.0, 0.0)]
    with pytest.raises(ValueError, match="more than 2 paths"):
        diamond.paths_to(4, limit=2)


def test_top_paths(diamond):
    every = diamond.paths(1, max_hops=3)
    for score, idx in (("product", 2), ("min", 3), ("sum", 4)):
        ranked = sorted(every, key=lambda p, i=idx: -p[i])  # stable: ties keep path order
        for n in (1, 3, 8, 20):
            assert diamond.top_paths(1, max_hops=3, n=n, score=score) == ranked[:n], (score, n)
    to4 = [p for p in every if p[0][-1] == 4]
    assert diamond.top_paths(1, max_hops=3, n=2, dst=4) == sorted(to4, key=lambda p: -p[2])[:2]
    assert diamond.top_paths(1, min_hops=0, max_hops=0) == [([1], [], 1.0, 1.0, 0.0)]
    assert diamond.top_paths(1, n=1, score="min", types=[1]) == [
        ([1, 4], [13], f32(0.1), f32(0.1), f32(0.1)),
    ]


def test_match_chain(diamond):
    nodes, edges = diamond.match_chain([0, 1, 2], [0, 0], ["out", "out"])
    assert nodes.tolist() == [[1, 2, 4], [1, 3, 4]] and edges.tolist() == [[10, 11], [10, 12]]
    assert nodes.dtype == np.int64 and nodes.shape == (2, 3) and edges.shape == (2, 2)
    nodes, edges = diamond.match_chain([2, -1], [None], ["in"])
    assert nodes.tolist() == [[4, 1], [4, 2], [4, 3], [5, 4]]
    assert edges.tolist() == [[13], [11], [12], [14]]
    # defaults: any type, "out"
    nodes, edges = diamond.match_chain([0, -1])
    assert nodes.tolist() == [[1, 2], [1, 3], [1, 4]] and edges.tolist() == [[10], [10], [13]]
    # node repeats allowed, edge repeats not: 1 -> 4 -> 1 -> 2
    nodes, edges = diamond.match_chain([0, 2, 0, 1], [[1], None, [0]], ["out"] * 3)
    assert nodes.tolist() == [[1, 4, 1, 2], [1, 4, 1, 3]]
    assert edges.tolist() == [[13, 14, 10], [13, 14, 10]]
    nodes, edges = diamond.match_chain([-1, -1], [None], ["both"], start=[2, 99])
    assert nodes.tolist() == [[2, 1], [2, 4]] and edges.tolist() == [[10], [11]]
    nodes, edges = diamond.match_chain([7, -1, -1], [None, None], ["out", "out"])
    assert nodes.shape == (0, 3) and edges.shape == (0, 2)
    nodes, _ = diamond.match_chain([-1, -1], [0], ["out"], start=np.array([], dtype=np.int64))
    assert nodes.shape == (0, 2)


def test_match_chain_edges_distinct(graph_cls):
    g = graph_cls()
    g.add_nodes([1, 2])
    g.add_edge(5, 0, [1, 2], [1, 2])  # every pair, including self-loops, through one edge
    nodes, edges = g.match_chain([-1, -1], [None], ["out"])
    assert nodes.tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    nodes, edges = g.match_chain([-1, -1, -1], [None, None], ["out", "out"])
    assert nodes.shape == (0, 3)  # a second hop would reuse edge 5


# ================================================================ buffer, compaction, removal


def test_auto_compaction_rule(graph_cls):
    g = graph_cls()
    g.add_nodes(range(100))
    rng = random.Random(3)

    def edges(start, n):
        return [
            (start + i, 0, [rng.randrange(100)], [rng.randrange(100)], 1.0, 0.0) for i in range(n)
        ]

    add_bulk(g, edges(0, 1000))
    assert g.buffered() == 1000
    for e in edges(1000, 24):
        g.add_edge(*e)
    assert g.buffered() == 1024  # not above max(1024, 0 // 4)
    g.add_edge(*edges(1024, 1)[0])
    assert g.buffered() == 0 and g.num_edges() == 1025  # compacted itself
    add_bulk(g, edges(2000, 1024))
    assert g.buffered() == 1024
    g.remove_edge(2000)  # removed buffered edges still count until compaction
    add_bulk(g, edges(5000, 1))
    assert g.buffered() == 0 and g.num_edges() == 2049
    add_bulk(g, edges(9000, 3000))  # a big batch compacts at once
    assert g.buffered() == 0 and g.num_edges() == 5049
    add_bulk(g, edges(20000, 1262))  # threshold is now 5049 // 4 = 1262
    assert g.buffered() == 1262
    g.compact()
    assert g.buffered() == 0
    g.compact()  # idempotent
    assert g.num_edges() == 5049 + 1262


def test_removal(graph_cls, tmp_path):
    g = graph_cls()
    g.add_nodes([1, 2, 3, 4], [0, 0, 1, 1])
    g.add_edge(1, 0, [1], [2])
    g.add_edge(2, 0, [2], [3, 4])
    g.compact()
    g.add_edge(3, 0, [3], [1])  # buffered
    g.add_edge(4, 1, [1], [4])
    g.remove_edge(1)
    assert not g.has_edge(1) and g.num_edges() == 3
    assert g.neighbors(1)[0].tolist() == [4]
    g.remove_node(3)  # drops edge 3 (buffered) and 2 (CSR, 3 in its head)
    assert g.node_ids().tolist() == [1, 2, 4]
    assert g.edge_ids().tolist() == [4] and g.num_edges() == 1
    assert g.khop(2, 3)[0].tolist() == []
    assert g.nodes_with_label(1).tolist() == [4]
    before = snapshot(g)
    g.compact()
    assert snapshot(g)[:5] == before[:5]
    # ids of removed items can be reused
    g.add_node(3, label=5)
    g.add_edge(1, 2, [3], [1, 2])
    assert g.neighbors(3)[0].tolist() == [1, 2] and g.node_label(3) == 5
    g.remove_node(1)
    assert g.edge_ids().tolist() == [] and g.neighbors(3)[0].tolist() == []
    with pytest.raises(KeyError, match="unknown node 1"):
        g.remove_node(1)
    with pytest.raises(KeyError, match="unknown edge 4"):
        g.remove_edge(4)
    p = tmp_path / "g.agdbg"
    g.save(p)
    h = type(g).load(p)
    assert snapshot(h)[:5] == snapshot(g)[:5]


# ============================================================================= error paths

ERRORS = [
    # (method, args, kwargs, exception, match)
    ("add_node", (-1,), {}, ValueError, "reserved"),
    ("add_node", (1,), {"label": -2}, ValueError, "label"),
    ("add_node", (1,), {"label": 2**31}, ValueError, "label"),
    ("add_node", (1.5,), {}, TypeError, "int"),
    ("add_node", ("1",), {}, TypeError, "int"),
    ("add_node", (True,), {}, TypeError, "bool"),
    ("add_node", (2**64,), {}, ValueError, "int64"),
    ("add_nodes", ([1, -1],), {}, ValueError, "reserved"),
    ("add_nodes", ([1, 2], [0]), {}, ValueError, "labels"),
    ("add_nodes", ([8, 9], [0, -3]), {}, ValueError, "label"),
    ("add_nodes", ([1.5],), {}, TypeError, "integers"),
    ("add_nodes", ([[1, 2]],), {}, ValueError, "1-D"),
    ("add_edge", (-1, 0, [1], [2]), {}, ValueError, "reserved"),
    ("add_edge", (9, -1, [1], [2]), {}, ValueError, "type"),
    ("add_edge", (9, 0, [1], [2]), {"confidence": 1.5}, ValueError, "confidence"),
    ("add_edge", (9, 0, [1], [2]), {"confidence": -0.1}, ValueError, "confidence"),
    ("add_edge", (9, 0, [1], [2]), {"confidence": float("nan")}, ValueError, "confidence"),
    ("add_edge", (9, 0, [1], [2]), {"confidence": "0.5"}, TypeError, "real"),
    ("add_edge", (9, 0, [], [2]), {}, ValueError, "empty tail"),
    ("add_edge", (9, 0, [1], []), {}, ValueError, "empty head"),
    ("add_edge", (9, 0, [1, 1], [2]), {}, ValueError, "duplicate node 1 in the tail"),
    ("add_edge", (9, 0, [1], [2, 3, 2]), {}, ValueError, "duplicate node 2 in the head"),
    ("add_edge", (100, 0, [1], [2]), {}, ValueError, "duplicate edge id 100"),
    ("add_edge", (9, 0, [1], [17]), {}, KeyError, "unknown node 17"),
    ("add_edge", (9, 0, [17], [1]), {}, KeyError, "unknown node 17"),
    ("add_edge", (9, 0, ["a"], [1]), {}, TypeError, "integers"),
    ("remove_node", (17,), {}, KeyError, "unknown node 17"),
    ("remove_edge", (9,), {}, KeyError, "unknown edge 9"),
    ("node_label", (17,), {}, KeyError, "unknown node 17"),
    ("edge", (9,), {}, KeyError, "unknown edge 9"),
    ("neighbors", (17,), {}, KeyError, "unknown node 17"),
    ("neighbors", (1,), {"direction": "up"}, ValueError, "direction"),
    ("neighbors", (1,), {"direction": 1}, TypeError, "direction"),
    ("neighbors", (1,), {"types": [-1]}, ValueError, "types"),
    ("neighbors", (1,), {"types": ["x"]}, TypeError, "types"),
    ("khop", ([1, 17], 2), {}, KeyError, "unknown node 17"),
    ("khop", (1, 0), {}, ValueError, "k must be >= 1"),
    ("khop", (1, 2), {"direction": "sideways"}, ValueError, "direction"),
    ("paths", (17,), {}, KeyError, "unknown node 17"),
    ("paths", (1,), {"dst": 17}, KeyError, "unknown node 17"),
    ("paths", (1,), {"min_hops": -1}, ValueError, "min_hops"),
    ("paths", (1,), {"min_hops": 3, "max_hops": 2}, ValueError, "max_hops"),
    ("paths", (1,), {"max_hops": 65}, ValueError, "max_hops must be <= 64"),
    ("paths", (1,), {"max_hops": 10**12}, ValueError, "max_hops must be <= 64"),
    ("paths", (1,), {"direction": "x"}, ValueError, "direction"),
    ("paths", (1,), {"limit": 0}, ValueError, "limit"),
    ("paths", (1,), {"dst_label": -5}, ValueError, "dst_label"),
    ("paths", (1,), {"limit": 1}, ValueError, "more than 1 paths"),
    ("paths_to", (17,), {}, KeyError, "unknown node 17"),
    ("paths_to", (2,), {"max_hops": 65}, ValueError, "max_hops"),
    ("paths_to", (2,), {"min_hops": -1}, ValueError, "min_hops"),
    ("top_paths", (17,), {}, KeyError, "unknown node 17"),
    ("top_paths", (1,), {"dst": 17}, KeyError, "unknown node 17"),
    ("top_paths", (1,), {"n": 0}, ValueError, "n must be >= 1"),
    ("top_paths", (1,), {"score": "max"}, ValueError, "score"),
    ("top_paths", (1,), {"max_hops": 70}, ValueError, "max_hops"),
    ("top_paths", (1,), {"direction": "down"}, ValueError, "direction"),
    ("match_chain", ([0],), {}, ValueError, "2 to 4"),
    ("match_chain", ([0, 0, 0, 0, 0],), {}, ValueError, "2 to 4"),
    ("match_chain", ([0, 0], [None, None]), {}, ValueError, "types"),
    ("match_chain", ([0, 0], [None], ["out", "in"]), {}, ValueError, "directions"),
    ("match_chain", ([0, 0], [None], ["around"]), {}, ValueError, "direction"),
    ("match_chain", ([0, -2],), {}, ValueError, "labels"),
    ("match_chain", ([0, 0], "x"), {}, TypeError, "types"),
    ("nodes_with_label", (-2,), {}, ValueError, "label"),
]


@pytest.fixture
def small(graph_cls):
    g = graph_cls()
    g.add_nodes([1, 2, 3], [0, 1, 1])
    g.add_edge(100, 0, [1], [2, 3], confidence=0.5)
    g.add_edge(101, 0, [2], [3])
    return g


@pytest.mark.parametrize(
    "method,args,kwargs,exc,match", ERRORS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)]
)
def test_errors(small, method, args, kwargs, exc, match):
    before = snapshot(small)
    with pytest.raises(exc, match=match):
        getattr(small, method)(*args, **kwargs)
    assert snapshot(small) == before


def test_errors_identical_across_backends(both):
    """Same exception type for every bad call (and the same KeyError message)."""
    graphs = []
    for cls in both:
        g = cls()
        g.add_nodes([1, 2, 3], [0, 1, 1])
        g.add_edge(100, 0, [1], [2, 3], confidence=0.5)
        g.add_edge(101, 0, [2], [3])
        graphs.append(g)
    for method, args, kwargs, _exc, _match in ERRORS:
        a, b = (outcome(getattr(g, method), *args, **kwargs) for g in graphs)
        assert a == b, (method, args, kwargs)
        assert snapshot(graphs[0]) == snapshot(graphs[1])


BAD_BULK = [
    # each: add_edges arguments that fail, with the failing part at the END of the batch
    ("unknown node", KeyError, dict(tail_nodes=[1, 2, 99])),
    ("duplicate id in batch", ValueError, dict(ids=[7, 8, 7])),
    ("duplicate existing id", ValueError, dict(ids=[7, 8, 100])),
    ("bad confidence", ValueError, dict(confidences=[0.5, 0.5, 1.01])),
    ("nan confidence", ValueError, dict(confidences=[0.5, 0.5, float("nan")])),
    ("negative type", ValueError, dict(types=[0, 0, -4])),
    ("id -1", ValueError, dict(ids=[7, 8, -1])),
    ("empty tail", ValueError, dict(tail_offsets=[0, 1, 3, 3], tail_nodes=[1, 2, 3])),
    ("offsets decrease", ValueError, dict(tail_offsets=[0, 2, 1, 3])),
    ("offsets end", ValueError, dict(tail_offsets=[0, 1, 2, 2])),
    ("offsets start", ValueError, dict(head_offsets=[1, 1, 2, 3])),
    ("types length", ValueError, dict(types=[0, 0])),
    ("offsets length", ValueError, dict(tail_offsets=[0, 1, 2])),
    ("confidences length", ValueError, dict(confidences=[1.0])),
    ("timestamps length", ValueError, dict(timestamps=[1.0, 2.0, 3.0, 4.0])),
    ("dup in head", ValueError, dict(head_offsets=[0, 1, 2, 4], head_nodes=[2, 3, 3, 3])),
    ("float ids", TypeError, dict(ids=[7.0, 8.0, 9.0])),
]


@pytest.mark.parametrize("name,exc,override", BAD_BULK, ids=[b[0] for b in BAD_BULK])
def test_failing_bulk_call_changes_nothing(small, name, exc, override):
    args = dict(
        ids=[7, 8, 9],
        types=[0, 1, 2],
        tail_offsets=[0, 1, 2, 3],
        tail_nodes=[1, 2, 3],
        head_offsets=[0, 1, 2, 3],
        head_nodes=[2, 3, 1],
        confidences=[0.5, 0.25, 1.0],
        timestamps=[1.0, 2.0, 3.0],
    )
    small.add_edges(**args)  # the valid batch works ...
    for e in (7, 8, 9):
        small.remove_edge(e)
    before = snapshot(small)
    args.update(override)
    with pytest.raises(exc):
        small.add_edges(**args)  # ... and a broken one changes nothing
    assert snapshot(small) == before
    assert small.neighbors(1)[0].tolist() == [2, 3]
    with pytest.raises(ValueError):
        small.add_nodes([50, 51, -1], [0, 0, 0])
    assert snapshot(small) == before


def test_bulk_defaults_and_empty(graph_cls):
    g = graph_cls()
    g.add_nodes([1, 2])
    g.add_edges([], [], [0], [], [0], [])
    g.add_edges([5], [3], [0, 1], [1], [0, 1], [2])
    assert g.edge(5)[3:] == (1.0, 0.0) and g.num_edges() == 1
    g.add_nodes([])
    assert g.num_nodes() == 2


# ============================================================================ persistence


def parse_graph_file(data):
    """Parse the documented AGDBHYPG v1 layout strictly (independently of both backends)."""
    magic, version, hsize, nn, ne, nt, nh, flags = struct.unpack_from("<8sIIQQQQI", data, 0)
    assert (magic, version, hsize, flags) == (b"AGDBHYPG", 1, 64, 0)
    assert data[52:64] == bytes(12)
    off = 64
    out = {}
    for name, dt, count in (
        ("node_ids", "<i8", nn),
        ("node_labels", "<i4", nn),
        ("edge_ids", "<i8", ne),
        ("edge_types", "<i4", ne),
        ("edge_conf", "<f4", ne),
        ("edge_time", "<f8", ne),
        ("tail_offsets", "<u8", ne + 1),
        ("tail_nodes", "<u4", nt),
        ("head_offsets", "<u8", ne + 1),
        ("head_nodes", "<u4", nh),
    ):
        out[name] = np.frombuffer(data, dt, count, off)
        off += out[name].nbytes
    assert len(data) == off + 4
    assert struct.unpack_from("<I", data, off)[0] == zlib.crc32(data[:off]) & 0xFFFFFFFF
    return out


def write_graph_file(path, node_ids, labels, edges, fix_crc=True):
    """Write a file in the documented format from raw parts (no validation)."""
    tails = [t for e in edges for t in e[2]]
    heads = [h for e in edges for h in e[3]]
    toff = np.concatenate([[0], np.cumsum([len(e[2]) for e in edges])]).astype("<u8")
    hoff = np.concatenate([[0], np.cumsum([len(e[3]) for e in edges])]).astype("<u8")
    head = struct.pack(
        "<8sIIQQQQI12s",
        b"AGDBHYPG",
        1,
        64,
        len(node_ids),
        len(edges),
        len(tails),
        len(heads),
        0,
        bytes(12),
    )
    body = b"".join(
        [
            np.asarray(node_ids, "<i8").tobytes(),
            np.asarray(labels, "<i4").tobytes(),
            np.asarray([e[0] for e in edges], "<i8").tobytes(),
            np.asarray([e[1] for e in edges], "<i4").tobytes(),
            np.asarray([e[4] for e in edges], "<f4").tobytes(),
            np.asarray([e[5] for e in edges], "<f8").tobytes(),
            toff.tobytes(),
            np.asarray(tails, "<u4").tobytes(),
            hoff.tobytes(),
            np.asarray(heads, "<u4").tobytes(),
        ]
    )
    data = head + body
    data += struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def test_file_format_documented(graph_cls, tmp_path):
    g = graph_cls()
    g.add_nodes([30, 10, 20], [2, -1, 0])
    g.add_edge(9, 4, [30, 10], [20], confidence=0.75, timestamp=-3.5)
    g.add_edge(5, 1, [20], [30, 10, 20][:2], confidence=0.0, timestamp=1e300)
    g.add_edge(6, 1, [10], [10])
    g.remove_edge(6)
    p = tmp_path / "f.agdbg"
    g.save(str(p))
    f = parse_graph_file(p.read_bytes())
    assert f["node_ids"].tolist() == [10, 20, 30]
    assert f["node_labels"].tolist() == [-1, 0, 2]
    assert f["edge_ids"].tolist() == [5, 9]
    assert f["edge_types"].tolist() == [1, 4]
    assert f["edge_conf"].tolist() == [0.0, 0.75]
    assert f["edge_time"].tolist() == [1e300, -3.5]
    assert f["tail_offsets"].tolist() == [0, 1, 3]
    assert f["tail_nodes"].tolist() == [1, 2, 0]  # indices into node_ids; caller order kept
    assert f["head_offsets"].tolist() == [0, 2, 3]
    assert f["head_nodes"].tolist() == [2, 0, 1]
    assert not list(tmp_path.glob("*.tmp*"))


def test_save_load_round_trip(graph_cls, tmp_path):
    ids, labels, edges = random_graph(11, 120, 300)
    g = build(graph_cls, ids, labels, edges, bulk_from=100)
    for e in edges[::17]:
        g.remove_edge(e[0])
    g.remove_node(ids[3])
    p = tmp_path / "r.agdbg"
    g.save(p)
    h = graph_cls.load(str(p))
    assert snapshot(h)[:5] == snapshot(g)[:5]
    assert h.buffered() == 0
    for v in ids[:20]:
        if g.has_node(v):
            assert plain(h.paths(v, max_hops=3, limit=10**6)) == plain(
                g.paths(v, max_hops=3, limit=10**6)
            )
            assert plain(h.khop(v, 3, "both")) == plain(g.khop(v, 3, "both"))
    h.add_edge(10**9, 0, [ids[0]], [ids[1]])  # a loaded graph is writable
    assert h.has_edge(10**9)
    empty = graph_cls()
    empty.save(tmp_path / "empty.agdbg")
    assert graph_cls.load(tmp_path / "empty.agdbg").num_nodes() == 0


def test_cross_backend_files(both, tmp_path):
    ids, labels, edges = random_graph(12, 150, 400)
    graphs = [build(cls, ids, labels, edges, bulk_from=200) for cls in both]
    for g in graphs:
        for e in edges[::13]:
            g.remove_edge(e[0])
        g.remove_node(ids[5])
    paths = []
    for name, g in zip(("numpy", "native"), graphs):
        paths.append(tmp_path / f"{name}.agdbg")
        g.save(paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()  # byte-identical files
    for src_path in paths:
        loaded = [cls.load(src_path) for cls in both]
        assert snapshot(loaded[0]) == snapshot(loaded[1]) == (*snapshot(graphs[0])[:5], 0)


@pytest.fixture
def saved_graph(tmp_path):
    ids, labels, edges = random_graph(13, 12, 15)
    g = build(_numpy_graph.Hypergraph, ids, labels, edges)
    p = tmp_path / "s.agdbg"
    g.save(p)
    return p.read_bytes()


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_load_errors(graph_cls, saved_graph, tmp_path):
    data = saved_graph
    n = len(data)
    for cut in (0, 5, 8, 40, 63, 64, 67, 68, n // 2, n - 4, n - 1):
        with pytest.raises(ValueError, match="truncated|bad magic"):
            graph_cls.load(_write(tmp_path, f"t{cut}", data[:cut]))
    for pos in (70, n // 2, n - 10, n - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(ValueError, match="checksum"):
            graph_cls.load(_write(tmp_path, f"c{pos}", bytes(bad)))
    with pytest.raises(ValueError, match="not an AgentDB hypergraph file"):
        graph_cls.load(_write(tmp_path, "m", b"AGDBHNSW" + data[8:]))
    with pytest.raises(ValueError, match="not an AgentDB hypergraph file"):
        graph_cls.load(_write(tmp_path, "txt", b"hello, this is plain text\n" * 10))
    v3 = data[:8] + struct.pack("<I", 3) + data[12:-4]
    v3 += struct.pack("<I", zlib.crc32(v3) & 0xFFFFFFFF)
    with pytest.raises(ValueError, match="version 3 .this build reads versions 1 and 2"):
        graph_cls.load(_write(tmp_path, "v3", v3))
    v2 = data[:8] + struct.pack("<I", 2) + data[12:-4]  # a version-1 body labelled 2
    v2 += struct.pack("<I", zlib.crc32(v2) & 0xFFFFFFFF)
    with pytest.raises(ValueError, match="truncated|corrupt header"):
        graph_cls.load(_write(tmp_path, "v2", v2))
    hdr = data[:48] + struct.pack("<I", 1) + data[52:-4]
    hdr += struct.pack("<I", zlib.crc32(hdr) & 0xFFFFFFFF)
    with pytest.raises(ValueError, match="corrupt header"):
        graph_cls.load(_write(tmp_path, "flags", hdr))
    with pytest.raises(ValueError, match="trailing"):
        graph_cls.load(_write(tmp_path, "long", data + b"\0\0\0\0"))
    with pytest.raises(FileNotFoundError):
        graph_cls.load(str(tmp_path / "missing.agdbg"))
    with pytest.raises(IsADirectoryError):  # not a file: the OS error, never MemoryError
        graph_cls.load(str(tmp_path))


CORRUPT = [
    ("unsorted nodes", [2, 1], [0, 0], [(1, 0, [0], [1], 1.0, 0.0)]),
    ("node -1", [-1, 1], [0, 0], [(1, 0, [0], [1], 1.0, 0.0)]),
    ("label", [1, 2], [0, -2], [(1, 0, [0], [1], 1.0, 0.0)]),
    ("dup edge ids", [1, 2], [0, 0], [(1, 0, [0], [1], 1.0, 0.0), (1, 0, [1], [0], 1.0, 0.0)]),
    ("edge -1", [1, 2], [0, 0], [(-1, 0, [0], [1], 1.0, 0.0)]),
    ("type", [1, 2], [0, 0], [(1, -3, [0], [1], 1.0, 0.0)]),
    ("confidence", [1, 2], [0, 0], [(1, 0, [0], [1], 1.5, 0.0)]),
    ("nan confidence", [1, 2], [0, 0], [(1, 0, [0], [1], float("nan"), 0.0)]),
    ("node index", [1, 2], [0, 0], [(1, 0, [0], [2], 1.0, 0.0)]),
    ("empty tail", [1, 2], [0, 0], [(1, 0, [], [1], 1.0, 0.0)]),
    ("empty head", [1, 2], [0, 0], [(1, 0, [0], [], 1.0, 0.0)]),
    ("dup in tail", [1, 2], [0, 0], [(1, 0, [0, 0], [1], 1.0, 0.0)]),
]


@pytest.mark.parametrize("name,nodes,labels,edges", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_load_rejects_crafted_corruption(graph_cls, tmp_path, name, nodes, labels, edges):
    p = write_graph_file(tmp_path / "x.agdbg", nodes, labels, edges)
    with pytest.raises(ValueError, match="corrupt"):
        graph_cls.load(p)


def test_crafted_valid_file_loads(graph_cls, tmp_path):
    p = write_graph_file(
        tmp_path / "ok.agdbg", [1, 2, 5], [0, -1, 3], [(4, 2, [0, 2], [1], 0.5, 7.0)]
    )
    g = graph_cls.load(p)
    t, tail, head, c, ts = g.edge(4)
    assert (t, tail.tolist(), head.tolist(), c, ts) == (2, [1, 5], [2], 0.5, 7.0)
    assert g.node_label(5) == 3


def test_load_never_crashes(graph_cls, saved_graph, tmp_path):
    """Every truncation and every single-byte corruption is a ValueError."""
    data = saved_graph
    p = str(tmp_path / "fuzz.agdbg")
    for cut in range(0, len(data)):
        with open(p, "wb") as fh:
            fh.write(data[:cut])
        with pytest.raises(ValueError):
            graph_cls.load(p)
    for pos in range(0, len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        with open(p, "wb") as fh:
            fh.write(bytes(bad))
        with pytest.raises(ValueError):
            graph_cls.load(p)


# ==================================================================== randomised parity


def all_queries(g, ids, rng, ref=None):
    """Run a broad, deterministic set of queries; returns a list of normalised outcomes."""
    out = []
    live = g.node_ids().tolist()
    picks = rng.sample(ids, 6)  # 6 starts x ~60 queries per stage
    for v in picks:
        for d in ("out", "in", "both"):
            out.append(outcome(g.neighbors, v, d))
            out.append(outcome(g.neighbors, v, d, [0, 2]))
        for k in (1, 2, 4):
            out.append(outcome(g.khop, [v, picks[0]], k, "out"))
        out.append(outcome(g.khop, v, 3, "both", [1, 3]))
        out.append(outcome(g.khop, v, 2, "in"))
        out.append(outcome(g.paths, v, 1, 3, limit=5000))
        out.append(outcome(g.paths, v, 0, 4, "out", [0, 1], limit=5000))
        out.append(outcome(g.paths, v, 2, 3, "in", None, None, 2, limit=5000))
        out.append(outcome(g.paths, v, 1, 2, "both", [0], limit=5000))
        out.append(outcome(g.paths, v, 1, 4, dst=picks[1], limit=5000))
        out.append(outcome(g.paths, v, 1, 3, "both", [2, 3], picks[2], limit=5000))
        out.append(outcome(g.paths, v, 1, 3, src_label=1, limit=5000))
        out.append(outcome(g.paths, v, 1, 5, types=[3], limit=300))
        out.append(outcome(g.paths_to, v, 1, 3, limit=5000))
        out.append(outcome(g.paths_to, v, 0, 4, [1, 2], 0, limit=5000))
        for score in ("product", "min", "sum"):
            out.append(outcome(g.top_paths, v, 1, 3, n=7, score=score))
            out.append(outcome(g.top_paths, v, 2, 4, "both", [0, 1], n=3, score=score))
            out.append(outcome(g.top_paths, v, 1, 4, n=5, score=score, dst=picks[3]))
        if ref is not None and g.has_node(v):
            check_against_ref(g, ref, v, picks[0])
    out.append(outcome(g.match_chain, [0, -1, 1], [None, [0, 1]], ["out", "both"]))
    out.append(outcome(g.match_chain, [-1, 2], [[3]], ["in"]))
    out.append(outcome(g.match_chain, [1, -1, -1, 0], [0, None, 2], ["out", "in", "out"]))
    out.append(outcome(g.match_chain, [-1, -1, -1], None, None, start=live[:15] + [10**9]))
    out.append(outcome(g.nodes_with_label, 2))
    out.append(snapshot(g))
    return out


def check_against_ref(g, ref, v, other):
    for d in ("out", "in", "both"):
        n, e = g.neighbors(v, d)
        assert list(zip(n.tolist(), e.tolist())) == ref.nbrs(v, d)
    seeds = [v, other] if g.has_node(other) else [v]
    for k in (1, 3):
        n, h = g.khop(seeds, k, "both", [0, 1])
        expect = dict(ref.khop(seeds, k, "both", {0, 1}))
        assert dict(zip(n.tolist(), h.tolist())) == expect
    got = g.paths(v, 0, 3, "out", limit=10**6)
    expect = ref.paths(v, 0, 3, "out")
    assert [(p[0], p[1]) for p in got] == expect
    assert [p[2:] for p in got] == [ref.score(p[1]) for p in expect]
    got = g.paths(v, 1, 2, "both", [1, 2], limit=10**6)
    assert [(p[0], p[1]) for p in got] == ref.paths(v, 1, 2, "both", {1, 2})


def ref_state(ids, labels, edges, removed_edges=(), removed_nodes=()):
    lab = {v: x for v, x in zip(ids, labels) if v not in removed_nodes}
    kept = [
        e
        for e in edges
        if e[0] not in removed_edges
        and not any(v in removed_nodes for v in list(e[2]) + list(e[3]))
    ]
    return Ref(lab, kept)


@pytest.mark.parametrize("seed", range(4))
def test_random_parity(both, seed):
    ids, labels, edges = random_graph(seed)
    graphs = [build(cls, ids, labels, edges[:250]) for cls in both]
    for g in graphs:
        g.compact()  # the first 250 edges in the CSR arrays, the rest in the append buffer
        for e in edges[250:300]:
            g.add_edge(*e)
        add_bulk(g, edges[300:])
        assert g.buffered() == len(edges) - 250
    ref = ref_state(ids, labels, edges)

    def compare(stage, with_ref):
        res = [
            all_queries(g, ids, random.Random(seed * 7 + stage), ref if with_ref else None)
            for g in graphs
        ]
        assert res[0] == res[1], f"stage {stage}"

    compare(0, True)  # CSR part + append buffer
    for g in graphs:
        g.compact()
    compare(1, False)
    rng = random.Random(seed + 100)
    gone_e = {e[0] for e in rng.sample(edges, 60)}
    gone_n = set(rng.sample(ids, 15))
    for g in graphs:
        for e in sorted(gone_e):
            g.remove_edge(e)
        for v in sorted(gone_n):
            g.remove_node(v)
    ref = ref_state(ids, labels, edges, gone_e, gone_n)
    compare(2, True)  # tombstones
    extra = [
        (
            10**7 + i,
            rng.randrange(4),
            rng.sample(sorted(set(ids) - gone_n), 2),
            rng.sample(sorted(set(ids) - gone_n), 1),
            rng.random(),
            0.0,
        )
        for i in range(80)
    ]
    for g in graphs:
        for e in extra[:40]:
            g.add_edge(*e)
        add_bulk(g, extra[40:])
    compare(3, False)  # tombstones + buffer
    for g in graphs:
        g.compact()
    ref = ref_state(ids + [], labels, edges + extra, gone_e, gone_n)
    compare(4, True)


@pytest.mark.parametrize("seed", range(2))
def test_random_parity_wide_hyperedges(both, seed):
    """Hyperedges too wide for the native projection cache, mixed with narrow ones."""
    ids, labels, edges = random_graph(50 + seed, n_nodes=150, n_edges=160, wide=0.08)
    graphs = [build(cls, ids, labels, edges[:100]) for cls in both]
    for g in graphs:
        g.compact()
        add_bulk(g, edges[100:])
    ref = ref_state(ids, labels, edges)

    def compare(stage, ref):
        res = [all_queries(g, ids, random.Random(stage), None) for g in graphs]
        assert res[0] == res[1], f"stage {stage}"
        for v in random.Random(stage).sample(ids, 8):
            if graphs[1].has_node(v):
                check_against_ref(graphs[1], ref, v, ids[0])

    compare(0, ref)
    for g in graphs:
        g.compact()
    compare(1, ref)
    rng = random.Random(seed)
    gone_e = {e[0] for e in rng.sample(edges, 25)}
    gone_n = set(rng.sample(ids, 6))
    for g in graphs:
        for e in sorted(gone_e):
            g.remove_edge(e)
        for v in sorted(gone_n):
            g.remove_node(v)
    compare(2, ref_state(ids, labels, edges, gone_e, gone_n))


def test_random_parity_dense_limits(both):
    """A denser graph where many queries hit the path limit: both must agree on that too."""
    ids, labels, edges = random_graph(99, n_nodes=60, n_edges=400, n_types=2, n_labels=2)
    graphs = [build(cls, ids, labels, edges) for cls in both]
    for v in ids[:10]:
        for lim in (1, 50, 2000):
            a, b = (outcome(g.paths, v, 1, 4, "both", limit=lim) for g in graphs)
            assert a == b
        a, b = (outcome(g.top_paths, v, 1, 4, "both", n=25, score="sum") for g in graphs)
        assert a == b
        a, b = (outcome(g.paths_to, v, 1, 3, limit=500) for g in graphs)
        assert a == b


ops = st.lists(
    st.one_of(
        st.tuples(st.just("node"), st.integers(0, 12), st.integers(-1, 2)),
        st.tuples(
            st.just("edge"),
            st.integers(0, 30),
            st.integers(0, 2),
            st.lists(st.integers(0, 12), min_size=0, max_size=3),
            st.lists(st.integers(0, 12), min_size=0, max_size=3),
            st.sampled_from([0.0, 0.25, 0.5, 1.0, 0.3, 1.5]),
        ),
        st.tuples(st.just("rm_node"), st.integers(0, 12)),
        st.tuples(st.just("rm_edge"), st.integers(0, 30)),
        st.tuples(st.just("compact")),
    ),
    max_size=40,
)


def apply(g, op):
    kind = op[0]
    if kind == "node":
        return outcome(g.add_node, op[1], op[2])
    if kind == "edge":
        return outcome(g.add_edge, op[1], op[2], op[3], op[4], op[5])
    if kind == "rm_node":
        return outcome(g.remove_node, op[1])
    if kind == "rm_edge":
        return outcome(g.remove_edge, op[1])
    return outcome(g.compact)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=ops)
def test_operation_sequences_parity(ops):
    native = _native_or_skip()
    graphs = [_numpy_graph.Hypergraph(), native()]
    for op in ops:
        r = [apply(g, op) for g in graphs]
        assert r[0] == r[1], op
    assert snapshot(graphs[0]) == snapshot(graphs[1])
    for v in range(13):
        for g_args in ((v, 1, 4), (v, 0, 3, "both")):
            a, b = (outcome(g.paths, *g_args) for g in graphs)
            assert a == b
        a, b = (outcome(g.khop, v, 3, "both") for g in graphs)
        assert a == b
        a, b = (outcome(g.top_paths, v, 1, 3, "in", None, 4, "min") for g in graphs)
        assert a == b
    a, b = (outcome(g.match_chain, [-1, 1, -1], None, ["out", "both"]) for g in graphs)
    assert a == b


# ============================================================================ thread safety


def test_queries_while_adding(graph_cls):
    ids, labels, edges = random_graph(21, 200, 300)
    g = build(graph_cls, ids, labels, edges)
    rng = random.Random(5)
    more = [
        (10**6 + i, rng.randrange(4), rng.sample(ids, 2), rng.sample(ids, 2), rng.random(), 0.0)
        for i in range(2500)
    ]
    errors = []
    done = threading.Event()

    def writer():
        try:
            for i in range(0, len(more), 50):
                add_bulk(g, more[i : i + 50])
                g.add_node(10**8 + i, label=1)
                g.remove_edge(more[i][0])
                if i % 500 == 0:
                    g.compact()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader(seed):
        r = random.Random(seed)
        try:
            while not done.is_set():
                v = r.choice(ids)
                n, h = g.khop(v, 2, "both")
                assert np.all(np.diff(n) > 0) and np.all(h >= 1)
                n, e = g.neighbors(v, "both")
                assert len(n) == len(e)
                try:
                    for p in g.paths(v, 1, 2, limit=20000):
                        assert len(p[0]) == len(p[1]) + 1 and p[0][0] == v
                except ValueError as exc:
                    assert "more than" in str(exc)
                g.top_paths(v, 1, 3, n=3)
                g.match_chain([-1, -1], [[0]], ["out"], start=[v])
                assert g.num_edges() >= 300
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(s,)) for s in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    expect = build(graph_cls, ids, labels, edges)
    for i in range(0, len(more), 50):
        add_bulk(expect, more[i : i + 50])
        expect.add_node(10**8 + i, label=1)
        expect.remove_edge(more[i][0])
    assert snapshot(g)[:5] == snapshot(expect)[:5]


def test_concurrent_queries_agree(graph_cls):
    ids, labels, edges = random_graph(22, 200, 500)
    g = build(graph_cls, ids, labels, edges, bulk_from=250)
    srcs = ids[:24]
    expected = {v: plain(g.paths(v, 1, 3, limit=10**6)) for v in srcs}
    results = {}

    def work(chunk):
        for v in chunk:
            results[v] = plain(g.paths(v, 1, 3, limit=10**6))

    threads = [threading.Thread(target=work, args=(srcs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == expected


def test_independent_graphs_share_no_state(graph_cls):
    a, b = graph_cls(), graph_cls()
    a.add_nodes(range(5))
    b.add_nodes(range(3))
    for i, (s, t) in enumerate(zip(range(4), range(1, 5))):
        a.add_edge(i, 0, [s], [t])
    b.add_edge(0, 0, [2], [0])
    assert a.khop(0, 10)[0].tolist() == [1, 2, 3, 4]
    assert b.khop(2, 10)[0].tolist() == [0]
    assert a.khop(0, 10)[0].tolist() == [1, 2, 3, 4]


# ------------------------------------------------------------ end sets and flat path arrays


def _unflatten(arrays):
    nodes, noff, edges, eoff, prod, mn, sm = arrays
    assert nodes.dtype == np.int64 and edges.dtype == np.int64 and prod.dtype == np.float64
    assert noff.dtype == np.int64 and len(noff) == len(eoff) == len(prod) + 1
    return [
        (
            nodes[noff[i]:noff[i + 1]].tolist(),
            edges[eoff[i]:eoff[i + 1]].tolist(),
            float(prod[i]), float(mn[i]), float(sm[i]),
        )
        for i in range(len(prod))
    ]


def test_paths_ends_filter_the_last_node(diamond):
    every = diamond.paths(1, max_hops=3)
    for ends in ([4], [2, 4], [3, 99], [], np.asarray([2], np.int64)):
        want = [p for p in every if p[0][-1] in set(np.asarray(ends).tolist())]
        assert diamond.paths(1, max_hops=3, ends=ends) == want
    # ends combine with dst / dst_label / min_hops=0
    assert diamond.paths(1, max_hops=3, ends=[4], dst=4) == [p for p in every if p[0][-1] == 4]
    assert diamond.paths(1, min_hops=0, max_hops=0, ends=[1]) == [([1], [], 1.0, 1.0, 0.0)]
    assert diamond.paths(1, min_hops=0, max_hops=0, ends=[2]) == []
    with pytest.raises(TypeError, match="ends must be integers"):
        diamond.paths(1, ends=["a"])


def test_paths_to_sources_filter_the_first_node(diamond):
    every = diamond.paths_to(4, max_hops=3)
    assert diamond.paths_to(4, max_hops=3, sources=[1]) == [p for p in every if p[0][0] == 1]
    assert diamond.paths_to(4, max_hops=3, sources=[2, 3]) == [
        p for p in every if p[0][0] in (2, 3)
    ]
    assert diamond.paths_to(4, max_hops=3, sources=[]) == []


def test_top_paths_ends_prune_to_the_best_allowed(diamond):
    every = diamond.paths(1, max_hops=3)
    for ends in ([2], [3, 4], [4]):
        allowed = [p for p in every if p[0][-1] in ends]
        ranked = sorted(allowed, key=lambda p: -p[2])
        for n in (1, 2, 10):
            assert diamond.top_paths(1, max_hops=3, n=n, ends=ends) == ranked[:n]
    # backwards: the best chains into node 4 from node 1
    back = diamond.top_paths(4, max_hops=3, direction="in", n=1, ends=[1])
    assert back[0][0][0] == 4 and back[0][0][-1] == 1


def test_as_arrays_matches_the_list_form(graph_cls, diamond):
    for call in (
        lambda **k: diamond.paths(1, max_hops=3, **k),
        lambda **k: diamond.paths(1, max_hops=3, ends=[4], **k),
        lambda **k: diamond.paths_to(4, max_hops=3, **k),
        lambda **k: diamond.top_paths(1, max_hops=3, n=3, **k),
        lambda **k: diamond.paths(1, max_hops=3, dst=5, min_hops=3, **k),
    ):
        assert _unflatten(call(as_arrays=True)) == call()
    empty = diamond.paths(1, max_hops=3, ends=[], as_arrays=True)
    assert [len(a) for a in empty] == [0, 1, 0, 1, 0, 0, 0]
    with pytest.raises(TypeError, match="as_arrays must be a bool"):
        diamond.paths(1, as_arrays=1)


def test_ends_and_arrays_agree_between_backends(both):
    rng = random.Random(7)
    gs = [cls() for cls in both]
    ids = list(range(1, 41))
    for g in gs:
        g.add_nodes(ids, [i % 3 for i in ids])
    for e in range(1, 121):
        t = rng.randint(1, 39)
        h = rng.randint(t + 1, min(40, t + 6))
        c = rng.choice([0.25, 0.5, 0.75, 1.0])
        for g in gs:
            g.add_edge(e, e % 2, [t], [h], c)
    ends = rng.sample(ids, 10)
    for src in (1, 5, 9):
        a = [g.paths(src, max_hops=4, ends=ends, as_arrays=True) for g in gs]
        assert _unflatten(a[0]) == _unflatten(a[1])
        assert gs[0].top_paths(src, n=5, ends=ends) == gs[1].top_paths(src, n=5, ends=ends)
    for dst in (30, 35, 40):
        assert gs[0].paths_to(dst, max_hops=3, sources=ends) == gs[1].paths_to(
            dst, max_hops=3, sources=ends
        )


def test_match_chain_allowed_sets_and_relationship_uniqueness(graph_cls, diamond):
    every_n, every_e = diamond.match_chain([-1, -1, -1])
    rows = list(zip(map(tuple, every_n.tolist()), map(tuple, every_e.tolist())))
    allowed = [None, [2, 3], [4, 5]]
    n, e = diamond.match_chain([-1, -1, -1], allowed=allowed)
    want = [r for r in rows if r[0][1] in (2, 3) and r[0][2] in (4, 5)]
    assert list(zip(map(tuple, n.tolist()), map(tuple, e.tolist()))) == want
    for unsorted in ([None, [3, 2], [5, 4]], [None, [3, 2, 3], [4, 5, 4]]):  # bitmap path
        n2, e2 = diamond.match_chain([-1, -1, -1], allowed=unsorted)
        assert n2.tolist() == n.tolist() and e2.tolist() == e.tolist()
    n, _ = diamond.match_chain([-1, -1], allowed=[[1, 99], None])
    assert set(n[:, 0].tolist()) == {1}
    n, _ = diamond.match_chain([-1, -1], start=[1, 2, 4], allowed=[[4, 2], None])
    assert sorted(set(n[:, 0].tolist())) == [2, 4]  # start and allowed[0] intersect
    n, _ = diamond.match_chain([-1, -1], allowed=[[], None])
    assert n.shape == (0, 2)
    # a fan-out hyperedge 1 -> {2, 3} gives two relationships: (2)<-(1)->(3) binds both of them
    # under Cypher's rule, while distinct="edges" forbids reusing hyperedge 10
    n, e = diamond.match_chain([1, 0, 1], [[0], [0]], ["in", "out"], distinct="relationships")
    assert n.tolist() == [[2, 1, 3], [3, 1, 2]] and e.tolist() == [[10, 10], [10, 10]]
    n, _ = diamond.match_chain([1, 0, 1], [[0], [0]], ["in", "out"])
    assert n.shape == (0, 3)
    with pytest.raises(ValueError, match="needs 'out' or 'in'"):
        diamond.match_chain([-1, -1], None, ["both"], distinct="relationships")
    with pytest.raises(ValueError, match="distinct must be"):
        diamond.match_chain([-1, -1], distinct="nodes")
    with pytest.raises(ValueError, match="allowed must have len\\(labels\\) = 2 entries"):
        diamond.match_chain([-1, -1], allowed=[None])


def test_khop_batch_equals_khop_per_seed(graph_cls):
    """khop_batch gives, for every seed, exactly khop([seed]) -- on one thread and spread over
    several, with type filters and directions -- and refuses unknown seeds before any work."""
    nodes, labels, edges = random_graph(61, n_nodes=300, n_edges=900, wide=0.05)
    g = build(graph_cls, nodes, labels, edges, bulk_from=400)
    seeds = nodes[:150] + nodes[:3]  # repeats allowed
    for k, direction, types in ((1, "out", None), (2, "in", [0, 2]), (3, "both", None)):
        for threads in (1, 2, 0):
            off, got_n, got_h = g.khop_batch(seeds, k, direction, types, threads=threads)
            assert off.shape == (len(seeds) + 1,) and off[0] == 0 and off[-1] == len(got_n)
            for i, s in enumerate(seeds):
                want_n, want_h = g.khop([s], k, direction, types)
                np.testing.assert_array_equal(got_n[off[i]:off[i + 1]], want_n)
                np.testing.assert_array_equal(got_h[off[i]:off[i + 1]], want_h)
    off, got_n, got_h = g.khop_batch([], 2)
    assert off.tolist() == [0] and len(got_n) == 0 and len(got_h) == 0
    with pytest.raises(KeyError):
        g.khop_batch([nodes[0], 10**9], 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        g.khop_batch([nodes[0]], 0)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        g.khop_batch([nodes[0]], 1, threads=-1)
    flag = np.ones(1, np.uint8)
    with pytest.raises(TimeoutError, match="query cancelled"):
        g.khop_batch(nodes[:100], 2, threads=2, cancel=flag)


def test_path_totals_reduce_what_paths_returns(graph_cls):
    """path_totals gives the count and the sum / min / max of the confidence products of
    exactly the paths paths() returns (same filters), and refuses bad hop ranges."""
    nodes, labels, edges = random_graph(62, n_nodes=80, n_edges=200)
    g = build(graph_cls, nodes, labels, edges)
    for src in nodes[:25]:
        for lo, hi, direction, types, dl in ((1, 3, "out", None, None), (0, 2, "in", [1, 2], None),
                                             (2, 3, "both", None, 1)):
            found = g.paths(src, lo, hi, direction, types, dst_label=dl, limit=10**7)
            n, s, mn, mx = g.path_totals(src, lo, hi, direction, types, dl)
            products = [p[2] for p in found]
            assert n == len(found)
            assert s == pytest.approx(sum(products), rel=1e-9, abs=1e-12)
            if products:
                assert (mn, mx) == (pytest.approx(min(products)), pytest.approx(max(products)))
            else:
                assert np.isnan(mn) and np.isnan(mx)
    with pytest.raises(ValueError):
        g.path_totals(nodes[0], 3, 2)
    with pytest.raises(ValueError):
        g.path_totals(nodes[0], -1, 2)
    with pytest.raises(KeyError):
        g.path_totals(10**9, 1, 2)


@pytest.mark.parametrize("seed", range(3))
def test_khop_same_with_ascending_and_shuffled_node_ids(both, seed):
    """khop sorts its result by slot when node ids ascend with their slots (inserted in
    id order, read from a file, compacted), by id otherwise: both give the reference."""
    ids, labels, edges = random_graph(seed, n_nodes=120, n_edges=300)
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    asc = ([ids[i] for i in order], [labels[i] for i in order])
    ref = ref_state(ids, labels, edges)
    rng = random.Random(seed)
    seeds = rng.sample(ids, 12)
    for cls in both:
        for nodes, labs in (asc, (ids, labels)):
            g = build(cls, nodes, labs, edges[:200])
            g.compact()
            for e in edges[200:]:
                g.add_edge(*e)  # in the append buffer
            for k in (1, 2, 4):
                for s in seeds:
                    got = g.khop([s], k, "out", None)
                    assert list(zip(got[0].tolist(), got[1].tolist())) == ref.khop([s], k, "out")
                off, n, h = g.khop_batch(seeds, k, "both", None, threads=1)
                for i, s in enumerate(seeds):
                    lo, hi = int(off[i]), int(off[i + 1])
                    assert list(zip(n[lo:hi].tolist(), h[lo:hi].tolist())) == ref.khop(
                        [s], k, "both")
