"""ANN benchmark: AgentDB HNSW vs hnswlib, usearch, faiss HNSW and exact numpy search.

Data: ``../shared/data/minilm-pypi-100k`` relative to the repo root (100k x 384 MiniLM
embeddings, 1000 queries, exact cosine top-100 ground truth). ``--n`` takes the first N base
rows (ground truth is then recomputed exactly with numpy), ``--queries`` the first Q queries.

All indexes use cosine distance with M=16 and ef_construction=200:

* agentdb  ``HNSWIndex(dim, metric="cosine", M=16, ef_construction=200, threads=T)``
  (``precision="mixed"``, its default); ``agentdb-int8`` and ``agentdb-f32`` the same index
  with ``precision="int8"`` / ``"f32"``, so the curve and memory of every precision print
  side by side
* hnswlib  ``Index(space="cosine")``, ``num_threads=T``
* usearch  ``Index(metric="cos", connectivity=16, expansion_add=200, dtype="f32")``;
  usearch would default to bf16 storage for "cos", f32 is forced so every index stores the
  same float32 vectors (``--usearch-dtype`` changes it)
* faiss    ``IndexHNSWFlat(d, 16, METRIC_INNER_PRODUCT)`` on L2-normalised vectors,
  ``efConstruction=200``, ``omp_set_num_threads(T)``; normalising the base is part of
  its build time, queries are normalised once up front (ranking does not need it)
* usearch-i8 the same usearch index storing int8 vectors (its quantized mode)
* faiss-sq8 ``IndexHNSWSQ(d, QT_8bit, 16, METRIC_INNER_PRODUCT)``: 8-bit scalar-quantized
  vectors (the quantizer trained on the base, part of the build time), walked as codes
* agentdb-exact  (opt-in) ``search(q, exact=True)`` on an int8 index: every item measured,
  int8 codes first, float32 for the candidates within their error bound
* numpy    exact search: ``Xn @ q`` + ``argpartition`` + sort of the top 10 per query
  (its "build" is normalising the base)

Measured: build time with 1 and 2 threads (``--build-threads``), index memory (library
report where one exists: agentdb ``memory_usage()``, usearch ``memory_usage``; serialised
size for all of them: agentdb ``save()``, hnswlib ``index_file_size()``, usearch
``serialized_length``, faiss ``serialize_index``), and for each ef_search: recall@10 and
single-thread QPS from a Python loop issuing one query per call (the way applications call
it), every library forced to one thread during search, median of ``--repeats`` loops. The
index searched is the one built with the smallest thread count. Builds run one library at a
time; the timed query loops are interleaved across libraries (repeat 1 of each library, then
repeat 2, ...) so that background load on a shared machine affects all of them alike.

Environment: ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` may be set on this machine and can
slow numpy (the exact baseline). The script does not touch them; their values are printed in
the header. To compare against an unmodified numpy, unset both for that one command::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ann.py

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead, which usually lacks the compiled extension (the numpy fallback).
``AGENTDB_NATIVE=0`` forces the fallback. The backend and SIMD path are printed in the header
and in every table title; on the fallback the comparison with the peers is refused unless
``--allow-fallback`` is given.

Examples::

    python benchmarks/ann.py                                   # full run, 100k / 1000 queries
    python benchmarks/ann.py --n 5000 --queries 200 --repeats 1  # smoke test
    python benchmarks/ann.py --libs agentdb,hnswlib --json ann.json
    python benchmarks/ann.py --src --allow-fallback --n 2000  # source tree, numpy fallback

Libraries not installed are skipped with a note (``pip install hnswlib usearch faiss-cpu``).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    Dataset,
    add_backend_options,
    blas_threads,
    environment,
    fmt_float,
    fmt_ratio,
    import_agentdb,
    load_dataset,
    log,
    module_version,
    normalize_rows,
    optional_import,
    parse_csv,
    print_header,
    print_table,
    print_title,
    recall_at_k,
    require_native_for_peers,
    settle,
    write_json,
)
from _serving import recipe_for, serve

M = 16
EF_CONSTRUCTION = 200
K = 10
DEFAULT_EFS = "16,32,64,128,256,512"
ALL_LIBS = ("agentdb", "agentdb-int8", "agentdb-f32", "hnswlib", "usearch", "faiss", "usearch-i8",
            "faiss-sq8", "numpy")


# --------------------------------------------------------------------------- adapters


class Adapter:
    """One library under test: build an index, report memory, run single queries."""

    name = "?"
    dist: str | None = None  # installed distribution name, for the version lookup
    uses_ef = True

    def __init__(self, module: ModuleType) -> None:
        self.mod = module
        self.index: Any = None

    def version(self) -> str:
        """Library version string."""
        return module_version(self.mod)

    def build(self, x: np.ndarray, threads: int) -> None:
        """Build a fresh index over ``x`` (ids = row numbers) using ``threads`` threads."""
        raise NotImplementedError

    def memory(self) -> tuple[int | None, int | None]:
        """``(bytes reported by the library or None, serialised size in bytes or None)``."""
        return None, None

    def open_seconds(self) -> float | None:
        """Seconds to open the saved index from a file (page cache warm), or None."""
        return None

    def save_file(self, path: str) -> bool:
        """Save the index to ``path`` for the serving measurement; False if not supported."""
        return False

    def single_thread(self) -> None:
        """Force single-threaded search from now on."""

    def prepare_queries(self, queries: np.ndarray) -> list[Any]:
        """Per-query objects in the form the library's search call takes (untimed)."""
        return list(queries)

    def searcher(self, ef: int) -> Callable[[Any], Any]:
        """Set ef_search and return ``call(q)`` performing one user-level search call."""
        raise NotImplementedError

    def ids(self, result: Any) -> np.ndarray:
        """Extract the top-k ids (1-D) from one search call result."""
        return np.asarray(result).reshape(-1)

    def batch_searcher(self, ef: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        """``call(Q) -> ids (m, K)``: every query in one call of the library, on ``threads``
        threads (the library's own parallel batch search)."""
        raise NotImplementedError

    def free(self) -> None:
        """Drop the index."""
        self.index = None
        gc.collect()


class AgentDBAdapter(Adapter):
    """``agentdb.HNSWIndex``."""

    name = "agentdb"

    def version(self) -> str:
        try:
            info = self.mod.native_info()
            version = info.get("version") or module_version(self.mod, "agentdb")
            return f"{version} ({'native' if info.get('native') else 'numpy'})"
        except Exception:  # noqa: BLE001
            return module_version(self.mod)

    precision = "mixed"

    def build(self, x: np.ndarray, threads: int) -> None:
        n, d = x.shape
        self.index = self.mod.HNSWIndex(
            d, metric="cosine", M=M, ef_construction=EF_CONSTRUCTION, capacity=n,
            threads=threads, precision=self.precision,
        )
        self.index.add(np.arange(n, dtype=np.int64), x)

    def memory(self) -> tuple[int | None, int | None]:
        reported = int(self.index.memory_usage())
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.agdb")
            self.index.save(path)
            size = os.path.getsize(path)
        return reported, size

    def save_file(self, path: str) -> bool:
        self.index.save(path)
        return True

    def open_seconds(self) -> float | None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.agdb")
            self.index.save(path)
            self.mod.HNSWIndex.load(path)  # warm the page cache
            t0 = time.perf_counter()
            self.mod.HNSWIndex.load(path)
            return time.perf_counter() - t0

    def single_thread(self) -> None:
        self.index.threads = 1

    def search_options(self, ef: int) -> dict[str, Any]:
        """Keyword arguments of ``HNSWIndex.search`` besides ``k``."""
        return {"ef": ef}

    def searcher(self, ef: int) -> Callable[[Any], Any]:
        search, options = self.index.search, self.search_options(ef)

        def call(q: np.ndarray) -> Any:
            return search(q, k=K, **options)

        return call

    def ids(self, result: Any) -> np.ndarray:
        return np.asarray(result[0]).reshape(-1)

    def batch_searcher(self, ef: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        index, options = self.index, self.search_options(ef)

        def call(Q: np.ndarray) -> np.ndarray:
            index.threads = threads
            try:
                return index.search(Q, k=K, **options)[0]
            finally:
                index.threads = 1

        return call


class AgentDBInt8Adapter(AgentDBAdapter):
    """``agentdb.HNSWIndex(precision="int8")``: the walk reads int8 codes, float32 re-rank."""

    name = "agentdb-int8"
    precision = "int8"

    def version(self) -> str:
        return super().version().replace(")", ", int8)")


class AgentDBF32Adapter(AgentDBAdapter):
    """``agentdb.HNSWIndex(precision="f32")``: the walk reads the float32 vectors."""

    name = "agentdb-f32"
    precision = "f32"

    def version(self) -> str:
        return super().version().replace(")", ", f32)")


class AgentDBExactAdapter(AgentDBAdapter):
    """``HNSWIndex(precision="int8").search(q, exact=True)``: every item measured, through
    the int8 codes first and float32 for the candidates within their error bound (the float32
    scan's answer). Not in the default set: ``--libs agentdb-exact,numpy``."""

    name = "agentdb-exact"
    precision = "int8"
    uses_ef = False

    def version(self) -> str:
        return super().version().replace(")", ", int8, exact=True)")

    def search_options(self, ef: int) -> dict[str, Any]:
        return {"exact": True}


class HnswlibAdapter(Adapter):
    """``hnswlib.Index(space="cosine")``."""

    name = "hnswlib"

    def build(self, x: np.ndarray, threads: int) -> None:
        n, d = x.shape
        index = self.mod.Index(space="cosine", dim=d)
        index.init_index(max_elements=n, ef_construction=EF_CONSTRUCTION, M=M, random_seed=100)
        index.set_num_threads(threads)
        index.add_items(x, np.arange(n), num_threads=threads)
        self.index = index

    def memory(self) -> tuple[int | None, int | None]:
        return None, int(self.index.index_file_size())

    def save_file(self, path: str) -> bool:
        self.index.save_index(path)
        return True

    def open_seconds(self) -> float | None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.bin")
            self.index.save_index(path)
            dim = self.index.dim
            for _ in range(2):  # the first warms the page cache
                other = self.mod.Index(space="cosine", dim=dim)
                t0 = time.perf_counter()
                other.load_index(path)
                took = time.perf_counter() - t0
                del other
            return took

    def single_thread(self) -> None:
        self.index.set_num_threads(1)

    def searcher(self, ef: int) -> Callable[[Any], Any]:
        self.index.set_ef(ef)
        knn_query = self.index.knn_query

        def call(q: np.ndarray) -> Any:
            return knn_query(q, k=K, num_threads=1)

        return call

    def ids(self, result: Any) -> np.ndarray:
        return np.asarray(result[0]).reshape(-1)

    def batch_searcher(self, ef: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        self.index.set_ef(ef)
        knn_query = self.index.knn_query
        return lambda Q: knn_query(Q, k=K, num_threads=threads)[0]


class UsearchAdapter(Adapter):
    """``usearch.index.Index(metric="cos")``."""

    name = "usearch"
    dtype = "f32"

    def version(self) -> str:
        return f"{module_version(self.mod)} ({self.dtype})"

    def build(self, x: np.ndarray, threads: int) -> None:
        from usearch.index import Index

        n, d = x.shape
        index = Index(
            ndim=d,
            metric="cos",
            dtype=self.dtype,
            connectivity=M,
            expansion_add=EF_CONSTRUCTION,
            expansion_search=64,
        )
        index.add(np.arange(n, dtype=np.uint64), x, threads=threads)
        self.index = index

    def memory(self) -> tuple[int | None, int | None]:
        return int(self.index.memory_usage), int(self.index.serialized_length)

    def save_file(self, path: str) -> bool:
        self.index.save(path)
        return True

    def searcher(self, ef: int) -> Callable[[Any], Any]:
        self.index.expansion_search = ef
        search = self.index.search

        def call(q: np.ndarray) -> Any:
            return search(q, K, threads=1)

        return call

    def ids(self, result: Any) -> np.ndarray:
        return np.asarray(result.keys).reshape(-1)

    def batch_searcher(self, ef: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        self.index.expansion_search = ef
        search = self.index.search
        return lambda Q: np.asarray(search(Q, K, threads=threads).keys)


class FaissAdapter(Adapter):
    """``faiss.IndexHNSWFlat`` with inner product on normalised vectors."""

    name = "faiss"
    dist = "faiss-cpu"

    def build(self, x: np.ndarray, threads: int) -> None:
        faiss = self.mod
        faiss.omp_set_num_threads(threads)
        xn = normalize_rows(x)
        index = faiss.IndexHNSWFlat(x.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.add(xn)
        self.index = index

    def memory(self) -> tuple[int | None, int | None]:
        return None, int(self.mod.serialize_index(self.index).nbytes)

    def save_file(self, path: str) -> bool:
        self.mod.write_index(self.index, path)
        return True

    def single_thread(self) -> None:
        self.mod.omp_set_num_threads(1)

    def prepare_queries(self, queries: np.ndarray) -> list[Any]:
        qn = normalize_rows(queries)
        return [qn[i : i + 1] for i in range(qn.shape[0])]

    def searcher(self, ef: int) -> Callable[[Any], Any]:
        self.index.hnsw.efSearch = ef
        search = self.index.search

        def call(q: np.ndarray) -> Any:
            return search(q, K)

        return call

    def ids(self, result: Any) -> np.ndarray:
        return np.asarray(result[1]).reshape(-1)

    def batch_searcher(self, ef: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        self.index.hnsw.efSearch = ef
        index, faiss = self.index, self.mod

        def call(Q: np.ndarray) -> np.ndarray:
            faiss.omp_set_num_threads(threads)
            try:
                return index.search(normalize_rows(Q), K)[1]
            finally:
                faiss.omp_set_num_threads(1)

        return call


class UsearchI8Adapter(UsearchAdapter):
    """usearch storing int8 vectors (its quantized mode), otherwise as ``usearch``."""

    name = "usearch-i8"
    dtype = "i8"


class FaissSQ8Adapter(FaissAdapter):
    """``faiss.IndexHNSWSQ`` with 8-bit scalar quantization (trained on the base), inner
    product on normalised vectors: the graph walks the 8-bit codes."""

    name = "faiss-sq8"

    def version(self) -> str:
        return f"{module_version(self.mod, self.dist)} (SQ8)"

    def build(self, x: np.ndarray, threads: int) -> None:
        faiss = self.mod
        faiss.omp_set_num_threads(threads)
        xn = normalize_rows(x)
        index = faiss.IndexHNSWSQ(x.shape[1], faiss.ScalarQuantizer.QT_8bit, M,
                                  faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.train(xn)
        index.add(xn)
        self.index = index


class NumpyExactAdapter(Adapter):
    """Exact search: normalised ``X @ q`` + ``argpartition`` + sort of the top k."""

    name = "numpy"
    uses_ef = False

    def version(self) -> str:
        return f"{np.__version__} (exact)"

    def build(self, x: np.ndarray, threads: int) -> None:
        self.index = normalize_rows(x)

    def memory(self) -> tuple[int | None, int | None]:
        return int(self.index.nbytes), None

    def searcher(self, ef: int) -> Callable[[Any], Any]:
        xn = self.index

        def call(q: np.ndarray) -> Any:
            sims = xn @ q
            top = np.argpartition(-sims, K - 1)[:K]
            return top[np.argsort(-sims[top])]

        return call

    def batch_searcher(self, ef: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        xn = self.index

        def call(Q: np.ndarray) -> np.ndarray:
            with blas_threads(threads):
                sims = normalize_rows(Q) @ xn.T
            top = np.argpartition(-sims, K - 1, axis=1)[:, :K]
            order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1)
            return np.take_along_axis(top, order, 1)

        return call


ADAPTERS: dict[str, tuple[str, type[Adapter]]] = {
    "agentdb": ("agentdb", AgentDBAdapter),
    "agentdb-int8": ("agentdb", AgentDBInt8Adapter),
    "agentdb-f32": ("agentdb", AgentDBF32Adapter),
    "agentdb-exact": ("agentdb", AgentDBExactAdapter),
    "hnswlib": ("hnswlib", HnswlibAdapter),
    "usearch": ("usearch", UsearchAdapter),
    "faiss": ("faiss", FaissAdapter),
    "usearch-i8": ("usearch", UsearchI8Adapter),
    "faiss-sq8": ("faiss", FaissSQ8Adapter),
    "numpy": ("numpy", NumpyExactAdapter),
}


# --------------------------------------------------------------------------- running


@dataclass
class LibResult:
    """All numbers measured for one library."""

    name: str
    version: str
    build_s: dict[int, float] = field(default_factory=dict)
    mem_reported: int | None = None
    mem_serialized: int | None = None
    open_s: float | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None


def build_library(adapter: Adapter, data: Dataset, build_threads: list[int]) -> LibResult:
    """Build with each thread count (timed alone); keep the last, 1-thread, index for search."""
    res = LibResult(adapter.name, adapter.version())
    order = sorted(set(build_threads), reverse=True)
    for threads in order:
        adapter.free()
        settle()  # let worker pools of the previous step go idle
        log(f"{adapter.name}: build n={len(data.base)} threads={threads}")
        with blas_threads(threads):  # numpy BLAS (if a library uses it) gets the same budget
            t0 = time.perf_counter()
            adapter.build(data.base, threads)
            res.build_s[threads] = time.perf_counter() - t0
        log(f"{adapter.name}: built in {res.build_s[threads]:.2f} s")
    res.mem_reported, res.mem_serialized = adapter.memory()
    res.open_s = adapter.open_seconds()
    adapter.single_thread()
    return res


def measure_curves(
    built: list[tuple[Adapter, LibResult]], data: Dataset, efs: list[int], repeats: int
) -> None:
    """Fill each result's recall/QPS curve.

    Per ef, every library first makes one untimed pass (warm-up, results for recall); then
    the timed loops are interleaved across libraries (repeat 1 of each, repeat 2 of each, ...)
    so background load on the machine hits every library alike. QPS uses the median loop.
    """
    queries = {a.name: a.prepare_queries(data.queries) for a, _ in built}
    nq = len(data.queries)
    exact_done: set[str] = set()
    with blas_threads(1):  # search is single-threaded everywhere, numpy BLAS included
        for ef in efs:
            calls: dict[str, Callable[[Any], Any]] = {}
            for adapter, res in built:
                if res.error is not None or adapter.name in exact_done:
                    continue
                try:
                    call = adapter.searcher(ef)
                    qs = queries[adapter.name]
                    found = np.stack([adapter.ids(call(q))[:K] for q in qs])
                except Exception as exc:  # noqa: BLE001 - report and continue with the others
                    print(f"NOTE: {adapter.name} search failed: {exc!r} - skipped")
                    res.error = repr(exc)
                    continue
                res.curve.append({"ef": ef, "recall": recall_at_k(found, data.gt, K)})
                calls[adapter.name] = call
                if not adapter.uses_ef:
                    exact_done.add(adapter.name)
            times: dict[str, list[float]] = {name: [] for name in calls}
            settle()
            for _ in range(max(1, repeats)):
                for name, call in calls.items():
                    qs = queries[name]
                    t0 = time.perf_counter()
                    for q in qs:
                        call(q)
                    times[name].append(time.perf_counter() - t0)
            for adapter, res in built:
                if adapter.name not in times:
                    continue
                elapsed = statistics.median(times[adapter.name])
                point = res.curve[-1]
                point.update(qps=nq / elapsed, latency_us=1e6 * elapsed / nq)
                log(f"{res.name}: ef={ef} recall@10={point['recall']:.4f} qps={point['qps']:.0f}")
    for adapter, res in built:  # exact search: the one measurement stands for every ef
        if not adapter.uses_ef and res.curve:
            res.curve = [dict(res.curve[0], ef=ef) for ef in efs]


def measure_batch(
    built: list[tuple[Adapter, LibResult]], data: Dataset, efs: list[int], repeats: int,
    threads_list: list[int],
) -> list[dict[str, Any]]:
    """All queries in one call per library, at each ef and thread count: QPS (median of
    ``repeats``), recall@10 and the scaling from 1 thread. Interleaved like the curves."""
    out: list[dict[str, Any]] = []
    Q = np.ascontiguousarray(data.queries)
    nq = len(Q)
    for ef in efs:
        for threads in threads_list:
            calls = {}
            for adapter, res in built:
                if res.error is not None:
                    continue
                try:
                    call = adapter.batch_searcher(ef, threads)
                    found = np.asarray(call(Q))[:, :K]  # warm-up and recall
                except Exception as exc:  # noqa: BLE001 - report and continue
                    print(f"NOTE: {adapter.name} batch search failed: {exc!r} - skipped")
                    continue
                calls[adapter.name] = (call, recall_at_k(found, data.gt, K))
            times: dict[str, list[float]] = {name: [] for name in calls}
            settle()
            for _ in range(max(1, repeats)):
                for name, (call, _r) in calls.items():
                    t0 = time.perf_counter()
                    call(Q)
                    times[name].append(time.perf_counter() - t0)
            for name, (_c, recall) in calls.items():
                qps = nq / statistics.median(times[name])
                out.append({"library": name, "ef": ef, "threads": threads, "recall": recall,
                            "qps": qps})
                log(f"{name}: batch ef={ef} threads={threads} recall@10={recall:.4f} "
                    f"qps={qps:.0f}")
    return out


def measure_serving(
    built: list[tuple[Adapter, LibResult]], data: Dataset, serve_ef: str, target: float,
    repeats: int,
) -> list[dict[str, Any]]:
    """Each saved index opened and searched by a fresh process (``_serving.py``), at
    ``serve_ef`` or ("auto") at the smallest ef of the library's curve reaching ``target``
    (its largest ef when none did)."""
    rows: list[dict[str, Any]] = []
    for adapter, res in built:
        if res.error is not None or recipe_for(adapter.name) is None:
            continue
        if serve_ef == "auto":
            ok = [p["ef"] for p in res.curve if p["recall"] >= target]
            ef = int(min(ok)) if ok else int(max((p["ef"] for p in res.curve), default=64))
        else:
            ef = int(serve_ef)
        modes: list[bool | str] = (
            [True, "vectors"] if adapter.name.startswith("agentdb") else [True])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.bin")
            try:
                if not adapter.save_file(path):
                    continue
            except Exception as exc:  # noqa: BLE001 - report and continue
                print(f"NOTE: {adapter.name} could not save its index: {exc!r} - skipped")
                continue
            for mode in modes:
                label = adapter.name if len(modes) == 1 else f"{adapter.name} (mmap={mode!r})"
                try:
                    log(f"{label}: serving from a fresh process (ef={ef})")
                    row = serve(adapter.name, path, data.queries, data.gt, ef, [], repeats,
                                mmap=mode)
                except Exception as exc:  # noqa: BLE001 - report and continue
                    print(f"NOTE: {label} serving measurement failed: {exc!r} - skipped")
                    continue
                row.update(library=label, ef=ef)
                rows.append(row)
    return rows


def report_serving(rows: list[dict[str, Any]], serve_ef: str) -> None:
    """The serving table: a fresh process's resident-set growth, open time and QPS."""
    if not rows:
        return
    hnsw = next((r for r in rows if r["library"] == "hnswlib"), None)
    table = []
    for r in rows:
        ratio = fmt_ratio(r["rss_served"] / hnsw["rss_served"]) if hnsw else "-"
        qps_ratio = fmt_ratio(r["qps"] / hnsw["qps"]) if hnsw else "-"
        table.append([r["library"], r["ef"], fmt_float(r["open_s"], 3), mb(r["rss_open"]),
                      mb(r["rss_served"]), ratio, f"{r['qps']:.0f}", qps_ratio,
                      fmt_float(r["recall"], 4)])
    print_table(
        "Serving: a fresh process opens the saved index and runs the queries (1 thread)",
        ["library", "ef", "open s", "RSS after open MB", "RSS served MB", "RSS / hnswlib", "QPS",
         "QPS / hnswlib", "recall@10"],
        table,
        note="RSS = growth of the child's VmRSS over its baseline (library imported, queries\n"
             "loaded): heap and touched file pages alike. agentdb reads the float32 vectors\n"
             "for the re-rank with pread (page cache, not RSS); mmap=True maps the whole file\n"
             "(pages shared between processes), mmap='vectors' reads the walk's lists and\n"
             "copy into private huge pages and leaves only the float32 vectors in the file.\n"
             "One warm-up pass, then --repeats timed passes (median); recall from the warm-up\n"
             "pass. ef: "
             + ("each library's smallest ef reaching the target recall in the curves above."
                if serve_ef == "auto" else f"{serve_ef} for every library."),
    )


def report_batch(rows: list[dict[str, Any]], threads_list: list[int]) -> None:
    """The batch table: QPS per thread count, the scaling, and QPS / hnswlib's."""
    if not rows:
        return
    by = {(r["library"], r["ef"], r["threads"]): r for r in rows}
    libs = list(dict.fromkeys(r["library"] for r in rows))
    efs = list(dict.fromkeys(r["ef"] for r in rows))
    t1, tn = min(threads_list), max(threads_list)
    table = []
    for ef in efs:
        for lib in libs:
            cells = [by.get((lib, ef, t)) for t in threads_list]
            if not any(cells):
                continue
            first = next(c for c in cells if c)
            row: list[object] = [ef, lib, fmt_float(first["recall"], 4)]
            row += [None if c is None else f"{c['qps']:.0f}" for c in cells]
            a, b = by.get((lib, ef, t1)), by.get((lib, ef, tn))
            row.append(fmt_ratio(b["qps"] / a["qps"]) if a and b and tn != t1 else "-")
            h = by.get(("hnswlib", ef, tn))
            row.append(fmt_ratio(b["qps"] / h["qps"]) if b and h else "-")
            table.append(row)
    print_table(
        "Batch search: every query in one call, QPS by thread count",
        ["ef", "library", "recall@10"] + [f"QPS {t}T" for t in threads_list]
        + [f"{tn}T / {t1}T", f"QPS / hnswlib {tn}T"],
        table,
        note="each library's own parallel batch search (agentdb HNSWIndex.search on a 2-D array\n"
             "with index.threads, hnswlib knn_query(num_threads), usearch search(threads),\n"
             "faiss omp threads, numpy BLAS threads); recall from the same call.",
    )


def best_qps(res: LibResult, target: float) -> dict[str, float] | None:
    """The curve point with the highest QPS among those with recall >= target."""
    ok = [p for p in res.curve if p["recall"] >= target]
    return max(ok, key=lambda p: p["qps"]) if ok else None


def mb(nbytes: int | None) -> str | None:
    """Bytes as MB with one decimal."""
    return None if nbytes is None else f"{nbytes / 1e6:.1f}"


def report(
    results: list[LibResult], efs: list[int], build_threads: list[int], target: float
) -> dict:
    """Print the build, curve and summary tables; return the summary for JSON."""
    ok = [r for r in results if r.error is None]
    threads_sorted = sorted(set(build_threads))
    rows = []
    for r in ok:
        row: list[object] = [r.name, r.version]
        row += [fmt_float(r.build_s.get(t), 2) for t in threads_sorted]
        row += [mb(r.mem_reported), mb(r.mem_serialized), fmt_float(r.open_s, 3)]
        rows.append(row)
    print_table(
        "Build (M=16, ef_construction=200, cosine)",
        ["library", "version"]
        + [f"build {t}T s" for t in threads_sorted]
        + ["reported MB", "serialised MB", "open s"],
        rows,
        note=(
            "reported = library's own figure (agentdb memory_usage(), usearch memory_usage;\n"
            "numpy = float32 normalised matrix). serialised = saved index size (agentdb save(),\n"
            "hnswlib index_file_size(), usearch serialized_length, faiss serialize_index).\n"
            "numpy 'build' = normalising the base (single thread, BLAS not involved).\n"
            "open s = loading the saved index from a file in the page cache (agentdb\n"
            "HNSWIndex.load, hnswlib load_index)."
        ),
    )

    headers = ["ef"]
    for r in ok:
        headers += [f"{r.name} R@10", f"{r.name} QPS"]
    rows = []
    for i, ef in enumerate(efs):
        row = [ef]
        for r in ok:
            point = r.curve[i] if i < len(r.curve) else None
            row += [
                None if point is None else fmt_float(point["recall"], 4),
                None if point is None else f"{point['qps']:.0f}",
            ]
        rows.append(row)
    print_table(
        "Recall@10 and single-thread QPS (one query per Python call)",
        headers,
        rows,
        note="numpy = exact search, ef does not apply (measured once, repeated on every row).",
    )

    summary: dict[str, Any] = {"target_recall": target, "best": {}}
    for r in ok:
        summary["best"][r.name] = best_qps(r, target)
    agent = summary["best"].get("agentdb")
    rows = []
    for r in ok:
        b = summary["best"][r.name]
        vs_agent = None if agent is None or b is None else fmt_ratio(agent["qps"] / b["qps"])
        rows.append(
            [
                r.name,
                None if b is None else (b["ef"] if r.name != "numpy" else "-"),
                None if b is None else fmt_float(b["recall"], 4),
                None if b is None else f"{b['qps']:.0f}",
                None if b is None else f"{b['latency_us']:.1f}",
                vs_agent,
            ]
        )
    print_table(
        f"Best single-thread QPS with recall@10 >= {target}",
        ["library", "ef", "recall@10", "QPS", "latency us", "agentdb QPS / QPS"],
        rows,
    )
    by_name = {r.name: r for r in ok}
    lines = []
    peers = {k: v for k, v in summary["best"].items()
             if not k.startswith("agentdb") and v is not None}
    if agent is not None and peers:
        peer = max(peers, key=lambda k: peers[k]["qps"])
        ratio = agent["qps"] / peers[peer]["qps"]
        summary["agentdb_qps_ratio_vs_best_peer"] = {"peer": peer, "ratio": ratio}
        lines.append(
            f"agentdb QPS / best peer ({peer}) at recall@10 >= {target}: {fmt_ratio(ratio)}"
        )
    elif "agentdb" in by_name:
        lines.append(f"agentdb QPS ratio: n/a (agentdb or no peer reached recall {target})")
    if "agentdb" in by_name and "hnswlib" in by_name:
        summary["agentdb_build_ratio_vs_hnswlib"] = {}
        for t in threads_sorted:
            a, h = by_name["agentdb"].build_s.get(t), by_name["hnswlib"].build_s.get(t)
            if a and h:
                summary["agentdb_build_ratio_vs_hnswlib"][t] = a / h
                lines.append(
                    f"agentdb build time / hnswlib build time, {t} thread(s): {fmt_ratio(a / h)}"
                    " (lower is better)"
                )
    print_title("Summary")
    for line in lines:
        print(line)
    print()
    return summary


def make_adapters(libs: list[str], agentdb: ModuleType | None, usearch_dtype: str) -> list[Adapter]:
    """Instantiate the adapters of the libraries that are importable, noting the others."""
    adapters: list[Adapter] = []
    for name in libs:
        if name not in ADAPTERS:
            raise SystemExit(f"unknown library {name!r}; choose from {', '.join(ADAPTERS)}")
        module_name, cls = ADAPTERS[name]
        mod = agentdb if module_name == "agentdb" else optional_import(module_name)
        if mod is None:
            hint = "see header" if name == "agentdb" else f"pip install {module_name}"
            if module_name == "faiss":
                hint = "pip install faiss-cpu"
            print(f"NOTE: {name} is not installed/importable - skipped ({hint})")
            continue
        adapter = cls(mod)
        if type(adapter) is UsearchAdapter:  # usearch-i8 keeps its own dtype
            adapter.dtype = usearch_dtype
        adapters.append(adapter)
    return adapters


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=None, help="use the first N base rows (default: all)")
    p.add_argument(
        "--queries", type=int, default=None, help="use the first Q queries (default: all)"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="timed query loops per ef; median (default 3)"
    )
    p.add_argument(
        "--libs", default=",".join(ALL_LIBS),
        help=f"comma list from {','.join(ADAPTERS)} (default: all but agentdb-exact)"
    )
    p.add_argument("--ef", default=DEFAULT_EFS, help=f"ef_search values (default {DEFAULT_EFS})")
    p.add_argument("--build-threads", default="1,2", help="thread counts for builds (default 1,2)")
    p.add_argument("--batch-ef", default="64",
                   help="ef values of the batch-search table ('' or 0 skips it; default 64)")
    p.add_argument("--batch-threads", default="1,2",
                   help="thread counts of the batch-search table (default 1,2)")
    p.add_argument("--serve-ef", default="auto",
                   help="ef of the serving table (a fresh process opens each saved index): a "
                        "number, 'auto' (each library at the smallest ef of its curve that "
                        "reached --target-recall; default) or 0 to skip it")
    p.add_argument("--target-recall", type=float, default=0.95, help="summary recall floor (0.95)")
    p.add_argument("--usearch-dtype", default="f32", help="usearch storage dtype (default f32)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data set folder")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)

    libs = parse_csv(args.libs)
    efs = parse_csv(args.ef, int)
    build_threads = parse_csv(args.build_threads, int)
    agentdb: ModuleType | None = None
    note = "agentdb not selected"
    if any(lib.startswith("agentdb") for lib in libs):
        agentdb, note = import_agentdb(args.src)
        peers = [lib for lib in libs if not lib.startswith("agentdb")]
        if peers:
            require_native_for_peers(agentdb, args.allow_fallback, f"agentdb vs {'/'.join(peers)}")
    versions = {
        name: module_version(optional_import(mod), dist)
        for name, mod, dist in (
            ("hnswlib", "hnswlib", "hnswlib"),
            ("usearch", "usearch", "usearch"),
            ("faiss", "faiss", "faiss-cpu"),
        )
        if name in libs or f"{name}-i8" in libs or f"{name}-sq8" in libs
    }
    env = environment(agentdb, note, versions)
    print_header("AgentDB ANN benchmark (benchmarks/ann.py)", env)

    log("loading data")
    data = load_dataset(args.n, args.queries, args.data, k_gt=K)
    print(f"data: {data.source}")
    print(
        f"config: cosine, M={M}, ef_construction={EF_CONSTRUCTION}, k={K}, ef_search={efs}, "
        f"build threads={build_threads}, repeats={args.repeats}, search threads=1"
    )
    print(flush=True)

    adapters = make_adapters(libs, agentdb, args.usearch_dtype)
    results: list[LibResult] = []
    built: list[tuple[Adapter, LibResult]] = []
    for adapter in adapters:  # builds one library at a time; all indexes are then kept
        try:
            res = build_library(adapter, data, build_threads)
        except Exception as exc:  # noqa: BLE001 - report and continue with the others
            print(f"NOTE: {adapter.name} failed: {exc!r} - skipped")
            res = LibResult(adapter.name, adapter.version(), error=repr(exc))
            adapter.free()
        else:
            built.append((adapter, res))
        results.append(res)
    measure_curves(built, data, efs, args.repeats)
    batch_threads = parse_csv(args.batch_threads, int)
    batch_efs = [ef for ef in parse_csv(args.batch_ef, int) if ef > 0] if args.batch_ef else []
    batch = (measure_batch(built, data, batch_efs, args.repeats, batch_threads)
             if batch_efs else [])
    serving = (measure_serving(built, data, args.serve_ef, args.target_recall, args.repeats)
               if args.serve_ef not in ("0", "") else [])
    for adapter, _ in built:
        adapter.free()
    faiss = optional_import("faiss") if {"faiss", "faiss-sq8"} & set(libs) else None
    if faiss is not None:
        faiss.omp_set_num_threads(os.cpu_count() or 1)

    summary = report(results, efs, build_threads, args.target_recall)
    report_batch(batch, batch_threads)
    report_serving(serving, args.serve_ef)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "ann",
                "environment": env,
                "data": data.source,
                "config": {
                    "metric": "cosine",
                    "M": M,
                    "ef_construction": EF_CONSTRUCTION,
                    "k": K,
                    "ef_search": efs,
                    "build_threads": build_threads,
                    "repeats": args.repeats,
                    "n": int(data.base.shape[0]),
                    "queries": int(data.queries.shape[0]),
                    "usearch_dtype": args.usearch_dtype,
                },
                "results": [
                    {
                        "library": r.name,
                        "version": r.version,
                        "build_seconds": r.build_s,
                        "memory_reported_bytes": r.mem_reported,
                        "serialized_bytes": r.mem_serialized,
                        "open_seconds": r.open_s,
                        "curve": r.curve,
                        "error": r.error,
                    }
                    for r in results
                ],
                "summary": summary,
                "serving": serving,
                "batch": batch,
            },
        )


if __name__ == "__main__":
    main()
