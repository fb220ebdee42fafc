"""``agentdb.AsyncClient`` (httpx): the same methods, results, retries and errors as the sync
``Client``, against a real server on 127.0.0.1 (and httpx's MockTransport for retry paths).

Skipped without httpx / the server extra unless ``AGENTDB_REQUIRE_SERVER=1``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
from collections.abc import Iterator
from typing import Any

import agentdb
import numpy as np
import pytest
from _requires import unavailable
from agentdb.errors import NotFoundError, UnauthorizedError
from agentdb.server.client import Client, ClientError

if importlib.util.find_spec("httpx") is None:
    unavailable("SERVER", "httpx (the 'client' extra) is missing", module=True)

from agentdb.server.async_client import AsyncClient  # noqa: E402

KEY = "async-key-1234"
DIM = 16
TIMEOUT = 60


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def _vec(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def test_same_public_methods_as_the_sync_client() -> None:
    public = {n for n in dir(Client) if not n.startswith("_")}
    assert public <= {n for n in dir(AsyncClient) if not n.startswith("_")}
    for name in public - {"close"}:
        sync_sig = inspect.signature(getattr(Client, name))
        async_sig = inspect.signature(getattr(AsyncClient, name))
        assert list(sync_sig.parameters) == list(async_sig.parameters), name
    assert inspect.iscoroutinefunction(AsyncClient.store_pattern)
    assert agentdb.AsyncClient is AsyncClient


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Any]]:
    try:
        from agentdb.server.app import create_app
        from test_client import _Running
    except ImportError as exc:
        unavailable("SERVER", f"the server extra is missing ({exc})")
    db = agentdb.open(str(tmp_path_factory.mktemp("aclient") / "m.db"), dim=DIM)
    running = _Running(create_app(db, api_keys=[KEY], rate_limit_per_minute=0,
                                  heartbeat_seconds=0.2))
    yield running.url, db
    running.stop()
    db.close()


def test_round_trip_every_family(served) -> None:
    url, db = served

    async def main() -> None:
        async with AsyncClient(url, api_key=KEY, retries=0) as c:
            assert (await c.health())["status"] == "ok"
            assert (await c.ready())["status"] == "ready"
            pid = await c.store_pattern("parse ISO dates", embedding=_vec(1), reward=0.9,
                                        success=True, metadata={"lang": "py"})
            assert (await c.get_pattern(pid))["task"] == "parse ISO dates"
            hits = await c.search_patterns(_vec(1), k=1, where={"lang": "py"})
            assert hits[0]["id"] == pid
            fb = await c.feedback(_vec(1), pid, 1.0)
            assert isinstance(fb, dict)
            eid = await c.store_episode("deploy", embedding=_vec(2), success=False,
                                        critique="run migrations first")
            assert (await c.search_episodes(_vec(2), k=1))[0]["id"] == eid
            sid = await c.store_skill("retry_http", "retry with backoff", embedding=_vec(3))
            assert (await c.get_skill(sid))["name"] == "retry_http"
            ids = await c.upsert_vectors([{"vector": _vec(4)}, {"vector": _vec(5)}])
            assert len(ids) == 2 and (await c.search_vectors(_vec(4), k=1))[0]["id"] == ids[0]
            rows = await c.cypher("RETURN $x AS x", x=5)
            assert rows == [{"x": 5}]
            assert (await c.stats())["patterns"] >= 3
            tmp = await c.store_pattern("temporary", embedding=_vec(9), session_id="tmp")
            assert await c.delete_patterns(session_id="tmp") == 1
            with pytest.raises(NotFoundError):
                await c.get_pattern(tmp)
            await c.delete_pattern(pid)
            with pytest.raises(NotFoundError) as info:
                await c.get_pattern(pid)
            assert isinstance(info.value, ClientError) and info.value.status == 404
        async with AsyncClient(url, api_key="wrong-key-000", retries=0) as bad:
            with pytest.raises(UnauthorizedError):
                await bad.stats()

    run(main())


def test_stream_events(served) -> None:
    url, db = served

    async def main() -> dict[str, Any]:
        async with AsyncClient(url, api_key=KEY, retries=2) as c:
            events = c.stream()
            task = asyncio.ensure_future(events.__anext__())
            for i in range(200):  # the subscription starts asynchronously
                await c.store_pattern("streamed", embedding=_vec(100 + i))
                done, _ = await asyncio.wait({task}, timeout=0.2)
                if done:
                    break
            ev = await asyncio.wait_for(task, 20)
            await events.aclose()
            return ev

    ev = run(main())
    assert ev["event"] == "pattern:stored" and isinstance(ev["id"], int)


def test_retries_and_transport_errors() -> None:
    import httpx

    answers = [httpx.Response(503, headers={"Retry-After": "0"}),
               httpx.Response(200, json={"status": "ok"})]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization", ""))
        return answers.pop(0)

    async def main() -> None:
        c = AsyncClient("http://127.0.0.1:9", api_key=KEY, retries=1,
                        transport=httpx.MockTransport(handler))
        slept: list[float] = []

        async def sleep(s: float) -> None:
            slept.append(s)

        c._sleep = sleep
        assert (await c.health()) == {"status": "ok"}
        assert slept == [0.0] and seen == [f"Bearer {KEY}"] * 2
        answers.append(httpx.Response(503, json={"error": {"code": "unavailable",
                                                           "message": "busy"}}))
        answers.append(httpx.Response(503, json={"error": {"code": "unavailable",
                                                           "message": "busy"}}))
        with pytest.raises(ClientError) as info:
            await c.health()
        assert info.value.status == 503 and info.value.code == "unavailable"
        await c.aclose()

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        c = AsyncClient("http://127.0.0.1:9", retries=2, transport=httpx.MockTransport(refuse))
        c._sleep = sleep
        with pytest.raises(ClientError) as info:
            await c.store_pattern("x", embedding=[1.0] * DIM)  # POST: not resent
        assert info.value.code == "connection_error"
        slept.clear()
        with pytest.raises(ClientError):
            await c.stats()  # GET: retried twice first
        assert len(slept) == 2
        await c.aclose()

        def slow(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("slow", request=request)

        c = AsyncClient("http://127.0.0.1:9", transport=httpx.MockTransport(slow), timeout=0.5)
        with pytest.raises(ClientError) as info:
            await c.stats()
        assert info.value.code == "timeout"
        await c.aclose()

    run(main())


def test_bad_arguments_fail_before_sending() -> None:
    with pytest.raises(ValueError):
        AsyncClient("ftp://x")
    with pytest.raises(ValueError):
        AsyncClient("http://127.0.0.1:9", retries=-1)

    async def main() -> None:
        async with AsyncClient("http://127.0.0.1:9") as c:
            with pytest.raises(TypeError):
                await c.upsert_vectors([{"no": "vector"}])
            with pytest.raises(TypeError):
                await c.search_vectors("not a vector")

    run(main())
