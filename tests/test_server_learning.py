"""The learning layer over HTTP (``agentdb.server.app``) and ``agentdb.Client``.

* In-process (``fastapi.testclient.TestClient`` over the ASGI app, API key ``KEY``):
  ``POST /patterns/search`` with ``rerank`` / ``candidates`` / ``heads`` / ``temperature`` /
  ``adapt`` answers exactly what ``db.search_patterns`` answers on the same store, on the
  guard's fast lane and on the routed FastAPI path alike; ``POST /patterns/context`` matches
  ``db.synthesize_context``; ``POST /feedback`` moves a target pattern to the top;
  ``/feedback/trajectory``; ``GET /learning`` and ``POST /learning/{enable,disable,reset,
  consolidate}``; ``/vectors/search`` stays a raw (never adapted) search on both of its
  paths; auth (401), validation (422), unknown ids (404), a read-only or closed store (503)
  and an unreadable stored learning state (409); concurrent feedback and deletes never 5xx.
* Over a real socket (uvicorn in a daemon thread on 127.0.0.1): every new ``Client`` method
  and its errors.

Skipped when the ``server`` extra is missing, unless ``AGENTDB_REQUIRE_SERVER=1``.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _requires import unavailable

try:
    import uvicorn
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient
except ImportError as exc:  # the server extra is not installed
    unavailable("SERVER", f"the AgentDB server needs the 'server' extra ({exc}): "
                "pip install 'agentdb[server]'", module=True)

import agentdb
from agentdb.learning.state import META_KEY
from agentdb.server.client import Client, ClientError

DIM = 16
KEY = "learning-key-01"
H = {"X-API-Key": KEY}
N = 60


def _rows(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, DIM)).astype(np.float32)


def _fill(db: Any, seed: int = 1) -> list[int]:
    X = _rows(seed)
    rewards = np.linspace(-1.0, 1.0, N)
    return db.store_patterns([{"task": f"pattern {i}", "embedding": X[i],
                               "reward": float(rewards[i]), "success": bool(i % 2),
                               "metadata": {"i": i, "even": i % 2 == 0}}
                              for i in range(N)])


def _query(seed: int) -> list[float]:
    return [float(x) for x in np.random.default_rng(1000 + seed).standard_normal(DIM)]


def _err(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


def _routed_app(db: Any) -> Any:
    """The app with the guard's fast lane turned off: every request goes through FastAPI's
    routing (the path the fast lane short-cuts)."""
    app = create_app(db, api_keys=[KEY], rate_limit_per_minute=0)
    for mw in app.user_middleware:
        if "fast_routes" in mw.kwargs:
            mw.kwargs["fast_routes"] = {}
    return app


@pytest.fixture
def db() -> Iterator[Any]:
    d = agentdb.open(":memory:", dim=DIM)
    _fill(d)
    yield d
    d.close()


@pytest.fixture
def http(db: Any) -> Iterator[TestClient]:
    with TestClient(create_app(db, api_keys=[KEY], rate_limit_per_minute=0)) as c:
        c.headers.update(H)
        yield c


def _train(http: TestClient, q: list[float], target: int, limit: int = 80) -> int:
    """Send feedback for ``target`` until it is the top hit; the number of steps taken."""
    for n in range(1, limit + 1):
        r = http.post("/feedback", json={"vector": q, "patternId": target, "reward": 1.0})
        assert r.status_code == 200 and r.json()["updated"] is True, r.text
        top = http.post("/patterns/search", json={"vector": q, "k": 1}).json()["results"]
        if top[0]["id"] == target:
            return n
    raise AssertionError(f"pattern {target} did not reach the top after {limit} feedbacks")


# ---- POST /patterns/search: rerank, adapt ------------------------------------------------
@pytest.mark.parametrize("path", ["fast-lane", "routed", "on-the-loop"])
def test_rerank_matches_the_embedded_api(db: Any, path: str) -> None:
    """Same ids, scores and similarities as ``db.search_patterns(rerank=...)``: on the
    guard's fast lane, through FastAPI's routing, and without the search worker threads."""
    app = (_routed_app(db) if path == "routed" else
           create_app(db, api_keys=[KEY], rate_limit_per_minute=0,
                      search_threads=0 if path == "on-the-loop" else 2))
    cases: list[dict[str, Any]] = [
        {"rerank": "attention"},
        {"rerank": "attention", "heads": 4, "temperature": 0.2},
        {"rerank": "attention+reward", "candidates": 40, "k": 7},
        {"rerank": "attention+reward", "heads": 2, "where": {"even": True}},
        {"rerank": "attention", "successOnly": True, "minReward": 0.0, "threshold": -0.5},
        {"rerank": "attention", "k": 5, "candidates": 5, "ef": 100},
    ]
    with TestClient(app) as c:
        for n, case in enumerate(cases):
            q = _query(n)
            body = {"vector": q, "k": case.pop("k", 10), **case}
            r = c.post("/patterns/search", json=body, headers=H)
            assert r.status_code == 200, r.text
            got = r.json()["results"]
            want = db.search_patterns(
                np.asarray(q, np.float32), body["k"], rerank=case["rerank"],
                candidates=case.get("candidates"), heads=case.get("heads", 1),
                temperature=case.get("temperature", 0.05), where=case.get("where"),
                success_only=case.get("successOnly", False),
                min_reward=case.get("minReward"), threshold=case.get("threshold"),
                ef=case.get("ef"))
            assert want and [h["id"] for h in got] == [h.id for h in want], case
            assert [h["score"] for h in got] == pytest.approx([h.score for h in want],
                                                              rel=1e-6, abs=1e-12)
            assert [h["similarity"] for h in got] == pytest.approx(
                [h.similarity for h in want], rel=1e-6)
            assert all(h["pattern"]["id"] == h["id"] for h in got)
        # a plain search has no score, and equals the embedded search
        q = _query(99)
        plain = c.post("/patterns/search", json={"vector": q, "k": 5}, headers=H).json()
        assert all("score" not in h for h in plain["results"])
        assert [h["id"] for h in plain["results"]] == \
            [h.id for h in db.search_patterns(np.asarray(q, np.float32), 5)]


def test_rerank_by_text_and_reward_prior(db: Any, http: TestClient) -> None:
    hits = http.post("/patterns/search", json={
        "task": "pattern 3", "k": 3, "rerank": "attention+reward"}).json()["results"]
    want = db.search_patterns("pattern 3", 3, rerank="attention+reward")
    assert [h["id"] for h in hits] == [h.id for h in want]
    assert sum(h["score"] for h in hits) <= 1.0 + 1e-6


def test_adapt_false_searches_with_the_raw_query(db: Any, http: TestClient) -> None:
    q = _query(1)
    raw = [h.id for h in db.search_patterns(np.asarray(q, np.float32), 10)]
    _train(http, q, raw[5])
    assert db.learning.active
    qa = np.asarray(q, np.float32)
    for adapt in (True, False):
        for extra in ({}, {"rerank": "attention"}):
            got = http.post("/patterns/search", json={"vector": q, "k": 10, "adapt": adapt,
                                                      **extra}).json()["results"]
            want = db.search_patterns(qa, 10, adapt=adapt, **extra)
            assert [h["id"] for h in got] == [h.id for h in want], (adapt, extra)
    assert [h["id"] for h in http.post("/patterns/search", json={
        "vector": q, "k": 10, "adapt": False}).json()["results"]] == raw


def test_vector_search_is_never_adapted(db: Any, http: TestClient) -> None:
    """``/vectors/search`` is the raw vector API: its fast lane (the in-memory columns) and
    its fallback (``search_patterns``, for stores without them) both ignore the adapter."""
    q = _query(2)
    target = db.search_patterns(np.asarray(q, np.float32), 10)[6].id
    _train(http, q, target)

    class PublicOnly:  # hides the store's internals: create_app takes the fallback path
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    raw = [h.id for h in db.search_patterns(np.asarray(q, np.float32), 10, adapt=False)]
    with TestClient(create_app(PublicOnly(db), api_keys=[KEY])) as slow:
        for c in (http, slow):
            got = c.post("/vectors/search", json={"vector": q, "k": 10}, headers=H).json()
            assert [h["id"] for h in got["results"]] == raw


# ---- POST /patterns/context -------------------------------------------------------------
def test_context_matches_the_embedded_api(db: Any, http: TestClient) -> None:
    for n, extra in enumerate([{}, {"temperature": 0.5, "k": 4},
                               {"where": {"even": False}, "minReward": -0.5},
                               {"successOnly": True, "adapt": False}]):
        q = _query(10 + n)
        body = {"vector": q, "k": extra.pop("k", 10), **extra}
        r = http.post("/patterns/context", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        want = db.synthesize_context(
            np.asarray(q, np.float32), body["k"], temperature=extra.get("temperature", 0.05),
            adapt=extra.get("adapt", True), where=extra.get("where"),
            min_reward=extra.get("minReward"), success_only=extra.get("successOnly", False))
        assert [w["id"] for w in got["weights"]] == [i for i, _ in want["weights"]]
        assert [w["weight"] for w in got["weights"]] == pytest.approx(
            [w for _, w in want["weights"]], rel=1e-6, abs=1e-12)
        assert sum(w["weight"] for w in got["weights"]) == pytest.approx(1.0, abs=1e-5)
        assert got["vector"] == pytest.approx(want["vector"].tolist(), rel=1e-6, abs=1e-6)
        assert [h["id"] for h in got["results"]] == [h.id for h in want["records"]]
    by_text = http.post("/patterns/context", json={"task": "pattern 7", "k": 3}).json()
    assert len(by_text["weights"]) == 3 and len(by_text["vector"]) == DIM


def test_context_of_an_empty_store() -> None:
    with agentdb.open(":memory:", dim=DIM) as empty, \
            TestClient(create_app(empty, api_keys=[KEY])) as c:
        got = c.post("/patterns/context", json={"vector": _query(0)}, headers=H).json()
        assert got == {"vector": [0.0] * DIM, "weights": [], "results": []}


# ---- feedback and the learning switch ----------------------------------------------------
def test_feedback_moves_the_target_up_then_disable_and_reset(db: Any,
                                                             http: TestClient) -> None:
    q = _query(3)
    raw = [h["id"] for h in http.post("/patterns/search", json={
        "vector": q, "k": 10}).json()["results"]]
    target = raw[5]
    first = http.post("/feedback", json={"vector": q, "patternId": target}).json()
    assert set(first) == {"updated", "loss", "pPositive", "rankBefore", "updates"}
    assert first["updated"] is True and first["rankBefore"] > 1 and first["updates"] == 1
    assert 0.0 < first["pPositive"] < 1.0 and math.isfinite(first["loss"])
    steps = _train(http, q, target)
    assert steps >= 1
    stats = http.get("/learning").json()
    assert stats["active"] is True and stats["updates"] == steps + 1
    assert stats["positive"] == steps + 1 and stats["adapter_norm"] > 0

    # disable: raw searches again, feedback is ignored; the adapter is kept
    off = http.post("/learning/disable")
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert not db.learning.enabled
    assert [h["id"] for h in http.post("/patterns/search", json={
        "vector": q, "k": 10}).json()["results"]] == raw
    ignored = http.post("/feedback", json={"vector": q, "patternId": target}).json()
    assert ignored == {"updated": False, "reason": "learning is disabled"}
    on = http.post("/learning/enable").json()
    assert on["enabled"] is True and on["active"] is True and on["updates"] == steps + 1
    top = http.post("/patterns/search", json={"vector": q, "k": 1}).json()["results"]
    assert top[0]["id"] == target

    cons = http.post("/learning/consolidate").json()
    assert cons["consolidations"] == 1 and cons["ewc_active"] is True

    reset = http.post("/learning/reset").json()
    assert reset["updates"] == 0 and reset["active"] is False and reset["enabled"] is True
    assert [h["id"] for h in http.post("/patterns/search", json={
        "vector": q, "k": 10}).json()["results"]] == raw
    assert http.post("/feedback", json={"vector": q, "patternId": target,
                                        "reward": 0}).json() == {
        "updated": False, "reason": "reward 0 carries no signal"}


def test_negative_feedback_and_text_queries(db: Any, http: TestClient) -> None:
    top = http.post("/patterns/search", json={"task": "pattern 9", "k": 1}).json()["results"]
    out = http.post("/feedback", json={"task": "pattern 9", "patternId": top[0]["id"],
                                       "reward": -1.0}).json()
    assert out["updated"] is True and out["rankBefore"] == 1
    assert http.get("/learning").json()["negative"] == 1


def test_feedback_trajectory(db: Any, http: TestClient) -> None:
    q = _query(4)
    ids = [h["id"] for h in http.post("/patterns/search", json={
        "vector": q, "k": 5}).json()["results"]]
    out = http.post("/feedback/trajectory", json={
        "vector": q, "retrievedIds": ids, "outcomeReward": 0.8, "used": ids[3]}).json()
    assert out["updated"] is True and out["updates"] == 1 and out["rankBefore"] >= 1
    out = http.post("/feedback/trajectory", json={
        "vector": q, "retrieved_ids": ids, "outcome_reward": -0.5}).json()  # snake_case too
    assert out["updated"] is True and out["updates"] == 2
    out = http.post("/feedback/trajectory", json={
        "task": "pattern 1", "retrievedIds": [], "outcomeReward": 1.0, "used": ids[0]}).json()
    assert out["updated"] is True  # negatives from the current retrieval
    stats = http.get("/learning").json()
    assert (stats["updates"], stats["positive"], stats["negative"]) == (3, 2, 1)


def test_learning_stats_are_plain_json(db: Any, http: TestClient) -> None:
    """``GET /learning`` is ``db.learning.stats()`` as it is: only plain JSON types (no
    numpy scalars, no NaN) before and after learning."""
    def plain(v: Any) -> bool:
        if type(v) is dict:
            return all(type(k) is str and plain(x) for k, x in v.items())
        if type(v) is list:
            return all(plain(x) for x in v)
        return v is None or type(v) in (bool, int, str) or (type(v) is float
                                                            and math.isfinite(v))

    assert plain(db.learning.stats()) and http.get("/learning").json() == db.learning.stats()
    http.post("/feedback", json={"vector": _query(5), "patternId": 1})
    http.post("/learning/consolidate")
    http.post("/feedback", json={"vector": _query(6), "patternId": 2})
    stats = db.learning.stats()
    assert plain(stats), stats
    assert http.get("/learning").json() == stats
    assert {"enabled", "active", "dim", "rank", "updates", "last_loss", "loss_ema",
            "adapter_norm", "ewc_penalty", "consolidations", "saved", "readonly",
            "load_error", "config"} <= set(stats)
    assert stats["dim"] == DIM and stats["updates"] == 2 and stats["ewc_penalty"] > 0


# ---- errors ------------------------------------------------------------------------------
ROUTES = [
    ("POST", "/patterns/context", {"task": "x"}),
    ("POST", "/feedback", {"task": "x", "patternId": 1}),
    ("POST", "/feedback/trajectory", {"task": "x", "retrievedIds": [1], "outcomeReward": 1}),
    ("GET", "/learning", None),
    ("POST", "/learning/enable", None),
    ("POST", "/learning/disable", None),
    ("POST", "/learning/reset", None),
    ("POST", "/learning/consolidate", None),
    ("POST", "/patterns/search", {"task": "x", "rerank": "attention"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[p for _, p, _ in ROUTES])
def test_auth_is_required(db: Any, method: str, path: str, body: Any) -> None:
    db.feedback(np.asarray(_query(0)), 1)  # some state for reset/disable to change
    before = db.learning.stats()
    with TestClient(create_app(db, api_keys=[KEY])) as c:
        for headers in ({}, {"X-API-Key": "wrong-key-0000"}):
            r = c.request(method, path, json=body, headers=headers)
            assert _err(r, 401, "unauthorized") == "missing or invalid API key"
            assert r.headers["WWW-Authenticate"] == "Bearer"
        assert db.learning.stats() == before  # a refused request changes nothing
        r = c.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit"] == "100"  # rate-limited like every route


BAD = [
    ("/patterns/search", {"task": "x", "rerank": "bm25"}, "body.rerank"),
    ("/patterns/search", {"task": "x", "k": 5, "rerank": "attention", "candidates": 3},
     "candidates (3) must be >= k (5)"),
    ("/patterns/search", {"task": "x", "rerank": "attention", "candidates": 0},
     "body.candidates"),
    ("/patterns/search", {"task": "x", "rerank": "attention", "candidates": 10_001},
     "body.candidates"),
    ("/patterns/search", {"task": "x", "rerank": "attention", "heads": 3},
     "body.heads: 3 heads must divide the store's dimension 16"),
    ("/patterns/search", {"task": "x", "rerank": "attention", "heads": 32},
     "body.heads: 32 heads must divide"),
    ("/patterns/search", {"task": "x", "rerank": "attention", "heads": 0}, "body.heads"),
    ("/patterns/search", {"task": "x", "rerank": "attention", "temperature": 0},
     "body.temperature"),
    ("/patterns/search", {"task": "x", "rerank": "attention", "temperature": 1e-9},
     "body.temperature"),
    ("/patterns/search", {"task": "x", "heads": 2}, "heads only apply to a re-ranked"),
    ("/patterns/search", {"task": "x", "candidates": 20, "temperature": 0.1},
     "candidates, temperature only apply"),
    ("/patterns/search", {"task": "x", "adapt": "maybe"}, "body.adapt"),
    ("/patterns/context", {"task": "x", "temperature": -1}, "body.temperature"),
    ("/patterns/context", {"task": "x", "vector": _query(0)}, "exactly one"),
    ("/patterns/context", {"vector": [1.0, 2.0]}, "expected 16 values"),
    ("/patterns/context", {"task": "x", "k": 0}, "body.k"),
    ("/patterns/context", {"task": "x", "rerank": "attention"}, "rerank"),
    ("/feedback", {"task": "x", "patternId": 1, "reward": 1.5}, "body.reward"),
    ("/feedback", {"task": "x", "patternId": 1, "reward": -2}, "body.reward"),
    ("/feedback", {"task": "x", "patternId": 1, "reward": "a lot"}, "body.reward"),
    ("/feedback", {"task": "x"}, "body.patternId"),
    ("/feedback", {"task": "x", "patternId": 0}, "body.patternId"),
    ("/feedback", {"patternId": 1}, "exactly one"),
    ("/feedback", {"vector": [0.0] * DIM, "patternId": 1}, "all-zero"),
    ("/feedback", {"vector": [1e39] + [0.0] * (DIM - 1), "patternId": 1}, "finite"),
    ("/feedback", {"task": "   ", "patternId": 1}, "empty"),
    ("/feedback/trajectory", {"task": "x", "retrievedIds": [], "outcomeReward": 1},
     "retrievedIds is empty"),
    ("/feedback/trajectory", {"task": "x", "retrievedIds": [1]}, "body.outcomeReward"),
    ("/feedback/trajectory", {"task": "x", "retrievedIds": [1], "outcomeReward": 3},
     "body.outcomeReward"),
    ("/feedback/trajectory", {"task": "x", "retrievedIds": [1, -2], "outcomeReward": 1},
     "body.retrievedIds[1]"),
    ("/feedback/trajectory", {"task": "x", "retrievedIds": "1", "outcomeReward": 1},
     "body.retrievedIds"),
]


@pytest.mark.parametrize(("path", "body", "needle"), BAD,
                         ids=[f"{p}-{n}" for n, (p, _, _) in enumerate(BAD)])
def test_bad_input_is_422(db: Any, http: TestClient, path: str, body: Any,
                          needle: str) -> None:
    msg = _err(http.post(path, json=body), 422, "validation_error")
    assert needle in msg, msg
    assert db.learning.stats()["updates"] == 0  # nothing learned from a refused request


@pytest.mark.parametrize("path", ["/feedback", "/feedback/trajectory", "/patterns/search"])
def test_nan_and_infinity_literals_are_422(http: TestClient, path: str) -> None:
    fields = {"/feedback": '"patternId": 1',
              "/feedback/trajectory": '"retrievedIds": [1], "outcomeReward": 1',
              "/patterns/search": '"rerank": "attention"'}[path]
    for lit in ("NaN", "Infinity", "-Infinity"):
        vec = ", ".join([lit] + ["0.5"] * (DIM - 1))
        r = http.post(path, content=f'{{"vector": [{vec}], {fields}}}',
                      headers={"Content-Type": "application/json"})
        assert "body.vector[0]" in _err(r, 422, "validation_error")
    r = http.post("/feedback", content='{"task": "x", "patternId": 1, "reward": NaN}',
                  headers={"Content-Type": "application/json"})
    assert "body.reward" in _err(r, 422, "validation_error")


def test_unknown_pattern_ids_are_404(db: Any, http: TestClient) -> None:
    q = _query(6)
    assert _err(http.post("/feedback", json={"vector": q, "patternId": 999_999}), 404,
                "not_found") == "unknown pattern id 999999"
    msg = _err(http.post("/feedback/trajectory", json={
        "vector": q, "retrievedIds": [1, 999_998], "outcomeReward": 1.0}), 404, "not_found")
    assert "999998" in msg
    msg = _err(http.post("/feedback/trajectory", json={
        "vector": q, "retrievedIds": [1, 2], "outcomeReward": 1.0, "used": 999_997}),
        404, "not_found")
    assert "999997" in msg
    db.delete_pattern(3)
    _err(http.post("/feedback", json={"vector": q, "patternId": 3}), 404, "not_found")
    assert db.learning.stats()["updates"] == 0


def test_read_only_store_refuses_learning_writes_like_other_writes(tmp_path: Any) -> None:
    path = str(tmp_path / "ro.db")
    with agentdb.open(path, dim=DIM) as rw:
        _fill(rw)
    ro = agentdb.open(path, dim=DIM, readonly=True)
    try:
        with TestClient(create_app(ro, api_keys=[KEY])) as c:
            store = c.post("/patterns/store", json={"task": "x"}, headers=H)
            status, code = store.status_code, store.json()["error"]["code"]
            assert status == 503
            q = _query(7)
            for path_, body in [("/feedback", {"vector": q, "patternId": 1}),
                                ("/feedback/trajectory", {"vector": q, "retrievedIds": [1, 2],
                                                          "outcomeReward": 1.0}),
                                ("/learning/reset", None), ("/learning/consolidate", None)]:
                r = c.post(path_, json=body, headers=H)
                assert (r.status_code, r.json()["error"]["code"]) == (status, code), path_
            # searches, the context and the stats still work; the switch is session-only
            assert c.post("/patterns/search", json={"vector": q, "rerank": "attention"},
                          headers=H).status_code == 200
            assert c.post("/patterns/context", json={"vector": q}, headers=H).status_code \
                == 200
            assert c.get("/learning", headers=H).json()["readonly"] is True
            assert c.post("/learning/disable", headers=H).json()["enabled"] is False
    finally:
        ro.close()


def test_closed_store_is_503() -> None:
    d = agentdb.open(":memory:", dim=DIM)
    _fill(d)
    with TestClient(create_app(d, api_keys=[KEY])) as c:
        d.close()
        for method, path, body in ROUTES:
            r = c.request(method, path, json=body, headers=H)
            assert _err(r, 503, "unavailable") == "the store is not available", path


def test_unreadable_learning_state_is_409_until_reset(tmp_path: Any) -> None:
    path = str(tmp_path / "bad-state.db")
    with agentdb.open(path, dim=DIM) as d:
        _fill(d)
        d.store.set_meta(META_KEY, "not a learning state")
    d = agentdb.open(path, dim=DIM)
    try:
        assert d.learning.load_error is not None
        with TestClient(create_app(d, api_keys=[KEY])) as c:
            c.headers.update(H)
            assert c.get("/learning").json()["load_error"]
            msg = _err(c.post("/feedback", json={"vector": _query(8), "patternId": 1}), 409,
                       "conflict")
            assert "unreadable" in msg and "POST /learning/reset" in msg
            _err(c.post("/learning/consolidate"), 409, "conflict")
            reset = c.post("/learning/reset").json()
            assert reset["load_error"] is None and reset["enabled"] is False  # off on load
            assert c.post("/learning/enable").json()["enabled"] is True
            assert c.post("/feedback", json={"vector": _query(8),
                                             "patternId": 1}).json()["updated"] is True
    finally:
        d.close()


def _held_elsewhere(lock: Any) -> bool:
    """Whether another thread holds ``lock`` (tried from a fresh thread, without waiting)."""
    got: list[bool] = []

    def probe() -> None:
        ok = lock.acquire(timeout=0)
        if ok:
            lock.release()
        got.append(ok)

    t = threading.Thread(target=probe)
    t.start()
    t.join(10)
    return not got[0]


def test_learning_writes_hold_the_write_lock(db: Any, http: TestClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Feedback and the learning switches run under the store's write lock (``db._lock``,
    what the other writes take), so no delete or upsert interleaves with them."""
    seen: dict[str, bool] = {}

    def spy(name: str, real: Any) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            seen[name] = _held_elsewhere(db._lock)
            return real(*a, **k)
        return call

    monkeypatch.setattr(db, "feedback", spy("feedback", db.feedback))
    monkeypatch.setattr(db, "feedback_trajectory",
                        spy("trajectory", db.feedback_trajectory))
    for action in ("enable", "disable", "reset", "consolidate"):
        monkeypatch.setattr(db.learning, action, spy(action, getattr(db.learning, action)))
    q = _query(9)
    assert http.post("/feedback", json={"vector": q, "patternId": 1}).status_code == 200
    assert http.post("/feedback/trajectory", json={
        "vector": q, "retrievedIds": [1, 2], "outcomeReward": 1.0}).status_code == 200
    for action in ("disable", "enable", "consolidate", "reset"):
        assert http.post(f"/learning/{action}").status_code == 200
    assert seen == dict.fromkeys(("feedback", "trajectory", "disable", "enable",
                                  "consolidate", "reset"), True)


def test_concurrent_feedback_and_deletes_never_fail(tmp_path: Any) -> None:
    """Smoke test: feedback from several threads while patterns are deleted answers 200 or a
    clean 404 (a pattern deleted meanwhile), never a 5xx."""
    d = agentdb.open(str(tmp_path / "race.db"), dim=DIM)
    ids = _fill(d)
    statuses: list[int] = []
    lock = threading.Lock()
    with TestClient(create_app(d, api_keys=[KEY], rate_limit_per_minute=0)) as c:
        def feed(offset: int) -> None:
            for i in range(offset, N, 3):
                r = c.post("/feedback/trajectory", headers=H, json={
                    "vector": _query(i), "retrievedIds": ids[i:i + 6] or ids[:2],
                    "outcomeReward": 0.5})
                with lock:
                    statuses.append(r.status_code)

        def delete() -> None:
            for i in ids[::2]:
                r = c.delete(f"/patterns/{i}", headers=H)
                with lock:
                    statuses.append(r.status_code)

        threads = [threading.Thread(target=feed, args=(k,)) for k in range(3)]
        threads.append(threading.Thread(target=delete))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    d.close()
    assert statuses and set(statuses) <= {200, 204, 404}, sorted(set(statuses))


# ---- the Python client over a real socket --------------------------------------------------
class _Served:
    """uvicorn serving ``app`` on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def live(tmp_path: Any) -> Iterator[tuple[Any, Client]]:
    d = agentdb.open(str(tmp_path / "live.db"), dim=DIM)
    _fill(d)
    s = _Served(create_app(d, api_keys=[KEY], rate_limit_per_minute=0))
    c = Client(s.url, api_key=KEY, retries=0)
    try:
        yield d, c
    finally:
        c.close()
        s.stop()
        d.close()


def test_client_learning_methods(live: tuple[Any, Client]) -> None:
    db, c = live
    q = np.asarray(_query(20), np.float32)

    hits = c.search_patterns(q, k=5, rerank="attention+reward", candidates=30, heads=2,
                             temperature=0.1)
    want = db.search_patterns(q, 5, rerank="attention+reward", candidates=30, heads=2,
                              temperature=0.1)
    assert [h["id"] for h in hits] == [h.id for h in want]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in want], rel=1e-6)
    assert all("score" not in h for h in c.search_patterns(q, k=3))

    ctx = c.synthesize_context(q, k=4, temperature=0.2)
    want_ctx = db.synthesize_context(q, 4, temperature=0.2)
    assert [w["id"] for w in ctx["weights"]] == [i for i, _ in want_ctx["weights"]]
    assert ctx["vector"] == pytest.approx(want_ctx["vector"].tolist(), rel=1e-6, abs=1e-6)
    assert [h["id"] for h in ctx["results"]] == [h.id for h in want_ctx["records"]]

    raw = [h["id"] for h in c.search_patterns(q, k=10)]
    target = raw[4]
    for _ in range(80):
        out = c.feedback(q, target, reward=1.0)
        assert out["updated"] is True
        if c.search_patterns(q, k=1)[0]["id"] == target:
            break
    else:
        raise AssertionError("feedback through the client did not move the target up")
    assert [h["id"] for h in c.search_patterns(q, k=10, adapt=False)] == raw
    assert c.learning_stats()["active"] is True

    out = c.feedback_trajectory("pattern 2", raw[:5], -0.5, used=raw[1])
    assert out["updated"] is True and set(out) >= {"loss", "pPositive", "rankBefore"}

    assert c.learning_disable()["enabled"] is False
    assert [h["id"] for h in c.search_patterns(q, k=10)] == raw
    assert c.feedback(q, target)["updated"] is False
    assert c.learning_enable()["enabled"] is True
    assert c.learning_consolidate()["consolidations"] == 1
    stats = c.learning_reset()
    assert stats["updates"] == 0 and stats["active"] is False
    assert c.learning_stats() == db.learning.stats()


def test_client_learning_errors(live: tuple[Any, Client]) -> None:
    _, c = live
    q = _query(21)
    with pytest.raises(ClientError) as e:
        c.feedback(q, 424242)
    assert (e.value.status, e.value.code) == (404, "not_found")
    with pytest.raises(ClientError) as e:
        c.feedback(q, 1, reward=2.0)
    assert (e.value.status, e.value.code) == (422, "validation_error")
    assert "body.reward" in e.value.message
    with pytest.raises(ClientError) as e:
        c.search_patterns(q, k=5, rerank="attention", heads=5)
    assert e.value.status == 422 and "heads" in e.value.message
    with pytest.raises(ClientError) as e:
        c.search_patterns(q, k=5, rerank="nope")
    assert e.value.status == 422 and "body.rerank" in e.value.message
    with pytest.raises(ClientError) as e:
        c.feedback_trajectory(q, [], 1.0)
    assert e.value.status == 422
    with pytest.raises(ClientError) as e:
        c.feedback_trajectory(q, [1, 777_777], 1.0)
    assert e.value.status == 404
    anon = Client(c.url, api_key=None, retries=0)
    try:
        for call in (anon.learning_stats, anon.learning_reset,
                     lambda: anon.feedback(q, 1), lambda: anon.synthesize_context(q)):
            with pytest.raises(ClientError) as e:
                call()
            assert e.value.status == 401
    finally:
        anon.close()
