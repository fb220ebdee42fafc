"""A durable mirror of the embedded store in PostgreSQL (``agentdb.open(path, mirror=url)``).

Every write lands in SQLite first. In the same SQLite transaction the store appends
``(collection, id)`` to an ``outbox`` table (see :meth:`SQLiteStore.enable_outbox`), so a
committed write is never lost for the mirror, even if the process dies right after. A
background thread drains the outbox in sequence order, in batches:

1. read the next ``batch`` outbox entries (``seq > acked``);
2. read the *current* SQLite state of those ids (a row that no longer exists is a delete);
3. in one PostgreSQL transaction: lock this store's row in ``<prefix>mirror_state``; if its
   ``seq`` already covers the batch (a crash after the PostgreSQL commit but before step 4),
   skip; else apply deletes, then upserts by id, and set ``seq`` to the batch's last one;
4. delete the acknowledged outbox entries in SQLite.

Upserts by primary key make re-delivery harmless and the ``seq`` check makes it rare, so each
record lands exactly once and PostgreSQL converges to SQLite's state in write order. When
PostgreSQL is down or restarts, writes keep succeeding locally, the outbox grows, and the
thread retries with backoff (0.2 s doubling to 5 s) until the batch goes through.

>>> import agentdb  # doctest: +SKIP
>>> db = agentdb.open("memory.db", mirror="postgresql://localhost/agentdb")  # doctest: +SKIP
>>> db.mirror_status()["pending"]  # doctest: +SKIP
0
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

from ..errors import InvalidArgumentError
from .sqlite import COLLECTIONS, SQLiteStore

__all__ = ["Mirror", "redact_url"]

_MIRRORED = (*COLLECTIONS, "graph_nodes", "graph_edges", "graph_indexes")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    >>> redact_url("postgresql://bob:s3cret@db:5432/x")
    'postgresql://bob:***@db:5432/x'
    >>> redact_url("postgresql://db/x?password=s3cret&sslmode=require")
    'postgresql://db/x?password=***&sslmode=require'
    """
    out = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", out)


class Mirror:
    """Drains a SQLite store's outbox into PostgreSQL on a background thread.

    ``store`` must be writable; ``url`` is a PostgreSQL URL (pgvector installed). The
    PostgreSQL tables are the :class:`~agentdb.storage.postgres.PostgresStore` ones in
    ``schema`` with ``table_prefix``.
    """

    def __init__(self, store: SQLiteStore, url: str, *, schema: str = "public",
                 table_prefix: str = "", batch: int = 1000, poll: float = 0.05,
                 start: bool = True) -> None:
        if store.readonly:
            raise InvalidArgumentError("a read-only store cannot feed a mirror")
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise InvalidArgumentError("mirror must be a PostgreSQL URL (postgresql://...)")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidArgumentError(f"batch must be an integer >= 1, got {batch!r}")
        from .postgres import PostgresStore  # noqa: F401  (fail early without the extra)

        self.store = store
        self.url = url
        self.schema = schema
        self.prefix = table_prefix
        self.batch = batch
        self.poll = poll
        source = store.meta("store_uuid")
        if source is None:
            source = uuid.uuid4().hex
            store.set_meta("store_uuid", source)
        self.source = source
        store.enable_outbox()
        self._pg: Any = None
        self._state_sql: Any = None
        self._index_todo = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one drain at a time
        self.acked = 0
        self.applied = 0
        self.connected = False
        self.last_error: str | None = None
        self.last_sync: float | None = None
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="agentdb-mirror",
                                            daemon=True)
            self._thread.start()

    # ---- PostgreSQL side ---------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._pg is not None:
            return self._pg
        from psycopg import sql

        from .postgres import PostgresStore

        pg = PostgresStore(self.url, self.store.dim, schema=self.schema,
                           table_prefix=self.prefix)
        table = sql.Identifier(self.schema, f"{self.prefix}mirror_state")
        with pg.write() as w:
            w.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (source TEXT PRIMARY KEY, "
                              "seq BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL)").format(table))
        self._state_sql = table
        self._pg = pg
        return pg

    def _disconnect(self) -> None:
        pg, self._pg = self._pg, None
        self.connected = False
        if pg is not None:
            try:
                pg.close()
            except Exception:  # noqa: BLE001 - a broken pool may fail to close; drop it
                pass

    # ---- draining ----------------------------------------------------------------------------
    def drain_once(self) -> int:
        """Copy one batch to PostgreSQL; returns how many outbox entries it covered."""
        with self._lock:
            entries = self.store.outbox_batch(0, self.batch)
            if not entries:
                return 0
            pg = self._connect()
            last = entries[-1][0]
            by_coll: dict[str, list[int]] = {}
            for _seq, coll, rid, _at in entries:
                ids = by_coll.setdefault(coll, [])
                ids.append(rid)
            from psycopg import sql

            with pg.write() as w:
                row = w.execute(sql.SQL("SELECT seq FROM {} WHERE source = %s FOR UPDATE")
                                .format(self._state_sql), (self.source,)).fetchone()
                if row is None or int(row[0]) < last:
                    self._apply(pg, w, by_coll)
                    w.execute(sql.SQL(
                        "INSERT INTO {} (source, seq, at) VALUES (%s, %s, %s) "
                        "ON CONFLICT (source) DO UPDATE SET seq = excluded.seq, at = excluded.at"
                    ).format(self._state_sql), (self.source, last, time.time()))
            if self._index_todo:
                have = set(pg.graph_indexes())
                for label, prop in self.store.graph_indexes():
                    if (label, prop) not in have:
                        pg.add_graph_index(label, prop)
                self._index_todo = False
            self.store.outbox_ack(last)
            self.acked = last
            self.applied += len(entries)
            self.connected = True
            self.last_error = None
            self.last_sync = time.time()
            return len(entries)

    def _apply(self, pg: Any, w: Any, by_coll: dict[str, list[int]]) -> None:
        st = self.store
        for coll in COLLECTIONS:
            ids = list(dict.fromkeys(by_coll.get(coll, ())))
            if not ids:
                continue
            rows = st.get(coll, ids)
            gone = [i for i in ids if i not in rows]
            if gone:
                pg.delete(w, coll, gone)
            if rows:
                pg.upsert_rows(w, coll, [rows[i] for i in ids if i in rows])
        node_ids = list(dict.fromkeys(by_coll.get("graph_nodes", ())))
        edge_ids = list(dict.fromkeys(by_coll.get("graph_edges", ())))
        nodes = st.get_graph_nodes(node_ids) if node_ids else {}
        edges = st.get_graph_edges(edge_ids) if edge_ids else {}
        gone_n = [i for i in node_ids if i not in nodes]
        gone_e = [i for i in edge_ids if i not in edges]
        if gone_n or gone_e:
            pg.delete_graph(w, gone_n, gone_e)
        for nid, (labels, props) in nodes.items():
            pg.put_graph_node(w, nid, labels, props)
        for eid, (etype, tail, head, conf, ts, props) in edges.items():
            pg.put_graph_edge(w, eid, etype, tail, head, conf, ts, props)
        if by_coll.get("graph_indexes"):
            self._index_todo = True  # added after this transaction (its own, idempotent)

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                n = self.drain_once()
                delay = 0.2
                if n == 0:
                    self._wake.wait(self.poll)
                    self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down, restarting, ...
                self.last_error = f"{type(exc).__name__}: {redact_url(str(exc))}"
                self._disconnect()
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    # ---- control -----------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every committed write is in PostgreSQL; False on timeout.

        Drains on the calling thread too, so it also works with ``start=False``.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.drain_once() == 0 and self.store.outbox_stats()[0] == 0:
                    return True
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"{type(exc).__name__}: {redact_url(str(exc))}"
                self._disconnect()
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.2)
            if time.monotonic() >= deadline:
                return False

    def status(self) -> dict[str, Any]:
        """Lag and health: ``url`` (password hidden), ``connected``, ``pending`` (writes not yet
        in PostgreSQL), ``lag_seconds`` (age of the oldest pending write, 0 when none),
        ``last_seq`` / ``acked_seq``, ``applied`` (entries copied by this process),
        ``last_error``, ``last_sync`` (epoch seconds)."""
        pending, oldest, last_seq = self.store.outbox_stats()
        return {
            "url": redact_url(self.url),
            "schema": self.schema,
            "table_prefix": self.prefix,
            "connected": self.connected,
            "pending": pending,
            "lag_seconds": 0.0 if oldest is None else max(0.0, time.time() - oldest),
            "last_seq": last_seq,
            "acked_seq": self.acked,
            "applied": self.applied,
            "last_error": self.last_error,
            "last_sync": self.last_sync,
        }

    def wake(self) -> None:
        """Tell the thread there is something to copy (called after each local write)."""
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Try to drain for up to ``timeout`` seconds, then stop the thread. What is still
        pending stays in the outbox and is copied the next time the store opens with a
        mirror."""
        if self._thread is not None and self._thread.is_alive() and self.connected:
            self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(timeout, 1.0))
        self._disconnect()
