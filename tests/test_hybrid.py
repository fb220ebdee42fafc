"""Hybrid search: full-text (SQLite FTS5 / PostgreSQL tsvector) beside the vector index, kept
in the records' own transactions, ``mode="text"`` and ``mode="hybrid"`` (reciprocal-rank
fusion) on the embedded store, PostgreSQL, the cluster (``test_cluster.py``) and HTTP."""

from __future__ import annotations

import sqlite3

import agentdb
import numpy as np
import pytest
from agentdb.engines.fusion import check_text_weight, query_terms, rrf
from agentdb.errors import InvalidArgumentError, InvalidTypeError, StoreError

DIM = 16
TEXTS = [
    ("retry the upload when the server answers ERR_CONN_RESET", "net"),
    ("parse ISO-8601 timestamps in log lines", "time"),
    ("pin psycopg2 to 2.9 for the old server", "db"),
    ("the upload failed because the connection was reset", "net"),
    ("format dates for the report", "time"),
    ("vacuum the database every night", "db"),
]


def _vec(i: int) -> np.ndarray:
    return np.random.default_rng(100 + i).standard_normal(DIM).astype(np.float32)


def test_terms_and_fusion():
    assert query_terms("ERR_CONN_RESET, err_conn_reset!") == ["err_conn_reset"]
    assert query_terms("  ?! ") == []
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 64
    assert rrf([[1, 2], [2, 3]], [1.0, 0.0])[0][0] == 1
    assert rrf([[1, 2], [2, 3]], [0.0, 1.0])[0][0] == 2
    with pytest.raises(InvalidArgumentError):
        check_text_weight(1.5)
    with pytest.raises(InvalidTypeError):
        check_text_weight("a")


def hybrid_checks(db) -> None:
    """Every engine with the embedded API: text and hybrid modes on the three collections,
    filters on both sides, updates and deletes seen at once, and the errors."""
    pids = db.store_patterns([{"task": t, "embedding": _vec(i), "session_id": s,
                               "success": i % 2 == 0, "metadata": {"topic": s}}
                              for i, (t, s) in enumerate(TEXTS)])
    eids = [db.store_episode(t, embedding=_vec(i), critique=f"critique {s}")
            for i, (t, s) in enumerate(TEXTS)]
    sids = [db.store_skill(f"skill_{i}", t, embedding=_vec(i)) for i, (t, _s) in
            enumerate(TEXTS)]
    for search, ids in ((db.search_patterns, pids), (db.search_episodes, eids),
                        (db.search_skills, sids)):
        hits = search("ERR_CONN_RESET", k=3, mode="text")
        assert [h.id for h in hits] == [ids[0]]  # the identifier, and only where it is
        assert hits[0].score > 0 and -1.0 <= hits[0].similarity <= 1.0
        both = search("upload reset", k=6, mode="text")
        assert {h.id for h in both[:2]} == {ids[0], ids[3]}  # the two upload-reset records
        fused = search("psycopg2 server", k=3, mode="hybrid")
        assert fused[0].id == ids[2] and len(fused) == 3  # text match first, vector fills in
        assert all(h.score is not None for h in fused)
        text_only = search("psycopg2 server", k=3, mode="hybrid", text_weight=1.0)
        assert text_only[0].id == ids[2]
        with pytest.raises(InvalidArgumentError, match="text query"):
            search(_vec(0), k=3, mode="text")
        with pytest.raises(InvalidArgumentError, match="mode"):
            search("x", k=3, mode="keyword")
        assert search("zzzz unknownword", k=3, mode="text") == []
    # a hybrid search's text side keeps the selective terms only (max_df)
    assert [i for i, _ in db.store.text_search("patterns", "the psycopg2", 10, max_df=1)] == [
        pids[2]]
    assert db.store.text_search("patterns", "the upload", 10, max_df=1) == []
    # filters apply to both sides
    net = db.search_patterns("upload reset", k=6, mode="hybrid", session_id="net")
    assert {h.id for h in net} == {pids[0], pids[3]}
    ok = db.search_patterns("upload reset", k=6, mode="text", success_only=True)
    assert [h.id for h in ok] == [pids[0]]
    meta = db.search_patterns("the", k=6, mode="text", where={"topic": "db"})
    assert {h.id for h in meta} == {pids[2], pids[5]}
    # updates and deletes are seen by the next search
    db.update_pattern(pids[1], task="handle ERR_CONN_RESET in the parser")
    assert {h.id for h in db.search_patterns("err_conn_reset", k=5, mode="text")} == {
        pids[0], pids[1]}
    db.delete_pattern(pids[0])
    assert [h.id for h in db.search_patterns("err_conn_reset", k=5, mode="text")] == [pids[1]]
    with pytest.raises(InvalidArgumentError, match="rerank"):
        db.search_patterns("x", k=3, mode="hybrid", rerank="attention")
    with pytest.raises(InvalidArgumentError, match="diversity"):
        db.search_patterns("x", k=3, mode="text", diversity=0.5)


def test_embedded(tmp_path):
    with agentdb.open(":memory:", dim=DIM) as db:
        hybrid_checks(db)
    path = str(tmp_path / "m.db")
    with agentdb.open(path, dim=DIM) as db:
        db.store_pattern("kept ERR_CONN_RESET", embedding=_vec(1))
        with pytest.raises(InvalidArgumentError):  # the batch fails whole: no text row kept
            db.store_patterns([{"task": "lost ERR_CONN_RESET", "embedding": _vec(2)},
                               {"task": "bad", "reward": 7.0}])
    with agentdb.open(path, dim=DIM) as db:
        assert [h.record.task for h in db.search_patterns(
            "err_conn_reset", mode="text")] == ["kept ERR_CONN_RESET"]


def test_a_store_made_before_the_text_index_gets_it_on_open(tmp_path):
    path = str(tmp_path / "old.db")
    with agentdb.open(path, dim=DIM) as db:
        db.store_pattern("old psycopg2 note", embedding=_vec(1))
        db.store_skill("old_skill", "vacuum nightly", embedding=_vec(2))
    conn = sqlite3.connect(path)  # as a store written by an older AgentDB
    for t in ("patterns", "episodes", "skills"):
        for trig in ("insert", "delete", "update"):
            conn.execute(f"DROP TRIGGER {t}_fts_{trig}")
        conn.execute(f"DROP TABLE {t}_fts")
    conn.commit()
    conn.close()
    ro = agentdb.open(path, dim=DIM, readonly=True)
    with pytest.raises(StoreError, match="full-text index"):
        ro.search_patterns("psycopg2", mode="text")
    ro.close()
    with agentdb.open(path, dim=DIM) as db:
        assert [h.record.task for h in db.search_patterns("psycopg2", mode="text")] == [
            "old psycopg2 note"]
        assert db.search_skills("vacuum", mode="text")[0].record.name == "old_skill"


def test_postgres_backend(postgres_url, pg_schema):
    from _pg import on_each_postgres_search

    on_each_postgres_search(postgres_url, pg_schema, DIM, hybrid_checks)


def test_http():
    pytest.importorskip("fastapi")
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient

    with agentdb.open(":memory:", dim=DIM) as db:
        ids = db.store_patterns([{"task": t, "embedding": _vec(i)}
                                 for i, (t, _s) in enumerate(TEXTS)])
        db.store_skill("retry_upload", "on ERR_CONN_RESET", embedding=_vec(9))
        db.store_episode("an episode about ERR_CONN_RESET", embedding=_vec(9))
        h = {"Authorization": "Bearer k1"}
        with TestClient(create_app(db, api_keys=["k1"])) as c:
            r = c.post("/patterns/search", json={"task": "ERR_CONN_RESET", "mode": "text"},
                       headers=h)
            assert r.status_code == 200 and [x["id"] for x in r.json()["results"]] == [ids[0]]
            r = c.post("/patterns/search", json={"task": "psycopg2 server", "k": 3,
                                                 "mode": "hybrid", "textWeight": 0.7},
                       headers=h)
            assert r.json()["results"][0]["id"] == ids[2]
            r = c.post("/skills/search", json={"query": "err_conn_reset", "mode": "text"},
                       headers=h)
            assert r.json()["results"][0]["skill"]["name"] == "retry_upload"
            r = c.post("/episodes/search", json={"task": "err_conn_reset", "mode": "hybrid",
                                                 "candidates": 10}, headers=h)
            assert r.status_code == 200 and r.json()["results"]
            for bad in ({"vector": _vec(0).tolist(), "mode": "text"},
                        {"task": "x", "mode": "words"},
                        {"task": "x", "mode": "hybrid", "textWeight": 2},
                        {"task": "x", "mode": "text", "rerank": "attention"},
                        {"task": "x", "mode": "text", "diversity": 0.5}):
                r = c.post("/patterns/search", json=bad, headers=h)
                assert r.status_code == 422, bad
