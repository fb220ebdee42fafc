"""Routes: the causal graph: Cypher (registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from .. import models as m
from ..wire import (
    AUTHED,
    error_responses,
    finite,
    json_response,
)
from .context import RouteContext

__all__ = ["register"]


def register(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """Add the graph routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    db = ctx.db

    # ---- graph --------------------------------------------------------------------------
    @app.post("/graph/cypher", dependencies=auth, tags=["graph"],
              response_model=m.CypherResponse, responses=error_responses(*AUTHED, 400))
    def graph_cypher(body: m.CypherRequest) -> Response:
        """Run a Cypher query on the causal memory graph (writes run in one transaction)."""
        result = db.graph.query_stats(body.query, body.params or {})
        return json_response({"columns": list(result.columns),
                      "rows": [{str(k): finite(v) for k, v in row.items()}
                               for row in result.rows]})
    return {"graph_cypher": graph_cypher}
