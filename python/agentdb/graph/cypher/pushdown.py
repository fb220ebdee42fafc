"""Whole queries answered by one native call: aggregation over variable-length patterns.

The generic engine answers ``count(DISTINCT b)`` over ``(a)-[*1..k]->(b)`` or a sum of path
confidence products by building every path as Python objects. On a view that offers
``reach`` and ``path_totals`` (the causal graph does), these shapes run in the core instead:

* ``MATCH (a[:L] {k: v, ...})-[:T*lo..hi]->(b[:M]) RETURN count(DISTINCT b) [AS n]``, with
  ``lo`` 0 or 1: a breadth-first k-hop from each anchor (simple-path reachability within
  ``hi`` hops is shortest-path reachability, and a simple path never returns to its start);
* ``MATCH p = (a ...)-[:T*lo..hi]->(b[:M]) RETURN count(*) [AS n],
  sum(reduce(c = 1.0, r IN relationships(p) | c * r.confidence)) [AS s]`` (either or both
  items, in any order): the paths are counted and their confidence products summed while
  walking, none is kept (the sum uses the core's float32 confidences: a relative difference
  of ~1e-7 from the generic engine's float64 ones).

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

__all__ = ["NativeAggregate", "plan"]


class NativeAggregate:
    """One recognised query: its anchor, hop range, and the aggregates to return."""

    def __init__(self, kind: str, label: str | None, props: list[tuple[str, Fn]],
                 lo: int, hi: int, direction: str, types: list[str] | None,
                 end_label: str | None, items: list[tuple[str, str]]) -> None:
        self.kind = kind  # "reach" or "paths"
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
        what = ("k-hop reach count (native BFS per anchor)" if self.kind == "reach"
                else "path count and sum of confidence products (native walk, no path kept)")
        end = f" to :{self.end_label}" if self.end_label else ""
        return (f"{what}; anchors {anchor}; {self.lo}..{self.hi} {self.direction} {types}"
                f"{end}")

    def run(self, graph: Any) -> Row | None:
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
        count, total = 0, 0.0
        for a in anchors:
            got = graph.path_totals(a, self.lo, self.hi, self.direction, self.types,
                                    self.end_label)
            if got is None:
                return None
            count += got[0]
            total += got[1]
        return {col: (count if what == "count" else (total if count else 0))
                for col, what in self.items}


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
    if r.star or r.distinct or r.order or r.skip is not None or r.limit is not None:
        return None
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
    items = _reach_items(r.items, b.variable) if lo <= 1 else None
    kind = "reach"
    if items is None:
        items = _path_items(r.items, part.variable)
        kind = "paths"
    if items is None:
        return None
    return NativeAggregate(kind, label, props, lo, hi, rel.direction, types, end_label, items)


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
        elif (p is not None and isinstance(e, A.FunctionCall) and e.name.lower() == "sum"
              and not e.distinct and len(e.args) == 1 and _is_product(e.args[0], p)):
            out.append((it.name, "sum"))
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
            row = native.run(graph)
            if row is not None:
                yield row
                continue
            out: Iterable[Row] = [{}]
            for g in generic:
                out = g(out)
            yield from out
    return op
