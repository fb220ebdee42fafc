"""Kernel benchmark: AgentDB distance kernels and exact search vs numpy, simsimd and faiss.

Sections (``--sections a,b,c``):

a. one-to-one distance through Python, dims 384 and 1536 (``--dims``):
   ``agentdb.distance(a, b, metric)`` vs numpy (``1 - dot/(norm*norm)``, ``1 - dot``,
   ``d = a - b; dot(d, d)``) vs simsimd (``cosine`` = 1 - cos like agentdb, ``inner`` returns
   the plain dot product, i.e. NOT 1 - dot, ``sqeuclidean`` = squared L2 like agentdb "l2").
   Timed with ``timeit`` statements (no extra wrapper call); the "python floor" row is the
   cost of calling the cheapest two-argument builtin (``operator.is_``).
b. one-to-many over the base vectors (``--n`` x 384, the shared data set or random):
   ``agentdb.distances(q, X, metric)`` vs numpy ``X @ q`` (the matmul floor, the same for
   every metric), the full numpy metric (cosine recomputes the row norms, as any function
   given a raw matrix must), and ``simsimd.cdist`` (1 thread, float32 output).
c. exact top-10 cosine: one query and a batch of ``--batch`` queries:
   ``agentdb.exact_search(q, X, k=10, metric="cosine", threads=...)`` vs numpy
   (``Xn @ q`` on pre-normalised rows + ``argpartition`` + sort of the top 10; batch in
   chunks of 256 queries) vs faiss ``IndexFlatIP`` on normalised rows, each once with 1
   thread and once with all cores. "agree@10" is the overlap with numpy's result.

Every time is the median of ``--repeats`` timed loops; "x vs y" is y's time divided by x's
(above 1 = x faster). numpy's BLAS is limited to 1 thread except where a column or row says
otherwise (OpenBLAS threads are set through threadpoolctl if installed, else ctypes). A short
pause precedes each measurement so idle OpenBLAS/OpenMP workers stop spinning first (on a
2-core machine a spinning pool otherwise distorts the next number). Note: ``simsimd.cdist``
calls ``omp_set_num_threads`` on the process-wide OpenMP runtime, which faiss shares, so faiss
threads are always set explicitly here.

Environment: ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` may be set on this machine and can
slow numpy. The script does not touch them; their values are printed in the header. To
compare against an unmodified numpy, unset both for that one command::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/kernels.py

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead, which usually lacks the compiled extension (the numpy fallback).
``AGENTDB_NATIVE=0`` forces the fallback. The backend and SIMD path are printed in the header
and in every table title; on the fallback the run is refused (it would compare numpy with
numpy) unless ``--allow-fallback`` is given.

Examples::

    python benchmarks/kernels.py                        # full run
    python benchmarks/kernels.py --n 20000 --batch 100  # quick
    python benchmarks/kernels.py --sections a --json kernels.json
    python benchmarks/kernels.py --src --allow-fallback --n 2000  # source tree, fallback
"""

from __future__ import annotations

import argparse
import operator
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    add_backend_options,
    blas_threads,
    environment,
    fmt_ratio,
    import_agentdb,
    load_dataset,
    log,
    median_time,
    module_version,
    normalize_rows,
    optional_import,
    parse_csv,
    print_header,
    print_table,
    require_native_for_peers,
    settle,
    time_per_call,
    time_stmt,
    write_json,
)

METRICS = ("cosine", "ip", "l2")
SIMSIMD_NAMES = {"cosine": "cosine", "ip": "inner", "l2": "sqeuclidean"}
K = 10
CHUNK = 256
#: numpy one-to-one formulas with agentdb's conventions: (timeit statement, value expression)
NUMPY_STMTS = {
    "cosine": ("1.0 - dot(a, b) / (norm(a) * norm(b))",) * 2,
    "ip": ("1.0 - dot(a, b)",) * 2,
    "l2": ("d = a - b; dot(d, d)", "dot(a - b, a - b)"),
}


def ref_distance(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """float64 reference with agentdb's conventions."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        return float(1.0 - a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))
    if metric == "ip":
        return float(1.0 - a64 @ b64)
    d = a64 - b64
    return float(d @ d)


def speedup(t_numpy: float | None, t_lib: float | None) -> str | None:
    """numpy time / library time, formatted (above 1 = library faster)."""
    if t_numpy is None or t_lib is None:
        return None
    return fmt_ratio(t_numpy / t_lib)


def ns(t: float | None) -> str | None:
    """Seconds as nanoseconds."""
    return None if t is None else f"{t * 1e9:.0f}"


def ms(t: float | None) -> str | None:
    """Seconds as milliseconds."""
    return None if t is None else f"{t * 1e3:.3f}"


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean top-k overlap fraction between two id arrays of shape (k,) or (m, k)."""
    a2, b2 = np.atleast_2d(a), np.atleast_2d(b)
    hits = sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a2, b2))
    return hits / b2.size


# --------------------------------------------------------------------------- (a)


def section_one_to_one(
    agentdb: ModuleType | None,
    simsimd: ModuleType | None,
    dims: list[int],
    repeats: int,
    min_time: float,
) -> list[dict[str, Any]]:
    """One-to-one distance per call through Python."""
    rng = np.random.default_rng(1)
    out: list[dict[str, Any]] = []
    rows = []
    floor_ns: float | None = None
    for dim in dims:
        a = rng.standard_normal(dim).astype(np.float32)
        b = rng.standard_normal(dim).astype(np.float32)
        if dim == 384:
            a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)  # unit vectors like MiniLM
        ns_base: dict[str, Any] = {"a": a, "b": b, "dot": np.dot, "norm": np.linalg.norm}
        if floor_ns is None:
            floor_ns = time_stmt("is_(a, b)", {**ns_base, "is_": operator.is_}, repeats, min_time)
        for metric in METRICS:
            log(f"(a) dim={dim} metric={metric}")
            ref = ref_distance(a, b, metric)
            # lib -> (timeit statement, expression giving the value, namespace) or None
            specs: dict[str, tuple[str, str, dict[str, Any]] | None] = {
                "agentdb": None,
                "numpy": NUMPY_STMTS[metric] + (ns_base,),
                "simsimd": None,
            }
            if agentdb is not None:
                agent_ns = {**ns_base, "f": agentdb.distance, "m": metric}
                specs["agentdb"] = ("f(a, b, m)", "f(a, b, m)", agent_ns)
            if simsimd is not None:
                simsimd_ns = {**ns_base, "f": getattr(simsimd, SIMSIMD_NAMES[metric])}
                specs["simsimd"] = ("f(a, b)", "f(a, b)", simsimd_ns)
            times: dict[str, float | None] = {}
            errs: dict[str, float | None] = {}
            for lib, spec in specs.items():
                if spec is None:
                    times[lib] = errs[lib] = None
                    continue
                stmt, expr, namespace = spec
                value = float(eval(expr, namespace))
                if lib == "simsimd" and metric == "ip":
                    value = 1.0 - value  # simsimd.inner is the plain dot product
                errs[lib] = abs(value - ref) / max(abs(ref), 1e-30)
                times[lib] = time_stmt(stmt, namespace, repeats, min_time)
            worst = max((e for e in errs.values() if e is not None), default=0.0)
            rows.append(
                [
                    dim,
                    metric,
                    ns(times["agentdb"]),
                    ns(times["numpy"]),
                    ns(times["simsimd"]),
                    speedup(times["numpy"], times["agentdb"]),
                    speedup(times["numpy"], times["simsimd"]),
                    speedup(times["simsimd"], times["agentdb"]),
                    f"{worst:.1e}",
                ]
            )
            out.append(
                {"dim": dim, "metric": metric, "seconds": times, "rel_error_vs_float64": errs}
            )
    print_table(
        "(a) one-to-one distance, ns per call through Python",
        [
            "dim",
            "metric",
            "agentdb ns",
            "numpy ns",
            "simsimd ns",
            "agentdb vs numpy",
            "simsimd vs numpy",
            "agentdb vs simsimd",
            "max rel err",
        ],
        rows,
        note=(
            f"python floor (operator.is_(a, b)): {ns(floor_ns)} ns per call. "
            "'x vs y' = y time / x time (>1: x faster).\n"
            "max rel err = largest relative deviation of the results from a float64 reference "
            "(simsimd inner\nconverted to 1 - dot)."
        ),
    )
    out.append({"python_floor_seconds": floor_ns})
    return out


# --------------------------------------------------------------------------- (b)


def section_one_to_many(
    agentdb: ModuleType | None,
    simsimd: ModuleType | None,
    x: np.ndarray,
    q: np.ndarray,
    repeats: int,
    min_time: float,
) -> list[dict[str, Any]]:
    """One query against every row of ``x``."""
    q2 = np.ascontiguousarray(q[None, :])
    xnorm = np.linalg.norm(x, axis=1)  # only used for the correctness reference
    ref = {
        "cosine": 1.0 - (x @ q) / (xnorm * np.linalg.norm(q)),
        "ip": 1.0 - x @ q,
        "l2": ((x.astype(np.float64) - q) ** 2).sum(axis=1),
    }
    all_threads = os.cpu_count() or 1
    log("(b) numpy X @ q")
    with blas_threads(all_threads):
        settle()
        t_matmul_all = time_per_call(lambda: x @ q, repeats, min_time)
    with blas_threads(1):
        settle()
        t_matmul = time_per_call(lambda: x @ q, repeats, min_time)
    numpy_metric: dict[str, Callable[[], np.ndarray]] = {
        "cosine": lambda: 1.0 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q)),
        "ip": lambda: 1.0 - x @ q,
        "l2": lambda: np.einsum("ij,ij->i", x - q, x - q),
    }
    rows = []
    out: list[dict[str, Any]] = []
    for metric in METRICS:
        log(f"(b) metric={metric}")
        funcs: dict[str, Callable[[], Any] | None] = {"numpy metric": numpy_metric[metric]}
        funcs["agentdb"] = (
            None if agentdb is None else (lambda m=metric: agentdb.distances(q, x, m))
        )
        if simsimd is not None:
            name = SIMSIMD_NAMES[metric]
            funcs["simsimd"] = lambda name=name: simsimd.cdist(
                q2, x, metric=name, out_dtype="float32", threads=1
            )
        else:
            funcs["simsimd"] = None
        times: dict[str, float | None] = {"numpy X@q": t_matmul, "numpy X@q all": t_matmul_all}
        errs: dict[str, float | None] = {}
        for lib, fn in funcs.items():
            if fn is None:
                times[lib] = errs[lib] = None
                continue
            value = np.asarray(fn(), dtype=np.float64).reshape(-1)
            if lib == "simsimd" and metric == "ip":
                value = 1.0 - value
            scale = max(float(np.max(np.abs(ref[metric]))), 1e-30)
            errs[lib] = float(np.max(np.abs(value - ref[metric]))) / scale
            with blas_threads(1):
                settle()
                times[lib] = time_per_call(fn, repeats, min_time)
        rows.append(
            [
                metric,
                ms(times["agentdb"]),
                ms(t_matmul),
                ms(t_matmul_all),
                ms(times["numpy metric"]),
                ms(times["simsimd"]),
                speedup(t_matmul, times["agentdb"]),
                speedup(times["numpy metric"], times["agentdb"]),
                speedup(times["simsimd"], times["agentdb"]),
                f"{max((e for e in errs.values() if e is not None), default=0.0):.1e}",
            ]
        )
        out.append({"metric": metric, "seconds": times, "rel_error_vs_float64": errs})
    print_table(
        f"(b) one-to-many distances, {x.shape[0]} x {x.shape[1]}, ms per call",
        [
            "metric",
            "agentdb ms",
            "numpy X@q ms",
            f"X@q {all_threads}T ms",
            "numpy metric ms",
            "simsimd ms",
            "agentdb vs X@q",
            "agentdb vs np metric",
            "agentdb vs simsimd",
            "max rel err",
        ],
        rows,
        note=(
            f"numpy runs with 1 BLAS thread except 'X@q {all_threads}T' (all cores). numpy X@q = "
            "bare\nmatmul (lower bound, same for every metric); numpy metric = full formula "
            "(cosine recomputes\nrow norms each call). simsimd = cdist, 1 thread, float32 out. "
            "agentdb uses its default threads.\n'x vs y' = y time / x time (>1: x faster)."
        ),
    )
    return out


# --------------------------------------------------------------------------- (c)


def numpy_topk(xn: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact cosine top-k on pre-normalised rows: matmul + argpartition + sort of the top k."""
    if queries.ndim == 1:
        sims = xn @ queries
        top = np.argpartition(-sims, K - 1)[:K]
        return top[np.argsort(-sims[top])]
    out = np.empty((queries.shape[0], K), dtype=np.int64)
    for start in range(0, queries.shape[0], CHUNK):
        sims = queries[start : start + CHUNK] @ xn.T
        part = np.argpartition(-sims, K - 1, axis=1)[:, :K]
        top = np.take_along_axis(sims, part, axis=1)
        out[start : start + CHUNK] = np.take_along_axis(part, np.argsort(-top, axis=1), axis=1)
    return out


def machine_yardsticks(threads_list: list[int], repeats: int) -> dict[str, dict[int, float]]:
    """This machine's measured peaks: float32 GEMM GFLOP/s (numpy's BLAS on a 1536^3
    product, cache-friendly) and read bandwidth in GB/s (the best of two streaming reads of a
    512 MiB array: ``np.max`` over the threads' parts -- numpy releases the GIL there -- and
    BLAS ``sdot`` of its two halves), for each thread count."""
    import concurrent.futures

    rng = np.random.default_rng(0)
    a = rng.standard_normal((1536, 1536), dtype=np.float32)
    buf = np.ones(128 << 20, dtype=np.float32)  # 512 MiB: far beyond every cache
    lo, hi = buf[: len(buf) // 2], buf[len(buf) // 2 :]
    out: dict[str, dict[int, float]] = {"gemm_gflops": {}, "read_gbps": {}}
    for t in threads_list:
        with blas_threads(t):
            a @ a
            settle()
            out["gemm_gflops"][t] = 2 * 1536**3 / median_time(lambda: a @ a, repeats) / 1e9
        parts = np.array_split(buf, t)
        with concurrent.futures.ThreadPoolExecutor(t) as pool, blas_threads(t):

            def read_max(parts: list[np.ndarray] = parts, pool: Any = pool) -> None:
                list(pool.map(np.max, parts))

            def read_dot() -> None:
                np.dot(lo, hi)

            best = 0.0
            for read in (read_max, read_dot):
                read()
                settle()
                best = max(best, buf.nbytes / median_time(read, repeats) / 1e9)
            out["read_gbps"][t] = best
    return out


def section_exact(
    agentdb: ModuleType | None,
    faiss: ModuleType | None,
    x: np.ndarray,
    queries: np.ndarray,
    repeats: int,
    min_time: float,
) -> list[dict[str, Any]]:
    """Exact top-10 cosine search: one query, then a batch; 1 thread and all threads. Beside
    the times: GFLOP/s of the batch (2 n d per query-row pair) and GB/s of the single query
    (the n x d float32 matrix read once), against the BLAS matmul alone and this machine's
    measured GEMM peak and read bandwidth."""
    all_threads = os.cpu_count() or 1
    peaks = machine_yardsticks(sorted({1, all_threads}), repeats)
    xn = normalize_rows(x)
    flat = None
    if faiss is not None:
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(xn)
    # explicit count: simsimd.cdist calls omp_set_num_threads() on the shared OpenMP runtime,
    # so faiss.omp_get_max_threads() may already report 1 here
    rows = []
    out: list[dict[str, Any]] = []
    for case, qs in (("1 query", queries[0]), (f"{len(queries)} queries", queries)):
        batch = qs.ndim == 2
        qn = normalize_rows(qs)
        qn2 = np.ascontiguousarray(np.atleast_2d(qn))
        reference: np.ndarray | None = None
        for threads in sorted({1, all_threads}):
            # label -> call; numpy first (the ratio base for this thread count)
            funcs: dict[str, Callable[[], Any]] = {
                "numpy (Xn@q + argpartition)": lambda qn=qn: numpy_topk(xn, qn)
            }
            if agentdb is not None:
                funcs["agentdb exact_search"] = lambda qs=qs, t=threads: agentdb.exact_search(
                    qs, x, k=K, metric="cosine", threads=0 if t == all_threads else t
                )[0]
            if flat is not None:

                def run(qn2: np.ndarray = qn2) -> np.ndarray:
                    return flat.search(qn2, K)[1]

                funcs["faiss IndexFlatIP"] = run
            if batch:  # the yardstick: the product alone, no top-k
                funcs["BLAS matmul alone (Xn @ Q.T)"] = lambda qn2=qn2: (xn @ qn2.T)[:K].T
            t_numpy = None
            t_matmul = None
            for label, fn in funcs.items():
                log(f"(c) {case}, {threads} thread(s): {label}")
                if faiss is not None:
                    faiss.omp_set_num_threads(threads)
                with blas_threads(threads):
                    ids = np.asarray(fn())
                    settle()
                    if batch:
                        t = median_time(fn, repeats)
                    else:
                        t = time_per_call(fn, repeats, min_time)
                matmul = label.startswith("BLAS matmul")
                if reference is None:
                    reference = ids
                if t_numpy is None:
                    t_numpy = t
                agree = float("nan") if matmul else overlap(ids, reference)
                shown = "all" if threads == all_threads and threads > 1 else threads
                if batch:
                    rate = 2.0 * qn2.shape[0] * x.shape[0] * x.shape[1] / t / 1e9
                    of_peak = rate / peaks["gemm_gflops"][threads]
                else:
                    rate = x.nbytes / t / 1e9
                    of_peak = rate / peaks["read_gbps"][threads]
                rows.append([case, shown, label, ms(t), speedup(t_numpy, t),
                             "-" if matmul else f"{agree:.3f}", f"{rate:.1f}",
                             f"{of_peak:.2f}", "-"])
                out.append(
                    {
                        "case": case,
                        "threads": threads,
                        "library": label,
                        "seconds": t,
                        "agree_at_10": None if matmul else agree,
                        "gflops" if batch else "gbps": rate,
                        "of_machine_peak": of_peak,
                    }
                )
            if batch:  # every row of this thread count against the matmul alone
                t_matmul = out[-1]["seconds"]
                for r, o in zip(rows[-len(funcs):], out[-len(funcs):]):
                    o["vs_matmul"] = t_matmul / o["seconds"]
                    r[-1] = f"{o['vs_matmul']:.2f}x"
    if faiss is not None:
        faiss.omp_set_num_threads(all_threads)
    print_table(
        f"(c) exact top-{K} cosine over {x.shape[0]} x {x.shape[1]}, ms per call",
        ["case", "threads", "library", "ms", "vs numpy", "agree@10", "GFLOP/s | GB/s",
         "of peak", "vs matmul"],
        rows,
        note=(
            f"threads: numpy BLAS threads / agentdb threads= (0 for all) / faiss omp threads; "
            f"all = {all_threads}.\n"
            "numpy and faiss get pre-normalised rows; agentdb gets the raw matrix (it has to\n"
            "handle norms itself). 'vs numpy' = numpy time / library time at the same thread\n"
            "count (>1: faster). agree@10 = overlap with numpy's 1-thread result.\n"
            "GFLOP/s (batch: 2 n d per query-row pair) or GB/s (1 query: the matrix read once);\n"
            "'of peak' = that over this machine's measured float32 GEMM peak (batch) or read\n"
            "bandwidth (1 query): "
            + "; ".join(f"{t} thread(s): {peaks['gemm_gflops'][t]:.0f} GFLOP/s, "
                        f"{peaks['read_gbps'][t]:.1f} GB/s" for t in sorted(peaks["gemm_gflops"]))
            + ".\n'vs matmul' = the BLAS product alone (no top-k) / the library's whole search "
            "(>1: faster)."
        ),
    )
    out.append({"case": "machine", "gemm_gflops": peaks["gemm_gflops"],
                "read_gbps": peaks["read_gbps"]})
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", default="a,b,c", help="which sections to run (default a,b,c)")
    p.add_argument("--dims", default="384,1536", help="dims for section a (default 384,1536)")
    p.add_argument("--n", type=int, default=100_000, help="base rows for b and c (default 100000)")
    p.add_argument("--batch", type=int, default=1000, help="batch size for c (default 1000)")
    p.add_argument("--repeats", type=int, default=5, help="timed loops; median (default 5)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per timed loop (0.2)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data set folder")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)
    sections = set(parse_csv(args.sections))

    agentdb, note = import_agentdb(args.src)
    require_native_for_peers(agentdb, args.allow_fallback, "agentdb kernels vs numpy/simsimd/faiss")
    simsimd = optional_import("simsimd")
    faiss = optional_import("faiss")
    versions = {
        "simsimd": module_version(simsimd),
        "faiss": module_version(faiss, "faiss-cpu"),
    }
    env = environment(agentdb, note, versions)
    print_header("AgentDB kernel benchmark (benchmarks/kernels.py)", env)
    if simsimd is None:
        print("NOTE: simsimd is not installed - skipped (pip install simsimd)")
    if faiss is None:
        print("NOTE: faiss is not installed - skipped (pip install faiss-cpu)")

    results: dict[str, Any] = {}
    if "a" in sections:
        dims = parse_csv(args.dims, int)
        with blas_threads(1):
            results["one_to_one"] = section_one_to_one(
                agentdb, simsimd, dims, args.repeats, args.min_time
            )
    if sections & {"b", "c"}:
        log("loading data")
        data = load_dataset(args.n, args.batch, args.data, k_gt=1)
        print(f"data: {data.source}\n")
        if "b" in sections:
            results["one_to_many"] = section_one_to_many(
                agentdb, simsimd, data.base, data.queries[0], args.repeats, args.min_time
            )
        if "c" in sections:
            results["exact_top10"] = section_exact(
                agentdb, faiss, data.base, data.queries, args.repeats, args.min_time
            )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "kernels",
                "environment": env,
                "config": vars(args) | {"data": str(args.data)},
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
