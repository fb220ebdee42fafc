"""The Cypher queries a server is running: their limits, and cancelling them.

The HTTP route and the gRPC service register each query's
:class:`~agentdb.graph.cypher.budget.QueryBudget` here while it runs. A client that goes away
cancels its own query; a server that is stopping (SIGTERM) cancels all of them at once, so
it exits within moments whatever they were doing.

>>> q = RunningQueries(timeout=30, max_rows=1000)
>>> b = q.budget(timeout=60, max_rows=None)   # a client may lower the limits, not raise them
>>> b.timeout, b.max_rows
(30.0, 1000)
>>> with q.running(b):
...     print(q.cancel_all(), b.cancelled)
1 True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from ..graph.cypher.budget import QueryBudget, check_limits

__all__ = ["RunningQueries"]


class RunningQueries:
    """The server-wide Cypher limits (``timeout`` seconds and ``max_rows``; None for none)
    and the set of queries running under them."""

    def __init__(self, timeout: float | None = 30.0, max_rows: int | None = 100_000) -> None:
        self.timeout, self.max_rows = check_limits(timeout, max_rows)
        self._lock = threading.Lock()
        self._live: set[QueryBudget] = set()
        self._stopping = False

    def budget(self, timeout: float | None, max_rows: int | None) -> QueryBudget:
        """A budget for one query: the client's limits, capped by the server's.

        >>> RunningQueries(timeout=None, max_rows=None).budget(None, None).timeout is None
        True
        """
        timeout, max_rows = check_limits(timeout, max_rows)
        return QueryBudget(_lowest(timeout, self.timeout), _lowest(max_rows, self.max_rows))

    @contextlib.contextmanager
    def running(self, budget: QueryBudget) -> Iterator[QueryBudget]:
        """Register ``budget`` for the block (cancelled at once if the server is stopping)."""
        with self._lock:
            self._live.add(budget)
            if self._stopping:
                budget.cancel()
        try:
            yield budget
        finally:
            with self._lock:
                self._live.discard(budget)

    def cancel_all(self) -> int:
        """Cancel every running query and every later one (the server is stopping); returns
        how many were running.

        >>> RunningQueries().cancel_all()
        0
        """
        with self._lock:
            self._stopping = True
            for b in self._live:
                b.cancel()
            return len(self._live)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)


def _lowest(a: float | int | None, b: float | int | None) -> float | int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
