"""Distance kernels, exact search, the input-conversion rule and native_info (spec_native.md).

Every test that takes the ``backend`` fixture runs against both the numpy fallback and the
native extension (when it loaded).  Native-only tests (SIMD paths) take the ``native`` fixture.
"""

from __future__ import annotations

import os
import warnings

import agentdb
import numpy as np
import pytest
from agentdb.engines import loader as _loader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

METRICS = ("cosine", "ip", "l2")

# ---------------------------------------------------------------------------------------------
# Tolerance.  Kernels compute in float32; the reference is float64 on the *same* float32 inputs
# (so conversion rounding is not counted).  A result r is accepted against the reference r64
# when   |r - r64| <= ATOL + RTOL * scale   with RTOL = 1e-4, ATOL = 1e-5, where ``scale`` is the
# magnitude of what the kernel accumulates:
#   l2     : |a|^2 + |b|^2          (squared distance, cancellation is relative to this)
#   ip     : 1 + sum_i |a_i * b_i|  (distance = 1 - dot)
#   cosine : 1                      (distance = 1 - cos, cos in [-1, 1])
# ---------------------------------------------------------------------------------------------
RTOL = 1e-4
ATOL = 1e-5

HYP = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def ref_distances(Q, X, metric):
    """float64 reference distances (m, n) and tolerance scale (m, n) for float32 inputs."""
    Q = np.atleast_2d(np.asarray(Q, dtype=np.float32)).astype(np.float64)
    X = np.atleast_2d(np.asarray(X, dtype=np.float32)).astype(np.float64)
    dot = Q @ X.T
    if metric == "ip":
        return 1.0 - dot, 1.0 + np.abs(Q) @ np.abs(X).T
    if metric == "l2":
        qn = (Q * Q).sum(1)
        xn = (X * X).sum(1)
        d = np.maximum(qn[:, None] + xn[None, :] - 2.0 * dot, 0.0)
        return d, qn[:, None] + xn[None, :]
    assert metric == "cosine"
    nq = np.sqrt((Q * Q).sum(1))[:, None]
    nx = np.sqrt((X * X).sum(1))[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = 1.0 - dot / (nq * nx)
    d = np.where((nq == 0) | (nx == 0), 1.0, d)
    return d, np.ones_like(d)


def assert_close(got, ref, scale, what=""):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == np.shape(ref), f"{what}: shape {got.shape} != {np.shape(ref)}"
    err = np.abs(got - ref)
    tol = ATOL + RTOL * np.asarray(scale)
    bad = ~(err <= tol)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - tol, -np.inf)), np.shape(err))
        raise AssertionError(
            f"{what}: {int(bad.sum())} values out of tolerance; worst at {i}: "
            f"got {np.asarray(got)[i]!r}, reference {np.asarray(ref)[i]!r}, "
            f"tol {np.broadcast_to(tol, err.shape)[i]!r}"
        )


def make_data(rng, shape, kind, scale):
    if kind == "normal":
        x = rng.standard_normal(shape) * scale
    elif kind == "positive":
        x = rng.random(shape) * scale
    else:  # small integers: zero vectors and exact ties are possible
        x = rng.integers(-3, 4, size=shape).astype(np.float64)
    return np.ascontiguousarray(x, dtype=np.float32)


data_kinds = st.sampled_from(["normal", "positive", "ints"])
scales = st.sampled_from([1e-2, 1.0, 30.0])
metrics = st.sampled_from(METRICS)
seeds = st.integers(0, 2**32 - 1)
dims = st.integers(1, 4096)


# ------------------------------------------------------------------ distance / distances values


@HYP
@given(dim=dims, seed=seeds, kind=data_kinds, scale=scales, metric=metrics)
def test_distance_one_to_one_matches_reference(backend, dim, seed, kind, scale, metric):
    rng = np.random.default_rng(seed)
    a = make_data(rng, dim, kind, scale)
    b = make_data(rng, dim, kind, scale)
    got = backend.distance(a, b, metric)
    assert isinstance(got, float), type(got)
    ref, sc = ref_distances(a, b, metric)
    assert_close(np.array([[got]]), ref, sc, f"distance {metric} dim={dim}")


@HYP
@given(dim=dims, n=st.integers(1, 40), seed=seeds, kind=data_kinds, scale=scales, metric=metrics)
def test_distances_one_to_many_matches_reference(backend, dim, n, seed, kind, scale, metric):
    rng = np.random.default_rng(seed)
    q = make_data(rng, dim, kind, scale)
    X = make_data(rng, (n, dim), kind, scale)
    got = backend.distances(q, X, metric)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float32
    assert got.shape == (n,)
    ref, sc = ref_distances(q, X, metric)
    assert_close(got, ref[0], sc[0], f"distances 1xN {metric} dim={dim}")


@HYP
@given(
    dim=dims,
    m=st.integers(1, 6),
    n=st.integers(1, 30),
    seed=seeds,
    kind=data_kinds,
    scale=scales,
    metric=metrics,
)
def test_distances_many_to_many_matches_reference(backend, dim, m, n, seed, kind, scale, metric):
    rng = np.random.default_rng(seed)
    Q = make_data(rng, (m, dim), kind, scale)
    X = make_data(rng, (n, dim), kind, scale)
    got = backend.distances(Q, X, metric)
    assert got.dtype == np.float32
    assert got.shape == (m, n)
    ref, sc = ref_distances(Q, X, metric)
    assert_close(got, ref, sc, f"distances MxN {metric} dim={dim}")


@pytest.mark.parametrize("metric", METRICS)
def test_distances_agree_with_distance(backend, metric):
    rng = np.random.default_rng(1)
    Q = rng.standard_normal((3, 37)).astype(np.float32)
    X = rng.standard_normal((11, 37)).astype(np.float32)
    D = backend.distances(Q, X, metric)
    one = np.array([[backend.distance(q, x, metric) for x in X] for q in Q])
    _, sc = ref_distances(Q, X, metric)
    assert_close(D, one, sc, "distances vs distance")


@pytest.mark.parametrize("metric", METRICS)
def test_distances_x_1d_is_one_row(backend, metric):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(9).astype(np.float32)
    q = rng.standard_normal(9).astype(np.float32)
    Q = rng.standard_normal((4, 9)).astype(np.float32)
    r1 = backend.distances(q, x, metric)
    assert r1.shape == (1,)
    r2 = backend.distances(Q, x, metric)
    assert r2.shape == (4, 1)
    ref, sc = ref_distances(Q, x, metric)
    assert_close(r2, ref, sc, "X 1-D")
    ref, sc = ref_distances(q, x, metric)
    assert_close(r1, ref[0], sc[0], "q and X 1-D")


def test_known_values(backend):
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    b = np.array([4.0, 5.0, 6.0], dtype=np.float32)
    assert backend.distance(a, b, "l2") == pytest.approx(27.0, rel=1e-6)
    assert backend.distance(a, b, "ip") == pytest.approx(1.0 - 32.0, rel=1e-6)
    assert backend.distance(a, b, "cosine") == pytest.approx(
        1.0 - 32.0 / np.sqrt(14.0 * 77.0), abs=1e-6
    )
    # default metric is cosine
    assert backend.distance(a, b) == pytest.approx(backend.distance(a, b, "cosine"), abs=1e-7)
    e1 = np.array([1.0, 0.0], dtype=np.float32)
    e2 = np.array([0.0, 1.0], dtype=np.float32)
    assert backend.distance(e1, e2, "cosine") == pytest.approx(1.0, abs=1e-6)
    assert backend.distance(e1, -e1, "cosine") == pytest.approx(2.0, abs=1e-6)
    assert backend.distance(e1, 5 * e1, "cosine") == pytest.approx(0.0, abs=1e-6)
    assert backend.distance(e1, e2, "ip") == pytest.approx(1.0, abs=1e-6)
    assert backend.distance(e1, e1, "ip") == pytest.approx(0.0, abs=1e-6)
    assert backend.distance(e1, e2, "l2") == pytest.approx(2.0, abs=1e-6)
    assert backend.distance(a, a, "l2") == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dim", [1, 3, 8, 17, 384])
def test_cosine_zero_norm_distance_is_one(backend, dim):
    z = np.zeros(dim, dtype=np.float32)
    a = np.arange(1, dim + 1, dtype=np.float32)
    assert backend.distance(z, a, "cosine") == pytest.approx(1.0, abs=1e-6)
    assert backend.distance(a, z, "cosine") == pytest.approx(1.0, abs=1e-6)
    assert backend.distance(z, z, "cosine") == pytest.approx(1.0, abs=1e-6)
    X = np.stack([a, z, -a, z])
    got = backend.distances(a, X, "cosine")
    np.testing.assert_allclose(got, [0.0, 1.0, 2.0, 1.0], atol=1e-5)
    got = backend.distances(z, X, "cosine")
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0, 1.0], atol=1e-6)
    got = backend.distances(np.stack([z, a]), X, "cosine")
    np.testing.assert_allclose(got, [[1, 1, 1, 1], [0, 1, 2, 1]], atol=1e-5)


# ------------------------------------------------------------------------------ exact_search


def check_topk(ids, dists, Q, X, k, metric):
    """Valid exact top-k (robust to float32 near-ties): ids/dists shape (m, k)."""
    n = len(X)
    ref, sc = ref_distances(Q, X, metric)
    m = ref.shape[0]
    assert ids.shape == (m, k) and dists.shape == (m, k)
    kk = min(k, n)
    for i in range(m):
        row, dr = ids[i], dists[i]
        assert np.all(dr[1:] >= dr[:-1]), f"not ascending: {dr}"
        assert np.all(row[kk:] == -1) and np.all(np.isposinf(dr[kk:])), "bad padding"
        sel = row[:kk]
        assert np.all((sel >= 0) & (sel < n)), f"ids out of range: {sel}"
        assert len(np.unique(sel)) == kk, f"duplicate ids: {sel}"
        assert_close(dr[:kk], ref[i, sel], sc[i, sel], "exact_search dists")
        if kk < n:
            rest = np.setdiff1d(np.arange(n), sel)
            worst = ref[i, sel].max()
            tol = ATOL + RTOL * np.maximum(sc[i, rest], sc[i, sel].max())
            assert np.all(ref[i, rest] >= worst - 2 * tol), "a better row was left out of top-k"


@HYP
@given(
    dim=st.integers(1, 512),
    n=st.integers(1, 200),
    m=st.integers(1, 5),
    k=st.integers(1, 30),
    seed=seeds,
    kind=data_kinds,
    metric=metrics,
)
def test_exact_search_matches_reference(backend, dim, n, m, k, seed, kind, metric):
    rng = np.random.default_rng(seed)
    X = make_data(rng, (n, dim), kind, 1.0)
    Q = make_data(rng, (m, dim), kind, 1.0)
    ids, dists = backend.exact_search(Q, X, k=k, metric=metric)
    assert ids.dtype == np.int64 and dists.dtype == np.float32
    check_topk(ids, dists, Q, X, k, metric)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_exact_search_exact_order_and_ties(backend, metric):
    """Small-integer data: float32 arithmetic is exact, so the order must equal a stable argsort
    (ties broken by smaller row index)."""
    rng = np.random.default_rng(7)
    base = rng.integers(-2, 3, size=(25, 6))
    X = np.concatenate([base, base[::-1], base[:10]]).astype(np.float32)  # many duplicate rows
    Q = rng.integers(-2, 3, size=(8, 6)).astype(np.float32)
    ref, _ = ref_distances(Q, X, metric)
    k = 20
    ids, dists = backend.exact_search(Q, X, k=k, metric=metric)
    expect = np.argsort(ref, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(ids, expect)
    np.testing.assert_array_equal(dists, np.take_along_axis(ref, expect, 1).astype(np.float32))


def test_exact_search_all_equal_rows_ties_by_index(backend):
    X = np.ones((50, 4), dtype=np.float32)
    for metric in METRICS:
        ids, _ = backend.exact_search(np.ones(4, dtype=np.float32), X, k=7, metric=metric)
        np.testing.assert_array_equal(ids, np.arange(7))


@pytest.mark.parametrize("metric", METRICS)
def test_exact_search_shapes_and_padding(backend, metric):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 12)).astype(np.float32)
    q = rng.standard_normal(12).astype(np.float32)
    ids, dists = backend.exact_search(q, X, k=8, metric=metric)
    assert ids.shape == (8,) and dists.shape == (8,)
    assert ids.dtype == np.int64 and dists.dtype == np.float32
    np.testing.assert_array_equal(ids[5:], [-1, -1, -1])
    assert np.all(np.isposinf(dists[5:]))
    ref, _ = ref_distances(q, X, metric)
    np.testing.assert_array_equal(np.sort(ids[:5]), np.arange(5))
    np.testing.assert_array_equal(ids[:5], np.argsort(ref[0], kind="stable"))

    Q = rng.standard_normal((3, 12)).astype(np.float32)
    ids2, dists2 = backend.exact_search(Q, X, k=3, metric=metric)
    assert ids2.shape == (3, 3) and dists2.shape == (3, 3)
    ids3, dists3 = backend.exact_search(Q, X, k=6, metric=metric)
    assert ids3.shape == (3, 6)
    assert np.all(ids3[:, 5] == -1) and np.all(np.isposinf(dists3[:, 5]))
    # 1-D query gives the same as the matching row of a 2-D query
    i1, d1 = backend.exact_search(Q[1], X, k=3, metric=metric)
    np.testing.assert_array_equal(i1, ids2[1])
    np.testing.assert_allclose(d1, dists2[1], rtol=1e-6, atol=1e-6)


def test_exact_search_defaults(backend):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 8)).astype(np.float32)
    q = rng.standard_normal(8).astype(np.float32)
    ids, dists = backend.exact_search(q, X)
    assert ids.shape == (10,)
    ids_c, dists_c = backend.exact_search(q, X, k=10, metric="cosine")
    np.testing.assert_array_equal(ids, ids_c)
    check_topk(ids[None], dists[None], q, X, 10, "cosine")


def test_exact_search_threads_do_not_change_result(backend):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 33)).astype(np.float32)
    Q = rng.standard_normal((17, 33)).astype(np.float32)
    r0 = backend.exact_search(Q, X, k=15, metric="l2", threads=0)
    r1 = backend.exact_search(Q, X, k=15, metric="l2", threads=1)
    r2 = backend.exact_search(Q, X, k=15, metric="l2", threads=2)
    for r in (r1, r2):
        np.testing.assert_array_equal(r0[0], r[0])
        np.testing.assert_allclose(r0[1], r[1], rtol=1e-6, atol=1e-6)
    check_topk(r0[0], r0[1], Q, X, 15, "l2")


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_exact_search_batches_through_the_tile_kernel(backend, metric):
    """8+ queries under cosine / ip take the native 4 x 4 tile kernel with a fused top-k: the
    same valid top-k as the reference, zero rows (cosine distance 1) included, and the same
    answer whatever the thread count (a query's sums never depend on its group)."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((2003, 45)).astype(np.float32)
    X[[5, 700]] = 0.0
    Q = rng.standard_normal((37, 45)).astype(np.float32)
    Q[3] = 0.0
    r0 = backend.exact_search(Q, X, k=12, metric=metric, threads=1)
    check_topk(r0[0], r0[1], Q, X, 12, metric)
    for t in (0, 2):
        r = backend.exact_search(Q, X, k=12, metric=metric, threads=t)
        np.testing.assert_array_equal(r0[0], r[0])
        np.testing.assert_array_equal(r0[1], r[1])
    if metric == "cosine":
        assert np.all(r0[1][3] == 1.0)  # the zero query is at distance 1 from every row


@pytest.mark.parametrize("k", [0, -1, -10])
def test_exact_search_k_not_positive(backend, k):
    X = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=f"k must be >= 1, got {k}"):
        backend.exact_search(X[0], X, k=k)


# ---------------------------------------------------------------------------- error handling


@pytest.mark.parametrize("metric", ["xyz", "", "COSINE_", "euclidean"])
def test_unknown_metric(backend, metric):
    a = np.ones(4, dtype=np.float32)
    X = np.ones((3, 4), dtype=np.float32)
    for call in (
        lambda: backend.distance(a, a, metric),
        lambda: backend.distances(a, X, metric),
        lambda: backend.exact_search(a, X, k=2, metric=metric),
    ):
        with pytest.raises(ValueError) as ei:
            call()
        msg = str(ei.value)
        assert f"unknown metric '{metric}'" in msg
        assert "'cosine', 'ip', 'l2'" in msg


def test_dimension_mismatch(backend):
    a3 = np.ones(3, dtype=np.float32)
    a4 = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="dimension mismatch: 3 vs 4"):
        backend.distance(a3, a4, "l2")
    X5 = np.ones((6, 5), dtype=np.float32)
    for q in (a3, np.ones((2, 3), dtype=np.float32)):
        for call in (
            lambda q=q: backend.distances(q, X5, "cosine"),
            lambda q=q: backend.exact_search(q, X5, k=2),
        ):
            with pytest.raises(ValueError) as ei:
                call()
            msg = str(ei.value)
            assert "3" in msg and "5" in msg, msg


EMPTY_CASES = [
    ("distance", lambda be: be.distance(np.zeros(0, np.float32), np.zeros(0, np.float32))),
    ("distance_list", lambda be: be.distance([], [])),
    ("distances_X0", lambda be: be.distances(np.ones(4, np.float32), np.zeros((0, 4), np.float32))),
    (
        "distances_Q0",
        lambda be: be.distances(np.zeros((0, 4), np.float32), np.ones((3, 4), np.float32)),
    ),
    (
        "distances_d0",
        lambda be: be.distances(np.zeros((2, 0), np.float32), np.zeros((3, 0), np.float32)),
    ),
    (
        "exact_X0",
        lambda be: be.exact_search(np.ones(4, np.float32), np.zeros((0, 4), np.float32), k=1),
    ),
    (
        "exact_Q0",
        lambda be: be.exact_search(np.zeros((0, 4), np.float32), np.ones((3, 4), np.float32), k=1),
    ),
]


@pytest.mark.parametrize("case", EMPTY_CASES, ids=[c[0] for c in EMPTY_CASES])
def test_empty_input(backend, case):
    with pytest.raises(ValueError, match="empty"):
        case[1](backend)


def _with(arr, pos, value):
    arr = arr.copy()
    arr.flat[pos] = value
    return arr


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(backend, bad):
    rng = np.random.default_rng(6)
    a = rng.standard_normal(10).astype(np.float32)
    X = rng.standard_normal((7, 10)).astype(np.float32)
    Q = rng.standard_normal((3, 10)).astype(np.float32)
    calls = [
        lambda: backend.distance(_with(a, 9, bad), a),
        lambda: backend.distance(a, _with(a, 0, bad), "l2"),
        lambda: backend.distances(_with(a, 3, bad), X),
        lambda: backend.distances(Q, _with(X, 69, bad), "ip"),
        lambda: backend.distances(_with(Q, 15, bad), X),
        lambda: backend.exact_search(_with(Q, 29, bad), X, k=2),
        lambda: backend.exact_search(a, _with(X, 35, bad), k=2, metric="l2"),
        lambda: backend.distance(_with(a.astype(np.float64), 5, bad), a),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="NaN or infinity"):
            call()


def test_float64_overflowing_float32_is_non_finite(backend):
    """Conversion happens first (to float32): 1e39 becomes inf and must be rejected."""
    a = np.ones(4)
    big = a.copy()
    big[2] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="NaN or infinity"):
            backend.distance(big, a, "l2")


ACCEPTED_DTYPES = [
    np.float64,
    np.float16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
]


@pytest.mark.parametrize("dtype", ACCEPTED_DTYPES, ids=lambda d: np.dtype(d).name)
def test_accepted_dtypes_are_converted(backend, dtype):
    rng = np.random.default_rng(8)
    X = rng.integers(0, 7, size=(9, 13)).astype(dtype)
    q = rng.integers(0, 7, size=13).astype(dtype)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    q32 = np.ascontiguousarray(q, dtype=np.float32)
    for metric in METRICS:
        ref, sc = ref_distances(q32, X32, metric)
        assert_close(
            np.array([[backend.distance(q, X[0], metric)]]), ref[:, :1], sc[:, :1], "distance"
        )
        assert_close(backend.distances(q, X, metric), ref[0], sc[0], "distances")
        assert_close(
            backend.distances(X32[:2], X, metric),
            ref_distances(X32[:2], X32, metric)[0],
            ref_distances(X32[:2], X32, metric)[1],
            "distances mixed dtypes",
        )
        ids, _ = backend.exact_search(q, X, k=4, metric=metric)
        ids32, _ = backend.exact_search(q32, X32, k=4, metric=metric)
        np.testing.assert_array_equal(ids, ids32)


def test_float16_values_converted(backend):
    rng = np.random.default_rng(9)
    X16 = rng.standard_normal((20, 384)).astype(np.float16)
    q16 = rng.standard_normal(384).astype(np.float16)
    X = X16.astype(np.float32)
    q = q16.astype(np.float32)
    for metric in METRICS:
        ref, sc = ref_distances(q, X, metric)
        assert_close(backend.distances(q16, X16, metric), ref[0], sc[0], f"float16 {metric}")


def test_non_contiguous_inputs(backend):
    rng = np.random.default_rng(10)
    big = rng.standard_normal((30, 64)).astype(np.float32)
    X = big[::2, ::2]  # strided in both dims
    q = big[1, ::-2]  # negative stride
    F = np.asfortranarray(big[:, :32])
    Xc = np.ascontiguousarray(X)
    qc = np.ascontiguousarray(q)
    for metric in METRICS:
        ref, sc = ref_distances(qc, Xc, metric)
        assert_close(backend.distances(q, X, metric), ref[0], sc[0], "strided")
        assert_close(
            np.array([[backend.distance(q, X[3], metric)]]), ref[:, 3:4], sc[:, 3:4], "strided 1-1"
        )
        ref2, sc2 = ref_distances(F[:3], F, metric)
        assert_close(backend.distances(F[:3], F, metric), ref2, sc2, "fortran")
        ids, _ = backend.exact_search(q, X, k=5, metric=metric)
        ids_c, _ = backend.exact_search(qc, Xc, k=5, metric=metric)
        np.testing.assert_array_equal(ids, ids_c)
        # the caller's arrays are never modified
    np.testing.assert_array_equal(X, big[::2, ::2])


def test_python_lists_accepted(backend):
    a = [1.0, 2.0, 3.0]
    b = [4, 5, 6]
    assert backend.distance(a, b, "l2") == pytest.approx(27.0)
    got = backend.distances(a, [b, a, [0.0, 0.0, 1.0]], "l2")
    np.testing.assert_allclose(got, [27.0, 0.0, 1 + 4 + 4], atol=1e-5)
    got = backend.distances([a, b], [a, b], "l2")
    np.testing.assert_allclose(got, [[0, 27], [27, 0]], atol=1e-5)
    ids, dists = backend.exact_search(
        [1, 2, 3], [[4, 5, 6], [1, 2, 3], [1, 2, 4]], k=2, metric="l2"
    )
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_allclose(dists, [0.0, 1.0], atol=1e-6)


REJECTED = {
    "bool": lambda shape: np.ones(shape, dtype=bool),
    "complex64": lambda shape: np.ones(shape, dtype=np.complex64),
    "complex128": lambda shape: np.ones(shape, dtype=np.complex128),
    "object": lambda shape: np.ones(shape, dtype=object),
    "str": lambda shape: np.full(shape, "1.0"),
    "bytes": lambda shape: np.full(shape, b"1.0"),
}


@pytest.mark.parametrize("kind", list(REJECTED))
def test_rejected_dtypes_type_error(backend, kind):
    make = REJECTED[kind]
    a = np.ones(4, dtype=np.float32)
    X = np.ones((3, 4), dtype=np.float32)
    calls = [
        lambda: backend.distance(make(4), a),
        lambda: backend.distance(a, make(4), "l2"),
        lambda: backend.distances(make(4), X),
        lambda: backend.distances(a, make((3, 4)), "ip"),
        lambda: backend.exact_search(make((2, 4)), X, k=1),
        lambda: backend.exact_search(a, make((3, 4)), k=1),
    ]
    for call in calls:
        with pytest.raises(TypeError) as ei:
            call()
        if kind == "bool":
            assert "real numeric" in str(ei.value) and "bool" in str(ei.value), str(ei.value)


def test_python_list_of_bools_rejected(backend):
    with pytest.raises(TypeError):
        backend.distance([True, False], [1.0, 2.0])


# ---------------------------------------------------------------------------- native_info


SPEC_KEYS = {"native", "version", "simd", "supported", "forced", "threads", "reason"}


def test_native_info_shape(backend):
    info = backend.native_info()
    assert isinstance(info, dict)
    assert SPEC_KEYS <= set(info), f"missing keys {SPEC_KEYS - set(info)}"
    assert isinstance(info["native"], bool)
    assert isinstance(info["version"], str) and info["version"]
    assert isinstance(info["simd"], dict)
    assert set(info["simd"]) >= {"dot", "l2", "cosine"}
    assert isinstance(info["supported"], list)
    assert all(isinstance(p, str) for p in info["supported"])
    assert info["forced"] is None or isinstance(info["forced"], str)
    assert isinstance(info["threads"], int) and not isinstance(info["threads"], bool)
    assert info["threads"] >= 1
    assert info["reason"] is None or isinstance(info["reason"], str)


def test_numpy_backend_reports_not_native(numpy_backend):
    info = numpy_backend.native_info()
    assert info["native"] is False
    assert all(info["simd"][k] == "numpy" for k in ("dot", "l2", "cosine")), info["simd"]


def test_native_info_native(native):
    info = native.native_info()
    assert info["native"] is True
    assert info["reason"] is None
    assert "scalar" in info["supported"]
    assert set(info["supported"]) <= {"scalar", "avx2", "avx512"}
    for k in ("dot", "l2", "cosine"):
        assert info["simd"][k] in info["supported"], info
    forced = os.environ.get("AGENTDB_SIMD") or None
    if forced is None:
        assert info["forced"] is None


def test_package_reexports_a_backend():
    mods = list(_loader.backends().values())
    for name in ("HNSWIndex", "distance", "distances", "exact_search", "native_info"):
        assert hasattr(agentdb, name), name
    assert any(agentdb.HNSWIndex is m.HNSWIndex for m in mods)


# ------------------------------------------------------------------ native SIMD path parity

KERNEL_DIMS = list(range(1, 301)) + [
    383,
    384,
    385,
    511,
    512,
    513,
    767,
    1000,
    1023,
    1024,
    1025,
    1536,
    2047,
    2048,
    2049,
    3071,
    4095,
    4096,
]
KERNEL_SCALE = {
    # same tolerance rule as above; for "dot" we do not assume whether the kernel returns
    # dot or 1 - dot, so the scale covers both.
    "dot": lambda a, b: 1.0 + np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)),
    "l2": lambda a, b: float(a.astype(np.float64) @ a + b.astype(np.float64) @ b),
    "cosine": lambda a, b: 1.0,
    # mixed-precision kernels: b is rounded to binary16 first, identically on every path
    "dot_f16": lambda a, b: 1.0 + np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)),
    "l2_f16": lambda a, b: float(a.astype(np.float64) @ a + b.astype(np.float64) @ b),
}


@pytest.mark.parametrize("name", ["dot", "l2", "cosine", "dot_f16", "l2_f16"])
def test_simd_paths_match_scalar(native, name):
    paths = native.native_info()["supported"]
    assert "scalar" in paths
    rng = np.random.default_rng(11)
    # one buffer with slack so that a[off:off+d] is deliberately misaligned for some cases
    buf_a = rng.standard_normal(4096 + 16).astype(np.float32)
    buf_b = (rng.standard_normal(4096 + 16) * 0.5 + 0.1).astype(np.float32)
    failures = []
    for d in KERNEL_DIMS:
        off = d % 5  # 0..4 floats: 0/4/8/12/16-byte offsets
        a = buf_a[off : off + d]
        b = buf_b[3 - off % 4 : 3 - off % 4 + d]
        ref = native._kernel("scalar", name, a, b)
        tol = ATOL + RTOL * KERNEL_SCALE[name](a, b)
        for path in paths:
            got = native._kernel(path, name, a, b)
            if not abs(float(got) - float(ref)) <= tol:
                failures.append((path, d, float(got), float(ref)))
    assert not failures, f"{name}: SIMD paths disagree with scalar: {failures[:10]}"


def test_half_conversion_matches_reference_on_every_path(native):
    """float32 -> binary16 conversion: every SIMD path rounds exactly like the scalar
    reference (round to nearest even, saturating at +-65504), including subnormals."""
    rng = np.random.default_rng(14)
    vals = np.concatenate([
        rng.standard_normal(4000).astype(np.float32),
        (rng.standard_normal(1000) * 1e-6).astype(np.float32),  # half subnormals
        np.array([0.0, -0.0, 65504.0, -65504.0, 70000.0, -1e9, 6.1e-5, 5.96e-8,
                  1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11], dtype=np.float32),
    ])
    for path in native.native_info()["supported"]:
        for d in (1, 7, 16, 17, 33, len(vals)):
            assert native._kernel(path, "to_f16", vals[:d], vals[:d]) == 0.0, (path, d)


def test_half_kernels_close_to_float32(native):
    """dot_f16 differs from the exact float32 dot by no more than binary16 rounding."""
    rng = np.random.default_rng(15)
    for d in (5, 64, 384, 1000):
        a = rng.standard_normal(d).astype(np.float32)
        b = rng.standard_normal(d).astype(np.float32)
        exact = float(a.astype(np.float64) @ b)
        got = float(native._kernel("scalar", "dot_f16", a, b))
        bound = 2.0**-11 * float(np.abs(a.astype(np.float64)) @ np.abs(b)) + 1e-5
        assert abs(got - exact) <= bound, (d, got, exact)


def test_scalar_kernel_semantics(native):
    """The scalar reference itself computes the right quantities."""
    rng = np.random.default_rng(12)
    for d in (1, 7, 64, 300, 4096):
        a = rng.standard_normal(d).astype(np.float32)
        b = rng.standard_normal(d).astype(np.float32)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        dot = float(a64 @ b64)
        l2 = float(((a64 - b64) ** 2).sum())
        cos = dot / np.sqrt((a64 @ a64) * (b64 @ b64))
        tdot = ATOL + RTOL * KERNEL_SCALE["dot"](a, b)
        got = float(native._kernel("scalar", "dot", a, b))
        assert abs(got - dot) <= tdot or abs(got - (1 - dot)) <= tdot, (d, got, dot)
        got = float(native._kernel("scalar", "l2", a, b))
        assert abs(got - l2) <= ATOL + RTOL * KERNEL_SCALE["l2"](a, b), (d, got, l2)
        got = float(native._kernel("scalar", "cosine", a, b))
        assert abs(got - (1 - cos)) <= 2e-4 or abs(got - cos) <= 2e-4, (d, got, cos)


def test_set_simd_each_path(native):
    info0 = native.native_info()
    original = info0["simd"]["dot"]
    rng = np.random.default_rng(13)
    X = rng.standard_normal((50, 389)).astype(np.float32)
    Q = rng.standard_normal((4, 389)).astype(np.float32)
    try:
        for path in info0["supported"]:
            native._set_simd(path)
            info = native.native_info()
            assert all(info["simd"][k] == path for k in ("dot", "l2", "cosine")), (
                path,
                info["simd"],
            )
            for metric in METRICS:
                ref, sc = ref_distances(Q, X, metric)
                assert_close(native.distances(Q, X, metric), ref, sc, f"{path} {metric}")
                assert_close(
                    np.array([[native.distance(Q[0], X[0], metric)]]),
                    ref[:1, :1],
                    sc[:1, :1],
                    f"{path} {metric} 1-1",
                )
                ids, dists = native.exact_search(Q, X, k=7, metric=metric)
                check_topk(ids, dists, Q, X, 7, metric)
    finally:
        native._set_simd(original)
    assert native.native_info()["simd"]["dot"] == original


def test_set_simd_rejects_unknown_path(native):
    before = native.native_info()["simd"]
    with pytest.raises((ValueError, RuntimeError)):
        native._set_simd("bogus")
    assert native.native_info()["simd"] == before
