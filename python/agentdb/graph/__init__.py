"""Layer 3, the causal memory graph: :mod:`.causal` (the hypergraph of events and causes over
a store, on the native CSR engine) and :mod:`.cypher` (the Cypher query engine over any
:class:`~agentdb.graph.cypher.GraphView`). Built on storage and the engines; imports nothing
from the memory API, server, cluster or CLI.
"""
