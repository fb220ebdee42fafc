// AVX2 + FMA attention building blocks (compiled with -mavx2 -mfma; selected only when the CPU
// has them). Register tiles: logits 4 queries x 2 keys (1 x 4 for a lone query), weighted
// values 4 queries x 16 columns (1 x 32). Tails use maskload/maskstore.
#include <immintrin.h>

#include <math.h>

#include "attention_kernels.hpp"

namespace agentdb {
namespace {

// Lanes < r set (r clamped to 8), for _mm256_maskload_ps / _mm256_maskstore_ps.
inline __m256i lane_mask(std::size_t r) {
  int rr = r >= 8 ? 8 : static_cast<int>(r);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(rr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The horizontal sums of four vectors, as the four lanes of one 128-bit vector.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
  __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// Writes the horizontal sums of n accumulators to out[idx[t]].
inline void reduce_to(const __m256* acc, int n, float* const* out) {
  const __m256 z = _mm256_setzero_ps();
  for (int t = 0; t < n; t += 4) {
    alignas(16) float r[4];
    _mm_store_ps(r, hsum4(acc[t], t + 1 < n ? acc[t + 1] : z, t + 2 < n ? acc[t + 2] : z,
                          t + 3 < n ? acc[t + 3] : z));
    for (int u = 0; u < 4 && t + u < n; ++u) *out[t + u] = r[u];
  }
}

// Logits of one query against NK keys: S[b] = dot(q, K_b).
template <int NK>
inline void qk_row(const float* q, const float* K, std::size_t ldk, std::size_t d, float* S) {
  __m256 acc[NK];
  for (int b = 0; b < NK; ++b) acc[b] = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    __m256 qv = _mm256_loadu_ps(q + i);
    for (int b = 0; b < NK; ++b)
      acc[b] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(K + b * ldk + i), acc[b]);
  }
  if (i < d) {
    __m256i m = lane_mask(d - i);
    __m256 qv = _mm256_maskload_ps(q + i, m);
    for (int b = 0; b < NK; ++b)
      acc[b] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(K + b * ldk + i, m), acc[b]);
  }
  float* out[NK];
  for (int b = 0; b < NK; ++b) out[b] = S + b;
  reduce_to(acc, NK, out);
}

// Logits of 4 queries against 2 keys, 8 named accumulators (GCC spills arrays of vectors
// that are updated in a loop and reduced afterwards).
inline void qk_4x2(const float* Q, std::size_t ldq, const float* K, std::size_t ldk,
                   std::size_t d, float* S, std::size_t lds) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
         c30 = c00, c31 = c00;
#define AGENTDB_QK_STEP(LOAD)                                                          \
  {                                                                                    \
    __m256 k0 = LOAD(K + i), k1 = LOAD(K + ldk + i);                                   \
    __m256 q0 = LOAD(Q + i), q1 = LOAD(Q + ldq + i);                                   \
    c00 = _mm256_fmadd_ps(q0, k0, c00);                                                \
    c01 = _mm256_fmadd_ps(q0, k1, c01);                                                \
    c10 = _mm256_fmadd_ps(q1, k0, c10);                                                \
    c11 = _mm256_fmadd_ps(q1, k1, c11);                                                \
    __m256 q2 = LOAD(Q + 2 * ldq + i), q3 = LOAD(Q + 3 * ldq + i);                     \
    c20 = _mm256_fmadd_ps(q2, k0, c20);                                                \
    c21 = _mm256_fmadd_ps(q2, k1, c21);                                                \
    c30 = _mm256_fmadd_ps(q3, k0, c30);                                                \
    c31 = _mm256_fmadd_ps(q3, k1, c31);                                                \
  }
  std::size_t i = 0;
#define AGENTDB_PLAIN(p) _mm256_loadu_ps(p)
  for (; i + 8 <= d; i += 8) AGENTDB_QK_STEP(AGENTDB_PLAIN)
#undef AGENTDB_PLAIN
  if (i < d) {
    __m256i m = lane_mask(d - i);
#define AGENTDB_MASKED(p) _mm256_maskload_ps(p, m)
    AGENTDB_QK_STEP(AGENTDB_MASKED)
#undef AGENTDB_MASKED
  }
#undef AGENTDB_QK_STEP
  alignas(16) float r[4];
  _mm_store_ps(r, hsum4(c00, c01, c10, c11));
  S[0] = r[0], S[1] = r[1], S[lds] = r[2], S[lds + 1] = r[3];
  _mm_store_ps(r, hsum4(c20, c21, c30, c31));
  S[2 * lds] = r[0], S[2 * lds + 1] = r[1], S[3 * lds] = r[2], S[3 * lds + 1] = r[3];
}

void qk_avx2(const float* Q, std::size_t ldq, std::size_t nq, const float* K, std::size_t ldk,
             std::size_t nk, std::size_t d, float* S, std::size_t lds) {
  // Keys outer, queries inner: a tile's key rows stay in L1 for every 4-query tile.
  const std::size_t nq4 = nq / 4 * 4;
  std::size_t k = 0;
  for (; k + 2 <= nk; k += 2)
    for (std::size_t g = 0; g < nq4; g += 4)
      qk_4x2(Q + g * ldq, ldq, K + k * ldk, ldk, d, S + g * lds + k, lds);
  for (; k < nk; ++k)
    for (std::size_t g = 0; g < nq4; ++g)
      qk_row<1>(Q + g * ldq, K + k * ldk, ldk, d, S + g * lds + k);
  for (std::size_t g = nq4; g < nq; ++g) {
    const float* q = Q + g * ldq;
    float* s = S + g * lds;
    std::size_t j = 0;
    for (; j + 4 <= nk; j += 4) qk_row<4>(q, K + j * ldk, ldk, d, s + j);
    for (; j < nk; ++j) qk_row<1>(q, K + j * ldk, ldk, d, s + j);
  }
}

template <bool kTail>
inline __m256 ld(const float* p, __m256i m) {
  return kTail ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
}
template <bool kTail>
inline void st(float* p, __m256i m, __m256 v) {
  if (kTail)
    _mm256_maskstore_ps(p, m, v);
  else
    _mm256_storeu_ps(p, v);
}

// O[a, 0:16] += sum_j P[a, j] V[j, 0:16] for 4 queries (lanes masked by m0/m1 when kTail).
template <bool kTail>
inline void pv_4x16(const float* P, std::size_t ldp, const float* V, std::size_t ldv,
                    std::size_t nk, float* O, std::size_t ldo, __m256i m0, __m256i m1) {
  __m256 c00 = ld<kTail>(O, m0), c01 = ld<kTail>(O + 8, m1);
  __m256 c10 = ld<kTail>(O + ldo, m0), c11 = ld<kTail>(O + ldo + 8, m1);
  __m256 c20 = ld<kTail>(O + 2 * ldo, m0), c21 = ld<kTail>(O + 2 * ldo + 8, m1);
  __m256 c30 = ld<kTail>(O + 3 * ldo, m0), c31 = ld<kTail>(O + 3 * ldo + 8, m1);
  for (std::size_t j = 0; j < nk; ++j) {
    __m256 x0 = ld<kTail>(V + j * ldv, m0), x1 = ld<kTail>(V + j * ldv + 8, m1);
    __m256 w = _mm256_broadcast_ss(P + j);
    c00 = _mm256_fmadd_ps(w, x0, c00);
    c01 = _mm256_fmadd_ps(w, x1, c01);
    w = _mm256_broadcast_ss(P + ldp + j);
    c10 = _mm256_fmadd_ps(w, x0, c10);
    c11 = _mm256_fmadd_ps(w, x1, c11);
    w = _mm256_broadcast_ss(P + 2 * ldp + j);
    c20 = _mm256_fmadd_ps(w, x0, c20);
    c21 = _mm256_fmadd_ps(w, x1, c21);
    w = _mm256_broadcast_ss(P + 3 * ldp + j);
    c30 = _mm256_fmadd_ps(w, x0, c30);
    c31 = _mm256_fmadd_ps(w, x1, c31);
  }
  st<kTail>(O, m0, c00), st<kTail>(O + 8, m1, c01);
  st<kTail>(O + ldo, m0, c10), st<kTail>(O + ldo + 8, m1, c11);
  st<kTail>(O + 2 * ldo, m0, c20), st<kTail>(O + 2 * ldo + 8, m1, c21);
  st<kTail>(O + 3 * ldo, m0, c30), st<kTail>(O + 3 * ldo + 8, m1, c31);
}

// O[0:32] += sum_j P[j] V[j, 0:32] for one query.
template <bool kTail>
inline void pv_1x32(const float* P, const float* V, std::size_t ldv, std::size_t nk, float* O,
                    const __m256i* m) {
  __m256 acc[4];
  for (int v = 0; v < 4; ++v) acc[v] = ld<kTail>(O + 8 * v, m[v]);
  for (std::size_t j = 0; j < nk; ++j) {
    __m256 w = _mm256_broadcast_ss(P + j);
    for (int v = 0; v < 4; ++v)
      acc[v] = _mm256_fmadd_ps(w, ld<kTail>(V + j * ldv + 8 * v, m[v]), acc[v]);
  }
  for (int v = 0; v < 4; ++v) st<kTail>(O + 8 * v, m[v], acc[v]);
}

void pv_avx2(const float* P, std::size_t ldp, std::size_t nq, const float* V, std::size_t ldv,
             std::size_t nk, std::size_t dv, float* O, std::size_t ldo) {
  auto rest = [](std::size_t w, std::size_t off) { return lane_mask(w > off ? w - off : 0); };
  std::size_t g = 0;
  for (; g + 4 <= nq; g += 4)
    for (std::size_t c = 0; c < dv; c += 16) {
      const float* p = P + g * ldp;
      float* o = O + g * ldo + c;
      std::size_t w = dv - c;
      if (w >= 16)
        pv_4x16<false>(p, ldp, V + c, ldv, nk, o, ldo, rest(w, 0), rest(w, 8));
      else
        pv_4x16<true>(p, ldp, V + c, ldv, nk, o, ldo, rest(w, 0), rest(w, 8));
    }
  for (; g < nq; ++g)
    for (std::size_t c = 0; c < dv; c += 32) {
      std::size_t w = dv - c;
      __m256i m[4] = {rest(w, 0), rest(w, 8), rest(w, 16), rest(w, 24)};
      if (w >= 32)
        pv_1x32<false>(P + g * ldp, V + c, ldv, nk, O + g * ldo + c, m);
      else
        pv_1x32<true>(P + g * ldp, V + c, ldv, nk, O + g * ldo + c, m);
    }
}

// exp(x) for x in [-87, 88] (clamped), Cephes-style: 2^n * p(r), |relative error| < 2e-7.
inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
                                23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

float exp_sum_avx2(float* s, std::size_t n, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  std::size_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m256 e0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), sh));
    __m256 e1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), sh));
    _mm256_storeu_ps(s + j, e0);
    _mm256_storeu_ps(s + j + 8, e1);
    acc0 = _mm256_add_ps(acc0, e0);
    acc1 = _mm256_add_ps(acc1, e1);
  }
  for (; j + 8 <= n; j += 8) {
    __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), sh));
    _mm256_storeu_ps(s + j, e);
    acc0 = _mm256_add_ps(acc0, e);
  }
  __m256 z = _mm256_setzero_ps();
  float sum = _mm_cvtss_f32(hsum4(_mm256_add_ps(acc0, acc1), z, z, z));
  for (; j < n; ++j) {
    s[j] = expf(s[j] - shift);  // libm, not an inline std:: template
    sum += s[j];
  }
  return sum;
}

float scale_max_avx2(float* s, std::size_t n, float scale) {
  const __m256 sc = _mm256_set1_ps(scale), big = _mm256_set1_ps(3.40282347e38f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 mx = _mm256_set1_ps(-INFINITY), ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + j), sc);
    _mm256_storeu_ps(s + j, x);
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_andnot_ps(sign, x), big, _CMP_LE_OQ));
    mx = _mm256_max_ps(mx, x);
  }
  bool finite = _mm256_movemask_ps(ok) == 0xFF;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mx);
  float m = lanes[0];
  for (int t = 1; t < 8; ++t) m = lanes[t] > m ? lanes[t] : m;
  for (; j < n; ++j) {
    float x = s[j] * scale;
    s[j] = x;
    finite &= fabsf(x) <= 3.40282347e38f;
    m = x > m ? x : m;
  }
  return finite ? m : NAN;
}

const AttnKernels kTable{"avx2", qk_avx2, pv_avx2, exp_sum_avx2, scale_max_avx2};

}  // namespace

const AttnKernels& avx2_attn_kernels() { return kTable; }

}  // namespace agentdb
