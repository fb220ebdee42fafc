"""Whole queries answered by one native call: aggregation over variable-length patterns.

The generic engine answers ``count(DISTINCT b)`` over ``(a)-[*1..k]->(b)`` or a sum of path
confidence products by building every path as Python objects. On a view that offers
``reach`` and ``path_totals`` (the causal graph does), these shapes run in the core instead:

* ``MATCH (a[:L] {k: v, ...})-[:T*lo..hi]->(b[:M]) RETURN count(DISTINCT b) [AS n]``, with
  ``lo`` 0 or 1: a breadth-first k-hop from each anchor (simple-path reachability within
  ``hi`` hops is shortest-path reachability, and a simple path never returns to its start);
* ``MATCH p = (a ...)-[:T*lo..hi]->(b[:M]) RETURN count(*) [AS n],
  sum(reduce(c = 1.0, r IN relationships(p) | c * r.confidence)) [AS s]`` (any of
  ``count(*)`` and ``sum`` / ``min`` / ``max`` / ``avg`` of that product, each at most once,
  in any order): the paths are counted and their products reduced while walking, none is
  kept (the sum uses the core's float32 confidences: a relative difference
  of ~1e-7 from the generic engine's float64 ones).

* ``MATCH p = (a ...)-[:T*lo..hi]->(b[:M]) RETURN p, reduce(c = 1.0, r IN relationships(p) |
  c * r.confidence) AS conf ORDER BY conf DESC LIMIT n`` (``p`` optional; ``-->`` or
  ``<--``): the core's branch-and-bound top-n walk, which never builds the paths that cannot
  make the top n; ties keep the path order (length, node ids, edge ids), as the generic sort
  does. The returned ``conf`` is recomputed from the stored float64 confidences (the core
  ranks with float32 ones, so two paths within ~1e-7 may swap).

Anything else, or a label the core cannot check exactly at run time, goes to the generic
plan, which is compiled beside (:func:`plan` returns both). ``EXPLAIN`` shows which one ran.

>>> import agentdb
>>> g = agentdb.open(":memory:", dim=8).graph
>>> ids = [g.add_event(name=str(i)) for i in range(4)]
>>> _ = g.add_causal_chain(ids)
>>> g.query("MATCH (a:Event {name: '0'})-[:CAUSED_BY*1..2]->(b) RETURN count(DISTINCT b) AS n")
[{'n': 2}]
>>> g.query("EXPLAIN MATCH (a:Event {name: '0'})-[*1..3]->(b) RETURN count(DISTINCT b)")[0][
...     "operator"]
'NATIVE AGGREGATE'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import ast as A
from .expressions import Compiler, Fn, Row, free_vars
from .planner import storable
from .values import PathRef, RelRef

__all__ = ["NativeAggregate", "plan"]


class NativeAggregate:
    """One recognised query: its anchor, hop range, and the aggregates to return."""

    def __init__(self, kind: str, label: str | None, props: list[tuple[str, Fn]],
                 lo: int, hi: int, direction: str, types: list[str] | None,
                 end_label: str | None, items: list[tuple[str, str]],
                 limit: Fn | None = None) -> None:
        self.kind = kind  # "reach", "paths" or "top"
        self.limit = limit  # "top": the LIMIT expression
        self.label, self.props = label, props
        self.lo, self.hi, self.direction, self.types = lo, hi, direction, types
        self.end_label = end_label
        self.items = items  # (column, "count" | "sum" | "distinct")

    def describe(self) -> str:
        """The EXPLAIN line."""
        anchor = f":{self.label}" if self.label else "any node"
        if self.props:
            anchor += " {" + ", ".join(k for k, _ in self.props) + "}"
        types = ":" + "|".join(self.types) if self.types else "any type"
        what = {"reach": "k-hop reach count (native BFS per anchor)",
                "paths": "path count and sum of confidence products (native walk, no path "
                         "kept)",
                "top": "top paths by confidence product (native branch-and-bound)"}[self.kind]
        end = f" to :{self.end_label}" if self.end_label else ""
        return (f"{what}; anchors {anchor}; {self.lo}..{self.hi} {self.direction} {types}"
                f"{end}")

    def run(self, graph: Any) -> Row | list[Row] | None:
        """The result row, or None when the graph cannot answer exactly (then the generic
        plan runs)."""
        values = {k: f({}) for k, f in self.props}
        if not all(storable(v) for v in values.values()):
            anchors: Iterable[int] = ()
        elif values:
            anchors = graph.index_lookup(self.label, values)
        else:
            anchors = graph.node_ids(self.label)
        if self.kind == "reach":
            reached: set[int] = set()
            for a in anchors:
                found = graph.reach(a, self.hi, self.direction, self.types, self.end_label)
                if found is None:
                    return None
                reached.update(found)
                if self.lo == 0 and (self.end_label is None
                                     or self.end_label in graph.node(a)[0]):
                    reached.add(a)
            return {col: len(reached) for col, _ in self.items}
        if self.kind == "top":
            return self._top(graph, anchors)
        count, total = 0, 0.0
        lo_v: float | None = None
        hi_v: float | None = None
        for a in anchors:
            got = graph.path_totals(a, self.lo, self.hi, self.direction, self.types,
                                    self.end_label)
            if got is None:
                return None
            if got[0]:
                count += got[0]
                total += got[1]
                lo_v = got[2] if lo_v is None else min(lo_v, got[2])
                hi_v = got[3] if hi_v is None else max(hi_v, got[3])
        values = {"count": count, "sum": total if count else 0,
                  "min": lo_v, "max": hi_v, "avg": total / count if count else None}
        return {col: values[what] for col, what in self.items}


    def _top(self, graph: Any, anchors: Iterable[int]) -> list[Row] | None:
        assert self.limit is not None
        n = self.limit({})
        if type(n) is not int or n < 0:
            return None  # the generic plan reports the bad LIMIT
        found: list[tuple[float, int, list[int], list[int], list[tuple[int, int, int]]]] = []
        for a in anchors:
            got = graph.top_product_paths(a, self.lo, self.hi, self.direction, self.types,
                                          self.end_label, n)
            if got is None:
                return None
            for nodes, rels in got:
                conf = 1.0
                for eid, _s, _e in rels:
                    conf = conf * graph.relationship(eid)[1]["confidence"]
                found.append((conf, len(rels), nodes, [e for e, _, _ in rels], rels))
        found.sort(key=lambda t: (-t[0], t[1], t[2], t[3]))
        rows: list[Row] = []
        for conf, _len, nodes, _eids, rels in found[:n]:
            path = PathRef(tuple(nodes), tuple(RelRef(*t) for t in rels))
            rows.append({col: (path if what == "path" else conf) for col, what in self.items})
        return rows


def plan(q: A.Query, compiler: Compiler) -> NativeAggregate | None:
    """The native form of ``q``, or None when ``q`` is not one of the shapes above (or the
    view lacks ``reach`` / ``path_totals``)."""
    graph = compiler.ctx.graph
    if getattr(graph, "reach", None) is None or getattr(graph, "path_totals", None) is None:
        return None
    if len(q.clauses) != 2:
        return None
    m, r = q.clauses
    if not (isinstance(m, A.Match) and isinstance(r, A.Return)) or m.optional or m.where:
        return None
    if r.star or r.distinct or r.skip is not None:
        return None
    top = bool(r.order) or r.limit is not None
    if len(m.patterns) != 1:
        return None
    part = m.patterns[0]
    if len(part.nodes) != 2 or len(part.rels) != 1:
        return None
    a, b = part.nodes
    rel = part.rels[0]
    if rel.variable is not None or rel.properties is not None or rel.length is None:
        return None
    lo, hi = rel.length
    lo = 1 if lo is None else lo
    if hi is None or hi > 64 or lo > hi:
        return None
    if len(a.labels) > 1 or len(b.labels) > 1 or b.properties is not None:
        return None
    if a.variable is not None and a.variable == b.variable:
        return None
    props: list[tuple[str, Fn]] = []
    if a.properties is not None:
        if not isinstance(a.properties, A.MapLiteral) or free_vars(a.properties):
            return None
        props = [(k, compiler.compile(x, {})) for k, x in a.properties.items]
    label = a.labels[0] if a.labels else None
    end_label = b.labels[0] if b.labels else None
    types = list(rel.types) if rel.types else None
    if top:
        items = _top_items(r, part.variable)
        if items is None or rel.direction == "both" or r.limit is None or free_vars(r.limit):
            return None
        return NativeAggregate("top", label, props, lo, hi, rel.direction, types, end_label,
                               items, compiler.compile(r.limit, {}))
    items = _reach_items(r.items, b.variable) if lo <= 1 else None
    kind = "reach"
    if items is None:
        items = _path_items(r.items, part.variable)
        kind = "paths"
    if items is None:
        return None
    return NativeAggregate(kind, label, props, lo, hi, rel.direction, types, end_label, items)


def _top_items(r: A.Return, p: str | None) -> list[tuple[str, str]] | None:
    """``RETURN [p,] <product> AS conf ORDER BY conf DESC LIMIT n`` -> the columns."""
    if p is None or len(r.order) != 1 or not r.order[0].descending:
        return None
    out: list[tuple[str, str]] = []
    conf_name = None
    for it in r.items:
        if isinstance(it.expr, A.Variable) and it.expr.name == p:
            out.append((it.name, "path"))
        elif _is_product(it.expr, p):
            out.append((it.name, "conf"))
            conf_name = it.name
        else:
            return None
    kinds = [k for _, k in out]
    if conf_name is None or len(set(kinds)) != len(kinds):
        return None
    key = r.order[0].expr
    if not ((isinstance(key, A.Variable) and key.name == conf_name) or _is_product(key, p)):
        return None
    return out


def _reach_items(items: list[A.ReturnItem], b: str | None) -> list[tuple[str, str]] | None:
    if b is None or len(items) != 1:
        return None
    e = items[0].expr
    if (isinstance(e, A.FunctionCall) and e.name.lower() == "count" and e.distinct
            and len(e.args) == 1 and isinstance(e.args[0], A.Variable) and e.args[0].name == b):
        return [(items[0].name, "distinct")]
    return None


def _path_items(items: list[A.ReturnItem], p: str | None) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    for it in items:
        e = it.expr
        if isinstance(e, A.CountStar):
            out.append((it.name, "count"))
        elif (p is not None and isinstance(e, A.FunctionCall)
              and e.name.lower() in ("sum", "min", "max", "avg")
              and not e.distinct and len(e.args) == 1 and _is_product(e.args[0], p)):
            out.append((it.name, e.name.lower()))
        else:
            return None
    kinds = [k for _, k in out]
    if not out or len(set(kinds)) != len(kinds):
        return None
    return out


def _is_product(e: A.Expr, p: str) -> bool:
    """``reduce(c = 1.0, r IN relationships(p) | c * r.confidence)`` (either factor order)."""
    if not isinstance(e, A.Reduce):
        return False
    if not (isinstance(e.init, A.Literal) and type(e.init.value) in (int, float)
            and e.init.value == 1):
        return False
    src = e.source
    if not (isinstance(src, A.FunctionCall) and src.name.lower() == "relationships"
            and len(src.args) == 1 and isinstance(src.args[0], A.Variable)
            and src.args[0].name == p and not src.distinct):
        return False
    body = e.body
    if not (isinstance(body, A.Arithmetic) and body.ops == ["*"] and len(body.operands) == 2):
        return False
    x, y = body.operands
    if isinstance(y, A.Variable):
        x, y = y, x
    return (isinstance(x, A.Variable) and x.name == e.accumulator
            and isinstance(y, A.Property) and y.key == "confidence"
            and isinstance(y.subject, A.Variable) and y.subject.name == e.variable
            and e.variable != e.accumulator)


def op_for(native: NativeAggregate, generic: list[Callable[[Iterable[Row]], Iterator[Row]]],
           graph: Any) -> Callable[[Iterable[Row]], Iterator[Row]]:
    """The single operator running ``native`` (or, when it cannot answer, the generic
    operators in turn)."""
    def op(rows: Iterable[Row]) -> Iterator[Row]:
        for _ in rows:  # the one empty input row
            got = native.run(graph)
            if isinstance(got, list):
                yield from got
                continue
            if got is not None:
                yield got
                continue
            out: Iterable[Row] = [{}]
            for g in generic:
                out = g(out)
            yield from out
    return op
