"""The learning layer: LoRA query adapter (gradients, feedback), EWC++, the switch and reset,
persistence (SQLite file, PostgreSQL, read-only, corrupt state), bad input, and federated
merging (weighting, SVD re-factoring, poisoned updates, publishing). No timing assertions."""

from __future__ import annotations

import agentdb
import numpy as np
import pytest
from agentdb.learning import (
    AdapterUpdate,
    EphemeralLearningAgent,
    FederatedLearningCoordinator,
    Learner,
    LearningConfig,
    LearningStateError,
    LoRAAdapter,
    contrastive_grad,
    normalize,
    refactor,
)
from agentdb.learning.federated import fingerprint
from agentdb.learning.state import META_KEY
from agentdb.storage import StoreError

DIM = 32


def fill(db, n=300, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, db.dim)).astype(np.float32)
    return db.store_patterns([{"task": f"p{i}", "embedding": v[i]} for i in range(n)])


def rank_of(db, q, pid, k=100, **kw):
    ids = [h.id for h in db.search_patterns(q, k=k, **kw)]
    return ids.index(pid) if pid in ids else k


def trained_db(path=":memory:", steps=40, seed=1, **opts):
    db = agentdb.open(path, dim=DIM, **opts)
    fill(db)
    q = np.random.default_rng(seed).standard_normal(DIM)
    target = db.search_patterns(q, k=30)[-1].id
    for _ in range(steps):
        db.feedback(q, target, 1.0)
    return db, q, target


# ---- adapter and gradients ------------------------------------------------------------------
def test_fresh_adapter_is_the_identity_and_search_is_unchanged():
    ad = LoRAAdapter(DIM, rank=8, seed=3)
    q = np.random.default_rng(0).standard_normal((5, DIM))
    assert ad.is_identity and ad.delta_norm() == 0.0
    np.testing.assert_allclose(ad.apply(q), normalize(q), rtol=1e-6, atol=1e-7)
    db = agentdb.open(":memory:", dim=DIM)
    fill(db)
    assert db.learning.enabled and not db.learning.active
    for qq in q:
        a = [(h.id, h.similarity) for h in db.search_patterns(qq, k=10)]
        b = [(h.id, h.similarity) for h in db.search_patterns(qq, k=10, adapt=False)]
        assert a == b
    assert db.learning.apply(q[0].astype(np.float32)) is not None


@pytest.mark.parametrize("weight", [1.0, 0.4, -0.7])
def test_gradient_matches_finite_differences(weight):
    rng = np.random.default_rng(7)
    d, r = 12, 3
    A, B = rng.standard_normal((r, d)) * 0.3, rng.standard_normal((d, r)) * 0.3
    q = normalize(rng.standard_normal(d))
    C = normalize(rng.standard_normal((6, d)))
    loss, dA, dB, _ = contrastive_grad(A, B, q, C, 2, weight, 0.2)
    eps = 1e-6
    for P, G in ((A, dA), (B, dB)):
        num = np.zeros_like(P)
        for idx in np.ndindex(P.shape):
            old = P[idx]
            P[idx] = old + eps
            up = contrastive_grad(A, B, q, C, 2, weight, 0.2)[0]
            P[idx] = old - eps
            down = contrastive_grad(A, B, q, C, 2, weight, 0.2)[0]
            P[idx] = old
            num[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(G, num, rtol=1e-5, atol=1e-8)
    assert loss > 0


def test_feedback_moves_the_positive_up_and_generalises_to_nearby_queries():
    db, q, target = trained_db()
    assert db.learning.active
    assert rank_of(db, q, target, adapt=False) >= 20
    assert rank_of(db, q, target) == 0
    near = q + 0.05 * np.random.default_rng(5).standard_normal(DIM)
    assert rank_of(db, near, target) < rank_of(db, near, target, adapt=False)
    st = db.learning.stats()
    assert st["updates"] == 40 and st["positive"] == 40 and st["adapter_norm"] > 0
    assert db.stats()["learning"]["updates"] == 40


def test_negative_feedback_pushes_a_pattern_down():
    db = agentdb.open(":memory:", dim=DIM)
    fill(db)
    q = np.random.default_rng(2).standard_normal(DIM)
    top = db.search_patterns(q, k=1)[0].id
    for _ in range(30):
        out = db.feedback(q, top, -1.0)
    assert out["updated"] and db.learning.stats()["negative"] == 30
    assert rank_of(db, q, top) > 0


def test_feedback_trajectory_uses_the_retrieved_list():
    db = agentdb.open(":memory:", dim=DIM)
    fill(db)
    q = np.random.default_rng(3).standard_normal(DIM)
    retrieved = [h.id for h in db.search_patterns(q, k=8)]
    for _ in range(30):
        out = db.feedback_trajectory(q, retrieved, 1.0, used=retrieved[5])
    assert out["updated"]
    assert rank_of(db, q, retrieved[5]) == 0
    out = db.feedback_trajectory(q, [retrieved[0]], 0.5)  # no other ids: searched negatives
    assert out["updated"]
    with pytest.raises(ValueError, match="retrieved_ids is empty"):
        db.feedback_trajectory(q, [], 1.0)
    with pytest.raises(TypeError, match="sequence of pattern ids"):
        db.feedback_trajectory(q, "12", 1.0)
    with pytest.raises(KeyError, match="unknown pattern id 99999"):
        db.feedback_trajectory(q, [retrieved[0], 99999], 1.0)


# ---- EWC++ ----------------------------------------------------------------------------------
def _two_task_forgetting(ewc_lambda):
    """Task A then task B on a Learner; returns A's loss after learning B."""
    rng = np.random.default_rng(11)
    d = 24
    cands = normalize(rng.standard_normal((12, d)))
    qa = [normalize(rng.standard_normal(d)) for _ in range(8)]
    qb = [normalize(rng.standard_normal(d)) for _ in range(8)]
    lr = Learner(d, LearningConfig(rank=4, lr=0.01, ewc_lambda=ewc_lambda))

    def step(q, pos):
        negs = np.delete(cands, pos, axis=0)
        return lr.learn(q, cands[pos], negs, 1.0)

    def loss_a():
        A, B = lr.adapter.A, lr.adapter.B
        return np.mean([contrastive_grad(A, B, q, np.vstack([cands[3], np.delete(cands, 3, 0)]),
                                         0, 1.0, lr.config.tau)[0] for q in qa])

    for _ in range(40):
        for q in qa:
            step(q, 3)
    after_a = loss_a()
    lr.consolidate()
    for _ in range(40):
        for q in qb:
            step(q, 7)
    return after_a, loss_a()


def test_ewc_reduces_forgetting():
    after_a, plain = _two_task_forgetting(0.0)
    _, with_ewc = _two_task_forgetting(1e4)
    assert plain > after_a * 2  # task B erased much of A without EWC
    assert with_ewc < plain
    lr = Learner(8, LearningConfig(rank=2))
    assert not lr.stats()["ewc_active"]
    lr.consolidate()
    assert lr.stats()["ewc_active"] and lr.stats()["consolidations"] == 1


def test_automatic_consolidation():
    lr = Learner(8, LearningConfig(rank=2, consolidate_every=3))
    rng = np.random.default_rng(0)
    for _ in range(7):
        lr.learn(rng.standard_normal(8), rng.standard_normal(8), rng.standard_normal((3, 8)), 1)
    assert lr.stats()["consolidations"] == 2


# ---- switch, reset --------------------------------------------------------------------------
def test_disable_enable_and_reset():
    db, q, target = trained_db()
    db.learning.disable()
    assert not db.learning.active
    assert rank_of(db, q, target) == rank_of(db, q, target, adapt=False)
    assert db.feedback(q, target, 1.0) == {"updated": False, "reason": "learning is disabled"}
    assert db.learning.stats()["updates"] == 40
    db.learning.enable()
    assert rank_of(db, q, target) == 0
    db.learning.reset()
    st = db.learning.stats()
    assert st["updates"] == 0 and st["adapter_norm"] == 0.0 and st["enabled"]
    assert not db.learning.active
    assert db.feedback(q, target, 0.0)["updated"] is False  # reward 0: no signal


def test_open_with_learning_false_never_adapts():
    db = agentdb.open(":memory:", dim=DIM, learning=False)
    fill(db)
    q = np.random.default_rng(1).standard_normal(DIM)
    t = db.search_patterns(q, k=30)[-1].id
    assert db.feedback(q, t, 1.0)["updated"] is False
    assert not db.learning.enabled


# ---- persistence ----------------------------------------------------------------------------
def test_state_round_trips_across_close_and_reopen(tmp_path):
    path = str(tmp_path / "m.db")
    db, q, target = trained_db(path, learning={"lr": 0.003, "ewc_lambda": 5.0})
    db.learning.consolidate()
    db.feedback(q, target, 1.0)
    A, B = db.learning.adapter.A, db.learning.adapter.B
    db.close()
    db = agentdb.open(path)
    st = db.learning.stats()
    assert st["updates"] == 41 and st["consolidations"] == 1 and st["ewc_active"]
    assert st["config"]["lr"] == 0.003 and st["config"]["ewc_lambda"] == 5.0
    np.testing.assert_array_equal(db.learning.adapter.A, A)
    np.testing.assert_array_equal(db.learning.adapter.B, B)
    assert rank_of(db, q, target) == 0 and st["saved"]
    db.learning.disable()
    db.close()
    db = agentdb.open(path)
    assert not db.learning.enabled and rank_of(db, q, target) > 0
    db.close()
    db = agentdb.open(path, learning=True)
    assert db.learning.enabled
    db.close()
    assert agentdb.open(path, readonly=True).learning.enabled


def test_autosave_every_n_updates(tmp_path):
    path = str(tmp_path / "m.db")
    db = agentdb.open(path, dim=DIM, learning={"save_every": 5})
    fill(db, 50)
    q = np.random.default_rng(0).standard_normal(DIM)
    assert db.store.meta(META_KEY) is None
    for _ in range(4):
        db.feedback(q, 3, 1.0)
    assert db.store.meta(META_KEY) is None and not db.learning.stats()["saved"]
    db.feedback(q, 3, 1.0)
    assert db.store.meta(META_KEY) is not None and db.learning.stats()["saved"]
    db.close()


def test_options_at_open(tmp_path):
    path = str(tmp_path / "m.db")
    db, _, _ = trained_db(path, steps=3, learning={"rank": 4})
    db.close()
    with pytest.raises(ValueError, match="rank-4 adapter"):
        agentdb.open(path, learning={"rank": 8})
    db = agentdb.open(path, learning={"rank": 8, "reset": True})
    assert db.learning.stats()["rank"] == 8 and db.learning.stats()["updates"] == 0
    db.close()
    assert agentdb.open(path).learning.stats()["rank"] == 8
    with pytest.raises(ValueError, match="unknown learning option"):
        agentdb.open(":memory:", dim=8, learning={"rnak": 2})
    with pytest.raises(ValueError, match="lr must be finite"):
        agentdb.open(":memory:", dim=8, learning={"lr": -1})
    with pytest.raises(TypeError, match="learning must be"):
        agentdb.open(":memory:", dim=8, learning="yes")
    assert Learner(4).stats()["rank"] == 4  # the default rank is capped by the dimension


def test_readonly_store_never_writes(tmp_path):
    path = str(tmp_path / "m.db")
    db, q, target = trained_db(path)
    db.close()
    before = open(path, "rb").read()
    ro = agentdb.open(path, readonly=True)
    assert ro.learning.active and rank_of(ro, q, target) == 0  # the adapter is used
    with pytest.raises(StoreError, match="read-only"):
        ro.feedback(q, target, 1.0)
    for call in (ro.learning.reset, ro.learning.consolidate):
        with pytest.raises(StoreError, match="read-only"):
            call()
    ro.learning.disable()  # this session only
    assert rank_of(ro, q, target) > 0
    agent = EphemeralLearningAgent(ro)  # learning without writing
    agent.feedback(q, target, 1.0)
    ro.close()
    assert open(path, "rb").read() == before
    assert agentdb.open(path, readonly=True).learning.enabled


def test_reload_picks_up_what_another_handle_saved(tmp_path):
    path = str(tmp_path / "m.db")
    db = agentdb.open(path, dim=DIM)
    fill(db)
    db.checkpoint()
    reader = agentdb.open(path, readonly=True)
    assert reader.learning.reload() is False  # nothing saved yet
    q = np.random.default_rng(1).standard_normal(DIM)
    target = db.search_patterns(q, k=30)[-1].id
    for _ in range(40):
        db.feedback(q, target, 1.0)
    assert not reader.learning.active and rank_of(reader, q, target) > 0
    db.checkpoint()
    assert reader.learning.reload() is True
    assert reader.learning.stats()["updates"] == 40 and rank_of(reader, q, target) == 0
    np.testing.assert_array_equal(reader.learning.adapter.B, db.learning.adapter.B)
    db.store.set_meta(META_KEY, "garbage")
    with pytest.raises(LearningStateError):
        reader.learning.reload()
    assert reader.learning.stats()["updates"] == 40  # an unreadable state changes nothing
    assert Learner(DIM).reload() is False  # no store
    reader.close()
    db.close()


def test_corrupt_state_does_not_block_opening(tmp_path):
    path = str(tmp_path / "m.db")
    db, q, target = trained_db(path)
    db.close()
    db = agentdb.open(path)
    text = db.store.meta(META_KEY)
    mid = len(text) // 2  # inside the base64 payload: still base64, wrong checksum
    bad = text[:mid] + ("A" if text[mid] != "A" else "B") + text[mid + 1:]
    db.store.set_meta(META_KEY, bad)
    db.close()
    db = agentdb.open(path)  # opens; learning is off and says why
    st = db.learning.stats()
    assert not st["enabled"] and "checksum" in st["load_error"]
    assert rank_of(db, q, target) == rank_of(db, q, target, adapt=False)
    with pytest.raises(LearningStateError, match="reset"):
        db.feedback(q, target, 1.0)
    db.close()
    db = agentdb.open(path)
    assert db.store.meta(META_KEY) == bad  # kept untouched until reset
    db.learning.reset()
    assert db.learning.stats()["load_error"] is None and db.store.meta(META_KEY) != bad
    db.learning.enable()
    assert db.feedback(q, target, 1.0)["updated"]
    db.close()
    for garbage in ("hello", "agentdb-learning/9 00 AA==", "agentdb-learning/1 00 !!"):
        db = agentdb.open(path)
        db.store.set_meta(META_KEY, garbage)
        db.close()
        db = agentdb.open(path)
        assert db.learning.stats()["load_error"]
        db.close()


def test_export_import_state():
    db, q, target = trained_db()
    text = db.learning.export_state()
    other = agentdb.open(":memory:", dim=DIM)
    fill(other)
    other.learning.import_state(text)
    assert rank_of(other, q, target) == 0
    with pytest.raises(LearningStateError, match="dim"):
        agentdb.open(":memory:", dim=16).learning.import_state(text)


def test_postgres_round_trip(postgres_url, pg_schema):
    db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema, dim=DIM)
    fill(db, 200)
    q = np.random.default_rng(1).standard_normal(DIM)
    target = db.search_patterns(q, k=25)[-1].id
    for _ in range(40):
        db.feedback(q, target, 1.0)
    assert rank_of(db, q, target) == 0
    A = db.learning.adapter.A
    db.close()
    db = agentdb.open(backend="postgres", url=postgres_url, schema=pg_schema)
    assert db.learning.stats()["updates"] == 40
    np.testing.assert_array_equal(db.learning.adapter.A, A)
    assert rank_of(db, q, target) == 0
    db.close()


# ---- bad input ------------------------------------------------------------------------------
def test_bad_feedback_input():
    db = agentdb.open(":memory:", dim=DIM)
    ids = fill(db, 20)
    q = np.ones(DIM)
    with pytest.raises(KeyError, match="unknown pattern id 12345"):
        db.feedback(q, 12345, 1.0)
    with pytest.raises(ValueError, match="dimension mismatch"):
        db.feedback(np.ones(DIM + 1), ids[0], 1.0)
    with pytest.raises(ValueError, match="NaN"):
        db.feedback(np.full(DIM, np.nan), ids[0], 1.0)
    for bad in (float("nan"), float("inf"), 2.0):
        with pytest.raises(ValueError, match="reward must be a finite number"):
            db.feedback(q, ids[0], bad)
    with pytest.raises(TypeError, match="reward must be a number"):
        db.feedback(q, ids[0], True)
    with pytest.raises(TypeError, match="id must be an integer"):
        db.feedback(q, "1", 1.0)
    assert db.learning.stats()["updates"] == 0
    lr = Learner(8)
    with pytest.raises(ValueError, match="negatives contain NaN"):
        lr.learn(np.ones(8), np.ones(8), np.full((2, 8), np.nan), 1.0)
    with pytest.raises(ValueError, match="all-zero"):
        lr.learn(np.zeros(8), np.ones(8), np.ones((2, 8)), 1.0)
    with pytest.raises(ValueError, match="shape"):
        LoRAAdapter(8, rank=2, A=np.ones((3, 8)))
    with pytest.raises(ValueError, match="rank must be"):
        LoRAAdapter(8, rank=9)


# ---- federated ------------------------------------------------------------------------------
def _update(agent_id, left, right, base, count=10, quality=1.0):
    return AdapterUpdate(agent_id, np.asarray(left, float), np.asarray(right, float), count,
                         quality, fingerprint(base))


def test_merge_weights_by_quality_times_count():
    base = LoRAAdapter(DIM, rank=4)
    rng = np.random.default_rng(0)
    u1 = _update("a", rng.standard_normal((DIM, 1)), rng.standard_normal((1, DIM)), base,
                 count=10, quality=1.0)
    u2 = _update("b", rng.standard_normal((DIM, 1)), rng.standard_normal((1, DIM)), base,
                 count=30, quality=0.5)
    coord = FederatedLearningCoordinator(base)
    coord.submit(u1)
    coord.submit(u2)
    res = coord.merge()
    assert res.accepted == ["a", "b"] and res.rejected == {}
    assert res.weights == pytest.approx({"a": 0.4, "b": 0.6})
    want = 0.4 * u1.delta() + 0.6 * u2.delta()  # the base is the identity (B = 0)
    np.testing.assert_allclose(res.adapter.delta(), want, atol=1e-10)
    assert res.energy_kept == pytest.approx(1.0)
    with pytest.raises(ValueError, match="already submitted"):
        coord.submit(u1)


def test_refactor_is_the_truncated_svd():
    rng = np.random.default_rng(2)
    L, R = rng.standard_normal((20, 6)), rng.standard_normal((6, 20))
    ad, kept = refactor(L, R, 2)
    u, s, vt = np.linalg.svd(L @ R)
    np.testing.assert_allclose(ad.delta(), (u[:, :2] * s[:2]) @ vt[:2], atol=1e-9)
    assert kept == pytest.approx(float(np.sum(s[:2] ** 2) / np.sum(s ** 2)))
    np.testing.assert_allclose(np.linalg.norm(ad.B, axis=0), np.linalg.norm(ad.A, axis=1))
    ad, _ = refactor(np.zeros((20, 2)), np.zeros((2, 20)), 3)  # nothing learned: identity
    assert ad.is_identity and np.linalg.norm(ad.A, axis=1).min() > 0  # rows can still learn


def test_poisoned_and_invalid_updates_are_rejected():
    base = LoRAAdapter(DIM, rank=4)
    rng = np.random.default_rng(1)
    coord = FederatedLearningCoordinator(base)
    for i in range(6):
        coord.submit(_update(f"ok{i}", rng.standard_normal((DIM, 2)) * 0.1,
                             rng.standard_normal((2, DIM)) * 0.1, base))
    coord.submit(_update("huge", rng.standard_normal((DIM, 2)) * 10,
                         rng.standard_normal((2, DIM)) * 10, base))
    left = rng.standard_normal((DIM, 2))
    left[0, 0] = np.nan
    coord.submit(_update("nan", left, rng.standard_normal((2, DIM)), base))
    coord.submit(AdapterUpdate("other-base", np.ones((DIM, 1)), np.ones((1, DIM)), 5, 1.0,
                               "0123456789abcdef"))
    coord.submit(_update("empty", np.ones((DIM, 1)) * 0.01, np.ones((1, DIM)) * 0.01, base,
                         count=0))
    coord.submit(_update("bad-quality", np.ones((DIM, 1)) * 0.01, np.ones((1, DIM)) * 0.01,
                         base, quality=0.0))
    coord.submit(_update("shape", np.ones((DIM + 1, 1)), np.ones((1, DIM)), base))
    res = coord.merge()
    assert sorted(res.accepted) == [f"ok{i}" for i in range(6)]
    assert "outlier" in res.rejected["huge"]
    assert res.rejected["nan"] == "non-finite values"
    assert "different base" in res.rejected["other-base"]
    assert "no feedback" in res.rejected["empty"]
    assert "quality" in res.rejected["bad-quality"]
    assert "shapes" in res.rejected["shape"]
    capped = FederatedLearningCoordinator(base, max_norm=1e-6)
    capped.submit(_update("x", np.ones((DIM, 1)), np.ones((1, DIM)), base))
    assert "max_norm" in capped.merge().rejected["x"]
    # outlier_k=None turns the norm rule off (the huge update then gets in)
    open_coord = FederatedLearningCoordinator(base, outlier_k=None)
    for i in range(4):
        open_coord.submit(_update(f"ok{i}", rng.standard_normal((DIM, 2)) * 0.1,
                                  rng.standard_normal((2, DIM)) * 0.1, base))
    open_coord.submit(_update("huge", rng.standard_normal((DIM, 2)) * 10,
                              rng.standard_normal((2, DIM)) * 10, base))
    assert "huge" in open_coord.merge().accepted
    for bad in (0, -1.0, float("inf"), float("nan"), 1e12):
        with pytest.raises(ValueError, match="outlier_k"):
            FederatedLearningCoordinator(base, outlier_k=bad)


def test_agents_learn_locally_and_the_coordinator_publishes(tmp_path):
    path = str(tmp_path / "m.db")
    db = agentdb.open(path, dim=DIM)
    fill(db)
    rng = np.random.default_rng(4)
    q = rng.standard_normal(DIM)
    target = db.search_patterns(q, k=30)[-1].id
    gen = db.store.generation
    coord = FederatedLearningCoordinator(db)
    for a in range(4):
        agent = EphemeralLearningAgent(db, agent_id=f"a{a}", lr=0.01)
        for _ in range(15):
            agent.feedback(q + 0.05 * rng.standard_normal(DIM), target, 1.0)
        assert rank_of(agent.db, q, target, adapt=False) > 5
        assert target in [h.id for h in agent.search(q, k=3)]
        up = agent.update()
        assert up.count == 15 and up.quality == 1.0
        coord.submit(up)
    assert db.store.generation == gen and not db.learning.active  # the store was not touched
    res = coord.publish(db)
    assert len(res.accepted) == 4 and not coord.updates
    assert db.learning.active and rank_of(db, q, target) < 5
    db.close()
    db = agentdb.open(path)
    assert rank_of(db, q, target) < 5 and db.learning.stats()["adapter_set"] == 1
    coord2 = FederatedLearningCoordinator(db)
    coord2.submit(_update("bad", np.full((DIM, 1), np.inf), np.ones((1, DIM)), coord2.base))
    with pytest.raises(ValueError, match="nothing to publish"):
        coord2.publish(db)
    with pytest.raises(ValueError, match="different base|rank"):
        FederatedLearningCoordinator(db, rank=3)
    with pytest.raises(TypeError, match="AgentDB or a LoRAAdapter"):
        EphemeralLearningAgent(42)
    with pytest.raises(ValueError, match="needs a store"):
        EphemeralLearningAgent(LoRAAdapter(DIM, 4)).feedback(q, target, 1.0)
    db.close()
