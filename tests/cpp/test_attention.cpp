// Attention (cpp/attention.hpp + cpp/attention_*.cpp) without Python: the per-ISA building
// blocks held to the scalar path and a float64 reference, and every variant -- sdpa (with and
// without weights), multi-head, the blocked "flash" recurrence (several block sizes), the
// key-range split merged across threads, hyperbolic (Poincare ball) and top-k MoE gating --
// against naive float64 implementations on small inputs, on every supported SIMD path.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "attention.hpp"
#include "attention_kernels.hpp"
#include "check.hpp"
#include "kernels.hpp"
#include "util.hpp"

using namespace agentdb;
using testutil::supported_paths;

namespace {

// Same error model as tests/test_attention.py: float32 logits are off by about
// LOGIT_EPS * scale * sum |q_i k_i|; outputs by vmax * (2 * logit error + REL).
constexpr double kRel = 1e-5, kLogitEps = 2e-6;

struct Ref {
  std::vector<double> out;      // heads' outputs side by side, m x (heads * dvh)
  std::vector<double> weights;  // heads x m x n
  std::vector<double> logit_err;  // heads x m
};

// Naive multi-head attention in float64: softmax(scale * q k^T) v per head on column slices;
// `logit(q, k, d)` gives the unscaled logit, `vcoef` optionally scales value rows.
template <class Logit>
Ref naive(const std::vector<float>& Q, const std::vector<float>& K, const std::vector<float>& V,
          std::size_t m, std::size_t n, std::size_t D, std::size_t DV, std::size_t heads,
          double scale, Logit logit, const std::vector<double>* vcoef = nullptr) {
  const std::size_t d = D / heads, dv = DV / heads;
  Ref r{std::vector<double>(m * DV, 0.0), std::vector<double>(heads * m * n),
        std::vector<double>(heads * m, 0.0)};
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t i = 0; i < m; ++i) {
      const float* q = &Q[i * D + h * d];
      std::vector<double> s(n);
      double mx = -INFINITY;
      for (std::size_t j = 0; j < n; ++j) {
        const float* k = &K[j * D + h * d];
        s[j] = scale * logit(q, k, d);
        double mag = 0;
        for (std::size_t c = 0; c < d; ++c) mag += std::fabs(double(q[c]) * k[c]);
        r.logit_err[h * m + i] = std::max(r.logit_err[h * m + i], kLogitEps * scale * mag);
        mx = std::max(mx, s[j]);
      }
      double total = 0;
      for (double& x : s) total += (x = std::exp(x - mx));
      for (std::size_t j = 0; j < n; ++j) {
        double w = s[j] / total;
        r.weights[(h * m + i) * n + j] = w;
        double f = w * (vcoef ? (*vcoef)[j] : 1.0);
        for (std::size_t c = 0; c < dv; ++c)
          r.out[i * DV + h * dv + c] += f * V[j * DV + h * dv + c];
      }
    }
  return r;
}

double dot64(const float* a, const float* b, std::size_t d) {
  double s = 0;
  for (std::size_t i = 0; i < d; ++i) s += double(a[i]) * b[i];
  return s;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

// got (m x DV floats, heads x m x n weights) against the reference, by the error model above.
void check_close(const std::vector<float>& out, const std::vector<float>* W, const Ref& r,
                 std::size_t m, std::size_t n, std::size_t DV, std::size_t heads, double vmax,
                 double extra_rel = 0) {
  const std::size_t dv = DV / heads;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t c = 0; c < DV; ++c) {
      double le = r.logit_err[(c / dv) * m + i];
      double tol = 1e-6 + vmax * (2 * le + kRel + extra_rel);
      if (!(std::fabs(out[i * DV + c] - r.out[i * DV + c]) <= tol) && bad++ < 3)
        CHECK_NEAR(out[i * DV + c], r.out[i * DV + c], tol);
    }
  if (W)
    for (std::size_t h = 0; h < heads; ++h)
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
          double ref = r.weights[(h * m + i) * n + j];
          double tol = 1e-7 + ref * (2 * r.logit_err[h * m + i] + kRel + extra_rel);
          if (!(std::fabs((*W)[(h * m + i) * n + j] - ref) <= tol) && bad++ < 3)
            CHECK_NEAR((*W)[(h * m + i) * n + j], ref, tol);
        }
  CHECK_EQ(bad, std::size_t{0});
}

// Runs dot-product attention (sdpa / multi-head / flash) through attend().
bool run_dot(const AttnKernels& ak, const std::vector<float>& Q, const std::vector<float>& K,
             const std::vector<float>& V, std::size_t m, std::size_t n, std::size_t D,
             std::size_t DV, std::size_t heads, float scale, std::size_t block, bool weights,
             std::size_t threads, std::vector<float>& out, std::vector<float>& W) {
  AttnProblem p;
  p.Q = Q.data(), p.m = m, p.ldq = D;
  p.K = K.data(), p.n = n, p.ldk = D;
  p.V = V.data(), p.ldv = DV;
  p.d = D / heads, p.dv = DV / heads, p.heads = heads;
  out.assign(m * DV, -99.0f);
  p.O = out.data(), p.ldo = DV;
  W.assign(weights ? heads * m * n : 0, -99.0f);
  p.W = weights ? W.data() : nullptr;
  DotLogits logits{&ak, &p};
  return attend(ak, p, logits, scale, block, nullptr, threads);
}

}  // namespace

TEST_CASE(attention, kernels_match_scalar_and_reference) {
  std::mt19937_64 g(61);
  const AttnKernels& s = scalar_attn_kernels();
  for (const std::string& path : supported_paths()) {
    const AttnKernels& ak = *attn_kernels_for(path.c_str());
    CHECK_EQ(std::string(ak.name), path);
    for (std::size_t d : {1, 3, 16, 17, 64, 384})
      for (std::size_t nq : {1, 3, 16, 17})
        for (std::size_t nk : {1, 5, 33}) {
          SCOPE("path=", path, " d=", d, " nq=", nq, " nk=", nk);
          const std::size_t ld = d + 3;  // leading dimensions wider than the rows
          std::vector<float> Q = testutil::normal(g, nq * ld), K = testutil::normal(g, nk * ld);
          std::vector<float> S(nq * (nk + 2), 7.0f), S0(S);
          ak.qk(Q.data(), ld, nq, K.data(), ld, nk, d, S.data(), nk + 2);
          s.qk(Q.data(), ld, nq, K.data(), ld, nk, d, S0.data(), nk + 2);
          std::size_t bad = 0;
          for (std::size_t i = 0; i < nq; ++i) {
            for (std::size_t j = 0; j < nk; ++j) {
              double ref = dot64(&Q[i * ld], &K[j * ld], d), mag = 0;
              for (std::size_t c = 0; c < d; ++c) mag += std::fabs(Q[i * ld + c] * K[j * ld + c]);
              double tol = 1e-6 + 4e-6 * mag;
              bad += !(std::fabs(S[i * (nk + 2) + j] - ref) <= tol);
              bad += !(std::fabs(S[i * (nk + 2) + j] - S0[i * (nk + 2) + j]) <= 2 * tol);
            }
            bad += S[i * (nk + 2) + nk] != 7.0f;  // nothing written past nk
          }
          CHECK_EQ(bad, std::size_t{0});
          // pv: O += P V, accumulating into what O holds
          const std::size_t dv = d;
          std::vector<float> P = testutil::uniform(g, nq * nk, 0.0f, 1.0f);
          std::vector<float> V = testutil::normal(g, nk * ld);
          std::vector<float> O = testutil::normal(g, nq * ld), O0(O);
          ak.pv(P.data(), nk, nq, V.data(), ld, nk, dv, O.data(), ld);
          bad = 0;
          for (std::size_t i = 0; i < nq; ++i)
            for (std::size_t c = 0; c < ld; ++c) {
              double ref = O0[i * ld + c], mag = std::fabs(ref);
              if (c < dv)
                for (std::size_t j = 0; j < nk; ++j) {
                  ref += double(P[i * nk + j]) * V[j * ld + c];
                  mag += std::fabs(double(P[i * nk + j]) * V[j * ld + c]);
                }
              bad += !(std::fabs(O[i * ld + c] - ref) <= 1e-6 + 4e-6 * mag);
            }
          CHECK_EQ(bad, std::size_t{0});
        }
    for (std::size_t n : {1, 7, 8, 9, 16, 17, 100, 1000}) {
      SCOPE("path=", path, " n=", n);
      std::vector<float> x = testutil::normal(g, n, 3.0f), x0(x), y(x), y0(x);
      float shift = 2.5f;
      float sum = ak.exp_sum(x.data(), n, shift), sum0 = s.exp_sum(x0.data(), n, shift);
      double ref_sum = 0;
      std::size_t bad = 0;
      for (std::size_t j = 0; j < n; ++j) {
        double e = std::exp(double(y[j]) - shift);
        ref_sum += e;
        bad += !(std::fabs(x[j] - e) <= 1e-6 * e + 1e-30);
        bad += !(std::fabs(x0[j] - e) <= 1e-6 * e + 1e-30);
      }
      CHECK_EQ(bad, std::size_t{0});
      CHECK_NEAR(sum, ref_sum, 2e-6 * ref_sum);
      CHECK_NEAR(sum0, ref_sum, 2e-6 * ref_sum);
      const float top = *std::max_element(y.begin(), y.end());
      float mx = ak.scale_max(y.data(), n, 0.5f), mx0 = s.scale_max(y0.data(), n, 0.5f);
      CHECK_EQ(mx, 0.5f * top);  // scaling by 0.5 is exact
      CHECK_EQ(mx0, 0.5f * top);
      CHECK(y == y0);
      y.assign(n, 1.0f);
      y[n / 2] = std::numeric_limits<float>::infinity();
      CHECK(std::isnan(ak.scale_max(y.data(), n, 1.0f)));  // non-finite -> NaN
      y.assign(n, 1.0f);
      y[n - 1] = 3e38f;
      CHECK(std::isnan(ak.scale_max(y.data(), n, 10.0f)));  // overflow by the scale
      y.assign(n, -1000.0f);  // far below -87: tiny, not a negative or NaN
      ak.exp_sum(y.data(), n, 0.0f);
      for (float v : y) CHECK(v >= 0.0f && v < 1e-30f);
    }
  }
}

TEST_CASE(attention, sdpa_multi_head_and_flash_vs_naive) {
  std::mt19937_64 g(62);
  struct Shape {
    std::size_t m, n, D, DV, heads;
  } shapes[] = {{1, 1, 3, 1, 1},     {5, 7, 17, 5, 1},  {17, 300, 64, 33, 1},
                {40, 600, 16, 8, 1}, {6, 50, 64, 32, 2}, {9, 129, 96, 40, 4}};
  for (const std::string& path : supported_paths()) {
    const AttnKernels& ak = *attn_kernels_for(path.c_str());
    for (const Shape& sh : shapes) {
      std::vector<float> Q = testutil::normal(g, sh.m * sh.D), K = testutil::normal(g, sh.n * sh.D);
      std::vector<float> V = testutil::normal(g, sh.n * sh.DV);
      const float scale = 1.0f / std::sqrt(float(sh.D / sh.heads));
      Ref r = naive(Q, K, V, sh.m, sh.n, sh.D, sh.DV, sh.heads, scale, dot64);
      for (std::size_t block : {0, 1, 7, 64})  // 0: the default (256)
        for (bool weights : {false, true})
          for (std::size_t threads : {1, 2}) {
            SCOPE("path=", path, " m=", sh.m, " n=", sh.n, " D=", sh.D, " DV=", sh.DV,
                  " heads=", sh.heads, " block=", block, " weights=", weights, " threads=",
                  threads);
            std::vector<float> out, W;
            CHECK(run_dot(ak, Q, K, V, sh.m, sh.n, sh.D, sh.DV, sh.heads, scale, block, weights,
                          threads, out, W));
            check_close(out, weights ? &W : nullptr, r, sh.m, sh.n, sh.DV, sh.heads,
                        max_abs(V));
          }
    }
  }
}

// Few queries over many keys: the keys are split across threads and the partial softmax
// states merged exactly afterwards.
TEST_CASE(attention, key_split_merge_vs_naive) {
  std::mt19937_64 g(63);
  const std::size_t n = 9000, D = 24, DV = 10;
  for (const std::string& path : supported_paths()) {
    const AttnKernels& ak = *attn_kernels_for(path.c_str());
    for (std::size_t m : {1, 3}) {
      SCOPE("path=", path, " m=", m);
      std::vector<float> Q = testutil::normal(g, m * D, 2.0f), K = testutil::normal(g, n * D);
      std::vector<float> V = testutil::normal(g, n * DV);
      Ref r = naive(Q, K, V, m, n, D, DV, 1, 0.5, dot64);
      std::vector<float> out, W;
      CHECK(run_dot(ak, Q, K, V, m, n, D, DV, 1, 0.5f, 0, true, 4, out, W));
      check_close(out, &W, r, m, n, DV, 1, max_abs(V));
      std::vector<float> out1, W1;  // and the same answer as one thread, to rounding
      run_dot(ak, Q, K, V, m, n, D, DV, 1, 0.5f, 0, false, 1, out1, W1);
      for (std::size_t i = 0; i < out.size(); ++i) CHECK_NEAR(out[i], out1[i], 1e-5);
    }
  }
}

TEST_CASE(attention, hyperbolic_vs_naive) {
  std::mt19937_64 g(64);
  const std::size_t m = 6, n = 40, d = 5;
  for (const std::string& path : supported_paths()) {
    const AttnKernels& ak = *attn_kernels_for(path.c_str());
    const KernelTable& kt = *kernels_for(path.c_str());
    for (double c : {1.0, 0.5})
      for (double beta : {1.0, 2.5}) {
        SCOPE("path=", path, " c=", c, " beta=", beta);
        // points strictly inside the ball of radius 1/sqrt(c); some queries equal a key
        auto ball = [&](std::size_t rows) {
          std::vector<float> X = testutil::normal(g, rows * d);
          for (std::size_t i = 0; i < rows; ++i) {
            double nrm = std::sqrt(dot64(&X[i * d], &X[i * d], d));
            double r = 0.9 * std::uniform_real_distribution<double>(0.05, 1.0)(g) / std::sqrt(c);
            for (std::size_t j = 0; j < d; ++j) X[i * d + j] = float(X[i * d + j] * r / nrm);
          }
          return X;
        };
        std::vector<float> Q = ball(m), K = ball(n), V = ball(n);
        std::copy_n(&K[7 * d], d, &Q[2 * d]);  // identical points: the exact-l2 fallback
        // the per-row quantities the binding computes (cpp/bindings/attention.cpp)
        std::vector<double> bq(m), bk(n);
        std::vector<float> qn(m), kn(n), bk_inv(n), lam(n);
        std::vector<double> lam64(n);
        for (std::size_t i = 0; i < m; ++i) bq[i] = 1.0 - c * kt.dot(&Q[i * d], &Q[i * d], d);
        for (std::size_t j = 0; j < n; ++j) bk[j] = 1.0 - c * kt.dot(&K[j * d], &K[j * d], d);
        for (std::size_t i = 0; i < m; ++i) qn[i] = float((1.0 - bq[i]) / c);
        for (std::size_t j = 0; j < n; ++j) {
          kn[j] = float((1.0 - bk[j]) / c);
          bk_inv[j] = float(1.0 / bk[j]);
          double rv = std::sqrt(c * dot64(&V[j * d], &V[j * d], d));  // log0(v) = lam v
          lam64[j] = rv > 0 ? std::atanh(rv) / rv : 1.0;
          lam[j] = float(lam64[j]);
        }
        AttnProblem p;
        p.Q = Q.data(), p.m = m, p.ldq = d;
        p.K = K.data(), p.n = n, p.ldk = d;
        p.V = V.data(), p.ldv = d;
        p.d = d, p.dv = d;
        std::vector<float> out(m * d), W(m * n);
        p.O = out.data(), p.ldo = d, p.W = W.data();
        HyperbolicLogits logits{&ak, &kt, &p, qn.data(), kn.data(), bq.data(), bk_inv.data(),
                                c, beta};
        CHECK(attend(ak, p, logits, 1.0f, 0, lam.data(), 1));
        // reference: weights softmax(-beta d_c(q, k)), output sum_j w_j log0(v_j)
        auto dist = [&](const float* x, const float* y, std::size_t dd) {
          double xx = dot64(x, x, dd), yy = dot64(y, y, dd), l2 = 0;
          for (std::size_t i = 0; i < dd; ++i) l2 += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
          double t = c * l2 / ((1 - c * xx) * (1 - c * yy));
          return -beta * std::acosh(1 + 2 * t) / std::sqrt(c);
        };
        Ref r = naive(Q, K, V, m, n, d, d, 1, 1.0, dist, &lam64);
        // hyperbolic logits are float32 throughout (log1p/sqrt per pair): a looser budget
        std::fill(r.logit_err.begin(), r.logit_err.end(), 1e-5 * beta);
        check_close(out, &W, r, m, n, d, 1, max_abs(V) * 3.0, 1e-4);
        double w_self = W[2 * n + 7];  // the query equal to key 7 weighs it most
        CHECK(w_self == *std::max_element(W.begin() + 2 * n, W.begin() + 3 * n));
      }
  }
}

TEST_CASE(attention, moe_gating_vs_naive) {
  std::mt19937_64 g(65);
  const std::size_t m = 70, d = 19, E = 9;  // 70 rows: two tasks of 64
  std::vector<float> X = testutil::normal(g, m * d), Wt = testutil::normal(g, E * d);
  std::copy_n(&Wt[1 * d], d, &Wt[4 * d]);  // experts 1 and 4 tie on every row
  std::vector<float> bias = testutil::normal(g, E, 0.1f);
  bias[4] = bias[1];
  for (const std::string& path : supported_paths()) {
    const AttnKernels& ak = *attn_kernels_for(path.c_str());
    for (std::size_t k : {1, 2, 5, 9})
      for (bool with_bias : {false, true}) {
        SCOPE("path=", path, " k=", k, " bias=", with_bias);
        std::vector<int64_t> ids(m * k);
        std::vector<float> w(m * k);
        CHECK(moe_topk(ak, X.data(), m, d, Wt.data(), E, with_bias ? bias.data() : nullptr, k,
                       ids.data(), w.data(), 2));
        std::size_t bad = 0;
        for (std::size_t i = 0; i < m; ++i) {
          // logits as the kernel computes them (float), ranked desc with ties to lower ids
          std::vector<float> logit(E);
          ak.qk(&X[i * d], d, 1, Wt.data(), d, E, d, logit.data(), E);
          if (with_bias)
            for (std::size_t e = 0; e < E; ++e) logit[e] += bias[e];
          std::vector<int64_t> order(E);
          for (std::size_t e = 0; e < E; ++e) order[e] = int64_t(e);
          std::stable_sort(order.begin(), order.end(),
                           [&](int64_t a, int64_t b) { return logit[a] > logit[b]; });
          double total = 0;
          for (std::size_t r = 0; r < k; ++r)
            total += std::exp(double(logit[order[r]]) - logit[order[0]]);
          for (std::size_t r = 0; r < k; ++r) {
            double want = std::exp(double(logit[order[r]]) - logit[order[0]]) / total;
            bad += ids[i * k + r] != order[r];
            bad += !(std::fabs(w[i * k + r] - want) <= 1e-6);
            if (r) bad += !(w[i * k + r] <= w[i * k + r - 1]);
          }
          // ties: expert 1 always ranks before its copy, expert 4
          auto at = [&](int64_t e) {
            return std::find(ids.begin() + i * k, ids.begin() + (i + 1) * k, e) - ids.begin();
          };
          if (at(4) < static_cast<std::ptrdiff_t>((i + 1) * k)) bad += !(at(1) < at(4));
          // the logits themselves against float64
          for (std::size_t e = 0; e < E; ++e) {
            double ref = dot64(&X[i * d], &Wt[e * d], d) + (with_bias ? bias[e] : 0.0);
            bad += !(std::fabs(logit[e] - ref) <= 1e-4);
          }
        }
        CHECK_EQ(bad, std::size_t{0});
      }
  }
}

TEST_CASE(attention, overflow_and_nonfinite_are_reported) {
  std::mt19937_64 g(66);
  const std::size_t m = 3, n = 20, D = 8, DV = 4;
  std::vector<float> Q = testutil::normal(g, m * D), K = testutil::normal(g, n * D);
  std::vector<float> V = testutil::normal(g, n * DV), out, W;
  for (const std::string& path : supported_paths()) {
    SCOPE("path=", path);
    const AttnKernels& ak = *attn_kernels_for(path.c_str());
    CHECK(run_dot(ak, Q, K, V, m, n, D, DV, 1, 1.0f, 0, false, 1, out, W));
    CHECK(!run_dot(ak, Q, K, V, m, n, D, DV, 1, 1e38f, 0, false, 1, out, W));  // logit overflow
    std::vector<float> Kbad = K;
    Kbad[5 * D + 2] = std::numeric_limits<float>::quiet_NaN();
    CHECK(!run_dot(ak, Q, Kbad, V, m, n, D, DV, 1, 1.0f, 0, true, 1, out, W));
    std::vector<int64_t> ids(m * 2);
    std::vector<float> w(m * 2);
    std::vector<float> Wt = testutil::normal(g, 4 * D);
    CHECK(moe_topk(ak, Q.data(), m, D, Wt.data(), 4, nullptr, 2, ids.data(), w.data(), 1));
    Wt[3] = std::numeric_limits<float>::infinity();
    CHECK(!moe_topk(ak, Q.data(), m, D, Wt.data(), 4, nullptr, 2, ids.data(), w.data(), 1));
  }
}
