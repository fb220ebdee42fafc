"""The seed system's HTTP contract, as its users' code calls it: its Python client and curl
examples copied verbatim from its documents (only the address substituted), more calls with
its request fields and answer keys, against a real ``agentdb serve`` on loopback (auth off),
configured through the seed's environment variables.

Skipped without the server/cli extras unless ``AGENTDB_REQUIRE_SERVER=1``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from _child import child_env, free_port, spawned_server
from _requires import unavailable
from agentdb.server.auth import load_keys

if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "typer")):
    unavailable("SERVER", "the server and cli extras are missing", module=True)

DIM = 384  # the store's default, as the seed's examples assume


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    db = tmp_path_factory.mktemp("seed") / "memory.db"
    with spawned_server(["-m", "agentdb.cli", "serve", "--db", str(db), "--port", str(port),
                         "--no-auth", "--rate-limit", "0"], port,
                        CORS_ORIGIN="http://app.example.test"):
        yield f"http://127.0.0.1:{port}"


# The seed's documents, verbatim (its HTTP-server plan: "Client Examples" and "Testing"); only
# ``http://localhost:5432`` is replaced by the test server's address.
SEED_PYTHON_CLIENT = """\
# Python client
import requests

response = requests.post('http://localhost:5432/patterns/search', json={
    'task': 'implement authentication',
    'k': 5,
    'minReward': 0.8
})

patterns = response.json()['patterns']
for pattern in patterns:
    print(f"Task: {pattern['task']}, Reward: {pattern['reward']}")
"""

SEED_CURL_EXAMPLES = [
    """\
# cURL
curl -X POST http://localhost:5432/patterns/search \\
  -H "Content-Type: application/json" \\
  -H "X-API-Key: your-api-key" \\
  -d '{"task": "implement authentication", "k": 5}'
""",
    """\
# Test endpoints
curl -X POST http://localhost:5432/patterns/search \\
  -H "Content-Type: application/json" \\
  -d '{"task": "test", "k": 5}'
""",
]


def test_seed_examples_verbatim(url: str) -> None:
    """The seed's Python client and curl examples, run unchanged but for the address."""
    pytest.importorskip("requests")
    import requests

    for task, reward in (("implement authentication", 0.9), ("implement logging", 0.3),
                         ("test", 0.5)):
        assert requests.post(url + "/patterns/store",
                             json={"task": task, "reward": reward}).json()["success"] is True
    script = SEED_PYTHON_CLIENT.replace("http://localhost:5432", url)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=child_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["Task: implement authentication, Reward: 0.9"]
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    for example, first in zip(SEED_CURL_EXAMPLES, ("implement authentication", "test")):
        shell = example.replace("http://localhost:5432", url)
        res = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        body = json.loads(res.stdout)
        assert body["patterns"][0]["task"] == first and len(body["patterns"]) <= 5


def test_python_client_examples(url: str) -> None:
    requests = pytest.importorskip("requests")
    # store, as the contract's client does: the answer says success
    r = requests.post(url + '/patterns/store',
                      json={'task': 'parse ISO dates', 'reward': 0.9, 'success': True})
    assert r.status_code == 201 and r.json()['success'] is True
    requests.post(url + '/patterns/store', json={'task': 'resize images', 'reward': 0.2})
    # search, then read the flat patterns list
    patterns = requests.post(url + '/patterns/search',
                             json={'task': 'parse ISO dates', 'k': 5,
                                   'minReward': 0.8}).json()['patterns']
    pattern = patterns[0]
    assert pattern['task'] == 'parse ISO dates' and pattern['reward'] == 0.9
    assert 0.99 <= pattern['similarity'] <= 1.0
    assert all(p['reward'] >= 0.8 for p in patterns) and len(patterns) <= 5
    # the raw vector search takes "query" (and k defaults to 5)
    vec = [0.0] * DIM
    vec[0] = 1.0
    r = requests.post(url + '/vectors/search', json={'query': vec, 'k': 5, 'threshold': 0.5})
    assert r.status_code == 200 and isinstance(r.json()['results'], list)
    r = requests.post(url + '/vectors/search', json={'query': vec})
    assert r.status_code == 200
    both = requests.post(url + '/vectors/search', json={'query': vec, 'vector': vec})
    assert both.status_code == 422


def test_curl_examples(url: str) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")

    def curl(*args: str) -> dict:
        out = subprocess.run(["curl", "-s", "--max-time", "20", *args], check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return json.loads(out)

    stored = curl("-X", "POST", url + "/patterns/store", "-H", "Content-Type: application/json",
                  "-d", '{"task": "retry failed HTTP calls", "reward": 0.95, "success": true}')
    assert stored["success"] is True
    found = curl("-X", "POST", url + "/patterns/search", "-H", "Content-Type: application/json",
                 "-d", '{"task": "retry HTTP calls", "k": 5}')
    assert found["patterns"][0]["task"] == "retry failed HTTP calls"
    assert curl(url + "/health")["status"] == "ok"


def test_seed_environment_variables(url: str) -> None:
    requests = pytest.importorskip("requests")
    pre = requests.options(url + "/patterns/search", headers={
        "Origin": "http://app.example.test", "Access-Control-Request-Method": "POST"})
    assert pre.headers.get("access-control-allow-origin") == "http://app.example.test"
    assert load_keys({"API_KEYS": "seed-key-1234"}) == ["seed-key-1234"]
    assert load_keys({"AGENTDB_API_KEYS": "ours-key-123", "API_KEYS": "seed-key-1234"}) == \
        ["ours-key-123"]


def test_stores_answer_success_everywhere(url: str) -> None:
    requests = pytest.importorskip("requests")
    ep = requests.post(url + "/episodes/store", json={"task": "deploy", "critique": "slow"})
    sk = requests.post(url + "/skills/store", json={"name": "retry_http"})
    assert ep.json()["success"] is True and sk.json()["success"] is True


def test_serve_reload_serves_and_stops(tmp_path) -> None:
    """``agentdb serve --reload`` (the seed's ``server:dev``): a reloading server that answers,
    and stops with its workers when its process group is terminated."""
    import os
    import signal

    requests = pytest.importorskip("requests")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentdb.cli", "serve", "--db", str(tmp_path / "r.db"),
         "--port", str(port), "--no-auth", "--reload"],
        env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve --reload exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                r = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve --reload did not answer")
            time.sleep(0.2)
        stored = requests.post(f"http://127.0.0.1:{port}/patterns/store",
                               json={"task": "reloaded"}, timeout=10)
        assert stored.status_code == 201 and stored.json()["success"] is True
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
