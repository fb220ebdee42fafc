"""PostgreSQL + pgvector system of record, with the same interface as :class:`SQLiteStore`.

:class:`PostgresStore` keeps patterns, episodes and skills in PostgreSQL 16 tables with a
pgvector ``vector(dim)`` column and an HNSW index (``vector_cosine_ops``) per collection, so
any number of processes can read and write one memory. The public collection names stay
``"patterns"``, ``"episodes"`` and ``"skills"`` (tables ``reasoning_patterns``, ``episodes``,
``skills`` in the chosen schema, each name prefixed by ``table_prefix``).

Semantics follow :class:`~agentdb.storage.sqlite.SQLiteStore`: rows carry the write generation
that last touched them, deletions are logged, ``write()`` is one transaction that advances
the generation once (the generation row is locked ``FOR UPDATE``, so writers in different
processes serialise and generations stay monotonic), and rows come back as dicts with
``metadata``/``skills`` parsed, ``success`` as bool, embeddings as float32 arrays and
timestamps as float epoch seconds.

Beyond the SQLite interface: :meth:`PostgresStore.search` (filtered k-NN in SQL),
:meth:`~PostgresStore.filter_ids` (what ``select_ids`` does with SQLite-dialect SQL),
:meth:`~PostgresStore.bulk_insert` (binary COPY), :meth:`~PostgresStore.upsert_rows`,
:meth:`~PostgresStore.export_vectors` (binary COPY out, to rebuild a native index quickly) and
:meth:`~PostgresStore.checksum` / :func:`sqlite_checksum` (the same value for the same rows in
both stores, to verify a migration). :func:`pg_where_sql` translates the metadata filters of
:mod:`agentdb.storage.filters` to JSONB SQL with the same results as the SQLite translation.

Known differences from SQLite: JSONB does not keep the key order (or duplicate keys) of
metadata objects, and a number such as ``1e16`` written as a float comes back as an int; a
comparison in ``where`` between a *string* and an *array or object* value compares against
PostgreSQL's rendering of it (``[1, 2]``), where SQLite uses the minified text (``[1,2]``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from ..errors import (
    IntegrityError,
    InvalidArgumentError,
    InvalidTypeError,
    NotFoundError,
    StoreClosedError,
    StoreError,
)
from .filters import conditions
from .records import check_vector
from .sqlite import COLLECTIONS

_EXTRA_MSG = "PostgreSQL support needs the 'postgres' extra: pip install 'agentdb[postgres]'"

try:
    import psycopg
    import psycopg_pool
    from pgvector.psycopg import register_vector
    from pgvector.psycopg.vector import VectorBinaryDumper, VectorDumper
    from psycopg import sql
    from psycopg.adapt import Loader
    from psycopg.pq import Format
    from psycopg.types.json import Jsonb
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(_EXTRA_MSG) from _exc

if TYPE_CHECKING:  # pragma: no cover
    from .sqlite import SQLiteStore

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "IntegrityError", "PostgresStore",
           "pg_where_sql", "sqlite_checksum"]

#: Public collection name -> table name (before the prefix).
TABLES: dict[str, str] = {"patterns": "reasoning_patterns", "episodes": "episodes",
                          "skills": "skills"}
_OTHER_TABLES = ("graph_nodes", "graph_edges", "graph_indexes", "deletions", "meta",
                 "schema_migrations")

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_PREFIX_RE = re.compile(r"^[a-z0-9_]{0,20}$")
_LOCK_CLASS = 0x41474442  # "AGDB": first key of the advisory locks taken by AgentDB
_HNSW_MAX_DIM = 2000  # pgvector's limit for an HNSW index on vector(dim)
_MAX_EF = 1000
_EXT_SCHEMA_SQL = ("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                   "ON n.oid = e.extnamespace WHERE e.extname = 'vector'")

# PostgreSQL type of every collection column (for conversion and binary COPY).
_COLTYPES: dict[str, str] = {
    "session_id": "text", "task": "text", "reward": "float8", "success": "bool",
    "input": "text", "output": "text", "critique": "text", "metadata": "jsonb",
    "latency_ms": "float8", "tokens": "int8", "skills": "jsonb", "name": "text",
    "description": "text", "signature": "text", "code": "text", "success_rate": "float8",
    "uses": "int8",
}
_NOT_NULL: dict[str, tuple[str, ...]] = {
    "patterns": ("task", "reward", "success", "metadata"),
    "episodes": ("task", "reward", "success", "skills", "metadata"),
    "skills": ("name", "description", "success_rate", "uses", "metadata"),
}

# Migration 1; placeholders are identifiers (schema-qualified tables, bare index names) and
# {dim}. Statements marked "USING hnsw" are skipped when dim exceeds pgvector's HNSW limit.
_V1 = """
CREATE TABLE IF NOT EXISTS {meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {patterns} (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  session_id TEXT, task TEXT NOT NULL, reward DOUBLE PRECISION NOT NULL,
  success BOOLEAN NOT NULL, input TEXT, output TEXT, critique TEXT,
  metadata JSONB NOT NULL DEFAULT '{{}}'::jsonb, embedding vector({dim}) NOT NULL,
  created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
  gen BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS {patterns_session} ON {patterns} (session_id);
CREATE INDEX IF NOT EXISTS {patterns_task} ON {patterns} (task);
CREATE INDEX IF NOT EXISTS {patterns_created} ON {patterns} (created_at);
CREATE INDEX IF NOT EXISTS {patterns_gen} ON {patterns} (gen);
CREATE INDEX IF NOT EXISTS {patterns_hnsw} ON {patterns}
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 200);
CREATE TABLE IF NOT EXISTS {episodes} (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  session_id TEXT, task TEXT NOT NULL, reward DOUBLE PRECISION NOT NULL,
  success BOOLEAN NOT NULL, input TEXT, output TEXT, critique TEXT,
  latency_ms DOUBLE PRECISION, tokens BIGINT, skills JSONB NOT NULL DEFAULT '[]'::jsonb,
  metadata JSONB NOT NULL DEFAULT '{{}}'::jsonb, embedding vector({dim}) NOT NULL,
  created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
  gen BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS {episodes_session} ON {episodes} (session_id);
CREATE INDEX IF NOT EXISTS {episodes_task} ON {episodes} (task);
CREATE INDEX IF NOT EXISTS {episodes_created} ON {episodes} (created_at);
CREATE INDEX IF NOT EXISTS {episodes_gen} ON {episodes} (gen);
CREATE INDEX IF NOT EXISTS {episodes_hnsw} ON {episodes}
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 200);
CREATE TABLE IF NOT EXISTS {skills} (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '', signature TEXT, code TEXT,
  success_rate DOUBLE PRECISION NOT NULL DEFAULT 0, uses BIGINT NOT NULL DEFAULT 0,
  metadata JSONB NOT NULL DEFAULT '{{}}'::jsonb, embedding vector({dim}) NOT NULL,
  created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
  gen BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS {skills_created} ON {skills} (created_at);
CREATE INDEX IF NOT EXISTS {skills_gen} ON {skills} (gen);
CREATE INDEX IF NOT EXISTS {skills_hnsw} ON {skills}
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 200);
CREATE TABLE IF NOT EXISTS {graph_nodes} (
  id BIGINT PRIMARY KEY, labels JSONB NOT NULL DEFAULT '[]'::jsonb,
  props JSONB NOT NULL DEFAULT '{{}}'::jsonb, gen BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {graph_edges} (
  id BIGINT PRIMARY KEY, type TEXT NOT NULL, tail JSONB NOT NULL, head JSONB NOT NULL,
  confidence DOUBLE PRECISION NOT NULL, "timestamp" DOUBLE PRECISION NOT NULL,
  props JSONB NOT NULL DEFAULT '{{}}'::jsonb, gen BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {graph_indexes} (
  label TEXT NOT NULL, prop TEXT NOT NULL, PRIMARY KEY (label, prop));
CREATE TABLE IF NOT EXISTS {deletions} (
  collection TEXT NOT NULL, id BIGINT NOT NULL, gen BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS {deletions_gen} ON {deletions} (collection, gen)
"""

#: Versioned schema changes: (version, description, SQL template). Each missing one is
#: applied in its own transaction under an advisory lock and recorded in schema_migrations.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "collections, graph, deletions log and meta tables; HNSW and btree indexes", _V1),
]
SCHEMA_VERSION = max(v for v, _, _ in MIGRATIONS)


# ---------------------------------------------------------------------------- adapters
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


def _register_vector_numpy(conn: psycopg.Connection) -> None:
    register_vector(conn)  # pgvector's adapters (Vector objects, ndarray dumpers, types)
    info = conn.adapters.types.get("vector")
    if info is None:  # pragma: no cover - register_vector raised already
        raise StoreError("the vector type is not registered")
    dump, bdump, load, bload = _vector_adapters(info.oid)
    conn.adapters.register_dumper(np.ndarray, dump)
    conn.adapters.register_dumper(np.ndarray, bdump)
    conn.adapters.register_loader(info.oid, load)
    conn.adapters.register_loader(info.oid, bload)


def _raw_json(text: str) -> Jsonb:
    """A Jsonb parameter whose (already validated) JSON text is sent as is."""
    return Jsonb(text, dumps=str)


# ---------------------------------------------------------------------------- URLs
def _redact(url: str) -> str:
    """The URL (or key=value DSN) with any password replaced by ``***``."""
    if "://" in url:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            cred, host = netloc.rsplit("@", 1)
            if ":" in cred:
                user, pw = cred.split(":", 1)
                if pw:
                    netloc = f"{user}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k == "password" for k, _ in pairs):
                query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs],
                                  safe="/:")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def _describe(url: str) -> tuple[str, str]:
    """(``user@host:port/dbname`` with no password, the password or '')."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except Exception:
        raise StoreError(f"invalid PostgreSQL URL {_redact(url)!r}") from None
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    port = str(info.get("port") or "5432")
    db = str(info.get("dbname") or info.get("user") or "postgres")
    user = info.get("user")
    where = f"{user + '@' if user else ''}{host}:{port}/{db}"
    return where, str(info.get("password") or "")


# ---------------------------------------------------------------------------- the store
class PostgresStore:
    """Rows of patterns, episodes and skills in PostgreSQL (pgvector), like SQLiteStore.

    ``url`` is a libpq URL or DSN; tables live in ``schema`` (created if missing) with names
    prefixed by ``table_prefix``. ``pool_size`` bounds the connections kept open;
    ``connect_timeout`` bounds connecting and waiting for a pooled connection (seconds).

    Reads run on any pooled connection and see committed data only (as SQLite's readers in
    WAL mode); a read made inside :meth:`write` uses another connection, so ``pool_size``
    should be at least 2 when that happens.
    """

    def __init__(
        self,
        url: str,
        dim: int,
        *,
        schema: str = "public",
        table_prefix: str = "",
        readonly: bool = False,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(schema, str) or not _SCHEMA_RE.match(schema):
            raise InvalidArgumentError(
                f"invalid schema name {schema!r}: use lower-case letters, digits "
                "and _ (at most 41 characters, not starting with a digit)")
        if not isinstance(table_prefix, str) or not _PREFIX_RE.match(table_prefix):
            raise InvalidArgumentError(
                f"invalid table_prefix {table_prefix!r}: use lower-case letters, "
                "digits and _ (at most 20 characters)")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
            raise InvalidArgumentError(f"dim must be a non-negative integer, got {dim!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidArgumentError(f"pool_size must be a positive integer, got {pool_size!r}")
        if not connect_timeout > 0:
            raise InvalidArgumentError(f"connect_timeout must be positive, got {connect_timeout!r}")
        self.url = url
        self.path = _redact(url)
        self.memory = False
        self.readonly = readonly
        self.schema = schema
        self.prefix = table_prefix
        self.dim = int(dim)
        self.generation = 0
        self.pending_gen = 0
        self._timeout = float(connect_timeout)
        self._where, self._password = _describe(url)
        self._closed = False
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._seq: dict[str, str] = {}
        self._ext_schema = "public"
        self._q = {name: sql.Identifier(schema, table_prefix + tbl)
                   for name, tbl in TABLES.items()}
        self._q.update({t: sql.Identifier(schema, table_prefix + t) for t in _OTHER_TABLES})
        try:
            conn = self._connect()
            try:
                self._setup(conn, int(dim))
            finally:
                conn.close()
            self._open_pool(pool_size)
            self.dim = int(self.meta("dim") or dim)
            self.generation = int(self.meta("generation") or 0)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return (f"PostgresStore({self.path!r}, dim={self.dim}, schema={self.schema!r}, "
                f"table_prefix={self.prefix!r}{', readonly=True' if self.readonly else ''})")

    # ---- connections ------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        if self._password and len(self._password) >= 3:
            text = text.replace(self._password, "***")
        return text

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, connect_timeout=max(1, math.ceil(self._timeout)),
                                   application_name="agentdb", autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self._where}: "
                             f"{self._scrub(str(exc).strip())}") from None

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT set_config('search_path', quote_ident(%s), false)",
                     [self._ext_schema])
        _register_vector_numpy(conn)
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        conn.commit()

    def _open_pool(self, pool_size: int) -> None:
        pool = psycopg_pool.ConnectionPool(
            self.url, min_size=1, max_size=pool_size, open=True, timeout=self._timeout,
            configure=self._configure, name=f"agentdb-{self.schema}",
            kwargs={"connect_timeout": max(1, math.ceil(self._timeout)),
                    "application_name": "agentdb"})
        self._pool = pool
        self._finalizer = weakref.finalize(self, pool.close)
        try:
            pool.wait(timeout=self._timeout)
        except psycopg_pool.PoolTimeout:
            raise StoreError(f"cannot connect to PostgreSQL at {self._where}: no connection "
                             f"within {self._timeout:g}s") from None

    def _check_open(self) -> None:
        if self._closed or self._pool is None:
            raise StoreClosedError(f"store '{self.path}' (schema {self.schema}) is closed")

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A pooled connection for one read (its transaction ends on exit)."""
        self._check_open()
        assert self._pool is not None
        try:
            cm = self._pool.connection()
            conn = cm.__enter__()
        except psycopg_pool.PoolTimeout:
            raise StoreError(f"no PostgreSQL connection to {self._where} within "
                             f"{self._timeout:g}s (pool exhausted or server down)") from None
        try:
            yield conn
        except BaseException as exc:
            if not cm.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            cm.__exit__(None, None, None)

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.close()

    # ---- schema -----------------------------------------------------------------------------
    def _lock(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                     [_LOCK_CLASS, f"{self.schema}.{self.prefix}"])

    def _ids(self) -> dict[str, sql.Composable]:
        ids: dict[str, sql.Composable] = dict(self._q)
        for name in TABLES:
            for suffix in ("session", "task", "created", "gen", "hnsw"):
                ids[f"{name}_{suffix}"] = sql.Identifier(
                    f"{self.prefix}{TABLES[name]}_{suffix}")
        ids["deletions_gen"] = sql.Identifier(f"{self.prefix}deletions_gen")
        return ids

    def _render(self, template: str, dim: int) -> list[sql.Composed]:
        out = []
        for stmt in template.split(";\n"):
            if not stmt.strip() or ("USING hnsw" in stmt and dim > _HNSW_MAX_DIM):
                continue
            out.append(sql.SQL(stmt).format(dim=sql.SQL(str(int(dim))), **self._ids()))
        return out

    def _setup(self, conn: psycopg.Connection, dim: int) -> None:
        with conn.transaction():
            self._lock(conn)
            row = conn.execute(_EXT_SCHEMA_SQL).fetchone()
            if row is None:
                if self.readonly:
                    raise StoreError(f"PostgreSQL at {self._where} has no pgvector extension")
                try:
                    with conn.transaction():
                        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.Error as exc:
                    raise StoreError(
                        f"cannot enable pgvector on PostgreSQL at {self._where} (is the "
                        f"pgvector extension installed on the server?): {exc}".strip()
                    ) from None
                row = conn.execute(_EXT_SCHEMA_SQL).fetchone()
            self._ext_schema = str(row[0])
            conn.execute("SELECT set_config('search_path', quote_ident(%s), true)",
                         [self._ext_schema])
            have = conn.execute("SELECT to_regclass(%s)", [self._regname("schema_migrations")]
                                ).fetchone()[0]
            if have is None:
                if self.readonly:
                    raise FileNotFoundError(f"no AgentDB store in schema {self.schema!r} "
                                            f"(prefix {self.prefix!r}) at {self.path}")
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)))
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version INTEGER PRIMARY KEY, "
                    "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), description TEXT)"
                ).format(self._q["schema_migrations"]))
        applied = self._applied(conn)
        newest = max(applied, default=0)
        if newest > SCHEMA_VERSION:
            raise StoreError(f"PostgreSQL store {self.schema}.{self.prefix}* at {self._where} "
                             f"has schema version {newest}; this AgentDB reads up to "
                             f"{SCHEMA_VERSION} (upgrade agentdb)")
        for version, description, template in MIGRATIONS:
            if version in applied:
                continue
            if self.readonly:
                raise StoreError(f"PostgreSQL store {self.schema}.{self.prefix}* has schema "
                                 f"version {newest}; open it read-write once to upgrade to "
                                 f"{SCHEMA_VERSION}")
            with conn.transaction():
                self._lock(conn)
                conn.execute("SELECT set_config('search_path', quote_ident(%s), true)",
                             [self._ext_schema])
                if version in self._applied(conn):  # another process got here first
                    continue
                if version == 1 and dim <= 0:
                    raise InvalidArgumentError("dim must be positive to create a new store")
                for stmt in self._render(template, dim):
                    conn.execute(stmt)
                if version == 1:  # generation 1, as SQLiteStore's creating transaction
                    conn.execute(
                        sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s), (%s, %s), "
                                "(%s, %s) ON CONFLICT (key) DO NOTHING").format(self._q["meta"]),
                        ["dim", str(dim), "generation", "1", "created_at", str(time.time())])
                conn.execute(sql.SQL("INSERT INTO {} (version, description) VALUES (%s, %s)"
                                     ).format(self._q["schema_migrations"]),
                             [version, description])
                conn.execute(sql.SQL("INSERT INTO {} (key, value) VALUES ('schema_version', %s) "
                                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                                     ).format(self._q["meta"]), [str(version)])
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT value FROM {} WHERE key = 'dim'").format(
                self._q["meta"])).fetchone()
            if row is not None and dim != 0 and int(row[0]) != dim:
                raise InvalidArgumentError(
                    f"dimension mismatch: PostgreSQL store {self.schema}."
                    f"{self.prefix}* stores dim {row[0]}, opened with dim {dim}")
            for name in TABLES:
                seq = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')",
                                   [self._regname(name)]).fetchone()[0]
                self._seq[name] = str(seq)

    def _applied(self, conn: psycopg.Connection) -> set[int]:
        cur = conn.execute(sql.SQL("SELECT version FROM {}").format(
            self._q["schema_migrations"]))
        return {int(r[0]) for r in cur}

    def _regname(self, name: str) -> str:
        """Quoted, schema-qualified name of one of our tables (for regclass arguments)."""
        return sql.Identifier(self.schema, self.prefix + TABLES.get(name, name)).as_string(None)

    def _table(self, table: str) -> sql.Identifier:
        if table not in TABLES:
            raise InvalidArgumentError(f"unknown table {table!r} (use 'patterns', 'episodes' or "
                                       "'skills')")
        return self._q[table]

    # ---- meta -------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """Read one meta value (``dim``, ``generation``, ``schema_version``, ...)."""
        with self._conn() as conn:
            row = conn.execute(sql.SQL("SELECT value FROM {} WHERE key = %s").format(
                self._q["meta"]), [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Write one meta value in its own transaction."""
        with self.write() as w:
            w.execute(sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                              "DO UPDATE SET value = excluded.value").format(self._q["meta"]),
                      [key, str(value)])

    # ---- transactions -----------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[psycopg.Connection]:
        """One write transaction on one pooled connection: commits on success, rolls back on
        any exception.

        The generation advances once per transaction: the ``generation`` meta row is locked
        ``FOR UPDATE`` first, so concurrent writers (in any process) serialise and generations
        stay monotonic; rows written inside carry ``self.pending_gen``. Nesting is an error.
        """
        if self.readonly:
            raise StoreError(f"store '{self.path}' (schema {self.schema}) is open read-only")
        self._check_open()
        if getattr(self._local, "writing", False):
            raise StoreError("write() transactions cannot be nested")
        with self._write_lock:
            self._local.writing = True
            try:
                with self._conn() as conn:
                    with conn.transaction():
                        row = conn.execute(sql.SQL(
                            "SELECT value FROM {} WHERE key = 'generation' FOR UPDATE"
                        ).format(self._q["meta"])).fetchone()
                        self.pending_gen = int(row[0]) + 1
                        yield conn
                        conn.execute(sql.SQL("UPDATE {} SET value = %s WHERE key = 'generation'"
                                             ).format(self._q["meta"]), [str(self.pending_gen)])
                self.generation = self.pending_gen
            finally:
                self._local.writing = False

    # ---- value conversion ---------------------------------------------------------------------
    def _convert(self, table: str, col: str, value: Any, where: str = "") -> Any:
        """One column value as the Python object bound for its PostgreSQL type."""
        if value is None:
            return None
        kind = _COLTYPES[col]
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
        return _raw_json(_json_text(value, label))  # jsonb

    def _values(self, table: str, values: dict[str, Any], where: str = "",
                required: bool = True) -> list[Any]:
        out = [self._convert(table, c, values.get(c), where) for c in COLLECTIONS[table]]
        if required:
            for c, v in zip(COLLECTIONS[table], out):
                if v is None and c in _NOT_NULL[table]:
                    at = f" ({where.rstrip(': ')})" if where else ""
                    raise IntegrityError(f"NOT NULL constraint failed: {table}.{c}{at}")
        return out

    def _vec(self, embedding: Any, name: str = "embedding") -> np.ndarray:
        return check_vector(embedding, self.dim, name)

    @contextmanager
    def _integrity(self, table: str) -> Iterator[None]:
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

    def _bump_sequence(self, w: psycopg.Connection, table: str, max_id: int) -> None:
        """Move the id sequence past ``max_id`` (never backwards) so inserts never collide."""
        seq = self._seq[table]
        w.execute("SELECT setval(%s::regclass, %s) WHERE %s > "
                  "COALESCE(pg_sequence_last_value(%s::regclass), 0)",
                  [seq, int(max_id), int(max_id), seq])

    # ---- rows -------------------------------------------------------------------------------
    def insert(self, w: psycopg.Connection, table: str, values: dict[str, Any],
               embedding: np.ndarray, row_id: int | None = None,
               created_at: float | None = None) -> int:
        """Insert one row (inside :meth:`write`); returns its id.

        An explicit ``row_id`` is kept and the id sequence is moved past it.
        """
        t = self._table(table)
        vals = self._values(table, values)
        vec = self._vec(embedding)
        now = time.time()
        names = [*COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"]
        params = [*vals, vec, float(created_at) if created_at is not None else now, now,
                  self.pending_gen]
        if row_id is not None:
            names.insert(0, "id")
            params.insert(0, int(row_id))
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            t, sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(", ").join(sql.Placeholder() * len(names)))
        with self._integrity(table):
            rid = int(w.execute(query, params).fetchone()[0])
        if row_id is not None:
            self._bump_sequence(w, table, rid)
        return rid

    def update(self, w: psycopg.Connection, table: str, row_id: int, values: dict[str, Any],
               embedding: np.ndarray | None = None) -> None:
        """Update some columns of one row (inside :meth:`write`); KeyError if it is missing."""
        t = self._table(table)
        unknown = set(values) - set(COLLECTIONS[table])
        if unknown:
            raise InvalidArgumentError(f"unknown {table} field(s): {', '.join(sorted(unknown))}")
        cols = [c for c in values if c in COLLECTIONS[table]]
        params: list[Any] = []
        for c in cols:
            v = self._convert(table, c, values[c])
            if v is None and c in _NOT_NULL[table]:
                raise IntegrityError(f"NOT NULL constraint failed: {table}.{c}")
            params.append(v)
        sets = [*cols, "updated_at", "gen"]
        params += [time.time(), self.pending_gen]
        if embedding is not None:
            sets.append("embedding")
            params.append(self._vec(embedding))
        query = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
            t, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in sets))
        with self._integrity(table):
            cur = w.execute(query, [*params, int(row_id)])
        if cur.rowcount == 0:
            raise NotFoundError(f"unknown {table[:-1]} id {row_id}")

    def delete(self, w: psycopg.Connection, table: str, ids: Sequence[int]) -> None:
        """Delete rows and log the deletions (inside :meth:`write`)."""
        t = self._table(table)
        id_list = [int(i) for i in ids]
        if not id_list:
            return
        w.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s::bigint[])").format(t), [id_list])
        w.execute(sql.SQL("INSERT INTO {} (collection, id, gen) "
                          "SELECT %s, i, %s FROM unnest(%s::bigint[]) AS i").format(
                              self._q["deletions"]), [table, self.pending_gen, id_list])

    def existing(self, table: str, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` exist."""
        t = self._table(table)
        id_list = [int(i) for i in ids]
        if not id_list:
            return set()
        with self._conn() as conn:
            cur = conn.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s::bigint[])"
                                       ).format(t), [id_list])
            return {int(r[0]) for r in cur}

    def _select(self, table: str, cols: Sequence[str], tail: sql.Composable,
                params: Sequence[Any]) -> list[dict[str, Any]]:
        query = sql.SQL("SELECT {} FROM {} ").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), self._q[table]) + tail
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(query, list(params))
            return [_row(cols, r) for r in cur.fetchall()]

    def get(self, table: str, ids: Sequence[int],
            with_embedding: bool = True) -> dict[int, dict[str, Any]]:
        """Rows by id as dicts (with the embedding as float32 and ``gen`` unless
        ``with_embedding`` is False)."""
        self._table(table)
        cols = _all_columns(table) if with_embedding else [
            "id", *COLLECTIONS[table], "created_at", "updated_at"]
        id_list = [int(i) for i in ids]
        if not id_list:
            return {}
        rows = self._select(table, cols, sql.SQL("WHERE id = ANY(%s::bigint[])"), [id_list])
        return {r["id"]: r for r in rows}

    def find(self, table: str, column: str, value: Any) -> dict[str, Any] | None:
        """The first row whose ``column`` equals ``value`` (``None`` never matches)."""
        self._table(table)
        if column not in COLLECTIONS[table] and column != "id":
            raise InvalidArgumentError(f"unknown column {column}")
        if value is None:
            return None
        param = int(value) if column == "id" else self._convert(table, column, value)
        rows = self._select(table, _all_columns(table), sql.SQL("WHERE {} = %s LIMIT 1").format(
            sql.Identifier(column)), [param])
        return rows[0] if rows else None

    def count(self, table: str) -> int:
        """Number of rows in a collection (a real ``COUNT(*)``)."""
        t = self._table(table)
        with self._conn() as conn:
            return int(conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(t)).fetchone()[0])

    def iter_rows(self, table: str, since_gen: int = -1, batch: int = 2000,
                  columns: str = "*") -> Iterator[list[dict[str, Any]]]:
        """Rows with ``gen > since_gen`` in id order, in batches.

        ``columns`` is ``"*"`` or a comma-separated list of column names (``id`` is always
        included); each batch is read on its own pooled connection.
        """
        self._table(table)
        cols = _parse_columns(table, columns)
        if "id" not in cols:
            cols.insert(0, "id")
        if batch < 1:
            raise InvalidArgumentError(f"batch must be positive, got {batch}")
        last = -(2**63)
        while True:
            rows = self._select(table, cols, sql.SQL(
                "WHERE gen > %s AND id > %s ORDER BY id LIMIT %s"), [int(since_gen), last,
                                                                     int(batch)])
            if not rows:
                return
            last = rows[-1]["id"]
            yield rows

    def deleted_since(self, table: str, gen: int) -> list[int]:
        """Ids deleted from ``table`` after generation ``gen`` (ascending)."""
        self._table(table)
        with self._conn() as conn:
            cur = conn.execute(sql.SQL("SELECT DISTINCT id FROM {} WHERE collection = %s AND "
                                       "gen > %s ORDER BY id").format(self._q["deletions"]),
                               [table, int(gen)])
            return [int(r[0]) for r in cur]

    def scalar_columns(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """(id, *columns) for every row, raw like SQLite: JSON columns as JSON text and
        ``success`` as 0/1 — used to build in-memory filter columns."""
        self._table(table)
        cols = _parse_columns(table, ",".join(columns)) if len(columns) else []
        exprs = []
        for c in ["id", *cols]:
            if _COLTYPES.get(c) == "jsonb":
                exprs.append(sql.SQL("{}::text").format(sql.Identifier(c)))
            elif c == "success":
                exprs.append(sql.SQL("{}::int").format(sql.Identifier(c)))
            else:
                exprs.append(sql.Identifier(c))
        query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(sql.SQL(", ").join(exprs),
                                                                  self._q[table])
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(query)
            return [tuple(r) for r in cur.fetchall()]

    # ---- filters and search -------------------------------------------------------------------
    def _filters(self, table: str, min_reward: float | None, success: bool | None,
                 session_id: str | None, where: dict[str, Any] | None
                 ) -> tuple[list[str], list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if min_reward is not None:
            if isinstance(min_reward, bool) or not isinstance(
                    min_reward, (int, float, np.integer, np.floating)) or math.isnan(min_reward):
                raise InvalidArgumentError(f"min_reward must be a number, got {min_reward!r}")
            parts.append("success_rate >= %s" if table == "skills" else "reward >= %s")
            params.append(float(min_reward))
        if success is not None:
            if table == "skills":
                raise InvalidArgumentError("skills have no success column")
            parts.append("success = %s")
            params.append(bool(success))
        if session_id is not None:
            if table == "skills":
                raise InvalidArgumentError("skills have no session_id column")
            parts.append("session_id = %s")
            params.append(str(session_id))
        if where:
            w_sql, w_params = pg_where_sql(where)
            parts.append(w_sql)
            params += w_params
        return parts, params

    def filter_ids(self, table: str, *, min_reward: float | None = None,
                   success: bool | None = None, session_id: str | None = None,
                   where: dict[str, Any] | None = None) -> np.ndarray:
        """Ids matching the filters (sorted int64): ``min_reward`` (the success rate for
        skills), ``success``, ``session_id`` and a metadata ``where`` (see
        :func:`pg_where_sql`). The PostgreSQL counterpart of ``SQLiteStore.select_ids``."""
        t = self._table(table)
        parts, params = self._filters(table, min_reward, success, session_id, where)
        cond = sql.SQL(" AND ".join(f"({p})" for p in parts) if parts else "TRUE")
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL("SELECT id FROM {} WHERE {} ORDER BY id").format(t, cond),
                        params)
            return np.fromiter((r[0] for r in cur), dtype=np.int64)

    def search(self, table: str, q: np.ndarray, k: int, *, ef_search: int | None = None,
               min_reward: float | None = None, success: bool | None = None,
               session_id: str | None = None, where: dict[str, Any] | None = None,
               max_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows by cosine distance: (ids int64, distances float32), nearest
        first.

        Runs ``ORDER BY embedding <=> q LIMIT k`` with the query sent in binary, the filters
        in the WHERE clause and ``hnsw.ef_search`` set for the transaction (``ef_search`` if
        given, 1..1000, raised to at least ``k``). pgvector 0.6's HNSW scan applies the WHERE
        clause *after* it collected ``ef_search`` candidates, so a selective filter can yield
        fewer than ``k`` rows although ``k`` match: then the search is retried with
        ``ef_search = 1000`` and, if still short, answered by an exact scan (index scans off),
        so ``k`` results come back whenever ``k`` rows match. ``max_distance`` drops hits
        farther than it afterwards. Results are approximate (HNSW) except on that fallback.
        """
        t = self._table(table)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
        if ef_search is not None and (isinstance(ef_search, bool) or not isinstance(
                ef_search, (int, np.integer)) or not 1 <= ef_search <= _MAX_EF):
            raise InvalidArgumentError(
                f"ef_search must be an integer in 1..{_MAX_EF}, got {ef_search!r}")
        if max_distance is not None and (isinstance(max_distance, bool) or not isinstance(
                max_distance, (int, float, np.integer, np.floating))
                or math.isnan(max_distance)):
            raise InvalidArgumentError(f"max_distance must be a number, got {max_distance!r}")
        vec = self._vec(q, "query")
        parts, params = self._filters(table, min_reward, success, session_id, where)
        cond = sql.SQL(" AND ".join(f"({p})" for p in parts) if parts else "TRUE")
        query = sql.SQL("SELECT id, embedding <=> %b AS d FROM {} WHERE {} "
                        "ORDER BY embedding <=> %b LIMIT %s").format(t, cond)
        args = [vec, *params, vec, int(k)]
        k = int(k)

        def run(ef: int | None, exact: bool) -> list[tuple[int, float]]:
            with self._conn() as conn, conn.transaction():
                if ef is None:  # keep the server's setting unless k needs more
                    conn.execute("SELECT set_config('hnsw.ef_search', GREATEST(COALESCE("
                                 "current_setting('hnsw.ef_search', true), '40')::int, %s)"
                                 "::text, true)", [min(k, _MAX_EF)])
                else:
                    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
                if exact:
                    conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
                with conn.cursor(binary=True) as cur:
                    cur.execute(query, args)
                    return [(int(a), float(b)) for a, b in cur.fetchall()]

        exact_only = k > _MAX_EF
        ef = None if ef_search is None else max(int(ef_search), min(k, _MAX_EF))
        rows = run(ef, exact_only)
        if len(rows) < k and parts and not exact_only:
            if (ef or 0) < _MAX_EF:
                rows = run(_MAX_EF, False)
            if len(rows) < k:
                rows = run(_MAX_EF, True)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        dist = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
        if max_distance is not None:
            keep = dist <= float(max_distance)
            ids, dist = ids[keep], dist[keep]
        return ids, dist

    # ---- bulk paths -------------------------------------------------------------------------
    def _check_matrix(self, embeddings: Any, n: int) -> np.ndarray:
        arr = np.asarray(embeddings)
        if arr.dtype.kind not in "fiu":
            raise InvalidTypeError(
                f"embeddings must be a real numeric array, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 2 or arr.shape != (n, self.dim):
            raise InvalidArgumentError(f"dimension mismatch: embeddings must have shape ({n}, "
                                       f"{self.dim}), got {arr.shape}")
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

    def bulk_insert(self, w: psycopg.Connection, table: str, rows: list[dict[str, Any]],
                    embeddings: np.ndarray) -> list[int]:
        """Insert many rows with one binary ``COPY`` (inside :meth:`write`); returns their ids.

        Every row and embedding is validated before anything is sent; ids are reserved with
        one ``nextval`` call per batch. A row may carry ``created_at``. Any failure raises and
        the surrounding transaction rolls back, so the batch is all or nothing.
        """
        t = self._table(table)
        n = len(rows)
        if n == 0:
            return []
        arr = self._check_matrix(embeddings, n)
        allowed = {*COLLECTIONS[table], "created_at"}
        now = time.time()
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
            prepared.append((self._values(table, row, where=f"row {i}: "),
                             now if created is None else float(created)))
        with w.cursor() as cur:
            cur.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                        [self._seq[table], n])
            ids = [int(r[0]) for r in cur.fetchall()]
        names = ["id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"]
        types = ["int8", *(_COLTYPES[c] for c in COLLECTIONS[table]), "vector", "float8",
                 "float8", "int8"]
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            t, sql.SQL(", ").join(map(sql.Identifier, names)))
        gen = self.pending_gen
        with self._integrity(table), w.cursor() as cur, cur.copy(stmt) as cp:
            cp.set_types(types)
            for i, (vals, created) in enumerate(prepared):
                cp.write_row([ids[i], *vals, arr[i], created, now, gen])
        return ids

    def upsert_rows(self, w: psycopg.Connection, table: str, rows: list[dict[str, Any]]
                    ) -> None:
        """Insert or replace whole rows by id (inside :meth:`write`), keeping ``created_at``
        and ``updated_at`` as given; for mirroring and migrations.

        Each dict has ``id``, the collection's columns, ``embedding``, ``created_at`` and
        ``updated_at`` (a ``gen`` key is ignored: written rows carry ``pending_gen``). The id
        sequence is moved past the largest id. Running it twice changes nothing but ``gen``.
        """
        t = self._table(table)
        if not rows:
            return
        allowed = {"id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"}
        names = ["id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"]
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
            vals = self._values(table, row, where=f"row {i}: ")
            vec = self._vec(row["embedding"], f"row {i}: embedding")
            batch.append([int(rid), *vals, vec, *stamps, self.pending_gen])
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in names[1:])
        stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}"
                       ).format(t, sql.SQL(", ").join(map(sql.Identifier, names)),
                                sql.SQL(", ").join(sql.Placeholder() * len(names)), updates)
        with self._integrity(table), w.cursor() as cur:
            cur.executemany(stmt, batch)
        self._bump_sequence(w, table, max(b[0] for b in batch))

    @contextmanager
    def deferred_vector_index(self, table: str) -> Iterator[bool]:
        """Bulk-load helper: when ``table`` is empty, drop its HNSW index for the duration and
        build it once at the end (pgvector builds from existing rows in about a minute for
        100k x 384, where maintaining it row by row takes ~15 minutes). Yields whether the
        index was deferred (False: the table had rows, or no HNSW index for this dim).
        Searches in between are exact scans. Used by ``agentdb migrate``."""
        ident = self._table(table)
        if self.readonly or self.count(table) > 0 or self.dim > _HNSW_MAX_DIM:
            yield False
            return
        idx = sql.Identifier(self.schema, f"{self.prefix}{TABLES[table]}_hnsw")
        with self._conn() as conn:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(idx))
        try:
            yield True
        finally:
            with self._conn() as conn:
                conn.execute("SET maintenance_work_mem = '512MB'")
                conn.execute(sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops) "
                    "WITH (m = 16, ef_construction = 200)").format(
                        sql.Identifier(f"{self.prefix}{TABLES[table]}_hnsw"), ident))

    def export_vectors(self, table: str) -> tuple[np.ndarray, np.ndarray]:
        """All (ids int64, embeddings float32 of shape (n, dim)) in id order, read with one
        binary ``COPY ... TO STDOUT`` and parsed with numpy (no per-row Python work): the fast
        path to rebuild a native HNSW index from PostgreSQL."""
        t = self._table(table)
        buf = bytearray()
        stmt = sql.SQL("COPY (SELECT id, embedding FROM {} ORDER BY id) TO STDOUT "
                       "(FORMAT BINARY)").format(t)
        with self._conn() as conn, conn.cursor() as cur, cur.copy(stmt) as cp:
            for chunk in cp:
                buf += chunk
        return _parse_copy_vectors(buf, self.dim)

    def checksum(self, table: str) -> str:
        """An order-independent checksum of the rows' logical content (ids, columns,
        metadata, timestamps, embedding bytes; not ``gen``). The same rows give the same
        value here and from :func:`sqlite_checksum`."""
        self._table(table)
        return _checksum(table, self.iter_rows(table, batch=5000))

    def file_size(self) -> int:
        """Bytes PostgreSQL uses for this store's tables and their indexes."""
        names = [self._regname(n) for n in (*TABLES, *_OTHER_TABLES)]
        with self._conn() as conn:
            row = conn.execute("SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(n))), 0)"
                               " FROM unnest(%s::text[]) AS n", [names]).fetchone()
        return int(row[0])

    # ---- causal graph -------------------------------------------------------------------------
    def put_graph_node(self, w: psycopg.Connection, nid: int, labels: Sequence[str],
                       props: dict[str, Any]) -> None:
        """Insert or replace one graph node (inside :meth:`write`)."""
        w.execute(sql.SQL("INSERT INTO {} (id, labels, props, gen) VALUES (%s, %s, %s, %s) "
                          "ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, "
                          "props = excluded.props, gen = excluded.gen").format(
                              self._q["graph_nodes"]),
                  [int(nid), _raw_json(json.dumps(list(labels))),
                   _raw_json(_json_text(props, "graph node props")), self.pending_gen])

    def put_graph_edge(self, w: psycopg.Connection, eid: int, type: str, tail: Sequence[int],
                       head: Sequence[int], confidence: float, timestamp: float,
                       props: dict[str, Any]) -> None:
        """Insert or replace one hyperedge (inside :meth:`write`)."""
        w.execute(sql.SQL(
            'INSERT INTO {} (id, type, tail, head, confidence, "timestamp", props, gen) '
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "type = excluded.type, tail = excluded.tail, head = excluded.head, "
            'confidence = excluded.confidence, "timestamp" = excluded."timestamp", '
            "props = excluded.props, gen = excluded.gen").format(self._q["graph_edges"]),
            [int(eid), type, _raw_json(json.dumps([int(x) for x in tail])),
             _raw_json(json.dumps([int(x) for x in head])), float(confidence),
             float(timestamp), _raw_json(_json_text(props, "graph edge props")),
             self.pending_gen])

    def delete_graph(self, w: psycopg.Connection, node_ids: Sequence[int],
                     edge_ids: Sequence[int]) -> None:
        """Delete graph nodes and edges (inside :meth:`write`)."""
        w.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s::bigint[])").format(
            self._q["graph_edges"]), [[int(e) for e in edge_ids]])
        w.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s::bigint[])").format(
            self._q["graph_nodes"]), [[int(n) for n in node_ids]])

    def graph_nodes(self) -> Iterator[tuple[int, list[str], dict[str, Any]]]:
        """Every graph node as (id, labels, props), by id."""
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL("SELECT id, labels, props FROM {} ORDER BY id").format(
                self._q["graph_nodes"]))
            rows = cur.fetchall()
        for nid, labels, props in rows:
            yield int(nid), list(labels), dict(props)

    def graph_edges(self) -> Iterator[tuple[int, str, list[int], list[int], float, float,
                                             dict[str, Any]]]:
        """Every hyperedge as (id, type, tail, head, confidence, timestamp, props), by id."""
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL('SELECT id, type, tail, head, confidence, "timestamp", props '
                                "FROM {} ORDER BY id").format(self._q["graph_edges"]))
            rows = cur.fetchall()
        for row in rows:
            yield (int(row[0]), row[1], list(row[2]), list(row[3]), float(row[4]),
                   float(row[5]), dict(row[6]))

    def get_graph_nodes(self, ids: Sequence[int]) -> dict[int, tuple[list[str], dict[str, Any]]]:
        """Graph nodes by id: ``{id: (labels, props)}`` (missing ids are absent)."""
        with self._conn() as conn:
            cur = conn.execute(sql.SQL("SELECT id, labels, props FROM {} "
                                       "WHERE id = ANY(%s::bigint[])").format(
                                           self._q["graph_nodes"]), [[int(i) for i in ids]])
            return {int(n): (list(labels), dict(props)) for n, labels, props in cur}

    def get_graph_edges(self, ids: Sequence[int]) -> dict[int, tuple[str, list[int], list[int],
                                                                     float, float,
                                                                     dict[str, Any]]]:
        """Hyperedges by id: ``{id: (type, tail, head, confidence, timestamp, props)}``."""
        with self._conn() as conn:
            cur = conn.execute(sql.SQL(
                'SELECT id, type, tail, head, confidence, "timestamp", props FROM {} '
                "WHERE id = ANY(%s::bigint[])").format(self._q["graph_edges"]),
                [[int(i) for i in ids]])
            return {int(r[0]): (r[1], [int(x) for x in r[2]], [int(x) for x in r[3]],
                                float(r[4]), float(r[5]), dict(r[6])) for r in cur}

    def graph_counts(self) -> tuple[int, int]:
        """``(nodes, hyperedges)`` in the graph tables."""
        with self._conn() as conn:
            row = conn.execute(sql.SQL("SELECT (SELECT count(*) FROM {}), "
                                       "(SELECT count(*) FROM {})").format(
                                           self._q["graph_nodes"], self._q["graph_edges"])
                               ).fetchone()
        return int(row[0]), int(row[1])

    def graph_edges_touching(self, w: psycopg.Connection, nid: int) -> list[int]:
        """Ids of the hyperedges with ``nid`` in their tail or head (inside :meth:`write`)."""
        probe = _raw_json(json.dumps([int(nid)]))
        cur = w.execute(sql.SQL("SELECT id FROM {} WHERE tail @> %s OR head @> %s ORDER BY id"
                                ).format(self._q["graph_edges"]), [probe, probe])
        return [int(r[0]) for r in cur]

    def next_graph_ids(self, w: psycopg.Connection) -> tuple[int, int]:
        """``(next node id, next edge id)``, serialised by a transaction-scoped advisory lock
        so concurrent writers of the same store never hand out the same id."""
        w.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                  [f"agentdb-graph-ids:{self._q['graph_nodes'].as_string(w)}"])
        row = w.execute(sql.SQL("SELECT (SELECT COALESCE(max(id), 0) + 1 FROM {}), "
                                "(SELECT COALESCE(max(id), 0) + 1 FROM {})").format(
                                    self._q["graph_nodes"], self._q["graph_edges"])).fetchone()
        return int(row[0]), int(row[1])

    def graph_indexes(self) -> list[tuple[str, str]]:
        """Declared (label, property) indexes."""
        with self._conn() as conn:
            cur = conn.execute(sql.SQL("SELECT label, prop FROM {} ORDER BY label, prop"
                                       ).format(self._q["graph_indexes"]))
            return [(str(a), str(b)) for a, b in cur]

    def add_graph_index(self, label: str, prop: str) -> None:
        """Declare a (label, property) index (idempotent)."""
        with self.write() as w:
            w.execute(sql.SQL("INSERT INTO {} (label, prop) VALUES (%s, %s) "
                              "ON CONFLICT DO NOTHING").format(self._q["graph_indexes"]),
                      [label, prop])


# ---------------------------------------------------------------------------- helpers
def _all_columns(table: str) -> list[str]:
    return ["id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"]


def _parse_columns(table: str, columns: str) -> list[str]:
    if columns.strip() == "*":
        return _all_columns(table)
    allowed = set(_all_columns(table))
    names = [c.strip() for c in columns.split(",")]
    for c in names:
        if c not in allowed:
            raise InvalidArgumentError(f"unknown column {c!r} in {table}")
    return names


def _row(names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    d = dict(zip(names, row))
    if d.get("id") is not None:
        d["id"] = int(d["id"])
    return d


def _reject_constant(name: str) -> Any:
    raise InvalidArgumentError(f"{name} is not valid JSON for PostgreSQL")


def _json_text(value: Any, label: str) -> str:
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


def _parse_copy_vectors(buf: bytes | bytearray, dim: int) -> tuple[np.ndarray, np.ndarray]:
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


# ---------------------------------------------------------------------------- checksums
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


def _checksum(table: str, batches: Iterable[list[dict[str, Any]]]) -> str:
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
                elif _COLTYPES[c] == "float8" and v is not None:
                    v = float(v)
                elif isinstance(v, str) and _COLTYPES[c] == "jsonb":
                    v = json.loads(v)
                fields.append(_canon(v) if _COLTYPES[c] == "jsonb" else v)
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
    return _checksum(table, store.iter_rows(table, batch=5000))


# ---------------------------------------------------------------------------- where -> SQL
_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_INT64 = (-(2**63), 2**63 - 1)
# PostgreSQL float8 cannot hold a larger numeric; SQLite reads such JSON numbers as +-Inf.
_FMAX = "1.7976931348623157e308"


def _const(op: str, value_is_smaller: bool) -> str:
    """SQLite's answer when the two sides are of different classes (numbers < text)."""
    if op in ("=", "<>"):
        return "FALSE" if op == "=" else "TRUE"
    return "TRUE" if (op in ("<", "<=")) == value_is_smaller else "FALSE"


def _pg_scalar(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0  # SQLite's json_extract reads true/false as 1/0
    if value is None or isinstance(value, (int, float, str)):
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            raise OverflowError(f"where[{key!r}]: integer {value} does not fit in 64 bits")
        return value
    raise InvalidArgumentError(f"where[{key!r}]: unsupported value type {type(value).__name__}")


def _cmp(v: str, vp: list[Any], op: str, p: Any) -> tuple[str, list[Any]]:
    """``value op p`` with SQLite's rules; NULL when the value is missing or JSON null."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "FALSE", []  # SQLite binds None/NaN as NULL: never true
    if isinstance(p, str):
        text = f"(jsonb_build_array({v}) ->> 0) COLLATE \"C\" {op} %s::text"
        rendered = f"({v})::text COLLATE \"C\" {op} %s::text"
        c = _const(op, value_is_smaller=True)
        s = (f"CASE jsonb_typeof({v}) WHEN 'string' THEN {text} WHEN 'number' THEN {c} "
             f"WHEN 'boolean' THEN {c} WHEN 'array' THEN {rendered} "
             f"WHEN 'object' THEN {rendered} END")
        return s, [*vp, *vp, p, *vp, p, *vp, p]
    # numeric parameter: integers (and true/false) compare exactly, reals as doubles
    exact = p if isinstance(p, int) else Decimal(p)
    num = f"({v})::numeric"
    fval = (f"(CASE WHEN {num} > {_FMAX} THEN 'Infinity'::float8 WHEN {num} < -{_FMAX} "
            f"THEN '-Infinity'::float8 ELSE {num}::float8 END)")
    fp: list[Any] = [*vp, *vp, *vp]
    if isinstance(p, float) or float(p) == p:
        real, real_p = f"{fval} {op} %s::float8", [*fp, float(p)]
    else:  # an int no double equals: compare against the doubles around it
        f = float(p)
        lo = f if f < p else math.nextafter(f, -math.inf)
        hi = f if f > p else math.nextafter(f, math.inf)
        if op in ("=", "<>"):
            real, real_p = ("FALSE" if op == "=" else "TRUE"), []
        elif op in ("<", "<="):
            real, real_p = f"{fval} <= %s::float8", [*fp, lo]
        else:
            real, real_p = f"{fval} >= %s::float8", [*fp, hi]
    c = _const(op, value_is_smaller=False)
    s = (f"CASE jsonb_typeof({v}) WHEN 'number' THEN CASE WHEN scale({num}) = 0 AND {num} "
         f"BETWEEN {_INT64[0]} AND {_INT64[1]} THEN {num} {op} %s::numeric ELSE {real} END "
         f"WHEN 'boolean' THEN (CASE WHEN {v} = 'true'::jsonb THEN 1 ELSE 0 END) {op} "
         f"%s::numeric WHEN 'string' THEN {c} WHEN 'array' THEN {c} WHEN 'object' THEN {c} "
         "END")
    params = [*vp, *vp, *vp, *vp, exact, *real_p, *vp, exact]
    return s, params


def pg_where_sql(where: dict[str, Any] | None, column: str = "metadata"
                 ) -> tuple[str, list[Any]]:
    """Translate a metadata filter (the language of :func:`agentdb.storage.filters.where_sql`) into
    PostgreSQL JSONB SQL with ``%s`` placeholders: ``(sql, params)``, ``("TRUE", [])`` when
    empty. The SQL has no braces, so it can go through ``psycopg.sql.SQL(...).format()``.

    The results are the same as SQLite's ``json_extract`` translation on the same rows:
    numbers (and true/false, read as 1/0) compare numerically (integers exactly, reals as
    doubles), strings by their UTF-8 bytes, and across classes a number is less than a
    string (so ``$ne``/``$lt``/``$gt`` between a number and a string can match; ``$eq`` and
    ``$in`` never do). A missing key or JSON null behaves like SQL NULL: only
    ``$eq: None`` and ``$exists: False`` (missing key only) match it. Dotted keys walk into
    objects (never into arrays). Validation errors and messages are those of ``where_sql``.

    >>> pg_where_sql({})
    ('TRUE', [])
    >>> pg_where_sql({"x": {"$exists": True}})
    ('(metadata -> %s::text) IS NOT NULL', ['x'])
    """
    conds = conditions(where)
    if not conds:
        return "TRUE", []
    if not re.match(r"^[a-z_][a-z0-9_]*$", column):
        raise InvalidArgumentError(f"invalid column name {column!r}")
    parts: list[str] = []
    params: list[Any] = []
    for key, op, val in conds:
        path = key.split(".")
        v = "(" + column + "".join(" -> %s::text" for _ in path) + ")"
        vp: list[Any] = list(path)
        if op in _OPS:
            if val is None and op in ("$eq", "$ne"):
                test = f"{v} IS NULL OR jsonb_typeof({v}) = 'null'"
                parts.append(f"({test})" if op == "$eq" else f"NOT ({test})")
                params += [*vp, *vp]
                continue
            s, p = _cmp(v, vp, _OPS[op], _pg_scalar(key, val))
            parts.append(s)
            params += p
        elif op in ("$in", "$nin"):
            items = [_pg_scalar(key, x) for x in val]
            nulls = [x for x in items if x is None or (isinstance(x, float) and
                                                       math.isnan(x))]
            live = [x for x in items if not any(x is y for y in nulls)]
            if op == "$in":
                subs = [_cmp(v, vp, "=", x) for x in live]
                joiner = " OR "
            else:
                subs = [] if nulls else [_cmp(v, vp, "<>", x) for x in live]
                joiner = " AND "
            if not subs:  # NULL in a NOT IN list (or only NULLs in IN): never true
                parts.append("FALSE")
                continue
            parts.append("(" + joiner.join(f"({s})" for s, _ in subs) + ")")
            for _, p in subs:
                params += p
        else:  # $exists
            parts.append(f"{v} IS {'NOT ' if val else ''}NULL")
            params += vp
    return " AND ".join(parts), params
