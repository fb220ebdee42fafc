"""Forgetting and de-duplication: ``ttl=`` / ``expires_at`` (invisible at once, removed by
``forget()`` or in the background), ``forget(older_than, reward_below, unused_for, where)``
with an event per record, and ``store_pattern(dedupe=...)``, on the embedded store, both
PostgreSQL search modes, the cluster (``test_cluster.py``), HTTP, the CLI and an older store
file."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import uuid

import agentdb
import numpy as np
import pytest
from agentdb.errors import InvalidArgumentError, InvalidTypeError, NotFoundError
from agentdb.memory.jsonl import export_jsonl

DIM = 16


def _vec(i: int) -> np.ndarray:
    return np.random.default_rng(500 + i).standard_normal(DIM).astype(np.float32)


def _near(v: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    return v + eps * np.ones_like(v)


def _wait(cond, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def forgetting_checks(db) -> None:
    """Every engine with the embedded API. Records carry a unique ``case`` so that a shared
    store (the cluster's) keeps other tests' records out of the criteria."""
    case = uuid.uuid4().hex
    meta = {"case": case}
    events: list[tuple[str, dict]] = []
    for name in ("pattern:deleted", "episode:deleted", "skill:deleted", "pattern:updated"):
        db.on(name, lambda event, payload: events.append((event, payload)))
    past = time.time() - 5

    # ---- expiry: invisible at once ---------------------------------------------------------
    live = db.store_pattern(f"live pattern {case}", embedding=_vec(1), metadata=meta)
    gone = db.store_pattern(f"expired pattern {case}", embedding=_near(_vec(1)), metadata=meta,
                            expires_at=past)
    soon = db.store_pattern(f"soon pattern {case}", embedding=_near(_vec(1), 2e-3),
                            metadata=meta, ttl=dt.timedelta(seconds=1.5))
    assert db.get_pattern(live).expires_at is None
    assert db.get_pattern(soon).expires_at == pytest.approx(time.time() + 1.5, abs=1.0)
    with pytest.raises(NotFoundError):
        db.get_pattern(gone)
    ids = [h.id for h in db.search_patterns(_vec(1), k=5, where=meta)]
    assert ids[:2] == [live, soon] and gone not in ids
    assert gone not in [h.id for h in db.search_patterns(_vec(1), k=10)]  # no filter either
    assert gone not in [h.id for h in db.search_patterns(case, k=5, mode="text")]
    assert gone not in [h.id for h in db.search_patterns(case, k=5, mode="hybrid")]
    assert gone not in [h.id for h in db.search_patterns(_vec(1), k=5, diversity=0.5)]
    assert gone not in db.find_ids("patterns", where=meta)
    with pytest.raises(NotFoundError):  # an expired record cannot be revived by an update
        db.update_pattern(gone, reward=0.5)
    assert _wait(lambda: soon not in [h.id for h in db.search_patterns(_vec(1), k=5)], 15)
    with pytest.raises(NotFoundError):
        db.get_pattern(soon)
    assert db.find_ids("patterns", where=meta) == [live]

    ep = db.store_episode(f"expired episode {case}", embedding=_vec(2), metadata=meta,
                          expires_at=past)
    sk_name = f"skill_{case}"
    sk = db.store_skill(sk_name, "expired skill", embedding=_vec(3), metadata=meta,
                        expires_at=past)
    with pytest.raises(NotFoundError):
        db.get_episode(ep)
    with pytest.raises(NotFoundError):
        db.get_skill(sk_name)
    assert ep not in [h.id for h in db.search_episodes(_vec(2), k=5)]
    assert sk not in [h.id for h in db.search_skills(_vec(3), k=5)]

    # ---- forget(): expired records go for good, with an event each ----------------------------
    removed = db.forget()
    assert gone in removed["patterns"] and soon in removed["patterns"]
    assert ep in removed["episodes"] and sk in removed["skills"]
    assert live not in removed["patterns"]
    assert ("pattern:deleted", {"id": gone, "reason": "expired"}) in events
    assert ("episode:deleted", {"id": ep, "reason": "expired"}) in events
    assert db.forget("patterns") == {"patterns": []}  # nothing left to remove
    # an expired skill's name is free again
    again = db.store_skill(sk_name, "the name again", embedding=_vec(3), metadata=meta)
    assert db.get_skill(sk_name).id == again

    # ---- update the expiry -----------------------------------------------------------------
    rec = db.update_pattern(live, ttl=3600)
    assert rec.expires_at == pytest.approx(time.time() + 3600, abs=5)
    assert db.update_pattern(live, expires_at=None).expires_at is None
    with pytest.raises(InvalidArgumentError, match="not both"):
        db.update_pattern(live, ttl=5, expires_at=time.time())
    assert db.update_episode(db.store_episode("e", embedding=_vec(4), metadata=meta),
                             ttl=60).expires_at is not None
    assert db.update_skill(sk_name, expires_at=past + 1e9).expires_at == past + 1e9

    # ---- criteria ----------------------------------------------------------------------------
    now = time.time()
    old_low = db.store_patterns([{"task": f"old low {case}", "embedding": _vec(10),
                                  "reward": -0.5, "metadata": meta,
                                  "created_at": now - 7200}])[0]
    new_low = db.store_pattern(f"new low {case}", embedding=_vec(11), reward=-0.5,
                               metadata=meta)
    high = db.store_pattern(f"high {case}", embedding=_vec(12), reward=0.9, metadata=meta)
    scoped = {"where": meta}
    assert db.forget("patterns", older_than=3600, reward_below=0, **scoped) == {
        "patterns": [old_low]}
    assert ("pattern:deleted", {"id": old_low, "reason": "forgotten"}) in events
    assert db.forget(["patterns"], unused_for=3600, **scoped) == {"patterns": []}
    removed = db.forget("patterns", reward_below=0.0, **scoped)
    assert removed == {"patterns": [new_low]} and db.get_pattern(high).reward == 0.9
    with pytest.raises(InvalidArgumentError, match="unknown kind"):
        db.forget("memories")
    with pytest.raises(InvalidArgumentError, match="older_than"):
        db.forget(older_than=-1)
    with pytest.raises(InvalidTypeError):
        db.forget(unused_for="a day")
    with pytest.raises(InvalidArgumentError):
        db.forget(reward_below=float("nan"))

    # ---- bad expiries --------------------------------------------------------------------------
    for kw, err in (({"ttl": 0}, InvalidArgumentError), ({"ttl": -3}, InvalidArgumentError),
                    ({"ttl": float("inf")}, InvalidArgumentError), ({"ttl": "1h"},
                                                                     InvalidTypeError),
                    ({"expires_at": float("nan")}, InvalidArgumentError),
                    ({"ttl": 5, "expires_at": now + 9}, InvalidArgumentError)):
        with pytest.raises(err):
            db.store_pattern("bad expiry", embedding=_vec(13), **kw)
    assert not db.find_ids("patterns", where={"case": case, "x": 1})

    # ---- dedupe ----------------------------------------------------------------------------------
    base = db.store_pattern(f"retry with backoff {case}", embedding=_vec(20), reward=1.0,
                            success=True, metadata={**meta, "a": 1})
    n_before = len(db.find_ids("patterns", where=meta))
    same = db.store_pattern(f"retry again {case}", embedding=_near(_vec(20)), reward=0.0,
                            success=False, metadata={**meta, "b": 2}, critique="too slow",
                            dedupe=0.99)
    assert same == base and len(db.find_ids("patterns", where=meta)) == n_before
    rec = db.get_pattern(base)
    assert (rec.uses, rec.reward, rec.success) == (2, 0.5, False)
    assert rec.metadata == {**meta, "a": 1, "b": 2} and rec.critique == "too slow"
    assert rec.task == f"retry with backoff {case}"
    assert any(n == "pattern:updated" and p["id"] == base for n, p in events)
    third = db.store_pattern("again", embedding=_near(_vec(20)), reward=-1.0, dedupe=0.99,
                             ttl=600, metadata=meta)
    rec = db.get_pattern(third)
    assert third == base and rec.uses == 3 and rec.reward == pytest.approx(0.0)
    assert rec.expires_at is not None
    other = db.store_pattern(f"unrelated {case}", embedding=_vec(21), dedupe=0.99,
                             metadata=meta)
    assert other != base and db.get_pattern(other).uses == 1
    with pytest.raises(InvalidArgumentError, match="dedupe"):
        db.store_pattern("x", embedding=_vec(22), dedupe=1.5)
    with pytest.raises(InvalidArgumentError, match="dedupe"):
        db.store_pattern("x", embedding=_vec(22), dedupe=0.9, id=10**9)
    # an expired pattern absorbs nothing
    exp = db.store_pattern(f"expired twin {case}", embedding=_vec(23), expires_at=past,
                           metadata=meta)
    fresh = db.store_pattern(f"fresh twin {case}", embedding=_vec(23), dedupe=0.99,
                             metadata=meta)
    assert fresh != exp


def test_embedded():
    with agentdb.open(":memory:", dim=DIM) as db:
        forgetting_checks(db)


def test_postgres_backend(postgres_url, pg_schema):
    from _pg import on_each_postgres_search

    on_each_postgres_search(postgres_url, pg_schema, DIM, forgetting_checks)


def test_expiry_survives_reopen_and_the_index_stays_loaded(tmp_path):
    path = str(tmp_path / "m.db")
    with agentdb.open(path, dim=DIM) as db:
        keep = db.store_pattern("keep", embedding=_vec(1))
        gone = db.store_pattern("gone", embedding=_vec(2), ttl=0.2)
        exported = str(tmp_path / "all.jsonl")
    time.sleep(0.3)
    with agentdb.open(path, dim=DIM) as db:
        assert db.index_status["patterns"] == "loaded"  # no rebuild for a count mismatch
        assert db.count("patterns") == 1
        assert [h.id for h in db.search_patterns(_vec(2), k=5)] == [keep]
        export_jsonl(db, exported)
        assert db.forget() == {"patterns": [gone], "episodes": [], "skills": []}
    lines = [json.loads(x) for x in open(exported)]
    assert [r["id"] for r in lines if r.get("kind", "patterns") in ("pattern", "patterns")
            ] == [keep]
    with agentdb.open(path, dim=DIM, readonly=True) as ro:
        assert ro.count("patterns") == 1


def test_background_forgetting(tmp_path):
    path = str(tmp_path / "bg.db")
    with agentdb.open(path, dim=DIM, forget_every=0.05) as db:
        seen: list[dict] = []
        db.on("pattern:deleted", lambda _event, payload: seen.append(payload))
        pid = db.store_pattern("short-lived", embedding=_vec(1), ttl=0.1)
        keep = db.store_pattern("kept", embedding=_vec(2))
        assert _wait(lambda: {"id": pid, "reason": "expired"} in seen)
        assert db.store.count("patterns", expired=True) == 1
        assert db._forgetter.removed >= 1
        assert db.get_pattern(keep).task == "kept"
    with pytest.raises(InvalidArgumentError, match="forget_every"):
        agentdb.open(path, dim=DIM, readonly=True, forget_every=1)
    with pytest.raises(InvalidArgumentError):
        agentdb.open(":memory:", dim=DIM, forget_every=0)


def test_a_schema_1_store_opens_and_is_upgraded(tmp_path):
    path = str(tmp_path / "v1.db")
    with agentdb.open(path, dim=DIM) as db:
        pid = db.store_pattern("from an older agentdb", embedding=_vec(1))
        db.store_skill("old_skill", embedding=_vec(2))
    conn = sqlite3.connect(path)  # as agentdb 0.x wrote it: no expiry, no pattern uses
    for t in ("patterns", "episodes", "skills"):
        conn.execute(f"DROP INDEX {t}_expires")
        conn.execute(f"ALTER TABLE {t} DROP COLUMN expires_at")
    conn.execute("ALTER TABLE patterns DROP COLUMN uses")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with agentdb.open(path, dim=DIM, readonly=True) as ro:
        rec = ro.get_pattern(pid)
        assert (rec.uses, rec.expires_at) == (1, None)
        assert [h.id for h in ro.search_patterns(_vec(1), k=1)] == [pid]
        assert ro.forget.__self__ is ro and ro.count("skills") == 1
    with agentdb.open(path, dim=DIM) as db:  # upgraded in place
        assert db.store.meta("schema_version") == "2"
        assert db.get_pattern(pid).uses == 1
        short = db.store_pattern("new", embedding=_vec(3), expires_at=time.time() - 1)
        assert db.forget("patterns") == {"patterns": [short]}
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(agentdb.errors.StoreError, match="schema version 3"):
        agentdb.open(path, dim=DIM)


def test_http_and_client():
    pytest.importorskip("fastapi")
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient

    with agentdb.open(":memory:", dim=DIM) as db:
        h = {"Authorization": "Bearer k1"}
        with TestClient(create_app(db, api_keys=["k1"])) as c:
            r = c.post("/patterns/store", json={"task": "a", "embedding": _vec(1).tolist(),
                                                "reward": 1.0}, headers=h)
            base = r.json()["id"]
            assert r.json()["pattern"]["uses"] == 1 and r.json()["pattern"]["expiresAt"] is None
            r = c.post("/patterns/store", json={"task": "b", "embedding": _near(_vec(1)).tolist(),
                                                "dedupe": 0.99}, headers=h)
            assert r.status_code == 201 and r.json()["id"] == base
            assert r.json()["pattern"]["uses"] == 2 and r.json()["pattern"]["reward"] == 0.5
            r = c.post("/episodes/store", json={"task": "e", "embedding": _vec(2).tolist(),
                                                "expiresAt": time.time() - 1}, headers=h)
            assert r.status_code == 422 and "past" in r.text
            r = c.post("/episodes/store", json={"task": "e", "embedding": _vec(2).tolist(),
                                                "ttl": 0.05}, headers=h)
            eid = r.json()["id"]
            assert r.status_code == 201
            time.sleep(0.1)
            assert c.get(f"/episodes/{eid}", headers=h).status_code == 404
            r = c.post("/skills/store", json={"name": "s", "embedding": _vec(3).tolist(),
                                              "ttl": 60}, headers=h)
            assert r.json()["skill"]["expiresAt"] > time.time()
            for bad in ({"task": "x", "ttl": -1}, {"task": "x", "ttl": "1h"},
                        {"task": "x", "ttl": 5, "expiresAt": 1e9},
                        {"task": "x", "dedupe": 0}, {"task": "x", "dedupe": 2}):
                assert c.post("/patterns/store", json=bad, headers=h).status_code == 422, bad
            assert c.post("/episodes/store", json={"task": "x", "dedupe": 0.9},
                          headers=h).status_code == 422  # episodes do not de-duplicate
            r = c.post("/forget", json={}, headers=h)
            assert r.status_code == 200 and r.json()["removed"]["episodes"] == [eid]
            low = db.store_pattern("low", embedding=_vec(5), reward=-1.0)
            r = c.post("/forget", json={"kinds": ["patterns"], "rewardBelow": 0}, headers=h)
            assert r.json() == {"removed": {"patterns": [low]}}
            assert c.post("/forget", json={"kinds": ["memories"]}, headers=h).status_code == 422
            assert c.post("/forget", json={"olderThan": -5}, headers=h).status_code == 422
            assert c.post("/forget", json={}).status_code == 401


def test_cli_forget(tmp_path):
    pytest.importorskip("typer")
    from agentdb.cli import main

    path = str(tmp_path / "cli.db")
    with agentdb.open(path, dim=DIM) as db:
        gone = db.store_pattern("gone", embedding=_vec(1), expires_at=time.time() - 1)
        low = db.store_pattern("low", embedding=_vec(2), reward=-0.5, metadata={"t": 1})
        db.store_pattern("kept", embedding=_vec(3), reward=-0.5)
    assert main(["forget", path, "--kind", "patterns", "--reward-below", "0", "--where",
                 '{"t": 1}', "--json"]) in (0, None)
    with agentdb.open(path, dim=DIM) as db:
        assert db.store.count("patterns", expired=True) == 1
        assert {gone, low}.isdisjoint(db.store.existing("patterns", [gone, low]))


def test_cli_store_ttl_dedupe_and_namespace(tmp_path, capsys):
    pytest.importorskip("typer")
    from agentdb.cli import main

    path = str(tmp_path / "cli2.db")
    for args in (["store", "retry uploads", "--reward", "1", "--db", path, "--json"],
                 ["store", "retry uploads", "--dedupe", "0.95", "--db", path, "--json"],
                 ["store", "short note", "--ttl", "60", "--db", path, "--json"],
                 ["store", "alice's note", "--namespace", "alice", "--db", path, "--json"]):
        assert main(args) in (0, None)
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert ids[0] == ids[1]
    with agentdb.open(path) as db:
        assert db.get_pattern(ids[0]).uses == 2 and db.get_pattern(ids[0]).reward == 0.5
        assert db.get_pattern(ids[2]).expires_at is not None
        assert db.count() == 2 and db.namespace("alice").count() == 1
    assert main(["store", "x", "--kind", "skill", "--dedupe", "0.9", "--db", path]) == 1
    assert "--dedupe applies to patterns" in capsys.readouterr().err
