"""Routes: Reflexion episodes: store, search, get, delete
(registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ...errors import (
    InvalidArgumentError,
)
from .. import models as m
from ..wire import (
    AUTHED,
    IncludeEmbedding,
    RecordId,
    body_doc,
    error_responses,
    hits_json,
    json_response,
    parse_body,
    record_json,
)
from .context import RouteContext, diverse_options

__all__ = ["register"]


def register(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """Add the episodes routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    authorize = ctx.authorize
    db = ctx.db
    query_of = ctx.query_of
    vector = ctx.vector

    # ---- episodes -----------------------------------------------------------------------
    @app.post("/episodes/store", dependencies=auth, tags=["episodes"], status_code=201,
              response_model=m.EpisodeStored, responses=error_responses(*AUTHED))
    def episodes_store(body: m.EpisodeStoreRequest) -> Response:
        """Store a Reflexion episode; the named skills' statistics are updated with it."""
        try:
            eid = db.store_episode(
                body.task, embedding=vector(body.embedding, "body.embedding"),
                reward=body.reward, success=body.success, session_id=body.session_id,
                input=body.input, output=body.output, critique=body.critique,
                latency_ms=body.latency_ms, tokens=body.tokens, skills=body.skills,
                metadata=body.metadata, ttl=body.ttl, expires_at=body.expires_at)
        except KeyError as exc:  # a named skill does not exist: a problem of the body
            raise InvalidArgumentError(f"body.skills: {exc}") from None
        return json_response({"success": True, "id": eid,
                              "episode": record_json(db.get_episode(eid))}, 201)

    @app.post("/episodes/search", tags=["episodes"], response_model=m.EpisodeSearchResponse,
              responses=error_responses(*AUTHED), openapi_extra=body_doc(m.EpisodeSearchRequest))
    async def episodes_search(request: Request) -> Response:
        """The ``k`` most similar episodes; ``success`` false keeps only failures."""
        await authorize(request)
        body = await parse_body(request, m.EpisodeSearchRequest)
        hits = db.search_episodes(
            query_of(body.task, body.vector), body.k, min_reward=body.min_reward,
            success=body.success, session_id=body.session_id, where=body.where,
            threshold=body.threshold, ef=body.ef,
            **diverse_options(body))
        return json_response(hits_json(hits, "episode"))

    @app.get("/episodes/{id}", dependencies=auth, tags=["episodes"],
             response_model=m.EpisodeOut, responses=error_responses(401, 404, 422, 429))
    async def episodes_get(id: RecordId, include_embedding: IncludeEmbedding = False) -> Response:
        """An episode by id."""
        return json_response(record_json(db.get_episode(id), include_embedding))

    @app.delete("/episodes/{id}", dependencies=auth, tags=["episodes"], status_code=204,
                responses=error_responses(401, 404, 422, 429))
    def episodes_delete(id: RecordId) -> Response:
        """Delete an episode."""
        db.delete_episode(id)
        return Response(status_code=204)

    return {
        "episodes_store": episodes_store,
        "episodes_search": episodes_search,
        "episodes_get": episodes_get,
        "episodes_delete": episodes_delete,
    }
