"""Layer 1, the engines: the native core's loader and, beside it, a numpy twin of each engine.

* :mod:`.loader` picks the native extension (``agentdb._native``) or the numpy fallback once,
  at import; ``AGENTDB_NATIVE=0`` forces the fallback.
* vectors: :mod:`.numpy_vector` (kernels, exact search, HNSW) twins the native ``HNSWIndex``;
* graph: :mod:`.numpy_graph` twins the native CSR ``Hypergraph``;
* attention: :mod:`.numpy_attention` twins the native kernels, and :mod:`.attention` is the
  user-facing attention API over whichever runs.

Nothing here imports from the layers above (storage, graph, memory, server, cluster, CLI).
"""
