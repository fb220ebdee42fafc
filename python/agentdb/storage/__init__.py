"""Systems of record for agent memory: SQLite (embedded) and PostgreSQL + pgvector.

``PostgresStore`` is imported lazily (``from agentdb.storage import PostgresStore``), so
importing agentdb never needs psycopg; it needs the 'postgres' extra.

>>> from agentdb.storage import SQLiteStore
>>> SQLiteStore(":memory:", dim=2).dim
2
"""

from __future__ import annotations

from typing import Any

from ..errors import StoreError, StoreLockedError
from .sqlite import COLLECTIONS, SQLiteStore

__all__ = ["COLLECTIONS", "SQLiteStore", "StoreError", "StoreLockedError"]


def __getattr__(name: str) -> Any:
    """Import :class:`~agentdb.storage.postgres.PostgresStore` on first use."""
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
