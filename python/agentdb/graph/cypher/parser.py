"""Hand-written recursive-descent parser for the Cypher subset.

:func:`parse` turns query text into a :class:`~agentdb.graph.cypher.ast.Query`, or raises
:class:`~agentdb.errors.CypherSyntaxError` with the line and column of the problem:

>>> q = parse("MATCH (a)-[:KNOWS*1..3]->(b) RETURN b.name AS name ORDER BY name LIMIT 5")
>>> [type(c).__name__ for c in q.clauses]
['Match', 'Return']
>>> q.clauses[0].patterns[0].rels[0].length
(1, 3)
>>> parse("MATCH (a WHERE a.x = 1) RETURN a")
Traceback (most recent call last):
...
agentdb.errors.CypherSyntaxError: line 1, column 10: expected ')' but found 'WHERE'
>>> parse("CALL db.labels()")
Traceback (most recent call last):
...
agentdb.errors.CypherSyntaxError: line 1, column 1: unsupported: CALL

Nesting (parentheses, lists, maps, unary operators, property chains...) deeper than
:data:`MAX_DEPTH` is rejected with a CypherSyntaxError instead of exhausting the Python stack.
"""

from __future__ import annotations

import re
from functools import lru_cache

from . import ast as A
from .errors import CypherSyntaxError
from .expression_parser import INT_MAX, INT_MIN, MAX_DEPTH, NOT_VARIABLES, ExpressionParser

__all__ = ["INT_MAX", "INT_MIN", "MAX_DEPTH", "Parser", "is_read_only", "parse"]

_UNSUPPORTED_CLAUSES = {
    "CALL": "CALL",
    "FOREACH": "FOREACH",
    "LOAD": "LOAD CSV",
    "USING": "USING (planner hints)",
    "START": "START",
    "UNION": "UNION",
    "DROP": "schema commands (DROP)",
    "SHOW": "SHOW",
    "USE": "USE",
    "FINISH": "FINISH",
    "EXPLAIN": "EXPLAIN",
    "PROFILE": "PROFILE",
    "GRANT": "administration commands",
    "DENY": "administration commands",
    "REVOKE": "administration commands",
    "TERMINATE": "administration commands",
    "ALTER": "administration commands",
}
_UPDATING = (A.Create, A.Merge, A.SetClause, A.Remove, A.Delete)


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> A.Query:
    return Parser(text).parse_query()


def parse(text: str) -> A.Query:
    """Parse one Cypher statement (an optional trailing ``;`` is allowed).

    The result is shared between calls with the same text (a small LRU cache): do not mutate it.

    >>> parse("RETURN 1 + 2 * 3 AS x").clauses[0].items[0].expr
    Arithmetic(operands=[Literal(value=1), Arithmetic(operands=[Literal(value=2), Literal(value=3)], ops=['*'])], ops=['+'])
    """  # noqa: E501
    if not isinstance(text, str):
        raise CypherSyntaxError(f"query must be a string, got {type(text).__name__}")
    try:
        return _parse_cached(text)
    except RecursionError:  # pragma: no cover - MAX_DEPTH should prevent this
        raise CypherSyntaxError("query nested too deeply") from None


_MODE = re.compile(r"\s*(EXPLAIN|PROFILE)\b", re.IGNORECASE)


def split_mode(text: str) -> tuple[str | None, str]:
    """``("EXPLAIN" | "PROFILE" | None, the statement)``: the executor answers
    ``EXPLAIN q`` with q's plan (q does not run) and ``PROFILE q`` with its operators' rows
    and times (q runs).

    >>> split_mode("explain MATCH (n) RETURN n")
    ('EXPLAIN', ' MATCH (n) RETURN n')
    >>> split_mode("MATCH (n) RETURN n")[0] is None
    True
    """
    m = _MODE.match(text)
    if m is None:
        return None, text
    return m.group(1).upper(), text[m.end():]


def is_read_only(text: str) -> bool:
    """Whether a Cypher statement only reads (no CREATE, MERGE, SET, REMOVE or DELETE; an
    ``EXPLAIN`` of any statement only reads, a ``PROFILE`` runs it).

    Parses the statement, so a syntax error raises :class:`CypherSyntaxError`.

    >>> is_read_only("MATCH (n) RETURN count(n)"), is_read_only("CREATE (n:Event)")
    (True, False)
    >>> is_read_only("EXPLAIN CREATE (n:Event)"), is_read_only("PROFILE CREATE (n:Event)")
    (True, False)
    """
    mode, body = split_mode(text)
    updating = any(isinstance(c, _UPDATING) for c in parse(body).clauses)
    return mode == "EXPLAIN" or not updating

class Parser(ExpressionParser):
    """One-shot parser over the token list of ``text``: clauses and patterns here, tokens
    and expressions in :class:`~agentdb.graph.cypher.expression_parser.ExpressionParser`."""

    # ---- query and clauses -----------------------------------------------------------------

    def parse_query(self) -> A.Query:
        clauses: list[A.Clause] = []
        while self.peek().kind != "EOF":
            if self.at_op(";"):
                semi = self.advance()
                if self.peek().kind != "EOF":
                    raise self.unsupported("multiple statements", semi)
                break
            clauses.append(self.clause())
        if not clauses:
            raise self.error("empty query")
        for c in clauses[:-1]:
            if isinstance(c, A.Return):
                raise CypherSyntaxError(
                    "RETURN must be the last clause", c.pos[0], c.pos[1]
                )
        last = clauses[-1]
        if not isinstance(last, (A.Return,) + _UPDATING):
            kind = {A.Match: "MATCH", A.With: "WITH", A.Unwind: "UNWIND"}.get(type(last), "?")
            if isinstance(last, A.Match) and last.optional:
                kind = "OPTIONAL MATCH"
            raise CypherSyntaxError(
                f"query cannot end with {kind} (it must end with RETURN or an updating clause)",
                last.pos[0],
                last.pos[1],
            )
        query = A.Query(clauses, pos=(1, 1))
        d, deepest = A.depth(query)
        if d > MAX_DEPTH + 8:  # query/clause/pattern levels on top of the expression nesting
            raise CypherSyntaxError(
                f"query nested too deeply (more than {MAX_DEPTH} levels)",
                deepest.pos[0],
                deepest.pos[1],
            )
        return query

    def clause(self) -> A.Clause:
        t = self.peek()
        pos = (t.line, t.column)
        if t.kind != "IDENT":
            raise self.expected("a clause (MATCH, CREATE, RETURN, ...)")
        word = t.upper
        if word == "MATCH":
            self.advance()
            return self.match_clause(False, pos)
        if word == "OPTIONAL":
            self.advance()
            self.expect_kw("MATCH")
            return self.match_clause(True, pos)
        if word == "RETURN":
            self.advance()
            return self.projection(True, pos)
        if word == "WITH":
            self.advance()
            return self.projection(False, pos)
        if word == "UNWIND":
            self.advance()
            expr = self.expr()
            self.expect_kw("AS")
            var = self.variable_name()
            return A.Unwind(expr, var, pos=pos)
        if word == "CREATE":
            self.advance()
            if self.peek().kind == "IDENT" and self.peek().upper in (
                "INDEX", "CONSTRAINT", "DATABASE", "USER", "ROLE", "OR", "ALIAS", "FULLTEXT",
                "TEXT", "RANGE", "POINT", "LOOKUP", "VECTOR", "BTREE", "COMPOSITE",
            ):
                raise self.unsupported(f"CREATE {self.peek().upper}", t)
            return A.Create(self.pattern_list(), pos=pos)
        if word == "MERGE":
            self.advance()
            part = self.pattern_part()
            on_create: list[A.Node] = []
            on_match: list[A.Node] = []
            while self.at_kw("ON"):
                self.advance()
                if self.accept_kw("CREATE"):
                    self.expect_kw("SET")
                    on_create.extend(self.set_items())
                elif self.accept_kw("MATCH"):
                    self.expect_kw("SET")
                    on_match.extend(self.set_items())
                else:
                    raise self.expected("CREATE or MATCH after ON")
            return A.Merge(part, on_create, on_match, pos=pos)
        if word == "SET":
            self.advance()
            return A.SetClause(self.set_items(), pos=pos)
        if word == "REMOVE":
            self.advance()
            return A.Remove(self.remove_items(), pos=pos)
        if word == "DELETE":
            self.advance()
            return A.Delete(self.expr_list(), False, pos=pos)
        if word == "DETACH":
            self.advance()
            self.expect_kw("DELETE")
            return A.Delete(self.expr_list(), True, pos=pos)
        if word in _UNSUPPORTED_CLAUSES:
            raise self.unsupported(_UNSUPPORTED_CLAUSES[word], t)
        raise self.expected("a clause (MATCH, CREATE, RETURN, ...)")

    def match_clause(self, optional: bool, pos: A.Pos) -> A.Match:
        patterns = self.pattern_list()
        if self.at_kw("USING"):
            raise self.unsupported("USING (planner hints)")
        where = None
        if self.accept_kw("WHERE"):
            where = self.expr()
        return A.Match(patterns, where, optional, pos=pos)

    def expr_list(self) -> list[A.Expr]:
        out = [self.expr()]
        while self.accept_op(","):
            out.append(self.expr())
        return out

    def variable_name(self) -> str:
        t = self.peek()
        if t.kind == "QIDENT" or (t.kind == "IDENT" and t.upper not in NOT_VARIABLES):
            self.i += 1
            return str(t.value)
        raise self.expected("a variable name")

    def set_items(self) -> list[A.Node]:
        items: list[A.Node] = []
        while True:
            t = self.peek()
            pos = (t.line, t.column)
            var = self.variable_name()
            if self.at_op(":"):
                labels = self.label_list()
                items.append(A.SetLabels(var, labels, pos=pos))
            elif self.accept_op("="):
                items.append(A.SetProperties(var, self.expr(), False, pos=pos))
            elif self.accept_op("+="):
                items.append(A.SetProperties(var, self.expr(), True, pos=pos))
            elif self.at_op("."):
                target: A.Expr = A.Variable(var, pos=pos)
                while self.accept_op("."):
                    kt = self.peek()
                    key = self.name("a property name")
                    target = A.Property(target, key, pos=(kt.line, kt.column))
                self.expect_op("=")
                assert isinstance(target, A.Property)
                items.append(A.SetProperty(target, self.expr(), pos=pos))
            else:
                raise self.expected("'=', '+=', '.' or ':' in SET")
            if not self.accept_op(","):
                return items

    def remove_items(self) -> list[A.Node]:
        items: list[A.Node] = []
        while True:
            t = self.peek()
            pos = (t.line, t.column)
            var = self.variable_name()
            if self.at_op(":"):
                items.append(A.RemoveLabels(var, self.label_list(), pos=pos))
            elif self.at_op("."):
                target: A.Expr = A.Variable(var, pos=pos)
                while self.accept_op("."):
                    kt = self.peek()
                    key = self.name("a property name")
                    target = A.Property(target, key, pos=(kt.line, kt.column))
                assert isinstance(target, A.Property)
                items.append(A.RemoveProperty(target, pos=pos))
            else:
                raise self.expected("'.' or ':' in REMOVE")
            if not self.accept_op(","):
                return items

    def label_list(self) -> list[str]:
        labels: list[str] = []
        while self.accept_op(":"):
            labels.append(self.name("a label"))
            if self.at_op("|") or self.at_op("&") or self.at_op("!"):
                raise self.unsupported("label expressions")
        return labels

    def projection(self, is_return: bool, pos: A.Pos) -> A.Clause:
        distinct = self.accept_kw("DISTINCT")
        star = False
        items: list[A.ReturnItem] = []
        if self.accept_op("*"):
            star = True
            if self.accept_op(","):
                items = self.return_items()
        else:
            items = self.return_items()
        order: list[A.SortItem] = []
        skip = limit = None
        if self.at_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            while True:
                t = self.peek()
                e = self.expr()
                desc = False
                if self.accept_kw("DESC") or self.accept_kw("DESCENDING"):
                    desc = True
                elif self.accept_kw("ASC") or self.accept_kw("ASCENDING"):
                    desc = False
                order.append(A.SortItem(e, desc, pos=(t.line, t.column)))
                if not self.accept_op(","):
                    break
        if self.accept_kw("SKIP") or self.accept_kw("OFFSET"):
            skip = self.expr()
        if self.accept_kw("LIMIT"):
            limit = self.expr()
        if is_return:
            return A.Return(items, star, distinct, order, skip, limit, pos=pos)
        where = None
        if self.accept_kw("WHERE"):
            where = self.expr()
        return A.With(items, star, distinct, order, skip, limit, where, pos=pos)

    def return_items(self) -> list[A.ReturnItem]:
        items: list[A.ReturnItem] = []
        while True:
            t = self.peek()
            start = t.start
            e = self.expr()
            end = self.toks[self.i - 1].end
            alias = None
            if self.accept_kw("AS"):
                alias = self.name("an alias")
            name = alias if alias is not None else self.text[start:end]
            items.append(A.ReturnItem(e, alias, name, pos=(t.line, t.column)))
            if not self.accept_op(","):
                return items

    # ---- patterns ----------------------------------------------------------------------------

    def pattern_list(self) -> list[A.PatternPart]:
        parts = [self.pattern_part()]
        while self.accept_op(","):
            parts.append(self.pattern_part())
        return parts

    def pattern_part(self) -> A.PatternPart:
        t = self.peek()
        pos = (t.line, t.column)
        var = None
        if t.kind in ("IDENT", "QIDENT") and self.at_op("=", 1):
            var = self.variable_name()
            self.advance()
        t2 = self.peek()
        if t2.kind == "IDENT" and t2.upper in ("SHORTESTPATH", "ALLSHORTESTPATHS") and self.at_op(
            "(", 1
        ):
            raise self.unsupported(t2.value, t2)
        if t2.kind == "IDENT" and t2.upper in ("ANY", "ALL", "SHORTEST") and not self.at_op("(", 1):
            raise self.unsupported("path selectors", t2)
        nodes = [self.node_pattern()]
        rels: list[A.RelPattern] = []
        while self.at_op("-") or (self.at_op("<") and self.at_op("-", 1)):
            rels.append(self.rel_pattern())
            nodes.append(self.node_pattern())
        return A.PatternPart(var, nodes, rels, pos=pos)

    def node_pattern(self) -> A.NodePattern:
        t = self.peek()
        pos = (t.line, t.column)
        self.expect_op("(")
        self.enter()
        try:
            var = None
            t = self.peek()
            if t.kind == "QIDENT" or (t.kind == "IDENT" and t.upper != "WHERE"):
                var = str(t.value)
                self.advance()
            labels = self.label_list() if self.at_op(":") else []
            props = self.pattern_properties()
            self.expect_op(")")
        finally:
            self.depth -= 1
        return A.NodePattern(var, labels, props, pos=pos)

    def pattern_properties(self) -> A.Expr | None:
        if self.at_op("{"):
            return self.map_literal()
        t = self.peek()
        if t.kind == "PARAM":
            self.advance()
            return A.Parameter(str(t.value), pos=(t.line, t.column))
        return None

    def rel_pattern(self) -> A.RelPattern:
        t = self.peek()
        pos = (t.line, t.column)
        left = self.accept_op("<")
        self.expect_op("-")
        var = None
        types: list[str] = []
        props = None
        length: tuple[int, int | None] | None = None
        if self.at_op("["):
            self.advance()
            self.enter()
            try:
                t = self.peek()
                if t.kind == "QIDENT" or (t.kind == "IDENT" and t.upper != "WHERE"):
                    var = str(t.value)
                    self.advance()
                if self.accept_op(":"):
                    types.append(self.name("a relationship type"))
                    while self.accept_op("|"):
                        self.accept_op(":")
                        types.append(self.name("a relationship type"))
                    if self.at_op("&") or self.at_op("!"):
                        raise self.unsupported("relationship type expressions")
                if self.accept_op("*"):
                    length = self.range_literal()
                props = self.pattern_properties()
                self.expect_op("]")
            finally:
                self.depth -= 1
        self.expect_op("-")
        right = self.accept_op(">")
        direction = "both" if left == right else ("in" if left else "out")
        return A.RelPattern(var, types, props, direction, length, pos=pos)

    def range_literal(self) -> tuple[int, int | None]:
        lo: int | None = None
        hi: int | None = None
        if self.peek().kind == "INT":
            lo = self.int_bound()
        if self.accept_op(".."):
            if self.peek().kind == "INT":
                hi = self.int_bound()
        elif lo is not None:
            hi = lo
        return (1 if lo is None else lo, hi)

    def int_bound(self) -> int:
        t = self.advance()
        v = int(t.value)
        if v > INT_MAX:
            raise self.error("variable length bound out of range", t)
        return v
