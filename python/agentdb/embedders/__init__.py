"""Text embedders, one module per provider: the protocol (:mod:`.base`), the deterministic
hashing embedder (:mod:`.hashing`, the zero-dependency default) and sentence-transformers
(:mod:`.sentence_transformers`, the ``embed`` extra).

>>> from agentdb.embedders import HashingEmbedder
>>> e = HashingEmbedder(dim=64)
>>> e.embed(["fix the flaky test", "fix a flaky test"]).shape
(2, 64)
"""

from __future__ import annotations

from ..errors import InvalidArgumentError, InvalidTypeError
from .base import Embedder
from .hashing import HashingEmbedder
from .sentence_transformers import SentenceTransformerEmbedder

__all__ = ["Embedder", "HashingEmbedder", "SentenceTransformerEmbedder", "get_embedder"]


def get_embedder(spec: Embedder | str | None, dim: int) -> Embedder:
    """Resolve an embedder: an object, ``"hashing"`` (default) or ``"st:<model>"``.

    >>> get_embedder(None, 32).dim
    32
    """
    if spec is None or spec == "hashing":
        return HashingEmbedder(dim)
    if isinstance(spec, str):
        if spec.startswith("st:"):
            return SentenceTransformerEmbedder(spec[3:])
        raise InvalidArgumentError(
            f"unknown embedder '{spec}': use 'hashing', 'st:<model>' or an object")
    if not isinstance(spec, Embedder):
        raise InvalidTypeError("embedder must have an int 'dim' and an 'embed(list[str])' method")
    return spec
