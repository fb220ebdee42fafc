"""A reader-writer lock for the causal graph: Cypher reads share it, writes hold it alone.

``with lock:`` (or :meth:`SharedLock.acquire`) takes it exclusively and is reentrant, like
:class:`threading.RLock`; :meth:`SharedLock.shared` takes it shared, so read queries run side
by side and only writes wait for them (and they for writes). A thread that holds it
exclusively may also take it shared; a thread that holds it shared may take it shared again,
but not exclusively (that would deadlock against another reader doing the same, so it raises).
Waiting writers go first: new readers queue behind them, so a stream of reads cannot starve a
write.

>>> lock = SharedLock()
>>> with lock.shared(), lock.shared():   # readers nest
...     lock.readers
1
>>> with lock:
...     with lock, lock.shared():         # the writer may nest both ways
...         lock.held_exclusively()
True
>>> lock.acquire_shared(timeout=0.1) and lock.release_shared() is None
True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["SharedLock"]


class SharedLock:
    """Exclusive (reentrant) and shared acquisition of one lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None  # the thread holding it exclusively
        self._depth = 0                 # its nesting depth
        self._readers = 0               # threads holding it shared (outside the owner)
        self._writers_waiting = 0
        self._local = threading.local()  # this thread's shared depth

    # ---- exclusive ----------------------------------------------------------------------
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock exclusively (True), or give up after ``timeout`` seconds (False)."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if getattr(self._local, "depth", 0):
                raise RuntimeError("cannot take the graph lock exclusively while holding it "
                                   "shared (a read query cannot write)")
            self._writers_waiting += 1
            try:
                ok = self._cond.wait_for(
                    lambda: self._owner is None and self._readers == 0,
                    None if (blocking and timeout < 0) else (timeout if blocking else 0))
            finally:
                self._writers_waiting -= 1
            if not ok:
                self._cond.notify_all()  # readers held back by this waiting writer may go
                return False
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        """Release one exclusive hold."""
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a graph lock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> SharedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def held_exclusively(self) -> bool:
        """Whether this thread holds the lock exclusively."""
        return self._owner == threading.get_ident()

    # ---- shared -------------------------------------------------------------------------
    def acquire_shared(self, timeout: float = -1) -> bool:
        """Take the lock shared (True), or give up after ``timeout`` seconds (False)."""
        depth = getattr(self._local, "depth", 0)
        with self._cond:
            if depth or self._owner == threading.get_ident():
                self._local.depth = depth + 1
                self._local.counted = getattr(self._local, "counted", False) if depth else False
                return True
            ok = self._cond.wait_for(
                lambda: self._owner is None and self._writers_waiting == 0,
                None if timeout < 0 else timeout)
            if not ok:
                return False
            self._readers += 1
            self._local.depth, self._local.counted = 1, True
            return True

    def release_shared(self) -> None:
        """Release one shared hold."""
        depth = getattr(self._local, "depth", 0)
        if depth <= 0:
            raise RuntimeError("release of a shared graph lock this thread does not hold")
        self._local.depth = depth - 1
        if depth == 1 and getattr(self._local, "counted", False):
            self._local.counted = False
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """``with lock.shared():`` the block holds the lock shared."""
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    @property
    def readers(self) -> int:
        """Threads holding the lock shared (not counting an exclusive owner's nested holds)."""
        return self._readers
