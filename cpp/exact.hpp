// Exact distances and exact top-k over a row-major float32 matrix.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "kernels.hpp"
#include "parallel.hpp"

namespace agentdb {

enum class Metric : uint32_t { Cosine = 0, IP = 1, L2 = 2 };

inline const char* metric_name(Metric m) {
  switch (m) {
    case Metric::Cosine: return "cosine";
    case Metric::IP: return "ip";
    case Metric::L2: return "l2";
  }
  return "?";
}

// Distance between two raw vectors under a metric, using the given kernels.
inline float metric_distance(const KernelTable& k, Metric m, const float* a, const float* b,
                             std::size_t d) {
  switch (m) {
    case Metric::Cosine: return k.cosine(a, b, d);
    case Metric::IP: return 1.0f - k.dot(a, b, d);
    case Metric::L2: return k.l2sq(a, b, d);
  }
  return 0.0f;
}

// Rows are streamed: fetch the row kAhead rows in front of the one being measured (the
// hardware prefetcher alone leaves half the bandwidth unused on long row-by-row scans).
constexpr std::size_t kAhead = 4;
inline void prefetch_row(const float* row, std::size_t d) {
  const char* p = reinterpret_cast<const char*>(row);
  for (std::size_t off = 0; off < d * sizeof(float); off += 64) __builtin_prefetch(p + off, 0, 3);
}

// A bounded max-heap keeping the k smallest (distance, id) pairs; ties prefer the smaller id.
class TopK {
 public:
  explicit TopK(std::size_t k) : k_(k) { heap_.reserve(k + 1); }
  float worst() const {
    return heap_.size() < k_ ? std::numeric_limits<float>::infinity() : heap_.front().first;
  }
  void push(float d, int64_t id) {
    if (heap_.size() < k_) {
      heap_.emplace_back(d, id);
      std::push_heap(heap_.begin(), heap_.end());
    } else if (std::make_pair(d, id) < heap_.front()) {
      std::pop_heap(heap_.begin(), heap_.end());
      heap_.back() = {d, id};
      std::push_heap(heap_.begin(), heap_.end());
    }
  }
  // Sorted ascending; writes exactly k entries, padding with (-1, +inf).
  void write(int64_t* ids, float* dists) {
    std::sort_heap(heap_.begin(), heap_.end());
    std::size_t i = 0;
    for (; i < heap_.size(); ++i) {
      ids[i] = heap_[i].second;
      dists[i] = heap_[i].first;
    }
    for (; i < k_; ++i) {
      ids[i] = -1;
      dists[i] = std::numeric_limits<float>::infinity();
    }
  }
  std::vector<std::pair<float, int64_t>>& items() { return heap_; }

 private:
  std::size_t k_;
  std::vector<std::pair<float, int64_t>> heap_;
};

// out[i*n + j] = distance(Q[i], X[j]); parallel over query rows (or over X rows for one query).
inline void distance_matrix(const KernelTable& kt, Metric m, const float* Q, std::size_t nq,
                            const float* X, std::size_t n, std::size_t d, float* out,
                            std::size_t threads) {
  constexpr std::size_t kBlock = 1024;  // rows of X per task
  std::size_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(nq * blocks, threads, [&](std::size_t t, std::size_t) {
    std::size_t qi = t / blocks, b = t % blocks;
    std::size_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    const float* q = Q + qi * d;
    float* o = out + qi * n;
    for (std::size_t j = lo; j < hi; ++j) {
      if (j + kAhead < hi) prefetch_row(X + (j + kAhead) * d, d);
      o[j] = metric_distance(kt, m, q, X + j * d, d);
    }
  });
}

// Squared norms of n rows (cosine needs them once per call, not once per pair).
inline std::vector<float> row_sqnorms(const KernelTable& kt, const float* X, std::size_t n,
                                      std::size_t d, std::size_t threads) {
  std::vector<float> out(n);
  constexpr std::size_t kBlock = 4096;
  parallel_for((n + kBlock - 1) / kBlock, threads, [&](std::size_t b, std::size_t) {
    for (std::size_t j = b * kBlock; j < std::min(n, (b + 1) * kBlock); ++j)
      out[j] = kt.dot(X + j * d, X + j * d, d);
  });
  return out;
}

// 1 / |row| for cosine (0 for a zero row, so that its distance comes out as 1 - 0 = 1, the
// kernels' convention), or 1 for inner product: distance = 1 - dot * scale_q * scale_x.
inline std::vector<float> row_scales(const KernelTable& kt, Metric m, const float* X,
                                     std::size_t n, std::size_t d, std::size_t threads) {
  if (m != Metric::Cosine) return std::vector<float>(n, 1.0f);
  std::vector<float> s = row_sqnorms(kt, X, n, d, threads);
  for (float& v : s) v = v > 0.0f ? 1.0f / std::sqrt(v) : (v == 0.0f ? 0.0f : v);
  return s;
}

// Batch exact top-k for cosine / inner product with the register-blocked tile kernel: groups
// of up to 64 queries walk X in L2-sized blocks, 4 queries x 4 rows per kernel call, and a
// distance enters a query's heap only when it beats that heap's current worst (the fused
// top-k). Large groups matter: every group streams all of X from memory once, so 16-query
// groups made 1,000 queries over 100k x 384 read 9.7 GB. The distances equal the per-pair
// kernels' up to float rounding (the sums associate differently).
inline bool tiled_topk(const KernelTable& kt, Metric m, const float* Q, std::size_t nq,
                       const float* X, std::size_t n, std::size_t d, std::size_t k,
                       int64_t* out_ids, float* out_d, std::size_t threads) {
  constexpr std::size_t kTile = 4, kMaxGroup = 128;
  // as many queries per group as keeps every thread busy, a multiple of the tile, at most 64
  std::size_t per_thread = (nq + threads - 1) / threads;
  const std::size_t kGroup =
      std::min(kMaxGroup, std::max(kTile, (per_thread + kTile - 1) / kTile * kTile));
  std::atomic<bool> nonfinite{false};
  const std::vector<float> xs = row_scales(kt, m, X, n, d, threads);
  const std::vector<float> qs = row_scales(kt, m, Q, nq, d, threads);
  std::size_t rows_per_block =
      std::max<std::size_t>(64, (256 * 1024) / (d * sizeof(float))) / kTile * kTile;
  std::size_t n4 = n / kTile * kTile;  // rows handled by tiles; the rest one pair at a time
  std::size_t groups = (nq + kGroup - 1) / kGroup;
  parallel_for(groups, threads, [&](std::size_t g, std::size_t) {
    bool bad = false;
    std::size_t q0 = g * kGroup, q1 = std::min(nq, q0 + kGroup), gq = q1 - q0;
    std::size_t padded = (gq + kTile - 1) / kTile * kTile;
    std::vector<float> qb(padded * d, 0.0f);  // the group's queries, zero rows to a multiple of 4
    std::copy(Q + q0 * d, Q + q1 * d, qb.begin());
    std::vector<TopK> heaps;
    heaps.reserve(gq);
    for (std::size_t q = 0; q < gq; ++q) heaps.emplace_back(k);
    std::vector<float> worst(gq, std::numeric_limits<float>::infinity());
    constexpr float kInf = std::numeric_limits<float>::infinity();
    auto distance = [&](std::size_t q, std::size_t j, float dot) {
      return 1.0f - dot * (qs[q0 + q] * xs[j]);
    };
    auto offer = [&](std::size_t q, std::size_t j, float dist) {
      if (!(dist < kInf)) bad = true;
      if (dist <= worst[q]) {
        heaps[q].push(dist, static_cast<int64_t>(j));
        worst[q] = heaps[q].worst();
      }
    };
    alignas(64) float tile[kTile * kTile];
    for (std::size_t lo = 0; lo < n4; lo += rows_per_block) {
      std::size_t hi = std::min(n4, lo + rows_per_block);
      for (std::size_t qt = 0; qt < gq; qt += kTile) {
        std::size_t real = std::min(kTile, gq - qt);
        for (std::size_t j = lo; j < hi; j += kTile) {
          kt.dot4x4(qb.data() + qt * d, X + j * d, d, tile);
          // the fused top-k: 16 distances, one compare each; a heap is touched only when a
          // distance beats its worst (rare once the heaps are full), or is not finite
          for (std::size_t a = 0; a < real; ++a) {
            float w = worst[qt + a];
            bool any = false;
            float dist[kTile];
            for (std::size_t b = 0; b < kTile; ++b) {
              dist[b] = distance(qt + a, j + b, tile[a * kTile + b]);
              any |= !(dist[b] > w) || !(dist[b] < kInf);
            }
            if (any)
              for (std::size_t b = 0; b < kTile; ++b) offer(qt + a, j + b, dist[b]);
          }
        }
      }
    }
    for (std::size_t j = n4; j < n; ++j)
      for (std::size_t q = 0; q < gq; ++q)
        offer(q, j, distance(q, j, kt.dot(Q + (q0 + q) * d, X + j * d, d)));
    for (std::size_t q = 0; q < gq; ++q) heaps[q].write(out_ids + (q0 + q) * k, out_d + (q0 + q) * k);
    if (bad) nonfinite = true;
  });
  return nonfinite.load();
}

// Exact top-k. Blocks of X rows are shared by a group of queries so they are read from cache;
// batches of 8+ queries under cosine / inner product go through the tile kernel (tiled_topk).
// Returns true when some distance was NaN or infinite (the caller then checks its input).
inline bool exact_topk(const KernelTable& kt, Metric m, const float* Q, std::size_t nq,
                       const float* X, std::size_t n, std::size_t d, std::size_t k,
                       int64_t* out_ids, float* out_d, std::size_t threads) {
  threads = resolve_threads(threads);
  std::atomic<bool> nonfinite{false};
  if (nq >= 8 && m != Metric::L2 && (nq >= threads * 2 || n < 4096))
    return tiled_topk(kt, m, Q, nq, X, n, d, k, out_ids, out_d, threads);
  if (nq >= threads * 2 || n < 4096) {
    // Parallel over groups of queries; inside a group walk X in L2-sized blocks.
    constexpr std::size_t kGroup = 16;
    std::size_t rows_per_block = std::max<std::size_t>(64, (256 * 1024) / (d * sizeof(float)));
    std::size_t groups = (nq + kGroup - 1) / kGroup;
    parallel_for(groups, threads, [&](std::size_t g, std::size_t) {
      bool bad = false;
      std::size_t q0 = g * kGroup, q1 = std::min(nq, q0 + kGroup);
      std::vector<TopK> heaps;
      heaps.reserve(q1 - q0);
      for (std::size_t q = q0; q < q1; ++q) heaps.emplace_back(k);
      for (std::size_t lo = 0; lo < n; lo += rows_per_block) {
        std::size_t hi = std::min(n, lo + rows_per_block);
        for (std::size_t q = q0; q < q1; ++q) {
          TopK& h = heaps[q - q0];
          const float* qv = Q + q * d;
          float worst = h.worst();
          for (std::size_t j = lo; j < hi; ++j) {
            if (q == q0 && j + kAhead < hi) prefetch_row(X + (j + kAhead) * d, d);
            float dist = metric_distance(kt, m, qv, X + j * d, d);
            if (!(dist < std::numeric_limits<float>::infinity())) bad = true;
            if (dist <= worst) {
              h.push(dist, static_cast<int64_t>(j));
              worst = h.worst();
            }
          }
        }
      }
      for (std::size_t q = q0; q < q1; ++q) heaps[q - q0].write(out_ids + q * k, out_d + q * k);
      if (bad) nonfinite = true;
    });
    return nonfinite.load();
  }
  // Few queries, many rows: split X among threads per query, then merge the partial heaps.
  std::size_t chunks = threads;
  for (std::size_t q = 0; q < nq; ++q) {
    const float* qv = Q + q * d;
    std::vector<TopK> part(chunks, TopK(k));
    std::size_t per = (n + chunks - 1) / chunks;
    parallel_for(chunks, threads, [&](std::size_t c, std::size_t) {
      bool bad = false;
      std::size_t lo = c * per, hi = std::min(n, lo + per);
      TopK& h = part[c];
      float worst = h.worst();
      for (std::size_t j = lo; j < hi; ++j) {
        if (j + kAhead < hi) prefetch_row(X + (j + kAhead) * d, d);
        float dist = metric_distance(kt, m, qv, X + j * d, d);
        if (!(dist < std::numeric_limits<float>::infinity())) bad = true;
        if (dist <= worst) {
          h.push(dist, static_cast<int64_t>(j));
          worst = h.worst();
        }
      }
      if (bad) nonfinite = true;
    });
    TopK merged(k);
    for (auto& p : part)
      for (auto& it : p.items()) merged.push(it.first, it.second);
    merged.write(out_ids + q * k, out_d + q * k);
  }
  return nonfinite.load();
}

}  // namespace agentdb
