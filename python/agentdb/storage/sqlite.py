"""The embedded system of record: one SQLite file in WAL mode.

Rows carry a ``gen`` (the store's write generation when they were last written) and deletions
are logged with theirs, so an index file saved at generation G is brought up to date by
replaying only what came after G. One process may write a store at a time (an ``flock`` on
``<path>.lock``); any number of threads may read while one thread writes.

>>> s = SQLiteStore(":memory:", dim=4)
>>> s.count("patterns")
0
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..engines.fusion import fts5_match, query_terms
from ..errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    StoreClosedError,
    StoreError,
    StoreLockedError,
)
from .filters import where_sql
from .postgres_sql import age_sql, filter_sql

try:  # POSIX advisory locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["COLLECTIONS", "DEFAULTS", "SCHEMA_VERSION", "SQLiteStore", "column_value",
           "live_clause"]

#: 2 added ``expires_at`` to every collection and ``uses`` to patterns (an older store is
#: upgraded when it is first opened for writing).
SCHEMA_VERSION = 2

#: Columns of each collection table (besides id, embedding, created_at, updated_at, gen).
COLLECTIONS: dict[str, tuple[str, ...]] = {
    "patterns": ("session_id", "task", "reward", "success", "input", "output", "critique",
                 "metadata", "uses", "expires_at"),
    "episodes": ("session_id", "task", "reward", "success", "input", "output", "critique",
                 "latency_ms", "tokens", "skills", "metadata", "expires_at"),
    "skills": ("name", "description", "signature", "code", "success_rate", "uses", "metadata",
               "expires_at"),
}

#: The value a column added by a later schema takes when a write leaves it out (rows of
#: older stores and exports carry no pattern ``uses``).
DEFAULTS: dict[str, dict[str, Any]] = {"patterns": {"uses": 1}, "episodes": {}, "skills": {}}

#: Columns added by schema version 2: (table, column, SQL type and default).
_V2_COLUMNS = (("patterns", "uses", "INTEGER NOT NULL DEFAULT 1"),
               ("patterns", "expires_at", "REAL"), ("episodes", "expires_at", "REAL"),
               ("skills", "expires_at", "REAL"))


def column_value(table: str, column: str, values: dict[str, Any]) -> Any:
    """``values[column]``, or the column's default when it is missing or None.

    >>> column_value("patterns", "uses", {}), column_value("patterns", "task", {"task": "t"})
    (1, 't')
    """
    v = values.get(column)
    return DEFAULTS[table].get(column) if v is None else v


def live_clause(prefix: str = "") -> str:
    """The SQL condition (one ``?``: now, epoch seconds) a visible record meets: it has no
    expiry, or it expires later.

    >>> live_clause("c.")
    '(c.expires_at IS NULL OR c.expires_at > ?)'
    """
    return f"({prefix}expires_at IS NULL OR {prefix}expires_at > ?)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patterns (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT, task TEXT NOT NULL, reward REAL NOT NULL, success INTEGER NOT NULL,
  input TEXT, output TEXT, critique TEXT, metadata TEXT NOT NULL DEFAULT '{}',
  uses INTEGER NOT NULL DEFAULT 1, expires_at REAL,
  embedding BLOB NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
  gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS patterns_session ON patterns(session_id);
CREATE INDEX IF NOT EXISTS patterns_task ON patterns(task);
CREATE INDEX IF NOT EXISTS patterns_created ON patterns(created_at);
CREATE INDEX IF NOT EXISTS patterns_gen ON patterns(gen);
CREATE TABLE IF NOT EXISTS episodes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT, task TEXT NOT NULL, reward REAL NOT NULL, success INTEGER NOT NULL,
  input TEXT, output TEXT, critique TEXT, latency_ms REAL, tokens INTEGER,
  skills TEXT NOT NULL DEFAULT '[]', metadata TEXT NOT NULL DEFAULT '{}', expires_at REAL,
  embedding BLOB NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
  gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS episodes_session ON episodes(session_id);
CREATE INDEX IF NOT EXISTS episodes_task ON episodes(task);
CREATE INDEX IF NOT EXISTS episodes_gen ON episodes(gen);
CREATE TABLE IF NOT EXISTS skills (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '', signature TEXT, code TEXT,
  success_rate REAL NOT NULL DEFAULT 0, uses INTEGER NOT NULL DEFAULT 0,
  metadata TEXT NOT NULL DEFAULT '{}', expires_at REAL,
  embedding BLOB NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
  gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS skills_gen ON skills(gen);
CREATE TABLE IF NOT EXISTS graph_nodes (
  id INTEGER PRIMARY KEY, labels TEXT NOT NULL DEFAULT '[]', props TEXT NOT NULL DEFAULT '{}',
  gen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS graph_edges (
  id INTEGER PRIMARY KEY, type TEXT NOT NULL, tail TEXT NOT NULL, head TEXT NOT NULL,
  confidence REAL NOT NULL, timestamp REAL NOT NULL, props TEXT NOT NULL DEFAULT '{}',
  gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS graph_nodes_gen ON graph_nodes(gen);
CREATE INDEX IF NOT EXISTS graph_edges_gen ON graph_edges(gen);
CREATE TABLE IF NOT EXISTS graph_indexes (
  label TEXT NOT NULL, prop TEXT NOT NULL, PRIMARY KEY (label, prop));
CREATE TABLE IF NOT EXISTS deletions (
  collection TEXT NOT NULL, id INTEGER NOT NULL, gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS deletions_gen ON deletions(collection, gen);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, id INTEGER NOT NULL,
  at REAL NOT NULL);
"""


#: The columns of each collection in its full-text index (FTS5, BM25 ranking).
TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "patterns": ("task", "input", "output", "critique"),
    "episodes": ("task", "input", "output", "critique"),
    "skills": ("name", "description", "signature"),
}


def _fts_schema() -> str:
    """FTS5 tables over the collections (external content: the rows stay in the collection
    tables) and the triggers that keep them in the same transaction as every write."""
    out = []
    for table, cols in TEXT_COLUMNS.items():
        c = ", ".join(cols)
        new = ", ".join(f"new.{x}" for x in cols)
        old = ", ".join(f"old.{x}" for x in cols)
        out.append(f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {table}_fts USING fts5({c}, content='{table}',
  content_rowid='id');
CREATE TRIGGER IF NOT EXISTS {table}_fts_insert AFTER INSERT ON {table} BEGIN
  INSERT INTO {table}_fts(rowid, {c}) VALUES (new.id, {new});
END;
CREATE TRIGGER IF NOT EXISTS {table}_fts_delete AFTER DELETE ON {table} BEGIN
  INSERT INTO {table}_fts({table}_fts, rowid, {c}) VALUES ('delete', old.id, {old});
END;
CREATE TRIGGER IF NOT EXISTS {table}_fts_update AFTER UPDATE OF {c} ON {table} BEGIN
  INSERT INTO {table}_fts({table}_fts, rowid, {c}) VALUES ('delete', old.id, {old});
  INSERT INTO {table}_fts(rowid, {c}) VALUES (new.id, {new});
END;""")
    return "\n".join(out)


_FTS_SCHEMA = _fts_schema()


class SQLiteStore:
    """Rows of patterns, episodes and skills in one SQLite file (or ``":memory:"``).

    ``durability="full"`` (default) fsyncs every commit, so a committed write survives power
    loss; ``"normal"`` survives a killed process but may lose the last commits on power loss.

    >>> s = SQLiteStore(":memory:", dim=2)
    >>> with s.write() as w:
    ...     rid = s.insert(w, "patterns", {"task": "t", "reward": 0.0, "success": 0,
    ...                    "session_id": None, "input": None, "output": None,
    ...                    "critique": None, "metadata": "{}"}, np.ones(2, np.float32))
    >>> s.count("patterns")
    1
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dim: int,
        *,
        readonly: bool = False,
        durability: str = "full",
        timeout: float = 30.0,
    ) -> None:
        if durability not in ("full", "normal"):
            raise InvalidArgumentError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.readonly = readonly
        self._timeout = timeout
        self._sync = "FULL" if durability == "full" else "NORMAL"
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._closed = False
        self._all_conns: list[sqlite3.Connection] = []
        self.generation = 0
        self.pending_gen = 0
        self.outbox = False
        self._conns_lock = threading.Lock()
        if not self.memory:
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise StoreError(f"directory of '{self.path}' does not exist: {parent}")
            if readonly and not Path(self.path).exists():
                raise FileNotFoundError(f"no AgentDB store at '{self.path}'")
            if not readonly:
                self._acquire_process_lock()
        try:
            self._writer = self._connect(write=not readonly)
            if not readonly:
                self._writer.executescript(_SCHEMA)
                self._init_meta(dim)
                self._upgrade_v2()
                self._init_fts()
            #: the collection columns this store's tables have (a store of schema 1 opened
            #: read-only has no expiry or pattern uses: nothing in it expires)
            self.columns = {t: tuple(c for c in cols if c in self._table_columns(t))
                            for t, cols in COLLECTIONS.items()}
            self.expiring = {t: "expires_at" in cols for t, cols in self.columns.items()}
            self.dim = int(self.meta("dim") or dim)
            self.generation = int(self.meta("generation") or 0)
            # once a mirror was attached, every write is logged for it until it is detached
            self.outbox = self.meta("mirror") == "on"
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"'{self.path}' is not a readable AgentDB store: {exc}") from None
        except BaseException:
            self.close()
            raise

    # ---- connections ------------------------------------------------------------------------
    def _acquire_process_lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise StoreLockedError(
                f"'{self.path}' is open for writing by another process (pid {holder}); "
                "close it there, or open this one with readonly=True"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _connect(self, write: bool) -> sqlite3.Connection:
        if self.memory:
            uri, target = True, f"file:agentdb-mem-{uuid.uuid4().hex}?mode=memory&cache=shared"
        elif self.readonly or not write:
            uri, target = True, Path(self.path).resolve().as_uri() + (
                "?mode=ro" if self.readonly else "")
        else:
            uri, target = False, self.path
        conn = sqlite3.connect(target, uri=uri, timeout=self._timeout, check_same_thread=False,
                               isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        if not self.readonly and not self.memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._sync}")
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        """A connection for this thread (readers never block the writer in WAL mode)."""
        if self._closed:
            raise StoreClosedError(f"store '{self.path}' is closed")
        if self.memory:
            return self._writer
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(write=False)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close every connection and release the process lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._conns_lock:
            for c in self._all_conns:
                try:
                    c.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
            self._all_conns.clear()
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            finally:
                self._lock_fd = None

    def _table_columns(self, table: str) -> set[str]:
        return {r[1] for r in self._writer.execute(f"PRAGMA table_info({table})")}

    def _upgrade_v2(self) -> None:
        """Schema 1 -> 2 in one transaction: the expiry and pattern-uses columns, and the
        indexes of the expiry columns."""
        missing = [(t, c, d) for t, c, d in _V2_COLUMNS if c not in self._table_columns(t)]
        script = "".join(f"ALTER TABLE {t} ADD COLUMN {c} {d};" for t, c, d in missing)
        script += "".join(f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t}(expires_at) "
                          "WHERE expires_at IS NOT NULL;" for t in COLLECTIONS)
        script += ("UPDATE meta SET value='2' WHERE key='schema_version' "
                   "AND CAST(value AS INTEGER) < 2;")
        with self._write_lock:
            try:
                self._writer.executescript(f"BEGIN IMMEDIATE;{script}COMMIT;")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise

    def live(self, table: str, prefix: str = "") -> tuple[list[str], list[Any]]:
        """The conditions and parameters that leave out expired records (none for a table
        without expiry)."""
        if not self.expiring[table]:
            return [], []
        return [live_clause(prefix)], [time.time()]

    # ---- full-text ----------------------------------------------------------------------------
    def _init_fts(self) -> None:
        """Create the full-text indexes; a store made before them gets them filled from its
        rows once (in one transaction)."""
        have = {r[0] for r in self._writer.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%\\_fts' "
            "ESCAPE '\\'")}
        if all(f"{t}_fts" in have for t in TEXT_COLUMNS):
            return
        fill = "".join(f"INSERT INTO {t}_fts({t}_fts) VALUES ('rebuild');"
                       for t in TEXT_COLUMNS if f"{t}_fts" not in have)
        with self._write_lock:
            try:  # one transaction: the tables, their triggers and their first fill
                self._writer.executescript(f"BEGIN IMMEDIATE;{_FTS_SCHEMA};{fill}COMMIT;")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise

    def text_search(self, table: str, query: str, n: int, *, min_reward: float | None = None,
                    success: bool | None = None, session_id: str | None = None,
                    where: dict[str, Any] | None = None, max_df: int | None = None,
                    keep_common: bool = False) -> list[tuple[int, float]]:
        """The ``n`` best full-text matches of ``query`` (BM25 over the collection's text
        columns, :data:`TEXT_COLUMNS`), with the filters of :meth:`filter_ids` applied in the
        same query: ``(id, score)``, higher scores better (``-bm25``). ``max_df``: leave
        out the terms found in more than that many records (what a hybrid search does, so
        that words like "how" or "python" do not bring records of their own), unless that
        leaves none and ``keep_common`` is set (a text search of common words only).

        >>> s = SQLiteStore(":memory:", dim=2)
        >>> with s.write() as w:
        ...     a = s.insert(w, "patterns", {"task": "retry on ERR_CONN_RESET", "reward": 0.0,
        ...                  "success": 0, "session_id": None, "input": None, "output": None,
        ...                  "critique": None, "metadata": "{}"}, np.ones(2, np.float32))
        >>> [i for i, _ in s.text_search("patterns", "err_conn_reset", 5)] == [a]
        True
        """
        terms = query_terms(query)
        if max_df is not None:
            kept = [t for t in terms if self._term_df(table, t, max_df + 1) <= max_df]
            terms = kept if kept or not keep_common else terms
        if not terms:
            return []
        conds, params = _filter_conds(table, min_reward, success, session_id, where, "c.")
        lc, lp = self.live(table, "c.")
        conds, params = conds + lc, params + lp
        cond = "".join(f" AND ({c})" for c in conds)
        q = (f"SELECT f.rowid, -bm25({table}_fts) AS score FROM {table}_fts AS f "
             f"JOIN {table} AS c ON c.id = f.rowid WHERE {table}_fts MATCH ?{cond} "
             "ORDER BY score DESC, f.rowid LIMIT ?")
        try:
            rows = self._reader().execute(q, [fts5_match(terms), *params, int(n)]).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise StoreError(f"'{self.path}' has no full-text index yet: open it once "
                                 "for writing to build it") from None
            raise
        return [(int(i), float(sc)) for i, sc in rows]

    def _term_df(self, table: str, term: str, cap: int) -> int:
        """How many records contain ``term``, counted up to ``cap`` (bounded cost)."""
        try:
            row = self._reader().execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {table}_fts WHERE {table}_fts MATCH ? "
                "LIMIT ?)", (fts5_match([term]), int(cap))).fetchone()
        except sqlite3.OperationalError:
            return 0  # no index yet: text_search itself says so
        return int(row[0])

    # ---- meta -------------------------------------------------------------------------------
    def _init_meta(self, dim: int) -> None:
        cur = self._writer.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if cur is None:
            with self.write() as w:
                w.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", [
                    ("schema_version", str(SCHEMA_VERSION)), ("dim", str(dim)),
                    ("generation", "0"), ("created_at", str(time.time()))])
        elif int(cur[0]) > SCHEMA_VERSION:
            raise StoreError(f"'{self.path}' has schema version {cur[0]}; this AgentDB reads "
                             f"up to {SCHEMA_VERSION} (upgrade agentdb)")
        stored = self._writer.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
        if stored is not None and int(stored[0]) != int(dim) and dim != 0:
            raise InvalidArgumentError(f"dimension mismatch: '{self.path}' stores dim {stored[0]}, "
                                       f"opened with dim {dim}")

    def meta(self, key: str) -> str | None:
        """Read one meta value.

        >>> SQLiteStore(":memory:", dim=3).meta("dim")
        '3'
        """
        row = self._reader().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Write one meta value in its own transaction."""
        with self.write() as w:
            w.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                      "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    # ---- transactions -----------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: commits on success, rolls back on any exception.

        The generation counter advances once per transaction; rows written inside it carry
        ``self.pending_gen``.
        """
        if self.readonly:
            raise StoreError(f"store '{self.path}' is open read-only")
        if self._closed:
            raise StoreClosedError(f"store '{self.path}' is closed")
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            self.pending_gen = self.generation + 1
            try:
                yield conn
                conn.execute("UPDATE meta SET value=? WHERE key='generation'",
                             (str(self.pending_gen),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.generation = self.pending_gen

    # ---- rows -------------------------------------------------------------------------------
    def insert(self, w: sqlite3.Connection, table: str, values: dict[str, Any],
               embedding: np.ndarray, row_id: int | None = None,
               created_at: float | None = None) -> int:
        """Insert one row (inside :meth:`write`); returns its id."""
        cols = COLLECTIONS[table]
        now = time.time()
        names = ["id", *cols, "embedding", "created_at", "updated_at", "gen"]
        params = [row_id, *(column_value(table, c, values) for c in cols), _blob(embedding),
                  created_at if created_at is not None else now, now, self.pending_gen]
        sql = (f"INSERT INTO {table}({', '.join(names)}) "
               f"VALUES ({', '.join('?' * len(names))})")
        rid = int(w.execute(sql, params).lastrowid)
        self._log(w, table, [rid])
        return rid

    def upsert_rows(self, w: sqlite3.Connection, table: str,
                    rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace whole rows, keeping their ids and timestamps (inside
        :meth:`write`; used by migration). Each row has ``id``, every column, ``embedding``,
        ``created_at`` and ``updated_at``."""
        cols = COLLECTIONS[table]
        names = ["id", *cols, "embedding", "created_at", "updated_at", "gen"]
        sql = (f"INSERT INTO {table}({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
               f"ON CONFLICT(id) DO UPDATE SET "
               + ", ".join(f"{c}=excluded.{c}" for c in names[1:]))
        params = []
        for r in rows:
            vals = []
            for c in cols:
                v = column_value(table, c, r)
                if c in ("metadata", "skills") and not isinstance(v, str):
                    v = json.dumps(v if v is not None else ({} if c == "metadata" else []),
                                   allow_nan=False)
                elif c == "success" and v is not None:
                    v = int(bool(v))
                vals.append(v)
            params.append([int(r["id"]), *vals, _blob(r["embedding"]), float(r["created_at"]),
                           float(r["updated_at"]), self.pending_gen])
        w.executemany(sql, params)
        self._log(w, table, [int(r["id"]) for r in rows])

    def update(self, w: sqlite3.Connection, table: str, row_id: int, values: dict[str, Any],
               embedding: np.ndarray | None = None) -> None:
        """Update some columns of one row (inside :meth:`write`)."""
        cols = [c for c in values if c in COLLECTIONS[table]]
        unknown = set(values) - set(COLLECTIONS[table])
        if unknown:
            raise InvalidArgumentError(f"unknown {table} field(s): {', '.join(sorted(unknown))}")
        sets = [f"{c}=?" for c in cols] + ["updated_at=?", "gen=?"]
        params: list[Any] = [values[c] for c in cols] + [time.time(), self.pending_gen]
        if embedding is not None:
            sets.append("embedding=?")
            params.append(_blob(embedding))
        lc, lp = self.live(table)
        params += [row_id, *lp]
        cur = w.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE "
                        + " AND ".join(["id=?", *lc]), params)
        if cur.rowcount == 0:
            raise NotFoundError(f"unknown {table[:-1]} id {row_id}")
        self._log(w, table, [row_id])

    def delete(self, w: sqlite3.Connection, table: str, ids: Sequence[int]) -> None:
        """Delete rows and log the deletions (inside :meth:`write`)."""
        w.executemany(f"DELETE FROM {table} WHERE id=?", [(int(i),) for i in ids])
        w.executemany("INSERT INTO deletions(collection, id, gen) VALUES (?, ?, ?)",
                      [(table, int(i), self.pending_gen) for i in ids])
        self._log(w, table, ids)

    def existing(self, table: str, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` exist."""
        out: set[int] = set()
        conn = self._reader()
        for chunk in _chunks([int(i) for i in ids], 500):
            q = f"SELECT id FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(r[0] for r in conn.execute(q, chunk))
        return out

    def get(self, table: str, ids: Sequence[int],
            with_embedding: bool = True, expired: bool = False) -> dict[int, dict[str, Any]]:
        """Rows by id as dicts (with the embedding as float32 unless ``with_embedding`` is
        False); expired records are left out unless ``expired``."""
        out: dict[int, dict[str, Any]] = {}
        conn = self._reader()
        cols = "*" if with_embedding else ", ".join(
            ["id", *self.columns[table], "created_at", "updated_at"])
        lc, lp = ([], []) if expired else self.live(table)
        for chunk in _chunks([int(i) for i in ids], 500):
            q = (f"SELECT {cols} FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"
                 + "".join(f" AND {c}" for c in lc))
            cur = conn.execute(q, [*chunk, *lp])
            names = [d[0] for d in cur.description]
            for row in cur:
                d = _row(names, row)
                out[d["id"]] = d
        return out

    def find(self, table: str, column: str, value: Any) -> dict[str, Any] | None:
        """The first unexpired row whose ``column`` equals ``value``."""
        if column not in COLLECTIONS[table] and column != "id":
            raise InvalidArgumentError(f"unknown column {column}")
        lc, lp = self.live(table)
        cur = self._reader().execute(
            f"SELECT * FROM {table} WHERE " + " AND ".join([f"{column}=?", *lc]) + " LIMIT 1",
            (value, *lp))
        row = cur.fetchone()
        return None if row is None else _row([d[0] for d in cur.description], row)

    def approx_count(self, table: str) -> int:
        """Rows in a collection (exact here; ``PostgresStore.approx_count`` estimates)."""
        return self.count(table)

    def count(self, table: str, expired: bool = False) -> int:
        """Number of unexpired records in a collection (every row if ``expired``): all rows
        less the expired ones, which the partial index on ``expires_at`` counts without a
        scan of the table."""
        conn = self._reader()
        total = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        if expired or not self.expiring[table]:
            return total
        return total - int(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE expires_at <= ?",
                                        (time.time(),)).fetchone()[0])

    def iter_rows(self, table: str, since_gen: int = -1, batch: int = 2000,
                  columns: str = "*") -> Iterator[list[dict[str, Any]]]:
        """Rows with ``gen > since_gen`` in id order, in batches."""
        conn = self._reader()
        last = -(2**63)
        while True:
            cur = conn.execute(
                f"SELECT {columns} FROM {table} WHERE gen > ? AND id > ? ORDER BY id LIMIT ?",
                (since_gen, last, batch))
            names = [d[0] for d in cur.description]
            rows = [_row(names, r) for r in cur.fetchall()]
            if not rows:
                return
            last = rows[-1]["id"]
            yield rows

    def deleted_since(self, table: str, gen: int) -> list[int]:
        """Ids deleted from ``table`` after generation ``gen``."""
        cur = self._reader().execute(
            "SELECT DISTINCT id FROM deletions WHERE collection=? AND gen > ?", (table, gen))
        return [int(r[0]) for r in cur]

    def select_ids(self, table: str, where_sql: str, params: Sequence[Any]) -> np.ndarray:
        """Ids matching a SQL condition built by :mod:`agentdb.storage.filters` (sorted int64)."""
        cur = self._reader().execute(f"SELECT id FROM {table} WHERE {where_sql} ORDER BY id",
                                     list(params))
        return np.fromiter((r[0] for r in cur), dtype=np.int64)

    def record_skill_outcome(self, w: sqlite3.Connection, name: str, success: bool,
                             now: float) -> None:
        """One more use of a skill: its running success rate and use count (inside
        :meth:`write`; an unknown name changes nothing)."""
        w.execute("UPDATE skills SET success_rate = (success_rate * uses + ?) / (uses + 1), "
                  "uses = uses + 1, updated_at = ? WHERE name = ?",
                  (1.0 if success else 0.0, now, name))

    def filter_ids(self, table: str, *, min_reward: float | None = None,
                   success: bool | None = None, session_id: str | None = None,
                   where: dict[str, Any] | None = None,
                   created_before: float | None = None, updated_before: float | None = None,
                   reward_below: float | None = None, expired: bool | None = False
                   ) -> np.ndarray:
        """Ids matching the filters (sorted int64): ``min_reward`` (the success rate for
        skills), ``success``, ``session_id``, a metadata ``where``, ``created_before`` and
        ``updated_before`` (epoch seconds), ``reward_below`` (the success rate for skills);
        ``expired``: False = unexpired records only, True = expired ones only, None = both.
        The same contract as ``PostgresStore.filter_ids``.

        >>> s = SQLiteStore(":memory:", dim=3)
        >>> s.filter_ids("patterns", session_id="s1").tolist()
        []
        """
        conds, params = _filter_conds(table, min_reward, success, session_id, where)
        more, more_params = age_sql(table, created_before, updated_before, reward_below)
        conds += [c.replace("%s", "?") for c in more]
        params += more_params
        if expired is not None:
            if not self.expiring[table]:
                if expired:
                    return np.zeros(0, np.int64)
            else:
                conds.append(live_clause() if not expired else "expires_at <= ?")
                params.append(time.time())
        return self.select_ids(table, " AND ".join(f"({c})" for c in conds) or "1", params)

    def scalar_columns(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """(id, *columns) for every row — used to build in-memory filter columns (a column
        this store's table lacks reads as NULL)."""
        have = self.columns[table]
        cols = ", ".join(["id", *(c if c in have or c not in COLLECTIONS[table] else "NULL"
                                  for c in columns)])
        return self._reader().execute(f"SELECT {cols} FROM {table} ORDER BY id").fetchall()

    # ---- backups ------------------------------------------------------------------------------
    def backup_to(self, dest: str | os.PathLike[str]) -> int:
        """Copy the whole store into a new SQLite file at ``dest`` with SQLite's online backup
        API, in one step: one consistent snapshot (a read transaction), taken while writers
        go on (WAL). Returns the write generation the copy holds.

        >>> import tempfile, os
        >>> s = SQLiteStore(":memory:", dim=2)
        >>> s.backup_to(os.path.join(tempfile.mkdtemp(), "copy.db")) == s.generation
        True
        """
        target_path = Path(os.fspath(dest))
        if target_path.exists():
            raise ConflictError(f"backup destination '{target_path}' already exists")
        target = sqlite3.connect(str(target_path))
        try:
            self._reader().backup(target)
            row = target.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
            target.execute("PRAGMA journal_mode = WAL")
        except BaseException:
            target.close()
            target_path.unlink(missing_ok=True)
            raise
        target.close()
        return int(row[0]) if row else 0

    # ---- causal graph ---------------------------------------------------------------------------
    def put_graph_node(self, w: sqlite3.Connection, nid: int, labels: Sequence[str],
                       props: dict[str, Any]) -> None:
        """Insert or replace one graph node (inside :meth:`write`)."""
        w.execute("INSERT INTO graph_nodes(id, labels, props, gen) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT(id) DO UPDATE SET labels=excluded.labels, props=excluded.props, "
                  "gen=excluded.gen",
                  (int(nid), json.dumps(list(labels)), json.dumps(props, allow_nan=False),
                   self.pending_gen))
        self._log(w, "graph_nodes", [nid])

    def put_graph_edge(self, w: sqlite3.Connection, eid: int, type: str, tail: Sequence[int],
                       head: Sequence[int], confidence: float, timestamp: float,
                       props: dict[str, Any]) -> None:
        """Insert or replace one hyperedge (inside :meth:`write`)."""
        w.execute("INSERT INTO graph_edges(id, type, tail, head, confidence, timestamp, props, "
                  "gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                  "type=excluded.type, tail=excluded.tail, head=excluded.head, "
                  "confidence=excluded.confidence, timestamp=excluded.timestamp, "
                  "props=excluded.props, gen=excluded.gen",
                  (int(eid), type, json.dumps([int(x) for x in tail]),
                   json.dumps([int(x) for x in head]), float(confidence), float(timestamp),
                   json.dumps(props, allow_nan=False), self.pending_gen))
        self._log(w, "graph_edges", [eid])

    def delete_graph(self, w: sqlite3.Connection, node_ids: Sequence[int],
                     edge_ids: Sequence[int]) -> None:
        """Delete graph nodes and edges and log the deletions (inside :meth:`write`), so a
        graph snapshot saved earlier is brought up to date by :meth:`deleted_since`."""
        w.executemany("DELETE FROM graph_edges WHERE id=?", [(int(e),) for e in edge_ids])
        w.executemany("DELETE FROM graph_nodes WHERE id=?", [(int(n),) for n in node_ids])
        w.executemany("INSERT INTO deletions(collection, id, gen) VALUES (?, ?, ?)",
                      [("graph_edges", int(e), self.pending_gen) for e in edge_ids]
                      + [("graph_nodes", int(n), self.pending_gen) for n in node_ids])
        self._log(w, "graph_edges", edge_ids)
        self._log(w, "graph_nodes", node_ids)

    def graph_nodes(self) -> Iterator[tuple[int, list[str], dict[str, Any]]]:
        """Every graph node as (id, labels, props), by id."""
        for nid, labels, props in self._reader().execute(
                "SELECT id, labels, props FROM graph_nodes ORDER BY id"):
            yield int(nid), json.loads(labels), json.loads(props)

    def graph_edges(self) -> Iterator[tuple[int, str, list[int], list[int], float, float,
                                             dict[str, Any]]]:
        """Every hyperedge as (id, type, tail, head, confidence, timestamp, props), by id."""
        for row in self._reader().execute(
                "SELECT id, type, tail, head, confidence, timestamp, props FROM graph_edges "
                "ORDER BY id"):
            yield (int(row[0]), row[1], _int_list(row[2]), _int_list(row[3]), float(row[4]),
                   float(row[5]), {} if row[6] == "{}" else json.loads(row[6]))

    def _since(self, table: str, columns: str, since_gen: int) -> Iterable[Any]:
        """Rows of ``table`` written after generation ``since_gen``, by id: every row in
        rowid order for -1 (a rebuild), else through the ``gen`` index, sorted here (left to
        itself SQLite walks the whole table in id order to skip the sort: 0.1 s at 1M rows
        when nothing changed since a snapshot)."""
        if since_gen < 0:
            return self._reader().execute(
                f"SELECT {columns} FROM {table} WHERE gen > ? ORDER BY id", (int(since_gen),))
        rows = self._reader().execute(  # no ORDER BY: the planner then takes the gen index
            f"SELECT {columns} FROM {table} WHERE gen > ?", (int(since_gen),)).fetchall()
        rows.sort(key=lambda r: r[0])
        return rows

    def graph_node_rows(self, since_gen: int = -1
                        ) -> Iterator[tuple[int, list[str], str | dict[str, Any]]]:
        """Graph nodes written after generation ``since_gen`` as ``(id, labels, props)``, by
        id; ``props`` is the stored JSON text, decoded only by a caller that needs it (opening
        a graph reads every node's labels but few nodes' properties).

        >>> s = SQLiteStore(":memory:", dim=2)
        >>> with s.write() as w:
        ...     s.put_graph_node(w, 1, ["Event"], {"a": 1})
        >>> list(s.graph_node_rows())
        [(1, ['Event'], '{"a": 1}')]
        """
        for nid, labels, props in self._since("graph_nodes", "id, labels, props", since_gen):
            yield int(nid), _labels(labels), props

    def graph_edge_rows(self, since_gen: int = -1
                        ) -> Iterator[tuple[int, str, list[int], list[int], float, float, bool]]:
        """Hyperedges written after generation ``since_gen`` as ``(id, type, tail, head,
        confidence, timestamp, has_props)``, by id (``has_props``: any property besides
        confidence and timestamp; the properties themselves stay in the row).

        >>> s = SQLiteStore(":memory:", dim=2)
        >>> with s.write() as w:
        ...     s.put_graph_edge(w, 5, "CAUSED_BY", [1], [2], 0.5, 0.0, {})
        >>> list(s.graph_edge_rows())
        [(5, 'CAUSED_BY', [1], [2], 0.5, 0.0, False)]
        """
        for row in self._since("graph_edges", "id, type, tail, head, confidence, timestamp, "
                               "props != '{}'", since_gen):
            yield (int(row[0]), row[1], _int_list(row[2]), _int_list(row[3]), float(row[4]),
                   float(row[5]), bool(row[6]))

    def graph_props(self, kind: str, ids: Sequence[int], conn: sqlite3.Connection | None = None
                    ) -> dict[int, dict[str, Any]]:
        """Stored properties of graph ``kind`` ("nodes" or "edges") by id (missing ids are
        absent; an edge's confidence and timestamp are columns, not properties). ``conn``: the
        open write transaction, whose own writes a reader would not see yet.

        >>> s = SQLiteStore(":memory:", dim=2)
        >>> with s.write() as w:
        ...     s.put_graph_node(w, 1, ["Event"], {"a": 1})
        >>> s.graph_props("nodes", [1, 2])
        {1: {'a': 1}}
        """
        table = {"nodes": "graph_nodes", "edges": "graph_edges"}[kind]
        out: dict[int, dict[str, Any]] = {}
        conn = conn or self._reader()
        for chunk in _chunks([int(i) for i in ids], 500):
            q = f"SELECT id, props FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"
            for i, props in conn.execute(q, chunk):
                out[int(i)] = {} if props == "{}" else json.loads(props)
        return out

    def graph_counts(self) -> tuple[int, int]:
        """``(nodes, hyperedges)`` in the graph tables."""
        row = self._reader().execute("SELECT (SELECT count(*) FROM graph_nodes), "
                                     "(SELECT count(*) FROM graph_edges)").fetchone()
        return int(row[0]), int(row[1])

    def graph_indexes(self) -> list[tuple[str, str]]:
        """Declared (label, property) indexes."""
        return [(a, b) for a, b in self._reader().execute(
            "SELECT label, prop FROM graph_indexes ORDER BY label, prop")]

    def add_graph_index(self, label: str, prop: str) -> None:
        """Declare a (label, property) index (idempotent)."""
        with self.write() as w:
            w.execute("INSERT OR IGNORE INTO graph_indexes(label, prop) VALUES (?, ?)",
                      (label, prop))
            self._log(w, "graph_indexes", [0])

    def get_graph_nodes(self, ids: Sequence[int]) -> dict[int, tuple[list[str], dict[str, Any]]]:
        """Graph nodes by id: ``{id: (labels, props)}`` (missing ids are absent)."""
        out: dict[int, tuple[list[str], dict[str, Any]]] = {}
        conn = self._reader()
        for chunk in _chunks([int(i) for i in ids], 500):
            marks = ",".join("?" * len(chunk))
            q = f"SELECT id, labels, props FROM graph_nodes WHERE id IN ({marks})"
            for nid, labels, props in conn.execute(q, chunk):
                out[int(nid)] = (json.loads(labels), json.loads(props))
        return out

    def get_graph_edges(self, ids: Sequence[int]) -> dict[int, tuple[str, list[int], list[int],
                                                                     float, float,
                                                                     dict[str, Any]]]:
        """Hyperedges by id: ``{id: (type, tail, head, confidence, timestamp, props)}``."""
        out: dict[int, tuple[str, list[int], list[int], float, float, dict[str, Any]]] = {}
        conn = self._reader()
        for chunk in _chunks([int(i) for i in ids], 500):
            q = ("SELECT id, type, tail, head, confidence, timestamp, props FROM graph_edges "
                 f"WHERE id IN ({','.join('?' * len(chunk))})")
            for r in conn.execute(q, chunk):
                out[int(r[0])] = (r[1], json.loads(r[2]), json.loads(r[3]), float(r[4]),
                                  float(r[5]), json.loads(r[6]))
        return out

    # ---- mirror outbox ----------------------------------------------------------------------
    def _log(self, w: sqlite3.Connection, collection: str, ids: Sequence[int]) -> None:
        """Record changed ids for the mirror, in the same transaction as the change."""
        if self.outbox and len(ids):
            now = time.time()
            w.executemany("INSERT INTO outbox(collection, id, at) VALUES (?, ?, ?)",
                          [(collection, int(i), now) for i in ids])

    def enable_outbox(self) -> None:
        """Start logging every write for a mirror (persisted: later opens keep logging)."""
        if not self.outbox:
            self.set_meta("mirror", "on")
            self.outbox = True

    def disable_outbox(self) -> None:
        """Stop logging writes for a mirror and drop what is pending."""
        with self.write() as w:
            w.execute("INSERT INTO meta(key, value) VALUES ('mirror', 'off') "
                      "ON CONFLICT(key) DO UPDATE SET value='off'")
            w.execute("DELETE FROM outbox")
        self.outbox = False

    def outbox_batch(self, after_seq: int, limit: int) -> list[tuple[int, str, int, float]]:
        """Pending changes ``(seq, collection, id, at)`` with ``seq > after_seq``, in order."""
        return [(int(a), b, int(c), float(d)) for a, b, c, d in self._reader().execute(
            "SELECT seq, collection, id, at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (int(after_seq), int(limit)))]

    def outbox_ack(self, upto_seq: int) -> None:
        """Forget the changes up to ``upto_seq`` (the mirror has them); no generation bump."""
        if self.readonly or self._closed:
            return
        with self._write_lock:
            self._writer.execute("DELETE FROM outbox WHERE seq <= ?", (int(upto_seq),))

    def outbox_stats(self) -> tuple[int, float | None, int]:
        """``(pending changes, time of the oldest pending one, last seq ever assigned)``."""
        conn = self._reader()
        n, oldest = conn.execute("SELECT COUNT(*), MIN(at) FROM outbox").fetchone()
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        return int(n), (None if oldest is None else float(oldest)), int(row[0]) if row else 0

    def file_size(self) -> int:
        """Bytes on disk of the database and its WAL."""
        if self.memory:
            return 0
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal")
                   if os.path.exists(p))


def _filter_conds(table: str, min_reward: float | None, success: bool | None,
                  session_id: str | None, where: dict[str, Any] | None, prefix: str = ""
                  ) -> tuple[list[str], list[Any]]:
    """SQLite WHERE conditions (``?`` placeholders, to be AND-ed) and parameters of a
    collection filter, on columns of the table aliased ``prefix`` (``"c."``, or none).

    >>> _filter_conds("patterns", 0.5, None, "s1", None, "c.")
    (['c.reward >= ?', 'c.session_id = ?'], [0.5, 's1'])
    """
    parts, params = filter_sql(table, min_reward, success, None, None)
    conds = [f"{prefix}{p}".replace("%s", "?") for p in parts]
    if session_id is not None:
        if table == "skills":
            raise InvalidArgumentError("skills have no session_id column")
        conds.append(f"{prefix}session_id = ?")
        params.append(session_id)
    if where:
        wsql, wparams = where_sql(where, f"{prefix}metadata")
        conds.append(wsql)
        params += wparams
    return conds, params


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<f4").tobytes()


def _row(names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    d = dict(zip(names, row))
    if "embedding" in d and d["embedding"] is not None:
        d["embedding"] = np.frombuffer(d["embedding"], dtype="<f4").copy()
    for key, empty in (("metadata", "{}"), ("skills", "[]")):
        text = d.get(key)
        if isinstance(text, str):  # the common empty value without the JSON decoder
            d[key] = ({} if key == "metadata" else []) if text == empty else json.loads(text)
    if "success" in d and d["success"] is not None:
        d["success"] = bool(d["success"])
    return d


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _labels(text: str) -> list[str]:
    """A node's JSON label list; the common single plain label is decoded without json.

    >>> _labels('["Event"]'), _labels('[]'), _labels('["A", "B"]')
    (['Event'], [], ['A', 'B'])
    """
    if text == "[]":
        return []
    if text.count('"') == 2 and "\\" not in text and text.startswith('["') and text.endswith('"]'):
        return [text[2:-2]]
    out: list[str] = json.loads(text)
    return out


def _int_list(text: str) -> list[int]:
    """A JSON list of integers as this store writes it (``json.dumps``), decoded ~3x faster
    than ``json.loads`` (opening a store reads one tail and one head list per hyperedge);
    anything else goes through ``json.loads``.

    >>> _int_list("[3, -4, 5]"), _int_list("[]"), _int_list("[7]")
    ([3, -4, 5], [], [7])
    """
    if text == "[]":
        return []
    try:
        return [int(x) for x in text[1:-1].split(",")]
    except ValueError:
        return json.loads(text)
