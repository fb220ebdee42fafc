// Distance kernels and their run-time dispatch (cpp/kernels*.cpp, cpp/dispatch.cpp): every
// SIMD path this CPU supports is held to a float64 reference and to the scalar path, on many
// dimensions (1, 3, 17, 384, ... including misaligned starts), plus the binary16 conversions
// the mixed-precision index relies on.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attention_kernels.hpp"
#include "check.hpp"
#include "kernels.hpp"
#include "util.hpp"

using namespace agentdb;
using testutil::supported_paths;

namespace {

const std::size_t kDims[] = {1,   2,   3,   4,   5,   7,   8,   9,   15,  16,   17,   31,
                             32,  33,  47,  63,  64,  65,  100, 127, 128, 129,  255,  256,
                             257, 383, 384, 385, 512, 768, 1000, 1023, 1536, 2049, 4096};

// Relative tolerance against sum |a_i b_i| (resp. sum (a_i - b_i)^2): float32 accumulation
// in a few partial sums over up to 4096 terms; an absolute floor for sums near zero.
constexpr double kRel = 4e-6, kAbs = 1e-6;

struct Ref {
  double dot, l2, cos, dot_scale, l2_scale, norms;  // norms = |a| |b|
};

Ref reference(const float* a, const float* b, std::size_t n) {
  Ref r{0, 0, 0, 0, 0, 0};
  double aa = 0, bb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double x = a[i], y = b[i];
    r.dot += x * y;
    r.dot_scale += std::fabs(x * y);
    r.l2 += (x - y) * (x - y);
    aa += x * x;
    bb += y * y;
  }
  r.l2_scale = r.l2;
  r.norms = std::sqrt(aa * bb);
  r.cos = (aa == 0 || bb == 0) ? 1.0 : 1.0 - r.dot / std::sqrt(aa * bb);
  return r;
}

float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

}  // namespace

TEST_CASE(dispatch, paths_and_switching) {
  CHECK(cpu_supports("scalar"));
  CHECK(!cpu_supports("sse9"));
  CHECK(kernels_for("sse9") == nullptr);
  CHECK(attn_kernels_for("sse9") == nullptr);
  REQUIRE(kernels_for("scalar") != nullptr);
  CHECK_EQ(std::string(kernels_for("scalar")->name), "scalar");
  const std::string before = active_kernels().name;
  for (const std::string& p : supported_paths()) {
    SCOPE("path=", p);
    const KernelTable* t = kernels_for(p.c_str());
    REQUIRE(t != nullptr);
    CHECK_EQ(std::string(t->name), p);
    CHECK(set_active_kernels(p.c_str()));
    CHECK_EQ(std::string(active_kernels().name), p);
    // the attention kernels follow the distance kernels' path
    REQUIRE(attn_kernels_for(p.c_str()) != nullptr);
    CHECK_EQ(std::string(attn_kernels_for(p.c_str())->name), p);
    CHECK_EQ(std::string(active_attn_kernels().name), p);
  }
  for (const std::string& p : testutil::all_paths())
    if (!cpu_supports(p.c_str())) {
      SCOPE("unsupported path=", p);
      CHECK(kernels_for(p.c_str()) == nullptr);
      CHECK(!set_active_kernels(p.c_str()));
    }
  CHECK(!set_active_kernels("sse9"));
  CHECK(set_active_kernels(before.c_str()));
  CHECK_EQ(std::string(active_kernels().name), before);
}

// The path chosen at start-up: AGENTDB_SIMD when set and supported, else the best supported
// one (CTest also runs this suite with AGENTDB_SIMD=scalar and with AGENTDB_SIMD=sse9).
TEST_CASE(dispatch, initial_choice) {
  const char* env = std::getenv("AGENTDB_SIMD");
  if (env && *env) {
    REQUIRE(forced_simd() != nullptr);
    CHECK_EQ(std::string(forced_simd()), std::string(env));
  } else {
    CHECK(forced_simd() == nullptr);
  }
  std::string best = supported_paths().back();  // kept in ascending order of width
  std::string expect = (env && *env && cpu_supports(env)) ? std::string(env) : best;
  CHECK_EQ(std::string(active_kernels().name), expect);
  CHECK_EQ(std::string(active_attn_kernels().name), expect);
}

TEST_CASE(kernels, f32_paths_match_reference_and_scalar) {
  std::mt19937_64 g(11);
  // slack so that a + off starts 0..4 floats past a 64-byte boundary
  std::vector<float> A = testutil::normal(g, 4096 + 16);
  std::vector<float> B = testutil::normal(g, 4096 + 16, 0.5f);
  for (float& x : B) x += 0.1f;
  const KernelTable& s = scalar_kernels();
  double worst = 0;
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t d : kDims) {
      SCOPE("path=", p, " dim=", d);
      const float* a = A.data() + d % 5;
      const float* b = B.data() + 3 - d % 4;
      Ref r = reference(a, b, d);
      double tdot = kAbs + kRel * r.dot_scale, tl2 = kAbs + kRel * r.l2_scale;
      double tcos = kAbs + kRel * (r.dot_scale / r.norms + 1.0);
      float dot = t.dot(a, b, d), l2 = t.l2sq(a, b, d), cs = t.cosine(a, b, d);
      CHECK_NEAR(dot, r.dot, tdot);
      CHECK_NEAR(l2, r.l2, tl2);
      CHECK_NEAR(cs, r.cos, tcos);
      CHECK_NEAR(dot, s.dot(a, b, d), 2 * tdot);
      CHECK_NEAR(l2, s.l2sq(a, b, d), 2 * tl2);
      CHECK_NEAR(cs, s.cosine(a, b, d), 2 * tcos);
      CHECK(l2 >= 0.0f);
      worst = std::max(worst, std::fabs(dot - r.dot) / r.dot_scale);
      // symmetric in its arguments up to rounding, and exact zero distance to itself
      CHECK_NEAR(t.dot(b, a, d), dot, 2 * tdot);
      CHECK_EQ(t.l2sq(a, a, d), 0.0f);
      CHECK_NEAR(t.cosine(a, a, d), 0.0, 1e-6);
    }
  }
  std::printf("  worst |dot - ref| / sum|a b| over all paths and dims: %.2e\n", worst);
}

TEST_CASE(kernels, dot4x4_tiles_match_reference_and_scalar) {
  // 4 query rows x 4 rows of X, each group contiguous with stride d, on every path and dim
  std::mt19937_64 g(12);
  const KernelTable& s = scalar_kernels();
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t d : kDims) {
      SCOPE("path=", p, " dim=", d);
      std::vector<float> Q = testutil::normal(g, 4 * d), X = testutil::normal(g, 4 * d, 0.5f);
      float out[16], ref_out[16];
      std::fill(out, out + 16, -7.0f);
      t.dot4x4(Q.data(), X.data(), d, out);
      s.dot4x4(Q.data(), X.data(), d, ref_out);
      for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 4; ++j) {
          Ref r = reference(Q.data() + i * d, X.data() + j * d, d);
          double tol = kAbs + kRel * r.dot_scale;
          CHECK_NEAR(out[4 * i + j], r.dot, tol);
          CHECK_NEAR(out[4 * i + j], ref_out[4 * i + j], 2 * tol);
          CHECK_NEAR(out[4 * i + j], t.dot(Q.data() + i * d, X.data() + j * d, d), 2 * tol);
        }
    }
  }
}

TEST_CASE(kernels, int8_codes_match_reference_and_scalar) {
  // sum q_i * c_i over int8 codes, every path and dim (codes over the whole int8 range)
  std::mt19937_64 g(13);
  std::uniform_int_distribution<int> code(-128, 127);
  const KernelTable& s = scalar_kernels();
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t d : kDims) {
      SCOPE("path=", p, " dim=", d);
      std::vector<float> q = testutil::normal(g, d + 3);
      std::vector<int8_t> c(d + 3);
      for (auto& x : c) x = static_cast<int8_t>(code(g));
      const float* qa = q.data() + d % 3;  // unaligned starts
      const int8_t* ca = c.data() + 3 - d % 3;
      double ref = 0, scale = 0;
      for (std::size_t i = 0; i < d; ++i) {
        ref += static_cast<double>(qa[i]) * ca[i];
        scale += std::fabs(static_cast<double>(qa[i]) * ca[i]);
      }
      double tol = kAbs + kRel * scale;
      CHECK_NEAR(t.dot_i8(qa, ca, d), ref, tol);
      CHECK_NEAR(t.dot_i8(qa, ca, d), s.dot_i8(qa, ca, d), 2 * tol);
    }
  }
}

TEST_CASE(kernels, int16_query_int8_codes_exact) {
  // the exact integer sum, every path and dim, at the extremes the walk allows (|q| at the
  // int32-safe cap, codes over the whole int8 range)
  std::mt19937_64 g(14);
  std::uniform_int_distribution<int> code(-128, 127);
  const KernelTable& s = scalar_kernels();
  std::vector<std::size_t> dims(std::begin(kDims), std::end(kDims));
  dims.push_back(384);
  dims.push_back(1000);
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t d : dims) {
      SCOPE("path=", p, " dim=", d);
      int cap = static_cast<int>(std::min<double>(32767.0, 2147483647.0 / (128.0 * d)));
      std::uniform_int_distribution<int> qv(-cap, cap);
      std::vector<int16_t> q(d + 5);
      std::vector<int8_t> c(d + 5);
      for (auto& x : q) x = static_cast<int16_t>(qv(g));
      for (auto& x : c) x = static_cast<int8_t>(code(g));
      const int16_t* qa = q.data() + d % 5;  // unaligned starts
      const int8_t* ca = c.data() + 5 - d % 5;
      int64_t ref = 0;
      for (std::size_t i = 0; i < d; ++i) ref += static_cast<int64_t>(qa[i]) * ca[i];
      CHECK_EQ(static_cast<int64_t>(t.dot_i16i8(qa, ca, d)), ref);
      CHECK_EQ(t.dot_i16i8(qa, ca, d), s.dot_i16i8(qa, ca, d));
      std::vector<int16_t> qmax(d, static_cast<int16_t>(cap));
      std::vector<int8_t> cmin(d, -128);  // the largest magnitude the sum can reach
      CHECK_EQ(static_cast<int64_t>(t.dot_i16i8(qmax.data(), cmin.data(), d)),
               -128 * static_cast<int64_t>(cap) * static_cast<int64_t>(d));
    }
  }
}

TEST_CASE(kernels, gather_kernels_equal_one_by_one) {
  // the list kernels of the walk give exactly what the one-vector kernels give, per slot
  std::mt19937_64 g(15);
  std::uniform_int_distribution<int> code(-127, 127), qv(-32767, 32767);
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t d : {1, 7, 31, 32, 33, 64, 100, 384}) {
      SCOPE("path=", p, " dim=", d);
      const std::size_t rows = 40;
      std::vector<int8_t> codes(rows * d);
      for (auto& c : codes) c = static_cast<int8_t>(code(g));
      std::vector<int16_t> q16(d);
      for (auto& x : q16) x = static_cast<int16_t>(qv(g) / static_cast<int>(d));
      std::vector<float> qf = testutil::normal(g, d), xf = testutil::normal(g, rows * d);
      std::vector<uint16_t> half(rows * d);
      t.to_f16(xf.data(), half.data(), rows * d);
      std::vector<uint32_t> slots = {3, 0, 39, 17, 17, 5, 22, 1, 38, 9, 11};
      std::vector<int32_t> sums(slots.size());
      std::vector<float> dots(slots.size()), l2s(slots.size());
      t.dot_i16i8_gather(q16.data(), codes.data(), slots.data(), slots.size(), d, sums.data());
      t.dot_f16_gather(qf.data(), half.data(), slots.data(), slots.size(), d, dots.data());
      t.l2sq_f16_gather(qf.data(), half.data(), slots.data(), slots.size(), d, l2s.data());
      for (std::size_t i = 0; i < slots.size(); ++i) {
        CHECK_EQ(sums[i], t.dot_i16i8(q16.data(), codes.data() + slots[i] * d, d));
        CHECK_EQ(dots[i], t.dot_f16(qf.data(), half.data() + slots[i] * d, d));
        CHECK_EQ(l2s[i], t.l2sq_f16(qf.data(), half.data() + slots[i] * d, d));
      }
      t.dot_i16i8_gather(q16.data(), codes.data(), slots.data(), 0, d, sums.data());  // empty
    }
  }
}

TEST_CASE(kernels, cosine_conventions) {
  std::mt19937_64 g(12);
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t d : {1, 3, 16, 17, 384}) {
      SCOPE("path=", p, " dim=", d);
      std::vector<float> x = testutil::normal(g, d), zero(d, 0.0f), x2(x), neg(x);
      for (std::size_t i = 0; i < d; ++i) x2[i] *= 3.0f, neg[i] = -neg[i];
      CHECK_EQ(t.cosine(zero.data(), x.data(), d), 1.0f);  // either norm zero -> 1
      CHECK_EQ(t.cosine(x.data(), zero.data(), d), 1.0f);
      CHECK_EQ(t.cosine(zero.data(), zero.data(), d), 1.0f);
      CHECK_NEAR(t.cosine(x.data(), x2.data(), d), 0.0, 1e-6);
      CHECK_NEAR(t.cosine(x.data(), neg.data(), d), 2.0, 1e-6);
      CHECK_EQ(t.dot(zero.data(), x.data(), d), 0.0f);
    }
  }
  // hand-computed: a = (1, 2, 3), b = (4, -5, 6): dot 12, l2 9 + 49 + 9 = 67
  const float a[] = {1, 2, 3}, b[] = {4, -5, 6};
  for (const std::string& p : supported_paths()) {
    SCOPE("path=", p);
    const KernelTable& t = *kernels_for(p.c_str());
    CHECK_EQ(t.dot(a, b, 3), 12.0f);
    CHECK_EQ(t.l2sq(a, b, 3), 67.0f);
    CHECK_NEAR(t.cosine(a, b, 3), 1.0 - 12.0 / std::sqrt(14.0 * 77.0), 1e-6);
  }
}

TEST_CASE(half, known_values) {
  struct {
    float f;
    uint16_t h;
  } cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3C00},
      {-2.0f, 0xC000},
      {0.5f, 0x3800},
      {0.1f, 0x2E66},
      {65504.0f, 0x7BFF},                  // largest finite half
      {65519.0f, 0x7BFF},                  // rounds down
      {65520.0f, 0x7BFF},                  // would round to inf: saturates
      {1e9f, 0x7BFF},
      {-1e9f, 0xFBFF},
      {std::ldexp(1.0f, -14), 0x0400},     // smallest normal
      {std::ldexp(1.0f, -24), 0x0001},     // smallest subnormal
      {std::ldexp(1.0f, -25), 0x0000},     // half an ulp: tie to even (0)
      {std::ldexp(3.0f, -26), 0x0001},     // 0.75 ulp: up
      {std::ldexp(3.0f, -25), 0x0002},     // 1.5 ulp: tie to even (2)
      {1.0f + std::ldexp(1.0f, -11), 0x3C00},      // tie: to even (down)
      {1.0f + std::ldexp(3.0f, -11), 0x3C02},      // tie: to even (up)
      {1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20), 0x3C01},  // just above a tie
      {2047.5f, 0x6800},  // spacing 1 here: tie between 2047 (0x67FF, odd) and 2048 (even)
  };
  for (const auto& c : cases) {
    SCOPE("f=", c.f);
    CHECK_EQ(float_to_half(c.f), c.h);
  }
  CHECK_EQ(float_to_half(std::numeric_limits<float>::infinity()), 0x7C00);
  CHECK_EQ(float_to_half(-std::numeric_limits<float>::infinity()), 0xFC00);
  CHECK_EQ(float_to_half(std::numeric_limits<float>::quiet_NaN()) & 0x7E00, 0x7E00);
  CHECK_EQ(half_to_float(0x3C00), 1.0f);
  CHECK_EQ(half_to_float(0x7BFF), 65504.0f);
  CHECK_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
  CHECK_EQ(half_to_float(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  CHECK_EQ(half_to_float(0xFC00), -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(half_to_float(0x7E00)));
  CHECK(std::signbit(half_to_float(0x8000)) && half_to_float(0x8000) == 0.0f);
}

TEST_CASE(half, exhaustive_round_trip) {
  // every non-NaN binary16 value converts to float32 and back to itself
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;  // NaN
    uint16_t back = float_to_half(half_to_float(static_cast<uint16_t>(h)));
    if (back != h && bad++ < 5) CHECK_EQ(back, static_cast<uint16_t>(h));
  }
  CHECK_EQ(bad, 0);
  // and between two neighbouring halves, float32 values round to the nearer one
  std::mt19937_64 g(13);
  for (int i = 0; i < 20000; ++i) {
    uint16_t h = static_cast<uint16_t>(g() % 0x7BFF);  // finite, positive, below max
    float lo = half_to_float(h), hi = half_to_float(static_cast<uint16_t>(h + 1));
    float f = lo + (hi - lo) * std::uniform_real_distribution<float>(0.0f, 1.0f)(g);
    uint16_t got = float_to_half(f);
    double dlo = f - double(lo), dhi = double(hi) - f;
    uint16_t want = dlo < dhi ? h : dhi < dlo ? static_cast<uint16_t>(h + 1)
                                              : static_cast<uint16_t>((h & 1) ? h + 1 : h);
    if (got != want) {
      SCOPE("f=", f, " between halves ", h, " and ", h + 1);
      CHECK_EQ(got, want);
      break;
    }
  }
}

TEST_CASE(half, paths_convert_like_the_reference) {
  std::mt19937_64 g(14);
  std::vector<float> vals = testutil::normal(g, 4000);
  for (float x : testutil::normal(g, 1000, 1e-6f)) vals.push_back(x);  // half subnormals
  for (float x : testutil::normal(g, 500, 3e4f)) vals.push_back(x);    // near / past 65504
  for (uint16_t h = 1; h < 0x7BFF; h += 97) {  // exact ties between neighbouring halves
    float lo = half_to_float(h), hi = half_to_float(static_cast<uint16_t>(h + 1));
    vals.push_back(0.5f * (lo + hi));
    vals.push_back(-0.5f * (lo + hi));
  }
  const float extra[] = {0.0f, -0.0f, 65504.0f, -65504.0f, 70000.0f, -1e9f, 6.1e-5f, 5.96e-8f,
                         bits_to_float(0x00000001u) /* float32 subnormal */};
  vals.insert(vals.end(), std::begin(extra), std::end(extra));
  std::vector<uint16_t> want(vals.size()), got(vals.size());
  for (std::size_t i = 0; i < vals.size(); ++i) want[i] = float_to_half(vals[i]);
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{15},
                          std::size_t{16}, std::size_t{17}, std::size_t{33}, vals.size()}) {
      SCOPE("path=", p, " n=", n);
      std::fill(got.begin(), got.end(), 0xDEAD);
      // shifted windows so every value meets the vector body as well as the tail
      for (std::size_t start = 0; start + n <= vals.size(); start += (n > 100 ? n : 97)) {
        t.to_f16(vals.data() + start, got.data() + start, n);
        std::size_t mism = 0;
        for (std::size_t i = start; i < start + n; ++i) mism += got[i] != want[i];
        CHECK_EQ(mism, std::size_t{0});
        if (mism) break;
      }
    }
  }
}

TEST_CASE(half, mixed_kernels_match_reference_and_scalar) {
  std::mt19937_64 g(15);
  std::vector<float> Q = testutil::normal(g, 4096 + 8), X = testutil::normal(g, 4096 + 8);
  std::vector<uint16_t> H(X.size());
  scalar_kernels().to_f16(X.data(), H.data(), X.size());
  std::vector<float> Xr(X.size());  // the values the half kernels actually see
  for (std::size_t i = 0; i < X.size(); ++i) Xr[i] = half_to_float(H[i]);
  const KernelTable& s = scalar_kernels();
  for (const std::string& p : supported_paths()) {
    const KernelTable& t = *kernels_for(p.c_str());
    for (std::size_t d : kDims) {
      SCOPE("path=", p, " dim=", d);
      const float* q = Q.data() + d % 3;
      const uint16_t* h = H.data() + d % 5;
      Ref r = reference(q, Xr.data() + d % 5, d);
      double tdot = kAbs + kRel * r.dot_scale, tl2 = kAbs + kRel * r.l2_scale;
      float dot = t.dot_f16(q, h, d), l2 = t.l2sq_f16(q, h, d);
      CHECK_NEAR(dot, r.dot, tdot);
      CHECK_NEAR(l2, r.l2, tl2);
      CHECK_NEAR(dot, s.dot_f16(q, h, d), 2 * tdot);
      CHECK_NEAR(l2, s.l2sq_f16(q, h, d), 2 * tl2);
      // and close to the float32 kernel on the unrounded vector (binary16 rounding only)
      Ref exact = reference(q, X.data() + d % 5, d);
      CHECK_NEAR(dot, exact.dot, std::ldexp(1.0, -11) * exact.dot_scale + 1e-5);
    }
  }
}
