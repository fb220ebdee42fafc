"""CausalMemoryGraph: persistence, property indexes, the causal API and the two reference
Cypher queries on a generated graph (checked against brute-force answers)."""

from __future__ import annotations

import itertools
import random

import agentdb
import pytest
from agentdb.graph.cypher import CypherError, CypherSyntaxError, MemoryGraphView, execute

Q1 = ("MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId}) "
      "WHERE root.type = 'root_cause' RETURN path, length(path) as depth, "
      "reduce(conf = 1.0, r in relationships(path) | conf * r.confidence) as chain_confidence "
      "ORDER BY chain_confidence DESC LIMIT 10")
Q2 = ("MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
      "WHERE a.type = $type1 AND b.type = $type2 RETURN a, b, c")
TYPES = ["root_cause", "symptom", "action", "outcome"]


def build(g, n_events=300, n_edges=700, seed=3):
    """A random causal DAG (edges go from lower to higher index) with hyperedges, returning
    the events and the binary CAUSED_BY relationships as (edge, a, b, confidence)."""
    rng = random.Random(seed)
    ids = []
    with g.transaction():
        for i in range(n_events):
            ids.append(g.add_event(id=f"e{i}", type=TYPES[i % 4], agentId=f"a{i % 7}",
                                   timestamp=float(i)))
        rels = []
        for _ in range(n_edges):
            i = rng.randrange(n_events - 1)
            tails = sorted({i, *(rng.randrange(max(1, i)) for _ in range(rng.randrange(2)))})
            heads = sorted({rng.randrange(i + 1, min(n_events, i + 40))
                            for _ in range(rng.randrange(1, 3))})
            conf = round(rng.uniform(0.3, 1.0), 3)
            e = g.add_causal_edge([ids[t] for t in tails], [ids[h] for h in heads],
                                  confidence=conf)
            rels += [(e, ids[t], ids[h], conf) for t in tails for h in heads]
    return ids, rels


def brute_paths(rels, src_ok, dst, lo, hi):
    out_edges = {}
    for e, a, b, c in rels:
        out_edges.setdefault(a, []).append((e, b, c))
    found = []

    def walk(node, nodes, conf, edges):
        if lo <= len(edges) <= hi and node == dst and src_ok(nodes[0]):
            found.append((list(nodes), conf))
        if len(edges) == hi:
            return
        for e, b, c in out_edges.get(node, ()):
            if b in nodes:
                continue
            walk(b, nodes + [b], conf * c, edges + [e])

    for start in {a for _, a, _, _ in rels}:
        walk(start, [start], 1.0, [])
    return found


@pytest.fixture()
def g():
    db = agentdb.open(":memory:", dim=8)
    yield db.graph
    db.close()


def test_reference_query_1_matches_brute_force(g):
    ids, rels = build(g)
    props = {i: g.node(i)[1] for i in ids}
    for target in ids[150:160]:
        want = brute_paths(rels, lambda n: props[n]["type"] == "root_cause", target, 1, 5)
        want.sort(key=lambda t: -t[1])
        rows = g.query(Q1, {"outcomeId": props[target]["id"]})
        assert len(rows) == min(10, len(want))
        got = [r["chain_confidence"] for r in rows]
        assert got == sorted(got, reverse=True)
        assert got == pytest.approx([c for _, c in want[: len(got)]])
        for r in rows:
            path = r["path"]
            assert path.nodes[-1].id == target and path.nodes[0].properties["type"] == "root_cause"
            assert r["depth"] == len(path.relationships)


def test_reference_query_2_matches_brute_force(g):
    ids, rels = build(g, seed=5)
    types = {i: g.node(i)[1]["type"] for i in ids}
    by_start = {}
    for e, a, b, _ in rels:
        by_start.setdefault(a, []).append((e, b))
    want = set()
    for e1, a, b, _ in rels:
        if types[a] == "root_cause" and types[b] == "symptom":
            for e2, c in by_start.get(b, ()):
                if e2 != e1:  # relationship uniqueness within one match
                    want.add((a, b, c, e1, e2))
    rows = g.query(Q2, {"type1": "root_cause", "type2": "symptom"})
    got = {(r["a"].id, r["b"].id, r["c"].id) for r in rows}
    assert got == {(a, b, c) for a, b, c, _, _ in want}
    assert len(rows) == len(want)  # one row per distinct pair of relationships


def test_property_index_used_and_consistent(g):
    ids, _ = build(g, n_events=100, n_edges=150)
    g.create_index("Event", "type")
    assert g.has_index("Event", "type")
    assert g.find_nodes("Event", {"type": "action"}) == [i for i in ids if
                                                         g.node(i)[1]["type"] == "action"]
    g.set_node_property(ids[2], "type", "root_cause")  # index follows updates
    assert ids[2] in g.find_nodes("Event", {"type": "root_cause"})
    assert ids[2] not in g.find_nodes("Event", {"type": "action"})


def test_persistence_across_reopen(tmp_path):
    path = str(tmp_path / "m.db")
    db = agentdb.open(path, dim=8)
    ids, rels = build(db.graph, n_events=80, n_edges=120)
    db.graph.create_index("Event", "agentId")
    before = db.graph.query(Q1, {"outcomeId": "e60"})
    e = db.graph.add_causal_edge([ids[0]], [ids[1]], type="ENABLES", confidence=0.25, why="x")
    db.close()
    db = agentdb.open(path, dim=8)
    g = db.graph
    assert g.stats()["nodes"] == 80 and g.stats()["edges"] == 121
    assert g.has_index("Event", "agentId")
    after = g.query(Q1, {"outcomeId": "e60"})
    assert [r["chain_confidence"] for r in after] == [r["chain_confidence"] for r in before]
    assert g.get_edge(e)["properties"] == {"why": "x"} and g.get_edge(e)["confidence"] == 0.25
    db.close()


def test_causal_chain_projection(g):
    a, b, c = (g.add_event(name=x) for x in "abc")
    chain, pairs = g.add_causal_chain([a, b, c], confidence=[0.9, 0.5])
    edge = g.get_edge(chain)
    assert edge["causes"] == [a, b] and edge["effects"] == [c]
    assert edge["confidence"] == pytest.approx(0.45)
    assert edge["properties"]["chain_length"] == 3  # the seed's contract records it
    assert all("chain_length" not in g.get_edge(p)["properties"] for p in pairs)
    rows = g.query("MATCH (x)-[:CAUSED_BY]->(y) RETURN x.name AS x, y.name AS y ORDER BY x")
    assert rows == [{"x": "a", "y": "b"}, {"x": "b", "y": "c"}]
    rows = g.query("MATCH (x)-[:CAUSAL_CHAIN]->(y) RETURN x.name AS x, y.name AS y ORDER BY x")
    assert rows == [{"x": "a", "y": "c"}, {"x": "b", "y": "c"}]  # binary projection rule
    assert g.khop(a, 2, types=["CAUSED_BY"]) == {b: 1, c: 2}
    top = g.paths(a, types=["CAUSED_BY"], n=1)
    assert top[0]["nodes"] == [a, b] and top[0]["confidence"]["product"] == pytest.approx(0.9)


def test_cypher_writes_are_persisted_and_atomic(tmp_path):
    path = str(tmp_path / "w.db")
    db = agentdb.open(path, dim=8)
    g = db.graph
    g.query("CREATE (a:Event {id: 'x', type: 'root_cause'})-[:CAUSED_BY {confidence: 0.8}]->"
            "(b:Event {id: 'y'})")
    with pytest.raises(CypherError):
        # the first CREATE runs, then the DELETE fails: the whole statement is rolled back
        g.query("CREATE (c:Event {id: 'z'}) WITH c MATCH (a:Event {id: 'x'}) DELETE a")
    assert sorted(n["p"] for n in g.query("MATCH (n:Event) RETURN n.id AS p")) == ["x", "y"]
    db.close()
    g = agentdb.open(path, dim=8).graph
    assert g.query("MATCH (a)-[r]->(b) RETURN a.id AS a, b.id AS b, r.confidence AS c") == [
        {"a": "x", "b": "y", "c": 0.8}]


def test_bad_input(g):
    a = g.add_event(name="a")
    with pytest.raises(KeyError, match="unknown node 999"):
        g.add_causal_edge([a], [999])
    with pytest.raises(ValueError, match="confidence"):
        g.add_causal_edge([a], [a], confidence=1.5)
    with pytest.raises(ValueError, match="confidence"):
        g.add_causal_edge([a], [a], confidence=float("nan"))
    with pytest.raises(ValueError, match="at least one"):
        g.add_causal_edge([], [a])
    with pytest.raises(ValueError, match="JSON"):
        g.add_event(bad={1, 2})
    with pytest.raises(ValueError, match="two events"):
        g.add_causal_chain([a])
    with pytest.raises(CypherSyntaxError) as exc:
        g.query("MATCH (a:Event RETURN a")
    assert exc.value.line == 1 and exc.value.column > 0
    with pytest.raises(CypherError, match="outcomeId"):
        g.query(Q1)  # missing parameter
    assert g.stats()["nodes"] == 1 and g.stats()["edges"] == 0


def test_native_and_fallback_graph_agree(monkeypatch):
    """The same queries give the same rows on the native CSR and on the numpy fallback."""
    from agentdb.engines import loader as _loader
    from agentdb.engines import numpy_graph as _numpy_graph

    results = []
    for module in filter(None, [_loader._native, _numpy_graph]):
        if not hasattr(module, "Hypergraph"):
            continue
        monkeypatch.setattr(_loader, "graph_backend", lambda m=module: m)
        db = agentdb.open(":memory:", dim=8)
        build(db.graph, n_events=120, n_edges=260, seed=9)
        rows = db.graph.query(Q1, {"outcomeId": "e100"})
        rows2 = db.graph.query(Q2, {"type1": "root_cause", "type2": "symptom"})
        results.append(([(r["depth"], round(r["chain_confidence"], 9)) for r in rows],
                        sorted((r["a"].id, r["b"].id, r["c"].id) for r in rows2)))
        db.close()
    assert len(results) >= 1
    for other in results[1:]:
        assert other == results[0]


def test_each_pair_of_types_runs(g):
    build(g, n_events=60, n_edges=90)
    for t1, t2 in itertools.product(TYPES, repeat=2):
        for r in g.query(Q2, {"type1": t1, "type2": t2}):
            assert r["a"].properties["type"] == t1 and r["b"].properties["type"] == t2


# ---- planner pushdowns (native chains, indexed ends of variable-length hops) ---------------


class _PlainView(MemoryGraphView):
    """A view without the optional ``index_lookup`` extension: no pushdown at all."""

    index_lookup = None


def _twin_graphs(g, seed=5, n=120, m=260, cls=_PlainView):
    """The same random graph in ``g`` (native pushdowns) and in a MemoryGraphView (the
    generic matcher): fan-in/fan-out hyperedges, two relationship types, secondary labels."""
    rng = random.Random(seed)
    mem = cls(clock=lambda: 0.0)
    gid, mid = [], []
    with g.transaction():
        for i in range(n):
            labels = ["Event"] if i % 9 else ["Event", "Root"]
            if i % 17 == 0:
                labels = ["Root"]
            props = {"id": f"e{i}", "type": TYPES[i % 4], "n": i % 5}
            gid.append(g.add_event(labels, **props))
            mid.append(mem.add_node(labels, props))
        for _ in range(m):
            i = rng.randrange(n - 1)
            tails = sorted({i, *(rng.randrange(max(1, i)) for _ in range(rng.randrange(2)))})
            heads = sorted({rng.randrange(i + 1, min(n, i + 12))
                            for _ in range(rng.randrange(1, 3))})
            typ = "CAUSED_BY" if rng.random() < 0.8 else "ENABLES"
            conf = round(rng.uniform(0.3, 1.0), 3)
            g.add_causal_edge([gid[t] for t in tails], [gid[h] for h in heads], type=typ,
                              confidence=conf)
            mem.add_edge(typ, [mid[t] for t in tails], [mid[h] for h in heads], confidence=conf)
    for label, prop in (("Event", "type"), ("Event", "id"), ("Root", "n")):
        g.create_index(label, prop)
        mem.create_index(label, prop)
    return mem


PUSHDOWN_QUERIES = [
    # fixed-length chains answered by the native match_chain
    ("MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
     "WHERE a.type = $t1 AND b.type = $t2 RETURN a.id AS a, b.id AS b, c.id AS c", {}),
    ("MATCH (a:Event {type: $t1})-[r]->(b)<-[s:CAUSED_BY]-(c) "
     "RETURN a.id AS a, type(r) AS r, b.id AS b, c.id AS c, s.confidence AS s", {}),
    ("MATCH (a)-[:CAUSED_BY|ENABLES]->(b:Root)-->(c:Event {id: 'e50'}) "
     "RETURN a.id AS a, b.id AS b", {}),
    ("MATCH p = (a:Root {n: 2})-->(b)-->(c)-->(d) WHERE d.type <> 'action' "
     "RETURN a.id AS a, d.id AS d, length(p) AS l, [x IN nodes(p) | x.id] AS ids", {}),
    ("MATCH (a:Event {type: $t1})-->(b), (b)-->(c:Event {type: $t2}) "
     "RETURN a.id AS a, b.id AS b, c.id AS c", {}),
    ("MATCH (a:Event)-->(b:Event)-->(c) WHERE a.type = $t1 AND b.n = 3 "
     "RETURN count(*) AS n", {}),
    ("MATCH (x:Event {id: 'e3'}) MATCH (x)-->(b:Event)-->(c) RETURN b.id AS b, c.id AS c",
     {}),
    ("MATCH (a:Event)-->(b) WHERE a.type = [1, 2] RETURN count(*) AS n", {}),
    ("MATCH (a:Event)-->(b) WHERE a.type = null RETURN count(*) AS n", {}),
    ("MATCH (a:Event {type: 'nope'})-->(b) RETURN count(*) AS n", {}),
    ("MATCH (a:Nope)-->(b) RETURN count(*) AS n", {}),
    ("MATCH (a:Event)-[:NOPE]->(b) RETURN count(*) AS n", {}),
    # variable-length hops whose far end is fixed by an index
    ("MATCH path = (root:Event)-[:CAUSED_BY*1..4]->(o:Event {id: 'e80'}) "
     "WHERE root.type = $t1 RETURN [x IN nodes(path) | x.id] AS p, "
     "reduce(c = 1.0, r IN relationships(path) | c * r.confidence) AS conf", {}),
    ("MATCH (a:Event {id: 'e10'})-[*1..3]->(b:Event {type: $t2}) RETURN b.id AS b", {}),
    ("MATCH (a:Event {id: 'e10'})-[*0..2]->(b:Event) WHERE b.type = 'root_cause' "
     "RETURN b.id AS b", {}),
]


@pytest.mark.parametrize("query,extra", PUSHDOWN_QUERIES)
@pytest.mark.parametrize("t1,t2", [("root_cause", "symptom"), ("action", "action")])
def test_pushdowns_match_the_generic_matcher(g, query, extra, t1, t2):
    plain = _twin_graphs(g)
    params = {"t1": t1, "t2": t2, **extra}

    def canon(rows):
        return sorted(repr(sorted(r.items())) for r in rows)

    want = execute(plain, query, params)
    assert canon(g.query(query, params)) == canon(want)
    # the in-memory view implements the ends pushdown (not the native chains)
    mem = _twin_graphs(agentdb.open(":memory:", dim=8).graph, cls=MemoryGraphView)
    assert canon(execute(mem, query, params)) == canon(want)


def test_chain_pushdown_sees_writes_and_index_changes(g):
    _twin_graphs(g)
    q = ("MATCH (a:Event)-[:CAUSED_BY]->(b:Event) WHERE a.type = 'root_cause' "
         "AND b.type = 'symptom' RETURN count(*) AS n")
    before = g.query(q)[0]["n"]
    a = g.add_event(type="root_cause", id="new-a")
    b = g.add_event(type="symptom", id="new-b")
    g.add_causal_edge([a], [b])
    assert g.query(q)[0]["n"] == before + 1  # the cached index lookup was invalidated
    g.set_node_property(a, "type", "action")
    assert g.query(q)[0]["n"] == before
    # a label that only ever appears second is not the native label: still found
    g.query("MATCH (n {id: 'new-b'}) SET n:Extra")
    assert g.query("MATCH (a:Event)-->(b:Extra) RETURN a.id AS a") == [{"a": "new-a"}]
    assert g.query("MATCH (a:Event)-->(b:Extra:Event) RETURN count(*) AS n") == [{"n": 1}]
    assert g.query("MATCH (a:Extra)<--(b) RETURN count(*) AS n") == [{"n": 1}]


# ---- the convenience API named in the issue ----------------------------------------------


def test_add_node_and_add_hyperedge_forms(g):
    a = g.add_node("Event", {"type": "root_cause", "id": "a"})
    b = g.add_node(["Event", "Tool"], name="grep")
    c = g.add_node(properties={"type": "outcome", "id": "c"})
    assert g.node(b) == (["Event", "Tool"], {"name": "grep"})
    e1 = g.add_hyperedge([a, b, c], label="LED_TO", properties={"why": "x"}, confidence=0.5)
    assert g.get_edge(e1)["causes"] == [a, b] and g.get_edge(e1)["effects"] == [c]
    assert g.get_edge(e1)["properties"] == {"why": "x"} and g.get_edge(e1)["confidence"] == 0.5
    e2 = g.add_hyperedge(tail=[a], head=[b, c])
    assert g.get_edge(e2)["type"] == "CAUSED_BY" and g.get_edge(e2)["effects"] == [b, c]
    assert g.query("MATCH (x {id: 'a'})-[:CAUSED_BY]->(y) RETURN count(y) AS n") == [{"n": 2}]
    before = g.stats()
    for bad, exc in (
        (lambda: g.add_hyperedge([a]), ValueError),
        (lambda: g.add_hyperedge([a, b], tail=[a]), ValueError),
        (lambda: g.add_hyperedge(tail=[a]), ValueError),
        (lambda: g.add_hyperedge([a, 999]), KeyError),
        (lambda: g.add_hyperedge([a, b], properties={"confidence": 1}), ValueError),
        (lambda: g.add_hyperedge([a, b], properties=[1]), TypeError),
        (lambda: g.add_node("Event", [1]), TypeError),
        (lambda: g.add_event(pattern_id=12345), KeyError),
        (lambda: g.add_event(pattern_id="1"), TypeError),
    ):
        with pytest.raises(exc):
            bad()
    assert g.stats() == before  # nothing half-written


def test_query_causal_path_and_find_similar_patterns(g):
    ids, rels = build(g)
    props = {i: g.node(i)[1] for i in ids}
    target = ids[155]
    want = brute_paths(rels, lambda n: props[n]["type"] == "root_cause", target, 1, 5)
    want.sort(key=lambda t: -t[1])
    for key in (props[target]["id"], target):
        rows = g.query_causal_path(key, max_depth=5, limit=10)
        assert [round(r["chain_confidence"], 9) for r in rows] == [
            round(c, 9) for _, c in want[:10]]
        assert all(r["depth"] == len(r["path"].relationships) for r in rows)
    assert len(g.query_causal_path(props[target]["id"], max_depth=2, limit=3)) <= 3
    any_root = g.query_causal_path(target, max_depth=1, limit=100, root_type=None)
    assert len(any_root) == sum(1 for _e, a, b, _c in rels if b == target)
    with pytest.raises(ValueError):
        g.query_causal_path(target, max_depth=0)
    with pytest.raises(ValueError):
        g.query_causal_path(target, edge_type="X]->(n) DELETE n //")
    with pytest.raises(TypeError):
        g.query_causal_path(1.5)
    rows = g.find_similar_patterns("root_cause", "symptom")
    assert rows == g.query(Q2, {"type1": "root_cause", "type2": "symptom"})
    assert all(r["a"].properties["type"] == "root_cause" and
               r["b"].properties["type"] == "symptom" for r in rows)
    assert len(g.find_similar_patterns("root_cause", "symptom", limit=2)) == min(2, len(rows))


def test_cypher_keyword_parameters(g):
    g.add_event(type="x", n=3)
    assert g.cypher("MATCH (e:Event) WHERE e.n = $n RETURN e.type AS t", n=3) == [{"t": "x"}]
    assert g.cypher("RETURN $query AS q", query="named query") == [{"q": "named query"}]


def test_events_link_to_memory_records():
    db = agentdb.open(":memory:", dim=8)
    p = db.store_pattern("parse the log", reward=1.0, success=True)
    ep = db.store_episode("parse the log", reward=0.5)
    ev = db.graph.add_event(type="action", pattern_id=p, episode_id=ep)
    assert db.graph.node(ev)[1] == {"type": "action", "patternId": p, "episodeId": ep}
    rows = db.graph.cypher("MATCH (e:Event {patternId: $p}) RETURN e.episodeId AS ep", p=p)
    assert rows == [{"ep": ep}] and db.get_pattern(rows[0]["ep"] and p).task == "parse the log"
    db.close()
