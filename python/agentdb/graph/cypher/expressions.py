"""Compilation of expression ASTs into Python closures ``row -> value``.

A *row* is a dict from variable name to value. :class:`Compiler` checks variables against a
static scope while compiling (so an unknown variable is an error even when no row is ever
produced), resolves parameters, and returns a closure implementing Cypher semantics:

>>> from agentdb.graph.cypher.parser import parse
>>> from agentdb.graph.cypher.graphview import MemoryGraphView
>>> ctx = Context(MemoryGraphView(), {"p": 2})
>>> e = parse("RETURN x * $p + 1").clauses[0].items[0].expr
>>> f = Compiler(ctx).compile(e, {"x": "any"})
>>> f({"x": 20}), f({"x": None})
(41, None)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from . import ast as A
from .errors import CypherError
from .functions import AGGREGATES, ARITH, FUNCTIONS, comparison, in_list, negate, string_op
from .values import Node as PublicNode
from .values import NodeRef, Path, PathRef, Relationship, RelRef, equals, type_name

__all__ = [
    "Row",
    "Fn",
    "Stats",
    "Context",
    "Compiler",
    "free_vars",
    "find_aggregates",
    "substitute",
    "error_at",
    "convert_param",
]

Row = dict
Fn = Callable[[Row], Any]
Scope = Mapping[str, str]  # variable name -> kind: node, rel, rels, path, any


@dataclass
class Stats:
    """Write counters of one query.

    ``relationships_*`` count hyperedges (by edge id); ``properties_set`` counts every property
    written or removed (including those given in CREATE/MERGE patterns).
    """

    nodes_created: int = 0
    relationships_created: int = 0
    properties_set: int = 0
    nodes_deleted: int = 0
    relationships_deleted: int = 0
    labels_added: int = 0
    labels_removed: int = 0

    @property
    def contains_updates(self) -> bool:
        """Whether the query changed the graph."""
        return any(getattr(self, f.name) for f in fields(self))


def error_at(exc: CypherError, pos: Any) -> CypherError:
    """``exc`` with the position ``pos`` attached when it has none yet."""
    if exc.line is None and pos and pos != (0, 0):
        return type(exc)(exc.message, pos[0], pos[1])
    return exc


def err(msg: str, node: A.Node | None) -> CypherError:
    pos = getattr(node, "pos", None)
    if pos and pos != (0, 0):
        return CypherError(msg, pos[0], pos[1])
    return CypherError(msg)


def convert_param(v: Any, depth: int = 0) -> Any:
    """A parameter value as an engine value (tuples become lists, numpy scalars Python ones)."""
    if depth > 100:
        raise CypherError("parameter value nested too deeply")
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [convert_param(x, depth + 1) for x in v]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise CypherError(f"map keys in parameters must be strings, got {k!r}")
            out[k] = convert_param(x, depth + 1)
        return out
    if isinstance(v, PublicNode):
        return NodeRef(v.id)
    if isinstance(v, Relationship):
        return RelRef(v.id, v.start, v.end)
    if isinstance(v, Path):
        return PathRef(
            tuple(n.id for n in v.nodes),
            tuple(RelRef(r.id, r.start, r.end) for r in v.relationships),
        )
    if isinstance(v, (NodeRef, RelRef, PathRef)):
        return v
    tolist = getattr(v, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return convert_param(tolist(), depth + 1)
    raise CypherError(f"unsupported parameter value of type {type(v).__name__}")


class Context:
    """Per-query state: the graph, parameters, write counters and a node/edge read cache."""

    def __init__(self, graph: Any, params: Mapping[str, Any] | None = None) -> None:
        self.graph = graph
        self.params: dict[str, Any] = {}
        self.stats = Stats()
        self._nodes: dict[int, tuple[list[str], dict[str, Any]]] = {}
        self._rels: dict[int, tuple[str, dict[str, Any]]] = {}
        self.reset(params)

    def reset(self, params: Mapping[str, Any] | None) -> None:
        """Start a new run of the same compiled query: new parameter values (the compiled
        expressions read ``params`` when they run), zeroed write counters, empty caches."""
        converted: dict[str, Any] = {}
        for k, v in (params or {}).items():
            if not isinstance(k, str):
                raise CypherError(f"parameter names must be strings, got {k!r}")
            converted[k] = convert_param(v)
        self.params.clear()
        self.params.update(converted)
        self.stats = Stats()
        self._nodes.clear()
        self._rels.clear()

    def node_data(self, nid: int) -> tuple[list[str], dict[str, Any]]:
        """``(labels, properties)`` of a node (cached until the node is written)."""
        d = self._nodes.get(nid)
        if d is None:
            try:
                d = self.graph.node(nid)
            except KeyError:
                raise CypherError(f"node {nid} does not exist (was it deleted?)") from None
            if len(self._nodes) >= 200_000:
                self._nodes.clear()
            self._nodes[nid] = d
        return d

    def rel_data(self, eid: int) -> tuple[str, dict[str, Any]]:
        """``(type, properties)`` of a hyperedge (cached until it is written)."""
        d = self._rels.get(eid)
        if d is None:
            try:
                d = self.graph.relationship(eid)
            except KeyError:
                raise CypherError(
                    f"relationship {eid} does not exist (was it deleted?)"
                ) from None
            if len(self._rels) >= 200_000:
                self._rels.clear()
            self._rels[eid] = d
        return d

    def node_exists(self, nid: int) -> bool:
        try:
            self.node_data(nid)
        except CypherError:
            return False
        return True

    def forget_node(self, nid: int) -> None:
        self._nodes.pop(nid, None)

    def forget_rel(self, eid: int) -> None:
        self._rels.pop(eid, None)

    def get_property(self, v: Any, key: str) -> Any:
        """``v.key`` for a node, relationship or map (null for null)."""
        if v is None:
            return None
        t = type(v)
        if t is NodeRef:
            return self.node_data(v.id)[1].get(key)
        if t is RelRef:
            return self.rel_data(v.id)[1].get(key)
        if t is dict:
            return v.get(key)
        raise CypherError(f"cannot read property '{key}' of a {type_name(v)}")


# ---- static helpers ------------------------------------------------------------------------


def free_vars(e: A.Node) -> set[str]:
    """Variables an expression reads from its row (local reduce/comprehension names excluded).

    >>> from agentdb.graph.cypher.parser import parse
    >>> e = parse("RETURN reduce(s = a, x IN b | s + x + c)").clauses[0].items[0].expr
    >>> sorted(free_vars(e))
    ['a', 'b', 'c']
    """
    out: set[str] = set()
    _free(e, out, frozenset())
    return out


def _free(e: A.Node, out: set[str], bound: frozenset[str]) -> None:
    if isinstance(e, A.Variable):
        if e.name not in bound:
            out.add(e.name)
        return
    if isinstance(e, A.Reduce):
        _free(e.init, out, bound)
        _free(e.source, out, bound)
        _free(e.body, out, bound | {e.accumulator, e.variable})
        return
    if isinstance(e, A.ListComprehension):
        _free(e.source, out, bound)
        inner = bound | {e.variable}
        if e.predicate is not None:
            _free(e.predicate, out, inner)
        if e.projection is not None:
            _free(e.projection, out, inner)
        return
    if isinstance(e, A.Quantifier):
        _free(e.source, out, bound)
        _free(e.predicate, out, bound | {e.variable})
        return
    if isinstance(e, A.PatternPredicate):
        for n in e.pattern.nodes:
            if n.variable and n.variable not in bound:
                out.add(n.variable)
            if n.properties is not None:
                _free(n.properties, out, bound)
        for r in e.pattern.rels:
            if r.variable and r.variable not in bound:
                out.add(r.variable)
            if r.properties is not None:
                _free(r.properties, out, bound)
        return
    for c in A.children(e):
        _free(c, out, bound)


def find_aggregates(e: A.Node) -> list[A.Expr]:
    """Aggregate calls in ``e`` (not looking inside them; nested aggregates are an error)."""
    out: list[A.Expr] = []
    stack: list[A.Node] = [e]
    while stack:
        cur = stack.pop()
        if isinstance(cur, A.CountStar) or (
            isinstance(cur, A.FunctionCall) and cur.name in AGGREGATES
        ):
            out.append(cur)  # type: ignore[arg-type]
            for c in A.children(cur):
                for inner in A.walk(c):
                    if isinstance(inner, A.CountStar) or (
                        isinstance(inner, A.FunctionCall) and inner.name in AGGREGATES
                    ):
                        raise err("aggregate functions cannot be nested", inner)
            continue
        stack.extend(reversed(A.children(cur)))
    return out


def substitute(e: A.Expr, table: list[tuple[A.Expr, str]]) -> A.Expr:
    """Replace every sub-expression equal to a table entry by ``Variable(name)``."""
    for expr, name in table:
        if e == expr:
            return A.Variable(name, pos=e.pos)
    if isinstance(e, (A.Reduce, A.ListComprehension, A.Quantifier, A.PatternPredicate)):
        return e  # local scopes: leave alone
    changes: dict[str, Any] = {}
    for f in fields(e):  # type: ignore[arg-type]
        if not f.compare:
            continue
        v = getattr(e, f.name)
        if isinstance(v, A.Expr):
            nv = substitute(v, table)
            if nv is not v:
                changes[f.name] = nv
        elif isinstance(v, list) and v and isinstance(v[0], A.Expr):
            nl = [substitute(x, table) for x in v]
            if any(a is not b for a, b in zip(nl, v)):
                changes[f.name] = nl
        elif isinstance(v, list) and v and isinstance(v[0], tuple):
            nt = [tuple(substitute(x, table) if isinstance(x, A.Expr) else x for x in t)
                  for t in v]
            if any(any(a is not b for a, b in zip(t1, t2)) for t1, t2 in zip(nt, v)):
                changes[f.name] = nt
    return replace(e, **changes) if changes else e  # type: ignore[type-var]


def _bool_check(v: Any, what: str, node: A.Node) -> None:
    raise err(f"{what} expects boolean operands, got {type_name(v)}", node)


# ---- the compiler --------------------------------------------------------------------------


class Compiler:
    """Compiles expressions against a scope; ``aggs`` maps aggregate AST nodes to row slots."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def compile(
        self, e: A.Expr, scope: Scope, aggs: Mapping[int, str] | None = None
    ) -> Fn:
        method = getattr(self, "_c_" + type(e).__name__, None)
        if method is None:  # pragma: no cover - every expression class has a method
            raise err(f"unsupported expression {type(e).__name__}", e)
        return method(e, scope, aggs)  # type: ignore[no-any-return]

    def compile_all(
        self, es: Iterable[A.Expr], scope: Scope, aggs: Mapping[int, str] | None = None
    ) -> list[Fn]:
        return [self.compile(e, scope, aggs) for e in es]

    def predicate(self, e: A.Expr, scope: Scope) -> Fn:
        """A WHERE predicate: callers keep a row when the closure returns ``True``.

        A result that is neither boolean nor null is an error.
        """
        g = self.compile(e, scope)
        if isinstance(e, (A.BoolOp, A.Comparison, A.IsNull, A.PatternPredicate)):
            return g  # always boolean or null
        node = e

        def f(row: Row) -> Any:
            v = g(row)
            if v is not None and type(v) is not bool:
                raise err(f"WHERE expects a boolean, got {type_name(v)}", node)
            return v

        return f

    # ---- leaves ----------------------------------------------------------------------------

    def _c_Literal(self, e: A.Literal, scope: Scope, aggs: Any) -> Fn:
        v = e.value
        return lambda row: v

    def _c_Parameter(self, e: A.Parameter, scope: Scope, aggs: Any) -> Fn:
        if e.name not in self.ctx.params:
            raise err(f"missing parameter ${e.name}", e)
        params, name = self.ctx.params, e.name  # read when run: a cached plan reruns
        return lambda row: params[name]

    def _c_Variable(self, e: A.Variable, scope: Scope, aggs: Any) -> Fn:
        name = e.name
        if name not in scope:
            raise err(f"variable `{name}` not defined", e)

        def f(row: Row) -> Any:
            return row.get(name)

        return f

    # ---- structure -------------------------------------------------------------------------

    def _c_Property(self, e: A.Property, scope: Scope, aggs: Any) -> Fn:
        subj = self.compile(e.subject, scope, aggs)
        key = e.key
        get = self.ctx.get_property
        pos = e.pos

        def f(row: Row) -> Any:
            try:
                return get(subj(row), key)
            except CypherError as exc:
                raise error_at(exc, pos) from None

        return f

    def _c_ListLiteral(self, e: A.ListLiteral, scope: Scope, aggs: Any) -> Fn:
        fs = self.compile_all(e.items, scope, aggs)
        return lambda row: [f(row) for f in fs]

    def _c_MapLiteral(self, e: A.MapLiteral, scope: Scope, aggs: Any) -> Fn:
        items = [(k, self.compile(v, scope, aggs)) for k, v in e.items]
        return lambda row: {k: f(row) for k, f in items}

    def _c_Index(self, e: A.Index, scope: Scope, aggs: Any) -> Fn:
        subj = self.compile(e.subject, scope, aggs)
        idx = self.compile(e.index, scope, aggs)
        get = self.ctx.get_property
        node = e

        def f(row: Row) -> Any:
            s = subj(row)
            i = idx(row)
            if s is None or i is None:
                return None
            if type(s) is list:
                if type(i) is not int:
                    raise err(f"list index must be an Integer, got {type_name(i)}", node)
                if -len(s) <= i < len(s):
                    return s[i]
                return None
            if type(i) is str and type(s) in (dict, NodeRef, RelRef):
                return get(s, i)
            raise err(f"cannot index a {type_name(s)} with a {type_name(i)}", node)

        return f

    def _c_Slice(self, e: A.Slice, scope: Scope, aggs: Any) -> Fn:
        subj = self.compile(e.subject, scope, aggs)
        lo = self.compile(e.start, scope, aggs) if e.start is not None else None
        hi = self.compile(e.end, scope, aggs) if e.end is not None else None
        node = e

        def f(row: Row) -> Any:
            s = subj(row)
            a = lo(row) if lo is not None else 0
            b = hi(row) if hi is not None else (len(s) if type(s) is list else 0)
            if s is None or a is None or b is None:
                return None
            if type(s) is not list:
                raise err(f"cannot slice a {type_name(s)}", node)
            if type(a) is not int or type(b) is not int:
                raise err("list slice bounds must be Integers", node)
            return s[a:b]

        return f

    def _c_HasLabels(self, e: A.HasLabels, scope: Scope, aggs: Any) -> Fn:
        subj = self.compile(e.subject, scope, aggs)
        labels = list(e.labels)
        ctx = self.ctx
        node = e

        def f(row: Row) -> Any:
            v = subj(row)
            if v is None:
                return None
            if type(v) is not NodeRef:
                raise err(f"label predicates need a Node, got {type_name(v)}", node)
            have = ctx.node_data(v.id)[0]
            return all(lab in have for lab in labels)

        return f

    # ---- operators -------------------------------------------------------------------------

    def _c_Unary(self, e: A.Unary, scope: Scope, aggs: Any) -> Fn:
        g = self.compile(e.operand, scope, aggs)
        node = e
        if e.op == "NOT":

            def f_not(row: Row) -> Any:
                v = g(row)
                if v is None:
                    return None
                if type(v) is not bool:
                    _bool_check(v, "NOT", node)
                return not v

            return f_not
        if e.op == "-":

            def f_neg(row: Row) -> Any:
                try:
                    return negate(g(row))
                except CypherError as exc:
                    raise error_at(exc, node.pos) from None

            return f_neg

        def f_pos(row: Row) -> Any:
            v = g(row)
            if v is not None and type(v) not in (int, float):
                raise err(f"unary + expects a number, got {type_name(v)}", node)
            return v

        return f_pos

    def _c_BoolOp(self, e: A.BoolOp, scope: Scope, aggs: Any) -> Fn:
        fs = self.compile_all(e.operands, scope, aggs)
        node = e
        if e.op == "AND":

            def f_and(row: Row) -> Any:
                res: bool | None = True
                for g in fs:
                    v = g(row)
                    if v is False:
                        return False
                    if v is None:
                        res = None
                    elif v is not True:
                        _bool_check(v, "AND", node)
                return res

            return f_and
        if e.op == "OR":

            def f_or(row: Row) -> Any:
                res: bool | None = False
                for g in fs:
                    v = g(row)
                    if v is True:
                        return True
                    if v is None:
                        res = None
                    elif v is not False:
                        _bool_check(v, "OR", node)
                return res

            return f_or

        def f_xor(row: Row) -> Any:
            res: bool | None = False
            for g in fs:
                v = g(row)
                if v is None:
                    res = None
                elif type(v) is not bool:
                    _bool_check(v, "XOR", node)
                elif res is not None:
                    res = res != v
            return res

        return f_xor

    def _c_Arithmetic(self, e: A.Arithmetic, scope: Scope, aggs: Any) -> Fn:
        fs = self.compile_all(e.operands, scope, aggs)
        ops = [ARITH[o] for o in e.ops]
        first = fs[0]
        rest = list(zip(ops, fs[1:]))
        pos = e.pos

        def f(row: Row) -> Any:
            acc = first(row)
            try:
                for op, g in rest:
                    acc = op(acc, g(row))
            except CypherError as exc:
                raise error_at(exc, pos) from None
            return acc

        return f

    def _c_Comparison(self, e: A.Comparison, scope: Scope, aggs: Any) -> Fn:
        fs = self.compile_all(e.operands, scope, aggs)
        ops = list(e.ops)
        if len(ops) == 1:
            a, b = fs
            op = ops[0]
            if op == "=":
                return lambda row: equals(a(row), b(row))
            return lambda row: comparison(op, a(row), b(row))

        def f(row: Row) -> Any:
            res: bool | None = True
            left = fs[0](row)
            for op, g in zip(ops, fs[1:]):
                right = g(row)
                r = comparison(op, left, right)
                if r is False:
                    return False
                if r is None:
                    res = None
                left = right
            return res

        return f

    def _c_BinaryOp(self, e: A.BinaryOp, scope: Scope, aggs: Any) -> Fn:
        a = self.compile(e.left, scope, aggs)
        b = self.compile(e.right, scope, aggs)
        op = e.op
        pos = e.pos
        if op == "IN":

            def f_in(row: Row) -> Any:
                try:
                    return in_list(a(row), b(row))
                except CypherError as exc:
                    raise error_at(exc, pos) from None

            return f_in

        def f(row: Row) -> Any:
            try:
                return string_op(op, a(row), b(row))
            except CypherError as exc:
                raise error_at(exc, pos) from None

        return f

    def _c_IsNull(self, e: A.IsNull, scope: Scope, aggs: Any) -> Fn:
        g = self.compile(e.operand, scope, aggs)
        if e.negated:
            return lambda row: g(row) is not None
        return lambda row: g(row) is None

    def _c_Case(self, e: A.Case, scope: Scope, aggs: Any) -> Fn:
        whens = [(self.compile(c, scope, aggs), self.compile(r, scope, aggs)) for c, r in e.whens]
        default = self.compile(e.default, scope, aggs) if e.default is not None else None
        if e.subject is not None:
            subj = self.compile(e.subject, scope, aggs)

            def f_simple(row: Row) -> Any:
                v = subj(row)
                for c, r in whens:
                    if equals(v, c(row)) is True:
                        return r(row)
                return default(row) if default is not None else None

            return f_simple

        def f(row: Row) -> Any:
            for c, r in whens:
                if c(row) is True:
                    return r(row)
            return default(row) if default is not None else None

        return f

    # ---- local scopes ----------------------------------------------------------------------

    def _local_scope(self, scope: Scope, *names: str) -> dict[str, str]:
        s = dict(scope)
        for n in names:
            s[n] = "any"
        return s

    def _list_source(self, src: Fn, node: A.Node) -> Callable[[Row], list[Any] | None]:
        def f(row: Row) -> list[Any] | None:
            v = src(row)
            if v is None:
                return None
            if type(v) is not list:
                raise err(f"expected a List to iterate over, got {type_name(v)}", node)
            return v  # type: ignore[no-any-return]

        return f

    def _c_Reduce(self, e: A.Reduce, scope: Scope, aggs: Any) -> Fn:
        init = self.compile(e.init, scope, aggs)
        src = self._list_source(self.compile(e.source, scope, aggs), e)
        body = self.compile(e.body, self._local_scope(scope, e.accumulator, e.variable), aggs)
        acc_name = e.accumulator
        var = e.variable

        def f(row: Row) -> Any:
            lst = src(row)
            acc = init(row)
            if lst is None:
                return None
            r = dict(row)
            for x in lst:
                r[var] = x
                r[acc_name] = acc
                acc = body(r)
            return acc

        return f

    def _c_ListComprehension(self, e: A.ListComprehension, scope: Scope, aggs: Any) -> Fn:
        src = self._list_source(self.compile(e.source, scope, aggs), e)
        inner = self._local_scope(scope, e.variable)
        pred = self.compile(e.predicate, inner, aggs) if e.predicate is not None else None
        proj = self.compile(e.projection, inner, aggs) if e.projection is not None else None
        var = e.variable

        def f(row: Row) -> Any:
            lst = src(row)
            if lst is None:
                return None
            r = dict(row)
            out = []
            for x in lst:
                r[var] = x
                if pred is not None and pred(r) is not True:
                    continue
                out.append(proj(r) if proj is not None else x)
            return out

        return f

    def _c_Quantifier(self, e: A.Quantifier, scope: Scope, aggs: Any) -> Fn:
        src = self._list_source(self.compile(e.source, scope, aggs), e)
        pred = self.compile(e.predicate, self._local_scope(scope, e.variable), aggs)
        var = e.variable
        kind = e.kind

        def f(row: Row) -> Any:
            lst = src(row)
            if lst is None:
                return None
            r = dict(row)
            trues = nulls = 0
            for x in lst:
                r[var] = x
                v = pred(r)
                if v is True:
                    trues += 1
                    if kind == "any" or kind == "none" or (kind == "single" and trues > 1):
                        break
                elif v is None:
                    nulls += 1
                elif v is False:
                    if kind == "all":
                        return False
                else:
                    raise err(f"{kind}() predicate must be boolean, got {type_name(v)}", e)
            if kind == "any":
                return True if trues else (None if nulls else False)
            if kind == "none":
                return False if trues else (None if nulls else True)
            if kind == "all":
                return None if nulls else True
            if trues > 1:
                return False
            return None if nulls else trues == 1

        return f

    # ---- functions -------------------------------------------------------------------------

    def _c_CountStar(self, e: A.CountStar, scope: Scope, aggs: Mapping[int, str] | None) -> Fn:
        return self._aggregate_slot(e, aggs)

    def _aggregate_slot(self, e: A.Expr, aggs: Mapping[int, str] | None) -> Fn:
        if aggs is None or id(e) not in aggs:
            name = "count" if isinstance(e, A.CountStar) else getattr(e, "name", "?")
            raise err(f"aggregate function {name}() is not allowed here", e)
        slot = aggs[id(e)]
        return lambda row: row[slot]

    def _c_FunctionCall(
        self, e: A.FunctionCall, scope: Scope, aggs: Mapping[int, str] | None
    ) -> Fn:
        name = e.name
        if name in AGGREGATES:
            return self._aggregate_slot(e, aggs)
        if e.distinct:
            raise err(f"DISTINCT is only allowed in aggregate functions, not {name}()", e)
        if name == "coalesce":
            if not e.args:
                raise err("coalesce() needs at least one argument", e)
            fs = self.compile_all(e.args, scope, aggs)

            def f_coalesce(row: Row) -> Any:
                for g in fs:
                    v = g(row)
                    if v is not None:
                        return v
                return None

            return f_coalesce
        if name == "exists":
            if len(e.args) != 1:
                raise err("exists() takes exactly one argument", e)
            g = self.compile(e.args[0], scope, aggs)
            return lambda row: g(row) is not None
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise err(f"unknown function '{name}'", e)
        lo, hi, impl = spec
        if not lo <= len(e.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise err(f"{name}() takes {want} argument(s), got {len(e.args)}", e)
        fs = self.compile_all(e.args, scope, aggs)
        ctx = self.ctx
        pos = e.pos
        if len(fs) == 1:
            g1 = fs[0]

            def f1(row: Row) -> Any:
                try:
                    return impl(ctx, g1(row))
                except CypherError as exc:
                    raise error_at(exc, pos) from None

            return f1

        def f(row: Row) -> Any:
            try:
                return impl(ctx, *[g(row) for g in fs])
            except CypherError as exc:
                raise error_at(exc, pos) from None

        return f

    def _c_PatternPredicate(self, e: A.PatternPredicate, scope: Scope, aggs: Any) -> Fn:
        # Pattern predicates need the matcher, which is built on this module: the matcher's
        # PatternCompiler overrides this method, so no import goes back up.
        raise err("pattern predicates need the matcher's PatternCompiler", e)
