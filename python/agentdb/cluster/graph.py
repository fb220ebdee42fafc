"""The causal hypergraph on a cluster: writes go to PostgreSQL and the log, each shard
replica holds a *slice* of the topology, and multi-hop queries run as rounds of
scatter-gather.

**Slices.** Graph nodes are placed by the same hash ring as records (``ring.shard_for(node
id)``). A shard's slice holds every hyperedge with at least one of the shard's nodes in its
tail or head (so a hyperedge whose nodes live on several shards is in each of their slices),
as a native CSR :class:`Hypergraph`. The owner of a node therefore knows *all* of its edges
in both directions, which is what one hop needs.

**Queries.** :meth:`ClusterGraph.khop` runs a breadth-first search one hop per round: the
frontier is split by owning shard, every shard expands its part on one replica (with the same
retry / hedging / read-your-writes rules as vector search), and the handle merges the
results. ``k`` hops cost ``k`` parallel rounds, not one call per node. Node and edge
properties are read from PostgreSQL; Cypher runs on the same data through
``agentdb.open(backend="postgres", url=...).graph`` (one process, the full graph).

>>> # g = cluster_db.graph
>>> # a, b = g.add_event(type="cause"), g.add_event(type="effect")
>>> # e = g.add_causal_edge([a], [b], confidence=0.9)
>>> # g.khop(a, 2) == {b: 1}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engines.loader import graph_backend
from ..errors import InvalidArgumentError, NotFoundError
from ..graph.checks import check_confidence, check_edge, check_props, link_records

__all__ = ["ClusterGraph", "GraphSlice"]

_DIRECTIONS = ("out", "in", "both")


class GraphSlice:
    """The topology a shard replica holds: hyperedges touching the nodes it owns.

    ``owns(ids) -> bool mask`` decides ownership (the replica's ring). Edge types are coded
    locally; :meth:`expand` maps type names to this slice's codes.

    >>> s = GraphSlice(lambda ids: np.ones(len(ids), bool))
    >>> s.put_edges({7: ("CAUSED_BY", [1], [2], 1.0, 0.0, {})})
    >>> s.expand([1], "out", None)
    [2]
    """

    def __init__(self, owns: Any) -> None:
        self.owns = owns
        self.g = graph_backend().Hypergraph()
        self.types: dict[str, int] = {}

    def _code(self, etype: str) -> int:
        return self.types.setdefault(etype, len(self.types))

    def put_edges(self, rows: dict[int, tuple[str, list[int], list[int], float, float,
                                              dict[str, Any]]]) -> None:
        """Add (or replace) the given edges when they touch an owned node; drop the others
        if present (an edge that no longer touches this shard)."""
        for eid, (etype, tail, head, conf, ts, _props) in sorted(rows.items()):
            if self.g.has_edge(eid):
                self.g.remove_edge(eid)
            members = np.asarray(tail + head, np.int64)
            if not len(members) or not self.owns(members).any():
                continue
            fresh = [int(n) for n in dict.fromkeys(members.tolist()) if not self.g.has_node(n)]
            if fresh:
                self.g.add_nodes(np.asarray(fresh, np.int64))
            self.g.add_edge(eid, self._code(etype), tail, head, conf, ts)

    def remove_edges(self, ids: Sequence[int]) -> None:
        """Forget edges (ids not held are ignored)."""
        for eid in ids:
            if self.g.has_edge(int(eid)):
                self.g.remove_edge(int(eid))

    def expand(self, nodes: Sequence[int], direction: str, types: Sequence[str] | None
               ) -> list[int]:
        """One hop from the owned, known ``nodes``: the sorted neighbour ids."""
        arr = np.asarray(list(nodes), np.int64)
        if not len(arr):
            return []
        arr = arr[self.owns(arr)]
        seeds = [int(n) for n in arr if self.g.has_node(int(n))]
        codes = None if types is None else [self.types[t] for t in types if t in self.types]
        if not seeds or (codes is not None and not codes):
            return []
        out, _hops = self.g.khop(seeds, 1, direction, codes)
        # khop reports a seed only when another seed reaches it; here that is still one hop
        return [int(n) for n in out]

    def stats(self) -> dict[str, int]:
        """Node and edge counts of the slice."""
        return {"nodes": int(self.g.num_nodes()), "edges": int(self.g.num_edges())}


class ClusterGraph:
    """Causal-graph writes and multi-hop reads on a :class:`ClusterDB` (``db.graph``).

    Writes are one PostgreSQL transaction each (rows + log entries), like record writes,
    and advance the handle's ``last_seq``, so a following :meth:`khop` sees them.
    """

    def __init__(self, db: Any) -> None:  # a ClusterDB (which imports this module)
        self.db = db

    # ---- writes ---------------------------------------------------------------------------------
    def add_event(self, labels: str | Sequence[str] = "Event", *, pattern_id: int | None = None,
                  episode_id: int | None = None, skill_id: int | None = None,
                  **props: Any) -> int:
        """Add an event node; ``pattern_id`` / ``episode_id`` / ``skill_id`` link it to a
        record (checked to exist, stored as ``patternId`` / ...). Returns its id."""
        labels = [labels] if isinstance(labels, str) else list(labels)
        for label in labels:
            if not isinstance(label, str) or not label:
                raise InvalidArgumentError(f"labels must be non-empty strings, got {label!r}")
        store = self.db.store
        link_records(store, props, pattern_id, episode_id, skill_id)
        props = check_props(props, "node")
        with self.db.transaction() as (w, log_op):
            nid, _ = store.next_graph_ids(w)
            store.put_graph_node(w, nid, labels, props)
            log_op("graph_nodes", "upsert", [nid])
        return nid

    def add_causal_edge(self, causes: Sequence[int], effects: Sequence[int], *,
                        type: str = "CAUSED_BY", confidence: float = 1.0,  # noqa: A002
                        timestamp: float | None = None, **props: Any) -> int:
        """Add a hyperedge from ``causes`` to ``effects`` (nodes must exist); its id."""
        tail, head, conf, ts, props = check_edge(type, causes, effects, confidence, timestamp,
                                                 props)
        store = self.db.store
        known = set(store.get_graph_nodes(tail + head))
        missing = sorted(set(tail + head) - known)
        if missing:
            raise NotFoundError(f"unknown node {missing[0]}")
        with self.db.transaction() as (w, log_op):
            _, eid = store.next_graph_ids(w)
            store.put_graph_edge(w, eid, type, tail, head, conf, ts, props)
            log_op("graph_edges", "upsert", [eid])
        return eid

    def add_causal_chain(self, events: Sequence[int], *, type: str = "CAUSED_BY",  # noqa: A002
                         confidence: float | Sequence[float] = 1.0,
                         chain_type: str = "CAUSAL_CHAIN", **props: Any) -> tuple[int, list[int]]:
        """Record a chain ``e1 -> ... -> en`` as the embedded graph does, in one transaction:
        one ``type`` edge per consecutive pair and one ``chain_type`` hyperedge (causes
        ``e1..e(n-1)``, effect ``en``) carrying the product of the confidences and, as the
        seed system's contract has it, ``chain_length``. Returns ``(chain_edge_id, [pair edge
        ids])``."""
        ev = [int(e) for e in events]
        if len(ev) < 2:
            raise InvalidArgumentError("a causal chain needs at least two events")
        confs = ([confidence] * (len(ev) - 1) if isinstance(confidence, (int, float))
                 else list(confidence))
        if len(confs) != len(ev) - 1:
            raise InvalidArgumentError(f"got {len(confs)} confidences for {len(ev) - 1} links")
        confs = [check_confidence(c) for c in confs]
        edges = [(type, *check_edge(type, [a], [b], c, None, props))
                 for a, b, c in zip(ev, ev[1:], confs)]
        edges.append((chain_type, *check_edge(chain_type, ev[:-1], ev[-1:],
                                              float(np.prod(confs)), None,
                                              {**props, "chain_length": len(ev)})))
        store = self.db.store
        missing = sorted(set(ev) - set(store.get_graph_nodes(ev)))
        if missing:
            raise NotFoundError(f"unknown node {missing[0]}")
        with self.db.transaction() as (w, log_op):
            _, first = store.next_graph_ids(w)
            ids = list(range(first, first + len(edges)))
            for eid, (etype, tail, head, conf, ts, eprops) in zip(ids, edges):
                store.put_graph_edge(w, eid, etype, tail, head, conf, ts, eprops)
            log_op("graph_edges", "upsert", ids)
        return ids[-1], ids[:-1]

    def remove_edge(self, eid: int) -> None:
        """Remove a hyperedge (``KeyError`` if unknown)."""
        eid = int(eid)
        if not self.db.store.get_graph_edges([eid]):
            raise NotFoundError(f"unknown edge {eid}")
        with self.db.transaction() as (w, log_op):
            self.db.store.delete_graph(w, [], [eid])
            log_op("graph_edges", "delete", [eid])

    def remove_event(self, nid: int) -> None:
        """Remove a node and every hyperedge touching it (``KeyError`` if unknown)."""
        nid = int(nid)
        if not self.db.store.get_graph_nodes([nid]):
            raise NotFoundError(f"unknown node {nid}")
        with self.db.transaction() as (w, log_op):
            edges = self.db.store.graph_edges_touching(w, nid)
            self.db.store.delete_graph(w, [nid], edges)
            if edges:
                log_op("graph_edges", "delete", edges)
            log_op("graph_nodes", "delete", [nid])

    # ---- reads ----------------------------------------------------------------------------------
    def get_event(self, nid: int) -> dict[str, Any]:
        """``{"id", "labels", "properties"}`` from PostgreSQL (``KeyError`` if unknown)."""
        rows = self.db.store.get_graph_nodes([int(nid)])
        if int(nid) not in rows:
            raise NotFoundError(f"unknown node {nid}")
        labels, props = rows[int(nid)]
        return {"id": int(nid), "labels": labels, "properties": props}

    def get_edge(self, eid: int) -> dict[str, Any]:
        """``{"id", "type", "causes", "effects", "confidence", "timestamp", "properties"}``."""
        rows = self.db.store.get_graph_edges([int(eid)])
        if int(eid) not in rows:
            raise NotFoundError(f"unknown edge {eid}")
        etype, tail, head, conf, ts, props = rows[int(eid)]
        return {"id": int(eid), "type": etype, "causes": tail, "effects": head,
                "confidence": conf, "timestamp": ts, "properties": props}

    def khop(self, seeds: int | Sequence[int], k: int, direction: str = "out",
             types: Sequence[str] | None = None, *, min_seq: int | None = None
             ) -> dict[int, int]:
        """Nodes within ``k`` hops of the seeds: ``{node: min hops}`` -- the same answer as
        the embedded ``db.graph.khop`` (seeds appear only when reached again through a
        cycle). One scatter round per hop; ``min_seq`` as in vector search."""
        seed_list = ([int(seeds)] if isinstance(seeds, (int, np.integer))
                     else [int(s) for s in seeds])
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"k must be an integer >= 1, got {k!r}")
        if direction not in _DIRECTIONS:
            raise InvalidArgumentError(
                f"direction must be 'out', 'in' or 'both', got {direction!r}")
        if types is not None:
            types = [str(t) for t in types]
        known = set(self.db.store.get_graph_nodes(seed_list))
        for s in seed_list:
            if s not in known:
                raise NotFoundError(f"unknown node {s}")
        seed_set = set(seed_list)
        dist: dict[int, int] = {}
        frontier = sorted(seed_set)
        want = self.db.last_seq if min_seq is None else int(min_seq)
        for depth in range(1, int(k) + 1):
            if not frontier:
                break
            reached = self.db.scatter.expand(frontier, direction, types, want)
            nxt = []
            for n in reached:
                if n not in dist:
                    dist[n] = depth
                    if n not in seed_set:
                        nxt.append(n)
            frontier = nxt
        return dict(sorted(dist.items()))

    def stats(self) -> dict[str, Any]:
        """Node and edge counts from PostgreSQL."""
        nodes, edges = self.db.store.graph_counts()
        return {"nodes": nodes, "edges": edges}
