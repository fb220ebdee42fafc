"""Distance kernels and exact top-k search of the numpy vector backend.

:func:`distance`, :func:`distances` and :func:`exact_search` implement the module-level
functions of the native extension's contract (``spec_native.md``); :class:`TopK` is the exact
top-k core they share with :class:`~agentdb.engines.numpy_hnsw.HNSWIndex`: candidates are
selected on float32 matrix products with a rounding-error margin and re-ranked with float64
distances (ties: ascending distance, then ascending id).

Example:
    >>> distance([1, 0], [0, 1], "cosine")
    1.0
    >>> exact_search([0, 0], [[3, 3], [1, 1]], k=1, metric="l2")[0].tolist()
    [1]
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numpy.typing import ArrayLike

from .numpy_checks import (
    F32,
    F64,
    I64,
    Bools,
    Predicate,
    as_matrix,
    as_vector,
    check_k,
    check_metric,
    check_threads,
)

__all__ = ["TopK", "distance", "distances", "exact_search", "row_sqnorms"]

# ---- search tuning -----------------------------------------------------------------------
_EPS32: Final = float(np.finfo(np.float32).eps)
_ERR_FACTOR: Final = 16.0  # slack over the typical float32 dot-product rounding error
_BLOCK_ELEMS: Final = 1 << 24  # max elements of one (queries x rows) float32 distance block
_RERANK_ELEMS: Final = 1 << 21  # max float64 elements gathered for one exact re-rank chunk
_COSINE_SNAP: Final = 8 * float(np.finfo(np.float64).eps)  # ~1.8e-15


# =========================================================================================
# norms and cosine
# =========================================================================================
def row_sqnorms(x: F32) -> F64:
    """Squared L2 norm of every row, accumulated in float64.

    Example:
        >>> row_sqnorms(np.array([[3, 4]], dtype=np.float32)).tolist()
        [25.0]
    """
    return np.einsum("ij,ij->i", x, x, dtype=np.float64)


def _inv_norms(sq: F64) -> F64:
    """``1/sqrt(sq)`` with 0 for zero norms (a zero vector has cosine distance 1.0)."""
    out = np.zeros_like(sq)
    np.divide(1.0, np.sqrt(sq), out=out, where=sq > 0)
    return out


def _cosine_from_dot(dot: F64, sq_a: F64, sq_b: F64) -> F64:
    """``1 - dot / sqrt(|a|^2 |b|^2)`` clipped to [0, 2]; 1.0 where a norm is zero.

    Results within float64 rounding noise of 0 (parallel vectors) are snapped to exactly 0
    so that such ties are broken by id rather than by rounding noise.
    """
    den = np.sqrt(sq_a * sq_b)
    cos = np.zeros(np.broadcast(dot, den).shape, dtype=np.float64)
    np.divide(dot, den, out=cos, where=den > 0)
    res = np.clip(1.0 - cos, 0.0, 2.0)
    return np.where(res < _COSINE_SNAP, 0.0, res)


# =========================================================================================
# exact top-k core (shared by exact_search and HNSWIndex.search)
# =========================================================================================
class TopK:
    """One top-k search of float32 queries over the rows (columns of the result) of ``x``.

    ``x`` rows are candidate items, ``col_ids`` their ids (returned and used to break ties),
    ``invalid`` marks rows that must never be returned (tombstones / filtered out),
    ``x_unit`` says the rows are unit vectors (cosine indexes store them so).
    Candidates are selected on float32 matmul "keys" (the distance minus a per-query
    constant, so the same order) with a rounding-error margin and re-ranked with float64
    distances, so the result is the exact top-k.
    """

    def __init__(
        self,
        queries: F32,
        x: F32,
        col_ids: I64,
        invalid: Bools | None,
        metric: str,
        x_sqnorms: F64,
        *,
        x_unit: bool = False,
    ) -> None:
        self.q = queries
        self.x = x
        self.col_ids = col_ids
        self.invalid = invalid
        self.metric = metric
        self.q64 = queries.astype(np.float64)
        self.q_sq = np.einsum("ij,ij->i", self.q64, self.q64)
        self.x_sq = x_sqnorms
        # key = q_key . x (+ x_sq for l2) (* 1/|x| for raw cosine rows) = distance - offset
        self.offset = self.q_sq if metric == "l2" else np.ones(len(queries))
        if metric == "l2":
            self.q_key = queries * np.float32(-2.0)
            self.x_add: F32 | None = x_sqnorms.astype(np.float32)
            self.x_mul: F32 | None = None
        else:
            scale = _inv_norms(self.q_sq) if metric == "cosine" else np.ones(len(queries))
            self.q_key = (self.q64 * -scale[:, None]).astype(np.float32)
            self.x_add = None
            raw_cosine = metric == "cosine" and not x_unit
            self.x_mul = _inv_norms(x_sqnorms).astype(np.float32) if raw_cosine else None
        if invalid is not None:  # +inf keys for rows that must not be returned
            add = np.zeros(len(x), dtype=np.float32) if self.x_add is None else self.x_add
            self.x_add = np.where(invalid, np.float32(np.inf), add)
        n, d = x.shape
        x_max = float(x_sqnorms.max()) if n else 0.0
        if metric == "cosine":
            scale = np.full(len(queries), 2.0)
        elif metric == "ip":
            scale = 1.0 + np.sqrt(self.q_sq) * math.sqrt(x_max)
        else:
            scale = 1.0 + self.q_sq + x_max
        # Bound on |float32 matmul distance - exact distance| (with a generous margin).
        self.err = _ERR_FACTOR * _EPS32 * math.sqrt(max(d, 1)) * scale + 1e-30
        self.n_valid = n - (int(np.count_nonzero(invalid)) if invalid is not None else 0)

    # -- distances ------------------------------------------------------------------------
    def keys(self, r0: int, r1: int) -> F32:
        """Float32 keys of queries ``r0:r1`` for every row (invalid rows: +inf).

        ``key = distance - c(query)``, so keys order rows like distances do.
        """
        d = self.q_key[r0:r1] @ self.x.T
        if self.x_mul is not None:
            d *= self.x_mul
        if self.x_add is not None:
            d += self.x_add
        return d

    def exact(self, rows: I64, cand: I64) -> F64:
        """Float64 distances of query ``rows[i]`` to rows ``cand[i, :]``."""
        out = np.empty(cand.shape, dtype=np.float64)
        if cand.size == 0:
            return out
        d = self.x.shape[1]
        cstep = max(1, _RERANK_ELEMS // d)  # columns per chunk
        rstep = max(1, _RERANK_ELEMS // (min(cand.shape[1], cstep) * d))  # rows per chunk
        for r0 in range(0, len(rows), rstep):
            r = rows[r0 : r0 + rstep]
            q = self.q64[r]
            for c0 in range(0, cand.shape[1], cstep):
                c = cand[r0 : r0 + rstep, c0 : c0 + cstep]
                xc = self.x[c].astype(np.float64)  # (rows, cols, d)
                if self.metric == "l2":
                    xc -= q[:, None, :]
                    res = np.einsum("rcd,rcd->rc", xc, xc)
                else:
                    dot = np.einsum("rcd,rd->rc", xc, q)
                    if self.metric == "ip":
                        res = 1.0 - dot
                    else:
                        res = _cosine_from_dot(dot, self.x_sq[c], self.q_sq[r][:, None])
                out[r0 : r0 + rstep, c0 : c0 + cstep] = res
        return out

    # -- selection ------------------------------------------------------------------------
    def run(self, k: int, accept: Predicate | None) -> tuple[I64, F32]:
        """The exact top ``k`` ``(ids, dists)`` of every query, shape ``(m, k)``, padded
        with -1 / +inf; ``accept`` (``id -> bool``, called lazily) filters candidates."""
        m = len(self.q)
        n = self.x.shape[0]
        out_ids = np.full((m, k), -1, dtype=np.int64)
        out_d = np.full((m, k), np.inf, dtype=np.float32)
        if self.n_valid == 0:
            return out_ids, out_d
        cache: dict[int, bool] = {}
        block = max(1, min(m, _BLOCK_ELEMS // n))
        for r0 in range(0, m, block):
            r1 = min(m, r0 + block)
            dist = self.keys(r0, r1)
            if accept is None:
                self._select_plain(dist, r0, k, out_ids, out_d)
            else:
                for i in range(r1 - r0):
                    self._select_filtered(dist[i], r0 + i, k, accept, cache, out_ids, out_d)
        return out_ids, out_d

    def _finish(self, rows: I64, cand: I64, ex: F64, keff: int, out_ids: I64, out_d: F32) -> None:
        ex32 = ex.astype(np.float32)
        cid = self.col_ids[cand]
        if self.invalid is not None:
            order = np.lexsort((cid, ex32, self.invalid[cand]), axis=-1)
        else:
            order = np.lexsort((cid, ex32), axis=-1)
        top = order[:, :keff]
        out_ids[rows, :keff] = np.take_along_axis(cid, top, axis=1)
        out_d[rows, :keff] = np.take_along_axis(ex32, top, axis=1)

    def _select_plain(self, dist: F32, r0: int, k: int, out_ids: I64, out_d: F32) -> None:
        b, n = dist.shape
        keff = min(k, self.n_valid)
        width = min(n, 2 * keff + 16)
        rows_all = np.arange(r0, r0 + b)
        if width >= n:  # few rows: re-rank them all
            cand = np.broadcast_to(np.arange(n, dtype=np.int64), (b, n))
            self._finish(rows_all, cand, self.exact(rows_all, cand), keff, out_ids, out_d)
            return
        part = np.argpartition(dist, width - 1, axis=1)[:, :width]
        near = np.take_along_axis(dist, part, axis=1)  # the `width` smallest keys
        kth = np.partition(near, keff - 1, axis=1)[:, keff - 1].astype(np.float64)
        limit = kth + 2.0 * self.err[r0 : r0 + b]
        # Rows outside `part` have keys >= near.max(); when that exceeds the limit, every
        # row that can still be in the top k (key within the error margin) is in `part`.
        fast = limit < near.max(axis=1)
        if fast.any():
            cand = np.ascontiguousarray(part[fast])
            rows = rows_all[fast]
            self._finish(rows, cand, self.exact(rows, cand), keff, out_ids, out_d)
        for i in np.flatnonzero(~fast).tolist():  # many near-ties: take all of them
            cand = np.flatnonzero(dist[i] <= limit[i])[None, :]
            rows = rows_all[i : i + 1]
            self._finish(rows, cand, self.exact(rows, cand), keff, out_ids, out_d)

    def _select_filtered(
        self,
        dist: F32,
        row: int,
        k: int,
        accept: Predicate,
        cache: dict[int, bool],
        out_ids: I64,
        out_d: F32,
    ) -> None:
        """Walk candidates in exact order, calling ``accept`` lazily, until k pass."""
        n_valid = self.n_valid
        err = float(self.err[row])
        rows = np.array([row], dtype=np.int64)
        width = min(n_valid, max(4 * k, 64))
        while True:
            if width >= n_valid:
                if self.invalid is not None:
                    cand = np.flatnonzero(~self.invalid)
                else:
                    cand = np.arange(len(dist), dtype=np.int64)
                limit = math.inf
            else:
                kth = float(np.partition(dist, width - 1)[width - 1])
                limit = kth + 2.0 * err
                cand = np.flatnonzero(dist <= limit)
            ex = self.exact(rows, cand[None, :])[0]
            ex32 = ex.astype(np.float32)
            cid = self.col_ids[cand]
            # rows outside `cand` all have exact distances above `safe`
            safe = limit + float(self.offset[row]) - err
            got: list[int] = []
            for j in np.lexsort((cid, ex32)).tolist():
                if ex[j] > safe:
                    break
                item = int(cid[j])
                ok = cache.get(item)
                if ok is None:
                    ok = bool(accept(item))
                    cache[item] = ok
                if ok:
                    got.append(j)
                    if len(got) == k:
                        break
            if len(got) == k or limit == math.inf:
                sel = np.array(got, dtype=np.int64)
                out_ids[row, : len(got)] = cid[sel]
                out_d[row, : len(got)] = ex32[sel]
                return
            width *= 4


# =========================================================================================
# module-level functions
# =========================================================================================
def distance(a: ArrayLike, b: ArrayLike, metric: str = "cosine") -> float:
    """Distance between two 1-D vectors.

    ``"cosine"``: ``1 - cos(a, b)`` (1.0 if either norm is 0); ``"ip"``: ``1 - a.b``;
    ``"l2"``: squared euclidean distance. Computed in float64, returned rounded to float32.

    Example:
        >>> distance([1, 0], [0, 1], "cosine")
        1.0
        >>> distance([1, 2], [3, 4], "l2")
        8.0
    """
    metric = check_metric(metric)
    va = as_vector(a, "a").astype(np.float64)
    vb = as_vector(b, "b").astype(np.float64)
    if va.shape != vb.shape:
        raise ValueError(f"dimension mismatch: {va.shape[0]} vs {vb.shape[0]}")
    if metric == "l2":
        diff = va - vb
        value = float(diff @ diff)
    elif metric == "ip":
        value = 1.0 - float(va @ vb)
    else:
        value = float(
            _cosine_from_dot(np.float64(va @ vb), np.float64(va @ va), np.float64(vb @ vb))
        )
    return float(np.float32(value))


def distances(q: ArrayLike, X: ArrayLike, metric: str = "cosine") -> F32:
    """Distances from one query (shape ``(n,)``) or many queries (``(m, n)``) to rows of X.

    ``X`` 1-D is treated as a single row. Returns float32.

    Example:
        >>> distances([1, 0], [[1, 0], [0, 1], [-1, 0]], "cosine").tolist()
        [0.0, 1.0, 2.0]
        >>> distances([[0, 0], [1, 1]], [[1, 1]], "l2").tolist()
        [[2.0], [0.0]]
    """
    metric = check_metric(metric)
    qm, q_one = as_matrix(q, "q")
    xm, _ = as_matrix(X, "X")
    if qm.shape[1] != xm.shape[1]:
        raise ValueError(
            f"dimension mismatch: queries have dim {qm.shape[1]}, vectors have dim {xm.shape[1]}"
        )
    m, d = qm.shape
    n = xm.shape[0]
    q64 = qm.astype(np.float64)
    q_sq = np.einsum("ij,ij->i", q64, q64)
    out = np.empty((m, n), dtype=np.float32)
    step = max(1, _BLOCK_ELEMS // (d + m))
    for s in range(0, n, step):
        x64 = xm[s : s + step].astype(np.float64)
        dot = q64 @ x64.T
        if metric == "l2":
            x_sq = np.einsum("ij,ij->i", x64, x64)
            res = np.maximum(q_sq[:, None] + x_sq[None, :] - 2.0 * dot, 0.0)
        elif metric == "ip":
            res = 1.0 - dot
        else:
            x_sq = np.einsum("ij,ij->i", x64, x64)
            res = _cosine_from_dot(dot, q_sq[:, None], x_sq[None, :])
        out[:, s : s + step] = res
    return out[0] if q_one else out


def exact_search(
    queries: ArrayLike,
    X: ArrayLike,
    k: int = 10,
    metric: str = "cosine",
    threads: int = 0,
) -> tuple[I64, F32]:
    """Exact top-k rows of ``X`` (row index as id) for each query.

    1-D ``queries`` give arrays of shape ``(k,)``, 2-D give ``(m, k)``; sorted by ascending
    distance, ties by smaller row index, padded with id -1 / distance +inf when ``k > n``.
    ``threads`` is accepted for API parity (0 = all cores); numpy ignores it.

    Example:
        >>> ids, dists = exact_search([0, 0], [[3, 3], [1, 1], [2, 2]], k=2, metric="l2")
        >>> ids.tolist(), dists.tolist()
        ([1, 2], [2.0, 8.0])
        >>> exact_search([1, 0], [[1, 0]], k=2)[0].tolist()
        [0, -1]
    """
    metric = check_metric(metric)
    k = check_k(k)
    check_threads(threads)
    qm, q_one = as_matrix(queries, "queries")
    xm, _ = as_matrix(X, "X")
    if qm.shape[1] != xm.shape[1]:
        raise ValueError(
            f"dimension mismatch: queries have dim {qm.shape[1]}, vectors have dim {xm.shape[1]}"
        )
    col_ids = np.arange(xm.shape[0], dtype=np.int64)
    ids, dists = TopK(qm, xm, col_ids, None, metric, row_sqnorms(xm)).run(k, None)
    if q_one:
        return ids[0], dists[0]
    return ids, dists
