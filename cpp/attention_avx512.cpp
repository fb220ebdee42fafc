// AVX-512F attention building blocks (compiled with -mavx512f...; selected only when CPU and OS
// support them). Register tiles: logits 4 queries x 4 keys (1 x 8 for a lone query), weighted
// values 4 queries x 64 columns. Tails use masked loads, so every length is fully vectorised.
#include <immintrin.h>
#include <math.h>

#include "attention_kernels.hpp"

namespace agentdb {
namespace {

inline __mmask16 tail_mask(std::size_t r) {
  return r >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << r) - 1u);
}

// The four horizontal sums of a, b, c, d as one 128-bit vector.
inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  auto half = [](__m512 x) {
    return _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
  };
  __m256 ab = _mm256_hadd_ps(half(a), half(b)), cd = _mm256_hadd_ps(half(c), half(d));
  __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// Logits of one query against NK keys: S[b] = dot(q, K_b).
template <int NK>
inline void qk_row(const float* q, const float* K, std::size_t ldk, std::size_t d, float* S) {
  __m512 acc[NK];
  for (int b = 0; b < NK; ++b) acc[b] = _mm512_setzero_ps();
  for (std::size_t i = 0; i < d; i += 16) {
    __mmask16 m = tail_mask(d - i);
    __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
    for (int b = 0; b < NK; ++b)
      acc[b] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, K + b * ldk + i), acc[b]);
  }
  for (int b = 0; b < NK; ++b) S[b] = _mm512_reduce_add_ps(acc[b]);
}

// Logits of 4 queries against 4 keys, 16 named accumulators (GCC spills arrays of that many
// vectors to the stack on every iteration).
inline void qk_4x4(const float* Q, std::size_t ldq, const float* K, std::size_t ldk,
                   std::size_t d, float* S, std::size_t lds) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00,
         c12 = c00, c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00,
         c31 = c00, c32 = c00, c33 = c00;
  // One step over 16 columns; m masks the tail (all ones before it).
#define AGENTDB_QK_STEP(m)                                                                 \
  {                                                                                        \
    __m512 k0 = _mm512_maskz_loadu_ps(m, K + i), k1 = _mm512_maskz_loadu_ps(m, K + ldk + i); \
    __m512 k2 = _mm512_maskz_loadu_ps(m, K + 2 * ldk + i);                                 \
    __m512 k3 = _mm512_maskz_loadu_ps(m, K + 3 * ldk + i);                                 \
    AGENTDB_QK_ROW(m, 0)                                                                   \
    AGENTDB_QK_ROW(m, 1)                                                                   \
    AGENTDB_QK_ROW(m, 2)                                                                   \
    AGENTDB_QK_ROW(m, 3)                                                                   \
  }
#define AGENTDB_QK_ROW(m, a)                                     \
  {                                                              \
    __m512 q = _mm512_maskz_loadu_ps(m, Q + (a) * ldq + i);      \
    c##a##0 = _mm512_fmadd_ps(q, k0, c##a##0);                   \
    c##a##1 = _mm512_fmadd_ps(q, k1, c##a##1);                   \
    c##a##2 = _mm512_fmadd_ps(q, k2, c##a##2);                   \
    c##a##3 = _mm512_fmadd_ps(q, k3, c##a##3);                   \
  }
  std::size_t i = 0;
  for (; i + 16 <= d; i += 16) AGENTDB_QK_STEP(static_cast<__mmask16>(0xFFFF))
  if (i < d) AGENTDB_QK_STEP(tail_mask(d - i))
#undef AGENTDB_QK_ROW
#undef AGENTDB_QK_STEP
  _mm_storeu_ps(S, hsum4(c00, c01, c02, c03));
  _mm_storeu_ps(S + lds, hsum4(c10, c11, c12, c13));
  _mm_storeu_ps(S + 2 * lds, hsum4(c20, c21, c22, c23));
  _mm_storeu_ps(S + 3 * lds, hsum4(c30, c31, c32, c33));
}

void qk_avx512(const float* Q, std::size_t ldq, std::size_t nq, const float* K, std::size_t ldk,
               std::size_t nk, std::size_t d, float* S, std::size_t lds) {
  // Keys outer, queries inner: the 4 key rows of a tile stay in L1 while every 4-query tile
  // of the group (up to 16 rows, also L1-resident) uses them.
  const std::size_t nq4 = nq / 4 * 4;
  std::size_t k = 0;
  for (; k + 4 <= nk; k += 4)
    for (std::size_t g = 0; g < nq4; g += 4)
      qk_4x4(Q + g * ldq, ldq, K + k * ldk, ldk, d, S + g * lds + k, lds);
  for (; k < nk; ++k)
    for (std::size_t g = 0; g < nq4; ++g)
      qk_row<1>(Q + g * ldq, K + k * ldk, ldk, d, S + g * lds + k);
  for (std::size_t g = nq4; g < nq; ++g) {
    const float* q = Q + g * ldq;
    float* s = S + g * lds;
    std::size_t j = 0;
    for (; j + 8 <= nk; j += 8) qk_row<8>(q, K + j * ldk, ldk, d, s + j);
    for (; j < nk; ++j) qk_row<1>(q, K + j * ldk, ldk, d, s + j);
  }
}

// O[0, 0:64] += sum_j P[j] V[j, 0:64] for one query; m0..m3 mask the four 16-column vectors.
inline void pv_1x64(const float* P, const float* V, std::size_t ldv, std::size_t nk, float* O,
                    const __mmask16* mk) {
  __m512 acc[4];
  for (int v = 0; v < 4; ++v) acc[v] = _mm512_maskz_loadu_ps(mk[v], O + 16 * v);
  for (std::size_t j = 0; j < nk; ++j) {
    __m512 w = _mm512_set1_ps(P[j]);
    for (int v = 0; v < 4; ++v)
      acc[v] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(mk[v], V + j * ldv + 16 * v), acc[v]);
  }
  for (int v = 0; v < 4; ++v) _mm512_mask_storeu_ps(O + 16 * v, mk[v], acc[v]);
}

// The same for 4 queries (rows of P and O), 16 named accumulators.
inline void pv_4x64(const float* P, std::size_t ldp, const float* V, std::size_t ldv,
                    std::size_t nk, float* O, std::size_t ldo, const __mmask16* mk) {
#define AGENTDB_PV_LOAD(a)                                               \
  __m512 c##a##0 = _mm512_maskz_loadu_ps(mk[0], O + (a) * ldo);          \
  __m512 c##a##1 = _mm512_maskz_loadu_ps(mk[1], O + (a) * ldo + 16);     \
  __m512 c##a##2 = _mm512_maskz_loadu_ps(mk[2], O + (a) * ldo + 32);     \
  __m512 c##a##3 = _mm512_maskz_loadu_ps(mk[3], O + (a) * ldo + 48);
  AGENTDB_PV_LOAD(0)
  AGENTDB_PV_LOAD(1)
  AGENTDB_PV_LOAD(2)
  AGENTDB_PV_LOAD(3)
#undef AGENTDB_PV_LOAD
  for (std::size_t j = 0; j < nk; ++j) {
    const float* v = V + j * ldv;
    __m512 x0 = _mm512_maskz_loadu_ps(mk[0], v), x1 = _mm512_maskz_loadu_ps(mk[1], v + 16);
    __m512 x2 = _mm512_maskz_loadu_ps(mk[2], v + 32), x3 = _mm512_maskz_loadu_ps(mk[3], v + 48);
#define AGENTDB_PV_ROW(a)                                        \
  {                                                              \
    __m512 w = _mm512_set1_ps(P[(a) * ldp + j]);                 \
    c##a##0 = _mm512_fmadd_ps(w, x0, c##a##0);                   \
    c##a##1 = _mm512_fmadd_ps(w, x1, c##a##1);                   \
    c##a##2 = _mm512_fmadd_ps(w, x2, c##a##2);                   \
    c##a##3 = _mm512_fmadd_ps(w, x3, c##a##3);                   \
  }
    AGENTDB_PV_ROW(0)
    AGENTDB_PV_ROW(1)
    AGENTDB_PV_ROW(2)
    AGENTDB_PV_ROW(3)
#undef AGENTDB_PV_ROW
  }
#define AGENTDB_PV_STORE(a)                                      \
  _mm512_mask_storeu_ps(O + (a) * ldo, mk[0], c##a##0);          \
  _mm512_mask_storeu_ps(O + (a) * ldo + 16, mk[1], c##a##1);     \
  _mm512_mask_storeu_ps(O + (a) * ldo + 32, mk[2], c##a##2);     \
  _mm512_mask_storeu_ps(O + (a) * ldo + 48, mk[3], c##a##3);
  AGENTDB_PV_STORE(0)
  AGENTDB_PV_STORE(1)
  AGENTDB_PV_STORE(2)
  AGENTDB_PV_STORE(3)
#undef AGENTDB_PV_STORE
}

void pv_avx512(const float* P, std::size_t ldp, std::size_t nq, const float* V, std::size_t ldv,
               std::size_t nk, std::size_t dv, float* O, std::size_t ldo) {
  for (std::size_t c = 0; c < dv; c += 64) {
    __mmask16 mk[4];
    for (std::size_t v = 0; v < 4; ++v)
      mk[v] = c + 16 * v < dv ? tail_mask(dv - c - 16 * v) : static_cast<__mmask16>(0);
    std::size_t g = 0;
    for (; g + 4 <= nq; g += 4) pv_4x64(P + g * ldp, ldp, V + c, ldv, nk, O + g * ldo + c, ldo, mk);
    for (; g < nq; ++g) pv_1x64(P + g * ldp, V + c, ldv, nk, O + g * ldo + c, mk);
  }
}

// exp(x) for x in [-87, 88] (clamped), Cephes-style: 2^n * p(r), |relative error| < 2e-7.
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

float exp_sum_avx512(float* s, std::size_t n, float shift) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  std::size_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m512 e0 = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), sh));
    __m512 e1 = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), sh));
    _mm512_storeu_ps(s + j, e0);
    _mm512_storeu_ps(s + j + 16, e1);
    acc0 = _mm512_add_ps(acc0, e0);
    acc1 = _mm512_add_ps(acc1, e1);
  }
  for (; j < n; j += 16) {
    __mmask16 m = tail_mask(n - j);
    __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), sh));
    _mm512_mask_storeu_ps(s + j, m, e);
    acc0 = _mm512_mask_add_ps(acc0, m, acc0, e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

float scale_max_avx512(float* s, std::size_t n, float scale) {
  const __m512 sc = _mm512_set1_ps(scale), big = _mm512_set1_ps(3.40282347e38f);
  __m512 mx = _mm512_set1_ps(-INFINITY);
  __mmask16 finite = 0xFFFF;
  for (std::size_t j = 0; j < n; j += 16) {
    __mmask16 m = tail_mask(n - j);
    __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), sc);
    _mm512_mask_storeu_ps(s + j, m, x);
    finite &= _mm512_cmp_ps_mask(_mm512_abs_ps(x), big, _CMP_LE_OQ) | static_cast<__mmask16>(~m);
    mx = _mm512_mask_max_ps(mx, m, mx, x);
  }
  return finite == 0xFFFF ? _mm512_reduce_max_ps(mx) : NAN;
}

const AttnKernels kTable{"avx512", qk_avx512, pv_avx512, exp_sum_avx512, scale_max_avx512};

}  // namespace

const AttnKernels& avx512_attn_kernels() { return kTable; }

}  // namespace agentdb
