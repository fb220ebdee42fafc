// Scalar attention building blocks (the reference every SIMD path is tested against) and the
// dispatch of the attention kernels.
#include <cmath>
#include <cstring>

#include "attention_kernels.hpp"
#include "kernels.hpp"

namespace agentdb {
namespace {

void qk_scalar(const float* Q, std::size_t ldq, std::size_t nq, const float* K, std::size_t ldk,
               std::size_t nk, std::size_t d, float* S, std::size_t lds) {
  for (std::size_t g = 0; g < nq; ++g) {
    const float* q = Q + g * ldq;
    for (std::size_t j = 0; j < nk; ++j) {
      const float* k = K + j * ldk;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      std::size_t i = 0;
      for (; i + 4 <= d; i += 4) {
        s0 += q[i] * k[i];
        s1 += q[i + 1] * k[i + 1];
        s2 += q[i + 2] * k[i + 2];
        s3 += q[i + 3] * k[i + 3];
      }
      for (; i < d; ++i) s0 += q[i] * k[i];
      S[g * lds + j] = (s0 + s1) + (s2 + s3);
    }
  }
}

void pv_scalar(const float* P, std::size_t ldp, std::size_t nq, const float* V, std::size_t ldv,
               std::size_t nk, std::size_t dv, float* O, std::size_t ldo) {
  for (std::size_t g = 0; g < nq; ++g) {
    float* o = O + g * ldo;
    for (std::size_t j = 0; j < nk; ++j) {
      const float w = P[g * ldp + j];
      const float* v = V + j * ldv;
      for (std::size_t c = 0; c < dv; ++c) o[c] += w * v[c];
    }
  }
}

float exp_sum_scalar(float* s, std::size_t n, float shift) {
  double sum = 0.0;
  for (std::size_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - shift);
    sum += s[j];
  }
  return static_cast<float>(sum);
}

float scale_max_scalar(float* s, std::size_t n, float scale) {
  float mx = -INFINITY;
  bool finite = true;
  for (std::size_t j = 0; j < n; ++j) {
    float x = s[j] * scale;
    s[j] = x;
    finite &= std::fabs(x) <= 3.40282347e38f;
    mx = x > mx ? x : mx;
  }
  return finite ? mx : NAN;
}

const AttnKernels kTable{"scalar", qk_scalar, pv_scalar, exp_sum_scalar, scale_max_scalar};

}  // namespace

const AttnKernels& scalar_attn_kernels() { return kTable; }

const AttnKernels* attn_kernels_for(const char* path) {
  if (!kernels_for(path)) return nullptr;
#if defined(AGENTDB_X86)
  if (std::strcmp(path, "avx512") == 0) return &avx512_attn_kernels();
  if (std::strcmp(path, "avx2") == 0) return &avx2_attn_kernels();
#endif
  return &kTable;
}

const AttnKernels& active_attn_kernels() {
  const AttnKernels* t = attn_kernels_for(active_kernels().name);
  return t ? *t : kTable;
}

}  // namespace agentdb
