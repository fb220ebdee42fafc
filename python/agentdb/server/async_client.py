"""``AsyncClient``: the HTTP client for ``agentdb serve`` as coroutines (httpx; the ``client``
extra).

Same methods, arguments, results, retries and errors as :class:`~agentdb.server.client.Client`
(both are built from :mod:`.client_calls`); each method is awaited, and the change feed is an
async iterator::

    >>> import agentdb
    >>> async def main():                                                    # doctest: +SKIP
    ...     async with agentdb.AsyncClient("http://127.0.0.1:8080", api_key="my-key") as c:
    ...         pid = await c.store_pattern("parse dates", reward=0.9, success=True)
    ...         hits = await c.search_patterns("parse ISO dates", k=5)
    ...         async for ev in c.stream(kinds=["pattern"]):
    ...             print(ev["id"], ev["event"])
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from typing import Any

from .client_calls import Call, ClientCalls, async_api
from .client_common import (
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

__all__ = ["AsyncClient"]

_EXTRA = "AsyncClient needs the 'client' extra (httpx): pip install 'agentdb[client]'"


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise ImportError(f"{_EXTRA} ({exc})") from exc
    return httpx


@async_api
class AsyncClient(ClientCalls):
    """Asynchronous HTTP client for an AgentDB server (see the module docstring).

    ``url``, ``api_key``, ``timeout`` (seconds per request), ``retries`` and ``namespace``
    mean what they mean for :class:`~agentdb.server.client.Client`. One pooled
    ``httpx.AsyncClient`` (HTTP keep-alive) serves every coroutine of this client; close it
    with ``await c.aclose()`` or ``async with``.

    >>> c = AsyncClient("http://127.0.0.1:8080/", api_key="k" * 8, retries=0)
    >>> c.url
    'http://127.0.0.1:8080'
    >>> import asyncio; asyncio.run(c.aclose())
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 10.0,
                 retries: int = 3, transport: Any = None, namespace: str | None = None
                 ) -> None:
        httpx = _httpx()
        self._configure(url, api_key, timeout, retries, namespace)
        headers = {"Accept": "application/json", "User-Agent": "agentdb-python-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers,
                                       timeout=self.timeout, transport=transport)
        self._sleep = asyncio.sleep  # replaceable in tests

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r}, api_key={'***' if self.api_key else None})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def close(self) -> None:
        """The same as :meth:`aclose` (the sync client's name)."""
        await self.aclose()

    # ---- transport ----------------------------------------------------------------------
    async def _request(self, method: str, path: str, body: Any = None, *,
                       query: Mapping[str, Any] | None = None, retry: bool = True) -> Any:
        """Send one request (with retries); the decoded JSON answer, or None for ``204``."""
        httpx = _httpx()
        params = {k: v for k, v in (query or {}).items() if v is not None} or None
        payload = None if body is None else dumps(body)
        headers = {"Content-Type": "application/json"} if payload is not None else None
        attempts = (self.retries if retry else 0) + 1
        for attempt in range(attempts):
            try:
                resp = await self._http.request(method, path, params=params, content=payload,
                                                headers=headers)
            except httpx.TimeoutException as exc:
                raise ClientError(0, "timeout", f"{method} {path}: no answer within "
                                  f"{self.timeout:g} s") from exc
            except httpx.TransportError as exc:
                await self._sleep(transport_failure(method, self.url, path, exc,
                                                    attempt=attempt, attempts=attempts))
                continue
            wait, value = outcome(method, path, resp.status_code,
                                  resp.headers.get("Retry-After"), resp.content,
                                  attempt=attempt, attempts=attempts)
            if wait is None:
                return value
            await self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _adrive(self, calls: Generator[Call, Any, Any]) -> Any:
        """Run an API call of :class:`ClientCalls`: send each request it yields."""
        try:
            call = next(calls)
            while True:
                call = calls.send(await self._request(call.method, call.path, call.body,
                                                      query=call.query, retry=call.retry))
        except StopIteration as stop:
            return stop.value

    # ---- change feed ----------------------------------------------------------------------
    async def stream(self, *, last_event_id: int | str | None = None,
                     kinds: Iterable[str] | None = None, reconnect: bool = True,
                     idle_timeout: float = 60.0) -> AsyncIterator[dict[str, Any]]:
        """Follow the change feed as an async iterator; the same events, reconnection and
        errors as :meth:`agentdb.server.client.Client.stream`.

        >>> async for ev in c.stream(last_event_id=41):   # doctest: +SKIP
        ...     print(ev["event"])
        """
        httpx = _httpx()
        params: dict[str, str] = {}
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            params["kinds"] = ",".join(kinds)
        last_id = None if last_event_id is None else str(last_event_id)
        delay = 0.5
        failures = 0
        timeout = httpx.Timeout(self.timeout, read=idle_timeout)
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                async with self._http.stream("GET", "/patterns/stream", params=params or None,
                                             headers=headers, timeout=timeout) as resp:
                    if resp.status_code != 200:
                        data = await resp.aread()
                        if (resp.status_code in RETRY_STATUS and reconnect
                                and failures < self.retries):
                            failures += 1
                            wait = retry_after(resp.headers.get("Retry-After"))
                            await self._sleep(min(MAX_RETRY_SLEEP,
                                                  delay if wait is None else wait))
                            continue
                        raise error_from(resp.status_code, resp.headers.get("Retry-After"),
                                         data)
                    failures = 0
                    parser = SseParser()
                    async for line in resp.aiter_lines():
                        event = parser.line(line.rstrip("\r\n"))
                        if event is None:
                            continue
                        if "retry" in event:
                            delay = event["retry"]
                            continue
                        if event["id"] is not None:
                            last_id = str(event["id"])
                        yield event
                    # the server ended the stream normally
            except httpx.TransportError as exc:  # includes timeouts
                failures += 1
                if not reconnect or failures > self.retries:
                    raise ClientError(0, "connection_error",
                                      f"GET {self.url}/patterns/stream: {exc!r}") from exc
                await self._sleep(min(MAX_RETRY_SLEEP, delay * 2 ** (failures - 1)))
                continue
            if not reconnect:
                return
            await self._sleep(delay)
