"""Tests of the Cypher engine (agentdb.graph.cypher) against the in-memory MemoryGraphView.

Every supported feature is run on small hand-built graphs with exactly known answers: lexing and
parsing, pattern matching over the binary projection of hyperedges, WHERE, projections, ordering,
functions, aggregation, writes and their counters, errors with positions, the planner's choices,
and the two reference queries (also on a graph with thousands of nodes, against brute force).
"""

from __future__ import annotations

import doctest
import importlib
import random
from typing import Any

import pytest
from agentdb.graph.cypher import (
    CypherError,
    CypherSyntaxError,
    GraphView,
    MemoryGraphView,
    Node,
    Path,
    Relationship,
    execute,
    execute_stats,
    parse,
)
from agentdb.graph.cypher import ast as A

Q1 = (
    "MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId}) "
    "WHERE root.type = 'root_cause' RETURN path, length(path) as depth, "
    "reduce(conf = 1.0, r in relationships(path) | conf * r.confidence) as chain_confidence "
    "ORDER BY chain_confidence DESC LIMIT 10"
)
Q2 = (
    "MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
    "WHERE a.type = $type1 AND b.type = $type2 RETURN a, b, c"
)


# ---- fixtures --------------------------------------------------------------------------------


def people() -> MemoryGraphView:
    """0 Ada, 1 Bob, 2 Cy (Admin), 3 Acme (Company), 4 Dee; edges e0..e5 (e5 a hyperedge)."""
    g = MemoryGraphView(clock=lambda: 0.0)
    ada = g.add_node(["Person"], {"name": "Ada", "age": 36})
    bob = g.add_node(["Person"], {"name": "Bob", "age": 25})
    cy = g.add_node(["Person", "Admin"], {"name": "Cy", "age": 41})
    acme = g.add_node(["Company"], {"name": "Acme"})
    dee = g.add_node(["Person"], {"name": "Dee"})
    g.add_edge("KNOWS", [ada], [bob], confidence=0.9, props={"since": 2010})  # e0
    g.add_edge("KNOWS", [bob], [cy], confidence=0.5, props={"since": 2015})  # e1
    g.add_edge("WORKS_AT", [ada], [acme])  # e2
    g.add_edge("WORKS_AT", [cy], [acme])  # e3
    g.add_edge("KNOWS", [cy], [ada], confidence=0.7, props={"since": 2020})  # e4
    g.add_edge("LIKES", [bob, dee], [acme], confidence=0.6)  # e5: Bob->Acme and Dee->Acme
    return g


@pytest.fixture
def g() -> MemoryGraphView:
    return people()


def q(graph: Any, query: str, **params: Any) -> list[dict[str, Any]]:
    return execute(graph, query, params)


def col(rows: list[dict[str, Any]], name: str) -> list[Any]:
    return [r[name] for r in rows]


class RecordingGraph(MemoryGraphView):
    """A MemoryGraphView that records the read calls the executor makes."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: 0.0)
        self.calls: list[tuple[Any, ...]] = []

    def node_ids(self, label: str | None = None) -> list[int]:
        self.calls.append(("node_ids", label))
        return super().node_ids(label)

    def find_nodes(self, label: str | None, props: dict[str, Any]) -> list[int]:
        self.calls.append(("find_nodes", label, dict(props)))
        return super().find_nodes(label, props)

    def expand(self, nid: int, direction: str, types: list[str] | None) -> Any:
        self.calls.append(("expand", nid, direction, None if types is None else list(types)))
        return super().expand(nid, direction, types)

    def var_paths(
        self,
        src: int,
        min_hops: int,
        max_hops: int,
        direction: str,
        types: list[str] | None,
        dst: int | None = None,
    ) -> Any:
        self.calls.append(("var_paths", src, min_hops, max_hops, direction, types, dst))
        return super().var_paths(src, min_hops, max_hops, direction, types, dst)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


def causal(graph: MemoryGraphView | None = None) -> tuple[MemoryGraphView, dict[str, int]]:
    """The hand-built causal graph of the reference-query tests (see test_reference_query_1)."""
    g = graph if graph is not None else MemoryGraphView(clock=lambda: 0.0)
    ids: dict[str, int] = {}

    def ev(key: str, typ: str, label: str = "Event") -> None:
        ids[key] = g.add_node([label], {"id": key, "type": typ})

    for k in ("root1", "root2", "root3", "root4", "root5"):
        ev(k, "root_cause")
    ev("m1", "mid")
    for k in ("m2", "m3", "m4", "m5"):
        ev(k, "mid")
    for k in ("a1", "a2", "a3", "a4", "a5"):
        ev(k, "other")
    ev("o1", "outcome")
    ev("o2", "outcome")
    ev("noise", "other")
    ev("doc", "root_cause", label="Document")
    e = ids

    def edge(a: str, b: str, c: float) -> None:
        g.add_edge("CAUSED_BY", [e[a]], [e[b]], confidence=c)

    edge("root1", "m1", 0.9)
    edge("m1", "o1", 0.8)
    edge("root2", "o1", 0.5)
    for a, b in (("root3", "m2"), ("m2", "m3"), ("m3", "m4"), ("m4", "m5"), ("m5", "o1")):
        edge(a, b, 0.9)
    for a, b in (("root4", "a1"), ("a1", "a2"), ("a2", "a3"), ("a3", "a4"), ("a4", "a5")):
        edge(a, b, 0.9)
    edge("a5", "o1", 0.9)  # root4 is 6 hops away: outside *1..5
    g.add_edge("CAUSED_BY", [e["root5"], e["m1"]], [e["o1"]], confidence=0.7)  # a hyperedge
    edge("o1", "root2", 0.1)  # a cycle: trails may pass through o1 once
    edge("doc", "o1", 0.99)  # not an :Event
    g.add_edge("RELATED", [e["root2"]], [e["o1"]], confidence=1.0)  # another type
    edge("root1", "o2", 0.9)
    edge("noise", "o1", 0.95)  # not a root cause
    return g, ids


# ---- doctests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [
        "errors",
        "lexer",
        "ast",
        "parser",
        "values",
        "graphview",
        "functions",
        "expressions",
        "matcher",
        "executor",
        "",
    ],
)
def test_doctests(module: str) -> None:
    mod = importlib.import_module("agentdb.graph.cypher" + (f".{module}" if module else ""))
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0


# ---- lexing and parsing ----------------------------------------------------------------------


def test_case_insensitive_keywords(g: MemoryGraphView) -> None:
    rows = q(g, "mAtCh (n:Person) wHeRe n.age > 30 ReTuRn n.name AS name oRdEr By name DeSc")
    assert rows == [{"name": "Cy"}, {"name": "Ada"}]
    with pytest.raises(CypherError, match="variable `N` not defined") as ei:
        q(g, "MATCH (n:Person) RETURN N")
    assert (ei.value.line, ei.value.column) == (1, 25)
    assert q(g, "MATCH (n:person) RETURN n") == []  # labels are case-sensitive


def test_backticks_and_comments(g: MemoryGraphView) -> None:
    g.add_node(["My Label"], {"odd key": 1, "match": 2})
    rows = q(
        g,
        """// a comment line
        MATCH (`the node`:`My Label`) /* a block
        comment */ RETURN `the node`.`odd key` AS `a b`, `the node`.match AS m // trailing""",
    )
    assert rows == [{"a b": 1, "m": 2}]


def test_string_literals_and_escapes() -> None:
    g = MemoryGraphView()
    rows = q(g, r"""RETURN 'it\'s' AS a, "say \"hi\"" AS b, 'tab\tnl\n' AS c, '\u00e9' AS d""")
    assert rows == [{"a": "it's", "b": 'say "hi"', "c": "tab\tnl\n", "d": "é"}]


def test_number_literals() -> None:
    rows = q(
        MemoryGraphView(),
        "RETURN 0x1F AS h, 1e3 AS e, 2.5 AS f, .5 AS g, -9223372036854775808 AS m",
    )
    assert rows == [{"h": 31, "e": 1000.0, "f": 2.5, "g": 0.5, "m": -(2**63)}]


def test_parse_ast_shape() -> None:
    query = parse("MATCH p = (a:A:B {x: 1})<-[r:T1|T2*2..]-(b) RETURN a")
    m = query.clauses[0]
    assert isinstance(m, A.Match)
    part = m.patterns[0]
    assert part.variable == "p"
    assert part.nodes[0] == A.NodePattern("a", ["A", "B"], A.MapLiteral([("x", A.Literal(1))]))
    assert part.rels[0] == A.RelPattern("r", ["T1", "T2"], None, "in", (2, None))
    ranges = {
        "*": (1, None),
        "*2": (2, 2),
        "*1..5": (1, 5),
        "*..3": (1, 3),
        "*2..": (2, None),
        "*0..1": (0, 1),
    }
    for text, want in ranges.items():
        got = parse(f"MATCH (a)-[{text}]->(b) RETURN a").clauses[0]
        assert isinstance(got, A.Match)
        assert got.patterns[0].rels[0].length == want
    arrows = {"-->": "out", "<--": "in", "--": "both", "-[]->": "out", "<-[]-": "in"}
    for text, want in arrows.items():
        got = parse(f"MATCH (a){text}(b) RETURN a").clauses[0]
        assert isinstance(got, A.Match)
        assert got.patterns[0].rels[0].direction == want
    assert parse("RETURN 1;").clauses[0] == parse("RETURN 1").clauses[0]


def test_column_names_are_source_text(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (n {name: 'Ada'}) RETURN n.name, n.age  +  1, toUpper(n.name)")
    assert list(rows[0]) == ["n.name", "n.age  +  1", "toUpper(n.name)"]
    assert rows == [{"n.name": "Ada", "n.age  +  1": 37, "toUpper(n.name)": "ADA"}]


# ---- MATCH --------------------------------------------------------------------------------------


def test_label_scan_and_multiple_labels(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (n:Person) RETURN n.name AS name ORDER BY name")
    assert col(rows, "name") == ["Ada", "Bob", "Cy", "Dee"]
    assert q(g, "MATCH (n:Person:Admin) RETURN n.name") == [{"n.name": "Cy"}]
    assert q(g, "MATCH (n:Admin:Company) RETURN n") == []
    assert len(q(g, "MATCH (n) RETURN n")) == 5


def test_node_values_and_inline_properties(g: MemoryGraphView) -> None:
    assert q(g, "MATCH (n {name: 'Bob'}) RETURN n") == [
        {"n": Node(1, ["Person"], {"name": "Bob", "age": 25})}
    ]
    rows = q(g, "MATCH (n:Person {name: $name, age: $age}) RETURN id(n) AS id", name="Cy", age=41)
    assert rows == [{"id": 2}]
    assert q(g, "MATCH (n:Person {age: 41.0}) RETURN n.name") == [{"n.name": "Cy"}]  # 41 = 41.0
    assert q(g, "MATCH (n {age: null}) RETURN n") == []  # null never equals anything
    assert q(g, "MATCH (n $props) RETURN n.name", props={"name": "Dee"}) == [{"n.name": "Dee"}]


def test_directed_relationships(g: MemoryGraphView) -> None:
    rows = q(
        g,
        "MATCH (a:Person)-[r:KNOWS]->(b) RETURN a.name AS a, b.name AS b, r.since AS since "
        "ORDER BY since",
    )
    assert rows == [
        {"a": "Ada", "b": "Bob", "since": 2010},
        {"a": "Bob", "b": "Cy", "since": 2015},
        {"a": "Cy", "b": "Ada", "since": 2020},
    ]
    assert q(g, "MATCH (a)<-[:KNOWS]-(b {name: 'Ada'}) RETURN a.name") == [{"a.name": "Bob"}]
    assert q(g, "MATCH (a {name: 'Ada'})<--(b) RETURN b.name") == [{"b.name": "Cy"}]


def test_undirected_relationships(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (a {name: 'Ada'})-[:KNOWS]-(b) RETURN b.name AS b ORDER BY b")
    assert col(rows, "b") == ["Bob", "Cy"]
    rows = q(g, "MATCH (a {name: 'Ada'})--(b) RETURN b.name AS b ORDER BY b")
    assert col(rows, "b") == ["Acme", "Bob", "Cy"]
    # each undirected match of a relationship between two people is found from both ends
    assert q(g, "MATCH (a:Person)-[:KNOWS]-(b:Person) RETURN count(*) AS c") == [{"c": 6}]


def test_relationship_type_alternatives_and_properties(g: MemoryGraphView) -> None:
    expected = [{"t": "KNOWS", "x": "Bob"}, {"t": "WORKS_AT", "x": "Acme"}]
    for pattern in ("[r:KNOWS|WORKS_AT]", "[r:KNOWS|:WORKS_AT]"):
        rows = q(
            g,
            f"MATCH ({{name: 'Ada'}})-{pattern}->(x) RETURN type(r) AS t, x.name AS x ORDER BY t",
        )
        assert rows == expected
    rows = q(g, "MATCH (a)-[:KNOWS {since: 2015}]->(b) RETURN a.name, b.name")
    assert rows == [{"a.name": "Bob", "b.name": "Cy"}]
    rows = q(g, "MATCH (a)-[r {confidence: 0.7}]->(b) RETURN a.name, b.name")
    assert rows == [{"a.name": "Cy", "b.name": "Ada"}]


def test_hyperedge_binary_projection(g: MemoryGraphView) -> None:
    rows = q(
        g,
        "MATCH (p)-[r:LIKES]->(c) RETURN p.name AS p, id(r) AS id, startNode(r).name AS s, "
        "endNode(r).name AS e, r.confidence AS conf, r.timestamp AS ts ORDER BY p",
    )
    assert rows == [
        {"p": "Bob", "id": 5, "s": "Bob", "e": "Acme", "conf": 0.6, "ts": 0.0},
        {"p": "Dee", "id": 5, "s": "Dee", "e": "Acme", "conf": 0.6, "ts": 0.0},
    ]
    rows = q(g, "MATCH ()-[r:LIKES]->() RETURN r ORDER BY startNode(r).name")
    props = {"confidence": 0.6, "timestamp": 0.0}
    assert col(rows, "r") == [
        Relationship(5, "LIKES", 1, 3, props),
        Relationship(5, "LIKES", 4, 3, props),
    ]


def test_self_loop_expands_once() -> None:
    g = MemoryGraphView(clock=lambda: 0.0)
    a = g.add_node(["X"], {})
    b = g.add_node(["X"], {})
    g.add_edge("T", [a], [a, b])  # projects to a->a and a->b
    assert q(g, "MATCH (x)-[r:T]-(y) WHERE id(x) = 0 RETURN id(y) AS y ORDER BY y") == [
        {"y": 0},
        {"y": 1},
    ]
    assert q(g, "MATCH (x)-[r]->(x) RETURN id(x) AS x") == [{"x": 0}]


def test_variable_length_bounds(g: MemoryGraphView) -> None:
    def names(rng: str) -> list[tuple[int, str]]:
        rows = q(
            g,
            f"MATCH p = ({{name: 'Ada'}})-[:KNOWS{rng}]->(b) RETURN length(p) AS l, b.name AS b "
            "ORDER BY l",
        )
        return [(r["l"], r["b"]) for r in rows]

    assert names("*") == [(1, "Bob"), (2, "Cy"), (3, "Ada")]  # the trail may return to Ada
    assert names("*2") == [(2, "Cy")]
    assert names("*1..2") == [(1, "Bob"), (2, "Cy")]
    assert names("*..2") == [(1, "Bob"), (2, "Cy")]
    assert names("*2..") == [(2, "Cy"), (3, "Ada")]
    assert names("*0..1") == [(0, "Ada"), (1, "Bob")]
    assert names("*4..") == []  # a relationship may not be used twice
    rows = q(g, "MATCH ({name: 'Ada'})-[rs:KNOWS*2]->(b) RETURN [r IN rs | r.since] AS s")
    assert rows == [{"s": [2010, 2015]}]
    rows = q(g, "MATCH ({name: 'Bob'})-[:KNOWS*1..2 {since: 2015}]-(b) RETURN b.name")
    assert rows == [{"b.name": "Cy"}]


def test_named_paths(g: MemoryGraphView) -> None:
    rows = q(
        g,
        "MATCH p = (a {name: 'Ada'})-[:KNOWS]->(b)-[:KNOWS]->(c) RETURN [n IN nodes(p) | n.name] "
        "AS ns, length(p) AS l, [r IN relationships(p) | id(r)] AS rs",
    )
    assert rows == [{"ns": ["Ada", "Bob", "Cy"], "l": 2, "rs": [0, 1]}]
    bob = Node(1, ["Person"], {"name": "Bob", "age": 25})
    cy = Node(2, ["Person", "Admin"], {"name": "Cy", "age": 41})
    e1 = Relationship(1, "KNOWS", 1, 2, {"since": 2015, "confidence": 0.5, "timestamp": 0.0})
    # anchored on the right-hand node, the path still reads left to right
    rows = q(g, "MATCH p = (a)-[:KNOWS]->(b {name: 'Cy'}) RETURN p")
    assert rows == [{"p": Path([bob, cy], [e1])}]
    rows = q(g, "MATCH p = (c {name: 'Cy'})<-[:KNOWS]-(b) RETURN p")
    assert rows == [{"p": Path([cy, bob], [e1])}]
    rows = q(g, "MATCH p = (a)-[:KNOWS*2]->(c {name: 'Cy'}) RETURN [n IN nodes(p) | n.name] AS ns")
    assert rows == [{"ns": ["Ada", "Bob", "Cy"]}]
    rows = q(g, "MATCH p = (a {name: 'Dee'}) RETURN length(p) AS l, nodes(p) AS ns")
    assert rows == [{"l": 0, "ns": [Node(4, ["Person"], {"name": "Dee"})]}]


def test_comma_patterns_join_and_cartesian_product(g: MemoryGraphView) -> None:
    rows = q(
        g,
        "MATCH (a)-[:KNOWS]->(b), (b)-[:WORKS_AT]->(c) RETURN a.name AS a, b.name AS b, "
        "c.name AS c ORDER BY a",
    )
    assert rows == [{"a": "Bob", "b": "Cy", "c": "Acme"}, {"a": "Cy", "b": "Ada", "c": "Acme"}]
    assert q(g, "MATCH (a:Company), (b:Admin) RETURN a.name, b.name") == [
        {"a.name": "Acme", "b.name": "Cy"}
    ]
    assert q(g, "MATCH (a:Person), (b:Person) RETURN count(*) AS c") == [{"c": 16}]


def test_multiple_match_clauses(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (a {name: 'Ada'}) MATCH (a)-[:WORKS_AT]->(c) MATCH (x)-[:WORKS_AT]->(c) "
                "RETURN x.name AS x ORDER BY x")
    assert rows == [{"x": "Ada"}, {"x": "Cy"}]


def test_optional_match(g: MemoryGraphView) -> None:
    rows = q(
        g,
        "MATCH (p:Person) OPTIONAL MATCH (p)-[:WORKS_AT]->(c) RETURN p.name AS p, c.name AS c "
        "ORDER BY p",
    )
    assert rows == [
        {"p": "Ada", "c": "Acme"},
        {"p": "Bob", "c": None},
        {"p": "Cy", "c": "Acme"},
        {"p": "Dee", "c": None},
    ]
    rows = q(
        g,
        "MATCH (p:Person) OPTIONAL MATCH (p)-[r:KNOWS]->(x) WHERE r.since > 2012 "
        "RETURN p.name AS p, x.name AS x, r IS NULL AS none ORDER BY p",
    )
    assert rows == [
        {"p": "Ada", "x": None, "none": True},
        {"p": "Bob", "x": "Cy", "none": False},
        {"p": "Cy", "x": "Ada", "none": False},
        {"p": "Dee", "x": None, "none": True},
    ]
    assert q(g, "OPTIONAL MATCH (n:Nobody) RETURN n") == [{"n": None}]
    # a null from an optional match makes a later MATCH on it fail, a later OPTIONAL give null
    rows = q(g, "OPTIONAL MATCH (n:Nobody) OPTIONAL MATCH (n)-->(m) RETURN n, m")
    assert rows == [{"n": None, "m": None}]
    assert q(g, "OPTIONAL MATCH (n:Nobody) MATCH (n)-->(m) RETURN m") == []


def test_relationship_uniqueness_and_node_repetition(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH ({name: 'Bob'})-[:KNOWS]-(b)-[:KNOWS]-(c) RETURN b.name AS b, c.name AS c "
                "ORDER BY b")
    assert rows == [{"b": "Ada", "c": "Cy"}, {"b": "Cy", "c": "Ada"}]  # never back over r1
    assert q(g, "MATCH (a)-[r:KNOWS]->(b), (c)-[s:KNOWS]->(d) RETURN count(*) AS n") == [{"n": 6}]
    assert q(g, "MATCH (a)-[r:KNOWS]->(b) MATCH (c)-[s:KNOWS]->(d) RETURN count(*) AS n") == [
        {"n": 9}
    ]  # uniqueness is per MATCH clause
    assert q(g, "MATCH (a {name: 'Ada'})-[:KNOWS*3]->(a) RETURN count(*) AS n") == [{"n": 1}]
    rows = q(g, "MATCH (a)-[:KNOWS]->(b)-[:KNOWS]->(c)-[:KNOWS]->(a) RETURN a.name AS a ORDER BY a")
    assert col(rows, "a") == ["Ada", "Bob", "Cy"]
    rows = q(g, "MATCH (a)-[:WORKS_AT]->(c)<-[:WORKS_AT]-(b) RETURN a.name AS a, b.name AS b "
                "ORDER BY a")
    assert rows == [{"a": "Ada", "b": "Cy"}, {"a": "Cy", "b": "Ada"}]


def test_bound_relationship_variable(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH ()-[r:KNOWS {since: 2010}]->() WITH r MATCH (a)-[r]->(b) "
                "RETURN a.name, b.name")
    assert rows == [{"a.name": "Ada", "b.name": "Bob"}]


# ---- WHERE -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("n.age >= 36", ["Ada", "Cy"]),
        ("n.age > 25 AND n.age < 40", ["Ada"]),
        ("n.age < 30 OR n.name = 'Dee'", ["Bob", "Dee"]),
        ("NOT n.age > 30", ["Bob"]),  # Dee's null age: NOT null is null
        ("n.age > 30 XOR n.name STARTS WITH 'C'", ["Ada"]),
        ("n.name IN ['Bob', 'Dee', 'Zed']", ["Bob", "Dee"]),
        ("n.age IS NULL", ["Dee"]),
        ("n.age IS NOT NULL", ["Ada", "Bob", "Cy"]),
        ("n.name ENDS WITH 'e'", ["Dee"]),
        ("n.name CONTAINS 'o'", ["Bob"]),
        ("n.age % 2 = 1 AND -n.age < -30", ["Cy"]),
        ("(n.age + 4) / 10 = 4", ["Ada", "Cy"]),
        ("n.age <> 25", ["Ada", "Cy"]),
        ("n.age = 36.0", ["Ada"]),
        ("n:Admin", ["Cy"]),
        ("n.name + '!' = 'Bob!'", ["Bob"]),
        ("(n)-[:WORKS_AT]->(:Company)", ["Ada", "Cy"]),
        ("NOT (n)-[:KNOWS]-()", ["Dee"]),
        ("exists((n)<-[:KNOWS {since: 2010}]-())", ["Bob"]),
        ("n.name =~ 'A.*|D.*'", ["Ada", "Dee"]),
        ("25 < n.age < 41", ["Ada"]),
        ("[n.name, 1] = ['Ada', 1]", ["Ada"]),
        ("{k: n.age}.k = 25", ["Bob"]),
        ("exists(n.age) AND n.age > 40", ["Cy"]),
        ("any(c IN split(n.name, '') WHERE c = 'y')", ["Cy"]),
    ],
)
def test_where(g: MemoryGraphView, where: str, expected: list[str]) -> None:
    rows = q(g, f"MATCH (n:Person) WHERE {where} RETURN n.name AS name ORDER BY name")
    assert col(rows, "name") == expected


def test_where_with_parameters(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (n:Person) WHERE n.age > $min AND n.name IN $names RETURN n.name AS n",
             min=30, names=["Ada", "Bob"])
    assert rows == [{"n": "Ada"}]


def test_expressions() -> None:
    g = MemoryGraphView()
    rows = q(
        g,
        "RETURN 1 + 2 * 3 AS a, (1 + 2) * 3 AS b, 7 / 2 AS c, -7 / 2 AS d, 7 % 3 AS e, "
        "7.0 / 2 AS f, 2 ^ 3 AS g, 'a' + 'b' AS h, 'n' + 1 AS i, [1, 2] + [3] AS j, -(3) AS k, "
        "10 - 2 - 3 AS l, -7 % 3 AS m, 2 * 3 ^ 2 AS n",
    )
    assert rows == [{"a": 7, "b": 9, "c": 3, "d": -3, "e": 1, "f": 3.5, "g": 8.0, "h": "ab",
                     "i": "n1", "j": [1, 2, 3], "k": -3, "l": 5, "m": -1, "n": 18.0}]
    rows = q(
        g,
        "RETURN 1 AS i, 1.5 AS f, 'single' AS s, \"double\" AS d, true AS t, FALSE AS ff, "
        "null AS n, [1, 'a', null] AS l, {a: 1, b: [true]} AS m, [] AS e, {} AS em",
    )
    assert rows == [{"i": 1, "f": 1.5, "s": "single", "d": "double", "t": True, "ff": False,
                     "n": None, "l": [1, "a", None], "m": {"a": 1, "b": [True]}, "e": [],
                     "em": {}}]
    rows = q(g, "RETURN {a: {b: 5}}.a.b AS x, [1, 2, 3][1] AS y, [1, 2, 3][-1] AS z, "
                "[1, 2, 3][5] AS w, [1, 2, 3, 4][1..3] AS s, [1, 2, 3][..2] AS s2, "
                "{a: 1}['a'] AS m")
    assert rows == [{"x": 5, "y": 2, "z": 3, "w": None, "s": [2, 3], "s2": [1, 2], "m": 1}]


def test_null_semantics() -> None:
    rows = q(
        MemoryGraphView(),
        "RETURN null = null AS a, 1 = null AS b, null <> 1 AS c, NOT null AS d, "
        "null AND false AS e, null OR true AS f, null IN [1] AS g, 2 IN [1, null] AS h, "
        "1 IN [1, null] AS i, [1, null] = [1, null] AS j, 1 < 'a' AS k, null + 1 AS l, "
        "null AND true AS m, null XOR true AS n, null IS NULL AS o, 2 IN [] AS p, "
        "[1, 2] = [1, null] AS r, null STARTS WITH 'a' AS s",
    )
    assert rows == [{"a": None, "b": None, "c": None, "d": None, "e": False, "f": True,
                     "g": None, "h": None, "i": True, "j": None, "k": None, "l": None,
                     "m": None, "n": None, "o": True, "p": False, "r": None, "s": None}]
    rows = q(MemoryGraphView(), "RETURN 1 < 2 <= 2 AS a, 1 = 1.0 AS b, 'a' < 'b' AS c, "
                                "[1, 2] < [1, 3] AS d, true <> false AS e, 3 > 2 > 2 AS f")
    assert rows == [{"a": True, "b": True, "c": True, "d": True, "e": True, "f": False}]


def test_where_treats_null_as_false(g: MemoryGraphView) -> None:
    assert q(g, "MATCH (n:Person) WHERE n.age > null RETURN n") == []
    assert q(g, "MATCH (n:Person) WHERE null RETURN n") == []
    assert len(q(g, "MATCH (n:Person) WHERE NOT (n.age > null) IS NOT NULL RETURN n")) == 4


# ---- projections ----------------------------------------------------------------------------


def test_order_skip_limit(g: MemoryGraphView) -> None:
    base = "MATCH (n:Person) RETURN n.name AS name, n.age AS age "
    assert q(g, base + "ORDER BY age DESC, name LIMIT 3") == [
        {"name": "Dee", "age": None},  # null sorts first descending
        {"name": "Cy", "age": 41},
        {"name": "Ada", "age": 36},
    ]
    assert col(q(g, base + "ORDER BY age"), "name") == ["Bob", "Ada", "Cy", "Dee"]
    assert col(q(g, base + "ORDER BY name SKIP 1 LIMIT 2"), "name") == ["Bob", "Cy"]
    assert col(q(g, base + "ORDER BY name SKIP $s LIMIT $l", s=3, l=5), "name") == ["Dee"]
    assert q(g, base + "LIMIT 0") == []
    # ORDER BY an expression that is not projected, and by an alias
    assert col(q(g, "MATCH (n:Person) RETURN n.name AS x ORDER BY n.age DESC"), "x") == [
        "Dee", "Cy", "Ada", "Bob"
    ]
    assert col(q(g, "MATCH (n:Person) RETURN n.name AS x ORDER BY x DESC"), "x") == [
        "Dee", "Cy", "Bob", "Ada"
    ]
    assert col(q(g, "MATCH (n:Person) RETURN n.name ORDER BY size(n.name), n.name DESC"),
               "n.name") == ["Cy", "Dee", "Bob", "Ada"]


def test_order_by_mixed_types() -> None:
    rows = q(MemoryGraphView(), "UNWIND [2, 'b', null, true, [1], 1.5, {a: 1}, 'a'] AS x "
                                "RETURN x ORDER BY x")
    assert col(rows, "x") == [{"a": 1}, [1], "a", "b", True, 1.5, 2, None]


def test_distinct_and_star(g: MemoryGraphView) -> None:
    assert q(g, "MATCH (n)-[:WORKS_AT|LIKES]->(c) RETURN DISTINCT c.name") == [{"c.name": "Acme"}]
    assert q(g, "UNWIND [1, 1.0, 2, null, null] AS x RETURN DISTINCT x") == [
        {"x": 1}, {"x": 2}, {"x": None}
    ]
    rows = q(g, "MATCH (a {name: 'Ada'})-[r:WORKS_AT]->(c) RETURN *")
    assert list(rows[0]) == ["a", "c", "r"]
    assert rows[0]["c"] == Node(3, ["Company"], {"name": "Acme"})
    assert rows[0]["r"] == Relationship(2, "WORKS_AT", 0, 3, {"confidence": 1.0, "timestamp": 0.0})


def test_with(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (n:Person) WITH n.name AS name, n.age AS age WHERE age > 30 "
                "RETURN name ORDER BY name")
    assert col(rows, "name") == ["Ada", "Cy"]
    rows = q(g, "MATCH (n:Person) WHERE n.age IS NOT NULL WITH n ORDER BY n.age DESC LIMIT 1 "
                "RETURN n.name")
    assert rows == [{"n.name": "Cy"}]
    rows = q(g, "MATCH (p)-[:KNOWS]-(q) WITH p, count(q) AS c WHERE c >= 2 "
                "RETURN p.name AS p, c ORDER BY p")
    assert rows == [{"p": "Ada", "c": 2}, {"p": "Bob", "c": 2}, {"p": "Cy", "c": 2}]
    rows = q(g, "MATCH (n {name: 'Ada'}) WITH *, n.age * 2 AS twice RETURN n.name, twice")
    assert rows == [{"n.name": "Ada", "twice": 72}]
    rows = q(g, "MATCH (n)-[:WORKS_AT]->(c) WITH DISTINCT c RETURN c.name")
    assert rows == [{"c.name": "Acme"}]
    # variables not carried by WITH are gone
    with pytest.raises(CypherError, match="variable `n` not defined"):
        q(g, "MATCH (n) WITH n.name AS name RETURN n")


def test_unwind(g: MemoryGraphView) -> None:
    assert q(g, "UNWIND [1, 2, 3] AS x WITH x WHERE x > 1 RETURN collect(x) AS xs") == [
        {"xs": [2, 3]}
    ]
    assert q(g, "UNWIND [] AS x RETURN x") == []
    assert q(g, "UNWIND null AS x RETURN x") == []
    rows = q(g, "UNWIND $names AS name MATCH (n {name: name}) RETURN n.age AS age",
             names=["Bob", "Cy"])
    assert rows == [{"age": 25}, {"age": 41}]


# ---- functions --------------------------------------------------------------------------------


def test_graph_functions(g: MemoryGraphView) -> None:
    rows = q(
        g,
        "MATCH (a {name: 'Ada'})-[r:KNOWS]->(b) RETURN id(a) AS id, labels(a) AS labels, "
        "type(r) AS type, properties(r) AS props, keys(a) AS keys, startNode(r) = a AS s, "
        "endNode(r) = b AS e, properties(a) AS pa, id(r) AS rid",
    )
    assert rows == [{
        "id": 0,
        "labels": ["Person"],
        "type": "KNOWS",
        "props": {"since": 2010, "confidence": 0.9, "timestamp": 0.0},
        "keys": ["name", "age"],
        "s": True,
        "e": True,
        "pa": {"name": "Ada", "age": 36},
        "rid": 0,
    }]
    rows = q(g, "MATCH p = (a {name: 'Ada'})-[:WORKS_AT]->(c) "
                "RETURN length(p) AS l, size(nodes(p)) AS n, relationships(p)[0].confidence AS c")
    assert rows == [{"l": 1, "n": 2, "c": 1.0}]
    assert q(g, "MATCH (n:Person) WHERE exists(n.age) RETURN count(*) AS c") == [{"c": 3}]


def test_scalar_functions() -> None:
    rows = q(
        MemoryGraphView(),
        "RETURN coalesce(null, null, 3) AS c, size([1, 2]) AS s1, size('abc') AS s2, "
        "toString(12) AS t1, toString(1.5) AS t2, toString(true) AS t3, toInteger('42') AS i1, "
        "toInteger(3.9) AS i2, toInteger('x') AS i3, toFloat('2.5') AS f1, toFloat(2) AS f2, "
        "abs(-3) AS a1, abs(-2.5) AS a2, head([1, 2, 3]) AS h, last([1, 2, 3]) AS l, "
        "head([]) AS h0, coalesce(null) AS c0, toString(null) AS tn, exists(null) AS en, "
        "length('abcd') AS len, toInteger('-7') AS i4, toFloat('nope') AS f3",
    )
    assert rows == [{"c": 3, "s1": 2, "s2": 3, "t1": "12", "t2": "1.5", "t3": "true", "i1": 42,
                     "i2": 3, "i3": None, "f1": 2.5, "f2": 2.0, "a1": 3, "a2": 2.5, "h": 1,
                     "l": 3, "h0": None, "c0": None, "tn": None, "en": False, "len": 4,
                     "i4": -7, "f3": None}]
    rows = q(
        MemoryGraphView(),
        "RETURN reduce(acc = 0, x IN [1, 2, 3] | acc + x) AS s, "
        "reduce(s = '', w IN ['a', 'b'] | s + w) AS w, reduce(a = 1, x IN [] | a * x) AS e, "
        "[x IN [1, 2, 3, 4] WHERE x % 2 = 0 | x * x] AS sq, [x IN [1, 2] | x + 1] AS inc, "
        "[x IN [1, 2, 3] WHERE x > 1] AS f, all(x IN [1, 2] WHERE x > 0) AS al, "
        "none(x IN [1, 2] WHERE x > 1) AS no, single(x IN [1, 2] WHERE x > 1) AS si, "
        "range(1, 4) AS r, range(5, 1, -2) AS r2, toUpper('ab') AS up, trim('  x ') AS tr, "
        "replace('aXa', 'X', '-') AS rp, substring('hello', 1, 3) AS ss, split('a,b', ',') AS sp, "
        "reverse([1, 2]) AS rv, tail([1, 2, 3]) AS tl, round(2.5) AS ro, floor(-1.5) AS fl, "
        "sqrt(16) AS sq2, sign(-3) AS sg, left('hello', 2) AS le, right('hello', 2) AS ri",
    )
    assert rows == [{"s": 6, "w": "ab", "e": 1, "sq": [4, 16], "inc": [2, 3], "f": [2, 3],
                     "al": True, "no": False, "si": True, "r": [1, 2, 3, 4], "r2": [5, 3, 1],
                     "up": "AB", "tr": "x", "rp": "a-a", "ss": "ell", "sp": ["a", "b"],
                     "rv": [2, 1], "tl": [2, 3], "ro": 3.0, "fl": -2.0, "sq2": 4.0, "sg": -1,
                     "le": "he", "ri": "lo"}]
    rows = q(MemoryGraphView(), "RETURN CASE 2 WHEN 1 THEN 'one' WHEN 2 THEN 'two' END AS a, "
                                "CASE WHEN false THEN 1 ELSE 'else' END AS b, "
                                "CASE 3 WHEN 1 THEN 1 END AS c")
    assert rows == [{"a": "two", "b": "else", "c": None}]


# ---- aggregation -------------------------------------------------------------------------------


def test_aggregates(g: MemoryGraphView) -> None:
    rows = q(
        g,
        "MATCH (n:Person) RETURN count(*) AS c, count(n.age) AS ca, sum(n.age) AS s, "
        "avg(n.age) AS a, min(n.age) AS mn, max(n.age) AS mx, collect(n.name) AS names, "
        "min(n.name) AS first, max(n.name) AS last",
    )
    assert rows == [{"c": 4, "ca": 3, "s": 102, "a": 34.0, "mn": 25, "mx": 41,
                     "names": ["Ada", "Bob", "Cy", "Dee"], "first": "Ada", "last": "Dee"}]
    rows = q(g, "MATCH (p)-[:WORKS_AT|LIKES]->(c) RETURN count(c) AS n, count(DISTINCT c) AS d, "
                "collect(DISTINCT c.name) AS names")
    assert rows == [{"n": 4, "d": 1, "names": ["Acme"]}]
    rows = q(g, "UNWIND [1, 2.5, null, 2] AS x RETURN sum(x) AS s, avg(x) AS a, count(x) AS c, "
                "sum(DISTINCT x % 2) AS sd")
    assert rows == [{"s": 5.5, "a": 5.5 / 3, "c": 3, "sd": 1.5}]


def test_grouping(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (p)-[r]->(x) RETURN type(r) AS t, count(*) AS c ORDER BY t")
    assert rows == [{"t": "KNOWS", "c": 3}, {"t": "LIKES", "c": 2}, {"t": "WORKS_AT", "c": 2}]
    rows = q(g, "MATCH (p)-[r]->(x) RETURN type(r) AS t, count(*) AS c ORDER BY count(*) DESC, t")
    assert col(rows, "t") == ["KNOWS", "LIKES", "WORKS_AT"]
    rows = q(g, "MATCH (p:Person)-[:WORKS_AT|LIKES]->(c) RETURN c.name AS company, "
                "count(p) AS n, collect(p.name) AS who")
    assert rows == [{"company": "Acme", "n": 4, "who": ["Ada", "Bob", "Cy", "Dee"]}]
    rows = q(g, "MATCH (n:Person) RETURN n.age > 30 AS old, count(*) AS c ORDER BY c")
    assert rows == [{"old": False, "c": 1}, {"old": None, "c": 1}, {"old": True, "c": 2}]
    assert q(g, "MATCH (n:Person) RETURN count(*) * 10 + 1 AS x") == [{"x": 41}]
    assert q(g, "MATCH (n:Person) RETURN size(collect(n)) AS x") == [{"x": 4}]


def test_aggregates_on_empty_input(g: MemoryGraphView) -> None:
    rows = q(g, "MATCH (n:Nope) RETURN count(*) AS c, collect(n) AS l, sum(n.x) AS s, "
                "avg(n.x) AS a, max(n.x) AS m")
    assert rows == [{"c": 0, "l": [], "s": 0, "a": None, "m": None}]
    assert q(g, "MATCH (n:Nope) RETURN n.name, count(*)") == []


# ---- writes -------------------------------------------------------------------------------------


def test_create_nodes_and_relationships() -> None:
    g = MemoryGraphView(clock=lambda: 0.0)
    res = execute_stats(g, "CREATE (a:X:Y {n: 1, skip: null}) RETURN a")
    assert res.rows == [{"a": Node(0, ["X", "Y"], {"n": 1})}]
    assert res.columns == ["a"]
    assert (res.stats.nodes_created, res.stats.properties_set) == (1, 1)
    res = execute_stats(
        g, "CREATE p = (a:A {k: 1})-[:R {w: 2}]->(b:B)<-[:S]-(c:C) RETURN p, length(p) AS l"
    )
    st = res.stats
    assert (st.nodes_created, st.relationships_created, st.properties_set) == (3, 2, 2)
    p = res.rows[0]["p"]
    assert [n.labels for n in p.nodes] == [["A"], ["B"], ["C"]]
    assert [(r.type, r.start, r.end) for r in p.relationships] == [("R", 1, 2), ("S", 3, 2)]
    assert p.relationships[0].properties == {"w": 2, "confidence": 1.0, "timestamp": 0.0}
    assert res.rows[0]["l"] == 2
    assert g.edges() == {
        0: ("R", [1], [2], {"w": 2, "confidence": 1.0, "timestamp": 0.0}),
        1: ("S", [3], [2], {"confidence": 1.0, "timestamp": 0.0}),
    }
    # relationships may set the hyperedge confidence directly
    execute(g, "MATCH (a:A), (c:C) CREATE (a)-[:T {confidence: 0.25}]->(c)")
    assert q(g, "MATCH (:A)-[r:T]->(:C) RETURN r.confidence AS c") == [{"c": 0.25}]


def test_create_per_row_and_with_bound_nodes(g: MemoryGraphView) -> None:
    res = execute_stats(g, "MATCH (a {name: 'Ada'}), (b {name: 'Dee'}) "
                           "CREATE (a)-[r:KNOWS {since: 2024}]->(b) RETURN r")
    assert res.rows == [{"r": Relationship(6, "KNOWS", 0, 4,
                                           {"since": 2024, "confidence": 1.0, "timestamp": 0.0})}]
    assert (res.stats.nodes_created, res.stats.relationships_created) == (0, 1)
    res = execute_stats(g, "MATCH (n:Person) CREATE (n)-[:HAS]->(:Tag {of: n.name})")
    assert res.rows == []
    assert (res.stats.nodes_created, res.stats.relationships_created) == (4, 4)
    rows = q(g, "MATCH (n:Person)-[:HAS]->(t:Tag) RETURN n.name = t.of AS same, count(*) AS c")
    assert rows == [{"same": True, "c": 4}]
    res = execute_stats(g, "UNWIND range(1, 3) AS i CREATE (:Num {i: i})")
    assert res.stats.nodes_created == 3
    assert q(g, "MATCH (n:Num) RETURN sum(n.i) AS s") == [{"s": 6}]


def test_merge_node(g: MemoryGraphView) -> None:
    query = ("MERGE (n:Person {name: $name}) ON CREATE SET n.new = true "
             "ON MATCH SET n.seen = true RETURN n.new AS new, n.seen AS seen")
    res = execute_stats(g, query, {"name": "Ada"})
    assert res.rows == [{"new": None, "seen": True}]
    assert res.stats.nodes_created == 0
    res = execute_stats(g, query, {"name": "Eve"})
    assert res.rows == [{"new": True, "seen": None}]
    assert (res.stats.nodes_created, res.stats.properties_set) == (1, 2)
    res = execute_stats(g, query, {"name": "Eve"})
    assert res.rows == [{"new": True, "seen": True}]
    assert res.stats.nodes_created == 0
    assert q(g, "MATCH (n {name: 'Eve'}) RETURN labels(n) AS l") == [{"l": ["Person"]}]
    # one MERGE per row: later rows see the nodes created for earlier ones
    res = execute_stats(g, "UNWIND ['x', 'y', 'x'] AS k MERGE (t:Tag {k: k}) RETURN id(t) AS id")
    assert res.stats.nodes_created == 2
    assert res.rows[0] == res.rows[2]


def test_merge_relationship(g: MemoryGraphView) -> None:
    res = execute_stats(g, "MATCH (a {name: 'Ada'}), (b {name: 'Bob'}) "
                           "MERGE (a)-[r:KNOWS]->(b) RETURN id(r) AS id")
    assert res.rows == [{"id": 0}]
    assert res.stats.relationships_created == 0
    query = ("MATCH (a {name: 'Ada'}), (b {name: 'Bob'}) MERGE (a)-[r:FOLLOWS]->(b) "
             "ON CREATE SET r.n = 1 ON MATCH SET r.n = r.n + 1 RETURN r.n AS n")
    res = execute_stats(g, query)
    assert res.rows == [{"n": 1}]
    assert res.stats.relationships_created == 1
    assert q(g, query) == [{"n": 2}]
    res = execute_stats(g, "MATCH (a {name: 'Dee'}) MERGE (a)-[:OWNS]->(c:Car {make: 'VW'}) "
                           "RETURN c.make AS make")
    assert res.rows == [{"make": "VW"}]
    assert (res.stats.nodes_created, res.stats.relationships_created) == (1, 1)
    # an undirected MERGE matches either direction
    res = execute_stats(g, "MATCH (a {name: 'Bob'}), (b {name: 'Ada'}) MERGE (a)-[r:KNOWS]-(b) "
                           "RETURN id(r) AS id")
    assert res.rows == [{"id": 0}]
    with pytest.raises(CypherError, match="null property value for 'name'"):
        q(g, "MERGE (n:Person {name: null})")


def test_set_properties_and_labels(g: MemoryGraphView) -> None:
    res = execute_stats(g, "MATCH (n {name: 'Bob'}) SET n.age = n.age + 1, n.city = 'Oslo' "
                           "RETURN n.age AS age, n.city AS city")
    assert res.rows == [{"age": 26, "city": "Oslo"}]
    assert res.stats.properties_set == 2
    execute(g, "MATCH (n {name: 'Bob'}) SET n.city = null")
    assert q(g, "MATCH (n {name: 'Bob'}) RETURN keys(n) AS k") == [{"k": ["name", "age"]}]
    execute(g, "MATCH (n {name: 'Bob'}) SET n += {age: 30, tags: ['a', 'b']}")
    assert q(g, "MATCH (n {name: 'Bob'}) RETURN properties(n) AS p") == [
        {"p": {"name": "Bob", "age": 30, "tags": ["a", "b"]}}
    ]
    res = execute_stats(g, "MATCH (n {name: 'Bob'}) SET n = {name: 'Robert'} RETURN n")
    assert res.rows == [{"n": Node(1, ["Person"], {"name": "Robert"})}]
    assert res.stats.properties_set == 3  # age and tags removed, name set
    res = execute_stats(g, "MATCH (n {name: 'Robert'}) SET n:Admin:Vip RETURN labels(n) AS l")
    assert res.rows == [{"l": ["Person", "Admin", "Vip"]}]
    assert res.stats.labels_added == 2
    assert execute_stats(g, "MATCH (n {name: 'Robert'}) SET n:Admin").stats.labels_added == 0
    rows = q(g, "MATCH ()-[r:KNOWS {since: 2010}]->() SET r.weight = 3, r.confidence = 0.1 "
                "RETURN r.weight AS w, r.confidence AS c")
    assert rows == [{"w": 3, "c": 0.1}]
    assert g.relationship(0) == ("KNOWS", {"since": 2010, "confidence": 0.1, "timestamp": 0.0,
                                           "weight": 3})
    # SET copies all properties of another node
    execute(g, "MATCH (a {name: 'Dee'}), (b:Company) SET a += b")
    assert q(g, "MATCH (a:Person {name: 'Acme'}) RETURN id(a) AS id") == [{"id": 4}]


def test_set_on_optional_null_is_a_no_op(g: MemoryGraphView) -> None:
    res = execute_stats(g, "OPTIONAL MATCH (n:Nope) SET n.x = 1, n:L REMOVE n.y RETURN n")
    assert res.rows == [{"n": None}]
    assert not res.stats.contains_updates


def test_remove(g: MemoryGraphView) -> None:
    res = execute_stats(g, "MATCH (n {name: 'Cy'}) REMOVE n.age, n:Admin RETURN n")
    assert res.rows == [{"n": Node(2, ["Person"], {"name": "Cy"})}]
    assert (res.stats.properties_set, res.stats.labels_removed) == (1, 1)
    res = execute_stats(g, "MATCH (n {name: 'Cy'}) REMOVE n.age, n:Admin")
    assert not res.stats.contains_updates
    execute(g, "MATCH ()-[r:KNOWS {since: 2015}]->() REMOVE r.since")
    assert q(g, "MATCH ()-[r:KNOWS]->() RETURN r.since AS s ORDER BY s") == [
        {"s": 2010}, {"s": 2020}, {"s": None}
    ]


def test_delete(g: MemoryGraphView) -> None:
    res = execute_stats(g, "MATCH ()-[r:WORKS_AT]->() DELETE r")
    assert res.stats.relationships_deleted == 2
    assert q(g, "MATCH ()-[r:WORKS_AT]->() RETURN count(r) AS c") == [{"c": 0}]
    with pytest.raises(CypherError) as ei:
        q(g, "MATCH (n {name: 'Bob'}) DELETE n")
    assert ei.value.message == (
        "cannot delete node 1: it still has relationships; use DETACH DELETE"
    )
    assert q(g, "MATCH (n {name: 'Bob'}) RETURN count(n) AS c") == [{"c": 1}]  # nothing deleted
    res = execute_stats(g, "MATCH (n {name: 'Bob'}) DETACH DELETE n")
    assert (res.stats.nodes_deleted, res.stats.relationships_deleted) == (1, 3)
    assert q(g, "MATCH (n:Person) RETURN n.name AS n ORDER BY n") == [
        {"n": "Ada"}, {"n": "Cy"}, {"n": "Dee"}
    ]
    # the whole LIKES hyperedge went with Bob, so Dee is now free of relationships
    res = execute_stats(g, "MATCH (n {name: 'Dee'}) DELETE n")
    assert res.stats.nodes_deleted == 1
    # deleting a node and its relationships in one clause needs no DETACH
    res = execute_stats(g, "MATCH (n {name: 'Cy'})-[r]-() DELETE r, n")
    assert (res.stats.nodes_deleted, res.stats.relationships_deleted) == (1, 1)
    g2 = people()
    res = execute_stats(g2, "MATCH p = (:Person {name: 'Ada'})-[:KNOWS]->() DETACH DELETE p")
    assert (res.stats.nodes_deleted, res.stats.relationships_deleted) == (2, 5)
    assert q(g2, "MATCH (n) RETURN n.name AS n ORDER BY n") == [
        {"n": "Acme"}, {"n": "Cy"}, {"n": "Dee"}
    ]
    assert q(people(), "MATCH (n) DETACH DELETE n RETURN count(*) AS c") == [{"c": 5}]


def test_write_then_read_in_one_query() -> None:
    g = MemoryGraphView(clock=lambda: 0.0)
    rows = q(g, "CREATE (a:P {n: 1}), (b:P {n: 2}) WITH a, b MATCH (x:P) RETURN count(x) AS c")
    assert rows == [{"c": 2}]  # one row (a, b) from CREATE, matched with two nodes
    rows = q(g, "MATCH (x:P) WITH x ORDER BY x.n SET x.rank = x.n * 10 RETURN collect(x.rank) AS r")
    assert rows == [{"r": [10, 20]}]


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "line", "column", "message"),
    [
        ("MATCH (a:Person WHERE a.x = 1) RETURN a", 1, 17, "expected ')' but found 'WHERE'"),
        ("MATCH (n)\nRETURN n.name AS", 2, 17, "expected an alias but found end of input"),
        ("MATCH (n) RETURN n ORDER n", 1, 26, "expected BY but found 'n'"),
        ("MATCH (n)-[r:KNOWS->(m) RETURN n", 1, 19, "expected ']' but found '-'"),
        ("RETURN 'unterminated", 1, 8, "unterminated string literal"),
        ("RETURN 1 +", 1, 11, "expected an expression but found end of input"),
        ("MATCH (n) WHERE n.x = 1 2 RETURN n", 1, 25, "expected a clause"),
        ("RETURN #", 1, 8, "unexpected character '#'"),
        ("RETURN 1 /* never closed", 1, 10, "unterminated comment"),
        ("MATCH (n)", 1, 1, "query cannot end with MATCH"),
        ("RETURN 1 RETURN 2", 1, 1, "RETURN must be the last clause"),
        ("MATCH (n) RETURN n.", 1, 20, "expected a property name but found end of input"),
        ("  \n\n   MATCH (n) RETURN [1, 2", 3, 26, "expected ']' but found end of input"),
        ("MATCH (n) RETURN {a 1}", 1, 21, "expected ':' but found '1'"),
        ("", 1, 1, "empty query"),
        ("RETURN 9223372036854775808", 1, 8, "integer literal out of range"),
        ("RETURN 12abc", 1, 8, "invalid number literal"),
        ("RETURN $", 1, 8, "expected a parameter name"),
        ("MATCH (n) RETURN n.x IS 5", 1, 25, "expected NULL but found '5'"),
        ("RETURN CASE END", 1, 13, "expected WHEN but found 'END'"),
        ("MATCH (n) SET n", 1, 16, "expected '=', '+=', '.' or ':' in SET"),
        ("WITH 1 AS x", 1, 1, "query cannot end with WITH"),
    ],
)
def test_syntax_errors(query: str, line: int, column: int, message: str) -> None:
    with pytest.raises(CypherSyntaxError) as ei:
        parse(query)
    assert (ei.value.line, ei.value.column) == (line, column), str(ei.value)
    assert message in ei.value.message
    assert str(ei.value).startswith(f"line {line}, column {column}: ")


@pytest.mark.parametrize(
    ("query", "what"),
    [
        ("CALL db.labels()", "CALL"),
        ("MATCH (n) FOREACH (x IN [1] | SET n.x = x)", "FOREACH"),
        ("MATCH (n) RETURN n UNION MATCH (m) RETURN m", "UNION"),
        ("MATCH p = shortestPath((a)-[*]-(b)) RETURN p", "shortestPath"),
        ("MATCH (n) RETURN [(n)-->(m) | m.name]", "pattern comprehensions"),
        ("MATCH (n) RETURN n {.name}", "map projections"),
        ("MATCH (n) RETURN n; MATCH (m) RETURN m", "multiple statements"),
        ("RETURN apoc.coll.sum([1])", "namespaced functions"),
        ("MERGE (a)-[:R]->(b)-[:R]->(c)", "MERGE of a pattern with more than one"),
        ("LOAD CSV FROM 'x' AS l RETURN l", "LOAD CSV"),
        ("MATCH (n) USING INDEX n:Person(name) RETURN n", "USING"),
        ("CREATE INDEX FOR (n:Person) ON (n.name)", "CREATE INDEX"),
        ("MATCH (n) WHERE EXISTS { MATCH (n)-->() } RETURN n", "EXISTS subqueries"),
        ("MATCH (n:A|B) RETURN n", "label expressions"),
    ],
)
def test_unsupported_syntax(query: str, what: str) -> None:
    with pytest.raises(CypherSyntaxError) as ei:
        execute(MemoryGraphView(), query)
    assert ei.value.message.startswith("unsupported: ")
    assert what in ei.value.message
    assert ei.value.line is not None and ei.value.column is not None


@pytest.mark.parametrize(
    ("query", "message", "column"),
    [
        ("MATCH (n) RETURN m", "variable `m` not defined", 18),
        ("RETURN $outcomeId", "missing parameter $outcomeId", 8),
        ("MATCH (n) WHERE n.id = $x RETURN n", "missing parameter $x", 24),
        ("RETURN nosuch(1)", "unknown function 'nosuch'", 8),
        ("RETURN size(1, 2)", "size() takes 1 argument(s), got 2", 8),
        ("RETURN 1 + true", "cannot add Integer and Boolean", 8),
        ("RETURN 'a' * 2", "cannot multiply String and Integer", 8),
        ("RETURN 1 / 0", "division by zero", 8),
        ("RETURN 9223372036854775807 + 1", "integer overflow", 8),
        ("MATCH (n) WHERE count(n) > 1 RETURN n", "aggregate function count() is not allowed", 17),
        ("RETURN count(count(1))", "aggregate functions cannot be nested", 14),
        ("MATCH (n) WITH n.name RETURN 1", "must be aliased", 16),
        ("RETURN 1 AS a, 2 AS a", "column name `a` appears more than once", 16),
        ("RETURN 1 LIMIT -1", "LIMIT must be a non-negative integer", 16),
        ("MATCH (n) RETURN n LIMIT n.x", "LIMIT must not refer to variables", 26),
        ("MATCH (n:Person) WHERE n.name RETURN n", "WHERE expects a boolean, got String", 24),
        ("MATCH (n:Person) RETURN n.name.x", "cannot read property 'x' of a String", 25),
        ("RETURN 1 IN 2", "IN expects a list", 8),
        ("MATCH (a)-[r]->(b), (c)-[r]->(d) RETURN r", "used more than once", 24),
        ("MATCH (a)-[a]->(b) RETURN a", "not a relationship", 10),
        ("MATCH p = (a) MATCH p = (b) RETURN p", "already declared", 21),
        ("CREATE (a)-[:R]-(b)", "must have a direction", 11),
        ("CREATE (a)-[:R|S]->(b)", "needs exactly one type", 11),
        ("MATCH (a:Person) CREATE (a:Other)", "already declared", 25),
        ("CREATE (n {m: {a: 1}})", "property values must be", 8),
        ("UNWIND [1] AS x RETURN x.y", "cannot read property 'y' of a Integer", 24),
        ("RETURN toInteger([1])", "toInteger() cannot convert a List", 8),
        ("RETURN [1][1.5]", "list index must be an Integer", 8),
        ("MATCH (n) RETURN n ORDER BY count(*)", "aggregate in ORDER BY", 29),
        ("RETURN NOT 1", "NOT expects boolean operands", 8),
        ("RETURN 'x' =~ '('", "invalid regular expression", 8),
        ("RETURN reduce(s = 0, x IN 5 | s)", "expected a List to iterate over", 8),
    ],
)
def test_semantic_and_runtime_errors(query: str, message: str, column: int) -> None:
    g = people()
    with pytest.raises(CypherError) as ei:
        execute(g, query)
    assert message in ei.value.message, str(ei.value)
    assert (ei.value.line, ei.value.column) == (1, column), str(ei.value)


def test_missing_parameter_is_reported_even_without_rows() -> None:
    with pytest.raises(CypherError, match=r"missing parameter \$outcomeId"):
        execute(MemoryGraphView(), Q1, {})


def test_deep_nesting_is_a_syntax_error() -> None:
    for depth in (500, 5000):
        for opener, closer in (("(", ")"), ("[", "]"), ("size(", ")")):
            query = "RETURN " + opener * depth + "1" + closer * depth
            with pytest.raises(CypherSyntaxError, match="nested too deeply"):
                parse(query)
    with pytest.raises(CypherSyntaxError, match="nested too deeply"):
        parse("RETURN " + "-" * 1000 + "1")
    with pytest.raises(CypherSyntaxError, match="nested too deeply"):
        parse("RETURN {a: 1}" + ".a" * 1000)
    # moderately deep queries still work
    assert execute(MemoryGraphView(), "RETURN " + "(" * 150 + "1" + ")" * 150 + " AS x") == [
        {"x": 1}
    ]
    assert execute(MemoryGraphView(), "RETURN " + " + ".join(["1"] * 3000) + " AS x") == [
        {"x": 3000}
    ]


def test_errors_are_cypher_errors_with_positions_on_multiple_lines() -> None:
    query = "MATCH (n)\nWHERE n.x =\n  RETURN n"
    with pytest.raises(CypherSyntaxError) as ei:
        parse(query)
    assert (ei.value.line, ei.value.column) == (3, 3)
    assert str(ei.value) == "line 3, column 3: expected an expression but found 'RETURN'"


# ---- the GraphView protocol and MemoryGraphView ---------------------------------------------


def test_memory_graph_view_is_a_graph_view(g: MemoryGraphView) -> None:
    assert isinstance(g, GraphView)
    assert sorted(g.expand(1, "both", None)) == [(0, 0, 1), (1, 1, 2), (5, 1, 3)]
    assert list(g.expand(1, "in", ["KNOWS"])) == [(0, 0, 1)]
    paths = list(g.var_paths(0, 1, 3, "out", ["KNOWS"]))
    assert paths == [
        ([0, 1], [(0, 0, 1)]),
        ([0, 1, 2], [(0, 0, 1), (1, 1, 2)]),
        ([0, 1, 2, 0], [(0, 0, 1), (1, 1, 2), (4, 2, 0)]),
    ]
    assert list(g.var_paths(0, 0, 3, "out", ["KNOWS"], dst=2)) == [
        ([0, 1, 2], [(0, 0, 1), (1, 1, 2)])
    ]
    assert list(g.var_paths(0, 0, 0, "both", None)) == [([0], [])]
    assert list(g.find_nodes("Person", {"age": 25})) == [1]
    assert list(g.find_nodes(None, {"name": "Acme"})) == [3]
    g.create_index("Person", "age")
    g.set_node_property(1, "age", 26)
    assert list(g.find_nodes("Person", {"age": 25})) == []
    assert list(g.find_nodes("Person", {"age": 26})) == [1]
    g.remove_label(1, "Person")
    assert list(g.find_nodes("Person", {"age": 26})) == []
    with pytest.raises(KeyError):
        g.node(99)
    with pytest.raises(CypherError, match="use DETACH DELETE"):
        g.delete_node(0, False)


def test_find_nodes_keeps_booleans_apart_from_numbers() -> None:
    g = MemoryGraphView()
    g.add_node(["A"], {"x": True})
    g.add_node(["A"], {"x": 1})
    g.create_index("A", "x")
    assert list(g.find_nodes("A", {"x": 1})) == [1]
    assert list(g.find_nodes("A", {"x": True})) == [0]
    assert q(g, "MATCH (n:A {x: 1}) RETURN id(n) AS id") == [{"id": 1}]
    assert q(g, "MATCH (n:A) WHERE n.x = true RETURN id(n) AS id") == [{"id": 0}]


# ---- planner ---------------------------------------------------------------------------------


def test_planner_anchors_q1_on_outcome_and_walks_backwards() -> None:
    g, ids = causal(RecordingGraph())
    assert isinstance(g, RecordingGraph)
    g.create_index("Event", "id")
    q(g, Q1, outcomeId="o1")
    assert g.named("var_paths") == [("var_paths", ids["o1"], 1, 5, "in", ["CAUSED_BY"], None)]
    assert g.named("find_nodes") == [("find_nodes", "Event", {"id": "o1"})]
    assert g.named("node_ids") == []
    # without an index the inline property equality still wins over WHERE root.type = ...
    g2, ids2 = causal(RecordingGraph())
    assert isinstance(g2, RecordingGraph)
    q(g2, Q1, outcomeId="o1")
    assert [c[1] for c in g2.named("var_paths")] == [ids2["o1"]]


def test_planner_prefers_indexed_equality() -> None:
    g, ids = causal(RecordingGraph())
    assert isinstance(g, RecordingGraph)
    g.create_index("Event", "type")
    # root.type is indexed, outcome.id is not: anchor on root, walk forwards with dst unknown
    q(g, Q1, outcomeId="o1")
    assert g.named("find_nodes")[0] == ("find_nodes", "Event", {"type": "root_cause"})
    assert {c[4] for c in g.named("var_paths")} == {"out"}


def test_planner_where_equality_bound_variables_and_pushdown() -> None:
    g, ids = causal(RecordingGraph())
    assert isinstance(g, RecordingGraph)
    rows = q(g, "MATCH (a:Event)-[:CAUSED_BY]->(b) WHERE b.id = $x RETURN a.id AS a ORDER BY a",
             x="m1")
    assert rows == [{"a": "root1"}]
    assert g.named("find_nodes") == [("find_nodes", None, {"id": "m1"})]
    assert g.named("expand") == [("expand", ids["m1"], "in", ["CAUSED_BY"])]
    g.calls.clear()
    q(g, "MATCH (o {id: 'o2'}) MATCH (x)-[:CAUSED_BY]->(o) RETURN x")
    assert g.named("expand") == [("expand", ids["o2"], "in", ["CAUSED_BY"])]
    assert g.named("node_ids") == []
    g.calls.clear()
    rows = q(g, "MATCH (a)-[:CAUSED_BY]->(b) WHERE id(a) = $id RETURN b.id AS b", id=ids["root1"])
    assert rows == [{"b": "m1"}, {"b": "o2"}]
    assert g.named("node_ids") == [] and g.named("find_nodes") == []
    g.calls.clear()
    # Q2: only root causes are expanded (the WHERE conjunct is checked right after the anchor)
    q(g, Q2, type1="root_cause", type2="mid")
    first_hops = {c[1] for c in g.named("expand") if c[2] == "out"}
    roots = {ids[k] for k in ("root1", "root2", "root3", "root4", "root5")}
    mids = {ids[k] for k in ("m1", "m2", "m3", "m4", "m5")}
    assert first_hops <= roots | mids


# ---- the reference queries -----------------------------------------------------------------


def test_reference_query_1() -> None:
    g, ids = causal()
    rows = q(g, Q1, outcomeId="o1")
    got = [
        ([n.properties["id"] for n in r["path"].nodes], r["depth"], r["chain_confidence"])
        for r in rows
    ]
    expected = [
        (["root1", "m1", "o1"], 2, 0.9 * 0.8),
        (["root5", "o1"], 1, 0.7),
        (["root1", "m1", "o1"], 2, 0.9 * 0.7),  # through the hyperedge {root5, m1} -> {o1}
        (["root3", "m2", "m3", "m4", "m5", "o1"], 5, 0.9**5),
        (["root2", "o1"], 1, 0.5),
        (["root1", "m1", "o1", "root2", "o1"], 4, 0.9 * 0.8 * 0.1 * 0.5),
        (["root5", "o1", "root2", "o1"], 3, 0.7 * 0.1 * 0.5),
        (["root1", "m1", "o1", "root2", "o1"], 4, 0.9 * 0.7 * 0.1 * 0.5),
    ]
    assert [(p, d) for p, d, _ in got] == [(p, d) for p, d, _ in expected]
    assert [c for _, _, c in got] == pytest.approx([c for _, _, c in expected])
    first = rows[0]["path"]
    assert isinstance(first, Path)
    assert first.nodes[0] == Node(ids["root1"], ["Event"], {"id": "root1", "type": "root_cause"})
    assert [(r.type, r.start, r.end) for r in first.relationships] == [
        ("CAUSED_BY", ids["root1"], ids["m1"]),
        ("CAUSED_BY", ids["m1"], ids["o1"]),
    ]
    assert first.relationships[1].properties == {"confidence": 0.8, "timestamp": 0.0}
    # every path runs forwards: each relationship starts where the previous one ended
    for r in rows:
        p = r["path"]
        assert len(p.nodes) == len(p.relationships) + 1 == r["depth"] + 1
        for i, rel in enumerate(p.relationships):
            assert (rel.start, rel.end) == (p.nodes[i].id, p.nodes[i + 1].id)
    assert q(g, Q1, outcomeId="o2") == [{
        "path": Path(
            [Node(ids["root1"], ["Event"], {"id": "root1", "type": "root_cause"}),
             Node(ids["o2"], ["Event"], {"id": "o2", "type": "outcome"})],
            [Relationship(18, "CAUSED_BY", ids["root1"], ids["o2"],
                          {"confidence": 0.9, "timestamp": 0.0})],
        ),
        "depth": 1,
        "chain_confidence": 0.9,
    }]
    assert q(g, Q1, outcomeId="nope") == []
    g.create_index("Event", "id")
    assert q(g, Q1, outcomeId="o1") == rows
    assert len(q(g, Q1.replace("LIMIT 10", "LIMIT 3"), outcomeId="o1")) == 3


def test_reference_query_2() -> None:
    g, ids = causal()
    rows = q(g, Q2, type1="root_cause", type2="mid")
    got = sorted(
        (r["a"].properties["id"], r["b"].properties["id"], r["c"].properties["id"]) for r in rows
    )
    # root1 -> m1 -> o1 twice: through the binary edge and through the hyperedge
    assert got == [("root1", "m1", "o1"), ("root1", "m1", "o1"), ("root3", "m2", "m3")]
    assert all(isinstance(r["a"], Node) for r in rows)
    assert rows[0]["b"] == Node(ids["m1"], ["Event"], {"id": "m1", "type": "mid"})
    assert q(g, Q2, type1="mid", type2="mid") == q(
        g,
        "MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
        "WHERE a.type = 'mid' AND b.type = 'mid' RETURN a, b, c",
    )
    assert len(q(g, Q2, type1="mid", type2="mid")) == 3  # m2->m3->m4, m3->m4->m5, m4->m5->o1
    assert q(g, Q2, type1="outcome", type2="root_cause") == [{
        "a": Node(ids["o1"], ["Event"], {"id": "o1", "type": "outcome"}),
        "b": Node(ids["root2"], ["Event"], {"id": "root2", "type": "root_cause"}),
        "c": Node(ids["o1"], ["Event"], {"id": "o1", "type": "outcome"}),
    }]


def _big_graph(n: int, seed: int) -> MemoryGraphView:
    rnd = random.Random(seed)
    g = MemoryGraphView(clock=lambda: 0.0)
    types = ["root_cause", "mid", "symptom"]
    for i in range(n):
        g.add_node(["Event"], {"id": f"e{i}", "type": rnd.choice(types)})
    for i in range(1, n):
        for _ in range(2):
            j = rnd.randrange(max(0, i - 40), i)
            g.add_edge("CAUSED_BY", [j], [i], confidence=round(rnd.random(), 3))
    for _ in range(n // 10):  # some hyperedges
        tail = rnd.sample(range(n // 2), 2)
        head = rnd.sample(range(n // 2, n), 2)
        g.add_edge("CAUSED_BY", tail, head, confidence=round(rnd.random(), 3))
    return g


def _brute_q1(g: MemoryGraphView, outcome: int) -> list[tuple[list[int], float]]:
    rels = [(eid, t, h) for eid, (typ, tail, head, _) in g.edges().items() if typ == "CAUSED_BY"
            for t in tail for h in head]
    conf = {eid: p["confidence"] for eid, (_, _, _, p) in g.edges().items()}
    into: dict[int, list[tuple[int, int, int]]] = {}
    for r in rels:
        into.setdefault(r[2], []).append(r)
    out: list[tuple[list[int], float]] = []

    def walk(nodes: list[int], used: list[tuple[int, int, int]]) -> None:
        if used and g.node(nodes[0])[1].get("type") == "root_cause":
            c = 1.0
            for r in reversed(used):
                c *= conf[r[0]]
            out.append((list(nodes), c))
        if len(used) == 5:
            return
        for r in into.get(nodes[0], []):
            if r not in used:
                walk([r[1]] + nodes, used + [r])

    walk([outcome], [])
    return out


def test_reference_queries_on_thousands_of_nodes() -> None:
    g = _big_graph(4000, seed=7)
    g.create_index("Event", "id")
    for target in (3999, 2500, 120):
        rows = q(g, Q1, outcomeId=f"e{target}")
        want = sorted(_brute_q1(g, target), key=lambda pc: -pc[1])[:10]
        assert [r["chain_confidence"] for r in rows] == pytest.approx([c for _, c in want])
        assert all(r["path"].nodes[-1].id == target for r in rows)
        assert all(r["path"].nodes[0].properties["type"] == "root_cause" for r in rows)
        assert [r["depth"] for r in rows] == [len(r["path"].relationships) for r in rows]
    rows = q(g, Q2, type1="root_cause", type2="mid")
    typ = {nid: g.node(nid)[1]["type"] for nid in g.node_ids()}
    pairs = [(t_, h) for _, (_, tail, head, _) in g.edges().items() for t_ in tail for h in head]
    outs: dict[int, list[int]] = {}
    for a, b in pairs:
        outs.setdefault(a, []).append(b)
    expected = sum(
        len(outs.get(b, []))
        for a, b in pairs
        if typ[a] == "root_cause" and typ[b] == "mid"
    )
    assert len(rows) == expected > 100
    # and the same without any index
    g2 = _big_graph(4000, seed=7)
    assert len(q(g2, Q1, outcomeId="e3999")) == len(q(g, Q1, outcomeId="e3999"))


# ---- API details -------------------------------------------------------------------------------


def test_result_object_and_parameters() -> None:
    import numpy as np

    g = people()
    res = execute_stats(g, "MATCH (n:Person) WHERE n.age IN $ages RETURN n.name AS name, "
                           "$vec AS v, $t AS t ORDER BY name",
                        {"ages": np.array([25, 41]), "vec": np.float32(0.5), "t": (1, "a")})
    assert res.columns == ["name", "v", "t"]
    assert len(res) == 2
    assert [r["name"] for r in res] == ["Bob", "Cy"]
    assert res.rows[0]["v"] == 0.5 and res.rows[0]["t"] == [1, "a"]
    assert not res.stats.contains_updates
    # nodes from an earlier result can be passed back as parameters
    bob = res.rows[0]
    node = q(g, "MATCH (n {name: 'Bob'}) RETURN n")[0]["n"]
    assert q(g, "MATCH (n)-[:KNOWS]->(m) WHERE n = $node RETURN m.name", node=node) == [
        {"m.name": "Cy"}
    ]
    assert bob["name"] == "Bob"
    assert q(g, "MATCH (n) WHERE id(n) = 1.0 RETURN n.name") == [{"n.name": "Bob"}]
    with pytest.raises(CypherError, match="64 bits"):
        q(g, "CREATE (n {x: $v})", v=2**70)
    with pytest.raises(CypherError, match="unsupported parameter value"):
        q(g, "RETURN $v", v=object())
    assert execute(g, "MATCH (n:Person) SET n.x = 1") == []


class ListGraph:
    """A GraphView written from scratch around a MemoryGraphView, returning plain lists."""

    def __init__(self, inner: MemoryGraphView) -> None:
        self.inner = inner

    def node_ids(self, label: str | None = None) -> list[int]:
        return list(self.inner.node_ids(label))

    def find_nodes(self, label: str | None, props: dict[str, Any]) -> list[int]:
        return list(self.inner.find_nodes(label, props))

    def has_index(self, label: str, prop: str) -> bool:
        return False

    def node(self, nid: int) -> tuple[list[str], dict[str, Any]]:
        return self.inner.node(nid)

    def expand(self, nid: int, direction: str, types: list[str] | None) -> list[list[int]]:
        return [list(t) for t in self.inner.expand(nid, direction, types)]

    def relationship(self, edge_id: int) -> tuple[str, dict[str, Any]]:
        return self.inner.relationship(edge_id)

    def var_paths(self, src: int, min_hops: int, max_hops: int, direction: str,
                  types: list[str] | None, dst: int | None = None) -> list[Any]:
        return [
            (list(ns), [list(r) for r in rs])
            for ns, rs in self.inner.var_paths(src, min_hops, max_hops, direction, types, dst)
        ]

    def create_node(self, labels: list[str], props: dict[str, Any]) -> int:
        return self.inner.create_node(labels, props)

    def create_relationship(self, type: str, start: int, end: int, props: dict[str, Any]) -> int:
        return self.inner.create_relationship(type, start, end, props)

    def set_node_property(self, nid: int, key: str, value: Any) -> None:
        self.inner.set_node_property(nid, key, value)

    def set_relationship_property(self, eid: int, key: str, value: Any) -> None:
        self.inner.set_relationship_property(eid, key, value)

    def add_label(self, nid: int, label: str) -> None:
        self.inner.add_label(nid, label)

    def remove_label(self, nid: int, label: str) -> None:
        self.inner.remove_label(nid, label)

    def delete_node(self, nid: int, detach: bool) -> None:
        self.inner.delete_node(nid, detach)

    def delete_relationship(self, eid: int) -> None:
        self.inner.delete_relationship(eid)


def test_any_graph_view_implementation_works() -> None:
    inner, ids = causal()
    g = ListGraph(inner)
    assert isinstance(g, GraphView)
    assert q(g, Q1, outcomeId="o1") == q(inner, Q1, outcomeId="o1")
    assert q(g, Q2, type1="root_cause", type2="mid") == q(inner, Q2, type1="root_cause",
                                                          type2="mid")
    rows = q(g, "MATCH (a {id: 'root1'})-[r:CAUSED_BY]->(b) RETURN b.id AS b ORDER BY b")
    assert rows == [{"b": "m1"}, {"b": "o2"}]
    res = execute_stats(g, "MATCH (a {id: 'root1'}) CREATE (a)-[:CAUSED_BY]->(:Event {id: 'n'}) "
                           "WITH a MATCH (a)-->(b) RETURN count(b) AS c")
    assert res.rows == [{"c": 3}]
    assert execute_stats(g, "MATCH (n {id: 'n'}) DETACH DELETE n").stats.relationships_deleted == 1
