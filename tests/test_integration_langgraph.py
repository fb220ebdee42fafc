"""The LangGraph store, through LangGraph's own ``BaseStore`` interface (the same calls an
agent makes on ``InMemoryStore``) and inside a small compiled graph.

Skipped without langgraph unless ``AGENTDB_REQUIRE_INTEGRATIONS=1``.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from _requires import unavailable

if importlib.util.find_spec("langgraph") is None:
    unavailable("INTEGRATIONS", "the 'langgraph' extra is missing", module=True)

from agentdb.errors import InvalidArgumentError  # noqa: E402
from agentdb.integrations.langgraph import AgentDBStore  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langgraph.store.base import (  # noqa: E402
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    PutOp,
    SearchOp,
)


class WordEmbeddings(DeterministicFakeEmbedding):
    """Deterministic vectors that share words: enough meaning for a ranking test."""

    def embed_query(self, text: str) -> list[float]:
        import numpy as np

        v = np.zeros(self.size)
        for word in text.lower().split():
            v += np.asarray(super().embed_query(word))
        return (v / (np.linalg.norm(v) or 1.0)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]


def semantic_store(**kw: Any) -> AgentDBStore:
    return AgentDBStore(index={"embed": WordEmbeddings(size=32), "dims": 32,
                               "fields": ["text"]}, **kw)


def test_is_a_base_store_put_get_delete() -> None:
    store = AgentDBStore()
    assert isinstance(store, BaseStore)
    store.put(("users", "u1"), "prefs", {"food": "pizza", "n": 1})
    item = store.get(("users", "u1"), "prefs")
    assert item.value == {"food": "pizza", "n": 1} and item.namespace == ("users", "u1")
    first_created = item.created_at
    store.put(("users", "u1"), "prefs", {"food": "sushi"})
    again = store.get(("users", "u1"), "prefs")
    assert again.value == {"food": "sushi"} and again.created_at == first_created
    assert again.updated_at >= item.updated_at
    assert store.get(("users", "u2"), "prefs") is None
    assert store.get(("users",), "prefs") is None  # namespaces are exact for get
    store.delete(("users", "u1"), "prefs")
    assert store.get(("users", "u1"), "prefs") is None
    store.delete(("users", "u1"), "missing")  # no error


def test_search_filters_prefix_and_pagination() -> None:
    store = AgentDBStore()
    for i in range(6):
        store.put(("docs", "team-a" if i < 4 else "team-b"), f"d{i}",
                  {"status": "done" if i % 2 else "open", "rank": i})
    assert len(store.search(("docs",))) == 6
    assert len(store.search(("docs", "team-a"))) == 4
    done = store.search(("docs",), filter={"status": "done"})
    assert sorted(i.key for i in done) == ["d1", "d3", "d5"]
    ranked = store.search(("docs",), filter={"rank": {"$gte": 4}})
    assert sorted(i.key for i in ranked) == ["d4", "d5"]
    page = store.search(("docs",), limit=2, offset=2)
    assert [i.key for i in page] == ["d2", "d3"]
    with pytest.raises(InvalidArgumentError, match="nested"):
        store.search(("docs",), filter={"a": {"b": 1}})


def test_semantic_search_ranks_by_meaning_and_fills_unindexed() -> None:
    store = semantic_store()
    store.put(("mem",), "1", {"text": "user likes pizza and pasta"})
    store.put(("mem",), "2", {"text": "deploy runs on fridays"})
    store.put(("mem",), "3", {"text": "no index for me"}, index=False)
    hits = store.search(("mem",), query="pizza", limit=3)
    assert hits[0].key == "1" and hits[0].score is not None
    assert hits[-1].key == "3" and hits[-1].score is None  # unindexed items come last


def test_list_namespaces() -> None:
    store = AgentDBStore()
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("z",)]:
        store.put(ns, "k", {"v": 1})
    assert store.list_namespaces() == [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("z",)]
    assert store.list_namespaces(prefix=("a", "b")) == [("a", "b", "c"), ("a", "b", "d")]
    assert store.list_namespaces(suffix=("d",)) == [("a", "b", "d")]
    assert store.list_namespaces(prefix=("a", "*", "c")) == [("a", "b", "c")]
    assert store.list_namespaces(max_depth=1) == [("a",), ("z",)]
    assert store.list_namespaces(limit=1, offset=1) == [("a", "b", "d")]


def test_batch_and_abatch() -> None:
    store = AgentDBStore()
    out = store.batch([PutOp(("n",), "k", {"x": 1}), GetOp(("n",), "k"),
                       SearchOp(("n",)), ListNamespacesOp()])
    assert out[0] is None and out[1].value == {"x": 1} and len(out[2]) == 1
    assert out[3] == [("n",)]

    async def main() -> Any:
        await store.aput(("n",), "k2", {"x": 2})
        return await store.abatch([GetOp(("n",), "k2")]), await store.asearch(("n",))

    got, found = asyncio.run(main())
    assert got[0].value == {"x": 2} and len(found) == 2


def test_bad_input() -> None:
    store = AgentDBStore()
    with pytest.raises(InvalidNamespaceError):
        store.put((), "k", {"x": 1})
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {"x": 1})
    with pytest.raises((InvalidArgumentError, TypeError)):
        store.put(("a",), "k", "not a dict")  # type: ignore[arg-type]
    assert store.search(("a",)) == []


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "lg.db")
    store = semantic_store(path=path)
    store.put(("users", "u1"), "bio", {"text": "likes hiking"})
    store.close()
    again = semantic_store(path=path)
    assert again.get(("users", "u1"), "bio").value == {"text": "likes hiking"}
    again.close()


def test_a_langgraph_graph_keeps_memory_in_agentdb() -> None:
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict):
        user: str
        said: str
        recalled: list[str]

    def remember(state: State, *, store: BaseStore) -> dict[str, Any]:
        ns = ("memories", state["user"])
        if state["said"]:
            store.put(ns, f"m{len(store.search(ns))}", {"text": state["said"]})
        return {"recalled": [i.value["text"] for i in store.search(ns, query="pizza")]}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    store = semantic_store()
    graph = builder.compile(store=store)
    graph.invoke({"user": "u1", "said": "I love pizza", "recalled": []})
    graph.invoke({"user": "u1", "said": "my dog is called Rex", "recalled": []})
    out = graph.invoke({"user": "u1", "said": "", "recalled": []})
    assert out["recalled"][0] == "I love pizza" and len(out["recalled"]) == 2
    other = graph.invoke({"user": "u2", "said": "", "recalled": []})
    assert other["recalled"] == []  # another user's namespace sees nothing
