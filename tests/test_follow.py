"""A read-only handle follows the store's writer (``AgentDB.follow``): what the server's read
workers rely on. The writer here is another handle of this process on the same file, which is
what another process looks like to SQLite."""

from __future__ import annotations

import time

import agentdb
import numpy as np
import pytest

DIM = 16


def _vecs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _same_answers(writer, reader, queries: np.ndarray, **kw) -> None:
    for q in queries:
        w = [(h["id"], h["metadata"]) for h in writer.search_hits(q, 5, ef=256, **kw)]
        r = [(h["id"], h["metadata"]) for h in reader.search_hits(q, 5, ef=256, **kw)]
        assert w == r


@pytest.fixture
def pair(tmp_path):
    path = str(tmp_path / "m.db")
    writer = agentdb.open(path, dim=DIM)
    base = _vecs(200, 0)
    writer.store_patterns([{"task": f"t{i}", "embedding": v, "reward": i / 200,
                            "metadata": {"g": i % 3}} for i, v in enumerate(base)])
    writer.checkpoint()  # the reader maps the saved index file
    reader = agentdb.open(path, dim=DIM, readonly=True)
    try:
        yield writer, reader
    finally:
        reader.close()
        writer.close()


def test_follow_sees_stores_updates_deletes_and_expiry(pair):
    writer, reader = pair
    assert reader.index_status["patterns"] == "loaded"
    gen0 = reader.follow()
    assert gen0 == writer.store.generation  # nothing to do
    queries = _vecs(20, 9)
    new = writer.store_patterns([{"task": f"n{i}", "embedding": v, "metadata": {"g": 7}}
                                 for i, v in enumerate(_vecs(30, 1))])
    victim = new[0]
    writer.delete_pattern(victim)
    moved = new[1]
    writer.update_pattern(moved, embedding=queries[0], metadata={"g": 8}, reward=0.99)
    short = writer.store_pattern("short-lived", embedding=queries[1] + 0.001, ttl=0.2)
    assert reader.search_hits(queries[0], 1, ef=256)[0]["id"] != moved  # not followed yet
    gen = reader.follow()
    assert gen == writer.store.generation > gen0
    assert reader.count() == writer.count()
    _same_answers(writer, reader, queries)
    _same_answers(writer, reader, queries, where={"g": 7})
    _same_answers(writer, reader, queries, min_reward=0.5)
    top = reader.search_hits(queries[0], 1, ef=256)[0]
    assert (top["id"], top["metadata"]) == (moved, {"g": 8})
    assert victim not in {h["id"] for q in queries for h in reader.search_hits(q, 50)}
    assert reader.search_hits(queries[1], 1, ef=256)[0]["id"] == short
    time.sleep(0.3)
    assert short not in {h["id"] for h in reader.search_hits(queries[1], 5, ef=256)}
    assert reader.get_pattern(moved).metadata == {"g": 8}


def test_follow_maps_a_newly_saved_index_file_again(pair):
    writer, reader = pair
    writer.store_patterns([{"task": "x", "embedding": v} for v in _vecs(50, 2)])
    reader.follow()
    assert reader.count() == writer.count()
    writer.checkpoint()  # a new index file: the reader opens it again instead of its copy
    more = writer.store_pattern("after the checkpoint", embedding=_vecs(1, 3)[0])
    reader.follow()
    assert reader.index_status["patterns"] == "loaded"
    _same_answers(writer, reader, _vecs(10, 4))
    assert reader.search_hits(_vecs(1, 3)[0], 1, ef=256)[0]["id"] == more


def test_follow_is_a_no_op_for_writable_and_memory_handles(tmp_path):
    db = agentdb.open(str(tmp_path / "w.db"), dim=DIM)
    db.store_pattern("a", embedding=_vecs(1, 0)[0])
    assert db.follow() == db.store.generation
    db.close()
    mem = agentdb.open(":memory:", dim=DIM)
    assert mem.follow() == mem.store.generation
    mem.close()


def test_the_servers_checkpointer_saves_changed_indexes_for_the_readers(pair):
    from agentdb.server.workers import Checkpointer

    writer, reader = pair
    saved = writer.store.meta("index_gen:patterns")
    saver = Checkpointer(writer, 0.05)
    try:
        deadline = time.monotonic() + 20
        rid = writer.store_pattern("to be saved", embedding=_vecs(1, 11)[0])
        while writer.store.meta("index_gen:patterns") == saved and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.store.meta("index_gen:patterns") != saved and saver.saves >= 1
    finally:
        saver.stop()
    reader.follow()  # maps the new file: it holds the new pattern
    assert reader.index_status["patterns"] == "loaded"
    assert reader.search_hits(_vecs(1, 11)[0], 1, ef=256)[0]["id"] == rid
    with pytest.raises(ValueError, match="> 0 seconds"):
        Checkpointer(writer, 0)
