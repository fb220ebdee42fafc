"""Text embedders, one module per provider: the protocol (:mod:`.base`), the deterministic
hashing embedder (:mod:`.hashing`, the zero-dependency default; lexical: it matches words, not
meaning), all-MiniLM-L6-v2 on onnxruntime (:mod:`.onnx_minilm`, the ``embed`` extra; meaning,
offline, no PyTorch) and sentence-transformers (:mod:`.sentence_transformers`, the
``sentence-transformers`` extra).

>>> from agentdb.embedders import HashingEmbedder
>>> e = HashingEmbedder(dim=64)
>>> e.embed(["fix the flaky test", "fix a flaky test"]).shape
(2, 64)
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import InvalidArgumentError, InvalidTypeError
from .base import Embedder
from .hashing import HashingEmbedder
from .identity import (
    RecordedEmbedder,
    check_embedder,
    embedder_identity,
    is_named_embedder,
    recorded_embedder,
)
from .onnx_minilm import OnnxEmbedder
from .sentence_transformers import SentenceTransformerEmbedder

__all__ = ["Embedder", "HashingEmbedder", "OnnxEmbedder", "RecordedEmbedder",
           "SentenceTransformerEmbedder",
           "check_embedder", "embedder_identity", "get_embedder", "is_named_embedder",
           "recorded_embedder"]

_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


def _shared_onnx(spec: str) -> OnnxEmbedder:
    """One :class:`OnnxEmbedder` per spec and process (loading a model takes ~0.3 s and
    ~100 MB; the embedder is thread-safe)."""
    with _SHARED_LOCK:
        e = _SHARED.get(spec)
        if e is None:
            if spec in ("minilm", "minilm-int8"):
                e = OnnxEmbedder(quantize=spec == "minilm-int8")
            else:
                folder, int8 = spec[5:], False
                if folder.endswith(":int8"):
                    folder, int8 = folder[:-5], True
                e = OnnxEmbedder(folder, quantize=int8)
            _SHARED[spec] = e
        return e


def get_embedder(spec: Embedder | str | None, dim: int) -> Embedder:
    """Resolve an embedder: an object, ``"hashing"`` (default, lexical), ``"minilm"`` /
    ``"minilm-int8"`` (all-MiniLM-L6-v2 on onnxruntime), ``"onnx:<model dir>"`` or
    ``"st:<model>"`` (sentence-transformers).

    >>> get_embedder(None, 32).dim
    32
    """
    if spec is None or spec == "hashing":
        return HashingEmbedder(dim)
    if isinstance(spec, str):
        if spec.startswith("st:"):
            return SentenceTransformerEmbedder(spec[3:])
        if spec in ("minilm", "minilm-int8") or (spec.startswith("onnx:") and len(spec) > 5):
            return _shared_onnx(spec)
        raise InvalidArgumentError(
            f"unknown embedder '{spec}': use 'hashing', 'minilm', 'minilm-int8', "
            "'onnx:<model dir>', 'st:<model>' or an object")
    if not isinstance(spec, Embedder):
        raise InvalidTypeError("embedder must have an int 'dim' and an 'embed(list[str])' method")
    return spec
