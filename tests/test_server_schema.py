"""Property-based tests of the HTTP API against its own OpenAPI schema (schemathesis 4.x).

For every operation in ``/openapi.json`` (except the endless SSE stream), schemathesis
generates valid and invalid requests (25 examples per operation and mode, derandomized, no
deadline) and sends them to the ASGI app with an API key. Whatever the input, the server must
never answer 5xx, and every answer with a documented status must match its documented schema
(so the OpenAPI document, and the models behind it, describe what the server really sends).

Skipped when the ``server`` extra or schemathesis is missing, unless
``AGENTDB_REQUIRE_SERVER=1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _requires import unavailable

try:
    import schemathesis
    from agentdb.server.app import create_app
    from hypothesis import HealthCheck, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance
except ImportError as exc:  # the server extra (or schemathesis) is not installed
    unavailable("SERVER", f"the server schema tests need the 'server' extra and schemathesis "
                f"({exc}): pip install 'agentdb[server]' schemathesis", module=True)

import agentdb

KEY = "schema-key-0001"
DIM = 16


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The app over a small seeded store (so ids 1..3 and searches find records)."""
    db = agentdb.open(str(tmp_path_factory.mktemp("schema") / "memory.db"), dim=DIM)
    rng = np.random.default_rng(0)
    for i in range(3):
        db.store_pattern(f"pattern {i}", embedding=rng.standard_normal(DIM),
                         metadata={"i": i})
        db.store_episode(f"episode {i}", embedding=rng.standard_normal(DIM))
        db.store_skill(f"skill_{i}", f"skill number {i}", embedding=rng.standard_normal(DIM))
    db.graph.query("CREATE (:Event {id: 'a'})-[:CAUSED_BY {confidence: 0.5}]->(:Event)")
    app = create_app(db, api_keys=[KEY], rate_limit_per_minute=0)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    db.close()


# The endless SSE stream is left out (each generated case would wait for schemathesis's read
# timeout); test_server_http.py covers it over a real socket.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/patterns/stream")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_documented_answers(case: Any) -> None:
    response = case.call(headers={"X-API-Key": KEY})
    case.validate_response(response, checks=[not_a_server_error,
                                             response_schema_conformance])
