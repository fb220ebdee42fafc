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

from functools import lru_cache

from . import ast as A
from .errors import CypherSyntaxError
from .lexer import Token, bracket_pairs, tokenize

__all__ = ["parse", "MAX_DEPTH", "INT_MIN", "INT_MAX"]

MAX_DEPTH = 200
INT_MAX = 2**63 - 1
INT_MIN = -(2**63)

# Words that cannot start an expression as a variable name (they would make errors confusing).
_NOT_VARIABLES = frozenset(
    """MATCH OPTIONAL WHERE RETURN WITH CREATE MERGE SET DELETE DETACH REMOVE UNWIND ORDER BY
    SKIP LIMIT ASC DESC ASCENDING DESCENDING AND OR XOR NOT IN IS AS STARTS ENDS CONTAINS WHEN
    THEN ELSE UNION CALL YIELD DISTINCT ON FOREACH""".split()
)
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
_COMPARISON = {"=", "<>", "!=", "<", "<=", ">", ">="}
# binding powers (higher binds tighter)
_BP_OR, _BP_XOR, _BP_AND, _BP_NOT, _BP_CMP, _BP_PRED, _BP_ADD, _BP_MUL, _BP_POW, _BP_UNARY = range(
    1, 11
)
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


def is_read_only(text: str) -> bool:
    """Whether a Cypher statement only reads (no CREATE, MERGE, SET, REMOVE or DELETE).

    Parses the statement, so a syntax error raises :class:`CypherSyntaxError`.

    >>> is_read_only("MATCH (n) RETURN count(n)"), is_read_only("CREATE (n:Event)")
    (True, False)
    """
    return not any(isinstance(c, _UPDATING) for c in parse(text).clauses)


class Parser:
    """One-shot parser over the token list of ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[Token] = tokenize(text)
        self.pairs = bracket_pairs(self.toks)
        self.i = 0
        self.depth = 0

    # ---- token helpers ---------------------------------------------------------------------

    def peek(self, k: int = 0) -> Token:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else self.toks[-1]

    def advance(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != "EOF":
            self.i += 1
        return tok

    def at_op(self, op: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind == "OP" and t.value == op

    def at_kw(self, word: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind == "IDENT" and t.upper == word

    def accept_op(self, op: str) -> bool:
        if self.at_op(op):
            self.i += 1
            return True
        return False

    def accept_kw(self, word: str) -> bool:
        if self.at_kw(word):
            self.i += 1
            return True
        return False

    def error(self, msg: str, tok: Token | None = None) -> CypherSyntaxError:
        tok = tok or self.peek()
        return CypherSyntaxError(msg, tok.line, tok.column)

    def expected(self, what: str) -> CypherSyntaxError:
        return self.error(f"expected {what} but found {self.peek().describe()}")

    def expect_op(self, op: str) -> Token:
        if not self.at_op(op):
            raise self.expected(repr(op))
        return self.advance()

    def expect_kw(self, word: str) -> Token:
        if not self.at_kw(word):
            raise self.expected(word)
        return self.advance()

    def unsupported(self, what: str, tok: Token | None = None) -> CypherSyntaxError:
        return self.error(f"unsupported: {what}", tok)

    def name(self, what: str = "a name") -> str:
        """Any identifier (keywords allowed): labels, types, property keys, aliases."""
        t = self.peek()
        if t.kind in ("IDENT", "QIDENT"):
            self.i += 1
            return str(t.value)
        raise self.expected(what)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"query nested too deeply (more than {MAX_DEPTH} levels)")

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
        if t.kind == "QIDENT" or (t.kind == "IDENT" and t.upper not in _NOT_VARIABLES):
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

    # ---- expressions -------------------------------------------------------------------------

    def expr(self, min_bp: int = 0) -> A.Expr:
        """Precedence-climbing expression parser (few Python frames per nesting level)."""
        self.enter()
        saved = self.depth
        try:
            left = self.prefix()
            while True:
                t = self.peek()
                if t.kind == "OP":
                    op = t.value
                    if op in _COMPARISON:
                        if _BP_CMP < min_bp:
                            break
                        operands = [left]
                        ops: list[str] = []
                        while self.peek().kind == "OP" and self.peek().value in _COMPARISON:
                            o = self.advance().value
                            ops.append("<>" if o == "!=" else o)
                            operands.append(self.expr(_BP_CMP + 1))
                        left = A.Comparison(operands, ops, pos=left.pos)
                        continue
                    if op in ("+", "-"):
                        bp = _BP_ADD
                    elif op in ("*", "/", "%"):
                        bp = _BP_MUL
                    elif op == "^":
                        bp = _BP_POW
                    elif op == "=~":
                        if _BP_PRED < min_bp:
                            break
                        self.advance()
                        right = self.expr(_BP_PRED + 1)
                        left = A.BinaryOp("=~", left, right, pos=left.pos)
                        continue
                    else:
                        break
                    if bp < min_bp:
                        break
                    self.advance()
                    right = self.expr(bp + 1)
                    if isinstance(left, A.Arithmetic):  # left-flattening keeps the semantics
                        left.operands.append(right)
                        left.ops.append(op)
                    else:
                        left = A.Arithmetic([left, right], [op], pos=left.pos)
                    continue
                if t.kind != "IDENT":
                    break
                w = t.upper
                if w in ("AND", "OR", "XOR"):
                    bp = {"OR": _BP_OR, "XOR": _BP_XOR, "AND": _BP_AND}[w]
                    if bp < min_bp:
                        break
                    self.advance()
                    right = self.expr(bp + 1)
                    if isinstance(left, A.BoolOp) and left.op == w:
                        left.operands.append(right)
                    else:
                        left = A.BoolOp(w, [left, right], pos=left.pos)
                    continue
                if w in ("IN", "STARTS", "ENDS", "CONTAINS", "IS"):
                    if _BP_PRED < min_bp:
                        break
                    self.advance()
                    if w == "IS":
                        neg = self.accept_kw("NOT")
                        if not self.accept_kw("NULL"):
                            if self.at_kw("NORMALIZED") or self.at_kw("TYPED") or self.at_op(":"):
                                raise self.unsupported("IS NORMALIZED / type predicates")
                            raise self.expected("NULL")
                        left = A.IsNull(left, neg, pos=left.pos)
                        continue
                    if w in ("STARTS", "ENDS"):
                        self.expect_kw("WITH")
                        opname = w + " WITH"
                    else:
                        opname = w
                    right = self.expr(_BP_PRED + 1)
                    left = A.BinaryOp(opname, left, right, pos=left.pos)
                    continue
                break
            return left
        finally:
            self.depth = saved - 1

    def prefix(self) -> A.Expr:
        t = self.peek()
        pos = (t.line, t.column)
        if t.kind == "IDENT" and t.upper == "NOT":
            self.advance()
            return A.Unary("NOT", self.expr(_BP_NOT), pos=pos)
        if t.kind == "OP" and t.value in ("-", "+"):
            self.advance()
            nxt = self.peek()
            if t.value == "-" and nxt.kind == "INT" and nxt.value == INT_MAX + 1:
                self.advance()
                operand: A.Expr = A.Literal(INT_MIN, pos=pos)
                return self.postfix(operand)
            operand = self.expr(_BP_UNARY)
            if (
                isinstance(operand, A.Literal)
                and type(operand.value) in (int, float)
                and operand.pos == (nxt.line, nxt.column)
            ):
                v = operand.value if t.value == "+" else -operand.value
                return A.Literal(v, pos=pos)
            return A.Unary(t.value, operand, pos=pos)
        return self.postfix(self.atom())

    def postfix(self, e: A.Expr) -> A.Expr:
        while True:
            t = self.peek()
            if t.kind != "OP":
                return e
            if t.value == ".":
                self.advance()
                self.enter()
                key = self.name("a property name")
                if self.at_op("("):
                    raise self.unsupported("namespaced functions and procedures", t)
                e = A.Property(e, key, pos=e.pos)
            elif t.value == "[":
                self.advance()
                self.enter()
                start = end = None
                if self.accept_op(".."):
                    if not self.at_op("]"):
                        end = self.expr()
                    self.expect_op("]")
                    e = A.Slice(e, None, end, pos=e.pos)
                    continue
                start = self.expr()
                if self.accept_op(".."):
                    if not self.at_op("]"):
                        end = self.expr()
                    self.expect_op("]")
                    e = A.Slice(e, start, end, pos=e.pos)
                    continue
                self.expect_op("]")
                e = A.Index(e, start, pos=e.pos)
            elif t.value == ":" and self.peek(1).kind in ("IDENT", "QIDENT"):
                self.enter()
                labels = self.label_list()
                e = A.HasLabels(e, labels, pos=e.pos)
            elif t.value == "{" and isinstance(e, A.Variable):
                raise self.unsupported("map projections", t)
            else:
                return e

    def atom(self) -> A.Expr:
        t = self.peek()
        pos = (t.line, t.column)
        k = t.kind
        if k == "INT":
            self.advance()
            if t.value > INT_MAX:
                raise self.error("integer literal out of range", t)
            return A.Literal(t.value, pos=pos)
        if k in ("FLOAT", "STRING"):
            self.advance()
            return A.Literal(t.value, pos=pos)
        if k == "PARAM":
            self.advance()
            return A.Parameter(str(t.value), pos=pos)
        if k == "QIDENT":
            self.advance()
            return A.Variable(str(t.value), pos=pos)
        if k == "OP":
            if t.value == "(":
                if self.looks_like_pattern(self.i):
                    return A.PatternPredicate(self.pattern_part(), pos=pos)
                self.advance()
                e = self.expr()
                self.expect_op(")")
                return e
            if t.value == "[":
                return self.list_expr()
            if t.value == "{":
                return self.map_literal()
            raise self.expected("an expression")
        if k != "IDENT":
            raise self.expected("an expression")
        w = t.upper
        if w == "TRUE":
            self.advance()
            return A.Literal(True, pos=pos)
        if w == "FALSE":
            self.advance()
            return A.Literal(False, pos=pos)
        if w == "NULL":
            self.advance()
            return A.Literal(None, pos=pos)
        if w == "CASE":
            return self.case_expr()
        if w in ("EXISTS", "COUNT", "COLLECT") and self.at_op("{", 1):
            raise self.unsupported(f"{w} subqueries", t)
        if self.at_op("(", 1):
            return self.function_call()
        if w in _NOT_VARIABLES:
            raise self.expected("an expression")
        self.advance()
        return A.Variable(str(t.value), pos=pos)

    def looks_like_pattern(self, i: int) -> bool:
        """Is the ``(`` at token ``i`` the start of a relationship pattern ``(a)-->(b)``?"""
        toks = self.toks
        n = len(toks)

        def op(j: int, v: str) -> bool:
            return j < n and toks[j].kind == "OP" and toks[j].value == v

        j = i + 1
        if j < n and toks[j].kind in ("IDENT", "QIDENT"):
            j += 1
        while op(j, ":") and j + 1 < n and toks[j + 1].kind in ("IDENT", "QIDENT"):
            j += 2
        if op(j, "{"):
            k = self.pairs[j]
            if k < 0:
                return False
            j = k + 1
        elif j < n and toks[j].kind == "PARAM":
            j += 1
        if not op(j, ")"):
            return False
        j += 1
        if op(j, "-"):
            return op(j + 1, "[") or (op(j + 1, "-") and (op(j + 2, ">") or op(j + 2, "(")))
        if op(j, "<") and op(j + 1, "-"):
            return op(j + 2, "[") or op(j + 2, "-")
        return False

    def list_expr(self) -> A.Expr:
        t = self.expect_op("[")
        pos = (t.line, t.column)
        self.enter()
        try:
            if self.looks_like_pattern(self.i) or (
                self.peek().kind in ("IDENT", "QIDENT") and self.at_op("=", 1)
                and self.at_op("(", 2)
            ):
                raise self.unsupported("pattern comprehensions")
            if self.peek().kind in ("IDENT", "QIDENT") and self.at_kw("IN", 1):
                var = self.variable_name()
                self.advance()
                source = self.expr()
                pred = proj = None
                if self.accept_kw("WHERE"):
                    pred = self.expr()
                if self.accept_op("|"):
                    proj = self.expr()
                self.expect_op("]")
                return A.ListComprehension(var, source, pred, proj, pos=pos)
            items: list[A.Expr] = []
            if not self.at_op("]"):
                items.append(self.expr())
                while self.accept_op(","):
                    items.append(self.expr())
            self.expect_op("]")
            return A.ListLiteral(items, pos=pos)
        finally:
            self.depth -= 1

    def map_literal(self) -> A.MapLiteral:
        t = self.expect_op("{")
        pos = (t.line, t.column)
        self.enter()
        try:
            items: list[tuple[str, A.Expr]] = []
            if not self.at_op("}"):
                while True:
                    key = self.name("a map key")
                    self.expect_op(":")
                    items.append((key, self.expr()))
                    if not self.accept_op(","):
                        break
            self.expect_op("}")
            return A.MapLiteral(items, pos=pos)
        finally:
            self.depth -= 1

    def case_expr(self) -> A.Expr:
        t = self.advance()
        pos = (t.line, t.column)
        self.enter()
        try:
            subject = None
            if self.at_kw("END"):
                raise self.expected("WHEN")
            if not self.at_kw("WHEN"):
                subject = self.expr()
            whens: list[tuple[A.Expr, A.Expr]] = []
            while self.accept_kw("WHEN"):
                cond = self.expr()
                self.expect_kw("THEN")
                whens.append((cond, self.expr()))
            if not whens:
                raise self.expected("WHEN")
            default = None
            if self.accept_kw("ELSE"):
                default = self.expr()
            self.expect_kw("END")
            return A.Case(subject, whens, default, pos=pos)
        finally:
            self.depth -= 1

    def function_call(self) -> A.Expr:
        t = self.advance()
        pos = (t.line, t.column)
        w = t.upper
        self.expect_op("(")
        self.enter()
        try:
            if w == "COUNT" and self.at_op("*"):
                self.advance()
                self.expect_op(")")
                return A.CountStar(pos=pos)
            if w == "REDUCE":
                acc = self.variable_name()
                self.expect_op("=")
                init = self.expr()
                self.expect_op(",")
                var = self.variable_name()
                self.expect_kw("IN")
                source = self.expr()
                self.expect_op("|")
                body = self.expr()
                self.expect_op(")")
                return A.Reduce(acc, init, var, source, body, pos=pos)
            if w in ("ANY", "ALL", "NONE", "SINGLE") and self.peek().kind in (
                "IDENT", "QIDENT"
            ) and self.at_kw("IN", 1):
                var = self.variable_name()
                self.advance()
                source = self.expr()
                self.expect_kw("WHERE")
                pred = self.expr()
                self.expect_op(")")
                return A.Quantifier(w.lower(), var, source, pred, pos=pos)
            if w == "EXISTS" and self.looks_like_pattern(self.i):
                part = self.pattern_part()
                self.expect_op(")")
                return A.PatternPredicate(part, pos=pos)
            if w in ("SHORTESTPATH", "ALLSHORTESTPATHS"):
                raise self.unsupported(str(t.value), t)
            distinct = self.accept_kw("DISTINCT")
            if not distinct:
                self.accept_kw("ALL")
            args: list[A.Expr] = []
            if not self.at_op(")"):
                args.append(self.expr())
                while self.accept_op(","):
                    args.append(self.expr())
            self.expect_op(")")
            return A.FunctionCall(w.lower(), args, distinct, pos=pos)
        finally:
            self.depth -= 1
