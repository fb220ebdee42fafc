"""Memories that expire, are pruned, or fold into a near-duplicate: the arguments of
``ttl=`` / ``expires_at=``, :meth:`~agentdb.memory.core.MemoryCore.forget` and
``store_pattern(dedupe=...)``, checked here, and the thread that forgets on a schedule.

A record with an ``expires_at`` in the past is invisible at once (every read, count, filter
and search leaves it out); ``forget()`` removes it for good, with an event per record.

>>> expiry(ttl=60, now=1000.0)
1060.0
>>> expiry(expires_at=None) is None
True
>>> merged_reward(0.5, 1, 1.0)
0.75
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import threading
import time
import weakref
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, StoreClosedError

__all__ = ["FORGET_KINDS", "Forgetter", "check_dedupe", "expiry", "forget_filters",
           "merged_reward"]

#: What ``forget()`` covers when no ``kinds`` are given.
FORGET_KINDS = ("patterns", "episodes", "skills")

_log = logging.getLogger("agentdb.forget")


def _seconds(value: Any, name: str) -> float:
    """A positive, finite duration in seconds (a number or a ``timedelta``)."""
    if isinstance(value, _dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"{name} must be a number of seconds or a timedelta, "
                               f"got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise InvalidArgumentError(f"{name} must be a finite number of seconds > 0, got {v}")
    return v


def _instant(value: Any, name: str) -> float:
    """A finite time in epoch seconds (a number or an aware/naive ``datetime``, naive = local)."""
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"{name} must be a time in epoch seconds or a datetime, "
                               f"got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{name} must be a finite time in epoch seconds, got {v}")
    return v


def expiry(ttl: Any = None, expires_at: Any = None, now: float | None = None) -> float | None:
    """The ``expires_at`` of a record stored with ``ttl`` (seconds from ``now``) or an
    explicit ``expires_at``; None when neither is given (it never expires).

    >>> expiry(ttl=_dt.timedelta(minutes=1), now=0.0)
    60.0
    >>> expiry(ttl=1, expires_at=2)
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: give ttl or expires_at, not both
    """
    if ttl is not None and expires_at is not None:
        raise InvalidArgumentError("give ttl or expires_at, not both")
    if ttl is not None:
        return (time.time() if now is None else now) + _seconds(ttl, "ttl")
    if expires_at is not None:
        return _instant(expires_at, "expires_at")
    return None


def check_dedupe(value: Any) -> float | None:
    """A ``dedupe`` threshold: a cosine similarity in (0, 1], or None (no de-duplication).

    >>> check_dedupe(0.95)
    0.95
    >>> check_dedupe(1.5)
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: dedupe is a cosine similarity in (0, 1], got 1.5
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"dedupe must be a number, got {type(value).__name__}")
    v = float(value)
    if not (0.0 < v <= 1.0):
        raise InvalidArgumentError(f"dedupe is a cosine similarity in (0, 1], got {v}")
    return v


def merged_reward(old: float, uses: int, new: float) -> float:
    """The running mean of a pattern's reward after one more store of ``new``."""
    return (float(old) * max(int(uses), 1) + float(new)) / (max(int(uses), 1) + 1)


def forget_filters(kinds: Any, older_than: Any, reward_below: Any, unused_for: Any,
                   where: Any, now: float) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """The collections ``forget()`` covers and the ``filter_ids`` arguments of its criteria
    (None when no criterion is given: then only expired records go).

    >>> forget_filters("patterns", 60, None, None, None, 100.0)[1]["created_before"]
    40.0
    """
    if kinds is None:
        ks: tuple[str, ...] = FORGET_KINDS
    else:
        ks = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        bad = [k for k in ks if k not in FORGET_KINDS]
        if bad or not ks:
            raise InvalidArgumentError(f"unknown kind(s) {bad or list(ks)!r}: expected "
                                       "patterns, episodes or skills")
    if reward_below is not None:
        if isinstance(reward_below, bool) or not isinstance(
                reward_below, (int, float, np.integer, np.floating)) or not math.isfinite(
                float(reward_below)):
            raise InvalidArgumentError(
                f"reward_below must be a finite number, got {reward_below!r}")
        reward_below = float(reward_below)
    if where is not None and not isinstance(where, dict):
        raise InvalidTypeError(f"where must be a dict, got {type(where).__name__}")
    if older_than is None and reward_below is None and unused_for is None and not where:
        return ks, None
    return ks, {
        "created_before": None if older_than is None else now - _seconds(older_than,
                                                                         "older_than"),
        "reward_below": reward_below,
        "updated_before": None if unused_for is None else now - _seconds(unused_for,
                                                                         "unused_for"),
        "where": where or None,
    }


class Forgetter:
    """A daemon thread that calls ``db.forget()`` every ``interval`` seconds (expired
    records only) until :meth:`stop` or the store closes; a failed pass is logged and the
    next one runs as planned.

    >>> from agentdb import AgentDB
    >>> db = AgentDB(":memory:", dim=8)
    >>> f = Forgetter(db, 3600.0); f.stop(); f.passes
    0
    """

    def __init__(self, db: Any, interval: Any) -> None:
        self.interval = _seconds(interval, "forget_every")
        self.passes = 0
        self.removed = 0
        self._db = weakref.ref(db)  # the thread never keeps a store alive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentdb-forget", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            db = self._db()
            if db is None:
                return
            try:
                gone = db.forget()
            except StoreClosedError:
                return
            except Exception:  # noqa: BLE001 - a background pass must not die silently
                _log.exception("background forget() failed; retrying in %.0f s", self.interval)
                continue
            finally:
                del db
            self.passes += 1
            self.removed += sum(len(v) for v in gone.values())

    def stop(self) -> None:
        """Stop the thread (waits for a pass under way)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
