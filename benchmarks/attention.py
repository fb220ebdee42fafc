"""Attention benchmark: AgentDB's native attention kernels vs plain numpy doing the same math.

Cases (d = 384, values = keys unless said otherwise):

* SDPA, one query over n = 1k / 10k / 100k keys, and a batch of 64 queries over 10k keys;
* multi-head attention, h = 8, one query and 64 queries over 10k keys;
* flash attention (online softmax over key blocks of 256) vs the same tiled loop in numpy,
  one query over 100k keys and 64 queries over 10k keys;
* hyperbolic attention (keys/values = expmap0 of the vectors; c = 1, beta = 1), one query and
  64 queries over 10k keys;
* MoE top-2 gating, m = 1024 rows, d = 384, E = 16 experts.

"numpy" is a direct implementation written here (matmul, max-subtracted softmax, matmul) --
not agentdb's numpy fallback -- timed in the same run; numpy's BLAS keeps its default threads
and the native kernels use all cores (``threads=0``); the "native 1t" column is the native
kernel on one thread. Each time is the median of repeated, calibrated loops
(``_common.time_per_call``). Keys are the first n rows of
``../shared/data/minilm-pypi-100k/base.f16.npy`` (queries from ``queries.f16.npy``) when the
data set is present, random unit vectors otherwise.

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead, which usually lacks the compiled extension. Without the native
kernels there is nothing to compare with numpy, so the run is refused on the numpy fallback
unless ``--allow-fallback`` is given (then only the numpy column is filled).

``kernel_table(agentdb, quick=False)`` returns the rows as dicts so another benchmark can print
them::

    python benchmarks/attention.py            # full run
    python benchmarks/attention.py --quick    # fewer repeats
    python benchmarks/attention.py --runs 3   # best median of 3 passes (shared machines)
    python benchmarks/attention.py --json attention.json
"""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from _common import (
    DEFAULT_DATA_DIR,
    add_backend_options,
    environment,
    import_agentdb,
    log,
    normalize_rows,
    print_header,
    print_table,
    require_native_for_peers,
    settle,
    time_per_call,
    write_json,
)

D = 384
BLOCK = 256


BASE_PATH = DEFAULT_DATA_DIR / "base.f16.npy"
QUERY_PATH = DEFAULT_DATA_DIR / "queries.f16.npy"


def data_source() -> str:
    """Where the keys come from."""
    if BASE_PATH.exists() and QUERY_PATH.exists():
        return f"{BASE_PATH} (MiniLM embeddings; queries from {QUERY_PATH.name})"
    return f"random unit vectors ({DEFAULT_DATA_DIR} not found)"


def load_vectors(n: int = 100_000, n_queries: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(keys (n, 384), queries (n_queries, 384)) as float32, see :func:`data_source`."""
    if BASE_PATH.exists() and QUERY_PATH.exists():
        keys = np.load(BASE_PATH)[:n].astype(np.float32)
        queries = np.load(QUERY_PATH)[:n_queries].astype(np.float32)
        return keys, queries
    rng = np.random.default_rng(0)
    keys = normalize_rows(rng.standard_normal((n, D), dtype=np.float32))
    queries = normalize_rows(rng.standard_normal((n_queries, D), dtype=np.float32))
    return keys, queries


# --------------------------------------------------------------------------- plain numpy


def np_sdpa(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> np.ndarray:
    S = (Q @ K.T) * np.float32(1.0 / math.sqrt(K.shape[1]))
    S -= S.max(axis=-1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    return S @ V


def np_mha(Q: np.ndarray, K: np.ndarray, V: np.ndarray, h: int) -> np.ndarray:
    Q2 = np.atleast_2d(Q)
    m, (n, d), dv = Q2.shape[0], K.shape, V.shape[1]
    Qh = Q2.reshape(m, h, d // h).transpose(1, 0, 2)
    S = np.matmul(Qh, K.reshape(n, h, d // h).transpose(1, 2, 0))
    S *= np.float32(1.0 / math.sqrt(d // h))
    S -= S.max(axis=-1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    out = np.matmul(S, V.reshape(n, h, dv // h).transpose(1, 0, 2))
    return out.transpose(1, 0, 2).reshape(m, dv)


def np_flash(Q: np.ndarray, K: np.ndarray, V: np.ndarray, block: int = BLOCK) -> np.ndarray:
    Q2 = np.atleast_2d(Q)
    scale = np.float32(1.0 / math.sqrt(K.shape[1]))
    run_max = np.full(Q2.shape[0], -np.inf, dtype=np.float32)
    run_sum = np.zeros(Q2.shape[0], dtype=np.float32)
    acc = np.zeros((Q2.shape[0], V.shape[1]), dtype=np.float32)
    for b0 in range(0, K.shape[0], block):
        S = (Q2 @ K[b0 : b0 + block].T) * scale
        new_max = np.maximum(run_max, S.max(axis=1))
        alpha = np.exp(run_max - new_max)
        S = np.exp(S - new_max[:, None])
        run_sum = run_sum * alpha + S.sum(axis=1)
        acc = acc * alpha[:, None] + S @ V[b0 : b0 + block]
        run_max = new_max
    return acc / run_sum[:, None]


def np_hyperbolic(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> np.ndarray:
    """c = 1, beta = 1: softmax(-d(q, k)) and exp0(sum w log0 v), float32 throughout."""
    Q2 = np.atleast_2d(Q)
    qq = (Q2 * Q2).sum(1)
    kk = (K * K).sum(1)
    l2 = np.maximum(qq[:, None] + kk[None, :] - 2.0 * (Q2 @ K.T), 0.0)
    t = l2 / ((1.0 - qq)[:, None] * (1.0 - kk)[None, :])
    S = -np.log1p(2.0 * t + 2.0 * np.sqrt(t * (1.0 + t)))
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    vn = np.linalg.norm(V, axis=1, keepdims=True)
    U = S @ (np.arctanh(vn) / np.maximum(vn, 1e-30) * V)
    un = np.linalg.norm(U, axis=1, keepdims=True)
    return np.minimum(np.tanh(un), 1 - 1e-5) / np.maximum(un, 1e-30) * U


def np_moe(X: np.ndarray, W: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    L = X @ W + b
    ids = np.argsort(-L, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(L, ids, axis=1)
    e = np.exp(top - top[:, :1])
    return ids, e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- the table


def kernel_table(agentdb: ModuleType, quick: bool = False, runs: int = 1) -> list[dict[str, Any]]:
    """Time every case; one dict per row: ``case``, ``native_ms`` (all cores),
    ``native_1t_ms``, ``numpy_ms``, ``speedup`` (numpy / native), ``max_abs_diff`` (native vs
    numpy output). ``native_*`` are None when the native attention kernels are not built.

    ``agentdb`` is the module from ``_common.import_agentdb`` (the caller decides where it
    comes from and whether the fallback may be reported).

    ``runs > 1`` times the whole table that many times and keeps, per cell, the smallest of
    the medians: on a shared machine a burst of other work spoils whole rows of one pass."""
    _loader = importlib.import_module(f"{agentdb.__name__}.engines.loader")
    attention = importlib.import_module(f"{agentdb.__name__}.engines.attention")
    nat = _loader.attention_backends().get("native")
    repeats, min_time = (3, 0.05) if quick else (7, 0.3)
    keys, queries = load_vectors()
    K1k, K10k, K100k = keys[:1000], keys[:10_000], keys
    q, Q64 = queries[0], queries[:64]
    Kh = attention.expmap0(K10k)
    qh, Qh = attention.expmap0(q), attention.expmap0(Q64)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((1024, D), dtype=np.float32)
    Wg = rng.standard_normal((D, 16), dtype=np.float32) / np.float32(math.sqrt(D))
    bg = rng.standard_normal(16, dtype=np.float32) * np.float32(0.1)

    Fn = Callable[..., Any]
    cases: list[tuple[str, Fn | None, Fn]] = []

    def case(name: str, native: Fn | None, numpy: Fn) -> None:
        cases.append((name, native, numpy))

    def bind(fn: str, *args: Any, **kw: Any) -> Fn | None:
        if nat is None:
            return None
        f = getattr(nat, fn)
        return lambda threads=0: f(*args, threads=threads, **kw)

    for label, K in (("1k", K1k), ("10k", K10k), ("100k", K100k)):
        case(f"sdpa 1 q x {label}", bind("sdpa", q, K, K), lambda K=K: np_sdpa(q, K, K))
    case("sdpa 64 q x 10k", bind("sdpa", Q64, K10k, K10k), lambda: np_sdpa(Q64, K10k, K10k))
    case("mha h=8 1 q x 10k", bind("multi_head_attention", q, K10k, K10k, heads=8),
         lambda: np_mha(q, K10k, K10k, 8))
    case("mha h=8 64 q x 10k", bind("multi_head_attention", Q64, K10k, K10k, heads=8),
         lambda: np_mha(Q64, K10k, K10k, 8))
    case("flash 1 q x 100k", bind("flash_attention", q, K100k, K100k),
         lambda: np_flash(q, K100k, K100k))
    case("flash 64 q x 10k", bind("flash_attention", Q64, K10k, K10k),
         lambda: np_flash(Q64, K10k, K10k))
    case("hyperbolic 1 q x 10k", bind("hyperbolic_attention", qh, Kh, Kh),
         lambda: np_hyperbolic(qh, Kh, Kh))
    case("hyperbolic 64 q x 10k", bind("hyperbolic_attention", Qh, Kh, Kh),
         lambda: np_hyperbolic(Qh, Kh, Kh))
    case("moe top-2 1024 x 384, E=16", bind("moe_gating", X, Wg, k=2, bias=bg),
         lambda: np_moe(X, Wg, bg, 2))

    def best(old: float | None, new: float | None) -> float | None:
        return new if old is None else old if new is None else min(old, new)

    rows: list[dict[str, Any]] = [
        {"case": name, "native_ms": None, "native_1t_ms": None, "numpy_ms": None,
         "speedup": None, "max_abs_diff": None}
        for name, _, _ in cases
    ]
    for run in range(max(1, runs)):
        for row, (name, native, numpy) in zip(rows, cases):
            log(f"{name} (pass {run + 1}/{runs})")
            settle(0.3)
            row["numpy_ms"] = best(row["numpy_ms"], time_per_call(numpy, repeats, min_time) * 1e3)
            if native is None:
                continue
            settle(0.3)
            t_nat = time_per_call(native, repeats, min_time) * 1e3
            t_1t = time_per_call(lambda native=native: native(threads=1), repeats, min_time)
            row["native_ms"] = best(row["native_ms"], t_nat)
            row["native_1t_ms"] = best(row["native_1t_ms"], t_1t * 1e3)
            if row["max_abs_diff"] is None:
                a, b = native(), numpy()
                a, b = (a[1], b[1]) if isinstance(a, tuple) else (a, b)  # moe: the weights
                diff = np.abs(np.asarray(a, np.float64).reshape(np.shape(b)) - b).max()
                row["max_abs_diff"] = float(diff)
    for row in rows:
        if row["native_ms"] is not None:
            row["speedup"] = row["numpy_ms"] / row["native_ms"]
    return rows


def format_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows of :func:`kernel_table` as printable cells."""

    def ms(x: float | None) -> str | None:
        return None if x is None else f"{x:.3f}"

    return [
        [r["case"], ms(r["native_ms"]), ms(r["native_1t_ms"]), ms(r["numpy_ms"]),
         None if r["speedup"] is None else f"{r['speedup']:.2f}x",
         None if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"]
        for r in rows
    ]


HEADERS = ["case", "native ms", "native 1t ms", "numpy ms", "numpy/native", "max |diff|"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    p.add_argument("--runs", type=int, default=1,
                   help="time the table this many times, keep each cell's best median")
    p.add_argument("--json", help="also write the rows and the environment to this file")
    add_backend_options(p)
    args = p.parse_args(argv)
    agentdb, note = import_agentdb(args.src)
    require_native_for_peers(agentdb, args.allow_fallback, "agentdb attention kernels vs numpy")
    env = environment(agentdb, note)
    print_header("AgentDB attention kernels vs plain numpy", env)
    rows = kernel_table(agentdb, quick=args.quick, runs=args.runs)
    print_table(
        f"attention (d=384, medians; best of {max(1, args.runs)} passes)", HEADERS,
        format_rows(rows),
        note=f"keys: {data_source()}\nnumpy/native above 1 = native faster; native uses all cores, "
        "'1t' one thread; numpy BLAS uses its default threads",
    )
    if args.json:
        write_json(args.json, {"environment": env, "rows": rows})


if __name__ == "__main__":
    main()
