"""Bounded Cypher queries: timeouts, cancellation and row caps, in the engine, the native
walks and the store's graph (issue 18). Nothing here measures time: a query that did not
stop would run for hours (a 4-way product over 200 nodes is 1.6e9 rows) and never raise."""

from __future__ import annotations

import threading
import time

import agentdb
import numpy as np
import pytest
from agentdb.engines import loader, numpy_graph
from agentdb.errors import (
    CypherError,
    InvalidArgumentError,
    QueryCancelledError,
    QueryLimitError,
    QueryTimeoutError,
)
from agentdb.graph.cypher import MemoryGraphView, execute
from agentdb.graph.cypher.budget import QueryBudget

CARTESIAN = "MATCH (a), (b), (c), (d) RETURN count(*) AS n"
DEEP = "MATCH p = (a:Event)-[:CAUSED_BY*1..15]->(b:Event) RETURN count(p) AS n"


@pytest.fixture
def graph(graph_backend):
    """A store's causal graph on either graph backend."""
    db = agentdb.open(":memory:", dim=8)
    yield db.graph
    db.close()


def _nodes(g, n: int) -> list[int]:
    with g.transaction():
        return [g.add_event(type="e", i=i) for i in range(n)]


def _ring_with_chords(g, n: int) -> None:
    """i -> i+1 and i -> i+2 (mod n): every node starts 2^1 + ... + 2^15 simple paths of up
    to 15 hops (fewer than the per-source path limit), n times that in all."""
    ids = _nodes(g, n)
    with g.transaction():
        for i in range(n):
            g.add_causal_edge([ids[i]], [ids[(i + 1) % n]])
            g.add_causal_edge([ids[i]], [ids[(i + 2) % n]])


def test_cartesian_product_times_out(graph):
    _nodes(graph, 200)
    with pytest.raises(QueryTimeoutError, match="timeout of 0.5 s"):
        graph.query(CARTESIAN, timeout=0.5)
    assert graph.query("MATCH (a) RETURN count(*) AS n", timeout=5) == [{"n": 200}]


def test_deep_walk_on_a_cyclic_graph_times_out(graph):
    _ring_with_chords(graph, 400)
    with pytest.raises(QueryTimeoutError):
        graph.query(DEEP, timeout=0.5)
    # the same walk from one node, bounded, is answered
    rows = graph.query("MATCH p = (a:Event {i: 0})-[:CAUSED_BY*1..3]->(b) RETURN count(p) AS n",
                       timeout=10)
    assert rows == [{"n": 2 + 4 + 8}]


def test_a_query_can_be_cancelled_from_another_thread(graph):
    _nodes(graph, 200)
    budget = QueryBudget(timeout=60)
    timer = threading.Timer(0.3, budget.cancel)
    timer.start()
    try:
        with pytest.raises(QueryCancelledError, match="query cancelled"):
            graph.query(CARTESIAN, budget=budget)
    finally:
        timer.cancel()


def test_a_slow_query_holds_back_no_read_and_a_write_no_longer_than_its_timeout(graph):
    """Read queries share the graph: while a slow one runs, another is answered. A write
    waits for the readers, at most its own timeout (then an error naming the wait), and
    goes through once the slow query is stopped."""
    _nodes(graph, 200)
    errors: list[BaseException] = []
    started = threading.Event()

    def slow() -> None:
        started.set()
        try:
            graph.query(CARTESIAN, timeout=3)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    t = threading.Thread(target=slow)
    t.start()
    started.wait(10)
    time.sleep(0.3)
    try:
        assert graph.query("MATCH (e:Event) RETURN count(e) AS n", timeout=2) == [{"n": 200}]
        assert t.is_alive()  # answered while the slow query was still running
        with pytest.raises(QueryTimeoutError, match="waiting for other graph queries"):
            graph.query("CREATE (:Late)", timeout=0.2)
        graph.query("CREATE (:Late)", timeout=20)
    finally:
        t.join(30)
    assert len(errors) == 1 and isinstance(errors[0], QueryTimeoutError)
    assert graph.query("MATCH (x:Late) RETURN count(x) AS n") == [{"n": 1}]


def test_a_stopped_write_query_keeps_nothing(graph):
    _nodes(graph, 3)
    with pytest.raises(QueryTimeoutError):
        graph.query("UNWIND range(1, 3000000) AS x CREATE (:Tmp {x: x})", timeout=0.5)
    assert graph.query("MATCH (t:Tmp) RETURN count(t) AS n") == [{"n": 0}]
    assert graph.query("MATCH (e:Event) RETURN count(e) AS n") == [{"n": 3}]
    graph.query("CREATE (:Tmp {x: 1})", timeout=5)  # the graph still takes writes
    assert graph.query("MATCH (t:Tmp) RETURN count(t) AS n") == [{"n": 1}]


def test_row_cap_and_defaults(graph):
    _nodes(graph, 50)
    with pytest.raises(QueryLimitError, match="max_rows=10"):
        graph.query("MATCH (a) RETURN a.i AS i", max_rows=10)
    assert len(graph.query("MATCH (a) RETURN a.i AS i LIMIT 10", max_rows=10)) == 10
    graph.query_max_rows = 20
    with pytest.raises(QueryLimitError, match="max_rows=20"):
        graph.query("MATCH (a) RETURN a.i AS i")
    assert len(graph.query("MATCH (a) RETURN a.i AS i", max_rows=100)) == 50
    graph.query_max_rows = None
    graph.query_timeout = 0.3
    with pytest.raises(QueryTimeoutError, match="timeout of 0.3 s"):
        graph.query(CARTESIAN)
    graph.query_timeout = None


def test_limits_are_keywords_not_parameters(graph):
    _nodes(graph, 2)
    assert graph.cypher("MATCH (e:Event) RETURN count(e) AS n", timeout=5) == [{"n": 2}]
    assert graph.query("RETURN $timeout AS t", {"timeout": 7}) == [{"t": 7}]
    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(InvalidArgumentError, match="timeout must be"):
            graph.query("RETURN 1", timeout=bad)
    for bad in (0, -3, 2.5, "x", True):
        with pytest.raises(InvalidArgumentError, match="max_rows must be"):
            graph.query("RETURN 1", max_rows=bad)
    with pytest.raises(InvalidArgumentError):
        graph.query_timeout = -1


def test_engine_budget_on_the_pure_python_view():
    g = MemoryGraphView()
    for i in range(40):
        g.add_node(["N"], {"i": i})
    with pytest.raises(QueryTimeoutError):
        execute(g, CARTESIAN, budget=QueryBudget(timeout=0.3))
    assert execute(g, "MATCH (a) RETURN count(a) AS n", budget=QueryBudget(timeout=5)) == [
        {"n": 40}]


@pytest.mark.parametrize("name", ["native", "numpy"])
def test_walk_budget_arguments(name):
    mod = numpy_graph if name == "numpy" else loader.backend
    if not hasattr(mod, "Hypergraph"):
        pytest.skip("native core not built")
    g = mod.Hypergraph()
    g.add_nodes(list(range(1, 301)))
    eid = 0
    for a in range(1, 301):
        for step in (1, 2):
            eid += 1
            g.add_edge(eid, 0, [a], [(a - 1 + step) % 300 + 1])
    flag = np.zeros(1, np.uint8)
    found = g.paths(1, max_hops=3, timeout=5.0, cancel=flag)
    assert len(found) == 2 + 4 + 8
    flag[0] = 1
    for call in (lambda: g.paths(1, max_hops=3, cancel=flag),
                 lambda: g.khop([1], 3, cancel=flag),
                 lambda: g.top_paths(1, max_hops=3, cancel=flag),
                 lambda: g.paths_to(5, max_hops=3, cancel=flag),
                 lambda: g.match_chain([-1, -1], cancel=flag)):
        with pytest.raises(TimeoutError, match="query cancelled"):
            call()
    # 2^25 simple paths to walk, none kept (no end qualifies): the walk itself must stop
    with pytest.raises(TimeoutError, match="query timed out"):
        g.paths(1, max_hops=25, ends=[10**6], timeout=0.2)
    with pytest.raises(TypeError, match="cancel must be a uint8 numpy array"):
        g.paths(1, cancel=np.zeros(1, np.int32))
    with pytest.raises(TypeError, match="timeout must be a number"):
        g.paths(1, timeout="1")


def test_shared_lock_semantics():
    from agentdb.graph.locks import SharedLock

    lock = SharedLock()
    assert lock.acquire_shared(timeout=1)
    other: list[bool] = []
    t = threading.Thread(target=lambda: other.append(lock.acquire_shared(timeout=1)
                                                     and (lock.release_shared() or True)))
    t.start()
    t.join(5)
    assert other == [True]  # readers share
    w = threading.Thread(target=lambda: other.append(lock.acquire(timeout=0.2)))
    w.start()
    w.join(5)
    assert other[-1] is False  # a writer waits for the reader (and gives up)
    with pytest.raises(RuntimeError, match="while holding it shared"):
        lock.acquire(timeout=0.1)  # no upgrade
    lock.release_shared()
    assert lock.acquire(timeout=1)
    r = threading.Thread(target=lambda: other.append(lock.acquire_shared(timeout=0.2)))
    r.start()
    r.join(5)
    assert other[-1] is False  # a reader waits for the writer
    with lock.shared():  # the writer may read
        pass
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        lock.release_shared()


# ---- plan cache, EXPLAIN, PROFILE (issue 18) ---------------------------------------------------


def test_plan_cache_reruns_plans_with_new_parameters(graph):
    """A query text is compiled once per parameter-name set; reruns with other values, after
    writes in between, and after a new index (which changes the plan) answer as a fresh
    compile does."""
    ids = _nodes(graph, 60)
    with graph.transaction():
        for i in range(59):
            graph.add_causal_edge([ids[i]], [ids[i + 1]], confidence=0.5)
    q = ("MATCH (a:Event {i: $i})-[:CAUSED_BY]->(b)-[:CAUSED_BY]->(c) "
         "RETURN a.i AS a, b.i AS b, c.i AS c")
    graph.plan_cache.clear()
    hits0 = graph.plan_cache.hits
    for i in (0, 10, 57, 58, 3):
        want = [] if i >= 58 else [{"a": i, "b": i + 1, "c": i + 2}]
        assert graph.query(q, {"i": i}) == want
    assert graph.plan_cache.hits - hits0 == 4
    graph.query("MATCH (e:Event {i: 5}) SET e.i = 500")
    assert graph.query(q, {"i": 500}) == [{"a": 500, "b": 6, "c": 7}]
    assert graph.query(q, {"i": 5}) == []
    gen = graph.plan_generation
    graph.create_index("Event", "i")
    assert graph.plan_generation != gen
    assert graph.query(q, {"i": 500}) == [{"a": 500, "b": 6, "c": 7}]
    res = graph.query_stats("CREATE (:T {x: $x})", {"x": 1})
    res2 = graph.query_stats("CREATE (:T {x: $x})", {"x": 2})
    assert res.stats.nodes_created == 1 and res2.stats.nodes_created == 1
    assert sorted(r["x"] for r in graph.query("MATCH (t:T) RETURN t.x AS x")) == [1, 2]
    with pytest.raises(CypherError, match="missing parameter"):
        graph.query(q, {})


def test_plan_cache_under_concurrent_queries(graph):
    ids = _nodes(graph, 40)
    with graph.transaction():
        for i in range(39):
            graph.add_causal_edge([ids[i]], [ids[i + 1]])
    q = "MATCH (a:Event {i: $i})-[:CAUSED_BY]->(b) RETURN b.i AS b"
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for r in range(200):
                i = (r + offset) % 39
                assert graph.query(q, {"i": i}) == [{"b": i + 1}]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 7,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:1]


def test_explain_and_profile(graph):
    ids = _nodes(graph, 30)
    with graph.transaction():
        for i in range(29):
            graph.add_causal_edge([ids[i]], [ids[i + 1]])
    graph.create_index("Event", "i")
    q = "MATCH (a:Event {i: $i})-[:CAUSED_BY*1..3]->(b) RETURN count(b) AS n"
    plan = graph.query("EXPLAIN " + q, {"i": 2})
    assert [r["operator"] for r in plan] == ["MATCH", "RETURN"]
    assert "native paths 1..3" in plan[0]["detail"] and "(a:Event {...})" in plan[0]["detail"]
    assert "aggregate" in plan[1]["detail"]
    chain = graph.query("explain MATCH (a:Event {i: 1})-[:CAUSED_BY]->(b) RETURN b")
    assert "native chain match" in chain[0]["detail"] and "index Event.i" in chain[0]["detail"]
    prof = graph.query_stats("PROFILE " + q, {"i": 2})
    assert prof.columns == ["step", "operator", "detail", "rows", "ms", "share"]
    assert [r["rows"] for r in prof.rows] == [3, 1]
    assert all(r["ms"] >= 0 for r in prof.rows)
    # EXPLAIN runs nothing; PROFILE runs the query (writes included)
    assert graph.query("EXPLAIN CREATE (:Never)") and not graph.query(
        "MATCH (n:Never) RETURN n")
    graph.query("PROFILE CREATE (:Once)")
    assert graph.query("MATCH (n:Once) RETURN count(n) AS c") == [{"c": 1}]
    from agentdb.graph.cypher import is_read_only
    assert is_read_only("EXPLAIN CREATE (n)") and not is_read_only("PROFILE CREATE (n)")


# ---- aggregation pushed into the core (issue 18) -------------------------------------------


def _random_causal(graph, n: int = 60, m: int = 160, seed: int = 5) -> list[int]:
    import random

    rng = random.Random(seed)
    ids = _nodes(graph, n)
    with graph.transaction():
        for _ in range(m):
            a, b = rng.sample(ids, 2)
            typ = rng.choice(["CAUSED_BY", "CAUSED_BY", "LED_TO"])
            graph.add_causal_edge([a], [b], type=typ, confidence=rng.choice([0.5, 0.9, 1.0,
                                                                              rng.random()]))
    return ids


PUSHED = [
    "MATCH (a:Event {i: $i})-[:CAUSED_BY*1..3]->(b) RETURN count(DISTINCT b) AS n",
    "MATCH (a:Event {i: $i})-[*0..2]->(b:Event) RETURN count(DISTINCT b) AS n",
    "MATCH (a:Event {i: $i})<-[:CAUSED_BY|LED_TO*..4]-(b) RETURN count(DISTINCT b) AS n",
    "MATCH (a {i: $i})-[*1..2]-(b) RETURN count(DISTINCT b) AS n",
    "MATCH (a:Event)-[:LED_TO*1..2]->(b) RETURN count(DISTINCT b) AS n",
    "MATCH p = (a:Event {i: $i})-[*1..4]->() RETURN count(*) AS n, "
    "sum(reduce(c = 1.0, r IN relationships(p) | c * r.confidence)) AS s",
    "MATCH p = (a:Event {i: $i})-[:CAUSED_BY*2..5]->(x:Event) RETURN "
    "sum(reduce(acc = 1, rel IN relationships(p) | rel.confidence * acc)) AS s",
    "MATCH p = (a:Event {i: $i})-[*0..3]-() RETURN count(*) AS n",
    "MATCH p = (a:Event {i: $i})-[:CAUSED_BY*1..4]->() RETURN max(reduce(c = 1.0, r IN "
    "relationships(p) | c * r.confidence)) AS hi, min(reduce(c = 1.0, r IN relationships(p) | "
    "c * r.confidence)) AS lo, avg(reduce(c = 1.0, r IN relationships(p) | c * r.confidence)) "
    "AS mean, count(*) AS n",
]


@pytest.mark.parametrize("query", PUSHED)
def test_pushed_down_aggregates_equal_the_generic_engine(graph, query):
    """Each shape runs natively (EXPLAIN says so) and answers what the generic engine does
    (the same query with ``WHERE true`` is not pushed down), counts exactly and sums to
    float32-confidence precision, for several anchors and after a second label appears."""
    _random_causal(graph)
    assert graph.query("EXPLAIN " + query, {"i": 0})[0]["operator"] == "NATIVE AGGREGATE"
    generic = query.replace(" RETURN", " WHERE true RETURN", 1)
    assert graph.query("EXPLAIN " + generic, {"i": 0})[0]["operator"] == "MATCH"

    def check() -> None:
        for i in (0, 7, 33, 59, 1000):
            got = graph.query(query, {"i": i})
            want = graph.query(generic, {"i": i})
            assert got[0].keys() == want[0].keys()
            for k in got[0]:
                if isinstance(want[0][k], float):
                    assert got[0][k] == pytest.approx(want[0][k], rel=1e-6, abs=1e-9)
                else:
                    assert got[0][k] == want[0][k], (i, k)

    check()
    graph.query("CREATE (t:Tool {i: 1000})")
    graph.query("MATCH (t:Tool), (e:Event {i: 3}) CREATE (e)-[:CAUSED_BY {confidence: 0.5}]->(t)")
    graph.query("MATCH (t:Tool) SET t:Event")  # Event is now some node's second label
    check()


TOPS = [
    "MATCH p = (a:Event {i: $i})-[*1..4]->() RETURN p, reduce(c = 1.0, r IN relationships(p) "
    "| c * r.confidence) AS conf ORDER BY conf DESC LIMIT 10",
    "MATCH p = (a:Event {i: $i})<-[:CAUSED_BY*1..5]-(b:Event) RETURN reduce(c = 1.0, r IN "
    "relationships(p) | c * r.confidence) AS conf, p ORDER BY conf DESC LIMIT $n",
    "MATCH p = (a:Event {i: $i})-[:LED_TO|CAUSED_BY*2..3]->(b) RETURN reduce(x = 1, r IN "
    "relationships(p) | x * r.confidence) AS w ORDER BY w DESC LIMIT 3",
]


@pytest.mark.parametrize("query", TOPS)
def test_pushed_down_top_paths_equal_the_generic_engine(graph, query):
    """Top-n by confidence product runs as the core's branch-and-bound walk and returns the
    rows of the generic sort (confidences of 0.5 and 1.0 make many exact ties)."""
    import random

    rng = random.Random(9)
    ids = _nodes(graph, 40)
    with graph.transaction():
        for _ in range(120):
            a, b = rng.sample(ids, 2)
            graph.add_causal_edge([a], [b], type=rng.choice(["CAUSED_BY", "LED_TO"]),
                                  confidence=rng.choice([0.5, 1.0, 0.25]))
    assert graph.query("EXPLAIN " + query, {"i": 0, "n": 7})[0]["operator"] == (
        "NATIVE AGGREGATE")
    generic = query.replace(" RETURN", " WHERE true RETURN", 1)
    for i in (0, 5, 21, 39, 999):
        got = graph.query(query, {"i": i, "n": 7})
        want = graph.query(generic, {"i": i, "n": 7})
        assert len(got) == len(want), i
        for g_row, w_row in zip(got, want):
            assert g_row.keys() == w_row.keys()
            for k in g_row:
                if hasattr(w_row[k], "nodes"):
                    assert [n.id for n in g_row[k].nodes] == [n.id for n in w_row[k].nodes]
                    assert [r.id for r in g_row[k].relationships] == [
                        r.id for r in w_row[k].relationships]
                else:
                    assert g_row[k] == w_row[k]
