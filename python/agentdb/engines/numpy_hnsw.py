"""The numpy ``HNSWIndex``: an exact index with the native class's API and file format.

Vectors live in a preallocated float32 matrix that grows by doubling, removals are tombstones
whose slots are reused by later adds, and a search is one :class:`~.numpy_kernels.TopK` pass
over the stored rows (exact; ties: ascending distance, then ascending id).  Files written by
:meth:`HNSWIndex.save` use the shared binary format (``AGDBHNSW`` version 1, CRC-32 trailer)
without a graph section, so the native backend can load them (it rebuilds its graph) and
:meth:`HNSWIndex.load` reads the native backend's files (version 2: sectioned, every section's
CRC checked; the graph and walk copies are skipped).

Example:
    >>> index = HNSWIndex(dim=2, metric="l2")
    >>> index.add([1, 2], [[0, 0], [1, 1]])
    >>> index.search([0.9, 1.0], k=1)[0].tolist()
    [2]
"""

from __future__ import annotations

import math
import os
import struct
import sys
import threading
import zlib
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from .fileio import read_sections, write_crc_file
from .numpy_checks import (
    F32,
    F64,
    I64,
    INT64_MAX,
    METRIC_CODES,
    METRIC_NAMES,
    U32_MAX,
    U64_MAX,
    Bools,
    Predicate,
    as_id,
    as_ids,
    as_matrix,
    check_k,
    check_metric,
    check_range,
    check_threads,
)
from .numpy_kernels import TopK, row_sqnorms

__all__ = ["BACKEND", "HNSWIndex"]

#: Name of this backend (``HNSWIndex.backend``).
BACKEND: Final = "numpy"

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
_F32_MAX: Final = float(np.finfo(np.float32).max)
_F32_TINY: Final = float(np.finfo(np.float32).smallest_normal)  # least normal
_MAX_DIM_IN_FILE: Final = 1 << 20
_MAX_SLOTS_IN_FILE: Final = (1 << 32) - 2
_MAX_LEVEL_IN_FILE: Final = 64

_M_MIN: Final = 2
_M_MAX: Final = 2048


def _check_precision(precision: str, metric: str | None) -> None:
    """The precisions of the native index: "mixed", "f32", "int8" (cosine and ip only).

    Example:
        >>> _check_precision("int8", "l2")
        Traceback (most recent call last):
        ...
        ValueError: precision 'int8' supports the cosine and ip metrics, not l2
    """
    if precision not in ("mixed", "f32", "int8"):
        raise ValueError(f"precision must be 'mixed', 'f32' or 'int8', got '{precision}'")
    if precision == "int8" and metric == "l2":
        raise ValueError("precision 'int8' supports the cosine and ip metrics, not l2")


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
        self._dim = check_range(dim, "dim", 1, U32_MAX, ">= 1")
        self._metric = check_metric(metric)
        self._M = check_range(M, "M", _M_MIN, _M_MAX, f"in [{_M_MIN}, {_M_MAX}]")
        self._ef_construction = check_range(
            ef_construction, "ef_construction", 1, U32_MAX, ">= 1"
        )
        self._ef_search = check_range(ef_search, "ef_search", 1, U32_MAX, ">= 1")
        cap = check_range(capacity, "capacity", 1, INT64_MAX, ">= 1")
        self._threads = check_threads(threads)
        self._seed = check_range(seed, "seed", 0, U64_MAX, "in [0, 2**64)")
        _check_precision(precision, self._metric)
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
        self._ef_search = check_range(value, "ef_search", 1, U32_MAX, ">= 1")

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
        self._threads = check_threads(value)

    @property
    def precision(self) -> str:
        """Search precision setting: "mixed", "f32" or "int8" (stored for parity; numpy
        always computes exactly).

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
        id_arr, _ = as_ids(ids)
        vecs, _ = as_matrix(vectors, "vectors")
        self._check_dim(vecs.shape[1])
        n = vecs.shape[0]
        if len(id_arr) != n:
            raise ValueError(f"got {len(id_arr)} ids for {n} vectors")
        if np.any(id_arr == -1):
            raise ValueError("id -1 is reserved (it pads search results)")
        uniq, counts = np.unique(id_arr, return_counts=True)
        if len(uniq) != n:
            raise ValueError(f"duplicate id {int(uniq[counts > 1][0])} in one batch")
        sq = row_sqnorms(vecs)
        if self._metric == "cosine":
            if not np.all(sq > 0):
                bad = int(id_arr[int(np.argmin(sq > 0))])
                raise ValueError(
                    f"zero vector for id {bad}: the cosine metric cannot normalise an "
                    "all-zero vector"
                )
            norms64 = np.sqrt(sq)
            out = (norms64 > _F32_MAX) | (norms64 < _F32_TINY)
            if out.any():  # the norm is kept as a float32
                row = int(np.argmax(out))
                raise ValueError(
                    f"vector (row {row}, id {int(id_arr[row])}) has norm {norms64[row]:.3g}, "
                    "outside float32's range: the cosine metric keeps the norm as a float32; "
                    "scale the vector")
            stored = (vecs / norms64[:, None]).astype(np.float32)
            norms = norms64.astype(np.float32)
            sq = row_sqnorms(stored)
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
        id_arr, _ = as_ids(ids)
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
        exact: bool = False,
    ) -> tuple[I64, F32]:
        """Exact k nearest live items: ``(ids int64, dists float32)``, ascending.

        Every search here is exact, so ``exact`` (the native index's full-scan switch)
        changes nothing.

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
        k = check_k(k)
        if ef is not None:
            check_range(ef, "ef", 1, INT64_MAX, ">= 1")
        if predicate is not None and not callable(predicate):
            raise TypeError("predicate must be callable (id -> bool)")
        allowed_ids = None if allowed is None else as_ids(allowed)[0]
        qm, q_one = as_matrix(queries, "queries")
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
            ids, dists = TopK(qm, x, col_ids, invalid, self._metric, sq, x_unit=True).run(
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
        item = as_id(id)
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
        return as_id(id) in self._slot_of

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
                METRIC_CODES[self._metric],
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
        cls,
        path: str | os.PathLike[str],
        threads: int = 0,
        precision: str | None = None,
        *,
        mmap: bool | str = True,
        verify: bool = False,
    ) -> HNSWIndex:
        """Read an index file written by either backend (a graph section is skipped).

        ``precision`` None keeps the saved one (version 1 files: "mixed"). This backend always
        reads the whole file and checks every checksum, so ``mmap`` (True, False or
        ``"vectors"``) and ``verify`` (the native index's open-in-place options) change nothing
        here beyond being checked.

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
        if not isinstance(mmap, bool) and mmap != "vectors":
            raise ValueError(f"mmap must be True, False or 'vectors', got {mmap!r}")
        if precision is not None:
            _check_precision(precision, None)
        target = Path(os.fspath(path))
        data = target.read_bytes()
        index = cls._from_bytes(data, f"'{target}'")
        if precision is not None:
            _check_precision(precision, index._metric)
            index._precision = precision
        index.threads = threads
        return index

    @property
    def mapped(self) -> bool:
        """False: this backend holds its rows in memory (the native index can read its file
        in place).

        Example:
            >>> HNSWIndex(2).mapped
            False
        """
        return False

    def verify(self) -> None:
        """Nothing to check: this backend verified every checksum when it read the file.

        Example:
            >>> HNSWIndex(2).verify()
        """

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
        if version not in (_FORMAT_VERSION, 2):
            raise ValueError(
                f"{where} has unsupported format version {version} "
                f"(this build reads versions {_FORMAT_VERSION} and 2)"
            )
        if version == 2:
            return cls._from_sections(data, where)
        if (
            header_size != _HEADER_SIZE
            or not 1 <= dim <= _MAX_DIM_IN_FILE
            or metric_code not in METRIC_NAMES
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
        return cls._from_arrays(
            where, (dim, metric_code, m, efc, efs, n_slots, n_live, seed),
            ids, deleted_raw, vectors, norms,
        )

    @classmethod
    def _from_sections(cls, data: bytes, where: str) -> HNSWIndex:
        """A version-2 (sectioned) file: every section's CRC is checked; the graph and the
        walk copies are skipped (this index is exact)."""
        if len(data) < 4096:
            raise ValueError(f"{where} is truncated: {len(data)} bytes")
        (_m, _v, header_size, dim, metric_code, m, efc, efs, flags, n_slots, n_live, _ml,
         _entry, m0, seed) = _HEADER.unpack_from(data, 0)
        sections = read_sections(data, where)
        if (
            header_size != 4096
            or not 1 <= dim <= _MAX_DIM_IN_FILE
            or metric_code not in METRIC_NAMES
            or not _M_MIN <= m <= _M_MAX
            or m0 != 2 * m
            or efc == 0
            or efs == 0
            or n_live > n_slots
            or n_slots > _MAX_SLOTS_IN_FILE
        ):
            raise ValueError(f"{where} has a corrupt header")
        expect = {"labels": 8 * n_slots, "deleted": n_slots, "vectors": 4 * n_slots * dim,
                  "norms": 4 * n_slots}
        for name, nbytes in expect.items():
            if name not in sections:
                raise ValueError(f"{where} is missing its '{name}' section")
            if len(sections[name]) != nbytes:
                raise ValueError(
                    f"{where} has a corrupt section table (section '{name}' has "
                    f"{len(sections[name])} bytes, expected {nbytes})")
        stored = {0: "f32", 1: "mixed", 2: "int8"}.get(int.from_bytes(data[76:80], "little"))
        if stored is None:
            raise ValueError(f"{where} has a corrupt header")
        index = cls._from_arrays(
            where, (dim, metric_code, m, efc, efs, n_slots, n_live, seed),
            np.frombuffer(sections["labels"], dtype="<i8"),
            np.frombuffer(sections["deleted"], dtype=np.uint8),
            np.frombuffer(sections["vectors"], dtype="<f4"),
            np.frombuffer(sections["norms"], dtype="<f4"),
        )
        index._precision = stored
        return index

    @classmethod
    def _from_arrays(
        cls, where: str, params: tuple[int, ...], ids: np.ndarray, deleted_raw: np.ndarray,
        vectors: np.ndarray, norms: np.ndarray,
    ) -> HNSWIndex:
        dim, metric_code, m, efc, efs, n_slots, n_live, seed = params
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
        metric = METRIC_NAMES[metric_code]
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
        index._sq[:n_slots] = row_sqnorms(index._x[:n_slots])
        index._n_slots = n_slots
        index._slot_of = dict(zip(live_ids.tolist(), live.tolist()))
        index._free = np.flatnonzero(deleted)[::-1].tolist()  # pop() reuses low slots first
        return index
