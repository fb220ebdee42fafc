"""Copy a whole store between SQLite and PostgreSQL (``agentdb migrate --from X --to Y``).

Either side may be a SQLite file or a ``postgresql://`` URL. Records keep their ids,
timestamps, metadata and embeddings; the causal graph (nodes, hyperedges, declared indexes)
comes along. The copy is **resumable**: rows whose id already exists at the destination are
skipped, and each batch is one destination transaction, so an interrupted run (Ctrl-C, a lost
connection) is simply started again. At the end every table's row count is compared and the
three record collections are compared by an order-independent checksum of their content
(ids, columns, metadata, embedding bytes); a mismatch raises :class:`MigrationError`. Into
an empty PostgreSQL table the HNSW index is dropped during the copy and built once at the end
(much faster than maintaining it row by row).

Stop writers to the source while it runs: rows changed in the source after they were copied
are not copied again (their ids already exist at the destination).

>>> from agentdb.memory.migrate import migrate  # doctest: +SKIP
>>> report = migrate("memory.db", "postgresql://localhost/agentdb")  # doctest: +SKIP
>>> report["patterns"]["checksum_ok"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidArgumentError, MigrationError
from ..storage.sqlite import COLLECTIONS, SQLiteStore
from .progress import progress_bar

__all__ = ["MigrationError", "migrate"]


def _is_pg(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def _source_dim(target: str, schema: str, prefix: str) -> int:
    if _is_pg(target):
        from ..storage.pg_backend import existing_dim

        dim = existing_dim(target, schema, prefix)
    else:
        from .locations import existing_sqlite_dim

        dim = existing_sqlite_dim(target)
    if dim is None:
        from ..storage.mirror import redact_url

        raise FileNotFoundError(f"no AgentDB store at {redact_url(target)!r}")
    return int(dim)


def _open(target: str, dim: int, readonly: bool, schema: str, prefix: str) -> Any:
    if _is_pg(target):
        from ..storage.postgres import PostgresStore

        return PostgresStore(target, dim, schema=schema, table_prefix=prefix, readonly=readonly)
    return SQLiteStore(target, dim, readonly=readonly)


def _checksum(store: Any, table: str) -> str:
    from ..storage import postgres

    if isinstance(store, SQLiteStore):
        return str(postgres.sqlite_checksum(store, table))
    return str(store.checksum(table))


def _batches(it: Iterator[Any], n: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for x in it:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def migrate(source: str, destination: str, *, schema: str = "public", table_prefix: str = "",
            batch: int = 2000, verify: bool = True,
            progress: bool | None = None) -> dict[str, dict[str, Any]]:
    """Copy ``source`` into ``destination`` (SQLite path or PostgreSQL URL, either way).

    ``schema`` / ``table_prefix`` name the PostgreSQL side's tables. Returns, per table,
    ``{"source", "destination", "copied", "checksum_ok"}`` (checksums for the record
    collections; None elsewhere or with ``verify=False``).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidArgumentError(f"batch must be an integer >= 1, got {batch!r}")
    if _is_pg(source) == _is_pg(destination):
        raise InvalidArgumentError(
            "migrate copies between SQLite and PostgreSQL: give one SQLite path "
            "and one postgresql:// URL")
    dim = _source_dim(source, schema, table_prefix)
    src = _open(source, dim, True, schema, table_prefix)
    try:
        dst = _open(destination, dim, False, schema, table_prefix)
    except BaseException:
        src.close()
        raise
    report: dict[str, dict[str, Any]] = {}
    try:
        for table in COLLECTIONS:
            copied = 0
            defer = getattr(dst, "deferred_vector_index", None)  # PostgreSQL: index once
            with (defer(table) if defer is not None else contextlib.nullcontext()), \
                    progress_bar(src.count(table), f"migrating {table}", enabled=progress) as adv:
                for rows in src.iter_rows(table, batch=batch):
                    have = dst.existing(table, [int(r["id"]) for r in rows])
                    todo = [r for r in rows if int(r["id"]) not in have]
                    if todo:
                        with dst.write() as w:
                            dst.upsert_rows(w, table, todo)
                        copied += len(todo)
                    adv(len(rows))
            report[table] = {"copied": copied}
        # the causal graph
        have_nodes = {nid for nid, _l, _p in dst.graph_nodes()}
        copied = 0
        for chunk in _batches(iter(src.graph_nodes()), batch):
            todo = [x for x in chunk if x[0] not in have_nodes]
            if todo:
                with dst.write() as w:
                    for nid, labels, props in todo:
                        dst.put_graph_node(w, nid, labels, props)
                copied += len(todo)
        report["graph_nodes"] = {"copied": copied}
        have_edges = {e[0] for e in dst.graph_edges()}
        copied = 0
        for chunk in _batches(iter(src.graph_edges()), batch):
            todo = [x for x in chunk if x[0] not in have_edges]
            if todo:
                with dst.write() as w:
                    for eid, etype, tail, head, conf, ts, props in todo:
                        dst.put_graph_edge(w, eid, etype, tail, head, conf, ts, props)
                copied += len(todo)
        report["graph_edges"] = {"copied": copied}
        have_idx = set(dst.graph_indexes())
        for label, prop in src.graph_indexes():
            if (label, prop) not in have_idx:
                dst.add_graph_index(label, prop)
        report["graph_indexes"] = {"copied": len(set(src.graph_indexes()) - have_idx)}
        # verification
        counts = {
            "graph_nodes": (sum(1 for _ in src.graph_nodes()), sum(1 for _ in dst.graph_nodes())),
            "graph_edges": (sum(1 for _ in src.graph_edges()), sum(1 for _ in dst.graph_edges())),
            "graph_indexes": (len(src.graph_indexes()), len(dst.graph_indexes())),
        }
        for table in COLLECTIONS:
            counts[table] = (src.count(table), dst.count(table))
        bad = []
        for table, (a, b) in counts.items():
            report[table]["source"] = a
            report[table]["destination"] = b
            report[table]["checksum_ok"] = None
            if a != b:
                bad.append(f"{table}: {a} rows in the source, {b} at the destination")
        if verify:
            for table in COLLECTIONS:
                ok = _checksum(src, table) == _checksum(dst, table)
                report[table]["checksum_ok"] = ok
                if not ok:
                    bad.append(f"{table}: checksums differ")
        if bad:
            raise MigrationError("migration did not verify: " + "; ".join(bad))
        return report
    finally:
        dst.close()
        src.close()
