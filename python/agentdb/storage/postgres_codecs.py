"""Conversion between Python values and PostgreSQL parameters and rows of the store.

Column values are checked and converted for their PostgreSQL type (:func:`convert_value`,
:func:`row_values`; JSON text for ``jsonb`` is validated, NUL characters and NaN refused),
whole rows of the bulk paths too (:func:`bulk_rows`, :func:`upsert_batch`), embeddings are
sent and read as float32 numpy arrays (:func:`register_vector_numpy`; binary ``COPY``
output is parsed by :func:`parse_copy_vectors`), fetched rows become dicts
(:func:`row_dict`) and PostgreSQL's constraint violations become SQLite-worded
IntegrityError (:func:`integrity_errors`).

>>> json_text({"a": 1}, "metadata")
'{"a": 1}'
>>> convert_value("episodes", "tokens", 3.0)
3
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import IntegrityError, InvalidArgumentError, InvalidTypeError, StoreError
from .postgres_schema import COLTYPES, EXTRA_MSG, NOT_NULL
from .records import check_vector
from .sqlite import COLLECTIONS, column_value

try:
    import psycopg
    from pgvector.psycopg import register_vector
    from pgvector.psycopg.vector import VectorBinaryDumper, VectorDumper
    from psycopg.adapt import Loader
    from psycopg.pq import Format
    from psycopg.types.json import Jsonb
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(EXTRA_MSG) from _exc

__all__ = [
    "all_columns",
    "bulk_rows",
    "check_matrix",
    "convert_value",
    "integrity_errors",
    "json_text",
    "parse_columns",
    "parse_copy_vectors",
    "raw_json",
    "register_vector_numpy",
    "row_dict",
    "row_values",
    "upsert_batch",
]


# ---------------------------------------------------------------------------- vectors
def _vector_adapters(oid: int) -> tuple[type, type, type, type]:
    """Faster numpy-native dumpers/loaders for ``vector`` (same wire format as pgvector's)."""

    class _Dump(VectorDumper):  # type: ignore[misc]
        def dump(self, obj: Any) -> bytes:
            a = np.asarray(obj, dtype=np.float32).ravel()
            return ("[" + ",".join(repr(float(x)) for x in a) + "]").encode()

    class _BinDump(VectorBinaryDumper):  # type: ignore[misc]
        def dump(self, obj: Any) -> bytes:
            a = np.ascontiguousarray(obj, dtype=">f4").ravel()
            return struct.pack(">HH", a.shape[0], 0) + a.tobytes()

    class _Load(Loader):
        format = Format.TEXT

        def load(self, data: Any) -> np.ndarray:
            text = bytes(data).decode()
            return np.array([float(x) for x in text[1:-1].split(",") if x], dtype=np.float32)

    class _BinLoad(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> np.ndarray:
            return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)

    _Dump.oid = oid
    _BinDump.oid = oid
    return _Dump, _BinDump, _Load, _BinLoad


def register_vector_numpy(conn: psycopg.Connection) -> None:
    """Register pgvector's types on ``conn``, with numpy-native dumpers and loaders for
    ``vector`` (float32 arrays in and out, text and binary)."""
    register_vector(conn)  # pgvector's adapters (Vector objects, ndarray dumpers, types)
    info = conn.adapters.types.get("vector")
    if info is None:  # pragma: no cover - register_vector raised already
        raise StoreError("the vector type is not registered")
    dump, bdump, load, bload = _vector_adapters(info.oid)
    conn.adapters.register_dumper(np.ndarray, dump)
    conn.adapters.register_dumper(np.ndarray, bdump)
    conn.adapters.register_loader(info.oid, load)
    conn.adapters.register_loader(info.oid, bload)


def raw_json(text: str) -> Jsonb:
    """A Jsonb parameter whose (already validated) JSON text is sent as is."""
    return Jsonb(text, dumps=str)


# ---------------------------------------------------------------------------- values
def _reject_constant(name: str) -> Any:
    raise InvalidArgumentError(f"{name} is not valid JSON for PostgreSQL")


def json_text(value: Any, label: str) -> str:
    """Validated JSON text for a jsonb column: JSON text as given, or an object serialised."""
    if isinstance(value, str):
        try:
            json.loads(value, parse_constant=_reject_constant)
        except ValueError as exc:
            raise InvalidArgumentError(f"{label}: invalid JSON: {exc}") from None
        text = value
    else:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"{label}: not JSON-serialisable: {exc}") from None
    if "\\u0000" in text:
        raise InvalidArgumentError(f"{label}: JSON contains \\u0000, which PostgreSQL cannot store")
    return text


def convert_value(table: str, col: str, value: Any, where: str = "") -> Any:
    """One column value as the Python object bound for its PostgreSQL type."""
    if value is None:
        return None
    kind = COLTYPES[col]
    label = f"{where}{table}.{col}"
    if kind == "text":
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{label} must be a string, got {type(value).__name__}")
        if "\x00" in value:
            raise InvalidArgumentError(
                f"{label} contains a NUL character (PostgreSQL text cannot)")
        return value
    if kind == "float8":
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)):
            raise InvalidArgumentError(f"{label} must be a number, got {type(value).__name__}")
        f = float(value)
        if math.isnan(f):
            raise InvalidArgumentError(f"{label} is NaN")
        return f
    if kind == "int8":
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InvalidArgumentError(
                f"{label} must be an integer, got {type(value).__name__}")
        return int(value)
    if kind == "bool":
        if not isinstance(value, (bool, int, np.bool_, np.integer)):
            raise InvalidArgumentError(f"{label} must be a bool, got {type(value).__name__}")
        return bool(value)
    return raw_json(json_text(value, label))  # jsonb


def row_values(table: str, values: dict[str, Any], where: str = "",
               required: bool = True) -> list[Any]:
    """The collection columns of ``values`` converted (:func:`convert_value`), in table
    order; with ``required``, IntegrityError for a missing NOT NULL column."""
    out = [convert_value(table, c, column_value(table, c, values), where)
           for c in COLLECTIONS[table]]
    if required:
        for c, v in zip(COLLECTIONS[table], out):
            if v is None and c in NOT_NULL[table]:
                at = f" ({where.rstrip(': ')})" if where else ""
                raise IntegrityError(f"NOT NULL constraint failed: {table}.{c}{at}")
    return out


@contextmanager
def integrity_errors(table: str) -> Iterator[None]:
    """Raise PostgreSQL's unique and not-null violations as SQLite-worded IntegrityError."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        detail = exc.diag.message_detail or ""
        m = re.match(r"Key \(([^)]*)\)", detail)
        col = m.group(1) if m else (exc.diag.constraint_name or "?")
        raise IntegrityError(f"UNIQUE constraint failed: {table}.{col}: {detail}"
                             ) from None
    except psycopg.errors.NotNullViolation as exc:
        raise IntegrityError(f"NOT NULL constraint failed: {table}."
                             f"{exc.diag.column_name}") from None


def check_matrix(embeddings: Any, n: int, dim: int) -> np.ndarray:
    """``embeddings`` as a float32 ``(n, dim)`` array of finite, non-zero rows."""
    arr = np.asarray(embeddings)
    if arr.dtype.kind not in "fiu":
        raise InvalidTypeError(
            f"embeddings must be a real numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape != (n, dim):
        raise InvalidArgumentError(f"dimension mismatch: embeddings must have shape ({n}, "
                                   f"{dim}), got {arr.shape}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise InvalidArgumentError(f"row {int(np.argmin(finite))}: embedding contains NaN or "
                                   "infinity")
    nonzero = arr.any(axis=1)
    if not nonzero.all():
        raise InvalidArgumentError(
            f"row {int(np.argmin(nonzero))}: embedding is an all-zero vector "
            "(cosine similarity is undefined)")
    return arr


# ---------------------------------------------------------------------------- rows
def bulk_rows(table: str, rows: list[dict[str, Any]], now: float
              ) -> list[tuple[list[Any], float]]:
    """Every row of a bulk insert checked and converted: ``(column values, created_at)``
    (``now`` when a row has none); a row may carry only collection columns and
    ``created_at``."""
    allowed = {*COLLECTIONS[table], "created_at"}
    prepared: list[tuple[list[Any], float]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidArgumentError(f"row {i}: expected a dict, got {type(row).__name__}")
        unknown = set(row) - allowed
        if unknown:
            raise InvalidArgumentError(f"row {i}: unknown {table} field(s): "
                                       f"{', '.join(sorted(unknown))}")
        created = row.get("created_at")
        if created is not None and (isinstance(created, bool) or not isinstance(
                created, (int, float, np.integer, np.floating))):
            raise InvalidArgumentError(f"row {i}: created_at must be a number")
        prepared.append((row_values(table, row, where=f"row {i}: "),
                         now if created is None else float(created)))
    return prepared


def upsert_batch(table: str, rows: list[dict[str, Any]], dim: int, gen: int) -> list[list[Any]]:
    """Every whole row of an upsert checked and converted, as the parameters of the columns
    ``id``, the collection's, ``embedding``, ``created_at``, ``updated_at`` and ``gen``
    (written as ``gen``; a row's own ``gen`` key is ignored)."""
    allowed = {"id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"}
    batch: list[list[Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidArgumentError(f"row {i}: expected a dict, got {type(row).__name__}")
        unknown = set(row) - allowed
        if unknown:
            raise InvalidArgumentError(f"row {i}: unknown {table} field(s): "
                                       f"{', '.join(sorted(unknown))}")
        for key in ("id", "embedding", "created_at", "updated_at"):
            if row.get(key) is None:
                raise InvalidArgumentError(f"row {i}: {key} is required")
        rid = row["id"]
        if isinstance(rid, bool) or not isinstance(rid, (int, np.integer)):
            raise InvalidArgumentError(f"row {i}: id must be an integer, got {rid!r}")
        stamps = []
        for key in ("created_at", "updated_at"):
            v = row[key]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer,
                                                         np.floating)):
                raise InvalidArgumentError(f"row {i}: {key} must be a number")
            stamps.append(float(v))
        vals = row_values(table, row, where=f"row {i}: ")
        vec = check_vector(row["embedding"], dim, f"row {i}: embedding")
        batch.append([int(rid), *vals, vec, *stamps, gen])
    return batch


def all_columns(table: str) -> list[str]:
    """Every column of a collection table, in table order (``id`` first).

    >>> all_columns("skills")[:3]
    ['id', 'name', 'description']
    """
    return ["id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"]


def parse_columns(table: str, columns: str) -> list[str]:
    """``"*"`` or a comma-separated list of column names -> the names (checked)."""
    if columns.strip() == "*":
        return all_columns(table)
    allowed = set(all_columns(table))
    names = [c.strip() for c in columns.split(",")]
    for c in names:
        if c not in allowed:
            raise InvalidArgumentError(f"unknown column {c!r} in {table}")
    return names


def row_dict(names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """One fetched row as a dict of ``names`` (with ``id`` as an int)."""
    d = dict(zip(names, row))
    if d.get("id") is not None:
        d["id"] = int(d["id"])
    return d


def parse_copy_vectors(buf: bytes | bytearray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``COPY (SELECT id, embedding ...) TO STDOUT (FORMAT BINARY)`` output."""
    sig = b"PGCOPY\n\xff\r\n\x00"
    if len(buf) < 21 or bytes(buf[:11]) != sig:
        raise StoreError("unexpected COPY BINARY output (bad signature)")
    ext = struct.unpack_from(">I", buf, 15)[0]
    start = 19 + ext
    rowsize = 2 + 4 + 8 + 4 + 4 + 4 * dim
    body = len(buf) - start - 2
    if body < 0 or body % rowsize or struct.unpack_from(">h", buf, len(buf) - 2)[0] != -1:
        raise StoreError("unexpected COPY BINARY output (size or trailer)")
    n = body // rowsize
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                   ("vd", ">u2"), ("vu", ">u2"), ("v", ">f4", (dim,))])
    rec = np.frombuffer(buf, dtype=dt, count=n, offset=start)
    if n and not ((rec["nf"] == 2).all() and (rec["l1"] == 8).all()
                  and (rec["l2"] == 4 + 4 * dim).all() and (rec["vd"] == dim).all()):
        raise StoreError("unexpected COPY BINARY output (row layout)")
    ids = rec["id"].astype(np.int64)
    vecs = rec["v"].astype(np.float32) if n else np.empty((0, dim), np.float32)
    return ids, vecs
