// The HNSW index (cpp/hnsw.hpp) without Python: recall@10 against exact search for every
// metric, precision and SIMD path; upserts, deletes and slot reuse; allow-list and predicate
// filters; padding; save / load round trips, corrupt files, and flat (numpy-backend) files.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "check.hpp"
#include "crc32.hpp"
#include "exact.hpp"
#include "hnsw.hpp"
#include "util.hpp"

using namespace agentdb;
using testutil::supported_paths;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Data {
  std::size_t n, d;
  std::vector<int64_t> ids;
  std::vector<float> X;
};

// n points around 40 random centres, overlapping clusters (some structure, as embeddings have),
// ids 1000 + 7 i so that ids never coincide with slots.
Data clustered(std::mt19937_64& g, std::size_t n, std::size_t d) {
  Data out{n, d, std::vector<int64_t>(n), std::vector<float>(n * d)};
  std::vector<float> centres = testutil::normal(g, 40 * d);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    out.ids[i] = 1000 + 7 * static_cast<int64_t>(i);
    const float* c = &centres[(g() % 40) * d];
    for (std::size_t j = 0; j < d; ++j) out.X[i * d + j] = c[j] + noise(g);
  }
  return out;
}

std::unique_ptr<HNSWIndex> build(const Data& data, Metric m, Precision p = Precision::Mixed,
                                 std::size_t threads = 2, std::size_t capacity = 64) {
  auto idx = std::make_unique<HNSWIndex>(data.d, m, 16, 100, 64, capacity, 42, p);
  idx->add(data.ids.data(), data.X.data(), data.n, threads);
  return idx;
}

struct Results {
  std::vector<int64_t> ids;
  std::vector<float> dists;
};

Results search(const HNSWIndex& idx, const std::vector<float>& Q, std::size_t k,
               const SearchFilter* f = nullptr, std::size_t ef = 64, std::size_t threads = 2,
               bool exact = false) {
  std::size_t nq = Q.size() / idx.dim();
  Results r{std::vector<int64_t>(nq * k, 12345), std::vector<float>(nq * k, -1.0f)};
  idx.search(Q.data(), nq, k, ef, f, r.ids.data(), r.dists.data(), threads, exact);
  return r;
}

// Exact top-k ids (as labels) over the rows of `data` that `keep` accepts.
template <class Keep>
std::vector<std::vector<int64_t>> exact_ids(const Data& data, Metric m,
                                            const std::vector<float>& Q, std::size_t k,
                                            Keep keep) {
  std::size_t nq = Q.size() / data.d;
  std::vector<std::vector<int64_t>> out(nq);
  for (std::size_t q = 0; q < nq; ++q) {
    TopK top(k);
    for (std::size_t i = 0; i < data.n; ++i)
      if (keep(data.ids[i]))
        top.push(metric_distance(scalar_kernels(), m, &Q[q * data.d], &data.X[i * data.d],
                                 data.d),
                 data.ids[i]);
    std::vector<int64_t> ids(k);
    std::vector<float> d(k);
    top.write(ids.data(), d.data());
    for (int64_t id : ids)
      if (id != -1) out[q].push_back(id);
  }
  return out;
}
std::vector<std::vector<int64_t>> exact_ids(const Data& data, Metric m,
                                            const std::vector<float>& Q, std::size_t k) {
  return exact_ids(data, m, Q, k, [](int64_t) { return true; });
}

double recall(const Results& got, const std::vector<std::vector<int64_t>>& truth, std::size_t k) {
  std::size_t hit = 0, total = 0;
  for (std::size_t q = 0; q < truth.size(); ++q) {
    std::set<int64_t> t(truth[q].begin(), truth[q].end());
    for (std::size_t i = 0; i < k; ++i) hit += t.count(got.ids[q * k + i]);
    total += truth[q].size();
  }
  return total ? double(hit) / double(total) : 1.0;
}

// Queries near the data (perturbed data points), as real queries are.
std::vector<float> queries(std::mt19937_64& g, const Data& data, std::size_t nq) {
  std::vector<float> Q(nq * data.d);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  for (std::size_t q = 0; q < nq; ++q) {
    const float* x = &data.X[(g() % data.n) * data.d];
    for (std::size_t j = 0; j < data.d; ++j) Q[q * data.d + j] = x[j] + noise(g);
  }
  return Q;
}

const Metric kMetrics[] = {Metric::L2, Metric::Cosine, Metric::IP};
constexpr double kRecallFloor = 0.95;  // recall@10, M = 16, ef = 64 (measured 0.99 to 1.0)

}  // namespace

TEST_CASE(hnsw, recall_at_10_vs_exact) {
  std::mt19937_64 g(41);
  Data data = clustered(g, 3000, 32);
  std::vector<float> Q = queries(g, data, 100);
  for (Metric m : kMetrics)
    for (Precision prec : {Precision::Mixed, Precision::F32, Precision::Int8}) {
      if (prec == Precision::Int8 && m == Metric::L2) continue;  // int8: cosine and ip only
      const char* name = prec == Precision::Mixed ? "mixed" : prec == Precision::F32 ? "f32"
                                                                                     : "int8";
      SCOPE("metric=", metric_name(m), " precision=", name);
      auto idx = build(data, m, prec);
      CHECK_EQ(idx->size(), data.n);
      CHECK_EQ(std::string(idx->precision()), name);
      Results r = search(*idx, Q, 10);
      double rc = recall(r, exact_ids(data, m, Q, 10), 10);
      std::printf("  %s %s: recall@10 = %.4f\n", metric_name(m), name, rc);
      CHECK(rc >= kRecallFloor);
      // results: ascending, exact float32 distances of the stored vectors, no padding
      std::vector<float> v(data.d);
      for (std::size_t q = 0; q < 5; ++q)
        for (std::size_t i = 0; i < 10; ++i) {
          REQUIRE(r.ids[q * 10 + i] != -1);
          if (i) CHECK(r.dists[q * 10 + i - 1] <= r.dists[q * 10 + i]);
          idx->get_vector(r.ids[q * 10 + i], v.data());
          CHECK_NEAR(r.dists[q * 10 + i],
                     metric_distance(scalar_kernels(), m, &Q[q * data.d], v.data(), data.d),
                     1e-4 * (1 + std::fabs(r.dists[q * 10 + i])));
        }
    }
}

TEST_CASE(hnsw, recall_on_every_simd_path) {
  std::mt19937_64 g(42);
  Data data = clustered(g, 1200, 17);  // odd dim: every kernel runs its tail
  std::vector<float> Q = queries(g, data, 50);
  for (const std::string& p : supported_paths()) {
    testutil::ActivePath use(p);  // an index keeps the kernels active when it is built
    for (Metric m : {Metric::L2, Metric::Cosine}) {
      SCOPE("path=", p, " metric=", metric_name(m));
      auto idx = build(data, m);
      CHECK_EQ(std::string(idx->simd()), p);
      double rc = recall(search(*idx, Q, 10), exact_ids(data, m, Q, 10), 10);
      std::printf("  %s %s: recall@10 = %.4f\n", p.c_str(), metric_name(m), rc);
      CHECK(rc >= kRecallFloor);
    }
  }
}

// A large batch added to a "mixed" or "f32" cosine/ip index is built by walking int8 codes
// that exist only during the batch: same recall as building on the walk's own copy, the codes
// freed afterwards (memory back to the same figure), and later batches (large and small,
// concurrent with searches) keep the recall.
TEST_CASE(hnsw, large_batches_build_on_int8_codes) {
  std::mt19937_64 g(44);
  Data data = clustered(g, 4000, 48);
  std::vector<float> Q = queries(g, data, 100);
  for (Metric m : {Metric::Cosine, Metric::IP})
    for (Precision prec : {Precision::Mixed, Precision::F32}) {
      SCOPE("metric=", metric_name(m), " precision=", prec == Precision::Mixed ? "mixed" : "f32");
      auto truth = exact_ids(data, m, Q, 10);
      double rc[2];
      std::size_t mem[2];
      for (int on = 0; on < 2; ++on) {
        HNSWIndex idx(data.d, m, 16, 100, 64, 64, 42, prec);
        idx.set_quantized_build(on == 1);
        CHECK_EQ(idx.quantized_build(), on == 1);
        // 2900 in one batch (coded when on), then 1090 more (>= 1024 and 16 x 1090 >= 2900:
        // coded too), then 10 (too few to code the whole index for)
        idx.add(data.ids.data(), data.X.data(), 2900, 2);
        idx.add(data.ids.data() + 2900, data.X.data() + 2900 * data.d, 1090, 2);
        idx.add(data.ids.data() + 3990, data.X.data() + 3990 * data.d, 10, 2);
        CHECK_EQ(idx.size(), data.n);
        CHECK_EQ(idx.coded_batches(), on == 1 ? 2u : 0u);  // both batches, or none
        rc[on] = recall(search(idx, Q, 10), truth, 10);
        mem[on] = idx.memory_usage();
      }
      std::printf("  %s: recall@10 %.4f on the walk's copy, %.4f on int8 codes\n",
                  metric_name(m), rc[0], rc[1]);
      CHECK(rc[1] >= kRecallFloor);
      CHECK(rc[1] >= rc[0] - 0.02);
      CHECK_EQ(mem[1], mem[0]);  // the construction codes are gone
    }
  // L2 (no int8 walk) and small batches are unaffected; a small add and searches running
  // while a large batch is built see one consistent table.
  HNSWIndex idx(data.d, Metric::Cosine, 16, 100, 64, 64, 42, Precision::Mixed);
  idx.add(data.ids.data(), data.X.data(), 2000, 2);
  std::atomic<bool> done{false};
  std::thread side([&] {
    std::vector<int64_t> oi(10);
    std::vector<float> od(10);
    for (std::size_t i = 2000; i < 2100; ++i) {  // one at a time, next to the big batch
      idx.add(&data.ids[i], &data.X[i * data.d], 1, 1);
      idx.search(&Q[(i % 100) * data.d], 1, 10, 64, nullptr, oi.data(), od.data(), 1, false);
    }
    done = true;
  });
  idx.add(data.ids.data() + 2100, data.X.data() + 2100 * data.d, 1900, 1);
  side.join();
  CHECK(done.load());
  CHECK_EQ(idx.coded_batches(), 2u);  // the 2000 and the 1900 (16 x 1900 >= 2000); no single add
  HNSWIndex l2(data.d, Metric::L2, 16, 100, 64, 64, 42, Precision::Mixed);
  l2.add(data.ids.data(), data.X.data(), 2000, 2);
  CHECK_EQ(l2.coded_batches(), 0u);  // no int8 walk for l2
  CHECK_EQ(idx.size(), data.n);
  double rc = recall(search(idx, Q, 10), exact_ids(data, Metric::Cosine, Q, 10), 10);
  std::printf("  mixed cosine, a batch with concurrent single adds: recall@10 %.4f\n", rc);
  CHECK(rc >= kRecallFloor);
}

// Cosine vectors and queries whose float32 sum of squares under- or overflows are normalised
// in double (wide_norm): exact distances, the original vector back.
TEST_CASE(hnsw, cosine_extreme_magnitudes) {
  const std::size_t d = 8;
  CHECK_EQ(HNSWIndex::wide_norm(std::vector<float>(d, 0.0f).data(), d), 0.0);
  std::vector<float> tiny(d, 1e-30f), huge(d, 3e37f);
  CHECK_NEAR(HNSWIndex::wide_norm(tiny.data(), d) / (1e-30 * std::sqrt(8.0)), 1.0, 1e-6);
  CHECK_NEAR(HNSWIndex::wide_norm(huge.data(), d) / (3e37 * std::sqrt(8.0)), 1.0, 1e-6);
  for (Precision prec : {Precision::Mixed, Precision::F32, Precision::Int8}) {
    HNSWIndex idx(d, Metric::Cosine, 16, 100, 64, 8, 42, prec);
    std::vector<float> X(3 * d, 0.0f);
    X[0] = 1e-30f, X[1] = 2e-30f;          // id 1: direction (1, 2)
    X[d + 1] = 3e37f, X[d + 2] = 3e37f;    // id 2: direction (0, 1, 1)
    X[2 * d + 3] = 1.0f;                   // id 3: e3
    std::vector<int64_t> ids{1, 2, 3};
    idx.add(ids.data(), X.data(), 3, 1);
    std::vector<float> back(d);
    idx.get_vector(1, back.data());
    CHECK_NEAR(back[1] / 2e-30f, 1.0f, 1e-5f);
    idx.get_vector(2, back.data());
    CHECK_NEAR(back[2] / 3e37f, 1.0f, 1e-5f);
    std::vector<float> q(d, 0.0f);
    q[0] = 1e-28f, q[1] = 2e-28f;  // the direction of id 1, another tiny magnitude
    Results r = search(idx, q, 3, nullptr, 64, 1);
    CHECK_EQ(r.ids[0], 1);
    CHECK_NEAR(r.dists[0], 0.0f, 1e-5f);
    std::fill(q.begin(), q.end(), 0.0f);
    q[1] = 1e38f, q[2] = 1e38f;  // the direction of id 2, its sum of squares past float32
    r = search(idx, q, 3, nullptr, 64, 1);
    CHECK_EQ(r.ids[0], 2);
    CHECK_NEAR(r.dists[0], 0.0f, 1e-5f);
  }
}

TEST_CASE(hnsw, upsert_remove_and_slot_reuse) {
  std::mt19937_64 g(43);
  Data data = clustered(g, 2000, 24);
  auto idx = build(data, Metric::Cosine, Precision::Mixed, 2, 16);  // grows from capacity 16
  CHECK(idx->capacity() >= data.n);
  CHECK_EQ(idx->ids(), [&] {
    std::vector<int64_t> s(data.ids);
    std::sort(s.begin(), s.end());
    return s;
  }());
  // get_vector gives the vector back as given (cosine vectors are stored unit-length)
  std::vector<float> v(data.d);
  idx->get_vector(data.ids[5], v.data());
  for (std::size_t j = 0; j < data.d; ++j) CHECK_NEAR(v[j], data.X[5 * data.d + j], 1e-5);
  // upsert: same id, new vector; the size does not change
  std::vector<float> nv = testutil::normal(g, data.d);
  idx->add(&data.ids[5], nv.data(), 1, 1);
  CHECK_EQ(idx->size(), data.n);
  idx->get_vector(data.ids[5], v.data());
  for (std::size_t j = 0; j < data.d; ++j) CHECK_NEAR(v[j], nv[j], 1e-5);
  std::copy(nv.begin(), nv.end(), &data.X[5 * data.d]);
  // remove checks every id first: one unknown id and nothing is removed
  int64_t batch[] = {data.ids[0], 999999};
  CHECK_THROWS(idx->remove(batch, 2), UnknownId);
  CHECK(idx->contains(data.ids[0]));
  CHECK_EQ(idx->size(), data.n);
  // remove a third of the ids
  std::unordered_set<int64_t> removed;
  std::vector<int64_t> gone;
  for (std::size_t i = 0; i < data.n; i += 3) gone.push_back(data.ids[i]);
  removed.insert(gone.begin(), gone.end());
  idx->remove(gone.data(), gone.size());
  CHECK_EQ(idx->size(), data.n - gone.size());
  CHECK(!idx->contains(gone[0]));
  CHECK_THROWS(idx->get_vector(gone[1], v.data()), UnknownId);
  CHECK_THROWS(idx->remove(&gone[2], 1), UnknownId);  // already removed
  std::vector<float> Q = queries(g, data, 60);
  auto alive = [&](int64_t id) { return !removed.count(id); };
  Results r = search(*idx, Q, 10);
  for (int64_t id : r.ids) CHECK(id != -1 && alive(id));
  CHECK(recall(r, exact_ids(data, Metric::Cosine, Q, 10, alive), 10) >= kRecallFloor);
  // new ids reuse the freed slots (capacity stays put) and are found
  std::size_t cap = idx->capacity();
  Data more = clustered(g, gone.size(), data.d);
  for (std::size_t i = 0; i < more.n; ++i) more.ids[i] = 5000000 + static_cast<int64_t>(i);
  idx->add(more.ids.data(), more.X.data(), more.n, 2);
  CHECK_EQ(idx->capacity(), cap);
  CHECK_EQ(idx->size(), data.n);
  Data all = data;  // live rows: data minus removed, plus more
  all.ids.insert(all.ids.end(), more.ids.begin(), more.ids.end());
  all.X.insert(all.X.end(), more.X.begin(), more.X.end());
  all.n += more.n;
  r = search(*idx, Q, 10);
  for (int64_t id : r.ids) CHECK(id != -1 && alive(id));
  double rc = recall(r, exact_ids(all, Metric::Cosine, Q, 10, alive), 10);
  std::printf("  recall@10 after removing 1/3 and refilling the slots: %.4f\n", rc);
  CHECK(rc >= kRecallFloor);
  Results own = search(*idx, std::vector<float>(more.X.begin(), more.X.begin() + 10 * data.d), 1);
  for (std::size_t q = 0; q < 10; ++q) CHECK_EQ(own.ids[q], more.ids[q]);  // itself first
}

TEST_CASE(hnsw, filters) {
  std::mt19937_64 g(44);
  Data data = clustered(g, 3000, 16);
  auto idx = build(data, Metric::L2);
  std::vector<float> Q = queries(g, data, 40);
  const std::size_t k = 10;
  auto check_filter = [&](const SearchFilter& f, const char* what, bool exact) {
    SCOPE("filter: ", what);
    auto keep = [&](int64_t id) {
      if (f.has_allowed &&
          std::find(f.allowed_ids.begin(), f.allowed_ids.end(), id) == f.allowed_ids.end())
        return false;
      return !f.predicate || f.predicate(id);
    };
    Results r = search(*idx, Q, k, &f);
    auto truth = exact_ids(data, Metric::L2, Q, k, keep);
    for (std::size_t q = 0; q < truth.size(); ++q)
      for (std::size_t i = 0; i < k; ++i) {
        int64_t id = r.ids[q * k + i];
        if (id == -1) {
          CHECK(i >= truth[q].size());  // padding only when fewer than k pass
          CHECK_EQ(r.dists[q * k + i], kInf);
        } else {
          CHECK(keep(id));
        }
      }
    double rc = recall(r, truth, k);
    if (exact) CHECK_EQ(rc, 1.0);
    else CHECK(rc >= 0.9);
  };
  SearchFilter small;  // <= 2048 ids: resolved to slots and answered exactly
  small.has_allowed = true;
  for (std::size_t i = 0; i < data.n; i += 50) small.allowed_ids.push_back(data.ids[i]);
  small.allowed_ids.push_back(-5);  // unknown ids are ignored
  check_filter(small, "small allow-list", true);
  SearchFilter large;  // > 2048 ids in a compact range: bitmap while walking the graph
  large.has_allowed = true;
  for (std::size_t i = 0; i < data.n; ++i)
    if (i % 10 != 3) large.allowed_ids.push_back(data.ids[i]);
  std::shuffle(large.allowed_ids.begin(), large.allowed_ids.end(), g);  // unsorted input
  check_filter(large, "large allow-list", false);
  SearchFilter pred;  // predicate only
  pred.predicate = [](int64_t id) { return id % 3 == 0; };
  check_filter(pred, "predicate id % 3 == 0", false);
  SearchFilter both = small;
  both.predicate = [](int64_t id) { return id % 2 == 0; };
  check_filter(both, "small allow-list and predicate", true);
  SearchFilter rare;  // a predicate that almost nothing passes: the search finishes exactly
  rare.predicate = [&](int64_t id) { return id == data.ids[17] || id == data.ids[2999]; };
  check_filter(rare, "predicate passing 2 ids", true);
  SearchFilter none;
  none.has_allowed = true;  // empty allow-list: nothing passes
  Results r = search(*idx, Q, k, &none);
  for (int64_t id : r.ids) CHECK_EQ(id, -1);
}

TEST_CASE(hnsw, sparse_ids_and_padding) {
  std::mt19937_64 g(45);
  Data data = clustered(g, 2600, 8);
  for (std::size_t i = 0; i < data.n; ++i)  // ids far apart: no bitmap for the allow-list
    data.ids[i] = static_cast<int64_t>(i) * (int64_t{1} << 40) - (int64_t{1} << 50);
  auto idx = build(data, Metric::L2);
  std::vector<float> Q = queries(g, data, 20);
  SearchFilter big;
  big.has_allowed = true;
  for (std::size_t i = 0; i < data.n; i += 1) if (i % 7) big.allowed_ids.push_back(data.ids[i]);
  Results r = search(*idx, Q, 10, &big);
  auto truth = exact_ids(data, Metric::L2, Q, 10, [](int64_t id) {
    return ((id + (int64_t{1} << 50)) >> 40) % 7 != 0;
  });
  CHECK(recall(r, truth, 10) >= 0.9);
  for (int64_t id : r.ids) CHECK(id != -1 && ((id + (int64_t{1} << 50)) >> 40) % 7 != 0);
  // k larger than the index: every id once, then (-1, +inf)
  HNSWIndex tiny(3, Metric::L2, 8, 50, 10, 4, 7, Precision::Mixed);
  std::vector<float> empty_q = {0, 0, 0};
  Results e = search(tiny, empty_q, 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK(e.ids[i] == -1 && e.dists[i] == kInf);
  const int64_t ids[] = {10, 20, 30};
  const float X[] = {0, 0, 1, 0, 2, 0, 3, 0, 0};
  tiny.add(ids, X, 3, 1);
  Results p = search(tiny, empty_q, 5);
  CHECK_EQ(p.ids[0], 10);
  CHECK_EQ(p.ids[1], 20);
  CHECK_EQ(p.ids[2], 30);
  CHECK_EQ(p.dists[0], 1.0f);
  CHECK_EQ(p.dists[1], 4.0f);
  CHECK_EQ(p.dists[2], 9.0f);
  CHECK(p.ids[3] == -1 && p.ids[4] == -1 && p.dists[4] == kInf);
}

// Writes bytes to a temp file and opens it as the bindings do (MappedFile + open_file).
std::unique_ptr<HNSWIndex> open_bytes(const std::vector<unsigned char>& bytes, bool mapped,
                                      bool verify, int precision = -1) {
  const std::string path = testutil::temp_path("opened.agdb");
  FILE* fp = std::fopen(path.c_str(), "wb");
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), fp);
  std::fclose(fp);
  auto file = std::make_shared<MappedFile>(path);
  std::remove(path.c_str());  // the mapping outlives the name
  return HNSWIndex::open_file(file, "x.agdb", 2, precision, mapped, verify);
}

TEST_CASE(hnsw, save_load_round_trip) {
  std::mt19937_64 g(46);
  Data data = clustered(g, 1500, 20);
  for (Metric m : kMetrics) {
    SCOPE("metric=", metric_name(m));
    auto idx = build(data, m);
    std::vector<int64_t> gone = {data.ids[3], data.ids[100], data.ids[1499]};
    idx->remove(gone.data(), gone.size());  // tombstones are saved too
    idx->set_ef_search(77);
    const std::string path = testutil::temp_path("index.agdb");
    idx->save(path);
    std::vector<unsigned char> bytes = testutil::read_bytes(path);
    REQUIRE(bytes.size() >= kPage && bytes.size() % kPage == 0);
    CHECK_EQ(std::memcmp(bytes.data(), "AGDBHNSW", 8), 0);
    CHECK_EQ(read_le<uint32_t>(bytes.data(), 8), 2u);
    CHECK_EQ(read_section_table<BadFile>(bytes.data(), bytes.size(), "x").size(), 9u);
    CHECK(testutil::read_bytes(path + ".tmp").empty());
    std::remove(path.c_str());
    for (int how = 0; how < 6; ++how) {
      Precision prec = static_cast<Precision>(how % 3);
      bool mapped_open = how < 3;
      SCOPE("precision=", static_cast<int>(prec), " mapped=", mapped_open);
      if (prec == Precision::Int8 && m == Metric::L2) {  // refused, with the reason
        CHECK_THROWS(open_bytes(bytes, mapped_open, false, static_cast<int>(prec)),
                     std::invalid_argument);
        continue;
      }
      bool mixed = prec == Precision::Mixed;
      auto back = open_bytes(bytes, mapped_open, false, static_cast<int>(prec));
      CHECK_EQ(back->mapped(), mapped_open && mixed);  // saved mixed: other precisions copy
      CHECK_EQ(back->dim(), idx->dim());
      CHECK(back->metric() == m);
      CHECK_EQ(back->M(), idx->M());
      CHECK_EQ(back->ef_construction(), idx->ef_construction());
      CHECK_EQ(back->ef_search(), std::size_t{77});
      CHECK_EQ(back->seed(), idx->seed());
      CHECK_EQ(back->size(), idx->size());
      CHECK(back->ids() == idx->ids());
      CHECK(!back->contains(gone[1]));
      std::vector<float> a(data.d), b(data.d);
      idx->get_vector(data.ids[7], a.data());
      back->get_vector(data.ids[7], b.data());
      CHECK(a == b);
      std::vector<float> Q = queries(g, data, 20);
      Results r1 = search(*idx, Q, 10), r2 = search(*back, Q, 10);
      if (mixed) {  // same graph, same vectors: the same answers
        CHECK(r1.ids == r2.ids);
        CHECK(r1.dists == r2.dists);
      } else {
        CHECK(recall(r2, exact_ids(data, m, Q, 10, [&](int64_t id) {
                return std::find(gone.begin(), gone.end(), id) == gone.end();
              }), 10) >= kRecallFloor);
      }
    }
  }
}

TEST_CASE(hnsw, corrupt_files_are_rejected) {
  std::mt19937_64 g(47);
  Data data = clustered(g, 300, 6);
  auto idx = build(data, Metric::L2);
  const std::string path = testutil::temp_path("corrupt.agdb");
  idx->save(path);
  const std::vector<unsigned char> good = testutil::read_bytes(path);
  std::remove(path.c_str());
  REQUIRE(!good.empty());
  auto load = [&](const std::vector<unsigned char>& b) { return open_bytes(b, true, true); };
  CHECK(load(good)->size() == data.n);
  std::vector<unsigned char> b = good;
  b[good.size() / 2] ^= 0x10;  // one flipped bit: checksum mismatch
  CHECK_THROWS(load(b), BadFile);
  b = good;
  b[0] = 'X';  // bad magic
  CHECK_THROWS(load(b), BadFile);
  b.assign(good.begin(), good.end() - 9);  // truncated
  CHECK_THROWS(load(b), BadFile);
  b.assign(good.begin(), good.begin() + 20);
  CHECK_THROWS(load(b), BadFile);
  b = good;
  b.push_back(0);  // trailing byte
  CHECK_THROWS(load(b), BadFile);
  b = good;
  b[8] = 99;  // unsupported version
  CHECK_THROWS(load(b), BadFile);
  try {
    load(std::vector<unsigned char>(good.begin(), good.end() - 1));
  } catch (const BadFile& e) {
    CHECK(std::string(e.what()).find("'x.agdb'") != std::string::npos);  // names the file
  }
}

// A mapped open reads the file in place; its neighbour lists are not checksummed before use,
// so a search on garbage lists must stay inside the file (the sanitizer build checks this),
// and verify() / the first write must refuse them, leaving the index as it was.
TEST_CASE(hnsw, mapped_open_is_bounded_and_copies_on_write) {
  std::mt19937_64 g(49);
  Data data = clustered(g, 600, 16);
  for (Precision prec : {Precision::Mixed, Precision::Int8, Precision::F32}) {
    SCOPE("precision=", static_cast<int>(prec));
    auto idx = build(data, Metric::Cosine, prec);
    const std::string path = testutil::temp_path("mapped.agdb");
    idx->save(path);
    std::vector<unsigned char> good = testutil::read_bytes(path);
    std::remove(path.c_str());
    std::vector<float> Q = queries(g, data, 25);
    auto back = open_bytes(good, true, false);
    CHECK(back->mapped());
    CHECK(std::string(back->precision()) == idx->precision());
    Results r1 = search(*idx, Q, 10), r2 = search(*back, Q, 10);
    CHECK(r1.ids == r2.ids);
    CHECK(r1.dists == r2.dists);
    CHECK(back->memory_usage() < good.size() + (std::size_t{1} << 20));
    back->verify(1);
    int64_t extra_id = 1 << 30;
    back->add(&extra_id, data.X.data(), 1, 1);  // the first write copies the file
    CHECK(!back->mapped());
    CHECK(back->contains(extra_id));
    CHECK_EQ(back->size(), data.n + 1);

    // garbage neighbour lists: every count at its maximum, every id far outside the file
    auto secs = read_section_table<BadFile>(good.data(), good.size(), "x");
    std::vector<unsigned char> bad = good;
    for (const auto& sec : secs) {
      if (sec.id != kSecLinks0) continue;
      for (std::size_t w = 0; w < sec.bytes / 4; ++w) {
        uint32_t v = (w % 3 == 0) ? 0xFFFFu : 0xFFFFFF00u + static_cast<uint32_t>(w % 200);
        std::memcpy(&bad[sec.offset + 4 * w], &v, 4);
      }
    }
    auto lazy = open_bytes(bad, true, false);
    Results r3 = search(*lazy, Q, 10);  // whatever it finds, it stays inside the file
    CHECK_EQ(r3.ids.size(), Q.size() / data.d * 10);
    CHECK_THROWS(lazy->verify(1), BadFile);
    CHECK_THROWS(lazy->add(&extra_id, data.X.data(), 1, 1), BadFile);
    CHECK(lazy->mapped());
    CHECK(!lazy->contains(extra_id));
    CHECK_THROWS(open_bytes(bad, true, true), BadFile);
    CHECK_THROWS(open_bytes(bad, false, false), BadFile);
  }
}

// exact=True on a quantized index reads codes first, then float32 within the error bound:
// the answer must be the float32 scan's, ids and distances, in memory and mapped.
TEST_CASE(hnsw, exact_search_through_codes_equals_float32_scan) {
  std::mt19937_64 g(50);
  Data data = clustered(g, 900, 24);
  std::vector<float> Q = queries(g, data, 30);
  for (Metric m : {Metric::Cosine, Metric::IP}) {
    auto ref = build(data, m, Precision::F32);
    for (Precision p : {Precision::Int8, Precision::Mixed}) {
      SCOPE("metric=", metric_name(m), " precision=", static_cast<int>(p));
      auto idx = build(data, m, p);
      const std::string path = testutil::temp_path("exact.agdb");
      idx->save(path);
      auto mapped = open_bytes(testutil::read_bytes(path), true, false);
      std::remove(path.c_str());
      for (std::size_t k : {1, 7, 40}) {
        Results want = search(*ref, Q, k, nullptr, 64, 2, true);
        for (const HNSWIndex* ix : {idx.get(), mapped.get()}) {
          Results got = search(*ix, Q, k, nullptr, 64, 2, true);
          CHECK(got.ids == want.ids);
          CHECK(got.dists == want.dists);
        }
      }
    }
  }
}

// A file without a graph (what the numpy backend writes) is rebuilt into an index on load.
TEST_CASE(hnsw, flat_file_is_rebuilt) {
  std::mt19937_64 g(48);
  Data data = clustered(g, 800, 12);
  const std::size_t n = data.n, d = data.d;
  std::vector<unsigned char> f(HNSWIndex::kHeaderSize, 0);
  auto w32 = [&](std::size_t off, uint32_t v) { std::memcpy(&f[off], &v, 4); };
  auto w64 = [&](std::size_t off, uint64_t v) { std::memcpy(&f[off], &v, 8); };
  std::memcpy(f.data(), "AGDBHNSW", 8);
  w32(8, 1);  // the flat layout of version 1
  w32(12, HNSWIndex::kHeaderSize);
  w32(16, static_cast<uint32_t>(d));
  w32(20, static_cast<uint32_t>(Metric::L2));
  w32(24, 16);   // M
  w32(28, 100);  // ef_construction
  w32(32, 64);   // ef_search
  w32(36, 0);    // no graph
  w64(40, n + 1);  // slots: the last one deleted
  w64(48, n);
  w32(64, 32);  // M0 = 2 M
  w64(68, 42);
  auto put = [&](const void* p, std::size_t bytes) {
    const auto* c = static_cast<const unsigned char*>(p);
    f.insert(f.end(), c, c + bytes);
  };
  std::vector<int64_t> labels(data.ids);
  labels.push_back(77);
  put(labels.data(), 8 * (n + 1));
  std::vector<unsigned char> deleted(n + 1, 0);
  deleted[n] = 1;
  put(deleted.data(), n + 1);
  put(data.X.data(), 4 * n * d);
  std::vector<float> pad(d, 0.5f);
  put(pad.data(), 4 * d);
  std::vector<float> norms(n + 1, 1.0f);
  put(norms.data(), 4 * (n + 1));
  uint32_t crc = crc32_update(0, f.data(), f.size());
  put(&crc, 4);
  auto idx = HNSWIndex::from_bytes(f.data(), f.size(), "flat.agdb", 2);
  CHECK_EQ(idx->size(), n);
  CHECK(!idx->contains(77));
  std::vector<float> Q = queries(g, data, 30);
  CHECK(recall(search(*idx, Q, 10), exact_ids(data, Metric::L2, Q, 10), 10) >= kRecallFloor);
}
