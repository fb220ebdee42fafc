"""Where a store lives, read before it is opened: the dimension and meta values a SQLite file
or a PostgreSQL schema records, and the tables that stand for a file path when
``AGENTDB_BACKEND=postgres`` runs code written for files.

>>> existing_sqlite_dim(":memory:") is None
True
"""

from __future__ import annotations

import os
from pathlib import Path

from ..storage import StoreError

__all__ = ["existing_pg_meta", "existing_sqlite_dim", "existing_sqlite_meta",
           "path_table_prefix"]


def path_table_prefix(path: str | os.PathLike[str]) -> str:
    """The PostgreSQL table prefix that stands for a store file when ``AGENTDB_BACKEND=postgres``
    runs code written for files: ``s`` + 10 hex digits of the absolute path's SHA-256 + ``_``
    (``:memory:`` gets a new prefix each time: a fresh, private store).

    >>> path_table_prefix("/tmp/a.db") == path_table_prefix("/tmp/./a.db")
    True
    >>> path_table_prefix(":memory:") != path_table_prefix(":memory:")
    True
    """
    import hashlib
    import uuid

    key = uuid.uuid4().hex if str(path) == ":memory:" else str(Path(path).resolve())
    return "s" + hashlib.sha256(key.encode()).hexdigest()[:10] + "_"


def existing_sqlite_dim(path: str) -> int | None:
    """The dim a SQLite store at ``path`` records, or None (no store there yet); a file
    that is not an AgentDB store raises ``StoreError``.

    >>> existing_sqlite_dim(":memory:") is None
    True
    """
    value = existing_sqlite_meta(path, "dim")
    return None if value is None else int(value)


def existing_sqlite_meta(path: str, key: str) -> str | None:
    """One meta value of the SQLite store at ``path``, or None (no store, or no such key),
    read without opening the store for writing.

    >>> existing_sqlite_meta(":memory:", "embedder") is None
    True
    """
    if path == ":memory:" or not Path(path).exists() or Path(path).stat().st_size == 0:
        return None  # SQLite treats an empty file as an empty database
    import sqlite3

    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"'{path}' is not a readable AgentDB store: {exc}") from None
    return None if row is None else str(row[0])


def existing_pg_meta(url: str | None, schema: str, prefix: str, key: str) -> str | None:
    """One meta value of a PostgreSQL store, or None (no store yet)."""
    if not url:
        return None
    from ..storage.pg_backend import existing_meta

    return existing_meta(url, key, schema, prefix)
