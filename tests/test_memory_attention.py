"""Attention in the memory API: ``search_patterns(rerank=...)`` and ``synthesize_context``.

The attention maths is held to a numpy reference in ``test_attention.py``; here: the wiring
(candidates, priors, filters, the learned adapter, scores) and bad input."""

from __future__ import annotations

import agentdb
import numpy as np
import pytest

DIM = 16


@pytest.fixture
def db():
    rng = np.random.default_rng(0)
    d = agentdb.open(":memory:", dim=DIM)
    X = rng.standard_normal((300, DIM)).astype(np.float32)
    d.store_patterns([{"task": f"t{i}", "embedding": X[i], "reward": float(rng.uniform(-1, 1)),
                       "success": bool(i % 2), "session_id": f"s{i % 3}"} for i in range(300)])
    d.X = X
    yield d
    d.close()


def _exact(X: np.ndarray, q: np.ndarray, n: int) -> list[int]:
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    return [int(i) + 1 for i in np.argsort(-(Xn @ (q / np.linalg.norm(q))), kind="stable")[:n]]


def test_rerank_heads1_is_exact_cosine_order_of_the_candidates(db):
    rng = np.random.default_rng(1)
    for _ in range(10):
        q = rng.standard_normal(DIM)
        hits = db.search_patterns(q, k=10, rerank="attention", candidates=300, heads=1)
        assert [h.id for h in hits] == _exact(db.X, q, 10)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6
        sims = [h.similarity for h in hits]
        assert sims == sorted(sims, reverse=True)  # heads=1 keeps cosine order
        assert all(h.to_dict()["score"] == h.score for h in hits)
    plain = db.search_patterns(q, k=3)
    assert all(h.score is None and "score" not in h.to_dict() for h in plain)


def test_rerank_multi_head_and_reward_prior(db):
    q = np.random.default_rng(2).standard_normal(DIM)
    cands = db.search_patterns(q, k=40)
    hits = db.search_patterns(q, k=10, rerank="attention", heads=4)
    assert len(hits) == 10 and {h.id for h in hits} <= {h.id for h in cands}
    # the reward prior: a candidate's score is proportional to attention x (1 + reward) / 2
    base = db.search_patterns(q, k=40, rerank="attention", candidates=40, temperature=0.5)
    prior = db.search_patterns(q, k=40, rerank="attention+reward", candidates=40,
                               temperature=0.5)
    a = {h.id: h.score for h in base}
    p = {h.id: h.score for h in prior}
    w = {h.id: max(0.05, (1 + h.record.reward) / 2) for h in prior}
    ratio = [p[i] / (a[i] * w[i]) for i in a]
    assert np.allclose(ratio, ratio[0], rtol=1e-4)
    mean_reward = np.mean([h.record.reward for h in prior[:10]])
    assert mean_reward > np.mean([h.record.reward for h in base[:10]])


def test_rerank_respects_filters_and_validates(db):
    q = np.ones(DIM)
    hits = db.search_patterns(q, k=5, rerank="attention", success_only=True, session_id="s1")
    assert len(hits) == 5 and all(h.record.success and h.record.session_id == "s1"
                                  for h in hits)
    assert db.search_patterns(q, k=5, rerank="attention", where={"nope": 1}) == []
    with pytest.raises(ValueError, match="rerank"):
        db.search_patterns(q, rerank="bm25")
    with pytest.raises(ValueError, match="candidates"):
        db.search_patterns(q, k=10, rerank="attention", candidates=5)
    with pytest.raises(ValueError, match="heads"):
        db.search_patterns(q, rerank="attention", heads=3)  # does not divide 16
    with pytest.raises(ValueError, match="temperature"):
        db.search_patterns(q, rerank="attention", temperature=0)
    with pytest.raises(ValueError):
        db.search_patterns([np.nan] * DIM, rerank="attention")
    empty = agentdb.open(":memory:", dim=DIM)
    assert empty.search_patterns(q, rerank="attention") == []


def test_synthesize_context(db):
    q = np.random.default_rng(3).standard_normal(DIM)
    ctx = db.synthesize_context(q, k=6, temperature=0.2)
    ids = [i for i, _ in ctx["weights"]]
    w = np.array([x for _, x in ctx["weights"]])
    assert ids == [h.id for h in db.search_patterns(q, k=6)]
    assert w.sum() == pytest.approx(1.0, abs=1e-5) and (np.diff(w) <= 1e-7).all()
    X = np.stack([db.get_pattern(i).embedding for i in ids])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    logits = Xn @ (q / np.linalg.norm(q)) / 0.2
    ref = np.exp(logits - logits.max())
    ref /= ref.sum()
    assert np.allclose(w, ref, atol=1e-5)
    assert np.allclose(ctx["vector"], ref @ X, atol=1e-4) and ctx["vector"].dtype == np.float32
    assert [r.id for r in ctx["records"]] == ids
    only = db.synthesize_context(q, k=4, success_only=True)
    assert all(db.get_pattern(i).success for i, _ in only["weights"])
    empty = agentdb.open(":memory:", dim=DIM).synthesize_context(q, k=3)
    assert empty["weights"] == [] and not empty["vector"].any()
    with pytest.raises(ValueError):
        db.synthesize_context(np.ones(DIM + 1))
    with pytest.raises(ValueError):
        db.synthesize_context(q, k=0)


def test_adapted_queries_widen_the_beam_and_rerank_uses_the_adapter(db):
    """After feedback the adapter is active: searches (plain and re-ranked) use the adapted
    query and ef_factor x ef_search; adapt=False is the raw query."""
    rng = np.random.default_rng(4)
    q = rng.standard_normal(DIM)
    target = _exact(db.X, q, 60)[-1]  # ranks 60th under raw cosine
    for _ in range(60):
        db.feedback(q + 0.05 * rng.standard_normal(DIM), target, 1.0)
    assert db.learning.active
    adapted = db.learning.apply(np.asarray(q, np.float32))
    hits = db.search_patterns(q, k=5, rerank="attention", candidates=300, heads=1)
    assert [h.id for h in hits] == _exact(db.X, adapted, 5)
    raw = db.search_patterns(q, k=5, rerank="attention", candidates=300, heads=1, adapt=False)
    assert [h.id for h in raw] == _exact(db.X, q, 5)
    assert target in [h.id for h in db.search_patterns(q, k=10)]
    assert db.learning.config.ef_factor == 2.0
    with pytest.raises(ValueError, match="ef_factor"):
        agentdb.open(":memory:", dim=DIM, learning={"ef_factor": 0})
