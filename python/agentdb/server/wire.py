"""What the HTTP routes share: JSON encoding, records and hits as JSON, error answers,
the SSE feed plumbing, the request guard middleware and OpenAPI helpers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException

from ..errors import (
    AgentDBError,
    BadRequestError,
    InvalidArgumentError,
    PayloadTooLargeError,
)
from ..graph.cypher.values import Node as CypherNode
from ..graph.cypher.values import Path as CypherPath
from ..graph.cypher.values import Relationship as CypherRelationship
from ..storage.records import Episode, Pattern, Skill
from . import models as m
from .events import Event

try:  # the server extra's JSON encoder, for the search answers (dumps_hits)
    import orjson as _orjson
except ImportError:  # pragma: no cover - installed with the server extra
    _orjson = None  # type: ignore[assignment]

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
RL_SCOPE_KEY = "agentdb.ratelimit"
JSON = "application/json"


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body exceeds {limit} bytes")


class BodyTooLarge(HTTPException):
    """Raised by the body reader. An ``HTTPException`` (status 413) so that FastAPI's body
    parsing lets it through instead of answering 400; it carries the typed error."""

    def __init__(self, limit: int) -> None:
        self.error = too_large(limit)
        super().__init__(self.error.http_status, str(self.error))


# ---- JSON -----------------------------------------------------------------------------------
def finite(v: Any) -> Any:
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
        return [finite(x) for x in v]
    if t is dict:
        return {str(k): finite(x) for k, x in v.items()}
    if t is CypherNode:
        return {"id": v.id, "labels": list(v.labels), "properties": finite(v.properties)}
    if t is CypherRelationship:
        return {"id": v.id, "type": v.type, "start": v.start, "end": v.end,
                "properties": finite(v.properties)}
    if t is CypherPath:
        return {"nodes": [finite(n) for n in v.nodes],
                "relationships": [finite(r) for r in v.relationships]}
    if isinstance(v, (np.generic, np.ndarray)):
        return finite(v.tolist())
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    return str(v)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes; falls back to :func:`finite` (and ASCII escapes) for values plain
    ``json`` refuses (NaN, numpy scalars, lone surrogates).

    >>> dumps({"a": [1, 2.5]}), dumps({"x": float("nan")})
    (b'{"a":[1,2.5]}', b'{"x":"NaN"}')
    """
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
    except (ValueError, TypeError):  # UnicodeEncodeError is a ValueError
        return json.dumps(finite(obj), separators=(",", ":"), allow_nan=False).encode()


def dumps_hits(obj: Any) -> bytes:
    """Compact JSON of search hits (ints, finite floats and stored metadata, which is finite
    JSON by construction: ``check_metadata``) with orjson, about ten times cheaper than
    :func:`dumps` for a page of hits; whatever orjson refuses (a lone surrogate, a non-string
    key, a huge int) goes through :func:`dumps`.

    >>> dumps_hits({"results": [{"id": 1, "similarity": 0.5, "metadata": {"é": 1}}]})
    b'{"results":[{"id":1,"similarity":0.5,"metadata":{"\\xc3\\xa9":1}}]}'
    """
    if _orjson is not None:
        try:
            return _orjson.dumps(obj)
        except TypeError:  # orjson.JSONEncodeError
            pass
    return dumps(obj)


def hits_response(obj: Any) -> Response:
    """A ``200`` JSON answer of search hits, encoded by :func:`dumps_hits`."""
    return Response(dumps_hits(obj), status_code=200, media_type=JSON)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


# ---- records --------------------------------------------------------------------------------
CAMEL: dict[str, str] = {}


def camel(name: str) -> str:
    c = CAMEL.get(name)
    if c is None:
        c = CAMEL[name] = to_camel(name)
    return c


RECORD_FIELDS = {cls: tuple((f.name, camel(f.name)) for f in dataclasses.fields(cls)
                             if f.name != "embedding")
                  for cls in (Pattern, Episode, Skill)}


def record_json(rec: Any, embedding: bool = False) -> dict[str, Any]:
    """A record as the API's camelCase JSON object (the embedding only when asked).

    >>> record_json(Pattern(id=1, task="t", session_id="s"))["sessionId"]
    's'
    """
    out = {camel: getattr(rec, name) for name, camel in RECORD_FIELDS[type(rec)]}
    if embedding and rec.embedding is not None:
        out["embedding"] = np.asarray(rec.embedding, dtype=np.float32).tolist()
    return out


def event_json(data: dict[str, Any]) -> dict[str, Any]:
    """An event payload (a record dict from the memory API, or another flat answer such as
    ``db.feedback``'s) with camelCase top-level keys.

    >>> event_json({"id": 3, "session_id": None, "metadata": {"a_b": 1}})
    {'id': 3, 'sessionId': None, 'metadata': {'a_b': 1}}
    """
    return {camel(k): v for k, v in data.items()}


def hit_json(h: Any, kind: str) -> dict[str, Any]:
    out = {"id": h.id, "similarity": h.similarity, "distance": h.distance,
           kind: record_json(h.record)}
    score = getattr(h, "score", None)
    if score is not None:  # re-ranked (rerank="attention"...)
        out["score"] = score
    return out


def hits_json(hits: Iterable[Any], kind: str, *, flat: bool = False) -> dict[str, Any]:
    """``{"results": [hit, ...]}``; with ``flat`` also ``{"<kind>s": [record + similarity]}``
    (the seed system's answer shape)."""
    hits = list(hits)
    out: dict[str, Any] = {"results": [hit_json(h, kind) for h in hits]}
    if flat:
        out[f"{kind}s"] = [{**record_json(h.record), "similarity": h.similarity} for h in hits]
    return out


# ---- the change feed's wake-ups -------------------------------------------------------------
class Wakeups:
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
                loop.call_soon_threadsafe(set_all, evs)
            except RuntimeError:  # that loop is closed; its streams are gone
                pass


def set_all(evs: Sequence[asyncio.Event]) -> None:
    for ev in evs:
        ev.set()


class Stopping:
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


class FeedResponse(EventSourceResponse):
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


def sse_event(ev: Event) -> ServerSentEvent:
    return ServerSentEvent(data=dumps(event_json(ev.data)).decode("utf-8"), id=str(ev.id),
                           event=ev.event)


# ---- the guard middleware -------------------------------------------------------------------
class Guard:
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
                    await self._send_error(send, too_large(limit))
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
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                rl = scope.get(RL_SCOPE_KEY)
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
        except BodyTooLarge as exc:
            if started:
                raise
            await self._send_error(send, exc.error)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await self._send_error(send, AgentDBError("internal server error"))


# ---- helpers used by the routes -------------------------------------------------------------
def field_location(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_message(errors: Sequence[Any]) -> str:
    parts = []
    for e in errors[:5]:
        msg = str(e.get("msg", "invalid"))
        if msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
        parts.append(f"{field_location(e.get('loc', ()))}: {msg}")
    if len(errors) > 5:
        parts.append(f"... and {len(errors) - 5} more")
    return "; ".join(parts)


ERROR_MODEL = {"model": m.ErrorResponse}


def error_responses(*statuses: int) -> dict[int | str, Any]:
    descriptions = {400: "Bad request", 401: "Missing or invalid API key",
                    404: "Unknown id", 409: "Conflict", 413: "Body too large",
                    408: "The query ran past its timeout", 422: "Validation error",
                    429: "Rate limited", 499: "The query was cancelled (client gone, or "
                    "the server is stopping)", 503: "Store unavailable"}
    return {s: {**ERROR_MODEL, "description": descriptions[s]} for s in statuses}


AUTHED = (401, 413, 422, 429)
#: Statuses of the learning writes: an unknown pattern id, an unreadable stored learning
#: state (409, until ``POST /learning/reset``), a closed or read-only store (503).
LEARNING = (*AUTHED, 404, 409, 503)
#: One change-feed event (OpenAPI 3.2 ``itemSchema`` of ``text/event-stream``).
SSE_ITEM = {
    "type": "object", "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "description": "1, 2, ... per server run"},
        "event": {"type": "string", "description": "e.g. pattern:stored, or reset"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "the record (camelCase), {\"id\": n} for a deletion"}}}
M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
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


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body read by :func:`parse_body`."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


RAW_BODIES = (m.VectorSearchRequest, m.PatternSearchRequest, m.EpisodeSearchRequest,
               m.SkillSearchRequest)
RecordId = Annotated[int, Path(ge=1, le=m.MAX_ID, description="Record id.")]
IncludeEmbedding = Annotated[bool, Query(alias="includeEmbedding",
                                         description="Include the embedding.")]




def exists(db: Any, rid: int) -> bool:
    try:
        db.get_pattern(rid)
    except KeyError:
        return False
    return True


def parse_kinds(kinds: str | None) -> tuple[str, ...]:
    if kinds is None or not kinds.strip():
        return ("pattern",)
    out = tuple(dict.fromkeys(k.strip() for k in kinds.split(",") if k.strip()))
    bad = [k for k in out if k not in KINDS]
    if bad or not out:
        raise InvalidArgumentError(f"query.kinds: unknown kind(s) {', '.join(map(repr, bad))} "
                            f"(expected {', '.join(KINDS)})")
    return out


def version() -> str:
    from .._version import __version__

    return __version__

