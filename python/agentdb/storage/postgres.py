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

The store's parts live beside it: :mod:`.postgres_schema` (table names, column types, DDL and
migrations), :mod:`.postgres_sql` (filters as SQL), :mod:`.postgres_codecs` (values and rows
to and from PostgreSQL, vector adapters, COPY parsing), :mod:`.postgres_checksum` and
:mod:`.postgres_url` (URLs without their password).
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..engines.fusion import query_terms
from ..errors import (
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    StoreClosedError,
    StoreError,
)
from .postgres_checksum import sqlite_checksum, table_checksum
from .postgres_codecs import (
    all_columns,
    bulk_rows,
    check_matrix,
    convert_value,
    integrity_errors,
    json_text,
    parse_columns,
    parse_copy_vectors,
    raw_json,
    register_vector_numpy,
    row_dict,
    row_values,
    upsert_batch,
)
from .postgres_schema import (
    COLTYPES,
    EXTRA_MSG,
    HNSW_MAX_DIM,
    MIGRATIONS,
    NOT_NULL,
    OTHER_TABLES,
    SCHEMA_VERSION,
    TABLES,
    StoreTables,
    setup_schema,
)
from .postgres_sql import age_sql, filter_sql, pg_where_sql
from .postgres_url import attempt_timeout, describe_url, redact_password
from .records import check_vector
from .sqlite import COLLECTIONS

try:
    import psycopg
    import psycopg_pool
    from psycopg import sql
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(EXTRA_MSG) from _exc

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "IntegrityError", "PostgresStore",
           "pg_where_sql", "sqlite_checksum"]

_FILTERED_EF = 400  # hnsw.ef_search floor of a filtered search
#: How long the pool keeps re-trying one lost connection (psycopg_pool doubles the pause
#: between attempts: 1, 2, 4, 8, 16 s, ...). A chain that gives up frees its slot, and the
#: next caller starts a new one at once, so the pool reconnects within about a second of
#: the server (or a promoted standby) being back, however long it was gone.
_RECONNECT_S = 1.0
#: A caller waiting for a pooled connection asks again this often (each ask may start a
#: new connection attempt) until ``connect_timeout`` has passed.
_WAIT_SLICE_S = 0.5
_MAX_EF = 1000
#: The condition (one parameter: now, epoch seconds) of an unexpired record.
_LIVE = "(expires_at IS NULL OR expires_at > %s)"


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
        tables = StoreTables(schema, table_prefix)  # checks both names
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
            raise InvalidArgumentError(f"dim must be a non-negative integer, got {dim!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidArgumentError(f"pool_size must be a positive integer, got {pool_size!r}")
        if not connect_timeout > 0:
            raise InvalidArgumentError(f"connect_timeout must be positive, got {connect_timeout!r}")
        self.url = url
        self.path = redact_password(url)
        self.memory = False
        self.readonly = readonly
        self.schema = schema
        self.prefix = table_prefix
        self.dim = int(dim)
        self.generation = 0
        self.pending_gen = 0
        self._timeout = float(connect_timeout)
        self._attempt_s = attempt_timeout(url, self._timeout)
        self._where, self._password = describe_url(url)
        self._closed = False
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._seq: dict[str, str] = {}
        self._ext_schema = "public"
        self._tables = tables
        self._q = tables.q
        try:
            conn = self._connect()
            try:
                self._ext_schema, self._seq = setup_schema(
                    conn, tables, int(dim), readonly=readonly, where=self._where,
                    path=self.path)
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
            return psycopg.connect(self.url, connect_timeout=self._attempt_s,
                                   application_name="agentdb", autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self._where}: "
                             f"{self._scrub(str(exc).strip())}") from None

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT set_config('search_path', quote_ident(%s), false)",
                     [self._ext_schema])
        register_vector_numpy(conn)
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        conn.commit()

    def _open_pool(self, pool_size: int) -> None:
        pool = psycopg_pool.ConnectionPool(
            self.url, min_size=1, max_size=pool_size, open=True, timeout=self._timeout,
            reconnect_timeout=_RECONNECT_S, configure=self._configure,
            name=f"agentdb-{self.schema}",
            # a pooled connection is checked when handed out, so connections to a server that
            # went away (a restart, a failover to a standby) are replaced, not used to fail
            check=psycopg_pool.ConnectionPool.check_connection,
            kwargs={"connect_timeout": self._attempt_s, "application_name": "agentdb"})
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
        deadline = time.monotonic() + self._timeout
        while True:  # in slices: each new ask may start a connection attempt (see above)
            left = deadline - time.monotonic()
            try:
                cm = self._pool.connection(timeout=max(0.001, min(_WAIT_SLICE_S, left)))
                conn = cm.__enter__()
                break
            except psycopg_pool.PoolTimeout:
                if left <= _WAIT_SLICE_S:
                    raise StoreError(f"no PostgreSQL connection to {self._where} within "
                                     f"{self._timeout:g}s (pool exhausted or server down)"
                                     ) from None
        try:
            yield conn
        except BaseException as exc:
            if not cm.__exit__(type(exc), exc, exc.__traceback__):
                if isinstance(exc, psycopg.OperationalError) and (
                        conn.broken or conn.closed):
                    raise StoreError(
                        f"lost the connection to PostgreSQL at {self._where} "
                        f"({self._scrub(' '.join(str(exc).split()))[:300]}); a write in "
                        "progress was not acknowledged (it may or may not have committed)"
                    ) from exc
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

    # ---- tables ------------------------------------------------------------------------------
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

    # ---- vectors and ids ----------------------------------------------------------------------
    def _vec(self, embedding: Any, name: str = "embedding") -> np.ndarray:
        return check_vector(embedding, self.dim, name)

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
        vals = row_values(table, values)
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
        with integrity_errors(table):
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
            v = convert_value(table, c, values[c])
            if v is None and c in NOT_NULL[table]:
                raise IntegrityError(f"NOT NULL constraint failed: {table}.{c}")
            params.append(v)
        sets = [*cols, "updated_at", "gen"]
        params += [time.time(), self.pending_gen]
        if embedding is not None:
            sets.append("embedding")
            params.append(self._vec(embedding))
        query = sql.SQL("UPDATE {} SET {} WHERE id = %s AND " + _LIVE).format(
            t, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in sets))
        with integrity_errors(table):
            cur = w.execute(query, [*params, int(row_id), time.time()])
        if cur.rowcount == 0:
            raise NotFoundError(f"unknown {table[:-1]} id {row_id}")

    def record_skill_outcome(self, w: psycopg.Connection, name: str, success: bool,
                             now: float) -> None:
        """One more use of a skill: its running success rate and use count (inside
        :meth:`write`; an unknown name changes nothing)."""
        w.execute(sql.SQL("UPDATE {} SET success_rate = (success_rate * uses + %s) / (uses + 1), "
                          "uses = uses + 1, updated_at = %s, gen = %s WHERE name = %s").format(
                              self._table("skills")),
                  [1.0 if success else 0.0, now, self.pending_gen, name])

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
            return [row_dict(cols, r) for r in cur.fetchall()]

    def get(self, table: str, ids: Sequence[int],
            with_embedding: bool = True, expired: bool = False) -> dict[int, dict[str, Any]]:
        """Rows by id as dicts (with the embedding as float32 and ``gen`` unless
        ``with_embedding`` is False); expired records are left out unless ``expired``."""
        self._table(table)
        cols = all_columns(table) if with_embedding else [
            "id", *COLLECTIONS[table], "created_at", "updated_at"]
        id_list = [int(i) for i in ids]
        if not id_list:
            return {}
        if expired:
            rows = self._select(table, cols, sql.SQL("WHERE id = ANY(%s::bigint[])"), [id_list])
        else:
            rows = self._select(table, cols, sql.SQL("WHERE id = ANY(%s::bigint[]) AND " + _LIVE),
                                [id_list, time.time()])
        return {r["id"]: r for r in rows}

    def find(self, table: str, column: str, value: Any) -> dict[str, Any] | None:
        """The first row whose ``column`` equals ``value`` (``None`` never matches)."""
        self._table(table)
        if column not in COLLECTIONS[table] and column != "id":
            raise InvalidArgumentError(f"unknown column {column}")
        if value is None:
            return None
        param = int(value) if column == "id" else convert_value(table, column, value)
        rows = self._select(table, all_columns(table), sql.SQL(
            "WHERE {} = %s AND " + _LIVE + " LIMIT 1").format(sql.Identifier(column)),
            [param, time.time()])
        return rows[0] if rows else None

    def count(self, table: str, expired: bool = False) -> int:
        """Number of unexpired records in a collection (every row if ``expired``; a real
        ``COUNT(*)``)."""
        t = self._table(table)
        with self._conn() as conn:
            if expired:
                return int(conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(t)
                                        ).fetchone()[0])
            return int(conn.execute(sql.SQL("SELECT COUNT(*) FROM {} WHERE " + _LIVE).format(t),
                                    [time.time()]).fetchone()[0])

    def approx_count(self, table: str) -> int:
        """Rows in a collection, from the planner's estimate (``pg_class.reltuples``, no
        scan) when it says 10,000 or more, else a real ``COUNT(*)``: for thresholds such as
        a hybrid search's term frequency, paid on every search."""
        t = self._table(table)
        with self._conn() as conn:
            row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                               [t.as_string(conn)]).fetchone()
            if row is not None and row[0] is not None and float(row[0]) >= 10_000:
                return int(row[0])
            return int(conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(t)).fetchone()[0])

    def iter_rows(self, table: str, since_gen: int = -1, batch: int = 2000,
                  columns: str = "*") -> Iterator[list[dict[str, Any]]]:
        """Rows with ``gen > since_gen`` in id order, in batches.

        ``columns`` is ``"*"`` or a comma-separated list of column names (``id`` is always
        included); each batch is read on its own pooled connection.
        """
        self._table(table)
        cols = parse_columns(table, columns)
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
        cols = parse_columns(table, ",".join(columns)) if len(columns) else []
        exprs = []
        for c in ["id", *cols]:
            if COLTYPES.get(c) == "jsonb":
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
    def filter_ids(self, table: str, *, min_reward: float | None = None,
                   success: bool | None = None, session_id: str | None = None,
                   where: dict[str, Any] | None = None,
                   created_before: float | None = None, updated_before: float | None = None,
                   reward_below: float | None = None, expired: bool | None = False
                   ) -> np.ndarray:
        """Ids matching the filters (sorted int64): ``min_reward`` (the success rate for
        skills), ``success``, ``session_id``, a metadata ``where`` (see
        :func:`pg_where_sql`), ``created_before`` and ``updated_before`` (epoch seconds),
        ``reward_below``; ``expired``: False = unexpired records only, True = expired ones
        only, None = both. The PostgreSQL counterpart of ``SQLiteStore.filter_ids``."""
        t = self._table(table)
        parts, params = filter_sql(table, min_reward, success, session_id, where)
        more, more_params = age_sql(table, created_before, updated_before, reward_below)
        parts, params = parts + more, params + more_params
        if expired is not None:
            parts.append(_LIVE if not expired else "expires_at <= %s")
            params.append(time.time())
        cond = sql.SQL(" AND ".join(f"({p})" for p in parts) if parts else "TRUE")
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL("SELECT id FROM {} WHERE {} ORDER BY id").format(t, cond),
                        params)
            return np.fromiter((r[0] for r in cur), dtype=np.int64)

    def text_search(self, table: str, query: str, n: int, *, min_reward: float | None = None,
                    success: bool | None = None, session_id: str | None = None,
                    where: dict[str, Any] | None = None, max_df: int | None = None,
                    keep_common: bool = False) -> list[tuple[int, float]]:
        """The ``n`` best full-text matches of ``query``: the generated ``fts`` column
        (``to_tsvector('simple', ...)`` of the text columns, GIN-indexed) against the OR of
        one ``plainto_tsquery`` per term, ranked by ``ts_rank_cd``, with the filters of
        :meth:`filter_ids` in the same query: ``(id, score)``, higher better (the
        PostgreSQL counterpart of ``SQLiteStore.text_search``, ``max_df`` and ``keep_common``
        included)."""
        t = self._table(table)
        terms = query_terms(query)
        if max_df is not None and terms:
            count = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE fts @@ "
                            "plainto_tsquery('simple'::regconfig, %s) LIMIT %s) AS m").format(t)
            with self._conn() as conn:
                kept = [w for w in terms
                        if int(conn.execute(count, [w, max_df + 1]).fetchone()[0]) <= max_df]
            terms = kept if kept or not keep_common else terms
        if not terms:
            return []
        tsq = " || ".join(["plainto_tsquery('simple'::regconfig, %s)"] * len(terms))
        parts, params = filter_sql(table, min_reward, success, session_id, where)
        cond = "".join(f" AND ({p})" for p in [*parts, _LIVE])
        params.append(time.time())
        q = sql.SQL(f"SELECT id, ts_rank_cd(fts, tsq) AS score FROM {{}}, (SELECT {tsq} AS tsq) "
                    f"AS query WHERE fts @@ tsq{cond} ORDER BY score DESC, id LIMIT %s").format(t)
        with self._conn() as conn:
            rows = conn.execute(q, [*terms, *params, int(n)]).fetchall()
        return [(int(i), float(sc)) for i, sc in rows]

    def _expiring(self, table: str) -> bool:
        """Whether any record of ``table`` has an expiry (a partial-index probe)."""
        with self._conn() as conn:
            return bool(conn.execute(sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE expires_at IS NOT NULL)").format(
                    self._table(table))).fetchone()[0])

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
        fewer than ``k`` rows although ``k`` match, or miss the nearest matches. So a filtered
        search collects at least ``max(400, 8 k)`` candidates, and when that still yields
        fewer than ``k`` rows although ``k`` match, the search is retried with
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
        parts, params = filter_sql(table, min_reward, success, session_id, where)
        # expired rows are left out too; like a filter, that can leave fewer than k rows
        # after the scan, which the retries below make up for
        cond = sql.SQL(" AND ".join(f"({p})" for p in [*parts, _LIVE]))
        query = sql.SQL("SELECT id, embedding <=> %b AS d FROM {} WHERE {} "
                        "ORDER BY embedding <=> %b LIMIT %s").format(t, cond)
        args = [vec, *params, time.time(), vec, int(k)]
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
                    # never a prepared statement for the exact scan: psycopg prepares a query
                    # run often, and a cached plan keeps its HNSW index scan whatever
                    # enable_indexscan says now
                    cur.execute(query, args, prepare=False if exact else None)
                    return [(int(a), float(b)) for a, b in cur.fetchall()]

        exact_only = k > _MAX_EF
        ef = None if ef_search is None else max(int(ef_search), min(k, _MAX_EF))
        if parts:  # the filter drops candidates after the scan: collect more of them
            ef = max(ef or 0, _FILTERED_EF, min(8 * k, _MAX_EF))
        rows = run(ef, exact_only)
        if len(rows) < k and not exact_only and (parts or self._expiring(table)):
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
        arr = check_matrix(embeddings, n, self.dim)
        now = time.time()
        prepared = bulk_rows(table, rows, now)
        with w.cursor() as cur:
            cur.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                        [self._seq[table], n])
            ids = [int(r[0]) for r in cur.fetchall()]
        names = ["id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"]
        types = ["int8", *(COLTYPES[c] for c in COLLECTIONS[table]), "vector", "float8",
                 "float8", "int8"]
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            t, sql.SQL(", ").join(map(sql.Identifier, names)))
        gen = self.pending_gen
        with integrity_errors(table), w.cursor() as cur, cur.copy(stmt) as cp:
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
        names = ["id", *COLLECTIONS[table], "embedding", "created_at", "updated_at", "gen"]
        batch = upsert_batch(table, rows, self.dim, self.pending_gen)
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in names[1:])
        stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}"
                       ).format(t, sql.SQL(", ").join(map(sql.Identifier, names)),
                                sql.SQL(", ").join(sql.Placeholder() * len(names)), updates)
        with integrity_errors(table), w.cursor() as cur:
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
        if self.readonly or self.count(table) > 0 or self.dim > HNSW_MAX_DIM:
            yield False
            return
        idx = sql.Identifier(self.schema, self._tables.hnsw_index(table))
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
                        sql.Identifier(self._tables.hnsw_index(table)), ident))

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
        return parse_copy_vectors(buf, self.dim)

    def checksum(self, table: str) -> str:
        """An order-independent checksum of the rows' logical content (ids, columns,
        metadata, timestamps, embedding bytes; not ``gen``). The same rows give the same
        value here and from :func:`sqlite_checksum`."""
        self._table(table)
        return table_checksum(table, self.iter_rows(table, batch=5000))

    def file_size(self) -> int:
        """Bytes PostgreSQL uses for this store's tables and their indexes."""
        names = [self._tables.regname(n) for n in (*TABLES, *OTHER_TABLES)]
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
                  [int(nid), raw_json(json.dumps(list(labels))),
                   raw_json(json_text(props, "graph node props")), self.pending_gen])

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
            [int(eid), type, raw_json(json.dumps([int(x) for x in tail])),
             raw_json(json.dumps([int(x) for x in head])), float(confidence),
             float(timestamp), raw_json(json_text(props, "graph edge props")),
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

    def graph_node_rows(self, since_gen: int = -1
                        ) -> Iterator[tuple[int, list[str], str | dict[str, Any]]]:
        """Graph nodes written after generation ``since_gen`` as ``(id, labels, props)``, by
        id (the same contract as ``SQLiteStore.graph_node_rows``; props come decoded)."""
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL("SELECT id, labels, props FROM {} WHERE gen > %s ORDER BY id"
                                ).format(self._q["graph_nodes"]), [int(since_gen)])
            rows = cur.fetchall()
        for nid, labels, props in rows:
            yield int(nid), list(labels), dict(props)

    def graph_edge_rows(self, since_gen: int = -1
                        ) -> Iterator[tuple[int, str, list[int], list[int], float, float, bool]]:
        """Hyperedges written after generation ``since_gen`` as ``(id, type, tail, head,
        confidence, timestamp, has_props)``, by id (see ``SQLiteStore.graph_edge_rows``)."""
        with self._conn() as conn, conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL('SELECT id, type, tail, head, confidence, "timestamp", '
                                "props <> '{{}}'::jsonb FROM {} WHERE gen > %s ORDER BY id"
                                ).format(self._q["graph_edges"]), [int(since_gen)])
            rows = cur.fetchall()
        for row in rows:
            yield (int(row[0]), row[1], [int(x) for x in row[2]], [int(x) for x in row[3]],
                   float(row[4]), float(row[5]), bool(row[6]))

    def graph_props(self, kind: str, ids: Sequence[int], conn: psycopg.Connection | None = None
                    ) -> dict[int, dict[str, Any]]:
        """Stored properties of graph ``kind`` ("nodes" or "edges") by id (missing ids are
        absent; ``conn``: the open write transaction; see ``SQLiteStore.graph_props``)."""
        table = self._q[{"nodes": "graph_nodes", "edges": "graph_edges"}[kind]]
        q = sql.SQL("SELECT id, props FROM {} WHERE id = ANY(%s::bigint[])").format(table)
        if conn is not None:
            return {int(i): dict(p) for i, p in conn.execute(q, [[int(i) for i in ids]])}
        with self._conn() as c:
            return {int(i): dict(p) for i, p in c.execute(q, [[int(i) for i in ids]])}

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
        probe = raw_json(json.dumps([int(nid)]))
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
