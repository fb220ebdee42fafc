"""Concurrent ``/vectors/search`` requests answered as batch searches
(:mod:`agentdb.server.batching`, ``AgentDB.search_hits_many``): the same answers as one by
one, whatever mix of ``k`` / ``ef`` / ``threshold`` shares a batch; each request gets its own
error; a cancelled request leaves the others alone; filtered searches keep their own path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import agentdb
import numpy as np
import pytest
from agentdb.errors import InvalidArgumentError, StoreClosedError

try:
    import httpx
    from agentdb.server.app import create_app
    from agentdb.server.batching import SearchBatcher
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from _requires import unavailable

    unavailable("SERVER", f"server tests need the 'server' extra ({exc.name} is not installed)",
                module=True)

DIM = 16
N = 400


@pytest.fixture
def db() -> Iterator[Any]:
    d = agentdb.open(":memory:", dim=DIM)
    rng = np.random.default_rng(7)
    d.store_patterns([{"task": f"t{i}", "embedding": rng.standard_normal(DIM),
                       "metadata": {"n": i, "even": i % 2 == 0}, "reward": 0.5,
                       "success": i % 3 == 0} for i in range(N)])
    yield d
    d.close()


def _queries(m: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, DIM)).astype(np.float32)


def _cases(m: int) -> list[tuple[np.ndarray, int, int | None, float | None]]:
    """m searches with a mix of k, ef and threshold (several share each combination)."""
    qs = _queries(m)
    ks, efs, ths = [10, 3, 10, 25], [None, None, 80, None], [None, None, None, 0.1]
    return [(qs[n], ks[n % 4], efs[n % 4], ths[n % 4]) for n in range(m)]


def test_search_hits_many_equals_one_by_one(db: Any) -> None:
    qs = _queries(12)
    for k, ef, th in ((10, None, None), (5, 120, None), (10, None, 0.2), (N + 5, None, None)):
        many = db.search_hits_many(qs, k, ef=ef, threshold=th)
        assert many == [db.search_hits(q, k, ef=ef, threshold=th) for q in qs]
    assert len(many[0]) == N  # k beyond the store: everything, as search_hits


def test_search_hits_many_skips_expired_records(db: Any) -> None:
    qs = _queries(6)
    gone = db.store_pattern("soon gone", embedding=qs[0], ttl=0.5)
    assert db.search_hits_many(qs, 5)[0][0]["id"] == gone
    time.sleep(0.7)  # it expires (forget() has not run: the index still holds it)
    after = db.search_hits_many(qs, 5)
    assert after == [db.search_hits(q, 5) for q in qs]
    assert all(gone not in [h["id"] for h in hits] for hits in after)
    assert all(len(hits) == 5 for hits in after)


def test_search_hits_many_rejects_bad_input(db: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="2-D"):
        db.search_hits_many(_queries(1)[0], 3)
    with pytest.raises(InvalidArgumentError, match=f"2-D with {DIM} columns.*\\(2, {DIM + 1}\\)"):
        db.search_hits_many(np.ones((2, DIM + 1), np.float32), 3)
    with pytest.raises(InvalidArgumentError, match=f"{DIM} columns"):
        db.search_hits_many(np.ones((0, DIM + 1), np.float32), 3)  # empty, but wrong
    assert db.search_hits_many(np.ones((0, DIM), np.float32), 3) == []
    for ef in (0, -3, 2.5, True):
        with pytest.raises(InvalidArgumentError, match="ef must be an integer >= 1"):
            db.search_hits_many(_queries(2), 3, ef=ef)
    bad = _queries(3)
    bad[1, 4] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN"):
        db.search_hits_many(bad, 3)
    with pytest.raises(InvalidArgumentError, match="k"):
        db.search_hits_many(_queries(2), 0)


def test_concurrent_searches_share_batches_and_answer_as_alone(db: Any) -> None:
    cases = _cases(48)

    async def run() -> tuple[list[Any], SearchBatcher]:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            batcher = SearchBatcher(db, pool, lanes=2)
            got = await asyncio.gather(*(batcher.search(q, k, ef, th) for q, k, ef, th in cases))
        return got, batcher

    got, batcher = asyncio.run(run())
    assert got == [db.search_hits(q, k, ef=ef, threshold=th) for q, k, ef, th in cases]
    assert batcher.searches == len(cases)
    assert batcher.batches < len(cases)  # some batch carried several searches


class _Failing:
    """A store whose batch search fails, and whose single search fails for one query."""

    def __init__(self, db: Any, bad: np.ndarray) -> None:
        self.db, self.bad = db, bad

    def search_hits_many(self, *a: Any, **kw: Any) -> Any:
        raise RuntimeError("batch failed")

    def search_hits(self, q: Any, k: int, **kw: Any) -> Any:
        if np.array_equal(np.asarray(q), self.bad):
            raise InvalidArgumentError("this query fails")
        return self.db.search_hits(q, k, **kw)


def test_each_request_gets_its_own_error(db: Any) -> None:
    qs = _queries(10)

    async def run() -> list[Any]:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            batcher = SearchBatcher(_Failing(db, qs[3]), pool, lanes=1)
            return await asyncio.gather(*(batcher.search(q, 4) for q in qs),
                                        return_exceptions=True)

    got = asyncio.run(run())
    assert isinstance(got[3], InvalidArgumentError) and "this query fails" in str(got[3])
    for n, q in enumerate(qs):
        if n != 3:
            assert got[n] == db.search_hits(q, 4)


def test_a_cancelled_request_leaves_the_others_alone(db: Any) -> None:
    qs = _queries(8)

    async def run() -> list[Any]:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            batcher = SearchBatcher(db, pool, lanes=1)
            tasks = [asyncio.ensure_future(batcher.search(q, 4)) for q in qs]
            await asyncio.sleep(0)  # every task queued; the first one's batch is running
            tasks[5].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)

    got = asyncio.run(run())
    assert isinstance(got[5], asyncio.CancelledError)
    assert [got[n] for n in range(8) if n != 5] == [db.search_hits(qs[n], 4)
                                                   for n in range(8) if n != 5]


def test_http_searches_are_batched_and_filters_keep_their_path(db: Any) -> None:
    app = create_app(db, api_keys=None, rate_limit_per_minute=0, search_threads=2)
    cases = _cases(40)
    filtered = {"vector": _queries(1, seed=9)[0].tolist(), "k": 5, "where": {"even": True},
                "successOnly": True}

    async def run() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agentdb") as c:
            posts = [c.post("/vectors/search", json={
                "vector": q.tolist(), "k": k, **({"ef": ef} if ef else {}),
                **({"threshold": th} if th is not None else {})}) for q, k, ef, th in cases]
            return await asyncio.gather(*posts, c.post("/vectors/search", json=filtered))

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:2]
    for r, (q, k, ef, th) in zip(responses, cases):
        want = db.search_hits(q, k, ef=ef, threshold=th)
        got = r.json()["results"]
        assert [h["id"] for h in got] == [h["id"] for h in want]
        assert [h["metadata"] for h in got] == [h["metadata"] for h in want]
        assert np.allclose([h["distance"] for h in got], [h["distance"] for h in want])
    want = db.search_hits(np.asarray(filtered["vector"], np.float32), 5, where={"even": True},
                          success_only=True)
    assert [h["id"] for h in responses[-1].json()["results"]] == [h["id"] for h in want]
    assert all(h["metadata"]["even"] for h in responses[-1].json()["results"])
    batcher = app.state.batcher
    assert batcher.searches == len(cases)  # the filtered search went its own way
    assert batcher.batches < len(cases)


def test_a_stopped_pool_fails_the_request_instead_of_hanging(db: Any) -> None:
    async def run() -> None:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        batcher = SearchBatcher(db, pool, lanes=1)
        assert await batcher.search(_queries(1)[0], 3) == db.search_hits(_queries(1)[0], 3)
        pool.shutdown()
        for _ in range(2):  # and the next one too: nothing stays counted as running
            with pytest.raises(StoreClosedError, match="server is stopping"):
                await asyncio.wait_for(batcher.search(_queries(1)[0], 3), timeout=30)

    asyncio.run(run())
