"""A small HTTP client for ``agentdb serve`` (standard library only).

It mirrors the embedded API, but records come back as plain dicts shaped like the server's
JSON (camelCase field names, see ``docs/api.md``), and ids are ints::

    >>> import agentdb
    >>> c = agentdb.Client("http://127.0.0.1:8080", api_key="my-secret-key")  # doctest: +SKIP
    >>> pid = c.store_pattern("parse dates", reward=0.9, success=True)       # doctest: +SKIP
    >>> c.search_patterns("parse ISO dates", k=5, min_reward=0.5)[0]["id"] == pid  # doctest: +SKIP
    True
    >>> for ev in c.stream(kinds=["pattern"]):                                # doctest: +SKIP
    ...     print(ev["id"], ev["event"], ev["data"]["id"])

Behaviour:

* **Errors** raise :class:`ClientError` with the HTTP status and the server's stable
  ``code`` and ``message`` (``404`` for an unknown id, ``401`` for a missing or wrong key,
  ``422`` for a bad dimension, ...). Transport failures (refused connection, reset, timeout)
  raise it too, with ``status == 0`` and code ``connection_error`` or ``timeout``.
* **Retries.** ``429`` and ``503`` are retried up to ``retries`` times, sleeping what the
  ``Retry-After`` header says (capped at 30 s; an exponential backoff when it is absent). A
  refused or reset connection is retried the same number of times for ``GET`` requests only
  (other methods are not resent, except once when a reused keep-alive connection turns out to
  have been closed by the server before it answered).
* **Keep-alive.** Each thread reuses one ``http.client`` connection to the server; a
  connection the server has closed is detected and replaced before it is reused. A ``Client``
  can therefore be shared by threads.
* **Vectors** may be lists, tuples or numpy arrays (anything with ``.tolist()``).
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any

from .client_calls import Call, ClientCalls, sync_api
from .client_common import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_RETRY_SLEEP,
    RETRY_STATUS,
    ClientError,
    SseParser,
    dumps,
    error_from,
    outcome,
    retry_after,
    transport_failure,
)

__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "MAX_RETRY_SLEEP", "Client", "ClientError"]

# Errors that mean "the request did not get an answer": the connection was refused, reset,
# or closed by the server before a status line arrived.
_CONNECTION_ERRORS = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    http.client.IncompleteRead,
)


def _socket_dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle keep-alive connection was closed by the peer (or has junk to read)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle connection is readable only at EOF (or on an error)



# --------------------------------------------------------------------------- client


@sync_api
class Client(ClientCalls):
    """HTTP client for an AgentDB server.

    ``url`` is the server's base URL (``http://host:port``, optionally with a path prefix;
    ``https://`` works too), ``api_key`` is sent as ``Authorization: Bearer <key>``.
    ``timeout`` is the socket timeout of each request in seconds, ``retries`` how many times a
    ``429``/``503`` answer (and, for ``GET``, a refused or reset connection) is retried.
    ``namespace``: talk to that namespace of the server's store (``/ns/<name>/...``; see
    :mod:`agentdb.memory.namespaces`); every call, the change feed included, stays in it.

    >>> c = Client("http://127.0.0.1:8080/", api_key="k" * 8, timeout=2.0, retries=0)
    >>> c.url
    'http://127.0.0.1:8080'
    >>> c.close()
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 10.0,
                 retries: int = 3, namespace: str | None = None) -> None:
        parts = self._configure(url, api_key, timeout, retries, namespace)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()
        self._sleep = time.sleep  # replaceable in tests

    def __repr__(self) -> str:
        return f"Client({self.url!r}, api_key={'***' if self.api_key else None})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every keep-alive connection this client opened (it can still be used after:
        new connections are opened on demand)."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # ---- transport ----------------------------------------------------------------------
    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's keep-alive connection and whether it is being reused."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and not _socket_dropped(conn):
            return conn, True
        if conn is not None:
            conn.close()
        conn = self._new_connection(self.timeout)
        self._local.conn = conn
        with self._conns_lock:
            self._conns = [c for c in self._conns if c.sock is not None] + [conn]
        return conn, False

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "agentdb-python-client"}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _send_once(self, method: str, path: str, payload: bytes | None
                   ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn, reused = self._connection()
        try:
            conn.request(method, path, body=payload, headers=self._headers(payload is not None))
            resp = conn.getresponse()
            data = resp.read()
        except _CONNECTION_ERRORS:
            self._drop_connection()
            if reused:
                # A keep-alive connection the server closed just as we sent (its idle timeout
                # raced our request, after the check in _connection): the request did not
                # reach the application, so one attempt on a fresh connection is safe.
                conn, _ = self._connection()
                try:
                    conn.request(method, path, body=payload,
                                 headers=self._headers(payload is not None))
                    resp = conn.getresponse()
                    data = resp.read()
                except BaseException:
                    self._drop_connection()
                    raise
            else:
                raise
        except BaseException:
            self._drop_connection()
            raise
        if resp.will_close:
            self._drop_connection()
        return resp.status, resp.msg, data

    def _request(self, method: str, path: str, body: Any = None, *,
                 query: Mapping[str, Any] | None = None, retry: bool = True) -> Any:
        """Send one request (with retries); the decoded JSON answer, or None for ``204``."""
        target = self._prefix + path
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                target += "?" + urllib.parse.urlencode(q)
        payload = None if body is None else dumps(body)
        attempts = (self.retries if retry else 0) + 1
        for attempt in range(attempts):
            try:
                status, headers, data = self._send_once(method, target, payload)
            except socket.timeout as exc:
                raise ClientError(0, "timeout", f"{method} {path}: no answer within "
                                  f"{self.timeout:g} s") from exc
            except (*_CONNECTION_ERRORS, OSError) as exc:
                self._sleep(transport_failure(method, self.url, path, exc, attempt=attempt,
                                              attempts=attempts))
                continue
            wait, value = outcome(method, path, status, headers.get("Retry-After"), data,
                                  attempt=attempt, attempts=attempts)
            if wait is None:
                return value
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _drive(self, calls: Generator[Call, Any, Any]) -> Any:
        """Run an API call of :class:`ClientCalls`: send each request it yields."""
        try:
            call = next(calls)
            while True:
                call = calls.send(self._request(call.method, call.path, call.body,
                                                query=call.query, retry=call.retry))
        except StopIteration as stop:
            return stop.value

    # ---- change feed ----------------------------------------------------------------------
    def stream(self, *, last_event_id: int | str | None = None,
               kinds: Iterable[str] | None = None, reconnect: bool = True,
               idle_timeout: float = 60.0) -> Iterator[dict[str, Any]]:
        """Follow the change feed (``GET /patterns/stream``, Server-Sent Events).

        Yields ``{"id": int, "event": "pattern:stored" | ..., "data": dict}``; heartbeats
        (comment lines) are skipped. ``kinds`` widens the feed (``["pattern", "episode",
        "skill"]``). With ``last_event_id`` the server first replays the buffered events after
        it; an ``event: reset`` means some were lost and the store should be re-read.

        When the connection drops (or nothing, not even a heartbeat, arrives for
        ``idle_timeout`` seconds) and ``reconnect`` is true, it reconnects with
        ``Last-Event-ID`` set to the last id seen, waiting the server's ``retry:`` delay (or
        0.5 s, growing on repeated failures); after ``retries`` failed reconnections in a row
        it raises ``ClientError``. Stop by breaking out of the loop (the connection is
        closed).

        >>> for ev in c.stream(last_event_id=41):   # doctest: +SKIP
        ...     if ev["event"] == "pattern:stored":
        ...         print(ev["data"]["task"])
        """
        query: dict[str, str] = {}
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            query["kinds"] = ",".join(kinds)
        target = self._prefix + "/patterns/stream"
        if query:
            target += "?" + urllib.parse.urlencode(query)
        last_id = None if last_event_id is None else str(last_event_id)
        delay = 0.5
        failures = 0
        while True:
            conn = self._new_connection(idle_timeout)
            try:
                headers = self._headers(False)
                headers["Accept"] = "text/event-stream"
                headers["Cache-Control"] = "no-cache"
                if last_id is not None:
                    headers["Last-Event-ID"] = last_id
                try:
                    conn.request("GET", target, headers=headers)
                    resp = conn.getresponse()
                except (*_CONNECTION_ERRORS, OSError) as exc:
                    failures += 1
                    if not reconnect or failures > self.retries:
                        raise ClientError(0, "connection_error",
                                          f"GET {self.url}/patterns/stream: {exc!r}") from exc
                    self._sleep(min(MAX_RETRY_SLEEP, delay * 2 ** (failures - 1)))
                    continue
                if resp.status != 200:
                    data = resp.read()
                    if resp.status in RETRY_STATUS and reconnect and failures < self.retries:
                        failures += 1
                        wait = retry_after(resp.getheader("Retry-After"))
                        self._sleep(min(MAX_RETRY_SLEEP, delay if wait is None else wait))
                        continue
                    raise error_from(resp.status, resp.getheader("Retry-After"), data)
                failures = 0
                for event in _parse_sse(resp):
                    if "retry" in event:
                        delay = event["retry"]
                        continue
                    if event["id"] is not None:
                        last_id = str(event["id"])
                    yield event
                # the server ended the stream normally (e.g. a slow subscriber was dropped)
            except (*_CONNECTION_ERRORS, OSError) as exc:  # includes socket.timeout
                if not reconnect:
                    raise ClientError(0, "connection_error",
                                      f"GET {self.url}/patterns/stream: {exc!r}") from exc
            finally:
                conn.close()
            if not reconnect:
                return
            self._sleep(delay)


def _parse_sse(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """Events of an SSE body: ``{"id", "event", "data"}``, and ``{"retry": seconds}``."""
    parser = SseParser()
    while True:
        raw = resp.readline()
        if not raw:
            return  # EOF: the connection ended (an unfinished event is dropped, as in browsers)
        event = parser.line(raw.decode("utf-8").rstrip("\r\n"))
        if event is not None:
            yield event
