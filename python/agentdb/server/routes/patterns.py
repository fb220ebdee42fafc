"""Routes: patterns: store, search, context, the change feed, get, delete
(registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import Response
from sse_starlette import ServerSentEvent

from ...errors import (
    InvalidArgumentError,
)
from .. import models as m
from ..events import Event
from ..wire import (
    AUTHED,
    SSE_ITEM,
    FeedResponse,
    IncludeEmbedding,
    RecordId,
    Stopping,
    body_doc,
    error_responses,
    hits_json,
    json_response,
    parse_body,
    parse_kinds,
    record_json,
    sse_event,
)
from .context import RouteContext

__all__ = ["MAX_EVENT_ID", "register"]

#: Largest event id a client may resume from (header or query: one rule for both).
MAX_EVENT_ID = 10**18 - 1


def register(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """Add the patterns routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    authorize = ctx.authorize
    db = ctx.db
    heartbeat_seconds = ctx.heartbeat_seconds
    hub = ctx.hub
    query_of = ctx.query_of
    rerank_options = ctx.rerank_options
    search_pool = ctx.search_pool
    vector = ctx.vector
    wakeups = ctx.wakeups

    # ---- patterns -----------------------------------------------------------------------
    @app.post("/patterns/store", dependencies=auth, tags=["patterns"], status_code=201,
              response_model=m.PatternStored, responses=error_responses(*AUTHED))
    def patterns_store(body: m.PatternStoreRequest) -> Response:
        """Store a reasoning pattern; the task is embedded unless ``embedding`` is given."""
        pid = db.store_pattern(
            body.task, embedding=vector(body.embedding, "body.embedding"), reward=body.reward,
            success=body.success, session_id=body.session_id, input=body.input,
            output=body.output, critique=body.critique, metadata=body.metadata,
            ttl=body.ttl, expires_at=body.expires_at, dedupe=body.dedupe)
        return json_response({"success": True, "id": pid,
                              "pattern": record_json(db.get_pattern(pid))}, 201)

    @app.post("/patterns/search", tags=["patterns"], response_model=m.PatternSearchResponse,
              responses=error_responses(*AUTHED), openapi_extra=body_doc(m.PatternSearchRequest))
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
            return json_response(hits_json(search(), "pattern", flat=True))
        # a re-ranked search walks up to `candidates` (10,000) and runs the attention kernels
        # (both release the GIL): on a worker thread, as /vectors/search
        hits = await asyncio.get_running_loop().run_in_executor(search_pool, search)
        return json_response(hits_json(hits, "pattern", flat=True))

    @app.post("/patterns/context", dependencies=auth, tags=["patterns"],
              response_model=m.PatternContextResponse, responses=error_responses(*AUTHED))
    async def patterns_context(body: m.PatternContextRequest) -> Response:
        """An attention-weighted summary of the ``k`` patterns most relevant to the query:
        the vector, each pattern's weight (softmax of cosine / temperature, summing to 1)
        and the hits."""
        ctx = db.synthesize_context(
            query_of(body.task, body.vector), body.k, temperature=body.temperature,
            adapt=body.adapt, min_reward=body.min_reward, success_only=body.success_only,
            session_id=body.session_id, where=body.where)
        return json_response({"vector": np.asarray(ctx["vector"], np.float32).tolist(),
                      "weights": [{"id": i, "weight": w} for i, w in ctx["weights"]],
                      **hits_json(ctx["records"], "pattern")})

    @app.get("/patterns/stream", dependencies=auth, tags=["patterns"],
             responses={**error_responses(401, 422, 429),
                        200: {"description": "Server-Sent Events: one per change, a `: ping` "
                                             "comment every heartbeat",
                              "content": {"text/event-stream": {"itemSchema": SSE_ITEM}}}})
    async def patterns_stream(
        kinds: Annotated[str | None, Query(
            description="Comma-separated record kinds: pattern, episode, skill "
                        "(default: pattern).")] = None,
        last_event_id: Annotated[int | None, Query(
            alias="lastEventId", ge=0, le=MAX_EVENT_ID,
            description="The same as the Last-Event-ID header.")] = None,
        last_event_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Response:
        """The change feed (Server-Sent Events); resumes after ``Last-Event-ID``."""
        wanted = parse_kinds(kinds)
        last = last_event_id
        if last_event_header is not None and last_event_header.strip():
            text = last_event_header.strip()
            if not text.isdigit() or int(text) > MAX_EVENT_ID:
                raise InvalidArgumentError("header.Last-Event-ID: expected an integer in "
                                           f"0..{MAX_EVENT_ID}")
            last = int(text)
        if last is not None and last > hub.last_id:  # an id from an earlier server run
            sub = hub.subscribe(None, wanted)
            backlog = [Event(hub.last_id, "reset", {
                "reason": "unknown Last-Event-ID (the server restarted?); re-read the store",
                "oldest_buffered": hub.oldest_buffered})]
        else:
            sub = hub.subscribe(last, wanted)
            backlog = list(sub.backlog)

        wake = wakeups.register()
        stopping = Stopping(wake)

        def close() -> None:  # idempotent: the generator, or the response when it never ran
            wakeups.unregister(wake)
            sub.close()

        async def events() -> AsyncIterator[ServerSentEvent]:
            try:
                for ev in backlog:
                    yield sse_event(ev)
                while True:
                    wake.clear()
                    drained = False
                    while True:
                        ev = sub.get(0.0)
                        if ev is None:
                            break
                        drained = True
                        yield sse_event(ev)
                    if sub.closed or stopping.is_set():  # dropped as too slow, or shutdown
                        return
                    if not drained:
                        await wake.wait()
            finally:
                close()

        return FeedResponse(events(), on_close=close, ping=heartbeat_seconds,
                             ping_message_factory=lambda: ServerSentEvent(comment="ping"),
                             shutdown_event=stopping, shutdown_grace_period=2.0)

    @app.get("/patterns/{id}", dependencies=auth, tags=["patterns"],
             response_model=m.PatternOut, responses=error_responses(401, 404, 422, 429))
    async def patterns_get(id: RecordId, include_embedding: IncludeEmbedding = False) -> Response:
        """A pattern by id."""
        return json_response(record_json(db.get_pattern(id), include_embedding))

    @app.delete("/patterns/{id}", dependencies=auth, tags=["patterns"], status_code=204,
                responses=error_responses(401, 404, 422, 429))
    def patterns_delete(id: RecordId) -> Response:
        """Delete a pattern."""
        db.delete_pattern(id)
        return Response(status_code=204)

    @app.delete("/patterns", dependencies=auth, tags=["patterns"],
                response_model=m.PatternsDeleted, responses=error_responses(*AUTHED, 503))
    def patterns_delete_many(
        session_id: Annotated[str | None, Query(alias="sessionId", max_length=512,
                                                description="Only this session.")] = None,
        before: Annotated[float | None, Query(
            description="Only patterns stored before this time (epoch seconds).")] = None,
        where: Annotated[str | None, Query(max_length=16384, description=(
            'A metadata filter as JSON, e.g. {"lang": "py"} (the where language).'))] = None,
    ) -> Response:
        """Delete every pattern matching the filters (AND; at least one is required):
        ``{"deleted": n}``, one ``pattern:deleted`` event each."""
        flt = None
        if where is not None:
            try:
                flt = json.loads(where)
            except ValueError:
                raise InvalidArgumentError("query.where: not valid JSON") from None
            if not isinstance(flt, dict):
                raise InvalidArgumentError("query.where: must be a JSON object")
        return json_response({"deleted": db.delete_patterns(session_id=session_id, where=flt,
                                                            before=before)})

    return {
        "patterns_store": patterns_store,
        "patterns_search": patterns_search,
        "patterns_context": patterns_context,
        "patterns_stream": patterns_stream,
        "patterns_get": patterns_get,
        "patterns_delete": patterns_delete,
        "patterns_delete_many": patterns_delete_many,
    }
