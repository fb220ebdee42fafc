// Scalar reference kernels: the ground truth every SIMD path is tested against.
#include <cmath>
#include <cstring>

#include "kernels.hpp"

namespace agentdb {
namespace {

float dot_scalar(const float* a, const float* b, std::size_t n) {
  // Four partial sums: keeps the reference close to how wide kernels associate the sum.
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

float l2sq_scalar(const float* a, const float* b, std::size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
    float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; i < n; ++i) {
    float d = a[i] - b[i];
    s0 += d * d;
  }
  return (s0 + s1) + (s2 + s3);
}

float cosine_scalar(const float* a, const float* b, std::size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  if (aa == 0.0 || bb == 0.0) return 1.0f;
  return static_cast<float>(1.0 - ab / std::sqrt(aa * bb));
}

float dot_f16_scalar(const float* q, const uint16_t* x, std::size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += q[i] * half_to_float(x[i]);
    s1 += q[i + 1] * half_to_float(x[i + 1]);
    s2 += q[i + 2] * half_to_float(x[i + 2]);
    s3 += q[i + 3] * half_to_float(x[i + 3]);
  }
  for (; i < n; ++i) s0 += q[i] * half_to_float(x[i]);
  return (s0 + s1) + (s2 + s3);
}

float l2sq_f16_scalar(const float* q, const uint16_t* x, std::size_t n) {
  float s = 0;
  for (std::size_t i = 0; i < n; ++i) {
    float d = q[i] - half_to_float(x[i]);
    s += d * d;
  }
  return s;
}

void to_f16_scalar(const float* src, uint16_t* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}

void dot4x4_scalar(const float* q, const float* x, std::size_t d, float* out) {
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j) out[4 * i + j] = dot_scalar(q + i * d, x + j * d, d);
}

float dot_i8_scalar(const float* q, const int8_t* c, std::size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += q[i] * c[i];
    s1 += q[i + 1] * c[i + 1];
    s2 += q[i + 2] * c[i + 2];
    s3 += q[i + 3] * c[i + 3];
  }
  for (; i < n; ++i) s0 += q[i] * c[i];
  return (s0 + s1) + (s2 + s3);
}

int32_t dot_i16i8_scalar(const int16_t* q, const int8_t* c, std::size_t n) {
  int32_t s = 0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<int32_t>(q[i]) * c[i];
  return s;
}

#include "gather.hpp"  // gather_rows, this file's own copy (anonymous namespace)

void dot_i16i8_gather_scalar(const int16_t* q, const int8_t* codes, const uint32_t* slots,
                             std::size_t count, std::size_t n, int32_t* out) {
  gather_rows(dot_i16i8_scalar, q, codes, slots, count, n, out);
}
void dot_f16_gather_scalar(const float* q, const uint16_t* v, const uint32_t* slots,
                           std::size_t count, std::size_t n, float* out) {
  gather_rows(dot_f16_scalar, q, v, slots, count, n, out);
}
void l2sq_f16_gather_scalar(const float* q, const uint16_t* v, const uint32_t* slots,
                            std::size_t count, std::size_t n, float* out) {
  gather_rows(l2sq_f16_scalar, q, v, slots, count, n, out);
}

const KernelTable kTable{"scalar",       dot_scalar,      l2sq_scalar,   cosine_scalar,
                         dot_f16_scalar, l2sq_f16_scalar, to_f16_scalar, dot4x4_scalar,
                         dot_i8_scalar,  dot_i16i8_scalar, dot_i16i8_gather_scalar,
                         dot_f16_gather_scalar, l2sq_f16_gather_scalar};

}  // namespace

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mant = x & 0x007FFFFFu;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xFF);
  if (exp == 0xFF) return static_cast<uint16_t>(sign | 0x7C00u | (mant ? 0x200u : 0u));
  exp = exp - 127 + 15;
  if (exp >= 0x1F) return static_cast<uint16_t>(sign | 0x7BFFu);  // saturate to max finite
  if (exp <= 0) {                                                  // subnormal or zero
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x00800000u;
    uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into exponent
  if ((half & 0x7C00u) == 0x7C00u) half = 0x7BFFu;                // saturate
  return static_cast<uint16_t>(sign | half);
}

float half_to_float(uint16_t h) {
  uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while (!(mant & 0x400u));
      x = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3FFu) << 13);
    }
  } else if (exp == 0x1F) {
    x = sign | 0x7F800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

const KernelTable& scalar_kernels() { return kTable; }

}  // namespace agentdb
