"""Attention kernels for agent memory: dot-product, multi-head, flash, hyperbolic, MoE gating.

Every function runs on the native extension when it is built (SIMD kernels, the GIL released,
work split over cores) and on the pure-numpy fallback otherwise, with the same results to
float32 rounding; ``backend="native"`` / ``"numpy"`` picks one explicitly. The math and the
input rules are documented in :mod:`agentdb.engines.numpy_attention` (the reference): float32 in and
out, a 1-D query gives results without the query axis, NaN/inf / empty / mismatched input
raises ``ValueError`` (``TypeError`` for non-numeric data), non-contiguous or other-dtype input
is copied.

:class:`AttentionService` applies them to memory retrieval: re-ranking retrieved candidates
by multi-head attention (optionally weighted by a prior such as reward) and summarising them
into one attention-weighted vector.

>>> import numpy as np
>>> from agentdb.engines import attention
>>> keys = np.eye(4, dtype=np.float32)
>>> out = attention.scaled_dot_product_attention(keys[2] * 8, keys, keys)
>>> int(np.argmax(out))
2
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidArgumentError
from . import loader as _loader
from .numpy_attention import _positive, expmap0, logmap0, project
from .numpy_checks import as_int, as_matrix, as_vector

__all__ = [
    "AttentionService",
    "expmap0",
    "flash_attention",
    "hyperbolic_attention",
    "logmap0",
    "moe_gating",
    "multi_head_attention",
    "project",
    "scaled_dot_product_attention",
]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]


def _backend(name: str | None) -> ModuleType:
    """The attention backend module: the default one, or ``"native"`` / ``"numpy"``."""
    if name is None:
        return _loader.attention_backend()
    backends = _loader.attention_backends()
    if name not in ("native", "numpy"):
        raise InvalidArgumentError(f"unknown backend {name!r}: expected 'native', 'numpy' or None")
    if name not in backends:
        raise InvalidArgumentError(
            "the native attention backend is not available (extension not built)")
    return backends[name]


@overload
def scaled_dot_product_attention(
    queries: ArrayLike, keys: ArrayLike, values: ArrayLike, *, scale: float | None = ...,
    return_weights: Literal[False] = ..., threads: int = ..., backend: str | None = ...,
) -> F32: ...
@overload
def scaled_dot_product_attention(
    queries: ArrayLike, keys: ArrayLike, values: ArrayLike, *, scale: float | None = ...,
    return_weights: Literal[True], threads: int = ..., backend: str | None = ...,
) -> tuple[F32, F32]: ...
def scaled_dot_product_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    scale: float | None = None,
    return_weights: bool = False,
    threads: int = 0,
    backend: str | None = None,
) -> F32 | tuple[F32, F32]:
    """``softmax(Q K^T * scale) V`` for queries ``(m, d)`` or ``(d,)``, keys ``(n, d)``,
    values ``(n, dv)``; ``scale`` defaults to ``1/sqrt(d)``. Returns ``(m, dv)`` (``(dv,)``),
    plus the weights ``(m, n)`` (``(n,)``) when ``return_weights``. ``threads=0``: all cores.

    >>> K = np.array([[1, 0], [0, 1]], dtype=np.float32)
    >>> out, w = scaled_dot_product_attention([0.0, 0.0], K, [[2.0], [4.0]],
    ...                                       return_weights=True)
    >>> out.tolist(), w.tolist()
    ([3.0], [0.5, 0.5])
    """
    return _backend(backend).sdpa(  # type: ignore[no-any-return]
        queries, keys, values, scale=scale, return_weights=return_weights, threads=threads
    )


def _projected(x: ArrayLike, w: ArrayLike | None, what: str) -> ArrayLike:
    """``x @ w`` in float32 (``x`` unchanged when ``w`` is None), shape-checked."""
    if w is None:
        return x
    X, one = as_matrix(x, what)
    W, w_one = as_matrix(w, f"W{what[0]}")
    if w_one or W.shape[0] != X.shape[1]:
        raise InvalidArgumentError(
            f"W{what[0]} must have shape ({X.shape[1]}, out_dim) to project {what}, "
            f"got {tuple(np.shape(w))}"
        )
    out = X @ W
    return out[0] if one else out


@overload
def multi_head_attention(
    queries: ArrayLike, keys: ArrayLike, values: ArrayLike, *, heads: int,
    scale: float | None = ..., wq: ArrayLike | None = ..., wk: ArrayLike | None = ...,
    wv: ArrayLike | None = ..., wo: ArrayLike | None = ..., return_weights: Literal[False] = ...,
    threads: int = ..., backend: str | None = ...,
) -> F32: ...
@overload
def multi_head_attention(
    queries: ArrayLike, keys: ArrayLike, values: ArrayLike, *, heads: int,
    scale: float | None = ..., wq: ArrayLike | None = ..., wk: ArrayLike | None = ...,
    wv: ArrayLike | None = ..., wo: ArrayLike | None = ..., return_weights: Literal[True],
    threads: int = ..., backend: str | None = ...,
) -> tuple[F32, F32]: ...
def multi_head_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    heads: int,
    scale: float | None = None,
    wq: ArrayLike | None = None,
    wk: ArrayLike | None = None,
    wv: ArrayLike | None = None,
    wo: ArrayLike | None = None,
    return_weights: bool = False,
    threads: int = 0,
    backend: str | None = None,
) -> F32 | tuple[F32, F32]:
    """Multi-head attention: optional projections ``Q wq``, ``K wk``, ``V wv`` (numpy float32
    matmuls), then head ``h`` attends on columns ``[h*d/heads, (h+1)*d/heads)`` with its own
    softmax (``scale`` defaults to ``1/sqrt(d/heads)``), head outputs are concatenated and
    multiplied by ``wo`` when given. ``d`` and ``dv`` (after projection) must be divisible by
    ``heads``. Weights: ``(heads, m, n)`` (``(heads, n)`` for a 1-D query).

    >>> K = np.array([[1, 0], [0, 1]], dtype=np.float32)
    >>> out, w = multi_head_attention([9.0, 0.0], K, K, heads=2, return_weights=True)
    >>> w.shape, [round(float(x), 3) for x in w[0]], w[1].tolist()
    ((2, 2), [1.0, 0.0], [0.5, 0.5])
    >>> multi_head_attention([9.0, 0.0], K, K, heads=2, wo=np.ones((2, 1))).shape
    (1,)
    """
    q = _projected(queries, wq, "queries")
    k = _projected(keys, wk, "keys")
    v = _projected(values, wv, "values")
    res = _backend(backend).multi_head_attention(
        q, k, v, heads=heads, scale=scale, return_weights=return_weights, threads=threads
    )
    if wo is None:
        return res  # type: ignore[no-any-return]
    out, weights = res if return_weights else (res, None)
    out = _projected(out, wo, "output")
    out = np.ascontiguousarray(out, dtype=np.float32)
    return (out, weights) if weights is not None else out


def flash_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    scale: float | None = None,
    block_size: int = 256,
    threads: int = 0,
    backend: str | None = None,
) -> F32:
    """The :func:`scaled_dot_product_attention` output, computed over blocks of ``block_size``
    keys with the online softmax (running max, running sum, rescaled accumulator): no
    ``m x n`` matrix, O(block_size) extra memory per group of queries, same result to float32
    rounding (including for huge logits).

    >>> K = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    >>> V = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    >>> ref = scaled_dot_product_attention(K, K, V)
    >>> bool(np.allclose(flash_attention(K, K, V, block_size=2), ref, rtol=1e-5))
    True
    """
    return _backend(backend).flash_attention(  # type: ignore[no-any-return]
        queries, keys, values, scale=scale, block_size=block_size, threads=threads
    )


@overload
def hyperbolic_attention(
    queries: ArrayLike, keys: ArrayLike, values: ArrayLike, *, c: float = ...,
    beta: float = ..., return_weights: Literal[False] = ..., threads: int = ...,
    backend: str | None = ...,
) -> F32: ...
@overload
def hyperbolic_attention(
    queries: ArrayLike, keys: ArrayLike, values: ArrayLike, *, c: float = ...,
    beta: float = ..., return_weights: Literal[True], threads: int = ...,
    backend: str | None = ...,
) -> tuple[F32, F32]: ...
def hyperbolic_attention(
    queries: ArrayLike,
    keys: ArrayLike,
    values: ArrayLike,
    *,
    c: float = 1.0,
    beta: float = 1.0,
    return_weights: bool = False,
    threads: int = 0,
    backend: str | None = None,
) -> F32 | tuple[F32, F32]:
    """Attention in the Poincare ball of curvature ``-c`` (``c > 0``).

    Weights ``w_j = softmax_j(-beta * d_c(q, k_j))`` with the Poincare distance
    ``d_c(x, y) = (2/sqrt c) artanh(sqrt c |(-x) (+)_c y|)`` (Mobius addition), evaluated as
    ``acosh(1 + 2c|x-y|^2 / ((1-c|x|^2)(1-c|y|^2))) / sqrt c`` (the same value, stable for
    close points). Output: ``exp0(sum_j w_j log0(v_j))`` -- values mapped to the tangent space
    at the origin, averaged with the weights, mapped back (``tanh`` clipped to ``1 - 1e-5``,
    so the output is strictly inside the ball). Queries, keys and values must lie inside the
    ball with ``c|x|^2 <= 1 - 1e-6`` (use :func:`expmap0` or :func:`project` first).

    >>> pts = expmap0(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    >>> out, w = hyperbolic_attention(pts[0], pts, pts, beta=0.5, return_weights=True)
    >>> [round(float(x), 3) for x in w], [round(float(x), 3) for x in out]
    ([0.756, 0.142, 0.102], [0.571, 0.124])
    """
    return _backend(backend).hyperbolic_attention(  # type: ignore[no-any-return]
        queries, keys, values, c=c, beta=beta, return_weights=return_weights, threads=threads
    )


def moe_gating(
    x: ArrayLike,
    gate: ArrayLike,
    *,
    k: int = 2,
    bias: ArrayLike | None = None,
    threads: int = 0,
    backend: str | None = None,
) -> tuple[I64, F32]:
    """Mixture-of-experts top-``k`` gating: logits ``x @ gate + bias`` (``x (m, d)`` or
    ``(d,)``, ``gate (d, E)``, ``bias (E,)``), the ``k`` best experts per row (best first,
    ties to the lower expert id, deterministic) and the softmax over those ``k`` logits.
    Returns ``(expert_ids int64 (m, k), weights float32 (m, k))``; ``1 <= k <= E``.

    >>> ids, w = moe_gating([[1.0, 0.0]], [[0.0, 2.0, 2.0], [1.0, 0.0, 0.0]], k=2)
    >>> ids.tolist(), w.tolist()
    ([[1, 2]], [[0.5, 0.5]])
    """
    return _backend(backend).moe_gating(  # type: ignore[no-any-return]
        x, gate, k=k, bias=bias, threads=threads
    )


class AttentionService:
    """Attention over retrieved memories: re-ranking and summarising candidate vectors.

    Both methods take one query ``(d,)`` and candidate vectors ``(n, d)`` (e.g. the embeddings
    of the patterns a search returned). With ``normalize=True`` (default) the query and the
    candidates are L2-normalised for scoring (all-zero candidates stay zero; an all-zero query
    is an error), so logits are cosine similarities divided by ``temperature``.

    Args:
        temperature: default softmax temperature (> 0); smaller is sharper.
        normalize: score with unit-length query and candidates.
        backend: ``"native"``, ``"numpy"`` or None (the default backend).
        threads: threads for the native kernels (0 = all cores).

    >>> svc = AttentionService(temperature=0.1)
    >>> X = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    >>> order, scores = svc.rerank([1.0, 0.1, 0.0, 0.0], X, heads=2)
    >>> order.tolist()
    [0, 1, 2]
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        normalize: bool = True,
        backend: str | None = None,
        threads: int = 0,
    ) -> None:
        self.temperature = _positive(temperature, "temperature")
        self.normalize = bool(normalize)
        self._backend = _backend(backend)
        self.threads = threads

    def _inputs(self, query: ArrayLike, vectors: ArrayLike) -> tuple[F32, F32, F32]:
        """(query for scoring, candidates for scoring, candidates as given), validated."""
        q = as_vector(query, "query")
        X, one = as_matrix(vectors, "vectors")
        if one:
            raise InvalidArgumentError("vectors must be 2-D (n, d), got 1-D")
        if X.shape[1] != q.shape[0]:
            raise InvalidArgumentError(
                f"dimension mismatch: query has dim {q.shape[0]}, vectors have dim {X.shape[1]}"
            )
        if not self.normalize:
            return q, X, X
        qn = float(np.linalg.norm(q))
        if qn == 0.0:
            raise InvalidArgumentError("query is all zeros (cannot be normalised)")
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        Xn = (X / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return (q / qn).astype(np.float32), Xn, X

    def rerank(
        self,
        query: ArrayLike,
        vectors: ArrayLike,
        *,
        heads: int = 4,
        temperature: float | None = None,
        prior: ArrayLike | None = None,
    ) -> tuple[I64, F32]:
        """Order candidates by head-averaged multi-head attention, times an optional prior.

        With ``q``/``x_i`` the (normalised) query and candidates split into ``heads`` equal
        column slices ``q_h``/``x_ih`` (``d % heads == 0``), ``T`` the temperature:

        * per head: ``a_hi = softmax_i(heads * <q_h, x_ih> / T)`` -- the slice dot products
          sum to the full cosine, so ``heads *`` puts each head on the cosine scale and
          ``heads=1`` is plain ``softmax(cos / T)``;
        * ``a_i = mean_h a_hi``: a mixture over heads, so a candidate that dominates some
          heads' subspaces can outrank one that is only moderately close everywhere;
        * with ``prior`` (``n`` finite values >= 0, not all zero; e.g. ``(1 + reward) / 2``):
          ``s_i = a_i p_i / sum_j a_j p_j``, else ``s_i = a_i``. Scores sum to 1.

        Returns ``(order, scores)``: candidate indices best first (ties: lower index) and
        ``scores[r]``, the score of candidate ``order[r]`` (descending).

        >>> svc = AttentionService()
        >>> X = np.array([[1, 0], [0, 1]], dtype=np.float32)
        >>> order, s = svc.rerank([1.0, 0.0], X, heads=1, prior=[0.0, 1.0])
        >>> order.tolist(), s.tolist()
        ([1, 0], [1.0, 0.0])
        """
        T = self.temperature if temperature is None else _positive(temperature, "temperature")
        h = as_int(heads, "heads")
        q, X, _ = self._inputs(query, vectors)
        if h < 1 or q.shape[0] % h:
            raise InvalidArgumentError(
                f"heads={h} must be >= 1 and divide the vector dim {q.shape[0]}")
        zeros = np.zeros((X.shape[0], h), dtype=np.float32)
        _, w = self._backend.multi_head_attention(
            q, X, zeros, heads=h, scale=h / T, return_weights=True, threads=self.threads
        )
        scores = np.asarray(w, dtype=np.float64).mean(axis=0)
        if prior is not None:
            p = np.asarray(prior, dtype=np.float64)
            if p.shape != scores.shape:
                raise InvalidArgumentError(
                    f"prior must have shape ({scores.shape[0]},), got {p.shape}")
            if not np.isfinite(p).all() or (p < 0).any() or not (p > 0).any():
                raise InvalidArgumentError("prior must be finite, >= 0 and not all zero")
            scores = scores * p
            total = scores.sum()
            scores = scores / total if total > 0 else p / p.sum()
        order = np.argsort(-scores, kind="stable").astype(np.int64)
        return order, scores[order].astype(np.float32)

    def synthesize(
        self, query: ArrayLike, vectors: ArrayLike, *, temperature: float | None = None
    ) -> tuple[F32, F32]:
        """Attention-weighted summary of candidate memories.

        ``w = softmax_i(<q, x_i> / T)`` on the (normalised) query and candidates, and
        ``summary = sum_i w_i v_i`` over the candidate vectors *as given* (not normalised).
        Returns ``(summary (d,), weights (n,))``; the weights sum to 1.

        >>> svc = AttentionService(temperature=1.0)
        >>> X = np.array([[2, 0], [0, 2]], dtype=np.float32)
        >>> summary, w = svc.synthesize([1.0, 1.0], X)
        >>> summary.tolist(), w.tolist()
        ([1.0, 1.0], [0.5, 0.5])
        """
        T = self.temperature if temperature is None else _positive(temperature, "temperature")
        q, Xs, X = self._inputs(query, vectors)
        summary, w = self._backend.sdpa(
            q, Xs, X, scale=1.0 / T, return_weights=True, threads=self.threads
        )
        return summary, w
