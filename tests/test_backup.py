"""Backups of an embedded store while it is in use (``db.backup``, ``agentdb backup``) and
restores (``agentdb restore``): the copy opens and holds exactly the records committed before
its snapshot, with index files and a graph snapshot that belong to those records."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import agentdb
import numpy as np
import pytest
from agentdb.errors import ConflictError, InvalidTypeError, StoreError, StoreLockedError
from agentdb.memory.backup import backup_path, restore

DIM = 16


def vec(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(DIM).astype(np.float32)


def ids_at(path: str, table: str, generation: int | None = None) -> set[int]:
    conn = sqlite3.connect(path)
    try:
        q = f"SELECT id FROM {table}" + ("" if generation is None else " WHERE gen <= ?")
        return {r[0] for r in conn.execute(q, () if generation is None else (generation,))}
    finally:
        conn.close()


@contextmanager
def writing(write: Callable[[int], Any], before: int = 50, after: int = 50) -> Iterator[None]:
    """A thread calling ``write(i)`` for i = 1000, 1001, ...: the body runs once ``before``
    writes are done, and the thread stops ``after`` writes past the body's end."""
    stop = threading.Event()
    done = [0]

    def run() -> None:
        i = 1000
        while not stop.is_set() and i < 20_000:
            write(i)
            done[0] += 1
            i += 1

    t = threading.Thread(target=run)
    t.start()
    try:
        while done[0] < before:
            stop.wait(0.01)
        yield
        mark = done[0]
        while done[0] < mark + after and t.is_alive():
            stop.wait(0.01)
    finally:
        stop.set()
        t.join(60)


def test_a_backup_taken_during_writes_holds_exactly_what_was_committed_before_it(tmp_path):
    path = str(tmp_path / "live.db")
    db = agentdb.open(path, dim=DIM)
    for i in range(300):
        db.store_pattern(f"task {i}", embedding=vec(i), reward=0.5, success=True)
    g = db.graph
    events = [g.add_event(name=f"e{i}") for i in range(50)]
    g.add_causal_chain(events[:10])
    db.checkpoint()  # index files and the graph snapshot on disk

    def write(i: int) -> None:
        db.store_pattern(f"task {i}", embedding=vec(i), reward=1.0)
        if i % 7 == 0:
            g.add_event(name=f"late{i}")

    with writing(write):
        info = db.backup(tmp_path / "copy.db")
    db.close()
    copy = str(tmp_path / "copy.db")
    want = ids_at(path, "patterns", info["generation"])
    assert len(want) > 300 and want < ids_at(path, "patterns")  # writes before and after
    assert ids_at(copy, "patterns") == want
    assert ids_at(copy, "graph_nodes") == ids_at(path, "graph_nodes", info["generation"])
    assert info["records"]["patterns"] == len(want)
    restored = agentdb.open(copy, dim=DIM)
    try:
        assert restored.count("patterns") == len(want)
        for rid in sorted(want)[::37]:
            p = restored.get_pattern(rid)
            hit = restored.search_patterns(p.embedding, k=1)[0]
            assert hit.id == rid
        assert restored.graph.stats()["nodes"] == len(ids_at(copy, "graph_nodes"))
        assert restored.graph.stats()["loaded_from"] == "snapshot"
    finally:
        restored.close()


def test_index_files_go_along_only_when_they_belong_to_the_copy(tmp_path):
    path = str(tmp_path / "live.db")
    db = agentdb.open(path, dim=DIM)
    for i in range(100):
        db.store_pattern(f"t{i}", embedding=vec(i))
    db.graph.add_event(name="x")
    db.checkpoint()
    info = db.backup(tmp_path / "a.db")  # in-process: the files are the registered ones
    assert sorted(Path(f).name for f in info["files"]) == [
        "a.db.episodes.hnsw", "a.db.graph", "a.db.graph-meta", "a.db.patterns.hnsw",
        "a.db.skills.hnsw"]
    assert info["rebuilt_on_open"] == []
    # from another "process" while this one writes: the vector index files stay behind
    other = backup_path(path, tmp_path / "b.db")
    assert {"index_gen:patterns", "index_gen:episodes", "index_gen:skills"} <= set(
        other["rebuilt_on_open"])
    assert not Path(str(tmp_path / "b.db") + ".patterns.hnsw").exists()
    db.close()
    for name in ("a.db", "b.db"):
        copy = agentdb.open(str(tmp_path / name), dim=DIM)
        try:
            assert copy.count("patterns") == 100
            assert copy.search_patterns(vec(5), k=1)[0].record.task == "t5"
            assert copy.graph.stats()["nodes"] == 1
        finally:
            copy.close()
    idle = backup_path(path, tmp_path / "c.db")  # nobody writes it now: files go along
    assert idle["rebuilt_on_open"] == [] and len(idle["files"]) == 5


def test_restore_replaces_only_on_request_and_never_a_store_in_use(tmp_path):
    src = str(tmp_path / "src.db")
    db = agentdb.open(src, dim=DIM)
    db.store_pattern("kept", embedding=vec(1))
    db.checkpoint()
    db.backup(tmp_path / "bak.db")
    db.store_pattern("after the backup", embedding=vec(2))
    db.close()
    dest = str(tmp_path / "dest.db")
    files = restore(tmp_path / "bak.db", dest)
    assert Path(dest).exists() and len(files) >= 2
    with pytest.raises(ConflictError, match="exists"):
        restore(tmp_path / "bak.db", dest)
    live = agentdb.open(dest, dim=DIM)
    with pytest.raises(StoreLockedError):
        restore(tmp_path / "bak.db", dest, force=True)
    live.store_pattern("written to the restored store", embedding=vec(3))
    live.graph.add_event(name="stale side files must go")
    live.close()
    restore(tmp_path / "bak.db", dest, force=True)
    assert not Path(dest + ".graph").exists()  # the replaced store's graph snapshot is gone
    back = agentdb.open(dest, dim=DIM)
    try:
        assert [h.record.task for h in back.search_patterns(vec(1), k=5)] == ["kept"]
        assert back.graph.stats()["nodes"] == 0
    finally:
        back.close()


def test_bad_backup_requests_get_clear_errors(tmp_path):
    mem = agentdb.open(":memory:", dim=DIM)
    with pytest.raises(StoreError, match="in-memory"):
        mem.backup(tmp_path / "x.db")
    path = str(tmp_path / "a.db")
    db = agentdb.open(path, dim=DIM)
    db.backup(tmp_path / "b.db")
    with pytest.raises(ConflictError, match="already exists"):
        db.backup(tmp_path / "b.db")
    with pytest.raises(ConflictError, match="itself"):
        db.backup(path)
    with pytest.raises(InvalidTypeError, match="destination"):
        db.backup(None)
    with pytest.raises(InvalidTypeError, match="destination"):
        db.backup("")
    db.close()
    with pytest.raises(FileNotFoundError):
        backup_path(tmp_path / "missing.db", tmp_path / "c.db")
    with pytest.raises(FileNotFoundError):
        restore(tmp_path / "missing.db", tmp_path / "c.db")


def test_cli_backup_and_restore(tmp_path, capsys):
    pytest.importorskip("typer")
    from agentdb.cli import main

    src = str(tmp_path / "m.db")
    db = agentdb.open(src, dim=DIM)
    db.store_pattern("cli", embedding=vec(9))
    db.close()
    assert main(["backup", src, str(tmp_path / "copy.db")]) == 0
    assert "1 patterns" in " ".join(capsys.readouterr().out.split())  # rich may wrap lines
    assert main(["restore", str(tmp_path / "copy.db"), str(tmp_path / "r.db")]) == 0
    assert main(["restore", str(tmp_path / "copy.db"), str(tmp_path / "r.db")]) == 1
    assert "exists" in capsys.readouterr().err
    again = agentdb.open(str(tmp_path / "r.db"), dim=DIM)
    assert again.count("patterns") == 1
    again.close()


def _pg_tool(name: str) -> str:
    """A PostgreSQL client program: pgserver's own (matching its server) or one on PATH."""
    import shutil

    try:
        import pgserver  # type: ignore[import-not-found]

        own = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
        if own.exists():
            return str(own)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not available")
    return found


def test_postgres_equivalent_pg_dump_during_writes_and_pg_restore(postgres_url, pg_schema,
                                                                   tmp_path):
    """The PostgreSQL backend's backup is ``pg_dump`` (one repeatable-read snapshot while
    writers go on) and ``pg_restore``, as docs/migration.md shows: the restored store holds
    exactly the rows of the dump's generation."""
    import subprocess
    import uuid

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema, dim=DIM)
    for i in range(100):
        db.store_pattern(f"task {i}", embedding=vec(i))
    dump = tmp_path / "agentdb.dump"
    with writing(lambda i: db.store_pattern(f"task {i}", embedding=vec(i)), 20, 20):
        subprocess.run([_pg_tool("pg_dump"), "--format=custom", f"--schema={pg_schema}",
                        f"--file={dump}", f"--dbname={postgres_url}"], check=True, timeout=120)
    dbname = "restored_" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    target = make_conninfo(**{**conninfo_to_dict(postgres_url), "dbname": dbname})
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        subprocess.run([_pg_tool("pg_restore"), f"--dbname={target}", str(dump)], check=True,
                       timeout=120)
        with psycopg.connect(target) as conn:
            gen = int(conn.execute(f'SELECT value FROM "{pg_schema}".meta '
                                   "WHERE key = 'generation'").fetchone()[0])
            got = {r[0] for r in conn.execute(
                f'SELECT id FROM "{pg_schema}".reasoning_patterns')}
        with psycopg.connect(postgres_url) as conn:
            live = {r[0]: r[1] for r in conn.execute(
                f'SELECT id, gen FROM "{pg_schema}".reasoning_patterns')}
        assert got == {i for i, g in live.items() if g <= gen}
        assert 100 < len(got) < len(live)  # writes before and after the dump
        restored = agentdb.open(backend="postgres", url=target, schema=pg_schema, dim=DIM)
        try:
            assert restored.count("patterns") == len(got)
            assert restored.search_patterns(vec(7), k=1)[0].record.task == "task 7"
        finally:
            restored.close()
    finally:
        db.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def test_backup_over_http_into_the_servers_backup_dir(tmp_path):
    pytest.importorskip("fastapi")
    from agentdb.errors import InvalidArgumentError
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient

    backups = tmp_path / "backups"
    backups.mkdir()
    db = agentdb.open(str(tmp_path / "served.db"), dim=DIM)
    headers = {"Authorization": "Bearer k1"}
    try:
        with TestClient(create_app(db, api_keys=["k1"], backup_dir=backups)) as c:
            for i in range(5):
                r = c.post("/patterns/store", json={"task": f"t{i}",
                                                     "embedding": vec(i).tolist()},
                           headers=headers)
                assert r.status_code == 201
            r = c.post("/backup", json={"name": "nightly.db"}, headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["records"]["patterns"] == 5
            assert c.post("/backup", json={"name": "nightly.db"},
                          headers=headers).status_code == 409
            for bad in ("../escape.db", "a/b.db", ".hidden", "", "x" * 200):
                assert c.post("/backup", json={"name": bad},
                              headers=headers).status_code == 422, bad
            assert c.post("/backup", json={"name": "x.db"}).status_code == 401
        with TestClient(create_app(db, api_keys=["k1"])) as c:  # no --backup-dir: off
            r = c.post("/backup", json={"name": "y.db"}, headers=headers)
            assert r.status_code == 404 and "--backup-dir" in r.text
    finally:
        db.close()
    copy = agentdb.open(str(backups / "nightly.db"), dim=DIM)
    assert copy.count("patterns") == 5
    copy.close()
    assert not (tmp_path / "escape.db").exists()
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        create_app(agentdb.open(":memory:", dim=DIM), api_keys=["k1"],
                   backup_dir=tmp_path / "missing")
