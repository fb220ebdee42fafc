"""Micro-benchmarks of the hot paths, with pytest-benchmark::

    pytest benchmarks/micro --benchmark-only                     # a table of timings
    pytest benchmarks/micro --benchmark-only --benchmark-autosave  # keep this run
    pytest benchmarks/micro --benchmark-only --benchmark-compare   # vs the last saved run

Kernels (1-1, 1-n), HNSW add and search, storing and searching a pattern (plain and
filtered), the two Cypher reference queries, attention synthesis and one feedback update.
Each benchmark asserts its result, so a fast wrong answer fails.
"""

from __future__ import annotations

import itertools
from typing import Any

import agentdb
import numpy as np

Q1 = ("MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId}) "
      "WHERE root.type = 'root_cause' "
      "RETURN path, length(path) as depth, "
      "reduce(conf = 1.0, r in relationships(path) | conf * r.confidence) as chain_confidence "
      "ORDER BY chain_confidence DESC LIMIT 10")
Q2 = ("MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
      "WHERE a.id = $aid AND a.type = $type1 AND b.type = $type2 RETURN a, b, c")


def test_kernel_one_to_one(benchmark: Any, vectors: np.ndarray) -> None:
    a, b = vectors[0], vectors[1]
    d = benchmark(agentdb.distance, a, b)
    assert abs(d - (1.0 - float(a @ b))) < 1e-4


def test_kernel_one_to_n(benchmark: Any, vectors: np.ndarray, queries: np.ndarray) -> None:
    d = benchmark(agentdb.distances, queries[0], vectors)
    assert d.shape == (len(vectors),)


def test_hnsw_add_1000(benchmark: Any, vectors: np.ndarray) -> None:
    batch = vectors[:1000]

    def build() -> Any:
        idx = agentdb.HNSWIndex(vectors.shape[1], capacity=len(batch))
        idx.add(np.arange(1, len(batch) + 1), batch)
        return idx

    idx = benchmark.pedantic(build, rounds=3, iterations=1)
    assert len(idx.ids()) == 1000


def test_hnsw_search_k10(benchmark: Any, index: Any, queries: np.ndarray) -> None:
    qs = itertools.cycle(queries)
    ids, _ = benchmark(lambda: index.search(next(qs), 10))
    assert len(ids) == 10


def test_store_one_pattern(benchmark: Any, store: Any, queries: np.ndarray) -> None:
    qs = itertools.cycle(queries)
    pid = benchmark(lambda: store.store_pattern("benchmarked", embedding=next(qs), reward=0.5))
    assert store.get_pattern(pid).task == "benchmarked"


def test_search_patterns(benchmark: Any, store: Any, queries: np.ndarray) -> None:
    qs = itertools.cycle(queries)
    hits = benchmark(lambda: store.search_patterns(next(qs), k=10))
    assert len(hits) == 10


def test_filtered_search(benchmark: Any, store: Any, queries: np.ndarray) -> None:
    qs = itertools.cycle(queries)
    hits = benchmark(lambda: store.search_patterns(next(qs), k=10, min_reward=0.5,
                                                   where={"lang": "py"}))
    assert hits and all(h.record.metadata["lang"] == "py" for h in hits)


def test_cypher_reference_query_1(benchmark: Any, graph: Any) -> None:
    rows = benchmark(graph.query, Q1, {"outcomeId": "e1999"})
    assert len(rows) <= 10 and all(r["depth"] <= 5 for r in rows)


def test_cypher_reference_query_2(benchmark: Any, graph: Any) -> None:
    rows = benchmark(graph.query, Q2, {"aid": "e10", "type1": "root_cause",
                                       "type2": "root_cause"})
    assert isinstance(rows, list)


def test_attention_synthesis(benchmark: Any, store: Any, queries: np.ndarray) -> None:
    out = benchmark(store.synthesize_context, queries[0], 10)
    assert out is not None


def test_one_feedback_update(benchmark: Any, store: Any, queries: np.ndarray) -> None:
    qs = itertools.cycle(queries)
    out = benchmark(lambda: store.feedback(next(qs), 1, 1.0))
    assert isinstance(out, dict)
