"""Property-based tests of the HTTP API against its own OpenAPI schema (schemathesis 4.x).

For every operation in ``/openapi.json`` (except the endless SSE stream), schemathesis
generates valid and invalid requests (25 examples per operation and mode, derandomized, no
deadline) and sends them to the ASGI app with an API key. Whatever the input, the server must
never answer 5xx, and every answer with a documented status must match its documented schema
(so the OpenAPI document, and the models behind it, describe what the server really sends).

The schema is loaded at import time from an app over a seeded in-memory store, and each
operation is one ordinary pytest parameter (id ``"POST /vectors/search"``) whose Hypothesis test
draws from schemathesis's public ``operation.as_strategy()`` in both generation modes. Not
``schemathesis.pytest.from_fixture`` (it writes pytest's private ``Item._nodeid``, gone in
pytest 9.2) and not ``schema.parametrize()``: on pytest 9.2 its items all share one node id,
and pytest-xdist, which runs this suite on 2 workers, keeps only one of them.

Skipped when the ``server`` extra or schemathesis is missing, unless
``AGENTDB_REQUIRE_SERVER=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _requires import unavailable

try:
    import schemathesis
    from agentdb.server.app import create_app
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance
except ImportError as exc:  # the server extra (or schemathesis) is not installed
    unavailable("SERVER", f"the server schema tests need the 'server' extra and schemathesis "
                f"({exc}): pip install 'agentdb[server]' schemathesis", module=True)

import agentdb

KEY = "schema-key-0001"
DIM = 16


def _seeded_store() -> agentdb.AgentDB:
    """A small in-memory store, so ids 1..3 exist and searches find records."""
    db = agentdb.open(":memory:", dim=DIM)
    rng = np.random.default_rng(0)
    for i in range(3):
        db.store_pattern(f"pattern {i}", embedding=rng.standard_normal(DIM),
                         metadata={"i": i})
        db.store_episode(f"episode {i}", embedding=rng.standard_normal(DIM))
        db.store_skill(f"skill_{i}", f"skill number {i}", embedding=rng.standard_normal(DIM))
    db.graph.query("CREATE (:Event {id: 'a'})-[:CAUSED_BY {confidence: 0.5}]->(:Event)")
    return db


_DB = _seeded_store()
_APP = create_app(_DB, api_keys=[KEY], rate_limit_per_minute=0)

# The endless SSE stream is left out (each generated case would wait for schemathesis's read
# timeout); test_server_http.py covers it over a real socket.
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP).exclude(path="/patterns/stream")


@pytest.fixture(scope="module", autouse=True)
def _close_store() -> Iterator[None]:
    yield
    _DB.close()


OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_server_errors_and_documented_answers(operation: Any) -> None:
    cases = st.one_of([operation.as_strategy(generation_mode=mode) for mode in GenerationMode])

    @given(case=cases)
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def answers_as_documented(case: Any) -> None:
        response = case.call(headers={"X-API-Key": KEY})
        case.validate_response(response, checks=[not_a_server_error,
                                                 response_schema_conformance])

    answers_as_documented()


def test_every_operation_is_tested() -> None:
    labels = {op.label for op in OPERATIONS}
    assert len(OPERATIONS) >= 25 and len(labels) == len(OPERATIONS)
    assert {"POST /vectors/search", "POST /patterns/store", "POST /graph/cypher"} <= labels
