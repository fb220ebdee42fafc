"""``agentdb serve --workers 2``: a real writer + read worker on one loopback port.

Each check opens new connections (each process listens with its own socket and the kernel
spreads connections over them), so both processes answer; answers of the read worker carry
``X-AgentDB-Worker``. No timing
assertions; every wait is bounded.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _child import free_port, spawned_server
from _requires import unavailable

if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "typer", "httpx")):
    unavailable("SERVER", "the server and cli extras are missing", module=True)

import agentdb  # noqa: E402

DIM = 16
KEY = "workers-test-key-1"


def _call(port: int, method: str, path: str, body: Any = None, key: str | None = KEY
          ) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["X-API-Key"] = key
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, (
            json.loads(data) if data else None)
    finally:
        conn.close()


def _vec(seed: int) -> list[float]:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32).tolist()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Any]]:
    path = tmp_path_factory.mktemp("workers") / "memory.db"
    db = agentdb.open(str(path), dim=DIM)
    db.store_patterns([{"task": f"t{i}", "embedding": _vec(i)} for i in range(200)])
    db.close()
    port = free_port()
    with spawned_server(["-m", "agentdb.cli", "serve", "--db", str(path), "--port", str(port),
                         "--workers", "2", "--rate-limit", "0", "--log-level", "warning"],
                        port, AGENTDB_API_KEYS=KEY) as proc:
        # both processes listen once the read worker answers a search
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st, headers, _ = _call(port, "POST", "/vectors/search", {"vector": _vec(0), "k": 1})
            if st == 200 and "x-agentdb-worker" in headers:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the read worker never answered")
        yield port, proc


def _search_everywhere(port: int, vector: list[float], k: int = 1, tries: int = 400
                       ) -> dict[str, list[int]]:
    """The answer of each process (writer: "0") to the same search, over new connections."""
    seen: dict[str, list[int]] = {}
    for attempt in range(tries):  # on a busy machine one process may take many in a row
        if attempt >= 30:
            time.sleep(0.02)
        st, headers, body = _call(port, "POST", "/vectors/search",
                                  {"vector": vector, "k": k, "ef": 256})
        assert st == 200, body
        seen[headers.get("x-agentdb-worker", "0")] = [h["id"] for h in body["results"]]
        if len(seen) == 2:
            break
    assert set(seen) == {"0", "1"}, "one of the processes never answered"
    return seen


def test_both_processes_answer_and_see_every_acknowledged_write(server):
    port, _ = server
    for i in range(15):  # read-your-writes, whichever process takes the write or the read
        v = _vec(1000 + i)
        st, _, body = _call(port, "POST", "/patterns/store",
                            {"task": f"new {i}", "embedding": v, "metadata": {"i": i}})
        assert st == 201, body
        rid = body["id"]
        for _ in range(4):
            st, _, hits = _call(port, "POST", "/vectors/search", {"vector": v, "k": 1})
            assert st == 200 and hits["results"][0]["id"] == rid
            assert hits["results"][0]["metadata"] == {"i": i}
        st, _, rec = _call(port, "GET", f"/patterns/{rid}")
        assert st == 200 and rec["task"] == f"new {i}"
    answers = _search_everywhere(port, _vec(1000), k=5)
    assert answers["0"] == answers["1"]
    # a delete reaches the read worker too
    v = _vec(2000)
    _, _, body = _call(port, "POST", "/patterns/store", {"task": "doomed", "embedding": v})
    doomed = body["id"]
    st, _, _ = _call(port, "DELETE", f"/patterns/{doomed}")
    assert st == 204
    answers = _search_everywhere(port, v, k=3)
    assert doomed not in answers["0"] and doomed not in answers["1"]
    for _ in range(6):
        st, _, _ = _call(port, "GET", f"/patterns/{doomed}")
        assert st == 404


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing")
def test_a_burst_of_connections_is_spread_over_both_processes(server):
    """Each process listens with a socket of its own (SO_REUSEPORT): 32 connections opened at
    once are spread over both processes, which keep answering on their connections."""
    port, _ = server
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(32)]
    try:
        for c in conns:
            c.connect()
        who: list[str] = []
        for rounds in range(2):  # keep-alive: the same process answers a connection again
            for i, c in enumerate(conns):
                c.request("POST", "/vectors/search", json.dumps({"vector": _vec(5), "k": 1}),
                          {"Content-Type": "application/json", "X-API-Key": KEY})
                resp = c.getresponse()
                assert resp.status == 200, resp.read()
                resp.read()
                w = resp.getheader("X-AgentDB-Worker", "0")
                if rounds == 0:
                    who.append(w)
                else:
                    assert w == who[i]
        # a fair hash split of 32 puts 16 +- 2.8 on each; one side under 4 is a 1e-5 event
        assert min(who.count("0"), who.count("1")) >= 4, who
    finally:
        for c in conns:
            c.close()


def test_namespaces_go_to_the_writer(server):
    port, _ = server
    v = _vec(4000)
    st, _, body = _call(port, "POST", "/ns/alice/patterns/store",
                        {"task": "alice's", "embedding": v})
    assert st == 201, body
    for _ in range(8):  # whichever process takes it, the namespace's answer is the writer's
        st, headers, hits = _call(port, "POST", "/ns/alice/vectors/search",
                                  {"vector": v, "k": 1})
        assert st == 200 and hits["results"][0]["id"] == body["id"]
        assert "x-agentdb-worker" not in headers
    st, _, hits = _call(port, "POST", "/vectors/search", {"vector": v, "k": 1})
    assert st == 200 and hits["results"][0]["similarity"] < 0.999  # not in the default


def test_auth_and_errors_on_the_read_worker(server):
    port, _ = server
    codes = set()
    workers = set()
    for attempt in range(400):  # on a busy machine one process may take many in a row
        if attempt >= 30:
            time.sleep(0.02)
        st, headers, body = _call(port, "POST", "/vectors/search", {"vector": _vec(1), "k": 1},
                                  key=None)
        codes.add(st)
        workers.add(headers.get("x-agentdb-worker", "0"))
        st2, _, body2 = _call(port, "POST", "/vectors/search", {"vector": [1.0, 2.0], "k": 1})
        assert st2 == 422 and "16" in body2["error"]["message"]
        if len(workers) == 2:
            break
    # 429 once a process has seen a burst of failed authentications from this address
    assert 401 in codes and codes <= {401, 429} and workers == {"0", "1"}


def test_the_change_feed_and_stats_are_forwarded(server):
    port, _ = server
    for _ in range(10):  # /stats is the writer's, through either process
        st, headers, body = _call(port, "GET", "/stats")
        assert st == 200 and body["patterns"] >= 200
        assert "x-agentdb-worker" not in headers
    got: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/patterns/stream", headers={"X-API-Key": KEY})
            resp = conn.getresponse()
            ready.set()
            for raw in resp:
                line = raw.decode().strip()
                if line.startswith("data:") and "streamed" in line:
                    got.append(line)
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=listen, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    assert ready.wait(30)
    time.sleep(0.5)
    _call(port, "POST", "/patterns/store", {"task": "streamed", "embedding": _vec(3000)})
    for t in threads:
        t.join(30)
    assert len(got) == 4


def _one_pattern_workers(tmp_path: Any, port: int) -> list[str]:
    """The arguments of ``agentdb serve --workers 2 --no-auth`` over a new one-pattern store."""
    path = tmp_path / "m.db"
    db = agentdb.open(str(path), dim=DIM)
    db.store_pattern("one", embedding=_vec(1))
    db.close()
    return ["-m", "agentdb.cli", "serve", "--db", str(path), "--port", str(port),
            "--workers", "2", "--no-auth", "--log-level", "warning"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing")
def test_ready_means_every_process_listens(tmp_path):
    """The first ``/ready`` answer comes after the read worker listens: connections opened
    right then reach both processes (before, they all went to the writer)."""
    port = free_port()
    with spawned_server(_one_pattern_workers(tmp_path, port), port):
        deadline = time.monotonic() + 60
        while _call(port, "GET", "/ready", key=None)[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        who = {_call(port, "POST", "/vectors/search", {"vector": _vec(1), "k": 1},
                     key=None)[1].get("x-agentdb-worker", "0") for _ in range(24)}
        assert who == {"0", "1"}  # 24 connections all hashed to one socket: p = 1e-7


def test_a_killed_read_worker_is_replaced_and_sigterm_stops_all(tmp_path):
    psutil = pytest.importorskip("psutil")
    port = free_port()
    with spawned_server(_one_pattern_workers(tmp_path, port), port) as proc:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while not parent.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = parent.children()
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            kids = [c for c in parent.children() if c.pid != child.pid
                    and c.status() != psutil.STATUS_ZOMBIE]
            if kids:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the read worker was not restarted")
        _search = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st, headers, body = _call(port, "POST", "/vectors/search",
                                      {"vector": _vec(1), "k": 1}, key=None)
            if "x-agentdb-worker" in headers:
                _search = body
                break
        assert _search is not None and _search["results"][0]["id"] >= 1
        replacement = kids[0]
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        assert proc.returncode == 0
        replacement.wait(20)  # the writer stopped its read worker


def test_workers_need_an_embedded_file_store():
    import subprocess
    import sys

    from _child import child_env

    out = subprocess.run([sys.executable, "-m", "agentdb.cli", "serve", "--db", ":memory:",
                          "--workers", "2", "--no-auth"], env=child_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--workers needs an embedded file store" in out.stderr
