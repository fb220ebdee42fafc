"""What the causal graph keeps in memory besides the native CSR: labels, edge columns, and
properties fetched from the store when first asked for.

* :class:`NodeTable`: a node's first label is the native label code; further labels (rare) sit
  in a small dict; properties are read from the store on demand and kept in a bounded cache
  that every graph write updates (write-through).
* :class:`EdgeTable`: type code, confidence (exact float64; the CSR keeps a float32 copy) and
  timestamp in dense arrays indexed by edge id, plus a flag for edges with properties of
  their own, read from the store on demand like a node's.

Opening a large store therefore builds no Python object per node or edge.

>>> from agentdb.engines import loader
>>> g = loader.graph_backend().Hypergraph()
>>> nodes = NodeTable(g, lambda ids, conn=None: {i: {"n": i} for i in ids})
>>> g.add_node(7, nodes.code(["Event", "Tool"])); nodes.remember(7, ["Event", "Tool"], None)
>>> nodes.labels(7), nodes.props(7), nodes.with_label("Tool")
(['Event', 'Tool'], {'n': 7}, [7])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import numpy as np

from ..errors import NotFoundError, StoreError

__all__ = ["CACHE_SIZE", "EdgeTable", "NodeTable"]

#: Property maps kept in memory per table before the oldest are dropped (re-read on demand).
CACHE_SIZE = 1 << 18
#: Largest hyperedge id the dense edge columns take (ids are handed out from 1 upwards).
MAX_EDGE_ID = (1 << 31) - 1

Fetch = Callable[..., dict[int, dict[str, Any]]]


class _Cache:
    """A bounded id -> properties map that drops its oldest entries when full."""

    __slots__ = ("cap", "data")

    def __init__(self, cap: int) -> None:
        self.cap = max(16, int(cap))
        self.data: dict[int, dict[str, Any]] = {}

    def put(self, key: int, value: dict[str, Any]) -> None:
        data = self.data
        if len(data) >= self.cap and key not in data:
            for old in list(islice(data, self.cap // 8)):
                data.pop(old, None)
        data[key] = value


class NodeTable:
    """Labels and (lazily read) properties of the graph's nodes; see the module."""

    def __init__(self, g: Any, fetch: Fetch, cache_size: int = CACHE_SIZE) -> None:
        self._g = g
        self._fetch = fetch
        self.names: list[str] = []          # native label code -> label
        self.codes: dict[str, int] = {}     # label -> native label code
        self.more: dict[int, list[str]] = {}  # labels after the first, for the nodes with some
        self.secondary: set[str] = set()    # labels ever seen after a node's first label
        self._cache = _Cache(cache_size)
        self.conn: Any = None  # the open write transaction, so a re-read sees its writes

    # ---- labels -------------------------------------------------------------------------------
    def code(self, labels: Sequence[str]) -> int:
        """The native label code of a label list (its first label; -1 for none)."""
        if not labels:
            return -1
        c = self.codes.get(labels[0])
        if c is None:
            c = self.codes[labels[0]] = len(self.names)
            self.names.append(labels[0])
        return c

    def exists(self, nid: int) -> bool:
        """Is ``nid`` a node?"""
        return bool(self._g.has_node(nid))

    def labels(self, nid: int) -> list[str]:
        """A node's labels, first label first (NotFoundError if unknown)."""
        try:
            c = self._g.node_label(nid)
        except KeyError:
            raise NotFoundError(f"unknown node {nid}") from None
        first = [self.names[c]] if c >= 0 else []
        rest = self.more.get(nid)
        return first + rest if rest else first

    def with_label(self, label: str) -> list[int]:
        """Ids of the nodes carrying ``label`` (ascending)."""
        c = self.codes.get(label)
        ids = self._g.nodes_with_label(c).tolist() if c is not None else []
        if label in self.secondary:
            ids = sorted(set(ids).union(n for n, m in self.more.items() if label in m))
        return ids

    def present_labels(self) -> list[str]:
        """Labels some node carries now (sorted)."""
        out = {name for c, name in enumerate(self.names) if len(self._g.nodes_with_label(c))}
        for m in self.more.values():
            out.update(m)
        return sorted(out)

    # ---- properties ---------------------------------------------------------------------------
    def props(self, nid: int) -> dict[str, Any]:
        """A node's properties (the cached map itself: do not modify it)."""
        p = self._cache.data.get(nid)
        if p is None:
            p = self._fetch([nid], conn=self.conn).get(nid)
            if p is None:
                raise NotFoundError(f"unknown node {nid}")
            self._cache.put(nid, p)
        return p

    def props_many(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Properties of many nodes, the missing ones read in bulk (unknown ids absent)."""
        data = self._cache.data
        out: dict[int, dict[str, Any]] = {}
        missing: list[int] = []
        for nid in ids:
            p = data.get(nid)
            if p is None:
                missing.append(nid)
            else:
                out[nid] = p
        if missing:
            got = self._fetch(missing, conn=self.conn)
            for nid, p in got.items():
                self._cache.put(nid, p)
            out.update(got)
        return out

    def cached(self) -> int:
        """How many property maps are in memory."""
        return len(self._cache.data)

    # ---- writes -------------------------------------------------------------------------------
    def remember(self, nid: int, labels: Sequence[str], props: dict[str, Any] | None) -> None:
        """A node was written with ``labels`` (and ``props``; None: not known, re-read)."""
        if len(labels) > 1:
            self.more[nid] = list(labels[1:])
            self.secondary.update(labels[1:])  # the native label is the first one only
        else:
            self.more.pop(nid, None)
        if props is None:
            self._cache.data.pop(nid, None)
        else:
            self._cache.put(nid, props)

    def forget(self, nid: int) -> None:
        """A node was deleted."""
        self.more.pop(nid, None)
        self._cache.data.pop(nid, None)

    def clear_cache(self) -> None:
        """Drop every cached property map (after a rolled-back write)."""
        self._cache.data.clear()


class EdgeTable:
    """Types, confidences, timestamps and (lazily read) properties of the hyperedges."""

    def __init__(self, fetch: Fetch, cache_size: int = CACHE_SIZE) -> None:
        self._fetch = fetch
        self.names: list[str] = []       # type code -> type
        self.codes: dict[str, int] = {}  # type -> type code
        self.type_of = np.full(0, -1, np.int32)  # by edge id; -1: no such edge
        self.conf = np.zeros(0, np.float64)
        self.ts = np.zeros(0, np.float64)
        self.flag = np.zeros(0, np.uint8)  # 1: the edge has properties of its own
        self.count = 0
        self._cache = _Cache(cache_size)
        self.conn: Any = None

    def code(self, etype: str) -> int:
        """The type code of ``etype`` (assigned on first use)."""
        c = self.codes.get(etype)
        if c is None:
            c = self.codes[etype] = len(self.names)
            self.names.append(etype)
        return c

    def _grow(self, top: int) -> None:
        n = len(self.type_of)
        if top < n:
            return
        if top > MAX_EDGE_ID:
            raise StoreError(f"hyperedge id {top} is beyond the graph's edge columns "
                             f"(ids 1..{MAX_EDGE_ID})")
        size = max(top + 1, 2 * n, 1024)
        for name, fill in (("type_of", -1), ("conf", 0), ("ts", 0), ("flag", 0)):
            old = getattr(self, name)
            new = np.full(size, fill, old.dtype)
            new[:n] = old
            setattr(self, name, new)

    def adopt(self, type_of: np.ndarray, conf: np.ndarray, ts: np.ndarray, flag: np.ndarray,
              count: int) -> None:
        """Take whole columns by edge id as they are (a snapshot's, mapped copy-on-write:
        writes change this process's pages only) with ``count`` edges in them.

        >>> t = EdgeTable(lambda ids, conn=None: {})
        >>> t.adopt(np.array([-1, 0], np.int32), np.zeros(2), np.zeros(2),
        ...         np.zeros(2, np.uint8), 1)
        >>> t.exists(1), t.count
        (True, 1)
        """
        self.type_of, self.conf, self.ts, self.flag = type_of, conf, ts, flag
        self.count = int(count)

    def put_many(self, ids: np.ndarray, codes: np.ndarray, conf: np.ndarray, ts: np.ndarray,
                 flags: np.ndarray) -> None:
        """Add (or replace) many edges' columns at once (their property maps are re-read)."""
        if not len(ids):
            return
        if int(ids.min()) < 1:
            raise StoreError(f"hyperedge ids must be >= 1, got {int(ids.min())}")
        self._grow(int(ids.max()))
        self.count += int(np.count_nonzero(self.type_of[ids] < 0))
        self.type_of[ids] = codes
        self.conf[ids] = conf
        self.ts[ids] = ts
        self.flag[ids] = flags
        for e in ids[flags.astype(bool)].tolist():
            self._cache.data.pop(e, None)

    def put(self, eid: int, etype: str, conf: float, ts: float,
            props: dict[str, Any]) -> None:
        """Add or replace one edge (its own properties in ``props``)."""
        self._grow(eid)
        if self.type_of[eid] < 0:
            self.count += 1
        self.type_of[eid] = self.code(etype)
        self.conf[eid] = conf
        self.ts[eid] = ts
        self.flag[eid] = 1 if props else 0
        if props:
            self._cache.put(eid, props)
        else:
            self._cache.data.pop(eid, None)

    def drop(self, eid: int) -> None:
        """An edge was deleted."""
        if self.exists(eid):
            self.type_of[eid] = -1
            self.flag[eid] = 0
            self.count -= 1
        self._cache.data.pop(eid, None)

    def exists(self, eid: int) -> bool:
        """Is ``eid`` a hyperedge?"""
        return 0 < eid < len(self.type_of) and bool(self.type_of[eid] >= 0)

    def type(self, eid: int) -> str:
        """An edge's type (NotFoundError if unknown)."""
        if not self.exists(eid):
            raise NotFoundError(f"unknown edge {eid}")
        return self.names[self.type_of[eid]]

    def props(self, eid: int) -> dict[str, Any]:
        """An edge's properties with ``confidence`` and ``timestamp`` (a new dict)."""
        if not self.exists(eid):
            raise NotFoundError(f"unknown edge {eid}")
        out: dict[str, Any] = {}
        if self.flag[eid]:
            own = self._cache.data.get(eid)
            if own is None:
                own = self._fetch([eid], conn=self.conn).get(eid, {})
                self._cache.put(eid, own)
            out.update(own)
        out["confidence"] = float(self.conf[eid])
        out["timestamp"] = float(self.ts[eid])
        return out

    def ids(self) -> np.ndarray:
        """Ids of every edge (ascending)."""
        return np.flatnonzero(self.type_of >= 0).astype(np.int64)

    def present_types(self) -> list[str]:
        """Types some edge has now (sorted)."""
        used = np.unique(self.type_of[self.type_of >= 0])
        return sorted(self.names[c] for c in used.tolist())

    def cached(self) -> int:
        """How many property maps are in memory."""
        return len(self._cache.data)

    def clear_cache(self) -> None:
        """Drop every cached property map (after a rolled-back write)."""
        self._cache.data.clear()
