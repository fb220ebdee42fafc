"""The LangChain VectorStore, checked by langchain-tests' standard VectorStore suite (the
framework's own definition of a correct store), plus AgentDB specifics: collections, filters,
MMR, scores, reopening a file, and the store's own embedder.

Skipped without langchain-core / langchain-tests unless ``AGENTDB_REQUIRE_INTEGRATIONS=1``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Generator
from pathlib import Path

import agentdb
import pytest
from _requires import unavailable

if importlib.util.find_spec("langchain_core") is None or \
        importlib.util.find_spec("langchain_tests") is None:
    unavailable("INTEGRATIONS", "the 'langchain' extra or langchain-tests is missing",
                module=True)

from agentdb.errors import InvalidArgumentError  # noqa: E402
from agentdb.integrations.langchain import AgentDBVectorStore  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402


class TestStandardSuite(VectorStoreIntegrationTests):
    """langchain-tests' own checks (sync and async), on a fresh store per test. The suite's
    async tests carry no marker (it expects asyncio_mode=auto): mark them here."""

    pytestmark = [pytest.mark.asyncio(loop_scope="function"),
                  pytest.mark.filterwarnings("ignore:The test <Function .* is marked with "
                                             "'@pytest.mark.asyncio' but it is not an async")]

    @pytest.fixture
    def vectorstore(self) -> Generator[AgentDBVectorStore, None, None]:  # type: ignore[override]
        store = AgentDBVectorStore(self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


def emb() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=16)


def test_collections_share_one_file_without_mixing(tmp_path: Path) -> None:
    with agentdb.open(tmp_path / "m.db", dim=16) as db:
        a = AgentDBVectorStore(emb(), db=db, collection="a")
        b = AgentDBVectorStore(emb(), db=db, collection="b")
        a.add_texts(["alpha"], ids=["1"])
        b.add_texts(["beta"], ids=["1"])
        db.store_pattern("the agent's own pattern", embedding=emb().embed_query("x"))
        assert [d.page_content for d in a.similarity_search("beta", k=5)] == ["alpha"]
        assert b.get_by_ids(["1"])[0].page_content == "beta"
        a.delete()  # empties collection a only
        assert a.similarity_search("alpha", k=5) == [] and db.count() == 2


def test_filters_scores_mmr_and_retriever() -> None:
    store = AgentDBVectorStore.from_texts(
        ["parse dates", "parse times", "resize images", "compress logs"], emb(),
        metadatas=[{"lang": "py", "n": 1}, {"lang": "go", "n": 2}, {"lang": "py", "n": 3},
                   {"lang": "rs", "n": 4}], ids=["a", "b", "c", "d"])
    hits = store.similarity_search("parse dates", k=4, filter={"lang": "py"})
    assert {d.id for d in hits} == {"a", "c"}
    hits = store.similarity_search("parse dates", k=4, filter={"n": {"$gte": 3}})
    assert {d.id for d in hits} == {"c", "d"}
    doc, score = store.similarity_search_with_score("parse dates", k=1)[0]
    assert doc.id == "a" and score == pytest.approx(1.0, abs=1e-5)
    rel = store.similarity_search_with_relevance_scores("parse dates", k=2)
    assert all(0.0 <= s <= 1.0 for _, s in rel)
    mmr = store.max_marginal_relevance_search("parse dates", k=2, fetch_k=4)
    assert len(mmr) == 2 and mmr[0].id == "a"
    by_vec = store.similarity_search_by_vector(emb().embed_query("compress logs"), k=1)
    assert by_vec[0].id == "d"
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert retriever.invoke("resize images")[0].metadata == {"lang": "py", "n": 3}


def test_bad_input_is_refused() -> None:
    store = AgentDBVectorStore(emb())
    with pytest.raises(InvalidArgumentError, match="reserved"):
        store.add_texts(["x"], metadatas=[{"__lc_id": "sneaky"}])
    with pytest.raises(InvalidArgumentError, match="ids"):
        store.add_texts(["x", "y"], ids=["1"])
    with pytest.raises(InvalidArgumentError, match="unique"):
        store.add_texts(["x", "y"], ids=["1", "1"])
    with pytest.raises(InvalidArgumentError):
        store.similarity_search("x", filter={"k": {"$bad": 1}})
    assert store.similarity_search("x", k=3) == []  # nothing half-written


def test_persists_and_uses_agentdb_embedder(tmp_path: Path) -> None:
    path = str(tmp_path / "lc.db")
    store = AgentDBVectorStore(path=path, dim=64)  # no LangChain embeddings: AgentDB's own
    store.add_documents([Document(page_content="parse ISO dates", metadata={"k": 1}, id="p")])
    store.close()
    again = AgentDBVectorStore(path=path)
    assert again.similarity_search("parse ISO dates", k=1)[0] == Document(
        page_content="parse ISO dates", metadata={"k": 1}, id="p")
    again.close()
