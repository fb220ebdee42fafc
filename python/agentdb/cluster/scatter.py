"""Scatter/gather over the shards of a :class:`~agentdb.cluster.db.ClusterDB`: one replica
per shard is asked (round-robin, suspects last), a failed or late replica is marked suspect
and the shard retried on another within the deadline, and a slow one is *hedged* (a second
replica asked while the first may still answer). Searches merge the shards' top-``k`` by
distance; graph expansion unions each owning shard's neighbours. A replica that reports a
stale ring makes the handle reload it from PostgreSQL and call once more (:meth:`Scatter.routed`).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import ray

from .replica import pack_search
from .shards import ClusterUnavailable, Shards

__all__ = ["Scatter"]

_SUSPECT_SECONDS = 3.0
_HEDGE_FACTOR = 8.0  # ask another replica after 8x the usual shard latency...
_MIN_HEDGE_SECONDS = 0.05  # ...but not before 50 ms


class _StaleRing(Exception):
    """Internal: a replica reported that this handle's ring is out of date."""


class Scatter:
    """Calls fanned out to one replica of every shard of ``shards``, within
    ``search_timeout`` seconds; ``ef_search`` is the default search ``ef``. ``suspect`` maps
    a replica's actor name to the monotonic time until which it is tried last."""

    def __init__(self, shards: Shards, search_timeout: float, ef_search: int) -> None:
        self.shards = shards
        self.search_timeout = float(search_timeout)
        self.ef_search = ef_search
        self.suspect: dict[str, float] = {}
        self._rr: dict[int, itertools.count[int]] = {}
        self._latency_ewma = 0.02  # seconds: running mean of one shard's search call

    def routed(self, call: Any) -> Any:
        """``call()`` routed by this handle's ring; when the ring turns out to be stale (a
        replica says so, or a shard it names is gone after ``remove_shard``), reload it from
        PostgreSQL and call once more."""
        try:
            return call()
        except _StaleRing:
            self.shards.reload_ring()
        except ClusterUnavailable:
            if not self.shards.reload_ring():
                raise
        return call()

    def _candidates(self, shard: int, handles: list[Any]) -> list[tuple[int, Any]]:
        """Replicas of a shard to try, round-robin, suspects last."""
        n = len(handles)
        start = next(self._rr.setdefault(shard, itertools.count())) % max(n, 1)
        order = [(r % n) for r in range(start, start + n)]
        now = time.monotonic()
        good = [r for r in order if self.suspect.get(self.shards.actor_name(shard, r), 0) <= now]
        bad = [r for r in order if r not in good]
        return [(r, handles[r]) for r in good + bad]

    def _mark_suspect(self, shard: int, replica: int) -> None:
        self.suspect[self.shards.actor_name(shard, replica)] = time.monotonic() + _SUSPECT_SECONDS

    def search(self, name: str, q: np.ndarray, k: int, ef: int | None,
               filters: dict[str, Any], min_seq: int) -> tuple[np.ndarray, np.ndarray]:
        """Ask one replica per shard (retrying / hedging on others); merged top-k."""
        ef = self.ef_search if ef is None else int(ef)
        ef = max(ef, k)
        ring, routing = self.shards.snapshot()
        ring_shards = list(ring.shards)
        results = self.fanout(
            routing, lambda _s, h, budget: h.search_packed.remote(pack_search(
                name, q, k, ef, filters, min_seq, budget, ring_shards)), min_seq)
        all_ids = np.concatenate([results[s][0] for s in routing]) if results else \
            np.zeros(0, np.int64)
        all_d = np.concatenate([results[s][1] for s in routing]) if results else \
            np.zeros(0, np.float32)
        order = np.lexsort((all_ids, all_d))
        seen: set[int] = set()
        out_i, out_d = [], []
        for j in order:  # dedupe: during a ring change a record may be in two shards
            i = int(all_ids[j])
            if i in seen:
                continue
            seen.add(i)
            out_i.append(i)
            out_d.append(float(all_d[j]))
            if len(out_i) == k:
                break
        return np.asarray(out_i, np.int64), np.asarray(out_d, np.float32)

    def expand(self, frontier: list[int], direction: str, types: list[str] | None,
               min_seq: int) -> list[int]:
        """One graph hop from ``frontier``: each owning shard expands its nodes (one replica
        per shard, with the same retry / hedging as search); the sorted union."""
        return self.routed(lambda: self._expand_once(frontier, direction, types, min_seq))

    def _expand_once(self, frontier: list[int], direction: str, types: list[str] | None,
                     min_seq: int) -> list[int]:
        ring, routing = self.shards.snapshot()
        owner = ring.shards_for(frontier)
        parts = {s: [n for n, o in zip(frontier, owner) if o == s] for s in routing}
        parts = {s: p for s, p in parts.items() if p}
        ring_shards = list(ring.shards)
        results = self.fanout(
            {s: routing[s] for s in parts},
            lambda s, h, budget: h.expand.remote(parts[s], direction, types, min_seq, budget,
                                                 ring_shards), min_seq)
        return sorted({n for res in results.values() for n in res})

    def fanout(self, routing: dict[int, list[Any]], call: Any, min_seq: int
               ) -> dict[int, Any]:
        """Run ``call(shard, handle, budget)`` on one replica of every shard in ``routing``,
        retrying on another replica after a failure and hedging after a slow answer, within
        ``search_timeout``; the results by shard."""
        deadline = time.monotonic() + self.search_timeout
        todo = {s: self._candidates(s, routing[s]) for s in routing}
        pending: dict[Any, tuple[int, int, float]] = {}  # ref -> (shard, replica, give_up_at)
        results: dict[int, Any] = {}
        errors: dict[int, list[str]] = {s: [] for s in routing}

        started: dict[Any, float] = {}

        def launch(s: int) -> bool:
            if not todo[s]:
                return False
            r, h = todo[s].pop(0)
            now = time.monotonic()
            left = max(0.05, deadline - now)
            budget = left / 2 if todo[s] else left  # keep time for another replica
            ref = call(s, h, budget)
            # hedge on another replica once this one is much slower than usual (a restarting
            # actor makes calls wait rather than fail), not only when its budget runs out
            patience = budget + 0.5
            if todo[s]:
                patience = min(patience, max(_MIN_HEDGE_SECONDS,
                                             _HEDGE_FACTOR * self._latency_ewma))
            pending[ref] = (s, r, now + patience)
            started[ref] = now
            return True

        for s in routing:
            if not launch(s):
                raise ClusterUnavailable(f"shard {s} has no replicas")
        while any(s not in results for s in routing):
            now = time.monotonic()
            if now > deadline:
                missing = [s for s in routing if s not in results]
                raise ClusterUnavailable(
                    f"cluster call timed out after {self.search_timeout:g}s waiting for shards "
                    f"{missing} (min_seq={min_seq}); errors: "
                    f"{ {s: errors[s] for s in missing} }")
            refs = list(pending)
            if not refs:  # every replica of some shard failed
                missing = [s for s in routing if s not in results]
                raise ClusterUnavailable(f"no replica of shards {missing} could answer: "
                                         f"{ {s: errors[s] for s in missing} }")
            wait_for = min(deadline, min(g for _, _, g in pending.values())) - now
            done, _ = ray.wait(refs, num_returns=1, timeout=max(0.01, wait_for))
            for ref in done:
                s, r, _ = pending.pop(ref)
                if s in results:
                    continue  # a hedged duplicate
                try:
                    results[s] = ray.get(ref)
                    took = time.monotonic() - started.get(ref, time.monotonic())
                    self._latency_ewma += 0.1 * (took - self._latency_ewma)
                except Exception as exc:
                    cause = getattr(exc, "cause", None) or exc
                    if type(cause).__name__ == "StaleRing":
                        raise _StaleRing(str(cause)) from None
                    errors[s].append(f"replica {r}: {type(cause).__name__}: "
                                     f"{str(cause).splitlines()[0][:200] if str(cause) else ''}")
                    self._mark_suspect(s, r)
                    if not any(ps == s for ps, _, _ in pending.values()):
                        launch(s)
            now = time.monotonic()
            for ref, (s, r, give_up) in list(pending.items()):
                if s in results:
                    pending.pop(ref)
                elif now > give_up and ref in pending:
                    # slow replica: keep waiting for it but hedge on another one
                    pending[ref] = (s, r, deadline)
                    self._mark_suspect(s, r)
                    errors[s].append(f"replica {r}: no answer in time")
                    launch(s)
        return results

