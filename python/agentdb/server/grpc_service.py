"""The gRPC service ``agentdb.v1.AgentDB`` (``agentdb/server/agentdb.proto``) over one store.

>>> import agentdb
>>> from agentdb.server.auth import KeyStore, RateLimiter
>>> db = agentdb.open(":memory:", dim=8)
>>> server = serve_grpc(db, port=0, keys=KeyStore(["secret-key-1"]), limiter=RateLimiter(0),
...                     hub=hub_for(db))
>>> server.agentdb_port > 0
True
>>> server.stop(None).wait()
True

:func:`serve_grpc` starts a ``grpc.server`` on a thread pool and returns it (call
``server.stop(grace)`` to shut it down; the caller owns the store and closes it afterwards).
The bound port -- useful with ``port=0`` -- is ``server.agentdb_port``.

Every call except ``Health`` presents an API key in its metadata (``authorization: Bearer
<key>`` or ``x-api-key: <key>``), checked in constant time by :class:`~.auth.KeyStore`; a
missing or wrong key is ``UNAUTHENTICATED`` with one generic message. Each call then takes a
token from the key's bucket in :class:`~.auth.RateLimiter` (with ``keys=None`` -- auth
disabled, loopback only -- all callers share one bucket); an empty bucket is
``RESOURCE_EXHAUSTED`` with a ``retry-after`` trailer (whole seconds). Errors from the store
map to status codes through :mod:`agentdb.errors` (each error class names its gRPC status):
bad input and Cypher errors -> ``INVALID_ARGUMENT`` (with the message), an unknown id ->
``NOT_FOUND``, a closed store -> ``UNAVAILABLE``, another store error (read-only, locked) ->
``FAILED_PRECONDITION``; anything else is ``INTERNAL`` with a generic message and is logged
here with its traceback.

``StreamPatterns`` reads the change feed from an :class:`~.events.EventHub`. The hub must be
fed by the store's events. Next to the HTTP app pass its ``app.state.hub`` (and
``app.state.keys``, ``app.state.limiter``), so both transports share one event numbering and
the same rate buckets; serving gRPC alone, :func:`hub_for` returns the store's hub, creating
it and registering ``db.on("*", ...)`` on first use (don't mix the two for one store: each
hub numbers events on its own).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

try:
    import grpc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from . import EXTRA_HINT

    raise ImportError(EXTRA_HINT) from exc

from ..errors import ForbiddenError, InvalidArgumentError, StoreError, describe
from ..graph.cypher.values import Node, Path, Relationship
from ..memory.namespaces import DEFAULT, check_name
from . import agentdb_pb2 as pb
from . import agentdb_pb2_grpc as pb_grpc
from .auth import KeyStore, RateLimiter, key_from_headers
from .events import Event, EventHub, Subscription
from .namespacing import KeyScopes
from .queries import RunningQueries

__all__ = ["AgentDBServicer", "hub_for", "serve_grpc"]

log = logging.getLogger("agentdb.server.grpc")

MAX_K = 1000
DEFAULT_K = 10
KINDS = ("pattern", "episode", "skill")
UNAUTHENTICATED_MESSAGE = "missing or invalid API key"
_ANONYMOUS = ""  # the shared rate-limit bucket when auth is disabled (as the HTTP app)
_POLL_SECONDS = 1.0  # how often an idle stream re-checks that its client is still there

_hubs: weakref.WeakKeyDictionary[Any, EventHub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()

_F = TypeVar("_F", bound=Callable[..., Any])


def hub_for(db: Any, *, buffer: int = 1000) -> EventHub:
    """The change-feed hub of ``db``: created on the first call (registering
    ``db.on("*", hub.publish)`` once), the same object afterwards. It lives as long as ``db``
    (the store's event bus holds it); ``buffer`` (the replay buffer) applies on creation only.

    >>> import agentdb, numpy as np
    >>> db = agentdb.open(":memory:", dim=8)
    >>> hub = hub_for(db); hub is hub_for(db)
    True
    >>> _ = db.store_pattern("t", embedding=np.ones(8)); hub.last_id
    1
    """
    with _hubs_lock:
        hub = _hubs.get(db)
        if hub is None:
            hub = EventHub(buffer=buffer)
            publish = hub.publish
            db.on("*", lambda event, payload: publish(event, payload))
            _hubs[db] = hub
        return hub


def serve_grpc(db: Any, *, host: str = "127.0.0.1", port: int, keys: KeyStore | None,
               limiter: RateLimiter, hub: EventHub, max_workers: int = 16,
               max_message_bytes: int = 1 << 20,
               queries: RunningQueries | None = None,
               scopes: KeyScopes | None = None) -> grpc.Server:
    """Start the gRPC service for ``db`` on ``host:port`` (plaintext) and return the started
    server; its bound port (``port=0`` picks a free one) is ``server.agentdb_port``.

    ``keys=None`` disables auth and is only allowed on a loopback host. ``max_workers`` threads
    serve calls; an open ``StreamPatterns`` holds one, so at most ``max_workers // 2`` streams
    are open at once (more are ``RESOURCE_EXHAUSTED``). Requests over ``max_message_bytes``
    are refused by gRPC with ``RESOURCE_EXHAUSTED``. Stop it with ``server.stop(grace)``:
    open streams are cancelled and their subscriptions removed. ``queries`` (shared with the
    HTTP app: ``app.state.queries``) holds the Cypher limits; a ``Cypher`` call is bounded by
    its deadline and those limits (``DEADLINE_EXCEEDED`` / ``RESOURCE_EXHAUSTED``).
    ``scopes`` (the HTTP app's ``app.state.scopes``): a call's ``x-agentdb-namespace``
    metadata picks the namespace it runs in (default ``default``), and a key bound to other
    namespaces is refused with ``PERMISSION_DENIED``.
    """
    if keys is not None and len(keys) == 0:
        raise InvalidArgumentError("no API keys configured: give at least one key, or keys=None to "
                                   "disable auth (loopback only)")
    if keys is None and not _is_loopback(host):
        raise InvalidArgumentError(f"auth can only be disabled on a loopback host, not {host!r}")
    if max_workers < 2:
        raise InvalidArgumentError(f"max_workers must be >= 2, got {max_workers}")
    servicer = AgentDBServicer(db, keys=keys, limiter=limiter, hub=hub,
                               max_streams=max_workers // 2, queries=queries, scopes=scopes)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="agentdb-grpc"),
        options=[("grpc.so_reuseport", 0),  # a taken port is an error, not a shared one
                 ("grpc.max_receive_message_length", int(max_message_bytes))])
    pb_grpc.add_AgentDBServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio >= 1.5x raises; older ones return 0
        raise OSError(f"cannot bind the gRPC server to {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot bind the gRPC server to {address}")
    server.start()
    server.agentdb_port = bound  # type: ignore[attr-defined]
    server.agentdb_queries = servicer.queries  # type: ignore[attr-defined]
    server.agentdb_servicer = servicer  # type: ignore[attr-defined]
    return server


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rpc(fn: _F) -> _F:
    """Unary handler: admit the call (auth, rate limit), run it, map exceptions to codes."""

    @functools.wraps(fn)
    def handler(self: AgentDBServicer, request: Any, context: grpc.ServicerContext) -> Any:
        key = self._admit(context)
        try:
            self._enter(context, key)
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - mapped to a status below
            code, message = self._status_for(exc, fn.__name__)
        finally:
            self._local.__dict__.clear()
        context.abort(code, message)

    return handler  # type: ignore[return-value]


class AgentDBServicer(pb_grpc.AgentDBServicer):
    """The service implementation; use :func:`serve_grpc` to run it."""

    def __init__(self, db: Any, *, keys: KeyStore | None, limiter: RateLimiter, hub: EventHub,
                 max_streams: int = 8, queries: RunningQueries | None = None,
                 scopes: KeyScopes | None = None) -> None:
        self._root = db
        self.queries = queries if queries is not None else RunningQueries()
        self.scopes = scopes
        self.keys = keys if keys is not None or scopes is None else scopes.store
        self.limiter = limiter
        self._root_hub = hub
        self._local = threading.local()  # the namespace of the call this thread runs
        self.max_streams = max_streams
        self._streams = 0
        self._streams_lock = threading.Lock()

    @property
    def db(self) -> Any:
        """The store of the call this thread runs (its namespace's handle)."""
        return getattr(self._local, "db", None) or self._root

    def _enter(self, context: grpc.ServicerContext, key: str) -> Any:
        """Pick the call's namespace (``x-agentdb-namespace``; ``ForbiddenError`` for a key
        bound elsewhere); returns its handle, which :attr:`db` gives until the call ends."""
        name = DEFAULT
        for k, v in context.invocation_metadata():
            if k == "x-agentdb-namespace" and isinstance(v, str) and v:
                name = check_name(v)
        if self.scopes is not None and key != _ANONYMOUS and not self.scopes.allowed(key, name):
            raise ForbiddenError(f"this API key may not reach namespace {name!r}")
        db = self._root.namespace(name) if name != DEFAULT else self._root
        self._local.db = db
        return db

    # ---- admission and errors -------------------------------------------------------------
    def _admit(self, context: grpc.ServicerContext) -> str:
        """The caller's key (auth), after taking a rate-limit token; aborts otherwise."""
        if self.keys is None:
            key = _ANONYMOUS
        else:
            headers = {k: v for k, v in context.invocation_metadata()
                       if isinstance(v, str) and not k.endswith("-bin")}
            found = self.keys.check(key_from_headers(headers))
            if found is None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
            key = found
        allowed, wait, _ = self.limiter.acquire(key)
        if not allowed:
            retry = RateLimiter.retry_after_header(wait)
            context.set_trailing_metadata((("retry-after", retry),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"rate limit exceeded; retry after {retry} s")
        return key

    def _status_for(self, exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
        """The status of a failed call, from :func:`agentdb.errors.describe` (a closed store
        is ``StoreClosedError``: ``UNAVAILABLE``)."""
        info = describe(exc)
        if info.grpc_status == "INTERNAL":
            log.error("gRPC %s failed", method, exc_info=exc)
        elif info.grpc_status == "UNAVAILABLE" and isinstance(exc, StoreError):
            return grpc.StatusCode.UNAVAILABLE, "the store is closed"
        return getattr(grpc.StatusCode, info.grpc_status), info.message

    # ---- patterns -------------------------------------------------------------------------
    @_rpc
    def StorePattern(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        pid = self.db.store_pattern(
            request.task,
            embedding=list(request.embedding) if len(request.embedding) else None,
            reward=request.reward, success=request.success,
            session_id=_opt(request, "session_id"), input=_opt(request, "input"),
            output=_opt(request, "output"), critique=_opt(request, "critique"),
            metadata=_json_object(request.metadata, "metadata"), ttl=_opt(request, "ttl"),
            expires_at=_future(_opt(request, "expires_at")), dedupe=_opt(request, "dedupe"))
        return pb.StorePatternResponse(id=pid, pattern=_pattern(self.db.get_pattern(pid)))

    @_rpc
    def GetPattern(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _pattern(self.db.get_pattern(request.id), request.include_embedding)

    @_rpc
    def SearchPatterns(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        has_vector = len(request.vector) > 0
        if bool(request.task) == has_vector:
            raise InvalidArgumentError("give exactly one of task (text) or vector")
        k = request.k or DEFAULT_K
        if not 1 <= k <= MAX_K:
            raise InvalidArgumentError(f"k must be within 1..{MAX_K}, got {k}")
        ef = _opt(request, "ef")
        if ef is not None and ef < 1:
            raise InvalidArgumentError(f"ef must be >= 1, got {ef}")
        extra: dict[str, Any] = {}  # only what was given: a plain search stays as it was
        if request.mode and request.mode != "vector":
            extra.update(mode=request.mode)
        for field in ("text_weight", "diversity", "candidates"):
            if request.HasField(field):
                extra[field] = getattr(request, field)
        if "candidates" in extra and "diversity" not in extra and "mode" not in extra:
            raise InvalidArgumentError("candidates only applies with diversity or mode text / "
                                       "hybrid")
        hits = self.db.search_patterns(
            list(request.vector) if has_vector else request.task, k=k,
            min_reward=_opt(request, "min_reward"), success_only=request.success_only,
            session_id=_opt(request, "session_id"),
            where=_json_object(request.where, "where"),
            threshold=_opt(request, "threshold"), ef=ef, **extra)
        return pb.SearchPatternsResponse(results=[
            pb.SearchHit(id=h.id, similarity=h.similarity, distance=h.distance,
                         pattern=_pattern(h.record), score=h.score) for h in hits])

    @_rpc
    def DeletePattern(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.db.delete_pattern(request.id)
        return pb.DeletePatternResponse()

    @_rpc
    def Forget(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        removed = self.db.forget(
            list(request.kinds) or None, older_than=_opt(request, "older_than"),
            reward_below=_opt(request, "reward_below"), unused_for=_opt(request, "unused_for"),
            where=_json_object(request.where, "where") or None)
        return pb.ForgetResponse(removed=json.dumps(removed))

    # ---- graph, stats, health -------------------------------------------------------------
    @_rpc
    def Cypher(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if not request.query.strip():
            raise InvalidArgumentError("query is empty")
        # the call's deadline bounds the query (capped by the server's --cypher-timeout);
        # the callback runs when the call ends, so a client that cancels stops its query
        left = context.time_remaining()
        timeout = None if left is None or left > 86400 else max(left, 1e-3)
        budget = self.queries.budget(timeout, None)
        context.add_callback(budget.cancel)
        with self.queries.running(budget):
            result = self.db.graph.query_stats(request.query,
                                               _json_object(request.params, "params"),
                                               budget=budget)
        rows = [{k: _cypher_value(v) for k, v in row.items()} for row in result.rows]
        return pb.CypherResponse(columns=[str(c) for c in result.columns],
                                 rows=json.dumps(rows, allow_nan=False, default=str))

    @_rpc
    def Stats(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb.StatsResponse(json=json.dumps(self.db.stats(), default=str))

    def Health(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Liveness and readiness; no API key and no rate limit (like ``GET /health``)."""
        try:
            return pb.HealthResponse(status="ok", ready=True,
                                     patterns=int(self.db.count("patterns")))
        except StoreError:
            return pb.HealthResponse(status="ok", ready=False, patterns=0)
        except Exception as exc:  # noqa: BLE001
            log.error("gRPC Health failed", exc_info=exc)
            return pb.HealthResponse(status="ok", ready=False, patterns=0)

    # ---- change feed ----------------------------------------------------------------------
    def StreamPatterns(self, request: Any,  # noqa: N802
                       context: grpc.ServicerContext) -> Iterator[Any]:
        key = self._admit(context)
        try:
            db = self._enter(context, key)
        except Exception as exc:  # noqa: BLE001 - mapped to a status
            context.abort(*self._status_for(exc, "StreamPatterns"))
        finally:
            self._local.__dict__.clear()
        hub = self._root_hub if db is self._root else hub_for(db)
        kinds = tuple(dict.fromkeys(request.kinds)) or ("pattern",)
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown kind(s) {', '.join(map(repr, bad))}: expected "
                          f"{', '.join(KINDS)}")
        last = _opt(request, "last_event_id")
        if last is not None and last < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"last_event_id must be >= 0, got {last}")
        with self._streams_lock:
            full = self._streams >= self.max_streams
            if not full:
                self._streams += 1
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many open streams (at most {self.max_streams})")
        try:
            yield from self._stream(hub.subscribe(last_event_id=last, kinds=kinds), context)
        finally:
            with self._streams_lock:
                self._streams -= 1

    def _stream(self, sub: Subscription, context: grpc.ServicerContext) -> Iterator[Any]:
        def cancel() -> None:  # the RPC ended (client cancelled, deadline, server stop)
            sub.close()
            try:  # wake the handler thread blocked in sub.get()
                sub.queue.put_nowait(None)
            except Exception:  # noqa: BLE001 - a full queue wakes it anyway
                pass

        context.add_callback(cancel)
        try:
            for ev in sub.backlog:
                yield _event(ev)
            while context.is_active():
                ev = sub.get(timeout=_POLL_SECONDS)
                if ev is not None:
                    yield _event(ev)
                elif sub.closed:
                    break
        finally:
            sub.close()
        if context.is_active():  # dropped by the hub: this client fell too far behind
            context.abort(grpc.StatusCode.ABORTED,
                          "the stream fell too far behind and was dropped; reconnect with "
                          "last_event_id to resume")


# ---- conversions ----------------------------------------------------------------------------
def _opt(msg: Any, field: str) -> Any:
    """An ``optional`` proto field's value, or None when unset."""
    return getattr(msg, field) if msg.HasField(field) else None


def _json_object(text: str, field: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"{field} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def _pattern(rec: Any, embedding: bool = False) -> Any:
    d = rec.to_dict(embedding=embedding)
    msg = pb.Pattern(id=d["id"], task=d["task"], reward=d["reward"], success=d["success"],
                     metadata=json.dumps(d.get("metadata") or {}, default=str),
                     created_at=d.get("created_at") or 0.0,
                     updated_at=d.get("updated_at") or 0.0, uses=int(d.get("uses") or 1))
    for f in ("session_id", "input", "output", "critique", "expires_at"):
        if d.get(f) is not None:
            setattr(msg, f, d[f])
    if embedding and d.get("embedding") is not None:
        msg.embedding.extend(d["embedding"])
    return msg


def _future(expires_at: float | None) -> float | None:
    """A stored record's ``expires_at`` must lie ahead (as over HTTP)."""
    if expires_at is not None and expires_at <= time.time():
        raise InvalidArgumentError("expires_at is in the past")
    return expires_at


def _event(ev: Event) -> Any:
    return pb.PatternEvent(id=ev.id, event=ev.event, data=json.dumps(ev.data, default=str))


def _cypher_value(v: Any) -> Any:
    """A Cypher result value as plain JSON (see ``CypherResponse.rows`` in the proto)."""
    if isinstance(v, Node):
        return {"id": v.id, "labels": list(v.labels), "properties": _cypher_value(v.properties)}
    if isinstance(v, Relationship):
        return {"id": v.id, "type": v.type, "start": v.start, "end": v.end,
                "properties": _cypher_value(v.properties)}
    if isinstance(v, Path):
        return {"nodes": [_cypher_value(n) for n in v.nodes],
                "relationships": [_cypher_value(r) for r in v.relationships]}
    if isinstance(v, dict):
        return {str(k): _cypher_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_cypher_value(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v
