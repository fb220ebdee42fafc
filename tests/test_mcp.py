"""The MCP server, driven by the official SDK's own client: over stdio (a spawned
``python -m agentdb.mcp``), over streamable HTTP (a spawned server with an API key), and
in-process for the wider tool coverage.

Skipped without the ``mcp`` extra, unless ``AGENTDB_REQUIRE_INTEGRATIONS=1`` (CI).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import agentdb
import pytest
from _child import child_env, free_port, spawned_server
from _requires import unavailable

if importlib.util.find_spec("mcp") is None:
    unavailable("INTEGRATIONS", "the 'mcp' extra is missing", module=True)

from agentdb.mcp import build_server  # noqa: E402
from agentdb.mcp.tools import TOOL_NAMES  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

TIMEOUT = 60.0
API_KEY = "mcp-test-key-123"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def text(result: Any) -> str:
    return result.content[0].text


async def _round_trip(client: Any) -> None:
    listed = await client.list_tools()
    names = {t.name for t in listed.tools}
    assert set(TOOL_NAMES) <= names
    search = next(t for t in listed.tools if t.name == "pattern_search")
    assert search.input_schema["required"] == ["query"]
    assert search.input_schema["properties"]["k"]["type"] == "integer"
    stored = await client.call_tool("pattern_store", {"task": "parse ISO 8601 dates",
                                                      "reward": 0.9, "success": True})
    assert not stored.is_error and stored.structured_content["id"] == 1
    found = await client.call_tool("pattern_search", {"query": "parse ISO dates", "k": 3})
    assert not found.is_error
    hit = found.structured_content["results"][0]
    assert hit["id"] == 1 and hit["record"]["task"] == "parse ISO 8601 dates"
    bad = await client.call_tool("pattern_get", {"id": 12345})
    assert bad.is_error and "not_found" in text(bad)
    alive = await client.call_tool("db_stats", {})  # the server survived the error
    assert not alive.is_error and alive.structured_content["patterns"] == 1


def test_stdio_round_trip(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "agentdb.mcp", "--db", str(tmp_path / "m.db")],
        env=child_env(), cwd=str(tmp_path))

    async def main() -> None:
        async with Client(params, read_timeout_seconds=TIMEOUT) as client:
            await _round_trip(client)

    run(main())
    with agentdb.open(tmp_path / "m.db", readonly=True) as db:  # written to the file
        assert db.get_pattern(1).task == "parse ISO 8601 dates"


@pytest.fixture
def http_server(tmp_path: Path) -> Any:
    port = free_port()
    with spawned_server(["-m", "agentdb.mcp", "--db", str(tmp_path / "h.db"), "--http",
                         "--port", str(port)], port, AGENTDB_API_KEYS=API_KEY):
        yield f"http://127.0.0.1:{port}/mcp"


def test_http_round_trip_and_api_key(http_server: str) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> None:
        async with httpx2.AsyncClient(timeout=TIMEOUT) as raw:  # no key: refused
            resp = await raw.post(http_server, json={"jsonrpc": "2.0", "id": 1,
                                                     "method": "tools/list"})
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "unauthorized"
            resp = await raw.post(http_server, json={},
                                  headers={"Authorization": "Bearer wrong-key-000"})
            assert resp.status_code == 401
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"},
                                  timeout=TIMEOUT)
        async with http, Client(streamable_http_client(http_server, http_client=http),
                                read_timeout_seconds=TIMEOUT) as client:
            await _round_trip(client)

    run(main())


@pytest.fixture
def client_db() -> Any:
    with agentdb.open(":memory:", dim=64) as db:
        yield db


def _call(db: Any, calls: list[tuple[str, dict[str, Any]]], **server_kw: Any) -> list[Any]:
    async def main() -> list[Any]:
        out = []
        async with Client(build_server(db, **server_kw)) as client:
            for name, args in calls:
                out.append(await client.call_tool(name, args))
        return out

    return run(main())


def test_reflexion_loop(client_db: Any) -> None:
    stored, _, summary, found = _call(client_db, [
        ("reflexion_store", {"task": "deploy the web service", "success": False,
                             "reward": -0.5, "critique": "forgot to run migrations first"}),
        ("reflexion_store", {"task": "deploy the web service", "success": True,
                             "reward": 0.8}),
        ("reflexion_critique_summary", {"task": "deploy the web service"}),
        ("reflexion_retrieve", {"query": "deploy the service", "only_failures": True}),
    ])
    assert stored.structured_content["id"] == 1
    assert summary.structured_content["critiques"] == ["forgot to run migrations first"]
    assert [r["id"] for r in found.structured_content["results"]] == [1]


def test_skills_and_outcomes(client_db: Any) -> None:
    made, hit, first, second, missing = _call(client_db, [
        ("skill_create", {"name": "retry_http", "description": "retry HTTP calls with backoff"}),
        ("skill_search", {"query": "retry HTTP calls"}),
        ("skill_record_outcome", {"skill": "retry_http", "success": True}),
        ("skill_record_outcome", {"skill": "retry_http", "success": False}),
        ("skill_record_outcome", {"skill": "nope", "success": True}),
    ])
    assert made.structured_content["id"] == 1
    assert hit.structured_content["results"][0]["record"]["name"] == "retry_http"
    assert first.structured_content["uses"] == 1 and first.structured_content["success_rate"] == 1
    assert second.structured_content["uses"] == 2
    assert second.structured_content["success_rate"] == pytest.approx(0.5)
    assert missing.is_error and "not_found" in text(missing)


def test_causal_graph_and_cypher(client_db: Any) -> None:
    calls = [
        ("causal_add_event", {"name": "disk full", "type": "root_cause"}),
        ("causal_add_event", {"name": "writes fail", "type": "symptom"}),
        ("causal_add_event", {"name": "job crashed", "type": "outcome"}),
        ("causal_add_chain", {"events": [0, 1, 2], "confidence": 0.9}),
    ]
    a, b, c, chain = _call(client_db, calls)
    ids = [r.structured_content["id"] for r in (a, b, c)]
    if ids != [0, 1, 2]:  # node ids are the graph's; re-run the chain with the real ones
        (chain,) = _call(client_db, [("causal_add_chain", {"events": ids, "confidence": 0.9})])
    assert not chain.is_error, text(chain)
    paths, rows, refused, broken = _call(client_db, [
        ("causal_query_paths", {"outcome_id": ids[2]}),
        ("cypher_query", {"query": "MATCH (x:Event)-[:CAUSED_BY*1..3]->(y:Event {name: $n}) "
                                   "RETURN x.name AS cause ORDER BY cause",
                          "params": {"n": "job crashed"}}),
        ("cypher_query", {"query": "CREATE (n:Event {name: 'x'}) RETURN n"}),
        ("cypher_query", {"query": "MATCH (n RETURN n"}),
    ])
    assert paths.structured_content["count"] >= 1
    assert [r["cause"] for r in rows.structured_content["rows"]] == ["disk full", "writes fail"]
    assert refused.is_error and "--allow-writes" in text(refused)
    assert broken.is_error and "cypher" in text(broken).lower()
    (created,) = _call(client_db, [("cypher_query", {"query": "CREATE (n:Event {name: 'x'}) "
                                                              "RETURN n.name AS name"})],
                       allow_writes=True)
    assert created.structured_content["rows"] == [{"name": "x"}]
    (capped,) = _call(client_db, [("cypher_query", {"query": "MATCH (n) RETURN n.name AS n",
                                                    "max_rows": 1})])
    assert capped.is_error and "max_rows=1" in text(capped)


def test_updates_feedback_and_bad_arguments(client_db: Any) -> None:
    results = _call(client_db, [
        ("pattern_store", {"task": "parse dates"}),
        ("pattern_store", {"task": "resize images"}),
        ("pattern_update", {"id": 1, "reward": 1.0, "success": True}),
        ("learning_feedback", {"query": "parse dates", "pattern_id": 1, "reward": 1.0}),
        ("pattern_delete", {"id": 2}),
        ("pattern_store", {"task": "", "reward": 0.1}),
        ("pattern_store", {"task": "x", "reward": "high"}),
        ("pattern_store", {"task": "x", "reward": 5}),
        ("pattern_update", {"id": 1}),
        ("pattern_search", {"query": "dates", "k": 0}),
        ("no_such_tool", {}),
    ])
    assert results[2].structured_content["reward"] == 1.0
    assert not results[3].is_error and results[3].structured_content["ok"] is True
    assert results[4].structured_content == {"deleted": 2}
    for r in results[5:]:
        assert r.is_error, r
    assert "task" in text(results[5]) and "reward" in text(results[6])
    assert "nothing to update" in text(results[8])
    assert client_db.count() == 1  # nothing half-written by the refused calls


def test_resources(client_db: Any) -> None:
    client_db.store_pattern("parse dates")

    async def main() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        async with Client(build_server(client_db)) as client:
            listed = await client.list_resources()
            stats = await client.read_resource("agentdb://stats")
            recent = await client.read_resource("agentdb://patterns/recent")
            return ([str(r.uri) for r in listed.resources], json.loads(stats.contents[0].text),
                    json.loads(recent.contents[0].text))

    uris, stats, recent = run(main())
    assert "agentdb://stats" in uris and "agentdb://skills/recent" in uris
    assert stats["patterns"] == 1 and "path" not in stats
    assert recent["patterns"][0]["task"] == "parse dates"


def test_ttl_dedupe_and_forget_tools(client_db: Any) -> None:
    results = _call(client_db, [
        ("pattern_store", {"task": "retry uploads", "reward": 1.0}),
        ("pattern_store", {"task": "retry uploads", "reward": 0.0, "dedupe": 0.95}),
        ("pattern_store", {"task": "short-lived note", "ttl": 0.05}),
        ("pattern_store", {"task": "low reward", "reward": -1.0}),
        ("pattern_store", {"task": "x", "ttl": -1}),
        ("pattern_store", {"task": "x", "dedupe": 3}),
    ])
    first = results[0].structured_content["id"]
    assert results[1].structured_content["id"] == first
    assert client_db.get_pattern(first).uses == 2
    assert results[4].is_error and "ttl" in text(results[4])
    assert results[5].is_error and "dedupe" in text(results[5])
    time.sleep(0.1)
    short, low = (results[i].structured_content["id"] for i in (2, 3))
    (forgot,) = _call(client_db, [("memory_forget", {"kinds": ["patterns"],
                                                      "reward_below": 0.0})])
    assert forgot.structured_content["removed"] == {"patterns": sorted([short, low])}
    (bad,) = _call(client_db, [("memory_forget", {"kinds": ["memories"]})])
    assert bad.is_error and "unknown kind" in text(bad)
