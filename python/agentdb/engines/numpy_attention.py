"""Pure-numpy attention kernels: the fallback of the native ones and their reference.

Same functions, arguments, results and errors as the attention section of the C++ extension
(``cpp/attention.hpp``, bound in ``cpp/bindings/``);
``agentdb.engines.loader.attention_backend()``
picks one. Everything is float32 in and out (hyperbolic attention and the gating softmax
compute in float64 internally). The math, per query row ``q`` (``m`` queries, ``n`` keys):

* :func:`sdpa` -- ``out = sum_j w_j v_j`` with ``w = softmax(scale * K q)``, scale defaulting
  to ``1/sqrt(d)``; the softmax subtracts the row maximum first, so large logits cannot
  overflow.
* :func:`multi_head_attention` -- head ``h`` of ``H`` is :func:`sdpa` on columns
  ``[h*d/H, (h+1)*d/H)`` of queries and keys and ``[h*dv/H, (h+1)*dv/H)`` of the values; the
  head outputs are concatenated in head order (scale defaults to ``1/sqrt(d/H)``).
* :func:`flash_attention` -- the :func:`sdpa` output computed over blocks of ``block_size``
  keys with the online softmax (running max ``M``, running sum ``l``, rescaled accumulator).
* :func:`hyperbolic_attention` -- Poincare ball of curvature ``-c``:
  ``w = softmax(-beta * d_c(q, k_j))`` with
  ``d_c(x, y) = (2/sqrt c) artanh(sqrt c |(-x) (+)_c y|) = acosh(1 + 2t) / sqrt c``,
  ``t = c|x-y|^2 / ((1 - c|x|^2)(1 - c|y|^2))``, and ``out = exp0(sum_j w_j log0(v_j))``
  (the weighted mean of the values in the tangent space at the origin, mapped back), with
  ``tanh`` in ``exp0`` clipped to ``1 - 1e-5`` so the result is strictly inside the ball.
  Queries, keys and values must satisfy ``c |x|^2 <= 1 - 1e-6``.
* :func:`moe_gating` -- the ``k`` largest of ``x @ gate + bias`` per row, best first, ties to
  the lower expert id, and the softmax over those ``k`` logits.

Inputs follow the package rule ``np.ascontiguousarray(x, dtype=float32)`` (other real dtypes
and layouts are copied; bool/complex/object raise ``TypeError``); NaN/inf, empty or
wrongly-shaped input raises ``ValueError`` naming the argument. A 1-D query (or ``x``) gives
results without the query axis. ``threads`` is accepted for API parity and ignored here.

>>> import numpy as np
>>> K = np.eye(3, dtype=np.float32)
>>> out, w = sdpa(K[0] * 10, K, np.arange(9, dtype=np.float32).reshape(3, 3),
...               return_weights=True)
>>> [round(float(x), 3) for x in w], [round(float(x), 2) for x in out]
([0.994, 0.003, 0.003], [0.03, 1.03, 2.03])
"""

from __future__ import annotations

import math
from typing import Final, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .numpy_checks import as_int, as_matrix, check_threads

__all__ = [
    "BALL_CLIP",
    "BALL_MARGIN",
    "expmap0",
    "flash_attention",
    "hyperbolic_attention",
    "logmap0",
    "moe_gating",
    "multi_head_attention",
    "project",
    "sdpa",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
AttnResult = Union[F32, "tuple[F32, F32]"]

#: Inputs of hyperbolic attention must satisfy ``c |x|^2 <= 1 - BALL_MARGIN``.
BALL_MARGIN: Final = 1e-6
#: ``exp0`` (and the hyperbolic output) clip ``tanh(sqrt(c)|u|)`` to ``1 - BALL_CLIP``.
BALL_CLIP: Final = 1e-5

_OVERFLOW: Final = (
    "attention produced NaN or infinity: logits or values overflow float32 (scale them down)"
)


# ---- argument checks (messages shared with cpp/bindings/attention.cpp) ----------------------
def _real(value: object, name: str) -> float:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a real number")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number") from None


def _positive(value: object, name: str, allow_zero: bool = False) -> float:
    v = _real(value, name)
    if not math.isfinite(v) or v < 0.0 or (v == 0.0 and not allow_zero):
        raise ValueError(
            f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}"
        )
    return v


def _rows(x: ArrayLike, what: str) -> F32:
    arr, one = as_matrix(x, what)
    if one:
        raise ValueError(f"{what} must be 2-D (rows, dim), got 1-D")
    return arr


def _inputs(q: ArrayLike, k: ArrayLike, v: ArrayLike) -> tuple[F32, bool, F32, F32]:
    Q, one = as_matrix(q, "queries")
    K = _rows(k, "keys")
    V = _rows(v, "values")
    if Q.shape[1] != K.shape[1]:
        raise ValueError(
            f"dimension mismatch: queries have dim {Q.shape[1]}, keys have dim {K.shape[1]}"
        )
    if K.shape[0] != V.shape[0]:
        raise ValueError(
            "keys and values must have the same number of rows, got "
            f"{K.shape[0]} keys and {V.shape[0]} values"
        )
    return Q, one, K, V


def _check_heads(heads: object, d: int, dv: int) -> int:
    h = as_int(heads, "heads")
    if h < 1:
        raise ValueError(f"heads must be >= 1, got {h}")
    if d % h:
        raise ValueError(f"heads={h} does not divide the query/key dim {d}")
    if dv % h:
        raise ValueError(f"heads={h} does not divide the value dim {dv}")
    return h


def _finite_or_raise(*arrays: np.ndarray) -> None:
    for a in arrays:
        if not np.isfinite(a).all():
            raise ValueError(_OVERFLOW)


def _softmax_(S: np.ndarray) -> np.ndarray:
    """Row softmax over the last axis, in place (max subtracted first)."""
    S -= S.max(axis=-1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    return S


# ---- dot-product attention ------------------------------------------------------------------
def _dot_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    heads: object,
    scale: object,
    return_weights: bool,
    threads: object,
    head_axis: bool,
) -> AttnResult:
    check_threads(threads)
    Q, one, K, V = _inputs(queries, keys, values)
    (m, d), (n, dv) = Q.shape, V.shape
    h = _check_heads(heads, d, dv)
    dh, dvh = d // h, dv // h
    s = 1.0 / math.sqrt(dh) if scale is None else _positive(scale, "scale")
    with np.errstate(over="ignore", invalid="ignore"):
        if h == 1:
            S = (Q @ K.T)[None]
        else:
            Qh = Q.reshape(m, h, dh).transpose(1, 0, 2)  # (h, m, dh)
            S = np.matmul(Qh, K.reshape(n, h, dh).transpose(1, 2, 0))  # (h, m, n)
        S *= np.float32(s)
        _finite_or_raise(S)
        _softmax_(S)  # (h, m, n)
        if h == 1:
            out = S[0] @ V
        else:
            out = np.matmul(S, V.reshape(n, h, dvh).transpose(1, 0, 2))
            out = out.transpose(1, 0, 2).reshape(m, dv)
    _finite_or_raise(out)
    out = np.ascontiguousarray(out, dtype=np.float32)
    if one:
        out = out[0]
    if not return_weights:
        return out
    W = S if head_axis else S[0]
    if one:
        W = W[:, 0] if head_axis else W[0]
    return out, np.ascontiguousarray(W, dtype=np.float32)


def sdpa(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    scale: float | None = None,
    return_weights: bool = False,
    threads: int = 0,
) -> AttnResult:
    """``softmax(Q K^T * scale) V``: ``(m, dv)`` (or ``(dv,)`` for a 1-D query), with the
    weights ``(m, n)`` / ``(n,)`` when ``return_weights`` (two-pass softmax). Examples:
    :func:`agentdb.engines.attention.scaled_dot_product_attention`."""
    return _dot_attention(queries, keys, values, 1, scale, return_weights, threads, False)


def multi_head_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    heads: int,
    scale: float | None = None,
    return_weights: bool = False,
    threads: int = 0,
) -> AttnResult:
    """Per-head :func:`sdpa` on column slices, outputs concatenated; weights ``(h, m, n)``
    (``(h, n)`` for a 1-D query). ``scale`` defaults to ``1/sqrt(d/heads)``. Examples:
    :func:`agentdb.engines.attention.multi_head_attention`."""
    return _dot_attention(queries, keys, values, heads, scale, return_weights, threads, True)


def flash_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    scale: float | None = None,
    block_size: int = 256,
    threads: int = 0,
) -> F32:
    """:func:`sdpa`'s output over blocks of ``block_size`` keys with the online softmax (a
    Python loop over blocks). Examples: :func:`agentdb.engines.attention.flash_attention`."""
    check_threads(threads)
    block = as_int(block_size, "block_size")
    if block < 1:
        raise ValueError(f"block_size must be >= 1, got {block}")
    Q, one, K, V = _inputs(queries, keys, values)
    s = np.float32(1.0 / math.sqrt(Q.shape[1]) if scale is None else _positive(scale, "scale"))
    m, n = Q.shape[0], K.shape[0]
    run_max = np.full(m, -np.inf, dtype=np.float32)
    run_sum = np.zeros(m, dtype=np.float32)
    acc = np.zeros((m, V.shape[1]), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for b0 in range(0, n, block):
            S = Q @ K[b0 : b0 + block].T
            S *= s
            _finite_or_raise(S)
            new_max = np.maximum(run_max, S.max(axis=1))
            alpha = np.exp(run_max - new_max)  # 0 on the first block
            S -= new_max[:, None]
            np.exp(S, out=S)
            run_sum = run_sum * alpha + S.sum(axis=1)
            acc *= alpha[:, None]
            acc += S @ V[b0 : b0 + block]
            run_max = new_max
        out = acc / run_sum[:, None]
    _finite_or_raise(out)
    return out[0] if one else out


# ---- hyperbolic attention -------------------------------------------------------------------
def _ball_gaps(X: F32, c: float, what: str) -> F64:
    """``1 - c|x|^2`` per row, checking every row is strictly inside the ball."""
    cn = c * np.einsum("ij,ij->i", X, X, dtype=np.float64)
    bad = np.flatnonzero(~(cn <= 1.0 - BALL_MARGIN))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{what} row {i} is not strictly inside the Poincare ball of curvature c={c:g} "
            f"(c*|x|^2 = {cn[i]:g}, must be <= 1 - 1e-6); map Euclidean vectors into the "
            "ball with expmap0() or project()"
        )
    return 1.0 - cn


def _exp0_rows(u: F64, c: float) -> F64:
    """exp0 of float64 rows with ``tanh`` clipped to ``1 - BALL_CLIP``."""
    sc = math.sqrt(c)
    nu = np.linalg.norm(u, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(nu > 0, np.minimum(np.tanh(sc * nu), 1.0 - BALL_CLIP) / (sc * nu), 0.0)
    return u * f


def _log0_factor(norm: F64, c: float) -> F64:
    """``artanh(sqrt(c) r) / (sqrt(c) r)`` (1 at r = 0): log0(x) = factor * x."""
    r = math.sqrt(c) * norm
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, np.arctanh(np.minimum(r, 1.0)) / np.where(r > 0, r, 1.0), 1.0)


def hyperbolic_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    c: float = 1.0,
    beta: float = 1.0,
    return_weights: bool = False,
    threads: int = 0,
) -> AttnResult:
    """Poincare-ball attention: weights ``softmax(-beta d_c(q, k_j))``, output
    ``exp0(sum_j w_j log0(v_j))`` (see the module docstring), in float64 internally.

    >>> K = np.array([[0.5, 0.0], [-0.5, 0.0]], dtype=np.float32)
    >>> out, w = hyperbolic_attention([0.0, 0.0], K, K, return_weights=True)
    >>> w.tolist(), bool(np.abs(out).max() < 1e-6)
    ([0.5, 0.5], True)
    """
    check_threads(threads)
    cc = _positive(c, "c")
    b = _positive(beta, "beta", allow_zero=True)
    Q, one, K, V = _inputs(queries, keys, values)
    bq, bk = _ball_gaps(Q, cc, "queries"), _ball_gaps(K, cc, "keys")
    bv = _ball_gaps(V, cc, "values")
    Q64, K64 = Q.astype(np.float64), K.astype(np.float64)
    qn, kn = 1.0 - bq, 1.0 - bk  # c |x|^2
    l2 = np.maximum((qn[:, None] + kn[None, :]) / cc - 2.0 * (Q64 @ K64.T), 0.0)
    t = cc * l2 / (bq[:, None] * bk[None, :])
    dist = np.log1p(2.0 * t + 2.0 * np.sqrt(t * (1.0 + t))) / math.sqrt(cc)
    W = _softmax_(-b * dist)
    lam = _log0_factor(np.sqrt((1.0 - bv) / cc), cc)
    out = _exp0_rows(W @ (lam[:, None] * V.astype(np.float64)), cc).astype(np.float32)
    W32 = W.astype(np.float32)
    if one:
        out, W32 = out[0], W32[0]
    return (out, W32) if return_weights else out


def expmap0(v: ArrayLike, *, c: float = 1.0) -> F32:
    """Map Euclidean (tangent) vectors into the Poincare ball: ``tanh(sqrt(c)|v|) v /
    (sqrt(c)|v|)`` along the last axis, with ``tanh`` clipped to ``1 - 1e-5`` so every result
    is strictly inside (``c|x|^2 <= (1 - 1e-5)^2``).

    >>> [round(float(v), 4) for v in expmap0([3.0, 4.0])]
    [0.5999, 0.7999]
    >>> [round(float(v), 4) for v in expmap0([0.3, 0.4])]
    [0.2773, 0.3697]
    """
    cc = _positive(c, "c")
    arr = _as_finite(v, "v")
    return _exp0_rows(arr.astype(np.float64), cc).astype(np.float32)


def logmap0(x: ArrayLike, *, c: float = 1.0) -> F32:
    """Inverse of :func:`expmap0`: ``artanh(sqrt(c)|x|) x / (sqrt(c)|x|)`` along the last
    axis; every point must be strictly inside the ball (``c|x|^2 < 1``).

    >>> [round(float(v), 4) for v in logmap0(expmap0([0.3, 0.4]))]
    [0.3, 0.4]
    """
    cc = _positive(c, "c")
    arr = _as_finite(x, "x").astype(np.float64)
    norm = np.linalg.norm(arr, axis=-1, keepdims=True)
    if not (cc * norm * norm < 1.0).all():
        raise ValueError(f"x must be strictly inside the Poincare ball (c*|x|^2 < 1, c={cc:g})")
    return (_log0_factor(norm, cc) * arr).astype(np.float32)


def project(x: ArrayLike, *, c: float = 1.0, eps: float = 1e-5) -> F32:
    """Rescale vectors (last axis) whose norm exceeds ``(1 - eps)/sqrt(c)`` to that norm;
    others are unchanged. Use it to pull near-boundary points safely inside the ball.

    >>> [round(float(v), 4) for v in project([3.0, 4.0])], project([0.3, 0.4]).tolist()
    ([0.6, 0.8], [0.30000001192092896, 0.4000000059604645])
    """
    cc = _positive(c, "c")
    e = _positive(eps, "eps")
    if e >= 1.0:
        raise ValueError(f"eps must be < 1, got {eps!r}")
    arr = _as_finite(x, "x").astype(np.float64)
    limit = (1.0 - e) / math.sqrt(cc)
    norm = np.linalg.norm(arr, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(norm > limit, limit / norm, 1.0)
    return (arr * f).astype(np.float32)


def _as_finite(x: ArrayLike, what: str) -> F32:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty vector or matrix")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinity")
    return arr


# ---- mixture-of-experts gating --------------------------------------------------------------
def moe_gating(
    x: ArrayLike,
    gate: ArrayLike,
    *,
    k: int = 2,
    bias: ArrayLike | None = None,
    threads: int = 0,
) -> tuple[I64, F32]:
    """Top-``k`` experts of ``x @ gate + bias`` per row: ``(ids int64 (m, k), weights float32
    (m, k))``, best first, ties to the lower expert id (a stable sort), weights = softmax over
    the ``k``. Examples: :func:`agentdb.engines.attention.moe_gating`."""
    check_threads(threads)
    kk = as_int(k, "k")
    X, one = as_matrix(x, "x")
    G = _rows(gate, "gate")
    if G.shape[0] != X.shape[1]:
        raise ValueError(
            f"dimension mismatch: x has dim {X.shape[1]}, gate has {G.shape[0]} rows "
            "(expected (dim, experts))"
        )
    E = G.shape[1]
    if not 1 <= kk <= E:
        raise ValueError(f"k must be in [1, {E}] (the number of experts), got {kk}")
    with np.errstate(over="ignore", invalid="ignore"):
        logits = X @ G
        if bias is not None:
            B, b_one = as_matrix(bias, "bias")
            if not b_one or B.shape[1] != E:
                raise ValueError(f"bias must have shape ({E},), got {np.shape(bias)}")
            logits += B[0]
    if not np.isfinite(logits).all():
        raise ValueError("gate logits overflow float32 (scale x or gate down)")
    ids = np.argsort(-logits, axis=1, kind="stable")[:, :kk].astype(np.int64)
    top = np.take_along_axis(logits, ids, axis=1).astype(np.float64)
    e = np.exp(top - top[:, :1])
    w = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return (ids[0], w[0]) if one else (ids, w)
