"""Storage backends benchmark: SQLite + native index vs PostgreSQL + pgvector vs the mirror.

Data: ``../shared/data/minilm-pypi-100k`` (first ``--n`` rows, first ``--queries`` queries,
exact ground truth recomputed for subsets). Every row becomes a pattern (task ``"pattern
<i>"``, its real embedding, a pseudo-random reward, success = reward >= 0.5, one of 20
sessions); all systems get the same rows, in batches of ``--batch`` through
``store_patterns``.

Systems, one run, same machine:

* ``sqlite+native``: ``agentdb.open(file)`` -- the embedded default (durability "full").
* ``postgres+pgvector``: ``agentdb.open(backend="postgres", url=...)``: rows in PostgreSQL 16,
  HNSW (``vector_cosine_ops``, m=16, ef_construction=200) built as rows arrive, searches in SQL
  with ``hnsw.ef_search`` = ``--ef``.
* ``postgres+native``: the same PostgreSQL table opened with ``search="native"``: the native
  index is rebuilt from the table (binary COPY of ids and vectors); "ingest" is that rebuild.
* ``sqlite+mirror``: the embedded default with ``mirror=url``: ingest time is the local write
  time, and "mirror drained" is the time until PostgreSQL holds every row (``mirror_flush``).

Search: k=10, one query per Python call; p50 / p99 latency over ``--queries`` queries after
20 warm-up queries, recall@10 against the exact ground truth; plus a filtered workload
(``success_only``). PostgreSQL is a real server: ``--url`` or ``AGENTDB_POSTGRES_URL``, else an
embedded pgserver instance in a temporary directory (the ``postgres`` extra).

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead (usually the numpy fallback). The backend is printed in the header and
every table title; on the fallback the comparison with pgvector is refused unless
``--allow-fallback``::

    python benchmarks/backends.py --n 100000 --queries 500
    python benchmarks/backends.py --src --allow-fallback --n 2000 --queries 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    add_backend_options,
    environment,
    fmt_float,
    import_agentdb,
    load_dataset,
    log,
    print_header,
    print_table,
    recall_at_k,
    require_native_for_peers,
    write_json,
)


def rows_for(base: np.ndarray, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    reward = rng.random(base.shape[0])
    return [{"task": f"pattern {i}", "embedding": base[i], "reward": float(reward[i]),
             "success": bool(reward[i] >= 0.5), "session_id": f"session-{i % 20:02d}"}
            for i in range(base.shape[0])]


def ingest(db: Any, rows: list[dict[str, Any]], batch: int) -> tuple[float, list[int]]:
    ids: list[int] = []
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        ids += db.store_patterns(rows[i:i + batch])
    return time.perf_counter() - t0, ids


def search(db: Any, queries: np.ndarray, gt: np.ndarray, ef: int, row_of: dict[int, int],
           **filters: Any) -> dict[str, float]:
    for q in queries[:20]:
        db.search_patterns(q, k=10, ef=ef, **filters)
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        res = db.search_patterns(q, k=10, ef=ef, **filters)
        times.append(time.perf_counter() - t0)
        found.append([row_of[r.id] for r in res] + [-1] * (10 - len(res)))
    times.sort()
    out = {"p50_ms": statistics.median(times) * 1e3,
           "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3}
    if gt is not None:
        out["recall10"] = recall_at_k(np.asarray(found), gt, 10)
    return out


def filtered_gt(base: np.ndarray, queries: np.ndarray, mask: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(mask)
    sub = base[idx] / np.linalg.norm(base[idx], axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    top = np.argsort(-(qn @ sub.T), axis=1)[:, :10]
    return idx[top]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="first N base rows (100000)")
    p.add_argument("--queries", type=int, default=500, help="first Q queries (500)")
    p.add_argument("--batch", type=int, default=1000, help="ingest batch (1000)")
    p.add_argument("--ef", type=int, default=64, help="ef_search for both indexes (64)")
    p.add_argument("--url", default=os.environ.get("AGENTDB_POSTGRES_URL"),
                   help="PostgreSQL URL (default: AGENTDB_POSTGRES_URL, else embedded pgserver)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)

    agentdb, how = import_agentdb(args.src)
    require_native_for_peers(agentdb, args.allow_fallback, "sqlite+native vs postgres+pgvector")
    env = environment(agentdb, how)
    print_header("agentdb storage backends: SQLite + native vs PostgreSQL + pgvector", env)
    ds = load_dataset(args.n, args.queries, args.data)
    print(f"data: {ds.source}\n")
    rows = rows_for(ds.base, args.seed)
    success = np.asarray([r["success"] for r in rows])
    gt_success = filtered_gt(ds.base, ds.queries, success)

    srv = None
    url = args.url
    tmp = tempfile.TemporaryDirectory(prefix="agentdb-backends-")
    if not url:
        try:
            import pgserver
        except ImportError:
            raise SystemExit("error: no --url / AGENTDB_POSTGRES_URL and no embedded PostgreSQL: "
                             "pip install 'agentdb[postgres]' (brings pgserver)") from None

        log("starting an embedded PostgreSQL (pgserver)")
        srv = pgserver.get_server(os.path.join(tmp.name, "pg"), cleanup_mode="stop")
        url = srv.get_uri()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        pgv = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'"
                           ).fetchone()[0]
        for schema in ("bench_pg", "bench_mirror"):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
    print(f"PostgreSQL {server_version}, pgvector {pgv}\n")

    results: dict[str, dict[str, Any]] = {}
    table: list[list[Any]] = []

    def record(name: str, ingest_s: float, ids: list[int], db: Any, extra: str = "") -> None:
        row_of = {rid: i for i, rid in enumerate(ids)}
        log(f"{name}: searching")
        plain = search(db, ds.queries, ds.gt, args.ef, row_of)
        filt = search(db, ds.queries, gt_success, args.ef, row_of, success_only=True)
        results[name] = {"ingest_s": ingest_s, "ingest_per_s": len(ids) / ingest_s,
                         "search": plain, "search_success_only": filt, "note": extra}
        table.append([name, f"{len(ids) / ingest_s:,.0f}", fmt_float(plain["p50_ms"], 2),
                      fmt_float(plain["p99_ms"], 2), fmt_float(plain["recall10"], 3),
                      fmt_float(filt["p50_ms"], 2), fmt_float(filt["p99_ms"], 2),
                      fmt_float(filt["recall10"], 3), extra])

    # 1. embedded default
    log("sqlite+native: ingest")
    db = agentdb.open(os.path.join(tmp.name, "lite.db"), dim=ds.base.shape[1], progress=False)
    t, ids = ingest(db, rows, args.batch)
    t0 = time.perf_counter()
    db.checkpoint()
    t += time.perf_counter() - t0
    record("sqlite+native", t, ids, db, "index file saved")
    db.close()

    # 2. PostgreSQL + pgvector
    log("postgres+pgvector: ingest")
    db = agentdb.open(backend="postgres", url=url, schema="bench_pg", dim=ds.base.shape[1])
    t, ids = ingest(db, rows, args.batch)
    record("postgres+pgvector", t, ids, db)
    db.close()

    # 3. the same table served by a native index rebuilt from PostgreSQL
    log("postgres+native: rebuild from the table")
    t0 = time.perf_counter()
    db = agentdb.open(backend="postgres", url=url, schema="bench_pg", search="native",
                      progress=False)
    t = time.perf_counter() - t0
    record("postgres+native", t, ids, db, "ingest = COPY + index rebuild")
    db.close()

    # 4. SQLite with a PostgreSQL mirror
    log("sqlite+mirror: ingest")
    db = agentdb.open(os.path.join(tmp.name, "mirrored.db"), dim=ds.base.shape[1],
                      mirror=url, mirror_schema="bench_mirror", progress=False)
    t, ids = ingest(db, rows, args.batch)
    t0 = time.perf_counter()
    ok = db.mirror_flush(3600)
    drained = time.perf_counter() - t0
    record("sqlite+mirror", t, ids, db,
           f"mirror drained {drained:.1f} s after the last write" + ("" if ok else " (TIMEOUT)"))
    results["sqlite+mirror"]["mirror_drain_s"] = drained
    db.close()

    print_table(
        f"{len(rows):,} patterns x {ds.base.shape[1]}-d, k=10, ef={args.ef}, "
        f"{len(ds.queries)} queries (one per call)",
        ["system", "ingest /s", "p50 ms", "p99 ms", "R@10", "success p50", "success p99",
         "success R@10", "note"],
        table,
        note=f"ingest: store_patterns in batches of {args.batch} (durable commits everywhere).",
    )
    if args.json:
        write_json(args.json, {"env": env, "results": results, "postgres": server_version,
                               "pgvector": pgv})
    if srv is not None:
        srv.cleanup()
    tmp.cleanup()


if __name__ == "__main__":
    main()
