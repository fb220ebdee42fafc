"""Routes: raw vectors: search, upsert, delete
(registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ...errors import (
    InvalidArgumentError,
)
from ...storage.records import check_metadata
from .. import models as m
from ..wire import (
    AUTHED,
    RecordId,
    body_doc,
    error_responses,
    exists,
    hits_response,
    json_response,
    parse_body,
)
from .context import RouteContext

__all__ = ["register"]


def register(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """Add the vectors routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    authorize = ctx.authorize
    db = ctx.db
    search_pool = ctx.search_pool
    batcher = ctx.batcher
    search_vectors = ctx.search_vectors
    vector = ctx.vector
    write_lock = ctx.write_lock

    # ---- vectors ------------------------------------------------------------------------
    @app.post("/vectors/search", tags=["vectors"], response_model=m.VectorSearchResponse,
              responses=error_responses(*AUTHED), openapi_extra=body_doc(m.VectorSearchRequest))
    async def vectors_search(request: Request) -> Response:
        """Nearest stored vectors (the patterns collection) with their metadata."""
        await authorize(request)
        body = await parse_body(request, m.VectorSearchRequest)
        q = vector(body.vector, "body.vector")
        if search_pool is None:
            return hits_response({"results": search_vectors(q, body)})
        if batcher is not None and body.diversity is None and body.min_reward is None \
                and not body.success_only and body.session_id is None and body.where is None:
            # a plain search: with others that arrive meanwhile, one batch search on a
            # search thread (agentdb.server.batching)
            results = await batcher.search(q, body.k, body.ef, body.threshold)
            return hits_response({"results": results})
        # The HNSW walk releases the GIL: run it on a worker thread so the event loop parses
        # the next requests meanwhile (two cores instead of one).
        results = await asyncio.get_running_loop().run_in_executor(search_pool, search_vectors,
                                                                   q, body)
        return hits_response({"results": results})

    @app.post("/vectors", dependencies=auth, tags=["vectors"],
              response_model=m.UpsertResponse, responses=error_responses(*AUTHED, 409))
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
            existing = {it.id for it in items if it.id is not None and exists(db, it.id)}
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
        return json_response({"ids": ids})

    @app.delete("/vectors/{id}", dependencies=auth, tags=["vectors"], status_code=204,
                responses=error_responses(401, 404, 422, 429))
    def vectors_delete(id: RecordId) -> Response:
        """Delete a stored vector (its pattern)."""
        db.delete_pattern(id)
        return Response(status_code=204)

    return {
        "vectors_search": vectors_search,
        "vectors_upsert": vectors_upsert,
        "vectors_delete": vectors_delete,
    }
