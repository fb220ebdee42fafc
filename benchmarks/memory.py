"""Agent-memory benchmark: ``agentdb.open()`` vs chromadb vs a plain SQLite + numpy baseline.

Data: ``../shared/data/minilm-pypi-100k`` relative to the repo root (100k x 384 MiniLM
embeddings, 1000 queries, exact top-100 ground truth), loaded as float32. ``--n`` takes the
first N base rows, ``--queries`` the first Q queries.

Every row i becomes one stored memory with the same payload in every system:

* text ``"pattern <i>"`` (agentdb ``task``, chromadb ``documents``, a ``task`` column),
* its real embedding,
* ``reward`` = deterministic pseudo-random in [0, 1] (``numpy.random.default_rng(--seed)``),
  ``success`` = ``reward >= 0.5``, ``session_id`` = one of 20 (``session-00`` ..),
* metadata ``{"lang": one of 5}`` (chromadb gets reward, success, session_id and lang as its
  flat metadata).

Ingest (each system on a file in its own temporary directory):

* agentdb  ``agentdb.open(path, dim=384)`` (durability "full": every commit fsynced),
  ``store_patterns`` in batches of ``--batch`` (1000); the time includes ``close()``, which
  saves the HNSW index file. Single inserts: ``store_pattern`` one call per row over the first
  ``--single`` (2000) rows on a fresh store, with durability "full" and "normal".
* chromadb ``PersistentClient(path, Settings(anonymized_telemetry=False))``, one collection
  with ``{"hnsw:space": "cosine", "hnsw:M": 16, "hnsw:construction_ef": 200,
  "hnsw:search_ef": 64}`` (agentdb's defaults: M=16, ef_construction=200, ef_search=64) and
  no embedding function; ``add`` in the same batches. The time runs until the data is
  searchable: the adds plus the first query (which waits for any deferred indexing). Single
  adds over the first ``--single`` rows on a fresh collection as well.
* sqlite   one table (columns + ``metadata`` JSON + float32 ``embedding`` BLOB), WAL,
  ``synchronous=FULL``, ``executemany`` + commit per batch; "load" (matrix and filter
  columns read once into numpy, rows L2-normalised) is reported separately.

Search, k=10, one query per call from Python (the way an agent calls it), three workloads:

* unfiltered,
* ``success_only`` (~50% of rows): agentdb ``success_only=True``, chromadb
  ``where={"success": True}``, sqlite a numpy mask,
* selective (~1%): ``session_id == "session-07"`` AND ``lang == "rust"``: agentdb
  ``session_id=..., where={"lang": "rust"}``, chromadb ``where={"$and": [...]}``, sqlite a
  numpy mask built per query from the columns loaded once.

agentdb and chromadb calls return full records (agentdb ``SearchResult`` with its record,
chromadb ``include=["metadatas", "documents", "distances"]``); the numpy baseline returns row
numbers only (``Xn @ q`` + ``argpartition``; a selective mask gathers the few matching rows
first). numpy BLAS is limited to one thread for the baseline's searches.

Reported per system x workload: p50 / p99 latency (ms), QPS (queries / wall time of the
loop) and recall@10 against exact ground truth over the rows that pass the filter (numpy;
``gt_top100.npy`` for the unfiltered full set). The query loops are interleaved across systems
(pass 1 of each system, then pass 2, ...) and each number is the median over ``--repeats``
passes; a pass longer than ``--max-pass-seconds`` is not repeated. Ratios agentdb vs chromadb
follow the table (> 1 means agentdb is better).

chromadb is an optional peer (``pip install chromadb``); when it is missing or fails, the run
goes on and prints ``chromadb: skipped (<reason>)``.

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead (usually the numpy fallback). The backend is printed in the header
and every table title; on the fallback the comparison with chromadb and SQLite + numpy is
refused unless ``--allow-fallback``.

Examples::

    python benchmarks/memory.py                        # full 100k run
    python benchmarks/memory.py --n 10000 --queries 200  # smoke test
    python benchmarks/memory.py --json memory.json
    python benchmarks/memory.py --src --allow-fallback --n 2000 --queries 20  # source tree
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    add_backend_options,
    blas_threads,
    environment,
    exact_topk_cosine,
    fmt_float,
    fmt_ratio,
    import_agentdb,
    load_dataset,
    log,
    module_version,
    normalize_rows,
    print_header,
    print_table,
    recall_at_k,
    require_native_for_peers,
    settle,
    write_json,
)

K = 10
M = 16
EF_CONSTRUCTION = 200
EF_SEARCH = 64
N_SESSIONS = 20
LANGS = ("python", "javascript", "go", "rust", "java")
SELECT_SESSION = "session-07"
SELECT_LANG = "rust"
WORKLOADS = ("unfiltered", "success_only", "session+lang")
WORKLOAD_LABEL = {
    "unfiltered": "search unfiltered",
    "success_only": "search success_only (~50%)",
    "session+lang": "search session+lang (~1%)",
}
SYSTEMS = ("agentdb", "chromadb", "sqlite+numpy")


# --------------------------------------------------------------------------- data


@dataclass
class Attributes:
    """Per-row attributes shared by every system (row i = memory i)."""

    reward: np.ndarray  # float64 in [0, 1]
    success: np.ndarray  # bool
    session: np.ndarray  # int, 0..N_SESSIONS-1
    lang: np.ndarray  # int, index into LANGS

    def session_id(self, i: int) -> str:
        """``session_id`` string of row ``i``."""
        return f"session-{int(self.session[i]):02d}"

    def lang_name(self, i: int) -> str:
        """``lang`` metadata value of row ``i``."""
        return LANGS[int(self.lang[i])]

    def mask(self, workload: str) -> np.ndarray | None:
        """Rows passing a workload's filter (None = all)."""
        if workload == "unfiltered":
            return None
        if workload == "success_only":
            return self.success.copy()
        if workload == "session+lang":
            return (self.session == int(SELECT_SESSION.split("-")[1])) & (
                self.lang == LANGS.index(SELECT_LANG)
            )
        raise ValueError(workload)


def make_attributes(n: int, seed: int) -> Attributes:
    """Deterministic pseudo-random reward / session / lang for ``n`` rows."""
    rng = np.random.default_rng(seed)
    reward = rng.random(n)
    return Attributes(
        reward=reward,
        success=reward >= 0.5,
        session=rng.integers(0, N_SESSIONS, n),
        lang=rng.integers(0, len(LANGS), n),
    )


def filtered_ground_truth(
    base: np.ndarray, queries: np.ndarray, mask: np.ndarray, k: int = K
) -> np.ndarray:
    """Exact cosine top-``k`` row numbers among the rows where ``mask`` is true.

    Rows of the result are padded with -1 when fewer than ``k`` rows pass.
    """
    rows = np.flatnonzero(mask)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    if rows.size == 0:
        return out
    local = exact_topk_cosine(base[rows], queries, k)
    out[:, : local.shape[1]] = rows[local]
    return out


def filtered_recall(found: list[np.ndarray], gt: np.ndarray, k: int = K) -> float:
    """recall@k where a query's denominator is its number of true neighbours (<= k)."""
    hits = 0
    total = 0
    for f, g in zip(found, gt):
        truth = {int(x) for x in g[:k] if x >= 0}
        total += len(truth)
        hits += len(truth & {int(x) for x in f[:k]})
    return hits / total if total else 1.0


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the results table."""

    system: str
    workload: str
    inserts_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    qps: float | None = None
    recall: float | None = None
    passes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchRun:
    """Per-pass measurements of one system on one workload."""

    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    qps: list[float] = field(default_factory=list)
    found: list[np.ndarray] | None = None
    stopped: bool = False
    error: str | None = None


def latency_pass(
    call: Callable[[np.ndarray], np.ndarray], queries: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Run every query once; return (row numbers per query, latencies in s, wall seconds)."""
    found: list[np.ndarray] = []
    lat = np.empty(len(queries))
    perf = time.perf_counter
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t_start = perf()
        for i, q in enumerate(queries):
            t0 = perf()
            found.append(call(q))
            lat[i] = perf() - t0
        wall = perf() - t_start
    finally:
        if gc_was:
            gc.enable()
    return found, lat, wall


# --------------------------------------------------------------------------- systems


class System:
    """A memory store under test: ingest, single inserts, and one search call per workload."""

    name = "?"

    def version(self) -> str:
        """Library version string."""
        return "-"

    def ingest(self, base: np.ndarray, attrs: Attributes, batch: int) -> dict[str, float]:
        """Insert every row in batches; returns timings (``seconds`` = until searchable)."""
        raise NotImplementedError

    def single_inserts(
        self, base: np.ndarray, attrs: Attributes, count: int
    ) -> dict[str, dict[str, float]]:
        """One insert call per row on a fresh store: ``{label: {"seconds", "p50", "p99"}}``."""
        return {}

    def searcher(self, workload: str) -> Callable[[np.ndarray], np.ndarray]:
        """``call(query) -> row numbers of the top k`` for a workload."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything (files are removed)."""


def _timed_singles(insert: Callable[[int], object], count: int) -> dict[str, float]:
    lat = np.empty(count)
    t_start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        insert(i)
        lat[i] = time.perf_counter() - t0
    return {
        "seconds": time.perf_counter() - t_start,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


class AgentDBSystem(System):
    """``agentdb.open(path, dim=384)`` on a file in a temporary directory."""

    name = "agentdb"

    def __init__(self, module: ModuleType) -> None:
        self.mod = module
        self.tmp = tempfile.mkdtemp(prefix="agentdb-bench-")
        self.db: Any = None
        self.row_of_id = np.zeros(0, np.int64)

    def version(self) -> str:
        try:
            info = self.mod.native_info()
            version = info.get("version") or module_version(self.mod, "agentdb")
            return f"{version} ({'native' if info.get('native') else 'numpy'})"
        except Exception:  # noqa: BLE001
            return module_version(self.mod)

    def _open(self, name: str, durability: str) -> Any:
        return self.mod.open(
            os.path.join(self.tmp, name),
            dim=384,
            durability=durability,
            M=M,
            ef_construction=EF_CONSTRUCTION,
            ef_search=EF_SEARCH,
            progress=False,
        )

    @staticmethod
    def _item(base: np.ndarray, attrs: Attributes, i: int) -> dict[str, Any]:
        return {
            "task": f"pattern {i}",
            "embedding": base[i],
            "reward": float(attrs.reward[i]),
            "success": bool(attrs.success[i]),
            "session_id": attrs.session_id(i),
            "metadata": {"lang": attrs.lang_name(i)},
        }

    def ingest(self, base: np.ndarray, attrs: Attributes, batch: int) -> dict[str, float]:
        n = base.shape[0]
        batches = [
            [self._item(base, attrs, i) for i in range(s, min(s + batch, n))]
            for s in range(0, n, batch)
        ]
        path = os.path.join(self.tmp, "memory.db")
        t0 = time.perf_counter()
        db = self._open("memory.db", "full")
        ids: list[int] = []
        for items in batches:
            ids += db.store_patterns(items)
        t_stored = time.perf_counter()
        db.close()
        t_closed = time.perf_counter()
        del batches
        t_reopen = time.perf_counter()
        self.db = self._open("memory.db", "full")
        reopen = time.perf_counter() - t_reopen
        status = self.db.index_status.get("patterns")
        ids_arr = np.asarray(ids, np.int64)
        self.row_of_id = np.full(int(ids_arr.max()) + 1, -1, np.int64)
        self.row_of_id[ids_arr] = np.arange(n)
        files = sum(
            os.path.getsize(os.path.join(self.tmp, f))
            for f in os.listdir(self.tmp)
            if f.startswith("memory.db")
        )
        return {
            "seconds": t_closed - t0,
            "store_seconds": t_stored - t0,
            "close_seconds": t_closed - t_stored,
            "reopen_seconds": reopen,
            "reopen_index_status": status,
            "disk_bytes": files,
            "db_path": path,
        }

    def single_inserts(
        self, base: np.ndarray, attrs: Attributes, count: int
    ) -> dict[str, dict[str, float]]:
        out = {}
        for durability in ("full", "normal"):
            name = f"single-{durability}.db"
            db = self._open(name, durability)
            store = db.store_pattern

            def insert(i: int, store: Callable[..., int] = store) -> int:
                item = self._item(base, attrs, i)
                return store(item.pop("task"), **item)

            out[f"durability={durability}"] = _timed_singles(insert, count)
            db.close()
        return out

    def searcher(self, workload: str) -> Callable[[np.ndarray], np.ndarray]:
        search = self.db.search_patterns
        row_of_id = self.row_of_id
        kwargs: dict[str, Any] = {}
        if workload == "success_only":
            kwargs = {"success_only": True}
        elif workload == "session+lang":
            kwargs = {"session_id": SELECT_SESSION, "where": {"lang": SELECT_LANG}}

        def call(q: np.ndarray) -> np.ndarray:
            hits = search(q, K, **kwargs)
            return row_of_id[np.fromiter((h.id for h in hits), np.int64, len(hits))]

        return call

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        shutil.rmtree(self.tmp, ignore_errors=True)


class ChromaSystem(System):
    """chromadb ``PersistentClient`` in a temporary directory, telemetry off."""

    name = "chromadb"

    def __init__(self, module: ModuleType) -> None:
        from chromadb.config import Settings

        self.mod = module
        self.Settings = Settings
        self.tmp = tempfile.mkdtemp(prefix="chroma-bench-")
        self.clients: list[Any] = []
        self.col: Any = None
        self.telemetry: Any = None

    def version(self) -> str:
        return module_version(self.mod)

    def _collection(self, sub: str) -> Any:
        client = self.mod.PersistentClient(
            path=os.path.join(self.tmp, sub),
            settings=self.Settings(anonymized_telemetry=False),
        )
        self.telemetry = client.get_settings().anonymized_telemetry
        if self.telemetry:
            raise RuntimeError("chromadb telemetry is on despite anonymized_telemetry=False")
        self.clients.append(client)
        return client.create_collection(
            "patterns",
            metadata={
                "hnsw:space": "cosine",
                "hnsw:M": M,
                "hnsw:construction_ef": EF_CONSTRUCTION,
                "hnsw:search_ef": EF_SEARCH,
            },
            embedding_function=None,
        )

    @staticmethod
    def _meta(attrs: Attributes, i: int) -> dict[str, Any]:
        return {
            "reward": float(attrs.reward[i]),
            "success": bool(attrs.success[i]),
            "session_id": attrs.session_id(i),
            "lang": attrs.lang_name(i),
        }

    def ingest(self, base: np.ndarray, attrs: Attributes, batch: int) -> dict[str, float]:
        n = base.shape[0]
        batches = [
            (
                [str(i) for i in range(s, e)],
                base[s:e],
                [self._meta(attrs, i) for i in range(s, e)],
                [f"pattern {i}" for i in range(s, e)],
            )
            for s, e in ((s, min(s + batch, n)) for s in range(0, n, batch))
        ]
        t0 = time.perf_counter()
        col = self._collection("main")
        for ids, emb, metas, docs in batches:
            col.add(ids=ids, embeddings=emb, metadatas=metas, documents=docs)
        t_added = time.perf_counter()
        col.query(query_embeddings=base[:1], n_results=K, include=["distances"])
        t_ready = time.perf_counter()
        self.col = col
        count = col.count()
        if count != n:
            raise RuntimeError(f"collection holds {count} rows after adding {n}")
        disk = sum(f.stat().st_size for f in Path(self.tmp, "main").rglob("*") if f.is_file())
        return {
            "seconds": t_ready - t0,
            "add_seconds": t_added - t0,
            "first_query_seconds": t_ready - t_added,
            "disk_bytes": disk,
        }

    def single_inserts(
        self, base: np.ndarray, attrs: Attributes, count: int
    ) -> dict[str, dict[str, float]]:
        col = self._collection("single")

        def insert(i: int) -> None:
            col.add(
                ids=[str(i)],
                embeddings=base[i : i + 1],
                metadatas=[self._meta(attrs, i)],
                documents=[f"pattern {i}"],
            )

        return {"": _timed_singles(insert, count)}

    def searcher(self, workload: str) -> Callable[[np.ndarray], np.ndarray]:
        query = self.col.query
        where: dict[str, Any] | None = None
        if workload == "success_only":
            where = {"success": True}
        elif workload == "session+lang":
            where = {"$and": [{"session_id": SELECT_SESSION}, {"lang": SELECT_LANG}]}
        include = ["metadatas", "documents", "distances"]

        def call(q: np.ndarray) -> np.ndarray:
            res = query(query_embeddings=q[None, :], n_results=K, where=where, include=include)
            return np.asarray([int(i) for i in res["ids"][0]], np.int64)

        return call

    def close(self) -> None:
        self.col = None
        for client in self.clients:
            try:
                client.clear_system_cache()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self.clients.clear()
        gc.collect()
        shutil.rmtree(self.tmp, ignore_errors=True)


class SQLiteNumpySystem(System):
    """Plain baseline: one SQLite table with BLOB embeddings; search in numpy."""

    name = "sqlite+numpy"

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="sqlite-bench-")
        self.xn = np.zeros((0, 0), np.float32)
        self.success = np.zeros(0, bool)
        self.session = np.zeros(0, object)
        self.lang = np.zeros(0, object)
        self.row_ids = np.zeros(0, np.int64)

    def version(self) -> str:
        return f"sqlite {sqlite3.sqlite_version}, numpy {np.__version__}"

    def ingest(self, base: np.ndarray, attrs: Attributes, batch: int) -> dict[str, float]:
        n = base.shape[0]
        batches = [
            [
                (
                    i + 1,
                    f"pattern {i}",
                    float(attrs.reward[i]),
                    int(attrs.success[i]),
                    attrs.session_id(i),
                    json.dumps({"lang": attrs.lang_name(i)}),
                    base[i].tobytes(),
                )
                for i in range(s, min(s + batch, n))
            ]
            for s in range(0, n, batch)
        ]
        path = os.path.join(self.tmp, "baseline.db")
        t0 = time.perf_counter()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            "CREATE TABLE memories (id INTEGER PRIMARY KEY, task TEXT NOT NULL, "
            "reward REAL NOT NULL, success INTEGER NOT NULL, session_id TEXT, "
            "metadata TEXT NOT NULL, embedding BLOB NOT NULL)"
        )
        for rows in batches:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO memories VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        t_stored = time.perf_counter()
        conn.close()
        del batches
        t_load = time.perf_counter()
        conn = sqlite3.connect(path)
        cur = conn.execute(
            "SELECT id, success, session_id, json_extract(metadata, '$.lang'), embedding "
            "FROM memories ORDER BY id"
        )
        ids, success, session, lang, blobs = zip(*cur.fetchall())
        conn.close()
        self.row_ids = np.asarray(ids, np.int64) - 1
        self.success = np.asarray(success, bool)
        self.session = np.asarray(session, object)
        self.lang = np.asarray(lang, object)
        self.xn = normalize_rows(np.frombuffer(b"".join(blobs), np.float32).reshape(n, -1))
        load = time.perf_counter() - t_load
        return {
            "seconds": t_stored - t0,
            "load_seconds": load,
            "disk_bytes": sum(f.stat().st_size for f in Path(self.tmp).iterdir()),
        }

    def searcher(self, workload: str) -> Callable[[np.ndarray], np.ndarray]:
        xn, row_ids = self.xn, self.row_ids

        def top(sims: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
            kk = min(K, sims.shape[0])
            if kk == 0:
                return np.zeros(0, np.int64)
            part = np.argpartition(-sims, kk - 1)[:kk] if kk < sims.shape[0] else np.arange(kk)
            part = part[np.argsort(-sims[part], kind="stable")]
            part = part[np.isfinite(sims[part])]
            return row_ids[part if rows is None else rows[part]]

        def unit(q: np.ndarray) -> np.ndarray:
            return (q / (np.linalg.norm(q) or 1.0)).astype(np.float32, copy=False)

        if workload == "unfiltered":

            def call(q: np.ndarray) -> np.ndarray:
                return top(xn @ unit(q), None)

        elif workload == "success_only":
            success = self.success

            def call(q: np.ndarray) -> np.ndarray:
                sims = xn @ unit(q)
                sims[~success] = -np.inf
                return top(sims, None)

        else:
            session, lang = self.session, self.lang

            def call(q: np.ndarray) -> np.ndarray:
                rows = np.flatnonzero((session == SELECT_SESSION) & (lang == SELECT_LANG))
                return top(xn[rows] @ unit(q), rows)

        return call

    def close(self) -> None:
        self.xn = np.zeros((0, 0), np.float32)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- driver


def run_searches(
    systems: list[System],
    queries: np.ndarray,
    repeats: int,
    max_pass_s: float,
    warmup: int,
) -> dict[tuple[str, str], SearchRun]:
    """Interleaved timed query loops; ``{(system, workload): SearchRun}``."""
    qs = [np.ascontiguousarray(q) for q in queries]
    runs: dict[tuple[str, str], SearchRun] = {}
    for workload in WORKLOADS:
        calls: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        for system in systems:
            calls[system.name] = system.searcher(workload)
            runs[(system.name, workload)] = SearchRun()
        for rep in range(max(1, repeats)):
            for system in systems:
                run = runs[(system.name, workload)]
                if run.stopped:
                    continue
                call = calls[system.name]
                try:
                    with blas_threads(1 if system.name == "sqlite+numpy" else None):
                        for q in qs[:warmup]:
                            call(q)
                        found, lat, wall = latency_pass(call, qs)
                except Exception as exc:  # noqa: BLE001 - drop this system, keep the run
                    traceback.print_exc()
                    run.error, run.stopped = f"{workload} search failed: {exc!r}", True
                    continue
                settle(0.2)
                if run.found is None:
                    run.found = found
                run.p50.append(float(np.percentile(lat, 50)) * 1e3)
                run.p99.append(float(np.percentile(lat, 99)) * 1e3)
                run.qps.append(len(qs) / wall)
                if wall > max_pass_s:
                    run.stopped = True
                log(
                    f"{workload:<13} pass {rep + 1}: {system.name:<13} "
                    f"p50 {run.p50[-1]:.3f} ms, p99 {run.p99[-1]:.3f} ms, "
                    f"{run.qps[-1]:.0f} QPS"
                )
    return runs


def search_rows(
    runs: dict[tuple[str, str], SearchRun], gts: dict[str, np.ndarray], matched: dict[str, int]
) -> list[Row]:
    """Table rows (medians over passes) from the search runs."""
    rows = []
    for (system, workload), run in runs.items():
        if run.error is not None or not run.p50:
            continue
        gt = gts[workload]
        recall = (
            recall_at_k(np.stack(run.found), gt, K)
            if workload == "unfiltered" and run.found and all(len(f) == K for f in run.found)
            else filtered_recall(run.found or [], gt, K)
        )
        rows.append(
            Row(
                system,
                WORKLOAD_LABEL[workload],
                p50_ms=statistics.median(run.p50),
                p99_ms=statistics.median(run.p99),
                qps=statistics.median(run.qps),
                recall=recall,
                passes=len(run.p50),
                extra={"matched_rows": matched[workload]},
            )
        )
    return rows


def fmt_rate(x: float | None) -> str | None:
    """Integer rate with thousands separators."""
    return None if x is None else f"{x:,.0f}"


def print_results(rows: list[Row], skipped: dict[str, str]) -> list[dict[str, Any]]:
    """Print the main table and the agentdb-vs-chromadb ratios; returns the ratios."""
    order = {s: i for i, s in enumerate(SYSTEMS)}
    rows = sorted(rows, key=lambda r: order.get(r.system, 99))
    print_table(
        "results (k=10; latency per call; medians over passes)",
        ["system", "workload", "inserts/s", "p50 ms", "p99 ms", "QPS", "recall@10", "passes"],
        [
            [
                r.system,
                r.workload,
                fmt_rate(r.inserts_per_s),
                fmt_float(r.p50_ms, 3),
                fmt_float(r.p99_ms, 3),
                fmt_rate(r.qps),
                fmt_float(r.recall, 4),
                r.passes or None,
            ]
            for r in rows
        ],
        note=(
            "ingest rows: inserts/s; p50/p99 of single-insert rows are per insert call.\n"
            "single-insert rows fill a fresh, empty store (small index): not comparable with\n"
            "the batch row, whose index grows to all N rows.\n"
            "search rows: QPS = queries / wall time of one pass (one query per call)."
        ),
    )
    for name, reason in skipped.items():
        print(f"{name}: skipped ({reason})")
    ratios: list[dict[str, Any]] = []
    by_key = {(r.system, r.workload): r for r in rows}
    pairs = []
    for r in rows:
        if r.system != "agentdb":
            continue
        other = by_key.get(("chromadb", r.workload))
        if other is None and r.workload.startswith("ingest single"):
            other = by_key.get(("chromadb", "ingest single"))
        if other is not None:
            pairs.append((r, other))
    if not pairs:
        if "chromadb" not in skipped:
            print("no agentdb / chromadb pairs to compare")
        print()
        return ratios

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    table = []
    for a, c in pairs:
        ratio = {
            "workload": a.workload,
            "inserts_per_s": div(a.inserts_per_s, c.inserts_per_s),
            "p50": div(c.p50_ms, a.p50_ms),
            "p99": div(c.p99_ms, a.p99_ms),
            "qps": div(a.qps, c.qps),
            "recall_diff": None if a.recall is None or c.recall is None else a.recall - c.recall,
        }
        ratios.append(ratio)
        table.append(
            [
                a.workload,
                fmt_ratio(ratio["inserts_per_s"]),
                fmt_ratio(ratio["p50"]),
                fmt_ratio(ratio["p99"]),
                fmt_ratio(ratio["qps"]),
                None if ratio["recall_diff"] is None else f"{ratio['recall_diff']:+.4f}",
            ]
        )
    print_table(
        "agentdb vs chromadb (> 1x = agentdb better)",
        [
            "workload",
            "inserts/s a/c",
            "p50 c/a",
            "p99 c/a",
            "QPS a/c",
            "recall a-c",
        ],
        table,
        note="agentdb single-insert rows are compared with chromadb's single adds.",
    )
    return ratios


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=100_000, help="first N base rows (default 100000)")
    p.add_argument("--queries", type=int, default=1000, help="first Q queries (default 1000)")
    p.add_argument("--batch", type=int, default=1000, help="ingest batch size (default 1000)")
    p.add_argument(
        "--single", type=int, default=2000, help="rows for the single-insert runs (default 2000)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed passes per workload (3)")
    p.add_argument(
        "--max-pass-seconds",
        type=float,
        default=20.0,
        help="a pass longer than this is not repeated (default 20)",
    )
    p.add_argument("--warmup", type=int, default=20, help="untimed queries before a pass (20)")
    p.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma list from {','.join(SYSTEMS)}"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the attributes (default 0)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data set folder")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(wanted) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown system(s): {', '.join(sorted(unknown))}")

    agentdb: ModuleType | None = None
    note = "agentdb not selected"
    if "agentdb" in wanted:
        agentdb, note = import_agentdb(args.src)
        peers = [name for name in wanted if name != "agentdb"]
        if peers:
            require_native_for_peers(agentdb, args.allow_fallback, f"agentdb vs {'/'.join(peers)}")
    skipped: dict[str, str] = {}
    chromadb: ModuleType | None = None
    if "chromadb" in wanted:
        os.environ["ANONYMIZED_TELEMETRY"] = "False"  # belt and braces: Settings says so too
        try:
            import chromadb
        except Exception as exc:  # noqa: BLE001 - any import failure means "skip it"
            skipped["chromadb"] = f"not importable: {exc!r}; pip install chromadb"
    env = environment(
        agentdb,
        note,
        {
            "chromadb": module_version(chromadb) if chromadb else "-",
            "sqlite": sqlite3.sqlite_version,
        },
    )
    print_header("AgentDB agent-memory benchmark (benchmarks/memory.py)", env)

    log("loading data")
    data = load_dataset(args.n, args.queries, args.data, k_gt=K)
    n = data.base.shape[0]
    attrs = make_attributes(n, args.seed)
    print(f"data: {data.source}")
    print(
        f"config: k={K}, cosine, M={M}, ef_construction={EF_CONSTRUCTION}, "
        f"ef_search={EF_SEARCH}, batch={args.batch}, single={min(args.single, n)}, "
        f"repeats={args.repeats}, seed={args.seed}"
    )

    log("ground truth per filter")
    gts: dict[str, np.ndarray] = {}
    matched: dict[str, int] = {}
    for workload in WORKLOADS:
        mask = attrs.mask(workload)
        if mask is None:
            gts[workload] = data.gt[:, :K]
            matched[workload] = n
        else:
            gts[workload] = filtered_ground_truth(data.base, data.queries, mask)
            matched[workload] = int(mask.sum())
    print(
        "filters: " + ", ".join(f"{w}: {matched[w]} rows ({matched[w] / n:.1%})" for w in WORKLOADS)
    )
    print(flush=True)

    systems: list[System] = []
    if agentdb is not None:
        systems.append(AgentDBSystem(agentdb))
    if chromadb is not None:
        try:
            systems.append(ChromaSystem(chromadb))
        except Exception as exc:  # noqa: BLE001
            skipped["chromadb"] = f"setup failed: {exc!r}"
    if "sqlite+numpy" in wanted:
        systems.append(SQLiteNumpySystem())

    rows: list[Row] = []
    ingest_info: dict[str, Any] = {}
    live: list[System] = []
    try:
        for system in systems:
            log(f"{system.name}: ingest {n} rows")
            try:
                info = system.ingest(data.base, attrs, args.batch)
                rows.append(
                    Row(
                        system.name,
                        f"ingest batch={args.batch}",
                        inserts_per_s=n / info["seconds"],
                        extra=info,
                    )
                )
                ingest_info[system.name] = info
                singles = system.single_inserts(data.base, attrs, min(args.single, n))
                for label, res in singles.items():
                    rows.append(
                        Row(
                            system.name,
                            f"ingest single {label}".rstrip(),
                            inserts_per_s=min(args.single, n) / res["seconds"],
                            p50_ms=res["p50"] * 1e3,
                            p99_ms=res["p99"] * 1e3,
                        )
                    )
                    ingest_info.setdefault(f"{system.name} single", {})[label] = res
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                traceback.print_exc()
                skipped[system.name] = f"ingest failed: {exc!r}"
                rows = [r for r in rows if r.system != system.name]
                system.close()
                continue
            live.append(system)
            gc.collect()
        for s in live:
            print(
                f"{s.name}: {s.version()}; ingest details: "
                + ", ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in ingest_info[s.name].items()
                    if k != "db_path"
                )
            )
        for s in live:
            if isinstance(s, ChromaSystem):
                print(f"chromadb: Settings.anonymized_telemetry={s.telemetry}")
        print(flush=True)

        searchable: list[System] = []
        for s in live:  # a search that fails outright drops that system, not the run
            try:
                for workload in WORKLOADS:
                    s.searcher(workload)(data.queries[0])
                searchable.append(s)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                skipped[s.name] = f"search failed: {exc!r}"
                rows = [r for r in rows if r.system != s.name]
        runs = run_searches(
            searchable, data.queries, args.repeats, args.max_pass_seconds, args.warmup
        )
        rows += search_rows(runs, gts, matched)
        for (name, _), run in runs.items():
            if run.error is not None:
                skipped.setdefault(name, run.error)
    finally:
        for system in systems:
            system.close()

    ratios = print_results(rows, skipped)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "memory",
                "environment": env,
                "data": data.source,
                "config": {
                    "n": n,
                    "queries": int(data.queries.shape[0]),
                    "k": K,
                    "M": M,
                    "ef_construction": EF_CONSTRUCTION,
                    "ef_search": EF_SEARCH,
                    "batch": args.batch,
                    "single": min(args.single, n),
                    "repeats": args.repeats,
                    "seed": args.seed,
                    "filters": {"session+lang": [SELECT_SESSION, SELECT_LANG]},
                    "matched_rows": matched,
                },
                "results": [
                    {
                        "system": r.system,
                        "workload": r.workload,
                        "inserts_per_s": r.inserts_per_s,
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                        "qps": r.qps,
                        "recall_at_10": r.recall,
                        "passes": r.passes,
                        "extra": {k: v for k, v in r.extra.items() if k != "db_path"},
                    }
                    for r in rows
                ],
                "ingest": {
                    k: {kk: vv for kk, vv in v.items() if kk != "db_path"}
                    for k, v in ingest_info.items()
                },
                "agentdb_vs_chromadb": ratios,
                "skipped": skipped,
            },
        )


if __name__ == "__main__":
    main()
