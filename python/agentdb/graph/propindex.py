"""Property indexes of the causal graph as two sorted arrays, cheap to save and to load.

A ``(label, property)`` index maps a stable 64-bit hash of each node's value (its
:func:`~agentdb.graph.checks.index_key`) to the node: a base of sorted ``(hash, node id)``
arrays, as built from every node or read from a graph snapshot, plus the changes since (nodes
added under a hash, nodes taken out of one). A lookup gives *candidates*: the caller checks
each candidate's label and value, which also settles the rare hash collision. Nothing is
held per key, so a 200k-key index costs 3.2 MB and loads as two arrays.

>>> ix = PropertyIndex.build([(1, "a"), (2, "b"), (3, "a")])
>>> ix.candidates("a")
[1, 3]
>>> ix.remove(3, "a"); ix.add(3, "b"); ix.candidates("b")
[2, 3]
>>> h, ids = ix.arrays(); len(h), sorted(ids.tolist())
(3, [1, 2, 3])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .checks import index_key

__all__ = ["PropertyIndex", "key_hash"]


def key_hash(value: Any) -> int | None:
    """Stable signed 64-bit hash of a property value's index key (None: not indexable).
    Equal keys hash equally across processes (``True`` and ``1``, ``2`` and ``2.0``).

    >>> key_hash(2) == key_hash(2.0) == key_hash(2.0), key_hash([1]) is None
    (True, True)
    >>> key_hash(True) == key_hash(1), key_hash("1") == key_hash(1)
    (True, False)
    """
    k = index_key(value)
    if k is None:
        return None
    tag, v = k
    if type(v) is float and math.isfinite(v) and v.is_integer():
        v = int(v)  # 2.0 == 2 and 2**60 == float(2**60): one canonical spelling
    digest = hashlib.blake2b(f"{tag}:{v!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class PropertyIndex:
    """Candidates by property value for one ``(label, property)`` index (see the module)."""

    __slots__ = ("_added", "_hashes", "_ids", "_removed")

    def __init__(self, hashes: np.ndarray, ids: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        self._hashes = np.ascontiguousarray(hashes[order], np.int64)
        self._ids = np.ascontiguousarray(ids[order], np.int64)
        self._added: dict[int, set[int]] = {}
        self._removed: dict[int, set[int]] = {}

    @classmethod
    def from_sorted(cls, hashes: np.ndarray, ids: np.ndarray) -> PropertyIndex:
        """From arrays already sorted by hash (a snapshot's, possibly memory-mapped read-only),
        used as they are; unsorted or mismatched arrays are sorted into copies.

        >>> ix = PropertyIndex.from_sorted(np.array([5, 9]), np.array([1, 2]))
        >>> ix.arrays()[1].tolist()
        [1, 2]
        """
        if (len(hashes) != len(ids) or hashes.dtype != np.int64 or ids.dtype != np.int64
                or (len(hashes) > 1 and bool(np.any(hashes[1:] < hashes[:-1])))):
            return cls(np.asarray(hashes, np.int64), np.asarray(ids, np.int64))
        ix = cls.__new__(cls)
        ix._hashes, ix._ids = hashes, ids
        ix._added, ix._removed = {}, {}
        return ix

    @classmethod
    def build(cls, pairs: Iterable[tuple[int, Any]]) -> PropertyIndex:
        """From ``(node id, value)`` pairs (unindexable values are skipped).

        >>> PropertyIndex.build([(1, "x"), (2, [1])]).candidates("x")
        [1]
        """
        hs: list[int] = []
        ids: list[int] = []
        for nid, value in pairs:
            h = key_hash(value)
            if h is not None:
                hs.append(h)
                ids.append(int(nid))
        return cls(np.asarray(hs, np.int64), np.asarray(ids, np.int64))

    def candidates(self, value: Any) -> list[int]:
        """Nodes that may hold ``value`` (ascending, each once); the caller checks them."""
        h = key_hash(value)
        if h is None:
            return []
        lo = int(np.searchsorted(self._hashes, h, "left"))
        hi = int(np.searchsorted(self._hashes, h, "right"))
        out = set(self._ids[lo:hi].tolist()) if hi > lo else set()
        gone = self._removed.get(h)
        if gone:
            out -= gone
        more = self._added.get(h)
        if more:
            out |= more
        return sorted(out)

    def add(self, nid: int, value: Any) -> None:
        """``nid`` now holds ``value``."""
        _shift(nid, key_hash(value), self._added, self._removed)

    def remove(self, nid: int, value: Any) -> None:
        """``nid`` no longer holds ``value``."""
        _shift(nid, key_hash(value), self._removed, self._added)

    def forget_nodes(self, nids: np.ndarray) -> None:
        """Drop every entry of the given nodes (their values unknown: used when replaying
        rows written after a snapshot, before adding the rows' values)."""
        if len(nids) == 0:
            return
        self.compact()
        keep = ~np.isin(self._ids, nids)
        self._hashes, self._ids = self._hashes[keep], self._ids[keep]

    def compact(self) -> None:
        """Fold the changes into the base arrays."""
        if not self._added and not self._removed:
            return
        self._hashes, self._ids = self.arrays()
        self._added.clear()
        self._removed.clear()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hashes, node ids)`` sorted by hash: the base with the changes folded in."""
        if not self._added and not self._removed:
            return self._hashes, self._ids
        hs, ids = self._hashes, self._ids
        if self._removed:
            gone = {(h, n) for h, ns in self._removed.items() for n in ns}
            keep = np.fromiter(((h, n) not in gone for h, n in zip(hs.tolist(), ids.tolist())),
                               bool, len(ids))
            hs, ids = hs[keep], ids[keep]
        extra = [(h, n) for h, ns in self._added.items() for n in ns]
        if extra:
            eh = np.asarray([h for h, _ in extra], np.int64)
            en = np.asarray([n for _, n in extra], np.int64)
            hs, ids = np.concatenate([hs, eh]), np.concatenate([ids, en])
        order = np.lexsort((ids, hs))
        hs, ids = hs[order], ids[order]
        if len(hs) > 1:  # a node added twice under one hash (A -> B -> A) counts once
            dup = np.zeros(len(hs), bool)
            dup[1:] = (hs[1:] == hs[:-1]) & (ids[1:] == ids[:-1])
            hs, ids = hs[~dup], ids[~dup]
        return hs, ids


def _shift(nid: int, h: int | None, into: dict[int, set[int]], out_of: dict[int, set[int]]
           ) -> None:
    """Record ``nid`` under hash ``h`` in ``into`` and take it out of ``out_of``."""
    if h is None:
        return
    other = out_of.get(h)
    if other is not None:
        other.discard(nid)
    into.setdefault(h, set()).add(nid)
