"""The native indexes of an embedded store's collections (patterns, episodes, skills).

:class:`Collections` opens them -- a saved index file is loaded and only the changes since
it was saved are replayed from the store, otherwise the index is rebuilt; on PostgreSQL
pgvector answers searches or a native index is rebuilt from the table -- and saves the
changed index files on :meth:`Collections.save`. :class:`agentdb.memory.embedded.AgentDB`
owns one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..engines.loader import backend
from ..errors import InvalidArgumentError
from ..storage.columns import FilterColumns
from .progress import progress_bar

__all__ = ["NAMES", "Collection", "Collections"]

#: The collections of a store, each with its own index.
NAMES = ("patterns", "episodes", "skills")


class Collection:
    """One collection's index and in-memory filter columns (``attrs``: None when pgvector
    answers searches), with the generations of its index file."""

    def __init__(self, name: str, index: Any, attrs: FilterColumns | None) -> None:
        self.name = name
        self.index = index
        self.attrs = attrs
        self.saved_gen = -1  # the generation the index file on disk reflects (-1: none)
        self.changed_gen = 0  # the last generation that changed this index's vectors
        self.file_gen: str | None = None  # the index file's generation when it was loaded


class Collections:
    """The :class:`Collection` of every name in :data:`NAMES` over ``store``, opened on
    construction; ``status`` says per collection how its index came to be ("new", "loaded",
    "rebuilt (...)", "pgvector", ...)."""

    def __init__(self, store: Any, dim: int, path: str, *, postgres: bool, search_mode: str,
                 index_params: dict[str, Any], progress: bool | None) -> None:
        self.store = store
        self.dim = dim
        self.path = path
        self.postgres = postgres
        self.search_mode = search_mode
        self._index_params = index_params
        self._progress = progress
        self.status: dict[str, str] = {}
        self.cols: dict[str, Collection] = {}
        for name in NAMES:
            self.cols[name] = self._open(name)

    def index_path(self, name: str) -> str:
        """The file of a collection's saved index (``<path>.<name>.hnsw``)."""
        return f"{self.path}.{name}.hnsw"

    def save(self) -> None:
        """Save every index file that changed since it was last saved (the caller holds the
        store's write lock)."""
        gen = self.store.generation
        saved = []
        for name, col in self.cols.items():
            if col.saved_gen >= 0 and col.changed_gen <= col.saved_gen:
                continue  # the file already holds these vectors
            col.index.save(self.index_path(name))
            self.store.set_meta(f"index_gen:{name}", str(gen))
            saved.append(col)
        gen_after = self.store.generation  # set_meta advanced it; nothing else changed
        for col in saved:
            col.saved_gen = gen_after

    def follow(self, since: int) -> int:
        """Apply what another process (the store's writer) committed after generation
        ``since`` to the indexes and filter columns of a read-only handle; returns how many
        records changed. A collection whose index file the writer saved since it was loaded
        is opened again from that file (mapped, its pages shared with the other readers,
        plus the rows written after it); otherwise the deleted ids are removed and the rows
        written since are (re-)added. Applying a row twice is harmless."""
        changed = 0
        for name in NAMES:
            col = self.cols[name]
            saved = self.store.meta(f"index_gen:{name}")
            if saved is not None and saved != col.file_gen and os.path.exists(
                    self.index_path(name)):
                self.cols[name] = self._open(name)
                changed += 1
                continue
            gone = self.store.deleted_since(name, since)
            present = [i for i in gone if col.index.contains(i)]
            if present:
                col.index.remove(present)
            if col.attrs is not None:
                for rid in gone:
                    col.attrs.remove(rid)
            changed += len(gone)
            for rows in self.store.iter_rows(name, since_gen=since, batch=2000):
                ids = np.fromiter((r["id"] for r in rows), np.int64, len(rows))
                col.index.add(ids, np.stack([r["embedding"] for r in rows]))
                if col.attrs is not None:
                    for r in rows:
                        col.attrs.set_row(name, int(r["id"]), r)
                changed += len(rows)
        return changed

    def _new_index(self) -> Any:
        p = self._index_params
        return backend.HNSWIndex(self.dim, metric="cosine", M=p["M"],
                                 ef_construction=p["ef_construction"],
                                 ef_search=p["ef_search"], threads=p["threads"],
                                 precision=p.get("precision", "mixed"))

    def _open_pg(self, name: str) -> Collection:
        """PostgreSQL: pgvector answers searches, or a native index is rebuilt from the table
        (one binary COPY of ids and vectors)."""
        if self.search_mode == "pgvector":
            from ..storage.pg_backend import PostgresBackend

            self.status[name] = "pgvector"
            return Collection(name, PostgresBackend(self.store, name,
                                                    self._index_params["ef_search"]), None)
        index = self._new_index()
        ids, vecs = self.store.export_vectors(name)
        if len(ids):
            index.add(ids, vecs)
        self.status[name] = f"rebuilt from PostgreSQL ({len(ids)} vectors)"
        return Collection(name, index, self._filter_columns(name))

    def _filter_columns(self, name: str) -> FilterColumns:
        attrs = FilterColumns()

        def meta_of(m: Any) -> Any:
            return m if isinstance(m, dict) else json.loads(m)

        if name == "skills":  # the reward column holds the success rate
            for rid, rate, meta, exp in self.store.scalar_columns(
                    name, ("success_rate", "metadata", "expires_at")):
                attrs.set(rid, rate, False, None, meta_of(meta), exp)
        else:
            for rid, reward, success, session, meta, exp in self.store.scalar_columns(
                    name, ("reward", "success", "session_id", "metadata", "expires_at")):
                attrs.set(rid, reward, bool(success), session, meta_of(meta), exp)
        return attrs

    def _open(self, name: str) -> Collection:
        """Load the saved index and replay what changed since it was saved, or rebuild."""
        if self.postgres:
            return self._open_pg(name)
        index, since = None, -1
        path = self.index_path(name)
        saved = self.store.meta(f"index_gen:{name}")
        status = "new"
        if not self.store.memory and os.path.exists(path) and saved is not None:
            try:
                # in place (mapped) when the saved precision is the one asked for, every
                # section's checksum checked first
                index = backend.HNSWIndex.load(
                    path, precision=self._index_params.get("precision", "mixed"), verify=True)
                if index.dim != self.dim or index.metric != "cosine":
                    raise InvalidArgumentError("index parameters do not match the store")
                index.ef_search = self._index_params["ef_search"]
                index.threads = self._index_params["threads"]
                since = int(saved)
                status = "loaded"
            except (ValueError, OSError) as exc:
                index, status = None, f"rebuilt ({exc})"
        elif not self.store.memory and self.store.count(name, expired=True):
            status = "rebuilt (index file missing)"
        if index is None:
            index, since = self._new_index(), -1
        changed = 0
        for rid in self.store.deleted_since(name, since):
            if index.contains(rid):
                index.remove([rid])
                changed += 1
        changed += self._replay(name, index, since)
        # should not happen; never serve a wrong index
        if len(index) != self.store.count(name, expired=True):
            index = self._new_index()
            self._replay(name, index, -1)
            status = "rebuilt (count mismatch)"
        self.status[name] = status
        col = Collection(name, index, self._filter_columns(name))
        col.file_gen = saved if status == "loaded" else None
        # the file is current when nothing of this collection changed since it was saved
        # (later writes to other tables -- other collections, the graph, the learning
        # state -- advance the generation too, but do not touch this index)
        current = status == "loaded" and changed == 0
        col.saved_gen = since if current else -1
        col.changed_gen = since if current else self.store.generation
        return col

    def _replay(self, name: str, index: Any, since: int) -> int:
        """Add the rows written after generation ``since``; returns how many."""
        count = 0
        total = self.store.count(name, expired=True) if since < 0 else None
        with progress_bar(total or 0, f"indexing {name}",
                          enabled=self._progress if (total or 0) >= 20_000 else False
                          ) as advance:
            for rows in self.store.iter_rows(name, since_gen=since, batch=5000,
                                             columns="id, embedding, gen"):
                ids = np.fromiter((r["id"] for r in rows), np.int64, len(rows))
                vecs = np.stack([r["embedding"] for r in rows])
                index.add(ids, vecs)
                advance(len(rows))
                count += len(rows)
        return count
