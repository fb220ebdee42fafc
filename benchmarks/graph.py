"""Causal-graph benchmark: the agentdb hypergraph (native API and Cypher) vs networkx vs Kuzu.

Data: a synthetic causal graph shaped like agent traces, generated deterministically from
``--seed``:

* ``--nodes`` nodes (default 200,000): ``Event`` nodes plus a few ``Tool`` (<= 20) and
  ``Agent`` (<= 5) nodes. Every node has an ``id`` string property (``ev<i>``, ``tool<j>``,
  ``agent<j>``); events also have ``type`` in {root_cause 5%, symptom 20%, action 45%,
  outcome 30%}. Event ``i`` happened at time ``i`` (events are in time order).
* ``--edges`` hyperedges (default 1,000,000): 97% ``CAUSED_BY`` between events, 2%
  ``USED_TOOL`` (event -> tool) and 1% ``PERFORMED`` (agent -> event). A ``CAUSED_BY`` edge is
  anchored at a tail event ``t``; 80% are 1 tail -> 1 head, 10% fan-in (2-3 tails: ``t`` plus
  distinct events up to 8 before it), 10% fan-out (2-3 distinct heads). Heads are distinct
  events in ``(t, t + --window]`` (default 32), so the graph points forward in time and is a
  DAG with local, trace-like structure. Confidence is uniform in [0.3, 1] (rounded to
  float32, so every system sees bit-identical values); timestamp = the anchor event's time.

Systems (all in one process, the same graph, the same random start nodes):

* ``agentdb API``: the native CSR hypergraph (``agentdb.engines.loader.graph_backend().Hypergraph``)
  bulk-loaded with ``add_nodes`` / ``add_edges`` + ``compact()``; queries via ``khop``,
  ``paths(..., as_arrays=True)`` (flat numpy arrays, no per-path Python objects),
  ``top_paths`` (Q1: walked backwards from the outcome, ``direction="in"``, with
  ``ends`` = the root_cause ids, best 10 by product) and ``match_chain`` (Q2: ``allowed`` =
  the type1 ids at ``a`` and the type2 ids at ``b``). The API has no property index: ids are
  mapped with a Python dict and arrays of node ids per type stand in for the type index.
* ``agentdb Cypher``: ``db.graph`` (``CausalMemoryGraph``) of ``agentdb.open(":memory:")``.
  Its SQLite rows are written with ``store.put_graph_node`` / ``put_graph_edge`` inside one
  ``store.write()`` transaction (the high-level ``add_event`` / ``add_causal_edge`` are timed
  separately on ``--api-items`` items), then the graph is loaded from SQLite
  (``CausalMemoryGraph._load``) and indexes on ``Event.id`` and ``Event.type`` are declared
  with ``create_index``. Every workload is a ``g.query(cypher, params)`` call.
* ``networkx``: the binary projection (one edge per tail x head pair, key = hyperedge id,
  attributes ``confidence`` and ``type``) as a ``MultiDiGraph`` (parallel relationships from
  different hyperedges are kept, as Cypher sees them). k-hop =
  ``single_source_shortest_path_length(cutoff=k)``; paths = ``all_simple_edge_paths(cutoff=5)``
  to every node within 5 hops (the multigraph-aware form of ``all_simple_paths``) with the
  confidence product computed per path; top-10 = ``heapq.nlargest`` over the same paths;
  Q1 / Q2 are equivalent Python loops over ``G.pred`` / ``G.succ`` with dicts from ``id``
  and ``type`` to nodes standing in for the property indexes (built once, in the load time).
* ``nx DFS`` (paths and top-10 only): a hand-written recursive DFS over the same ``G.succ``
  that enumerates the same simple paths but only collects the confidence products (no list
  per path) -- the fastest reasonable pure-Python baseline.
* ``kuzu``: an embedded Kuzu database in a temporary directory; node tables ``Event(id
  STRING PRIMARY KEY, type)``, ``Tool``, ``Agent``; rel tables ``CAUSED_BY``, ``USED_TOOL``,
  ``PERFORMED`` (each with ``confidence DOUBLE`` and the hyperedge id ``eid``) loaded with
  ``COPY FROM`` CSV files of the projection. Queries are prepared once and executed with
  parameters; results are fetched with ``get_all()``. Kuzu uses its default thread count
  (all cores); agentdb and networkx answer each query on one thread. Kuzu is optional
  (``pip install kuzu``); when it is missing or fails the run prints
  ``kuzu: skipped (<reason>)`` and goes on.

Workloads (each per start node; the same starts for every system):

* ``k-hop k=1,2,3,5``: number of distinct nodes reachable in 1..k out-hops (any type).
  Cypher: ``MATCH (a:Event {id: $id})-[*1..k]->(b) RETURN count(DISTINCT b)`` (Kuzu the same).
* ``paths *1..5``: count the out-paths of 1..5 hops (any type) and the sum of their confidence
  products. Cypher: ``MATCH p = (a:Event {id: $id})-[*1..5]->() RETURN count(*),
  sum(reduce(c = 1.0, r IN relationships(p) | c * r.confidence))``.
* ``top-10 paths``: the 10 paths of 1..5 hops with the largest product. Cypher: ``... RETURN
  p, reduce(...) AS conf ORDER BY conf DESC LIMIT 10``.
* ``Q1``: the reference query (below) for ``--starts`` random ``outcome`` events.
* ``Q2 full``: the reference query over the whole graph for one parameter pair
  (``--q2-types``, default root_cause,symptom: the rarest type as ``a``); it returns ~80,000 rows
  on the default graph, so it also runs as ``Q2 anchored``: with ``a.id = $aid`` added, for
  ``--starts`` random ``root_cause`` events.

The reference queries, verbatim for agentdb::

    Q1 = MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId})
         WHERE root.type = 'root_cause'
         RETURN path, length(path) as depth,
                reduce(conf = 1.0, r in relationships(path) | conf * r.confidence)
                  as chain_confidence
         ORDER BY chain_confidence DESC LIMIT 10
    Q2 = MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event)
         WHERE a.type = $type1 AND b.type = $type2 RETURN a, b, c

Kuzu adaptation: ``reduce(...)`` is not available, so the chain confidence is
``list_product(properties(rels(path), 'confidence'))`` (the same product); everything else is
unchanged. Kuzu's variable-length default is walk semantics and agentdb's is no repeated
node (networkx: simple paths); the generated graph is a DAG, so all three enumerate the same
paths.

Timing: for every workload x system, one untimed warm-up pass over all inputs (its results
are used for the correctness checks), then ``--repeats`` timed passes; the reported number is
the median pass time divided by the number of inputs (ms per query). A warm-up pass longer
than ``--max-pass-seconds`` is reported as is (not repeated). Builds are timed once. Before
the queries the garbage collector runs once and ``gc.freeze()`` moves the build objects (the
networkx graph, the agentdb property dicts, ...) out of its reach, so one system's millions
of objects do not slow another's collections. Memory: agentdb ``memory_usage()`` of the CSR
and the resident-set growth (RSS) over each build (approximate: the allocator may reuse
freed memory); Kuzu's on-disk size.

Correctness: agentdb (API) and networkx must agree on the k-hop counts, path counts and
product sums of every sampled start (asserted at the end, after the tables; mismatches are
printed); the other cells (Cypher, Kuzu, Q1 / Q2) are compared too and differences printed.

``--fallback`` adds a k-hop comparison of the native hypergraph with the pure-Python fallback
(``agentdb.engines.numpy_graph.Hypergraph``) on a smaller graph (``--fallback-edges``, nodes scaled
in proportion).

The full default run takes about 5 minutes on 2 idle cores (most of it in the pure-Python
systems and in loading the SQLite-backed graph).

agentdb is imported from the installed package (``pip install .``); ``--src`` imports
``<repo>/python`` instead (usually the numpy fallback, whose Hypergraph is pure Python). The
backend is printed in the header and every table title; on the fallback the comparison with
networkx and Kuzu is refused unless ``--allow-fallback`` (``--fallback`` above is unrelated:
it adds the native-vs-fallback table).

Examples::

    python benchmarks/graph.py                            # full default run
    python benchmarks/graph.py --edges 50000 --nodes 10000  # smoke test
    python benchmarks/graph.py --fallback --json graph.json
    python benchmarks/graph.py --src --allow-fallback --edges 5000 --nodes 1000  # source tree
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from _common import (
    add_backend_options,
    environment,
    fmt_float,
    fmt_ratio,
    import_agentdb,
    log,
    module_version,
    optional_import,
    print_header,
    print_table,
    require_native_for_peers,
    write_json,
)

LABELS = ("Event", "Tool", "Agent")
EVENT_TYPES = ("root_cause", "symptom", "action", "outcome")
TYPE_P = (0.05, 0.20, 0.45, 0.30)
EDGE_TYPES = ("CAUSED_BY", "USED_TOOL", "PERFORMED")
CAUSED_BY = 0
TAIL_WINDOW = 8  # extra fan-in tails come from the 8 events before the anchor
MAX_FAN = 3
PATH_HOPS = 5
TOP_N = 10
PATH_LIMIT = 50_000_000  # native paths(): enumerate everything

SYSTEMS = ("agentdb API", "agentdb Cypher", "networkx", "nx DFS", "kuzu")

Q1 = (
    "MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId}) "
    "WHERE root.type = 'root_cause' "
    "RETURN path, length(path) as depth, "
    "reduce(conf = 1.0, r in relationships(path) | conf * r.confidence) as chain_confidence "
    "ORDER BY chain_confidence DESC LIMIT 10"
)
Q2 = (
    "MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
    "WHERE a.type = $type1 AND b.type = $type2 RETURN a, b, c"
)
Q2_ANCHORED = (
    "MATCH (a:Event)-[:CAUSED_BY]->(b:Event)-[:CAUSED_BY]->(c:Event) "
    "WHERE a.id = $aid AND a.type = $type1 AND b.type = $type2 RETURN a, b, c"
)
KUZU_Q1 = (
    "MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId}) "
    "WHERE root.type = 'root_cause' "
    "RETURN path, length(path) AS depth, "
    "list_product(properties(rels(path), 'confidence')) AS chain_confidence "
    "ORDER BY chain_confidence DESC LIMIT 10"
)
CY_KHOP = "MATCH (a:Event {{id: $id}})-[*1..{k}]->(b) RETURN count(DISTINCT b) AS n"
CY_PATHS = (
    "MATCH p = (a:Event {id: $id})-[*1..5]->() RETURN count(*) AS n, "
    "sum(reduce(c = 1.0, r IN relationships(p) | c * r.confidence)) AS s"
)
CY_TOP = (
    "MATCH p = (a:Event {id: $id})-[*1..5]->() "
    "RETURN p, reduce(c = 1.0, r IN relationships(p) | c * r.confidence) AS conf "
    "ORDER BY conf DESC LIMIT 10"
)
KUZU_PATHS = (
    "MATCH p = (a:Event {id: $id})-[*1..5]->() RETURN count(*) AS n, "
    "sum(list_product(properties(rels(p), 'confidence'))) AS s"
)
KUZU_TOP = (
    "MATCH p = (a:Event {id: $id})-[*1..5]->() "
    "RETURN p, list_product(properties(rels(p), 'confidence')) AS conf "
    "ORDER BY conf DESC LIMIT 10"
)

WORKLOADS = (
    ("khop1", "k-hop k=1 (node count)"),
    ("khop2", "k-hop k=2 (node count)"),
    ("khop3", "k-hop k=3 (node count)"),
    ("khop5", "k-hop k=5 (node count)"),
    ("paths", "paths *1..5 (count, sum of products)"),
    ("top10", "top-10 paths *1..5 by product"),
    ("q1", "Q1 root causes -> outcome, top 10"),
    ("q2", "Q2 full graph (1 query)"),
    ("q2a", "Q2 anchored a.id = $aid"),
)


# --------------------------------------------------------------------------- data


@dataclass
class TraceGraph:
    """A generated causal hypergraph (node index ``i`` has node id ``i + 1``)."""

    n_event: int
    n_tool: int
    n_agent: int
    labels: np.ndarray  # int32 per node: index into LABELS
    types: np.ndarray  # int8 per node: index into EVENT_TYPES, -1 for tools / agents
    ext_ids: list[str]  # the ``id`` property per node
    edge_types: np.ndarray  # int32 per hyperedge: index into EDGE_TYPES
    tails: np.ndarray  # (m, MAX_FAN) node indices, -1 padded
    heads: np.ndarray  # (m, MAX_FAN) node indices, -1 padded
    tail_len: np.ndarray
    head_len: np.ndarray
    conf: np.ndarray  # float32
    ts: np.ndarray  # float64
    proj: dict[str, np.ndarray] = field(default_factory=dict)  # the binary projection

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return self.n_event + self.n_tool + self.n_agent

    @property
    def n_edges(self) -> int:
        """Number of hyperedges."""
        return int(self.edge_types.shape[0])

    @property
    def node_ids(self) -> np.ndarray:
        """int64 node ids (``index + 1``)."""
        return np.arange(1, self.n_nodes + 1, dtype=np.int64)

    @property
    def edge_ids(self) -> np.ndarray:
        """int64 hyperedge ids (``index + 1``)."""
        return np.arange(1, self.n_edges + 1, dtype=np.int64)

    def flat(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """CSR ``(offsets, node ids)`` of the tails or heads."""
        mat, lens = (self.tails, self.tail_len) if which == "tail" else (self.heads, self.head_len)
        mask = np.arange(MAX_FAN)[None, :] < lens[:, None]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return offsets, mat[mask].astype(np.int64) + 1

    def node_props(self, i: int) -> dict[str, Any]:
        """Properties of node index ``i``."""
        if self.types[i] >= 0:
            return {"id": self.ext_ids[i], "type": EVENT_TYPES[self.types[i]]}
        return {"id": self.ext_ids[i], "name": self.ext_ids[i]}


def _distinct_offsets(rng: np.random.Generator, n: int, width: int, k: int) -> np.ndarray:
    """``(n, k)`` distinct offsets in ``1..width`` per row."""
    if n == 0:
        return np.zeros((0, k), dtype=np.int64)
    return np.argsort(rng.random((n, width)), axis=1)[:, :k] + 1


def generate(n_nodes: int, n_edges: int, seed: int, window: int) -> TraceGraph:
    """Generate the trace-like causal DAG described in the module docstring."""
    rng = np.random.default_rng(seed)
    n_tool = min(20, max(1, n_nodes // 2000))
    n_agent = min(5, max(1, n_nodes // 10000))
    n_event = n_nodes - n_tool - n_agent
    if n_event < 4 * (window + TAIL_WINDOW):
        raise SystemExit(f"--nodes {n_nodes} is too small for --window {window}")
    labels = np.concatenate([np.zeros(n_event), np.ones(n_tool), np.full(n_agent, 2)])
    types = np.concatenate(
        [rng.choice(len(EVENT_TYPES), size=n_event, p=TYPE_P), np.full(n_tool + n_agent, -1)]
    ).astype(np.int8)
    ext_ids = (
        [f"ev{i}" for i in range(n_event)]
        + [f"tool{j}" for j in range(n_tool)]
        + [f"agent{j}" for j in range(n_agent)]
    )
    n_tool_e = int(round(n_edges * 0.02))
    n_agent_e = int(round(n_edges * 0.01))
    n_cb = n_edges - n_tool_e - n_agent_e
    # CAUSED_BY: anchor tail t, optional earlier co-causes, heads within (t, t + window]
    t0 = rng.integers(TAIL_WINDOW, n_event - 1 - window, n_cb)
    kind = rng.random(n_cb)
    fan_in = kind < 0.10
    fan_out = (kind >= 0.10) & (kind < 0.20)
    tail_len = np.where(fan_in, rng.integers(2, MAX_FAN + 1, n_cb), 1)
    head_len = np.where(fan_out, rng.integers(2, MAX_FAN + 1, n_cb), 1)
    tails = np.full((n_cb, MAX_FAN), -1, dtype=np.int64)
    heads = np.full((n_cb, MAX_FAN), -1, dtype=np.int64)
    tails[:, 0] = t0
    idx_in = np.flatnonzero(fan_in)
    tails[idx_in, 1:] = t0[idx_in, None] - _distinct_offsets(
        rng, idx_in.size, TAIL_WINDOW, MAX_FAN - 1
    )
    heads[:, 0] = t0 + rng.integers(1, window + 1, n_cb)
    idx_out = np.flatnonzero(fan_out)
    heads[idx_out, :] = t0[idx_out, None] + _distinct_offsets(rng, idx_out.size, window, MAX_FAN)
    tails[np.arange(MAX_FAN)[None, :] >= tail_len[:, None]] = -1
    heads[np.arange(MAX_FAN)[None, :] >= head_len[:, None]] = -1
    anchor = t0.copy()
    # USED_TOOL (event -> tool) and PERFORMED (agent -> event)
    ev_t = rng.integers(0, n_event, n_tool_e)
    tool_h = n_event + rng.integers(0, n_tool, n_tool_e)
    ag_t = n_event + n_tool + rng.integers(0, n_agent, n_agent_e)
    ev_h = rng.integers(0, n_event, n_agent_e)
    pad = np.full((n_tool_e + n_agent_e, MAX_FAN - 1), -1, dtype=np.int64)
    tails = np.vstack([tails, np.column_stack([np.concatenate([ev_t, ag_t]), pad])])
    heads = np.vstack([heads, np.column_stack([np.concatenate([tool_h, ev_h]), pad])])
    tail_len = np.concatenate([tail_len, np.ones(n_tool_e + n_agent_e, np.int64)])
    head_len = np.concatenate([head_len, np.ones(n_tool_e + n_agent_e, np.int64)])
    etypes = np.concatenate(
        [np.zeros(n_cb), np.ones(n_tool_e), np.full(n_agent_e, 2)]
    ).astype(np.int32)
    anchor = np.concatenate([anchor, ev_t, ev_h])
    conf = rng.uniform(0.3, 1.0, n_edges).astype(np.float32)
    order = np.argsort(anchor, kind="stable")  # edge ids increase with time, like a log
    ts = 1.7e9 + anchor[order].astype(np.float64)
    g = TraceGraph(
        n_event, n_tool, n_agent, labels.astype(np.int32), types, ext_ids, etypes[order],
        tails[order], heads[order], tail_len[order].astype(np.int64),
        head_len[order].astype(np.int64), conf, ts,
    )
    g.proj = project(g)
    return g


def project(g: TraceGraph) -> dict[str, np.ndarray]:
    """Binary projection: one (src, dst) relationship per tail x head pair of each hyperedge."""
    rep = g.tail_len * g.head_len
    e_idx = np.repeat(np.arange(g.n_edges), rep)
    start = np.cumsum(rep) - rep
    k = np.arange(int(rep.sum())) - np.repeat(start, rep)
    hl = g.head_len[e_idx]
    return {
        "src": g.tails[e_idx, k // hl],
        "dst": g.heads[e_idx, k % hl],
        "eid": e_idx + 1,
        "type": g.edge_types[e_idx],
        "conf": g.conf[e_idx],
    }


# --------------------------------------------------------------------------- helpers


def rss_bytes() -> int:
    """Resident set size of this process (0 when unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def mb(n: float | None) -> str | None:
    """Bytes as MB with one decimal."""
    return None if n is None else f"{n / 1e6:.1f}"


def dir_size(path: str | os.PathLike[str]) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


@dataclass
class Cell:
    """One workload x system measurement."""

    ms: float | None = None
    repeats: int = 0
    results: list[Any] | None = None
    error: str | None = None


def measure(
    fn: Callable[[Any], Any], inputs: Sequence[Any], repeats: int, max_pass: float
) -> Cell:
    """Warm-up pass (results kept), then ``repeats`` timed passes; ms per input (median)."""
    try:
        t0 = time.perf_counter()
        results = [fn(x) for x in inputs]
        warm = time.perf_counter() - t0
        if warm > max_pass:
            return Cell(warm / len(inputs) * 1e3, 0, results)
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            for x in inputs:
                fn(x)
            times.append(time.perf_counter() - t0)
        return Cell(statistics.median(times) / len(inputs) * 1e3, len(times), results)
    except Exception as exc:  # noqa: BLE001 - a failing cell is reported, the run goes on
        return Cell(error=f"{type(exc).__name__}: {str(exc)[:200]}")


def close(a: float, b: float, tol: float = 1e-4) -> bool:
    """Relative closeness of two floats (products are float32 in the native core)."""
    return math.isclose(a, b, rel_tol=tol, abs_tol=1e-9)


def same_result(kind: str, a: Any, b: Any) -> bool:
    """Compare per-input result summaries of two systems."""
    if kind.startswith("khop") or kind in ("q2", "q2a"):
        return bool(a == b)
    if kind == "paths":
        return bool(a[0] == b[0] and close(a[1], b[1]))
    # top10 / q1: the multiset of the best scores (ties may pick different paths)
    return len(a) == len(b) and all(close(x, y) for x, y in zip(sorted(a), sorted(b)))


# --------------------------------------------------------------------------- agentdb


def build_native(hg: ModuleType, g: TraceGraph) -> Any:
    """Bulk-load the low-level hypergraph from the generated arrays."""
    h = hg.Hypergraph()
    h.add_nodes(g.node_ids, g.labels)
    toff, tn = g.flat("tail")
    hoff, hn = g.flat("head")
    h.add_edges(g.edge_ids, g.edge_types, toff, tn, hoff, hn, g.conf, g.ts)
    h.compact()
    return h


def build_sqlite_graph(agentdb: ModuleType, g: TraceGraph, path: str = ":memory:"
                       ) -> tuple[Any, Any, dict[str, float]]:
    """Write the graph rows into a fresh store at ``path`` and load ``db.graph`` from them."""
    times: dict[str, float] = {}
    r0 = rss_bytes()
    db = agentdb.open(path, dim=8)
    store = db.store
    t0 = time.perf_counter()
    with store.write() as w:
        for i in range(g.n_nodes):
            store.put_graph_node(w, i + 1, [LABELS[g.labels[i]]], g.node_props(i))
        tails = g.tails.tolist()
        heads = g.heads.tolist()
        tl = g.tail_len.tolist()
        hl = g.head_len.tolist()
        confs = g.conf.astype(np.float64).tolist()
        tss = g.ts.tolist()
        ets = g.edge_types.tolist()
        for e in range(g.n_edges):
            store.put_graph_edge(
                w, e + 1, EDGE_TYPES[ets[e]], [x + 1 for x in tails[e][: tl[e]]],
                [x + 1 for x in heads[e][: hl[e]]], confs[e], tss[e], {},
            )
    times["sqlite_write_s"] = time.perf_counter() - t0
    r1 = rss_bytes()
    t0 = time.perf_counter()
    graph = db.graph  # CausalMemoryGraph(store): reads graph_nodes / graph_edges into the CSR
    times["graph_load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph.create_index("Event", "id")
    graph.create_index("Event", "type")
    times["create_index_s"] = time.perf_counter() - t0
    times["rss_sqlite_bytes"] = r1 - r0
    times["rss_graph_bytes"] = rss_bytes() - r1
    if path != ":memory:":
        t0 = time.perf_counter()
        db.checkpoint()  # writes the graph snapshot beside the store
        times["snapshot_save_s"] = time.perf_counter() - t0
    return db, graph, times


OPEN_CHILD = """
import json, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
import agentdb
r0 = rss()
t0 = time.perf_counter()
db = agentdb.open(sys.argv[1], dim=8, readonly=True)
g = db.graph
t_open = time.perf_counter() - t0
r1 = rss()
t0 = time.perf_counter()
hit = g.find_nodes("Event", {"id": sys.argv[2]})
rows = g.query("MATCH (a:Event {id: $x})-[:CAUSED_BY*1..3]->(b) RETURN count(DISTINCT b) AS n",
               {"x": sys.argv[2]})
t_first = time.perf_counter() - t0
print(json.dumps({"open_s": t_open, "rss_bytes": r1, "rss_growth_bytes": r1 - r0,
                  "first_query_s": t_first, "loaded_from": g.stats()["loaded_from"],
                  "edges": g.stats()["edges"], "found": len(hit), "n": rows[0]["n"]}))
"""


def time_open(path: str, probe: str) -> dict[str, Any]:
    """Open the store at ``path`` read-only in a fresh process: seconds to ``db.graph``, the
    process's RSS after it, and the first anchored query (properties are read lazily)."""
    out = subprocess.run([sys.executable, "-c", OPEN_CHILD, path, probe], capture_output=True,
                         text=True, timeout=900, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def time_opens(path: str, probe: str, repeats: int) -> dict[str, Any]:
    """:func:`time_open` from the snapshot (median of ``repeats``), then once with the
    snapshot set aside (the rebuild from the rows that a stale or damaged snapshot costs)."""
    snap = [time_open(path, probe) for _ in range(max(1, repeats))]
    snap.sort(key=lambda r: r["open_s"])
    out = {"snapshot": snap[len(snap) // 2]}
    meta = Path(path + ".graph-meta")
    aside = meta.with_name(meta.name + ".aside")
    meta.rename(aside)
    try:
        out["rebuild"] = time_open(path, probe)
    finally:
        aside.rename(meta)
    return out


def time_high_level_api(agentdb: ModuleType, g: TraceGraph, items: int) -> dict[str, float]:
    """``add_event`` x items then ``add_causal_edge`` x items in one ``g.transaction()``."""
    db = agentdb.open(":memory:", dim=8)
    cg = db.graph
    n = min(items, g.n_event)
    t0 = time.perf_counter()
    with cg.transaction():
        ids = [cg.add_event(**g.node_props(i)) for i in range(n)]
    t_nodes = time.perf_counter() - t0
    cb = np.flatnonzero((g.edge_types == CAUSED_BY) & (g.heads.max(axis=1) < n))[:items]
    t0 = time.perf_counter()
    with cg.transaction():
        for e in cb.tolist():
            cg.add_causal_edge(
                [ids[x] for x in g.tails[e][: g.tail_len[e]]],
                [ids[x] for x in g.heads[e][: g.head_len[e]]],
                confidence=float(g.conf[e]), timestamp=float(g.ts[e]),
            )
    t_edges = time.perf_counter() - t0
    db.close()
    return {
        "events": n, "events_s": t_nodes, "edges": int(cb.size), "edges_s": t_edges,
    }


def time_khop_batch(h: Any, inputs_by_nid: dict[str, list[Any]], repeats: int
                    ) -> dict[int, dict[str, Any]]:
    """k-hop for every start in one ``khop_batch`` call on 1 and 2 threads: ms per seed
    (median of ``max(repeats, 9)`` calls) and the per-seed counts. Run before networkx and
    Kuzu are loaded, so their threads do not share the cores with the timed calls."""
    out: dict[int, dict[str, Any]] = {}
    for k in (1, 2, 3, 5):
        seeds = list(inputs_by_nid[f"khop{k}"])
        if not seeds:
            continue
        row: dict[str, Any] = {"k": k, "seeds": len(seeds)}
        for threads in (1, 2):
            times = []
            for _ in range(max(9, repeats)):
                t0 = time.perf_counter()
                off, _nodes, _hops = h.khop_batch(seeds, k, "out", None, threads=threads)
                times.append(time.perf_counter() - t0)
            row[f"ms_per_seed_{threads}t"] = statistics.median(times) * 1e3 / len(seeds)
        row["counts"] = np.diff(off).tolist()
        out[k] = row
    return out


def report_khop_batch(timed: dict[int, dict[str, Any]], cells: dict[tuple[str, str], Cell],
                      mismatches: list[str], hard: list[str]) -> list[dict[str, Any]]:
    """The :func:`time_khop_batch` table beside the per-call API and networkx cells; the
    per-seed counts must equal networkx's (else a hard mismatch)."""
    out: list[dict[str, Any]] = []
    rows = []
    for k, row in timed.items():
        key = f"khop{k}"
        counts = row.pop("counts")
        ref = cells.get((key, "networkx"))
        if ref is not None and ref.results is not None and list(ref.results) != counts:
            msg = f"k-hop k={k} batch: counts differ from networkx"
            mismatches.append(msg)
            hard.append(msg)
        api = cells.get((key, "agentdb API"))
        row["api_ms"] = api.ms if api else None
        row["networkx_ms"] = ref.ms if ref else None
        out.append(row)
        nx_ms = row["networkx_ms"]
        rows.append([k, row["seeds"], fmt_float(row["ms_per_seed_1t"], 4),
                     fmt_float(row["ms_per_seed_2t"], 4),
                     fmt_float(row["api_ms"], 4) if row["api_ms"] else None,
                     fmt_float(nx_ms, 4) if nx_ms else None,
                     fmt_ratio(nx_ms / row["ms_per_seed_1t"]) if nx_ms else "-",
                     fmt_ratio(nx_ms / row["ms_per_seed_2t"]) if nx_ms else "-"])
    print_table("k-hop for all starts in one khop_batch call: ms per seed",
                ["k", "seeds", "batch 1T", "batch 2T", "API per call", "networkx",
                 "nx/batch 1T", "nx/batch 2T"], rows,
                note="batch = h.khop_batch(starts, k, threads=T) timed whole before networkx "
                     "and Kuzu were loaded, divided by the seeds (median of 9 calls or "
                     "--repeats);\nAPI per call and networkx: the per-start cells above. "
                     "Per-seed counts checked against networkx.")
    return out


def native_runners(h: Any, g: TraceGraph, id_to_nid: dict[str, int]) -> dict[str, Callable]:
    """Per-input callables for the low-level API."""
    types = g.types
    root = EVENT_TYPES.index("root_cause")

    def khop(k: int) -> Callable[[int], int]:
        return lambda s: int(h.khop([s], k, "out", None)[0].shape[0])

    # the API has no property index: these arrays of node ids by type stand in for one
    by_type = [np.flatnonzero(types == t).astype(np.int64) + 1 for t in range(len(EVENT_TYPES))]

    def paths(s: int) -> tuple[int, float]:
        arrays = h.paths(s, 1, PATH_HOPS, "out", None, limit=PATH_LIMIT, as_arrays=True)
        product = arrays[4]
        return int(product.shape[0]), float(product.sum())

    def top10(s: int) -> list[float]:
        return [float(p[2]) for p in h.top_paths(s, 1, PATH_HOPS, "out", None, n=TOP_N)]

    def q1(outcome_id: str) -> list[float]:
        # best chains walked backwards from the outcome, ending at a root_cause event
        dst = id_to_nid[outcome_id]
        best = h.top_paths(dst, 1, PATH_HOPS, "in", [CAUSED_BY], n=TOP_N, ends=by_type[root],
                           as_arrays=True)
        return [float(x) for x in best[4]]

    def chain(allowed: list[Any]) -> int:
        nodes, _edges = h.match_chain([0, 0, 0], [CAUSED_BY, CAUSED_BY], ["out", "out"],
                                      allowed=allowed)
        return int(nodes.shape[0])

    def q2(params: tuple[str, str]) -> int:
        t1, t2 = params
        return chain([by_type[EVENT_TYPES.index(t1)], by_type[EVENT_TYPES.index(t2)], None])

    def q2a(params: tuple[str, str, str]) -> int:
        aid, t1, t2 = params
        a = id_to_nid[aid]
        if types[a - 1] != EVENT_TYPES.index(t1):
            return 0
        return chain([[a], by_type[EVENT_TYPES.index(t2)], None])

    return {
        "khop1": khop(1), "khop2": khop(2), "khop3": khop(3), "khop5": khop(5), "paths": paths,
        "top10": top10,
        "q1": q1, "q2": q2, "q2a": q2a,
    }


def cypher_runners(cg: Any) -> dict[str, Callable]:
    """Per-input callables running Cypher on ``db.graph``."""

    def khop(k: int) -> Callable[[str], int]:
        q = CY_KHOP.format(k=k)
        return lambda sid: int(cg.query(q, {"id": sid})[0]["n"])

    def paths(sid: str) -> tuple[int, float]:
        row = cg.query(CY_PATHS, {"id": sid})[0]
        return int(row["n"]), float(row["s"] or 0.0)

    def top10(sid: str) -> list[float]:
        return [float(r["conf"]) for r in cg.query(CY_TOP, {"id": sid})]

    def q1(outcome_id: str) -> list[float]:
        return [float(r["chain_confidence"]) for r in cg.query(Q1, {"outcomeId": outcome_id})]

    def q2(params: tuple[str, str]) -> int:
        return len(cg.query(Q2, {"type1": params[0], "type2": params[1]}))

    def q2a(params: tuple[str, str, str]) -> int:
        aid, t1, t2 = params
        return len(cg.query(Q2_ANCHORED, {"aid": aid, "type1": t1, "type2": t2}))

    return {
        "khop1": khop(1), "khop2": khop(2), "khop3": khop(3), "khop5": khop(5), "paths": paths,
        "top10": top10,
        "q1": q1, "q2": q2, "q2a": q2a,
    }


# --------------------------------------------------------------------------- networkx


def build_networkx(nx: ModuleType, g: TraceGraph) -> tuple[Any, dict[str, Any]]:
    """The projection as a MultiDiGraph plus id / type lookup dicts (the 'indexes')."""
    G = nx.MultiDiGraph()
    G.add_nodes_from(
        (i + 1, {"label": LABELS[g.labels[i]], **g.node_props(i)}) for i in range(g.n_nodes)
    )
    p = g.proj
    G.add_edges_from(
        (s, d, e, {"confidence": c, "type": EDGE_TYPES[t]})
        for s, d, e, c, t in zip(
            (p["src"] + 1).tolist(), (p["dst"] + 1).tolist(), p["eid"].tolist(),
            p["conf"].astype(np.float64).tolist(), p["type"].tolist(),
        )
    )
    by_id = {g.ext_ids[i]: i + 1 for i in range(g.n_nodes)}
    by_type: dict[str, list[int]] = {t: [] for t in EVENT_TYPES}
    for i in np.flatnonzero(g.types >= 0).tolist():
        by_type[EVENT_TYPES[g.types[i]]].append(i + 1)
    return G, {"by_id": by_id, "by_type": by_type}


def networkx_runners(nx: ModuleType, G: Any, idx: dict[str, Any]) -> dict[str, Callable]:
    """Per-input callables on the networkx graph."""
    by_id: dict[str, int] = idx["by_id"]
    by_type: dict[str, list[int]] = idx["by_type"]
    nodes = G.nodes
    succ = G.succ
    pred = G.pred

    def khop(k: int) -> Callable[[int], int]:
        return lambda s: len(nx.single_source_shortest_path_length(G, s, cutoff=k)) - 1

    def all_paths(s: int) -> Any:
        targets = set(nx.single_source_shortest_path_length(G, s, cutoff=PATH_HOPS))
        targets.discard(s)
        for path in nx.all_simple_edge_paths(G, s, targets, cutoff=PATH_HOPS):
            prod = 1.0
            for u, v, key in path:
                prod *= succ[u][v][key]["confidence"]
            yield prod

    def paths(s: int) -> tuple[int, float]:
        n, total = 0, 0.0
        for prod in all_paths(s):
            n += 1
            total += prod
        return n, total

    def top10(s: int) -> list[float]:
        return heapq.nlargest(TOP_N, all_paths(s))

    def q1(outcome_id: str) -> list[float]:
        dst = by_id[outcome_id]
        out: list[tuple[float, int, list[int], list[int]]] = []
        path_nodes = [dst]
        path_edges: list[int] = []
        on_path = {dst}

        def walk(v: int, conf: float) -> None:
            for u, keyed in pred[v].items():
                if u in on_path:
                    continue
                for key, attr in keyed.items():
                    if attr["type"] != "CAUSED_BY":
                        continue
                    nu = nodes[u]
                    if nu["label"] != "Event":
                        continue
                    c = conf * attr["confidence"]
                    path_nodes.append(u)
                    path_edges.append(key)
                    if nu.get("type") == "root_cause":
                        out.append((c, len(path_edges), path_nodes[::-1], path_edges[::-1]))
                    if len(path_edges) < PATH_HOPS:
                        on_path.add(u)
                        walk(u, c)
                        on_path.discard(u)
                    path_nodes.pop()
                    path_edges.pop()

        if nodes[dst]["label"] == "Event":
            walk(dst, 1.0)
        return [r[0] for r in heapq.nlargest(TOP_N, out, key=lambda r: r[0])]

    def rows_from(starts: Sequence[int], type2: str) -> list[tuple[Any, Any, Any]]:
        rows = []
        for a in starts:
            na = nodes[a]
            for b, k1 in succ[a].items():
                nb = nodes[b]
                if nb["label"] != "Event" or nb.get("type") != type2:
                    continue
                for attr1 in k1.values():
                    if attr1["type"] != "CAUSED_BY":
                        continue
                    for c, k2 in succ[b].items():
                        nc = nodes[c]
                        if nc["label"] != "Event":
                            continue
                        for attr2 in k2.values():
                            if attr2["type"] == "CAUSED_BY":
                                rows.append((na, nb, nc))
        return rows

    def q2(params: tuple[str, str]) -> int:
        return len(rows_from(by_type[params[0]], params[1]))

    def q2a(params: tuple[str, str, str]) -> int:
        aid, t1, t2 = params
        a = by_id[aid]
        if nodes[a].get("type") != t1 or nodes[a]["label"] != "Event":
            return 0
        return len(rows_from([a], t2))

    return {
        "khop1": khop(1), "khop2": khop(2), "khop3": khop(3), "khop5": khop(5), "paths": paths,
        "top10": top10,
        "q1": q1, "q2": q2, "q2a": q2a,
    }


def networkx_dfs_runners(G: Any) -> dict[str, Callable]:
    """Paths and top-10 with a hand-written recursive DFS over ``G.succ``.

    Same enumeration as ``all_simple_edge_paths`` (simple paths, every parallel edge), but it
    only collects the confidence products instead of building a list per path.
    """
    succ = G.succ

    def products(s: int) -> list[float]:
        out: list[float] = []
        on_path = {s}

        def walk(v: int, conf: float, depth: int) -> None:
            for w, keyed in succ[v].items():
                if w in on_path:
                    continue
                for attr in keyed.values():
                    c = conf * attr["confidence"]
                    out.append(c)
                    if depth < PATH_HOPS:
                        on_path.add(w)
                        walk(w, c, depth + 1)
                        on_path.discard(w)

        walk(s, 1.0, 1)
        return out

    def paths(s: int) -> tuple[int, float]:
        found = products(s)
        return len(found), sum(found)

    def top10(s: int) -> list[float]:
        return heapq.nlargest(TOP_N, products(s))

    return {"paths": paths, "top10": top10}


# --------------------------------------------------------------------------- kuzu


def build_kuzu(kuzu: ModuleType, g: TraceGraph, tmp: Path) -> tuple[Any, Any, dict[str, Any]]:
    """Create the Kuzu schema and COPY the nodes and the projected relationships from CSV."""
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    csv_dir = tmp / "csv"
    csv_dir.mkdir()
    ev = np.flatnonzero(g.labels == 0)
    (csv_dir / "event.csv").write_text(
        "".join(f"{g.ext_ids[i]},{EVENT_TYPES[g.types[i]]}\n" for i in ev.tolist())
    )
    for lab in (1, 2):
        rows = np.flatnonzero(g.labels == lab).tolist()
        (csv_dir / f"{LABELS[lab].lower()}.csv").write_text(
            "".join(f"{g.ext_ids[i]}\n" for i in rows)
        )
    p = g.proj
    src, dst = p["src"].tolist(), p["dst"].tolist()
    conf, eid, typ = p["conf"].astype(np.float64).tolist(), p["eid"].tolist(), p["type"].tolist()
    ids = g.ext_ids
    for t, name in enumerate(EDGE_TYPES):
        sel = [j for j in range(len(typ)) if typ[j] == t]
        (csv_dir / f"{name.lower()}.csv").write_text(
            "".join(f"{ids[src[j]]},{ids[dst[j]]},{conf[j]!r},{eid[j]}\n" for j in sel)
        )
    info["csv_write_s"] = time.perf_counter() - t0
    r0 = rss_bytes()
    t0 = time.perf_counter()
    db = kuzu.Database(str(tmp / "db"))
    conn = kuzu.Connection(db)
    conn.execute("CREATE NODE TABLE Event(id STRING, type STRING, PRIMARY KEY(id))")
    conn.execute("CREATE NODE TABLE Tool(id STRING, PRIMARY KEY(id))")
    conn.execute("CREATE NODE TABLE Agent(id STRING, PRIMARY KEY(id))")
    rel = "confidence DOUBLE, eid INT64"
    conn.execute(f"CREATE REL TABLE CAUSED_BY(FROM Event TO Event, {rel})")
    conn.execute(f"CREATE REL TABLE USED_TOOL(FROM Event TO Tool, {rel})")
    conn.execute(f"CREATE REL TABLE PERFORMED(FROM Agent TO Event, {rel})")
    for table in ("Event", "Tool", "Agent", *EDGE_TYPES):
        path = (csv_dir / f"{table.lower()}.csv").as_posix()
        conn.execute(f"COPY {table} FROM '{path}' (HEADER=false)")
    info["copy_s"] = time.perf_counter() - t0
    info["rss_bytes"] = rss_bytes() - r0
    info["disk_bytes"] = sum(
        dir_size(q) if q.is_dir() else q.stat().st_size for q in tmp.glob("db*"))
    shutil.rmtree(csv_dir, ignore_errors=True)
    return db, conn, info


def kuzu_runners(conn: Any) -> dict[str, Callable]:
    """Per-input callables running prepared Cypher statements on Kuzu."""
    cache: dict[str, Any] = {}

    def run(q: str, params: dict[str, Any]) -> list[list[Any]]:
        ps = cache.get(q)
        if ps is None:
            # prepare() is deprecated in Kuzu 0.11 but still ~1.5x faster per call than
            # execute(q, params) on these short queries; fall back when it is gone
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ps = cache[q] = conn.prepare(q) if hasattr(conn, "prepare") else q
        return conn.execute(ps, params).get_all()  # type: ignore[no-any-return]

    def khop(k: int) -> Callable[[str], int]:
        q = CY_KHOP.format(k=k)
        return lambda sid: int(run(q, {"id": sid})[0][0])

    def paths(sid: str) -> tuple[int, float]:
        n, s = run(KUZU_PATHS, {"id": sid})[0]
        return int(n), float(s or 0.0)

    def top10(sid: str) -> list[float]:
        return [float(r[1]) for r in run(KUZU_TOP, {"id": sid})]

    def q1(outcome_id: str) -> list[float]:
        return [float(r[2]) for r in run(KUZU_Q1, {"outcomeId": outcome_id})]

    def q2(params: tuple[str, str]) -> int:
        return len(run(Q2, {"type1": params[0], "type2": params[1]}))

    def q2a(params: tuple[str, str, str]) -> int:
        aid, t1, t2 = params
        return len(run(Q2_ANCHORED, {"aid": aid, "type1": t1, "type2": t2}))

    return {
        "khop1": khop(1), "khop2": khop(2), "khop3": khop(3), "khop5": khop(5), "paths": paths,
        "top10": top10,
        "q1": q1, "q2": q2, "q2a": q2a,
    }


# --------------------------------------------------------------------------- fallback


def run_fallback(
    agentdb: ModuleType, args: argparse.Namespace, n_starts: int
) -> dict[str, Any] | None:
    """k-hop on the native hypergraph vs the pure-Python fallback, on a smaller graph."""
    from agentdb.engines import loader as _loader
    from agentdb.engines import numpy_graph as _numpy_graph

    native = _loader.graph_backend()
    if native is _numpy_graph:
        print("fallback: skipped (the native graph backend is not loaded)\n")
        return None
    edges = args.fallback_edges
    nodes = max(int(args.nodes * edges / args.edges), 4 * (args.window + TAIL_WINDOW) + 30)
    fg = generate(nodes, edges, args.seed, args.window)
    rng = np.random.default_rng(args.seed + 7)
    starts = (rng.choice(fg.n_event, min(n_starts, fg.n_event), replace=False) + 1).tolist()
    out: dict[str, Any] = {"nodes": nodes, "edges": edges, "starts": len(starts), "rows": []}
    builds = {}
    hs = {}
    for name, mod in (("native", native), ("numpy fallback", _numpy_graph)):
        t0 = time.perf_counter()
        hs[name] = build_native(mod, fg)
        builds[name] = time.perf_counter() - t0
    out["build_s"] = builds
    rows = []
    ok = True
    for k in (1, 2, 3):
        cells = {}
        for name, h in hs.items():
            cells[name] = measure(
                lambda s, h=h, k=k: int(h.khop([s], k, "out", None)[0].shape[0]),
                starts, args.repeats, args.max_pass_seconds,
            )
        a, b = cells["native"], cells["numpy fallback"]
        agree = a.results == b.results
        ok = ok and agree
        ratio = b.ms / a.ms if a.ms and b.ms else None
        rows.append([f"k-hop k={k}", fmt_float(a.ms, 4), fmt_float(b.ms, 3), fmt_ratio(ratio),
                     "yes" if agree else "NO"])
        out["rows"].append({"k": k, "native_ms": a.ms, "fallback_ms": b.ms, "agree": agree})
    rows.append(["build (add_nodes+add_edges+compact) s", fmt_float(builds["native"], 3),
                 fmt_float(builds["numpy fallback"], 3),
                 fmt_ratio(builds["numpy fallback"] / builds["native"]), ""])
    print_table(
        f"native vs numpy fallback Hypergraph ({edges} hyperedges, {nodes} nodes, "
        f"{len(starts)} starts; ms per query)",
        ["workload", "native", "fallback", "fallback/native", "agree"], rows,
    )
    out["agree"] = ok
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--edges", type=int, default=1_000_000, help="hyperedges (1000000)")
    p.add_argument("--nodes", type=int, default=200_000, help="nodes (200000)")
    p.add_argument("--starts", type=int, default=100, help="random start nodes (100)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per cell (3)")
    p.add_argument("--open-repeats", type=int, default=3,
                   help="fresh-process opens of the file store from its snapshot (3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--window", type=int, default=32, help="heads within this many events (32)")
    p.add_argument("--q2-types", default="root_cause,symptom", help="Q2 $type1,$type2")
    p.add_argument("--max-pass-seconds", type=float, default=20.0,
                   help="a warm-up pass longer than this is not repeated (20)")
    p.add_argument("--api-items", type=int, default=5000,
                   help="events/edges for the add_event/add_causal_edge timing (5000; 0=off)")
    p.add_argument("--no-kuzu", action="store_true", help="skip Kuzu")
    p.add_argument("--fallback", action="store_true",
                   help="also compare k-hop with the numpy fallback on a smaller graph")
    p.add_argument("--fallback-edges", type=int, default=100_000,
                   help="hyperedges of the --fallback graph (100000)")
    p.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    add_backend_options(p)
    args = p.parse_args(argv)
    type1, type2 = (t.strip() for t in args.q2_types.split(","))
    if type1 not in EVENT_TYPES or type2 not in EVENT_TYPES:
        p.error(f"--q2-types must name two of {EVENT_TYPES}")

    agentdb, note = import_agentdb(args.src)
    peers = "networkx" if args.no_kuzu else "networkx/kuzu"
    require_native_for_peers(agentdb, args.allow_fallback, f"the agentdb graph vs {peers}")
    from agentdb.engines import loader as _loader

    hg = _loader.graph_backend()
    nx = optional_import("networkx")
    kuzu = None if args.no_kuzu else optional_import("kuzu")
    env = environment(agentdb, note, {
        "networkx": module_version(nx), "kuzu": module_version(kuzu),
        "graph backend": hg.__name__,
    })
    print_header("agentdb causal hypergraph vs networkx vs kuzu", env)
    t_start = time.perf_counter()

    # ---- data
    t0 = time.perf_counter()
    g = generate(args.nodes, args.edges, args.seed, args.window)
    t_gen = time.perf_counter() - t0
    n_rels = int(g.proj["src"].shape[0])
    fan = int(np.count_nonzero((g.tail_len > 1) | (g.head_len > 1)))
    print(f"graph: {g.n_nodes} nodes ({g.n_event} Event, {g.n_tool} Tool, {g.n_agent} Agent), "
          f"{g.n_edges} hyperedges ({fan / g.n_edges:.1%} fan-in/out), {n_rels} projected "
          f"relationships, window {args.window}, seed {args.seed}; generated in {t_gen:.1f} s")
    rng = np.random.default_rng(args.seed + 1)
    n_starts = min(args.starts, g.n_event)
    start_idx = rng.choice(g.n_event, n_starts, replace=False)
    outcome_pool = np.flatnonzero(g.types == EVENT_TYPES.index("outcome"))
    outcome_idx = rng.choice(outcome_pool, min(n_starts, outcome_pool.size), replace=False)
    root_pool = np.flatnonzero(g.types == EVENT_TYPES.index(type1))
    aid_idx = rng.choice(root_pool, min(n_starts, root_pool.size), replace=False)
    start_nids = (start_idx + 1).tolist()
    start_sids = [g.ext_ids[i] for i in start_idx.tolist()]
    outcome_sids = [g.ext_ids[i] for i in outcome_idx.tolist()]
    q2a_params = [(g.ext_ids[i], type1, type2) for i in aid_idx.tolist()]
    inputs_by_id = {  # string-id inputs (Cypher, the API maps them itself where needed)
        "khop1": start_sids, "khop2": start_sids, "khop3": start_sids, "khop5": start_sids,
        "paths": start_sids,
        "top10": start_sids, "q1": outcome_sids, "q2": [(type1, type2)], "q2a": q2a_params,
    }
    inputs_by_nid = dict(inputs_by_id)
    for key in ("khop1", "khop2", "khop3", "khop5", "paths", "top10"):
        inputs_by_nid[key] = start_nids
    print(f"starts: {n_starts} random Event nodes, {len(outcome_sids)} outcome nodes (Q1), "
          f"{len(q2a_params)} {type1} nodes (Q2 anchored); Q2 types: {type1}, {type2}; "
          f"repeats: {args.repeats}\n", flush=True)

    builds: list[list[Any]] = []
    build_json: dict[str, Any] = {}
    runners: dict[str, dict[str, Callable]] = {}
    skipped: dict[str, str] = {}
    keep: list[Any] = []  # keep every system alive until the end

    # ---- agentdb API
    log("building the native hypergraph")
    r0 = rss_bytes()
    t0 = time.perf_counter()
    h = build_native(hg, g)
    t_native = time.perf_counter() - t0
    mem_native = int(h.memory_usage())
    rss_native = rss_bytes() - r0
    builds.append(["agentdb API: add_nodes + add_edges + compact", fmt_float(t_native, 2),
                   mb(mem_native), mb(rss_native)])
    build_json["agentdb_api"] = {"build_s": t_native, "memory_usage_bytes": mem_native,
                                 "rss_bytes": rss_native}
    log("timing khop_batch (before networkx and Kuzu load)")
    batch_timed = time_khop_batch(h, inputs_by_nid, args.repeats)
    id_to_nid = {s: i + 1 for i, s in enumerate(g.ext_ids)}
    runners["agentdb API"] = native_runners(h, g, id_to_nid)
    keep.append(h)

    # ---- agentdb Cypher (SQLite-backed CausalMemoryGraph)
    log("writing the SQLite rows and loading db.graph")
    store_dir = Path(tempfile.mkdtemp(prefix="agentdb-graph-store-"))
    store_path = str(store_dir / "graph.db")
    db, cg, bt = build_sqlite_graph(agentdb, g, store_path)
    csr_mem = int(cg.stats()["csr_memory_bytes"])
    builds.append(["agentdb: SQLite rows (put_graph_node/edge, 1 txn)",
                   fmt_float(bt["sqlite_write_s"], 2), None, mb(bt["rss_sqlite_bytes"])])
    builds.append(["agentdb: db.graph load (rows -> CSR + edge columns)",
                   fmt_float(bt["graph_load_s"], 2), mb(csr_mem), mb(bt["rss_graph_bytes"])])
    builds.append(["agentdb: create_index Event.id + Event.type",
                   fmt_float(bt["create_index_s"], 2), None, None])
    builds.append(["agentdb: snapshot save (db.checkpoint)", fmt_float(bt["snapshot_save_s"], 2),
                   mb(dir_size(store_dir) - os.path.getsize(store_path)), None])
    log("opening the file store in fresh processes")
    probe = str(g.ext_ids[int(np.flatnonzero(np.asarray(g.types) >= 0)[0])])  # an event
    opens = time_opens(store_path, probe, args.open_repeats)
    for how, o in opens.items():
        builds.append([f"agentdb: open store + db.graph ({o['loaded_from']}; process RSS in "
                       "'memory')", fmt_float(o["open_s"], 2), mb(o["rss_bytes"]),
                       mb(o["rss_growth_bytes"])])
        builds.append([f"agentdb: first anchored query after the {how} open",
                       fmt_float(o["first_query_s"], 3), None, None])
    build_json["agentdb_cypher"] = {**bt, "csr_memory_bytes": csr_mem, "open": opens}
    runners["agentdb Cypher"] = cypher_runners(cg)
    keep.extend([db, cg])
    if args.api_items > 0:
        log("timing add_event / add_causal_edge")
        api = time_high_level_api(agentdb, g, args.api_items)
        build_json["agentdb_high_level_api"] = api
        builds.append([f"agentdb: add_event x{api['events']} (1 transaction)",
                       fmt_float(api["events_s"], 2), None, None])
        builds.append([f"agentdb: add_causal_edge x{api['edges']} (1 transaction)",
                       fmt_float(api["edges_s"], 2), None, None])

    # ---- networkx
    if nx is None:
        skipped["networkx"] = "not installed"
        print("networkx: skipped (not installed)")
    else:
        log("building the networkx MultiDiGraph")
        r0 = rss_bytes()
        t0 = time.perf_counter()
        G, nx_idx = build_networkx(nx, g)
        t_nx = time.perf_counter() - t0
        rss_nx = rss_bytes() - r0
        builds.append(["networkx: MultiDiGraph of the projection + id/type dicts",
                       fmt_float(t_nx, 2), None, mb(rss_nx)])
        build_json["networkx"] = {"build_s": t_nx, "rss_bytes": rss_nx}
        runners["networkx"] = networkx_runners(nx, G, nx_idx)
        runners["nx DFS"] = networkx_dfs_runners(G)
        keep.extend([G, nx_idx])

    # ---- kuzu
    tmp = Path(tempfile.mkdtemp(prefix="agentdb-graph-bench-"))
    if kuzu is None:
        reason = "--no-kuzu" if args.no_kuzu else "not installed (pip install kuzu)"
        skipped["kuzu"] = reason
        print(f"kuzu: skipped ({reason})")
    else:
        log("loading Kuzu (CSV + COPY FROM)")
        try:
            kdb, kconn, kinfo = build_kuzu(kuzu, g, tmp)
            builds.append(["kuzu: write CSV of the projection", fmt_float(kinfo["csv_write_s"], 2),
                           None, None])
            builds.append(["kuzu: schema + COPY FROM (on-disk MB in 'memory')",
                           fmt_float(kinfo["copy_s"], 2), mb(kinfo["disk_bytes"]),
                           mb(kinfo["rss_bytes"])])
            build_json["kuzu"] = kinfo
            runners["kuzu"] = kuzu_runners(kconn)
            keep.extend([kdb, kconn])
        except Exception as exc:  # noqa: BLE001 - Kuzu is optional
            skipped["kuzu"] = f"{type(exc).__name__}: {exc}"
            print(f"kuzu: skipped ({skipped['kuzu']})")
            traceback.print_exc()

    gc.collect()
    gc.freeze()

    # ---- queries
    cells: dict[tuple[str, str], Cell] = {}
    for key, label in WORKLOADS:
        for system in SYSTEMS:
            if system not in runners or key not in runners[system]:
                continue
            inputs = inputs_by_id[key] if system in ("agentdb Cypher", "kuzu") else (
                inputs_by_nid[key])
            log(f"{label}: {system}")
            cell = measure(runners[system][key], inputs, args.repeats, args.max_pass_seconds)
            if cell.error:
                print(f"  ! {label} / {system}: {cell.error}", flush=True)
            cells[(key, system)] = cell

    # ---- correctness
    mismatches: list[str] = []
    hard: list[str] = []
    for key, label in WORKLOADS:
        ref_sys = "networkx" if (key, "networkx") in cells else "agentdb API"
        ref = cells.get((key, ref_sys))
        if ref is None or ref.results is None:
            continue
        for system in SYSTEMS:
            cell = cells.get((key, system))
            if system == ref_sys or cell is None or cell.results is None:
                continue
            for i, (a, b) in enumerate(zip(ref.results, cell.results)):
                if not same_result(key, a, b):
                    msg = f"{label}: input #{i}: {ref_sys} {a!r} != {system} {b!r}"
                    mismatches.append(msg)
                    if {system, ref_sys} == {"agentdb API", "networkx"} and key in (
                            "khop1", "khop2", "khop3", "khop5", "paths"):
                        hard.append(msg)

    # ---- table
    rows = []
    res_json: dict[str, Any] = {}
    for key, label in WORKLOADS:
        ms = {s: (cells[(key, s)].ms if (key, s) in cells else None) for s in SYSTEMS}

        def ratio(other: str, mine: str, ms: dict[str, float | None] = ms) -> float | None:
            o, m = ms[other], ms[mine]
            return o / m if o and m else None

        n_in = len(inputs_by_id[key])
        size = ""
        nat = cells.get((key, "agentdb API"))
        if nat is not None and nat.results:
            vals = [r[0] if isinstance(r, tuple) else (len(r) if isinstance(r, list) else r)
                    for r in nat.results]
            size = f"{statistics.fmean(vals):.4g}"
        rows.append([
            f"{label} [{n_in}]", size,
            *(fmt_float(ms[s], 3) if ms[s] is not None else (
                "err" if (key, s) in cells else None) for s in SYSTEMS),
            fmt_ratio(ratio("networkx", "agentdb API")),
            fmt_ratio(ratio("nx DFS", "agentdb API")),
            fmt_ratio(ratio("kuzu", "agentdb API")),
            fmt_ratio(ratio("networkx", "agentdb Cypher")),
            fmt_ratio(ratio("kuzu", "agentdb Cypher")),
        ])
        res_json[key] = {
            "label": label, "inputs": n_in, "mean_result_size": size,
            "ms": ms,
            "repeats": {s: cells[(key, s)].repeats for s in SYSTEMS if (key, s) in cells},
            "errors": {s: cells[(key, s)].error for s in SYSTEMS
                       if (key, s) in cells and cells[(key, s)].error},
        }
    print()
    print_table(
        f"{g.n_edges} hyperedges / {g.n_nodes} nodes: ms per query (median of {args.repeats} "
        "passes over the inputs)",
        ["workload [inputs]", "result", "API", "Cypher", "networkx", "nx DFS", "kuzu",
         "nx/API", "DFS/API", "kuzu/API", "nx/Cy", "kuzu/Cy"],
        rows,
        note=(
            "result = mean over the inputs of agentdb API's answer (nodes, paths, rows; "
            "top-10/Q1: rows returned).\n"
            "x/API, x/Cy = system x's time / agentdb API's (Cypher's) time; above 1 = agentdb "
            "faster. DFS = nx DFS.\n"
            "networkx: library calls for k-hop and paths/top-10 (all_simple_edge_paths); Q1/Q2 "
            "are hand-written loops over G.pred/G.succ.\n"
            "nx DFS: hand-written recursive DFS over G.succ that only collects products "
            "(no per-path list).\n"
            "kuzu runs multi-threaded (default num_threads); agentdb and networkx on one "
            "thread.\n"
            "'err' = the cell failed (message above); '-' = system skipped."
        ),
    )
    print_table("builds / loads", ["step", "seconds", "memory MB", "RSS growth MB"], builds,
                note="memory = agentdb memory_usage() of the CSR (Kuzu: on-disk size); "
                     "RSS growth is approximate.")
    if mismatches:
        print(f"correctness: {len(mismatches)} mismatching results:")
        for m in mismatches[:40]:
            print(f"  {m}")
        if len(mismatches) > 40:
            print(f"  ... {len(mismatches) - 40} more")
    else:
        print("correctness: all systems agree on every compared result "
              "(k-hop counts, path counts and product sums, top-10 and Q1 scores, Q2 rows)")
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")
    print(flush=True)

    batch = report_khop_batch(batch_timed, cells, mismatches, hard)

    fallback = run_fallback(agentdb, args, n_starts) if args.fallback else None
    total = time.perf_counter() - t_start
    print(f"total time: {total:.0f} s", flush=True)

    if args.json:
        write_json(args.json, {
            "env": env,
            "params": vars(args),
            "graph": {"nodes": g.n_nodes, "events": g.n_event, "tools": g.n_tool,
                      "agents": g.n_agent, "hyperedges": g.n_edges, "relationships": n_rels,
                      "fan_fraction": fan / g.n_edges, "generate_s": t_gen},
            "inputs": inputs_by_id,
            "builds": build_json,
            "results": res_json,
            "mismatches": mismatches,
            "skipped": skipped,
            "fallback": fallback,
            "khop_batch": batch,
            "total_s": total,
        })
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(store_dir, ignore_errors=True)
    if fallback is not None and not fallback["agree"]:
        hard.append("native and numpy fallback k-hop counts differ")
    assert not hard, "agentdb and networkx disagree:\n" + "\n".join(hard[:20])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
