"""Routes: the causal graph: Cypher (registered by :func:`agentdb.server.app.create_app`).

A query runs in a worker thread under a :class:`~agentdb.graph.cypher.budget.QueryBudget`
(the request's ``timeout`` / ``maxRows``, capped by the server's ``--cypher-timeout`` /
``--cypher-max-rows``), while the event loop watches the connection: a client that goes away
cancels its query, which stops within moments (a write query keeps nothing).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import models as m
from ..wire import (
    AUTHED,
    error_responses,
    finite,
    json_response,
)
from .context import RouteContext

__all__ = ["register"]

#: How often a running query's connection is checked for a client that went away.
DISCONNECT_POLL_SECONDS = 0.1


async def _cancel_when_gone(request: Request, cancel: Any) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
    cancel()


def register(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """Add the graph routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    db = ctx.db
    queries = ctx.queries

    # ---- graph --------------------------------------------------------------------------
    @app.post("/graph/cypher", dependencies=auth, tags=["graph"],
              response_model=m.CypherResponse,
              responses=error_responses(*AUTHED, 400, 408, 499))
    async def graph_cypher(body: m.CypherRequest, request: Request) -> Response:
        """Run a Cypher query on the causal memory graph (writes run in one transaction).

        Bounded by ``timeout`` (408 ``query_timeout``) and ``maxRows`` (400 ``query_limit``),
        each at most the server's own limit; a client that disconnects cancels its query."""
        budget = queries.budget(body.timeout, body.max_rows)
        with queries.running(budget):
            watcher = asyncio.create_task(_cancel_when_gone(request, budget.cancel))
            try:
                result = await run_in_threadpool(db.graph.query_stats, body.query,
                                                 body.params or {}, budget=budget)
            except asyncio.CancelledError:  # the server is stopping: stop the thread too
                budget.cancel()
                raise
            finally:
                watcher.cancel()
        return json_response({"columns": list(result.columns),
                              "rows": [{str(k): finite(v) for k, v in row.items()}
                                       for row in result.rows]})
    return {"graph_cypher": graph_cypher}
