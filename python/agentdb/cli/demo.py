"""``agentdb demo``: build a real memory, search it, and time every step.

Uses the first ``n`` texts and all-MiniLM-L6-v2 vectors of the shared data set when present
(``../shared/data/minilm-pypi-100k`` or ``$AGENTDB_DEMO_DATA``), else a built-in sample of
agent tasks embedded with the hashing embedder. Recall is measured against exact search.

>>> report = run_demo(":memory:", n=300, queries=20, data_dir="/nonexistent", echo=None)
>>> report["patterns"]
300
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..engines import loader as _loader
from ..memory import AgentDB

__all__ = ["default_data_dir", "load_sample", "run_demo"]

_VERBS = ["parse", "validate", "cache", "retry", "summarise", "index", "deploy", "refactor",
          "profile", "test", "migrate", "monitor", "compress", "encrypt", "schedule", "rank"]
_OBJECTS = ["JSON payloads", "HTTP responses", "log files", "SQL queries", "user sessions",
            "CSV exports", "search results", "API tokens", "image thumbnails", "git diffs",
            "email threads", "sensor readings", "invoices", "chat transcripts"]
_CONTEXTS = ["for a batch job", "in a web service", "on a mobile client", "inside a CLI tool",
             "for a data pipeline", "under heavy load", "with strict latency limits",
             "in a notebook", "behind a rate limiter", "during an outage"]


def default_data_dir() -> Path:
    """Where the demo looks for the shared data set.

    >>> default_data_dir().name
    'minilm-pypi-100k'
    """
    env = os.environ.get("AGENTDB_DEMO_DATA")
    if env:
        return Path(env)
    return Path.cwd().parent / "shared" / "data" / "minilm-pypi-100k"


def _builtin_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{_VERBS[rng.integers(len(_VERBS))]} {_OBJECTS[rng.integers(len(_OBJECTS))]} "
            f"{_CONTEXTS[rng.integers(len(_CONTEXTS))]} (case {i})" for i in range(n)]


def load_sample(n: int, queries: int, data_dir: str | os.PathLike[str] | None = None
                ) -> tuple[list[str], np.ndarray | None, list[str], np.ndarray | None, str]:
    """``(texts, vectors, query_texts, query_vectors, source)``; vectors are None for the
    built-in sample (the store's embedder embeds the texts).

    >>> t, v, qt, qv, src = load_sample(5, 2, "/nonexistent"); len(t), v, src
    (5, None, 'built-in sample')
    """
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    if (d / "base.f16.npy").exists() and (d / "base.jsonl").exists():
        base = np.load(d / "base.f16.npy", mmap_mode="r")
        n = min(n, base.shape[0])
        vecs = np.ascontiguousarray(base[:n], dtype=np.float32)
        with open(d / "base.jsonl", encoding="utf-8") as fh:
            texts = [json.loads(next(fh))["text"] for _ in range(n)]
        q = np.load(d / "queries.f16.npy", mmap_mode="r")
        queries = min(queries, q.shape[0])
        qvecs = np.ascontiguousarray(q[:queries], dtype=np.float32)
        with open(d / "queries.jsonl", encoding="utf-8") as fh:
            qtexts = [json.loads(next(fh))["text"] for _ in range(queries)]
        return texts, vecs, qtexts, qvecs, f"{d} (all-MiniLM-L6-v2, 384-d)"
    texts = _builtin_texts(n, seed=1)
    qtexts = [t.rsplit(" (case", 1)[0] for t in _builtin_texts(queries, seed=2)]
    return texts, None, qtexts, None, "built-in sample"


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, p)) if xs else float("nan")


def run_demo(db_path: str = ":memory:", n: int = 10_000, queries: int = 200,
             data_dir: str | os.PathLike[str] | None = None,
             echo: Callable[[str], Any] | None = print, progress: bool | None = None
             ) -> dict[str, Any]:
    """Ingest ``n`` patterns, run searches with and without filters, return the timings."""
    say = echo or (lambda s: None)
    texts, vecs, qtexts, qvecs, source = load_sample(n, queries, data_dir)
    n = len(texts)
    if db_path != ":memory:":
        for suffix in ("", "-wal", "-shm", ".patterns.hnsw", ".episodes.hnsw", ".skills.hnsw",
                       ".graph", ".graph-meta"):
            if os.path.exists(db_path + suffix):
                os.remove(db_path + suffix)
    say(f"AgentDB demo: {n:,} patterns from {source}; backend={_loader.backend.BACKEND}")
    db = AgentDB(db_path, dim=384, progress=progress)
    rng = np.random.default_rng(7)
    rewards = rng.random(n).round(3)
    sessions = [f"agent-{i % 8}" for i in range(n)]
    t0 = time.perf_counter()
    if vecs is None:
        vecs = db.embedder.embed(texts)
        qvecs = db.embedder.embed(qtexts)
    embed_s = time.perf_counter() - t0
    assert qvecs is not None
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):
        db.store_patterns([{"task": texts[i], "embedding": vecs[i], "reward": float(rewards[i]),
                            "success": bool(rewards[i] >= 0.5), "session_id": sessions[i],
                            "metadata": {"source": "demo", "bucket": i % 10}}
                           for i in range(lo, min(n, lo + 1000))])
    ingest_s = time.perf_counter() - t0

    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    success_mask = rewards >= 0.5

    def run(filtered: bool) -> tuple[list[float], float]:
        lat, hits = [], 0
        for qi in range(len(qvecs)):
            t = time.perf_counter()
            res = db.search_patterns(qvecs[qi], k=10, success_only=filtered)
            lat.append(time.perf_counter() - t)
            scores = unit @ (qvecs[qi] / np.linalg.norm(qvecs[qi]))
            if filtered:
                scores = np.where(success_mask, scores, -np.inf)
            exact = set((np.argsort(-scores, kind="stable")[:10] + 1).tolist())
            hits += len(exact & {r.id for r in res})
        return lat, hits / (10 * len(qvecs))

    lat_all, rec_all = run(False)
    lat_f, rec_f = run(True)
    example = db.search_patterns(qtexts[0] if source == "built-in sample" else qvecs[0], k=3)
    db.store_skill("summarise_docs", "summarise package documentation into one line")
    db.store_episode("summarise a README", success=False, critique="too long; lead with "
                     "what the package does", skills=["summarise_docs"])
    critiques = db.critique_summary("write a one-line package summary")
    t0 = time.perf_counter()
    db.close()
    close_s = time.perf_counter() - t0
    reopen_s = float("nan")
    if db_path != ":memory:":
        t0 = time.perf_counter()
        db2 = AgentDB(db_path)
        reopen_s = time.perf_counter() - t0
        assert db2.count("patterns") == n
        db2.close()
    report = {
        "source": source, "patterns": n, "backend": _loader.backend.BACKEND,
        "embed_s": embed_s, "ingest_per_s": n / ingest_s, "ingest_s": ingest_s,
        "search_p50_ms": _pct(lat_all, 50), "search_p99_ms": _pct(lat_all, 99),
        "recall_at_10": rec_all,
        "filtered_p50_ms": _pct(lat_f, 50), "filtered_p99_ms": _pct(lat_f, 99),
        "filtered_recall_at_10": rec_f, "close_s": close_s, "reopen_s": reopen_s,
        "example_query": qtexts[0], "example_hits": [r.record.task for r in example],
        "critiques": critiques,
    }
    say(f"  ingest            {n:,} patterns in {ingest_s:.2f} s  ({n / ingest_s:,.0f}/s)")
    say(f"  search k=10       p50 {report['search_p50_ms']:.3f} ms  p99 "
        f"{report['search_p99_ms']:.3f} ms  recall@10 {rec_all:.3f}  ({len(qvecs)} queries)")
    say(f"  + success filter  p50 {report['filtered_p50_ms']:.3f} ms  p99 "
        f"{report['filtered_p99_ms']:.3f} ms  recall@10 {rec_f:.3f}")
    say(f"  close (save index) {close_s:.2f} s   reopen {reopen_s:.2f} s")
    say(f"  query: {qtexts[0]!r}")
    for t in report["example_hits"]:
        say(f"    -> {t}")
    say(f"  critique_summary: {critiques}")
    return report


def register(app: Any) -> None:
    """Add ``agentdb demo`` to ``app`` (called by :func:`agentdb.cli._build_app`)."""
    import typer

    from .common import JSON_OPT as json_opt
    from .common import emit, fail, out

    @app.command()
    def demo(db: str = typer.Option("agentdb-demo.db", "--db"),
             n: int = typer.Option(10_000, "--n", help="Patterns to ingest."),
             queries: int = typer.Option(200, "--queries"),
             data: str = typer.Option(None, "--data", help="Data set folder."),
             as_json: bool = json_opt) -> None:
        """Build a memory from real data, search it, print timings (the main job)."""
        if n < 1 or queries < 1:
            fail("--n and --queries must be >= 1")
        report = run_demo(db, n=n, queries=queries, data_dir=data,
                          echo=None if as_json else out.print, progress=not as_json)
        if as_json:
            emit(report, True)
