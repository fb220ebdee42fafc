"""What the server must refuse, found by probing ``agentdb serve``: throttled key guessing,
strict types, one Unicode rule, one Last-Event-ID rule, no file paths in /stats, and the
probes that already passed (oversized bodies, NaN, injection-like filter keys, path traversal).
Each refusal leaves the store as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import agentdb
import pytest
from _requires import unavailable

try:
    from agentdb.server.app import create_app
    from fastapi.testclient import TestClient
except ImportError as exc:  # the server extra
    unavailable("SERVER", f"the server extra is missing ({exc})", module=True)

KEY = "probe-key-1234"
H = {"Authorization": f"Bearer {KEY}"}
DIM = 8


@pytest.fixture
def served() -> Iterator[tuple[Any, Any]]:
    with agentdb.open(":memory:", dim=DIM) as db:
        db.store_pattern("seed pattern", metadata={"lang": "py"})
        with TestClient(create_app(db, api_keys=[KEY], rate_limit_per_minute=0,
                                   max_body_bytes=4096, auth_failures_per_minute=30)) as c:
            yield c, db


def post(c: Any, path: str, raw: str) -> Any:
    return c.post(path, content=raw, headers={**H, "Content-Type": "application/json"})


def test_failed_authentication_is_throttled_per_address(served) -> None:
    c, _ = served
    codes = [c.get("/stats", headers={"Authorization": "Bearer wrong-key-000"}).status_code
             for _ in range(60)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) <= {401, 429} and 429 in codes
    limited = c.get("/stats", headers={"X-API-Key": "still-wrong-00"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    assert c.get("/stats", headers=H).status_code == 200  # a valid key is never slowed


@pytest.mark.parametrize("body", [
    {"vector": ["0.1"] * DIM},
    {"vector": [True] + [0.0] * (DIM - 1)},
    {"vector": [1.0] * DIM, "k": "5"},
    {"vector": [1.0] * DIM, "k": 5.5},
    {"vector": [1.0] * DIM, "successOnly": "yes"},
])
def test_numbers_are_numbers(served, body: dict) -> None:
    c, _ = served
    r = c.post("/vectors/search", json=body, headers=H)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("body.")
    assert c.post("/vectors/search", json={"vector": [1] * DIM, "k": 5},
                  headers=H).status_code == 200  # an int is a valid float


def test_one_unicode_rule(served) -> None:
    c, db = served
    for raw, field in (('{"task": "x", "metadata": {"\\ud800k": 1}}', "body.metadata"),
                       ('{"task": "x", "metadata": {"k": "\\udfff"}}', "body.metadata"),
                       ('{"task": "\\ud800"}', "body.task")):
        r = post(c, "/patterns/store", raw)
        assert r.status_code == 422, raw
        assert r.json()["error"]["message"].startswith(field), r.json()
        assert "codec" not in r.json()["error"]["message"]
    assert db.count() == 1


def test_one_last_event_id_rule(served) -> None:
    c, db = served
    huge = "99999999999999999999999"
    as_header = c.get("/patterns/stream", headers={**H, "Last-Event-ID": huge})
    as_query = c.get("/patterns/stream", params={"lastEventId": huge}, headers=H)
    assert as_header.status_code == as_query.status_code == 422
    hub = c.app.state.hub
    db.store_pattern("one more")  # an event, so the buffer is not empty
    assert hub.oldest_buffered is not None and hub.oldest_buffered <= hub.last_id


def test_stats_do_not_show_the_file_path(served) -> None:
    c, db = served
    stats = c.get("/stats", headers=H).json()
    assert "path" not in stats and stats["patterns"] == 1
    assert "path" in db.stats()  # the embedded API still tells its own user


def test_probes_that_already_passed(served) -> None:
    c, db = served
    big = json.dumps({"task": "x" * 10_000})
    assert post(c, "/patterns/store", big).status_code == 413
    assert post(c, "/patterns/store", '{"task": "x", "reward": NaN}').status_code in (400, 422)
    bad_key = c.post("/patterns/search", json={"task": "x", "where": {"a') OR 1=1 --": 1}},
                     headers=H)
    assert bad_key.status_code == 422 and "where" in bad_key.json()["error"]["message"]
    for path in ("/patterns/..%2f..%2fetc%2fpasswd", "/patterns/%2e%2e", "/patterns/-1"):
        assert c.get(path, headers=H).status_code in (404, 422), path
    assert db.count() == 1  # nothing was stored by any refused request


def test_200_concurrent_streams(tmp_path) -> None:
    """200 SSE clients on one real ``agentdb serve``: all connect, each receives the next
    store event, and plain requests still answer while they are open."""
    import asyncio
    import importlib.util

    from _child import free_port, spawned_server

    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("typer") is None:
        unavailable("SERVER", "the server and cli extras are missing")
    port = free_port()
    n = 200

    async def open_stream() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /patterns/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Accept: text/event-stream\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        return reader, writer

    async def until_event(reader: asyncio.StreamReader, task: str) -> bool:
        buf = b""
        while task.encode() not in buf:
            chunk = await reader.read(4096)
            if not chunk:
                return False
            buf += chunk
        return b"pattern:stored" in buf

    async def http(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = b"" if body is None else json.dumps(body).encode()
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(payload or b"{}")

    async def probe() -> None:
        streams = await asyncio.gather(*(open_stream() for _ in range(n)))
        try:
            status, body = await http("GET", "/health")
            assert status == 200 and body == {"status": "ok"}  # the loop is not starved
            status, _ = await http("POST", "/patterns/store",
                                   {"task": "seen by all two hundred"})
            assert status in (200, 201)
            got = await asyncio.wait_for(asyncio.gather(
                *(until_event(r, "seen by all two hundred") for r, _ in streams)), 60)
            assert all(got) and len(got) == n
        finally:
            for _, w in streams:
                w.close()

    with spawned_server(["-m", "agentdb.cli", "serve", "--db", str(tmp_path / "s.db"),
                         "--port", str(port), "--no-auth",
                         "--rate-limit", "0"], port):
        asyncio.run(probe())
