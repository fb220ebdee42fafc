"""The HTTP server (``agentdb.server.app``) over real sockets: uvicorn in a background thread
on 127.0.0.1, driven with httpx.

* ``served``  - the main server (module scope): a fresh 16-d store in ``tmp_path``, two API
  keys, no practical rate limit, CORS off, a 0.3 s heartbeat and a replay buffer of 8 events.
* ``limited`` - a second server over its own store: 5 requests per minute per key and CORS
  for ``https://app.example``.

Covered: open health/readiness/docs, auth (missing and wrong key alike, Bearer and
``X-API-Key``), per-key rate limits with ``Retry-After``, the body-size limit (declared and
streamed), validation (``k``, batch size, dimension, NaN/infinity, unknown fields), the
pattern/episode/skill/vector round trips, Cypher (values and errors), ``/stats``, the SSE
change feed (live events, resume with ``Last-Event-ID`` or ``lastEventId``, ``reset``, kinds,
heartbeats, clean-up on disconnect), CORS, the uniform error format (including a generic
``500``), and that failing requests change nothing. No timing assertions.

Skipped when the ``server`` extra is missing, unless ``AGENTDB_REQUIRE_SERVER=1``.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _requires import unavailable

try:
    import httpx
    import uvicorn
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient
except ImportError as exc:  # the server extra is not installed
    unavailable("SERVER", f"the AgentDB server needs the 'server' extra ({exc}): "
                "pip install 'agentdb[server]'", module=True)

import agentdb

DIM = 16
KEY, KEY2 = "test-key-0001", "test-key-0002"
LKEY, LKEY2 = "limited-key-01", "limited-key-02"
ORIGIN = "https://app.example"
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "missing or invalid API key"}}


# ---- real servers ------------------------------------------------------------------------
class Served:
    """A uvicorn server for ``app`` on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any, db: Any) -> None:
        self.app, self.db = app, db
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = agentdb.open(str(tmp_path_factory.mktemp("http") / "memory.db"), dim=DIM)
    app = create_app(db, api_keys=[KEY, KEY2], rate_limit_per_minute=100_000,
                     heartbeat_seconds=0.3, replay_buffer=8)
    s = Served(app, db)
    yield s
    s.stop()
    db.close()


@pytest.fixture(scope="module")
def limited() -> Iterator[Served]:
    db = agentdb.open(":memory:", dim=DIM)
    app = create_app(db, api_keys=[LKEY, LKEY2], rate_limit_per_minute=5,
                     cors_origins=[ORIGIN])
    s = Served(app, db)
    yield s
    s.stop()
    db.close()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers={"X-API-Key": KEY}, timeout=20) as c:
        yield c


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return [float(x) for x in v]


def err(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


# ---- SSE reader ---------------------------------------------------------------------------
class SSE:
    """Reads ``GET /patterns/stream`` in a thread: parsed events and comment lines."""

    def __init__(self, url: str, headers: dict[str, str], params: dict[str, str] | None = None
                 ) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.comments: queue.Queue[str] = queue.Queue()
        self.stop = threading.Event()
        self.opened = threading.Event()
        self.status: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(url, headers, params),
                                       daemon=True)
        self.thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _run(self, url: str, headers: dict[str, str], params: Any) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0)) as c, \
                    c.stream("GET", url + "/patterns/stream", headers=headers,
                             params=params) as r:
                self.status = r.status_code
                self.opened.set()
                if r.status_code != 200:
                    r.read()
                    return
                ev: dict[str, Any] = {}
                for line in r.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments.put(line)
                    elif not line:
                        if ev:
                            self.events.put(ev)
                        ev = {}
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        ev[name] = json.loads(value) if name == "data" else value
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc
        finally:
            self.opened.set()

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def wait_for(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


# ---- open endpoints, auth, rate limit ------------------------------------------------------
def test_health_ready_and_docs_are_open(served: Served) -> None:
    assert httpx.get(served.url + "/health").json() == {"status": "ok"}
    r = httpx.get(served.url + "/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert isinstance(r.json()["patterns"], int)
    schema = httpx.get(served.url + "/openapi.json").json()
    assert "/vectors/search" in schema["paths"]
    assert httpx.get(served.url + "/docs").status_code == 200


def test_auth_missing_and_wrong_key_answer_alike(served: Served) -> None:
    answers = [
        httpx.get(served.url + "/stats"),
        httpx.get(served.url + "/stats", headers={"X-API-Key": "wrong-key-0000"}),
        httpx.get(served.url + "/stats", headers={"Authorization": "Bearer wrong-key-0000"}),
        httpx.get(served.url + "/stats", headers={"Authorization": f"Basic {KEY}"}),
        httpx.post(served.url + "/vectors/search", json={"vector": vec(0)}),  # fast lane
    ]
    for r in answers:
        assert r.status_code == 401
        assert r.json() == UNAUTHORIZED
        assert r.headers["www-authenticate"] == "Bearer"
    assert len({r.content for r in answers}) == 1  # byte-identical answers


def test_bearer_and_api_key_headers_both_work(served: Served) -> None:
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY2},
                    {"authorization": f"bearer {KEY2}"}):
        r = httpx.get(served.url + "/stats", headers=headers)
        assert r.status_code == 200, headers


def test_rate_limit_per_key_with_retry_after(limited: Served) -> None:
    h = {"X-API-Key": LKEY}
    remaining = []
    for _ in range(5):
        r = httpx.get(limited.url + "/stats", headers=h)
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "5"
        remaining.append(int(r.headers["x-ratelimit-remaining"]))
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    r = httpx.get(limited.url + "/stats", headers=h)
    msg = err(r, 429, "rate_limited")
    assert "per minute" in msg
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-remaining"] == "0"
    # the fast lane is limited the same way
    r = httpx.post(limited.url + "/vectors/search", headers=h, json={"vector": vec(1)})
    err(r, 429, "rate_limited")
    # another key has its own bucket; open endpoints are not limited
    assert httpx.get(limited.url + "/stats", headers={"X-API-Key": LKEY2}).status_code == 200
    assert httpx.get(limited.url + "/health").status_code == 200


# ---- limits and validation -----------------------------------------------------------------
def test_body_too_large_declared_and_streamed(served: Served, client: httpx.Client) -> None:
    before = served.db.count("patterns")
    big = json.dumps({"task": "x" * (1 << 20)}).encode()
    r = client.post("/patterns/store", content=big, headers={"Content-Type": "application/json"})
    assert "1048576" in err(r, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"task": "'
        for _ in range(24):
            yield b"y" * 65536
        yield b'"}'

    r = client.post("/patterns/store", content=chunks(),
                    headers={"Content-Type": "application/json"})
    err(r, 413, "payload_too_large")
    r = client.post("/vectors/search", content=chunks(),  # the fast lane counts too
                    headers={"Content-Type": "application/json"})
    err(r, 413, "payload_too_large")
    assert served.db.count("patterns") == before


def test_validation_errors_name_the_field(client: httpx.Client) -> None:
    cases = [
        ("/vectors/search", {"vector": vec(0), "k": 0}, "body.k"),
        ("/vectors/search", {"vector": vec(0), "k": 5000}, "body.k"),
        ("/patterns/search", {"task": "x", "k": 1001}, "body.k"),
        ("/vectors/search", {"vector": [1.0, 2.0]}, "body.vector"),
        ("/patterns/store", {"task": "x", "embedding": [1.0] * (DIM + 1)}, "body.embedding"),
        ("/vectors", {"vectors": [{"vector": vec(1)}] * 1001}, "body.vectors"),
        ("/vectors/search", {"vector": [0.0] * DIM}, "body.vector"),
        ("/vectors/search", {"vector": [1e39] * DIM}, "body.vector"),  # overflows float32
        ("/vectors/search", {"vector": [1e200] + [0.0] * (DIM - 1)}, "finite float32"),
        ("/vectors/search", {"vector": [-3.5e38] + [1.0] * (DIM - 1)}, "finite float32"),
        ("/vectors/search", {"vector": [1e-50] * DIM}, "all-zero"),  # below float32's least
        ("/patterns/search", {"task": "x", "vector": vec(0)}, "exactly one"),
        ("/patterns/search", {"task": "x", "minRewrd": 0.5}, "minRewrd"),
        ("/patterns/store", {"task": "x", "reward": 2}, "body.reward"),
        ("/skills/search", {"query": "x", "minSuccessRate": -0.5}, "body.minSuccessRate"),
    ]
    for path, body, needle in cases:
        msg = err(client.post(path, json=body), 422, "validation_error")
        assert needle in msg, (path, msg)
    msg = err(client.post("/vectors/search", json={"vector": vec(0)[:3]}), 422,
              "validation_error")
    assert "expected 16" in msg
    msg = err(client.post("/patterns/search", json={"task": "x", "where": {"a": {"$bad": 1}}}),
              422, "validation_error")
    assert "$bad" in msg


def test_nan_and_infinity_are_refused(client: httpx.Client) -> None:
    h = {"Content-Type": "application/json"}
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = '{"vector": [' + literal + ", 1.0" * (DIM - 1) + "]}"
        msg = err(client.post("/vectors/search", content=body, headers=h), 422,
                  "validation_error")
        assert "body.vector[0]" in msg and "finite" in msg
        body = '{"task": "t", "reward": ' + literal + "}"
        err(client.post("/patterns/store", content=body, headers=h), 422, "validation_error")
        body = '{"task": "t", "metadata": {"x": ' + literal + "}}"
        err(client.post("/patterns/store", content=body, headers=h), 422, "validation_error")
        body = '{"task": "t", "where": {"x": {"$in": [1, ' + literal + "]}}}"
        msg = err(client.post("/patterns/search", content=body, headers=h), 422,
                  "validation_error")
        assert "body.where" in msg
        body = '{"query": "RETURN $x AS x", "params": {"x": ' + literal + "}}"
        err(client.post("/graph/cypher", content=body, headers=h), 422, "validation_error")


def test_bad_json_unknown_route_and_method(client: httpx.Client) -> None:
    h = {"Content-Type": "application/json"}
    err(client.post("/patterns/store", content=b'{"task": ', headers=h), 400, "bad_request")
    err(client.post("/vectors/search", content=b"[1, 2", headers=h), 400, "bad_request")
    err(client.post("/vectors/search", content=b"", headers=h), 422, "validation_error")
    err(client.get("/no/such/route"), 404, "not_found")
    err(client.put("/patterns/1", json={}), 405, "method_not_allowed")
    err(client.get("/patterns/not-a-number"), 422, "validation_error")
    err(client.get("/patterns/0"), 422, "validation_error")
    err(client.get(f"/patterns/{2**64}"), 422, "validation_error")


# ---- records -------------------------------------------------------------------------------
def test_patterns_store_get_search_delete(client: httpx.Client) -> None:
    r = client.post("/patterns/store", json={
        "task": "parse ISO dates in log lines", "reward": 0.9, "success": True,
        "sessionId": "run-1", "critique": "handle Z", "metadata": {"lang": "py", "n": 2},
        "embedding": vec(10)})
    assert r.status_code == 201
    pid = r.json()["id"]
    p = r.json()["pattern"]
    assert p["id"] == pid and p["sessionId"] == "run-1" and p["metadata"] == {"lang": "py",
                                                                             "n": 2}
    assert {"createdAt", "updatedAt", "critique", "input", "output"} <= set(p)
    assert "embedding" not in p and "session_id" not in p
    got = client.get(f"/patterns/{pid}").json()
    assert got == p
    emb = client.get(f"/patterns/{pid}", params={"includeEmbedding": "true"}).json()
    assert np.allclose(emb["embedding"], vec(10), atol=1e-6)
    # snake_case is accepted too
    r2 = client.post("/patterns/store", json={"task": "sort a list", "reward": 0.1,
                                              "session_id": "run-2", "embedding": vec(11)})
    assert r2.status_code == 201 and r2.json()["pattern"]["sessionId"] == "run-2"
    hits = client.post("/patterns/search", json={"vector": vec(10), "k": 2}).json()["results"]
    assert hits[0]["id"] == pid and hits[0]["pattern"]["task"].startswith("parse")
    assert set(hits[0]) == {"id", "similarity", "distance", "pattern"}
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    filtered = client.post("/patterns/search", json={
        "task": "parse dates", "k": 10, "minReward": 0.5, "successOnly": True,
        "sessionId": "run-1", "where": {"n": {"$gte": 2}}}).json()["results"]
    assert [h["id"] for h in filtered] == [pid]
    assert client.delete(f"/patterns/{pid}").status_code == 204
    err(client.get(f"/patterns/{pid}"), 404, "not_found")
    err(client.delete(f"/patterns/{pid}"), 404, "not_found")


def test_episodes_store_get_search_delete(served: Served, client: httpx.Client) -> None:
    sid = client.post("/skills/store", json={"name": "retry_http", "description":
                                             "retry HTTP calls"}).json()["id"]
    r = client.post("/episodes/store", json={
        "task": "call the flaky API", "success": False, "critique": "no backoff",
        "latencyMs": 12.5, "tokens": 300, "skills": ["retry_http"], "embedding": vec(20)})
    assert r.status_code == 201
    eid, e = r.json()["id"], r.json()["episode"]
    assert e["latencyMs"] == 12.5 and e["tokens"] == 300 and e["skills"] == ["retry_http"]
    assert client.get(f"/skills/{sid}").json()["uses"] == 1
    assert client.get(f"/episodes/{eid}").json() == e
    fails = client.post("/episodes/search", json={"vector": vec(20), "success": False}).json()
    assert fails["results"][0]["id"] == eid
    assert fails["results"][0]["episode"]["critique"] == "no backoff"
    wins = client.post("/episodes/search", json={"task": "call the flaky API",
                                                 "success": True}).json()["results"]
    assert eid not in [h["id"] for h in wins]
    assert client.delete(f"/episodes/{eid}").status_code == 204
    err(client.get(f"/episodes/{eid}"), 404, "not_found")


def test_skills_store_search_conflict_delete(served: Served, client: httpx.Client) -> None:
    r = client.post("/skills/store", json={"name": "parse_dates", "description":
                                           "parse timestamps", "code": "def f(): ...",
                                           "metadata": {"lang": "py"}})
    assert r.status_code == 201
    sid, s = r.json()["id"], r.json()["skill"]
    assert s["successRate"] == 0.0 and s["uses"] == 0 and s["code"] == "def f(): ..."
    hits = client.post("/skills/search", json={"query": "parse timestamps", "k": 3,
                                               "where": {"lang": "py"}}).json()["results"]
    assert hits[0]["id"] == sid and hits[0]["skill"]["name"] == "parse_dates"
    assert client.get(f"/skills/{sid}").json() == s
    assert client.delete(f"/skills/{sid}").status_code == 204
    err(client.get(f"/skills/{sid}"), 404, "not_found")


def test_failing_requests_leave_the_store_unchanged(served: Served,
                                                    client: httpx.Client) -> None:
    db = served.db
    client.post("/skills/store", json={"name": "unique_skill", "description": "first"})
    counts = {k: db.count(k) for k in ("patterns", "episodes", "skills")}
    last_event = served.hub.last_id
    msg = err(client.post("/skills/store", json={"name": "unique_skill", "description":
                                                 "second"}), 409, "conflict")
    assert "unique_skill" in msg
    msg = err(client.post("/episodes/store", json={"task": "t", "skills": ["unique_skill",
                                                                          "nope"]}),
              422, "validation_error")
    assert "nope" in msg
    bad_batch = {"vectors": [{"vector": vec(1)}, {"vector": vec(2)},
                             {"vector": [1.0] * (DIM - 1)}]}
    assert "body.vectors[2].vector" in err(client.post("/vectors", json=bad_batch), 422,
                                           "validation_error")
    dup_ids = {"vectors": [{"id": 500, "vector": vec(1)}, {"id": 500, "vector": vec(2)}]}
    err(client.post("/vectors", json=dup_ids), 422, "validation_error")
    err(client.post("/patterns/store", json={"task": "   "}), 422, "validation_error")
    assert {k: db.count(k) for k in counts} == counts
    assert db.get_skill("unique_skill").description == "first"
    assert db.get_skill("unique_skill").uses == 0
    assert served.hub.last_id == last_event  # no change event either


def test_vectors_upsert_search_delete(served: Served, client: httpx.Client) -> None:
    r = client.post("/vectors", json={"vectors": [
        {"vector": vec(30), "metadata": {"tag": "a"}},
        {"id": 900, "vector": vec(31), "metadata": {"tag": "b"}},
        {"id": 901, "vector": vec(32), "task": "named vector"}]})
    assert r.status_code == 200
    ids = r.json()["ids"]
    assert ids[1:] == [900, 901] and ids[0] not in (900, 901)
    assert served.db.get_pattern(900).task == "vector 900"
    assert served.db.get_pattern(ids[0]).task == "vector"
    assert served.db.get_pattern(901).task == "named vector"
    # upsert: an existing id gets the new vector and metadata, keeps its task
    r = client.post("/vectors", json={"vectors": [{"id": 900, "vector": vec(33),
                                                   "metadata": {"tag": "c"}}]})
    assert r.json() == {"ids": [900]}
    p = served.db.get_pattern(900)
    assert p.metadata == {"tag": "c"} and p.task == "vector 900"
    assert np.allclose(p.embedding, vec(33), atol=1e-6)
    hits = client.post("/vectors/search", json={"vector": vec(33), "k": 3}).json()["results"]
    assert hits[0] == {"id": 900, "similarity": pytest.approx(1.0, abs=1e-5),
                       "distance": pytest.approx(0.0, abs=1e-5), "metadata": {"tag": "c"}}
    assert client.delete("/vectors/900").status_code == 204
    err(client.delete("/vectors/900"), 404, "not_found")
    hits = client.post("/vectors/search", json={"vector": vec(33), "k": 3}).json()["results"]
    assert 900 not in [h["id"] for h in hits]


def test_vector_search_matches_the_embedded_api(served: Served, client: httpx.Client) -> None:
    """The fast lane (metadata from the in-memory columns) answers what search_patterns does,
    and so does the fallback path used for stores without those columns."""
    db = served.db
    client.post("/vectors", json={"vectors": [
        {"vector": vec(100 + i), "metadata": {"i": i, "even": i % 2 == 0}} for i in range(40)]})

    class PublicOnly:  # hides the store's internals: create_app takes the fallback path
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    with TestClient(create_app(PublicOnly(db), api_keys=[KEY])) as slow:
        for q, extra in [(vec(105), {}), (vec(7), {"where": {"even": True}}),
                         (vec(120), {"threshold": 0.2, "k": 50}),
                         (vec(3), {"minReward": 0.0, "successOnly": False, "ef": 200})]:
            body = {"vector": q, "k": extra.pop("k", 10), **extra}
            fast = client.post("/vectors/search", json=body).json()["results"]
            fallback = slow.post("/vectors/search", json=body,
                                 headers={"X-API-Key": KEY}).json()["results"]
            embedded = db.search_patterns(
                np.asarray(q, np.float32), body["k"], where=body.get("where"),
                threshold=body.get("threshold"), min_reward=body.get("minReward"),
                ef=body.get("ef"))
            assert [h["id"] for h in fast] == [h.id for h in embedded] == \
                [h["id"] for h in fallback]
            assert [h["metadata"] for h in fast] == [h.record.metadata for h in embedded]
            assert [h["similarity"] for h in fast] == pytest.approx(
                [h.similarity for h in embedded])


def test_search_answers_encode_as_plain_json_does() -> None:
    """The search answers' encoder (orjson) writes the bytes the general one writes, and
    whatever orjson refuses goes through the general one."""
    from agentdb.server.wire import dumps, dumps_hits

    hits = {"results": [{"id": 7, "similarity": 0.8125, "distance": 0.1875,
                         "metadata": {"lang": "é", "tags": ["a", 1, 2.5, None, True]}},
                        {"id": 2**40, "similarity": 1.0, "distance": 0.0, "metadata": {}}]}
    assert dumps_hits(hits) == dumps(hits)
    assert json.loads(dumps_hits({"k": {1: 2}})) == {"k": {"1": 2}}  # a non-string key
    assert json.loads(dumps_hits({"s": "\ud800"})) == {"s": "\ud800"}  # a lone surrogate
    assert json.loads(dumps_hits({"n": 2**70})) == {"n": 2**70}


def test_cypher_values_and_errors(client: httpx.Client) -> None:
    r = client.post("/graph/cypher", json={"query": (
        "CREATE (a:Event {name: $a})-[:CAUSED_BY {confidence: 0.5}]->(b:Event {name: $b}) "
        "RETURN a.name AS a, b.name AS b"), "params": {"a": "rain", "b": "wet"}})
    assert r.status_code == 200
    assert r.json() == {"columns": ["a", "b"], "rows": [{"a": "rain", "b": "wet"}]}
    r = client.post("/graph/cypher", json={"query": (
        "MATCH p = (a:Event {name: 'rain'})-[r:CAUSED_BY]->(b) "
        "RETURN a, r, p, 0.0 / 0.0 AS nan, count(*) AS n")}).json()
    assert r["columns"] == ["a", "r", "p", "nan", "n"]
    row = r["rows"][0]
    assert set(row["a"]) == {"id", "labels", "properties"} and row["a"]["labels"] == ["Event"]
    assert set(row["r"]) == {"id", "type", "start", "end", "properties"}
    assert row["r"]["type"] == "CAUSED_BY" and row["r"]["properties"]["confidence"] == 0.5
    assert row["r"]["start"] == row["a"]["id"]
    assert [n["properties"]["name"] for n in row["p"]["nodes"]] == ["rain", "wet"]
    assert len(row["p"]["relationships"]) == 1
    assert row["nan"] == "NaN" and row["n"] == 1
    msg = err(client.post("/graph/cypher", json={"query": "MATCH (a RETURN a"}), 400,
              "cypher_error")
    assert msg.startswith("line 1, column ")
    err(client.post("/graph/cypher", json={"query": "RETURN $missing"}), 400, "cypher_error")
    err(client.post("/graph/cypher", json={"query": ""}), 422, "validation_error")


def test_stats(served: Served, client: httpx.Client) -> None:
    s = client.get("/stats").json()
    assert s["dim"] == DIM and s["patterns"] == served.db.count("patterns")
    assert {"episodes", "skills", "index_status"} <= set(s)


def test_unexpected_errors_are_generic_500(served: Served, client: httpx.Client,
                                           monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(served.db, "stats", boom)
    monkeypatch.setattr(served.db, "search_patterns", boom)
    with caplog.at_level(logging.ERROR, logger="agentdb.server"):
        r1 = client.get("/stats")
        r2 = client.post("/patterns/search", json={"task": "x"})  # the fast lane
    for r in (r1, r2):
        assert err(r, 500, "internal_error") == "internal server error"
        assert "secret" not in r.text and "Traceback" not in r.text
    assert "secret internal detail" in caplog.text  # the traceback stays server-side


def test_ready_is_503_when_the_store_is_closed() -> None:
    db = agentdb.open(":memory:", dim=DIM)
    with TestClient(create_app(db, api_keys=[KEY])) as c:
        assert c.get("/ready").status_code == 200
        db.close()
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        r = c.get("/patterns/1", headers={"X-API-Key": KEY})
        assert r.status_code == 503 and "memory" not in r.text  # no paths leak


def test_create_app_refuses_bad_settings() -> None:
    db = agentdb.open(":memory:", dim=DIM)
    with pytest.raises(ValueError, match="credentials"):
        create_app(db, api_keys=[KEY], cors_origins=["*"], cors_credentials=True)
    with pytest.raises(ValueError, match="empty"):
        create_app(db, api_keys=[])
    app = create_app(db, api_keys=None)  # auth off: no key needed, one shared bucket
    with TestClient(app) as c:
        assert c.get("/stats").status_code == 200
    assert app.state.keys is None and app.state.limiter.per_minute == 100


# ---- CORS ----------------------------------------------------------------------------------
def test_cors_off_by_default_and_on_with_an_origin(served: Served, limited: Served) -> None:
    h = {"Origin": ORIGIN}
    r = httpx.get(served.url + "/health", headers=h)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(limited.url + "/health", headers=h)
    assert r.headers["access-control-allow-origin"] == ORIGIN
    r = httpx.get(limited.url + "/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(limited.url + "/patterns/search", headers={
        **h, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    r = httpx.get(limited.url + "/stats", headers=h)  # errors carry CORS headers too
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN


# ---- the change feed (SSE) ------------------------------------------------------------------
def test_stream_live_event_heartbeat_and_cleanup(served: Served, client: httpx.Client) -> None:
    base = served.hub.subscriber_count()
    sse = SSE(served.url, {"X-API-Key": KEY})
    try:
        assert sse.status == 200
        assert wait_for(lambda: served.hub.subscriber_count() == base + 1)
        pid = client.post("/patterns/store", json={"task": "live one", "sessionId": "s-1",
                                                   "embedding": vec(40)}).json()["id"]
        ev = sse.next()
        assert ev["event"] == "pattern:stored" and int(ev["id"]) == served.hub.last_id
        assert ev["data"]["id"] == pid and ev["data"]["sessionId"] == "s-1"
        assert "embedding" not in ev["data"]
        client.delete(f"/patterns/{pid}")
        ev = sse.next()
        assert ev["event"] == "pattern:deleted" and ev["data"] == {"id": pid}
        assert sse.comments.get(timeout=10) == ": ping"  # heartbeat (0.3 s here)
    finally:
        sse.close()
    assert sse.error is None
    assert wait_for(lambda: served.hub.subscriber_count() == base)


def test_stream_resume_after_last_event_id(served: Served, client: httpx.Client) -> None:
    last = served.hub.last_id
    ids = [client.post("/patterns/store", json={"task": f"missed {i}", "embedding":
                                                vec(50 + i)}).json()["id"] for i in range(3)]
    for how in ("header", "query"):
        headers = {"X-API-Key": KEY}
        params = None
        if how == "header":
            headers["Last-Event-ID"] = str(last)
        else:
            params = {"lastEventId": str(last)}
        sse = SSE(served.url, headers, params)
        try:
            got = [sse.next() for _ in range(3)]
        finally:
            sse.close()
        assert [int(e["id"]) for e in got] == [last + 1, last + 2, last + 3]
        assert [e["data"]["id"] for e in got] == ids
        assert {e["event"] for e in got} == {"pattern:stored"}
    assert wait_for(lambda: served.hub.subscriber_count() == 0)


def test_stream_reset_when_the_id_is_too_old_or_unknown(served: Served,
                                                        client: httpx.Client) -> None:
    for i in range(10):  # more than the replay buffer (8)
        client.post("/patterns/store", json={"task": f"filler {i}", "embedding": vec(60 + i)})
    last = served.hub.last_id
    for stale in ("1", str(last + 1000)):  # fell out of the buffer / from an earlier run
        sse = SSE(served.url, {"X-API-Key": KEY, "Last-Event-ID": stale})
        try:
            first = sse.next()
            assert first["event"] == "reset" and "reason" in first["data"]
            pid = client.post("/patterns/store", json={"task": "after reset",
                                                       "embedding": vec(99)}).json()["id"]
            while True:  # after the reset: the buffered events, then the live one
                ev = sse.next()
                if ev["data"].get("id") == pid:
                    break
        finally:
            sse.close()
    r = httpx.get(served.url + "/patterns/stream",
                  headers={"X-API-Key": KEY, "Last-Event-ID": "abc"})
    err(r, 422, "validation_error")


def test_stream_kinds(served: Served, client: httpx.Client) -> None:
    sse = SSE(served.url, {"X-API-Key": KEY}, {"kinds": "skill,episode"})
    try:
        client.post("/patterns/store", json={"task": "not wanted", "embedding": vec(70)})
        sid = client.post("/skills/store", json={"name": "stream_skill"}).json()["id"]
        ev = sse.next()
        assert ev["event"] == "skill:stored" and ev["data"]["id"] == sid
        assert "successRate" in ev["data"]
    finally:
        sse.close()
    r = httpx.get(served.url + "/patterns/stream", headers={"X-API-Key": KEY},
                  params={"kinds": "pattern,bogus"})
    assert "bogus" in err(r, 422, "validation_error")
    r = httpx.get(served.url + "/patterns/stream")
    assert r.status_code == 401 and r.json() == UNAUTHORIZED
