"""Routes: learning from feedback: feedback, trajectories, the adapter's state
(registered by :func:`agentdb.server.app.create_app`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from .. import models as m
from ..wire import (
    LEARNING,
    error_responses,
    event_json,
    json_response,
)
from .context import RouteContext

__all__ = ["register"]


def register(app: FastAPI, ctx: RouteContext) -> dict[str, Any]:
    """Add the learning routes to ``app``; returns their handlers by name."""
    auth = ctx.auth
    check_open = ctx.check_open
    db = ctx.db
    query_of = ctx.query_of
    write_lock = ctx.write_lock

    # ---- learning -----------------------------------------------------------------------
    # Writes (the adapter's step, its state in the store's meta table): plain functions on
    # the thread pool, under the store's write lock like the other writes.
    @app.post("/feedback", dependencies=auth, tags=["learning"],
              response_model=m.FeedbackResponse, responses=error_responses(*LEARNING))
    def feedback(body: m.FeedbackRequest) -> Response:
        """``patternId`` was the right memory for the query (reward > 0) or a wrong one
        (reward < 0): one online step of the learned query adapter."""
        q = query_of(body.task, body.vector)
        with write_lock:
            out = db.feedback(q, body.pattern_id, reward=body.reward)
        return json_response(event_json(out))

    @app.post("/feedback/trajectory", dependencies=auth, tags=["learning"],
              response_model=m.FeedbackResponse, responses=error_responses(*LEARNING))
    def feedback_trajectory(body: m.TrajectoryFeedbackRequest) -> Response:
        """The outcome of one retrieval step: the query, the ids it retrieved, the one acted
        on (``used``, default the first) and the outcome reward."""
        q = query_of(body.task, body.vector)
        with write_lock:
            out = db.feedback_trajectory(q, body.retrieved_ids, body.outcome_reward,
                                         used=body.used)
        return json_response(event_json(out))

    @app.get("/learning", dependencies=auth, tags=["learning"],
             responses=error_responses(401, 429, 503),
             response_model=dict[str, Any])
    def learning_stats() -> Response:
        """``db.learning.stats()``: the switch, counters, loss, adapter norm, EWC, config."""
        check_open()
        return json_response(db.learning.stats())

    def learning_action(name: str, doc: str) -> None:
        def action() -> Response:
            check_open()
            with write_lock:
                getattr(db.learning, name)()
            return json_response(db.learning.stats())

        action.__name__ = action.__qualname__ = f"learning_{name}"
        action.__doc__ = doc
        app.post(f"/learning/{name}", dependencies=auth, tags=["learning"],
                 response_model=dict[str, Any],
                 responses=error_responses(401, 409, 429, 503))(action)

    for _name, _doc in (
            ("enable", "Adapt searches and learn from feedback (persisted); answers the stats."),
            ("disable", "Search with raw queries and ignore feedback; the adapter is kept "
                        "(persisted); answers the stats."),
            ("reset", "Back to the identity adapter (also discards an unreadable stored "
                      "state); answers the stats."),
            ("consolidate", "Mark a task boundary for EWC++ (later learning is pulled "
                            "towards the current adapter); answers the stats.")):
        learning_action(_name, _doc)

    return {
        "feedback": feedback,
        "feedback_trajectory": feedback_trajectory,
        "learning_stats": learning_stats,
        "learning_action": learning_action,
    }
