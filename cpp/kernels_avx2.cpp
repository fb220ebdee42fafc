// AVX2 + FMA kernels (compiled with -mavx2 -mfma; selected only when the CPU has them).
#include <immintrin.h>

#include "kernels.hpp"

namespace agentdb {
namespace {

inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

float dot_avx2(const float* a, const float* b, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float l2sq_avx2(const float* a, const float* b, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
    s1 = _mm256_fmadd_ps(d1, d1, s1);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
  }
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) {
    float d = a[i] - b[i];
    s += d * d;
  }
  return s;
}

float cosine_avx2(const float* a, const float* b, std::size_t n) {
  __m256 ab = _mm256_setzero_ps(), aa = _mm256_setzero_ps(), bb = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
    ab = _mm256_fmadd_ps(va, vb, ab);
    aa = _mm256_fmadd_ps(va, va, aa);
    bb = _mm256_fmadd_ps(vb, vb, bb);
  }
  float sab = hsum256(ab), saa = hsum256(aa), sbb = hsum256(bb);
  for (; i < n; ++i) {
    sab += a[i] * b[i];
    saa += a[i] * a[i];
    sbb += b[i] * b[i];
  }
  if (saa == 0.0f || sbb == 0.0f) return 1.0f;
  __m128 den = _mm_sqrt_ss(_mm_set_ss(saa * sbb));
  return 1.0f - sab / _mm_cvtss_f32(den);
}

float dot_f16_avx2(const float* q, const uint16_t* x, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8)));
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), x0, s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), x1, s1);
  }
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += q[i] * _cvtsh_ss(x[i]);
  return s;
}

float l2sq_f16_avx2(const float* q, const uint16_t* x, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    __m256 d = _mm256_sub_ps(_mm256_loadu_ps(q + i), xv);
    s0 = _mm256_fmadd_ps(d, d, s0);
  }
  float s = hsum256(s0);
  for (; i < n; ++i) {
    float d = q[i] - _cvtsh_ss(x[i]);
    s += d * d;
  }
  return s;
}

void to_f16_avx2(const float* src, uint16_t* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(src + i);
    // Saturate to the largest finite half so huge values do not become infinities.
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-65504.0f)), _mm256_set1_ps(65504.0f));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}

// The four sums of four vectors: {sum a, sum b, sum c, sum d}.
inline __m128 hsum4x256(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Two query rows against four rows of X (8 accumulators + 4 rows + 1 query = 13 of the 16
// ymm registers); dot4x4 runs it for query rows 0-1, then 2-3 (X rows come from L1 then).
inline void dot2x4_avx2(const float* q, const float* x, std::size_t d, float* out) {
  __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a02 = _mm256_setzero_ps(),
         a03 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps(),
         a12 = _mm256_setzero_ps(), a13 = _mm256_setzero_ps();
  const float *x0 = x, *x1 = x + d, *x2 = x + 2 * d, *x3 = x + 3 * d, *q0 = q, *q1 = q + d;
  std::size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    __m256 v0 = _mm256_loadu_ps(x0 + i), v1 = _mm256_loadu_ps(x1 + i);
    __m256 v2 = _mm256_loadu_ps(x2 + i), v3 = _mm256_loadu_ps(x3 + i);
    __m256 u = _mm256_loadu_ps(q0 + i);
    a00 = _mm256_fmadd_ps(u, v0, a00);
    a01 = _mm256_fmadd_ps(u, v1, a01);
    a02 = _mm256_fmadd_ps(u, v2, a02);
    a03 = _mm256_fmadd_ps(u, v3, a03);
    u = _mm256_loadu_ps(q1 + i);
    a10 = _mm256_fmadd_ps(u, v0, a10);
    a11 = _mm256_fmadd_ps(u, v1, a11);
    a12 = _mm256_fmadd_ps(u, v2, a12);
    a13 = _mm256_fmadd_ps(u, v3, a13);
  }
  __m128 r0 = hsum4x256(a00, a01, a02, a03), r1 = hsum4x256(a10, a11, a12, a13);
  alignas(16) float t[8];
  _mm_store_ps(t, r0);
  _mm_store_ps(t + 4, r1);
  for (; i < d; ++i)  // the last d % 8 coordinates
    for (std::size_t j = 0; j < 4; ++j) {
      t[j] += q0[i] * x[j * d + i];
      t[4 + j] += q1[i] * x[j * d + i];
    }
  for (std::size_t j = 0; j < 8; ++j) out[j] = t[j];
}

void dot4x4_avx2(const float* q, const float* x, std::size_t d, float* out) {
  dot2x4_avx2(q, x, d, out);
  dot2x4_avx2(q + 2 * d, x, d, out + 8);
}

// 8 int8 codes -> 8 floats.
inline __m256 load_i8x8(const int8_t* c) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c))));
}

float dot_i8_avx2(const float* q, const int8_t* c, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_i8x8(c + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load_i8x8(c + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_i8x8(c + i), s0);
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += q[i] * c[i];
  return s;
}

int32_t dot_i16i8_avx2(const int16_t* q, const int8_t* c, std::size_t n) {
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {  // 16 codes widened to int16, pairs multiplied and added
    __m256i c0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i)));
    __m256i c1 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i + 16)));
    s0 = _mm256_add_epi32(
        s0, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i)), c0));
    s1 = _mm256_add_epi32(
        s1,
        _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i + 16)), c1));
  }
  __m256i s = _mm256_add_epi32(s0, s1);
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
  int32_t total = _mm_cvtsi128_si32(h);
  for (; i < n; ++i) total += static_cast<int32_t>(q[i]) * c[i];
  return total;
}

#include "gather.hpp"  // gather_rows, this file's own copy (anonymous namespace)

void dot_i16i8_gather_avx2(const int16_t* q, const int8_t* codes, const uint32_t* slots,
                           std::size_t count, std::size_t n, int32_t* out) {
  gather_rows(dot_i16i8_avx2, q, codes, slots, count, n, out);
}
void dot_f16_gather_avx2(const float* q, const uint16_t* v, const uint32_t* slots,
                         std::size_t count, std::size_t n, float* out) {
  gather_rows(dot_f16_avx2, q, v, slots, count, n, out);
}
void l2sq_f16_gather_avx2(const float* q, const uint16_t* v, const uint32_t* slots,
                          std::size_t count, std::size_t n, float* out) {
  gather_rows(l2sq_f16_avx2, q, v, slots, count, n, out);
}

const KernelTable kTable{"avx2",       dot_avx2,      l2sq_avx2,   cosine_avx2,
                         dot_f16_avx2, l2sq_f16_avx2, to_f16_avx2, dot4x4_avx2,
                         dot_i8_avx2,  dot_i16i8_avx2, dot_i16i8_gather_avx2,
                         dot_f16_gather_avx2, l2sq_f16_gather_avx2};

}  // namespace

const KernelTable& avx2_kernels() { return kTable; }

}  // namespace agentdb
