"""In-memory filter columns, so search filters cost microseconds instead of a table scan.

Each live record has a position; reward, success and session are numpy columns, and metadata
keys used in ``where`` filters get lazily built indexes (a value -> positions map for
equality, a float column for ranges, a presence mask for ``$exists``) that later writes keep
current. Results of identical filters are cached until the next write.

>>> c = FilterColumns()
>>> c.set(1, 0.9, True, "s1", {"lang": "py", "n": 3})
>>> c.set(2, 0.1, False, "s1", {"lang": "js"})
>>> c.select(None, True, None, None).tolist()
[1]
>>> c.select(None, None, "s1", {"n": {"$gte": 2}}).tolist()
[1]
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from typing import Any

import numpy as np

__all__ = ["FilterColumns", "check_where"]

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_RANGE = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}
_MISSING = object()


def _get(doc: dict[str, Any], key: str) -> Any:
    cur: Any = doc
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def equality_key(value: Any) -> Any:
    """Equality key: numbers compare by exact value (1 == 1.0, True == 1 as in SQLite JSON;
    integers beyond 2**53 stay exact because Python compares int and float exactly)."""
    if isinstance(value, bool):
        return ("n", int(value))
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z", None)
    return ("o", repr(value))  # lists/dicts: never equal to a scalar filter value


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return math.nan


def check_where(where: dict[str, Any] | None) -> None:
    """Validate a ``where`` filter (same grammar as :mod:`agentdb.storage.filters`).

    >>> check_where({"a": {"$bad": 1}})
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: where['a']: unknown operator '$bad' ...
    """
    from .filters import where_sql

    where_sql(where)  # raises the same errors as the SQL path


class FilterColumns:
    """Columns of one collection's filterable fields, by record position."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pos: dict[int, int] = {}
        self.n = 0
        self.ids = np.zeros(1024, np.int64)
        self.reward = np.zeros(1024, np.float32)
        self.success = np.zeros(1024, bool)
        self.session = np.full(1024, -1, np.int32)
        self.alive = np.zeros(1024, bool)
        #: expiry time of each record (inf = never); ``_soonest`` is a lower bound of the
        #: live records' expiries, so a filter pays for the expiry check only once one of
        #: them may have expired
        self.expires = np.full(1024, np.inf)
        self._soonest = math.inf
        self._expired: tuple[np.ndarray, float] | None = None  # (ids, valid until), per write
        self.meta: list[dict[str, Any]] = []
        self.codes: dict[str, int] = {}
        self._eq: dict[str, dict[Any, set[int]]] = {}
        self._num: dict[str, np.ndarray] = {}
        self._has: dict[str, np.ndarray] = {}
        self._cache: dict[Any, np.ndarray] = {}

    # ---- writes -------------------------------------------------------------------------------
    def _grow(self) -> None:
        for name in ("ids", "reward", "success", "session", "alive", "expires"):
            arr = getattr(self, name)
            grown = np.resize(arr, 2 * len(arr))
            grown[len(arr):] = {"session": -1, "expires": np.inf}.get(name, 0)
            setattr(self, name, grown)
        for key, col in self._num.items():
            grown = np.full(2 * len(col), np.nan)
            grown[: len(col)] = col
            self._num[key] = grown
        for key, col in self._has.items():
            grown = np.zeros(2 * len(col), bool)
            grown[: len(col)] = col
            self._has[key] = grown

    def set(self, rid: int, reward: float, success: bool, session: str | None,
            metadata: dict[str, Any] | None = None, expires_at: float | None = None) -> None:
        """Insert or update a record's columns (``expires_at``: epoch seconds, None =
        never)."""
        meta = metadata or {}
        with self.lock:
            self._cache.clear()
            self._expired = None
            p = self.pos.get(rid)
            if p is None:
                if self.n == len(self.ids):
                    self._grow()
                p = self.n
                self.n += 1
                self.pos[rid] = p
                self.ids[p] = rid
                self.meta.append(meta)
                old: dict[str, Any] | None = None
            else:
                old = self.meta[p]
                self.meta[p] = meta
            self.reward[p] = reward
            self.success[p] = success
            self.session[p] = (-1 if session is None
                               else self.codes.setdefault(session, len(self.codes)))
            self.alive[p] = True
            exp = math.inf if expires_at is None else float(expires_at)
            self.expires[p] = exp
            self._soonest = min(self._soonest, exp)
            self._index_doc(p, old, meta)

    def set_row(self, table: str, rid: int, row: dict[str, Any]) -> None:
        """:meth:`set` from a stored row of ``table`` (skills filter on their success rate;
        ``metadata`` a dict or its JSON text).

        >>> cols = FilterColumns()
        >>> cols.set_row("patterns", 7, {"reward": 0.5, "success": 1, "session_id": "s",
        ...                              "metadata": '{"a": 1}', "expires_at": None})
        >>> cols.meta[cols.pos[7]]
        {'a': 1}
        """
        meta = row.get("metadata")
        meta = json.loads(meta) if isinstance(meta, (str, bytes)) else meta
        if table == "skills":
            self.set(rid, row["success_rate"], False, None, meta, row.get("expires_at"))
        else:
            self.set(rid, row["reward"], bool(row["success"]), row.get("session_id"), meta,
                     row.get("expires_at"))

    def _index_doc(self, p: int, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        for key, table in self._eq.items():
            if old is not None:
                ov = _get(old, key)
                if ov is not _MISSING:
                    table.get(equality_key(ov), set()).discard(p)
            nv = _get(new, key)
            if nv is not _MISSING:
                table.setdefault(equality_key(nv), set()).add(p)
        for key, col in self._num.items():
            nv = _get(new, key)
            col[p] = math.nan if nv is _MISSING else _number(nv)
        for key, col in self._has.items():
            col[p] = _get(new, key) is not _MISSING

    def remove(self, rid: int) -> None:
        """Forget a record (its position stays, marked dead)."""
        with self.lock:
            self._cache.clear()
            self._expired = None
            p = self.pos.pop(rid, None)
            if p is not None:
                self.alive[p] = False

    # ---- lazily built metadata indexes --------------------------------------------------------
    def _eq_index(self, key: str) -> dict[Any, set[int]]:
        table = self._eq.get(key)
        if table is None:
            table = {}
            for p, doc in enumerate(self.meta):
                v = _get(doc, key)
                if v is not _MISSING:
                    table.setdefault(equality_key(v), set()).add(p)
            self._eq[key] = table
        return table

    def _num_col(self, key: str) -> np.ndarray:
        col = self._num.get(key)
        if col is None:
            col = np.full(len(self.ids), np.nan)
            for p, doc in enumerate(self.meta):
                v = _get(doc, key)
                if v is not _MISSING:
                    col[p] = _number(v)
            self._num[key] = col
        return col

    def _has_col(self, key: str) -> np.ndarray:
        col = self._has.get(key)
        if col is None:
            col = np.zeros(len(self.ids), bool)
            for p, doc in enumerate(self.meta):
                col[p] = _get(doc, key) is not _MISSING
            self._has[key] = col
        return col

    def _positions(self, table: dict[Any, set[int]], values: list[Any]) -> np.ndarray:
        mask = np.zeros(self.n, bool)
        for v in values:
            ps = table.get(equality_key(v))
            if ps:
                mask[np.fromiter(ps, np.int64, len(ps))] = True
        return mask

    def _where_mask(self, where: dict[str, Any]) -> np.ndarray:
        n = self.n
        mask = np.ones(n, bool)
        for key, cond in where.items():
            conds = cond if isinstance(cond, dict) else {"$eq": cond}
            for op, val in conds.items():
                if op in ("$eq", "$ne"):
                    if val is None:  # SQL semantics: IS NULL / IS NOT NULL
                        hit = self._positions(self._eq_index(key), [None]) | ~self._has_col(key)[:n]
                    else:
                        hit = self._positions(self._eq_index(key), [val])
                    if op == "$eq":
                        mask &= hit
                    elif val is None:
                        mask &= ~hit
                    else:  # SQL: a missing key or null never satisfies !=
                        present = self._has_col(key)[:n] & ~self._positions(
                            self._eq_index(key), [None])
                        mask &= present & ~hit
                elif op in ("$in", "$nin"):
                    # as in SQL, null inside the list never matches anything
                    hit = self._positions(self._eq_index(key), [v for v in val if v is not None])
                    if op == "$in":
                        mask &= hit
                    else:
                        present = self._has_col(key)[:n] & ~self._positions(
                            self._eq_index(key), [None])
                        mask &= present & ~hit
                elif op in _RANGE:
                    big = isinstance(val, int) and not isinstance(val, bool) and abs(val) > 2**53
                    if isinstance(val, str) or big:  # strings, huge ints: exact, in Python
                        kinds = str if isinstance(val, str) else (int, float)
                        hit = np.array([
                            isinstance(v := _get(d, key), kinds) and not isinstance(v, bool)
                            and bool(_RANGE[op](v, val)) for d in self.meta[:n]], bool)
                    else:
                        with np.errstate(invalid="ignore"):
                            hit = _RANGE[op](self._num_col(key)[:n], float(val))
                    mask &= hit
                elif op == "$exists":
                    has = self._has_col(key)[:n]
                    mask &= has if val else ~has
        return mask

    # ---- reads --------------------------------------------------------------------------------
    def has_expired(self, now: float) -> bool:
        """Whether a live record has expired by ``now`` (exact; cheap until one may have).

        >>> c = FilterColumns(); c.set(1, 0.0, False, None, None, expires_at=10.0)
        >>> c.has_expired(5.0), c.has_expired(10.0)
        (False, True)
        """
        return len(self.expired_ids(now)) > 0

    def expired_ids(self, now: float) -> np.ndarray:
        """Sorted ids of the live records expired by ``now``.

        >>> c = FilterColumns(); c.set(3, 0.0, False, None, None, expires_at=1.0)
        >>> c.expired_ids(2.0).tolist()
        [3]
        """
        with self.lock:
            if self._soonest > now:
                return np.zeros(0, np.int64)
            cached = self._expired
            if cached is not None and now < cached[1]:
                return cached[0]  # no write since, and the next expiry is still ahead
            n = self.n
            alive, exp = self.alive[:n], self.expires[:n]
            gone = alive & (exp <= now)
            ids = np.sort(self.ids[:n][gone])
            ids.setflags(write=False)
            ahead = exp[alive & ~gone]
            nxt = float(ahead.min()) if ahead.size else math.inf
            self._soonest = float(exp[gone].min()) if ids.size else nxt
            self._expired = (ids, nxt)
            return ids

    def select(self, min_reward: float | None, success: bool | None, session: str | None,
               where: dict[str, Any] | None) -> np.ndarray:
        """Sorted ids of live, unexpired records passing every given filter."""
        key = (min_reward, success, session, repr(sorted(where.items())) if where else None)
        now = time.time()
        with self.lock:
            cached = self._cache.get(key)
            if cached is not None:
                return self._unexpired(*cached, now)
            n = self.n
            mask = self.alive[:n].copy()
            if min_reward is not None:
                mask &= self.reward[:n] >= min_reward
            if success is not None:
                mask &= self.success[:n] == success
            if session is not None:
                code = self.codes.get(session)
                if code is None:
                    mask[:] = False
                else:
                    mask &= self.session[:n] == code
            if where:
                mask &= self._where_mask(where)
            pos = np.flatnonzero(mask)
            ids = self.ids[pos]
            order = np.argsort(ids, kind="stable")
            out, pos = ids[order], pos[order]
            out.setflags(write=False)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = (out, pos)
            return self._unexpired(out, pos, now)

    def _unexpired(self, ids: np.ndarray, pos: np.ndarray, now: float) -> np.ndarray:
        """``ids`` (at positions ``pos``) without the records expired by ``now`` (under the
        lock)."""
        if self._soonest > now or not ids.size:
            return ids
        keep = self.expires[pos] > now
        if keep.all():
            return ids
        out = ids[keep]
        out.setflags(write=False)
        return out
