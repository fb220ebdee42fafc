"""``PostgresBackend``: the vector-backend protocol of the native index, answered by pgvector.

With ``agentdb.open(backend="postgres", url=...)`` (default ``search="pgvector"``) each
collection's "index" is one of these: the table rows *are* the index (an HNSW index with
``vector_cosine_ops``, m=16, ef_construction=200), so ``add`` / ``remove`` only check what
the store already wrote in the same transaction, and ``search`` is one SQL query with the
filters in its WHERE clause and ``hnsw.ef_search`` set per query.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, NotFoundError

__all__ = ["PostgresBackend"]


class PostgresBackend:
    """One collection of a :class:`~agentdb.storage.postgres.PostgresStore` as a vector index.

    >>> idx = PostgresBackend(store, "patterns")  # doctest: +SKIP
    >>> ids, dists = idx.search(query, k=10, ef=100, filters={"success": True})  # doctest: +SKIP
    """

    metric = "cosine"

    def __init__(self, store: Any, collection: str, ef_search: int = 64) -> None:
        self.store = store
        self.collection = collection
        self.dim = int(store.dim)
        self.ef_search = int(ef_search)
        self.threads = 0

    def __len__(self) -> int:
        return int(self.store.count(self.collection))

    def contains(self, rid: int) -> bool:
        """Is ``rid`` stored?"""
        return bool(self.store.existing(self.collection, [int(rid)]))

    def __contains__(self, rid: int) -> bool:
        return self.contains(rid)

    def get_vector(self, rid: int) -> np.ndarray:
        """The stored embedding of ``rid`` (KeyError if unknown)."""
        rows = self.store.get(self.collection, [int(rid)])
        if int(rid) not in rows:
            raise NotFoundError(f"unknown id {rid}")
        return np.asarray(rows[int(rid)]["embedding"], np.float32)

    def add(self, ids: Any, vectors: Any) -> None:
        """No-op: the store wrote these rows (and PostgreSQL indexed them) in the caller's
        transaction; only the shapes are checked."""
        vecs = np.asarray(vectors, np.float32)
        if vecs.ndim == 1:
            vecs = vecs[None, :]
        if vecs.shape[1] != self.dim or len(np.atleast_1d(np.asarray(ids))) != vecs.shape[0]:
            raise InvalidArgumentError(
                f"expected {len(np.atleast_1d(ids))} vectors of dim {self.dim}")

    def remove(self, ids: Any) -> None:
        """No-op: deleting the row removed it from the PostgreSQL index."""

    def search(self, query: np.ndarray, k: int, ef: int | None = None,
               allowed: np.ndarray | None = None,
               filters: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, cosine distances)`` of the ``k`` nearest rows passing ``filters``
        (``min_reward``, ``success``, ``session_id``, ``where``, ``max_distance``)."""
        if allowed is not None:
            raise InvalidArgumentError("PostgresBackend takes filters, not id allow-lists")
        return self.store.search(self.collection, np.asarray(query, np.float32), int(k),
                                 ef_search=ef if ef is not None else self.ef_search,
                                 **(filters or {}))

    def memory_usage(self) -> int:
        """Bytes held in this process (the index lives in PostgreSQL): 0."""
        return 0

    def save(self, path: str) -> None:
        """No-op: PostgreSQL persists the index."""


def existing_dim(url: str, schema: str = "public", table_prefix: str = "") -> int | None:
    """The ``dim`` an AgentDB PostgreSQL store records, or None when there is none yet.

    >>> existing_dim("postgresql://localhost/empty")  # doctest: +SKIP
    """
    value = existing_meta(url, "dim", schema, table_prefix)
    return None if value is None else int(value)


def existing_meta(url: str, key: str, schema: str = "public", table_prefix: str = ""
                  ) -> str | None:
    """One value of an AgentDB PostgreSQL store's meta table, or None (no store, no key).

    >>> existing_meta("postgresql://localhost/empty", "embedder")  # doctest: +SKIP
    """
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("PostgreSQL support needs the 'postgres' extra: "
                          "pip install 'agentdb[postgres]'") from exc
    from ..errors import StoreError

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            reg = conn.execute("SELECT to_regclass(%s)",
                               (f'"{schema}"."{table_prefix}meta"',)).fetchone()
            if reg is None or reg[0] is None:
                return None
            row = conn.execute(sql.SQL("SELECT value FROM {} WHERE key = %s").format(
                sql.Identifier(schema, f"{table_prefix}meta")), (key,)).fetchone()
    except psycopg.Error as exc:
        from .mirror import redact_url

        raise StoreError(f"cannot read PostgreSQL store at {redact_url(url)}: "
                         f"{redact_url(str(exc)).strip()}") from None
    return None if row is None else str(row[0])
