"""Metadata filters: a small Mongo-like dict turned into parameterised SQL.

``where={"lang": "python", "difficulty": {"$gte": 3}, "tags": {"$in": ["a", "b"]}}`` matches
records whose metadata has ``lang == "python"`` and ``difficulty >= 3`` and a ``tags`` value in
the list. Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists``. Keys may be dotted paths
(``"a.b"``) of letters, digits, ``_`` and ``-``. Every value is a bound parameter.

>>> sql, params = where_sql({"lang": "py", "n": {"$gte": 2}})
>>> sql
'json_extract(metadata, ?) = ? AND json_extract(metadata, ?) >= ?'
>>> params
['$.lang', 'py', '$.n', 2]
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["conditions", "where_sql"]

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _scalar(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0  # JSON true/false come back from json_extract as 1/0
    if value is None or isinstance(value, (int, float, str)):
        return value
    raise InvalidArgumentError(f"where[{key!r}]: unsupported value type {type(value).__name__}")


def conditions(where: dict[str, Any] | None) -> list[tuple[str, str, Any]]:
    """Validate a filter dict and flatten it to ``(key, operator, value)`` triples (shared by
    the SQLite and the PostgreSQL translations, so both reject the same inputs alike).

    >>> conditions({"a": 1, "b": {"$in": [1, 2]}})
    [('a', '$eq', 1), ('b', '$in', [1, 2])]
    """
    if not where:
        return []
    if not isinstance(where, dict):
        raise InvalidTypeError(f"where must be a dict, got {type(where).__name__}")
    out: list[tuple[str, str, Any]] = []
    for key, cond in where.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidArgumentError(f"where: invalid metadata key {key!r}")
        conds = cond if isinstance(cond, dict) else {"$eq": cond}
        if not conds:
            raise InvalidArgumentError(f"where[{key!r}]: empty condition")
        for op, val in conds.items():
            if op in ("$in", "$nin"):
                if not isinstance(val, (list, tuple, set)) or not val:
                    raise InvalidArgumentError(f"where[{key!r}]: {op} needs a non-empty list")
            elif op not in _OPS and op != "$exists":
                raise InvalidArgumentError(f"where[{key!r}]: unknown operator {op!r} "
                                           "(use $eq $ne $gt $gte $lt $lte $in $nin $exists)")
            out.append((key, op, val))
    return out


def where_sql(where: dict[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """Translate a metadata filter dict into ``(sql, params)``; ``("1", [])`` when empty.

    >>> where_sql({"ok": True})
    ('json_extract(metadata, ?) = ?', ['$.ok', 1])
    >>> where_sql({"x": {"$bad": 1}})
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: where['x']: unknown operator '$bad' ...
    """
    conds = conditions(where)
    if not conds:
        return "1", []
    parts: list[str] = []
    params: list[Any] = []
    for key, op, val in conds:
        path = "$." + key
        ext = f"json_extract({column}, ?)"
        if op in _OPS:
            if val is None and op in ("$eq", "$ne"):
                parts.append(f"{ext} IS {'NOT ' if op == '$ne' else ''}NULL")
                params.append(path)
                continue
            parts.append(f"{ext} {_OPS[op]} ?")
            params += [path, _scalar(key, val)]
        elif op in ("$in", "$nin"):
            marks = ", ".join("?" * len(val))
            parts.append(f"{ext} {'NOT ' if op == '$nin' else ''}IN ({marks})")
            params += [path, *(_scalar(key, v) for v in val)]
        else:  # $exists
            parts.append(f"json_type({column}, ?) IS {'NOT ' if val else ''}NULL")
            params.append(path)
    return " AND ".join(parts), params
