"""agentdb.Client (python/agentdb/client.py) against the real HTTP server and small fakes.

* Fake servers (``http.server`` from the standard library, always run): retries on 503 with
  ``Retry-After``, a GET retried after a dropped connection while a POST is not, SSE parsing
  (comments, multi-line data) and reconnection with ``Last-Event-ID``.
* The real server (``agentdb.server.app.create_app`` under uvicorn in a background thread on
  127.0.0.1, a fresh 16-d store, API key ``test-key-123``): every client method, the error
  mapping (404, 401, 409, 422, 400), the rate limit (429 + ``Retry-After``) and the change feed
  (live events, resuming with ``last_event_id``, reconnecting after a server restart).
  Skipped when the ``server`` extra (fastapi, uvicorn) is missing, unless
  ``AGENTDB_REQUIRE_SERVER=1``, which turns the skip into a failure.

No assertion depends on timing; waits are bounded loops with generous deadlines.
"""

from __future__ import annotations

import http.server
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import agentdb
import numpy as np
import pytest
from _requires import unavailable
from agentdb.server.client import Client, ClientError

KEY = "test-key-123"
DIM = 16


# --------------------------------------------------------------------------- helpers


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class _Recorder:
    """Stands in for ``time.sleep``: records the requested seconds, optionally sleeps."""

    def __init__(self, real: bool = False) -> None:
        self.calls: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.real:
            time.sleep(seconds)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _collect(it: Iterator[dict[str, Any]], out: queue.Queue, stop: threading.Event) -> None:
    """Consume a stream in a thread: events go to ``out``; an exception is put there too."""
    try:
        for ev in it:
            out.put(ev)
            if stop.is_set():
                break
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        out.put(exc)


def _next_event(q: queue.Queue, timeout: float = 20.0) -> dict[str, Any]:
    item = q.get(timeout=timeout)
    if isinstance(item, BaseException):
        raise item
    return item


# --------------------------------------------------------------------------- fake server


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    """Answers from ``server.script``: a callable ``(handler) -> None`` per request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _dispatch(self) -> None:
        srv = self.server
        srv.requests.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        srv.script(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_DELETE = _dispatch

    def send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def drop(self) -> None:
        """Close the connection without answering."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[_FakeHandler], None]], tuple[str, Any]]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(script: Callable[[_FakeHandler], None]) -> tuple[str, Any]:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHandler)
        srv.daemon_threads = True
        srv.script = script  # type: ignore[attr-defined]
        srv.requests = []  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_client_error_and_lazy_import() -> None:
    assert agentdb.Client is Client and agentdb.ClientError is ClientError
    err = ClientError(404, "not_found", "pattern 9 not found")
    assert isinstance(err, Exception)
    assert (err.status, err.code, err.message) == (404, "not_found", "pattern 9 not found")
    assert "not_found" in str(err)
    with pytest.raises(ValueError):
        Client("ftp://example")
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1", retries=-1)


def test_retry_after_503_then_success(fake) -> None:
    calls = {"n": 0}

    def script(h: _FakeHandler) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            h.send_json(503, {"error": {"code": "unavailable", "message": "busy"}},
                        {"Retry-After": "7"})
        else:
            h.send_json(200, {"dim": 16, "patterns": 0})

    url, srv = fake(script)
    c = Client(url, api_key=KEY, retries=3)
    c._sleep = rec = _Recorder()
    assert c.stats() == {"dim": 16, "patterns": 0}
    assert rec.calls == [7.0, 7.0]
    method, path, headers = srv.requests[-1]
    assert (method, path) == ("GET", "/stats")
    assert headers["Authorization"] == f"Bearer {KEY}"
    # every attempt went over the same keep-alive connection
    assert len(c._conns) == 1


def test_retry_after_is_capped_and_exhaustion_raises(fake) -> None:
    def script(h: _FakeHandler) -> None:
        h.send_json(429, {"error": {"code": "rate_limited", "message": "slow down"}},
                    {"Retry-After": "3600"})

    url, srv = fake(script)
    c = Client(url, api_key=KEY, retries=2)
    c._sleep = rec = _Recorder()
    with pytest.raises(ClientError) as info:
        c.store_pattern("x")
    assert (info.value.status, info.value.code, info.value.message) == (
        429, "rate_limited", "slow down")
    assert info.value.retry_after == 3600
    assert rec.calls == [30.0, 30.0]  # capped
    assert len(srv.requests) == 3

    c0 = Client(url, api_key=KEY, retries=0)
    c0._sleep = rec0 = _Recorder()
    with pytest.raises(ClientError) as info:
        c0.stats()
    assert info.value.status == 429 and rec0.calls == []


def test_non_json_and_framework_errors(fake) -> None:
    def script(h: _FakeHandler) -> None:
        if h.path.startswith("/patterns/"):
            h.send_json(422, {"detail": [{"loc": ["body", "k"], "msg": "bad k"}]})
        else:
            data = b"upstream exploded"
            h.send_response(500)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

    url, _ = fake(script)
    c = Client(url, retries=0)
    with pytest.raises(ClientError) as info:
        c.get_pattern(3)
    assert info.value.status == 422 and info.value.code == "validation_error"
    assert "bad k" in info.value.message
    with pytest.raises(ClientError) as info:
        c.stats()
    assert (info.value.status, info.value.code) == (500, "internal_error")
    assert info.value.message == "upstream exploded"


def test_dropped_connection_retried_for_get_only(fake) -> None:
    calls = {"n": 0}

    def script(h: _FakeHandler) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            h.drop()
        else:
            h.send_json(200, {"status": "ok"})

    url, _ = fake(script)
    c = Client(url, retries=2)
    c._sleep = _Recorder()
    assert c.health() == {"status": "ok"}
    assert calls["n"] == 2

    calls["n"] = 0
    c2 = Client(url, retries=2)
    c2._sleep = rec = _Recorder()
    with pytest.raises(ClientError) as info:
        c2.store_pattern("sent once")  # a fresh connection dropped: not resent
    assert info.value.status == 0 and info.value.code == "connection_error"
    assert calls["n"] == 1 and rec.calls == []


def test_connection_refused() -> None:
    sock = _free_socket()  # bound, never listening: connections are refused
    port = sock.getsockname()[1]
    try:
        c = Client(f"http://127.0.0.1:{port}", retries=2)
        c._sleep = rec = _Recorder()
        with pytest.raises(ClientError) as info:
            c.health()
        assert info.value.status == 0 and info.value.code == "connection_error"
        assert len(rec.calls) == 2  # GET: retried
        rec.calls.clear()
        with pytest.raises(ClientError):
            c.delete_pattern(1)
        assert rec.calls == []  # DELETE: not retried
    finally:
        sock.close()


def test_stream_parsing_and_reconnect_with_last_event_id(fake) -> None:
    def script(h: _FakeHandler) -> None:
        last = h.headers.get("Last-Event-ID")
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        if last is None:
            body = (": ping\n\nretry: 10\n\n"
                    "id: 1\nevent: pattern:stored\ndata: {\"id\": 11,\n"
                    "data:  \"task\": \"a\"}\n\n"
                    ": ping\n\n"
                    "id: 2\nevent: pattern:deleted\ndata: {\"id\": 11}\n\n"
                    "id: 3\nevent: pattern:stored\ndata: {\"id\": 99")  # cut mid-event
        else:
            body = (f"id: {int(last) + 1}\r\nevent: pattern:stored\r\n"
                    f"data: {{\"id\": 12}}\r\n\r\n")
        h.wfile.write(body.encode())
        h.wfile.flush()
        h.close_connection = True

    url, srv = fake(script)
    c = Client(url, api_key=KEY)
    c._sleep = rec = _Recorder()
    it = c.stream(kinds=["pattern", "episode"])
    events = [next(it) for _ in range(3)]
    it.close()
    assert events == [
        {"id": 1, "event": "pattern:stored", "data": {"id": 11, "task": "a"}},
        {"id": 2, "event": "pattern:deleted", "data": {"id": 11}},
        {"id": 3, "event": "pattern:stored", "data": {"id": 12}},
    ]
    (m1, p1, h1), (m2, p2, h2) = srv.requests[:2]
    assert p1 == "/patterns/stream?kinds=pattern%2Cepisode" and "Last-Event-ID" not in h1
    assert h2["Last-Event-ID"] == "2"  # the half-sent event 3 was never seen
    assert h1["Accept"] == "text/event-stream"
    assert rec.calls == [0.01]  # the server's retry: delay

    srv.requests.clear()
    it = c.stream(last_event_id=41, reconnect=False)
    assert list(it) == [{"id": 42, "event": "pattern:stored", "data": {"id": 12}}]
    assert srv.requests[0][2]["Last-Event-ID"] == "41"


def test_stream_error_status_raises(fake) -> None:
    def script(h: _FakeHandler) -> None:
        h.send_json(401, {"error": {"code": "unauthorized",
                                    "message": "missing or invalid API key"}})

    url, _ = fake(script)
    with pytest.raises(ClientError) as info:
        next(Client(url, api_key="wrong-key-000").stream())
    assert (info.value.status, info.value.code) == (401, "unauthorized")


def test_vectors_are_chunked(fake) -> None:
    seen: list[int] = []

    def script(h: _FakeHandler) -> None:
        doc = json.loads(h.body)
        seen.append(len(doc["vectors"]))
        h.send_json(200, {"ids": [v.get("id", 0) for v in doc["vectors"]]})

    url, _ = fake(script)
    items = [{"id": i, "vector": np.full(4, i, dtype=np.float32)} for i in range(2500)]
    assert Client(url).upsert_vectors(items) == list(range(2500))
    assert seen == [1000, 1000, 500]
    seen.clear()
    big = [{"id": i, "vector": np.random.default_rng(i).random(384)} for i in range(300)]
    Client(url).upsert_vectors(big)
    assert sum(seen) == 300 and len(seen) > 1  # kept under the 1 MiB body limit


# --------------------------------------------------------------------------- real server


def _server_deps() -> str | None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
        from agentdb.server.app import create_app  # noqa: F401
    except ImportError as exc:
        return f"the AgentDB server cannot be imported ({exc}); pip install 'agentdb[server]'"
    return None


class _Running:
    """One uvicorn server over ``app`` in a daemon thread on 127.0.0.1."""

    def __init__(self, app: Any, sock: socket.socket | None = None, **config: Any) -> None:
        import uvicorn

        self.sock = sock or _free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2,
                             **config)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture(scope="module")
def make_server(tmp_path_factory) -> Iterator[Callable[..., tuple[_Running, Any]]]:
    reason = _server_deps()
    if reason is not None:
        unavailable("SERVER", reason)
    from agentdb.server.app import create_app

    started: list[tuple[_Running, Any]] = []

    def make(uvicorn_config: dict[str, Any] | None = None,
             **app_kwargs: Any) -> tuple[_Running, Any]:
        path = tmp_path_factory.mktemp("client") / "memory.db"
        db = agentdb.open(str(path), dim=DIM)
        app_kwargs.setdefault("rate_limit_per_minute", 0)
        app = create_app(db, api_keys=[KEY], **app_kwargs)
        running = _Running(app, **(uvicorn_config or {}))
        started.append((running, db))
        return running, db

    yield make
    for running, db in started:
        running.stop()
        try:
            db.close()
        except Exception:  # noqa: BLE001 - the app may have closed it
            pass


@pytest.fixture(scope="module")
def served(make_server) -> tuple[_Running, Any]:
    return make_server(uvicorn_config={"timeout_keep_alive": 1})


@pytest.fixture
def client(served) -> Iterator[Client]:
    c = Client(served[0].url, api_key=KEY, retries=0)
    yield c
    c.close()


def test_health_ready_stats(served, client) -> None:
    assert client.health()["status"] == "ok"
    assert Client(served[0].url).health()["status"] == "ok"  # no key needed
    ready = client.ready()
    assert ready["status"] == "ready" and isinstance(ready["patterns"], int)
    stats = client.stats()
    assert stats["dim"] == DIM
    assert stats["patterns"] == served[1].count("patterns")


def test_error_answers_are_the_typed_errors(client) -> None:
    from agentdb.errors import InvalidArgumentError, NotFoundError

    with pytest.raises(NotFoundError) as info:  # the same except clause as embedded
        client.get_pattern(987_654)
    assert isinstance(info.value, ClientError) and isinstance(info.value, KeyError)
    assert (info.value.status, info.value.code) == (404, "not_found")
    with pytest.raises(InvalidArgumentError) as bad:
        client.store_pattern("t", embedding=[1.0, 2.0])  # wrong dimension
    assert bad.value.status == 422 and "expected" in bad.value.message


def test_patterns_roundtrip(served, client) -> None:
    db = served[1]
    v = _vec(1)
    pid = client.store_pattern("parse ISO dates", embedding=v, reward=0.9, success=True,
                               session_id="s-1", input="2024-01-02", output="date(2024,1,2)",
                               critique="fine", metadata={"lang": "py", "n": np.int64(3)})
    assert isinstance(pid, int)
    p = client.get_pattern(pid)
    assert p["id"] == pid and p["task"] == "parse ISO dates"
    assert p["reward"] == pytest.approx(0.9) and p["success"] is True
    assert p["sessionId"] == "s-1" and p["input"] == "2024-01-02"
    assert p["output"] == "date(2024,1,2)" and p["critique"] == "fine"
    assert p["metadata"] == {"lang": "py", "n": 3}
    assert "embedding" not in p or p["embedding"] is None
    assert db.get_pattern(pid).task == "parse ISO dates"  # really stored

    other = client.store_pattern("sort a list", embedding=_vec(2), reward=0.1,
                                 session_id="s-2", metadata={"lang": "go"})
    hits = client.search_patterns(v, k=2)
    assert hits[0]["id"] == pid and hits[0]["pattern"]["task"] == "parse ISO dates"
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert "distance" in hits[0]
    for kwargs in ({"min_reward": 0.5}, {"success_only": True}, {"session_id": "s-1"},
                   {"where": {"lang": "py"}}, {"threshold": 0.99}):
        ids = [h["id"] for h in client.search_patterns(v, k=10, **kwargs)]
        assert pid in ids and other not in ids, kwargs
    assert [h["id"] for h in client.search_patterns(v, k=1, ef=100)] == [pid]
    text_ids = [h["id"] for h in client.search_patterns("sort a list", k=10)]
    assert other in text_ids  # the server embeds the text

    client.delete_pattern(other)
    with pytest.raises(ClientError) as info:
        client.get_pattern(other)
    assert (info.value.status, info.value.code) == (404, "not_found")
    with pytest.raises(ClientError) as info:
        client.delete_pattern(other)
    assert info.value.status == 404


def test_episodes_and_skills(client) -> None:
    sid = client.store_skill("http_retry", "retry HTTP calls with backoff",
                             signature="retry(fn, n)", code="def retry(): ...",
                             metadata={"tier": 1})
    s = client.get_skill(sid)
    assert s["name"] == "http_retry" and s["signature"] == "retry(fn, n)"
    assert s["code"] == "def retry(): ..." and s["metadata"] == {"tier": 1}
    assert s["uses"] == 0
    with pytest.raises(ClientError) as info:
        client.store_skill("http_retry")
    assert (info.value.status, info.value.code) == (409, "conflict")
    assert client.search_skills("retry http calls", k=3)[0]["skill"]["name"] == "http_retry"
    assert client.search_skills("retry http calls", k=3, min_success_rate=0.5) == []

    v = _vec(10)
    fail = client.store_episode("deploy service", embedding=v, success=False,
                                critique="forgot migrations", latency_ms=12.5, tokens=300,
                                skills=["http_retry"], session_id="ep", metadata={"env": "prod"})
    ok = client.store_episode("deploy service", embedding=_vec(11), success=True, reward=1.0,
                              session_id="ep")
    e = client.get_episode(fail)
    assert e["critique"] == "forgot migrations" and e["latencyMs"] == pytest.approx(12.5)
    assert e["tokens"] == 300 and e["skills"] == ["http_retry"] and e["success"] is False
    assert client.get_skill(sid)["uses"] == 1

    failures = [h["id"] for h in client.search_episodes(v, k=5, success=False)]
    assert fail in failures and ok not in failures
    successes = [h["id"] for h in client.search_episodes(v, k=5, success=True)]
    assert ok in successes and fail not in successes
    both = client.search_episodes("deploy service", k=5, session_id="ep")
    assert {h["id"] for h in both} == {fail, ok}
    assert both[0]["episode"]["task"] == "deploy service"
    assert [h["id"] for h in client.search_episodes(v, k=5, min_reward=0.5)] == [ok]

    client.delete_episode(ok)
    with pytest.raises(ClientError) as info:
        client.get_episode(ok)
    assert info.value.status == 404
    client.delete_skill(sid)
    with pytest.raises(ClientError) as info:
        client.get_skill(sid)
    assert info.value.status == 404


def test_vectors(served, client) -> None:
    db = served[1]
    before = db.count("patterns")
    items = [{"vector": _vec(100 + i), "metadata": {"i": i}} for i in range(3)]
    items.append({"vector": list(map(float, _vec(103))), "task": "named vector"})
    ids = client.upsert_vectors(items)
    assert len(ids) == 4 and len(set(ids)) == 4
    assert db.count("patterns") == before + 4
    assert client.get_pattern(ids[3])["task"] == "named vector"
    hits = client.search_vectors(_vec(101), k=3)
    assert hits[0]["id"] == ids[1] and hits[0]["metadata"] == {"i": 1}
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-4)

    # upsert an existing id: new vector and metadata, same id
    assert client.upsert_vectors([{"id": ids[0], "vector": _vec(999),
                                   "metadata": {"i": "moved"}}]) == [ids[0]]
    assert db.count("patterns") == before + 4
    top = client.search_vectors(_vec(999), k=1)[0]
    assert top["id"] == ids[0] and top["metadata"] == {"i": "moved"}
    assert client.search_vectors(_vec(101), k=10, where={"i": 1})[0]["id"] == ids[1]

    # more than one request's worth (1000 per request)
    many = client.upsert_vectors({"vector": v} for v in
                                 np.random.default_rng(5).standard_normal((1500, DIM)))
    assert len(set(many)) == 1500 and db.count("patterns") == before + 1504

    client.delete_vector(ids[2])
    assert ids[2] not in [h["id"] for h in client.search_vectors(_vec(102), k=5)]
    with pytest.raises(ClientError) as info:
        client.delete_vector(ids[2])
    assert info.value.status == 404


def test_cypher(served, client) -> None:
    g = served[1].graph
    g.add_event(type="deploy", n=2)
    g.add_event(type="deploy", n=5)
    assert client.cypher("MATCH (e:Event) WHERE e.n >= $min RETURN e.type AS t, e.n AS n",
                         min=3) == [{"t": "deploy", "n": 5}]
    rows = client.cypher("MATCH (e:Event) RETURN count(e) AS c")
    assert rows == [{"c": 2}]
    with pytest.raises(ClientError) as info:
        client.cypher("MATCH (e RETURN e")
    assert info.value.status == 400 and info.value.code == "cypher_error"
    with pytest.raises(ClientError) as info:
        client.cypher("MATCH (e:Event) RETURN e.n AS n", max_rows=1, timeout=10)
    assert info.value.status == 400 and info.value.code == "query_limit"
    with pytest.raises(ClientError) as info:
        client.cypher("UNWIND range(1, 60) AS a UNWIND range(1, 60) AS b UNWIND range(1, 60) "
                      "AS c UNWIND range(1, 60) AS d RETURN count(*) AS n", timeout=0.2)
    assert info.value.status == 408 and info.value.code == "query_timeout"


def test_error_mapping(served, client) -> None:
    url = served[0].url
    with pytest.raises(ClientError) as info:
        client.get_pattern(10**9)
    assert (info.value.status, info.value.code) == (404, "not_found")
    for key in ("wrong-key-000", None):
        with pytest.raises(ClientError) as info:
            Client(url, api_key=key, retries=0).stats()
        assert (info.value.status, info.value.code) == (401, "unauthorized")
        assert info.value.message
    with pytest.raises(ClientError) as info:
        client.store_pattern("bad dim", embedding=[0.1, 0.2, 0.3])
    assert (info.value.status, info.value.code) == (422, "validation_error")
    with pytest.raises(ClientError) as info:
        client.search_vectors(np.ones(DIM + 1), k=3)
    assert info.value.status == 422
    with pytest.raises(ClientError) as info:
        client.search_vectors(_vec(1), k=0)
    assert (info.value.status, info.value.code) == (422, "validation_error")
    with pytest.raises(ClientError) as info:
        client.upsert_vectors([{"vector": [1.0] * 3}])
    assert info.value.status == 422
    with pytest.raises(ValueError):  # NaN never leaves the client
        client.search_vectors([float("nan")] * DIM)


def test_keep_alive_and_threads(served) -> None:
    c = Client(served[0].url, api_key=KEY, retries=0)
    for _ in range(5):
        c.stats()
    assert len(c._conns) == 1  # one connection reused
    time.sleep(1.5)  # past the server's keep-alive timeout (1 s): it closes the idle socket
    assert c.stats()["dim"] == DIM  # a fresh connection is made transparently
    assert len(c._conns) == 1

    pid = c.store_pattern("threaded", embedding=_vec(77))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert c.search_vectors(_vec(77), k=1)[0]["id"] == pid
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 1 <= len(c._conns) <= 5  # one per thread that ran a request
    c.close()
    assert c._conns == [] and c.health()["status"] == "ok"


def test_rate_limit_exhausted(make_server) -> None:
    running, _ = make_server(rate_limit_per_minute=2)
    c0 = Client(running.url, api_key=KEY, retries=0)
    c0.stats()
    c0.stats()
    with pytest.raises(ClientError) as info:
        c0.stats()
    assert (info.value.status, info.value.code) == (429, "rate_limited")
    assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 30

    c2 = Client(running.url, api_key=KEY, retries=2)
    c2._sleep = rec = _Recorder()  # do not really wait ~30 s
    with pytest.raises(ClientError) as info:
        c2.stats()
    assert info.value.status == 429
    assert len(rec.calls) == 2 and all(1 <= s <= 30 for s in rec.calls)


def test_rate_limit_retry_succeeds(make_server) -> None:
    running, _ = make_server(rate_limit_per_minute=60)  # one token a second
    drain = Client(running.url, api_key=KEY, retries=0)
    for _ in range(200):
        try:
            drain.stats()
        except ClientError as exc:
            assert exc.status == 429
            break
    else:
        pytest.fail("the rate limit never answered 429")
    c = Client(running.url, api_key=KEY, retries=3)
    c._sleep = rec = _Recorder(real=True)
    assert c.stats()["dim"] == DIM
    assert rec.calls and all(0 < s <= 30 for s in rec.calls)


# --------------------------------------------------------------------------- change feed


@pytest.fixture
def feed(make_server) -> tuple[_Running, Any, Client]:
    running, db = make_server(heartbeat_seconds=0.2, replay_buffer=1000)
    return running, db, Client(running.url, api_key=KEY, retries=3)


def _until(q: queue.Queue, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ev = _next_event(q)
        if pred(ev):
            return ev
    raise AssertionError("event not received")


def test_stream_live_event(feed) -> None:
    running, db, c = feed
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=_collect, args=(c.stream(), q, stop), daemon=True).start()
    # the subscription starts asynchronously: store until one of our patterns shows up
    stored: set[int] = set()
    got = None
    deadline = time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        stored.add(c.store_pattern("live event", embedding=_vec(len(stored)),
                                   metadata={"via": "http"}))
        try:
            while True:
                ev = q.get(timeout=0.5)
                if isinstance(ev, BaseException):
                    raise ev
                if ev["event"] == "pattern:stored" and ev["data"]["id"] in stored:
                    got = ev
                    break
        except queue.Empty:
            pass
    assert got is not None, "no pattern:stored event arrived"
    assert isinstance(got["id"], int) and got["data"]["task"] == "live event"
    assert got["data"]["metadata"] == {"via": "http"}
    # a write through the embedded API in the server's process is published too
    pid = db.store_pattern("embedded write", embedding=_vec(500))
    assert _until(q, lambda e: e["data"].get("id") == pid)["event"] == "pattern:stored"
    c.delete_pattern(pid)
    ev = _until(q, lambda e: e["event"] == "pattern:deleted")
    assert ev["data"] == {"id": pid}
    stop.set()
    c.store_pattern("wake the consumer", embedding=_vec(501))


def test_stream_resume_with_last_event_id(feed) -> None:
    _, db, c = feed
    a = c.store_pattern("a", embedding=_vec(1))
    b = c.store_pattern("b", embedding=_vec(2))
    cc = c.store_pattern("c", embedding=_vec(3))
    seen: dict[int, int] = {}  # pattern id -> event id
    it = c.stream(last_event_id=0)  # replays the buffer from the start
    for ev in it:
        assert ev["event"] != "reset"
        if ev["event"] == "pattern:stored":
            seen[ev["data"]["id"]] = ev["id"]
        if cc in seen:
            break
    it.close()  # drop the connection
    assert seen[a] < seen[b] < seen[cc]
    d = c.store_pattern("d", embedding=_vec(4))  # stored while nobody listens

    it = c.stream(last_event_id=seen[a])
    first = next(it)
    assert first["id"] == seen[a] + 1
    resumed = [first] + [next(it) for _ in range(2)]
    it.close()
    assert [e["data"]["id"] for e in resumed] == [b, cc, d]
    assert [e["id"] for e in resumed] == [seen[b], seen[cc], seen[cc] + 1]

    # kinds widens the feed
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    stop.set()  # stop after the first event
    threading.Thread(target=_collect, args=(c.stream(last_event_id=seen[cc] + 1,
                                                     kinds=["episode"]), q, stop),
                     daemon=True).start()
    eid = c.store_episode("an episode", embedding=_vec(5))
    ev = _next_event(q)
    assert ev["event"] == "episode:stored" and ev["data"]["id"] == eid


def test_stream_reset_when_behind_the_buffer(make_server) -> None:
    running, db = make_server(replay_buffer=2)
    c = Client(running.url, api_key=KEY)
    ids = [c.store_pattern(f"p{i}", embedding=_vec(i)) for i in range(4)]
    it = c.stream(last_event_id=0)
    events = [next(it) for _ in range(3)]
    it.close()
    assert events[0]["event"] == "reset"
    assert [e["data"]["id"] for e in events[1:]] == ids[2:]


def test_stream_reconnects_after_server_restart(make_server) -> None:
    running, db = make_server(heartbeat_seconds=0.2)
    app = running.server.config.app
    c = Client(running.url, api_key=KEY, retries=50)
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    it = c.stream(last_event_id=0)
    threading.Thread(target=_collect, args=(it, q, stop), daemon=True).start()
    p1 = c.store_pattern("before restart", embedding=_vec(1))
    ev1 = _until(q, lambda e: e["data"].get("id") == p1)

    port = running.port
    running.stop()  # drops the SSE connection; the client starts reconnecting
    p2 = db.store_pattern("while down", embedding=_vec(2))  # buffered by the app's hub
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    restarted = _Running(app, sock=sock)
    try:
        ev2 = _until(q, lambda e: e["data"].get("id") == p2)  # replayed after Last-Event-ID
        assert ev2["id"] > ev1["id"]
        stop.set()
        c.store_pattern("wake the consumer", embedding=_vec(3))
    finally:
        restarted.stop()


def test_closed_store_is_503(make_server) -> None:
    running, db = make_server()
    c = Client(running.url, api_key=KEY, retries=2)
    assert c.ready()["status"] == "ready"
    db.close()
    c._sleep = rec = _Recorder()
    with pytest.raises(ClientError) as info:
        c.ready()  # readiness is never retried
    assert (info.value.status, info.value.code) == (503, "unavailable")
    assert rec.calls == []
    with pytest.raises(ClientError) as info:
        c.stats()  # 503 is retried (no Retry-After: a short backoff), then raised
    assert info.value.status == 503
    assert len(rec.calls) == 2 and all(0 < s <= 30 for s in rec.calls)


def test_diverse_searches(client) -> None:
    """``diversity=`` on the three searches (``test_diversity.py`` has the engine checks)."""
    rng = np.random.default_rng(42)
    q = rng.standard_normal(DIM)
    q /= np.linalg.norm(q)
    dups = [q + 0.01 * rng.standard_normal(DIM) for _ in range(4)]
    others = [q + rng.standard_normal(DIM) for _ in range(4)]
    ids = [client.store_pattern(f"div{i}", embedding=v, session_id="diverse")
           for i, v in enumerate(dups + others)]
    for i, v in enumerate(dups + others):
        client.store_episode(f"div-e{i}", embedding=v, session_id="diverse")
        client.store_skill(f"div-s{i}", embedding=v)
    plain = client.search_patterns(q, k=4, session_id="diverse")
    assert {h["id"] for h in plain} == set(ids[:4])
    hits = client.search_patterns(q, k=4, session_id="diverse", diversity=0.7)
    assert len({h["id"] for h in hits} & set(ids[4:])) >= 2
    eps = client.search_episodes(q, k=4, session_id="diverse", diversity=0.7, candidates=8)
    assert len(eps) == 4
    assert len(client.search_skills(q, k=4, diversity=0.7)) == 4
    raw = client.search_vectors(q, k=4, session_id="diverse", diversity=0.7)
    assert len({h["id"] for h in raw} & set(ids[4:])) >= 2
    with pytest.raises(ClientError) as exc:
        client.search_patterns(q, k=4, diversity=0.7, rerank="attention")
    assert exc.value.status == 422


def test_expiry_dedupe_and_forget(client) -> None:
    case = {"case": "forget-test"}
    a = client.store_pattern("a", embedding=_vec(901).tolist(), reward=1.0, metadata=case)
    near = (_vec(901) + 1e-3).tolist()
    assert client.store_pattern("b", embedding=near, dedupe=0.99, metadata=case) == a
    assert client.get_pattern(a)["uses"] == 2
    e = client.store_episode("e", embedding=_vec(902).tolist(), ttl=0.1)
    s = client.store_skill("forget_me", embedding=_vec(903).tolist(), ttl=0.1)
    time.sleep(0.2)
    removed = client.forget()
    assert e in removed["episodes"] and s in removed["skills"]
    assert client.forget("patterns", reward_below=0.6, where=case) == {"patterns": [a]}
    with pytest.raises(ClientError) as err:
        client.forget("memories")
    assert err.value.status == 422
