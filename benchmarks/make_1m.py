"""Derive a 1M x 384 data set from the shared 100k MiniLM vectors, with exact ground truth.

No 1M set of real MiniLM vectors is on these machines, and nothing may be downloaded, so this
script grows the shared one ten-fold along its own neighbourhoods (deterministic, ``--seed``):

* rows ``10 i`` are the 100k originals (``base.f16.npy`` of ``minilm-pypi-100k``);
* rows ``10 i + c`` (c = 1..9) are ``normalize(x_i + t (x_j - x_i) + e)``: a point between
  ``x_i`` and one of its 20 exact nearest neighbours ``x_j`` (chosen at random), ``t`` uniform
  in [0.1, 0.9], plus Gaussian noise ``e`` of norm about ``--noise`` (default 0.05) -- new
  points on the data's own manifold at ten times its density, not copies of it;
* the 1,000 queries are the shared queries, unchanged;
* ``gt_top100.npy``: the exact cosine top-100 of every query over the 1M rows, computed with
  ``agentdb.exact_search`` (the batch tile kernel; about 10 s here) and spot-checked against
  numpy on 20 queries.

The neighbour lists of the 100k originals come from ``agentdb.exact_search`` too (100k x 100k,
about a minute on 2 cores). The output folder has the layout of the shared one, so every
benchmark takes it with ``--data``::

    python benchmarks/make_1m.py --out /tmp/minilm-pypi-1m
    python benchmarks/ann.py --data /tmp/minilm-pypi-1m --libs agentdb,hnswlib --build-threads 2

It writes ``base.f16.npy`` (768 MB), ``queries.f16.npy``, ``gt_top100.npy`` and a README.md
saying how the set was made.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import DEFAULT_DATA_DIR, add_backend_options, import_agentdb, log, normalize_rows


def grow(base: np.ndarray, agentdb: object, factor: int, noise: float, seed: int,
         neighbours: int = 20) -> np.ndarray:
    """``factor`` rows per original: the original, then points towards random neighbours."""
    n, d = base.shape
    log(f"exact {neighbours} nearest neighbours of the {n} originals")
    t0 = time.perf_counter()
    nbr, _ = agentdb.exact_search(base, base, k=neighbours + 1, metric="cosine")  # type: ignore[attr-defined]
    log(f"neighbours in {time.perf_counter() - t0:.1f} s")
    nbr = np.asarray(nbr)[:, 1:]  # drop the row itself
    rng = np.random.default_rng(seed)
    out = np.empty((n * factor, d), dtype=np.float32)
    out[0::factor] = base
    for c in range(1, factor):
        j = nbr[np.arange(n), rng.integers(0, neighbours, n)]
        t = rng.uniform(0.1, 0.9, (n, 1)).astype(np.float32)
        e = rng.standard_normal((n, d), dtype=np.float32) * np.float32(noise / np.sqrt(d))
        out[c::factor] = normalize_rows(base + t * (base[j] - base) + e)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="the 100k folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--factor", type=int, default=10, help="rows per original (10 -> 1M)")
    p.add_argument("--noise", type=float, default=0.05, help="norm of the added noise")
    p.add_argument("--seed", type=int, default=0)
    add_backend_options(p)
    args = p.parse_args(argv)
    agentdb, note = import_agentdb(args.src)
    print(note)
    base = np.load(args.data / "base.f16.npy").astype(np.float32)
    queries = np.load(args.data / "queries.f16.npy")
    big = grow(base, agentdb, args.factor, args.noise, args.seed)
    big16 = big.astype(np.float16)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "base.f16.npy", big16)
    np.save(args.out / "queries.f16.npy", queries)
    log(f"exact top-100 of {len(queries)} queries over {len(big16)} rows")
    t0 = time.perf_counter()
    x32 = big16.astype(np.float32)  # the stored (float16) values, as every benchmark reads them
    q32 = queries.astype(np.float32)
    gt, _ = agentdb.exact_search(q32, x32, k=100, metric="cosine")
    gt_s = time.perf_counter() - t0
    np.save(args.out / "gt_top100.npy", np.asarray(gt, dtype=np.int32))
    # spot check: numpy's exact cosine top-10 for 20 queries
    xn = normalize_rows(x32)
    qn = normalize_rows(q32[:20])
    sims = qn @ xn.T
    ref = np.argsort(-sims, axis=1)[:, :10]
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, np.asarray(gt)[:20, :10])])
    print(f"ground truth in {gt_s:.1f} s; top-10 agreement with numpy on 20 queries: {agree:.3f}")
    (args.out / "README.md").write_text(
        f"# minilm-pypi-1m (derived)\n\nMade by `benchmarks/make_1m.py --factor {args.factor} "
        f"--noise {args.noise} --seed {args.seed}` from `{args.data}`: rows 10i are the "
        f"{len(base)} originals, rows 10i+c points between an original and one of its 20 exact "
        "nearest neighbours (t ~ U[0.1, 0.9]) plus Gaussian noise, re-normalised; the queries "
        "are the shared ones; `gt_top100.npy` is the exact cosine top-100 over the stored "
        f"float16 rows (agentdb.exact_search, {gt_s:.1f} s).\n")
    print(f"wrote {args.out}: {big16.shape[0]} x {big16.shape[1]} float16")
    return 0 if agree == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
