"""Pure-Python fallback of the causal hypergraph (twin of ``agentdb._native.Hypergraph``).

Implements the contract of ``spec_graph.md`` with the same API, results and errors as the C++
class in ``cpp/hypergraph.hpp``; storage here is plain dicts (node -> incident edge ids, edge
id -> record), so it favours correctness over speed.

Model: nodes have an int64 id (not -1) and an int32 label (-1 = none); a hyperedge has an id,
a type code >= 0, a tail (causes) and a head (effects) of distinct known nodes, a float32
confidence in [0, 1] and a float64 timestamp.  Traversals use the binary projection: hyperedge
``e`` gives ``a -[e]-> b`` for every ``a`` in its tail and ``b`` in its head ("out" walks
tail->head, "in" head->tail, "both" either; a pair ``(b, e)`` is reported once).

Rules shared with the native backend:

* Paths are simple: no node repeats and no hyperedge repeats.  Scores are accumulated over the
  edge confidences (float32 values) in returned order in float64: product ``((1*c1)*c2)...``,
  min, sum ``((0+c1)+c2)...``; an empty path scores ``(1.0, 1.0, 0.0)``.
* ``buffered()`` counts edges added since the last compaction (removed ones included); after
  an insert, when it exceeds ``max(1024, csr_edges // 4)`` (``csr_edges`` = live edges at the
  last compaction) the graph compacts itself.  Here compaction is bookkeeping only.
* Files use the "AGDBHYPG" version 1 format (see :data:`FILE_FORMAT`); both backends write
  byte-identical files for the same graph and read each other's.

Example:
    >>> g = Hypergraph()
    >>> g.add_nodes([1, 2, 3], [0, 1, 1])
    >>> g.add_edge(10, 0, [1], [2, 3], confidence=0.5)
    >>> g.add_edge(11, 0, [2], [3], confidence=0.75)
    >>> g.neighbors(1)[0].tolist()
    [2, 3]
    >>> [(p[0], p[1], p[2]) for p in g.paths(1, max_hops=2)]
    [([1, 2], [10], 0.5), ([1, 3], [10], 0.5), ([1, 2, 3], [10, 11], 0.375)]
"""

from __future__ import annotations

import bisect
import operator
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from .fileio import write_crc_file

__all__ = ["BACKEND", "FILE_FORMAT", "Hypergraph"]

BACKEND: Final = "numpy"

I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
Path_ = tuple[list[int], list[int], float, float, float]
_Edge = tuple[int, tuple[int, ...], tuple[int, ...], float, float]  # type, tail, head, c, t

FILE_FORMAT: Final = """\
AGDBHYPG version 1, little endian, written atomically (temporary file + rename).
header, 64 bytes:
  0  char[8]  magic "AGDBHYPG"
  8  u32      version = 1
  12 u32      header_size = 64
  16 u64      n_nodes
  24 u64      n_edges
  32 u64      n_tail   (total tail entries)
  40 u64      n_head   (total head entries)
  48 u32      flags = 0
  52 u8[12]   reserved, zero
sections, back to back, no padding (live items only):
  node_ids      i64[n_nodes]      strictly ascending, != -1
  node_labels   i32[n_nodes]      >= -1
  edge_ids      i64[n_edges]      strictly ascending, != -1
  edge_types    i32[n_edges]      >= 0
  edge_conf     f32[n_edges]      in [0, 1]
  edge_time     f64[n_edges]
  tail_offsets  u64[n_edges + 1]  0 = first <= ... <= last = n_tail, each edge non-empty
  tail_nodes    u32[n_tail]       index into the node section, distinct within an edge
  head_offsets  u64[n_edges + 1]  same rules with n_head
  head_nodes    u32[n_head]
trailer: u32 CRC-32 (zlib.crc32) of every preceding byte.
"""

_MAGIC: Final = b"AGDBHYPG"
_VERSION: Final = 1
_HEADER_SIZE: Final = 64
_HEADER: Final = struct.Struct("<8sIIQQQQI12s")
_TRAILER: Final = struct.Struct("<I")
_MAX_SLOTS: Final = 0xFFFFFFFE  # nodes
_MAX_EDGES: Final = 0x7FFFFFFE  # edges (the native projection flags bit 31)
_MAX_COUNT: Final = 1 << 40
_MAX_HOPS: Final = 64
_MIN_BUFFER: Final = 1024
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
_I32_MAX: Final = (1 << 31) - 1
_DIRECTIONS: Final = ("out", "in", "both")
_SCORES: Final = ("product", "min", "sum")
_INF: Final = float("inf")


# =========================================================================================
# argument conversion (mirrors cpp/bindings.cpp)
# =========================================================================================
def _int(value: object, what: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None
    if not _I64_MIN <= v <= _I64_MAX:
        raise ValueError(f"{what} does not fit in int64")
    return v


def _i32(value: object, what: str, lo: int) -> int:
    v = _int(value, what)
    if not lo <= v <= _I32_MAX:
        raise ValueError(f"{what} must be in [{lo}, 2147483647], got {v}")
    return v


def _float(value: object, what: str) -> float:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{what} must be a real number")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a real number") from None


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


def _ids(obj: object, what: str) -> list[int]:
    """An int or a 1-D integer sequence -> list of Python ints (the ``as_ids`` rule)."""
    if isinstance(obj, (bool, np.bool_)):
        raise TypeError(f"{what} must be integers, got bool")
    if isinstance(obj, int):
        return [_int(obj, what)]
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{what} must be integers, got str")
    return _flat(obj, what, "iu", np.int64, "integers")


def _floats(obj: object, what: str) -> list[float]:
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{what} must be a 1-D sequence of numbers")
    return _flat(obj, what, "fiu", np.float64, "real numbers")


def _dir(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"direction must be 'out', 'in' or 'both', got {value!r}")
    if value not in _DIRECTIONS:
        raise ValueError(f"direction must be 'out', 'in' or 'both', got '{value}'")
    return value


def _types(value: object) -> frozenset[int] | None:
    if value is None:
        return None
    out = []
    for t in _ids(value, "types"):
        if not 0 <= t <= _I32_MAX:
            raise ValueError(f"types must be in [0, 2147483647], got {t}")
        out.append(t)
    return frozenset(out)


def _opt_label(value: object, what: str) -> int | None:
    return None if value is None else _i32(value, what, -1)


def _opt_ids(value: object, what: str) -> set[int] | None:
    return None if value is None else set(_ids(value, what))


def _as_arrays_flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"as_arrays must be a bool, got {value!r}")
    return value


PathArrays = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]


def _path_arrays(paths: list[Path_]) -> PathArrays:
    """``(nodes, node_offsets, edges, edge_offsets, product, min, sum)`` of path tuples."""
    noff = np.zeros(len(paths) + 1, np.int64)
    eoff = np.zeros(len(paths) + 1, np.int64)
    noff[1:] = np.cumsum([len(p[0]) for p in paths]) if paths else []
    eoff[1:] = np.cumsum([len(p[1]) for p in paths]) if paths else []
    nodes = np.fromiter((x for p in paths for x in p[0]), np.int64, int(noff[-1]))
    edges = np.fromiter((x for p in paths for x in p[1]), np.int64, int(eoff[-1]))
    scores = [np.asarray([p[k] for p in paths], np.float64) for k in (2, 3, 4)]
    return nodes, noff, edges, eoff, scores[0], scores[1], scores[2]


def _check_len(got: int, want: int, what: str, rule: str) -> None:
    if got != want:
        raise ValueError(f"{what} must have {rule} = {want} entries, got {got}")


def _check_hops(min_hops: int, max_hops: int) -> None:
    if min_hops < 0:
        raise ValueError(f"min_hops must be >= 0, got {min_hops}")
    if max_hops < min_hops:
        raise ValueError(f"max_hops must be >= min_hops ({min_hops}), got {max_hops}")
    if max_hops > _MAX_HOPS:
        raise ValueError(f"max_hops must be <= 64, got {max_hops}")


def _check_offsets(off: list[int], n: int, total: int, what: str, nodes_what: str) -> None:
    ok = off[0] == 0 and off[n] == total and all(off[i] <= off[i + 1] for i in range(n))
    if not ok:
        raise ValueError(
            f"{what} must start at 0, be non-decreasing and end at len({nodes_what}) = {total}"
        )


def _check_distinct(nodes: list[int], edge: int, side: str) -> None:
    seen: set[int] = set()
    for v in nodes:
        if v in seen:
            raise ValueError(f"duplicate node {v} in the {side} of edge {edge}")
        seen.add(v)


def _f32(x: float) -> float:
    return float(np.float32(x))


def _scores(confs: list[float]) -> tuple[float, float, float]:
    p, m, s = 1.0, 1.0, 0.0
    for c in confs:
        p *= c
        m = min(m, c)
        s += c
    return p, m, s


def _num(v: float) -> str:
    return repr(v)


# =========================================================================================
# the graph
# =========================================================================================
class Hypergraph:
    """Causal hypergraph with hyperedges tail -> head (pure-Python backend).

    All methods are thread-safe (one re-entrant lock).  See the module docstring for the
    model, and ``spec_graph.md`` for the full contract.

    Example:
        >>> g = Hypergraph()
        >>> g.add_node(1, label=3)
        >>> g.add_node(2)
        >>> g.add_edge(7, 0, [1], [2], confidence=0.9, timestamp=12.5)
        >>> g.num_nodes(), g.num_edges(), g.node_label(1)
        (2, 1, 3)
        >>> t, tail, head, c, ts = g.edge(7)
        >>> t, tail.tolist(), head.tolist(), round(c, 6), ts
        (0, [1], [2], 0.9, 12.5)
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._label: dict[int, int] = {}
        self._edges: dict[int, _Edge] = {}
        self._out: dict[int, dict[int, None]] = {}  # node -> edges with the node in the tail
        self._in: dict[int, dict[int, None]] = {}  # node -> edges with the node in the head
        self._csr_edges = 0
        self._buffered = 0

    def __repr__(self) -> str:
        return f"Hypergraph(nodes={self.num_nodes()}, edges={self.num_edges()}, backend='numpy')"

    # -- internal helpers -----------------------------------------------------------------
    def _node(self, nid: int) -> int:
        if nid not in self._label:
            raise KeyError(f"unknown node {nid}")
        return nid

    def _edge(self, eid: int) -> _Edge:
        rec = self._edges.get(eid)
        if rec is None:
            raise KeyError(f"unknown edge {eid}")
        return rec

    def _nbrs(self, a: int, direction: str, tf: frozenset[int] | None) -> list[tuple[int, int]]:
        """Every distinct (b, e) with a -[e]-> b in ``direction``."""
        out: list[tuple[int, int]] = []
        edges = self._edges
        if direction != "in":
            for e in self._out[a]:
                t, _tail, head, _c, _ts = edges[e]
                if tf is None or t in tf:
                    for b in head:
                        out.append((b, e))
        if direction != "out":
            both = direction == "both"
            for e in self._in[a]:
                t, tail, head, _c, _ts = edges[e]
                if tf is None or t in tf:
                    a_in_tail = both and a in tail
                    for b in tail:
                        if a_in_tail and b in head:
                            continue  # already reported by the "out" half
                        out.append((b, e))
        return out

    def _maybe_compact(self, added: int) -> None:
        if self._buffered + added > max(_MIN_BUFFER, self._csr_edges // 4):
            self._compact()
        else:
            self._buffered += added

    def _compact(self) -> None:
        self._csr_edges = len(self._edges)
        self._buffered = 0

    def _drop_edge(self, eid: int) -> None:
        _t, tail, head, _c, _ts = self._edges.pop(eid)
        for v in tail:
            self._out[v].pop(eid, None)
        for v in head:
            self._in[v].pop(eid, None)

    # -- writes -------------------------------------------------------------------------
    def add_node(self, id: int, label: int = -1) -> None:  # noqa: A002 - contract name
        """Insert a node, or change the label of an existing one (upsert).

        Example:
            >>> g = Hypergraph()
            >>> g.add_node(5, 2); g.add_node(5, 4)
            >>> g.node_label(5), g.num_nodes()
            (4, 1)
        """
        nid = _int(id, "id")
        lab = _int(label, "label")
        self._add_nodes([nid], [lab])

    def add_nodes(self, ids: Any, labels: Any = None) -> None:
        """Bulk upsert; ``labels`` defaults to -1 for every node.  All-or-nothing.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes(np.array([3, 1, 2]), np.array([0, 0, 1], dtype=np.int32))
            >>> g.node_ids().tolist(), g.nodes_with_label(0).tolist()
            ([1, 2, 3], [1, 3])
        """
        id_list = _ids(ids, "ids")
        lab_list: list[int] | None = None
        if labels is not None:
            lab_list = _ids(labels, "labels")
            _check_len(len(lab_list), len(id_list), "labels", "len(ids)")
        self._add_nodes(id_list, lab_list if lab_list is not None else [-1] * len(id_list))

    def _add_nodes(self, ids: list[int], labels: list[int]) -> None:
        for nid, lab in zip(ids, labels):
            if nid == -1:
                raise ValueError("node id -1 is reserved")
            if not -1 <= lab <= _I32_MAX:
                raise ValueError(f"label must be in [-1, 2147483647], got {lab}")
        with self._lock:
            for nid, lab in zip(ids, labels):
                if nid not in self._label:
                    self._out[nid] = {}
                    self._in[nid] = {}
                self._label[nid] = lab

    def add_edge(
        self,
        id: int,  # noqa: A002 - contract name
        type: int,  # noqa: A002 - contract name
        tail: Any,
        head: Any,
        confidence: float = 1.0,
        timestamp: float = 0.0,
    ) -> None:
        """Insert hyperedge ``tail -> head``; edge ids are not upserted.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2])
            >>> g.add_edge(1, 0, [1], [2], confidence=0.5)
            >>> try:
            ...     g.add_edge(1, 0, [1], [2])
            ... except ValueError as exc:
            ...     print(exc)
            duplicate edge id 1
        """
        eid = _int(id, "id")
        etype = _int(type, "type")
        tl = _ids(tail, "tail")
        hd = _ids(head, "head")
        c = _float(confidence, "confidence")
        ts = _float(timestamp, "timestamp")
        self._add_edges([eid], [etype], [0, len(tl)], tl, [0, len(hd)], hd, [c], [ts])

    def add_edges(
        self,
        ids: Any,
        types: Any,
        tail_offsets: Any,
        tail_nodes: Any,
        head_offsets: Any,
        head_nodes: Any,
        confidences: Any = None,
        timestamps: Any = None,
    ) -> None:
        """Bulk insert with CSR-style offsets (``len = len(ids) + 1``).  All-or-nothing.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edges([5, 6], [0, 1], [0, 1, 3], [1, 1, 2], [0, 1, 2], [2, 3],
            ...             [0.5, 1.0], [1.0, 2.0])
            >>> g.edge(6)[1].tolist(), g.edge(6)[2].tolist()
            ([1, 2], [3])
        """
        id_list = _ids(ids, "ids")
        type_list = _ids(types, "types")
        toff = _ids(tail_offsets, "tail_offsets")
        tn = _ids(tail_nodes, "tail_nodes")
        hoff = _ids(head_offsets, "head_offsets")
        hn = _ids(head_nodes, "head_nodes")
        conf = None if confidences is None else _floats(confidences, "confidences")
        ts = None if timestamps is None else _floats(timestamps, "timestamps")
        n = len(id_list)
        _check_len(len(type_list), n, "types", "len(ids)")
        _check_len(len(toff), n + 1, "tail_offsets", "len(ids) + 1")
        _check_len(len(hoff), n + 1, "head_offsets", "len(ids) + 1")
        if conf is not None:
            _check_len(len(conf), n, "confidences", "len(ids)")
        if ts is not None:
            _check_len(len(ts), n, "timestamps", "len(ids)")
        self._add_edges(
            id_list,
            type_list,
            toff,
            tn,
            hoff,
            hn,
            conf if conf is not None else [1.0] * n,
            ts if ts is not None else [0.0] * n,
        )

    def _add_edges(
        self,
        ids: list[int],
        types: list[int],
        toff: list[int],
        tn: list[int],
        hoff: list[int],
        hn: list[int],
        conf: list[float],
        ts: list[float],
    ) -> None:
        n = len(ids)
        _check_offsets(toff, n, len(tn), "tail_offsets", "tail_nodes")
        _check_offsets(hoff, n, len(hn), "head_offsets", "head_nodes")
        with self._lock:
            batch: set[int] = set()
            records: list[tuple[int, _Edge]] = []
            for i in range(n):
                eid, t, c = ids[i], types[i], conf[i]
                if eid == -1:
                    raise ValueError("edge id -1 is reserved")
                if not 0 <= t <= _I32_MAX:
                    raise ValueError(f"edge type must be in [0, 2147483647], got {t}")
                if not 0.0 <= c <= 1.0:
                    raise ValueError(f"confidence must be in [0, 1], got {_num(c)} (edge {eid})")
                tail = tn[toff[i] : toff[i + 1]]
                head = hn[hoff[i] : hoff[i + 1]]
                if not tail:
                    raise ValueError(f"edge {eid} has an empty tail")
                if not head:
                    raise ValueError(f"edge {eid} has an empty head")
                _check_distinct(tail, eid, "tail")
                _check_distinct(head, eid, "head")
                if eid in self._edges or eid in batch:
                    raise ValueError(f"duplicate edge id {eid}")
                batch.add(eid)
                for v in tail:
                    self._node(v)
                for v in head:
                    self._node(v)
                records.append((eid, (t, tuple(tail), tuple(head), _f32(c), float(ts[i]))))
            for eid, rec in records:
                self._edges[eid] = rec
                for v in rec[1]:
                    self._out[v][eid] = None
                for v in rec[2]:
                    self._in[v][eid] = None
            self._maybe_compact(n)

    def remove_node(self, id: int) -> None:  # noqa: A002 - contract name
        """Remove a node and every edge incident to it (KeyError if unknown).

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2]); g.add_edge(9, 0, [1], [2])
            >>> g.remove_node(2)
            >>> g.has_edge(9), g.num_nodes()
            (False, 1)
        """
        nid = _int(id, "id")
        with self._lock:
            self._node(nid)
            for e in list(self._out[nid]) + list(self._in[nid]):
                if e in self._edges:
                    self._drop_edge(e)
            del self._label[nid], self._out[nid], self._in[nid]

    def remove_edge(self, id: int) -> None:  # noqa: A002 - contract name
        """Remove one hyperedge (KeyError if unknown)."""
        eid = _int(id, "id")
        with self._lock:
            self._edge(eid)
            self._drop_edge(eid)

    def compact(self) -> None:
        """Merge the append buffer (bookkeeping only in this backend)."""
        with self._lock:
            self._compact()

    # -- simple reads -------------------------------------------------------------------
    def has_node(self, id: int) -> bool:  # noqa: A002 - contract name
        nid = _int(id, "id")
        with self._lock:
            return nid in self._label

    def has_edge(self, id: int) -> bool:  # noqa: A002 - contract name
        eid = _int(id, "id")
        with self._lock:
            return eid in self._edges

    def node_label(self, id: int) -> int:  # noqa: A002 - contract name
        nid = _int(id, "id")
        with self._lock:
            return self._label[self._node(nid)]

    def edge(self, id: int) -> tuple[int, I64, I64, float, float]:  # noqa: A002
        """``(type, tail ids, head ids, confidence, timestamp)``; KeyError if unknown."""
        eid = _int(id, "id")
        with self._lock:
            t, tail, head, c, ts = self._edge(eid)
        return t, np.array(tail, dtype=np.int64), np.array(head, dtype=np.int64), c, ts

    def num_nodes(self) -> int:
        with self._lock:
            return len(self._label)

    def num_edges(self) -> int:
        with self._lock:
            return len(self._edges)

    def node_ids(self) -> I64:
        with self._lock:
            return np.array(sorted(self._label), dtype=np.int64)

    def edge_ids(self) -> I64:
        with self._lock:
            return np.array(sorted(self._edges), dtype=np.int64)

    def nodes_with_label(self, label: int) -> I64:
        lab = _i32(label, "label", -1)
        with self._lock:
            return np.array(sorted(v for v, x in self._label.items() if x == lab), np.int64)

    def buffered(self) -> int:
        """Edges added since the last compaction (removed ones included)."""
        with self._lock:
            return self._buffered

    def memory_usage(self) -> int:
        """Rough bytes held (dict and tuple overheads estimated)."""
        with self._lock:
            n, m = len(self._label), len(self._edges)
            inc = sum(len(r[1]) + len(r[2]) for r in self._edges.values())
            return 64 + n * 400 + m * 300 + inc * 120

    # -- traversals ---------------------------------------------------------------------
    def neighbors(
        self,
        id: int,  # noqa: A002 - contract name
        direction: str = "out",
        types: Any = None,
    ) -> tuple[I64, I64]:
        """One hop: every ``(b, e)`` with ``id -[e]-> b``, sorted by ``(b, e)``.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(5, 0, [1], [2, 3]); g.add_edge(4, 1, [3], [1])
            >>> [a.tolist() for a in g.neighbors(1, "both")]
            [[2, 3, 3], [5, 4, 5]]
        """
        d = _dir(direction)
        tf = _types(types)
        nid = _int(id, "id")
        with self._lock:
            pairs = sorted(self._nbrs(self._node(nid), d, tf))
        return (
            np.array([b for b, _ in pairs], dtype=np.int64),
            np.array([e for _, e in pairs], dtype=np.int64),
        )

    def khop(
        self, seeds: Any, k: int, direction: str = "out", types: Any = None
    ) -> tuple[I64, I32]:
        """Nodes within 1..k hops with their minimum hop count, sorted by id.

        Seeds are reported only when re-reached through a cycle.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(1, 0, [1], [2]); g.add_edge(2, 0, [2], [3]); g.add_edge(3, 0, [3], [1])
            >>> [a.tolist() for a in g.khop(1, 2)]
            [[2, 3], [1, 2]]
            >>> [a.tolist() for a in g.khop([1], 3)]
            [[1, 2, 3], [3, 1, 2]]
        """
        d = _dir(direction)
        tf = _types(types)
        kk = _int(k, "k")
        seed_list = _ids(seeds, "seeds")
        if kk < 1:
            raise ValueError(f"k must be >= 1, got {kk}")
        with self._lock:
            for s in seed_list:
                self._node(s)
            dist: dict[int, int] = {}
            frontier: list[int] = []
            for s in seed_list:
                if s not in dist:
                    dist[s] = 0
                    frontier.append(s)
            seeds_set = set(frontier)
            seed_hop: dict[int, int] = {}
            depth = 0
            while depth < kk and frontier:
                nxt: list[int] = []
                for u in frontier:
                    for b, _e in self._nbrs(u, d, tf):
                        if b in seeds_set:
                            seed_hop.setdefault(b, depth + 1)
                        elif b not in dist:
                            dist[b] = depth + 1
                            nxt.append(b)
                frontier = nxt
                depth += 1
        found = {v: h for v, h in dist.items() if v not in seeds_set}
        found.update(seed_hop)
        order = sorted(found)
        return (
            np.array(order, dtype=np.int64),
            np.array([found[v] for v in order], dtype=np.int32),
        )

    def _dist_to(self, dst: int, max_d: int, direction: str, tf: frozenset[int] | None) -> dict:
        rev = {"out": "in", "in": "out", "both": "both"}[direction]
        dist = {dst: 0}
        frontier = [dst]
        depth = 0
        while depth < max_d and frontier:
            nxt = []
            for u in frontier:
                for b, _e in self._nbrs(u, rev, tf):
                    if b not in dist:
                        dist[b] = depth + 1
                        nxt.append(b)
            frontier = nxt
            depth += 1
        return dist

    def _walk(
        self,
        root: int,
        max_hops: int,
        direction: str,
        tf: frozenset[int] | None,
        admit: Callable[[int, int, int, list[int], list[int]], bool],
        step: Callable[[int, int, list[int], list[int]], bool],
    ) -> None:
        """DFS over simple paths (no repeated node or edge) from ``root``.

        ``admit(len, b, e, nodes, edges)`` filters a candidate (pruning); ``step(len, b,
        nodes, edges)`` sees the path with ``b`` appended and says whether to go deeper.
        """
        nodes = [root]
        edges: list[int] = []
        on_node = {root}
        on_edge: set[int] = set()

        def rec(v: int, depth: int) -> None:
            cands = [
                (b, e)
                for b, e in self._nbrs(v, direction, tf)
                if b not in on_node and e not in on_edge and admit(depth + 1, b, e, nodes, edges)
            ]
            for b, e in cands:
                nodes.append(b)
                edges.append(e)
                if step(depth + 1, b, nodes, edges) and depth + 1 < max_hops:
                    on_node.add(b)
                    on_edge.add(e)
                    rec(b, depth + 1)
                    on_node.discard(b)
                    on_edge.discard(e)
                nodes.pop()
                edges.pop()

        if max_hops > 0:
            rec(root, 0)

    def _finish(self, found: list[tuple[list[int], list[int]]]) -> list[Path_]:
        found.sort(key=lambda p: (len(p[1]), p[0], p[1]))
        edges = self._edges
        return [(n, e, *_scores([edges[x][3] for x in e])) for n, e in found]

    def paths(
        self,
        src: int,
        min_hops: int = 1,
        max_hops: int = 5,
        direction: str = "out",
        types: Any = None,
        dst: int | None = None,
        dst_label: int | None = None,
        src_label: int | None = None,
        limit: int = 100000,
        ends: Any = None,
        as_arrays: bool = False,
    ) -> Any:
        """Simple paths from ``src`` with ``min_hops..max_hops`` relationships.

        Returns ``[(node_ids, edge_ids, product, min, sum)]`` ordered by length, then node
        ids, then edge ids.  ValueError when more than ``limit`` paths match.  ``ends`` keeps
        only paths whose last node is one of those ids (unknown ids are ignored).  With
        ``as_arrays=True`` the same paths come back as flat numpy arrays ``(nodes,
        node_offsets, edges, edge_offsets, product, min, sum)``: path ``i`` is
        ``nodes[node_offsets[i]:node_offsets[i + 1]]``.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3], [0, 0, 7])
            >>> g.add_edge(1, 0, [1], [2, 3]); g.add_edge(2, 0, [2], [3])
            >>> [p[0] for p in g.paths(1, dst_label=7)]
            [[1, 3], [1, 2, 3]]
            >>> try:
            ...     g.paths(1, limit=2)
            ... except ValueError as exc:
            ...     print(exc)
            more than 2 paths; narrow the query or raise limit
        """
        d = _dir(direction)
        tf = _types(types)
        mn = _int(min_hops, "min_hops")
        mx = _int(max_hops, "max_hops")
        lim = _int(limit, "limit")
        s = _int(src, "src")
        dv = None if dst is None else _int(dst, "dst")
        dl = _opt_label(dst_label, "dst_label")
        sl = _opt_label(src_label, "src_label")
        allowed = _opt_ids(ends, "ends")
        arrays = _as_arrays_flag(as_arrays)
        _check_hops(mn, mx)
        if lim < 1:
            raise ValueError(f"limit must be >= 1, got {lim}")
        with self._lock:
            self._node(s)
            if dv is not None:
                self._node(dv)
            if sl is not None and self._label[s] != sl:
                return _path_arrays([]) if arrays else []
            labels = self._label
            dist = self._dist_to(dv, mx - 1, d, tf) if dv is not None else None
            found: list[tuple[list[int], list[int]]] = []

            def ends_ok(v: int) -> bool:
                return (
                    (dv is None or v == dv)
                    and (dl is None or labels[v] == dl)
                    and (allowed is None or v in allowed)
                )

            def emit(nodes: list[int], edges: list[int]) -> None:
                found.append((list(nodes), list(edges)))
                if len(found) > lim:
                    raise ValueError(f"more than {lim} paths; narrow the query or raise limit")

            def admit(ln: int, b: int, e: int, nodes: list[int], edges: list[int]) -> bool:
                return dist is None or dist.get(b, _INF) <= mx - ln

            def step(ln: int, b: int, nodes: list[int], edges: list[int]) -> bool:
                if ln >= mn and ends_ok(b):
                    emit(nodes, edges)
                return not (dv is not None and b == dv)

            if mn == 0 and ends_ok(s):
                emit([s], [])
            self._walk(s, mx, d, tf, admit, step)
            out = self._finish(found)
            return _path_arrays(out) if arrays else out

    def paths_to(
        self,
        dst: int,
        min_hops: int = 1,
        max_hops: int = 5,
        types: Any = None,
        src_label: int | None = None,
        limit: int = 100000,
        sources: Any = None,
        as_arrays: bool = False,
    ) -> Any:
        """Simple paths ``a -> ... -> dst`` ("out" semantics), enumerated backwards.

        Node ids are returned in forward order (first = source, last = ``dst``).  ``sources``
        keeps only paths starting at one of those ids; ``as_arrays`` as in :meth:`paths`.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3], [5, 0, 0])
            >>> g.add_edge(1, 0, [1], [2]); g.add_edge(2, 0, [2], [3])
            >>> [p[0] for p in g.paths_to(3)]
            [[2, 3], [1, 2, 3]]
            >>> [p[0] for p in g.paths_to(3, src_label=5)]
            [[1, 2, 3]]
        """
        tf = _types(types)
        mn = _int(min_hops, "min_hops")
        mx = _int(max_hops, "max_hops")
        lim = _int(limit, "limit")
        t = _int(dst, "dst")
        sl = _opt_label(src_label, "src_label")
        allowed = _opt_ids(sources, "sources")
        arrays = _as_arrays_flag(as_arrays)
        _check_hops(mn, mx)
        if lim < 1:
            raise ValueError(f"limit must be >= 1, got {lim}")
        with self._lock:
            self._node(t)
            labels = self._label
            found: list[tuple[list[int], list[int]]] = []

            def src_ok(v: int) -> bool:
                return (sl is None or labels[v] == sl) and (allowed is None or v in allowed)

            def emit(nodes: list[int], edges: list[int]) -> None:
                found.append((nodes[::-1], edges[::-1]))
                if len(found) > lim:
                    raise ValueError(f"more than {lim} paths; narrow the query or raise limit")

            def step(ln: int, b: int, nodes: list[int], edges: list[int]) -> bool:
                if ln >= mn and src_ok(b):
                    emit(nodes, edges)
                return True

            if mn == 0 and src_ok(t):
                emit([t], [])
            self._walk(t, mx, "in", tf, lambda *_: True, step)
            out = self._finish(found)
            return _path_arrays(out) if arrays else out

    def top_paths(
        self,
        src: int,
        min_hops: int = 1,
        max_hops: int = 5,
        direction: str = "out",
        types: Any = None,
        n: int = 10,
        score: str = "product",
        dst: int | None = None,
        ends: Any = None,
        as_arrays: bool = False,
    ) -> Any:
        """The ``n`` best simple paths by ``score`` ("product", "min" or "sum"), best first.

        ``ends`` keeps only paths ending at one of those ids; ``as_arrays`` as in
        :meth:`paths`.

        Ties keep the deterministic path order.  Branches are pruned when their score bound
        (product and min never grow along a path; a sum grows by at most 1 per hop) falls
        below the current n-th best.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3])
            >>> g.add_edge(1, 0, [1], [2], 0.5); g.add_edge(2, 0, [2], [3], 0.5)
            >>> g.add_edge(3, 0, [1], [3], 0.2)
            >>> [(p[0], p[2]) for p in g.top_paths(1, n=2, dst=3)]
            [([1, 2, 3], 0.25), ([1, 3], 0.20000000298023224)]
        """
        d = _dir(direction)
        tf = _types(types)
        mn = _int(min_hops, "min_hops")
        mx = _int(max_hops, "max_hops")
        nn = _int(n, "n")
        if not isinstance(score, str):
            raise TypeError(f"score must be 'product', 'min' or 'sum', got {score!r}")
        if score not in _SCORES:
            raise ValueError(f"score must be 'product', 'min' or 'sum', got '{score}'")
        s = _int(src, "src")
        dv = None if dst is None else _int(dst, "dst")
        allowed = _opt_ids(ends, "ends")
        arrays = _as_arrays_flag(as_arrays)
        _check_hops(mn, mx)
        if nn < 1:
            raise ValueError(f"n must be >= 1, got {nn}")
        which = _SCORES.index(score)
        cap = min(nn, 1 << 20)
        with self._lock:
            self._node(s)
            if dv is not None:
                self._node(dv)
            dist = self._dist_to(dv, mx - 1, d, tf) if dv is not None else None
            edges_db = self._edges
            # best: ascending keys (-score, length, nodes, edges) -> best first
            best: list[tuple[float, int, tuple[int, ...], tuple[int, ...]]] = []
            sc_stack: list[tuple[float, float, float]] = [(1.0, 1.0, 0.0)]

            def bound(ln: int, p: float, m: float, sm: float) -> float:
                return (p, m, sm + (mx - ln) + 1e-9)[which]

            def worst() -> float:
                return -best[-1][0]

            def offer(nodes: list[int], edges: list[int], sc: float) -> None:
                if len(best) >= cap and sc < worst():
                    return
                bisect.insort(best, (-sc, len(edges), tuple(nodes), tuple(edges)))
                if len(best) > cap:
                    best.pop()

            def admit(ln: int, b: int, e: int, nodes: list[int], edges: list[int]) -> bool:
                if dist is not None and dist.get(b, _INF) > mx - ln:
                    return False
                if len(best) < cap:
                    return True
                c = edges_db[e][3]
                p, m, sm = sc_stack[ln - 1]
                return not bound(ln, p * c, min(m, c), sm + c) < worst()

            def step(ln: int, b: int, nodes: list[int], edges: list[int]) -> bool:
                c = edges_db[edges[-1]][3]
                p, m, sm = sc_stack[ln - 1]
                cur = (p * c, min(m, c), sm + c)
                del sc_stack[ln:]
                sc_stack.append(cur)
                if ln >= mn and (dv is None or b == dv) and (allowed is None or b in allowed):
                    offer(nodes, edges, cur[which])
                if dv is not None and b == dv:
                    return False
                return not (len(best) >= cap and bound(ln, *cur) < worst())

            if mn == 0 and (dv is None or s == dv) and (allowed is None or s in allowed):
                offer([s], [], (1.0, 1.0, 0.0)[which])
            self._walk(s, mx, d, tf, admit, step)
            out: list[Path_] = []
            for _neg, _ln, nodes, edges in best:
                out.append((list(nodes), list(edges), *_scores([edges_db[x][3] for x in edges])))
            return _path_arrays(out) if arrays else out

    def match_chain(
        self,
        labels: Any,
        types: Any = None,
        directions: Any = None,
        start: Any = None,
        allowed: Any = None,
        distinct: str = "edges",
    ) -> tuple[I64, I64]:
        """Every binding of a 2-4 node label chain ``(n0)-[e1]->(n1)-...``.

        ``labels``: node label per position (-1 = any); ``types``: per hop None, a type code
        or a list of codes; ``directions``: per hop "out"/"in"/"both" (default "out");
        ``start``: optional allowed start node ids (unknown ids are ignored); ``allowed``:
        optional list of ``len(labels)`` entries, None or the node ids allowed at that
        position.  ``distinct="edges"`` (default): no hyperedge repeats within a binding;
        ``"relationships"``: no projected relationship ``(edge, start, end)`` repeats
        (Cypher's rule; every direction must be "out" or "in").  Nodes may repeat.  Returns
        ``(nodes (n, L), edges (n, L-1))`` sorted by node row, then edge row.

        Example:
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2, 3], [0, 1, 2])
            >>> g.add_edge(7, 0, [1], [2]); g.add_edge(8, 3, [2], [3])
            >>> nodes, edges = g.match_chain([0, 1, 2], [0, [3, 4]], ["out", "out"])
            >>> nodes.tolist(), edges.tolist()
            ([[1, 2, 3]], [[7, 8]])
        """
        lab: list[int] = []
        for v in _ids(labels, "labels"):
            if not -1 <= v <= _I32_MAX:
                raise ValueError(f"labels must be in [-1, 2147483647], got {v}")
            lab.append(v)
        width = len(lab)
        if not 2 <= width <= 4:
            raise ValueError(f"labels must have 2 to 4 entries, got {width}")

        def seq(value: object, what: str, want: int | None = None) -> list[Any]:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{what} must be a list")
            n = width - 1 if want is None else want
            _check_len(len(value), n, what, "len(labels)" if n == width else "len(labels) - 1")
            return list(value)

        tfs = [None] * (width - 1) if types is None else [_types(t) for t in seq(types, "types")]
        dirs = (
            ["out"] * (width - 1)
            if directions is None
            else [_dir(x) for x in seq(directions, "directions")]
        )
        start_ids = None if start is None else _ids(start, "start")
        allow: list[set[int] | None] = [None] * width
        if allowed is not None:
            allow = [None if a is None else set(_ids(a, "allowed"))
                     for a in seq(allowed, "allowed", width)]
        if not isinstance(distinct, str):
            raise TypeError(f"distinct must be 'edges' or 'relationships', got {distinct!r}")
        if distinct not in ("edges", "relationships"):
            raise ValueError(f"distinct must be 'edges' or 'relationships', got '{distinct}'")
        by_rel = distinct == "relationships"
        if by_rel and "both" in dirs:
            raise ValueError("distinct='relationships' needs 'out' or 'in' directions")
        rows: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        with self._lock:
            node_label = self._label
            if start_ids is not None:
                starts = sorted({v for v in start_ids if v in node_label})
            elif allow[0] is not None:
                starts = sorted(v for v in allow[0] if v in node_label)
            else:
                starts = list(node_label)

            def ok(i: int, v: int) -> bool:
                a = allow[i]
                return (lab[i] == -1 or node_label[v] == lab[i]) and (a is None or v in a)

            def rel(j: int, a: int, b: int, e: int) -> tuple[int, int, int]:
                return (e, b, a) if dirs[j] == "in" else (e, a, b)

            def fresh(i: int, nodes: list[int], edges: list[int], b: int, e: int) -> bool:
                if not by_rel:
                    return e not in edges
                mine = rel(i - 1, nodes[-1], b, e)
                return all(
                    rel(j, nodes[j], nodes[j + 1], edges[j]) != mine for j in range(i - 1)
                )

            def rec(i: int, nodes: list[int], edges: list[int]) -> None:
                if i == width:
                    rows.append((tuple(nodes), tuple(edges)))
                    return
                for b, e in self._nbrs(nodes[-1], dirs[i - 1], tfs[i - 1]):
                    if ok(i, b) and fresh(i, nodes, edges, b, e):
                        nodes.append(b)
                        edges.append(e)
                        rec(i + 1, nodes, edges)
                        nodes.pop()
                        edges.pop()

            for v in starts:
                if ok(0, v):
                    rec(1, [v], [])
        rows.sort()
        node_tab = np.array([r[0] for r in rows], dtype=np.int64).reshape(len(rows), width)
        edge_tab = np.array([r[1] for r in rows], dtype=np.int64).reshape(len(rows), width - 1)
        return node_tab, edge_tab

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the graph to ``path`` in the AGDBHYPG format (atomic replace).

        Example:
            >>> import os, tempfile
            >>> g = Hypergraph()
            >>> g.add_nodes([1, 2], [4, 5]); g.add_edge(3, 0, [1], [2], 0.25)
            >>> path = os.path.join(tempfile.mkdtemp(), "g.agdbg")
            >>> g.save(path)
            >>> h = Hypergraph.load(path)
            >>> h.node_label(2), h.edge(3)[3]
            (5, 0.25)
        """
        target = Path(os.fspath(path))
        with self._lock:
            node_ids = sorted(self._label)
            index = {v: i for i, v in enumerate(node_ids)}
            edge_ids = sorted(self._edges)
            recs = [self._edges[e] for e in edge_ids]
            tails = [index[v] for r in recs for v in r[1]]
            heads = [index[v] for r in recs for v in r[2]]
            toff = np.zeros(len(recs) + 1, dtype="<u8")
            hoff = np.zeros(len(recs) + 1, dtype="<u8")
            toff[1:] = np.cumsum([len(r[1]) for r in recs], dtype=np.uint64)
            hoff[1:] = np.cumsum([len(r[2]) for r in recs], dtype=np.uint64)
            header = _HEADER.pack(
                _MAGIC,
                _VERSION,
                _HEADER_SIZE,
                len(node_ids),
                len(edge_ids),
                len(tails),
                len(heads),
                0,
                bytes(12),
            )
            sections = [
                np.array(node_ids, dtype="<i8"),
                np.array([self._label[v] for v in node_ids], dtype="<i4"),
                np.array(edge_ids, dtype="<i8"),
                np.array([r[0] for r in recs], dtype="<i4"),
                np.array([r[3] for r in recs], dtype="<f4"),
                np.array([r[4] for r in recs], dtype="<f8"),
                toff,
                np.array(tails, dtype="<u4"),
                hoff,
                np.array(heads, dtype="<u4"),
            ]
        write_crc_file(target, header, sections)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Hypergraph:
        """Read a hypergraph file written by either backend.

        FileNotFoundError for a missing file; ValueError naming the problem for a file that
        is not a hypergraph file, has another version, is truncated or corrupt.

        Example:
            >>> import os, tempfile
            >>> path = os.path.join(tempfile.mkdtemp(), "bad.agdbg")
            >>> with open(path, "wb") as fh:
            ...     _ = fh.write(b"definitely not a graph")
            >>> try:
            ...     Hypergraph.load(path)
            ... except ValueError as exc:
            ...     print("bad magic" in str(exc))
            True
        """
        target = Path(os.fspath(path))
        return cls._from_bytes(target.read_bytes(), f"'{target}'")

    @classmethod
    def _from_bytes(cls, data: bytes, where: str) -> Hypergraph:
        size = len(data)
        if size >= 8 and data[:8] != _MAGIC:
            raise ValueError(f"{where} is not an AgentDB hypergraph file (bad magic)")
        if size < _HEADER_SIZE + _TRAILER.size:
            raise ValueError(
                f"{where} is truncated: {size} bytes, expected at least "
                f"{_HEADER_SIZE + _TRAILER.size}"
            )
        _m, version, header_size, nn, ne, nt, nh, flags, reserved = _HEADER.unpack_from(data)
        if version != _VERSION:
            raise ValueError(
                f"{where} has unsupported format version {version} "
                f"(this build reads version {_VERSION})"
            )
        if (
            header_size != _HEADER_SIZE
            or flags != 0
            or reserved != bytes(12)
            or nn > _MAX_SLOTS
            or ne > _MAX_EDGES
            or nt > _MAX_COUNT
            or nh > _MAX_COUNT
        ):
            raise ValueError(f"{where} has a corrupt header")
        expected = _HEADER_SIZE + nn * 12 + ne * 24 + 2 * (ne + 1) * 8 + (nt + nh) * 4 + 4
        if size < expected:
            raise ValueError(f"{where} is truncated: {size} bytes, expected {expected}")
        if size > expected:
            raise ValueError(f"{where} is corrupt: {size - expected} unexpected trailing bytes")
        (stored,) = _TRAILER.unpack_from(data, size - 4)
        if zlib.crc32(memoryview(data)[: size - 4]) & 0xFFFFFFFF != stored:
            raise ValueError(f"{where} failed its checksum: checksum mismatch (corrupt file)")

        off = _HEADER_SIZE

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal off
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=off)
            off += arr.nbytes
            return arr

        def bad(what: str) -> ValueError:
            return ValueError(f"{where} is corrupt: {what}")

        node_ids = take("<i8", nn)
        labels = take("<i4", nn)
        if np.any(node_ids == -1):
            raise bad("node id -1 is reserved")
        if nn > 1 and np.any(np.diff(node_ids) <= 0):
            raise bad("node ids are not strictly ascending")
        if np.any(labels < -1):
            raise bad("negative node label")
        edge_ids = take("<i8", ne)
        etypes = take("<i4", ne)
        conf = take("<f4", ne)
        times = take("<f8", ne)
        if np.any(edge_ids == -1):
            raise bad("edge id -1 is reserved")
        if ne > 1 and np.any(np.diff(edge_ids) <= 0):
            raise bad("edge ids are not strictly ascending")
        if np.any(etypes < 0):
            raise bad("negative edge type")
        if not np.all((conf >= 0.0) & (conf <= 1.0)):
            raise bad("confidence outside [0, 1]")

        def side(total: int, name: str) -> tuple[list[int], list[int]]:
            offs = take("<u8", ne + 1)
            nodes = take("<u4", total)
            if int(offs[0]) != 0 or int(offs[ne]) != total:
                raise bad(f"{name} offsets")
            if ne and (np.any(offs[1:] <= offs[:-1]) or np.any(offs > total)):
                raise bad(f"{name} offsets (empty or decreasing)")
            if total and int(nodes.max()) >= nn:
                raise bad(f"{name} node index out of range")
            offl, nodel = offs.tolist(), nodes.tolist()
            for i in range(ne):
                part = nodel[offl[i] : offl[i + 1]]
                if len(set(part)) != len(part):
                    raise bad(f"duplicate node in a {name}")
            return offl, nodel

        toff, tnodes = side(nt, "tail")
        hoff, hnodes = side(nh, "head")
        g = cls()
        ids = node_ids.tolist()
        g._label = dict(zip(ids, labels.tolist()))
        g._out = {v: {} for v in ids}
        g._in = {v: {} for v in ids}
        tl = [ids[i] for i in tnodes]
        hl = [ids[i] for i in hnodes]
        for i, (eid, t, c, ts) in enumerate(
            zip(edge_ids.tolist(), etypes.tolist(), conf.tolist(), times.tolist())
        ):
            tail = tuple(tl[toff[i] : toff[i + 1]])
            head = tuple(hl[hoff[i] : hoff[i + 1]])
            g._edges[eid] = (t, tail, head, c, ts)
            for v in tail:
                g._out[v][eid] = None
            for v in head:
                g._in[v][eid] = None
        g._csr_edges = ne
        return g
