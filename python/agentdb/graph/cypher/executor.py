"""Query execution: clauses compiled into a pipeline of row operators.

:func:`execute` returns the result rows; :func:`execute_stats` returns a :class:`Result` with the
rows, the column names and the write counters (:class:`~agentdb.graph.cypher.expressions.Stats`):

>>> from agentdb.graph.cypher import MemoryGraphView
>>> g = MemoryGraphView(clock=lambda: 0.0)
>>> res = execute_stats(g, "CREATE (a:Person {name: 'Ada'})-[:KNOWS]->(b:Person {name: 'Bob'})")
>>> (res.stats.nodes_created, res.stats.relationships_created, res.stats.properties_set)
(2, 1, 2)
>>> execute(g, "MATCH (a)-[:KNOWS]->(b) RETURN a.name AS a, b.name AS b")
[{'a': 'Ada', 'b': 'Bob'}]

Every clause is compiled before anything runs, so unknown variables, unknown functions and
missing parameters are reported even when no row would reach them. Reading clauses stream rows
lazily (``LIMIT`` stops the matching early); writing clauses first materialise their input rows,
then apply their changes row by row, so a clause never sees its own writes while matching.
Writes go straight to the graph: there is no transaction, so a query that fails half-way keeps
the writes made before the failure.
"""

from __future__ import annotations

import gc
import itertools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import ast as A
from . import pushdown
from .budget import QueryBudget, running
from .errors import CypherError, CypherSyntaxError
from .expressions import (
    Context,
    Fn,
    Row,
    Stats,
    err,
    find_aggregates,
    free_vars,
    substitute,
)
from .functions import check_int
from .graphview import GraphView
from .matcher import MatchPlan, PatternCompiler
from .parser import parse, split_mode
from .values import (
    Node,
    NodeRef,
    Path,
    PathRef,
    Relationship,
    RelRef,
    group_key,
    sort_key,
    type_name,
)
from .writes import Op, Scope, WriteCompiler

__all__ = ["PlanCache", "Result", "Stats", "execute", "execute_stats"]



@dataclass
class Result:
    """Rows (dicts keyed by column name, in column order), column names and write counters."""

    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def execute(
    graph: GraphView, query: str, params: Mapping[str, Any] | None = None, *,
    budget: QueryBudget | None = None,
) -> list[dict[str, Any]]:
    """Run ``query`` on ``graph`` (a :class:`~.graphview.GraphView`); return rows.

    Nodes, relationships and paths in the rows are :class:`~.values.Node`,
    :class:`~.values.Relationship` and :class:`~.values.Path`.
    A query without RETURN returns ``[]``. Raises :class:`CypherError` for any query problem,
    and, with a ``budget`` (:class:`~.budget.QueryBudget`), its subclasses
    ``QueryTimeoutError``, ``QueryCancelledError`` and ``QueryLimitError`` when the query
    runs past the budget's deadline, is cancelled, or returns more than its ``max_rows``.

    >>> from agentdb.graph.cypher import MemoryGraphView
    >>> from agentdb.graph.cypher.budget import QueryBudget
    >>> g = MemoryGraphView()
    >>> for i in range(30):
    ...     _ = g.add_node(["N"], {"i": i})
    >>> try:
    ...     execute(g, "MATCH (a), (b), (c), (d), (e) RETURN count(*)",
    ...             budget=QueryBudget(timeout=0.2))
    ... except TimeoutError as exc:
    ...     print(exc)
    query exceeded its timeout of 0.2 s
    """
    return execute_stats(graph, query, params, budget=budget).rows


def _ticking(rows: Iterable[Row], budget: QueryBudget) -> Iterator[Row]:
    tick = budget.tick
    for row in rows:
        tick()
        yield row


def execute_stats(
    graph: GraphView, query: str, params: Mapping[str, Any] | None = None, *,
    budget: QueryBudget | None = None,
) -> Result:
    """Like :func:`execute`, but return a :class:`Result` carrying columns and write counters."""
    with running(budget):
        return _execute(graph, query, params, budget)


@dataclass
class _Plan:
    """A compiled query: its operators, output columns, and what EXPLAIN says of them. The
    operators read ``ctx`` (parameters, counters) when they run, so a plan reruns after
    ``ctx.reset(params)``."""

    ctx: Context
    ops: list[Op]
    columns: list[str]
    returns: bool
    details: list[tuple[str, str]]


class PlanCache:
    """Compiled plans of a graph's queries, keyed by the query text and its parameter names
    (and the graph's ``plan_generation``, which changes when its indexes do). A plan is taken
    out while it runs, so two threads never share one; up to ``size`` keys are kept (least
    recently used dropped), ``per_key`` idle plans each.

    >>> cache = PlanCache(size=2)
    >>> cache.take(("q", (), 0)) is None
    True
    >>> cache.hits, cache.misses
    (0, 1)
    """

    def __init__(self, size: int = 256, per_key: int = 4) -> None:
        self.size, self.per_key = size, per_key
        self._idle: OrderedDict[Any, list[_Plan]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def take(self, key: Any) -> _Plan | None:
        """An idle plan for ``key`` (removed from the cache until :meth:`give`), or None."""
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                self._idle.move_to_end(key)
                self.hits += 1
                return idle.pop()
            self.misses += 1
            return None

    def give(self, key: Any, plan: _Plan) -> None:
        """Return a plan after its run."""
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            if len(idle) < self.per_key:
                idle.append(plan)
            while len(self._idle) > self.size:
                self._idle.popitem(last=False)

    def clear(self) -> None:
        """Drop every plan."""
        with self._lock:
            self._idle.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())


def _compile(graph: GraphView, text: str, params: Mapping[str, Any] | None) -> _Plan:
    ast = parse(text)
    ctx = Context(graph, params)
    compiler = _QueryCompiler(ctx)
    ops, columns, returns = compiler.compile(ast)
    native = pushdown.plan(ast, compiler.comp)  # a whole query the core answers alone
    if native is not None:
        return _Plan(ctx, [pushdown.op_for(native, ops, graph)], columns, returns,
                     [("NATIVE AGGREGATE", native.describe())])
    return _Plan(ctx, ops, columns, returns, compiler.details)


class _Meter:
    __slots__ = ("rows", "seconds")

    def __init__(self) -> None:
        self.rows = 0
        self.seconds = 0.0


def _metered(rows: Iterable[Row], meter: _Meter) -> Iterator[Row]:
    it = iter(rows)
    clock = time.perf_counter
    while True:
        t0 = clock()
        try:
            row = next(it)
        except StopIteration:
            meter.seconds += clock() - t0
            return
        meter.seconds += clock() - t0
        meter.rows += 1
        yield row


def _execute(graph: GraphView, query: str, params: Mapping[str, Any] | None,
             budget: QueryBudget | None) -> Result:
    mode, query = split_mode(query)
    cache: PlanCache | None = getattr(graph, "plan_cache", None)
    key: Any = None
    plan: _Plan | None = None
    try:
        if cache is not None:
            key = (query, tuple(sorted(params or ())), getattr(graph, "plan_generation", 0))
            plan = cache.take(key)
        if plan is not None:
            plan.ctx.reset(params)
        else:
            plan = _compile(graph, query, params)
        if mode == "EXPLAIN":
            rows_out = [{"step": i + 1, "operator": op, "detail": detail}
                        for i, (op, detail) in enumerate(plan.details)]
            if cache is not None:
                cache.give(key, plan)
            return Result(["step", "operator", "detail"], rows_out, Stats())
        result = _run(plan, budget, profile=mode == "PROFILE")
        if cache is not None:
            cache.give(key, plan)
        return result
    except RecursionError:
        raise CypherError("query too deeply nested or too complex to evaluate") from None


def _run(plan: _Plan, budget: QueryBudget | None, profile: bool) -> Result:
    ctx, columns, returns = plan.ctx, plan.columns, plan.returns
    if budget is not None:
        budget.check()
    meters = [_Meter() for _ in plan.ops] if profile else []
    rows: Iterable[Row] = [{}]
    for i, op in enumerate(plan.ops):
        rows = op(rows)
        if budget is not None:
            rows = _ticking(rows, budget)
        if profile:
            rows = _metered(rows, meters[i])
    out: list[dict[str, Any]] = []
    # Results are acyclic (dicts, lists, Node/Relationship/Path snapshots): pause the
    # cyclic collector while they are built, or each collection re-walks the growing
    # result (and every other live object) -- quadratic on large results.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    t_start = time.perf_counter()
    try:
        if returns and not profile:
            conv = _Publisher(ctx)
            for row in rows:
                if budget is not None:
                    budget.count_row()
                out.append({name: conv.value(row[name]) for name in columns})
        else:
            for _ in rows:
                pass
    finally:
        if paused:
            gc.enable()
    if not profile:
        return Result(columns if returns else [], out, ctx.stats)
    total = time.perf_counter() - t_start
    prof: list[dict[str, Any]] = []
    before = 0.0
    for i, ((op, detail), meter) in enumerate(zip(plan.details, meters)):
        own = max(meter.seconds - before, 0.0)  # a meter's time includes its inputs'
        before = meter.seconds
        prof.append({"step": i + 1, "operator": op, "detail": detail, "rows": meter.rows,
                     "ms": round(own * 1e3, 3),
                     "share": round(own / total, 3) if total > 0 else 0.0})
    return Result(["step", "operator", "detail", "rows", "ms", "share"], prof, ctx.stats)


# ---- output --------------------------------------------------------------------------------


class _Publisher:
    """Turns engine values into public values (snapshots of the graph)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def node(self, nid: int) -> Node:
        try:
            labels, props = self.ctx.node_data(nid)
        except CypherError:  # deleted by this query
            return Node(nid, [], {})
        return Node(nid, list(labels), dict(props))

    def rel(self, r: RelRef) -> Relationship:
        try:
            typ, props = self.ctx.rel_data(r.id)
        except CypherError:
            return Relationship(r.id, "", r.start, r.end, {})
        return Relationship(r.id, typ, r.start, r.end, dict(props))

    def value(self, v: Any) -> Any:
        t = type(v)
        if t is NodeRef:
            return self.node(v.id)
        if t is RelRef:
            return self.rel(v)
        if t is PathRef:
            return Path([self.node(n) for n in v.nodes], [self.rel(r) for r in v.rels])
        if t is list:
            return [self.value(x) for x in v]
        if t is dict:
            return {k: self.value(x) for k, x in v.items()}
        return v


# ---- aggregation ---------------------------------------------------------------------------


class _Acc:
    """One aggregate's accumulator."""

    def __init__(self, kind: str, distinct: bool) -> None:
        self.kind = kind
        self.seen: set[Any] | None = set() if distinct else None
        self.n = 0
        self.items: list[Any] = []
        self.total: Any = 0
        self.best: Any = None

    def add(self, v: Any) -> None:
        kind = self.kind
        if kind == "count*":
            self.n += 1
            return
        if v is None:
            return
        if self.seen is not None:
            k = group_key(v)
            if k in self.seen:
                return
            self.seen.add(k)
        if kind == "count":
            self.n += 1
        elif kind == "collect":
            self.items.append(v)
        elif kind in ("sum", "avg"):
            if type(v) not in (int, float):
                raise CypherError(f"{kind}() expects numbers, got {type_name(v)}")
            self.total = self.total + v
            self.n += 1
        elif kind == "min":
            if self.best is None or sort_key(v) < sort_key(self.best):
                self.best = v
        elif kind == "max":
            if self.best is None or sort_key(v) > sort_key(self.best):
                self.best = v

    def result(self) -> Any:
        kind = self.kind
        if kind in ("count*", "count"):
            return self.n
        if kind == "collect":
            return list(self.items)
        if kind == "sum":
            return check_int(self.total) if type(self.total) is int else self.total
        if kind == "avg":
            if self.n == 0:
                return None
            try:
                return self.total / self.n
            except OverflowError:  # pragma: no cover - huge integer sums
                return math.inf
        return self.best


# ---- helpers -------------------------------------------------------------------------------


def _const_int(fn: Fn | None, what: str, node: A.Node | None) -> int | None:
    if fn is None:
        return None
    v = fn({})
    if type(v) is not int or v < 0:
        raise err(f"{what} must be a non-negative integer, got {v!r}", node)
    return int(v)


class _QueryCompiler(WriteCompiler):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.comp = PatternCompiler(ctx)

    def compile(self, q: A.Query) -> tuple[list[Op], list[str], bool]:
        scope: Scope = {}
        ops: list[Op] = []
        columns: list[str] = []
        returns = False
        self.details: list[tuple[str, str]] = []
        for clause in q.clauses:
            self._detail = ""
            name = type(clause).__name__.upper()
            if isinstance(clause, A.Match):
                op, scope = self.match(clause, scope)
                name = "OPTIONAL MATCH" if clause.optional else "MATCH"
            elif isinstance(clause, A.Unwind):
                op, scope = self.unwind(clause, scope)
                self._detail = f"AS {clause.variable}"
            elif isinstance(clause, (A.With, A.Return)):
                op, scope, columns = self.projection(clause, scope)
                returns = isinstance(clause, A.Return)
            elif isinstance(clause, A.Create):
                op, scope = self.create(clause, scope)
            elif isinstance(clause, A.Merge):
                op, scope = self.merge(clause, scope)
            elif isinstance(clause, A.SetClause):
                op = self.set_clause(clause, scope)
            elif isinstance(clause, A.Remove):
                op = self.remove(clause, scope)
            elif isinstance(clause, A.Delete):
                op = self.delete(clause, scope)
            else:  # pragma: no cover - the parser produces only the clauses above
                raise err(f"unsupported clause {type(clause).__name__}", clause)
            if isinstance(clause, A.SetClause):
                name = "SET"
            ops.append(op)
            self.details.append((name, self._detail))
        return ops, columns, returns

    # ---- reading ---------------------------------------------------------------------------

    def match(self, c: A.Match, scope: Scope) -> tuple[Op, Scope]:
        plan = MatchPlan(self.comp, c.patterns, c.where, scope)
        self._detail = "; ".join(line.strip() for line in plan.describe())
        if not c.optional:

            def op(rows: Iterable[Row]) -> Iterator[Row]:
                for row in rows:
                    yield from plan.run(row)

            return op, plan.new_scope
        new = plan.new_vars

        def op_optional(rows: Iterable[Row]) -> Iterator[Row]:
            for row in rows:
                found = False
                for r in plan.run(row):
                    found = True
                    yield r
                if not found:
                    r = dict(row)
                    for v in new:
                        r[v] = None
                    yield r

        return op_optional, plan.new_scope

    def unwind(self, c: A.Unwind, scope: Scope) -> tuple[Op, Scope]:
        f = self.comp.compile(c.expr, scope)
        var = c.variable
        if var in scope:
            raise err(f"variable `{var}` already declared", c)
        new_scope = dict(scope)
        new_scope[var] = "any"

        def op(rows: Iterable[Row]) -> Iterator[Row]:
            for row in rows:
                v = f(row)
                if v is None:
                    continue
                for x in v if type(v) is list else [v]:
                    r = dict(row)
                    r[var] = x
                    yield r

        return op, new_scope

    # ---- projection ------------------------------------------------------------------------

    def projection(self, c: A.With | A.Return, scope: Scope) -> tuple[Op, Scope, list[str]]:
        is_return = isinstance(c, A.Return)
        what = "RETURN" if is_return else "WITH"
        items: list[A.ReturnItem] = []
        if c.star:
            if not scope and not c.items:
                raise err(f"{what} * is not allowed when no variables are in scope", c)
            items = [
                A.ReturnItem(A.Variable(n, pos=c.pos), None, n, pos=c.pos) for n in sorted(scope)
            ]
        items += c.items
        names: list[str] = []
        for it in items:
            if not is_return and it.alias is None and not isinstance(it.expr, A.Variable):
                raise CypherSyntaxError(
                    "expression in WITH must be aliased (use AS)", it.pos[0], it.pos[1]
                )
            if it.name in names:
                raise err(f"column name `{it.name}` appears more than once in {what}", it)
            names.append(it.name)
        comp = self.comp
        slots: dict[int, str] = {}
        specs: list[tuple[str, str, bool, Fn | None]] = []
        item_aggs = [find_aggregates(it.expr) for it in items]
        is_agg = any(item_aggs)
        agg_scope = dict(scope)
        for aggs in item_aggs:
            for a in aggs:
                slot = f"  agg{len(specs)}"
                slots[id(a)] = slot
                agg_scope[slot] = "any"
                if isinstance(a, A.CountStar):
                    specs.append((slot, "count*", False, None))
                else:
                    assert isinstance(a, A.FunctionCall)
                    if len(a.args) != 1:
                        raise err(f"{a.name}() takes exactly one argument", a)
                    specs.append((slot, a.name, a.distinct, comp.compile(a.args[0], scope)))
        item_fns: list[tuple[str, bool, Fn]] = []
        for it, aggs in zip(items, item_aggs):
            if aggs:
                item_fns.append((it.name, False, comp.compile(it.expr, agg_scope, slots)))
            else:
                item_fns.append((it.name, True, comp.compile(it.expr, scope)))
        new_scope: Scope = {}
        for it in items:
            kind = scope.get(it.expr.name, "any") if isinstance(it.expr, A.Variable) else "any"
            new_scope[it.name] = kind
        # ORDER BY: may use the projected names; without aggregation/DISTINCT also the old ones
        table = [(it.expr, it.name) for it in items]
        sort_scope = new_scope if (is_agg or c.distinct) else {**scope, **new_scope}
        sort_fns: list[tuple[Fn, bool]] = []
        for s in c.order:
            e = substitute(s.expr, table)
            if find_aggregates(e):
                raise err(
                    "an aggregate in ORDER BY must also be a column of the projection", s
                )
            sort_fns.append((comp.compile(e, sort_scope), s.descending))
        merged_sort = not (is_agg or c.distinct)
        skip_fn = self._constant(c.skip, "SKIP")
        limit_fn = self._constant(c.limit, "LIMIT")
        where_fn = None
        if isinstance(c, A.With) and c.where is not None:
            where_fn = comp.predicate(c.where, new_scope)
        key_fns = [f for _, is_key, f in item_fns if is_key]
        distinct = c.distinct
        flags = [w for w, on in (("aggregate", is_agg), ("distinct", distinct),
                                 ("order by", bool(sort_fns)), ("skip", c.skip is not None),
                                 ("limit", c.limit is not None),
                                 ("where", where_fn is not None)) if on]
        self._detail = ", ".join(names) + (f" ({', '.join(flags)})" if flags else "")

        def aggregate(rows: Iterable[Row]) -> Iterator[tuple[Row, Row]]:
            groups: dict[Any, tuple[Row, list[Any], list[_Acc]]] = {}
            for row in rows:
                kv = [f(row) for f in key_fns]
                hk = tuple(group_key(v) for v in kv)
                g = groups.get(hk)
                if g is None:
                    g = (row, kv, [_Acc(kind, d) for _, kind, d, _ in specs])
                    groups[hk] = g
                for acc, (_, _, _, arg) in zip(g[2], specs):
                    acc.add(arg(row) if arg is not None else None)
            if not groups and not key_fns:
                groups[()] = (
                    {name: None for name in scope},
                    [],
                    [_Acc(kind, d) for _, kind, d, _ in specs],
                )
            for first, kv, accs in groups.values():
                r = dict(first)
                for (slot, _, _, _), acc in zip(specs, accs):
                    r[slot] = acc.result()
                out: Row = {}
                ki = 0
                for name, is_key, f in item_fns:
                    if is_key:
                        out[name] = kv[ki]
                        ki += 1
                    else:
                        out[name] = f(r)
                yield out, out

        def op(rows: Iterable[Row]) -> Iterator[Row]:
            pairs: Iterable[tuple[Row, Row]]
            if is_agg:
                pairs = aggregate(rows)
            else:
                pairs = ((row, {name: f(row) for name, _, f in item_fns}) for row in rows)
            if distinct:
                pairs = _distinct(pairs, names)
            if sort_fns:
                lst = list(pairs)
                keys = []
                for row, out in lst:
                    env = {**row, **out} if merged_sort else out
                    keys.append([sort_key(f(env)) for f, _ in sort_fns])
                order = list(range(len(lst)))
                for j in range(len(sort_fns) - 1, -1, -1):
                    order.sort(key=_key_at(keys, j), reverse=sort_fns[j][1])
                pairs = [lst[i] for i in order]
            skip = _const_int(skip_fn, "SKIP", c.skip)
            limit = _const_int(limit_fn, "LIMIT", c.limit)
            if skip or limit is not None:
                start = skip or 0
                pairs = itertools.islice(pairs, start, None if limit is None else start + limit)
            for _, out in pairs:
                if where_fn is not None and where_fn(out) is not True:
                    continue
                yield out

        return op, new_scope, names

    def _constant(self, e: A.Expr | None, what: str) -> Fn | None:
        if e is None:
            return None
        if free_vars(e):
            raise err(f"{what} must not refer to variables", e)
        return self.comp.compile(e, {})

def _key_at(keys: list[list[tuple]], j: int) -> Callable[[int], tuple]:
    return lambda i: keys[i][j]


def _distinct(pairs: Iterable[tuple[Row, Row]], names: list[str]) -> Iterator[tuple[Row, Row]]:
    seen: set[Any] = set()
    for row, out in pairs:
        k = tuple(group_key(out[n]) for n in names)
        if k in seen:
            continue
        seen.add(k)
        yield row, out
