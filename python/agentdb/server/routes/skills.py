"""Routes: skills: store, search, get, delete
(registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ...errors import (
    ConflictError,
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
    """Add the skills routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    authorize = ctx.authorize
    db = ctx.db
    query_of = ctx.query_of
    vector = ctx.vector

    # ---- skills -------------------------------------------------------------------------
    @app.post("/skills/store", dependencies=auth, tags=["skills"], status_code=201,
              response_model=m.SkillStored, responses=error_responses(*AUTHED, 409))
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
                             embedding=vector(body.embedding, "body.embedding"),
                             ttl=body.ttl, expires_at=body.expires_at)
        return json_response({"success": True, "id": sid,
                              "skill": record_json(db.get_skill(sid))}, 201)

    @app.post("/skills/search", tags=["skills"], response_model=m.SkillSearchResponse,
              responses=error_responses(*AUTHED), openapi_extra=body_doc(m.SkillSearchRequest))
    async def skills_search(request: Request) -> Response:
        """The ``k`` skills most similar to a text or a vector."""
        await authorize(request)
        body = await parse_body(request, m.SkillSearchRequest)
        hits = db.search_skills(
            query_of(body.query, body.vector), body.k,
            min_success_rate=body.min_success_rate, where=body.where,
            threshold=body.threshold, ef=body.ef,
            **diverse_options(body))
        return json_response(hits_json(hits, "skill"))

    @app.get("/skills/{id}", dependencies=auth, tags=["skills"],
             response_model=m.SkillOut, responses=error_responses(401, 404, 422, 429))
    async def skills_get(id: RecordId, include_embedding: IncludeEmbedding = False) -> Response:
        """A skill by id."""
        return json_response(record_json(db.get_skill(id), include_embedding))

    @app.delete("/skills/{id}", dependencies=auth, tags=["skills"], status_code=204,
                responses=error_responses(401, 404, 422, 429))
    def skills_delete(id: RecordId) -> Response:
        """Delete a skill."""
        db.delete_skill(id)
        return Response(status_code=204)

    return {
        "skills_store": skills_store,
        "skills_search": skills_search,
        "skills_get": skills_get,
        "skills_delete": skills_delete,
    }
