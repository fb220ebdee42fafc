"""A read worker's front door (``agentdb serve --workers N``): answer reads here, forward the
rest to the writer.

:class:`ReadWorkerGate` is the outermost ASGI middleware of a read worker's app. A request in
:data:`READ_ROUTES` is answered by this process, over its read-only handle, after
``db.follow()`` has applied what the writer committed (one read of the store's generation
when nothing changed), so a search after an acknowledged write sees it, whichever process
took the write. Every other request -- writes, the change feed, Cypher, learning, stats,
namespaces -- is forwarded as it came (method, path, query, headers, body streamed) to the
writer process over its private unix socket, and the writer's answer is streamed back
(server-sent events included; the forward stops when the client goes away). The writer
authenticates and rate-limits forwarded requests itself.

    >>> is_read("POST", "/vectors/search"), is_read("POST", "/patterns/store")
    (True, False)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["READ_ROUTES", "ReadWorkerGate", "is_read"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: (method, path pattern) a read worker answers itself; the rest goes to the writer.
READ_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(r"/vectors/search")),
    ("GET", re.compile(r"/(patterns|episodes)/-?\d+")),
    ("GET", re.compile(r"/skills/(?!stream$)[^/]+")),
    ("GET", re.compile(r"/(health|ready)")),
)
_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
        b"proxy-authorization", b"proxy-authenticate", b"host", b"content-length"}


def is_read(method: str, path: str) -> bool:
    """Whether a read worker answers ``method path`` itself."""
    return any(m == method and rx.fullmatch(path) for m, rx in READ_ROUTES)


class ReadWorkerGate:
    """ASGI middleware: reads to ``app`` (after ``follow()``), the rest to the writer at
    the unix socket ``uds``; ``worker`` is sent back as ``X-AgentDB-Worker`` on the answers
    this process gives."""

    def __init__(self, app: Any, *, follow: Callable[[], Any], uds: str, worker: str,
                 timeout: float = 60.0) -> None:
        import httpx

        self.app = app
        self.follow = follow
        self.worker = worker.encode()
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=uds), base_url="http://writer",
            timeout=httpx.Timeout(timeout, read=None), follow_redirects=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if is_read(scope["method"], scope["path"]):
            self.follow()

            async def tagged(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = dict(message)
                    message["headers"] = [*message.get("headers", []),
                                          (b"x-agentdb-worker", self.worker)]
                await send(message)

            await self.app(scope, receive, tagged)
            return
        await self._forward(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def on_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.client.aclose()
            return message

        await self.app(scope, on_receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        import httpx

        disconnected = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        url = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        has_body = any(k.lower() in (b"content-length", b"transfer-encoding")
                       for k, _ in scope["headers"])
        request = self.client.build_request(scope["method"], url, headers=headers,
                                            content=body() if has_body else None)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await _answer(send, 503, b'{"error": {"code": "unavailable", "message": '
                          + _json_text(f"the writer process did not answer: {exc}") + b"}}")
            return

        async def watch() -> None:  # the client went away: stop streaming (SSE)
            if not disconnected.is_set():
                while (await receive())["type"] != "http.disconnect":
                    pass
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw
                                    if k.lower() not in _HOP]})
            chunks = response.aiter_raw().__aiter__()
            while not disconnected.is_set():
                nxt = asyncio.ensure_future(chunks.__anext__())
                done, _ = await asyncio.wait({nxt, watcher},
                                             return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt
                    break
                try:
                    chunk = nxt.result()
                except StopAsyncIteration:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
            await response.aclose()


def _json_text(text: str) -> bytes:
    import json

    return json.dumps(text).encode()


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
