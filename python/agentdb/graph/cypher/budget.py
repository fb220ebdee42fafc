"""What one query may spend: a deadline, a cancel flag and a row cap.

A :class:`QueryBudget` is made per query (``timeout`` seconds, ``max_rows``) and made active
for the thread that runs the query (:func:`running`). The engine calls :meth:`QueryBudget.tick`
in its row loops, and hands :meth:`QueryBudget.native_args` to every native walk, which checks
the same deadline and flag from C++ (the flag is a one-byte numpy array the walk reads while
the GIL is released, so :meth:`QueryBudget.cancel` from another thread stops it too).

>>> import time
>>> b = QueryBudget(timeout=0.05)
>>> time.sleep(0.06)
>>> try:
...     b.check()
... except QueryTimeoutError as exc:
...     print(exc)
query exceeded its timeout of 0.05 s
>>> c = QueryBudget(); c.cancel()
>>> try:
...     c.check()
... except QueryCancelledError as exc:
...     print(exc)
query cancelled
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...errors import (
    InvalidArgumentError,
    QueryCancelledError,
    QueryLimitError,
    QueryTimeoutError,
)

__all__ = ["QueryBudget", "active", "check_limits", "running"]

_ACTIVE: contextvars.ContextVar[QueryBudget | None] = contextvars.ContextVar(
    "agentdb_query_budget", default=None)


def check_limits(timeout: Any, max_rows: Any) -> tuple[float | None, int | None]:
    """Validate a ``timeout`` (seconds, > 0, finite; None for none) and a ``max_rows``
    (integer >= 1; None for none).

    >>> check_limits(2, None)
    (2.0, None)
    >>> check_limits(-1, None)
    Traceback (most recent call last):
    ...
    agentdb.errors.InvalidArgumentError: timeout must be a finite number of seconds > 0, got -1
    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                math.isfinite(timeout) and timeout > 0):
            raise InvalidArgumentError(
                f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        timeout = float(timeout)
    if max_rows is not None:
        if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or (
                max_rows < 1):
            raise InvalidArgumentError(f"max_rows must be an integer >= 1, got {max_rows!r}")
        max_rows = int(max_rows)
    return timeout, max_rows


class QueryBudget:
    """A deadline (``timeout`` seconds from now), a cancel flag and a row cap for one query.

    >>> b = QueryBudget(timeout=10, max_rows=2)
    >>> b.count_row(); b.count_row()
    >>> try:
    ...     b.count_row()
    ... except QueryLimitError as exc:
    ...     print(exc)
    query returned more than max_rows=2 rows (add LIMIT or aggregate, or raise max_rows)
    """

    __slots__ = ("timeout", "deadline", "max_rows", "rows", "flag", "_ticks")

    def __init__(self, timeout: float | None = None, max_rows: int | None = None) -> None:
        self.timeout, self.max_rows = check_limits(timeout, max_rows)
        self.deadline = (time.monotonic() + self.timeout if self.timeout is not None
                         else math.inf)
        self.rows = 0
        self.flag = np.zeros(1, np.uint8)  # read by native walks; 1 = cancelled
        self._ticks = 0

    def cancel(self) -> None:
        """Stop the query at its next check (from any thread).

        >>> b = QueryBudget(); b.cancel(); b.cancelled
        True
        """
        self.flag[0] = 1

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return bool(self.flag[0])

    def remaining(self) -> float:
        """Seconds left before the deadline (``inf`` without one; may be negative).

        >>> QueryBudget().remaining()
        inf
        """
        return self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise :class:`QueryCancelledError` or :class:`QueryTimeoutError` when due.

        >>> QueryBudget(timeout=5).check()
        """
        if self.flag[0]:
            raise QueryCancelledError("query cancelled")
        if time.monotonic() > self.deadline:
            raise QueryTimeoutError(f"query exceeded its timeout of {self.timeout:g} s")

    def tick(self) -> None:
        """A cheap :meth:`check` for row loops: the clock is read every 256 calls.

        >>> b = QueryBudget(timeout=5)
        >>> for _ in range(1000):
        ...     b.tick()
        """
        self._ticks += 1
        if not self._ticks & 255:
            self.check()

    def count_row(self) -> None:
        """One more result row: raise :class:`QueryLimitError` past ``max_rows``."""
        self.rows += 1
        if self.max_rows is not None and self.rows > self.max_rows:
            raise QueryLimitError(
                f"query returned more than max_rows={self.max_rows} rows "
                "(add LIMIT or aggregate, or raise max_rows)")

    def native_args(self) -> dict[str, Any]:
        """Keyword arguments for a native walk: ``timeout`` (seconds left; 0 for none) and
        ``cancel`` (the flag). Raises at once when the budget is already spent.

        >>> sorted(QueryBudget(timeout=5).native_args())
        ['cancel', 'timeout']
        """
        self.check()
        left = self.remaining()
        return {"timeout": 0.0 if math.isinf(left) else max(left, 1e-6), "cancel": self.flag}

    def interrupted(self, exc: BaseException) -> BaseException:
        """The typed error for a native walk's ``TimeoutError`` (which this budget's deadline
        or flag stopped)."""
        if self.flag[0]:
            return QueryCancelledError("query cancelled")
        return QueryTimeoutError(f"query exceeded its timeout of {self.timeout:g} s"
                                 if self.timeout is not None else str(exc))


def active() -> QueryBudget | None:
    """The budget of the query this thread is running, or None.

    >>> active() is None
    True
    """
    return _ACTIVE.get()


@contextlib.contextmanager
def running(budget: QueryBudget | None) -> Iterator[QueryBudget | None]:
    """Make ``budget`` the active one (:func:`active`) for the block.

    >>> with running(QueryBudget(timeout=1)) as b:
    ...     active() is b
    True
    """
    token = _ACTIVE.set(budget)
    try:
        yield budget
    finally:
        _ACTIVE.reset(token)
