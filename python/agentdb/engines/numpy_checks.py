"""Input conversion and validation of the numpy vector backend (the contract's rules).

Every public entry point of :mod:`.numpy_kernels`, :mod:`.numpy_hnsw` and the attention
twins converts its arguments here, so the numpy backend accepts and rejects exactly what the
native extension does: arrays follow ``np.ascontiguousarray(x, dtype=np.float32)`` (other
real dtypes are copied; bool-free integer scalars only; NaN/inf, empty or wrongly-shaped input
raises ``ValueError`` naming the argument), ids become a 1-D int64 array.

Example:
    >>> as_matrix([1, 2], "x")[0].shape, as_ids([3, 1])[0].tolist()
    ((1, 2), [3, 1])
    >>> check_metric("l2")
    'l2'
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "INT64_MAX",
    "METRIC_CODES",
    "METRIC_NAMES",
    "U32_MAX",
    "U64_MAX",
    "Bools",
    "F32",
    "F64",
    "I64",
    "Predicate",
    "as_id",
    "as_ids",
    "as_int",
    "as_matrix",
    "as_vector",
    "check_k",
    "check_metric",
    "check_range",
    "check_threads",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]
Predicate = Callable[[int], Any]

#: Metric name -> code stored in index files (and back).
METRIC_CODES: Final = {"cosine": 0, "ip": 1, "l2": 2}
METRIC_NAMES: Final = {code: name for name, code in METRIC_CODES.items()}

U32_MAX: Final = 0xFFFFFFFF
U64_MAX: Final = (1 << 64) - 1
INT64_MAX: Final = (1 << 63) - 1


def check_metric(metric: object) -> str:
    """The metric name if it is one of ``"cosine"``, ``"ip"``, ``"l2"`` (else ValueError)."""
    if isinstance(metric, str) and metric in METRIC_CODES:
        return metric
    raise ValueError(f"unknown metric {metric!r}: expected one of 'cosine', 'ip', 'l2'")


def as_int(value: object, name: str) -> int:
    """Convert an integer-like scalar (not bool, not float) to ``int``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def check_k(k: object) -> int:
    """``k`` as an int >= 1 (TypeError for a non-integer, ValueError below 1)."""
    kk = as_int(k, "k")
    if kk < 1:
        raise ValueError(f"k must be >= 1, got {kk}")
    return kk


def check_threads(threads: object) -> int:
    """``threads`` as an int >= 0 (0 = all cores)."""
    t = as_int(threads, "threads")
    if t < 0:
        raise ValueError(f"threads must be >= 0 (0 = all cores), got {t}")
    return t


def check_range(value: object, name: str, lo: int, hi: int, what: str) -> int:
    """``value`` as an int in ``[lo, hi]``; the ValueError says it must be ``what``."""
    v = as_int(value, name)
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


def as_vector(x: ArrayLike, what: str) -> F32:
    """A non-empty, finite 1-D float32 vector (``what`` names it in errors)."""
    arr = _as_float32(x, what)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D vector, got {arr.ndim}-D")
    if arr.size == 0:
        raise ValueError(f"{what} is empty")
    _ensure_finite(arr, what)
    return arr


def as_matrix(x: ArrayLike, what: str) -> tuple[F32, bool]:
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


def as_ids(ids: object) -> tuple[I64, bool]:
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
        if arr.size and int(arr.max()) > INT64_MAX:
            raise ValueError("ids must fit in int64")
        out = arr.astype(np.int64)
    elif kind == "O":
        values = []
        for v in arr.reshape(-1).tolist():
            iv = as_int(v, "ids")
            if not -INT64_MAX - 1 <= iv <= INT64_MAX:
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


def as_id(value: object) -> int:
    """One id as an int (the :func:`as_int` rule)."""
    return as_int(value, "id")
