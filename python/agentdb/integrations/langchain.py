"""A LangChain ``VectorStore`` over an AgentDB store (the ``langchain`` extra).

Each document is a pattern: ``page_content`` is its task, ``metadata`` its metadata, and the
document's string id is kept under the reserved metadata key ``__lc_id`` (removed again on the
way out). Documents of one store live in a *collection* -- the patterns' ``session_id``,
``"langchain:<collection>"`` -- so several LangChain stores, and the agent's own patterns, share
one AgentDB file without seeing each other. Vectors come from the LangChain ``Embeddings`` you
pass (or, without one, from the AgentDB store's own embedder).

>>> from langchain_core.embeddings import DeterministicFakeEmbedding  # doctest: +SKIP
>>> store = AgentDBVectorStore(DeterministicFakeEmbedding(size=16))  # doctest: +SKIP
>>> ids = store.add_texts(["parse ISO dates", "retry HTTP calls"])  # doctest: +SKIP
>>> store.similarity_search("parse ISO dates", k=1)[0].page_content  # doctest: +SKIP
'parse ISO dates'
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("agentdb.integrations.langchain needs the 'langchain' extra: "
                      f"pip install 'agentdb[langchain]' ({exc})") from exc

__all__ = ["ID_KEY", "AgentDBVectorStore", "LangChainEmbedder"]

#: The metadata key holding a document's LangChain id.
ID_KEY = "__lc_id"


class LangChainEmbedder:
    """A LangChain ``Embeddings`` as an AgentDB embedder (so the store can embed text too,
    and records ``langchain:<class name>`` as its embedder).

    >>> LangChainEmbedder  # doctest: +ELLIPSIS
    <class '...LangChainEmbedder'>
    """

    def __init__(self, embedding: Embeddings, dim: int | None = None) -> None:
        self.embedding = embedding
        self.name = f"langchain:{type(embedding).__name__}"
        self.dim = int(dim or len(embedding.embed_query("dimension probe")))

    def embed(self, texts: list[str]) -> np.ndarray:
        """The LangChain embeddings of ``texts`` as float32 rows."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.asarray(self.embedding.embed_documents(list(texts)), dtype=np.float32)


class AgentDBVectorStore(VectorStore):
    """LangChain's ``VectorStore`` on AgentDB patterns (see the module docstring).

    ``embedding``: a LangChain ``Embeddings`` (None: the AgentDB store's embedder).
    ``db``: an open AgentDB store (``agentdb.open(...)``) or None to open ``path`` with
    ``**open_kwargs`` (its dimension then comes from ``embedding``). ``collection``: which
    documents this store sees.

    >>> AgentDBVectorStore.ID_KEY
    '__lc_id'
    """

    ID_KEY = ID_KEY

    def __init__(self, embedding: Embeddings | None = None, *, db: Any = None,
                 path: str = ":memory:", collection: str = "default",
                 **open_kwargs: Any) -> None:
        if not isinstance(collection, str) or not collection:
            raise InvalidArgumentError("collection must be a non-empty string")
        self._embedding = embedding
        self._owns_db = db is None
        if db is None:
            from ..memory import open as open_memory

            if embedding is not None and "embedder" not in open_kwargs:
                open_kwargs["embedder"] = LangChainEmbedder(embedding)
            db = open_memory(path, **open_kwargs)
        self.db = db
        self.collection = collection
        self.session_id = f"langchain:{collection}"

    # ---- embeddings -------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings | None:
        """The LangChain embeddings in use (None: the AgentDB store's embedder)."""
        return self._embedding

    def _embed_documents(self, texts: list[str]) -> np.ndarray:
        if self._embedding is None:
            return np.asarray(self.db.embedder.embed(texts), dtype=np.float32)
        return np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)

    def _embed_query(self, text: str) -> np.ndarray:
        if self._embedding is None:
            return np.asarray(self.db.query_vector(text), dtype=np.float32)
        return np.asarray(self._embedding.embed_query(text), dtype=np.float32)

    # ---- ids ---------------------------------------------------------------------------------
    def _pattern_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """LangChain id -> pattern id, for the ids present in this collection."""
        if not ids:
            return {}
        found = self.db.find_ids("patterns", session_id=self.session_id,
                                 where={ID_KEY: {"$in": list(ids)}})
        out: dict[str, int] = {}
        for rec in (self.db.get_pattern(i) for i in found):
            out[str(rec.metadata.get(ID_KEY))] = int(rec.id)
        return out

    def _document(self, rec: Any) -> Document:
        meta = dict(rec.metadata or {})
        lc_id = meta.pop(ID_KEY, None)
        return Document(page_content=rec.task, metadata=meta,
                        id=None if lc_id is None else str(lc_id))

    # ---- writes ------------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None,
                  *, ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Embed and store texts; an id that exists in this collection is replaced.

        >>> store.add_texts(["a", "b"], ids=["x", "y"])  # doctest: +SKIP
        ['x', 'y']
        """
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InvalidArgumentError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise InvalidArgumentError(f"{len(ids)} ids for {len(texts)} texts")
        out = [str(i) if i is not None else str(uuid.uuid4())
               for i in (ids or [None] * len(texts))]
        if len(set(out)) != len(out):
            raise InvalidArgumentError("ids must be unique within one call")
        metas = []
        for m, lc_id in zip(metadatas or [{}] * len(texts), out):
            if not isinstance(m, dict):
                raise InvalidTypeError(f"metadata must be a dict, got {type(m).__name__}")
            if ID_KEY in m:
                raise InvalidArgumentError(f"metadata key {ID_KEY!r} is reserved")
            metas.append({**m, ID_KEY: lc_id})
        if not texts:
            return []
        vectors = self._embed_documents(texts)
        existing = self._pattern_ids(out)
        new_rows = []
        for text, meta, vec, lc_id in zip(texts, metas, vectors, out):
            if lc_id in existing:
                self.db.update_pattern(existing[lc_id], task=text, embedding=vec, metadata=meta)
            else:
                new_rows.append({"task": text, "embedding": vec, "metadata": meta,
                                 "session_id": self.session_id})
        if new_rows:
            self.db.store_patterns(new_rows)
        return out

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (unknown ids are ignored); ``ids=None`` empties the
        collection. Returns True.

        >>> store.delete(["x"])  # doctest: +SKIP
        True
        """
        if ids is None:
            targets = self.db.find_ids("patterns", session_id=self.session_id)
        else:
            targets = list(self._pattern_ids([str(i) for i in ids]).values())
        for pid in targets:
            self.db.delete_pattern(pid)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids (missing ones are left out).

        >>> store.get_by_ids(["y"])[0].page_content  # doctest: +SKIP
        'b'
        """
        found = self._pattern_ids([str(i) for i in ids])
        return [self._document(self.db.get_pattern(found[str(i)]))
                for i in ids if str(i) in found]

    # ---- search ------------------------------------------------------------------------------
    def _where(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:  # noqa: A002
        if filter is None:
            return None
        if not isinstance(filter, dict):
            raise InvalidTypeError(f"filter must be a dict, got {type(filter).__name__}")
        if ID_KEY in filter:
            raise InvalidArgumentError(f"metadata key {ID_KEY!r} is reserved")
        return filter

    def _search(self, vector: np.ndarray, k: int, filter: dict[str, Any] | None  # noqa: A002
                ) -> list[Any]:
        return self.db.search_patterns(vector, k=k, session_id=self.session_id,
                                       where=self._where(filter))

    def similarity_search_with_score_by_vector(
            self, embedding: list[float], k: int = 4,
            filter: dict[str, Any] | None = None,  # noqa: A002
            **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents nearest to a vector with their cosine similarity, best first.

        >>> store.similarity_search_with_score_by_vector([0.1] * 16, k=1)  # doctest: +SKIP
        """
        hits = self._search(np.asarray(embedding, dtype=np.float32), k, filter)
        return [(self._document(h.record), float(h.similarity)) for h in hits]

    def similarity_search_with_score(self, query: str, k: int = 4,
                                     filter: dict[str, Any] | None = None,  # noqa: A002
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents most similar to a text, with their cosine similarity (higher is closer).

        >>> store.similarity_search_with_score("a", k=1)[0][1] > 0.9  # doctest: +SKIP
        True
        """
        return self.similarity_search_with_score_by_vector(
            self._embed_query(query).tolist(), k=k, filter=filter)

    def similarity_search(self, query: str, k: int = 4,
                          filter: dict[str, Any] | None = None,  # noqa: A002
                          **kwargs: Any) -> list[Document]:
        """Documents most similar to a text; ``filter`` is an AgentDB ``where`` on metadata
        (``{"key": value}`` or ``$eq $ne $gt $gte $lt $lte $in $nin $exists``).

        >>> store.similarity_search("a", k=1)[0].id  # doctest: +SKIP
        'x'
        """
        return [d for d, _ in self.similarity_search_with_score(query, k, filter=filter)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    filter: dict[str, Any] | None = None,  # noqa: A002
                                    **kwargs: Any) -> list[Document]:
        """Documents nearest to a vector.

        >>> store.similarity_search_by_vector([0.1] * 16, k=1)  # doctest: +SKIP
        """
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k,
                                                                          filter=filter)]

    def _select_relevance_score_fn(self) -> Any:
        return lambda similarity: (1.0 + similarity) / 2.0  # cosine [-1, 1] -> [0, 1]

    def max_marginal_relevance_search_by_vector(
            self, embedding: list[float], k: int = 4, fetch_k: int = 20,
            lambda_mult: float = 0.5, filter: dict[str, Any] | None = None,  # noqa: A002
            **kwargs: Any) -> list[Document]:
        """``k`` documents that are near the vector and far from each other (MMR over the
        ``fetch_k`` nearest; ``lambda_mult`` 1 = relevance only, 0 = diversity only).

        >>> store.max_marginal_relevance_search_by_vector([0.1] * 16, k=2)  # doctest: +SKIP
        """
        q = np.asarray(embedding, dtype=np.float32)
        hits = self._search(q, max(fetch_k, k), filter)
        if not hits:
            return []
        vecs = np.stack([np.asarray(self.db.get_pattern(h.id).embedding, dtype=np.float32)
                         for h in hits])
        chosen = maximal_marginal_relevance(q, vecs, lambda_mult=lambda_mult, k=k)
        return [self._document(hits[i].record) for i in chosen]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5,
                                      filter: dict[str, Any] | None = None,  # noqa: A002
                                      **kwargs: Any) -> list[Document]:
        """MMR search for a text (see :meth:`max_marginal_relevance_search_by_vector`).

        >>> store.max_marginal_relevance_search("a", k=2)  # doctest: +SKIP
        """
        return self.max_marginal_relevance_search_by_vector(
            self._embed_query(query).tolist(), k, fetch_k, lambda_mult, filter=filter)

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, **kwargs: Any) -> AgentDBVectorStore:
        """A new store holding ``texts`` (``kwargs`` go to the constructor: ``db``, ``path``,
        ``collection``, ``dim``, ...).

        >>> fake = DeterministicFakeEmbedding(size=8)  # doctest: +SKIP
        >>> AgentDBVectorStore.from_texts(["a"], fake).get_by_ids  # doctest: +SKIP
        """
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def close(self) -> None:
        """Close the AgentDB store if this object opened it."""
        if self._owns_db:
            self.db.close()
