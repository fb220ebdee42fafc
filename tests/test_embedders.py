"""Tests of the text embedders and of plugging embedders into agentdb.open()."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import agentdb
import numpy as np
import pytest
from _child import child_env
from agentdb.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    get_embedder,
)

TESTS = Path(__file__).resolve().parent
CHILD = TESTS / "_memory_child.py"

HAS_ST = importlib.util.find_spec("sentence_transformers") is not None


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- HashingEmbedder --------------------------------------------------------------------------
@pytest.mark.parametrize("hashseed", ["0", "12345"])
def test_hashing_deterministic_across_processes(hashseed):
    text = "Retry the flaky HTTP request with exponential back-off (attempt #3)"
    dim = 64
    out = subprocess.run([sys.executable, str(CHILD), "embed", str(dim), text],
                         capture_output=True, text=True, timeout=60,
                         env=child_env(PYTHONHASHSEED=hashseed))
    assert out.returncode == 0, out.stderr
    theirs = np.array(json.loads(out.stdout), dtype=np.float32)
    ours = HashingEmbedder(dim).embed([text])[0]
    np.testing.assert_array_equal(theirs, ours)
    # and in-process: a fresh instance (no cache) and a cached second call agree
    e = HashingEmbedder(dim)
    np.testing.assert_array_equal(e.embed([text])[0], ours)
    np.testing.assert_array_equal(e.embed([text, "x"])[0], ours)


def test_hashing_output_shape_dtype_and_norm():
    e = HashingEmbedder(48)
    texts = ["a", "hello world", "The quick brown fox jumps over the lazy dog " * 20,
             "ÜNICODE ñandú 日本語 text", "", "!!! ??? ...", "12345 67890"]
    v = e.embed(texts)
    assert v.shape == (len(texts), 48) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(v).all()
    # empty / symbol-only texts get the same fixed, valid unit vector
    np.testing.assert_array_equal(v[4], v[5])
    assert v[4][0] == 1.0 and np.count_nonzero(v[4]) == 1
    assert e.embed([]).shape == (0, 48)
    assert isinstance(e, Embedder) and e.dim == 48 and e.name == "hashing"


def test_hashing_case_insensitive_and_dim_dependent():
    e = HashingEmbedder(64)
    a, b = e.embed(["Parse ISO Dates", "parse iso dates"])
    np.testing.assert_array_equal(a, b)
    assert HashingEmbedder(32).embed(["parse iso dates"]).shape == (1, 32)


def test_hashing_similar_texts_closer_than_unrelated():
    e = HashingEmbedder(256)
    pairs = [
        ("retry the request with backoff", "retry request using backoff",
         "bake a chocolate cake"),
        ("parse ISO dates in log files", "parse dates in the log file",
         "resize images for thumbnails"),
        ("connect to the postgres database", "postgres database connection",
         "write a haiku about autumn"),
    ]
    for anchor, similar, unrelated in pairs:
        va, vs, vu = e.embed([anchor, similar, unrelated])
        assert cos(va, vs) > cos(va, vu) + 0.2, (anchor, cos(va, vs), cos(va, vu))
        assert cos(va, vs) > 0.4
    same = e.embed(["identical text", "identical text"])
    assert cos(same[0], same[1]) == pytest.approx(1.0, abs=1e-6)


def test_hashing_embed_rejects_bad_input():
    e = HashingEmbedder(32)
    with pytest.raises(TypeError, match="list of strings"):
        e.embed("a bare string")
    with pytest.raises(TypeError, match=r"texts\[1\] must be str"):
        e.embed(["ok", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str, got bytes"):
        e.embed([b"bytes"])
    with pytest.raises(TypeError, match=r"texts\[2\].*NoneType"):
        e.embed(["a", "b", None])
    with pytest.raises(ValueError, match="dim must be >= 8"):
        HashingEmbedder(4)


# ---- get_embedder -----------------------------------------------------------------------------
def test_get_embedder_resolution():
    assert isinstance(get_embedder(None, 32), HashingEmbedder)
    assert get_embedder(None, 32).dim == 32
    assert get_embedder("hashing", 16).dim == 16
    obj = HashingEmbedder(24)
    assert get_embedder(obj, 999) is obj  # objects are used as they are
    with pytest.raises(ValueError, match="unknown embedder 'word2vec'"):
        get_embedder("word2vec", 32)

    class NoEmbed:
        dim = 8

    with pytest.raises(TypeError, match="embed"):
        get_embedder(NoEmbed(), 8)


@pytest.mark.skipif(HAS_ST, reason="sentence-transformers is installed")
def test_sentence_transformers_missing_names_extra():
    with pytest.raises(ImportError, match="'sentence-transformers' extra"):
        get_embedder("st:all-MiniLM-L6-v2", 384)
    with pytest.raises(ImportError, match=r"agentdb\[sentence-transformers\]"):
        SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    with pytest.raises(ImportError, match="sentence-transformers"):
        agentdb.open(":memory:", embedder="st:all-MiniLM-L6-v2")


def test_sentence_transformers_missing_leaves_no_store(tmp_path):
    if HAS_ST:
        pytest.skip("sentence-transformers is installed")
    path = tmp_path / "st.db"
    with pytest.raises(ImportError):
        agentdb.open(path, dim=384, embedder="st:all-MiniLM-L6-v2")
    assert not path.exists()


# ---- custom embedders with AgentDB --------------------------------------------------------------
class Letters:
    """A toy embedder: counts of letters a-x (24 dims) plus one."""

    dim = 24
    name = "letters"

    def __init__(self):
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        out = np.ones((len(texts), self.dim), dtype=np.float32) * 0.01
        for r, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "x":
                    out[r, ord(ch) - ord("a")] += 1.0
        return out


def test_custom_embedder_object():
    emb = Letters()
    db = agentdb.open(":memory:", embedder=emb)
    assert db.dim == 24 and db.embedder is emb
    assert db.stats()["embedder"] == "letters"
    a = db.store_pattern("aaaa")
    b = db.store_pattern("bbbb")
    c = db.store_patterns([{"task": "cccc"}, {"task": "abab"}])
    assert emb.calls[:3] == [["aaaa"], ["bbbb"], ["cccc", "abab"]]
    np.testing.assert_allclose(db.get_pattern(a).embedding, emb.embed(["aaaa"])[0])
    assert db.search_patterns("aaa", k=1)[0].id == a
    assert db.search_patterns("bb", k=1)[0].id == b
    assert db.search_patterns("cc", k=1)[0].id == c[0]
    sid = db.store_skill("dddd", "dd")
    assert db.search_skills("dddd: dd", k=1)[0].id == sid
    eid = db.store_episode("eeee", success=False, critique="too many e")
    assert db.critique_summary("eee") == ["too many e"]
    assert db.get_episode(eid).embedding.shape == (24,)
    db.close()


def test_custom_embedder_with_explicit_dim_and_file(tmp_path):
    path = tmp_path / "custom.db"
    db = agentdb.open(path, dim=24, embedder=Letters())
    pid = db.store_pattern("hello")
    db.close()
    db = agentdb.open(path, embedder=Letters())  # dim from the store, matches the embedder
    assert db.search_patterns("hello", k=1)[0].id == pid
    db.close()
    with pytest.raises(ValueError, match="dimension mismatch"):
        agentdb.open(path, embedder=HashingEmbedder(32))
    with pytest.raises(agentdb.errors.EmbedderMismatchError, match="'letters'.*'hashing'"):
        agentdb.open(path, embedder=HashingEmbedder(24))  # the store remembers its embedder
    db = agentdb.open(path)  # opens; vectors work, text needs the store's own embedder
    assert db.dim == 24 and db.embedder.name == "letters"
    assert db.search_patterns(Letters().embed(["hello"])[0], k=1)[0].id == pid
    with pytest.raises(agentdb.errors.EmbedderMismatchError, match="embedder="):
        db.search_patterns("hello", k=1)
    db.close()


def test_wrong_dim_embedder_rejected():
    with pytest.raises(ValueError, match=r"dimension mismatch.*24.*32"):
        agentdb.open(":memory:", dim=32, embedder=Letters())
    with pytest.raises(ValueError, match="dimension mismatch"):
        agentdb.open(":memory:", dim=64, embedder=HashingEmbedder(32))


def test_embedder_returning_bad_vectors_writes_nothing():
    class Broken:
        dim = 16

        def __init__(self, mode):
            self.mode = mode

        def embed(self, texts):
            if self.mode == "nan":
                return np.full((len(texts), 16), np.nan, np.float32)
            if self.mode == "zero":
                return np.zeros((len(texts), 16), np.float32)
            return np.ones((len(texts), 17), np.float32)  # wrong width

    for mode, frag in (("nan", "NaN"), ("zero", "all-zero"), ("wide", "dimension mismatch")):
        db = agentdb.open(":memory:", embedder=Broken(mode))
        with pytest.raises(ValueError, match=frag):
            db.store_pattern("text")
        with pytest.raises(ValueError, match=frag):
            db.store_patterns([{"task": "a"}, {"task": "b"}])
        with pytest.raises(ValueError):
            db.search_patterns("query")
        assert db.count() == 0
        # explicit vectors bypass the embedder
        db.store_pattern("v", embedding=np.ones(16))
        assert db.count() == 1
        db.close()


def test_non_embedder_object_rejected():
    with pytest.raises(TypeError, match="embed"):
        agentdb.open(":memory:", dim=8, embedder=object())
    with pytest.raises(ValueError, match="unknown embedder"):
        agentdb.open(":memory:", dim=8, embedder="bogus")
