"""Property-based tests of the Cypher engine (hypothesis).

1. Random strings never crash the engine: parsing/executing them either works or raises
   CypherError (CypherSyntaxError included) -- never another exception, never a RecursionError,
   and always quickly.
2. Random token-level mutations of valid queries (delete / insert / swap / duplicate tokens)
   behave the same way.
3. Random *valid* queries generated from a small grammar parse, and execute on random small
   hypergraphs without any non-Cypher exception.
4. Oracles: relationship and variable-length path counts agree with brute force on random
   hypergraphs, whichever end of the pattern the planner anchors on.
"""

from __future__ import annotations

from typing import Any

import pytest
from agentdb.graph.cypher import CypherError, CypherSyntaxError, MemoryGraphView, execute, parse
from agentdb.graph.cypher.lexer import tokenize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

PARAMS: dict[str, Any] = {
    "outcomeId": "o",
    "type1": "root_cause",
    "type2": "mid",
    "name": "Ada",
    "min": 1,
    "names": ["Ada", "Bob"],
    "props": {"name": "Bob"},
    "x": 1,
}


def small_graph() -> MemoryGraphView:
    g = MemoryGraphView(clock=lambda: 0.0)
    ada = g.add_node(
        ["Person", "Event"], {"name": "Ada", "age": 36, "id": "a", "type": "root_cause"}
    )
    bob = g.add_node(["Person", "Event"], {"name": "Bob", "age": 25, "id": "b", "type": "mid"})
    cy = g.add_node(["Event"], {"name": "Cy", "id": "o", "type": "outcome"})
    acme = g.add_node(["Company"], {"name": "Acme", "tags": ["x", "y"]})
    g.add_edge("KNOWS", [ada], [bob], confidence=0.9, props={"since": 2010})
    g.add_edge("CAUSED_BY", [ada], [bob], confidence=0.8)
    g.add_edge("CAUSED_BY", [bob], [cy], confidence=0.5)
    g.add_edge("CAUSED_BY", [cy], [ada], confidence=0.4)
    g.add_edge("LIKES", [bob, cy], [acme, cy], confidence=0.6)
    return g


def run_safely(query: str, graph: MemoryGraphView | None = None) -> Exception | None:
    """Execute; return the CypherError raised (or None); fail on any other exception."""
    g = graph if graph is not None else small_graph()
    try:
        parse(query)
    except CypherError:
        pass
    try:
        execute(g, query, PARAMS)
        outcome: Exception | None = None
    except CypherError as exc:
        assert str(exc)
        if exc.line is not None:
            assert exc.line >= 1 and exc.column is not None and exc.column >= 1
        outcome = exc
    return outcome


# ---- 1. random strings ---------------------------------------------------------------------

CYPHERISH = st.lists(
    st.sampled_from(
        list("()[]{}-<>:*.,=+'\"`$|/%^;!~ \n0123456789abcnrxyzAMTCHRUNWE_")
        + ["MATCH ", "RETURN ", "WHERE ", " AND ", " OR ", "NOT ", "WITH ", "CREATE ",
           "DELETE ", "SET ", " IN ", " AS ", "count(", "/*", "*/", "//", "..", "->", "<-",
           "null", "true", "'a'", "OPTIONAL ", "MERGE ", "UNWIND ", "ORDER BY ", "LIMIT "]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=250, **SETTINGS)
@given(st.one_of(st.text(max_size=120), CYPHERISH))
def test_random_strings_only_raise_cypher_errors(text: str) -> None:
    run_safely(text)


@settings(max_examples=60, **SETTINGS)
@given(
    st.sampled_from(["(", "[", "{a:", "-", "NOT ", "size(", "[x IN ", "CASE WHEN ", "exists(",
                     "reduce(s = 0, x IN "]),
    st.integers(201, 3000),
)
def test_deep_nesting_never_overflows_the_stack(opener: str, depth: int) -> None:
    for query in ("RETURN " + opener * depth + "1", "MATCH (n) WHERE " + opener * depth):
        err = run_safely(query)
        assert isinstance(err, CypherSyntaxError)


# ---- 2. mutations of valid queries ---------------------------------------------------------

VALID = [
    "MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId}) "
    "WHERE root.type = 'root_cause' RETURN path, length(path) as depth, "
    "reduce(conf = 1.0, r in relationships(path) | conf * r.confidence) as chain_confidence "
    "ORDER BY chain_confidence DESC LIMIT 10",
    "MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
    "WHERE a.type = $type1 AND b.type = $type2 RETURN a, b, c",
    "MATCH (n:Person) WHERE n.age > $min AND n.name IN $names RETURN n.name AS n ORDER BY n",
    "MATCH (a)-[r:KNOWS|LIKES]->(b) RETURN type(r), count(*) AS c ORDER BY c DESC SKIP 0 LIMIT 5",
    "MATCH (p:Person) OPTIONAL MATCH (p)-[:LIKES]->(c) RETURN p.name, collect(c.name) AS cs",
    "MATCH (a), (b) WHERE id(a) < id(b) RETURN DISTINCT a.name, b.name",
    "MATCH p = (a)-[*0..2]-(b) RETURN nodes(p), relationships(p), length(p)",
    "MATCH (n) WITH n.name AS name, n.age AS age WHERE age IS NOT NULL RETURN name, age * 2",
    "UNWIND [1, 2, 3] AS x WITH x WHERE x % 2 = 1 RETURN sum(x), avg(x), min(x), max(x)",
    "RETURN [x IN [1, 2, 3] WHERE x > 1 | x * 10] AS l, CASE WHEN 1 < 2 THEN 'y' END AS c",
    "RETURN coalesce(null, 1), toString(1.5), toInteger('7'), size('abc'), abs(-1), keys({a: 1})",
    "MATCH (n {name: $name}) SET n.seen = true, n:Seen RETURN n",
    "MATCH (n:Person) REMOVE n.age RETURN n",
    "CREATE (a:X {v: 1})-[:R {w: 2}]->(b:Y) RETURN a, b",
    "MERGE (n:Person {name: 'Zed'}) ON CREATE SET n.new = true ON MATCH SET n.old = true",
    "MATCH (a {name: 'Ada'}), (b {name: 'Bob'}) MERGE (a)-[r:FRIEND]->(b) RETURN r",
    "MATCH (n:Company) DETACH DELETE n",
    "MATCH ()-[r:KNOWS]->() DELETE r",
    "MATCH (n) WHERE (n)-[:KNOWS]->() AND NOT n:Company RETURN n.name ORDER BY n.name",
    "MATCH (n $props) RETURN properties(n), labels(n), startNode(null)",
    "MATCH (a)-[r]->(b) WHERE r.confidence >= 0.5 XOR a.name STARTS WITH 'A' RETURN r",
    "RETURN 'it\\'s' + \"x\" AS s, 1e3 AS f, -2 ^ 2 AS p, [1, 2][0..1] AS sl, {a: {b: 1}}.a.b",
    "MATCH (n) RETURN n.tags[0], n.name ENDS WITH 'e', n.name CONTAINS 'o', n.name =~ 'A.*'",
    "MATCH (a)-[*]->(b) WITH a, count(b) AS c RETURN a.name, c ORDER BY c, a.name",
    "MATCH (a) WHERE exists(a.age) AND any(t IN coalesce(a.tags, []) WHERE t = 'x') RETURN a",
]

TOKENS = [t.text for q in VALID for t in tokenize(q) if t.kind != "EOF"]
VOCAB = sorted(set(TOKENS)) + ["(", ")", "[", "]", "{", "}", "-", ">", "<", "*", "..", ":", ","]


def _mutate(tokens: list[str], ops: list[tuple[int, int, int, int]]) -> list[str]:
    toks = list(tokens)
    for kind, i, j, v in ops:
        if not toks:
            toks.append(VOCAB[v % len(VOCAB)])
            continue
        i %= len(toks)
        j %= len(toks)
        if kind == 0:
            del toks[i]
        elif kind == 1:
            toks.insert(i, VOCAB[v % len(VOCAB)])
        elif kind == 2:
            toks[i], toks[j] = toks[j], toks[i]
        else:
            toks.insert(i, toks[j])
    return toks


@settings(max_examples=300, **SETTINGS)
@given(
    st.integers(0, len(VALID) - 1),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 500), st.integers(0, 500),
                  st.integers(0, 10_000)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_mutated_queries_only_raise_cypher_errors(
    which: int, ops: list[tuple[int, int, int, int]], spaced: bool
) -> None:
    tokens = [t.text for t in tokenize(VALID[which]) if t.kind != "EOF"]
    mutated = _mutate(tokens, ops)
    run_safely((" " if spaced else "").join(mutated))


@pytest.mark.parametrize("query", VALID)
def test_unmutated_queries_are_valid(query: str) -> None:
    assert run_safely(query) is None


# ---- 3. grammar-generated valid queries on random graphs -----------------------------------

LABELS = ["A", "B"]
TYPES = ["R", "S"]


@st.composite
def graphs(draw: Any) -> MemoryGraphView:
    g = MemoryGraphView(clock=lambda: 0.0)
    n = draw(st.integers(1, 6))
    for _ in range(n):
        labels = draw(st.lists(st.sampled_from(LABELS), max_size=2, unique=True))
        props: dict[str, Any] = {}
        x = draw(st.one_of(st.none(), st.integers(-3, 3)))
        if x is not None:
            props["x"] = x
        s = draw(st.one_of(st.none(), st.sampled_from(["a", "b", "ab", ""])))
        if s is not None:
            props["s"] = s
        g.add_node(labels, props)
    ids = st.integers(0, n - 1)
    edges = draw(
        st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.lists(ids, min_size=1, max_size=2, unique=True),
                st.lists(ids, min_size=1, max_size=2, unique=True),
                st.sampled_from([0.1, 0.5, 0.9, 1.0]),
            ),
            max_size=7,
        )
    )
    for typ, tail, head, conf in edges:
        g.add_edge(typ, tail, head, confidence=conf)
    return g


class _Q:
    """State of one generated query: the variables in scope, by kind."""

    def __init__(self) -> None:
        self.nodes: list[str] = []
        self.rels: list[str] = []
        self.paths: list[str] = []
        self.counter = 0
        self.varlen = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def _int_expr(draw: Any, s: _Q, depth: int = 0) -> str:
    choices = ["lit"]
    if s.nodes:
        choices += ["prop", "prop", "size", "id", "coalesce"]
    if s.rels:
        choices += ["relprop"]
    if s.paths:
        choices += ["length"]
    if depth < 2:
        choices += ["bin", "abs", "case"]
    c = draw(st.sampled_from(choices))
    if c == "lit":
        return str(draw(st.integers(-3, 3)))
    if c == "prop":
        return f"{draw(st.sampled_from(s.nodes))}.x"
    if c == "size":
        return f"size(coalesce({draw(st.sampled_from(s.nodes))}.s, ''))"
    if c == "id":
        return f"id({draw(st.sampled_from(s.nodes))})"
    if c == "coalesce":
        return f"coalesce({draw(st.sampled_from(s.nodes))}.x, {draw(st.integers(0, 2))})"
    if c == "relprop":
        return f"toInteger({draw(st.sampled_from(s.rels))}.confidence * 10)"
    if c == "length":
        return f"length({draw(st.sampled_from(s.paths))})"
    if c == "abs":
        return f"abs({_int_expr(draw, s, depth + 1)})"
    if c == "case":
        return (f"CASE WHEN {_bool_expr(draw, s, depth + 1)} THEN {_int_expr(draw, s, depth + 1)} "
                f"ELSE {_int_expr(draw, s, depth + 1)} END")
    op = draw(st.sampled_from(["+", "-", "*", "/", "%"]))
    return f"({_int_expr(draw, s, depth + 1)} {op} {_int_expr(draw, s, depth + 1)})"


def _bool_expr(draw: Any, s: _Q, depth: int = 0) -> str:
    choices = ["cmp", "lit"]
    if s.nodes:
        choices += ["isnull", "starts", "in", "label", "exists", "pattern"]
    if depth < 2:
        choices += ["and", "or", "xor", "not"]
    c = draw(st.sampled_from(choices))
    if c == "lit":
        return draw(st.sampled_from(["true", "false", "null"]))
    if c == "cmp":
        op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
        return f"{_int_expr(draw, s, depth + 1)} {op} {_int_expr(draw, s, depth + 1)}"
    v = draw(st.sampled_from(s.nodes)) if s.nodes else ""
    if c == "isnull":
        neg = draw(st.sampled_from(["", "NOT "]))
        return f"{v}.{draw(st.sampled_from(['x', 's']))} IS {neg}NULL"
    if c == "starts":
        op = draw(st.sampled_from(["STARTS WITH", "ENDS WITH", "CONTAINS"]))
        return f"{v}.s {op} '{draw(st.sampled_from(['a', 'b', '']))}'"
    if c == "in":
        return f"{v}.x IN [{draw(st.integers(-3, 3))}, {draw(st.integers(-3, 3))}, null]"
    if c == "label":
        return f"{v}:{draw(st.sampled_from(LABELS))}"
    if c == "exists":
        return f"exists({v}.s)"
    if c == "pattern":
        arrow = draw(st.sampled_from(["-->", "<--", "--", "-[:R]->", "<-[:S]-"]))
        return f"({v}){arrow}()"
    if c == "not":
        return f"NOT ({_bool_expr(draw, s, depth + 1)})"
    op = {"and": "AND", "or": "OR", "xor": "XOR"}[c]
    return f"({_bool_expr(draw, s, depth + 1)} {op} {_bool_expr(draw, s, depth + 1)})"


def _node(draw: Any, s: _Q, allow_reuse: bool = True) -> str:
    kind = draw(st.sampled_from(["new", "new", "anon"] + (["reuse"] if allow_reuse and s.nodes
                                                           else [])))
    if kind == "reuse":
        return f"({draw(st.sampled_from(s.nodes))})"
    var = ""
    if kind == "new":
        var = s.fresh("n")
    label = draw(st.sampled_from(["", ":A", ":B", ":A:B"]))
    props = draw(st.sampled_from(["", " {x: 1}", " {s: 'a'}", " {x: $x}"]))
    if var:
        s.nodes.append(var)
    return f"({var}{label}{props})"


def _rel(draw: Any, s: _Q) -> str:
    var = ""
    # bounded lengths only: unbounded undirected trails over a dense random multigraph are
    # exponential in Cypher itself (the fixed graph of the mutation tests covers `*` and `*2..`)
    length = ""
    if s.varlen < 2:  # a product of many var-length segments explodes on any engine
        length = draw(st.sampled_from(["", "", "", "*1..2", "*2", "*..2", "*0..1", "*1..3"]))
        s.varlen += bool(length)
    if draw(st.booleans()) and not length:
        var = s.fresh("r")
        s.rels.append(var)
    typ = draw(st.sampled_from(["", ":R", ":S", ":R|S"]))
    body = f"[{var}{typ}{length}]"
    if body == "[]" and draw(st.booleans()):
        body = ""
    left, right = draw(st.sampled_from([("-", "->"), ("<-", "-"), ("-", "-")]))
    return f"{left}{body}{right}"


def _pattern(draw: Any, s: _Q) -> str:
    path = ""
    if draw(st.integers(0, 3)) == 0:
        path = s.fresh("p")
    text = _node(draw, s)
    for _ in range(draw(st.integers(0, 2))):
        text += _rel(draw, s) + _node(draw, s)
    if path:
        s.paths.append(path)
        return f"{path} = {text}"
    return text


@st.composite
def queries(draw: Any) -> str:
    s = _Q()
    parts = [f"MATCH {_pattern(draw, s)}"]
    if draw(st.booleans()):
        parts[0] += f", {_pattern(draw, s)}"
    if draw(st.booleans()):
        parts.append(f"WHERE {_bool_expr(draw, s)}")
    if draw(st.integers(0, 2)) == 0:
        parts.append(f"OPTIONAL MATCH {_pattern(draw, s)}")
    if s.nodes and draw(st.integers(0, 2)) == 0:
        parts.append("WITH * LIMIT 20")  # writes run once per row: keep the row count small
        v = draw(st.sampled_from(s.nodes))
        write = draw(st.sampled_from(["set", "label", "remove", "create", "merge", "delete"]))
        if write == "set":
            parts.append(f"SET {v}.x = {_int_expr(draw, s)}")
        elif write == "label":
            parts.append(f"SET {v}:{draw(st.sampled_from(LABELS))}")
        elif write == "remove":
            parts.append(f"REMOVE {v}.s, {v}:A")
        elif write == "create":
            parts.append(f"CREATE ({v})-[:R {{w: {draw(st.integers(0, 3))}}}]->(:B {{x: 2}})")
        elif write == "merge":
            parts.append(f"MERGE (m:A {{x: {draw(st.integers(-1, 1))}}}) ON CREATE SET m.s = 'new'")
        else:
            parts.append(f"DETACH DELETE {v}")
            return " ".join(parts + ["RETURN count(*) AS c"])
    if s.nodes and draw(st.booleans()):
        v = draw(st.sampled_from(s.nodes))
        parts.append(f"WITH {v}, {_int_expr(draw, s)} AS w")
        s.nodes, s.rels, s.paths = [v], [], []
        if draw(st.booleans()):
            parts.append(f"WHERE w > {draw(st.integers(-3, 3))}")
    items: list[str] = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["var", "int", "bool", "agg", "fn"]))
        if kind == "var" and (s.nodes or s.rels or s.paths):
            expr = draw(st.sampled_from(s.nodes + s.rels + s.paths))
        elif kind == "agg":
            arg = _int_expr(draw, s)
            fn = draw(st.sampled_from(["count", "sum", "avg", "min", "max", "collect",
                                       "count(DISTINCT"]))
            expr = "count(*)" if draw(st.integers(0, 4)) == 0 else (
                f"count(DISTINCT {arg})" if fn == "count(DISTINCT" else f"{fn}({arg})")
        elif kind == "fn" and s.nodes:
            v = draw(st.sampled_from(s.nodes))
            expr = draw(st.sampled_from([f"labels({v})", f"properties({v})", f"keys({v})",
                                         f"toString({v}.x)", f"{v}.s + 'z'", f"[{v}.x, 1]"]))
        elif kind == "bool":
            expr = _bool_expr(draw, s)
        else:
            expr = _int_expr(draw, s)
        items.append(f"{expr} AS c{i}")
    ret = "RETURN " + ("DISTINCT " if draw(st.booleans()) else "") + ", ".join(items)
    if draw(st.booleans()):
        keys = draw(st.lists(st.integers(0, len(items) - 1), min_size=1, max_size=2, unique=True))
        ret += " ORDER BY " + ", ".join(
            f"c{k}{draw(st.sampled_from(['', ' ASC', ' DESC']))}" for k in keys
        )
    if draw(st.booleans()):
        ret += f" SKIP {draw(st.integers(0, 2))}"
    if draw(st.booleans()):
        ret += f" LIMIT {draw(st.integers(0, 5))}"
    return " ".join(parts + [ret])


@settings(max_examples=250, **SETTINGS)
@given(queries(), graphs())
def test_generated_queries_execute_without_internal_errors(query: str, g: MemoryGraphView) -> None:
    parse(query)  # must be syntactically valid
    err = run_safely(query, g)
    assert not isinstance(err, CypherSyntaxError), f"{err} in {query!r}"


# ---- 4. oracles ------------------------------------------------------------------------------


def _projected(g: MemoryGraphView, typ: str | None = None) -> list[tuple[int, int, int]]:
    return [
        (eid, t, h)
        for eid, (et, tail, head, _) in g.edges().items()
        if typ is None or et == typ
        for t in tail
        for h in head
    ]


def _trails(rels: list[tuple[int, int, int]], lo: int, hi: int) -> list[list[tuple[int, int, int]]]:
    """All directed trails (distinct relationships) with lo..hi hops, by brute force."""
    out: list[list[tuple[int, int, int]]] = []
    nodes = {n for r in rels for n in r[1:]}

    def walk(cur: int, used: list[tuple[int, int, int]]) -> None:
        if lo <= len(used) <= hi and used:
            out.append(list(used))
        if len(used) == hi:
            return
        for r in rels:
            if r[1] == cur and r not in used:
                walk(r[2], used + [r])

    for n in sorted(nodes):
        walk(n, [])
    return out


@settings(max_examples=120, **SETTINGS)
@given(graphs(), st.integers(1, 3), st.integers(0, 2), st.sampled_from([None, "R"]))
def test_counts_match_brute_force(g: MemoryGraphView, hi: int, lo: int, typ: str | None) -> None:
    lo = min(lo, hi)
    rels = _projected(g, typ)
    t = "" if typ is None else f":{typ}"
    assert execute(g, f"MATCH ()-[r{t}]->() RETURN count(*) AS c") == [{"c": len(rels)}]
    loops = sum(1 for r in rels if r[1] == r[2])
    assert execute(g, f"MATCH ()-[r{t}]-() RETURN count(*) AS c") == [
        {"c": 2 * len(rels) - loops}
    ]
    trails = [tr for tr in _trails(rels, max(lo, 1), hi)]
    n_nodes = len(g.node_ids())
    zero = n_nodes if lo == 0 else 0
    rows = execute(g, f"MATCH p = (a)-[{t}*{lo}..{hi}]->(b) RETURN count(*) AS c")
    assert rows == [{"c": len(trails) + zero}]
    # anchored on the far end (an inline property equality), walked backwards and reversed
    ends = [tr for tr in trails if g.node(tr[-1][2])[1].get("x") == 1]
    zero_x = sum(1 for nid in g.node_ids() if g.node(nid)[1].get("x") == 1) if lo == 0 else 0
    rows = execute(
        g,
        f"MATCH p = (a)-[{t}*{lo}..{hi}]->(b {{x: 1}}) "
        "RETURN [n IN nodes(p) | id(n)] AS ns, [r IN relationships(p) | id(r)] AS rs",
    )
    assert len(rows) == len(ends) + zero_x
    got = sorted((tuple(r["ns"]), tuple(r["rs"])) for r in rows if r["rs"])
    want = sorted(
        (tuple([tr[0][1]] + [r[2] for r in tr]), tuple(r[0] for r in tr)) for tr in ends
    )
    assert got == want
