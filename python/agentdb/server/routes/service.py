"""Routes: health, readiness and stats (registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from .. import models as m
from ..wire import (
    error_response,
    error_responses,
    json_response,
    log,
)
from .context import RouteContext

__all__ = ["register"]


def register(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """Add the service routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    db = ctx.db

    # ---- service ------------------------------------------------------------------------
    @app.get("/health", response_model=m.HealthResponse, tags=["service"])
    async def health() -> Response:
        """Liveness (no key needed)."""
        return json_response({"status": "ok"})

    @app.get("/ready", response_model=m.ReadyResponse, tags=["service"],
             responses=error_responses(503))
    def ready() -> Response:
        """Readiness: the pattern count, or ``503`` once the store is closed (no key)."""
        if getattr(db, "closed", False):
            return error_response(503, "unavailable", "the store is closed")
        try:
            n = db.count("patterns")
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return error_response(503, "unavailable", "the store is not available")
        return json_response({"status": "ready", "patterns": n})

    @app.get("/stats", dependencies=auth, tags=["service"], responses=error_responses(401, 429),
             response_model=dict[str, Any])
    def stats() -> Response:
        """``db.stats()``: counts, dimension, sizes, index status (not the store's file path:
        that is the server's business, not every key holder's)."""
        out = dict(db.stats())
        out.pop("path", None)
        return json_response(out)
    return {"health": health, "ready": ready, "stats": stats}
