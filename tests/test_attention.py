"""Attention kernels (agentdb.engines.attention) on both backends against float64 references.

Every test taking the ``attn`` fixture runs on the numpy fallback and on the native extension
(when built; under ``AGENTDB_REQUIRE_NATIVE=1`` a missing native backend FAILS). The
references below are written out in float64 on the *same* float32 inputs, straight from the
definitions (the hyperbolic one uses Mobius addition literally).

Tolerance model: a float32 logit ``scale * <q, k>`` is off by at most ~``2e-6 * scale *
sum_i |q_i k_i|`` (blocked float32 sums); a softmax weight then moves by at most twice the
largest logit error (relatively), and an output (a convex combination of value rows) by that
times ``max |V|``. On top of it we allow ``1e-5`` relative for exp / accumulation rounding.
"""

from __future__ import annotations

import doctest
import importlib
import math
import threading
import time

import numpy as np
import pytest
from _requires import required, unavailable
from agentdb.engines import attention
from agentdb.engines import loader as _loader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ATTN = _loader.attention_backends()
NAMES = [n for n in ("numpy", "native") if n in ATTN]
REL = 1e-5
LOGIT_EPS = 2e-6

HYP = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=["numpy", "native"])
def attn(request):
    """The attention backend module under test."""
    mod = ATTN.get(request.param)
    if mod is None:
        unavailable("NATIVE", "native attention backend not available "
                    f"({_loader.native_info().get('reason')})")
    return mod


@pytest.fixture
def native_attn():
    mod = ATTN.get("native")
    if mod is None:
        unavailable("NATIVE", "native attention backend not available")
    return mod


# ---------------------------------------------------------------------------- references


def ref_sdpa(Q, K, V, scale=None):
    """float64 (out, weights, logit error bound) for float32 inputs (2-D Q)."""
    Q, K, V = (np.asarray(a, dtype=np.float32).astype(np.float64) for a in (Q, K, V))
    s = 1.0 / math.sqrt(Q.shape[1]) if scale is None else scale
    S = (Q @ K.T) * s
    err = LOGIT_EPS * s * (np.abs(Q) @ np.abs(K).T)
    S = S - S.max(axis=1, keepdims=True)
    W = np.exp(S)
    W /= W.sum(axis=1, keepdims=True)
    return W @ V, W, err.max(axis=1)


def ref_mha(Q, K, V, h, scale=None):
    """float64 per-head reference: (out (m, dv), weights (h, m, n), logit error (h, m))."""
    d, dv = Q.shape[1], V.shape[1]
    dh, dvh = d // h, dv // h
    outs, ws, errs = [], [], []
    for i in range(h):
        o, w, e = ref_sdpa(
            Q[:, i * dh : (i + 1) * dh], K[:, i * dh : (i + 1) * dh],
            V[:, i * dvh : (i + 1) * dvh], scale,
        )
        outs.append(o)
        ws.append(w)
        errs.append(e)
    return np.concatenate(outs, axis=1), np.stack(ws), np.stack(errs)


def assert_attn_close(got, ref, logit_err, vmax, what=""):
    """|got - ref| <= 1e-6 + vmax * (2 * logit_err + REL), per query row."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite output"
    tol = 1e-6 + vmax * (2.0 * np.asarray(logit_err)[..., None] + REL)
    err = np.abs(got - ref)
    assert (err <= tol).all(), f"{what}: max err {err.max():.3g}, tol {np.min(tol):.3g}"


def assert_weights_close(got, ref, logit_err, what=""):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    tol = 1e-7 + ref * (2.0 * np.asarray(logit_err)[..., None] + REL)
    err = np.abs(got - ref)
    assert (err <= tol).all(), f"{what}: max weight err {err.max():.3g}"


def mobius_add(x, y, c):
    xy = (x * y).sum(-1, keepdims=True)
    xx = (x * x).sum(-1, keepdims=True)
    yy = (y * y).sum(-1, keepdims=True)
    num = (1 + 2 * c * xy + c * yy) * x + (1 - c * xx) * y
    return num / (1 + 2 * c * xy + c * c * xx * yy)


def poincare_dist(x, y, c):
    n = np.linalg.norm(mobius_add(-x, y, c), axis=-1)
    return 2.0 / math.sqrt(c) * np.arctanh(math.sqrt(c) * n)


def ref_hyperbolic(Q, K, V, c, beta):
    Q, K, V = (np.asarray(a, dtype=np.float32).astype(np.float64) for a in (Q, K, V))
    D = poincare_dist(Q[:, None, :], K[None, :, :], c)  # (m, n)
    L = -beta * D
    W = np.exp(L - L.max(axis=1, keepdims=True))
    W /= W.sum(axis=1, keepdims=True)
    sc = math.sqrt(c)
    vn = np.linalg.norm(V, axis=1, keepdims=True)
    logv = np.where(vn > 0, np.arctanh(sc * vn) / np.where(vn > 0, sc * vn, 1), 1.0) * V
    U = W @ logv
    un = np.linalg.norm(U, axis=1, keepdims=True)
    f = np.where(un > 0, np.minimum(np.tanh(sc * un), 1 - 1e-5) / np.where(un > 0, sc * un, 1), 0)
    return U * f, W, D


def ref_moe(X, G, b, k):
    X64 = np.atleast_2d(np.asarray(X, dtype=np.float32)).astype(np.float64)
    L = X64 @ np.asarray(G, dtype=np.float32).astype(np.float64)
    if b is not None:
        L = L + np.asarray(b, dtype=np.float32)
    ids = np.argsort(-L, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(L, ids, axis=1)
    w = np.exp(top - top[:, :1])
    return ids, w / w.sum(axis=1, keepdims=True), L


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def in_ball(rng, n, d, c=1.0, max_norm=0.9):
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    r = rng.uniform(0.0, max_norm, size=(n, 1)) / math.sqrt(c)
    return (x * r).astype(np.float32)


# ---------------------------------------------------------------------------- sdpa


SHAPES = [  # (m, n, d, dv)
    (1, 1, 1, 1),
    (1, 5, 3, 2),
    (3, 1, 8, 4),
    (5, 17, 33, 7),
    (16, 64, 64, 64),
    (21, 300, 384, 48),
    (2, 5000, 384, 384),
]


@pytest.mark.parametrize("m,n,d,dv", SHAPES)
def test_sdpa_matches_reference(attn, m, n, d, dv):
    rng = np.random.default_rng(m * 1000 + n + d)
    Q, K, V = rand(rng, m, d, scale=2.0), rand(rng, n, d), rand(rng, n, dv)
    ref, W, err = ref_sdpa(Q, K, V)
    vmax = np.abs(V).max()
    out, w = attn.sdpa(Q, K, V, return_weights=True)
    assert out.dtype == np.float32 and w.dtype == np.float32
    assert_attn_close(out, ref, err, vmax, "sdpa")
    assert_weights_close(w, W, err, "sdpa weights")
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    assert_attn_close(attn.sdpa(Q, K, V), ref, err, vmax, "sdpa (no weights)")
    # explicit scale, and the single-query fast path (1-D query: no query axis)
    ref2, W2, err2 = ref_sdpa(Q, K, V, scale=0.3)
    o1, w1 = attn.sdpa(Q[0], K, V, scale=0.3, return_weights=True)
    assert o1.shape == (dv,) and w1.shape == (n,)
    assert_attn_close(o1[None], ref2[:1], err2[:1], vmax, "sdpa 1-D")
    assert_weights_close(w1[None], W2[:1], err2[:1], "sdpa 1-D weights")


def test_sdpa_single_query_many_keys_and_threads(attn):
    rng = np.random.default_rng(3)
    K, V = rand(rng, 12_345, 384), rand(rng, 12_345, 96)
    q = K[77] * 3  # a clear winner plus a long tail
    ref, W, err = ref_sdpa(q[None], K, V)
    for threads in (1, 2, 0):
        out, w = attn.sdpa(q, K, V, return_weights=True, threads=threads)
        assert_attn_close(out[None], ref, err, np.abs(V).max(), f"threads={threads}")
        assert_weights_close(w[None], W, err, f"weights threads={threads}")


def test_sdpa_on_real_embeddings(attn, shared_data):
    K = shared_data.base[:10_000]
    Q = shared_data.queries[:8]
    ref, W, err = ref_sdpa(Q, K, K, scale=20.0)
    out, w = attn.sdpa(Q, K, K, scale=20.0, return_weights=True)
    assert_attn_close(out, ref, err, np.abs(K).max(), "minilm")
    assert_weights_close(w, W, err, "minilm weights")


# ---------------------------------------------------------------------------- multi-head


@pytest.mark.parametrize("h", [1, 2, 3, 4, 8, 24])
def test_multi_head_matches_reference(attn, h):
    rng = np.random.default_rng(h)
    m, n, d, dv = 6, 129, 48, 24
    Q, K, V = rand(rng, m, d, scale=2.0), rand(rng, n, d), rand(rng, n, dv)
    ref, W, err = ref_mha(Q, K, V, h)
    out, w = attn.multi_head_attention(Q, K, V, heads=h, return_weights=True)
    assert out.shape == (m, dv) and w.shape == (h, m, n)
    # the output column block of head i is bounded by that head's logit error
    for i in range(h):
        cols = slice(i * dv // h, (i + 1) * dv // h)
        assert_attn_close(out[:, cols], ref[:, cols], err[i], np.abs(V).max(), f"head {i}")
    assert_weights_close(w, W, err, "mha weights")
    o1, w1 = attn.multi_head_attention(Q[2], K, V, heads=h, return_weights=True, scale=0.5)
    ref1, W1, err1 = ref_mha(Q[2:3], K, V, h, scale=0.5)
    assert o1.shape == (dv,) and w1.shape == (h, n)
    assert_weights_close(w1[:, None, :], W1, err1, "mha 1-D weights")


def test_multi_head_h_equals_d(attn):
    rng = np.random.default_rng(5)
    Q, K, V = rand(rng, 3, 16), rand(rng, 40, 16), rand(rng, 40, 16)
    ref, W, err = ref_mha(Q, K, V, 16)
    out = attn.multi_head_attention(Q, K, V, heads=16)
    assert_attn_close(out, ref, err.max(axis=0), np.abs(V).max(), "h=d")


@pytest.mark.parametrize("name", NAMES)
def test_multi_head_projections(name):
    rng = np.random.default_rng(9)
    X, M = rand(rng, 4, 10), rand(rng, 30, 12)
    wq, wk, wv, wo = rand(rng, 10, 16), rand(rng, 12, 16), rand(rng, 12, 8), rand(rng, 8, 5)
    out, w = attention.multi_head_attention(
        X, M, M, heads=4, wq=wq, wk=wk, wv=wv, wo=wo, return_weights=True, backend=name
    )
    Q, K, V = X @ wq, M @ wk, M @ wv
    ref, W, err = ref_mha(Q, K, V, 4)
    assert out.shape == (4, 5) and w.shape == (4, 4, 30)
    assert_weights_close(w, W, err, "projected weights")
    np.testing.assert_allclose(out, ref @ wo.astype(np.float64), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="Wq must have shape"):
        attention.multi_head_attention(X, M, M, heads=2, wq=wk, backend=name)
    with pytest.raises(ValueError, match="Wo must have shape"):
        attention.multi_head_attention(X, M, M, heads=2, wk=wk, wq=wq, wo=wq, backend=name)


# ---------------------------------------------------------------------------- flash


# block_size=1 runs on the small shapes only: over thousands of keys it just tests patience.
FLASH_CASES = [(*shape, block) for shape in SHAPES for block in (1, 7, 64, 256, 100_000)
               if block > 1 or shape[1] <= 500]


@pytest.mark.parametrize("m,n,d,dv,block", FLASH_CASES)
def test_flash_matches_sdpa(attn, m, n, d, dv, block):
    rng = np.random.default_rng(n + block)
    Q, K, V = rand(rng, m, d, scale=2.0), rand(rng, n, d), rand(rng, n, dv)
    ref, _, err = ref_sdpa(Q, K, V)
    vmax = np.abs(V).max()
    out = attn.flash_attention(Q, K, V, block_size=block)
    assert out.shape == (m, dv) and out.dtype == np.float32
    assert_attn_close(out, ref, err, vmax, f"flash block={block}")
    # flash vs the two-pass kernel of the same backend: ~1e-5 relative
    np.testing.assert_allclose(out, attn.sdpa(Q, K, V), rtol=0, atol=REL * vmax + 1e-7)
    assert attn.flash_attention(Q[0], K, V, block_size=block).shape == (dv,)


def test_large_logits_do_not_overflow(attn):
    """Integer data: logits are exact in float32 in any summation order, in [~80, ~900], far
    past exp's float32 overflow (88.7). Every kernel must match the float64 reference."""
    rng = np.random.default_rng(17)
    d, n = 32, 1000
    K = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    Q = (K[[5, 500, 999]] * 3 + rng.integers(-1, 2, size=(3, d))).astype(np.float32)
    V = rand(rng, n, 8)
    ref, W, _ = ref_sdpa(Q, K, V, scale=1.0)
    logits = Q.astype(np.float64) @ K.T.astype(np.float64)
    assert logits.max() > 200 and (logits.max(axis=1) > 80).all()
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(logits.astype(np.float32))).any()  # the naive way overflows
    exact = np.zeros(3)
    for block in (7, 256):
        got = attn.flash_attention(Q, K, V, scale=1.0, block_size=block)
        assert_attn_close(got, ref, exact, np.abs(V).max(), f"flash {block}")
    out, w = attn.sdpa(Q, K, V, scale=1.0, return_weights=True)
    assert_attn_close(out, ref, exact, np.abs(V).max(), "sdpa")
    assert_weights_close(w, W, exact, "sdpa weights")
    out, w = attn.multi_head_attention(Q, K, V, heads=2, scale=1.0, return_weights=True)
    refh, Wh, _ = ref_mha(Q, K, V, 2, scale=1.0)
    assert_attn_close(out, refh, exact, np.abs(V).max(), "mha")
    # logits near 1000 that differ by O(1): the weights are still exact
    big = np.full((4, d), 10.0, dtype=np.float32)
    big[:, 0] += np.arange(4)
    ref, W, _ = ref_sdpa(big[:1], big, V[:4], scale=1.0)
    out, w = attn.sdpa(big[:1], big, V[:4], scale=1.0, return_weights=True)
    assert_weights_close(w, W, np.zeros(1), "near-equal large logits")


def test_overflowing_logits_raise(attn):
    K = np.full((3, 4), 1e20, dtype=np.float32)
    for fn in (attn.sdpa, attn.flash_attention):
        with pytest.raises(ValueError, match="overflow"):
            fn(K, K, K)
    with pytest.raises(ValueError, match="overflow"):
        attn.multi_head_attention(K, K, K, heads=2)


# ---------------------------------------------------------------------------- hyperbolic


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_hyperbolic_matches_reference(attn, c, beta):
    rng = np.random.default_rng(int(c * 10 + beta))
    m, n, d, dv = 5, 300, 24, 6
    Q, K, V = in_ball(rng, m, d, c), in_ball(rng, n, d, c), in_ball(rng, n, dv, c, 0.95)
    Q[1] = K[3]  # a query equal to a key: distance 0, the cancellation-prone case
    ref, W, D = ref_hyperbolic(Q, K, V, c, beta)
    out, w = attn.hyperbolic_attention(Q, K, V, c=c, beta=beta, return_weights=True)
    np.testing.assert_allclose(w, W, rtol=5e-5, atol=1e-7)
    np.testing.assert_allclose(out, ref, rtol=0, atol=5e-6)
    assert (c * (out.astype(np.float64) ** 2).sum(1) < 1).all()
    o1 = attn.hyperbolic_attention(Q[1], K, V, c=c, beta=beta)
    np.testing.assert_allclose(o1, ref[1], rtol=0, atol=5e-6)


def test_hyperbolic_distance_formula_is_the_mobius_one():
    """The stable acosh form the kernels use equals (2/sqrt c) artanh(sqrt c |-x (+) y|)."""
    rng = np.random.default_rng(2)
    for c in (0.3, 1.0, 3.0):
        x, y = in_ball(rng, 50, 7, c, 0.99).astype(np.float64), in_ball(rng, 50, 7, c, 0.99)
        y = y.astype(np.float64)
        t = c * ((x - y) ** 2).sum(1) / ((1 - c * (x * x).sum(1)) * (1 - c * (y * y).sum(1)))
        np.testing.assert_allclose(np.arccosh(1 + 2 * t) / math.sqrt(c), poincare_dist(x, y, c),
                                   rtol=1e-9)


def test_hyperbolic_weights_prefer_near_points(attn):
    pts = attention.expmap0(np.array([[1.0, 0], [1.2, 0.1], [-1, 0], [0, -2]]))
    _, w = attn.hyperbolic_attention(pts[0], pts, pts, beta=3.0, return_weights=True)
    assert list(np.argsort(-w)) == [0, 1, 2, 3] or list(np.argsort(-w))[:2] == [0, 1]
    _, w0 = attn.hyperbolic_attention(pts[0], pts, pts, beta=0.0, return_weights=True)
    np.testing.assert_allclose(w0, 0.25, rtol=1e-6)


def test_hyperbolic_rejects_points_outside_the_ball(attn):
    rng = np.random.default_rng(1)
    K = in_ball(rng, 10, 4)
    bad = K.copy()
    bad[7] = [1.0, 0.0, 0.0, 0.0]  # on the boundary
    with pytest.raises(ValueError, match="keys row 7 is not strictly inside the Poincare ball"):
        attn.hyperbolic_attention(K[0], bad, K)
    with pytest.raises(ValueError, match="values row 7"):
        attn.hyperbolic_attention(K[0], K, bad)
    with pytest.raises(ValueError, match="queries row 0"):
        attn.hyperbolic_attention(bad[7] * 2, K, K)
    with pytest.raises(ValueError, match="curvature c=4"):
        attn.hyperbolic_attention(K[0], K * 1.2, K, c=4.0)  # inside for c=1, not for c=4
    for c in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="c must be a finite number > 0"):
            attn.hyperbolic_attention(K[0], K, K, c=c)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        attn.hyperbolic_attention(K[0], K, K, beta=-1.0)


def test_expmap_logmap_project():
    rng = np.random.default_rng(4)
    V = rand(rng, 20, 5)
    for c in (0.5, 1.0, 2.0):
        X = attention.expmap0(V, c=c)
        assert (c * (X.astype(np.float64) ** 2).sum(1) < 1).all()
        np.testing.assert_allclose(attention.logmap0(X, c=c), V, rtol=1e-4, atol=1e-5)
        far = attention.expmap0(V * 100, c=c)  # tanh saturates: clipped strictly inside
        radius = np.sqrt(c) * np.linalg.norm(far.astype(np.float64), axis=1)
        assert (radius <= 1 - 1e-5 + 1e-7).all()
    assert attention.expmap0(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]
    P = attention.project(V * 10)
    assert np.allclose(np.linalg.norm(P, axis=1), 1 - 1e-5, atol=1e-6)
    small = V / (np.linalg.norm(V, axis=1, keepdims=True) * 2)
    np.testing.assert_array_equal(attention.project(small), small)
    with pytest.raises(ValueError, match="strictly inside"):
        attention.logmap0([1.0, 0.0])
    with pytest.raises(ValueError, match="NaN or infinity"):
        attention.expmap0([np.nan, 0.0])
    with pytest.raises(TypeError, match="real numeric"):
        attention.project(np.array(["a"]))


# ---------------------------------------------------------------------------- MoE gating


@pytest.mark.parametrize("m,d,E,k", [(1, 1, 1, 1), (7, 5, 4, 2), (1024, 384, 16, 2),
                                     (33, 20, 9, 9), (3, 8, 64, 5)])
def test_moe_matches_reference(attn, m, d, E, k):
    rng = np.random.default_rng(m + E)
    X, G, b = rand(rng, m, d), rand(rng, d, E), rand(rng, E)
    for bias in (None, b):
        ids, w = attn.moe_gating(X, G, k=k, bias=bias)
        assert ids.dtype == np.int64 and w.dtype == np.float32 and ids.shape == (m, k)
        rids, rw, L = ref_moe(X, G, bias, k)
        # rows whose k-th / (k+1)-th logits are closer than float32 rounding may differ
        srt = -np.sort(-L, axis=1)
        gaps = srt[:, :k][:, 1:] - srt[:, :k][:, :-1] if k > 1 else np.zeros((m, 0))
        margin = np.abs(X).astype(np.float64) @ np.abs(G) * 1e-5 + 1e-6
        clear = np.ones(m, dtype=bool) if k == E else (srt[:, k - 1] - srt[:, k] > margin.max(1))
        clear &= (np.abs(gaps) > margin.max(1, keepdims=True)).all(axis=1) | (k == 1)
        assert clear.mean() > 0.95
        np.testing.assert_array_equal(ids[clear], rids[clear])
        np.testing.assert_allclose(w[clear], rw[clear], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
        assert (np.diff(w, axis=1) <= 1e-7).all()  # best first
    i1, w1 = attn.moe_gating(X[0], G, k=k, bias=b)
    assert i1.shape == (k,) and w1.shape == (k,)


def test_moe_ties_go_to_the_lower_expert_id(attn):
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    G = np.array([[2.0, 2.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    ids, w = attn.moe_gating(X, G, k=3)
    # row 0 logits [2, 2, 1, 2, 0]; row 1 all 1; row 2 [3, 3, 2, 3, 1]
    assert ids.tolist() == [[0, 1, 3], [0, 1, 2], [0, 1, 3]]
    np.testing.assert_allclose(w, 1 / 3, rtol=1e-6)
    for _ in range(3):  # deterministic
        assert attn.moe_gating(X, G, k=3)[0].tolist() == ids.tolist()
    ids, w = attn.moe_gating(X, G, k=2, bias=[0, 0, 0, 0.5, 0])
    assert ids.tolist() == [[3, 0], [3, 0], [3, 0]]


def test_moe_bad_inputs(attn):
    X, G = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    for k in (0, 5, -1):
        with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
            attn.moe_gating(X, G, k=k)
    with pytest.raises(TypeError, match="k must be an int"):
        attn.moe_gating(X, G, k=2.0)
    with pytest.raises(ValueError, match="dimension mismatch"):
        attn.moe_gating(X, G.T, k=2)
    with pytest.raises(ValueError, match="bias must have shape"):
        attn.moe_gating(X, G, k=2, bias=np.ones(3))
    with pytest.raises(ValueError, match="gate must be 2-D"):
        attn.moe_gating(X, np.ones(3), k=1)
    with pytest.raises(ValueError, match="NaN or infinity"):
        attn.moe_gating(np.array([[np.nan, 0, 0]]), G)
    with pytest.raises(ValueError, match="overflow"):
        attn.moe_gating(np.full((1, 3), 1e30), np.full((3, 4), 1e30), k=1)


# ---------------------------------------------------------------------------- bad input

BAD_QKV = [
    # (queries, keys, values, exception, message regex)
    (np.ones(3), np.ones((4, 3)), np.ones((5, 2)), ValueError, "same number of rows"),
    (np.ones(3), np.ones((4, 2)), np.ones((4, 2)), ValueError, "dimension mismatch"),
    (np.ones(3), np.ones(3), np.ones((1, 2)), ValueError, "keys must be 2-D"),
    (np.ones(3), np.ones((1, 3)), np.ones(2), ValueError, "values must be 2-D"),
    (np.ones((2, 2, 3)), np.ones((4, 3)), np.ones((4, 2)), ValueError, "queries must be 1-D or"),
    (np.ones((0, 3)), np.ones((4, 3)), np.ones((4, 2)), ValueError, "queries is empty"),
    (np.ones(3), np.ones((0, 3)), np.ones((0, 2)), ValueError, "keys is empty"),
    (np.ones(3), np.ones((4, 3)), np.ones((4, 0)), ValueError, "values is empty"),
    ([np.nan, 0, 0], np.ones((4, 3)), np.ones((4, 2)), ValueError, "queries contains NaN"),
    (np.ones(3), [[0, np.inf, 0]], np.ones((1, 2)), ValueError, "keys contains NaN or infinity"),
    (np.ones(3), np.ones((1, 3)), [[np.nan, 1]], ValueError, "values contains NaN or infinity"),
    (np.ones(3, bool), np.ones((4, 3)), np.ones((4, 2)), TypeError, "real numeric"),
    (np.ones(3), np.ones((4, 3), complex), np.ones((4, 2)), TypeError, "real numeric"),
    (["a", "b"], np.ones((4, 2)), np.ones((4, 2)), TypeError, "real numeric"),
]


@pytest.mark.parametrize("q,k,v,exc,msg", BAD_QKV)
@pytest.mark.parametrize("fn", ["sdpa", "flash_attention", "multi_head_attention"])
def test_bad_inputs_raise_clear_errors(attn, fn, q, k, v, exc, msg):
    kwargs = {"heads": 1} if fn == "multi_head_attention" else {}
    with pytest.raises(exc, match=msg):
        getattr(attn, fn)(q, k, v, **kwargs)


@pytest.mark.parametrize("q,k,v,exc,msg", BAD_QKV)
def test_bad_inputs_hyperbolic(attn, q, k, v, exc, msg):
    scale = 0.1 if exc is ValueError else 1  # keep the finite points inside the ball
    def shrink(a):
        a = np.asarray(a)
        return a * scale if a.dtype.kind == "f" else a
    with pytest.raises(exc, match=msg):
        attn.hyperbolic_attention(shrink(q), shrink(k), shrink(v))


def test_bad_parameters(attn):
    Q, K = np.ones((2, 6), np.float32), np.ones((3, 6), np.float32)
    with pytest.raises(ValueError, match="heads=4 does not divide the query/key dim 6"):
        attn.multi_head_attention(Q, K, K, heads=4)
    with pytest.raises(ValueError, match="heads=3 does not divide the value dim 4"):
        attn.multi_head_attention(Q, K, np.ones((3, 4)), heads=3)
    with pytest.raises(ValueError, match="heads must be >= 1"):
        attn.multi_head_attention(Q, K, K, heads=0)
    with pytest.raises(TypeError, match="heads must be an int"):
        attn.multi_head_attention(Q, K, K, heads=True)
    for s in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            attn.sdpa(Q, K, K, scale=s)
    with pytest.raises(TypeError, match="scale must be a real number"):
        attn.sdpa(Q, K, K, scale="1")
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        attn.flash_attention(Q, K, K, block_size=0)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        attn.sdpa(Q, K, K, threads=-1)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        attn.moe_gating(Q, K.T, k=1, threads=-2)


def test_non_contiguous_and_other_dtypes_are_copied(attn):
    rng = np.random.default_rng(8)
    base = rng.standard_normal((40, 20))
    K64 = base[::2, ::2]  # float64, strided
    Q = np.asfortranarray(rng.standard_normal((3, 10)))
    V = np.arange(20 * 4).reshape(20, 4)[:, ::-1]  # int, negative strides
    want = attn.sdpa(np.ascontiguousarray(Q, np.float32), np.ascontiguousarray(K64, np.float32),
                     np.ascontiguousarray(V, np.float32))
    got = attn.sdpa(Q, K64, V)
    np.testing.assert_array_equal(got, want)
    got = attn.flash_attention(Q.tolist(), K64, V, block_size=3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- properties


@HYP
@given(
    m=st.integers(1, 6), n=st.integers(1, 40), h=st.integers(1, 4), dh=st.integers(1, 9),
    dvh=st.integers(1, 5), block=st.integers(1, 50), seed=st.integers(0, 2**31 - 1),
    one=st.booleans(), scale=st.one_of(st.none(), st.floats(0.01, 5.0)),
)
def test_property_shapes_and_values(attn, m, n, h, dh, dvh, block, seed, one, scale):
    rng = np.random.default_rng(seed)
    d, dv = h * dh, h * dvh
    Q, K, V = rand(rng, m, d, scale=2.0), rand(rng, n, d), rand(rng, n, dv)
    ref, W, err = ref_mha(Q, K, V, h, scale)
    vmax = np.abs(V).max()
    q = Q[0] if one else Q
    sl = slice(0, 1) if one else slice(None)
    out, w = attn.multi_head_attention(q, K, V, heads=h, scale=scale, return_weights=True)
    assert out.shape == ((dv,) if one else (m, dv))
    assert w.shape == ((h, n) if one else (h, m, n))
    wr = w[:, None, :] if one else w
    assert_weights_close(wr, W[:, sl], err[:, sl], "mha weights")
    np.testing.assert_allclose(wr.sum(axis=-1), 1.0, rtol=1e-5)
    assert_attn_close(np.atleast_2d(out), ref[sl], err[:, sl].max(axis=0), vmax, "mha")
    if h == 1:
        s_out = attn.sdpa(q, K, V, scale=scale)
        f_out = attn.flash_attention(q, K, V, scale=scale, block_size=block)
        assert_attn_close(np.atleast_2d(s_out), ref[sl], err[0, sl], vmax, "sdpa")
        assert_attn_close(np.atleast_2d(f_out), ref[sl], err[0, sl], vmax, "flash")


@HYP
@given(m=st.integers(1, 4), n=st.integers(1, 30), d=st.integers(1, 8), dv=st.integers(1, 4),
       c=st.floats(0.1, 4.0), beta=st.floats(0.0, 5.0), seed=st.integers(0, 2**31 - 1))
def test_property_hyperbolic(attn, m, n, d, dv, c, beta, seed):
    rng = np.random.default_rng(seed)
    Q, K, V = in_ball(rng, m, d, c), in_ball(rng, n, d, c), in_ball(rng, n, dv, c)
    ref, W, _ = ref_hyperbolic(Q, K, V, c, beta)
    out, w = attn.hyperbolic_attention(Q, K, V, c=c, beta=beta, return_weights=True)
    np.testing.assert_allclose(w, W, rtol=5e-5, atol=1e-7)
    np.testing.assert_allclose(out, ref, rtol=0, atol=5e-6)


@HYP
@given(m=st.integers(1, 5), d=st.integers(1, 6), E=st.integers(1, 10), data=st.data())
def test_property_moe_integer_logits(attn, m, d, E, data):
    """Small-integer data makes logits exact (ties included): ids must equal the reference."""
    k = data.draw(st.integers(1, E))
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 3, size=(m, d)).astype(np.float32)
    G = rng.integers(-2, 3, size=(d, E)).astype(np.float32)
    ids, w = attn.moe_gating(X, G, k=k)
    rids, rw, _ = ref_moe(X, G, None, k)
    np.testing.assert_array_equal(ids, rids)
    np.testing.assert_allclose(w, rw, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- native only


def test_every_simd_path_matches_the_reference(native_attn):
    info = native_attn.native_info()
    original = info["simd"]["dot"]
    rng = np.random.default_rng(21)
    Q, K, V = rand(rng, 9, 37, scale=2.0), rand(rng, 523, 37), rand(rng, 523, 19)
    ref, W, err = ref_sdpa(Q, K, V)
    Qb, Kb, Vb = in_ball(rng, 3, 13), in_ball(rng, 50, 13), in_ball(rng, 50, 5)
    href, hW, _ = ref_hyperbolic(Qb, Kb, Vb, 1.0, 2.0)
    X, G = rand(rng, 70, 37), rand(rng, 37, 11)
    mids = native_attn.moe_gating(X, G, k=3)[0]
    try:
        for path in info["supported"]:
            native_attn._set_simd(path)
            out, w = native_attn.sdpa(Q, K, V, return_weights=True)
            assert_attn_close(out, ref, err, np.abs(V).max(), path)
            assert_weights_close(w, W, err, path)
            for block in (5, 64):
                out = native_attn.flash_attention(Q, K, V, block_size=block)
                assert_attn_close(out, ref, err, np.abs(V).max(), f"{path} flash")
            out = native_attn.sdpa(Q[4], K, V)
            assert_attn_close(out[None], ref[4:5], err[4:5], np.abs(V).max(), f"{path} 1-D")
            o, w = native_attn.hyperbolic_attention(Qb, Kb, Vb, beta=2.0, return_weights=True)
            np.testing.assert_allclose(w, hW, rtol=5e-5, atol=1e-7)
            np.testing.assert_allclose(o, href, atol=5e-6)
            ids, _ = native_attn.moe_gating(X, G, k=3)
            assert (ids == mids).mean() > 0.99, path
    finally:
        native_attn._set_simd(original)


def test_native_releases_the_gil(native_attn):
    """While one thread is inside a long native call, another thread keeps running Python
    code: some of its loop iterations fall in the middle half of the call."""
    rng = np.random.default_rng(0)
    K = rand(rng, 60_000, 384)
    q = rand(rng, 16, 384)
    span: list[float] = []
    done = threading.Event()

    def work():
        span.append(time.perf_counter())
        native_attn.sdpa(q, K, K, threads=1)
        span.append(time.perf_counter())
        done.set()

    stamps = []
    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    t.join()
    t0, t1 = span
    if t1 - t0 < 0.01:
        pytest.skip(f"the call is too fast ({(t1 - t0) * 1e3:.1f} ms) to observe the GIL")
    lo, hi = t0 + 0.25 * (t1 - t0), t1 - 0.25 * (t1 - t0)
    inside = sum(lo <= x <= hi for x in stamps)
    assert inside > 0, f"no Python progress during the middle of a {(t1 - t0) * 1e3:.0f} ms call"


def test_native_split_keys_equals_single_thread(native_attn):
    rng = np.random.default_rng(12)
    K, V = rand(rng, 20_000, 64), rand(rng, 20_000, 32)
    q = K[123] * 2
    o1, w1 = native_attn.sdpa(q, K, V, threads=1, return_weights=True)
    o2, w2 = native_attn.sdpa(q, K, V, threads=4, return_weights=True)
    np.testing.assert_allclose(o1, o2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-9)
    f1 = native_attn.flash_attention(q, K, V, threads=1)
    f2 = native_attn.flash_attention(q, K, V, threads=4)
    np.testing.assert_allclose(f1, f2, rtol=0, atol=1e-6)


def test_loader_prefers_native_attention():
    if "native" in ATTN:
        assert _loader.attention_backend() is ATTN["native"]
    else:
        assert _loader.attention_backend() is ATTN["numpy"]
        assert not required("NATIVE"), "AGENTDB_REQUIRE_NATIVE=1 but no native attention"
    with pytest.raises(ValueError, match="unknown backend"):
        attention.scaled_dot_product_attention(np.ones(2), np.ones((1, 2)), np.ones((1, 1)),
                                               backend="cuda")


# ---------------------------------------------------------------------------- service


def ref_rerank(q, X, heads, T, prior=None):
    q = q / np.linalg.norm(q)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    Xn = X / np.where(n > 0, n, 1)
    dh = len(q) // heads
    a = np.zeros(len(X))
    for h in range(heads):
        s = heads / T * (Xn[:, h * dh : (h + 1) * dh] @ q[h * dh : (h + 1) * dh])
        e = np.exp(s - s.max())
        a += e / e.sum() / heads
    if prior is not None:
        a = a * prior / (a * prior).sum()
    return a


@pytest.mark.parametrize("name", NAMES)
def test_service_rerank(name):
    svc = attention.AttentionService(temperature=0.1, backend=name)
    rng = np.random.default_rng(30)
    X = rand(rng, 200, 384)
    q = X[17] + rand(rng, 384, scale=0.5)
    for heads in (1, 4, 8):
        order, scores = svc.rerank(q, X, heads=heads)
        ref = ref_rerank(q.astype(np.float64), X.astype(np.float64), heads, 0.1)
        assert order[0] == 17
        np.testing.assert_allclose(scores, ref[order], rtol=1e-4, atol=1e-7)
        assert (np.diff(scores) <= 0).all() and abs(scores.sum() - 1) < 1e-5
    prior = rng.uniform(0, 1, 200)
    order, scores = svc.rerank(q, X, heads=4, temperature=0.5, prior=prior)
    ref = ref_rerank(q.astype(np.float64), X.astype(np.float64), 4, 0.5, prior)
    np.testing.assert_allclose(scores, ref[order], rtol=1e-4, atol=1e-7)
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(200))


@pytest.mark.parametrize("name", NAMES)
def test_service_specialists_beat_the_generalist(name):
    """A and C each match one head's subspace perfectly, B is moderately close everywhere:
    B has the highest cosine, but head-averaged attention ranks A (then C) first."""
    svc = attention.AttentionService(temperature=0.1, backend=name)
    q = np.array([1, 1, 1, 1], dtype=np.float32)
    X = np.array([[1, 1, 0, 0], [1, 0.2, 1, 0.2], [0, 0, 1, 1]], dtype=np.float32)
    cos = (X @ q) / (np.linalg.norm(X, axis=1) * np.linalg.norm(q))
    assert int(np.argmax(cos)) == 1
    order, scores = svc.rerank(q, X, heads=2)
    assert order.tolist() == [0, 2, 1] and scores[2] < 0.01
    assert svc.rerank(q, X, heads=1)[0][0] == 1  # one head: plain cosine order
    # a prior (e.g. from reward) can overturn it
    order, _ = svc.rerank(q, X, heads=2, prior=[0.001, 1.0, 0.001])
    assert order[0] == 1


@pytest.mark.parametrize("name", NAMES)
def test_service_synthesize(name):
    svc = attention.AttentionService(temperature=0.2, backend=name)
    rng = np.random.default_rng(31)
    X = rand(rng, 50, 64, scale=3.0)
    q = X[4] + rand(rng, 64)
    summary, w = svc.synthesize(q, X)
    assert summary.shape == (64,) and w.shape == (50,)
    assert abs(float(w.sum()) - 1.0) < 1e-5 and int(np.argmax(w)) == 4
    qn = q / np.linalg.norm(q)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    s = Xn.astype(np.float64) @ qn / 0.2
    ref_w = np.exp(s - s.max())
    ref_w /= ref_w.sum()
    np.testing.assert_allclose(w, ref_w, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(summary, ref_w @ X.astype(np.float64), rtol=1e-4, atol=1e-4)
    raw = attention.AttentionService(temperature=0.2, normalize=False, backend=name)
    _, w_raw = raw.synthesize(q, X, temperature=50.0)
    s = X.astype(np.float64) @ q / 50.0
    np.testing.assert_allclose(w_raw, np.exp(s - s.max()) / np.exp(s - s.max()).sum(),
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_service_bad_inputs(name):
    svc = attention.AttentionService(backend=name)
    X = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="query is all zeros"):
        svc.rerank(np.zeros(4), X)
    with pytest.raises(ValueError, match="heads=3 must be >= 1 and divide"):
        svc.rerank(np.ones(4), X, heads=3)
    with pytest.raises(ValueError, match="prior must be finite, >= 0 and not all zero"):
        svc.rerank(np.ones(4), X, prior=[0, 0, 0])
    with pytest.raises(ValueError, match="prior must be finite"):
        svc.rerank(np.ones(4), X, prior=[1, -1, 0])
    with pytest.raises(ValueError, match="prior must have shape"):
        svc.rerank(np.ones(4), X, prior=[1, 1])
    with pytest.raises(ValueError, match="dimension mismatch"):
        svc.synthesize(np.ones(3), X)
    with pytest.raises(ValueError, match="vectors must be 2-D"):
        svc.synthesize(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="query must be a 1-D vector"):
        svc.synthesize(np.ones((2, 4)), X)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        svc.synthesize(np.ones(4), X, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        attention.AttentionService(temperature=-1)


# ---------------------------------------------------------------------------- doctests


@pytest.mark.parametrize("module", ["agentdb.engines.attention", "agentdb.engines.numpy_attention"])
def test_doctests(module):
    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 5
