"""The HTTP routes live in one module per group (``agentdb.server.routes``); the published
API -- its paths, their order and their tags -- is the contract clients and docs rely on."""

from __future__ import annotations

import agentdb
import pytest
from _requires import unavailable

try:
    from agentdb.server import routes
    from agentdb.server.app import create_app
except ImportError as exc:  # the server extra
    unavailable("SERVER", f"the server extra is missing ({exc})", module=True)

PATHS = [
    ("/health", ["get"]), ("/ready", ["get"]), ("/stats", ["get"]), ("/backup", ["post"]),
    ("/forget", ["post"]),
    ("/vectors/search", ["post"]), ("/vectors", ["post"]), ("/vectors/{id}", ["delete"]),
    ("/patterns/store", ["post"]), ("/patterns/search", ["post"]),
    ("/patterns/context", ["post"]), ("/patterns/stream", ["get"]),
    ("/patterns/{id}", ["delete", "get"]), ("/patterns", ["delete"]),
    ("/episodes/store", ["post"]), ("/episodes/search", ["post"]),
    ("/episodes/{id}", ["delete", "get"]),
    ("/skills/store", ["post"]), ("/skills/search", ["post"]), ("/skills/{id}", ["delete", "get"]),
    ("/feedback", ["post"]), ("/feedback/trajectory", ["post"]), ("/learning", ["get"]),
    ("/learning/enable", ["post"]), ("/learning/disable", ["post"]), ("/learning/reset", ["post"]),
    ("/learning/consolidate", ["post"]), ("/graph/cypher", ["post"]),
]


@pytest.fixture(scope="module")
def schema() -> dict:
    with agentdb.open(":memory:", dim=8) as db:
        return create_app(db, api_keys=["route-key-1"]).openapi()


def test_paths_and_their_order(schema: dict) -> None:
    assert [(p, sorted(ops)) for p, ops in schema["paths"].items()] == PATHS


def test_each_group_registers_its_own_tag(schema: dict) -> None:
    tags = {"service": "service", "vectors": "vectors", "patterns": "patterns",
            "episodes": "episodes", "skills": "skills", "learning": "learning", "graph": "graph"}
    assert [g.__name__.rsplit(".", 1)[-1] for g in routes.GROUPS] == list(tags)
    for path, ops in schema["paths"].items():
        for op in ops.values():
            assert len(op["tags"]) == 1 and op["tags"][0] in tags, path
            if path not in ("/health", "/ready"):
                assert op["security"] == [{"bearer": []}, {"apiKey": []}], path


def test_delete_patterns_by_filter_over_http() -> None:
    from agentdb.server.client import Client
    from fastapi.testclient import TestClient

    with agentdb.open(":memory:", dim=8) as db:
        for i in range(4):
            db.store_pattern(f"p{i}", session_id="s1" if i < 3 else "s2",
                             metadata={"lang": "py" if i % 2 else "go"})
        headers = {"Authorization": "Bearer route-key-1"}
        with TestClient(create_app(db, api_keys=["route-key-1"])) as c:
            r = c.delete("/patterns", params={"sessionId": "s1", "where": '{"lang": "py"}'},
                         headers=headers)
            assert r.status_code == 200 and r.json() == {"deleted": 1}
            assert c.delete("/patterns", headers=headers).status_code == 422  # no filter
            bad = c.delete("/patterns", params={"where": "{oops"}, headers=headers)
            assert bad.status_code == 422 and "query.where" in bad.json()["error"]["message"]
            assert c.delete("/patterns", params={"sessionId": "s1"}).status_code == 401
            r = c.delete("/patterns", params={"before": 4e9}, headers=headers)
            assert r.json() == {"deleted": 3}
        assert db.count() == 0
    assert "delete_patterns" in dir(Client)
