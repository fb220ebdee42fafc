"""A LlamaIndex vector store over an AgentDB store (the ``llamaindex`` extra).

Each node is a pattern of the store's *collection* (``session_id`` =
``"llamaindex:<collection>"``): its text is the task, its embedding the vector LlamaIndex
computed, and its metadata keeps the node (``li``: LlamaIndex's own serialisation, so every
node type round-trips) beside its user metadata (``meta``), which ``MetadataFilters`` query
(``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``in``, ``nin``, combined with AND).

>>> from llama_index.core import StorageContext, VectorStoreIndex  # doctest: +SKIP
>>> store = AgentDBVectorStore(path="memory.db")  # doctest: +SKIP
>>> index = VectorStoreIndex.from_documents(  # doctest: +SKIP
...     docs, storage_context=StorageContext.from_defaults(vector_store=store))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import BaseNode, MetadataMode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,  # noqa: F401 - used by the examples
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("agentdb.integrations.llamaindex needs the 'llamaindex' extra: "
                      f"pip install 'agentdb[llamaindex]' ({exc})") from exc

__all__ = ["AgentDBVectorStore", "filters_to_where"]

_OPS = {FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt",
        FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte",
        FilterOperator.IN: "$in", FilterOperator.NIN: "$nin"}


def filters_to_where(filters: MetadataFilters | None) -> dict[str, Any]:
    """LlamaIndex ``MetadataFilters`` as an AgentDB ``where`` on the nodes' metadata.

    >>> f = MetadataFilters(filters=[MetadataFilter(key="year", value=2020,
    ...                                             operator=FilterOperator.GTE)])
    >>> filters_to_where(f)
    {'meta.year': {'$gte': 2020}}
    """
    if filters is None:
        return {}
    if filters.condition not in (None, FilterCondition.AND):
        raise InvalidArgumentError(f"filter condition {filters.condition.value!r} is not "
                                   "supported (AgentDB filters combine with AND)")
    out: dict[str, Any] = {}
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            for key, cond in filters_to_where(f).items():
                out.setdefault(key, {}).update(cond)
            continue
        op = _OPS.get(f.operator)
        if op is None:
            raise InvalidArgumentError(f"filter operator {f.operator.value!r} is not supported "
                                       "(use ==, !=, >, >=, <, <=, in, nin)")
        out.setdefault(f"meta.{f.key}", {})[op] = f.value
    return out


class AgentDBVectorStore(BasePydanticVectorStore):
    """LlamaIndex's vector store on AgentDB patterns (see the module docstring).

    ``db``: an open AgentDB store, or None to open ``path`` (``**open_kwargs`` go to
    ``agentdb.open``; its dimension comes from the first nodes added unless ``dim`` is
    given). ``collection``: which nodes this store sees.

    >>> AgentDBVectorStore.model_fields["stores_text"].default
    True
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection: str = "default"
    _db: Any = PrivateAttr(default=None)
    _path: str = PrivateAttr(default=":memory:")
    _open_kwargs: dict = PrivateAttr(default_factory=dict)
    _owns_db: bool = PrivateAttr(default=False)

    def __init__(self, *, db: Any = None, path: str = ":memory:", collection: str = "default",
                 **open_kwargs: Any) -> None:
        if not isinstance(collection, str) or not collection:
            raise InvalidArgumentError("collection must be a non-empty string")
        super().__init__(collection=collection)
        self._db = db
        self._path = path
        self._open_kwargs = open_kwargs
        self._owns_db = db is None
        if db is None and "dim" in open_kwargs:
            self._open(int(open_kwargs["dim"]))

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's name for this store."""
        return "AgentDBVectorStore"

    @property
    def client(self) -> Any:
        """The AgentDB store (None until the first add when opened lazily)."""
        return self._db

    @property
    def session_id(self) -> str:
        """The ``session_id`` of this collection's patterns."""
        return f"llamaindex:{self.collection}"

    def _open(self, dim: int) -> Any:
        if self._db is None:
            from ..memory import open as open_memory

            self._db = open_memory(self._path, **{**self._open_kwargs, "dim": dim})
        return self._db

    def _ids(self, where: dict[str, Any] | None) -> list[int]:
        if self._db is None:
            from ..memory import open as open_memory
            from ..memory.locations import existing_sqlite_dim

            remote = self._path.startswith(("postgresql://", "postgres://"))
            if self._path == ":memory:" or not (remote or existing_sqlite_dim(self._path)):
                return []  # nothing stored yet: the store opens at the first add
            self._db = open_memory(self._path, **self._open_kwargs)
        return self._db.find_ids("patterns", session_id=self.session_id, where=where or None)

    @staticmethod
    def _node(rec: Any) -> BaseNode:
        return metadata_dict_to_node(rec.metadata["li"], text=rec.task)

    # ---- writes ------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Store nodes with their embeddings (a node id that exists is replaced); returns
        their ids.

        >>> store.add(nodes)  # doctest: +SKIP
        """
        if not nodes:
            return []
        vectors = []
        for n in nodes:
            if n.embedding is None:
                raise InvalidArgumentError(f"node {n.node_id} has no embedding")
            vectors.append(np.asarray(n.embedding, dtype=np.float32))
        db = self._open(len(vectors[0]))
        existing = self._by_node_id([n.node_id for n in nodes])
        rows = []
        for n, vec in zip(nodes, vectors):
            meta = {"li": node_to_metadata_dict(n, remove_text=True,
                                                flat_metadata=self.flat_metadata),
                    "meta": dict(n.metadata), "node_id": n.node_id,
                    "ref_doc_id": n.ref_doc_id}
            text = n.get_content(metadata_mode=MetadataMode.NONE) or n.node_id
            if n.node_id in existing:
                db.update_pattern(existing[n.node_id], task=text, embedding=vec, metadata=meta)
            else:
                rows.append({"task": text, "embedding": vec, "metadata": meta,
                             "session_id": self.session_id})
        if rows:
            db.store_patterns(rows)
        return [n.node_id for n in nodes]

    def _by_node_id(self, node_ids: Sequence[str]) -> dict[str, int]:
        if not node_ids:
            return {}
        out = {}
        for pid in self._ids({"node_id": {"$in": list(node_ids)}}):
            out[self._db.get_pattern(pid).metadata["node_id"]] = pid
        return out

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of a source document.

        >>> store.delete("doc-1")  # doctest: +SKIP
        """
        for pid in self._ids({"ref_doc_id": ref_doc_id}):
            self._db.delete_pattern(pid)

    def _select(self, node_ids: list[str] | None, filters: MetadataFilters | None
                ) -> dict[str, Any]:
        where = filters_to_where(filters)
        if node_ids is not None:
            if not node_ids:
                return {"node_id": {"$in": ["\u0000none"]}}  # an empty list selects nothing
            where["node_id"] = {"$in": list(node_ids)}
        return where

    def get_nodes(self, node_ids: list[str] | None = None,
                  filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Nodes by id and/or metadata filters.

        >>> store.get_nodes(node_ids=["n1"])  # doctest: +SKIP
        """
        return [self._node(self._db.get_pattern(i))
                for i in self._ids(self._select(node_ids, filters))]

    def delete_nodes(self, node_ids: list[str] | None = None,
                     filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        """Delete nodes by id and/or metadata filters.

        >>> store.delete_nodes(node_ids=["n1"])  # doctest: +SKIP
        """
        for pid in self._ids(self._select(node_ids, filters)):
            self._db.delete_pattern(pid)

    def clear(self) -> None:
        """Delete every node of this collection."""
        for pid in self._ids(None):
            self._db.delete_pattern(pid)

    # ---- query -------------------------------------------------------------------------------
    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nodes nearest to ``query_embedding`` that pass
        ``filters`` (and ``doc_ids`` / ``node_ids`` when given), with cosine similarities.

        >>> q = VectorStoreQuery(query_embedding=[0.1] * 32, similarity_top_k=2)
        >>> store.query(q).ids  # doctest: +SKIP
        """
        if query.query_embedding is None:
            raise InvalidArgumentError("AgentDBVectorStore needs query_embedding")
        # LlamaIndex's retriever passes node_ids=[] for "no restriction"
        where = self._select(query.node_ids or None, query.filters)
        if query.doc_ids:
            where["ref_doc_id"] = {"$in": list(query.doc_ids)}
        if self._db is None and not self._ids(None):
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        hits = self._db.search_patterns(np.asarray(query.query_embedding, dtype=np.float32),
                                        k=query.similarity_top_k, session_id=self.session_id,
                                        where=where or None)
        nodes = [self._node(h.record) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[float(h.similarity)
                                                                 for h in hits],
                                      ids=[n.node_id for n in nodes])

    def close(self) -> None:
        """Close the AgentDB store if this object opened it."""
        if self._owns_db and self._db is not None:
            self._db.close()
