"""Routes: health, readiness and stats (registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ...errors import InvalidArgumentError, NotFoundError
from .. import models as m
from ..wire import (
    AUTHED,
    body_doc,
    error_response,
    error_responses,
    json_response,
    log,
    parse_body,
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

    @app.post("/backup", tags=["service"], response_model=m.BackupResponse,
              responses=error_responses(400, 401, 404, 409, 422, 429),
              openapi_extra=body_doc(m.BackupRequest))
    async def backup(request: Request) -> Response:
        """A consistent copy of the store while it keeps serving (``db.backup``), written as
        ``name`` in the server's backup directory (``agentdb serve --backup-dir``; without
        one, ``404``). An existing name is ``409``; a PostgreSQL store is ``400`` (use
        pg_dump)."""
        await ctx.authorize(request)
        body = await parse_body(request, m.BackupRequest)
        if ctx.backup_dir is None:
            raise NotFoundError("backups are not enabled on this server "
                                "(start it with agentdb serve --backup-dir DIR)")
        if not hasattr(db, "backup"):
            raise InvalidArgumentError("this store cannot be backed up from the server")
        info = await run_in_threadpool(db.backup, os.path.join(ctx.backup_dir, body.name))
        log.info("backup %s at generation %s", body.name, info["generation"])
        return json_response({"name": body.name, "generation": info["generation"],
                              "records": info["records"],
                              "rebuiltOnOpen": info["rebuilt_on_open"]})

    @app.post("/forget", tags=["service"], response_model=m.ForgetResponse,
              responses=error_responses(400, *AUTHED), openapi_extra=body_doc(m.ForgetRequest))
    async def forget(request: Request) -> Response:
        """Remove expired records for good and, with criteria, the records meeting all of
        them (``db.forget``): ``{"removed": {kind: [ids]}}``, one ``<kind>:deleted`` event
        per record (``reason`` ``"expired"`` or ``"forgotten"``)."""
        await ctx.authorize(request)
        body = await parse_body(request, m.ForgetRequest)
        removed = await run_in_threadpool(
            db.forget, body.kinds, older_than=body.older_than, reward_below=body.reward_below,
            unused_for=body.unused_for, where=body.where)
        return json_response({"removed": removed})

    return {"health": health, "ready": ready, "stats": stats, "backup": backup,
            "forget": forget}
