"""Embeddings from a local sentence-transformers model (the ``sentence-transformers`` extra;
it brings PyTorch: :mod:`.onnx_minilm` gives the same all-MiniLM-L6-v2 vectors without it)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder:
    """A sentence-transformers model (the ``sentence-transformers`` extra). Loads only local
    models.

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
                "SentenceTransformerEmbedder needs the 'sentence-transformers' extra: "
                "pip install 'agentdb[sentence-transformers]'"
            ) from exc
        kwargs: dict[str, Any] = {"device": device}
        if local_files_only:
            kwargs["local_files_only"] = True
        self._model = SentenceTransformer(model, **kwargs)
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.name = f"st:{model}"

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts with the model, L2-normalised float32."""
        vecs = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.ascontiguousarray(vecs, dtype=np.float32)
