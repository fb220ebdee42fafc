"""The LlamaIndex vector store, through ``VectorStoreIndex`` (documents in, retriever out),
metadata filters, deletes and a reopened file.

Skipped without llama-index-core unless ``AGENTDB_REQUIRE_INTEGRATIONS=1``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from _requires import unavailable

if importlib.util.find_spec("llama_index") is None:
    unavailable("INTEGRATIONS", "the 'llamaindex' extra is missing", module=True)

from agentdb.errors import InvalidArgumentError  # noqa: E402
from agentdb.integrations.llamaindex import AgentDBVectorStore  # noqa: E402
from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

DIM = 32


class WordEmbedding(BaseEmbedding):
    """Deterministic bag-of-words vectors: texts sharing words are close."""

    def _vec(self, text: str) -> list[float]:
        import zlib

        import numpy as np

        v = np.zeros(DIM)
        for word in text.lower().split():
            rng = np.random.default_rng(zlib.crc32(word.strip(".,").encode()))
            v += rng.standard_normal(DIM)
        if not v.any():
            v[0] = 1.0
        return (v / np.linalg.norm(v)).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vec(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)


@pytest.fixture(autouse=True)
def local_models() -> Any:
    old_embed, old_llm = Settings._embed_model, Settings._llm
    Settings.embed_model = WordEmbedding()
    Settings.llm = None
    yield
    Settings._embed_model, Settings._llm = old_embed, old_llm


DOCS = [Document(text="pizza and pasta recipes from Naples", metadata={"year": 2019, "lang": "it"},
                 doc_id="food"),
        Document(text="deploying services with kubernetes", metadata={"year": 2021, "lang": "en"},
                 doc_id="ops"),
        Document(text="pasta sauces for busy weeknights", metadata={"year": 2023, "lang": "en"},
                 doc_id="food2")]


def build(store: AgentDBVectorStore) -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        DOCS, storage_context=StorageContext.from_defaults(vector_store=store))


def test_vector_store_index_retrieves_and_filters() -> None:
    store = AgentDBVectorStore()
    index = build(store)
    hits = index.as_retriever(similarity_top_k=2).retrieve("pasta recipes")
    assert {h.node.ref_doc_id for h in hits} == {"food", "food2"}
    assert hits[0].score is not None and hits[0].score >= hits[1].score
    en = MetadataFilters(filters=[MetadataFilter(key="lang", value="en")])
    hits = index.as_retriever(similarity_top_k=3, filters=en).retrieve("pasta")
    assert {h.node.ref_doc_id for h in hits} == {"ops", "food2"}
    recent = MetadataFilters(filters=[
        MetadataFilter(key="year", value=2020, operator=FilterOperator.GT),
        MetadataFilter(key="lang", value=["en"], operator=FilterOperator.IN)])
    hits = index.as_retriever(similarity_top_k=3, filters=recent).retrieve("pasta")
    assert {h.node.ref_doc_id for h in hits} == {"ops", "food2"}
    assert hits[0].node.metadata["lang"] == "en"


def test_delete_get_nodes_and_clear() -> None:
    store = AgentDBVectorStore()
    index = build(store)
    index.delete_ref_doc("food", delete_from_docstore=True)
    hits = index.as_retriever(similarity_top_k=3).retrieve("pizza")
    assert "food" not in {h.node.ref_doc_id for h in hits}
    nodes = store.get_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="year",
                                                                            value=2023)]))
    assert [n.ref_doc_id for n in nodes] == ["food2"]
    store.delete_nodes(node_ids=[nodes[0].node_id])
    assert store.get_nodes(node_ids=[nodes[0].node_id]) == []
    store.clear()
    assert store.get_nodes() == []


def test_unsupported_filters_are_refused() -> None:
    store = AgentDBVectorStore()
    index = build(store)
    either = MetadataFilters(filters=[MetadataFilter(key="lang", value="en"),
                                      MetadataFilter(key="lang", value="it")],
                             condition=FilterCondition.OR)
    with pytest.raises(InvalidArgumentError, match="AND"):
        index.as_retriever(filters=either).retrieve("pasta")
    text = MetadataFilters(filters=[MetadataFilter(key="lang", value="e",
                                                   operator=FilterOperator.TEXT_MATCH)])
    with pytest.raises(InvalidArgumentError, match="not supported"):
        index.as_retriever(filters=text).retrieve("pasta")


def test_persists_in_a_file(tmp_path: Path) -> None:
    path = str(tmp_path / "li.db")
    store = AgentDBVectorStore(path=path)
    build(store)
    store.close()
    again = AgentDBVectorStore(path=path)
    index = VectorStoreIndex.from_vector_store(again)
    hits = index.as_retriever(similarity_top_k=1).retrieve("kubernetes deploying")
    assert hits[0].node.ref_doc_id == "ops" and "kubernetes" in hits[0].node.get_content()
    again.close()


def test_empty_id_lists_select_nothing() -> None:
    store = AgentDBVectorStore()
    build(store)
    assert store.get_nodes(node_ids=[]) == []
    store.delete_nodes(node_ids=[])
    assert len(store.get_nodes()) == 3
