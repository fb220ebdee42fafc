"""Cypher query engine over the binary projection of a causal memory hypergraph.

A hyperedge ``e`` (type, tail set of causes, head set of effects, confidence, timestamp,
properties) matches ``(a)-[r:TYPE]->(b)`` for every ``a`` in its tail and ``b`` in its head.
The engine runs on anything implementing :class:`GraphView`; :class:`MemoryGraphView` is a
pure-Python implementation.

>>> from agentdb.graph.cypher import MemoryGraphView, execute
>>> g = MemoryGraphView()
>>> rain = g.add_node(["Event"], {"id": "rain", "type": "root_cause"})
>>> wet = g.add_node(["Event"], {"id": "wet"})
>>> fall = g.add_node(["Event"], {"id": "fall"})
>>> _ = g.add_edge("CAUSED_BY", [rain], [wet], confidence=0.9)
>>> _ = g.add_edge("CAUSED_BY", [wet], [fall], confidence=0.5)
>>> rows = execute(g, '''
...     MATCH path = (root:Event)-[:CAUSED_BY*1..5]->(outcome:Event {id: $outcomeId})
...     WHERE root.type = 'root_cause'
...     RETURN [n IN nodes(path) | n.id] AS chain, length(path) AS depth,
...            reduce(conf = 1.0, r IN relationships(path) | conf * r.confidence) AS confidence
... ''', {"outcomeId": "fall"})
>>> rows
[{'chain': ['rain', 'wet', 'fall'], 'depth': 2, 'confidence': 0.45}]

Public API:

* :func:`execute` ``(graph, query, params=None) -> list[dict]`` and :func:`execute_stats`
  (a :class:`Result` with ``rows``, ``columns`` and ``stats``, the write counters);
* :func:`parse` ``(query) -> ast.Query``;
* :class:`CypherError` / :class:`CypherSyntaxError` (with ``line`` and ``column``);
* :class:`GraphView` (protocol), :class:`MemoryGraphView`;
* result values :class:`Node`, :class:`Relationship`, :class:`Path`.
"""

from __future__ import annotations

from .errors import CypherError, CypherSyntaxError
from .executor import Result, execute, execute_stats
from .expressions import Stats
from .graphview import GraphView, MemoryGraphView
from .parser import is_read_only, parse
from .values import Node, Path, Relationship

__all__ = [
    "CypherError",
    "CypherSyntaxError",
    "GraphView",
    "MemoryGraphView",
    "Node",
    "Path",
    "Relationship",
    "Result",
    "Stats",
    "execute",
    "execute_stats",
    "is_read_only",
    "parse",
]
