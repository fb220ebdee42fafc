"""The embedder protocol: what AgentDB needs from an embedding model.

Any object with an integer ``dim`` and ``embed(list[str]) -> np.ndarray`` of shape
``(len(texts), dim)`` works as an embedder. Vectors can always be passed directly instead.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder"]


@runtime_checkable
class Embedder(Protocol):
    """What AgentDB needs from an embedding model.

    >>> from agentdb.embedders import HashingEmbedder
    >>> isinstance(HashingEmbedder(8), Embedder)
    True
    """

    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return a float32 array of shape ``(len(texts), dim)``."""
        ...
