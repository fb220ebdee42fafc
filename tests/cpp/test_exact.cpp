// Exact search (cpp/exact.hpp): distance matrices and exact top-k against a brute-force sort,
// on every SIMD path, for every metric, through both of exact_topk's parallel strategies
// (query groups; and key ranges merged afterwards, for few queries over many rows).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "check.hpp"
#include "exact.hpp"
#include "util.hpp"

using namespace agentdb;
using testutil::supported_paths;

namespace {

const Metric kMetrics[] = {Metric::Cosine, Metric::IP, Metric::L2};

// The k smallest (distance, id) pairs, ties to the smaller id, padded with (-1, +inf).
void brute_topk(const KernelTable& kt, Metric m, const float* q, const float* X, std::size_t n,
                std::size_t d, std::size_t k, std::vector<int64_t>& ids,
                std::vector<float>& dists) {
  std::vector<std::pair<float, int64_t>> all(n);
  for (std::size_t j = 0; j < n; ++j)
    all[j] = {metric_distance(kt, m, q, X + j * d, d), static_cast<int64_t>(j)};
  std::sort(all.begin(), all.end());
  ids.assign(k, -1);
  dists.assign(k, std::numeric_limits<float>::infinity());
  for (std::size_t i = 0; i < std::min(k, n); ++i) ids[i] = all[i].second, dists[i] = all[i].first;
}

void check_topk(const KernelTable& kt, Metric m, std::size_t nq, std::size_t n, std::size_t d,
                std::size_t k, std::size_t threads, const std::vector<float>& Q,
                const std::vector<float>& X) {
  SCOPE("path=", kt.name, " metric=", metric_name(m), " nq=", nq, " n=", n, " d=", d, " k=", k,
        " threads=", threads);
  std::vector<int64_t> ids(nq * k, 7);
  std::vector<float> dists(nq * k, -1.0f);
  bool bad = exact_topk(kt, m, Q.data(), nq, X.data(), n, d, k, ids.data(), dists.data(),
                        threads);
  CHECK(!bad);
  std::vector<int64_t> want_ids;
  std::vector<float> want_d;
  if (nq >= 8 && m != Metric::L2) {
    // The tile kernel's sums associate differently: equal up to rounding, and every returned
    // row is one whose reference distance is that close to the reference k-th best.
    for (std::size_t q = 0; q < nq; ++q) {
      SCOPE("query ", q);
      brute_topk(kt, m, Q.data() + q * d, X.data(), n, d, k, want_ids, want_d);
      for (std::size_t i = 0; i < k; ++i) {
        int64_t id = ids[q * k + i];
        if (want_ids[i] < 0) {
          CHECK_EQ(id, int64_t{-1});
          continue;
        }
        CHECK(id >= 0 && id < static_cast<int64_t>(n));
        if (id < 0 || id >= static_cast<int64_t>(n)) return;
        float tol = 2e-5f * (1.0f + std::fabs(want_d[i]));
        CHECK_NEAR(dists[q * k + i], want_d[i], tol);
        CHECK_NEAR(metric_distance(kt, m, Q.data() + q * d, X.data() + id * d, d), want_d[i],
                   2 * tol);
      }
      std::vector<int64_t> got(ids.begin() + q * k, ids.begin() + (q + 1) * k);
      std::sort(got.begin(), got.end());
      for (std::size_t i = 1; i < k; ++i) CHECK(got[i] < 0 || got[i] != got[i - 1]);
    }
    return;
  }
  for (std::size_t q = 0; q < nq; ++q) {
    brute_topk(kt, m, Q.data() + q * d, X.data(), n, d, k, want_ids, want_d);
    bool same = std::equal(want_ids.begin(), want_ids.end(), ids.begin() + q * k) &&
                std::equal(want_d.begin(), want_d.end(), dists.begin() + q * k);
    if (!same) {
      SCOPE("query ", q);
      for (std::size_t i = 0; i < k; ++i) {
        CHECK_EQ(ids[q * k + i], want_ids[i]);
        CHECK_EQ(dists[q * k + i], want_d[i]);
      }
      return;
    }
  }
}

}  // namespace

TEST_CASE(exact, topk_matches_brute_force) {
  std::mt19937_64 g(21);
  struct Shape {
    std::size_t nq, n, d, k, threads;
  } shapes[] = {
      {5, 1000, 17, 10, 1},    // query groups, one thread
      {37, 700, 3, 10, 2},     // several query groups over two threads
      {3, 200, 1, 1, 2},       // k = 1, dim 1
      {4, 50, 8, 64, 1},       // k > n: padded with (-1, +inf)
      {1, 5000, 33, 7, 4},     // few queries, many rows: key ranges merged
      {2, 4500, 384, 10, 3},   // same, d = 384
      {8, 1003, 384, 10, 1},   // tile kernel (cosine / ip): 8 queries, rows not a multiple of 4
      {21, 999, 17, 5, 2},     // tiles with a partial query tile and a d % 16 tail
      {40, 3000, 1, 3, 2},     // d = 1 through the tiles
      {9, 6, 33, 10, 1},       // k > n through the tiles: padded
  };
  for (const std::string& p : supported_paths()) {
    const KernelTable& kt = *kernels_for(p.c_str());
    for (const Shape& s : shapes) {
      std::vector<float> X = testutil::normal(g, s.n * s.d), Q = testutil::normal(g, s.nq * s.d);
      for (Metric m : kMetrics) check_topk(kt, m, s.nq, s.n, s.d, s.k, s.threads, Q, X);
    }
  }
}

TEST_CASE(exact, ties_prefer_the_smaller_id) {
  // rows 0..9 repeat rows 10..19: every distance appears twice; the lower id must come first
  std::mt19937_64 g(22);
  const std::size_t d = 5, n = 20;
  std::vector<float> X = testutil::normal(g, n * d);
  for (std::size_t j = 0; j < 10; ++j) std::copy_n(&X[(j + 10) * d], d, &X[j * d]);
  std::vector<float> Q = testutil::normal(g, d);
  for (Metric m : kMetrics) {
    SCOPE("metric=", metric_name(m));
    std::vector<int64_t> ids(n);
    std::vector<float> dist(n);
    exact_topk(active_kernels(), m, Q.data(), 1, X.data(), n, d, n, ids.data(), dist.data(), 1);
    for (std::size_t i = 0; i + 1 < n; i += 2) {
      CHECK_EQ(dist[i], dist[i + 1]);
      CHECK_EQ(ids[i] + 10, ids[i + 1]);
    }
    check_topk(active_kernels(), m, 1, n, d, 7, 1, Q, X);  // cut in the middle of a tie
  }
}

TEST_CASE(exact, nonfinite_input_is_reported) {
  std::mt19937_64 g(23);
  const std::size_t n = 300, d = 9;
  std::vector<float> X = testutil::normal(g, n * d), Q = testutil::normal(g, 2 * d);
  std::vector<int64_t> ids(2 * 5);
  std::vector<float> dist(2 * 5);
  CHECK(!exact_topk(active_kernels(), Metric::L2, Q.data(), 2, X.data(), n, d, 5, ids.data(),
                    dist.data(), 1));
  X[123 * d + 4] = std::numeric_limits<float>::quiet_NaN();
  CHECK(exact_topk(active_kernels(), Metric::L2, Q.data(), 2, X.data(), n, d, 5, ids.data(),
                   dist.data(), 1));
  X[123 * d + 4] = std::numeric_limits<float>::infinity();
  CHECK(exact_topk(active_kernels(), Metric::IP, Q.data(), 2, X.data(), n, d, 5, ids.data(),
                   dist.data(), 2));
  for (int64_t id : ids) CHECK(id != 123);  // the broken row never ranks
  // the same through the tile kernel (8+ queries, cosine / ip)
  std::vector<float> Q8 = testutil::normal(g, 8 * d);
  std::vector<int64_t> ids8(8 * 5);
  std::vector<float> dist8(8 * 5);
  for (Metric m : {Metric::Cosine, Metric::IP}) {
    SCOPE("tiles, metric=", metric_name(m));
    X[123 * d + 4] = std::numeric_limits<float>::quiet_NaN();
    CHECK(exact_topk(active_kernels(), m, Q8.data(), 8, X.data(), n, d, 5, ids8.data(),
                     dist8.data(), 2));
    for (int64_t id : ids8) CHECK(id != 123);
    X[123 * d + 4] = 0.5f;
    CHECK(!exact_topk(active_kernels(), m, Q8.data(), 8, X.data(), n, d, 5, ids8.data(),
                      dist8.data(), 2));
  }
}

TEST_CASE(exact, distance_matrix_matches_pairwise) {
  std::mt19937_64 g(24);
  const std::size_t nq = 3, n = 2500, d = 19;  // > 1 block of 1024 rows
  std::vector<float> X = testutil::normal(g, n * d), Q = testutil::normal(g, nq * d);
  for (const std::string& p : supported_paths()) {
    const KernelTable& kt = *kernels_for(p.c_str());
    for (Metric m : kMetrics) {
      for (std::size_t threads : {1, 3}) {
        SCOPE("path=", p, " metric=", metric_name(m), " threads=", threads);
        std::vector<float> out(nq * n, -7.0f);
        distance_matrix(kt, m, Q.data(), nq, X.data(), n, d, out.data(), threads);
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < nq; ++i)
          for (std::size_t j = 0; j < n; ++j)
            wrong += out[i * n + j] != metric_distance(kt, m, &Q[i * d], &X[j * d], d);
        CHECK_EQ(wrong, std::size_t{0});
      }
    }
  }
  // metric conventions: cosine = 1 - cos, ip = 1 - dot, l2 = squared
  const float a[] = {1, 0}, b[] = {0, 2};
  const KernelTable& s = scalar_kernels();
  CHECK_NEAR(metric_distance(s, Metric::Cosine, a, b, 2), 1.0, 1e-7);
  CHECK_NEAR(metric_distance(s, Metric::IP, a, a, 2), 0.0, 1e-7);
  CHECK_NEAR(metric_distance(s, Metric::L2, a, b, 2), 5.0, 1e-7);
  CHECK_EQ(std::string(metric_name(Metric::Cosine)), "cosine");
  CHECK_EQ(std::string(metric_name(Metric::IP)), "ip");
  CHECK_EQ(std::string(metric_name(Metric::L2)), "l2");
}

TEST_CASE(exact, topk_heap) {
  TopK top(3);
  CHECK_EQ(top.worst(), std::numeric_limits<float>::infinity());
  const float d[] = {5, 1, 4, 1, 3, 9};
  for (int i = 0; i < 6; ++i) top.push(d[i], 100 + i);
  CHECK_EQ(top.worst(), 3.0f);
  int64_t ids[5];
  float dist[5];
  TopK wide(5);
  wide.push(2.0f, 8);
  wide.write(ids, dist);
  CHECK_EQ(ids[0], 8);
  CHECK_EQ(ids[1], -1);
  CHECK_EQ(dist[4], std::numeric_limits<float>::infinity());
  top.write(ids, dist);
  CHECK_EQ(ids[0], 101);  // (1, 101) before (1, 103)
  CHECK_EQ(ids[1], 103);
  CHECK_EQ(ids[2], 104);
  CHECK_EQ(dist[2], 3.0f);
}
