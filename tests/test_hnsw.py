"""HNSWIndex contract (spec_native.md), run against every available backend.

The numpy backend is exact (brute force); the native one is a real HNSW graph, so quality is
checked as recall against a float64 brute-force reference.  No timing assertions.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import zlib

import agentdb
import numpy as np
import pytest

METRICS = ("cosine", "ip", "l2")
METRIC_CODE = {"cosine": 0, "ip": 1, "l2": 2}


# ------------------------------------------------------------------------------------ helpers


def backend_name(mod) -> str:
    return "native" if mod.native_info()["native"] else "numpy"


def ref_distances(Q, X, metric):
    """float64 reference distances (m, n) on float32 inputs."""
    Q = np.atleast_2d(np.asarray(Q, dtype=np.float32)).astype(np.float64)
    X = np.atleast_2d(np.asarray(X, dtype=np.float32)).astype(np.float64)
    dot = Q @ X.T
    if metric == "ip":
        return 1.0 - dot
    if metric == "l2":
        return np.maximum((Q * Q).sum(1)[:, None] + (X * X).sum(1)[None, :] - 2 * dot, 0.0)
    nq = np.linalg.norm(Q, axis=1)[:, None]
    nx = np.linalg.norm(X, axis=1)[None, :]
    return 1.0 - dot / (nq * nx)


def exact_topk(Q, X, ids, k, metric):
    """Exact top-k ids (m, k) of rows X labelled by ids, plus the float64 distance matrix."""
    D = ref_distances(Q, X, metric)
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.asarray(ids)[order], D


def recall(found, truth):
    k = truth.shape[1]
    return float(
        np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)])
    )


def clustered(rng, n, dim=64, n_clusters=50, spread=2.0, normalise=False):
    """Gaussian-mixture data; the cluster centres are fixed by a constant seed so that data
    and queries drawn with different generators come from the same distribution."""
    centres = np.random.default_rng(12345).standard_normal((n_clusters, dim))
    labels = rng.integers(0, n_clusters, n)
    x = centres[labels] + spread * rng.standard_normal((n, dim))
    if normalise:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def rand(rng, n, dim, metric=None):
    """Gaussian vectors; unit-normalised for "ip" so that an item is its own nearest
    neighbour (with ip, 1 - dot(x, x) is only 0 for unit vectors)."""
    x = rng.standard_normal((n, dim))
    if metric == "ip":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def snapshot(idx, q, k=5):
    ids = idx.ids().copy()
    vecs = np.stack([idx.get_vector(int(i)) for i in ids]) if len(ids) else None
    r_ids, r_d = idx.search(q, k=k)
    return len(idx), ids, vecs, r_ids.copy(), r_d.copy()


def assert_same_snapshot(a, b):
    assert a[0] == b[0], f"len changed {a[0]} -> {b[0]}"
    np.testing.assert_array_equal(a[1], b[1])
    if a[2] is not None:
        np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    np.testing.assert_array_equal(a[4], b[4])


# a shared, read-only 5000 x 64 index per (backend, metric); built lazily once per module
N_BIG = 5000
DIM_BIG = 64
_BIG: dict = {}


def big_index(backend, metric):
    key = (backend_name(backend), metric)
    if key not in _BIG:
        rng = np.random.default_rng(100)
        X = clustered(rng, N_BIG, DIM_BIG, normalise=(metric == "ip"))
        ids = 1000 + 3 * np.arange(N_BIG, dtype=np.int64)  # ids deliberately != slot numbers
        idx = backend.HNSWIndex(DIM_BIG, metric=metric)  # default M / ef params
        idx.add(ids, X)
        Q = clustered(np.random.default_rng(101), 100, DIM_BIG, normalise=(metric == "ip"))
        _BIG[key] = (idx, X, ids, Q)
    return _BIG[key]


# ------------------------------------------------------------------------------- construction


def test_defaults_and_properties(backend):
    idx = backend.HNSWIndex(8)
    assert idx.dim == 8
    assert idx.metric == "cosine"
    assert idx.M == 16
    assert idx.ef_construction == 200
    assert idx.ef_search == 64
    assert idx.capacity >= 1024
    assert isinstance(idx.threads, int)
    assert len(idx) == 0
    assert idx.backend == backend_name(backend)
    ids = idx.ids()
    assert ids.dtype == np.int64 and ids.shape == (0,)
    r = repr(idx)
    for part in (
        "HNSWIndex(",
        "dim=8",
        "metric='cosine'",
        "M=16",
        "len=0",
        f"backend='{idx.backend}'",
    ):
        assert part in r, r


def test_constructor_arguments_stored(backend):
    idx = backend.HNSWIndex(
        5, metric="l2", M=4, ef_construction=17, ef_search=9, capacity=3, threads=1, seed=3
    )
    assert (idx.dim, idx.metric, idx.M, idx.ef_construction, idx.ef_search) == (5, "l2", 4, 17, 9)
    assert idx.capacity >= 3
    assert idx.threads == 1
    assert backend.HNSWIndex(3, metric="ip").metric == "ip"
    assert backend.HNSWIndex(3, M=2).M == 2
    assert backend.HNSWIndex(3, M=2048).M == 2048


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dim=0),
        dict(dim=-3),
        dict(dim=4, M=1),
        dict(dim=4, M=0),
        dict(dim=4, M=2049),
        dict(dim=4, ef_construction=0),
        dict(dim=4, ef_search=0),
        dict(dim=4, ef_search=-1),
        dict(dim=4, capacity=0),
        dict(dim=4, threads=-1),
        dict(dim=4, metric="xyz"),
        dict(dim=4, metric="euclid"),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_constructor_validation(backend, kwargs):
    with pytest.raises(ValueError) as ei:
        backend.HNSWIndex(**kwargs)
    if kwargs.get("metric") == "xyz":
        assert "unknown metric 'xyz'" in str(ei.value)


def test_read_only_and_writable_properties(backend):
    idx = backend.HNSWIndex(4, ef_search=10)
    for name, value in (
        ("dim", 5),
        ("metric", "l2"),
        ("M", 8),
        ("ef_construction", 3),
        ("capacity", 5000),
    ):
        with pytest.raises(AttributeError):
            setattr(idx, name, value)
    assert idx.dim == 4 and idx.metric == "cosine" and idx.M == 16
    idx.ef_search = 123
    assert idx.ef_search == 123
    with pytest.raises(ValueError):
        idx.ef_search = 0
    assert idx.ef_search == 123
    idx.threads = 1
    assert idx.threads == 1


# ------------------------------------------------------------------------ add / get / contains


@pytest.mark.parametrize("metric", METRICS)
def test_add_single_and_batch(backend, metric):
    rng = np.random.default_rng(1)
    idx = backend.HNSWIndex(12, metric=metric)
    v = rand(rng, 1, 12, metric)[0]
    idx.add(7, v)
    assert len(idx) == 1 and 7 in idx and idx.contains(7)
    np.testing.assert_allclose(idx.get_vector(7), v, rtol=1e-5, atol=1e-6)
    X = rand(rng, 30, 12, metric)
    idx.add([10 + i for i in range(10)], X[:10])  # list of python ints
    idx.add(np.arange(20, 40, dtype=np.int32), X[10:30])  # int32 array
    idx.add(-5, X[0].tolist())  # list vector, negative id
    assert len(idx) == 32
    expect = np.array(sorted([7, -5] + list(range(10, 20)) + list(range(20, 40))), dtype=np.int64)
    got = idx.ids()
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expect)
    for i in expect:
        assert idx.contains(int(i)) and int(i) in idx
    for i in (0, 8, 40, 10**12, -1, -6):
        assert not idx.contains(i) and i not in idx
    np.testing.assert_allclose(idx.get_vector(33), X[23], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(idx.get_vector(-5), X[0], rtol=1e-5, atol=1e-6)
    # the item is findable as its own nearest neighbour
    r_ids, r_d = idx.search(X[23], k=1)
    assert r_ids[0] == 33 and abs(float(r_d[0])) < 1e-4


def test_extreme_magnitudes_cosine(backend):
    """Cosine vectors whose float32 sum of squares would under- or overflow (values of 1e-30,
    3e37) are normalised in double: indexed, found at their exact distances, returned as given;
    queries of such magnitudes rank like any other."""
    ix = backend.HNSWIndex(dim=8, metric="cosine")
    base = np.eye(8, dtype=np.float32)[:3] + 0.1
    ix.add([1, 2, 3], base)
    tiny, huge = base[0] * np.float32(1e-30), base[1] * np.float32(3e37)
    ix.add([4, 5], np.stack([tiny, huge]))
    assert len(ix) == 5
    np.testing.assert_allclose(ix.get_vector(4), tiny, rtol=1e-6)
    np.testing.assert_allclose(ix.get_vector(5), huge, rtol=1e-6)
    for q, first in ((base[0] * np.float32(1e-25), {1, 4}), (base[1] * np.float32(1e36), {2, 5}),
                     (base[2], {3})):
        ids, dists = ix.search(q, k=5)
        assert set(ids[: len(first)].tolist()) == first
        want = ref_distances(q, base[[0, 1, 2, 0, 1]], "cosine")[0]  # rows of ids 1..5
        got = dict(zip(ids.tolist(), dists.tolist()))
        for rid, d in zip([1, 2, 3, 4, 5], want):
            assert got[rid] == pytest.approx(d, abs=1e-5)


def test_numpy_integer_scalar_ids(backend):
    """Ids: anything convertible to int64 - numpy integer scalars included."""
    rng = np.random.default_rng(31)
    X = rand(rng, 4, 6)
    idx = backend.HNSWIndex(6, metric="l2")
    idx.add(np.int64(-5), X[0])
    idx.add(np.int32(6), X[1])
    idx.add(np.uint16(7), X[2])
    np.testing.assert_array_equal(idx.ids(), [-5, 6, 7])
    assert idx.contains(np.int64(6)) and np.int64(-5) in idx
    np.testing.assert_array_equal(idx.get_vector(np.int64(7)), X[2])
    idx.remove(np.int64(6))
    assert 6 not in idx and len(idx) == 2


def test_large_and_negative_ids(backend):
    rng = np.random.default_rng(2)
    idx = backend.HNSWIndex(6, metric="l2")
    ids = np.array([2**62, -(2**62), -2, 0, 2**40 + 1], dtype=np.int64)
    X = rand(rng, 5, 6)
    idx.add(ids, X)
    np.testing.assert_array_equal(idx.ids(), np.sort(ids))
    for i, x in zip(ids, X):
        r, _ = idx.search(x, k=1)
        assert r[0] == i
        np.testing.assert_array_equal(idx.get_vector(int(i)), x)


@pytest.mark.parametrize("metric", METRICS)
def test_get_vector_returns_original(backend, metric):
    rng = np.random.default_rng(3)
    X = rand(rng, 20, 16) * np.linspace(0.1, 50, 20, dtype=np.float32)[:, None]
    idx = backend.HNSWIndex(16, metric=metric)
    idx.add(np.arange(20), X)
    for i in range(20):
        g = idx.get_vector(i)
        assert isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == (16,)
        if metric == "cosine":  # stored normalised + norm: original norm must come back
            np.testing.assert_allclose(g, X[i], rtol=1e-5, atol=1e-6)
            assert np.linalg.norm(g) == pytest.approx(np.linalg.norm(X[i]), rel=1e-5)
        else:
            np.testing.assert_array_equal(g, X[i])
    with pytest.raises(KeyError):
        idx.get_vector(20)


@pytest.mark.parametrize("metric", METRICS)
def test_upsert_replaces_vector(backend, metric):
    rng = np.random.default_rng(4)
    X = rand(rng, 100, 16, metric)
    idx = backend.HNSWIndex(16, metric=metric, ef_search=100)
    idx.add(np.arange(100), X)
    new = rand(rng, 1, 16, metric)[0] * (1 if metric == "ip" else 3)
    idx.add(5, new)
    assert len(idx) == 100
    np.testing.assert_array_equal(idx.ids(), np.arange(100))
    np.testing.assert_allclose(idx.get_vector(5), new, rtol=1e-5, atol=1e-6)
    r, d = idx.search(new, k=1)
    assert r[0] == 5 and abs(float(d[0])) < 1e-4
    # the old vector is gone: searching for it no longer finds id 5 at distance ~0
    r, d = idx.search(X[5], k=3)
    assert not any(rid == 5 and abs(float(dd)) < 1e-3 for rid, dd in zip(r, d))
    # batch mixing an existing and a new id
    two = rand(rng, 2, 16, metric)
    idx.add([7, 500], two)
    assert len(idx) == 101
    np.testing.assert_allclose(idx.get_vector(7), two[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(idx.get_vector(500), two[1], rtol=1e-5, atol=1e-6)
    for i, v in ((7, two[0]), (500, two[1])):
        r, _ = idx.search(v, k=1)
        assert r[0] == i


# ------------------------------------------------------------------------------------- remove


def test_remove(backend):
    rng = np.random.default_rng(5)
    X = rand(rng, 50, 8)
    idx = backend.HNSWIndex(8, metric="l2")
    idx.add(np.arange(100, 150), X)
    idx.remove(117)
    idx.remove([101, 102])
    idx.remove(np.array([140, 141], dtype=np.int64))
    gone = {117, 101, 102, 140, 141}
    assert len(idx) == 45
    for i in gone:
        assert i not in idx and not idx.contains(i)
        with pytest.raises(KeyError):
            idx.get_vector(i)
    np.testing.assert_array_equal(idx.ids(), [i for i in range(100, 150) if i not in gone])
    for i in gone:
        r, _ = idx.search(X[i - 100], k=45)
        assert not (set(r.tolist()) & gone), "removed id returned by search"
        assert set(r.tolist()) == set(idx.ids().tolist())
    # removing again / unknown -> KeyError naming the id
    with pytest.raises(KeyError, match="unknown id 117"):
        idx.remove(117)
    with pytest.raises(KeyError, match="unknown id 17"):
        idx.remove(17)
    # a removed id can be added again
    idx.add(117, X[17])
    assert 117 in idx and len(idx) == 46
    r, _ = idx.search(X[17], k=1)
    assert r[0] == 117


def test_remove_batch_is_checked_first(backend):
    rng = np.random.default_rng(6)
    idx = backend.HNSWIndex(8)
    idx.add(np.arange(20), rand(rng, 20, 8))
    with pytest.raises(KeyError, match="unknown id 999"):
        idx.remove([1, 2, 999, 3])
    assert len(idx) == 20
    for i in (1, 2, 3):
        assert i in idx
    np.testing.assert_array_equal(idx.ids(), np.arange(20))


def test_remove_everything_then_search_is_empty(backend):
    rng = np.random.default_rng(7)
    idx = backend.HNSWIndex(8)
    X = rand(rng, 10, 8)
    idx.add(np.arange(10), X)
    idx.remove(np.arange(10))
    assert len(idx) == 0 and idx.ids().shape == (0,)
    with pytest.raises(ValueError, match="index is empty"):
        idx.search(X[0], k=3)
    idx.add(3, X[3])
    r, d = idx.search(X[0], k=3)
    np.testing.assert_array_equal(r, [3, -1, -1])
    assert np.all(np.isposinf(d[1:]))


def test_slot_reuse_does_not_grow_capacity(backend, tmp_path):
    rng = np.random.default_rng(8)
    idx = backend.HNSWIndex(16, metric="l2", capacity=256)
    X = rand(rng, 256, 16)
    idx.add(np.arange(256), X)
    cap = idx.capacity
    assert cap >= 256
    removed = rng.choice(256, 100, replace=False)
    idx.remove(removed)
    Y = rand(rng, 100, 16)
    new_ids = np.arange(1000, 1100)
    idx.add(new_ids[:50], Y[:50])
    for i in range(50, 100):  # singles too
        idx.add(int(new_ids[i]), Y[i])
    assert len(idx) == 256
    # the file records slots including tombstones: after reuse there are (almost) no new slots
    # (a removed graph entry point may stay behind as a routing tombstone: at most one slot)
    path = str(tmp_path / "reuse.agdb")
    idx.save(path)
    hdr = parse_index_file(path)["header"]
    assert hdr["n_live"] == 256
    assert 256 <= hdr["n_slots"] <= 257, f"{hdr['n_slots']} slots: freed slots were not reused"
    # capacity grows only for that one extra slot, when the removed set held the entry point
    assert idx.capacity == cap or hdr["n_slots"] == 257, "freed slots were not reused"
    for i in (0, 50, 99):
        r, _ = idx.search(Y[i], k=1)
        assert r[0] == new_ids[i]


def test_capacity_grows_by_doubling(backend):
    rng = np.random.default_rng(9)
    idx = backend.HNSWIndex(8, metric="l2", capacity=16)
    X = rand(rng, 100, 8)
    for i in range(100):
        idx.add(i, X[i])
    assert len(idx) == 100
    cap = idx.capacity
    assert cap >= 100
    assert cap % 16 == 0 and ((cap // 16) & (cap // 16 - 1)) == 0, f"capacity {cap} is not 16 * 2^k"
    r, _ = idx.search(X, k=1)
    np.testing.assert_array_equal(r[:, 0], np.arange(100))
    idx.add(np.arange(100, 400), rand(rng, 300, 8))  # one big batch beyond capacity
    assert idx.capacity >= 400 and len(idx) == 400


# ------------------------------------------------------------------------------------- search


@pytest.mark.parametrize("metric", METRICS)
def test_search_shapes_dtypes_order(backend, metric):
    rng = np.random.default_rng(10)
    X = rand(rng, 300, 24)
    ids = np.arange(300) * 7 - 52  # negative ids too (but never -1)
    idx = backend.HNSWIndex(24, metric=metric)
    idx.add(ids, X)
    q = rand(rng, 1, 24)[0]
    r, d = idx.search(q, k=10)
    assert r.shape == (10,) and d.shape == (10,)
    assert r.dtype == np.int64 and d.dtype == np.float32
    assert np.all(np.diff(d) >= 0)
    assert len(set(r.tolist())) == 10 and set(r.tolist()) <= set(ids.tolist())
    # reported distances are the true distances to the reported items
    ref = ref_distances(q, np.stack([idx.get_vector(int(i)) for i in r]), metric)[0]
    np.testing.assert_allclose(d, ref, rtol=1e-4, atol=1e-4)
    Q = rand(rng, 5, 24)
    r2, d2 = idx.search(Q, k=7)
    assert r2.shape == (5, 7) and d2.shape == (5, 7)
    assert r2.dtype == np.int64 and d2.dtype == np.float32
    assert np.all(np.diff(d2, axis=1) >= 0)
    r3, d3 = idx.search(Q[2], k=7)
    np.testing.assert_array_equal(r3, r2[2])
    np.testing.assert_allclose(d3, d2[2], rtol=1e-6, atol=1e-6)
    # list queries and default k
    r4, _ = idx.search(Q[2].tolist())
    assert r4.shape == (10,)
    # near-exact on this small set
    truth, _ = exact_topk(Q, X, ids, 7, metric)
    assert recall(r2, truth) >= 0.9


@pytest.mark.parametrize("metric", METRICS)
def test_search_pads_when_k_exceeds_len(backend, metric):
    rng = np.random.default_rng(11)
    X = rand(rng, 6, 10, metric)
    idx = backend.HNSWIndex(10, metric=metric)
    idx.add(np.arange(6) + 40, X)
    r, d = idx.search(X[0], k=10)
    assert r.shape == (10,)
    assert sorted(r[:6].tolist()) == list(range(40, 46))
    assert r[0] == 40
    np.testing.assert_array_equal(r[6:], -1)
    assert np.all(np.isposinf(d[6:])) and np.all(np.isfinite(d[:6]))
    r2, d2 = idx.search(X[:3], k=8)
    assert r2.shape == (3, 8)
    assert np.all(r2[:, 6:] == -1) and np.all(np.isposinf(d2[:, 6:]))


@pytest.mark.parametrize("metric", METRICS)
def test_recall_default_params(backend, metric):
    idx, X, ids, Q = big_index(backend, metric)
    truth, _ = exact_topk(Q, X, ids, 10, metric)
    found, dists = idx.search(Q, k=10)
    rc = recall(found, truth)
    assert rc >= 0.9, f"recall@10 {rc:.3f} < 0.9 ({backend_name(backend)}, {metric})"
    if backend_name(backend) == "numpy":
        assert rc >= 0.99, "numpy backend is exact"
    assert np.all(np.diff(dists, axis=1) >= 0)


def test_per_call_ef(backend):
    idx, X, ids, Q = big_index(backend, "cosine")
    truth, _ = exact_topk(Q, X, ids, 10, "cosine")
    before = idx.ef_search
    hi, _ = idx.search(Q, k=10, ef=400)
    assert recall(hi, truth) >= 0.97
    lo, lod = idx.search(Q, k=10, ef=1)  # effective ef = max(ef, k): still k results
    assert lo.shape == (100, 10) and np.all(lo >= 0) and np.all(np.isfinite(lod))
    assert recall(lo, truth) >= 0.4
    assert idx.ef_search == before, "per-call ef must not change the property"


def test_ef_search_property_used(backend):
    idx, X, ids, Q = big_index(backend, "l2")
    truth, _ = exact_topk(Q, X, ids, 10, "l2")
    old = idx.ef_search
    try:
        idx.ef_search = 300
        assert recall(idx.search(Q, k=10)[0], truth) >= 0.97
    finally:
        idx.ef_search = old


# ---------------------------------------------------------------------------- filtered search


def _filtered_truth(idx, X, ids, Q, k, ok):
    mask = np.array([ok(int(i)) for i in ids])
    truth, _ = exact_topk(Q, X[mask], ids[mask], k, idx.metric)
    return truth, int(mask.sum())


def test_filtered_allowed_very_selective(backend):
    idx, X, ids, Q = big_index(backend, "cosine")
    rng = np.random.default_rng(12)
    allowed = rng.choice(ids, 12, replace=False)
    aset = set(allowed.tolist())
    Qs = Q[:20]
    truth, _ = _filtered_truth(idx, X, ids, Qs, 10, lambda i: i in aset)
    for form in (allowed, allowed.tolist(), set(aset), tuple(allowed.tolist())):
        r, d = idx.search(Qs, k=10, allowed=form)
        assert r.shape == (20, 10)
        assert np.all(r >= 0), "filtered search came back short although 12 >= k items match"
        assert np.all(np.isfinite(d))
        assert set(r.ravel().tolist()) <= aset
        assert all(len(set(row.tolist())) == 10 for row in r)
        assert recall(r, truth) >= 0.95
    # k larger than the allowed set: all 12, then padding
    r, d = idx.search(Qs[0], k=20, allowed=allowed)
    assert set(r[:12].tolist()) == aset
    np.testing.assert_array_equal(r[12:], -1)
    assert np.all(np.isposinf(d[12:]))


def test_filtered_predicate(backend):
    idx, X, ids, Q = big_index(backend, "cosine")
    Qs = Q[:20]
    seen = []

    def pred(i):
        seen.append(i)
        return i % 7 == 0

    r, d = idx.search(Qs, k=10, predicate=pred)
    assert seen and all(isinstance(i, (int, np.integer)) for i in seen[:100])
    assert np.all(r >= 0) and np.all(np.isfinite(d))
    assert all(int(i) % 7 == 0 for i in r.ravel())
    truth, _ = _filtered_truth(idx, X, ids, Qs, 10, lambda i: i % 7 == 0)
    assert recall(r, truth) >= 0.9


def test_filtered_predicate_very_selective(backend):
    idx, X, ids, Q = big_index(backend, "cosine")
    rng = np.random.default_rng(13)
    aset = set(rng.choice(ids, 12, replace=False).tolist())
    Qs = Q[:10]
    r, d = idx.search(Qs, k=10, predicate=lambda i: i in aset)
    assert np.all(r >= 0), "predicate search must still return k results when >= k items match"
    assert set(r.ravel().tolist()) <= aset
    truth, _ = _filtered_truth(idx, X, ids, Qs, 10, lambda i: i in aset)
    assert recall(r, truth) >= 0.95


def test_filtered_allowed_and_predicate(backend):
    idx, X, ids, Q = big_index(backend, "l2")
    rng = np.random.default_rng(14)
    allowed = rng.choice(ids, 2500, replace=False)
    aset = set(allowed.tolist())
    Qs = Q[:20]
    r, d = idx.search(Qs, k=10, allowed=allowed, predicate=lambda i: i % 2 == 0)
    assert np.all(r >= 0) and np.all(np.isfinite(d))
    assert all(int(i) in aset and int(i) % 2 == 0 for i in r.ravel())
    truth, _ = _filtered_truth(idx, X, ids, Qs, 10, lambda i: i in aset and i % 2 == 0)
    assert recall(r, truth) >= 0.9
    # very selective combination: 12 allowed, predicate keeps those with even id
    small = rng.choice(ids, 12, replace=False)
    both = {int(i) for i in small if i % 2 == 0}
    r, d = idx.search(Qs[0], k=12, allowed=small, predicate=lambda i: i % 2 == 0)
    assert set(r[: len(both)].tolist()) == both
    np.testing.assert_array_equal(r[len(both) :], -1)
    assert np.all(np.isposinf(d[len(both) :]))


def test_filtered_ignores_unknown_and_removed_ids(backend):
    rng = np.random.default_rng(15)
    X = rand(rng, 200, 16)
    idx = backend.HNSWIndex(16, metric="l2")
    idx.add(np.arange(200), X)
    idx.remove([3, 4])
    r, d = idx.search(X[3], k=5, allowed=[3, 4, 5, 6, 10**9, -7])
    assert set(r[:2].tolist()) == {5, 6}
    np.testing.assert_array_equal(r[2:], -1)
    r, d = idx.search(X[3], k=5, predicate=lambda i: i in (3, 4, 5))
    assert r[0] == 5 and np.all(r[1:] == -1)


# ------------------------------------------------------------------------ removal + recall


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_recall_after_removal_and_readd(backend, metric):
    rng = np.random.default_rng(16)
    n = N_BIG
    X = clustered(rng, n, DIM_BIG)
    ids = np.arange(n, dtype=np.int64) * 2 + 1
    idx = backend.HNSWIndex(DIM_BIG, metric=metric, threads=2)
    idx.add(ids, X)
    cap = idx.capacity
    Q = clustered(np.random.default_rng(17), 100, DIM_BIG)

    gone = rng.choice(n, int(0.3 * n), replace=False)
    idx.remove(ids[gone])
    keep = np.ones(n, bool)
    keep[gone] = False
    assert len(idx) == int(keep.sum())
    truth, _ = exact_topk(Q, X[keep], ids[keep], 10, metric)
    found, _ = idx.search(Q, k=10)
    assert not (set(found.ravel().tolist()) & set(ids[gone].tolist())), "removed id returned"
    rc = recall(found, truth)
    assert rc >= 0.9, f"recall after removing 30%: {rc:.3f}"

    Y = clustered(np.random.default_rng(18), len(gone), DIM_BIG)
    new_ids = np.arange(len(gone), dtype=np.int64) * 2 + 100000
    idx.add(new_ids, Y)
    assert idx.capacity == cap, "re-adding into freed slots must not grow capacity"
    assert len(idx) == n
    allX = np.concatenate([X[keep], Y])
    allids = np.concatenate([ids[keep], new_ids])
    truth, _ = exact_topk(Q, allX, allids, 10, metric)
    found, _ = idx.search(Q, k=10)
    rc = recall(found, truth)
    assert rc >= 0.9, f"recall after re-adding into freed slots: {rc:.3f}"
    assert set(found.ravel().tolist()) & set(new_ids.tolist()), "new items never found"
    r, _ = idx.search(Y[:50], k=1)
    assert np.mean(r[:, 0] == new_ids[:50]) >= 0.95


# ---------------------------------------------------------------------------- persistence


SECTION_IDS = {"labels": 1, "deleted": 2, "norms": 3, "levels": 4, "links0": 5,
               "upper_offsets": 6, "upper_words": 7, "vectors": 8, "half": 9, "codes": 10,
               "scales": 11}


def _parse_sections(data):
    """Version 2: a 4096-byte header with a section table, page-aligned sections, each with
    its own CRC-32, zero padding; asserts every rule of the documented format."""
    assert len(data) >= 4096 and len(data) % 4096 == 0
    assert struct.unpack_from("<I", data, 4092)[0] == zlib.crc32(data[:4092]) & 0xFFFFFFFF
    count, size = struct.unpack_from("<IQ", data, 80)
    assert size == len(data)
    out, cursor = {}, 4096
    for i in range(count):
        sid, crc, off, nbytes = struct.unpack_from("<IIQQ", data, 128 + 32 * i)
        assert off % 4096 == 0 and off == -(-cursor // 4096) * 4096
        assert data[cursor:off] == bytes(off - cursor), "padding must be zero"
        body = data[off : off + nbytes]
        assert zlib.crc32(body) & 0xFFFFFFFF == crc, f"section {sid} CRC mismatch"
        out[sid] = body
        cursor = off + nbytes
    assert data[cursor:] == bytes(len(data) - cursor)
    assert data[128 + 32 * count : 4092] == bytes(4092 - 128 - 32 * count)
    return out


def parse_index_file(path):
    """Parse the documented file format strictly (version 1: flat, CRC trailer; version 2:
    sectioned); asserts size and CRC consistency."""
    data = open(path, "rb").read()
    assert len(data) >= 132
    (
        magic,
        version,
        header_size,
        dim,
        metric,
        M,
        efc,
        efs,
        flags,
        n_slots,
        n_live,
        max_level,
        entry,
        M0,
        seed,
    ) = struct.unpack_from("<8sIIIIIIIIQQiIIQ", data, 0)
    levels = level0 = None
    precision = None
    if version == 2:
        assert header_size == 4096
        precision = struct.unpack_from("<I", data, 76)[0]
        sec = _parse_sections(data)
        ids = np.frombuffer(sec[1], "<i8")
        deleted = np.frombuffer(sec[2], "u1")
        norms = np.frombuffer(sec[3], "<f4")
        vectors = np.frombuffer(sec[8], "<f4").reshape(n_slots, dim)
        levels = np.frombuffer(sec[4], "<i4")
        level0 = np.frombuffer(sec[5], "<u4").reshape(n_slots, M0 + 1)
        offsets = np.frombuffer(sec[6], "<u8")
        assert offsets[0] == 0 and len(offsets) == n_slots + 1
        np.testing.assert_array_equal(np.diff(offsets), levels.astype(np.uint64) * (M + 1))
        assert len(sec[7]) == 4 * int(offsets[-1])
        assert (9 in sec) == (precision == 1) and (10 in sec) == (11 in sec) == (precision == 2)
        for arr in (ids, deleted, norms, levels):
            assert len(arr) == n_slots
    else:
        assert header_size == 128
        assert data[76:128] == bytes(52), "header padding must be zero"
        off = 128
        ids = np.frombuffer(data, "<i8", n_slots, off)
        off += 8 * n_slots
        deleted = np.frombuffer(data, "u1", n_slots, off)
        off += n_slots
        vectors = np.frombuffer(data, "<f4", n_slots * dim, off).reshape(n_slots, dim)
        off += 4 * n_slots * dim
        norms = np.frombuffer(data, "<f4", n_slots, off)
        off += 4 * n_slots
        if flags & 1:
            levels = np.frombuffer(data, "<i4", n_slots, off)
            off += 4 * n_slots
            level0 = np.frombuffer(data, "<u4", n_slots * (M0 + 1), off).reshape(n_slots, M0 + 1)
            off += 4 * n_slots * (M0 + 1)
            off += 4 * int(sum(int(L) * (M + 1) for L in levels if L > 0))
        assert len(data) == off + 4, f"file size {len(data)} != expected {off + 4}"
        (crc,) = struct.unpack_from("<I", data, off)
        assert crc == (zlib.crc32(data[:off]) & 0xFFFFFFFF), "trailer CRC mismatch"
    return dict(
        header=dict(
            magic=magic,
            version=version,
            header_size=header_size,
            dim=dim,
            metric=metric,
            M=M,
            ef_construction=efc,
            ef_search=efs,
            flags=flags,
            n_slots=n_slots,
            n_live=n_live,
            max_level=max_level,
            entry=entry,
            M0=M0,
            seed=seed,
            precision=precision,
        ),
        ids=ids,
        deleted=deleted,
        vectors=vectors,
        norms=norms,
        levels=levels,
        level0=level0,
        data=data,
    )


@pytest.mark.parametrize("metric", METRICS)
def test_file_format(backend, metric, tmp_path):
    rng = np.random.default_rng(19)
    X = rand(rng, 120, 12) * 3
    idx = backend.HNSWIndex(12, metric=metric, M=6, ef_construction=40, ef_search=33, seed=7)
    idx.add(np.arange(120) - 200, X)
    idx.remove([-200, -150, -81])
    path = str(tmp_path / "f.agdb")
    idx.save(path)
    f = parse_index_file(path)
    h = f["header"]
    assert h["magic"] == b"AGDBHNSW"
    # native files are sectioned (version 2, usable in place); numpy writes flat version 1
    if backend_name(backend) == "native":
        assert h["version"] == 2 and h["header_size"] == 4096 and h["precision"] == 1
    else:
        assert h["version"] == 1 and h["header_size"] == 128
    assert (h["dim"], h["metric"], h["M"], h["ef_construction"], h["ef_search"]) == (
        12,
        METRIC_CODE[metric],
        6,
        40,
        33,
    )
    assert h["M0"] == 12 and h["seed"] == 7
    assert h["n_live"] == 117 and h["n_slots"] >= 120
    live = f["deleted"] == 0
    assert int(live.sum()) == 117 and set(np.unique(f["deleted"]).tolist()) <= {0, 1}
    np.testing.assert_array_equal(np.sort(f["ids"][live]), idx.ids())
    for slot in np.nonzero(live)[0]:
        orig = X[int(f["ids"][slot]) + 200]
        if metric == "cosine":
            nrm = np.linalg.norm(orig)
            np.testing.assert_allclose(f["vectors"][slot], orig / nrm, rtol=1e-5, atol=1e-6)
            assert f["norms"][slot] == pytest.approx(nrm, rel=1e-5)
        else:
            np.testing.assert_array_equal(f["vectors"][slot], orig)
            assert f["norms"][slot] == 1.0
    if h["flags"] & 1:
        levels = f["levels"]
        assert h["max_level"] == int(levels[live].max()) or h["max_level"] == int(levels.max())
        assert h["entry"] < h["n_slots"] and levels[h["entry"]] == h["max_level"]
        counts = f["level0"][:, 0]
        assert np.all(counts <= h["M0"])
        for slot in np.nonzero(live)[0]:
            nb = f["level0"][slot, 1 : 1 + counts[slot]]
            assert np.all(nb < h["n_slots"])
    if backend_name(backend) == "native":
        assert h["flags"] & 1, "native index should save its graph"


def test_file_format_empty_index(backend, tmp_path):
    idx = backend.HNSWIndex(5, metric="l2")
    path = str(tmp_path / "empty.agdb")
    idx.save(path)
    h = parse_index_file(path)["header"]
    assert h["n_live"] == 0 and h["n_slots"] == 0
    if h["flags"] & 1:
        assert h["max_level"] == -1 and h["entry"] == 0xFFFFFFFF
    back = backend.HNSWIndex.load(path)
    assert len(back) == 0 and back.dim == 5 and back.metric == "l2"
    back.add(1, np.ones(5, np.float32))
    assert back.search(np.ones(5), k=1)[0][0] == 1


@pytest.mark.parametrize("metric", METRICS)
def test_save_load_round_trip(backend, metric, tmp_path):
    rng = np.random.default_rng(20)
    X = clustered(rng, 800, 32) * 2
    ids = np.arange(800, dtype=np.int64) * 5 - 1234
    idx = backend.HNSWIndex(32, metric=metric, M=8, ef_construction=60, ef_search=40, seed=11)
    idx.add(ids, X)
    idx.remove(ids[::9])
    path = str(tmp_path / "idx.agdb")
    idx.save(path)
    back = backend.HNSWIndex.load(path)
    assert isinstance(back, backend.HNSWIndex)
    assert back.backend == idx.backend
    assert (back.dim, back.metric, back.M, back.ef_construction, back.ef_search) == (
        32,
        metric,
        8,
        60,
        40,
    )
    assert len(back) == len(idx)
    np.testing.assert_array_equal(back.ids(), idx.ids())
    for i in idx.ids()[::17]:
        np.testing.assert_allclose(
            back.get_vector(int(i)), idx.get_vector(int(i)), rtol=1e-6, atol=1e-6
        )
    for i in ids[::9][:10]:
        assert i not in back
    Q = clustered(np.random.default_rng(21), 30, 32)
    r1, d1 = idx.search(Q, k=10)
    r2, d2 = back.search(Q, k=10)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(d1, d2, rtol=1e-6, atol=1e-6)
    # the loaded index is fully usable
    back.add(999999, X[0])
    back.remove(int(ids[1]))
    assert 999999 in back and int(ids[1]) not in back


@pytest.mark.parametrize("direction", ["numpy->native", "native->numpy"])
def test_cross_backend_load(native, numpy_backend, direction, tmp_path):
    src, dst = (numpy_backend, native) if direction == "numpy->native" else (native, numpy_backend)
    rng = np.random.default_rng(22)
    X = clustered(rng, 2000, 32)
    ids = np.arange(2000, dtype=np.int64) + 77
    idx = src.HNSWIndex(32, metric="cosine", M=12, ef_construction=80, ef_search=50)
    idx.add(ids, X)
    idx.remove(ids[:200])
    path = str(tmp_path / "x.agdb")
    idx.save(path)
    back = dst.HNSWIndex.load(path)
    assert back.backend == backend_name(dst)
    assert (back.dim, back.metric, back.M, back.ef_construction, back.ef_search) == (
        32,
        "cosine",
        12,
        80,
        50,
    )
    np.testing.assert_array_equal(back.ids(), ids[200:])
    for i in ids[200::97]:
        np.testing.assert_allclose(back.get_vector(int(i)), X[int(i) - 77], rtol=1e-5, atol=1e-6)
    Q = clustered(np.random.default_rng(23), 50, 32)
    truth, _ = exact_topk(Q, X[200:], ids[200:], 10, "cosine")
    found, _ = back.search(Q, k=10)
    assert recall(found, truth) >= 0.9
    # and it re-saves in a form the source backend reads back
    path2 = str(tmp_path / "y.agdb")
    back.save(path2)
    again = src.HNSWIndex.load(path2)
    np.testing.assert_array_equal(again.ids(), ids[200:])


@pytest.fixture
def saved_file(backend, tmp_path):
    rng = np.random.default_rng(24)
    idx = backend.HNSWIndex(8, metric="cosine", M=4)
    idx.add(np.arange(40), rand(rng, 40, 8))
    idx.remove([5, 6])
    path = tmp_path / "good.agdb"
    idx.save(str(path))
    return path, path.read_bytes()


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_load_truncated(backend, saved_file, tmp_path):
    path, data = saved_file
    n = len(data)
    for cut in (8, 20, 100, 127, 128, 136, 4095, 4096, n // 2, n - 200, n - 5, n - 4, n - 1):
        if cut >= n:
            continue
        p = _write(tmp_path, f"t{cut}.agdb", data[:cut])
        with pytest.raises(ValueError, match="truncated"):
            backend.HNSWIndex.load(p)
    p = _write(tmp_path, "long.agdb", data + bytes(4096))
    with pytest.raises(ValueError, match="trailing bytes"):
        backend.HNSWIndex.load(p)


def _section_spans(data):
    """(name, offset, bytes) of every section of a version-2 file (empty for version 1)."""
    if struct.unpack_from("<I", data, 8)[0] != 2:
        return []
    names = {v: k for k, v in SECTION_IDS.items()}
    count = struct.unpack_from("<I", data, 80)[0]
    spans = []
    for i in range(count):
        sid, _crc, off, nbytes = struct.unpack_from("<IIQQ", data, 128 + 32 * i)
        spans.append((names[sid], off, nbytes))
    return spans


def test_load_checksum(backend, saved_file, tmp_path):
    path, data = saved_file
    n = len(data)
    spans = _section_spans(data)
    positions = [32, 130, 128 + 8 * 40 + 3] + [off + nbytes // 2 for _, off, nbytes in spans]
    if not spans:
        positions += [n // 2, n - 10, n - 1]
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p = _write(tmp_path, f"c{pos}.agdb", bytes(bad))
        with pytest.raises(ValueError, match="checksum"):
            backend.HNSWIndex.load(p, verify=True)


def test_lazy_open_checks_big_sections_later(native, tmp_path):
    """A mapped open checks the header and the small sections; a flipped byte in the
    neighbour lists or vectors is found by verify() or by the first write (which leaves the
    index as it was), and searches on such a file never read outside it."""
    rng = np.random.default_rng(24)
    for precision in ("mixed", "int8", "f32"):
        idx = native.HNSWIndex(8, metric="cosine", M=4, precision=precision)
        X = rand(rng, 300, 8)
        idx.add(np.arange(300), X)
        path = tmp_path / f"lazy-{precision}.agdb"
        idx.save(str(path))
        data = path.read_bytes()
        for name, off, nbytes in _section_spans(data):
            bad = bytearray(data)
            bad[off + nbytes // 2] ^= 0xFF
            p = _write(tmp_path, f"lazy-{precision}-{name}.agdb", bytes(bad))
            if name not in ("links0", "vectors", "half", "codes"):
                with pytest.raises(ValueError, match=f"section '{name}' checksum"):
                    native.HNSWIndex.load(p)
                continue
            for mode in (True, "vectors"):
                back = native.HNSWIndex.load(p, mmap=mode)
                assert back.mapped
                back.search(X[:20], k=5)  # whatever it returns, it returns
                with pytest.raises(ValueError, match=f"section '{name}' checksum mismatch"):
                    back.verify()
                with pytest.raises(ValueError, match=f"section '{name}' checksum mismatch"):
                    back.add([1000], X[:1])
                assert back.mapped and len(back) == 300 and 1000 not in back
            with pytest.raises(ValueError, match="checksum"):
                native.HNSWIndex.load(p, mmap=False)


def test_open_modes_answer_alike(native, tmp_path):
    """mmap=True (the file mapped), mmap="vectors" (the walk's lists and copy read into
    memory, the float32 vectors left in the file) and mmap=False (all in memory) give the same
    ids and distances; a write copies the index into memory in every mode."""
    rng = np.random.default_rng(31)
    X, Q = rand(rng, 3000, 32), rand(rng, 50, 32)
    for precision in ("mixed", "int8", "f32"):
        idx = native.HNSWIndex(32, metric="cosine", M=8, precision=precision, seed=5)
        idx.add(np.arange(3000), X)
        path = str(tmp_path / f"modes-{precision}.agdb")
        idx.save(path)
        opened = {mode: native.HNSWIndex.load(path, mmap=mode) for mode in (True, "vectors", False)}
        assert [o.mapped for o in opened.values()] == [True, True, False]
        ref_i, ref_d = opened[False].search(Q, k=10, ef=40)
        for mode in (True, "vectors"):
            got_i, got_d = opened[mode].search(Q, k=10, ef=40)
            np.testing.assert_array_equal(got_i, ref_i)
            np.testing.assert_array_equal(got_d, ref_d)
            assert opened[mode].memory_usage() > 0
        ex_i, _ = opened["vectors"].search(Q, k=10, exact=True)
        np.testing.assert_array_equal(ex_i, idx.search(Q, k=10, exact=True)[0])
        back = opened["vectors"]
        back.add([5000], X[:1] * -1)
        assert not back.mapped and 5000 in back
        assert back.search(X[0] * -1, k=1)[0][0] == 5000
    with pytest.raises(ValueError, match="mmap must be True, False or 'vectors'"):
        native.HNSWIndex.load(path, mmap="yes")


def test_save_writes_a_locality_order_that_is_stable(native, tmp_path):
    """A saved file lists the slots in breadth-first order of the graph (neighbours near each
    other); the graph is the same, so the reopened index answers as the one that was saved,
    and saving a reopened index again writes the same bytes."""
    rng = np.random.default_rng(32)
    X, Q = rand(rng, 2000, 16), rand(rng, 40, 16)
    idx = native.HNSWIndex(16, metric="cosine", M=6, precision="int8", seed=9)
    idx.add(np.arange(2000) * 7, X)
    idx.remove([7, 70, 700])
    first, second = str(tmp_path / "a.agdb"), str(tmp_path / "b.agdb")
    idx.save(first)
    back = native.HNSWIndex.load(first)
    for exact in (True, False):
        want_i, want_d = idx.search(Q, k=8, ef=30, exact=exact)
        got_i, got_d = back.search(Q, k=8, ef=30, exact=exact)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-6, atol=1e-6)
    assert sorted(back.ids()) == sorted(idx.ids()) and 70 not in back
    back.save(second)
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_verify_leaves_the_rerank_vectors_out_of_memory(native, tmp_path):
    """verify() reads every page of a mapped file; afterwards the pages that searches read
    only by pread (a quantized walk's float32 vectors) are given back, so an index opened with
    verify=True holds about what a plain open holds."""
    rng = np.random.default_rng(33)
    idx = native.HNSWIndex(64, metric="cosine", precision="int8")
    idx.add(np.arange(20000), rand(rng, 20000, 64))
    path = str(tmp_path / "v.agdb")
    idx.save(path)
    Q = rand(rng, 100, 64)
    for mode in (True, "vectors"):
        plain = native.HNSWIndex.load(path, mmap=mode)
        plain.search(Q, k=10)
        checked = native.HNSWIndex.load(path, mmap=mode, verify=True)
        checked.search(Q, k=10)
        vectors_bytes = 20000 * 64 * 4
        assert checked.memory_usage() < plain.memory_usage() + vectors_bytes // 4, mode
        assert checked.memory_usage() < os.path.getsize(path) - vectors_bytes // 2, mode


_SHARE_CHILD = """
import sys, json
import numpy as np
sys.path.insert(0, sys.argv[1])
from agentdb import _native
path = sys.argv[2]
index = _native.HNSWIndex.load(path)
Q = np.random.default_rng(5).standard_normal((200, 32)).astype(np.float32)
index.search(Q, k=10)
shared = rss = 0
inside = False
with open("/proc/self/smaps") as fh:
    for line in fh:
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's first line
            inside = head[-1] == path
        elif inside and head[0] == "Shared_Clean:":
            shared += int(head[1])
        elif inside and head[0] == "Rss:":
            rss += int(head[1])
print(json.dumps({"mapped": index.mapped, "shared_kb": shared, "rss_kb": rss}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_processes_share_a_mapped_index(native, tmp_path):
    """Two processes that open one index file share its pages: the second process's mapping
    of the file is Shared_Clean (the same page-cache pages the first one mapped)."""
    rng = np.random.default_rng(4)
    idx = native.HNSWIndex(32, metric="cosine", precision="int8")
    idx.add(np.arange(5000), rand(rng, 5000, 32))
    path = str(tmp_path / "shared.agdb")
    idx.save(path)
    mine = native.HNSWIndex.load(path)
    assert mine.mapped
    mine.search(rand(rng, 200, 32), k=10)  # this process maps the walk's pages too
    src = os.path.dirname(os.path.dirname(os.path.abspath(agentdb.__file__)))
    out = subprocess.run([sys.executable, "-c", _SHARE_CHILD, src, os.path.realpath(path)],
                         capture_output=True, text=True, timeout=120, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["mapped"] is True
    assert info["rss_kb"] > 0 and info["shared_kb"] > 0, info
    assert info["shared_kb"] >= info["rss_kb"] // 2, info


V1_FILE = os.path.join(os.path.dirname(__file__), "data", "index_v1_graph.agdb")


def test_version_1_file_still_opens(backend, tmp_path):
    """A version-1 file with a graph, written by agentdb 0.1.0 before the sectioned format
    (300 vectors of dim 8, ids 3 i + 1, ids 4 and 7 removed; M=6, ef_construction=50,
    ef_search=30, seed=3): both backends open it, search it, write to it and re-save it in
    the current format."""
    X = np.random.default_rng(7).standard_normal((300, 8)).astype(np.float32)
    ids = np.arange(300) * 3 + 1
    back = backend.HNSWIndex.load(V1_FILE)
    assert (back.dim, back.metric, back.M, back.ef_construction, back.ef_search) == (
        8, "cosine", 6, 50, 30)
    assert len(back) == 298 and 4 not in back and 7 not in back and 10 in back
    assert back.precision == "mixed" and back.mapped is False
    found, _ = back.search(X[3:], k=1)
    np.testing.assert_array_equal(found[:, 0], ids[3:])
    np.testing.assert_allclose(back.get_vector(10), X[3], rtol=1e-5, atol=1e-6)
    assert backend.HNSWIndex.load(V1_FILE, precision="f32").precision == "f32"
    back.add(4, X[1])
    path = tmp_path / "again.agdb"
    back.save(str(path))
    again = backend.HNSWIndex.load(str(path))
    assert len(again) == 299 and 4 in again
    assert parse_index_file(str(path))["header"]["version"] == (
        2 if backend_name(backend) == "native" else 1)


def test_load_bad_magic_version_missing(backend, saved_file, tmp_path):
    path, data = saved_file
    bad = b"NOTAGDB!" + data[8:]
    bad = bad[:-4] + struct.pack("<I", zlib.crc32(bad[:-4]) & 0xFFFFFFFF)
    with pytest.raises(ValueError, match="not an AgentDB index file"):
        backend.HNSWIndex.load(_write(tmp_path, "magic.agdb", bad))
    garbage = np.random.default_rng(25).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    with pytest.raises(ValueError, match="not an AgentDB index file"):
        backend.HNSWIndex.load(_write(tmp_path, "garbage.agdb", garbage))
    with pytest.raises(ValueError, match="not an AgentDB index file"):
        backend.HNSWIndex.load(
            _write(tmp_path, "text.agdb", b"hello world, definitely not an index\n" * 10)
        )
    v3 = data[:8] + struct.pack("<I", 3) + data[12:]
    with pytest.raises(ValueError, match="unsupported format version 3"):
        backend.HNSWIndex.load(_write(tmp_path, "v3.agdb", v3))
    with pytest.raises(FileNotFoundError):
        backend.HNSWIndex.load(str(tmp_path / "does-not-exist.agdb"))
    with pytest.raises(IsADirectoryError):  # not a file: the OS error, never MemoryError
        backend.HNSWIndex.load(str(tmp_path))


def test_load_never_crashes(backend, saved_file, tmp_path):
    """Every truncation and every single-byte corruption is a ValueError on a verified load,
    never a crash or a silently loaded index; a lazy (mapped) open of the same bytes either
    refuses or gives an index whose searches run and whose verify() refuses."""
    path, data = saved_file
    p = str(tmp_path / "fuzz.agdb")
    q = np.ones(8, np.float32)
    for cut in range(0, len(data), 3 if len(data) < 8192 else 97):
        with open(p, "wb") as fh:
            fh.write(data[:cut])
        with pytest.raises(ValueError):
            backend.HNSWIndex.load(p)
    positions = range(0, len(data), 2)
    spans = _section_spans(data)
    if spans:  # every byte of header and sections, and a sample of the zero padding
        inside = [range(0, 4096, 2)] + [range(off, off + nb) for _, off, nb in spans]
        positions = sorted({i for r in inside for i in r} | set(range(0, len(data), 61)))
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        with open(p, "wb") as fh:
            fh.write(bytes(bad))
        with pytest.raises(ValueError):
            backend.HNSWIndex.load(p, verify=True)
        try:
            lazy = backend.HNSWIndex.load(p)
        except ValueError:
            continue
        lazy.search(q, k=3)
        with pytest.raises(ValueError):
            lazy.verify()


# ------------------------------------------------------------------- bad inputs leave no trace

BAD_INPUTS = [
    (
        "add_wrong_dim",
        ValueError,
        "dimension mismatch: index has dim 8, got 7",
        lambda ix: ix.add([100], np.ones((1, 7), np.float32)),
    ),
    (
        "add_wrong_dim_1d",
        ValueError,
        "dimension mismatch",
        lambda ix: ix.add(100, np.ones(9, np.float32)),
    ),
    (
        "add_nan_last_row",
        ValueError,
        "NaN or infinity",
        lambda ix: ix.add(
            [100, 101, 102],
            np.vstack([np.ones((2, 8)), np.full((1, 8), np.nan)]).astype(np.float32),
        ),
    ),
    (
        "add_inf",
        ValueError,
        "NaN or infinity",
        lambda ix: ix.add([100, 101], np.array([[1] * 8, [1] * 7 + [np.inf]], np.float32)),
    ),
    (
        "add_zero_vector_cosine",
        ValueError,
        "zero vector",
        lambda ix: ix.add([100, 101, 102], np.array([[1] * 8, [0] * 8, [2] * 8], np.float32)),
    ),
    (
        "upsert_zero_vector_cosine",
        ValueError,
        "zero vector",
        lambda ix: ix.add(3, np.zeros(8, np.float32)),
    ),
    (
        "add_norm_past_float32_cosine",
        ValueError,
        "outside float32's range",
        lambda ix: ix.add([100, 101], np.array([[1] * 8, [3e38] * 8], np.float32)),
    ),
    (
        "add_norm_below_float32_normal_cosine",
        ValueError,
        "outside float32's range",
        lambda ix: ix.add([100, 101], np.array([[1] * 8, [1e-40] + [0] * 7], np.float32)),
    ),
    (
        "add_count_mismatch",
        ValueError,
        "got 3 ids for 2 vectors",
        lambda ix: ix.add([100, 101, 102], np.ones((2, 8), np.float32)),
    ),
    (
        "add_duplicate_ids",
        ValueError,
        "101",
        lambda ix: ix.add([100, 101, 101], np.ones((3, 8), np.float32)),
    ),
    (
        "add_id_minus_one",
        ValueError,
        "-1",
        lambda ix: ix.add([100, -1], np.ones((2, 8), np.float32)),
    ),
    (
        "add_empty",
        ValueError,
        "empty",
        lambda ix: ix.add(np.zeros(0, np.int64), np.zeros((0, 8), np.float32)),
    ),
    ("add_bool_vectors", TypeError, "bool", lambda ix: ix.add([100, 101], np.ones((2, 8), bool))),
    ("add_complex_vectors", TypeError, "", lambda ix: ix.add([100, 101], np.ones((2, 8), complex))),
    ("add_object_vectors", TypeError, "", lambda ix: ix.add([100, 101], np.ones((2, 8), object))),
    ("add_str_vectors", TypeError, "", lambda ix: ix.add([100, 101], np.full((2, 8), "1"))),
    (
        "add_float_ids",
        TypeError,
        "",
        lambda ix: ix.add(np.array([100.0, 101.0]), np.ones((2, 8), np.float32)),
    ),
    ("add_float_scalar_id", TypeError, "", lambda ix: ix.add(100.5, np.ones(8, np.float32))),
    ("add_str_ids", TypeError, "", lambda ix: ix.add(["a", "b"], np.ones((2, 8), np.float32))),
    (
        "add_bool_ids",
        TypeError,
        "",
        lambda ix: ix.add(np.array([True, False]), np.ones((2, 8), np.float32)),
    ),
    (
        "search_k0",
        ValueError,
        "k must be >= 1, got 0",
        lambda ix: ix.search(np.ones(8, np.float32), k=0),
    ),
    (
        "search_k_negative",
        ValueError,
        "k must be >= 1, got -2",
        lambda ix: ix.search(np.ones(8, np.float32), k=-2),
    ),
    (
        "search_wrong_dim",
        ValueError,
        "dimension mismatch",
        lambda ix: ix.search(np.ones(5, np.float32), k=3),
    ),
    (
        "search_wrong_dim_2d",
        ValueError,
        "dimension mismatch",
        lambda ix: ix.search(np.ones((2, 9), np.float32), k=3),
    ),
    (
        "search_nan",
        ValueError,
        "NaN or infinity",
        lambda ix: ix.search(np.array([1, 2, np.nan, 4, 5, 6, 7, 8], np.float32), k=3),
    ),
    ("search_bool_query", TypeError, "", lambda ix: ix.search(np.ones(8, bool), k=3)),
    ("remove_unknown_in_batch", KeyError, "unknown id 999", lambda ix: ix.remove([1, 2, 999])),
    ("get_vector_unknown", KeyError, "", lambda ix: ix.get_vector(999)),
    ("ef_search_zero", ValueError, "", lambda ix: setattr(ix, "ef_search", 0)),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_and_leaves_index_unchanged(backend, case):
    name, exc, word, call = case
    rng = np.random.default_rng(26)
    idx = backend.HNSWIndex(8, metric="cosine")
    idx.add(np.arange(50), rand(rng, 50, 8))
    q = rand(rng, 2, 8)
    before = snapshot(idx, q)
    ef_before = idx.ef_search
    with pytest.raises(exc) as ei:
        call(idx)
    if word:
        assert word in str(ei.value), f"{name}: message {str(ei.value)!r} lacks {word!r}"
    after = snapshot(idx, q)
    assert_same_snapshot(before, after)
    assert idx.ef_search == ef_before
    for i in (100, 101, 102):
        assert i not in idx


def test_search_empty_index(backend):
    idx = backend.HNSWIndex(4)
    with pytest.raises(ValueError, match="index is empty"):
        idx.search(np.ones(4, np.float32), k=1)
    with pytest.raises(ValueError, match="index is empty"):
        idx.search(np.ones((2, 4), np.float32), k=1)


def test_zero_vector_allowed_for_l2_and_ip(backend):
    for metric in ("l2", "ip"):
        idx = backend.HNSWIndex(4, metric=metric)
        idx.add([1, 2], np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.float32))
        assert len(idx) == 2
        np.testing.assert_array_equal(idx.get_vector(1), np.zeros(4, np.float32))


# -------------------------------------------------------------------------------- concurrency


def test_concurrent_add_and_search(backend):
    rng = np.random.default_rng(27)
    dim = 32
    X = rand(rng, 2010, dim)
    idx = backend.HNSWIndex(dim, metric="l2", M=12, ef_construction=64)
    idx.add(np.arange(10), X[:10])
    errors = []
    done = threading.Event()
    n_searches = [0, 0, 0]

    def writer():
        try:
            for s in range(10, 2010, 20):
                idx.add(np.arange(s, s + 20), X[s : s + 20])
        except BaseException as e:  # noqa: BLE001
            errors.append(("writer", repr(e)))
        finally:
            done.set()

    def reader(t):
        qrng = np.random.default_rng(100 + t)
        try:
            while not done.is_set() or n_searches[t] < 5:
                q = qrng.standard_normal((3, dim)).astype(np.float32)
                r, d = idx.search(q, k=5)
                assert r.shape == (3, 5) and np.all(r >= 0) and np.all(r < 2010)
                assert np.all(np.diff(d, axis=1) >= 0)
                n_searches[t] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append((f"reader{t}", repr(e)))

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(t,)) for t in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert len(idx) == 2010
    np.testing.assert_array_equal(idx.ids(), np.arange(2010))
    sample = np.random.default_rng(28).choice(2010, 300, replace=False)
    r, _ = idx.search(X[sample], k=10, ef=200)
    assert np.mean(r[:, 0] == sample) >= 0.99, "own vector not the top-1 result"
    assert all(s in row for s, row in zip(sample, r)), "an item is not findable"


def test_concurrent_add_remove_and_search(backend):
    rng = np.random.default_rng(29)
    dim = 16
    X = rand(rng, 1500, dim)
    idx = backend.HNSWIndex(dim, metric="cosine", M=8, ef_construction=40)
    idx.add(np.arange(500), X[:500])
    errors = []
    done = threading.Event()

    def writer():
        try:
            for s in range(500, 1500, 25):
                idx.add(np.arange(s, s + 25), X[s : s + 25])
                idx.remove(np.arange(s - 500, s - 500 + 20))  # keeps >= 480 live
        except BaseException as e:  # noqa: BLE001
            errors.append(("writer", repr(e)))
        finally:
            done.set()

    def reader(t):
        qrng = np.random.default_rng(200 + t)
        try:
            while not done.is_set():
                r, d = idx.search(
                    qrng.standard_normal(dim).astype(np.float32),
                    k=5,
                    predicate=(lambda i: i % 2 == 0) if t == 0 else None,
                )
                assert r.shape == (5,)
        except BaseException as e:  # noqa: BLE001
            errors.append((f"reader{t}", repr(e)))

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(t,)) for t in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    removed = {i for s in range(500, 1500, 25) for i in range(s - 500, s - 480)}
    expect = sorted(set(range(1500)) - removed)
    np.testing.assert_array_equal(idx.ids(), expect)
    r, _ = idx.search(X[expect[-50:]], k=1, ef=100)
    assert np.mean(r[:, 0] == np.array(expect[-50:])) >= 0.95


# ----------------------------------------------------------------------------------- memory


def test_memory_usage_grows(backend):
    rng = np.random.default_rng(30)
    dim = 64
    idx = backend.HNSWIndex(dim, metric="l2", M=8, ef_construction=32)
    m0 = idx.memory_usage()
    assert isinstance(m0, int) and m0 >= 0
    idx.add(np.arange(1000), rand(rng, 1000, dim))
    m1 = idx.memory_usage()
    assert m1 >= 1000 * dim * 4
    idx.add(np.arange(1000, 5000), rand(rng, 4000, dim))
    m2 = idx.memory_usage()
    assert m2 > m1
    assert m2 >= 5000 * dim * 4


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("precision", ["mixed", "f32", "int8"])
def test_precision_modes_exact_distances(backend, metric, precision):
    """Every precision reaches the recall target, and the distances returned are the exact
    float32 distances of the returned ids (mixed and int8 walks re-rank in float32)."""
    if precision == "int8" and metric == "l2":
        with pytest.raises(ValueError, match="'int8' supports the cosine and ip metrics"):
            backend.HNSWIndex(48, metric=metric, precision=precision)
        return
    rng = np.random.default_rng(77)
    X = clustered(rng, 3000, dim=48, normalise=metric == "ip")
    Q = clustered(np.random.default_rng(78), 50, dim=48, normalise=metric == "ip")
    ids = np.arange(3000) * 3 + 1
    idx = backend.HNSWIndex(48, metric=metric, precision=precision)
    assert idx.precision == precision
    idx.add(ids, X)
    found, dists = idx.search(Q, k=10)
    truth, D = exact_topk(Q, X, ids, 10, metric)
    assert recall(found, truth) >= 0.9
    row_of = {int(i): r for r, i in enumerate(ids)}
    for qi in range(len(Q)):
        exact = np.array([D[qi, row_of[int(i)]] for i in found[qi]])
        np.testing.assert_allclose(dists[qi], exact, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="precision"):
        backend.HNSWIndex(48, precision="f8")


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_search_reads_codes_and_matches_float32(native, metric, tmp_path):
    """search(exact=True) on an int8 or binary16 index (codes first, float32 for the
    candidates within the error bound) returns exactly what a float32 full scan returns:
    same ids, same distances; in memory and opened in place, with removals and filters."""
    rng = np.random.default_rng(80)
    X = clustered(rng, 3000, dim=48) * rng.uniform(0.5, 2.0, (3000, 1)).astype(np.float32)
    X[1::7] = X[::7][: len(X[1::7])] + 1e-4 * rng.standard_normal((len(X[1::7]), 48))  # near-ties
    Q = np.vstack([clustered(np.random.default_rng(81), 40, dim=48), X[:10]])
    ids = np.arange(3000) * 2 + 5
    ref = native.HNSWIndex(48, metric=metric, precision="f32")
    ref.add(ids, X)
    ref.remove(ids[::11])
    for precision in ("int8", "mixed"):
        if precision == "int8" and metric == "l2":
            continue
        idx = native.HNSWIndex(48, metric=metric, precision=precision)
        idx.add(ids, X)
        idx.remove(ids[::11])
        path = tmp_path / f"exact-{metric}-{precision}.agdb"
        idx.save(str(path))
        for index in (idx, native.HNSWIndex.load(str(path))):
            for k in (1, 10, 50):
                for kw in ({}, {"predicate": lambda i: i % 3 != 0}, {"allowed": ids[::2]}):
                    want_i, want_d = ref.search(Q, k=k, exact=True, **kw)
                    got_i, got_d = index.search(Q, k=k, exact=True, **kw)
                    np.testing.assert_array_equal(got_i, want_i)
                    np.testing.assert_array_equal(got_d, want_d)
            assert index.mapped is (index is not idx)


def test_precision_survives_load_choice(backend, tmp_path):
    rng = np.random.default_rng(79)
    X = rand(rng, 500, 16)
    idx = backend.HNSWIndex(16)
    idx.add(np.arange(500), X)
    idx.save(tmp_path / "p.agdb")
    a = backend.HNSWIndex.load(tmp_path / "p.agdb", precision="f32")
    b = backend.HNSWIndex.load(tmp_path / "p.agdb")
    assert a.precision == "f32" and b.precision == "mixed"
    c = backend.HNSWIndex.load(tmp_path / "p.agdb", precision="int8")  # codes made on load
    assert c.precision == "int8"
    assert (c.search(X[:20], k=5)[0][:, 0] == np.arange(20)).all()
    with pytest.raises(ValueError, match="precision must be 'mixed', 'f32' or 'int8'"):
        backend.HNSWIndex.load(tmp_path / "p.agdb", precision="i4")
    ia, da = a.search(X[:20], k=5)
    ib, db = b.search(X[:20], k=5)
    assert (ia[:, 0] == np.arange(20)).all() and (ib[:, 0] == np.arange(20)).all()
    np.testing.assert_allclose(da[:, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(db[:, 0], 0.0, atol=1e-5)
