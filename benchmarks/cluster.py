"""Cluster benchmark: one AgentDB vs ``ClusterDB`` (shards x replicas of native HNSW indexes
on Ray, PostgreSQL as the system of record), on the shared MiniLM data.

Data: ``../shared/data/minilm-pypi-100k`` (100k x 384, 1000 queries, exact top-100 ground
truth), first ``--n`` rows and ``--queries`` queries (ground truth recomputed exactly for a
subset). Row i is stored as pattern ``"pattern <i>"`` with its real embedding, reward in
[0, 1] (``default_rng(--seed)``), ``success = reward >= 0.5`` and one of 20 session ids.

Systems:

* ``single (sqlite)``: ``agentdb.open(<tmp>/single.db, dim=384)``, the default embedded
  store (SQLite + native HNSW, every commit fsynced), in this process.
* ``cluster SxR``: a local cluster made by ``agentdb.cluster.local.up`` (``--nodes`` Ray nodes
  on 127.0.0.1, an embedded PostgreSQL 16 in a temporary folder unless ``--postgres-url``)
  with ``--shards`` x ``--replicas``; this process is a Ray driver (``local.connect``).
  pgvector's own HNSW indexes are dropped (``pgvector_index=False``) unless
  ``--pgvector-index``: the cluster searches its replicas, and pgvector's index maintenance
  costs ~70x in ingest rate.
* ``single (postgres, native)``: ``agentdb.open(url, backend="postgres", search="native")``
  on the cluster's own tables after its ingest (one process, a native index rebuilt from
  the table on open): the same data without the cluster (search only).

Measured:

* ingest: ``store_patterns`` in batches of ``--batch``; rows/s until every batch is committed
  (acknowledged). For the cluster also until every replica has applied the log
  (``searchable``: status ``lag == 0`` everywhere).
* search, k=10, full records (``search_patterns``; the cluster fetches the hits' rows from
  PostgreSQL), at 1 and 16 client threads (``--threads``) sharing one handle: QPS (searches /
  wall time), p50 / p99 latency, recall@10 against exact ground truth. Each configuration
  runs ``--searches`` searches (cycling over the queries) after a short warm-up.
* failure: searchers (``--kill-searchers`` threads) and a light writer (``--kill-write-rate``
  rows/s of random vectors, so the restarted replica has a log to catch up on) run while
  ``ray.kill(<shard 0 replica 0>, no_restart=False)`` kills one replica; Ray restarts it and
  it rebuilds from PostgreSQL. Reported: searches that failed (``ClusterDB`` raises rather
  than return a result missing a shard), results that differ from the pre-kill answer to the
  same query (a rebuilt HNSW graph can rank borderline neighbours differently; the smallest
  overlap shows whether a whole shard could have been missing), the longest gap between two
  answered searches and the max search latency from the kill until the replica is ready, the
  time until the killed replica answers again (restart) and until it is ``ready`` with lag 0
  (rebuild + catch-up).
* learning layer (``--learning-events``, on both systems, after everything else): median
  latency of ``rerank="attention"`` / ``"attention+reward"`` searches (and recall@10 of the
  first) and of ``synthesize_context(k=5)``; median cost of one ``feedback`` event (the
  positive is the 5th hit of a plain search, so the adapter has something to learn), then
  the median adapted search. The adapter is reset at the end.

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead (usually the numpy fallback) and puts it on the ``PYTHONPATH`` the
Ray nodes inherit. Once connected, a Ray task imports agentdb on a worker and its backend is
printed; a worker on another backend than this process stops the run unless
``--allow-fallback``. The backend is printed in the header and every table title.

Examples::

    python benchmarks/cluster.py                     # 100k, 3 x 2
    python benchmarks/cluster.py --n 5000 --queries 100 --searches 300
    python benchmarks/cluster.py --json cluster.json
    python benchmarks/cluster.py --src --n 2000 --queries 20 --searches 50 --systems single
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    PROBE_CODE,
    BackendInfo,
    add_backend_options,
    check_child_backend,
    environment,
    fmt_float,
    import_agentdb,
    load_dataset,
    log,
    module_version,
    optional_import,
    parse_csv,
    print_header,
    print_table,
    probed_backend,
    recall_at_k,
    settle,
    write_json,
)

K = 10
N_SESSIONS = 20


# --------------------------------------------------------------------------- helpers


def payload(n: int, base: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """The stored patterns (same payload for every system)."""
    rng = np.random.default_rng(seed)
    rewards = rng.random(n)
    sessions = rng.integers(0, N_SESSIONS, n)
    return [{"task": f"pattern {i}", "embedding": base[i], "reward": float(rewards[i]),
             "success": bool(rewards[i] >= 0.5), "session_id": f"session-{sessions[i]:02d}"}
            for i in range(n)]


def batches(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_searches(search: Callable[[np.ndarray], list[int]], queries: np.ndarray,
                 total: int, threads: int, warmup: int = 20) -> dict[str, Any]:
    """``total`` searches over ``threads`` client threads; QPS, p50/p99 and the ids found
    for each query (from its first search)."""
    for i in range(min(warmup, total)):
        search(queries[i % len(queries)])
    lat: list[float] = []
    found: dict[int, list[int]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            qi = i % len(queries)
            t0 = time.perf_counter()
            try:
                ids = search(queries[qi])
            except Exception as exc:  # counted, not fatal
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            mine.append(time.perf_counter() - t0)
            if qi not in found:
                with lock:
                    found.setdefault(qi, ids)
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()
    wall = time.perf_counter() - t0
    return {"threads": threads, "searches": len(lat), "errors": len(errors),
            "first_error": errors[0] if errors else None, "qps": len(lat) / wall,
            "p50_ms": (pct(lat, 50) or 0) * 1e3, "p99_ms": (pct(lat, 99) or 0) * 1e3,
            "found": found}


def recall_of(found: dict[int, list[int]], id_to_row: dict[int, int], gt: np.ndarray,
              nq: int) -> float | None:
    qs = [q for q in range(nq) if q in found]
    if not qs:
        return None
    rows = np.full((len(qs), K), -1, dtype=np.int64)
    for j, q in enumerate(qs):
        r = [id_to_row.get(i, -1) for i in found[q][:K]]
        rows[j, :len(r)] = r
    return recall_at_k(rows, gt[qs], K)


def learning_test(db: Any, data: Any, id_to_row: dict[int, int], args: argparse.Namespace
                  ) -> dict[str, Any]:
    """The learning layer on ``db`` (an ``AgentDB`` or a ``ClusterDB``): medians of
    re-ranked searches, ``synthesize_context``, ``feedback`` and adapted searches."""
    qs = data.queries
    n = min(args.learning_events, args.searches)

    def median_ms(call: Callable[[np.ndarray], Any], count: int) -> tuple[float, list[Any]]:
        for i in range(min(10, count)):  # warm-up
            call(qs[i % len(qs)])
        lat, outs = [], []
        for i in range(count):
            t0 = time.perf_counter()
            outs.append(call(qs[i % len(qs)]))
            lat.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(lat)), outs

    out: dict[str, Any] = {}
    ms, found = median_ms(lambda q: [h.id for h in db.search_patterns(q, k=K)], n)
    out["plain_ms"] = ms
    ms, found = median_ms(lambda q: [h.id for h in db.search_patterns(
        q, k=K, rerank="attention")], n)
    out["rerank_ms"] = ms
    out["rerank_recall"] = recall_of({i: f for i, f in enumerate(found[:len(qs)])}, id_to_row,
                                     data.gt, len(qs))
    out["rerank_reward_ms"], _ = median_ms(lambda q: db.search_patterns(
        q, k=K, rerank="attention+reward"), n)
    out["synthesize_ms"], _ = median_ms(lambda q: db.synthesize_context(q, k=5), n)
    positives = {i: db.search_patterns(qs[i % len(qs)], k=5, adapt=False)[-1].id
                 for i in range(n)}
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        db.feedback(qs[i % len(qs)], positives[i], reward=1.0)
        lat.append(time.perf_counter() - t0)
    out["feedback_ms"] = 1e3 * float(np.median(lat))
    out["feedback_events"] = n
    out["adapted_ms"], _ = median_ms(lambda q: db.search_patterns(q, k=K), n)
    db.learning.reset()
    return out


# --------------------------------------------------------------------------- systems


def bench_single(agentdb: Any, rows: list[dict[str, Any]], data: Any, args: argparse.Namespace,
                 workdir: Path) -> dict[str, Any]:
    path = workdir / "single.db"
    db = agentdb.open(str(path), dim=data.base.shape[1], ef_search=args.ef)
    try:
        ids: list[int] = []
        t0 = time.perf_counter()
        for chunk in batches([dict(r) for r in rows], args.batch):
            ids.extend(db.store_patterns(chunk))
        ingest = time.perf_counter() - t0
        id_to_row = {int(i): n for n, i in enumerate(ids)}

        def search(q: np.ndarray) -> list[int]:
            return [h.id for h in db.search_patterns(q, k=K)]

        out: dict[str, Any] = {"system": "single (sqlite)", "ingest_s": ingest,
                               "ingest_rows_s": len(rows) / ingest, "searches": {}}
        for t in args.threads:
            settle()
            r = run_searches(search, data.queries, args.searches, t)
            r["recall"] = recall_of(r.pop("found"), id_to_row, data.gt, len(data.queries))
            out["searches"][t] = r
        if args.learning_events > 0:
            settle()
            log("single (sqlite): learning layer")
            out["learning"] = learning_test(db, data, id_to_row, args)
        return out
    finally:
        db.close()


def _replica_states(local: Any, state_file: Path) -> list[dict[str, Any]]:
    st = local.status(state_file=state_file)
    return [dict(r, shard=s["shard"]) for s in st["shards"] for r in s["replicas"]]


def wait_converged(db: Any, timeout: float) -> float:
    """Seconds until every replica is ready with ``applied_seq >= db.last_seq``."""
    t0 = time.perf_counter()
    target = db.last_seq
    while True:
        st = db.status()
        reps = [r for s in st["shards"] for r in s["replicas"]]
        if reps and all(r["state"] == "ready" and (r["applied_seq"] or 0) >= target
                        for r in reps):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"replicas did not converge in {timeout:g}s: "
                               f"{[(r['state'], r['applied_seq']) for r in reps]}")
        time.sleep(0.1)


def kill_test(db: Any, ray: Any, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Kill shard 0 / replica 0 while searching and writing; see the module docstring."""
    name = db.actor_name(0, 0)
    handle = ray.get_actor(name, namespace=db.ray_namespace)
    nq = min(len(data.queries), 50)
    reference = {q: set(db.search_ids("patterns", data.queries[q], K, min_seq=0)[0].tolist())
                 for q in range(nq)}
    stop = threading.Event()
    events: list[tuple[float, float, str, int]] = []  # (end, latency, outcome, overlap)
    lock = threading.Lock()

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            q = int(rng.integers(nq))
            t0 = time.perf_counter()
            overlap = -1
            try:
                ids, _ = db.search_ids("patterns", data.queries[q], K, min_seq=0)
                overlap = len(set(ids.tolist()) & reference[q])
                outcome = "same" if overlap == len(reference[q]) == len(ids) else "differs"
            except Exception as exc:
                outcome = f"error {type(exc).__name__}"
            t1 = time.perf_counter()
            with lock:
                events.append((t1, t1 - t0, outcome, overlap))

    writes = [0]

    def writer() -> None:
        rng = np.random.default_rng(7)
        per = 10
        gap = per / args.kill_write_rate if args.kill_write_rate > 0 else None
        while gap is not None and not stop.is_set():
            vecs = rng.standard_normal((per, data.base.shape[1])).astype(np.float32)
            try:
                db.store_patterns([{"task": "noise", "embedding": v} for v in vecs])
                writes[0] += per
            except Exception:
                pass
            stop.wait(gap)

    workers = [threading.Thread(target=searcher, args=(i,), daemon=True)
               for i in range(args.kill_searchers)]
    workers.append(threading.Thread(target=writer, daemon=True))
    for w in workers:
        w.start()
    time.sleep(args.kill_before)
    old_pid = ray.get(handle.status.remote(), timeout=10).get("pid")
    t_kill = time.perf_counter()
    ray.kill(handle, no_restart=False)
    t_answer = t_ready = None
    states: list[str] = []
    deadline = t_kill + args.kill_timeout
    while time.perf_counter() < deadline:
        try:
            st = ray.get(handle.status.remote(), timeout=1.0)
        except Exception:
            time.sleep(0.05)
            continue
        if st.get("pid") == old_pid:  # the kill has not landed yet
            time.sleep(0.02)
            continue
        now = time.perf_counter()
        if t_answer is None:
            t_answer = now
        if not states or states[-1] != st.get("state"):
            states.append(str(st.get("state")))
        if st.get("state") == "ready" and int(st.get("applied_seq") or 0) >= db.log_seq():
            t_ready = now
            break
        time.sleep(0.05)
    time.sleep(args.kill_after)
    stop.set()
    for w in workers:
        w.join(timeout=30)
    with lock:
        ev = sorted(events)
    window = [e for e in ev if e[0] >= t_kill and (t_ready is None or e[0] - e[1] <= t_ready)]
    ok_times = [t_kill] + [t for t, _, o, _ in ev if not o.startswith("error") and t >= t_kill]
    end = t_ready if t_ready is not None else (ev[-1][0] if ev else t_kill)
    ok_times.append(end)
    gaps = [b - a for a, b in zip(ok_times, ok_times[1:]) if a <= end]
    outcomes: dict[str, int] = {}
    for _, _, o, _ in ev:
        outcomes[o] = outcomes.get(o, 0) + 1
    before = [lt for t, lt, _, _ in ev if t < t_kill]
    overlaps = [ov for _, _, o, ov in ev if o == "differs"]
    return {
        "replica": name, "searchers": args.kill_searchers, "writes": writes[0],
        "searches": len(ev), "outcomes": outcomes,
        "failed": sum(v for k, v in outcomes.items() if k.startswith("error")),
        "differs": outcomes.get("differs", 0),
        "min_overlap": min(overlaps, default=K),
        "p50_before_ms": (pct(before, 50) or 0) * 1e3,
        "max_latency_window_ms": max((lt for _, lt, _, _ in window), default=0.0) * 1e3,
        "p50_window_ms": (pct([lt for _, lt, _, _ in window], 50) or 0) * 1e3,
        "searches_in_window": len(window),
        "longest_gap_ms": max(gaps, default=0.0) * 1e3,
        "restart_s": None if t_answer is None else t_answer - t_kill,
        "ready_s": None if t_ready is None else t_ready - t_kill, "states": states,
    }


def graph_test(db: Any, agentdb: Any, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Causal graph on the cluster: ``--graph-events`` events and 3x as many random causal
    edges written through ``db.graph`` (one transaction each), then ``khop`` for k = 1, 2, 3
    from ``--graph-seeds`` random events, on the cluster (one scatter round per hop) and on
    ``agentdb.open(backend="postgres")`` over the same tables (one process, full graph);
    medians, and whether every answer is identical."""
    rng = np.random.default_rng(args.seed + 7)
    g = db.graph
    t0 = time.perf_counter()
    nodes = [g.add_event(type="step", n=i) for i in range(args.graph_events)]
    t_events = time.perf_counter() - t0
    n_edges = 3 * len(nodes)
    t0 = time.perf_counter()
    for _ in range(n_edges):
        a, b = (int(x) for x in rng.choice(nodes, 2, replace=False))
        g.add_causal_edge([a], [b], confidence=float(rng.uniform(0.1, 1.0)))
    t_edges = time.perf_counter() - t0
    seeds = [int(x) for x in rng.choice(nodes, min(args.graph_seeds, len(nodes)),
                                        replace=False)]
    out: dict[str, Any] = {"events": len(nodes), "edges": n_edges,
                           "events_s": len(nodes) / t_events, "edges_s": n_edges / t_edges,
                           "khop": {}}
    with agentdb.open(backend="postgres", url=url, schema=db.schema,
                      table_prefix=db.table_prefix) as one:
        for k in (1, 2, 3):
            t_c, t_o, same, size = [], [], 0, []
            for s in seeds:
                t = time.perf_counter()
                a = g.khop(s, k)
                t_c.append(time.perf_counter() - t)
                t = time.perf_counter()
                b = one.graph.khop(s, k)
                t_o.append(time.perf_counter() - t)
                same += a == b
                size.append(len(a))
            out["khop"][k] = {"cluster_ms": 1e3 * float(np.median(t_c)),
                              "single_ms": 1e3 * float(np.median(t_o)),
                              "identical": f"{same}/{len(seeds)}",
                              "median_nodes": float(np.median(size))}
    return out


def ray_worker_backend(ray: Any, timeout: float = 120.0) -> BackendInfo:
    """The agentdb a Ray worker of the cluster imports: :data:`PROBE_CODE` in a Ray task
    (a nested function, so Ray ships it by value and the workers need no ``_common``)."""
    code = PROBE_CODE

    def probe() -> dict[str, Any]:
        namespace: dict[str, Any] = {}
        exec(code, namespace)
        return dict(namespace["RESULT"])

    return probed_backend(ray.get(ray.remote(num_cpus=0)(probe).remote(), timeout=timeout))


def bench_cluster(agentdb: Any, rows: list[dict[str, Any]], data: Any,
                  args: argparse.Namespace, workdir: Path,
                  then: Callable[[str, dict[int, int]], None] | None = None) -> dict[str, Any]:
    """The cluster run; ``then(url, id_to_row)`` runs before the cluster is stopped."""
    from agentdb.cluster import local

    state_file = workdir / "cluster.json"
    label = f"cluster {args.shards}x{args.replicas}"
    log(f"{label}: starting {args.nodes} Ray node(s) + PostgreSQL")
    t0 = time.perf_counter()
    info = local.up(shards=args.shards, replicas=args.replicas, postgres_url=args.postgres_url,
                    data_dir=workdir / "data", nodes=args.nodes, port=free_port(),
                    namespace=f"bench{os.getpid()}", dim=data.base.shape[1],
                    table_prefix=args.table_prefix, pgvector_index=args.pgvector_index,
                    state_file=state_file)
    up_s = time.perf_counter() - t0
    url = info["postgres_url"]
    out: dict[str, Any] = {"system": label, "up_s": up_s, "nodes": args.nodes, "searches": {}}
    db = None
    try:
        db = local.connect(state_file=state_file, ef_search=args.ef,
                           search_timeout=args.search_timeout)
        import ray

        worker = ray_worker_backend(ray)
        check_child_backend("Ray worker", worker, args.allow_fallback)
        out["worker_backend"] = worker.describe()
        if db.count() > 0:
            raise RuntimeError(f"the cluster's tables already hold {db.count()} patterns: use "
                               "an empty database or another --table-prefix")
        ids: list[int] = []
        t0 = time.perf_counter()
        for chunk in batches([dict(r) for r in rows], args.batch):
            ids.extend(db.store_patterns(chunk))
        acked = time.perf_counter() - t0
        log(f"{label}: {len(ids)} rows acknowledged in {acked:.1f}s; waiting for replicas")
        converge = wait_converged(db, args.kill_timeout + 600)
        out.update(ingest_s=acked, ingest_rows_s=len(rows) / acked,
                   searchable_s=acked + converge,
                   searchable_rows_s=len(rows) / (acked + converge))
        id_to_row = {int(i): n for n, i in enumerate(ids)}

        def search(q: np.ndarray) -> list[int]:
            return [h.id for h in db.search_patterns(q, k=K)]

        for t in args.threads:
            settle()
            log(f"{label}: searching with {t} thread(s)")
            r = run_searches(search, data.queries, args.searches, t)
            r["recall"] = recall_of(r.pop("found"), id_to_row, data.gt, len(data.queries))
            out["searches"][t] = r
        if args.kill:
            settle()
            log(f"{label}: killing a replica under load")
            out["kill"] = kill_test(db, ray, data, args)
        if args.graph_events > 0:
            settle()
            log(f"{label}: causal graph ({args.graph_events} events, "
                f"{3 * args.graph_events} edges)")
            out["graph"] = graph_test(db, agentdb, url, args)
        if args.learning_events > 0:
            settle()
            log(f"{label}: learning layer ({args.learning_events} feedback events)")
            out["learning"] = learning_test(db, data, id_to_row, args)
        db.close()
        db = None
        if then is not None:
            then(url, id_to_row)
        return out
    finally:
        if db is not None:
            db.close()
        if args.keep_cluster:
            log(f"{label}: left running (state file {state_file})")
        else:
            try:
                local.down(state_file=state_file)
            except Exception as exc:  # report, keep the numbers
                log(f"{label}: down failed: {exc}")


def bench_single_pg(agentdb: Any, url: str, data: Any, args: argparse.Namespace,
                    id_to_row: dict[int, int]) -> dict[str, Any]:
    t0 = time.perf_counter()
    db = agentdb.open(url, search="native", table_prefix=args.table_prefix,
                      dim=data.base.shape[1], ef_search=args.ef)
    try:
        out: dict[str, Any] = {"system": "single (postgres, native)",
                               "open_s": time.perf_counter() - t0, "searches": {}}

        def search(q: np.ndarray) -> list[int]:
            return [h.id for h in db.search_patterns(q, k=K)]

        for t in args.threads:
            settle()
            r = run_searches(search, data.queries, args.searches, t)
            r["recall"] = recall_of(r.pop("found"), id_to_row, data.gt, len(data.queries))
            out["searches"][t] = r
        return out
    finally:
        db.close()


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=None, help="Base rows (default: all 100k).")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--ef", type=int, default=64, help="ef_search everywhere.")
    p.add_argument("--threads", type=lambda s: parse_csv(s, int), default=[1, 16])
    p.add_argument("--searches", type=int, default=1000, help="Searches per configuration.")
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--nodes", type=int, default=3, help="Ray nodes on this machine.")
    p.add_argument("--postgres-url", default=None,
                   help="PostgreSQL for the cluster (default: embedded, temporary).")
    p.add_argument("--table-prefix", default="", help="Table prefix in PostgreSQL.")
    p.add_argument("--pgvector-index", action="store_true",
                   help="Keep pgvector's HNSW indexes on the cluster tables (slow ingest).")
    p.add_argument("--search-timeout", type=float, default=5.0)
    p.add_argument("--no-kill", dest="kill", action="store_false",
                   help="Skip the replica-kill test.")
    p.add_argument("--kill-searchers", type=int, default=2)
    p.add_argument("--kill-write-rate", type=float, default=200.0,
                   help="Rows/s written during the kill test (0 = none).")
    p.add_argument("--kill-before", type=float, default=2.0)
    p.add_argument("--kill-after", type=float, default=2.0)
    p.add_argument("--kill-timeout", type=float, default=300.0)
    p.add_argument("--systems", type=lambda s: parse_csv(s), default=["single", "cluster",
                                                                          "single-pg"],
                   help="Subset of single,cluster,single-pg.")
    p.add_argument("--graph-events", type=int, default=2000,
                   help="Events of the causal-graph test (3x as many edges; 0 skips it).")
    p.add_argument("--graph-seeds", type=int, default=100)
    p.add_argument("--learning-events", type=int, default=300,
                   help="Feedback events (and searches per re-rank mode) of the learning "
                        "test; 0 skips it.")
    p.add_argument("--keep-cluster", action="store_true", help="Do not stop the cluster.")
    p.add_argument("--json", default=None, metavar="PATH")
    add_backend_options(p)
    args = p.parse_args(argv)

    agentdb, note = import_agentdb(args.src)
    ray = optional_import("ray")
    env = environment(agentdb, note, {"ray": module_version(ray),
                                      "psycopg": module_version(optional_import("psycopg"))})
    print_header("AgentDB cluster benchmark", env)
    data = load_dataset(args.n, args.queries, args.data)
    print(f"data: {data.source}")
    print(f"k={K}, ef_search={args.ef}, batch={args.batch}, searches/config={args.searches}, "
          f"threads={args.threads}; cluster {args.shards} shards x {args.replicas} replicas "
          f"on {args.nodes} Ray node(s) (one machine, {os.cpu_count()} CPUs)\n", flush=True)
    rows = payload(len(data.base), data.base, args.seed)
    results: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    workdir = Path(tempfile.mkdtemp(prefix="agentdb-cluster-bench-"))

    def single_pg(url: str, id_to_row: dict[int, int]) -> None:
        if "single-pg" not in args.systems:
            return
        log("single (postgres, native): open + search on the cluster's tables")
        try:
            results.append(bench_single_pg(agentdb, url, data, args, id_to_row))
        except Exception as exc:
            traceback.print_exc()
            skipped["single-pg"] = f"{type(exc).__name__}: {exc}"[:300]

    try:
        if "single" in args.systems:
            log("single (sqlite): ingest + search")
            results.append(bench_single(agentdb, rows, data, args, workdir))
        if "cluster" in args.systems:
            if ray is None:
                skipped["cluster"] = "ray is not installed (the 'cluster' extra)"
            else:
                try:
                    results.append(bench_cluster(agentdb, rows, data, args, workdir,
                                                 then=single_pg))
                except Exception as exc:
                    traceback.print_exc()
                    skipped["cluster"] = f"{type(exc).__name__}: {exc}"[:300]
        elif "single-pg" in args.systems:
            skipped["single-pg"] = "runs on the cluster's data: include 'cluster' in --systems"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, skipped, args)
    if args.json:
        write_json(args.json, {"environment": env, "data": data.source, "args": vars(args),
                               "results": results, "skipped": skipped})
    return 0


def report(results: list[dict[str, Any]], skipped: dict[str, str],
           args: argparse.Namespace) -> None:
    rows = []
    for r in results:
        rows.append([r["system"], fmt_float(r.get("ingest_rows_s"), 0),
                     fmt_float(r.get("searchable_rows_s"), 0), fmt_float(r.get("up_s"), 1),
                     fmt_float(r.get("open_s"), 1)])
    print_table("ingest (rows/s)", ["system", "acknowledged", "searchable", "cluster up s",
                                    "open s"], rows,
                note="acknowledged: store_patterns committed (cluster: in PostgreSQL); "
                     "searchable: every replica applied the log")
    rows = []
    for r in results:
        for t, s in r["searches"].items():
            rows.append([r["system"], t, fmt_float(s["qps"], 1), fmt_float(s["p50_ms"], 2),
                         fmt_float(s["p99_ms"], 2), fmt_float(s["recall"], 4), s["errors"]])
    print_table("search k=10, full records", ["system", "threads", "QPS", "p50 ms", "p99 ms",
                                               "recall@10", "errors"], rows)
    for r in results:
        gr = r.get("graph")
        if not gr:
            continue
        print_table(f"causal graph khop ({gr['events']} events, {gr['edges']} edges; writes "
                    f"{gr['events_s']:.0f} events/s, {gr['edges_s']:.0f} edges/s)",
                    ["k", "cluster ms", "one process ms", "identical", "median nodes"],
                    [[k, fmt_float(v["cluster_ms"], 2), fmt_float(v["single_ms"], 3),
                      v["identical"], fmt_float(v["median_nodes"], 0)]
                     for k, v in gr["khop"].items()],
                    note="cluster: one scatter round per hop over the shards' graph slices; "
                         "one process: agentdb.open(backend='postgres') on the same tables")
    rows = [[r["system"], fmt_float(lr["plain_ms"], 2), fmt_float(lr["rerank_ms"], 2),
             fmt_float(lr["rerank_recall"], 4), fmt_float(lr["rerank_reward_ms"], 2),
             fmt_float(lr["synthesize_ms"], 2), fmt_float(lr["feedback_ms"], 2),
             fmt_float(lr["adapted_ms"], 2)]
            for r in results if (lr := r.get("learning"))]
    if rows:
        print_table("learning layer (medians, 1 thread, ms)",
                    ["system", "search", "rerank", "rerank R@10", "rerank+reward",
                     "synthesize k=5", "feedback", "adapted search"], rows,
                    note="rerank: attention over 40 candidates (k=10); feedback: one adapter "
                         "step incl. the search for negatives; adapted: after the feedback "
                         "events, ef x 2")
    for r in results:
        k = r.get("kill")
        if not k:
            continue
        print_table(f"replica kill ({k['replica']}, {k['searchers']} searchers, "
                    f"{k['writes']} rows written)", ["metric", "value"], [
            ["searches", k["searches"]],
            ["failed (exceptions)", k["failed"]],
            ["results != pre-kill answer", f"{k['differs']} (min overlap {k['min_overlap']}"
                                           f"/{K})"],
            ["p50 before kill ms", fmt_float(k["p50_before_ms"], 2)],
            ["p50 kill..ready ms", fmt_float(k["p50_window_ms"], 2)],
            ["max latency kill..ready ms", fmt_float(k["max_latency_window_ms"], 1)],
            ["longest gap between answers ms", fmt_float(k["longest_gap_ms"], 1)],
            ["replica answers again s", fmt_float(k["restart_s"], 2)],
            ["replica ready, lag 0 s", fmt_float(k["ready_s"], 2)],
            ["states seen", " > ".join(k["states"])],
        ])
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")
    single = next((r for r in results if r["system"] == "single (sqlite)"), None)
    cluster = next((r for r in results if r["system"].startswith("cluster")), None)
    if single and cluster:
        lines = []
        for t in args.threads:
            a, b = single["searches"].get(t), cluster["searches"].get(t)
            if a and b and a["qps"]:
                lines.append(f"{t} thread(s): cluster/single QPS {b['qps'] / a['qps']:.2f}x")
        if lines:
            print("; ".join(lines))


if __name__ == "__main__":
    sys.exit(main())
