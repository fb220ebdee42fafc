"""Fixtures of the micro-benchmarks (pytest-benchmark): real MiniLM vectors from
``../shared/data/minilm-pypi-100k`` when present (else random unit vectors), an index, a store
and a small causal DAG, built once per session. The header line says which backend and SIMD
path ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import agentdb
import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "minilm-pypi-100k"
N = 5000
DIM = 384


def pytest_report_header(config: Any) -> str:
    info = agentdb.native_info()
    return (f"agentdb {agentdb.__file__}: native={info.get('native')} simd={info.get('simd')} "
            f"threads={info.get('threads')}")


@pytest.fixture(scope="session")
def vectors() -> np.ndarray:
    if (DATA / "base.f16.npy").exists():
        v = np.load(DATA / "base.f16.npy", mmap_mode="r")[:N].astype(np.float32)
    else:
        v = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def queries(vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    q = vectors[rng.integers(0, len(vectors), 256)] + 0.05 * rng.standard_normal(
        (256, vectors.shape[1])).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def index(vectors: np.ndarray) -> Any:
    idx = agentdb.HNSWIndex(vectors.shape[1], capacity=len(vectors))
    idx.add(np.arange(1, len(vectors) + 1), vectors)
    return idx


@pytest.fixture(scope="session")
def store(vectors: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = agentdb.open(str(tmp_path_factory.mktemp("micro") / "m.db"), dim=vectors.shape[1],
                      durability="normal")
    db.store_patterns([{"task": f"pattern {i}", "embedding": v, "reward": float(i % 10) / 10,
                        "success": bool(i % 2), "metadata": {"lang": ("py", "go", "rs")[i % 3]}}
                       for i, v in enumerate(vectors)])
    yield db
    db.close()


@pytest.fixture(scope="session")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A random causal DAG: 2,000 events, 6,000 CAUSED_BY edges, typed root/symptom/outcome."""
    db = agentdb.open(":memory:", dim=8)
    g = db.graph
    rng = np.random.default_rng(2)
    types = ("root_cause", "symptom", "outcome")
    ids = [g.add_event(id=f"e{i}", type=types[min(2, i * 3 // 2000)], name=f"event {i}")
           for i in range(2000)]
    with g.transaction():
        for _ in range(6000):
            a = int(rng.integers(0, 1990))
            b = int(min(1999, a + rng.integers(1, 10)))
            g.add_causal_edge([ids[a]], [ids[b]], confidence=float(rng.uniform(0.5, 1.0)))
    g.create_index("Event", "id")
    yield g
    db.close()
