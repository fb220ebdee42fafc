"""Scatter/gather over the shards of a :class:`~agentdb.cluster.db.ClusterDB`: one replica
per shard is asked (round-robin, suspects last), a failed or late replica is marked suspect
and the shard retried on another within the deadline, and a slow one is *hedged* (a second
replica asked while the first may still answer). Searches merge the shards' top-``k`` by
distance; graph expansion unions each owning shard's neighbours. A replica that reports a
stale ring makes the handle reload it from PostgreSQL and call once more (:meth:`Scatter.routed`).
"""

from __future__ import annotations

import itertools
import pickle
import threading
import time
from typing import Any

import numpy as np
import ray

from .fastpath import Client, FastPathError
from .replica import pack_batch, pack_search
from .shards import ClusterUnavailable, Shards

__all__ = ["Scatter"]

_SUSPECT_SECONDS = 3.0
_HEDGE_FACTOR = 8.0  # ask another replica after 8x the usual shard latency...
_MIN_HEDGE_SECONDS = 0.05  # ...but not before 50 ms


#: a search's answer: ids, cosine distances, and the hits' rows (None unless asked for)
Hits = tuple[np.ndarray, np.ndarray, "list[dict[str, Any] | None] | None"]


class _StaleRing(Exception):
    """Internal: a replica reported that this handle's ring is out of date."""


class _Job:
    """One search waiting in a :class:`Scatter`'s queue."""

    __slots__ = ("done", "ef", "error", "filters", "finished", "k", "lead", "min_seq",
                 "name", "q", "result", "rows")

    def __init__(self, name: str, q: np.ndarray, k: int, ef: int, filters: dict[str, Any],
                 min_seq: int, rows: bool) -> None:
        self.name, self.q, self.k, self.ef = name, q, k, ef
        self.filters, self.min_seq, self.rows = filters, min_seq, rows
        self.done = threading.Event()
        self.lead = self.finished = False
        self.result: Hits | None = None
        self.error: BaseException | None = None


class Scatter:
    """Calls fanned out to one replica of every shard of ``shards``, within
    ``search_timeout`` seconds; ``ef_search`` is the default search ``ef``. ``suspect`` maps
    a replica's actor name to the monotonic time until which it is tried last."""

    def __init__(self, shards: Shards, search_timeout: float, ef_search: int,
                 fast: Client | None = None) -> None:
        self.shards = shards
        #: the fast path's connections (:mod:`.fastpath`); None: every search goes via Ray
        self.fast = fast
        self.fast_stats = {"fast": 0, "ray": 0}  # searches (rounds) answered each way
        # actor name -> (fast-path address or None, pending lookup or None, next try at)
        self._addresses: dict[str, tuple[tuple[str, int] | None, Any, float]] = {}
        self.search_timeout = float(search_timeout)
        self.ef_search = ef_search
        self.suspect: dict[str, float] = {}
        self._rr: dict[int, itertools.count[int]] = {}
        self._latency_ewma = 0.02  # seconds: running mean of one shard's search call
        self._queue: list[_Job] = []  # searches waiting for the next scatter round
        self._leading = False  # a thread is running a round (it hands over to the next)
        self._queue_lock = threading.Lock()

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
               filters: dict[str, Any], min_seq: int, rows: bool = False) -> Hits:
        """Ask one replica per shard (retrying / hedging on others); the merged top-k as
        ``(ids, distances, rows)``: with ``rows``, each hit's record row as the replica
        holds it (at least at ``min_seq``; None for one it lacks), else None.

        Searches from several threads of this handle are combined: while one thread runs a
        scatter round, the searches that arrive queue up, and the next round sends them all
        to each replica in one call (:meth:`ShardReplica.search_batch_packed`); a round's
        thread then hands the queue to one of the waiting threads. One thread alone sends
        one search per call, as before."""
        ef = self.ef_search if ef is None else int(ef)
        job = _Job(name, np.asarray(q, np.float32), int(k), max(ef, int(k)), filters,
                   int(min_seq), bool(rows))
        with self._queue_lock:
            self._queue.append(job)
            job.lead = not self._leading
            self._leading = True
        if not job.lead and not job.done.wait(4 * self.search_timeout + 5.0):
            with self._queue_lock:  # handed over or answered meanwhile: go on
                if not job.done.is_set():
                    if job in self._queue:
                        self._queue.remove(job)
                    raise ClusterUnavailable("a combined cluster search was not answered in "
                                             "time")
        if not job.finished:  # this thread runs the next round
            self._run_round()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _run_round(self) -> None:
        """Answer every queued search in one scatter round, then hand the queue over."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        try:
            if len(batch) == 1:
                batch[0].result = self._search_one(batch[0])
            else:
                for job, res in zip(batch, self._search_many(batch)):
                    job.result = res
        except BaseException as exc:  # every waiting search gets the error
            for job in batch:
                job.error = exc
        finally:
            for job in batch:
                job.finished = True
                job.done.set()
            with self._queue_lock:
                if self._queue:  # the next round's thread: the first waiting search
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leading = False

    def _address(self, shard: int, replica: int, handle: Any) -> tuple[str, int] | None:
        """The fast-path address of a replica, or None while it is unknown: the lookup is
        a Ray call that is never waited for (a restarting actor would stall the search);
        a later round picks its answer up. A replica without one is asked again after 2 s."""
        name = self.shards.actor_name(shard, replica)
        addr, ref, retry_at = self._addresses.get(name, (None, None, 0.0))
        if addr is not None:
            return addr
        now = time.monotonic()
        if ref is not None:
            done, _ = ray.wait([ref], timeout=0)
            if not done:
                return None
            try:
                got = ray.get(ref)
                addr = None if got is None else (str(got[0]), int(got[1]))
            except Exception:  # noqa: BLE001 - the Ray path answers meanwhile
                addr = None
            self._addresses[name] = (addr, None, now + 2.0)
            return addr
        if now >= retry_at:
            try:
                ref = handle.fast_address.options(concurrency_group="control").remote()
            except Exception:  # noqa: BLE001
                ref = None
            self._addresses[name] = (None, ref, now + 2.0)
        return None

    def _fast_round(self, routing: dict[int, list[Any]], ring_shards: list[int],
                    jobs: list[_Job], min_seq: int) -> list[Hits] | None:
        """Answer ``jobs`` over the fast path (one replica per shard, round-robin, no
        suspects), or None when it cannot (the caller then goes the Ray way)."""
        if self.fast is None or not routing:
            return None
        targets, picked = [], []
        now = time.monotonic()
        for s in routing:  # per shard: the first replica in round-robin order that is not
            chosen = None  # suspect and whose address is known (the others' are looked up)
            for r, h in self._candidates(s, routing[s]):
                name = self.shards.actor_name(s, r)
                if self.suspect.get(name, 0) > now:
                    continue
                addr = self._address(s, r, h)
                if addr is not None and chosen is None:
                    chosen = (addr, (s, r, name))
            if chosen is None:
                return None
            targets.append(chosen[0])
            picked.append(chosen[1])
        patience = min(self.search_timeout / 2, 1.0)
        header = {"min_seq": int(min_seq), "timeout": patience, "ring": ring_shards,
                  "entries": [{"c": j.name, "k": j.k, "ef": j.ef, "filters": j.filters,
                               "rows": j.rows} for j in jobs]}
        try:
            answers = self.fast.search(targets, header, np.stack([j.q for j in jobs]),
                                       patience + 0.05, [(s, r) for s, r, _ in picked])
        except FastPathError as exc:
            if str(exc).startswith("StaleRing:"):
                raise _StaleRing(str(exc)) from None
            if exc.target is not None:  # that replica is tried last for a while, and its
                s, r, name = picked[exc.target]  # address asked again (it may have moved)
                self._mark_suspect(s, r)
                self._addresses.pop(name, None)
            return None
        self.fast_stats["fast"] += 1
        return [_merge([answers[t][b] for t in range(len(targets))], job.k)
                for b, job in enumerate(jobs)]

    def close(self) -> None:
        """Close the fast path's connections."""
        if self.fast is not None:
            self.fast.close()

    def _search_one(self, job: _Job) -> Hits:
        ring, routing = self.shards.snapshot()
        ring_shards = list(ring.shards)
        fast = self._fast_round(routing, ring_shards, [job], job.min_seq)
        if fast is not None:
            return fast[0]
        self.fast_stats["ray"] += 1
        results = self.fanout(
            routing, lambda _s, h, budget: h.search_packed.remote(pack_search(
                job.name, job.q, job.k, job.ef, job.filters, job.min_seq, budget,
                ring_shards, job.rows)), job.min_seq)
        return _merge([pickle.loads(results[s]) for s in routing], job.k)

    def _search_many(self, batch: list[_Job]) -> list[Hits]:
        ring, routing = self.shards.snapshot()
        ring_shards = list(ring.shards)
        entries = [(j.name, j.q, j.k, j.ef, j.filters, j.rows) for j in batch]
        min_seq = max(j.min_seq for j in batch)  # every search reads at least its own
        fast = self._fast_round(routing, ring_shards, batch, min_seq)
        if fast is not None:
            return fast
        self.fast_stats["ray"] += 1
        results = self.fanout(
            routing, lambda _s, h, budget: h.search_batch_packed.remote(pack_batch(
                entries, min_seq, budget, ring_shards)), min_seq)
        answers = {s: pickle.loads(results[s]) for s in routing}
        return [_merge([answers[s][b] for s in routing], job.k)
                for b, job in enumerate(batch)]

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


def _merge(parts: list[Hits], k: int) -> Hits:
    """The ``k`` nearest of the shards' answers ``(ids, distances, rows)``, a record once
    (during a ring change it may be in two shards), ties by id; rows only when every part
    carries them."""
    all_ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    all_d = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    all_rows: list[Any] | None = None
    if parts and all(p[2] is not None for p in parts):
        all_rows = [r for p in parts for r in p[2]]  # type: ignore[union-attr]
    order = np.lexsort((all_ids, all_d))
    seen: set[int] = set()
    out_i, out_d, out_r = [], [], []
    for j in order:
        i = int(all_ids[j])
        if i in seen:
            continue
        seen.add(i)
        out_i.append(i)
        out_d.append(float(all_d[j]))
        if all_rows is not None:
            out_r.append(all_rows[j])
        if len(out_i) == k:
            break
    return (np.asarray(out_i, np.int64), np.asarray(out_d, np.float32),
            out_r if all_rows is not None else None)
