"""The state :func:`agentdb.server.app.create_app` hands to each route module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RouteContext:
    """The store, the auth dependency, the change-feed hub and the helpers over the store
    that the route modules share (built once per app)."""

    auth: Any
    authorize: Any
    check_open: Any
    db: Any
    heartbeat_seconds: Any
    hub: Any
    query_of: Any
    rerank_options: Any
    search_pool: Any
    search_vectors: Any
    vector: Any
    wakeups: Any
    write_lock: Any
    queries: Any = None  # agentdb.server.queries.RunningQueries: Cypher limits and cancelling
    backup_dir: str | None = None  # where POST /backup writes (None: backups off)
    batcher: Any = None  # agentdb.server.batching.SearchBatcher, or None (no search threads)


def diverse_options(body: Any) -> dict[str, Any]:
    """The ``diversity`` / ``candidates`` / ``mode`` / ``text_weight`` keywords of a search
    request (none when it asks for a plain vector search, so the search is called exactly as
    before)."""
    out: dict[str, Any] = {}
    if getattr(body, "diversity", None) is not None:
        out.update(diversity=body.diversity, candidates=body.candidates)
    if getattr(body, "mode", "vector") != "vector":
        out.update(mode=body.mode, text_weight=body.text_weight, candidates=body.candidates)
    return out
