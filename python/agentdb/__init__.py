"""AgentDB: a memory database for AI agents, with a native SIMD/HNSW core.

>>> import numpy as np, agentdb
>>> index = agentdb.HNSWIndex(dim=4, metric="cosine")
>>> index.add([1, 2], np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32))
>>> ids, dists = index.search(np.array([1, 0.1, 0, 0], dtype=np.float32), k=1)
>>> int(ids[0])
1
"""

from __future__ import annotations

from ._version import __version__
from .embedders import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from .engines.loader import backend, backends, native_info
from .memory import AgentDB, open
from .storage import StoreError, StoreLockedError
from .storage.records import Episode, Pattern, SearchResult, Skill


def __getattr__(name: str) -> object:
    # The HTTP client is imported on first use, so ``import agentdb`` stays as light as before.
    if name in ("Client", "ClientError"):
        from .server import client

        return getattr(client, name)
    if name == "AsyncClient":  # httpx (the 'client' extra) is imported only here
        from .server.async_client import AsyncClient

        return AsyncClient
    if name == "attention":  # ``from agentdb import attention``, as before the engines folder
        from .engines import attention

        return attention
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


HNSWIndex = backend.HNSWIndex
distance = backend.distance
distances = backend.distances
exact_search = backend.exact_search

__all__ = [
    "AgentDB",
    "AsyncClient",
    "Client",
    "ClientError",
    "Embedder",
    "Episode",
    "HashingEmbedder",
    "Pattern",
    "SearchResult",
    "SentenceTransformerEmbedder",
    "Skill",
    "StoreError",
    "StoreLockedError",
    "open",
    "HNSWIndex",
    "__version__",
    "backend",
    "backends",
    "distance",
    "distances",
    "exact_search",
    "native_info",
]
