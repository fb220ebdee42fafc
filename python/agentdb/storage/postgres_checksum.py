"""Checksums of a collection's rows that agree between the PostgreSQL and SQLite stores.

:func:`table_checksum` hashes each row's logical content in a canonical JSON form (so JSONB's
normalisation of numbers and key order does not matter) and sums the hashes, so the order of
the rows does not matter either; :meth:`PostgresStore.checksum
<agentdb.storage.postgres.PostgresStore.checksum>` and :func:`sqlite_checksum` use it to
verify a migration.

>>> from agentdb.storage import SQLiteStore
>>> sqlite_checksum(SQLiteStore(":memory:", dim=2), "skills")
'0:00000000000000000000000000000000'
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from .postgres_schema import COLTYPES, TABLES
from .sqlite import COLLECTIONS

if TYPE_CHECKING:  # pragma: no cover
    from .sqlite import SQLiteStore

__all__ = ["sqlite_checksum", "table_checksum"]


def _canon(value: Any) -> Any:
    """JSON-ready canonical form: floats with an integral value become ints (PostgreSQL's
    JSONB turns ``1e16`` into ``10000000000000000``), containers recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return int(f) if math.isfinite(f) and f.is_integer() else f
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return str(value)


def table_checksum(table: str, batches: Iterable[list[dict[str, Any]]]) -> str:
    """``"<rows>:<hex>"``: an order-independent checksum of the rows' logical content (ids,
    columns, metadata, timestamps, embedding bytes; not ``gen``), the same for the same rows
    read from either store.

    >>> table_checksum("patterns", [])
    '0:00000000000000000000000000000000'
    """
    total = 0
    n = 0
    cols = COLLECTIONS[table]
    for rows in batches:
        for r in rows:
            fields: list[Any] = [int(r["id"])]
            for c in cols:
                v = r.get(c)
                if c == "success" and v is not None:
                    v = bool(v)
                elif COLTYPES[c] == "float8" and v is not None:
                    v = float(v)
                elif isinstance(v, str) and COLTYPES[c] == "jsonb":
                    v = json.loads(v)
                fields.append(_canon(v) if COLTYPES[c] == "jsonb" else v)
            fields += [float(r["created_at"]), float(r["updated_at"])]
            h = hashlib.blake2b(digest_size=16)
            h.update(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())
            h.update(np.ascontiguousarray(r["embedding"], dtype="<f4").tobytes())
            total = (total + int.from_bytes(h.digest(), "big")) % (1 << 128)
            n += 1
    return f"{n}:{total:032x}"


def sqlite_checksum(store: SQLiteStore, table: str) -> str:
    """:meth:`PostgresStore.checksum` computed from a SQLiteStore (to verify a migration)."""
    if table not in TABLES:
        raise InvalidArgumentError(
            f"unknown table {table!r} (use 'patterns', 'episodes' or 'skills')")
    return table_checksum(table, store.iter_rows(table, batch=5000))
