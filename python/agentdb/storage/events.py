"""In-process events: ``db.on("pattern:stored", callback)``.

Names are ``<kind>:<action>`` with kind ``pattern``, ``episode`` or ``skill`` and action
``stored``, ``updated`` or ``deleted``; ``"*"`` receives every event. Callbacks get
``(event, payload)``; an exception in one callback is logged and never breaks a write.

>>> bus = EventBus()
>>> seen = []
>>> off = bus.on("pattern:stored", lambda e, p: seen.append(p["id"]))
>>> bus.emit("pattern:stored", {"id": 7})
>>> off(); bus.emit("pattern:stored", {"id": 8}); seen
[7]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["EVENTS", "EventBus", "Callback"]

log = logging.getLogger("agentdb")

Callback = Callable[[str, dict[str, Any]], Any]
EVENTS = tuple(f"{k}:{a}" for k in ("pattern", "episode", "skill")
               for a in ("stored", "updated", "deleted"))


class EventBus:
    """Subscribers by event name; thread-safe."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Callback]] = {}
        self._lock = threading.Lock()
        #: set on a namespace's bus: every payload then carries ``"namespace"``
        self.namespace: str | None = None

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Subscribe; returns a function that unsubscribes.

        >>> EventBus().on("nope", print)
        Traceback (most recent call last):
        ...
        agentdb.errors.InvalidArgumentError: unknown event 'nope': expected ...
        """
        if event != "*" and event not in EVENTS:
            raise InvalidArgumentError(f"unknown event {event!r}: expected '*' or one of "
                                       f"{', '.join(EVENTS[:1])}, ...")
        if not callable(callback):
            raise InvalidTypeError("callback must be callable: callback(event, payload)")
        with self._lock:
            self._subs.setdefault(event, []).append(callback)

        def off() -> None:
            with self._lock:
                subs = self._subs.get(event, [])
                if callback in subs:
                    subs.remove(callback)

        return off

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        """Deliver an event to its subscribers and to ``"*"`` subscribers."""
        with self._lock:
            targets = list(self._subs.get(event, ())) + list(self._subs.get("*", ()))
        if targets and self.namespace is not None:
            payload = {**payload, "namespace": self.namespace}
        for cb in targets:
            try:
                cb(event, payload)
            except Exception:  # a subscriber must never break a committed write
                log.exception("agentdb event callback failed for %s", event)
