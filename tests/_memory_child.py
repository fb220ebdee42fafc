"""Subprocess helper for the agent-memory tests (not collected by pytest).

Usage: ``python _memory_child.py MODE PATH [ARGS...]`` with ``PYTHONPATH`` pointing at the
in-tree package. Modes:

* ``ingest PATH DIM N START`` - store patterns START..START+N-1 one by one (durability
  "full"), printing ``"<i> <id>"`` and flushing after each ``store_pattern`` returns. Never
  closes (the parent SIGKILLs it).
* ``crash PATH DIM`` - open an existing store, write/delete/update after its last checkpoint,
  print a JSON summary and ``os._exit(0)`` without closing (a crashed process).
* ``hold PATH DIM`` - open for writing, store one pattern, print ``"ready <pid>"``, wait for a
  line on stdin, close, print ``"closed"``.
* ``embed DIM TEXT`` - print the HashingEmbedder vector of TEXT as JSON.
* ``concurrency PATH DIM N`` - 4 reader threads search/get continuously while one writer
  stores N patterns and deletes every 10th; print a JSON report of errors and the final state.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def ingest_vector(i: int, dim: int) -> np.ndarray:
    """The embedding the ``ingest`` mode stores for item ``i`` (the parent recomputes it)."""
    return np.random.default_rng(10_000 + i).standard_normal(dim).astype(np.float32)


def ingest_fields(i: int) -> dict:
    """Every scalar field the ``ingest`` mode stores for item ``i``."""
    return {
        "task": f"ingest task number {i}",
        "reward": round(((i % 21) - 10) / 10, 1),
        "success": i % 3 == 0,
        "session_id": f"sess-{i % 7}",
        "output": "out-" + "x" * (i % 50),
        "metadata": {"i": i, "tags": ["a", str(i % 5)], "nested": {"half": i / 2}},
    }


def crash_vector(tag: str, i: int, dim: int) -> np.ndarray:
    """Deterministic vectors shared by the ``crash`` mode and the parent test."""
    seed = {"base": 20_000, "new": 30_000, "upd": 40_000, "ep": 50_000}[tag] + i
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def concurrency(agentdb, path: str, dim: int, n: int) -> dict:
    import threading

    db = agentdb.open(path, dim=dim, durability="normal")
    X = np.random.default_rng(5).standard_normal((n, dim)).astype(np.float32)
    stored: list[int] = []
    deleted: set[int] = set()
    errors: list[str] = []
    missing: list[int] = []
    reads = [0]
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(n):
                stored.append(db.store_pattern(f"task {i}", embedding=X[i],
                                               reward=(i % 5) / 5, metadata={"i": i}))
                if i % 10 == 9:
                    victim = stored[i - 4]
                    deleted.add(victim)  # announced before the delete
                    db.delete_pattern(victim)
        except Exception as exc:
            errors.append(f"writer: {exc!r}")
        finally:
            done.set()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        loops = 0
        while not done.is_set() or loops < 5:
            loops += 1
            try:
                q = rng.standard_normal(dim)
                for res in (db.search_patterns(q, k=5),
                            db.search_patterns(q, k=5, min_reward=0.5),
                            db.search_patterns(q, k=3, where={"i": {"$lt": n // 2}})):
                    d = [r.distance for r in res]
                    if d != sorted(d):
                        errors.append(f"reader: unordered distances {d}")
                    for r in res:
                        if r.record.id != r.id or r.record.task != f"task {r.record.metadata['i']}":
                            errors.append(f"reader: inconsistent hit {r.id}")
                if stored:
                    pid = stored[int(rng.integers(len(stored)))]
                    try:
                        p = db.get_pattern(pid)
                        if p.task != f"task {p.metadata['i']}":
                            errors.append(f"reader: inconsistent record {pid}")
                    except KeyError:
                        missing.append(pid)
                db.count()
                reads[0] += 1
            except Exception as exc:
                errors.append(f"reader: {exc!r}")
                return

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    remaining = [pid for pid in stored if pid not in deleted]
    not_top1 = []
    deleted_found = []
    for i, pid in enumerate(stored):
        top = db.search_patterns(X[i], k=1)
        if pid in deleted:
            if top and top[0].id == pid:
                deleted_found.append(pid)
        elif not top or top[0].id != pid:
            not_top1.append(pid)
    report = {
        "errors": errors[:20], "n_errors": len(errors), "reads": reads[0],
        "stored": len(stored), "deleted": len(deleted),
        "missing_not_deleted": sorted(set(missing) - deleted),
        "count": db.count(),
        "ids_match": {p.id for p in db.iter_records("patterns")} == set(remaining),
        "not_top1": not_top1, "deleted_found": deleted_found,
    }
    db.close()
    return report


def main() -> None:
    mode = sys.argv[1]
    if mode == "embed":
        from agentdb.embedders import HashingEmbedder

        vec = HashingEmbedder(int(sys.argv[2])).embed([sys.argv[3]])[0]
        print(json.dumps([float(x) for x in vec]))
        return

    import agentdb

    path, dim = sys.argv[2], int(sys.argv[3])
    if mode == "concurrency":
        print(json.dumps(concurrency(agentdb, path, dim, int(sys.argv[4]))), flush=True)
        return
    if mode == "ingest":
        n, start = int(sys.argv[4]), int(sys.argv[5])
        db = agentdb.open(path, dim=dim, durability="full")
        for i in range(start, start + n):
            pid = db.store_pattern(embedding=ingest_vector(i, dim), **ingest_fields(i))
            sys.stdout.write(f"{i} {pid}\n")
            sys.stdout.flush()
        os._exit(3)  # the parent should have killed us long before
    elif mode == "crash":
        db = agentdb.open(path, dim=dim)
        base_ids = [p.id for p in db.iter_records("patterns")]
        db.checkpoint()
        new_ids = [db.store_pattern(f"new {i}", embedding=crash_vector("new", i, dim),
                                    metadata={"new": i}) for i in range(40)]
        deleted = base_ids[::5] + new_ids[::7]
        for pid in deleted:
            db.delete_pattern(pid)
        updated = [base_ids[1], base_ids[2], new_ids[1]]
        for n, pid in enumerate(updated):
            db.update_pattern(pid, task=f"updated {n}", embedding=crash_vector("upd", n, dim))
        reused = base_ids[3]  # delete, then store a different record under the same id
        db.delete_pattern(reused)
        db.store_pattern("reused id", embedding=crash_vector("upd", 99, dim), id=reused)
        ep_ids = [db.store_episode(f"episode {i}", embedding=crash_vector("ep", i, dim),
                                   success=False, critique=f"crit {i}") for i in range(5)]
        skill_id = db.store_skill("late_skill", "added after the checkpoint")
        print(json.dumps({"new": new_ids, "deleted": deleted, "updated": updated,
                          "episodes": ep_ids, "skill": skill_id,
                          "reused": reused}))
        sys.stdout.flush()
        os._exit(0)  # no close(), no atexit: the indexes on disk stay stale
    elif mode == "hold":
        db = agentdb.open(path, dim=dim)
        db.store_pattern("held", embedding=np.ones(dim, np.float32))
        print(f"ready {os.getpid()}", flush=True)
        sys.stdin.readline()
        db.close()
        print("closed", flush=True)
    else:  # pragma: no cover
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
