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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import ast as A
from .errors import CypherError, CypherSyntaxError
from .expressions import (
    Context,
    Fn,
    Row,
    Stats,
    err,
    error_at,
    find_aggregates,
    free_vars,
    substitute,
)
from .functions import INT_MAX, INT_MIN, check_int
from .graphview import GraphView
from .matcher import MatchPlan, PatternCompiler
from .parser import parse
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

__all__ = ["execute", "execute_stats", "Result", "Stats"]

Op = Callable[[Iterable[Row]], Iterable[Row]]
Scope = dict  # name -> kind


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
    graph: GraphView, query: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Run ``query`` on ``graph`` (a :class:`~.graphview.GraphView`); return rows.

    Nodes, relationships and paths in the rows are :class:`~.values.Node`,
    :class:`~.values.Relationship` and :class:`~.values.Path`.
    A query without RETURN returns ``[]``. Raises :class:`CypherError` for any query problem.
    """
    return execute_stats(graph, query, params).rows


def execute_stats(
    graph: GraphView, query: str, params: Mapping[str, Any] | None = None
) -> Result:
    """Like :func:`execute`, but return a :class:`Result` carrying columns and write counters."""
    try:
        ast = parse(query)
        ctx = Context(graph, params)
        ops, columns, returns = _QueryCompiler(ctx).compile(ast)
        rows: Iterable[Row] = [{}]
        for op in ops:
            rows = op(rows)
        out: list[dict[str, Any]] = []
        # Results are acyclic (dicts, lists, Node/Relationship/Path snapshots): pause the
        # cyclic collector while they are built, or each collection re-walks the growing
        # result (and every other live object) -- quadratic on large results.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            if returns:
                conv = _Publisher(ctx)
                for row in rows:
                    out.append({name: conv.value(row[name]) for name in columns})
            else:
                for _ in rows:
                    pass
        finally:
            if paused:
                gc.enable()
        return Result(columns if returns else [], out, ctx.stats)
    except RecursionError:
        raise CypherError("query too deeply nested or too complex to evaluate") from None


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


def _prop_value(v: Any, node: A.Node | None) -> Any:
    """Validate a value about to be stored as a property."""
    t = type(v)
    if t is int or (t is list and any(type(x) is int for x in v)):
        for x in v if t is list else (v,):
            if type(x) is int and not INT_MIN <= x <= INT_MAX:
                raise err("integer property values must fit in 64 bits", node)
    if v is None or t in (bool, int, float, str):
        return v
    if t is list and all(type(x) in (bool, int, float, str) for x in v):
        return list(v)
    raise err(
        "property values must be booleans, numbers, strings or lists of those, "
        f"got {type_name(v)}",
        node,
    )


def _prop_map(v: Any, node: A.Node | None) -> dict[str, Any]:
    if type(v) is not dict:
        raise err(f"expected a Map of properties, got {type_name(v)}", node)
    return {k: _prop_value(x, node) for k, x in v.items() if x is not None}


def _const_int(fn: Fn | None, what: str, node: A.Node | None) -> int | None:
    if fn is None:
        return None
    v = fn({})
    if type(v) is not int or v < 0:
        raise err(f"{what} must be a non-negative integer, got {v!r}", node)
    return int(v)


class _CreateSpec:
    """A pattern part to create (CREATE, or MERGE when nothing matched)."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str | None, list[str], Fn | None, bool, A.Node]] = []
        self.rels: list[tuple[str | None, str, Fn | None, str, A.Node]] = []
        self.path_var: str | None = None


class _QueryCompiler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.comp = PatternCompiler(ctx)

    def compile(self, q: A.Query) -> tuple[list[Op], list[str], bool]:
        scope: Scope = {}
        ops: list[Op] = []
        columns: list[str] = []
        returns = False
        for clause in q.clauses:
            if isinstance(clause, A.Match):
                op, scope = self.match(clause, scope)
            elif isinstance(clause, A.Unwind):
                op, scope = self.unwind(clause, scope)
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
            ops.append(op)
        return ops, columns, returns

    # ---- reading ---------------------------------------------------------------------------

    def match(self, c: A.Match, scope: Scope) -> tuple[Op, Scope]:
        plan = MatchPlan(self.comp, c.patterns, c.where, scope)
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

    # ---- writing ---------------------------------------------------------------------------

    def _create_spec(self, part: A.PatternPart, scope: Scope, merge: bool) -> _CreateSpec:
        """Validate a pattern part for creation; extends ``scope`` with its new variables."""
        spec = _CreateSpec()
        what = "MERGE" if merge else "CREATE"
        for node in part.nodes:
            v = node.variable
            if v is not None and v in scope:
                kind = scope[v]
                if kind not in ("node", "any"):
                    raise err(f"variable `{v}` is not a node", node)
                if node.labels or node.properties is not None or (merge and not part.rels):
                    raise err(
                        f"variable `{v}` is already declared; {what} cannot add labels or "
                        "properties to it",
                        node,
                    )
                spec.nodes.append((v, [], None, True, node))
                continue
            props = (
                self.comp.compile(node.properties, scope) if node.properties is not None else None
            )
            spec.nodes.append((v, list(node.labels), props, False, node))
            if v is not None:
                scope[v] = "node"
        for rel in part.rels:
            if rel.length is not None:
                raise err(f"variable-length relationships cannot be used in {what}", rel)
            if len(rel.types) != 1:
                raise err(f"a relationship in {what} needs exactly one type", rel)
            if rel.direction == "both" and not merge:
                raise err("relationships in CREATE must have a direction", rel)
            v = rel.variable
            if v is not None:
                if v in scope:
                    raise err(f"variable `{v}` already declared", rel)
                scope[v] = "rel"
            props = self.comp.compile(rel.properties, scope) if rel.properties is not None else None
            spec.rels.append((v, rel.types[0], props, rel.direction, rel))
        if part.variable is not None:
            if part.variable in scope:
                raise err(f"variable `{part.variable}` already declared", part)
            scope[part.variable] = "path"
            spec.path_var = part.variable
        return spec

    def _run_create(self, spec: _CreateSpec, r: Row) -> None:
        graph = self.ctx.graph
        stats = self.ctx.stats
        ids: list[int] = []
        for var, labels, props_fn, reuse, node in spec.nodes:
            if reuse:
                v = r.get(var)  # type: ignore[arg-type]
                if type(v) is not NodeRef:
                    raise err(f"cannot create: `{var}` is {type_name(v)}, not a Node", node)
                ids.append(v.id)
                continue
            props = _prop_map(props_fn(r), node) if props_fn is not None else {}
            nid = graph.create_node(list(labels), props)
            stats.nodes_created += 1
            stats.properties_set += len(props)
            if var is not None:
                r[var] = NodeRef(nid)
            ids.append(nid)
        refs: list[RelRef] = []
        for j, (var, typ, props_fn, direction, rel) in enumerate(spec.rels):
            a, b = ids[j], ids[j + 1]
            if direction == "in":
                a, b = b, a
            props = _prop_map(props_fn(r), rel) if props_fn is not None else {}
            eid = graph.create_relationship(typ, a, b, props)
            stats.relationships_created += 1
            stats.properties_set += len(props)
            rr = RelRef(eid, a, b)
            refs.append(rr)
            if var is not None:
                r[var] = rr
        if spec.path_var is not None:
            r[spec.path_var] = PathRef(tuple(ids), tuple(refs))

    def create(self, c: A.Create, scope: Scope) -> tuple[Op, Scope]:
        new_scope = dict(scope)
        specs = [self._create_spec(p, new_scope, False) for p in c.patterns]

        def op(rows: Iterable[Row]) -> list[Row]:
            out = []
            for row in list(rows):
                r = dict(row)
                for spec in specs:
                    self._run_create(spec, r)
                out.append(r)
            return out

        return op, new_scope

    def merge(self, c: A.Merge, scope: Scope) -> tuple[Op, Scope]:
        part = c.pattern
        if len(part.rels) > 1:
            raise CypherSyntaxError(
                "unsupported: MERGE of a pattern with more than one relationship",
                part.pos[0],
                part.pos[1],
            )
        create_scope = dict(scope)
        spec = self._create_spec(part, create_scope, True)
        plan = MatchPlan(self.comp, [part], None, scope)
        new_scope = plan.new_scope
        on_create = [self._set_item(i, new_scope) for i in c.on_create]
        on_match = [self._set_item(i, new_scope) for i in c.on_match]
        null_checks: list[tuple[str, Fn, A.Node]] = []
        for node in part.nodes:
            if node.properties is not None and free_vars(node.properties) <= set(scope):
                null_checks.append(("node", self.comp.compile(node.properties, scope), node))
        for rel in part.rels:
            if rel.properties is not None and free_vars(rel.properties) <= set(scope):
                null_checks.append(
                    ("relationship", self.comp.compile(rel.properties, scope), rel)
                )

        def op(rows: Iterable[Row]) -> list[Row]:
            out = []
            for row in list(rows):
                for what, f, node in null_checks:
                    m = f(row)
                    if type(m) is not dict:
                        raise err(f"expected a Map of properties, got {type_name(m)}", node)
                    for k, v in m.items():
                        if v is None:
                            raise err(
                                f"cannot merge {what} using null property value for '{k}'", node
                            )
                matches = list(plan.run(row))
                if matches:
                    for m in matches:
                        m = dict(m)
                        for apply in on_match:
                            apply(m)
                        out.append(m)
                else:
                    r = dict(row)
                    self._run_create(spec, r)
                    for apply in on_create:
                        apply(r)
                    out.append(r)
            return out

        return op, new_scope

    def _target(self, v: Any, node: A.Node, what: str) -> Any:
        if v is None or type(v) in (NodeRef, RelRef):
            return v
        raise err(f"{what} needs a Node or Relationship, got {type_name(v)}", node)

    def _set_property(self, t: Any, key: str, value: Any) -> None:
        graph = self.ctx.graph
        if type(t) is NodeRef:
            graph.set_node_property(t.id, key, value)
            self.ctx.forget_node(t.id)
        else:
            graph.set_relationship_property(t.id, key, value)
            self.ctx.forget_rel(t.id)
        self.ctx.stats.properties_set += 1

    def _props_of(self, t: Any) -> dict[str, Any]:
        if type(t) is NodeRef:
            return self.ctx.node_data(t.id)[1]
        return self.ctx.rel_data(t.id)[1]

    def _set_item(self, item: A.Node, scope: Scope) -> Callable[[Row], None]:
        comp = self.comp
        ctx = self.ctx
        if isinstance(item, A.SetProperty):
            subj = comp.compile(item.target.subject, scope)
            val = comp.compile(item.value, scope)
            key = item.target.key

            def set_prop(row: Row) -> None:
                t = self._target(subj(row), item, "SET")
                v = _prop_value(val(row), item)
                if t is None:
                    return
                try:
                    self._set_property(t, key, v)
                except CypherError as exc:
                    raise error_at(exc, item.pos) from None

            return set_prop
        if isinstance(item, A.SetProperties):
            if item.variable not in scope:
                raise err(f"variable `{item.variable}` not defined", item)
            val = comp.compile(item.value, scope)
            var = item.variable
            merge = item.merge

            def set_props(row: Row) -> None:
                t = self._target(row.get(var), item, "SET")
                m = val(row)
                if t is None:
                    return
                if type(m) in (NodeRef, RelRef):
                    m = dict(self._props_of(m))
                newp = {k: _prop_value(x, item) for k, x in _map_arg(m, item).items()}
                if not merge:
                    for k in list(self._props_of(t)):
                        if k not in newp:
                            self._set_property(t, k, None)
                for k, x in newp.items():
                    self._set_property(t, k, x)

            return set_props
        if isinstance(item, A.SetLabels):
            if item.variable not in scope:
                raise err(f"variable `{item.variable}` not defined", item)
            var = item.variable
            labels = list(item.labels)

            def set_labels(row: Row) -> None:
                t = row.get(var)
                if t is None:
                    return
                if type(t) is not NodeRef:
                    raise err(f"labels can only be set on nodes, not {type_name(t)}", item)
                have = ctx.node_data(t.id)[0]
                for lab in labels:
                    if lab not in have:
                        ctx.graph.add_label(t.id, lab)
                        ctx.forget_node(t.id)
                        have = ctx.node_data(t.id)[0]
                        ctx.stats.labels_added += 1

            return set_labels
        raise err("unsupported SET item", item)  # pragma: no cover

    def set_clause(self, c: A.SetClause, scope: Scope) -> Op:
        items = [self._set_item(i, scope) for i in c.items]

        def op(rows: Iterable[Row]) -> list[Row]:
            rows = list(rows)
            for row in rows:
                for apply in items:
                    apply(row)
            return rows

        return op

    def remove(self, c: A.Remove, scope: Scope) -> Op:
        ctx = self.ctx
        actions: list[Callable[[Row], None]] = []
        for item in c.items:
            if isinstance(item, A.RemoveProperty):
                subj = self.comp.compile(item.target.subject, scope)
                key = item.target.key

                def rm_prop(row: Row, subj: Fn = subj, key: str = key, item: A.Node = item) -> None:
                    t = self._target(subj(row), item, "REMOVE")
                    if t is not None and key in self._props_of(t):
                        self._set_property(t, key, None)

                actions.append(rm_prop)
            elif isinstance(item, A.RemoveLabels):
                if item.variable not in scope:
                    raise err(f"variable `{item.variable}` not defined", item)

                def rm_labels(
                    row: Row, var: str = item.variable, labels: list[str] = item.labels,
                    item: A.Node = item,
                ) -> None:
                    t = row.get(var)
                    if t is None:
                        return
                    if type(t) is not NodeRef:
                        raise err(f"labels can only be removed from nodes, not {type_name(t)}",
                                  item)
                    for lab in labels:
                        if lab in ctx.node_data(t.id)[0]:
                            ctx.graph.remove_label(t.id, lab)
                            ctx.forget_node(t.id)
                            ctx.stats.labels_removed += 1

                actions.append(rm_labels)

        def op(rows: Iterable[Row]) -> list[Row]:
            rows = list(rows)
            for row in rows:
                for act in actions:
                    act(row)
            return rows

        return op

    def delete(self, c: A.Delete, scope: Scope) -> Op:
        fns = [(self.comp.compile(e, scope), e) for e in c.exprs]
        ctx = self.ctx
        detach = c.detach

        def collect(v: Any, nodes: dict[int, None], rels: dict[int, None], e: A.Node) -> None:
            t = type(v)
            if v is None:
                return
            if t is NodeRef:
                nodes[v.id] = None
            elif t is RelRef:
                rels[v.id] = None
            elif t is PathRef:
                for n in v.nodes:
                    nodes[n] = None
                for r in v.rels:
                    rels[r.id] = None
            elif t is list:
                for x in v:
                    collect(x, nodes, rels, e)
            else:
                raise err(f"DELETE expects nodes, relationships or paths, got {type_name(v)}", e)

        def op(rows: Iterable[Row]) -> list[Row]:
            rows = list(rows)
            nodes: dict[int, None] = {}
            rels: dict[int, None] = {}
            for row in rows:
                for f, e in fns:
                    collect(f(row), nodes, rels, e)
            graph = ctx.graph
            live_rels = [eid for eid in rels if _exists(ctx.rel_data, eid)]
            live_nodes = [nid for nid in nodes if _exists(ctx.node_data, nid)]
            doomed = set(live_rels)
            touching: dict[int, set[int]] = {}
            for nid in live_nodes:
                touching[nid] = {t[0] for t in graph.expand(nid, "both", None)} - doomed
                if touching[nid] and not detach:
                    raise CypherError(
                        f"cannot delete node {nid}: it still has relationships; "
                        "use DETACH DELETE",
                        c.pos[0],
                        c.pos[1],
                    )
            for eid in live_rels:
                graph.delete_relationship(eid)
                ctx.forget_rel(eid)
                ctx.stats.relationships_deleted += 1
            gone: set[int] = set()
            for nid in live_nodes:
                extra = touching[nid] - gone
                graph.delete_node(nid, detach)
                ctx.forget_node(nid)
                for eid in extra:
                    ctx.forget_rel(eid)
                gone |= extra
                ctx.stats.relationships_deleted += len(extra)
                ctx.stats.nodes_deleted += 1
            return rows

        return op


def _exists(getter: Callable[[int], Any], key: int) -> bool:
    try:
        getter(key)
    except CypherError:
        return False
    return True


def _map_arg(m: Any, node: A.Node) -> dict[str, Any]:
    if type(m) is not dict:
        raise err(f"SET n = / += expects a Map, got {type_name(m)}", node)
    return m  # type: ignore[no-any-return]


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
