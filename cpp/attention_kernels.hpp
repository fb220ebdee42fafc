// Attention building blocks: one implementation per ISA (attention_{scalar,avx2,avx512}.cpp),
// chosen at run time together with the distance kernels (the path named by
// active_kernels().name, so AGENTDB_SIMD and _set_simd switch both).
//
// Like kernels.hpp this header holds no templates and no standard-library code, so nothing
// compiled with wide-vector flags can be picked by the linker for generic code.
#pragma once
#include <cstddef>

namespace agentdb {

struct AttnKernels {
  const char* name;  // "scalar", "avx2", "avx512"
  // S[g*lds + j] = dot(Q + g*ldq, K + j*ldk) over d floats, for g < nq, j < nk.
  void (*qk)(const float* Q, std::size_t ldq, std::size_t nq, const float* K, std::size_t ldk,
             std::size_t nk, std::size_t d, float* S, std::size_t lds);
  // O[g*ldo + c] += sum_j P[g*ldp + j] * V[j*ldv + c], for g < nq, j < nk, c < dv.
  void (*pv)(const float* P, std::size_t ldp, std::size_t nq, const float* V, std::size_t ldv,
             std::size_t nk, std::size_t dv, float* O, std::size_t ldo);
  // s[j] = exp(s[j] - shift) in place; returns the sum of the new values. Arguments below
  // about -87 give a tiny positive value instead of underflowing to zero on SIMD paths.
  float (*exp_sum)(float* s, std::size_t n, float shift);
  // s[j] *= scale in place; returns max_j s[j], or NaN when some s[j] is NaN or infinite.
  float (*scale_max)(float* s, std::size_t n, float scale);
};

// Dispatch (attention_scalar.cpp, compiled with the base flags): the attention kernels of the
// path the distance kernels use (AGENTDB_SIMD / _set_simd), or of a named path (nullptr when
// the CPU does not support it).
const AttnKernels& active_attn_kernels();
const AttnKernels* attn_kernels_for(const char* path);

const AttnKernels& scalar_attn_kernels();
#if defined(AGENTDB_X86)
const AttnKernels& avx2_attn_kernels();
const AttnKernels& avx512_attn_kernels();
#endif

}  // namespace agentdb
