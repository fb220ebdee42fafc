"""The default embedder: deterministic feature hashing of words and word bigrams.

No dependencies and the same vector on every machine -- but *lexical*: texts that share no
words are unrelated to it, whatever they mean.

>>> from agentdb.embedders.hashing import HashingEmbedder
>>> HashingEmbedder(dim=64).embed(["fix the flaky test"]).shape
(1, 64)
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["HashingEmbedder"]

_TOKEN = re.compile(r"[a-z0-9]+")


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
