"""The memory API on PostgreSQL: backend="postgres" (pgvector or native search), the durable
mirror of a SQLite store, and migration both ways. Real PostgreSQL servers only (the
``postgres_url`` session fixture, or a private pgserver for the restart test)."""

from __future__ import annotations

import agentdb
import numpy as np
import pytest
from _requires import unavailable
from agentdb.memory.migrate import MigrationError, migrate

DIM = 16


def vecs(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def fill(db, n=60, seed=0):
    """Patterns, episodes, skills and a small graph; returns the pattern ids."""
    v = vecs(n, seed)
    ids = db.store_patterns([
        {"task": f"task {i}", "embedding": v[i], "reward": (i % 10) / 10, "success": i % 2 == 0,
         "session_id": f"s{i % 3}", "metadata": {"lang": ["py", "go"][i % 2], "n": i}}
        for i in range(n)])
    db.store_episode("deploy", embedding=v[0], success=False, critique="forgot migrations")
    db.store_skill("http_retry", "retry HTTP calls", embedding=v[1])
    g = db.graph
    a, b = g.add_event(type="root_cause", id="a"), g.add_event(type="outcome", id="b")
    g.add_causal_edge([a], [b], confidence=0.5)
    g.create_index("Event", "type")
    return ids


@pytest.fixture
def pg_db(postgres_url, pg_schema):
    db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema, dim=DIM)
    yield db
    db.close()


# ---- backend="postgres" ---------------------------------------------------------------------


def test_postgres_backend_crud_and_search_match_sqlite(postgres_url, pg_schema):
    lite = agentdb.open(":memory:", dim=DIM)
    fill(lite)
    for search in ("pgvector", "native"):
        db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema, dim=DIM,
                          search=search)
        if db.count() == 0:
            fill(db)
        assert db.stats()["store"] == "postgres" and db.stats()["search"] == search
        assert db.count("patterns") == 60 and db.count("episodes") == 1
        q = vecs(1, 9)[0]
        for kw in ({}, {"success_only": True}, {"min_reward": 0.5}, {"session_id": "s1"},
                   {"where": {"lang": "go", "n": {"$gte": 20}}}, {"threshold": 0.1}):
            want = [(r.id, round(r.similarity, 4))
                    for r in lite.search_patterns(q, k=5, ef=200, **kw)]
            got = [(r.id, round(r.similarity, 4))
                   for r in db.search_patterns(q, k=5, ef=200, **kw)]
            assert got == want, (search, kw)
        p = db.get_pattern(3)
        assert p.task == "task 2" and p.metadata == {"lang": "py", "n": 2}
        assert db.search_skills("retry", k=1)[0].record.name == "http_retry"
        assert db.critique_summary(vecs(1, 0)[0]) == ["forgot migrations"]
        db.close()
    # records written through one mode are seen by the other after reopening
    db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema, search="native")
    assert db.dim == DIM  # read from the store's meta
    rid = db.store_pattern("new one", embedding=vecs(1, 5)[0], reward=1.0, success=True)
    db.update_pattern(rid, reward=0.25)
    db.delete_pattern(1)
    db.close()
    db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema)
    assert db.get_pattern(rid).reward == 0.25 and db.count() == 60
    with pytest.raises(KeyError):
        db.get_pattern(1)
    assert db.search_patterns(vecs(1, 5)[0], k=1)[0].id == rid
    db.close()


def test_postgres_backend_selected_by_environment(postgres_url, pg_schema, monkeypatch):
    monkeypatch.setenv("AGENTDB_BACKEND", "postgres")
    monkeypatch.setenv("AGENTDB_POSTGRES_URL", postgres_url)
    db = agentdb.open(schema=pg_schema, dim=DIM)
    assert db.backend_name == "postgres" and db.path.startswith("postgresql://")
    db.store_pattern("x", embedding=vecs(1)[0])
    assert db.count() == 1
    db.close()


def test_open_with_a_postgres_url_as_the_path(postgres_url, pg_schema):
    db = agentdb.open(postgres_url, schema=pg_schema, dim=DIM, search="native")
    assert db.backend_name == "postgres" and db.search_mode == "native"
    db.store_pattern("x", embedding=vecs(1)[0])
    db.close()
    db = agentdb.open(postgres_url, schema=pg_schema, search="native")
    assert db.index_status["patterns"] == "rebuilt from PostgreSQL (1 vectors)"
    db.close()


def test_postgres_backend_bad_input(pg_db):
    with pytest.raises(ValueError, match="dimension"):
        pg_db.store_pattern("x", embedding=np.ones(DIM + 1))
    with pytest.raises(ValueError):
        pg_db.store_pattern("x", embedding=np.full(DIM, np.nan))
    pg_db.store_skill("dup", embedding=vecs(1)[0])
    with pytest.raises(ValueError, match="already exists"):
        pg_db.store_skill("dup", embedding=vecs(1)[0])
    assert pg_db.count("skills") == 1 and pg_db.count() == 0
    with pytest.raises(ValueError):
        agentdb.open(backend="postgres", url="")
    with pytest.raises(ValueError, match="search"):
        agentdb.open(":memory:", search="pgvector")
    with pytest.raises(ValueError, match="backend"):
        agentdb.open(":memory:", backend="oracle")


# ---- mirror ----------------------------------------------------------------------------------


def _pg_rows(url, schema, table="patterns"):
    from agentdb.storage.postgres import PostgresStore

    st = PostgresStore(url, DIM, schema=schema)
    try:
        rows = {}
        for batch in st.iter_rows(table):
            for r in batch:
                rows[r["id"]] = r
        return rows, st.checksum(table) if hasattr(st, "checksum") else None
    finally:
        st.close()


def test_mirror_copies_every_write(tmp_path, postgres_url, pg_schema):
    from agentdb.storage.postgres import sqlite_checksum

    db = agentdb.open(str(tmp_path / "m.db"), dim=DIM, mirror=postgres_url,
                      mirror_schema=pg_schema)
    ids = fill(db)
    db.update_pattern(ids[0], reward=0.99, metadata={"edited": True})
    db.delete_pattern(ids[1])
    assert db.mirror_flush(60)
    st = db.mirror_status()
    assert st["enabled"] and st["pending"] == 0 and st["connected"] and st["last_error"] is None
    rows, pg_sum = _pg_rows(postgres_url, pg_schema)
    assert sorted(rows) == sorted(set(ids) - {ids[1]})
    assert rows[ids[0]]["reward"] == 0.99 and rows[ids[0]]["metadata"] == {"edited": True}
    assert pg_sum == sqlite_checksum(db.store, "patterns")
    db.close()


def test_mirror_survives_a_postgres_restart(tmp_path):
    """Stop the server mid-ingest: local writes keep succeeding, the outbox drains when the
    server is back, and every record arrives exactly once."""
    try:
        import pgserver
    except ImportError:
        unavailable("POSTGRES", "needs the 'postgres' extra (pgserver)")
    import psycopg
    from agentdb.storage.postgres import sqlite_checksum

    data = str(tmp_path / "pg")
    srv = pgserver.get_server(data, cleanup_mode="stop")
    url = srv.get_uri()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
    db = agentdb.open(str(tmp_path / "m.db"), dim=DIM, mirror=url)
    v = vecs(600, 1)
    ids = [db.store_pattern(f"t{i}", embedding=v[i]) for i in range(200)]
    assert db.mirror_flush(60)
    srv.cleanup()  # PostgreSQL goes away mid-ingest
    ids += [db.store_pattern(f"t{i}", embedding=v[i]) for i in range(200, 400)]
    ids += db.store_patterns([{"task": f"t{i}", "embedding": v[i]} for i in range(400, 600)])
    db.update_pattern(ids[5], reward=0.5)
    db.delete_pattern(ids[6])
    assert db.count() == 599  # every local write succeeded
    st = db.mirror_status()
    assert st["pending"] >= 400 and st["lag_seconds"] >= 0
    srv = pgserver.get_server(data, cleanup_mode="stop")  # back again
    try:
        assert db.mirror_flush(120), db.mirror_status()
        assert db.mirror_status()["pending"] == 0
        rows, pg_sum = _pg_rows(srv.get_uri(), "public")
        assert sorted(rows) == sorted(set(ids) - {ids[6]})  # exactly once: ids are unique keys
        assert len(rows) == 599 and rows[ids[5]]["reward"] == 0.5
        assert pg_sum == sqlite_checksum(db.store, "patterns")
        db.close()
        # a reopened store keeps feeding the mirror from its durable outbox
        db = agentdb.open(str(tmp_path / "m.db"), mirror=srv.get_uri())
        db.store_pattern("after reopen", embedding=v[0])
        assert db.mirror_flush(60)
        assert len(_pg_rows(srv.get_uri(), "public")[0]) == 600
        db.close()
    finally:
        srv.cleanup()


def test_mirror_rejects_bad_urls(tmp_path):
    with pytest.raises(ValueError, match="PostgreSQL URL"):
        agentdb.open(str(tmp_path / "x.db"), dim=DIM, mirror="mysql://nope")
    assert agentdb.open(":memory:", dim=DIM).mirror_status() == {"enabled": False}


# ---- migration -------------------------------------------------------------------------------


def test_migrate_sqlite_to_postgres_and_back(tmp_path, postgres_url, pg_schema):
    src = str(tmp_path / "src.db")
    db = agentdb.open(src, dim=DIM)
    fill(db, n=150)
    want = [(r.id, round(r.similarity, 4)) for r in db.search_patterns(vecs(1, 3)[0], k=5)]
    db.close()
    report = migrate(src, postgres_url, schema=pg_schema, batch=40, progress=False)
    assert report["patterns"]["copied"] == 150 and report["patterns"]["checksum_ok"]
    assert report["graph_edges"]["destination"] == 1
    import psycopg

    with psycopg.connect(postgres_url) as conn:  # the deferred HNSW index was rebuilt
        names = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,))}
    assert {"reasoning_patterns_hnsw", "episodes_hnsw", "skills_hnsw"} <= names
    again = migrate(src, postgres_url, schema=pg_schema, progress=False)  # resumable/idempotent
    assert again["patterns"]["copied"] == 0 and again["patterns"]["checksum_ok"]
    pg = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema)
    assert [(r.id, round(r.similarity, 4)) for r in pg.search_patterns(vecs(1, 3)[0], k=5,
                                                                    ef=200)] == want
    assert pg.graph.query("MATCH (a {id: 'a'})-->(b) RETURN b.type AS t") == [{"t": "outcome"}]
    pg.close()
    back = str(tmp_path / "back.db")
    report = migrate(postgres_url, back, schema=pg_schema, progress=False)
    assert all(v["source"] == v["destination"] for v in report.values())
    db = agentdb.open(back)
    assert db.count() == 150 and db.graph.indexes() == [("Event", "type")]
    assert [(r.id, round(r.similarity, 4)) for r in db.search_patterns(vecs(1, 3)[0], k=5)] == want
    db.close()


def test_migrate_resumes_after_a_partial_copy(tmp_path, postgres_url, pg_schema):
    src = str(tmp_path / "src.db")
    db = agentdb.open(src, dim=DIM)
    fill(db, n=100)
    db.close()
    from agentdb.storage import SQLiteStore
    from agentdb.storage.postgres import PostgresStore

    lite = SQLiteStore(src, DIM, readonly=True)
    pg = PostgresStore(postgres_url, DIM, schema=pg_schema)
    first = next(iter(lite.iter_rows("patterns", batch=30)))
    with pg.write() as w:  # a run that died after its first batch
        pg.upsert_rows(w, "patterns", first)
    pg.close()
    lite.close()
    report = migrate(src, postgres_url, schema=pg_schema, progress=False)
    assert report["patterns"]["copied"] == 70 and report["patterns"]["checksum_ok"]


def test_migrate_errors(tmp_path, postgres_url):
    with pytest.raises(ValueError, match="between SQLite and PostgreSQL"):
        migrate(str(tmp_path / "a.db"), str(tmp_path / "b.db"))
    with pytest.raises(FileNotFoundError, match="no AgentDB store"):
        migrate(str(tmp_path / "missing.db"), postgres_url)
    with pytest.raises(ValueError, match="batch"):
        migrate(str(tmp_path / "a.db"), postgres_url, batch=0)
    assert not isinstance(MigrationError("x"), ValueError)


def test_migrate_command_line(tmp_path, postgres_url, pg_schema):
    import json

    from agentdb.cli import _build_app
    from typer.testing import CliRunner

    src = str(tmp_path / "src.db")
    db = agentdb.open(src, dim=DIM)
    fill(db, n=30)
    db.close()
    runner = CliRunner()
    res = runner.invoke(_build_app(), ["migrate", "--from", src, "--to", postgres_url,
                                       "--schema", pg_schema, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["patterns"]["copied"] == 30 and report["patterns"]["checksum_ok"] is True
    res = runner.invoke(_build_app(), ["migrate", "--from", src, "--to", postgres_url,
                                       "--schema", pg_schema])
    assert res.exit_code == 0 and "patterns" in res.output and "ok" in res.output
    res = runner.invoke(_build_app(), ["migrate", "--from", str(tmp_path / "none.db"),
                                       "--to", postgres_url])
    assert res.exit_code == 1 and "no AgentDB store" in res.output


def test_delete_patterns_by_filter_on_postgres(pg_db):
    from test_memory import _delete_by_filter_checks

    _delete_by_filter_checks(pg_db)
