"""Values: the public result types and the engine's internal references.

Results contain plain Python values (``None``, ``bool``, ``int``, ``float``, ``str``, ``list``,
``dict``) and three dataclasses: :class:`Node`, :class:`Relationship` and :class:`Path`,
snapshots of the graph taken when the result was built.

Inside the engine nodes, relationships and paths are light references (:class:`NodeRef`,
:class:`RelRef`, :class:`PathRef`) whose labels and properties are read from the graph when
needed. This module also holds Cypher's value semantics: three-valued equality
(:func:`equals`), ordering comparisons (:func:`compare`), the global sort order
(:func:`sort_key`) and hashable keys for DISTINCT and grouping (:func:`group_key`).

>>> equals(1, 1.0), equals([1, None], [1, None]), equals("a", 1)
(True, None, False)
>>> sorted([None, "b", 2, True, [1]], key=sort_key)
[[1], 'b', True, 2, None]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Node",
    "Relationship",
    "Path",
    "NodeRef",
    "RelRef",
    "PathRef",
    "equals",
    "compare",
    "sort_key",
    "group_key",
    "type_name",
]


@dataclass
class Node:
    """A node in a result: internal ``id`` (int64), ``labels`` and ``properties``."""

    id: int
    labels: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Relationship:
    """A projected relationship ``(start)-[type]->(end)`` of hyperedge ``id``.

    ``properties`` holds the hyperedge's properties including ``confidence`` and ``timestamp``.
    A hyperedge with several tails/heads yields several relationships with the same ``id``.
    """

    id: int
    type: str
    start: int
    end: int
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Path:
    """A path: ``nodes[0] -relationships[0]- nodes[1] ...`` (``len(nodes) == hops + 1``)."""

    nodes: list[Node] = field(default_factory=list)
    relationships: list[Relationship] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.relationships)


class NodeRef:
    """Engine-internal reference to node ``id``."""

    __slots__ = ("id",)

    def __init__(self, nid: int) -> None:
        self.id = nid

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("N", self.id))

    def __repr__(self) -> str:
        return f"NodeRef({self.id})"


class RelRef:
    """Engine-internal reference to the projected relationship ``(id, start, end)``."""

    __slots__ = ("id", "start", "end")

    def __init__(self, eid: int, start: int, end: int) -> None:
        self.id = eid
        self.start = start
        self.end = end

    def key(self) -> tuple[int, int, int]:
        return (self.id, self.start, self.end)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RelRef)
            and other.id == self.id
            and other.start == self.start
            and other.end == self.end
        )

    def __hash__(self) -> int:
        return hash(("R", self.id, self.start, self.end))

    def __repr__(self) -> str:
        return f"RelRef({self.id}, {self.start}, {self.end})"


class PathRef:
    """Engine-internal path: node ids and relationship references in path order."""

    __slots__ = ("nodes", "rels")

    def __init__(self, nodes: tuple[int, ...], rels: tuple[RelRef, ...]) -> None:
        self.nodes = nodes
        self.rels = rels

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathRef) and other.nodes == self.nodes and other.rels == self.rels

    def __hash__(self) -> int:
        return hash(("P", self.nodes, self.rels))

    def __repr__(self) -> str:
        return f"PathRef({list(self.nodes)}, {list(self.rels)})"


def type_name(v: Any) -> str:
    """Cypher name of the type of ``v`` (for error messages).

    >>> type_name(1), type_name(True), type_name([1]), type_name(NodeRef(1))
    ('Integer', 'Boolean', 'List', 'Node')
    """
    if v is None:
        return "Null"
    t = type(v)
    if t is bool:
        return "Boolean"
    if t is int:
        return "Integer"
    if t is float:
        return "Float"
    if t is str:
        return "String"
    if t is list:
        return "List"
    if t is dict:
        return "Map"
    if t is NodeRef:
        return "Node"
    if t is RelRef:
        return "Relationship"
    if t is PathRef:
        return "Path"
    return t.__name__


def _is_num(v: Any) -> bool:
    t = type(v)
    return t is int or t is float


def equals(a: Any, b: Any) -> bool | None:
    """Cypher ``a = b``: ``None`` (null) when either side is null or a nested null decides.

    >>> equals(None, None), equals(True, 1), equals({"a": [1]}, {"a": [1.0]})
    (None, False, True)
    """
    if a is None or b is None:
        return None
    ta = type(a)
    tb = type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if (ta is int or ta is float) and (tb is int or tb is float):
        return bool(a == b)
    if ta is list and tb is list:
        if len(a) != len(b):
            return False
        res: bool | None = True
        for x, y in zip(a, b):
            r = equals(x, y)
            if r is False:
                return False
            if r is None:
                res = None
        return res
    if ta is dict and tb is dict:
        if a.keys() != b.keys():
            return False
        res = True
        for k, x in a.items():
            r = equals(x, b[k])
            if r is False:
                return False
            if r is None:
                res = None
        return res
    if ta is not tb:
        return False
    return bool(a == b)


def compare(a: Any, b: Any) -> int | None:
    """Cypher ordering comparison: -1, 0, 1, or None when not comparable (or null involved).

    >>> compare(1, 2.5), compare("b", "a"), compare(1, "a"), compare([1, 2], [1, 3])
    (-1, 1, None, -1)
    """
    if a is None or b is None:
        return None
    ta = type(a)
    tb = type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        if a != a or b != b:  # NaN
            return None
        return -1 if a < b else (1 if a > b else 0)
    if ta is not tb:
        return None
    if ta is str or ta is bool:
        return -1 if a < b else (1 if a > b else 0)
    if ta is list:
        for x, y in zip(a, b):
            c = compare(x, y)
            if c is None:
                return None
            if c:
                return c
        return -1 if len(a) < len(b) else (1 if len(a) > len(b) else 0)
    return None


# Global ORDER BY order: map < node < relationship < list < path < string < boolean < number
# < null (null sorts last ascending, first descending).
_RANK_MAP, _RANK_NODE, _RANK_REL, _RANK_LIST, _RANK_PATH = 0, 1, 2, 3, 4
_RANK_STR, _RANK_BOOL, _RANK_NUM, _RANK_NULL = 5, 6, 7, 9


def sort_key(v: Any) -> tuple:
    """A key ordering any mix of Cypher values the way ORDER BY does."""
    if v is None:
        return (_RANK_NULL,)
    t = type(v)
    if t is int or t is float:
        if v != v:
            return (_RANK_NUM, 1, 0)
        return (_RANK_NUM, 0, v)
    if t is str:
        return (_RANK_STR, v)
    if t is bool:
        return (_RANK_BOOL, v)
    if t is list:
        return (_RANK_LIST, tuple(sort_key(x) for x in v))
    if t is NodeRef:
        return (_RANK_NODE, v.id)
    if t is RelRef:
        return (_RANK_REL, v.id, v.start, v.end)
    if t is PathRef:
        return (_RANK_PATH, v.nodes, tuple(r.key() for r in v.rels))
    if t is dict:
        return (_RANK_MAP, tuple(sorted((k, sort_key(x)) for k, x in v.items())))
    return (8, repr(v))


def group_key(v: Any) -> Any:
    """A hashable key equal for values DISTINCT/grouping treat as equal (``1`` and ``1.0``).

    >>> group_key([1, "a"]) == group_key([1.0, "a"])
    True
    """
    if v is None:
        return None
    t = type(v)
    if t is bool:
        return ("b", v)
    if t is int or t is float:
        return ("n", v)
    if t is str:
        return ("s", v)
    if t is list:
        return ("l", tuple(group_key(x) for x in v))
    if t is dict:
        return ("m", tuple(sorted((k, group_key(x)) for k, x in v.items())))
    if t is NodeRef or t is RelRef or t is PathRef:
        return v
    try:
        hash(v)
        return ("o", v)
    except TypeError:
        return ("r", repr(v))
