"""Layer 1, the engines: the native core's loader and, beside it, a numpy twin of each engine.

* :mod:`.loader` picks the native extension (``agentdb._native``) or the numpy fallback once,
  at import; ``AGENTDB_NATIVE=0`` forces the fallback.
* vectors: :mod:`.numpy_vector` is the backend module (the native module-level API) over
  :mod:`.numpy_checks` (input conversion), :mod:`.numpy_kernels` (distances, exact search)
  and :mod:`.numpy_hnsw` (the ``HNSWIndex`` twin and its file format);
* graph: :mod:`.numpy_graph` twins the native CSR ``Hypergraph`` over :mod:`.numpy_graph_args`
  (argument conversion), :mod:`.numpy_graph_state` (dict storage), :mod:`.numpy_graph_walks`
  (traversals) and :mod:`.numpy_graph_file` (file format);
* attention: :mod:`.numpy_attention` twins the native kernels, and :mod:`.attention` is the
  user-facing attention API over whichever runs.

Nothing here imports from the layers above (storage, graph, memory, server, cluster, CLI).
"""
