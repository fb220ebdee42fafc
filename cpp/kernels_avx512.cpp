// AVX-512F kernels (compiled with -mavx512f...; selected only when CPU and OS support them).
// Tails are handled with masked loads, so every length runs fully vectorised.
#include <immintrin.h>

#include "kernels.hpp"

namespace agentdb {
namespace {

inline __mmask16 tail_mask(std::size_t r) {
  return static_cast<__mmask16>((1u << r) - 1u);
}

float dot_avx512(const float* a, const float* b, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
  }
  s0 = _mm512_add_ps(s0, s2);
  s1 = _mm512_add_ps(s1, s3);
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16)
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float l2sq_avx512(const float* a, const float* b, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  for (; i + 16 <= n; i += 16) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    s0 = _mm512_fmadd_ps(d0, d0, s0);
  }
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    s1 = _mm512_fmadd_ps(d, d, s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float cosine_avx512(const float* a, const float* b, std::size_t n) {
  // Two independent sets of accumulators so the three FMA chains do not wait on each other.
  __m512 ab0 = _mm512_setzero_ps(), aa0 = _mm512_setzero_ps(), bb0 = _mm512_setzero_ps();
  __m512 ab1 = _mm512_setzero_ps(), aa1 = _mm512_setzero_ps(), bb1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 va = _mm512_loadu_ps(a + i), vb = _mm512_loadu_ps(b + i);
    __m512 vc = _mm512_loadu_ps(a + i + 16), vd = _mm512_loadu_ps(b + i + 16);
    ab0 = _mm512_fmadd_ps(va, vb, ab0);
    aa0 = _mm512_fmadd_ps(va, va, aa0);
    bb0 = _mm512_fmadd_ps(vb, vb, bb0);
    ab1 = _mm512_fmadd_ps(vc, vd, ab1);
    aa1 = _mm512_fmadd_ps(vc, vc, aa1);
    bb1 = _mm512_fmadd_ps(vd, vd, bb1);
  }
  for (; i + 16 <= n; i += 16) {
    __m512 va = _mm512_loadu_ps(a + i), vb = _mm512_loadu_ps(b + i);
    ab0 = _mm512_fmadd_ps(va, vb, ab0);
    aa0 = _mm512_fmadd_ps(va, va, aa0);
    bb0 = _mm512_fmadd_ps(vb, vb, bb0);
  }
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    __m512 va = _mm512_maskz_loadu_ps(m, a + i), vb = _mm512_maskz_loadu_ps(m, b + i);
    ab1 = _mm512_fmadd_ps(va, vb, ab1);
    aa1 = _mm512_fmadd_ps(va, va, aa1);
    bb1 = _mm512_fmadd_ps(vb, vb, bb1);
  }
  float sab = _mm512_reduce_add_ps(_mm512_add_ps(ab0, ab1));
  float saa = _mm512_reduce_add_ps(_mm512_add_ps(aa0, aa1));
  float sbb = _mm512_reduce_add_ps(_mm512_add_ps(bb0, bb1));
  if (saa == 0.0f || sbb == 0.0f) return 1.0f;
  __m128 den = _mm_sqrt_ss(_mm_set_ss(saa * sbb));
  return 1.0f - sab / _mm_cvtss_f32(den);
}

inline __m512 load_half(const uint16_t* x) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
}
inline __m512 load_half_masked(const uint16_t* x, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x));
}

float dot_f16_avx512(const float* q, const uint16_t* x, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_half(x + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), load_half(x + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_half(x + i), s0);
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), load_half_masked(x + i, m), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float l2sq_f16_avx512(const float* q, const uint16_t* x, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), load_half(x + i));
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), load_half(x + i + 16));
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  for (; i + 16 <= n; i += 16) {
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(q + i), load_half(x + i));
    s0 = _mm512_fmadd_ps(d, d, s0);
  }
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, q + i), load_half_masked(x + i, m));
    s1 = _mm512_fmadd_ps(d, d, s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void to_f16_avx512(const float* src, uint16_t* dst, std::size_t n) {
  const __m512 lo = _mm512_set1_ps(-65504.0f), hi = _mm512_set1_ps(65504.0f);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_loadu_ps(src + i), lo), hi);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}

// 16 sums at once: lane p of the result is the sum of the 16 floats of v[p]. A transpose-add
// (45 shuffles and adds) instead of 16 separate reductions (~130).
inline __m512 hsum16x512(const __m512* v) {
  __m512 t[8], u[4];
  for (int k = 0; k < 8; ++k)  // per 128-bit lane: {a0+a2, b0+b2, a1+a3, b1+b3}
    t[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]),
                         _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int k = 0; k < 4; ++k)  // per lane: the lane's sums of v[4k .. 4k+3]
    u[k] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 w01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x44),
                             _mm512_shuffle_f32x4(u[0], u[1], 0xEE));
  __m512 w23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x44),
                             _mm512_shuffle_f32x4(u[2], u[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, 0x88), _mm512_shuffle_f32x4(w01, w23, 0xDD));
}

// 16 accumulators + 4 rows of X + 1 query row: 21 of the 32 zmm registers.
void dot4x4_avx512(const float* q, const float* x, std::size_t d, float* out) {
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    __m512 v[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) v[j] = _mm512_loadu_ps(x + j * d + i);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      __m512 u = _mm512_loadu_ps(q + r * d + i);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[4 * r + j] = _mm512_fmadd_ps(u, v[j], acc[4 * r + j]);
    }
  }
  if (i < d) {
    __mmask16 m = tail_mask(d - i);
    __m512 v[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) v[j] = _mm512_maskz_loadu_ps(m, x + j * d + i);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      __m512 u = _mm512_maskz_loadu_ps(m, q + r * d + i);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[4 * r + j] = _mm512_fmadd_ps(u, v[j], acc[4 * r + j]);
    }
  }
  _mm512_storeu_ps(out, hsum16x512(acc));
}

// 16 int8 codes -> 16 floats (masked: the first r codes, zeros after).
inline __m512 load_i8x16(const int8_t* c) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c))));
}
inline __m512 load_i8x16_masked(const int8_t* c, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, c)));
}

float dot_i8_avx512(const float* q, const int8_t* c, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_i8x16(c + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), load_i8x16(c + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16)
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_i8x16(c + i), s0);
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), load_i8x16_masked(c + i, m), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

int32_t dot_i16i8_avx512(const int16_t* q, const int8_t* c, std::size_t n) {
  __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {  // 32 codes widened to int16, pairs multiplied and added
    __m512i c0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i)));
    __m512i c1 =
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i + 32)));
    s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(_mm512_loadu_si512(q + i), c0));
    s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(_mm512_loadu_si512(q + i + 32), c1));
  }
  for (; i + 32 <= n; i += 32) {
    __m512i c0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i)));
    s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(_mm512_loadu_si512(q + i), c0));
  }
  if (i < n) {  // the last < 32 values, masked (zeros past n)
    __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (n - i)) - 1);
    __m512i c0 = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, c + i));
    s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(_mm512_maskz_loadu_epi16(m, q + i), c0));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

#include "gather.hpp"  // gather_rows, this file's own copy (anonymous namespace)

void dot_i16i8_gather_avx512(const int16_t* q, const int8_t* codes, const uint32_t* slots,
                             std::size_t count, std::size_t n, int32_t* out) {
  gather_rows(dot_i16i8_avx512, q, codes, slots, count, n, out);
}
void dot_f16_gather_avx512(const float* q, const uint16_t* v, const uint32_t* slots,
                           std::size_t count, std::size_t n, float* out) {
  gather_rows(dot_f16_avx512, q, v, slots, count, n, out);
}
void l2sq_f16_gather_avx512(const float* q, const uint16_t* v, const uint32_t* slots,
                            std::size_t count, std::size_t n, float* out) {
  gather_rows(l2sq_f16_avx512, q, v, slots, count, n, out);
}

const KernelTable kTable{"avx512",       dot_avx512,      l2sq_avx512,   cosine_avx512,
                         dot_f16_avx512, l2sq_f16_avx512, to_f16_avx512, dot4x4_avx512,
                         dot_i8_avx512,  dot_i16i8_avx512, dot_i16i8_gather_avx512,
                         dot_f16_gather_avx512, l2sq_f16_gather_avx512};

}  // namespace

const KernelTable& avx512_kernels() { return kTable; }

}  // namespace agentdb
