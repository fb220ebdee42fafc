"""Crash durability and the single-writer process lock of file stores.

A child process ingests patterns one by one with durability="full" and prints each id only
after store_pattern has returned; the parent SIGKILLs it mid-ingest and checks that every
acknowledged record survived intact and is searchable. A second writer process is refused with
StoreLockedError while the first holds the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _child
import agentdb
import numpy as np
import pytest
from agentdb import StoreError, StoreLockedError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

TESTS = Path(__file__).resolve().parent
CHILD = TESTS / "_memory_child.py"
DIM = 32

sys.path.insert(0, str(TESTS))
from _memory_child import ingest_fields, ingest_vector  # noqa: E402

sys.path.remove(str(TESTS))


def child_env() -> dict[str, str]:
    return _child.child_env(PYTHONUNBUFFERED="1")


def spawn(tmp_path: Path, *args: str, stdin: bool = False) -> subprocess.Popen:
    err = open(tmp_path / f"child-{args[0]}-{time.monotonic_ns()}.err", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE,
                            stderr=err, stdin=subprocess.PIPE if stdin else None, text=True,
                            env=child_env())
    proc.err_path = err.name  # type: ignore[attr-defined]
    err.close()
    return proc


def child_stderr(proc: subprocess.Popen) -> str:
    return Path(proc.err_path).read_text()  # type: ignore[attr-defined]


def check_ingested(db: agentdb.AgentDB, i: int, pid: int) -> None:
    """Record ``pid`` is exactly item ``i`` of the ingest child and is its own top-1."""
    p = db.get_pattern(pid)
    f = ingest_fields(i)
    assert (p.task, p.reward, p.success, p.session_id, p.output, p.metadata) == (
        f["task"], f["reward"], f["success"], f["session_id"], f["output"], f["metadata"])
    emb = ingest_vector(i, DIM)
    np.testing.assert_array_equal(p.embedding, emb)
    top = db.search_patterns(emb, k=1)
    assert [r.id for r in top] == [pid], f"item {i} (id {pid}) is not its own top-1"
    assert top[0].similarity == pytest.approx(1.0, abs=1e-5)


SEED = 50  # patterns written and checkpointed before the child starts (when seeded)


@pytest.mark.parametrize("kill_at,seeded", [(120, False), (300, True), (470, True)],
                         ids=["kill@120-fresh", "kill@300-seeded", "kill@470-seeded"])
def test_sigkill_mid_ingest_loses_no_acknowledged_write(tmp_path, kill_at, seeded):
    path = tmp_path / "dur.db"
    start = 0
    if seeded:
        db = agentdb.open(path, dim=DIM)
        for i in range(SEED):
            db.store_pattern(embedding=ingest_vector(i, DIM), **ingest_fields(i))
        db.close()
        start = SEED
    proc = spawn(tmp_path, "ingest", str(path), str(DIM), "5000", str(start))
    acked: dict[int, int] = {}
    try:
        while len(acked) < kill_at:
            line = proc.stdout.readline()
            if not line:
                proc.wait(timeout=30)
                pytest.fail(f"child ended early (rc={proc.returncode}): {child_stderr(proc)}")
            i, pid = map(int, line.split())
            acked[i] = pid
        os.kill(proc.pid, signal.SIGKILL)  # mid-ingest: the child is writing the next one
        rest = proc.stdout.read()  # lines written before the kill are acknowledged too
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):
            i, pid = map(int, line.split())
            acked[i] = pid
    assert len(acked) >= kill_at and len(set(acked.values())) == len(acked)
    assert list(acked) == list(range(start, start + len(acked)))  # in order, none skipped

    # threads=1: the catch-up replay is one batch add; multi-threaded batch adds can leave a
    # node unreachable (see test_memory.py::test_batch_store_every_pattern_is_its_own_top1),
    # which would make the top-1 checks below flaky for a reason unrelated to durability.
    # A reader can open the crashed store before any writer recovers it.
    ro = agentdb.open(path, readonly=True, threads=1)
    assert ro.count() >= SEED * seeded + len(acked)
    i0, pid0 = next(iter(acked.items()))
    check_ingested(ro, i0, pid0)
    ro.close()

    db = agentdb.open(path, threads=1)  # the dead writer's lock is gone
    status = db.index_status["patterns"]
    if seeded:
        assert status == "loaded"  # the saved index is caught up with the acknowledged writes
    else:
        assert status.startswith("rebuilt")  # the child never saved an index
    for i, pid in acked.items():
        check_ingested(db, i, pid)
    # at most a few writes beyond the last acknowledgement, each complete
    total = db.count()
    extra = total - SEED * seeded - len(acked)
    assert 0 <= extra <= 5, extra
    for p in db.iter_records("patterns"):
        check_ingested(db, p.metadata["i"], p.id)
    # filters and new writes work on the recovered store
    res = db.search_patterns(ingest_vector(start + 3, DIM), k=5, session_id="sess-1")
    assert len(res) == 5 and all(r.record.session_id == "sess-1" for r in res)
    new = db.store_pattern("after crash", embedding=np.ones(DIM, np.float32))
    assert db.search_patterns(np.ones(DIM), k=1)[0].id == new
    db.close()
    db = agentdb.open(path, threads=1)
    assert db.index_status["patterns"] == "loaded" and db.count() == total + 1
    check_ingested(db, *next(iter(acked.items())))
    db.close()


def test_second_writer_process_is_locked_out(tmp_path):
    path = tmp_path / "lock.db"
    proc = spawn(tmp_path, "hold", str(path), str(DIM), stdin=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), child_stderr(proc)
        holder = int(line.split()[1])
        assert holder == proc.pid
        for kw in ({}, {"dim": DIM}, {"durability": "normal"}):
            with pytest.raises(StoreLockedError) as ei:
                agentdb.open(path, **kw)
            msg = str(ei.value)
            assert f"pid {holder}" in msg and str(path) in msg
            assert "readonly=True" in msg
            assert isinstance(ei.value, StoreError)
        # readers are not locked out, and still cannot write
        ro = agentdb.open(path, readonly=True)
        assert ro.count() == 1 and ro.search_patterns(np.ones(DIM), k=1)[0].record.task == "held"
        with pytest.raises(StoreError, match="read-only"):
            ro.store_pattern("nope", embedding=np.ones(DIM))
        ro.close()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        proc.wait(timeout=30)
        assert proc.returncode == 0, child_stderr(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    db = agentdb.open(path)  # released: opens fine
    assert db.count() == 1 and db.index_status["patterns"] == "loaded"
    db.store_pattern("second writer", embedding=np.full(DIM, 0.5, np.float32))
    assert db.count() == 2
    db.close()


def test_lock_released_when_holder_is_killed(tmp_path):
    path = tmp_path / "killed.db"
    proc = spawn(tmp_path, "hold", str(path), str(DIM), stdin=True)
    try:
        assert proc.stdout.readline().startswith("ready"), child_stderr(proc)
        with pytest.raises(StoreLockedError):
            agentdb.open(path)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    db = agentdb.open(path)
    assert db.count() == 1  # the committed write survived
    assert db.index_status["patterns"].startswith("rebuilt")  # never checkpointed
    db.close()


def test_second_writer_in_same_process_is_locked_out(tmp_path):
    path = tmp_path / "same.db"
    db = agentdb.open(path, dim=DIM)
    with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
        agentdb.open(path, dim=DIM)
    db.store_pattern("still works", embedding=np.ones(DIM))
    db.close()
    db2 = agentdb.open(path, dim=DIM)
    assert db2.count() == 1
    db2.close()


def test_durability_option(tmp_path):
    for mode in ("full", "normal"):
        db = agentdb.open(tmp_path / f"{mode}.db", dim=DIM, durability=mode)
        db.store_pattern("t", embedding=np.ones(DIM))
        db.close()
        db = agentdb.open(tmp_path / f"{mode}.db", durability=mode)
        assert db.count() == 1
        db.close()
    with pytest.raises(ValueError, match="durability"):
        agentdb.open(tmp_path / "bad.db", dim=DIM, durability="paranoid")
    # the rejected open left nothing locked
    db = agentdb.open(tmp_path / "bad.db", dim=DIM)
    db.close()


def test_index_files_are_not_rewritten_for_writes_that_do_not_touch_them(tmp_path):
    """Graph writes, learning-state saves and writes to other collections advance the store
    generation but leave a collection's vectors alone: its saved index stays current (no
    replay on open, no re-save on close)."""
    path = str(tmp_path / "m.db")
    rng = np.random.default_rng(0)
    with agentdb.open(path, dim=8) as db:
        ids = db.store_patterns([{"task": f"t{i}", "embedding": rng.standard_normal(8)}
                                 for i in range(50)])
    files = {n: tmp_path / f"m.db.{n}.hnsw" for n in ("patterns", "episodes", "skills")}
    stamp = {n: os.stat(f).st_mtime_ns for n, f in files.items()}
    with agentdb.open(path) as db:
        assert db.index_status["patterns"] == "loaded"
        a, b = db.graph.add_event(name="a"), db.graph.add_event(name="b")
        db.graph.add_causal_edge([a], [b])
        db.feedback(rng.standard_normal(8), ids[3], 1.0)
        db.learning.save()
        db.store_skill("s", "a skill")  # another collection
    assert os.stat(files["patterns"]).st_mtime_ns == stamp["patterns"]
    assert os.stat(files["skills"]).st_mtime_ns != stamp["skills"]
    with agentdb.open(path) as db:
        assert all(v == "loaded" for v in db.index_status.values()), db.index_status
        assert db.learning.stats()["updates"] == 1
        db.update_pattern(ids[0], embedding=rng.standard_normal(8))
    assert os.stat(files["patterns"]).st_mtime_ns != stamp["patterns"]
    with agentdb.open(path) as db:
        assert db.index_status["patterns"] == "loaded" and db.count() == 50
        assert db.search_patterns(db.get_pattern(ids[0]).embedding, k=1)[0].id == ids[0]
