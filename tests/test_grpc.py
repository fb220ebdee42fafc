"""The gRPC service (agentdb.server.grpc_service) through a real server and channel.

Each test starts ``serve_grpc`` on 127.0.0.1, port 0, over a fresh store (tmp_path, dim 16,
explicit embeddings) and talks to it with the generated stub. Skips when grpcio/protobuf
(the 'server' extra) are missing, unless ``AGENTDB_REQUIRE_SERVER=1``.
"""

from __future__ import annotations

import json
import time

import agentdb
import numpy as np
import pytest
from _requires import unavailable

try:
    import grpc
    from agentdb.server import agentdb_pb2 as pb
    from agentdb.server import agentdb_pb2_grpc as pb_grpc
    from agentdb.server.auth import KeyStore, RateLimiter
    from agentdb.server.grpc_service import hub_for, serve_grpc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    unavailable("SERVER", f"gRPC server tests need the 'server' extra (grpcio, protobuf): {exc}",
                module=True)

DIM = 16
KEY = "test-key-0123456789"
BEARER = (("authorization", f"Bearer {KEY}"),)


def vec(i: int, noise: float = 0.0) -> list[float]:
    v = np.full(DIM, 0.01, np.float32)
    v[i % DIM] = 1.0
    v[(i + 1) % DIM] += noise
    return v.tolist()


def wait_until(pred, what: str, timeout: float = 20.0) -> None:
    """Poll ``pred`` (synchronisation only; the deadline just keeps a failure from hanging)."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Server:
    def __init__(self, db, hub, server, channel) -> None:
        self.db = db
        self.hub = hub
        self.server = server
        self.channel = channel
        self.stub = pb_grpc.AgentDBStub(channel)


@pytest.fixture
def start(tmp_path):
    started: list[Server] = []

    def _start(limiter=None, keys="default", max_workers=16) -> Server:
        db = agentdb.open(str(tmp_path / f"m{len(started)}.db"), dim=DIM)
        hub = hub_for(db)
        server = serve_grpc(db, port=0, keys=KeyStore([KEY]) if keys == "default" else keys,
                            limiter=limiter or RateLimiter(per_minute=0), hub=hub,
                            max_workers=max_workers)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.agentdb_port}",
                                        options=[("grpc.enable_http_proxy", 0)])
        s = Server(db, hub, server, channel)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.channel.close()
        s.server.stop(None).wait()
        s.db.close()


def call_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


def store(stub, task: str, i: int, **fields) -> int:
    fields.setdefault("metadata", "{}")
    return stub.StorePattern(pb.StorePatternRequest(task=task, embedding=vec(i), **fields),
                             metadata=BEARER).id


# ---- auth ---------------------------------------------------------------------------------------
def test_auth_required_and_both_header_forms(start):
    s = start()
    req = pb.StatsRequest()
    none = call_error(s.stub.Stats, req)
    wrong = call_error(s.stub.Stats, req, metadata=(("authorization", "Bearer wrong-key-xyz"),))
    wrong_x = call_error(s.stub.Stats, req, metadata=(("x-api-key", KEY + "x"),))
    for err in (none, wrong, wrong_x):
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.details() == "missing or invalid API key"
    err = call_error(s.stub.StreamPatterns(pb.StreamPatternsRequest()).__next__)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert json.loads(s.stub.Stats(req, metadata=BEARER).json)["patterns"] == 0
    assert json.loads(s.stub.Stats(req, metadata=(("x-api-key", KEY),)).json)["dim"] == DIM
    # Health is a liveness probe: no key needed
    assert s.stub.Health(pb.HealthRequest()).status == "ok"


def test_auth_disabled_only_on_loopback(start, tmp_path):
    s = start(keys=None)
    assert json.loads(s.stub.Stats(pb.StatsRequest()).json)["patterns"] == 0
    with pytest.raises(ValueError, match="loopback"):
        serve_grpc(s.db, host="0.0.0.0", port=0, keys=None, limiter=RateLimiter(0), hub=s.hub)
    with pytest.raises(ValueError, match="no API keys"):
        serve_grpc(s.db, port=0, keys=KeyStore([]), limiter=RateLimiter(0), hub=s.hub)


# ---- patterns ----------------------------------------------------------------------------------
def test_store_get_search_delete(start):
    s = start()
    resp = s.stub.StorePattern(pb.StorePatternRequest(
        task="parse ISO dates", embedding=vec(3), reward=0.9, success=True, session_id="s1",
        critique="fine", metadata=json.dumps({"lang": "py"})), metadata=BEARER)
    pid = resp.id
    assert pid >= 1 and resp.pattern.id == pid and resp.pattern.task == "parse ISO dates"
    got = s.stub.GetPattern(pb.GetPatternRequest(id=pid), metadata=BEARER)
    assert (got.reward, got.success, got.session_id, got.critique) == (0.9, True, "s1", "fine")
    assert not got.HasField("input") and len(got.embedding) == 0
    assert json.loads(got.metadata) == {"lang": "py"} and got.created_at > 0
    with_emb = s.stub.GetPattern(pb.GetPatternRequest(id=pid, include_embedding=True),
                                 metadata=BEARER)
    assert np.allclose(np.asarray(with_emb.embedding) / np.linalg.norm(with_emb.embedding),
                       np.asarray(vec(3)) / np.linalg.norm(vec(3)), atol=1e-5)
    other = store(s.stub, "something else", 9)
    # server-side embedding of the task text when no embedding is given
    text_id = s.stub.StorePattern(pb.StorePatternRequest(task="embed me"), metadata=BEARER).id

    hits = s.stub.SearchPatterns(pb.SearchPatternsRequest(vector=vec(3), k=2),
                                 metadata=BEARER).results
    assert [h.id for h in hits][0] == pid and len(hits) == 2
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert hits[0].distance == pytest.approx(0.0, abs=1e-4)
    assert hits[0].pattern.task == "parse ISO dates"
    by_text = s.stub.SearchPatterns(pb.SearchPatternsRequest(task="embed me", k=1),
                                    metadata=BEARER).results
    assert [h.id for h in by_text] == [text_id]

    assert s.stub.DeletePattern(pb.DeletePatternRequest(id=pid), metadata=BEARER) is not None
    for fn, req in ((s.stub.GetPattern, pb.GetPatternRequest(id=pid)),
                    (s.stub.DeletePattern, pb.DeletePatternRequest(id=pid))):
        err = call_error(fn, req, metadata=BEARER)
        assert err.code() == grpc.StatusCode.NOT_FOUND and str(pid) in err.details()
    left = s.stub.SearchPatterns(pb.SearchPatternsRequest(vector=vec(3), k=10), metadata=BEARER)
    assert {h.id for h in left.results} == {other, text_id}


def test_search_filters_and_invalid_input(start):
    s = start()
    a = store(s.stub, "a", 1, reward=0.9, success=True, session_id="s1",
              metadata=json.dumps({"lang": "py", "n": 1}))
    b = store(s.stub, "b", 2, reward=0.2, success=False, session_id="s2",
              metadata=json.dumps({"lang": "go", "n": 2}))
    c = store(s.stub, "c", 3, reward=0.6, success=True, session_id="s2",
              metadata=json.dumps({"lang": "py", "n": 3}))

    def ids(**kw) -> set[int]:
        kw.setdefault("vector", vec(1))
        kw.setdefault("k", 10)
        res = s.stub.SearchPatterns(pb.SearchPatternsRequest(**kw), metadata=BEARER)
        return {h.id for h in res.results}

    assert ids() == {a, b, c}
    assert ids(min_reward=0.5) == {a, c}
    assert ids(success_only=True) == {a, c}
    assert ids(session_id="s2") == {b, c}
    assert ids(where=json.dumps({"lang": "py"})) == {a, c}
    assert ids(where=json.dumps({"n": {"$gte": 2}}), session_id="s2", min_reward=0.5) == {c}
    assert ids(threshold=0.9) == {a}
    assert ids(k=1) == {a}
    assert len(ids(ef=50)) == 3
    # text / hybrid modes and diversity (the embedded API's options)
    assert ids(vector=[], task="b", mode="text") == {b}
    res = s.stub.SearchPatterns(pb.SearchPatternsRequest(task="c", k=3, mode="hybrid",
                                                         text_weight=0.7), metadata=BEARER)
    assert res.results[0].id == c and res.results[0].HasField("score")
    assert len(ids(k=3, diversity=0.5, candidates=3)) == 3
    assert not s.stub.SearchPatterns(pb.SearchPatternsRequest(vector=vec(1), k=3),
                                     metadata=BEARER).results[0].HasField("score")

    bad = [
        {"mode": "words"}, {"mode": "text"}, {"diversity": 2.0}, {"candidates": 0},
        {"vector": [], "task": "a", "mode": "hybrid", "text_weight": 5.0},
        {"k": 1001}, {"k": -1}, {"ef": 0}, {"where": "{not json"}, {"where": "[1]"},
        {"vector": vec(1)[:5]}, {"vector": [0.0] * DIM}, {"task": "both"},
        {"vector": [], "task": ""}, {"threshold": 2.0}, {"min_reward": 5.0},
        {"where": json.dumps({"lang": {"$bogus": 1}})},
    ]
    for kw in bad:
        err = call_error(ids, **kw)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, kw
        assert err.details(), kw
    err = call_error(s.stub.StorePattern, pb.StorePatternRequest(task="", embedding=vec(1)),
                     metadata=BEARER)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "task" in err.details()
    err = call_error(s.stub.StorePattern,
                     pb.StorePatternRequest(task="t", embedding=vec(1), reward=3.0),
                     metadata=BEARER)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "reward" in err.details()
    err = call_error(s.stub.StorePattern,
                     pb.StorePatternRequest(task="t", embedding=vec(1), metadata="[]"),
                     metadata=BEARER)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in err.details()
    assert s.db.count("patterns") == 3  # failed calls stored nothing


# ---- Cypher, stats, health, errors -------------------------------------------------------------
def test_cypher(start):
    s = start()
    out = s.stub.Cypher(pb.CypherRequest(
        query="CREATE (a:Event {name: $a})-[:CAUSED_BY {confidence: 0.5}]->(b:Event {name: $b})",
        params=json.dumps({"a": "x", "b": "y"})), metadata=BEARER)
    assert json.loads(out.rows) == []
    out = s.stub.Cypher(pb.CypherRequest(
        query="MATCH (a:Event)-[r]->(b) RETURN a, r, b.name AS name, 0.0/0.0 AS nan"),
        metadata=BEARER)
    assert list(out.columns) == ["a", "r", "name", "nan"]
    (row,) = json.loads(out.rows)
    assert row["a"]["labels"] == ["Event"] and row["a"]["properties"]["name"] == "x"
    assert row["r"]["type"] == "CAUSED_BY" and row["r"]["start"] == row["a"]["id"]
    assert row["r"]["properties"]["confidence"] == 0.5
    assert row["name"] == "y" and row["nan"] == "NaN"
    p = s.stub.Cypher(pb.CypherRequest(query="MATCH p = (:Event)-[]->() RETURN p"),
                      metadata=BEARER)
    path = json.loads(p.rows)[0]["p"]
    assert [n["properties"]["name"] for n in path["nodes"]] == ["x", "y"]
    assert len(path["relationships"]) == 1

    err = call_error(s.stub.Cypher, pb.CypherRequest(query="MATCH (a RETURN a"), metadata=BEARER)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "line 1" in err.details()
    for req in (pb.CypherRequest(query="RETURN $x"),  # missing parameter
                pb.CypherRequest(query="RETURN 1", params="[1]"),
                pb.CypherRequest(query="  ")):
        assert call_error(s.stub.Cypher, req, metadata=BEARER).code() == \
            grpc.StatusCode.INVALID_ARGUMENT


def test_stats_health_and_error_mapping(start, monkeypatch, caplog):
    s = start()
    store(s.stub, "a", 1)
    stats = json.loads(s.stub.Stats(pb.StatsRequest(), metadata=BEARER).json)
    assert stats["patterns"] == 1 and stats["dim"] == DIM
    h = s.stub.Health(pb.HealthRequest())
    assert (h.status, h.ready, h.patterns) == ("ok", True, 1)

    def boom() -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(s.db, "stats", boom)
    with caplog.at_level("ERROR", logger="agentdb.server.grpc"):
        err = call_error(s.stub.Stats, pb.StatsRequest(), metadata=BEARER)
    assert err.code() == grpc.StatusCode.INTERNAL and err.details() == "internal error"
    assert "secret internal detail" in caplog.text  # logged server-side, not sent
    monkeypatch.undo()

    s.db.close()
    h = s.stub.Health(pb.HealthRequest())
    assert (h.status, h.ready) == ("ok", False)
    err = call_error(s.stub.GetPattern, pb.GetPatternRequest(id=1), metadata=BEARER)
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_rate_limit(start):
    s = start(limiter=RateLimiter(per_minute=3))
    for _ in range(3):
        s.stub.Stats(pb.StatsRequest(), metadata=BEARER)
    err = call_error(s.stub.Stats, pb.StatsRequest(), metadata=BEARER)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(err.trailing_metadata())
    assert int(trailers["retry-after"]) >= 1
    # per key: another client is not affected; Health is never limited
    other = "other-key-987654321"
    s2 = start(limiter=RateLimiter(per_minute=1), keys=KeyStore([KEY, other]))
    s2.stub.Stats(pb.StatsRequest(), metadata=BEARER)
    assert call_error(s2.stub.Stats, pb.StatsRequest(), metadata=BEARER).code() == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    s2.stub.Stats(pb.StatsRequest(), metadata=(("x-api-key", other),))
    for _ in range(3):
        assert s2.stub.Health(pb.HealthRequest()).ready


# ---- StreamPatterns ----------------------------------------------------------------------------
def test_stream_live_event_and_cancel(start):
    s = start()
    assert hub_for(s.db) is s.hub  # one hub per store, registered once (ids not doubled)
    call = s.stub.StreamPatterns(pb.StreamPatternsRequest(), metadata=BEARER, timeout=60)
    wait_until(lambda: s.hub.subscriber_count() == 1, "the subscription")
    pid = store(s.stub, "streamed", 4, reward=0.5)
    ev = next(call)
    assert ev.event == "pattern:stored" and ev.id == 1
    data = json.loads(ev.data)
    assert data["id"] == pid and data["task"] == "streamed" and data["reward"] == 0.5
    s.stub.DeletePattern(pb.DeletePatternRequest(id=pid), metadata=BEARER)
    ev = next(call)
    assert (ev.id, ev.event, json.loads(ev.data)) == (2, "pattern:deleted", {"id": pid})
    call.cancel()
    wait_until(lambda: s.hub.subscriber_count() == 0, "the subscription to be removed")
    err = call_error(next, call)
    assert err.code() == grpc.StatusCode.CANCELLED


def test_stream_resume_replays_missed_events_and_filters_kinds(start):
    s = start()
    ids = [store(s.stub, f"p{i}", i) for i in range(3)]
    s.db.store_episode("an episode", embedding=vec(5))
    call = s.stub.StreamPatterns(pb.StreamPatternsRequest(last_event_id=1), metadata=BEARER,
                                 timeout=60)
    got = [next(call), next(call)]
    assert [(e.id, e.event) for e in got] == [(2, "pattern:stored"), (3, "pattern:stored")]
    assert [json.loads(e.data)["id"] for e in got] == ids[1:]
    # live events follow the backlog
    new = store(s.stub, "after", 6)
    ev = next(call)
    assert (ev.id, json.loads(ev.data)["id"]) == (5, new)  # id 4 was the episode (filtered)
    call.cancel()

    episodes = s.stub.StreamPatterns(pb.StreamPatternsRequest(last_event_id=0,
                                                              kinds=["episode"]),
                                     metadata=BEARER, timeout=60)
    ev = next(episodes)
    assert (ev.id, ev.event) == (4, "episode:stored")
    assert json.loads(ev.data)["task"] == "an episode"
    episodes.cancel()
    wait_until(lambda: s.hub.subscriber_count() == 0, "the subscriptions to be removed")

    err = call_error(next, s.stub.StreamPatterns(pb.StreamPatternsRequest(kinds=["nope"]),
                                                 metadata=BEARER, timeout=60))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in err.details()


def test_stream_limits_and_server_stop_removes_subscriptions(start):
    s = start(max_workers=4)  # at most 2 open streams
    calls = [s.stub.StreamPatterns(pb.StreamPatternsRequest(), metadata=BEARER, timeout=60)
             for _ in range(2)]
    wait_until(lambda: s.hub.subscriber_count() == 2, "two subscriptions")
    err = call_error(next, s.stub.StreamPatterns(pb.StreamPatternsRequest(), metadata=BEARER,
                                                 timeout=60))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    s.server.stop(None).wait()
    wait_until(lambda: s.hub.subscriber_count() == 0, "the subscriptions to be removed")
    for c in calls:
        assert call_error(next, c).code() in (grpc.StatusCode.CANCELLED,
                                              grpc.StatusCode.UNAVAILABLE)


def test_dropped_slow_subscriber_ends_with_aborted():
    """A subscriber the hub dropped (queue full) ends its stream with ABORTED, not OK."""
    from agentdb.server.events import EventHub
    from agentdb.server.grpc_service import AgentDBServicer

    class Aborted(Exception):
        pass

    class FakeContext:
        def __init__(self) -> None:
            self.callbacks: list = []
            self.status = None

        def add_callback(self, cb) -> bool:
            self.callbacks.append(cb)
            return True

        def is_active(self) -> bool:
            return True

        def abort(self, code, details):
            self.status = (code, details)
            raise Aborted

    hub = EventHub(queue_size=1)
    servicer = AgentDBServicer(None, keys=None, limiter=RateLimiter(0), hub=hub)
    sub = hub.subscribe()
    for i in range(3):  # the second publish overflows the queue: the subscriber is dropped
        hub.publish("pattern:stored", {"id": i})
    assert hub.subscriber_count() == 0
    ctx = FakeContext()
    with pytest.raises(Aborted):
        list(servicer._stream(sub, ctx))
    assert ctx.status[0] == grpc.StatusCode.ABORTED and "last_event_id" in ctx.status[1]
    assert len(ctx.callbacks) == 1


def test_cypher_is_bounded_by_the_call_deadline(start):
    """A Cypher call stops at its deadline (DEADLINE_EXCEEDED) and the service answers the
    next call at once; the server's row cap is RESOURCE_EXHAUSTED."""
    s = start()
    s.stub.Cypher(pb.CypherRequest(query="UNWIND range(1, 200) AS i CREATE (:Event {i: i})"),
                  metadata=BEARER)
    err = call_error(s.stub.Cypher, pb.CypherRequest(
        query="MATCH (a), (b), (c), (d) RETURN count(*) AS n"), metadata=BEARER, timeout=0.5)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # a write needs the graph to itself: it goes through within its own deadline only if the
    # server stopped the abandoned read (which would otherwise run for the server's 30 s)
    s.stub.Cypher(pb.CypherRequest(query="CREATE (:After)"), metadata=BEARER, timeout=20)
    out = s.stub.Cypher(pb.CypherRequest(query="MATCH (e:Event) RETURN count(e) AS n"),
                        metadata=BEARER, timeout=20)
    assert json.loads(out.rows) == [{"n": 200}]
    s.server.agentdb_queries.max_rows = 10
    err = call_error(s.stub.Cypher, pb.CypherRequest(query="MATCH (e:Event) RETURN e.i AS i"),
                     metadata=BEARER)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_rows=10" in err.details()


def test_expiry_dedupe_and_forget(start):
    s = start()
    first = store(s.stub, "retry uploads", 3, reward=1.0)
    resp = s.stub.StorePattern(pb.StorePatternRequest(task="retry", embedding=vec(3, 1e-4),
                                                      reward=0.0, dedupe=0.99), metadata=BEARER)
    assert resp.id == first and resp.pattern.uses == 2 and resp.pattern.reward == 0.5
    short = s.stub.StorePattern(pb.StorePatternRequest(task="short", embedding=vec(4), ttl=0.05),
                                metadata=BEARER)
    assert short.pattern.HasField("expires_at") and not resp.pattern.HasField("expires_at")
    err = call_error(s.stub.StorePattern, pb.StorePatternRequest(
        task="x", embedding=vec(5), expires_at=time.time() - 1), metadata=BEARER)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "past" in err.details()
    err = call_error(s.stub.StorePattern, pb.StorePatternRequest(
        task="x", embedding=vec(5), dedupe=2.0), metadata=BEARER)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "dedupe" in err.details()
    time.sleep(0.1)
    err = call_error(s.stub.GetPattern, pb.GetPatternRequest(id=short.id), metadata=BEARER)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    out = s.stub.Forget(pb.ForgetRequest(kinds=["patterns"]), metadata=BEARER)
    assert json.loads(out.removed) == {"patterns": [short.id]}
    out = s.stub.Forget(pb.ForgetRequest(reward_below=0.6), metadata=BEARER)
    assert json.loads(out.removed) == {"patterns": [first], "episodes": [], "skills": []}
    err = call_error(s.stub.Forget, pb.ForgetRequest(kinds=["memories"]), metadata=BEARER)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = call_error(s.stub.Forget, pb.ForgetRequest())
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
