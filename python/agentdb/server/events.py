"""The change feed behind ``GET /patterns/stream`` (SSE) and the gRPC ``StreamPatterns``.

An :class:`EventHub` subscribes to the store's events (``db.on("*", ...)``), numbers them
1, 2, 3, ... and keeps the last ``buffer`` of them. A subscriber gets a queue; one that comes
back with ``Last-Event-ID: n`` first receives the buffered events after ``n`` (or a ``reset``
event when ``n`` fell out of the buffer, so it knows to re-read), then live ones. A slow
subscriber whose queue fills up is dropped (its stream ends) rather than slowing writers;
closing a subscription removes it.

>>> hub = EventHub(buffer=2)
>>> for i in range(3):
...     _ = hub.publish("pattern:stored", {"id": i})
>>> sub = hub.subscribe(last_event_id=1)
>>> [(e.id, e.event) for e in sub.backlog]
[(2, 'pattern:stored'), (3, 'pattern:stored')]
>>> [e.event for e in hub.subscribe(last_event_id=0).backlog]
['reset', 'pattern:stored', 'pattern:stored']
"""

from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["Event", "EventHub", "Subscription"]


@dataclass(frozen=True)
class Event:
    """One change: ``id`` (1, 2, ...), ``event`` (e.g. ``pattern:stored``), ``data``."""

    id: int
    event: str
    data: dict[str, Any]


class Subscription:
    """A subscriber: ``backlog`` (replayed events) then ``get(timeout)`` for live ones."""

    def __init__(self, hub: EventHub, backlog: list[Event], maxsize: int,
                 kinds: tuple[str, ...] | None) -> None:
        self.hub = hub
        self.backlog = backlog
        self.kinds = kinds
        self.queue: queue.Queue[Event | None] = queue.Queue(maxsize=maxsize)
        self.closed = False

    def wants(self, ev: Event) -> bool:
        """Does this subscriber want ``ev`` (by kind prefix, e.g. ``pattern``)?"""
        return self.kinds is None or ev.event.split(":", 1)[0] in self.kinds

    def get(self, timeout: float) -> Event | None:
        """The next live event, or None after ``timeout`` seconds (or once dropped/closed)."""
        if self.closed:
            return None
        try:
            ev = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if ev is None:
            self.closed = True
        return ev

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        self.closed = True
        self.hub.remove(self)


class EventHub:
    """Numbered events, a replay buffer of the last ``buffer``, fan-out to subscribers."""

    def __init__(self, buffer: int = 1000, queue_size: int = 10000) -> None:
        if buffer < 1:
            raise InvalidArgumentError(f"buffer must be >= 1, got {buffer}")
        self._buf: collections.deque[Event] = collections.deque(maxlen=buffer)
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._next = 1
        self.queue_size = queue_size

    @property
    def last_id(self) -> int:
        """Id of the newest event (0 before the first)."""
        return self._next - 1

    @property
    def oldest_buffered(self) -> int | None:
        """Id of the oldest event still in the replay buffer (None when it is empty).

        >>> EventHub(buffer=2).oldest_buffered is None
        True
        """
        with self._lock:
            return self._buf[0].id if self._buf else None

    def subscriber_count(self) -> int:
        """Live subscriptions."""
        with self._lock:
            return len(self._subs)

    def publish(self, event: str, data: dict[str, Any]) -> Event:
        """Number, buffer and fan out one event (called from the writer's thread)."""
        with self._lock:
            ev = Event(self._next, event, data)
            self._next += 1
            self._buf.append(ev)
            subs = list(self._subs)
        for s in subs:
            if not s.wants(ev):
                continue
            try:
                s.queue.put_nowait(ev)
            except queue.Full:  # too slow: drop it rather than block the writer
                self.remove(s)
                try:
                    s.queue.get_nowait()
                    s.queue.put_nowait(None)
                except (queue.Empty, queue.Full):
                    pass
        return ev

    def subscribe(self, last_event_id: int | None = None,
                  kinds: tuple[str, ...] | None = None) -> Subscription:
        """A new subscription; with ``last_event_id``, first the buffered events after it
        (preceded by a ``reset`` event when some of them are no longer buffered)."""
        with self._lock:
            backlog: list[Event] = []
            if last_event_id is not None and last_event_id < self._next - 1:
                oldest = self._buf[0].id if self._buf else None
                if oldest is None or last_event_id < oldest - 1:
                    backlog.append(Event(self._next - 1, "reset",
                                         {"reason": "events after the given Last-Event-ID are "
                                          "no longer buffered; re-read the store",
                                          "oldest_buffered": oldest}))
                backlog += [e for e in self._buf if e.id > last_event_id]
            sub = Subscription(self, [], self.queue_size, kinds)
            sub.backlog = [e for e in backlog if e.event == "reset" or sub.wants(e)]
            self._subs.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        """Forget ``sub`` (its ``close()`` calls this); unknown subscriptions are ignored."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
