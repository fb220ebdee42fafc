"""``diversity=`` on every search: maximal marginal relevance over a wider candidate set, on
the embedded store, PostgreSQL, the cluster (``test_cluster.py`` runs the same checks), the
HTTP API, and the client (``test_client.py``)."""

from __future__ import annotations

import agentdb
import numpy as np
import pytest
from agentdb.engines.diversity import check_diversity, diversity_candidates, mmr
from agentdb.errors import InvalidArgumentError, InvalidTypeError

DIM = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _near_duplicates(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A query, four near-copies of it, and four vectors each ~45 degrees from it in
    different directions."""
    rng = np.random.default_rng(seed)
    q = _unit(rng.standard_normal(DIM))
    dups = [_unit(q + 0.02 * rng.standard_normal(DIM)) for _ in range(4)]
    others = []
    for _ in range(4):
        r = rng.standard_normal(DIM)
        r -= (r @ q) * q
        others.append(_unit(q + _unit(r)))
    return q, dups, others


def test_mmr_picks():
    q, dups, others = _near_duplicates()
    X = np.stack(dups + others)
    plain = list(np.argsort(-(X @ q), kind="stable")[:4])
    assert mmr(q, X, 4, 0.0) == plain  # diversity 0: similarity order
    picked = mmr(q, X, 4, 0.7)
    assert picked[0] in range(4) and sum(j >= 4 for j in picked) >= 2
    assert mmr(q, X, 20, 0.5) and len(mmr(q, X, 20, 0.5)) == len(X)
    assert mmr(q, X[:0], 3, 0.5) == []
    for bad, err in ((-0.1, InvalidArgumentError), (1.5, InvalidArgumentError),
                     (float("nan"), InvalidArgumentError), ("0.5", InvalidTypeError),
                     (True, InvalidTypeError)):
        with pytest.raises(err, match="diversity"):
            check_diversity(bad)
    with pytest.raises(InvalidArgumentError, match="candidates"):
        diversity_candidates(5, 3)


def diversity_checks(db) -> None:
    """Patterns, episodes and skills on any engine with the embedded API."""
    q, dups, others = _near_duplicates()
    vecs = dups + others
    pids = db.store_patterns([{"task": f"p{i}", "embedding": v, "success": i % 2 == 0}
                              for i, v in enumerate(vecs)])
    eids = [db.store_episode(f"e{i}", embedding=v) for i, v in enumerate(vecs)]
    sids = [db.store_skill(f"s{i}", embedding=v) for i, v in enumerate(vecs)]
    for search, ids in ((db.search_patterns, pids), (db.search_episodes, eids),
                        (db.search_skills, sids)):
        plain = [h.id for h in search(q, k=4)]
        assert set(plain) == set(ids[:4])  # the near-copies
        diverse = search(q, k=4, diversity=0.7)
        got = [h.id for h in diverse]
        assert len(got) == 4 and got[0] in ids[:4]
        assert len(set(got) & set(ids[4:])) >= 2  # the other directions come in
        for h in diverse:  # similarity stays the cosine to the query
            assert abs(h.similarity - float(vecs[ids.index(h.id)] @ q)) < 1e-3
        assert [h.id for h in search(q, k=4, diversity=0.0)] == plain
        assert len(search(q, k=3, diversity=0.5, candidates=3)) == 3
    if hasattr(db, "search_hits"):  # the raw vector search (/vectors/search) too
        assert {h["id"] for h in db.search_hits(q, k=4)} == set(pids[:4])
        diverse = db.search_hits(q, k=4, diversity=0.7, candidates=8)
        assert len({h["id"] for h in diverse} & set(pids[4:])) >= 2
    only = db.search_patterns(q, k=4, diversity=0.9, success_only=True)  # filters still hold
    assert {h.id for h in only} <= {pids[i] for i in range(0, 8, 2)}
    with pytest.raises(InvalidArgumentError, match="rerank"):
        db.search_patterns(q, k=3, diversity=0.5, rerank="attention")
    with pytest.raises(InvalidArgumentError, match="diversity"):
        db.search_patterns(q, k=3, diversity=2)


def test_embedded():
    with agentdb.open(":memory:", dim=DIM) as db:
        diversity_checks(db)


def test_postgres_backend(postgres_url, pg_schema):
    from _pg import on_each_postgres_search

    on_each_postgres_search(postgres_url, pg_schema, DIM, diversity_checks)


def test_http_and_client():
    pytest.importorskip("fastapi")
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient

    q, dups, others = _near_duplicates(1)
    with agentdb.open(":memory:", dim=DIM) as db:
        ids = db.store_patterns([{"task": f"p{i}", "embedding": v}
                                 for i, v in enumerate(dups + others)])
        for i, v in enumerate(dups + others):
            db.store_episode(f"e{i}", embedding=v)
            db.store_skill(f"s{i}", embedding=v)
        headers = {"Authorization": "Bearer k1"}
        with TestClient(create_app(db, api_keys=["k1"])) as c:
            body = {"vector": q.tolist(), "k": 4}
            plain = c.post("/patterns/search", json=body, headers=headers).json()["results"]
            assert {h["id"] for h in plain} == set(ids[:4])
            r = c.post("/patterns/search", json={**body, "diversity": 0.7}, headers=headers)
            assert r.status_code == 200
            assert len({h["id"] for h in r.json()["results"]} & set(ids[4:])) >= 2
            r = c.post("/vectors/search", json={**body, "diversity": 0.7, "candidates": 8},
                       headers=headers)
            assert r.status_code == 200
            assert len({h["id"] for h in r.json()["results"]} & set(ids[4:])) >= 2
            for bad in ({**body, "candidates": 8}, {**body, "diversity": 0.7, "candidates": 2},
                        {**body, "diversity": -1}):
                assert c.post("/vectors/search", json=bad, headers=headers).status_code == 422
            for path in ("/episodes/search", "/skills/search"):
                key = "vector"
                r = c.post(path, json={key: q.tolist(), "k": 4, "diversity": 0.7,
                                       "candidates": 8}, headers=headers)
                assert r.status_code == 200 and len(r.json()["results"]) == 4
                bad = c.post(path, json={key: q.tolist(), "k": 4, "candidates": 8},
                             headers=headers)
                assert bad.status_code == 422 and "diversity" in bad.text
            for bad_body in ({**body, "diversity": 1.5},
                             {**body, "diversity": 0.5, "rerank": "attention"},
                             {**body, "diversity": 0.5, "candidates": 2}):
                bad = c.post("/patterns/search", json=bad_body, headers=headers)
                assert bad.status_code == 422, bad_body
