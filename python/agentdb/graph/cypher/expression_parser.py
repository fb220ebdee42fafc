"""The expression half of the Cypher parser: token helpers (peek, expect, errors with line
and column) and precedence climbing over operators, literals, lists, maps, CASE, function
calls, property chains and pattern predicates. :class:`~agentdb.graph.cypher.parser.Parser`
extends it with clauses and patterns.

>>> from agentdb.graph.cypher.parser import Parser
>>> Parser("1 + 2 * 3").expr()
Arithmetic(operands=[Literal(value=1), Arithmetic(operands=[Literal(value=2), Literal(value=3)], ops=['*'])], ops=['+'])
"""  # noqa: E501

from __future__ import annotations

from . import ast as A
from .errors import CypherSyntaxError
from .lexer import Token, bracket_pairs, tokenize

__all__ = ["INT_MAX", "INT_MIN", "MAX_DEPTH", "NOT_VARIABLES", "ExpressionParser"]

MAX_DEPTH = 200
INT_MAX = 2**63 - 1
INT_MIN = -(2**63)

# Words that cannot start an expression as a variable name (they would make errors confusing).
NOT_VARIABLES = frozenset(
    """MATCH OPTIONAL WHERE RETURN WITH CREATE MERGE SET DELETE DETACH REMOVE UNWIND ORDER BY
    SKIP LIMIT ASC DESC ASCENDING DESCENDING AND OR XOR NOT IN IS AS STARTS ENDS CONTAINS WHEN
    THEN ELSE UNION CALL YIELD DISTINCT ON FOREACH""".split()
)
_COMPARISON = {"=", "<>", "!=", "<", "<=", ">", ">="}
# binding powers (higher binds tighter)
_BP_OR, _BP_XOR, _BP_AND, _BP_NOT, _BP_CMP, _BP_PRED, _BP_ADD, _BP_MUL, _BP_POW, _BP_UNARY = range(
    1, 11
)


class ExpressionParser:
    """Token helpers and expressions over the token list of ``text`` (the clause and pattern
    methods it calls, such as ``pattern_part``, come from the subclass)."""


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
        if w in NOT_VARIABLES:
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
