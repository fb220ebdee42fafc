"""Metadata filters and collection filters of the PostgreSQL store, as SQL.

:func:`pg_where_sql` translates the metadata filters of :mod:`agentdb.storage.filters` to
JSONB SQL with the same results as the SQLite translation; :func:`filter_sql` adds the
column filters (``min_reward``, ``success``, ``session_id``) of a search or id selection.
Both return SQL with ``%s`` placeholders and no braces, so it can go through
``psycopg.sql.SQL(...).format()``.  Nothing here needs psycopg.

>>> pg_where_sql({"x": {"$exists": False}})
('(metadata -> %s::text) IS NULL', ['x'])
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .filters import conditions

__all__ = ["age_sql", "filter_sql", "pg_where_sql"]

_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_INT64 = (-(2**63), 2**63 - 1)
# PostgreSQL float8 cannot hold a larger numeric; SQLite reads such JSON numbers as +-Inf.
_FMAX = "1.7976931348623157e308"


def _const(op: str, value_is_smaller: bool) -> str:
    """SQLite's answer when the two sides are of different classes (numbers < text)."""
    if op in ("=", "<>"):
        return "FALSE" if op == "=" else "TRUE"
    return "TRUE" if (op in ("<", "<=")) == value_is_smaller else "FALSE"


def _pg_scalar(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0  # SQLite's json_extract reads true/false as 1/0
    if value is None or isinstance(value, (int, float, str)):
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            raise OverflowError(f"where[{key!r}]: integer {value} does not fit in 64 bits")
        return value
    raise InvalidArgumentError(f"where[{key!r}]: unsupported value type {type(value).__name__}")


def _cmp(v: str, vp: list[Any], op: str, p: Any) -> tuple[str, list[Any]]:
    """``value op p`` with SQLite's rules; NULL when the value is missing or JSON null."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "FALSE", []  # SQLite binds None/NaN as NULL: never true
    if isinstance(p, str):
        text = f"(jsonb_build_array({v}) ->> 0) COLLATE \"C\" {op} %s::text"
        rendered = f"({v})::text COLLATE \"C\" {op} %s::text"
        c = _const(op, value_is_smaller=True)
        s = (f"CASE jsonb_typeof({v}) WHEN 'string' THEN {text} WHEN 'number' THEN {c} "
             f"WHEN 'boolean' THEN {c} WHEN 'array' THEN {rendered} "
             f"WHEN 'object' THEN {rendered} END")
        return s, [*vp, *vp, p, *vp, p, *vp, p]
    # numeric parameter: integers (and true/false) compare exactly, reals as doubles
    exact = p if isinstance(p, int) else Decimal(p)
    num = f"({v})::numeric"
    fval = (f"(CASE WHEN {num} > {_FMAX} THEN 'Infinity'::float8 WHEN {num} < -{_FMAX} "
            f"THEN '-Infinity'::float8 ELSE {num}::float8 END)")
    fp: list[Any] = [*vp, *vp, *vp]
    if isinstance(p, float) or float(p) == p:
        real, real_p = f"{fval} {op} %s::float8", [*fp, float(p)]
    else:  # an int no double equals: compare against the doubles around it
        f = float(p)
        lo = f if f < p else math.nextafter(f, -math.inf)
        hi = f if f > p else math.nextafter(f, math.inf)
        if op in ("=", "<>"):
            real, real_p = ("FALSE" if op == "=" else "TRUE"), []
        elif op in ("<", "<="):
            real, real_p = f"{fval} <= %s::float8", [*fp, lo]
        else:
            real, real_p = f"{fval} >= %s::float8", [*fp, hi]
    c = _const(op, value_is_smaller=False)
    s = (f"CASE jsonb_typeof({v}) WHEN 'number' THEN CASE WHEN scale({num}) = 0 AND {num} "
         f"BETWEEN {_INT64[0]} AND {_INT64[1]} THEN {num} {op} %s::numeric ELSE {real} END "
         f"WHEN 'boolean' THEN (CASE WHEN {v} = 'true'::jsonb THEN 1 ELSE 0 END) {op} "
         f"%s::numeric WHEN 'string' THEN {c} WHEN 'array' THEN {c} WHEN 'object' THEN {c} "
         "END")
    params = [*vp, *vp, *vp, *vp, exact, *real_p, *vp, exact]
    return s, params


def pg_where_sql(where: dict[str, Any] | None, column: str = "metadata"
                 ) -> tuple[str, list[Any]]:
    """Translate a metadata filter (the language of :func:`agentdb.storage.filters.where_sql`) into
    PostgreSQL JSONB SQL with ``%s`` placeholders: ``(sql, params)``, ``("TRUE", [])`` when
    empty. The SQL has no braces, so it can go through ``psycopg.sql.SQL(...).format()``.

    The results are the same as SQLite's ``json_extract`` translation on the same rows:
    numbers (and true/false, read as 1/0) compare numerically (integers exactly, reals as
    doubles), strings by their UTF-8 bytes, and across classes a number is less than a
    string (so ``$ne``/``$lt``/``$gt`` between a number and a string can match; ``$eq`` and
    ``$in`` never do). A missing key or JSON null behaves like SQL NULL: only
    ``$eq: None`` and ``$exists: False`` (missing key only) match it. Dotted keys walk into
    objects (never into arrays). Validation errors and messages are those of ``where_sql``.

    >>> pg_where_sql({})
    ('TRUE', [])
    >>> pg_where_sql({"x": {"$exists": True}})
    ('(metadata -> %s::text) IS NOT NULL', ['x'])
    """
    conds = conditions(where)
    if not conds:
        return "TRUE", []
    if not re.match(r"^[a-z_][a-z0-9_]*$", column):
        raise InvalidArgumentError(f"invalid column name {column!r}")
    parts: list[str] = []
    params: list[Any] = []
    for key, op, val in conds:
        path = key.split(".")
        v = "(" + column + "".join(" -> %s::text" for _ in path) + ")"
        vp: list[Any] = list(path)
        if op in _OPS:
            if val is None and op in ("$eq", "$ne"):
                test = f"{v} IS NULL OR jsonb_typeof({v}) = 'null'"
                parts.append(f"({test})" if op == "$eq" else f"NOT ({test})")
                params += [*vp, *vp]
                continue
            s, p = _cmp(v, vp, _OPS[op], _pg_scalar(key, val))
            parts.append(s)
            params += p
        elif op in ("$in", "$nin"):
            items = [_pg_scalar(key, x) for x in val]
            nulls = [x for x in items if x is None or (isinstance(x, float) and
                                                       math.isnan(x))]
            live = [x for x in items if not any(x is y for y in nulls)]
            if op == "$in":
                subs = [_cmp(v, vp, "=", x) for x in live]
                joiner = " OR "
            else:
                subs = [] if nulls else [_cmp(v, vp, "<>", x) for x in live]
                joiner = " AND "
            if not subs:  # NULL in a NOT IN list (or only NULLs in IN): never true
                parts.append("FALSE")
                continue
            parts.append("(" + joiner.join(f"({s})" for s, _ in subs) + ")")
            for _, p in subs:
                params += p
        else:  # $exists
            parts.append(f"{v} IS {'NOT ' if val else ''}NULL")
            params += vp
    return " AND ".join(parts), params


def age_sql(table: str, created_before: float | None, updated_before: float | None,
            reward_below: float | None) -> tuple[list[str], list[Any]]:
    """The WHERE conditions (``%s`` placeholders) and parameters of ``forget``'s criteria:
    created / updated before a time, a reward (the success rate for skills) below a value.

    >>> age_sql("skills", None, 10.0, 0.5)
    (['updated_at < %s', 'success_rate < %s'], [10.0, 0.5])
    """
    parts: list[str] = []
    params: list[Any] = []
    for cond, value in (("created_at < %s", created_before), ("updated_at < %s", updated_before),
                        (f"{'success_rate' if table == 'skills' else 'reward'} < %s",
                         reward_below)):
        if value is not None:
            parts.append(cond)
            params.append(float(value))
    return parts, params


def filter_sql(table: str, min_reward: float | None, success: bool | None,
               session_id: str | None, where: dict[str, Any] | None
               ) -> tuple[list[str], list[Any]]:
    """The WHERE conditions (``%s`` placeholders, no braces) and parameters of a collection
    filter: ``min_reward`` (the success rate for skills), ``success``, ``session_id`` and a
    metadata ``where`` (:func:`pg_where_sql`); the conditions are to be AND-ed.

    >>> filter_sql("episodes", 0.5, True, None, None)
    (['reward >= %s', 'success = %s'], [0.5, True])
    """
    parts: list[str] = []
    params: list[Any] = []
    if min_reward is not None:
        if isinstance(min_reward, bool) or not isinstance(
                min_reward, (int, float, np.integer, np.floating)) or math.isnan(min_reward):
            raise InvalidArgumentError(f"min_reward must be a number, got {min_reward!r}")
        parts.append("success_rate >= %s" if table == "skills" else "reward >= %s")
        params.append(float(min_reward))
    if success is not None:
        if table == "skills":
            raise InvalidArgumentError("skills have no success column")
        parts.append("success = %s")
        params.append(bool(success))
    if session_id is not None:
        if table == "skills":
            raise InvalidArgumentError("skills have no session_id column")
        parts.append("session_id = %s")
        params.append(str(session_id))
    if where:
        w_sql, w_params = pg_where_sql(where)
        parts.append(w_sql)
        params += w_params
    return parts, params
