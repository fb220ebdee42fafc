"""Argument conversion and checks of the numpy hypergraph (mirrors ``cpp/bindings/hypergraph.cpp``).

Every public method of :class:`~agentdb.engines.numpy_graph.Hypergraph` converts its
arguments here, so the numpy twin accepts and rejects exactly what the native class does
(same exception types and messages), and shapes path results like it
(:func:`path_arrays`).

Example:
    >>> ids_arg(np.array([3, 1]), "ids"), direction_arg("both")
    ([3, 1], 'both')
    >>> int_arg(True, "id")
    Traceback (most recent call last):
    ...
    TypeError: id must be an int, got bool
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DIRECTIONS",
    "I32_MAX",
    "SCORES",
    "I32",
    "I64",
    "PathArrays",
    "PathTuple",
    "as_arrays_arg",
    "check_distinct",
    "check_hops",
    "check_len",
    "check_offsets",
    "direction_arg",
    "f32",
    "float_arg",
    "floats_arg",
    "i32_arg",
    "ids_arg",
    "int_arg",
    "opt_ids_arg",
    "opt_label_arg",
    "path_arrays",
    "types_arg",
]

I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
#: One path: ``(node ids, edge ids, product, min, sum)``.
PathTuple = tuple[list[int], list[int], float, float, float]
#: Paths as flat arrays: ``(nodes, node_offsets, edges, edge_offsets, product, min, sum)``.
PathArrays = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]

_MAX_HOPS: Final = 64
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
I32_MAX: Final = (1 << 31) - 1
DIRECTIONS: Final = ("out", "in", "both")
SCORES: Final = ("product", "min", "sum")


# =========================================================================================
# scalars
# =========================================================================================
def int_arg(value: object, what: str) -> int:
    """An integer-like scalar (not bool, not float) that fits in int64, as ``int``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None
    if not _I64_MIN <= v <= _I64_MAX:
        raise ValueError(f"{what} does not fit in int64")
    return v


def i32_arg(value: object, what: str, lo: int) -> int:
    """:func:`int_arg` restricted to ``[lo, 2**31 - 1]``."""
    v = int_arg(value, what)
    if not lo <= v <= I32_MAX:
        raise ValueError(f"{what} must be in [{lo}, 2147483647], got {v}")
    return v


def float_arg(value: object, what: str) -> float:
    """A real number (not bool, not a string) as ``float``."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{what} must be a real number")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a real number") from None


def direction_arg(value: object) -> str:
    """``"out"``, ``"in"`` or ``"both"`` (TypeError for a non-string, else ValueError)."""
    if not isinstance(value, str):
        raise TypeError(f"direction must be 'out', 'in' or 'both', got {value!r}")
    if value not in DIRECTIONS:
        raise ValueError(f"direction must be 'out', 'in' or 'both', got '{value}'")
    return value


def opt_label_arg(value: object, what: str) -> int | None:
    """None, or a label in ``[-1, 2**31 - 1]``."""
    return None if value is None else i32_arg(value, what, -1)


def as_arrays_arg(value: object) -> bool:
    """The ``as_arrays`` flag: a real bool only."""
    if not isinstance(value, bool):
        raise TypeError(f"as_arrays must be a bool, got {value!r}")
    return value


# =========================================================================================
# sequences
# =========================================================================================
def _array(obj: object) -> np.ndarray:
    if isinstance(obj, (np.ndarray, list, tuple)):
        return np.asarray(obj)
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        return np.asarray(list(obj))
    return np.asarray(obj)


def _flat(obj: object, what: str, kinds: str, dtype: type, expected: str) -> list[Any]:
    """A scalar or 1-D sequence -> Python list, checking the dtype kind (``kinds``)."""
    arr = _array(obj)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:
        return []
    if arr.dtype.kind not in kinds:
        raise TypeError(f"{what} must be {expected}, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{what} must be 1-D")
    return arr.astype(dtype).tolist()


def ids_arg(obj: object, what: str) -> list[int]:
    """An int or a 1-D integer sequence -> list of Python ints (the ``as_ids`` rule)."""
    if isinstance(obj, (bool, np.bool_)):
        raise TypeError(f"{what} must be integers, got bool")
    if isinstance(obj, int):
        return [int_arg(obj, what)]
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{what} must be integers, got str")
    return _flat(obj, what, "iu", np.int64, "integers")


def floats_arg(obj: object, what: str) -> list[float]:
    """A number or a 1-D sequence of real numbers -> list of Python floats."""
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{what} must be a 1-D sequence of numbers")
    return _flat(obj, what, "fiu", np.float64, "real numbers")


def types_arg(value: object) -> frozenset[int] | None:
    """None (every type), or the edge type codes (each in ``[0, 2**31 - 1]``) as a set."""
    if value is None:
        return None
    out = []
    for t in ids_arg(value, "types"):
        if not 0 <= t <= I32_MAX:
            raise ValueError(f"types must be in [0, 2147483647], got {t}")
        out.append(t)
    return frozenset(out)


def opt_ids_arg(value: object, what: str) -> set[int] | None:
    """None, or the ids of :func:`ids_arg` as a set."""
    return None if value is None else set(ids_arg(value, what))


# =========================================================================================
# checks
# =========================================================================================
def check_len(got: int, want: int, what: str, rule: str) -> None:
    """ValueError unless ``got == want`` (``rule`` says what ``want`` is, e.g. ``len(ids)``)."""
    if got != want:
        raise ValueError(f"{what} must have {rule} = {want} entries, got {got}")


def check_hops(min_hops: int, max_hops: int) -> None:
    """ValueError unless ``0 <= min_hops <= max_hops <= 64``."""
    if min_hops < 0:
        raise ValueError(f"min_hops must be >= 0, got {min_hops}")
    if max_hops < min_hops:
        raise ValueError(f"max_hops must be >= min_hops ({min_hops}), got {max_hops}")
    if max_hops > _MAX_HOPS:
        raise ValueError(f"max_hops must be <= 64, got {max_hops}")


def check_offsets(off: list[int], n: int, total: int, what: str, nodes_what: str) -> None:
    """ValueError unless the CSR offsets ``off`` (``n + 1`` entries) run from 0 to ``total``
    without decreasing."""
    ok = off[0] == 0 and off[n] == total and all(off[i] <= off[i + 1] for i in range(n))
    if not ok:
        raise ValueError(
            f"{what} must start at 0, be non-decreasing and end at len({nodes_what}) = {total}"
        )


def check_distinct(nodes: list[int], edge: int, side: str) -> None:
    """ValueError when a node repeats in the tail (or head) ``side`` of ``edge``."""
    seen: set[int] = set()
    for v in nodes:
        if v in seen:
            raise ValueError(f"duplicate node {v} in the {side} of edge {edge}")
        seen.add(v)


# =========================================================================================
# values and results
# =========================================================================================
def f32(x: float) -> float:
    """``x`` rounded to float32 (confidences are stored so)."""
    return float(np.float32(x))


def path_arrays(paths: list[PathTuple]) -> PathArrays:
    """``(nodes, node_offsets, edges, edge_offsets, product, min, sum)`` of path tuples.

    Example:
        >>> nodes, noff, *_ = path_arrays([([1, 2], [7], 0.5, 0.5, 0.5)])
        >>> nodes.tolist(), noff.tolist()
        ([1, 2], [0, 2])
    """
    noff = np.zeros(len(paths) + 1, np.int64)
    eoff = np.zeros(len(paths) + 1, np.int64)
    noff[1:] = np.cumsum([len(p[0]) for p in paths]) if paths else []
    eoff[1:] = np.cumsum([len(p[1]) for p in paths]) if paths else []
    nodes = np.fromiter((x for p in paths for x in p[0]), np.int64, int(noff[-1]))
    edges = np.fromiter((x for p in paths for x in p[1]), np.int64, int(eoff[-1]))
    scores = [np.asarray([p[k] for p in paths], np.float64) for k in (2, 3, 4)]
    return nodes, noff, edges, eoff, scores[0], scores[1], scores[2]
