"""Systems of record for agent memory (SQLite embedded; PostgreSQL later).

>>> from agentdb.store import SQLiteStore
>>> SQLiteStore(":memory:", dim=2).dim
2
"""

from __future__ import annotations

from .errors import StoreError, StoreLockedError
from .sqlite import COLLECTIONS, SQLiteStore

__all__ = ["COLLECTIONS", "SQLiteStore", "StoreError", "StoreLockedError"]
