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
    ("/health", ["get"]), ("/ready", ["get"]), ("/stats", ["get"]),
    ("/vectors/search", ["post"]), ("/vectors", ["post"]), ("/vectors/{id}", ["delete"]),
    ("/patterns/store", ["post"]), ("/patterns/search", ["post"]),
    ("/patterns/context", ["post"]), ("/patterns/stream", ["get"]),
    ("/patterns/{id}", ["delete", "get"]),
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
