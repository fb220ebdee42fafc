"""Concurrent ``/vectors/search`` requests answered as batch searches.

Each plain search (no filter, no diversity) handed to :class:`SearchBatcher` joins a queue.
While fewer batches run than there are search threads, the queue goes to a thread at once as
one batch, so a lone request waits for nobody. Requests that arrive while every thread is
busy wait for the next free one and go together: one hand-off to a thread and one batch
search of the index (``AgentDB.search_hits_many``, its rows searched in parallel) instead of
one of each per request. Requests of one batch that differ in ``k``, ``ef`` or
``threshold`` are searched in groups; the answers are the same as one by one.

>>> import asyncio, concurrent.futures, agentdb
>>> db = agentdb.open(":memory:", dim=8)
>>> pid = db.store_pattern("t", embedding=[1, 0, 0, 0, 0, 0, 0, 0])
>>> pool = concurrent.futures.ThreadPoolExecutor(2)
>>> batcher = SearchBatcher(db, pool, lanes=2)
>>> q = [1.0, 0.1, 0, 0, 0, 0, 0, 0]
>>> [h["id"] for h in asyncio.run(batcher.search(q, 1))]
[1]
>>> pool.shutdown()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import defaultdict
from typing import Any

from ..errors import StoreClosedError

__all__ = ["SearchBatcher"]

#: The most searches one batch carries (the rest wait for the next thread).
MAX_BATCH = 64


class SearchBatcher:
    """Combines concurrent plain pattern searches of ``db`` into batch searches run on
    ``pool``, at most ``lanes`` batches at a time (the pool's thread count)."""

    def __init__(self, db: Any, pool: concurrent.futures.Executor, lanes: int) -> None:
        self._db = db
        self._pool = pool
        self._lanes = max(1, int(lanes))
        self._busy = 0
        self._queue: list[tuple[Any, int, int | None, float | None, asyncio.Future[Any]]] = []
        #: Batches run and the searches they carried (read by the tests; ``app.state.batcher``).
        self.batches = 0
        self.searches = 0

    async def search(self, q: Any, k: int, ef: int | None = None,
                     threshold: float | None = None) -> list[dict[str, Any]]:
        """The hits of one search (as ``db.search_hits(q, k, ef=ef, threshold=threshold)``);
        its own error if it fails."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((q, k, ef, threshold, fut))
        if self._busy < self._lanes:
            self._launch(loop)
        return await fut  # type: ignore[no-any-return]

    def _launch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = [item for item in self._queue if not item[4].done()]  # cancelled
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        if not batch:
            return
        try:
            done = loop.run_in_executor(self._pool, self._run, [item[:4] for item in batch])
        except RuntimeError:  # the pool was shut down: the app is stopping
            for item in batch:
                if not item[4].done():
                    item[4].set_exception(StoreClosedError(
                        "the server is stopping: its search threads are shut down"))
            return
        self._busy += 1
        self.batches += 1
        self.searches += len(batch)
        done.add_done_callback(lambda f: self._finish(loop, batch, f))

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[Any],
                done: asyncio.Future[Any]) -> None:
        self._busy -= 1
        exc = None if done.cancelled() else done.exception()
        answers = None if exc is not None or done.cancelled() else done.result()
        for n, item in enumerate(batch):
            fut = item[4]
            if fut.done():
                continue
            if done.cancelled():
                fut.cancel()
            elif exc is not None:
                fut.set_exception(exc)
            else:
                answer = answers[n]
                if isinstance(answer, BaseException):
                    fut.set_exception(answer)
                else:
                    fut.set_result(answer)
        if self._queue and self._busy < self._lanes:
            self._launch(loop)

    def _run(self, items: list[tuple[Any, int, int | None, float | None]]) -> list[Any]:
        """On a search thread: each item's hits, or the exception its search raised."""
        out: list[Any] = [None] * len(items)
        groups: dict[tuple[int, int | None, float | None], list[int]] = defaultdict(list)
        for n, (_, k, ef, threshold) in enumerate(items):
            groups[(k, ef, threshold)].append(n)
        for (k, ef, threshold), members in groups.items():
            try:
                hits = self._db.search_hits_many([items[n][0] for n in members], k, ef=ef,
                                                 threshold=threshold)
            except Exception:  # noqa: BLE001 - each search then raises its own error
                for n in members:
                    try:
                        out[n] = self._db.search_hits(items[n][0], k, ef=ef,
                                                      threshold=threshold)
                    except Exception as exc:  # noqa: BLE001 - handed to its request
                        out[n] = exc
                continue
            for n, h in zip(members, hits):
                out[n] = h
        return out
