"""Text embedders: a tiny protocol, a deterministic hashing embedder, sentence-transformers.

Any object with an integer ``dim`` and ``embed(list[str]) -> np.ndarray`` of shape
``(len(texts), dim)`` works as an embedder. Vectors can always be passed directly instead.

>>> from agentdb.embedders import HashingEmbedder
>>> e = HashingEmbedder(dim=64)
>>> e.embed(["fix the flaky test", "fix a flaky test"]).shape
(2, 64)
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["Embedder", "HashingEmbedder", "SentenceTransformerEmbedder", "get_embedder"]

_TOKEN = re.compile(r"[a-z0-9]+")


@runtime_checkable
class Embedder(Protocol):
    """What AgentDB needs from an embedding model.

    >>> isinstance(HashingEmbedder(8), Embedder)
    True
    """

    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return a float32 array of shape ``(len(texts), dim)``."""
        ...


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(feature.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 else -1.0)


class HashingEmbedder:
    """Deterministic, dependency-free text embedder (the offline default).

    Words, word bigrams and character trigrams are hashed into ``dim`` signed buckets
    (feature hashing), weighted, and L2-normalised. Texts that share words and word pieces land
    close in cosine space; it is no semantic model, but it is stable across machines and
    processes, so stored memories stay searchable by text without a model download.

    >>> e = HashingEmbedder(dim=128)
    >>> v = e.embed(["retry the request with backoff", "retry request using backoff"])
    >>> float(v[0] @ v[1]) > 0.5
    True
    """

    name = "hashing"

    def __init__(self, dim: int = 384) -> None:
        if int(dim) < 8:
            raise InvalidArgumentError(f"HashingEmbedder dim must be >= 8, got {dim}")
        self.dim = int(dim)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        words = _TOKEN.findall(text.lower())
        weights: dict[int, float] = {}

        def add(feature: str, w: float) -> None:
            b, sign = _bucket(feature, self.dim)
            weights[b] = weights.get(b, 0.0) + sign * w

        for word in words:
            add("w:" + word, 1.0)
            padded = f"#{word}#"
            for i in range(len(padded) - 2):
                add("c:" + padded[i : i + 3], 0.35)
        for a, b in zip(words, words[1:]):
            add(f"b:{a} {b}", 0.5)
        idx = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        val = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
        if len(self._cache) < 50_000:
            self._cache[text] = (idx, val)
        return idx, val

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts into unit vectors (an empty text becomes a fixed unit vector).

        >>> HashingEmbedder(16).embed(["a b"]).dtype
        dtype('float32')
        """
        if isinstance(texts, str):
            raise InvalidTypeError("embed() takes a list of strings, not a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidTypeError(f"texts[{row}] must be str, got {type(text).__name__}")
            idx, val = self._features(text)
            if idx.size:
                np.add.at(out[row], idx, val)
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:
                out[row, 0] = 1.0  # empty or symbol-only text: a fixed, valid direction
            else:
                out[row] /= norm
        return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model (the ``embed`` extra). Loads only local models.

    ``model`` is a name or path; with ``local_files_only=True`` (the default) nothing is
    downloaded at run time, so the model must already be in the local cache or at a path.

    >>> SentenceTransformerEmbedder  # doctest: +ELLIPSIS
    <class '...SentenceTransformerEmbedder'>
    """

    name = "sentence-transformers"

    def __init__(
        self, model: str = "all-MiniLM-L6-v2", *, device: str = "cpu", local_files_only: bool = True
    ) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError(
                "SentenceTransformerEmbedder needs the 'embed' extra: pip install 'agentdb[embed]'"
            ) from exc
        kwargs: dict[str, Any] = {"device": device}
        if local_files_only:
            kwargs["local_files_only"] = True
        self._model = SentenceTransformer(model, **kwargs)
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts with the model, L2-normalised float32."""
        vecs = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.ascontiguousarray(vecs, dtype=np.float32)


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
