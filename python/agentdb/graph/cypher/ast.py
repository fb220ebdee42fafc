"""Abstract syntax tree of a parsed Cypher query (plain dataclasses).

Every node has a ``pos`` = ``(line, column)`` of its first token; it does not take part in
equality, so two ASTs of the same expression written at different places compare equal:

>>> from agentdb.graph.cypher import parse
>>> q = parse("MATCH (a:Event)-[r:CAUSED_BY]->(b) WHERE a.x = 1 RETURN b")
>>> type(q.clauses[0]).__name__, q.clauses[0].patterns[0].rels[0].types
('Match', ['CAUSED_BY'])
>>> q.clauses[0].where == Comparison([Property(Variable("a"), "x"), Literal(1)], ["="])
True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Union

__all__ = [
    "Pos",
    "Node",
    "Expr",
    "Literal",
    "Parameter",
    "Variable",
    "Property",
    "ListLiteral",
    "MapLiteral",
    "Unary",
    "BoolOp",
    "Arithmetic",
    "Comparison",
    "BinaryOp",
    "IsNull",
    "HasLabels",
    "Index",
    "Slice",
    "FunctionCall",
    "CountStar",
    "Reduce",
    "ListComprehension",
    "Quantifier",
    "Case",
    "PatternPredicate",
    "NodePattern",
    "RelPattern",
    "PatternPart",
    "Clause",
    "Match",
    "Unwind",
    "Create",
    "Merge",
    "SetProperty",
    "SetProperties",
    "SetLabels",
    "RemoveProperty",
    "RemoveLabels",
    "SetClause",
    "Remove",
    "Delete",
    "ReturnItem",
    "SortItem",
    "With",
    "Return",
    "Query",
    "children",
    "walk",
    "depth",
]

Pos = tuple  # (line, column), 1-based


def _pos() -> Any:
    return field(default=(0, 0), compare=False, repr=False)


class Node:
    """Base class of every AST node."""

    pos: Pos


class Expr(Node):
    """Base class of expressions."""


# ---- expressions ---------------------------------------------------------------------------


@dataclass
class Literal(Expr):
    """``1``, ``2.5``, ``'text'``, ``true``, ``null``."""

    value: Any
    pos: Pos = _pos()


@dataclass
class Parameter(Expr):
    """``$name``."""

    name: str
    pos: Pos = _pos()


@dataclass
class Variable(Expr):
    """A variable reference."""

    name: str
    pos: Pos = _pos()


@dataclass
class Property(Expr):
    """``subject.key``."""

    subject: Expr
    key: str
    pos: Pos = _pos()


@dataclass
class ListLiteral(Expr):
    """``[a, b, c]``."""

    items: list[Expr]
    pos: Pos = _pos()


@dataclass
class MapLiteral(Expr):
    """``{key: value, ...}`` (keys in source order)."""

    items: list[tuple[str, Expr]]
    pos: Pos = _pos()


@dataclass
class Unary(Expr):
    """``NOT x``, ``-x``, ``+x`` (``op`` is ``'NOT'``, ``'-'`` or ``'+'``)."""

    op: str
    operand: Expr
    pos: Pos = _pos()


@dataclass
class BoolOp(Expr):
    """``a AND b AND c`` / ``OR`` / ``XOR`` (flattened, evaluated left to right)."""

    op: str
    operands: list[Expr]
    pos: Pos = _pos()


@dataclass
class Arithmetic(Expr):
    """A left-associative chain ``operands[0] ops[0] operands[1] ...`` of ``+ - * / % ^``."""

    operands: list[Expr]
    ops: list[str]
    pos: Pos = _pos()


@dataclass
class Comparison(Expr):
    """``a < b <= c``: the AND of the pairwise comparisons (``= <> < <= > >=``)."""

    operands: list[Expr]
    ops: list[str]
    pos: Pos = _pos()


@dataclass
class BinaryOp(Expr):
    """``IN``, ``STARTS WITH``, ``ENDS WITH``, ``CONTAINS``, ``=~``."""

    op: str
    left: Expr
    right: Expr
    pos: Pos = _pos()


@dataclass
class IsNull(Expr):
    """``x IS NULL`` (``negated`` for ``IS NOT NULL``)."""

    operand: Expr
    negated: bool
    pos: Pos = _pos()


@dataclass
class HasLabels(Expr):
    """``n:Label:Other`` used as a predicate."""

    subject: Expr
    labels: list[str]
    pos: Pos = _pos()


@dataclass
class Index(Expr):
    """``subject[index]`` (list element or map/property lookup)."""

    subject: Expr
    index: Expr
    pos: Pos = _pos()


@dataclass
class Slice(Expr):
    """``subject[start..end]`` (either bound may be missing)."""

    subject: Expr
    start: Expr | None
    end: Expr | None
    pos: Pos = _pos()


@dataclass
class FunctionCall(Expr):
    """``name(args)``; ``name`` is lower-cased; ``distinct`` for ``count(DISTINCT x)``."""

    name: str
    args: list[Expr]
    distinct: bool = False
    pos: Pos = _pos()


@dataclass
class CountStar(Expr):
    """``count(*)``."""

    pos: Pos = _pos()


@dataclass
class Reduce(Expr):
    """``reduce(accumulator = init, variable IN source | body)``."""

    accumulator: str
    init: Expr
    variable: str
    source: Expr
    body: Expr
    pos: Pos = _pos()


@dataclass
class ListComprehension(Expr):
    """``[variable IN source WHERE predicate | projection]``."""

    variable: str
    source: Expr
    predicate: Expr | None
    projection: Expr | None
    pos: Pos = _pos()


@dataclass
class Quantifier(Expr):
    """``any|all|none|single(variable IN source WHERE predicate)``."""

    kind: str
    variable: str
    source: Expr
    predicate: Expr
    pos: Pos = _pos()


@dataclass
class Case(Expr):
    """``CASE [subject] WHEN .. THEN .. [ELSE ..] END``."""

    subject: Expr | None
    whens: list[tuple[Expr, Expr]]
    default: Expr | None
    pos: Pos = _pos()


@dataclass
class PatternPredicate(Expr):
    """A pattern used as a boolean (``WHERE (a)-[:T]->()``, ``exists((a)-->(b))``)."""

    pattern: PatternPart
    pos: Pos = _pos()


# ---- patterns ------------------------------------------------------------------------------


@dataclass
class NodePattern(Node):
    """``(variable:Label1:Label2 {props})``; ``properties`` is a MapLiteral, a Parameter or None."""

    variable: str | None
    labels: list[str]
    properties: Expr | None
    pos: Pos = _pos()


@dataclass
class RelPattern(Node):
    """``-[variable:T1|T2 *min..max {props}]->``.

    ``direction`` is ``'out'`` (``-->``), ``'in'`` (``<--``) or ``'both'`` (``--``);
    ``length`` is None for a single hop, else ``(min, max)`` with ``max`` None when unbounded.
    """

    variable: str | None
    types: list[str]
    properties: Expr | None
    direction: str
    length: tuple[int, int | None] | None
    pos: Pos = _pos()


@dataclass
class PatternPart(Node):
    """``[path =] (n0)-[r0]-(n1)-[r1]-...``: ``len(nodes) == len(rels) + 1``."""

    variable: str | None
    nodes: list[NodePattern]
    rels: list[RelPattern]
    pos: Pos = _pos()


# ---- clauses -------------------------------------------------------------------------------


class Clause(Node):
    """Base class of clauses."""


@dataclass
class Match(Clause):
    """``[OPTIONAL] MATCH patterns [WHERE where]``."""

    patterns: list[PatternPart]
    where: Expr | None
    optional: bool = False
    pos: Pos = _pos()


@dataclass
class Unwind(Clause):
    """``UNWIND expr AS variable``."""

    expr: Expr
    variable: str
    pos: Pos = _pos()


@dataclass
class Create(Clause):
    """``CREATE patterns``."""

    patterns: list[PatternPart]
    pos: Pos = _pos()


@dataclass
class SetProperty(Node):
    """``SET subject.key = value``."""

    target: Property
    value: Expr
    pos: Pos = _pos()


@dataclass
class SetProperties(Node):
    """``SET n = map`` (replace) or ``SET n += map`` (``merge``)."""

    variable: str
    value: Expr
    merge: bool
    pos: Pos = _pos()


@dataclass
class SetLabels(Node):
    """``SET n:Label:Other``."""

    variable: str
    labels: list[str]
    pos: Pos = _pos()


@dataclass
class RemoveProperty(Node):
    """``REMOVE subject.key``."""

    target: Property
    pos: Pos = _pos()


@dataclass
class RemoveLabels(Node):
    """``REMOVE n:Label``."""

    variable: str
    labels: list[str]
    pos: Pos = _pos()


SetItem = Union[SetProperty, SetProperties, SetLabels]
RemoveItem = Union[RemoveProperty, RemoveLabels]


@dataclass
class Merge(Clause):
    """``MERGE pattern [ON CREATE SET ...] [ON MATCH SET ...]``."""

    pattern: PatternPart
    on_create: list[Node]
    on_match: list[Node]
    pos: Pos = _pos()


@dataclass
class SetClause(Clause):
    """``SET item, ...``."""

    items: list[Node]
    pos: Pos = _pos()


@dataclass
class Remove(Clause):
    """``REMOVE item, ...``."""

    items: list[Node]
    pos: Pos = _pos()


@dataclass
class Delete(Clause):
    """``[DETACH] DELETE expr, ...``."""

    exprs: list[Expr]
    detach: bool
    pos: Pos = _pos()


@dataclass
class ReturnItem(Node):
    """``expr [AS alias]``; ``name`` is the column name (alias, else the source text)."""

    expr: Expr
    alias: str | None
    name: str
    pos: Pos = _pos()


@dataclass
class SortItem(Node):
    """``expr [ASC|DESC]``."""

    expr: Expr
    descending: bool
    pos: Pos = _pos()


@dataclass
class With(Clause):
    """``WITH [DISTINCT] items [ORDER BY ..] [SKIP ..] [LIMIT ..] [WHERE ..]``."""

    items: list[ReturnItem]
    star: bool
    distinct: bool
    order: list[SortItem]
    skip: Expr | None
    limit: Expr | None
    where: Expr | None
    pos: Pos = _pos()


@dataclass
class Return(Clause):
    """``RETURN [DISTINCT] items [ORDER BY ..] [SKIP ..] [LIMIT ..]``."""

    items: list[ReturnItem]
    star: bool
    distinct: bool
    order: list[SortItem]
    skip: Expr | None
    limit: Expr | None
    pos: Pos = _pos()


@dataclass
class Query(Node):
    """A whole single-statement query."""

    clauses: list[Clause]
    pos: Pos = _pos()


# ---- traversal -----------------------------------------------------------------------------

_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in fields(cls) if f.compare)
        _FIELDS[cls] = names
    return names


def _collect(value: Any, out: list[Node]) -> None:
    if isinstance(value, Node):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, Node):
                out.append(v)
            elif isinstance(v, (list, tuple)):
                for w in v:
                    if isinstance(w, Node):
                        out.append(w)


def children(node: Node) -> list[Node]:
    """The direct child nodes of ``node``, in field order.

    >>> children(Arithmetic([Literal(1), Variable("x")], ["+"]))
    [Literal(value=1), Variable(name='x')]
    """
    out: list[Node] = []
    for name in _field_names(type(node)):
        _collect(getattr(node, name), out)
    return out


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree under ``node`` (pre-order, iterative: no recursion limit).

    >>> [type(n).__name__ for n in walk(Unary("-", Literal(1)))]
    ['Unary', 'Literal']
    """
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        kids = children(cur)
        kids.reverse()
        stack.extend(kids)


def depth(node: Node) -> tuple[int, Node]:
    """The height of the tree under ``node`` and its deepest node (iterative).

    >>> depth(Unary("-", Unary("-", Literal(1))))[0]
    3
    """
    best = (1, node)
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        cur, d = stack.pop()
        if d > best[0]:
            best = (d, cur)
        for kid in children(cur):
            stack.append((kid, d + 1))
    return best
