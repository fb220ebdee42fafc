"""The HTTP API: a FastAPI application over one :class:`agentdb.AgentDB` (``docs/api.md``).

:func:`create_app` builds it; ``agentdb serve`` runs it with uvicorn. The pieces:

* **Auth and rate limit** are one async dependency on every route except ``/health``,
  ``/ready`` and the docs: a missing or wrong key is the same ``401`` (with
  ``WWW-Authenticate: Bearer``), then the key's token bucket is charged (``429`` with
  ``Retry-After`` when empty). ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` are added to
  every answer of an authenticated request by :class:`_Guard`.
* :class:`_Guard`, a pure ASGI middleware, refuses bodies over ``max_body_bytes`` (the
  declared ``Content-Length`` at once, and a streamed body as soon as its bytes add up past
  the limit: ``413``) and turns any unexpected exception into a generic ``500`` (the traceback
  goes to the ``agentdb.server`` log, never to the client).
* **Errors** are always ``{"error": {"code", "message"}}``: validation problems (pydantic's,
  and the store's ``ValueError``/``TypeError``) are ``422`` with the field in the message, an
  unknown id ``404``, a taken skill name ``409``, a Cypher problem ``400 cypher_error``, a
  closed store (or a write to a read-only one) ``503``, an unreadable stored learning state
  ``409`` (until ``POST /learning/reset``).
* **Reads** that answer in well under a millisecond (searches, gets) are ``async`` and call the
  store directly on the event loop; **writes** (which fsync) are plain functions run in the
  thread pool. The learning layer (``/feedback``, ``/feedback/trajectory``, ``/learning/*``)
  writes under the store's write lock; re-ranked searches and ``/patterns/context`` are
  reads.
* **The change feed** (``GET /patterns/stream``): the store's events (``db.on("*")``) feed an
  :class:`~agentdb.server.events.EventHub`; each SSE client holds a subscription whose queue is
  drained on the event loop, woken by the writer thread through ``call_soon_threadsafe`` (no
  thread or polling per client). ``app.state`` exposes ``hub``, ``keys`` and ``limiter`` so the
  gRPC server shares them.

>>> import agentdb
>>> from fastapi.testclient import TestClient
>>> app = create_app(agentdb.open(":memory:", dim=8), api_keys=["secret-key-1"])
>>> with TestClient(app) as c:
...     c.get("/health").json(), c.get("/stats").status_code
({'status': 'ok'}, 401)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import nullcontext
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException

from ..errors import (
    AgentDBError,
    BadRequestError,
    ConflictError,
    InvalidArgumentError,
    LearningStateError,
    PayloadTooLargeError,
    RateLimitedError,
    StoreClosedError,
    StoreError,
    UnauthorizedError,
    describe,
)
from ..graph.cypher.values import Node as CypherNode
from ..graph.cypher.values import Path as CypherPath
from ..graph.cypher.values import Relationship as CypherRelationship
from ..storage.records import Episode, Pattern, Skill, check_metadata
from . import models as m
from .auth import KeyStore, RateLimiter, key_from_headers
from .events import Event, EventHub

__all__ = ["create_app"]

log = logging.getLogger("agentdb.server")

#: Codes of the statuses the framework itself answers (an unknown route, a wrong method, ...);
#: every error of ours carries its code in its class (:mod:`agentdb.errors`).
FRAMEWORK_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error", 500: "internal_error", 503: "unavailable",
}
#: Paths answered without an API key.
OPEN_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                        "/redoc"})
KINDS = ("pattern", "episode", "skill")
_RL_SCOPE_KEY = "agentdb.ratelimit"
_JSON = "application/json"


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body exceeds {limit} bytes")


class _BodyTooLarge(HTTPException):
    """Raised by the body reader. An ``HTTPException`` (status 413) so that FastAPI's body
    parsing lets it through instead of answering 400; it carries the typed error."""

    def __init__(self, limit: int) -> None:
        self.error = _too_large(limit)
        super().__init__(self.error.http_status, str(self.error))


# ---- JSON -----------------------------------------------------------------------------------
def _finite(v: Any) -> Any:
    """JSON-safe copy: non-finite floats become "NaN"/"Infinity"/"-Infinity", numpy scalars
    plain numbers, Cypher nodes/relationships/paths objects."""
    t = type(v)
    if t is float:
        if math.isfinite(v):
            return v
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if v is None or t is bool or t is int or t is str:
        return v
    if t is list or t is tuple:
        return [_finite(x) for x in v]
    if t is dict:
        return {str(k): _finite(x) for k, x in v.items()}
    if t is CypherNode:
        return {"id": v.id, "labels": list(v.labels), "properties": _finite(v.properties)}
    if t is CypherRelationship:
        return {"id": v.id, "type": v.type, "start": v.start, "end": v.end,
                "properties": _finite(v.properties)}
    if t is CypherPath:
        return {"nodes": [_finite(n) for n in v.nodes],
                "relationships": [_finite(r) for r in v.relationships]}
    if isinstance(v, (np.generic, np.ndarray)):
        return _finite(v.tolist())
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    return str(v)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes; falls back to :func:`_finite` (and ASCII escapes) for values plain
    ``json`` refuses (NaN, numpy scalars, lone surrogates).

    >>> dumps({"a": [1, 2.5]}), dumps({"x": float("nan")})
    (b'{"a":[1,2.5]}', b'{"x":"NaN"}')
    """
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
    except (ValueError, TypeError):  # UnicodeEncodeError is a ValueError
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False).encode()


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, media_type=_JSON, headers=headers)


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


# ---- records --------------------------------------------------------------------------------
_CAMEL: dict[str, str] = {}


def _camel(name: str) -> str:
    c = _CAMEL.get(name)
    if c is None:
        c = _CAMEL[name] = to_camel(name)
    return c


_RECORD_FIELDS = {cls: tuple((f.name, _camel(f.name)) for f in dataclasses.fields(cls)
                             if f.name != "embedding")
                  for cls in (Pattern, Episode, Skill)}


def record_json(rec: Any, embedding: bool = False) -> dict[str, Any]:
    """A record as the API's camelCase JSON object (the embedding only when asked).

    >>> record_json(Pattern(id=1, task="t", session_id="s"))["sessionId"]
    's'
    """
    out = {camel: getattr(rec, name) for name, camel in _RECORD_FIELDS[type(rec)]}
    if embedding and rec.embedding is not None:
        out["embedding"] = np.asarray(rec.embedding, dtype=np.float32).tolist()
    return out


def event_json(data: dict[str, Any]) -> dict[str, Any]:
    """An event payload (a record dict from the memory API, or another flat answer such as
    ``db.feedback``'s) with camelCase top-level keys.

    >>> event_json({"id": 3, "session_id": None, "metadata": {"a_b": 1}})
    {'id': 3, 'sessionId': None, 'metadata': {'a_b': 1}}
    """
    return {_camel(k): v for k, v in data.items()}


def _hit(h: Any, kind: str) -> dict[str, Any]:
    out = {"id": h.id, "similarity": h.similarity, "distance": h.distance,
           kind: record_json(h.record)}
    score = getattr(h, "score", None)
    if score is not None:  # re-ranked (rerank="attention"...)
        out["score"] = score
    return out


def _hits(hits: Iterable[Any], kind: str) -> dict[str, Any]:
    return {"results": [_hit(h, kind) for h in hits]}


# ---- the change feed's wake-ups -------------------------------------------------------------
class _Wakeups:
    """asyncio events of the SSE streams, set from the writer thread after each publish."""

    def __init__(self) -> None:
        self._events: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()

    def register(self) -> asyncio.Event:
        ev = asyncio.Event()
        with self._lock:
            self._events[ev] = asyncio.get_running_loop()
        return ev

    def unregister(self, ev: asyncio.Event) -> None:
        with self._lock:
            self._events.pop(ev, None)

    def notify(self) -> None:
        with self._lock:
            if not self._events:
                return
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
            for ev, loop in self._events.items():
                by_loop.setdefault(loop, []).append(ev)
        for loop, evs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_all, evs)
            except RuntimeError:  # that loop is closed; its streams are gone
                pass


def _set_all(evs: Sequence[asyncio.Event]) -> None:
    for ev in evs:
        ev.set()


class _Stopping:
    """sse-starlette's ``shutdown_event`` for one stream: on server shutdown it wakes the
    generator, which then ends the stream cleanly (instead of being cancelled mid-response)."""

    def __init__(self, wake: asyncio.Event) -> None:
        self._wake = wake
        self._set = False

    def set(self) -> None:
        self._set = True
        self._wake.set()

    def is_set(self) -> bool:
        return self._set


class _FeedResponse(EventSourceResponse):
    """The change feed's response: ``on_close`` runs however the stream ends (client gone,
    server shutdown, error), even when the client left before the first event was pulled
    from the generator (whose own ``finally`` then never runs)."""

    def __init__(self, content: Any, *, on_close: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _sse(ev: Event) -> ServerSentEvent:
    return ServerSentEvent(data=dumps(event_json(ev.data)).decode("utf-8"), id=str(ev.id),
                           event=ev.event)


# ---- the guard middleware -------------------------------------------------------------------
class _Guard:
    """Body-size limit, rate-limit headers, the last-resort ``500`` and the fast lane (pure
    ASGI).

    ``fast_routes`` maps ``POST`` paths to their handlers (``async (Request) -> Response``,
    the same functions FastAPI routes, which stay registered for the docs and as the
    fallback): the hot search endpoints skip routing, FastAPI's middleware layers and
    dependency solving. Their exceptions go through ``handlers`` (the app's exception
    handlers), so answers are identical either way.
    """

    def __init__(self, app: Any, max_body: int, fast_routes: dict[str, Any] | None = None,
                 handlers: dict[type, Any] | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.fast_routes = fast_routes or {}
        self.handlers = handlers or {}

    async def _send_error(self, send: Any, error: AgentDBError) -> None:
        status = error.http_status
        body = dumps({"error": error.to_dict()})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _fast(self, handler: Any, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:
            for cls in type(exc).__mro__:
                on_error = self.handlers.get(cls)
                if on_error is not None:
                    break
            else:
                raise
            response = await on_error(request, exc)
        await response(scope, receive, send)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._send_error(send, BadRequestError("invalid Content-Length header"))
                    return
                if declared > limit:
                    await self._send_error(send, _too_large(limit))
                    return
                break
        received = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                rl = scope.get(_RL_SCOPE_KEY)
                if rl is not None:
                    message = dict(message)
                    message["headers"] = [*message.get("headers", ()),
                                          (b"x-ratelimit-limit", rl[0]),
                                          (b"x-ratelimit-remaining", rl[1])]
            await send(message)

        fast = self.fast_routes.get(scope["path"]) if scope["method"] == "POST" else None
        try:
            if fast is not None:
                await self._fast(fast, scope, counting_receive, guarded_send)
            else:
                await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge as exc:
            if started:
                raise
            await self._send_error(send, exc.error)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await self._send_error(send, AgentDBError("internal server error"))


# ---- helpers used by the routes -------------------------------------------------------------
def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _validation_message(errors: Sequence[Any]) -> str:
    parts = []
    for e in errors[:5]:
        msg = str(e.get("msg", "invalid"))
        if msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
        parts.append(f"{_loc(e.get('loc', ()))}: {msg}")
    if len(errors) > 5:
        parts.append(f"... and {len(errors) - 5} more")
    return "; ".join(parts)


_ERR = {"model": m.ErrorResponse}


def _errors(*statuses: int) -> dict[int | str, Any]:
    descriptions = {400: "Bad request", 401: "Missing or invalid API key",
                    404: "Unknown id", 409: "Conflict", 413: "Body too large",
                    422: "Validation error", 429: "Rate limited",
                    503: "Store unavailable"}
    return {s: {**_ERR, "description": descriptions[s]} for s in statuses}


_AUTHED = (401, 413, 422, 429)
#: Statuses of the learning writes: an unknown pattern id, an unreadable stored learning
#: state (409, until ``POST /learning/reset``), a closed or read-only store (503).
_LEARNING = (*_AUTHED, 404, 409, 503)
#: One change-feed event (OpenAPI 3.2 ``itemSchema`` of ``text/event-stream``).
_SSE_ITEM = {
    "type": "object", "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "description": "1, 2, ... per server run"},
        "event": {"type": "string", "description": "e.g. pattern:stored, or reset"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "the record (camelCase), {\"id\": n} for a deletion"}}}
_M = TypeVar("_M", bound=BaseModel)


async def parse_body(request: Request, model: type[_M]) -> _M:
    """Read and validate a JSON body in one pass (pydantic's Rust JSON parser): about 5x
    cheaper than ``json.loads`` plus validation for a 384-float vector. Errors are the same
    ``RequestValidationError`` FastAPI raises (``loc`` starts with ``body``)."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidArgumentError("body: a JSON object is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body read by :func:`parse_body`."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


_RAW_BODIES = (m.VectorSearchRequest, m.PatternSearchRequest, m.EpisodeSearchRequest,
               m.SkillSearchRequest)
RecordId = Annotated[int, Path(ge=1, le=m.MAX_ID, description="Record id.")]
IncludeEmbedding = Annotated[bool, Query(alias="includeEmbedding",
                                         description="Include the embedding.")]


def create_app(
    db: Any,
    *,
    api_keys: Sequence[str] | None,
    rate_limit_per_minute: float = 100,
    max_body_bytes: int = 1 << 20,
    cors_origins: Sequence[str] = (),
    cors_credentials: bool = False,
    heartbeat_seconds: float = 15.0,
    replay_buffer: int = 1000,
    search_threads: int = 2,
) -> FastAPI:
    """The FastAPI application serving ``db`` (the contract is ``docs/api.md``).

    ``api_keys=None`` turns authentication off (``agentdb serve --no-auth``; then every
    request shares one rate-limit bucket); an empty list is refused. ``rate_limit_per_minute``
    is per key (0 = off), ``max_body_bytes`` the largest request body, ``cors_origins`` the
    allowed origins (none: CORS off; ``"*"`` cannot be combined with ``cors_credentials``),
    ``heartbeat_seconds`` the SSE comment interval (0 = none), ``replay_buffer`` how many
    events a reconnecting stream can catch up on, ``search_threads`` the worker threads that
    run ``/vectors/search``'s HNSW walk and re-ranked pattern searches (they release the
    GIL, so the event loop parses other requests meanwhile; 0 = on the loop). ``app.state``
    holds ``db``, ``hub``, ``keys`` (a :class:`KeyStore`, or None without auth) and
    ``limiter``.

    >>> import agentdb
    >>> app = create_app(agentdb.open(":memory:", dim=8), api_keys=None)
    >>> app.state.hub.last_id, app.state.keys is None
    (0, True)
    """
    if api_keys is not None and not list(api_keys):
        raise InvalidArgumentError(
            "api_keys is empty: give at least one key, or None to disable auth")
    if max_body_bytes < 1:
        raise InvalidArgumentError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if heartbeat_seconds < 0 or not math.isfinite(heartbeat_seconds):
        raise InvalidArgumentError(f"heartbeat_seconds must be >= 0, got {heartbeat_seconds}")
    origins = list(cors_origins)
    if "*" in origins and cors_credentials:
        raise InvalidArgumentError("CORS: the origin '*' cannot be combined with credentials; "
                                   "list the allowed origins instead")
    keys = None if api_keys is None else KeyStore(api_keys)
    limiter = RateLimiter(rate_limit_per_minute)
    hub = EventHub(buffer=replay_buffer)
    wakeups = _Wakeups()
    limit_header = str(int(limiter.per_minute)).encode()

    def on_event(event: str, payload: dict[str, Any]) -> None:
        hub.publish(event, payload)
        wakeups.notify()

    unsubscribe = db.on("*", on_event)

    app = FastAPI(
        title="AgentDB",
        version=_version(),
        description="Memory database for AI agents: patterns, episodes, skills, vectors, a "
                    "causal graph with Cypher, and a change feed. Errors are "
                    '`{"error": {"code", "message"}}`. See docs/api.md.',
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.db = db
    app.state.hub = hub
    app.state.keys = keys
    app.state.limiter = limiter
    app.state.unsubscribe_events = unsubscribe

    # ---- auth + rate limit --------------------------------------------------------------
    async def authorize(request: Request) -> str:
        if keys is None:
            key = ""
        else:
            found = keys.check(key_from_headers(request.headers))
            if found is None:
                raise UnauthorizedError("missing or invalid API key")
            key = found
        allowed, wait, remaining = limiter.acquire(key)
        if remaining >= 0:
            request.scope[_RL_SCOPE_KEY] = (limit_header, str(remaining).encode())
        if not allowed:
            retry = RateLimiter.retry_after_header(wait)
            raise RateLimitedError(f"rate limit of {limiter.per_minute:g} requests per minute "
                                   f"exceeded; retry in {retry} s", retry_after=wait)
        return key

    auth = [Depends(authorize)]

    # ---- error handlers -----------------------------------------------------------------
    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # the framework's own (unknown route, ...)
        code = FRAMEWORK_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _error(exc.status_code, code, detail, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "bad_request", "the request body is not valid JSON")
        return _error(422, "validation_error", _validation_message(errors))

    async def on_error(request: Request, exc: Exception) -> Response:
        """Every other exception, through :func:`agentdb.errors.describe`."""
        info = describe(exc)
        headers: dict[str, str] | None = None
        message = info.message
        if isinstance(exc, UnauthorizedError):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            headers = {"Retry-After": RateLimiter.retry_after_header(exc.retry_after)}
        elif isinstance(exc, LearningStateError):
            message = f"{message} (over HTTP: POST /learning/reset)"
        elif isinstance(exc, StoreError) and info.http_status == 503:
            log.error("store unavailable in %s %s: %s", request.method, request.url.path, exc)
            message = "the store is not available"
        elif info.http_status == 500:
            log.error("unexpected %s in %s %s", type(exc).__name__, request.method,
                      request.url.path, exc_info=exc)
            message = "internal server error"
        return _error(info.http_status, info.code, message, headers)

    handlers: dict[type, Any] = {
        HTTPException: on_http_error, RequestValidationError: on_validation_error,
        AgentDBError: on_error, ValueError: on_error, TypeError: on_error, KeyError: on_error}
    for exc_class, on_error in handlers.items():
        app.add_exception_handler(exc_class, on_error)

    # ---- helpers over the store ---------------------------------------------------------
    dim = int(db.dim)

    def vector(values: Sequence[float] | None, where: str) -> np.ndarray | None:
        if values is None:
            return None
        if len(values) != dim:
            raise InvalidArgumentError(f"{where}: expected {dim} values (the store's dimension), "
                                f"got {len(values)}")
        with np.errstate(over="ignore"):  # 1e39 is a finite float64 but no float32
            arr = np.asarray(values, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise InvalidArgumentError(f"{where}: values must be finite float32 numbers")
        if not arr.any():
            raise InvalidArgumentError(f"{where}: an all-zero vector has no direction")
        return arr

    def query_of(text: str | None, vec: Sequence[float] | None) -> Any:
        return text if vec is None else vector(vec, "body.vector")

    write_lock = getattr(db, "write_lock", None) or nullcontext()

    if isinstance(search_threads, bool) or not isinstance(search_threads, int) \
            or not 0 <= search_threads <= 64:
        raise InvalidArgumentError(
            f"search_threads must be an integer in [0, 64], got {search_threads!r}")
    search_pool = (concurrent.futures.ThreadPoolExecutor(search_threads, "agentdb-search")
                   if search_threads > 0 else None)

    def search_vectors(q: np.ndarray, body: m.VectorSearchRequest) -> list[dict[str, Any]]:
        """``/vectors/search`` hits: ``db.search_hits`` (the metadata from the store's
        in-memory filter columns, no read of the records), else ``search_patterns``."""
        kw = dict(min_reward=body.min_reward, success_only=body.success_only,
                  session_id=body.session_id, where=body.where, threshold=body.threshold,
                  ef=body.ef)
        if hasattr(db, "search_hits"):
            return db.search_hits(q, body.k, **kw)
        return [{"id": h.id, "similarity": h.similarity, "distance": h.distance,
                 "metadata": h.record.metadata}
                for h in db.search_patterns(q, body.k, adapt=False, **kw)]  # raw vectors

    def rerank_options(body: m.PatternSearchRequest) -> dict[str, Any]:
        """The learning/re-ranking keywords of a pattern search (none when the request uses
        the defaults, so a plain search calls ``search_patterns`` exactly as before)."""
        opts: dict[str, Any] = {} if body.adapt else {"adapt": False}
        if body.rerank is not None:
            heads = 1 if body.heads is None else body.heads
            if dim % heads:
                raise InvalidArgumentError(f"body.heads: {heads} heads must divide the store's "
                                    f"dimension {dim}")
            opts.update(rerank=body.rerank, candidates=body.candidates, heads=heads,
                        temperature=0.05 if body.temperature is None else body.temperature)
        return opts

    def check_open() -> None:
        if getattr(db, "closed", False):
            raise StoreClosedError("the store is closed")

    # ---- service ------------------------------------------------------------------------
    @app.get("/health", response_model=m.HealthResponse, tags=["service"])
    async def health() -> Response:
        """Liveness (no key needed)."""
        return _json({"status": "ok"})

    @app.get("/ready", response_model=m.ReadyResponse, tags=["service"],
             responses=_errors(503))
    def ready() -> Response:
        """Readiness: the pattern count, or ``503`` once the store is closed (no key)."""
        if getattr(db, "closed", False):
            return _error(503, "unavailable", "the store is closed")
        try:
            n = db.count("patterns")
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return _error(503, "unavailable", "the store is not available")
        return _json({"status": "ready", "patterns": n})

    @app.get("/stats", dependencies=auth, tags=["service"], responses=_errors(401, 429),
             response_model=dict[str, Any])
    def stats() -> Response:
        """``db.stats()``: counts, dimension, sizes, index status."""
        return _json(db.stats())

    # ---- vectors ------------------------------------------------------------------------
    @app.post("/vectors/search", tags=["vectors"], response_model=m.VectorSearchResponse,
              responses=_errors(*_AUTHED), openapi_extra=_body_doc(m.VectorSearchRequest))
    async def vectors_search(request: Request) -> Response:
        """Nearest stored vectors (the patterns collection) with their metadata."""
        await authorize(request)
        body = await parse_body(request, m.VectorSearchRequest)
        q = vector(body.vector, "body.vector")
        if search_pool is None:
            return _json({"results": search_vectors(q, body)})
        # The HNSW walk releases the GIL: run it on a worker thread so the event loop parses
        # the next requests meanwhile (two cores instead of one).
        results = await asyncio.get_running_loop().run_in_executor(search_pool, search_vectors,
                                                                   q, body)
        return _json({"results": results})

    @app.post("/vectors", dependencies=auth, tags=["vectors"],
              response_model=m.UpsertResponse, responses=_errors(*_AUTHED, 409))
    def vectors_upsert(body: m.VectorUpsertRequest) -> Response:
        """Upsert up to 1000 vectors: an existing id gets the new vector (and metadata/task
        when given), anything else is stored as a new pattern. All or nothing."""
        items = body.vectors
        vecs = [vector(it.vector, f"body.vectors[{n}].vector") for n, it in enumerate(items)]
        seen: set[int] = set()
        for n, it in enumerate(items):
            try:
                check_metadata(it.metadata)
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"body.vectors[{n}].metadata: {exc}") from None
            if it.id is not None:
                if it.id in seen:
                    raise InvalidArgumentError(f"body.vectors[{n}].id: id {it.id} appears twice")
                seen.add(it.id)
        with write_lock:  # nothing else writes between the existence check and the writes
            existing = {it.id for it in items if it.id is not None and _exists(db, it.id)}
            new = [(n, it) for n, it in enumerate(items) if it.id not in existing]
            ids: list[int | None] = [it.id for it in items]
            if new:
                stored = db.store_patterns([
                    {"task": it.task or (f"vector {it.id}" if it.id is not None else "vector"),
                     "embedding": vecs[n], "metadata": it.metadata, "id": it.id}
                    for n, it in new])
                for (n, _), rid in zip(new, stored):
                    ids[n] = rid
            for n, it in enumerate(items):
                if it.id in existing:
                    changes: dict[str, Any] = {"embedding": vecs[n]}
                    if it.metadata is not None:
                        changes["metadata"] = it.metadata
                    if it.task is not None:
                        changes["task"] = it.task
                    db.update_pattern(it.id, **changes)
        return _json({"ids": ids})

    @app.delete("/vectors/{id}", dependencies=auth, tags=["vectors"], status_code=204,
                responses=_errors(401, 404, 422, 429))
    def vectors_delete(id: RecordId) -> Response:
        """Delete a stored vector (its pattern)."""
        db.delete_pattern(id)
        return Response(status_code=204)

    # ---- patterns -----------------------------------------------------------------------
    @app.post("/patterns/store", dependencies=auth, tags=["patterns"], status_code=201,
              response_model=m.PatternStored, responses=_errors(*_AUTHED))
    def patterns_store(body: m.PatternStoreRequest) -> Response:
        """Store a reasoning pattern; the task is embedded unless ``embedding`` is given."""
        pid = db.store_pattern(
            body.task, embedding=vector(body.embedding, "body.embedding"), reward=body.reward,
            success=body.success, session_id=body.session_id, input=body.input,
            output=body.output, critique=body.critique, metadata=body.metadata)
        return _json({"id": pid, "pattern": record_json(db.get_pattern(pid))}, 201)

    @app.post("/patterns/search", tags=["patterns"], response_model=m.PatternSearchResponse,
              responses=_errors(*_AUTHED), openapi_extra=_body_doc(m.PatternSearchRequest))
    async def patterns_search(request: Request) -> Response:
        """The ``k`` most similar patterns passing every filter, best first."""
        await authorize(request)
        body = await parse_body(request, m.PatternSearchRequest)
        search = functools.partial(
            db.search_patterns, query_of(body.task, body.vector), body.k,
            min_reward=body.min_reward, success_only=body.success_only,
            session_id=body.session_id, where=body.where, threshold=body.threshold,
            ef=body.ef, **rerank_options(body))
        if body.rerank is None or search_pool is None:
            return _json(_hits(search(), "pattern"))
        # a re-ranked search walks up to `candidates` (10,000) and runs the attention kernels
        # (both release the GIL): on a worker thread, as /vectors/search
        hits = await asyncio.get_running_loop().run_in_executor(search_pool, search)
        return _json(_hits(hits, "pattern"))

    @app.post("/patterns/context", dependencies=auth, tags=["patterns"],
              response_model=m.PatternContextResponse, responses=_errors(*_AUTHED))
    async def patterns_context(body: m.PatternContextRequest) -> Response:
        """An attention-weighted summary of the ``k`` patterns most relevant to the query:
        the vector, each pattern's weight (softmax of cosine / temperature, summing to 1)
        and the hits."""
        ctx = db.synthesize_context(
            query_of(body.task, body.vector), body.k, temperature=body.temperature,
            adapt=body.adapt, min_reward=body.min_reward, success_only=body.success_only,
            session_id=body.session_id, where=body.where)
        return _json({"vector": np.asarray(ctx["vector"], np.float32).tolist(),
                      "weights": [{"id": i, "weight": w} for i, w in ctx["weights"]],
                      **_hits(ctx["records"], "pattern")})

    @app.get("/patterns/stream", dependencies=auth, tags=["patterns"],
             responses={**_errors(401, 422, 429),
                        200: {"description": "Server-Sent Events: one per change, a `: ping` "
                                             "comment every heartbeat",
                              "content": {"text/event-stream": {"itemSchema": _SSE_ITEM}}}})
    async def patterns_stream(
        kinds: Annotated[str | None, Query(
            description="Comma-separated record kinds: pattern, episode, skill "
                        "(default: pattern).")] = None,
        last_event_id: Annotated[int | None, Query(alias="lastEventId", ge=0)] = None,
        last_event_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Response:
        """The change feed (Server-Sent Events); resumes after ``Last-Event-ID``."""
        wanted = _parse_kinds(kinds)
        last = last_event_id
        if last_event_header is not None and last_event_header.strip():
            text = last_event_header.strip()
            if not text.isdigit() or len(text) > 18:
                raise InvalidArgumentError("header.Last-Event-ID: expected a non-negative integer")
            last = int(text)
        if last is not None and last > hub.last_id:  # an id from an earlier server run
            sub = hub.subscribe(None, wanted)
            backlog = [Event(hub.last_id, "reset", {
                "reason": "unknown Last-Event-ID (the server restarted?); re-read the store",
                "oldest_buffered": hub.last_id + 1})]
        else:
            sub = hub.subscribe(last, wanted)
            backlog = list(sub.backlog)

        wake = wakeups.register()
        stopping = _Stopping(wake)

        def close() -> None:  # idempotent: the generator, or the response when it never ran
            wakeups.unregister(wake)
            sub.close()

        async def events() -> AsyncIterator[ServerSentEvent]:
            try:
                for ev in backlog:
                    yield _sse(ev)
                while True:
                    wake.clear()
                    drained = False
                    while True:
                        ev = sub.get(0.0)
                        if ev is None:
                            break
                        drained = True
                        yield _sse(ev)
                    if sub.closed or stopping.is_set():  # dropped as too slow, or shutdown
                        return
                    if not drained:
                        await wake.wait()
            finally:
                close()

        return _FeedResponse(events(), on_close=close, ping=heartbeat_seconds,
                             ping_message_factory=lambda: ServerSentEvent(comment="ping"),
                             shutdown_event=stopping, shutdown_grace_period=2.0)

    @app.get("/patterns/{id}", dependencies=auth, tags=["patterns"],
             response_model=m.PatternOut, responses=_errors(401, 404, 422, 429))
    async def patterns_get(id: RecordId, include_embedding: IncludeEmbedding = False) -> Response:
        """A pattern by id."""
        return _json(record_json(db.get_pattern(id), include_embedding))

    @app.delete("/patterns/{id}", dependencies=auth, tags=["patterns"], status_code=204,
                responses=_errors(401, 404, 422, 429))
    def patterns_delete(id: RecordId) -> Response:
        """Delete a pattern."""
        db.delete_pattern(id)
        return Response(status_code=204)

    # ---- episodes -----------------------------------------------------------------------
    @app.post("/episodes/store", dependencies=auth, tags=["episodes"], status_code=201,
              response_model=m.EpisodeStored, responses=_errors(*_AUTHED))
    def episodes_store(body: m.EpisodeStoreRequest) -> Response:
        """Store a Reflexion episode; the named skills' statistics are updated with it."""
        try:
            eid = db.store_episode(
                body.task, embedding=vector(body.embedding, "body.embedding"),
                reward=body.reward, success=body.success, session_id=body.session_id,
                input=body.input, output=body.output, critique=body.critique,
                latency_ms=body.latency_ms, tokens=body.tokens, skills=body.skills,
                metadata=body.metadata)
        except KeyError as exc:  # a named skill does not exist: a problem of the body
            raise InvalidArgumentError(f"body.skills: {exc}") from None
        return _json({"id": eid, "episode": record_json(db.get_episode(eid))}, 201)

    @app.post("/episodes/search", tags=["episodes"], response_model=m.EpisodeSearchResponse,
              responses=_errors(*_AUTHED), openapi_extra=_body_doc(m.EpisodeSearchRequest))
    async def episodes_search(request: Request) -> Response:
        """The ``k`` most similar episodes; ``success`` false keeps only failures."""
        await authorize(request)
        body = await parse_body(request, m.EpisodeSearchRequest)
        hits = db.search_episodes(
            query_of(body.task, body.vector), body.k, min_reward=body.min_reward,
            success=body.success, session_id=body.session_id, where=body.where,
            threshold=body.threshold, ef=body.ef)
        return _json(_hits(hits, "episode"))

    @app.get("/episodes/{id}", dependencies=auth, tags=["episodes"],
             response_model=m.EpisodeOut, responses=_errors(401, 404, 422, 429))
    async def episodes_get(id: RecordId, include_embedding: IncludeEmbedding = False) -> Response:
        """An episode by id."""
        return _json(record_json(db.get_episode(id), include_embedding))

    @app.delete("/episodes/{id}", dependencies=auth, tags=["episodes"], status_code=204,
                responses=_errors(401, 404, 422, 429))
    def episodes_delete(id: RecordId) -> Response:
        """Delete an episode."""
        db.delete_episode(id)
        return Response(status_code=204)

    # ---- skills -------------------------------------------------------------------------
    @app.post("/skills/store", dependencies=auth, tags=["skills"], status_code=201,
              response_model=m.SkillStored, responses=_errors(*_AUTHED, 409))
    def skills_store(body: m.SkillStoreRequest) -> Response:
        """Store a skill; ``409`` when the name is taken."""
        try:
            db.get_skill(body.name)
        except KeyError:
            pass
        else:
            raise ConflictError(f"skill with name {body.name!r} already exists")
        sid = db.store_skill(body.name, body.description, signature=body.signature,
                             code=body.code, metadata=body.metadata,
                             embedding=vector(body.embedding, "body.embedding"))
        return _json({"id": sid, "skill": record_json(db.get_skill(sid))}, 201)

    @app.post("/skills/search", tags=["skills"], response_model=m.SkillSearchResponse,
              responses=_errors(*_AUTHED), openapi_extra=_body_doc(m.SkillSearchRequest))
    async def skills_search(request: Request) -> Response:
        """The ``k`` skills most similar to a text or a vector."""
        await authorize(request)
        body = await parse_body(request, m.SkillSearchRequest)
        hits = db.search_skills(
            query_of(body.query, body.vector), body.k,
            min_success_rate=body.min_success_rate, where=body.where,
            threshold=body.threshold, ef=body.ef)
        return _json(_hits(hits, "skill"))

    @app.get("/skills/{id}", dependencies=auth, tags=["skills"],
             response_model=m.SkillOut, responses=_errors(401, 404, 422, 429))
    async def skills_get(id: RecordId, include_embedding: IncludeEmbedding = False) -> Response:
        """A skill by id."""
        return _json(record_json(db.get_skill(id), include_embedding))

    @app.delete("/skills/{id}", dependencies=auth, tags=["skills"], status_code=204,
                responses=_errors(401, 404, 422, 429))
    def skills_delete(id: RecordId) -> Response:
        """Delete a skill."""
        db.delete_skill(id)
        return Response(status_code=204)

    # ---- learning -----------------------------------------------------------------------
    # Writes (the adapter's step, its state in the store's meta table): plain functions on
    # the thread pool, under the store's write lock like the other writes.
    @app.post("/feedback", dependencies=auth, tags=["learning"],
              response_model=m.FeedbackResponse, responses=_errors(*_LEARNING))
    def feedback(body: m.FeedbackRequest) -> Response:
        """``patternId`` was the right memory for the query (reward > 0) or a wrong one
        (reward < 0): one online step of the learned query adapter."""
        q = query_of(body.task, body.vector)
        with write_lock:
            out = db.feedback(q, body.pattern_id, reward=body.reward)
        return _json(event_json(out))

    @app.post("/feedback/trajectory", dependencies=auth, tags=["learning"],
              response_model=m.FeedbackResponse, responses=_errors(*_LEARNING))
    def feedback_trajectory(body: m.TrajectoryFeedbackRequest) -> Response:
        """The outcome of one retrieval step: the query, the ids it retrieved, the one acted
        on (``used``, default the first) and the outcome reward."""
        q = query_of(body.task, body.vector)
        with write_lock:
            out = db.feedback_trajectory(q, body.retrieved_ids, body.outcome_reward,
                                         used=body.used)
        return _json(event_json(out))

    @app.get("/learning", dependencies=auth, tags=["learning"],
             responses=_errors(401, 429, 503),
             response_model=dict[str, Any])
    def learning_stats() -> Response:
        """``db.learning.stats()``: the switch, counters, loss, adapter norm, EWC, config."""
        check_open()
        return _json(db.learning.stats())

    def learning_action(name: str, doc: str) -> None:
        def action() -> Response:
            check_open()
            with write_lock:
                getattr(db.learning, name)()
            return _json(db.learning.stats())

        action.__name__ = action.__qualname__ = f"learning_{name}"
        action.__doc__ = doc
        app.post(f"/learning/{name}", dependencies=auth, tags=["learning"],
                 response_model=dict[str, Any], responses=_errors(401, 409, 429, 503))(action)

    for _name, _doc in (
            ("enable", "Adapt searches and learn from feedback (persisted); answers the stats."),
            ("disable", "Search with raw queries and ignore feedback; the adapter is kept "
                        "(persisted); answers the stats."),
            ("reset", "Back to the identity adapter (also discards an unreadable stored "
                      "state); answers the stats."),
            ("consolidate", "Mark a task boundary for EWC++ (later learning is pulled "
                            "towards the current adapter); answers the stats.")):
        learning_action(_name, _doc)

    # ---- graph --------------------------------------------------------------------------
    @app.post("/graph/cypher", dependencies=auth, tags=["graph"],
              response_model=m.CypherResponse, responses=_errors(*_AUTHED, 400))
    def graph_cypher(body: m.CypherRequest) -> Response:
        """Run a Cypher query on the causal memory graph (writes run in one transaction)."""
        result = db.graph.query_stats(body.query, body.params or {})
        return _json({"columns": list(result.columns),
                      "rows": [{str(k): _finite(v) for k, v in row.items()}
                               for row in result.rows]})

    # ---- OpenAPI: declare the API-key schemes ---------------------------------------------
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            _, defs = models_json_schema([(mod, "validation") for mod in _RAW_BODIES],
                                         ref_template="#/components/schemas/{model}")
            components.setdefault("schemas", {}).update(defs.get("$defs", {}))
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            if keys is not None:
                for path, ops in schema.get("paths", {}).items():
                    if path in OPEN_PATHS:
                        continue
                    for op in ops.values():
                        op["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # ---- middleware (the last added runs first) -------------------------------------------
    app.add_middleware(_Guard, max_body=max_body_bytes, handlers=handlers,
                       fast_routes={"/vectors/search": vectors_search,
                                    "/patterns/search": patterns_search})
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=cors_credentials,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
            max_age=600)
    return app


def _exists(db: Any, rid: int) -> bool:
    try:
        db.get_pattern(rid)
    except KeyError:
        return False
    return True


def _parse_kinds(kinds: str | None) -> tuple[str, ...]:
    if kinds is None or not kinds.strip():
        return ("pattern",)
    out = tuple(dict.fromkeys(k.strip() for k in kinds.split(",") if k.strip()))
    bad = [k for k in out if k not in KINDS]
    if bad or not out:
        raise InvalidArgumentError(f"query.kinds: unknown kind(s) {', '.join(map(repr, bad))} "
                            f"(expected {', '.join(KINDS)})")
    return out


def _version() -> str:
    from .._version import __version__

    return __version__
