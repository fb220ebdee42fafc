"""Consistent hashing: which shard owns a record key.

Each shard owns ``virtual_nodes`` points on a 64-bit ring (the BLAKE2b hash of
``"<shard>#<i>"``); a key belongs to the first point at or after the hash of the key (wrapping
around). Adding a shard moves only the keys that now land on its points -- about
``1 / (N + 1)`` of them -- and every other key stays where it was; removing one moves only its
own keys. Hashes are stable across processes, machines and Python versions (no ``hash()``).

>>> ring = HashRing([0, 1, 2])
>>> ring.shard_for(42) in (0, 1, 2)
True
>>> bigger = ring.with_shard(3)
>>> keys = range(20_000)
>>> 0.15 < ring.moved_fraction(bigger, keys) < 0.35   # ~1/4 of the keys move, to shard 3
True
>>> all(bigger.shard_for(k) in (ring.shard_for(k), 3) for k in keys)
True
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["HashRing"]


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def key_hash(key: int) -> int:
    """The ring position of an integer record key (stable everywhere)."""
    return _h64(int(key).to_bytes(8, "little", signed=True))


class HashRing:
    """An immutable consistent-hash ring over integer shard ids."""

    def __init__(self, shards: Sequence[int], virtual_nodes: int = 150) -> None:
        ids = [int(s) for s in shards]
        if not ids:
            raise InvalidArgumentError("a ring needs at least one shard")
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError(f"duplicate shard ids in {ids}")
        if isinstance(virtual_nodes, bool) or not isinstance(virtual_nodes, int) \
                or not 1 <= virtual_nodes <= 10_000:
            raise InvalidArgumentError(f"virtual_nodes must be an integer in [1, 10000], got "
                                       f"{virtual_nodes!r}")
        self.shards = sorted(ids)
        self.virtual_nodes = virtual_nodes
        points = sorted((_h64(f"{s}#{i}".encode()), s) for s in ids
                        for i in range(virtual_nodes))
        self._pos = [p for p, _ in points]
        self._owner = [s for _, s in points]
        self._pos_arr = np.asarray(self._pos, dtype=np.uint64)
        self._owner_arr = np.asarray(self._owner, dtype=np.int64)

    def shard_for(self, key: int) -> int:
        """The shard owning ``key``."""
        i = bisect.bisect_left(self._pos, key_hash(key))
        return self._owner[i % len(self._owner)]

    def shards_for(self, keys: Iterable[int]) -> np.ndarray:
        """``shard_for`` of many keys (int64 array)."""
        hs = np.fromiter((key_hash(k) for k in keys), dtype=np.uint64)
        idx = np.searchsorted(self._pos_arr, hs, side="left") % len(self._pos)
        return self._owner_arr[idx]

    def with_shard(self, shard: int) -> HashRing:
        """A new ring with one more shard."""
        if int(shard) in self.shards:
            raise InvalidArgumentError(f"shard {shard} is already on the ring")
        return HashRing([*self.shards, int(shard)], self.virtual_nodes)

    def without_shard(self, shard: int) -> HashRing:
        """A new ring with one shard fewer."""
        if int(shard) not in self.shards:
            raise InvalidArgumentError(f"shard {shard} is not on the ring")
        return HashRing([s for s in self.shards if s != int(shard)], self.virtual_nodes)

    def moved_fraction(self, other: HashRing, keys: Iterable[int]) -> float:
        """Fraction of ``keys`` whose shard differs between this ring and ``other``."""
        ks = list(keys)
        if not ks:
            return 0.0
        return float(np.mean(self.shards_for(ks) != other.shards_for(ks)))

    def to_dict(self) -> dict[str, object]:
        """A JSON-able description (stored in PostgreSQL so every process agrees)."""
        return {"shards": list(self.shards), "virtual_nodes": self.virtual_nodes}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> HashRing:
        """Inverse of :meth:`to_dict`."""
        return cls(list(d["shards"]), int(d["virtual_nodes"]))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashRing) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"HashRing(shards={self.shards}, virtual_nodes={self.virtual_nodes})"
