"""Opening the causal graph: from its snapshot plus the rows written since, or from the rows.

:func:`load` tries the snapshot beside an embedded store (:mod:`agentdb.graph.snapshot`),
replays what was written after it (:func:`catch_up`), and falls back to :func:`rebuild` from
the ``graph_nodes`` / ``graph_edges`` rows, with a progress line on a terminal for large
graphs. Neither path decodes a property map except those of nodes under a property index
(to index them, when rebuilding), so opening builds no Python object per node or edge.

>>> import agentdb
>>> db = agentdb.open(":memory:", dim=8)
>>> _ = db.graph.add_event(name="a")
>>> parts = load(db.store)
>>> parts.source, parts.g.num_nodes()
('rows', 1)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engines import loader as _loader
from . import snapshot as _snapshot
from .propindex import PropertyIndex, key_hash
from .tables import EdgeTable, NodeTable

__all__ = ["GraphParts", "catch_up", "load", "rebuild", "snapshot_of", "uses_snapshot"]

log = logging.getLogger("agentdb.graph")

_BATCH = 100_000
#: Rebuilds of at least this many rows show a progress line (on a terminal) and are saved
#: as a snapshot at once, so the next open is fast even if this process never closes cleanly.
LARGE = 100_000


@dataclass
class GraphParts:
    """A loaded graph: the native CSR and the tables beside it."""

    g: Any
    nodes: NodeTable
    edges: EdgeTable
    indexes: dict[tuple[str, str], PropertyIndex]
    source: str = "rows"   # "snapshot" or "rows"
    replayed: int = 0      # rows replayed after the snapshot
    rows: int = 0          # rows read to rebuild
    reason: str = ""       # why the snapshot was not used


def uses_snapshot(store: Any) -> bool:
    """Does ``store`` keep a graph snapshot (an embedded SQLite file, not ``:memory:``)?"""
    from ..storage import SQLiteStore

    return isinstance(store, SQLiteStore) and not store.memory


def _tables(store: Any, g: Any) -> tuple[NodeTable, EdgeTable]:
    nodes = NodeTable(g, lambda ids, conn=None: store.graph_props("nodes", ids, conn))
    edges = EdgeTable(lambda ids, conn=None: store.graph_props("edges", ids, conn))
    return nodes, edges


def load(store: Any) -> GraphParts:
    """The graph of ``store``: its snapshot brought up to date when usable, else rebuilt."""
    backend = _loader.graph_backend()
    reason = "in-memory or server store"
    if uses_snapshot(store):
        try:
            g, snap = _snapshot.read(store.path, store.meta("graph_snapshot"),
                                     store.generation, backend.Hypergraph.load)
        except _snapshot.SnapshotUnusable as exc:
            reason = str(exc)
        else:
            parts = _from_snapshot(store, g, snap)
            parts.replayed = catch_up(parts, store, snap.generation)
            return parts
    parts = rebuild(store)
    parts.reason = reason
    return parts


def _from_snapshot(store: Any, g: Any, snap: _snapshot.Snapshot) -> GraphParts:
    nodes, edges = _tables(store, g)
    nodes.names = list(snap.label_names)
    nodes.codes = {n: i for i, n in enumerate(nodes.names)}
    nodes.more = dict(snap.more)
    nodes.secondary = set(snap.secondary)
    edges.names = list(snap.type_names)
    edges.codes = {n: i for i, n in enumerate(edges.names)}
    edges.adopt(snap.edge_type_of, snap.edge_conf, snap.edge_ts, snap.edge_flag,
                snap.edge_count)
    indexes = {key: PropertyIndex.from_sorted(h, ids) for key, (h, ids) in snap.indexes.items()}
    declared = set(store.graph_indexes())
    parts = GraphParts(g, nodes, edges, indexes, source="snapshot")
    for key in sorted(declared - set(indexes)):  # declared by another process since
        parts.indexes[key] = build_index(parts, *key)
    return parts


def _props(raw: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    return {} if raw == "{}" else dict(json.loads(raw))


class _Progress:
    """A one-line progress report on stderr when it is a terminal and the work is large."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what = total, what
        self.on = total >= LARGE and sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.on and now - self.last >= 0.2:
            self.last = now
            pct = 100.0 * done / max(self.total, 1)
            sys.stderr.write(f"\ragentdb: rebuilding the graph from its rows: {done:,} / "
                             f"{self.total:,} {self.what} ({pct:.0f}%)")
            sys.stderr.flush()

    def done(self) -> None:
        if self.on:
            sys.stderr.write("\n")
            sys.stderr.flush()


def rebuild(store: Any) -> GraphParts:
    """Read every graph row of ``store`` into a new CSR and tables."""
    g = _loader.graph_backend().Hypergraph()
    nodes, edges = _tables(store, g)
    declared = store.graph_indexes()
    indexed_labels = {label for label, _ in declared}
    pairs: dict[tuple[str, str], tuple[list[int], list[int]]] = {k: ([], []) for k in declared}
    n_nodes, n_edges = store.graph_counts()
    progress = _Progress(n_nodes + n_edges, "rows")
    ids: list[int] = []
    codes: list[int] = []
    done = 0
    for nid, labels, raw in store.graph_node_rows():
        ids.append(nid)
        codes.append(nodes.code(labels))
        if len(labels) > 1:
            nodes.remember(nid, labels, None)
        if indexed_labels and not indexed_labels.isdisjoint(labels):
            props = _props(raw)
            for (label, prop), (hs, ns) in pairs.items():
                if label in labels and prop in props:
                    h = key_hash(props[prop])
                    if h is not None:
                        hs.append(h)
                        ns.append(nid)
        if len(ids) >= _BATCH:
            g.add_nodes(np.asarray(ids, np.int64), np.asarray(codes, np.int32))
            done += len(ids)
            progress.update(done)
            ids, codes = [], []
    if ids:
        g.add_nodes(np.asarray(ids, np.int64), np.asarray(codes, np.int32))
        done += len(ids)
    batch: list[tuple[int, str, list[int], list[int], float, float, bool]] = []
    for row in store.graph_edge_rows():
        batch.append(row)
        if len(batch) >= _BATCH:
            _add_edges(g, edges, batch)
            done += len(batch)
            progress.update(done)
            batch = []
    if batch:
        _add_edges(g, edges, batch)
        done += len(batch)
    g.compact()
    progress.done()
    indexes = {k: PropertyIndex(np.asarray(hs, np.int64), np.asarray(ns, np.int64))
               for k, (hs, ns) in pairs.items()}
    return GraphParts(g, nodes, edges, indexes, source="rows", rows=done)


def _add_edges(g: Any, edges: EdgeTable,
               batch: list[tuple[int, str, list[int], list[int], float, float, bool]]) -> None:
    ids = np.asarray([b[0] for b in batch], np.int64)
    codes = np.asarray([edges.code(b[1]) for b in batch], np.int32)
    tails = [b[2] for b in batch]
    heads = [b[3] for b in batch]
    conf = np.asarray([b[4] for b in batch], np.float64)
    ts = np.asarray([b[5] for b in batch], np.float64)
    g.add_edges(ids, codes,
                np.cumsum([0] + [len(t) for t in tails]).astype(np.int64),
                np.asarray([x for t in tails for x in t], np.int64),
                np.cumsum([0] + [len(h) for h in heads]).astype(np.int64),
                np.asarray([x for h in heads for x in h], np.int64),
                conf.astype(np.float32), ts)
    edges.put_many(ids, codes, conf, ts, np.asarray([b[6] for b in batch], np.uint8))


def catch_up(parts: GraphParts, store: Any, since: int) -> int:
    """Apply what was written after generation ``since`` (deletions, then the node rows,
    then the edge rows, each row as it is now); returns how many rows that was."""
    g, nodes, edges = parts.g, parts.nodes, parts.edges
    gone_edges = store.deleted_since("graph_edges", since)
    gone_nodes = store.deleted_since("graph_nodes", since)
    for e in gone_edges:
        if edges.exists(e):
            g.remove_edge(e)
            edges.drop(e)
    for n in gone_nodes:
        if nodes.exists(n):
            for d in ("out", "in"):  # the native removal takes the incident edges along
                for e in g.neighbors(n, d, None)[1].tolist():
                    edges.drop(e)
            g.remove_node(n)
            nodes.forget(n)
    rows = list(store.graph_node_rows(since))
    touched = np.asarray(sorted({r[0] for r in rows} | set(gone_nodes)), np.int64)
    for ix in parts.indexes.values():
        ix.forget_nodes(touched)
    for nid, labels, raw in rows:
        g.add_node(nid, nodes.code(labels))  # an upsert
        nodes.remember(nid, labels, None)
        props = None
        for (label, prop), ix in parts.indexes.items():
            if label in labels:
                props = _props(raw) if props is None else props
                if prop in props:
                    ix.add(nid, props[prop])
    n = len(rows)
    batch = list(store.graph_edge_rows(since))
    for row in batch:
        if edges.exists(row[0]):
            g.remove_edge(row[0])
            edges.drop(row[0])
    if batch:
        _add_edges(g, edges, batch)
    if n or batch or gone_nodes or gone_edges:
        g.compact()
    return n + len(batch) + len(gone_nodes) + len(gone_edges)


def build_index(parts: GraphParts, label: str, prop: str) -> PropertyIndex:
    """A property index over the nodes carrying ``label`` now (their properties read in
    bulk)."""
    ids = parts.nodes.with_label(label)
    pairs: list[tuple[int, Any]] = []
    for i in range(0, len(ids), 10_000):
        got = parts.nodes.props_many(ids[i:i + 10_000])
        pairs.extend((nid, p[prop]) for nid, p in got.items() if prop in p)
    return PropertyIndex.build(pairs)


def snapshot_of(parts: GraphParts, generation: int, token: str) -> _snapshot.Snapshot:
    """The :class:`~agentdb.graph.snapshot.Snapshot` of the loaded graph."""
    e = parts.edges
    ids = e.ids()
    top = int(ids[-1]) + 1 if len(ids) else 0  # the columns up to the highest edge id
    return _snapshot.Snapshot(
        generation=generation, token=token, label_names=list(parts.nodes.names),
        type_names=list(e.names), more=dict(parts.nodes.more),
        secondary=sorted(parts.nodes.secondary), edge_type_of=e.type_of[:top],
        edge_conf=e.conf[:top], edge_ts=e.ts[:top], edge_flag=e.flag[:top],
        edge_count=len(ids), indexes={k: ix.arrays() for k, ix in parts.indexes.items()})
