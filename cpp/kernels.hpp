// Distance kernels: one implementation per ISA, chosen once at run time.
//
// Conventions (shared with the numpy fallback):
//   dot(a, b)     = sum a_i * b_i
//   l2sq(a, b)    = sum (a_i - b_i)^2
//   cosine(a, b)  = 1 - dot / sqrt(|a|^2 |b|^2), or 1 when either norm is zero
// Every ISA file defines its functions with C linkage-free plain code (no std templates) so that
// nothing compiled with wide-vector flags can be picked by the linker for generic code.
#pragma once
#include <cstddef>
#include <cstdint>

namespace agentdb {

using kernel_fn = float (*)(const float*, const float*, std::size_t);
// Mixed precision: a float32 query against an IEEE half-precision (binary16) stored vector.
using half_kernel_fn = float (*)(const float*, const uint16_t*, std::size_t);
using to_half_fn = void (*)(const float*, uint16_t*, std::size_t);
// A float32 query against int8 codes: sum q_i * c_i (the caller applies the code's scale).
using i8_kernel_fn = float (*)(const float*, const int8_t*, std::size_t);
// An int16 query against int8 codes: the exact integer sum q_i * c_i. The caller keeps the
// sum inside int32 (|q_i| <= 2^31 / (127 n)); the int8 walk's kernel: one widening and one
// multiply-add per 32 values on AVX-512, no float conversion.
using i16i8_kernel_fn = int32_t (*)(const int16_t*, const int8_t*, std::size_t);
// The same sum for several stored vectors at once: out[i] = sum_j q_j * codes[slots[i] * n + j]
// (one call per neighbour list in the int8 walk: the query stays in registers or L1 and the
// loads of the next codes overlap the arithmetic of the current ones).
using i16i8_gather_fn = void (*)(const int16_t* q, const int8_t* codes, const uint32_t* slots,
                                 std::size_t count, std::size_t n, int32_t* out);
// The binary16 kernels for several stored vectors at once (the "mixed" walk):
// out[i] = kernel(q, half + slots[i] * n, n).
using half_gather_fn = void (*)(const float* q, const uint16_t* half, const uint32_t* slots,
                                std::size_t count, std::size_t n, float* out);
// Register-blocked tile of dot products: out[4 i + j] = dot(q + i d, x + j d) for 4 query rows
// and 4 rows of X (each group of 4 rows contiguous with stride d). The inner loop of the batch
// exact search: 8 loads feed 16 FMAs, where one dot at a time needs 2 loads per FMA.
using tile_fn = void (*)(const float* q, const float* x, std::size_t d, float* out);

struct KernelTable {
  const char* name;  // "scalar", "avx2", "avx512"
  kernel_fn dot;
  kernel_fn l2sq;
  kernel_fn cosine;
  half_kernel_fn dot_f16;   // sum q_i * half(x_i)
  half_kernel_fn l2sq_f16;  // sum (q_i - half(x_i))^2
  to_half_fn to_f16;        // float32 -> binary16, round to nearest even, saturating
  tile_fn dot4x4;           // 4 x 4 dot products (see tile_fn)
  i8_kernel_fn dot_i8;      // sum q_i * c_i over int8 codes
  i16i8_kernel_fn dot_i16i8;  // exact integer sum q_i * c_i, int16 query, int8 codes
  i16i8_gather_fn dot_i16i8_gather;  // dot_i16i8 for codes[slots[i]], i < count
  half_gather_fn dot_f16_gather;     // dot_f16 for half[slots[i]]
  half_gather_fn l2sq_f16_gather;    // l2sq_f16 for half[slots[i]]
};

// Portable conversions (scalar reference; also used by tests through the bindings).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

// Defined in the per-ISA translation units.
const KernelTable& scalar_kernels();
#if defined(AGENTDB_X86)
const KernelTable& avx2_kernels();
const KernelTable& avx512_kernels();
#endif

// Dispatch (dispatch.cpp).
bool cpu_supports(const char* path);        // "scalar", "avx2", "avx512"
const KernelTable* kernels_for(const char* path);  // nullptr when unknown/unsupported
const KernelTable& active_kernels();        // chosen once: AGENTDB_SIMD or best supported
bool set_active_kernels(const char* path);  // false when unsupported
const char* forced_simd();                  // value of AGENTDB_SIMD at first use, or nullptr

}  // namespace agentdb
