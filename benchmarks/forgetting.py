"""What forgetting, de-duplication and namespaces cost (benchmarks/forgetting.py).

Data: the first ``--n`` rows of ``../shared/data/minilm-pypi-100k`` (real MiniLM vectors, 384-d):
all but the last ``2 x --stores`` are stored as patterns in an embedded file store (those are
kept for the store timings); the first ``--queries`` shared queries search them.
Every search is ``db.search_patterns(q, k=10)`` (one query per call, records read), and each
latency is the median over the queries of the median of ``--repeats`` interleaved passes.

Search states, in this order on one store:

* **baseline** -- no record has an expiry;
* **1% expiring** -- 1% of the rows get ``expires_at`` an hour ahead (nothing expired);
* **10 expired** -- 10 rows expired, not yet forgotten (the index is asked for 10 more hits
  and drops them);
* **1,000 expired** -- past 64 expired rows the search filters on the live ids instead;
* **after forget()** -- ``db.forget()`` removed them (its time is reported too).

Also: ``store_pattern`` with ``dedupe=0.95`` against a plain store (``--stores`` calls each on
rows not yet stored, half of them near-duplicates of stored rows: the row plus small noise),
and the first and later ``db.namespace(name)`` calls (a namespace's files made on first use).
There is no peer here: the numbers are this store against itself.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    PRINTED_TABLES,
    add_backend_options,
    environment,
    fmt_float,
    fmt_ratio,
    import_agentdb,
    load_dataset,
    log,
    print_header,
    print_table,
    write_json,
)

K = 10


def search_p50(db, queries: np.ndarray, repeats: int) -> float:
    """Median (over queries) of the median of ``repeats`` passes, in ms."""
    per_query = np.zeros((repeats, len(queries)))
    for r in range(repeats):
        for j, q in enumerate(queries):
            t0 = time.perf_counter()
            db.search_patterns(q, K, adapt=False)
            per_query[r, j] = time.perf_counter() - t0
    return float(np.median(np.median(per_query, axis=0))) * 1e3


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="stored rows (default 100000)")
    p.add_argument("--queries", type=int, default=500, help="queries (default 500)")
    p.add_argument("--repeats", type=int, default=3, help="passes per state (default 3)")
    p.add_argument("--stores", type=int, default=500, help="stores per dedupe mode")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data set folder")
    p.add_argument("--json", default=None, help="also write the tables to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)
    agentdb, note = import_agentdb(args.src)
    print_header("AgentDB forgetting / de-duplication / namespaces (benchmarks/forgetting.py)",
                 environment(agentdb, note, {}))
    data = load_dataset(args.n, args.queries, args.data)
    if args.n <= 4 * args.stores:
        raise SystemExit(f"--n ({args.n}) must exceed 4 x --stores ({args.stores})")
    base, extra = data.base[: args.n - 2 * args.stores], data.base[args.n - 2 * args.stores:]
    queries = data.queries
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = agentdb.open(str(Path(tmp) / "m.db"), dim=base.shape[1])
        try:
            run(db, base, extra, queries, args.repeats, rng)
        finally:
            db.close()
    if args.json:
        write_json(args.json, {"tables": PRINTED_TABLES})


def run(db, base: np.ndarray, extra: np.ndarray, queries: np.ndarray, repeats: int,
        rng: np.random.Generator) -> None:
    """Every measurement on one open store."""
    log(f"storing {len(base):,} patterns")
    ids: list[int] = []
    for lo in range(0, len(base), 2000):
        ids += db.store_patterns([{"task": f"pattern {i}", "embedding": base[i]}
                                  for i in range(lo, min(lo + 2000, len(base)))])
    rows = []
    base_ms = search_p50(db, queries, repeats)
    rows.append(["baseline (no expiry)", fmt_float(base_ms, 3), fmt_ratio(1.0)])
    now = time.time()
    pick = rng.choice(len(ids), size=max(1, len(ids) // 100) + 1010, replace=False)
    for i in pick[: len(ids) // 100]:
        db.update_pattern(ids[i], expires_at=now + 3600)
    ms = search_p50(db, queries, repeats)
    rows.append(["1% of rows expiring later", fmt_float(ms, 3), fmt_ratio(ms / base_ms)])
    tail = pick[len(ids) // 100:]
    for count in (10, 1000):
        for i in tail[:count]:
            db.update_pattern(ids[i], expires_at=time.time() + 0.05)
        time.sleep(0.1)
        ms = search_p50(db, queries, repeats)
        rows.append([f"{count:,} expired, not forgotten", fmt_float(ms, 3),
                     fmt_ratio(ms / base_ms)])
        tail = tail[count:]
    t0 = time.perf_counter()
    gone = db.forget()["patterns"]
    forget_s = time.perf_counter() - t0
    ms = search_p50(db, queries, repeats)
    rows.append(["after forget()", fmt_float(ms, 3), fmt_ratio(ms / base_ms)])
    print_table(f"search_patterns p50, k={K}, {len(ids):,} rows, {len(queries)} queries",
                ["state", "p50 ms", "x baseline"], rows,
                note=f"forget() removed {len(gone):,} expired rows in {forget_s:.3f} s")

    log("stores: plain vs dedupe=0.95")
    kept = np.setdiff1d(np.arange(len(base)), pick)  # rows neither expired nor expiring
    near = base[rng.choice(kept, size=len(extra), replace=False)]
    near = near + 1e-3 * rng.standard_normal(near.shape).astype(np.float32)
    items = [extra[j] if j % 2 else near[j] for j in range(len(extra))]
    fresh = extra[len(extra) // 2:]  # the plain stores: rows nobody stores otherwise
    items = items[: len(extra) // 2]
    timings: dict[str, list[float]] = {"plain": [], "dedupe=0.95": []}
    merged = 0
    known = set(ids)
    for j, vec in enumerate(items):
        for mode in (("plain", "dedupe=0.95") if j % 2 else ("dedupe=0.95", "plain")):
            t0 = time.perf_counter()
            if mode == "plain":
                db.store_pattern(f"fresh {j}", embedding=fresh[j])
            else:
                rid = db.store_pattern(f"extra {j}", embedding=vec, dedupe=0.95)
            timings[mode].append(time.perf_counter() - t0)
            if mode != "plain":
                merged += rid in known
    plain = statistics.median(timings["plain"]) * 1e3
    rows = [[m, fmt_float(statistics.median(t) * 1e3, 3),
             fmt_ratio(statistics.median(t) * 1e3 / plain)] for m, t in timings.items()]
    print_table("store_pattern p50 (durability full: each commit fsynced)",
                ["mode", "p50 ms", "x plain"], rows,
                note=f"dedupe merged {merged} of {len(items)} stores (half were "
                     "near-duplicates)")

    t0 = time.perf_counter()
    alice = db.namespace("alice")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        db.namespace("alice")
    later = (time.perf_counter() - t0) / 1000
    alice.store_pattern("alice's note", embedding=base[0])
    print_table("namespaces", ["call", "time"],
                [["first db.namespace('alice') (files made)", f"{first * 1e3:.1f} ms"],
                 ["later calls (the open handle)", f"{later * 1e6:.1f} us"]])


if __name__ == "__main__":
    main()
