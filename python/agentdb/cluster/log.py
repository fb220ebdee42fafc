"""PostgreSQL as the cluster's ordered, durable change log.

Two tables live next to the :class:`~agentdb.storage.postgres.PostgresStore` tables (same
schema and table prefix):

* ``<prefix>cluster_log(seq BIGSERIAL PRIMARY KEY, collection TEXT, op TEXT, id BIGINT,
  at DOUBLE PRECISION)`` -- one row per changed record, ``op`` is ``"upsert"`` or
  ``"delete"``. The row carries no payload: a replica applying it reads the record's current
  state from the collection table (so replaying an entry twice, or out of date, converges).
* ``<prefix>cluster_meta(key TEXT PRIMARY KEY, value TEXT)`` -- the hash ring (JSON) and the
  cluster configuration.

**Ordering.** A write is one PostgreSQL transaction: the record change (through
``PostgresStore.write()``), its log rows (:func:`append`) and ``pg_notify(channel, seq)``.
``PostgresStore.write()`` locks the store's ``generation`` row ``FOR UPDATE`` before anything
else, so writers -- in any process -- are serialised, and log sequence numbers are taken
inside that lock: **sequence order is commit order**. A reader that sees ``seq = n`` committed
therefore never later sees a smaller sequence appear, so "read everything after the last
applied seq" is a complete catch-up. Rolled-back writes leave gaps in ``seq`` (a sequence is
not transactional); gaps are harmless.

**Notifications** are a latency optimisation only: they can be missed (a listener connection
that drops, a notification queue that overflows), so followers also poll
(:class:`Listener.wait` returns after ``timeout`` either way).

>>> channel_name("public", "")
'agentdb_cluster_public'
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from ..errors import InvalidArgumentError
from ..storage.postgres_url import attempt_timeout

__all__ = ["ClusterLog", "Entry", "Listener", "channel_name"]

_LOCK_CLASS = 0x41474443  # "AGDC": advisory lock taken while creating the cluster tables


class Entry(NamedTuple):
    """One log row."""

    seq: int
    collection: str
    op: str
    id: int


def channel_name(schema: str, table_prefix: str) -> str:
    """The NOTIFY channel of a cluster (one per schema + table prefix)."""
    return f"{table_prefix}agentdb_cluster_{schema}"[:63]


class ClusterLog:
    """Log and meta tables of one cluster, on one lazily (re)opened autocommit connection.

    Writes of the log go through the caller's transaction (:meth:`append` takes the
    ``PostgresStore.write()`` connection); reads use this object's own connection, guarded by
    a lock so one instance can be shared by threads.
    """

    def __init__(self, url: str, *, schema: str = "public", table_prefix: str = "",
                 connect_timeout: float = 10.0) -> None:
        self.url = url
        self.schema = schema
        self.prefix = table_prefix
        self.channel = channel_name(schema, table_prefix)
        self.log_table = sql.Identifier(schema, f"{table_prefix}cluster_log")
        self.meta_table = sql.Identifier(schema, f"{table_prefix}cluster_meta")
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    # ---- connection -------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=attempt_timeout(self.url, self._timeout),
                                         application_name="agentdb-cluster")
        return self._conn

    def _run(self, query: sql.Composable, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            for attempt in (0, 1):  # one reconnect: the server may have restarted
                try:
                    cur = self._connection().execute(query, list(params))
                    return cur.fetchall() if cur.description else []
                except psycopg.OperationalError:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the read connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- schema -----------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the log and meta tables if missing (idempotent, safe to race)."""
        with psycopg.connect(self.url, autocommit=True,
                             connect_timeout=attempt_timeout(self.url, self._timeout)) as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                             [_LOCK_CLASS, f"{self.schema}.{self.prefix}"])
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)))
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (seq BIGSERIAL PRIMARY KEY, "
                    "collection TEXT NOT NULL, op TEXT NOT NULL, id BIGINT NOT NULL, "
                    "at DOUBLE PRECISION NOT NULL)").format(self.log_table))
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                ).format(self.meta_table))

    # ---- log --------------------------------------------------------------------------------
    def append(self, w: psycopg.Connection, collection: str, op: str,
               ids: Iterable[int]) -> int:
        """Log ``op`` ("upsert" / "delete") of ``ids`` inside the caller's write transaction
        ``w`` and queue a NOTIFY (delivered at commit); returns the last sequence number."""
        if op not in ("upsert", "delete"):
            raise InvalidArgumentError(f"op must be 'upsert' or 'delete', got {op!r}")
        id_list = [int(i) for i in ids]
        if not id_list:
            raise InvalidArgumentError("nothing to log")
        row = w.execute(sql.SQL(
            "WITH ins AS (INSERT INTO {} (collection, op, id, at) "
            "SELECT %s, %s, i, %s FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(i, o) "
            "ORDER BY o RETURNING seq) SELECT max(seq) FROM ins").format(self.log_table),
            [collection, op, time.time(), id_list]).fetchone()
        seq = int(row[0])
        w.execute("SELECT pg_notify(%s, %s)", [self.channel, str(seq)])
        return seq

    def read_since(self, seq: int, limit: int = 1000) -> list[Entry]:
        """Entries with ``seq`` greater than the given one, in order (at most ``limit``)."""
        rows = self._run(sql.SQL("SELECT seq, collection, op, id FROM {} WHERE seq > %s "
                                 "ORDER BY seq LIMIT %s").format(self.log_table),
                         [int(seq), int(limit)])
        return [Entry(int(s), str(c), str(o), int(i)) for s, c, o, i in rows]

    def truncate(self, upto: int) -> int:
        """Delete the entries with ``seq <= upto``; returns how many were deleted. The last
        entry is always kept, so ``max_seq`` (and new sequence numbers) never go back."""
        rows = self._run(sql.SQL(
            "WITH d AS (DELETE FROM {t} WHERE seq <= LEAST(%s, (SELECT max(seq) - 1 FROM {t})) "
            "RETURNING 1) SELECT count(*) FROM d").format(t=self.log_table), [int(upto)])
        return int(rows[0][0])

    def min_seq(self) -> int:
        """The oldest sequence number still in the log (0 for an empty log)."""
        rows = self._run(sql.SQL("SELECT COALESCE(min(seq), 0) FROM {}").format(self.log_table))
        return int(rows[0][0])

    def max_seq(self) -> int:
        """The last committed sequence number (0 for an empty log)."""
        rows = self._run(sql.SQL("SELECT COALESCE(max(seq), 0) FROM {}").format(self.log_table))
        return int(rows[0][0])

    # ---- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """One value of the cluster meta table, or None."""
        rows = self._run(sql.SQL("SELECT value FROM {} WHERE key = %s").format(self.meta_table),
                         [key])
        return None if not rows else str(rows[0][0])

    def set_meta(self, key: str, value: str, w: psycopg.Connection | None = None) -> None:
        """Set one meta value (in ``w``'s transaction when given)."""
        query = sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                        "DO UPDATE SET value = excluded.value").format(self.meta_table)
        if w is not None:
            w.execute(query, [key, value])
        else:
            self._run(query, [key, value])

    def init_meta(self, key: str, value: str) -> str:
        """Set ``key`` only if it is absent; returns the value that is stored (the first
        writer wins when several processes race)."""
        self._run(sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                          "DO NOTHING").format(self.meta_table), [key, value])
        stored = self.get_meta(key)
        assert stored is not None
        return stored

    def load_ring(self) -> dict[str, Any] | None:
        """The stored ring (``HashRing.to_dict()`` form), or None before the first store."""
        text = self.get_meta("ring")
        return None if text is None else dict(json.loads(text))

    def store_ring(self, ring: dict[str, Any]) -> None:
        """Store the ring every process routes by."""
        self.set_meta("ring", json.dumps(ring, sort_keys=True))

    def listener(self) -> Listener:
        """A new :class:`Listener` on this cluster's channel."""
        return Listener(self.url, self.channel, self._timeout)


class Listener:
    """``LISTEN`` on a channel with an autocommit connection; reconnects when it drops.

    >>> # lst = ClusterLog(url).listener(); lst.wait(0.2)  -> True when notified
    """

    def __init__(self, url: str, channel: str, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.channel = channel
        self._timeout = connect_timeout
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=attempt_timeout(self.url, self._timeout),
                                         application_name="agentdb-cluster-listen")
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return self._conn

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when at least one notification arrived.

        A connection error is swallowed (after a short sleep) and the next call reconnects:
        callers poll the log anyway, so a missed notification only costs latency.
        """
        try:
            conn = self._connect()
            got = False
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # drain what is already queued without waiting
                for _ in conn.notifies(timeout=0.0):
                    pass
            return got
        except psycopg.Error:
            self.close()
            time.sleep(min(timeout, 0.5))
            return False

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
