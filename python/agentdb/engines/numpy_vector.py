"""Pure-numpy fallback backend of AgentDB.

Implements the same contract as the C++ extension ``agentdb._native`` (see
``spec_native.md``): metric helpers (:func:`distance`, :func:`distances`), exact
top-k search (:func:`exact_search`), :func:`native_info` and the
:class:`HNSWIndex` class.

The "HNSW" index of this backend is exact (brute force): vectors live in a
preallocated float32 matrix that grows by doubling, removals are tombstones whose
slots are reused by later adds, and a search is one matrix product over the
stored rows followed by ``argpartition`` and an exact float64 re-ranking of the
few candidates (ties: ascending distance, then ascending id).  Files written by
:meth:`HNSWIndex.save` use the shared binary format without a graph section, so
the native backend can load them (it rebuilds its graph) and vice versa.

Example:
    >>> import numpy as np
    >>> index = HNSWIndex(dim=3, metric="l2")
    >>> index.add([1, 2], np.array([[0, 0, 0], [1, 1, 1]], dtype=np.float32))
    >>> ids, dists = index.search([0.9, 1.0, 1.0], k=1)
    >>> ids.tolist(), round(float(dists[0]), 2)
    ([2], 0.01)
"""

from __future__ import annotations

import math
import operator
import os
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._version import __version__
from .fileio import write_crc_file

__all__ = [
    "BACKEND",
    "VERSION",
    "HNSWIndex",
    "distance",
    "distances",
    "exact_search",
    "native_info",
]

BACKEND: Final = "numpy"
VERSION: Final = __version__

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]
Predicate = Callable[[int], Any]

_METRIC_CODES: Final = {"cosine": 0, "ip": 1, "l2": 2}
_METRIC_NAMES: Final = {code: name for name, code in _METRIC_CODES.items()}

# ---- file format -------------------------------------------------------------------------
_MAGIC: Final = b"AGDBHNSW"
_FORMAT_VERSION: Final = 1
_HEADER_SIZE: Final = 128
# magic, version, header_size, dim, metric, M, ef_construction, ef_search, flags,
# n_slots, n_live, max_level, entry_point, M0, seed  (76 bytes, zero padded to 128)
_HEADER: Final = struct.Struct("<8sIIIIIIIIQQiIIQ")
_TRAILER: Final = struct.Struct("<I")
_FLAG_HAS_GRAPH: Final = 1
_NO_ENTRY: Final = 0xFFFFFFFF
_MAX_DIM_IN_FILE: Final = 1 << 20
_MAX_SLOTS_IN_FILE: Final = (1 << 32) - 2
_MAX_LEVEL_IN_FILE: Final = 64

_U32_MAX: Final = 0xFFFFFFFF
_U64_MAX: Final = (1 << 64) - 1
_INT64_MAX: Final = (1 << 63) - 1
_M_MIN: Final = 2
_M_MAX: Final = 2048

# ---- search tuning -----------------------------------------------------------------------
_EPS32: Final = float(np.finfo(np.float32).eps)
_ERR_FACTOR: Final = 16.0  # slack over the typical float32 dot-product rounding error
_BLOCK_ELEMS: Final = 1 << 24  # max elements of one (queries x rows) float32 distance block
_RERANK_ELEMS: Final = 1 << 21  # max float64 elements gathered for one exact re-rank chunk
_COSINE_SNAP: Final = 8 * float(np.finfo(np.float64).eps)  # ~1.8e-15


# =========================================================================================
# input conversion and validation
# =========================================================================================
def _check_metric(metric: object) -> str:
    if isinstance(metric, str) and metric in _METRIC_CODES:
        return metric
    raise ValueError(f"unknown metric {metric!r}: expected one of 'cosine', 'ip', 'l2'")


def _as_int(value: object, name: str) -> int:
    """Convert an integer-like scalar (not bool, not float) to ``int``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def _check_k(k: object) -> int:
    kk = _as_int(k, "k")
    if kk < 1:
        raise ValueError(f"k must be >= 1, got {kk}")
    return kk


def _check_threads(threads: object) -> int:
    t = _as_int(threads, "threads")
    if t < 0:
        raise ValueError(f"threads must be >= 0 (0 = all cores), got {t}")
    return t


def _check_range(value: object, name: str, lo: int, hi: int, what: str) -> int:
    v = _as_int(value, name)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be {what}, got {v}")
    return v


def _as_float32(x: ArrayLike, what: str) -> F32:
    """Apply the contract's conversion rule: ``np.ascontiguousarray(x, dtype=np.float32)``."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # huge float64 -> inf, reported below
        return np.ascontiguousarray(arr, dtype=np.float32)


def _ensure_finite(arr: F32, what: str) -> None:
    # A float64 sum of float32 values cannot overflow, so it is finite iff every value is.
    if arr.size and not math.isfinite(float(arr.sum(dtype=np.float64))):
        raise ValueError(f"{what} contains NaN or infinity")


def _as_vector(x: ArrayLike, what: str) -> F32:
    arr = _as_float32(x, what)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D vector, got {arr.ndim}-D")
    if arr.size == 0:
        raise ValueError(f"{what} is empty")
    _ensure_finite(arr, what)
    return arr


def _as_matrix(x: ArrayLike, what: str) -> tuple[F32, bool]:
    """Return ``(matrix (n, d), was_1d)``; a 1-D input becomes one row."""
    arr = _as_float32(x, what)
    if arr.ndim == 1:
        arr, one = arr.reshape(1, -1), True
    elif arr.ndim == 2:
        one = False
    else:
        raise ValueError(f"{what} must be 1-D or 2-D, got {arr.ndim}-D")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {tuple(arr.shape)})")
    _ensure_finite(arr, what)
    return arr, one


def _as_ids(ids: object) -> tuple[I64, bool]:
    """Convert ids to a 1-D int64 array; returns ``(ids, was_scalar)``."""
    if isinstance(ids, (bool, np.bool_)):
        raise TypeError("ids must be integers, got bool")
    if isinstance(ids, (np.ndarray, list, tuple, int, np.integer)):
        raw: object = ids
    elif isinstance(ids, (str, bytes, float, complex)):
        raise TypeError(f"ids must be integers, got {type(ids).__name__}")
    else:  # set, range, generator, dict keys, ...
        try:
            raw = list(ids)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(f"ids must be integers, got {type(ids).__name__}") from None
    try:
        arr = raw if isinstance(raw, np.ndarray) else np.asarray(raw)
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"ids must be an int or a 1-D sequence of ints ({exc})") from None
    kind = arr.dtype.kind
    if kind == "i":
        out = arr.astype(np.int64, copy=False)
    elif kind == "u":
        if arr.size and int(arr.max()) > _INT64_MAX:
            raise ValueError("ids must fit in int64")
        out = arr.astype(np.int64)
    elif kind == "O":
        values = []
        for v in arr.reshape(-1).tolist():
            iv = _as_int(v, "ids")
            if not -_INT64_MAX - 1 <= iv <= _INT64_MAX:
                raise ValueError(f"id {iv} does not fit in int64")
            values.append(iv)
        out = np.array(values, dtype=np.int64).reshape(arr.shape)
    elif arr.size == 0 and kind == "f":  # [] -> float64 empty array
        out = np.zeros(arr.shape, dtype=np.int64)
    else:
        raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
    if out.ndim > 1:
        raise ValueError(f"ids must be an int or a 1-D sequence of ints, got {out.ndim}-D")
    return np.ascontiguousarray(out.reshape(-1)), out.ndim == 0


def _as_id(value: object) -> int:
    return _as_int(value, "id")


def _row_sqnorms(x: F32) -> F64:
    """Squared L2 norm of every row, accumulated in float64."""
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
class _TopK:
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
    metric = _check_metric(metric)
    va = _as_vector(a, "a").astype(np.float64)
    vb = _as_vector(b, "b").astype(np.float64)
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
    metric = _check_metric(metric)
    qm, q_one = _as_matrix(q, "q")
    xm, _ = _as_matrix(X, "X")
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
    metric = _check_metric(metric)
    k = _check_k(k)
    _check_threads(threads)
    qm, q_one = _as_matrix(queries, "queries")
    xm, _ = _as_matrix(X, "X")
    if qm.shape[1] != xm.shape[1]:
        raise ValueError(
            f"dimension mismatch: queries have dim {qm.shape[1]}, vectors have dim {xm.shape[1]}"
        )
    col_ids = np.arange(xm.shape[0], dtype=np.int64)
    ids, dists = _TopK(qm, xm, col_ids, None, metric, _row_sqnorms(xm)).run(k, None)
    if q_one:
        return ids[0], dists[0]
    return ids, dists


def native_info() -> dict[str, Any]:
    """Describe the backend: always ``native=False`` here (the loader fills ``reason``).

    Example:
        >>> info = native_info()
        >>> info["native"], info["simd"]["dot"]
        (False, 'numpy')
    """
    forced = os.environ.get("AGENTDB_SIMD") or None
    return {
        "native": False,
        "version": VERSION,
        "simd": {"dot": "numpy", "l2": "numpy", "cosine": "numpy"},
        "supported": ["numpy"],
        "forced": forced,
        "threads": os.cpu_count() or 1,
        "reason": None,
    }


# =========================================================================================
# HNSWIndex
# =========================================================================================
class HNSWIndex:
    """Exact vector index with the ``HNSWIndex`` API of the native backend.

    ``M``, ``ef_construction``, ``ef_search``, ``threads`` and ``seed`` are validated and
    stored (and written to saved files) but do not change results: searches are exact.
    All methods are thread-safe (one re-entrant lock guards mutations and searches).

    Example:
        >>> index = HNSWIndex(dim=2, metric="cosine", capacity=2)
        >>> index.add([10, 11, 12], [[1, 0], [0, 1], [1, 1]])
        >>> len(index), index.capacity
        (3, 4)
        >>> index.search([1, 0.1], k=2)[0].tolist()
        [10, 12]
    """

    backend: Final[str] = BACKEND

    def __init__(
        self,
        dim: int,
        metric: str = "cosine",
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        capacity: int = 1024,
        threads: int = 0,
        seed: int = 42,
        precision: str = "mixed",
    ) -> None:
        """Create an empty index (see the class docstring for an example).

        Example:
            >>> HNSWIndex(4, metric="l2", M=8)
            HNSWIndex(dim=4, metric='l2', M=8, len=0, backend='numpy')
        """
        self._dim = _check_range(dim, "dim", 1, _U32_MAX, ">= 1")
        self._metric = _check_metric(metric)
        self._M = _check_range(M, "M", _M_MIN, _M_MAX, f"in [{_M_MIN}, {_M_MAX}]")
        self._ef_construction = _check_range(
            ef_construction, "ef_construction", 1, _U32_MAX, ">= 1"
        )
        self._ef_search = _check_range(ef_search, "ef_search", 1, _U32_MAX, ">= 1")
        cap = _check_range(capacity, "capacity", 1, _INT64_MAX, ">= 1")
        self._threads = _check_threads(threads)
        self._seed = _check_range(seed, "seed", 0, _U64_MAX, "in [0, 2**64)")
        if precision not in ("mixed", "f32"):
            raise ValueError(f"precision must be 'mixed' or 'f32', got {precision!r}")
        self._precision = precision
        self._lock = threading.RLock()
        self._cap = cap
        self._x: F32 = np.empty((cap, self._dim), dtype=np.float32)
        self._ids: I64 = np.zeros(cap, dtype=np.int64)
        self._deleted: Bools = np.ones(cap, dtype=np.bool_)
        self._norms: F32 = np.ones(cap, dtype=np.float32)  # original norms (cosine)
        self._sq: F64 = np.zeros(cap, dtype=np.float64)  # squared norms of stored rows
        self._n_slots = 0
        self._slot_of: dict[int, int] = {}
        self._free: list[int] = []

    # -- properties -----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector dimension.

        Example:
            >>> HNSWIndex(8).dim
            8
        """
        return self._dim

    @property
    def metric(self) -> str:
        """Metric name: ``"cosine"``, ``"ip"`` or ``"l2"``.

        Example:
            >>> HNSWIndex(8, metric="ip").metric
            'ip'
        """
        return self._metric

    @property
    def M(self) -> int:
        """Graph degree parameter (stored for parity; unused by the exact search).

        Example:
            >>> HNSWIndex(8, M=32).M
            32
        """
        return self._M

    @property
    def ef_construction(self) -> int:
        """Build-time beam width (stored for parity).

        Example:
            >>> HNSWIndex(8, ef_construction=100).ef_construction
            100
        """
        return self._ef_construction

    @property
    def ef_search(self) -> int:
        """Default search beam width (read/write, >= 1; stored for parity).

        Example:
            >>> index = HNSWIndex(8)
            >>> index.ef_search = 128
            >>> index.ef_search
            128
        """
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = _check_range(value, "ef_search", 1, _U32_MAX, ">= 1")

    @property
    def capacity(self) -> int:
        """Number of allocated slots (doubles automatically when full).

        Example:
            >>> HNSWIndex(8, capacity=16).capacity
            16
        """
        return self._cap

    @property
    def threads(self) -> int:
        """Thread count setting (read/write; 0 = all cores; numpy ignores it).

        Example:
            >>> index = HNSWIndex(8)
            >>> index.threads = 2
            >>> index.threads
            2
        """
        return self._threads

    @threads.setter
    def threads(self, value: int) -> None:
        self._threads = _check_threads(value)

    @property
    def precision(self) -> str:
        """Search precision setting (stored for parity; numpy always computes exactly).

        Example:
            >>> HNSWIndex(8, precision="f32").precision
            'f32'
        """
        return self._precision

    @property
    def seed(self) -> int:
        """Random seed (stored for parity and written to saved files).

        Example:
            >>> HNSWIndex(8, seed=7).seed
            7
        """
        return self._seed

    # -- internals ------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        """Ensure room for ``need`` slots in total (capacity doubles)."""
        if need <= self._cap:
            return
        cap = self._cap
        while cap < need:
            cap *= 2
        n = self._n_slots
        x = np.empty((cap, self._dim), dtype=np.float32)
        x[:n] = self._x[:n]
        ids = np.zeros(cap, dtype=np.int64)
        ids[:n] = self._ids[:n]
        deleted = np.ones(cap, dtype=np.bool_)
        deleted[:n] = self._deleted[:n]
        norms = np.ones(cap, dtype=np.float32)
        norms[:n] = self._norms[:n]
        sq = np.zeros(cap, dtype=np.float64)
        sq[:n] = self._sq[:n]
        self._x, self._ids, self._deleted, self._norms, self._sq = x, ids, deleted, norms, sq
        self._cap = cap

    def _check_dim(self, got: int) -> None:
        if got != self._dim:
            raise ValueError(f"dimension mismatch: index has dim {self._dim}, got {got}")

    # -- writes ---------------------------------------------------------------------------
    def add(self, ids: ArrayLike, vectors: ArrayLike) -> None:
        """Insert vectors; an existing id is replaced (upsert).

        ``ids`` is an int or 1-D int sequence, ``vectors`` 1-D (one) or 2-D ``(n, dim)``.
        The whole batch is validated before anything is written.

        Example:
            >>> index = HNSWIndex(2, metric="l2")
            >>> index.add(7, [1.0, 2.0])
            >>> index.add([7, 8], [[3, 4], [5, 6]])
            >>> index.get_vector(7).tolist(), len(index)
            ([3.0, 4.0], 2)
        """
        id_arr, _ = _as_ids(ids)
        vecs, _ = _as_matrix(vectors, "vectors")
        self._check_dim(vecs.shape[1])
        n = vecs.shape[0]
        if len(id_arr) != n:
            raise ValueError(f"got {len(id_arr)} ids for {n} vectors")
        if np.any(id_arr == -1):
            raise ValueError("id -1 is reserved (it pads search results)")
        uniq, counts = np.unique(id_arr, return_counts=True)
        if len(uniq) != n:
            raise ValueError(f"duplicate id {int(uniq[counts > 1][0])} in one batch")
        sq = _row_sqnorms(vecs)
        if self._metric == "cosine":
            if not np.all(sq > 0):
                bad = int(id_arr[int(np.argmin(sq > 0))])
                raise ValueError(
                    f"zero vector for id {bad}: the cosine metric cannot normalise an "
                    "all-zero vector"
                )
            norms64 = np.sqrt(sq)
            stored = (vecs / norms64[:, None]).astype(np.float32)
            norms = norms64.astype(np.float32)
            sq = _row_sqnorms(stored)
        else:
            stored = vecs
            norms = np.ones(n, dtype=np.float32)
        id_list = id_arr.tolist()
        with self._lock:
            slot_of = self._slot_of
            existing = [slot_of.get(i) for i in id_list]
            n_new = existing.count(None)
            self._grow(self._n_slots + max(0, n_new - len(self._free)))
            free = self._free
            slots = np.empty(n, dtype=np.int64)
            for j, (item, old) in enumerate(zip(id_list, existing)):
                if old is not None:  # upsert: overwrite the vector in its slot
                    slots[j] = old
                    continue
                if free:
                    slot = free.pop()
                else:
                    slot = self._n_slots
                    self._n_slots += 1
                slot_of[item] = slot
                slots[j] = slot
            if n and int(slots[-1]) - int(slots[0]) == n - 1 and np.all(np.diff(slots) == 1):
                where: Any = slice(int(slots[0]), int(slots[0]) + n)
            else:
                where = slots
            self._x[where] = stored
            self._ids[where] = id_arr
            self._deleted[where] = False
            self._norms[where] = norms
            self._sq[where] = sq

    def remove(self, ids: ArrayLike) -> None:
        """Tombstone ids (all are checked first); their slots are reused by later adds.

        Example:
            >>> index = HNSWIndex(2)
            >>> index.add([1, 2], [[1, 0], [0, 1]])
            >>> index.remove([1])
            >>> index.ids().tolist()
            [2]
            >>> index.remove(1)
            Traceback (most recent call last):
            ...
            KeyError: 'unknown id 1'
        """
        id_arr, _ = _as_ids(ids)
        id_list = id_arr.tolist()
        with self._lock:
            slot_of = self._slot_of
            for item in id_list:
                if item not in slot_of:
                    raise KeyError(f"unknown id {item}")
            for item in dict.fromkeys(id_list):  # duplicates within the batch are ignored
                slot = slot_of.pop(item)
                self._deleted[slot] = True
                self._free.append(slot)

    # -- reads ----------------------------------------------------------------------------
    def search(
        self,
        queries: ArrayLike,
        k: int = 10,
        *,
        ef: int | None = None,
        allowed: ArrayLike | None = None,
        predicate: Predicate | None = None,
    ) -> tuple[I64, F32]:
        """Exact k nearest live items: ``(ids int64, dists float32)``, ascending.

        1-D ``queries`` give shape ``(k,)``, 2-D give ``(m, k)``; padded with -1 / +inf when
        fewer than k items match. ``allowed`` (ids) and ``predicate`` (``id -> bool``)
        restrict the results; k results are returned whenever k matching items exist.
        ``ef`` is validated (>= 1) and otherwise ignored (the search is exact).

        Example:
            >>> index = HNSWIndex(1, metric="l2")
            >>> index.add([1, 2, 3, 4], [[1], [2], [3], [4]])
            >>> index.search([0], k=2)[0].tolist()
            [1, 2]
            >>> index.search([0], k=2, predicate=lambda i: i % 2 == 0)[0].tolist()
            [2, 4]
            >>> ids, dists = index.search([[0], [5]], k=3, allowed=[3])
            >>> ids.tolist(), dists.tolist()
            ([[3, -1, -1], [3, -1, -1]], [[9.0, inf, inf], [4.0, inf, inf]])
        """
        k = _check_k(k)
        if ef is not None:
            _check_range(ef, "ef", 1, _INT64_MAX, ">= 1")
        if predicate is not None and not callable(predicate):
            raise TypeError("predicate must be callable (id -> bool)")
        allowed_ids = None if allowed is None else _as_ids(allowed)[0]
        qm, q_one = _as_matrix(queries, "queries")
        self._check_dim(qm.shape[1])
        with self._lock:
            if not self._slot_of:
                raise ValueError("index is empty")
            ns = self._n_slots
            x = self._x[:ns]
            col_ids = self._ids[:ns]
            sq = self._sq[:ns]
            invalid: Bools | None = self._deleted[:ns] if self._free else None
            if allowed_ids is not None:
                mask = np.isin(col_ids, allowed_ids)
                if invalid is not None:
                    mask &= ~invalid
                # copying the allowed rows is cheaper than scanning the others
                if int(np.count_nonzero(mask)) * 4 <= ns * 3:
                    rows = np.flatnonzero(mask)
                    x, col_ids, sq, invalid = x[rows], col_ids[rows], sq[rows], None
                else:
                    invalid = ~mask
            ids, dists = _TopK(qm, x, col_ids, invalid, self._metric, sq, x_unit=True).run(
                k, predicate
            )
        if q_one:
            return ids[0], dists[0]
        return ids, dists

    def get_vector(self, id: int) -> F32:
        """The vector as given to :meth:`add` (cosine indexes restore the original norm).

        Example:
            >>> index = HNSWIndex(2)
            >>> index.add(5, [3.0, 4.0])
            >>> index.get_vector(5).round(5).tolist()
            [3.0, 4.0]
        """
        item = _as_id(id)
        with self._lock:
            slot = self._slot_of.get(item)
            if slot is None:
                raise KeyError(f"unknown id {item}")
            row = self._x[slot]
            if self._metric == "cosine":
                return (row.astype(np.float64) * float(self._norms[slot])).astype(np.float32)
            return row.copy()

    def contains(self, id: int) -> bool:
        """Whether ``id`` is a live item.

        Example:
            >>> index = HNSWIndex(2)
            >>> index.add(5, [1, 0])
            >>> index.contains(5), index.contains(6)
            (True, False)
        """
        return _as_id(id) in self._slot_of

    def __contains__(self, id: object) -> bool:
        """``id in index``.

        Example:
            >>> index = HNSWIndex(2)
            >>> index.add(5, [1, 0])
            >>> 5 in index
            True
        """
        return self.contains(id)  # type: ignore[arg-type]

    def __len__(self) -> int:
        """Number of live items.

        Example:
            >>> len(HNSWIndex(2))
            0
        """
        return len(self._slot_of)

    def ids(self) -> I64:
        """Live ids, ascending, as int64.

        Example:
            >>> index = HNSWIndex(2)
            >>> index.add([9, 3], [[1, 0], [0, 1]])
            >>> index.ids().tolist()
            [3, 9]
        """
        with self._lock:
            ns = self._n_slots
            return np.sort(self._ids[:ns][~self._deleted[:ns]])

    def memory_usage(self) -> int:
        """Approximate bytes held by the index (arrays + id map + free list).

        Example:
            >>> HNSWIndex(4, capacity=100).memory_usage() > 100 * 4 * 4
            True
        """
        with self._lock:
            arrays = (
                self._x.nbytes
                + self._ids.nbytes
                + self._deleted.nbytes
                + self._norms.nbytes
                + self._sq.nbytes
            )
            n_map = len(self._slot_of)
            n_free = len(self._free)
            # dict table + an int object for every key and value; list + its int objects
            maps = sys.getsizeof(self._slot_of) + 2 * 32 * n_map
            maps += sys.getsizeof(self._free) + 32 * n_free
            return int(arrays + maps + sys.getsizeof(self))

    def __repr__(self) -> str:
        """``HNSWIndex(dim=..., metric=..., M=..., len=..., backend='numpy')``.

        Example:
            >>> HNSWIndex(384)
            HNSWIndex(dim=384, metric='cosine', M=16, len=0, backend='numpy')
        """
        return (
            f"HNSWIndex(dim={self._dim}, metric={self._metric!r}, M={self._M}, "
            f"len={len(self)}, backend={self.backend!r})"
        )

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (shared binary format, no graph; atomic replace).

        Example:
            >>> import os, tempfile
            >>> index = HNSWIndex(2, metric="ip")
            >>> index.add([1, 2], [[1, 0], [0, 1]])
            >>> path = os.path.join(tempfile.mkdtemp(), "index.agdb")
            >>> index.save(path)
            >>> HNSWIndex.load(path).ids().tolist()
            [1, 2]
        """
        target = Path(os.fspath(path))
        with self._lock:
            ns = self._n_slots
            header = _HEADER.pack(
                _MAGIC,
                _FORMAT_VERSION,
                _HEADER_SIZE,
                self._dim,
                _METRIC_CODES[self._metric],
                self._M,
                self._ef_construction,
                self._ef_search,
                0,  # flags: no graph
                ns,
                len(self._slot_of),
                -1,  # max_level
                _NO_ENTRY,
                2 * self._M,
                self._seed,
            )
            header += bytes(_HEADER_SIZE - len(header))
            sections = [
                np.ascontiguousarray(self._ids[:ns], dtype="<i8"),
                self._deleted[:ns].view(np.uint8),
                np.ascontiguousarray(self._x[:ns], dtype="<f4"),
                np.ascontiguousarray(self._norms[:ns], dtype="<f4"),
            ]
            write_crc_file(target, header, sections)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], threads: int = 0, precision: str = "mixed"
    ) -> HNSWIndex:
        """Read an index file written by either backend (a graph section is skipped).

        Raises FileNotFoundError for a missing file and ValueError for a file that is not
        an AgentDB index, has an unsupported version, is truncated or corrupt.

        Example:
            >>> import os, tempfile
            >>> path = os.path.join(tempfile.mkdtemp(), "bad.agdb")
            >>> with open(path, "wb") as fh:
            ...     _ = fh.write(b"hello world")
            >>> try:
            ...     HNSWIndex.load(path)
            ... except ValueError as exc:
            ...     print("not an AgentDB index file" in str(exc))
            True
        """
        if precision not in ("mixed", "f32"):
            raise ValueError(f"precision must be 'mixed' or 'f32', got {precision!r}")
        target = Path(os.fspath(path))
        data = target.read_bytes()
        index = cls._from_bytes(data, f"'{target}'")
        index.threads = threads
        index._precision = precision
        return index

    @classmethod
    def _from_bytes(cls, data: bytes, where: str) -> HNSWIndex:
        size = len(data)
        if size >= len(_MAGIC) and data[: len(_MAGIC)] != _MAGIC:
            raise ValueError(f"{where} is not an AgentDB index file (bad magic)")
        if size < _HEADER_SIZE + _TRAILER.size:
            raise ValueError(
                f"{where} is truncated: {size} bytes, expected at least "
                f"{_HEADER_SIZE + _TRAILER.size}"
            )
        (
            _magic,
            version,
            header_size,
            dim,
            metric_code,
            m,
            efc,
            efs,
            flags,
            n_slots,
            n_live,
            _max_level,
            _entry,
            m0,
            seed,
        ) = _HEADER.unpack_from(data, 0)
        if version != _FORMAT_VERSION:
            raise ValueError(
                f"{where} has unsupported format version {version} "
                f"(this build reads version {_FORMAT_VERSION})"
            )
        if (
            header_size != _HEADER_SIZE
            or not 1 <= dim <= _MAX_DIM_IN_FILE
            or metric_code not in _METRIC_NAMES
            or not _M_MIN <= m <= _M_MAX
            or efc == 0
            or efs == 0
            or n_live > n_slots
            or n_slots > _MAX_SLOTS_IN_FILE
        ):
            raise ValueError(f"{where} has a corrupt header")
        has_graph = bool(flags & _FLAG_HAS_GRAPH)
        off_ids = _HEADER_SIZE
        off_deleted = off_ids + 8 * n_slots
        off_vectors = off_deleted + n_slots
        off_norms = off_vectors + 4 * n_slots * dim
        end = off_norms + 4 * n_slots
        if has_graph:
            if m0 != 2 * m:
                raise ValueError(f"{where} has a corrupt header")
            fixed_end = end + 4 * n_slots + 4 * n_slots * (m0 + 1)
            if size < fixed_end + _TRAILER.size:
                raise ValueError(
                    f"{where} is truncated: {size} bytes, expected at least "
                    f"{fixed_end + _TRAILER.size}"
                )
            levels = np.frombuffer(data, dtype="<i4", count=n_slots, offset=end)
            if n_slots and (int(levels.min()) < 0 or int(levels.max()) > _MAX_LEVEL_IN_FILE):
                raise ValueError(f"{where} has a corrupt level table")
            upper_words = int(levels.sum(dtype=np.int64)) * (m + 1)
            end = fixed_end + 4 * upper_words
        expected = end + _TRAILER.size
        if size < expected:
            raise ValueError(f"{where} is truncated: {size} bytes, expected {expected}")
        if size > expected:
            raise ValueError(f"{where} is corrupt: {size - expected} unexpected trailing bytes")
        (stored_crc,) = _TRAILER.unpack_from(data, size - _TRAILER.size)
        if zlib.crc32(memoryview(data)[: size - _TRAILER.size]) & 0xFFFFFFFF != stored_crc:
            raise ValueError(f"{where} failed its checksum: checksum mismatch (corrupt file)")

        ids = np.frombuffer(data, dtype="<i8", count=n_slots, offset=off_ids)
        deleted_raw = np.frombuffer(data, dtype=np.uint8, count=n_slots, offset=off_deleted)
        vectors = np.frombuffer(data, dtype="<f4", count=n_slots * dim, offset=off_vectors)
        norms = np.frombuffer(data, dtype="<f4", count=n_slots, offset=off_norms)
        deleted = deleted_raw != 0
        live = np.flatnonzero(~deleted)
        if len(live) != n_live:
            raise ValueError(f"{where} is corrupt: live count mismatch")
        live_ids = ids[live]
        if len(np.unique(live_ids)) != len(live_ids):
            uniq, counts = np.unique(live_ids, return_counts=True)
            raise ValueError(f"{where} is corrupt: duplicate id {int(uniq[counts > 1][0])}")
        if np.any(live_ids == -1):
            raise ValueError(f"{where} is corrupt: id -1 is reserved")
        metric = _METRIC_NAMES[metric_code]
        x = vectors.reshape(n_slots, dim)
        live_x = x[live]
        if not math.isfinite(float(live_x.sum(dtype=np.float64))) or not math.isfinite(
            float(norms[live].sum(dtype=np.float64))
        ):
            raise ValueError(f"{where} is corrupt: non-finite vector data")

        index = cls(
            dim,
            metric,
            m,
            efc,
            efs,
            capacity=max(n_slots, 1),
            threads=0,
            seed=seed,
        )
        index._x[:n_slots] = x
        index._ids[:n_slots] = ids
        index._deleted[:n_slots] = deleted
        if metric == "cosine":
            index._norms[:n_slots] = norms
        index._sq[:n_slots] = _row_sqnorms(index._x[:n_slots])
        index._n_slots = n_slots
        index._slot_of = dict(zip(live_ids.tolist(), live.tolist()))
        index._free = np.flatnonzero(deleted)[::-1].tolist()  # pop() reuses low slots first
        return index
