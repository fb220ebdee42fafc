// Attention over row-major float32 matrices: scaled dot-product, multi-head, tiled "flash",
// hyperbolic (Poincare ball) and top-k MoE gating.
//
// Conventions (shared with python/agentdb/_numpy_attention.py, the reference):
//   sdpa:       out_i = sum_j w_ij v_j,  w_i = softmax_j(scale * <q_i, k_j>)
//   multi-head: head h uses columns [h*d_h, (h+1)*d_h) of Q and K and [h*dv_h, ...) of V and
//               of the output, each head is an sdpa with its own softmax
//   flash:      the sdpa output computed block by block with the recurrence
//                 M' = max(M, max_j s_j), l' = l e^(M-M') + sum_j e^(s_j-M'),
//                 acc' = acc e^(M-M') + sum_j e^(s_j-M') v_j,  out = acc / l
//               accumulating straight into the output row (no m x n matrix)
//   hyperbolic: logits -beta * d_c(q, k_j) with d_c(x, y) = acosh(1 + 2t) / sqrt(c),
//               t = c |x-y|^2 / ((1 - c|x|^2)(1 - c|y|^2)) (equal to the Mobius-addition form
//               (2/sqrt c) artanh(sqrt c |(-x) (+)_c y|), but with no cancellation for x ~ y),
//               values aggregated as exp0(sum_j w_j log0(v_j)) (the caller applies exp0)
//   moe:        top-k of x W + b per row (ties: lower expert id), softmax over the k selected
//
// Natively every attention variant runs the same one-pass blocked recurrence (it reads each
// key and value row once, and a value block right after its key block, which halves memory
// traffic when values are the keys). sdpa / multi-head differ from flash only in
// materialising the weights when asked for: the raw logits are stored during the pass and
// turned into softmax weights with the final max at the end. The numpy fallback keeps the
// textbook two-pass softmax for sdpa, so the tests compare two different algorithms.
//
// Every driver returns false when a logit came out NaN or infinite (float32 overflow, or a
// non-finite input the caller has not scanned yet); the caller then names the problem.
// Work is split over (head, group of queries) tasks and, when there are fewer of those than
// threads, over key ranges whose partial softmax states are merged exactly afterwards.
#pragma once
#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "attention_kernels.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace agentdb {

// One attention problem; `heads` problems side by side on column slices (see above).
struct AttnProblem {
  const float* Q = nullptr;  // m rows, leading dimension ldq
  std::size_t m = 0, ldq = 0;
  const float* K = nullptr;  // n rows
  std::size_t n = 0, ldk = 0;
  const float* V = nullptr;  // n rows
  std::size_t ldv = 0;
  std::size_t d = 0, dv = 0;  // per head
  std::size_t heads = 1;
  float* O = nullptr;  // m rows
  std::size_t ldo = 0;
  float* W = nullptr;  // optional weights, heads x m x n, contiguous
};

// Logits <q, k> through the dispatched tile kernel (attend() applies the scale).
struct DotLogits {
  const AttnKernels* ak;
  const AttnProblem* p;
  void operator()(std::size_t head, std::size_t q0, std::size_t nq, std::size_t k0,
                  std::size_t nk, float* S, std::size_t lds) const {
    ak->qk(p->Q + q0 * p->ldq + head * p->d, p->ldq, nq, p->K + k0 * p->ldk + head * p->d,
           p->ldk, nk, p->d, S, lds);
  }
};

// Logits -beta * d_c(q, k) (Poincare ball). |q-k|^2 comes from the dot-product tile as
// |q|^2 + |k|^2 - 2<q, k> where that is safe (at least a quarter of |q|^2 + |k|^2, so the
// cancellation costs at most a few float32 ulps) and from the exact l2 kernel otherwise
// (near-identical points). qn / kn: |x|^2; bq: 1 - c|q|^2; bk_inv: 1 / (1 - c|k|^2).
struct HyperbolicLogits {
  const AttnKernels* ak;
  const KernelTable* kt;
  const AttnProblem* p;
  const float* qn;
  const float* kn;
  const double* bq;
  const float* bk_inv;
  double c, beta;
  void operator()(std::size_t, std::size_t q0, std::size_t nq, std::size_t k0, std::size_t nk,
                  float* S, std::size_t lds) const {
    ak->qk(p->Q + q0 * p->ldq, p->ldq, nq, p->K + k0 * p->ldk, p->ldk, nk, p->d, S, lds);
    // float math from here: log1p/sqrt per pair in double cost as much as the distances
    const float f = static_cast<float>(-beta / std::sqrt(c));
    for (std::size_t g = 0; g < nq; ++g) {
      const float* q = p->Q + (q0 + g) * p->ldq;
      const float cq = static_cast<float>(c / bq[q0 + g]), nq2 = qn[q0 + g];
      float* s = S + g * lds;
      for (std::size_t j = 0; j < nk; ++j) {
        float sum = nq2 + kn[k0 + j];
        float l2 = sum - 2.0f * s[j];
        if (!(l2 >= 0.25f * sum)) l2 = kt->l2sq(q, p->K + (k0 + j) * p->ldk, p->d);
        float t = cq * l2 * bk_inv[k0 + j];
        s[j] = f * std::log1p(2.0f * t + 2.0f * std::sqrt(t * (1.0f + t)));
      }
    }
  }
};

namespace attn_detail {

constexpr std::size_t kGroup = 16;        // queries sharing each block of keys
constexpr std::size_t kBlock = 256;       // keys per block
constexpr std::size_t kMinChunk = 2048;   // fewest keys worth a thread of their own

inline void scale_row(float* x, std::size_t n, float a) {
  for (std::size_t c = 0; c < n; ++c) x[c] *= a;
}

// Softmax state of a group of queries over keys [lo, hi), in one pass over blocks of keys
// (the online softmax): per query the running max `mx`, the sum of exponentials `sm`
// (relative to mx) and the unnormalised accumulator row acc[g*lda, +dv) =
// sum_j e^(s_j - mx) c_j v_j (c_j = vcoef[j] or 1). When p.W is set the raw logits are copied
// there (normalised later by finish_weights).
template <class Logits>
void attend_range(const AttnKernels& ak, const AttnProblem& p, const Logits& logits,
                  float scale, std::size_t block, const float* vcoef, std::size_t head,
                  std::size_t q0, std::size_t nq, std::size_t lo, std::size_t hi, float* acc,
                  std::size_t lda, float* mx, float* sm, std::vector<float>& scratch,
                  bool& bad) {
  const float* V = p.V + head * p.dv;
  for (std::size_t g = 0; g < nq; ++g) {
    std::fill(acc + g * lda, acc + g * lda + p.dv, 0.0f);
    mx[g] = -std::numeric_limits<float>::infinity();
    sm[g] = 0.0f;
  }
  scratch.resize(nq * block);
  float* S = scratch.data();
  for (std::size_t b0 = lo; b0 < hi; b0 += block) {
    std::size_t nb = std::min(block, hi - b0);
    logits(head, q0, nq, b0, nb, S, block);
    for (std::size_t g = 0; g < nq; ++g) {
      float* s = S + g * block;
      float bm = ak.scale_max(s, nb, scale);
      if (!(std::fabs(bm) <= FLT_MAX)) bad = true;
      if (p.W) std::memcpy(p.W + head * p.m * p.n + (q0 + g) * p.n + b0, s, nb * sizeof(float));
      if (bm > mx[g]) {
        float alpha = std::exp(mx[g] - bm);  // 0 on the first block
        scale_row(acc + g * lda, p.dv, alpha);
        sm[g] *= alpha;
        mx[g] = bm;
      }
      sm[g] += ak.exp_sum(s, nb, mx[g]);
      if (vcoef)
        for (std::size_t j = 0; j < nb; ++j) s[j] *= vcoef[b0 + j];
    }
    ak.pv(S, block, nq, V + b0 * p.ldv, p.ldv, nb, p.dv, acc, lda);
  }
}

// Raw logits -> softmax weights, given the row maximum.
inline void finish_weights(const AttnKernels& ak, float* row, std::size_t n, float mx) {
  float total = ak.exp_sum(row, n, mx);
  scale_row(row, n, 1.0f / total);
}

}  // namespace attn_detail

// Runs attention for every head and query: p.O (and p.W when set) receive the normalised
// result for logits scale * logits(...). Keys are processed in blocks of `block` (0: kBlock)
// with the online softmax; the m x n weights exist only when asked for (p.W). vcoef: optional
// per-key factor applied to the weights when aggregating values (not to the returned weights).
template <class Logits>
bool attend(const AttnKernels& ak, const AttnProblem& p, const Logits& logits, float scale,
            std::size_t block, const float* vcoef, std::size_t threads) {
  using namespace attn_detail;
  threads = resolve_threads(threads);
  if (block == 0) block = kBlock;
  const std::size_t G = kGroup;
  const std::size_t groups = (p.m + G - 1) / G;
  const std::size_t units = p.heads * groups;
  // Four key ranges per thread (handed out dynamically), so a thread that starts late or is
  // descheduled on a busy machine delays the call by one short range, not by half of it.
  std::size_t chunks = 1;
  if (units < threads && p.n >= 2 * kMinChunk)
    chunks = std::min((4 * threads + units - 1) / units, p.n / kMinChunk);
  const std::size_t per = (p.n + chunks - 1) / chunks;
  chunks = (p.n + per - 1) / per;
  std::atomic<bool> any_bad{false};
  std::vector<std::vector<float>> scratch(std::min(resolve_threads(threads), units * chunks));

  if (chunks == 1) {
    parallel_for(units, threads, [&](std::size_t u, std::size_t tid) {
      std::size_t head = u / groups, q0 = (u % groups) * G, nq = std::min(G, p.m - q0);
      float mx[kGroup], sm[kGroup];
      float* out = p.O + q0 * p.ldo + head * p.dv;
      bool bad = false;
      attend_range(ak, p, logits, scale, block, vcoef, head, q0, nq, 0, p.n, out, p.ldo, mx,
                   sm, scratch[tid], bad);
      for (std::size_t g = 0; g < nq; ++g) {
        scale_row(out + g * p.ldo, p.dv, 1.0f / sm[g]);
        if (p.W) finish_weights(ak, p.W + head * p.m * p.n + (q0 + g) * p.n, p.n, mx[g]);
      }
      if (bad) any_bad = true;
    });
    return !any_bad.load();
  }

  // Few (head, group) units: split the keys too, then merge the partial states exactly.
  const std::size_t tasks = units * chunks, stride = G * p.dv;
  std::vector<float> pacc(tasks * stride), pmx(tasks * G), psm(tasks * G);
  parallel_for(tasks, threads, [&](std::size_t t, std::size_t tid) {
    std::size_t u = t / chunks, c = t % chunks;
    std::size_t head = u / groups, q0 = (u % groups) * G, nq = std::min(G, p.m - q0);
    std::size_t lo = c * per, hi = std::min(p.n, lo + per);
    bool bad = false;
    attend_range(ak, p, logits, scale, block, vcoef, head, q0, nq, lo, hi,
                 pacc.data() + t * stride, p.dv, pmx.data() + t * G, psm.data() + t * G,
                 scratch[tid], bad);
    if (bad) any_bad = true;
  });
  for (std::size_t u = 0; u < units; ++u) {
    std::size_t head = u / groups, q0 = (u % groups) * G, nq = std::min(G, p.m - q0);
    for (std::size_t g = 0; g < nq; ++g) {
      float M = -std::numeric_limits<float>::infinity();
      for (std::size_t c = 0; c < chunks; ++c) M = std::max(M, pmx[(u * chunks + c) * G + g]);
      double total = 0.0;
      for (std::size_t c = 0; c < chunks; ++c) {
        std::size_t t = u * chunks + c;
        if (pmx[t * G + g] > -std::numeric_limits<float>::infinity())
          total += static_cast<double>(psm[t * G + g]) * std::exp(double(pmx[t * G + g]) - M);
      }
      float* out = p.O + (q0 + g) * p.ldo + head * p.dv;
      std::fill(out, out + p.dv, 0.0f);
      for (std::size_t c = 0; c < chunks; ++c) {
        std::size_t t = u * chunks + c;
        float f = static_cast<float>(std::exp(double(pmx[t * G + g]) - M) / total);
        const float* a = pacc.data() + t * stride + g * p.dv;
        for (std::size_t col = 0; col < p.dv; ++col) out[col] += f * a[col];
      }
      if (p.W) finish_weights(ak, p.W + head * p.m * p.n + (q0 + g) * p.n, p.n, M);
    }
  }
  return !any_bad.load();
}

// Top-k mixture-of-experts gating. X: m x d, Wt: E x d (the gate matrix transposed), bias: E or
// null. ids/w: m x k, best first (ties: lower expert id), w = softmax over the k logits.
inline bool moe_topk(const AttnKernels& ak, const float* X, std::size_t m, std::size_t d,
                     const float* Wt, std::size_t E, const float* bias, std::size_t k,
                     int64_t* ids, float* w, std::size_t threads) {
  constexpr std::size_t kRows = 64;
  const std::size_t tasks = (m + kRows - 1) / kRows;
  std::atomic<bool> any_bad{false};
  parallel_for(tasks, threads, [&](std::size_t t, std::size_t) {
    std::size_t r0 = t * kRows, nr = std::min(kRows, m - r0);
    std::vector<float> S(nr * E);
    std::vector<std::pair<float, int64_t>> best(k);
    ak.qk(X + r0 * d, d, nr, Wt, d, E, d, S.data(), E);
    bool bad = false;
    for (std::size_t r = 0; r < nr; ++r) {
      float* s = S.data() + r * E;
      if (bias)
        for (std::size_t e = 0; e < E; ++e) s[e] += bias[e];
      if (!(std::fabs(ak.scale_max(s, E, 1.0f)) <= FLT_MAX)) bad = true;  // NaN/inf check
      // Insertion into a sorted list of k (logit desc, id asc); ids arrive ascending, so an
      // equal logit never displaces an earlier (lower) id.
      std::size_t filled = 0;
      for (std::size_t e = 0; e < E; ++e) {
        float v = s[e];
        if (filled == k && !(v > best[k - 1].first)) continue;
        std::size_t pos = filled < k ? filled++ : k - 1;
        while (pos > 0 && v > best[pos - 1].first) {
          best[pos] = best[pos - 1];
          --pos;
        }
        best[pos] = {v, static_cast<int64_t>(e)};
      }
      double total = 0.0;
      for (std::size_t i = 0; i < k; ++i) total += std::exp(double(best[i].first) - best[0].first);
      for (std::size_t i = 0; i < k; ++i) {
        ids[(r0 + r) * k + i] = best[i].second;
        w[(r0 + r) * k + i] =
            static_cast<float>(std::exp(double(best[i].first) - best[0].first) / total);
      }
    }
    if (bad) any_bad = true;
  });
  return !any_bad.load();
}

}  // namespace agentdb
