"""Run a check on a PostgreSQL store in each of its search modes (pgvector, native)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import agentdb


def on_each_postgres_search(url: str, schema: str, dim: int,
                            check: Callable[[Any], None]) -> None:
    """``check(db)`` on a fresh store per search mode (tables prefixed ``pgv_`` / ``nat_``)."""
    for search in ("pgvector", "native"):
        db = agentdb.open(backend="postgres", url=url, schema=schema, dim=dim, search=search,
                          table_prefix=search[:3] + "_")
        try:
            check(db)
        finally:
            db.close()
