"""The HTTP API: a FastAPI application over one :class:`agentdb.AgentDB` (``docs/api.md``).

:func:`create_app` holds the setup (auth, rate limit, error handlers, the helpers over the
store, OpenAPI, middleware); the routes live in :mod:`agentdb.server.routes`, one module per
group (service, vectors, patterns, episodes, skills, learning, graph), and what they share
(JSON encoding, error answers, the SSE plumbing, the guard middleware) in
:mod:`agentdb.server.wire`. ``agentdb serve`` runs it with uvicorn. The pieces:

* **Auth and rate limit** are one async dependency on every route except ``/health``,
  ``/ready`` and the docs: a missing or wrong key is the same ``401`` (with
  ``WWW-Authenticate: Bearer``), then the key's token bucket is charged (``429`` with
  ``Retry-After`` when empty). ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` are added to
  every answer of an authenticated request by :class:`~agentdb.server.wire.Guard`.
* :class:`~agentdb.server.wire.Guard`, a pure ASGI middleware, refuses bodies over
  ``max_body_bytes`` (the declared ``Content-Length`` at once, and a streamed body as soon as
  its bytes add up past the limit: ``413``) and turns any unexpected exception into a
  generic ``500`` (the traceback goes to the ``agentdb.server`` log, never to the client).
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

import concurrent.futures
import json
import math
import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException

from ..errors import (
    AgentDBError,
    InvalidArgumentError,
    LearningStateError,
    RateLimitedError,
    StoreClosedError,
    StoreError,
    UnauthorizedError,
    describe,
)
from ..memory.namespaces import DEFAULT
from . import models as m
from .auth import KeyStore, RateLimiter, key_from_headers
from .batching import SearchBatcher
from .events import EventHub
from .namespacing import KeyScopes, NamespaceDispatch
from .queries import RunningQueries

__all__ = ["create_app"]

from .routes import GROUPS, RouteContext
from .routes.context import diverse_options
from .wire import (
    FRAMEWORK_CODES,
    OPEN_PATHS,
    RAW_BODIES,
    RL_SCOPE_KEY,
    Guard,
    Wakeups,
    error_response,
    log,
    validation_message,
    version,
)

__all__ = ["create_app"]

_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).smallest_normal)


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
    auth_failures_per_minute: float = 30,
    cypher_timeout: float | None = 30.0,
    cypher_max_rows: int | None = 100_000,
    backup_dir: str | os.PathLike[str] | None = None,
    key_namespaces: Mapping[str, Sequence[str]] | None = None,
    namespaces: bool = True,
) -> FastAPI:
    """The FastAPI application serving ``db`` (the contract is ``docs/api.md``).

    ``api_keys=None`` turns authentication off (``agentdb serve --no-auth``; then every
    request shares one rate-limit bucket); an empty list is refused. ``rate_limit_per_minute``
    is per key (0 = off), ``max_body_bytes`` the largest request body, ``cors_origins`` the
    allowed origins (none: CORS off; ``"*"`` cannot be combined with ``cors_credentials``),
    ``heartbeat_seconds`` the SSE comment interval (0 = none), ``replay_buffer`` how many
    events a reconnecting stream can catch up on, ``search_threads`` the worker threads that
    run ``/vectors/search``'s HNSW walk and re-ranked pattern searches (they release the
    GIL, so the event loop parses other requests meanwhile; 0 = on the loop).
    ``auth_failures_per_minute``: failed authentications allowed per client address (after a
    burst of up to 20), then ``429`` with ``Retry-After``; valid keys are never slowed.
    ``cypher_timeout`` (seconds) and ``cypher_max_rows`` bound every ``/graph/cypher`` query
    (None: no limit; a request may ask for less, never more). ``backup_dir``: the existing
    directory ``POST /backup`` writes its copies into (None: backups over HTTP are off).
    ``namespaces``: serve ``/ns/<name>/...`` as the API of ``db.namespace(name)``
    (:mod:`agentdb.server.namespacing`; on when the store has namespaces);
    ``key_namespaces`` binds keys to the namespaces they may reach (a key without an entry
    reaches all of them).
    ``app.state`` holds ``db``, ``hub``, ``keys`` (a :class:`KeyStore` of the keys that reach
    the default namespace, or None without auth), ``scopes`` (every key and its namespaces),
    ``limiter``, ``batcher`` (the :class:`~agentdb.server.batching.SearchBatcher` of
    ``/vectors/search``; None with ``search_threads=0``) and ``queries`` (the running Cypher
    queries: ``app.state.queries.cancel_all()`` stops them, as SIGTERM does).

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
    scopes = KeyScopes(api_keys, key_namespaces)
    keys = None if api_keys is None else KeyStore(scopes.keys_for(DEFAULT) or [])
    queries = RunningQueries(cypher_timeout, cypher_max_rows)
    limiter = RateLimiter(rate_limit_per_minute)
    if auth_failures_per_minute <= 0 or not math.isfinite(auth_failures_per_minute):
        raise InvalidArgumentError(
            f"auth_failures_per_minute must be > 0, got {auth_failures_per_minute}")
    auth_failures = RateLimiter(auth_failures_per_minute, burst=min(20.0,
                                                                   auth_failures_per_minute))
    hub = EventHub(buffer=replay_buffer)
    wakeups = Wakeups()
    limit_header = str(int(limiter.per_minute)).encode()

    def on_event(event: str, payload: dict[str, Any]) -> None:
        hub.publish(event, payload)
        wakeups.notify()

    unsubscribe = db.on("*", on_event)

    app = FastAPI(
        title="AgentDB",
        version=version(),
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
    app.state.queries = queries
    app.state.unsubscribe_events = unsubscribe

    # ---- auth + rate limit --------------------------------------------------------------
    async def authorize(request: Request) -> str:
        if keys is None:
            key = ""
        else:
            found = keys.check(key_from_headers(request.headers))
            if found is None:
                # failed attempts are throttled per client address (valid keys never are):
                # guessing keys costs a 429 + Retry-After after a short burst
                addr = request.client.host if request.client else "unknown"
                ok, wait, _ = auth_failures.acquire(addr)
                if not ok:
                    retry = RateLimiter.retry_after_header(wait)
                    raise RateLimitedError(
                        f"too many failed authentications from {addr}; retry in {retry} s",
                        retry_after=wait)
                raise UnauthorizedError("missing or invalid API key")
            key = found
        allowed, wait, remaining = limiter.acquire(key)
        if remaining >= 0:
            request.scope[RL_SCOPE_KEY] = (limit_header, str(remaining).encode())
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
        return error_response(exc.status_code, code, detail, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "bad_request", "the request body is not valid JSON")
        return error_response(422, "validation_error", validation_message(errors))

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
        return error_response(info.http_status, info.code, message, headers)

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
        # Python floats to float64 first (~6x cheaper than straight to float32); the largest
        # magnitude (NaN if any value is NaN) then tells every bad case apart at once.
        arr = np.array(values, dtype=np.float64)
        top = float(np.abs(arr).max())
        if not 0.0 < top <= _F32_MAX:  # NaN, inf, 1e39 (no float32), all zero
            if top == 0.0:
                raise InvalidArgumentError(f"{where}: an all-zero vector has no direction")
            raise InvalidArgumentError(f"{where}: values must be finite float32 numbers")
        out = arr.astype(np.float32)
        if top < _F32_TINY and not out.any():  # every value below float32's smallest
            raise InvalidArgumentError(f"{where}: an all-zero vector has no direction")
        return out

    def query_of(text: str | None, vec: Sequence[float] | None) -> Any:
        return text if vec is None else vector(vec, "body.vector")

    write_lock = getattr(db, "write_lock", None) or nullcontext()

    if isinstance(search_threads, bool) or not isinstance(search_threads, int) \
            or not 0 <= search_threads <= 64:
        raise InvalidArgumentError(
            f"search_threads must be an integer in [0, 64], got {search_threads!r}")
    if backup_dir is not None and not os.path.isdir(backup_dir):
        raise InvalidArgumentError(f"backup_dir '{backup_dir}' is not a directory")
    search_pool = (concurrent.futures.ThreadPoolExecutor(search_threads, "agentdb-search")
                   if search_threads > 0 else None)
    batcher = (SearchBatcher(db, search_pool, search_threads)
               if search_pool is not None and hasattr(db, "search_hits_many") else None)
    app.state.batcher = batcher  # combined /vectors/search batches (None: no search threads)

    def search_vectors(q: np.ndarray, body: m.VectorSearchRequest) -> list[dict[str, Any]]:
        """``/vectors/search`` hits: ``db.search_hits`` (the metadata from the store's
        in-memory filter columns, no read of the records), else ``search_patterns``."""
        kw = dict(min_reward=body.min_reward, success_only=body.success_only,
                  session_id=body.session_id, where=body.where, threshold=body.threshold,
                  ef=body.ef)
        if body.diversity is not None:  # else the search is called exactly as before
            kw.update(diversity=body.diversity, candidates=body.candidates)
        if hasattr(db, "search_hits"):
            return db.search_hits(q, body.k, **kw)
        return [{"id": h.id, "similarity": h.similarity, "distance": h.distance,
                 "metadata": h.record.metadata}
                for h in db.search_patterns(q, body.k, adapt=False, **kw)]  # raw vectors

    def rerank_options(body: m.PatternSearchRequest) -> dict[str, Any]:
        """The learning/re-ranking/diversity keywords of a pattern search (none when the
        request uses the defaults, so a plain search calls ``search_patterns`` exactly as
        before)."""
        opts: dict[str, Any] = {} if body.adapt else {"adapt": False}
        if body.rerank is not None:
            heads = 1 if body.heads is None else body.heads
            if dim % heads:
                raise InvalidArgumentError(f"body.heads: {heads} heads must divide the store's "
                                    f"dimension {dim}")
            opts.update(rerank=body.rerank, candidates=body.candidates, heads=heads,
                        temperature=0.05 if body.temperature is None else body.temperature)
        else:
            opts.update(diverse_options(body))
        return opts

    def check_open() -> None:
        if getattr(db, "closed", False):
            raise StoreClosedError("the store is closed")

    # ---- routes (one module per group: agentdb.server.routes) ---------------------------
    ctx = RouteContext(auth=auth, authorize=authorize, check_open=check_open, db=db,
                       heartbeat_seconds=heartbeat_seconds, hub=hub, query_of=query_of,
                       rerank_options=rerank_options, search_pool=search_pool,
                       search_vectors=search_vectors, vector=vector, wakeups=wakeups,
                       write_lock=write_lock, queries=queries,
                       backup_dir=None if backup_dir is None else str(backup_dir),
                       batcher=batcher)
    handlers_by_name: dict[str, Any] = {}
    for group in GROUPS:
        handlers_by_name.update(group.register(app, ctx))
    vectors_search = handlers_by_name["vectors_search"]
    patterns_search = handlers_by_name["patterns_search"]

    # ---- OpenAPI: declare the API-key schemes ---------------------------------------------
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            _, defs = models_json_schema([(mod, "validation") for mod in RAW_BODIES],
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
    app.add_middleware(Guard, max_body=max_body_bytes, handlers=handlers,
                       fast_routes={"/vectors/search": vectors_search,
                                    "/patterns/search": patterns_search})
    app.state.namespace_apps = {}
    app.state.scopes = scopes
    if namespaces and hasattr(db, "namespace"):
        def make(name: str) -> FastAPI:
            return create_app(
                db.namespace(name), api_keys=scopes.keys_for(name),
                rate_limit_per_minute=rate_limit_per_minute, max_body_bytes=max_body_bytes,
                heartbeat_seconds=heartbeat_seconds, replay_buffer=replay_buffer,
                search_threads=search_threads,  # CORS: the outer app's middleware answers
                auth_failures_per_minute=auth_failures_per_minute,
                cypher_timeout=cypher_timeout, cypher_max_rows=cypher_max_rows,
                backup_dir=backup_dir, namespaces=False)

        app.add_middleware(NamespaceDispatch, scopes=scopes, make=make,
                           apps=app.state.namespace_apps)
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=cors_credentials,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
            max_age=600)
    return app


