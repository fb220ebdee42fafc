// HNSW (Malkov & Yashunin) approximate nearest-neighbour index, header-only, no Python.
//
// Layout: vectors contiguous in one 64-byte aligned block (cosine vectors stored unit-length),
// level-0 neighbour lists fixed-size in a second block ([count, M0 slots] per node), upper
// levels per node. 64-bit user ids map to 32-bit slots. Deletes are tombstones that keep routing
// searches; their slots are reused by later inserts after the old node's neighbours are
// re-linked among themselves (so nothing becomes unreachable).
//
// Concurrency: searches and inserts hold `resize_mu_` shared; growing the capacity holds it
// exclusively. Neighbour lists are guarded by per-node locks during construction; query-time
// traversal reads them without locks (counts are clamped), as hnswlib does.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "crc32.hpp"
#include "exact.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace agentdb {

// Allocate a block for random access; on Linux large blocks are aligned to 2 MiB and asked to
// be backed by transparent huge pages (fewer TLB misses when a search hops across the graph).
inline void* alloc_block(std::size_t bytes) {
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  std::size_t align = bytes >= kHuge ? kHuge : 64;
  std::size_t size = ((std::max<std::size_t>(bytes, 1) + align - 1) / align) * align;
  void* p = std::aligned_alloc(align, size);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHuge) madvise(p, size, MADV_HUGEPAGE);
#endif
  return p;
}

// The lock of one node's neighbour lists during construction: one byte, spinning. Critical
// sections copy or edit one list (tens of nanoseconds), so waiting in the kernel as a
// std::mutex can do never pays; its lock/unlock calls were 10% of a build's profile, and it
// took 40 bytes per node.
class NodeLock {
 public:
  void lock() noexcept {
    while (flag_.exchange(1, std::memory_order_acquire)) {
      for (int spins = 0; flag_.load(std::memory_order_relaxed); ++spins) {
        if (spins >= 64) {  // the holder may have been preempted (more threads than cores)
          std::this_thread::yield();
          spins = 0;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
    }
  }
  void unlock() noexcept { flag_.store(0, std::memory_order_release); }

 private:
  std::atomic<uint8_t> flag_{0};
};

// Thrown for an unknown id (bindings map it to KeyError).
struct UnknownId : std::out_of_range {
  explicit UnknownId(int64_t id) : std::out_of_range("unknown id " + std::to_string(id)) {}
};
// Thrown for a file that is not a valid index (bindings map it to ValueError).
struct BadFile : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Optional search filter: an allow-list of ids and/or a predicate on ids.
struct SearchFilter {
  std::vector<int64_t> allowed_ids;  // used when has_allowed
  bool has_allowed = false;
  std::function<bool(int64_t)> predicate;  // may be empty
};

// What the graph walk reads: float32 only; "mixed", a binary16 copy (final ranking exact in
// float32); "int8", one int8 code per value with a per-vector scale, a quarter of float32's
// bytes (final ranking exact in float32; cosine and inner product only).
enum class Precision : uint8_t { F32 = 0, Mixed = 1, Int8 = 2 };

class HNSWIndex {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFFu;
  static constexpr uint32_t kFormatVersion = 1;
  static constexpr std::size_t kHeaderSize = 128;

  HNSWIndex(std::size_t dim, Metric metric, std::size_t M, std::size_t ef_construction,
            std::size_t ef_search, std::size_t capacity, uint64_t seed,
            Precision precision = Precision::Mixed)
      : dim_(dim),
        use_half_(precision == Precision::Mixed),
        use_i8_(precision == Precision::Int8),
        metric_(metric),
        M_(M),
        M0_(2 * M),
        efc_(ef_construction),
        ef_(ef_search),
        seed_(seed),
        rng_(seed),
        level_mult_(1.0 / std::log(static_cast<double>(std::max<std::size_t>(M, 2)))),
        kernels_(&active_kernels()) {
    if (use_i8_ && metric == Metric::L2)
      throw std::invalid_argument("precision 'int8' supports the cosine and ip metrics, not l2");
    dist_ = metric == Metric::L2 ? kernels_->l2sq : kernels_->dot;
    grow_to(std::max<std::size_t>(capacity, 1));
  }

  ~HNSWIndex() {
    std::free(vectors_);
    std::free(half_);
    std::free(codes_);
    std::free(links0_);
  }
  HNSWIndex(const HNSWIndex&) = delete;
  HNSWIndex& operator=(const HNSWIndex&) = delete;

  // ---- properties -------------------------------------------------------------------------
  std::size_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  std::size_t M() const { return M_; }
  std::size_t ef_construction() const { return efc_; }
  std::size_t ef_search() const { return ef_.load(); }
  void set_ef_search(std::size_t ef) { ef_.store(ef); }
  std::size_t capacity() const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    return cap_;
  }
  std::size_t size() const { return n_live_.load(); }
  uint64_t seed() const { return seed_; }
  const char* simd() const { return kernels_->name; }
  // "mixed": graph traversal on a binary16 copy, final ranking exact in float32; "f32": all
  // float32 (half the memory of "mixed", somewhat slower searches).
  const char* precision() const { return use_i8_ ? "int8" : use_half_ ? "mixed" : "f32"; }

  // ---- writes -----------------------------------------------------------------------------
  // Insert or replace n vectors (already validated: finite, right dim, non-zero for cosine,
  // ids unique within the batch and != -1).
  void add(const int64_t* ids, const float* vecs, std::size_t n, std::size_t threads) {
    if (n == 0) return;
    std::vector<uint32_t> slots(n);
    std::size_t live_before = n_live_.load();
    {
      std::unique_lock<std::shared_mutex> g(resize_mu_);
      std::lock_guard<std::mutex> m(map_mu_);
      std::size_t upserts = 0;
      bool entry_freed = entry_ != kNone && deleted_[entry_];
      for (std::size_t i = 0; i < n; ++i) {
        auto it = id2slot_.find(ids[i]);
        if (it == id2slot_.end()) continue;
        ++upserts;
        entry_freed |= it->second == entry_;
      }
      std::size_t reusable = free_slots_.size() + upserts;
      if (entry_freed && reusable > 0) --reusable;  // the entry point is never recycled
      std::size_t need = n_slots_ + (n > reusable ? n - reusable : 0);
      if (need > cap_) grow_to(std::max(need, cap_ * 2));
      for (std::size_t i = 0; i < n; ++i) {
        auto it = id2slot_.find(ids[i]);
        if (it != id2slot_.end()) {  // upsert: tombstone the old node, free its slot
          deleted_[it->second] = 1;
          free_slots_.push_back(it->second);
          id2slot_.erase(it);
          n_live_.fetch_sub(1);
        }
        slots[i] = take_slot_locked();
        building_[slots[i]] = 1;
        id2slot_[ids[i]] = slots[i];
        labels_[slots[i]] = ids[i];
        n_live_.fetch_add(1);
      }
    }
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    // The first few hundred nodes go in one by one: while a graph is tiny, parallel inserts
    // would mostly see each other half-built and crowd the entry point's neighbour list.
    constexpr std::size_t kSequentialSeed = 512;
    std::size_t seq = live_before < kSequentialSeed ? std::min(n, kSequentialSeed - live_before)
                                                    : 0;
    for (std::size_t i = 0; i < seq; ++i) insert_slot(slots[i], vecs + i * dim_);
    parallel_for(n - seq, threads, [&](std::size_t i, std::size_t) {
      insert_slot(slots[seq + i], vecs + (seq + i) * dim_);
    });
  }

  // Tombstone ids; all ids are checked before anything changes.
  void remove(const int64_t* ids, std::size_t n) {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    std::lock_guard<std::mutex> m(map_mu_);
    for (std::size_t i = 0; i < n; ++i)
      if (!id2slot_.count(ids[i])) throw UnknownId(ids[i]);
    for (std::size_t i = 0; i < n; ++i) {
      auto it = id2slot_.find(ids[i]);
      if (it == id2slot_.end()) continue;  // duplicate within the batch
      deleted_[it->second] = 1;
      free_slots_.push_back(it->second);
      id2slot_.erase(it);
      n_live_.fetch_sub(1);
    }
  }

  // ---- reads ------------------------------------------------------------------------------
  bool contains(int64_t id) const {
    std::lock_guard<std::mutex> m(map_mu_);
    return id2slot_.count(id) != 0;
  }

  // Copies the vector as it was given (cosine vectors are scaled back by their norm).
  void get_vector(int64_t id, float* out) const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    uint32_t s;
    {
      std::lock_guard<std::mutex> m(map_mu_);
      auto it = id2slot_.find(id);
      if (it == id2slot_.end()) throw UnknownId(id);
      s = it->second;
    }
    const float* v = vec(s);
    float nrm = norms_[s];
    for (std::size_t j = 0; j < dim_; ++j) out[j] = v[j] * nrm;
  }

  std::vector<int64_t> ids() const {
    std::lock_guard<std::mutex> m(map_mu_);
    std::vector<int64_t> out;
    out.reserve(id2slot_.size());
    for (auto& kv : id2slot_) out.push_back(kv.first);
    std::sort(out.begin(), out.end());
    return out;
  }

  std::size_t memory_usage() const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    std::size_t bytes = sizeof(*this);
    bytes += cap_ * dim_ * sizeof(float);                  // vectors
    if (use_half_) bytes += cap_ * dim_ * sizeof(uint16_t);  // traversal copy
    if (use_i8_) bytes += cap_ * (dim_ + sizeof(float));     // int8 codes + scales
    bytes += cap_ * (M0_ + 1) * sizeof(uint32_t);          // level-0 links
    bytes += cap_ * (sizeof(int64_t) + 1 + sizeof(float) + sizeof(int32_t));  // per-slot arrays
    bytes += cap_ * sizeof(std::vector<uint32_t>);
    for (std::size_t s = 0; s < n_slots_; ++s) bytes += upper_[s].capacity() * sizeof(uint32_t);
    bytes += cap_ * sizeof(NodeLock);
    {
      std::lock_guard<std::mutex> m(map_mu_);
      bytes += id2slot_.bucket_count() * sizeof(void*) + id2slot_.size() * 32;
      bytes += free_slots_.capacity() * sizeof(uint32_t);
    }
    {
      std::lock_guard<std::mutex> p(pool_mu_);
      for (auto& c : pool_) bytes += c->visited.tags.capacity() * sizeof(uint16_t);
    }
    return bytes;
  }

  // Search nq queries (already validated). Writes k results per query (padded with -1/+inf).
  void search(const float* queries, std::size_t nq, std::size_t k, std::size_t ef,
              const SearchFilter* filter, int64_t* out_ids, float* out_d,
              std::size_t threads) const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    ef = std::max(ef, k);
    // Small allow-lists are resolved to slots and answered exactly (cheaper than walking the
    // graph for rare matches); large ones are checked by binary search on a sorted copy.
    std::vector<uint32_t> allowed_slots;
    std::vector<int64_t> sorted_allowed;
    bool brute = false;
    if (filter && filter->has_allowed) {
      const auto& al = filter->allowed_ids;
      brute = al.size() <= 2048 || al.size() * 16 < n_live_.load();
      if (brute) {
        std::lock_guard<std::mutex> m(map_mu_);
        allowed_slots.reserve(al.size());
        for (int64_t id : al) {
          auto it = id2slot_.find(id);
          if (it != id2slot_.end()) allowed_slots.push_back(it->second);
        }
        std::sort(allowed_slots.begin(), allowed_slots.end());
        allowed_slots.erase(std::unique(allowed_slots.begin(), allowed_slots.end()),
                            allowed_slots.end());
      } else if (!std::is_sorted(al.begin(), al.end())) {
        sorted_allowed = al;
        std::sort(sorted_allowed.begin(), sorted_allowed.end());
      }
    }
    const std::vector<int64_t>* allow =
        (filter && filter->has_allowed) ? (sorted_allowed.empty() ? &filter->allowed_ids
                                                                  : &sorted_allowed)
                                        : nullptr;
    // Ids in a compact range (the usual autoincrement ids) get an O(1) bitmap instead.
    std::vector<uint64_t> id_bits;
    int64_t id_base = 0;
    if (!brute && allow && !allow->empty()) {
      int64_t lo = allow->front(), hi = allow->back();
      if (lo >= 0 && hi - lo < (int64_t{1} << 27)) {
        id_base = lo;
        id_bits.assign(static_cast<std::size_t>((hi - lo) / 64 + 1), 0);
        for (int64_t id : *allow) {
          auto o = static_cast<uint64_t>(id - lo);
          id_bits[o >> 6] |= uint64_t{1} << (o & 63);
        }
      }
    }
    Filter f{filter, brute ? nullptr : allow, this, id_bits.empty() ? nullptr : &id_bits,
             id_base};
    bool filtered = filter && (filter->has_allowed || filter->predicate);
    parallel_for(nq, threads, [&](std::size_t qi, std::size_t) {
      const float* q = queries + qi * dim_;
      std::vector<float> qn;
      q = prepare_query(q, qn);
      int64_t* oi = out_ids + qi * k;
      float* od = out_d + qi * k;
      if (brute) {
        brute_force(q, k, allowed_slots.data(), allowed_slots.size(), f, oi, od);
        return;
      }
      std::size_t got = graph_search(q, k, ef, filtered ? &f : nullptr, oi, od);
      // Short of k (a selective filter, or nodes still being inserted): finish exactly.
      if (got < k && (filtered || got < n_live_.load())) brute_force(q, k, nullptr, n_slots_, f, oi, od);
    });
  }

  // ---- persistence -----------------------------------------------------------------------
  void save(const std::string& path) const {
    std::unique_lock<std::shared_mutex> g(resize_mu_);  // a consistent snapshot
    std::lock_guard<std::mutex> m(map_mu_);
    CrcFileWriter out(path);
    auto put = [&](const void* p, std::size_t bytes) { out.put(p, bytes); };
    unsigned char h[kHeaderSize] = {0};
    std::memcpy(h, "AGDBHNSW", 8);
    auto w32 = [&](std::size_t off, uint32_t v) { std::memcpy(h + off, &v, 4); };
    auto w64 = [&](std::size_t off, uint64_t v) { std::memcpy(h + off, &v, 8); };
    w32(8, kFormatVersion);
    w32(12, kHeaderSize);
    w32(16, static_cast<uint32_t>(dim_));
    w32(20, static_cast<uint32_t>(metric_));
    w32(24, static_cast<uint32_t>(M_));
    w32(28, static_cast<uint32_t>(efc_));
    w32(32, static_cast<uint32_t>(ef_.load()));
    w32(36, 1u);  // has_graph
    w64(40, n_slots_);
    w64(48, n_live_.load());
    int32_t ml = max_level_;
    std::memcpy(h + 56, &ml, 4);
    w32(60, entry_);
    w32(64, static_cast<uint32_t>(M0_));
    w64(68, seed_);
    put(h, kHeaderSize);
    put(labels_.data(), n_slots_ * sizeof(int64_t));
    put(deleted_.data(), n_slots_);
    put(vectors_, n_slots_ * dim_ * sizeof(float));
    put(norms_.data(), n_slots_ * sizeof(float));
    put(levels_.data(), n_slots_ * sizeof(int32_t));
    put(links0_, n_slots_ * (M0_ + 1) * sizeof(uint32_t));
    for (std::size_t s = 0; s < n_slots_; ++s)
      put(upper_[s].data(), static_cast<std::size_t>(levels_[s]) * (M_ + 1) * sizeof(uint32_t));
    out.commit();
  }

  // Parse a whole file image. Throws BadFile with a message naming the problem.
  static std::unique_ptr<HNSWIndex> from_bytes(const unsigned char* buf, std::size_t size,
                                               const std::string& path, std::size_t threads,
                                               Precision precision = Precision::Mixed) {
    const std::string where = "'" + path + "'";
    if (size >= 8 && std::memcmp(buf, "AGDBHNSW", 8) != 0)
      throw BadFile(where + " is not an AgentDB index file (bad magic)");
    if (size < kHeaderSize + 4)
      throw BadFile(where + " is truncated: " + std::to_string(size) + " bytes");
    auto r32 = [&](std::size_t off) { return read_le<uint32_t>(buf, off); };
    auto r64 = [&](std::size_t off) { return read_le<uint64_t>(buf, off); };
    uint32_t version = r32(8);
    if (version != kFormatVersion)
      throw BadFile(where + " has unsupported format version " + std::to_string(version) +
                    " (this build reads version " + std::to_string(kFormatVersion) + ")");
    uint32_t header = r32(12), dim = r32(16), metric = r32(20), M = r32(24), efc = r32(28);
    uint32_t ef = r32(32), flags = r32(36), entry = r32(60), M0 = r32(64);
    uint64_t n_slots = r64(40), n_live = r64(48), seed = r64(68);
    int32_t max_level;
    std::memcpy(&max_level, buf + 56, 4);
    if (header != kHeaderSize || dim == 0 || dim > (1u << 20) || metric > 2 || M < 2 ||
        M > 2048 || M0 != 2 * M || efc == 0 || ef == 0 || n_live > n_slots ||
        n_slots > (uint64_t{1} << 32) - 2)
      throw BadFile(where + " has a corrupt header");
    bool has_graph = flags & 1u;
    // Size of everything before the graph, then of the graph's fixed part.
    uint64_t per_slot = 8 + 1 + 4ull * dim + 4;
    uint64_t fixed = kHeaderSize + n_slots * per_slot;
    uint64_t graph_fixed = has_graph ? n_slots * (4 + 4ull * (M0 + 1)) : 0;
    if (size < fixed + graph_fixed + 4)
      throw BadFile(where + " is truncated: " + std::to_string(size) + " bytes, expected at least " +
                    std::to_string(fixed + graph_fixed + 4));
    const unsigned char* p = buf + kHeaderSize;
    const int64_t* labels = reinterpret_cast<const int64_t*>(p);
    const unsigned char* deleted = p + n_slots * 8;
    const unsigned char* vectors = deleted + n_slots;
    const unsigned char* norms = vectors + n_slots * 4ull * dim;
    const unsigned char* levels_p = norms + n_slots * 4;
    uint64_t upper_words = 0;
    if (has_graph) {
      for (uint64_t s = 0; s < n_slots; ++s) {
        int32_t L;
        std::memcpy(&L, levels_p + s * 4, 4);
        if (L < 0 || L > 64) throw BadFile(where + " has a corrupt level table");
        upper_words += static_cast<uint64_t>(L) * (M + 1);
      }
    }
    uint64_t expected = fixed + graph_fixed + upper_words * 4 + 4;
    if (size < expected)
      throw BadFile(where + " is truncated: " + std::to_string(size) + " bytes, expected " +
                    std::to_string(expected));
    if (size > expected)
      throw BadFile(where + " is corrupt: " + std::to_string(size - expected) +
                    " unexpected trailing bytes");
    uint32_t stored;
    std::memcpy(&stored, buf + size - 4, 4);
    if (crc32_parallel(buf, size - 4, threads) != stored)
      throw BadFile(where + " failed its checksum: checksum mismatch (corrupt file)");

    auto idx = std::make_unique<HNSWIndex>(dim, static_cast<Metric>(metric), M, efc, ef,
                                           std::max<uint64_t>(n_slots, 1), seed, precision);
    if (!has_graph) {
      // A flat file (numpy backend): rebuild the graph from the live vectors.
      std::vector<int64_t> ids;
      std::vector<float> vecs;
      for (uint64_t s = 0; s < n_slots; ++s) {
        if (deleted[s]) continue;
        int64_t id;
        std::memcpy(&id, labels + s, 8);
        float nrm;
        std::memcpy(&nrm, norms + s * 4, 4);
        ids.push_back(id);
        std::size_t off = vecs.size();
        vecs.resize(off + dim);
        std::memcpy(vecs.data() + off, vectors + s * 4ull * dim, 4ull * dim);
        for (std::size_t j = 0; j < dim; ++j) vecs[off + j] *= nrm;
      }
      idx->add_raw_checked(ids, vecs, threads);
      return idx;
    }
    if (n_slots > 0 && (entry >= n_slots || max_level < 0))
      throw BadFile(where + " has a corrupt entry point");
    idx->n_slots_ = n_slots;
    std::memcpy(idx->labels_.data(), labels, n_slots * 8);
    std::memcpy(idx->deleted_.data(), deleted, n_slots);
    {  // the vectors (and their binary16 copy) in slices over the threads
      constexpr std::size_t kSlice = 16384;  // slots per task
      std::size_t slices = (n_slots + kSlice - 1) / kSlice;
      HNSWIndex* ix = idx.get();
      parallel_for(slices, threads, [&](std::size_t b, std::size_t) {
        std::size_t lo = b * kSlice, hi = std::min<std::size_t>(n_slots, lo + kSlice);
        std::memcpy(ix->vectors_ + lo * dim, vectors + lo * 4ull * dim, (hi - lo) * 4ull * dim);
        if (ix->use_half_)
          ix->kernels_->to_f16(ix->vectors_ + lo * dim, ix->half_ + lo * dim, (hi - lo) * dim);
        if (ix->use_i8_)
          for (std::size_t s = lo; s < hi; ++s) ix->quantize(static_cast<uint32_t>(s));
      });
    }
    std::memcpy(idx->norms_.data(), norms, n_slots * 4);
    std::memcpy(idx->levels_.data(), levels_p, n_slots * 4);
    const unsigned char* l0 = levels_p + n_slots * 4;
    std::memcpy(idx->links0_, l0, n_slots * 4ull * (M0 + 1));
    const unsigned char* up = l0 + n_slots * 4ull * (M0 + 1);
    for (uint64_t s = 0; s < n_slots; ++s) {
      std::size_t words = static_cast<std::size_t>(idx->levels_[s]) * (M + 1);
      idx->upper_[s].resize(words);
      if (words) std::memcpy(idx->upper_[s].data(), up, words * 4);  // data() may be null
      up += words * 4;
    }
    // Validate links so a crafted file cannot make a search read out of bounds.
    auto check_list = [&](const uint32_t* list, std::size_t maxc, int32_t level) {
      if (list[0] > maxc) throw BadFile(where + " has a corrupt neighbour list");
      for (uint32_t j = 1; j <= list[0]; ++j)
        if (list[j] >= n_slots || idx->levels_[list[j]] < level)
          throw BadFile(where + " has a corrupt neighbour list");
    };
    for (uint64_t s = 0; s < n_slots; ++s) {
      check_list(idx->links0_ + s * (M0 + 1), M0, 0);
      for (int32_t l = 1; l <= idx->levels_[s]; ++l)
        check_list(idx->upper_[s].data() + (l - 1) * (M + 1), M, l);
      if (idx->levels_[s] > max_level) throw BadFile(where + " has a corrupt level table");
    }
    idx->max_level_ = max_level;
    idx->entry_ = n_slots ? entry : kNone;
    std::size_t live = 0;
    for (uint64_t s = 0; s < n_slots; ++s) {
      if (idx->deleted_[s]) {
        if (s != entry) idx->free_slots_.push_back(static_cast<uint32_t>(s));
        continue;
      }
      if (!idx->id2slot_.emplace(idx->labels_[s], static_cast<uint32_t>(s)).second)
        throw BadFile(where + " is corrupt: duplicate id " + std::to_string(idx->labels_[s]));
      ++live;
    }
    if (live != n_live) throw BadFile(where + " is corrupt: live count mismatch");
    idx->n_live_ = live;
    return idx;
  }

 private:
  struct Visited {
    std::vector<uint16_t> tags;
    uint16_t epoch = 0;
    void reset(std::size_t n) {
      if (tags.size() < n) {
        tags.assign(n, 0);
        epoch = 0;
      }
      if (++epoch == 0) {
        std::fill(tags.begin(), tags.end(), 0);
        epoch = 1;
      }
    }
    bool test_and_set(uint32_t s) {
      if (tags[s] == epoch) return true;
      tags[s] = epoch;
      return false;
    }
  };
  using Pair = std::pair<float, uint32_t>;
  struct Context {
    Visited visited;
    std::vector<Pair> cand, res, tmp;
    std::vector<uint32_t> buf;
  };
  struct Filter {
    const SearchFilter* spec;
    const std::vector<int64_t>* allowed;  // sorted ids, or null (no list / already applied)
    const HNSWIndex* index;
    const std::vector<uint64_t>* bits = nullptr;  // bitmap of allowed ids - base, if compact
    int64_t base = 0;
    bool allowed_id(int64_t id) const {
      if (bits) {
        if (id < base) return false;
        auto o = static_cast<uint64_t>(id - base);
        return (o >> 6) < bits->size() && ((*bits)[o >> 6] >> (o & 63) & 1);
      }
      return std::binary_search(allowed->begin(), allowed->end(), id);
    }
    bool pass(uint32_t s) const {
      if (index->deleted_[s]) return false;
      if (allowed && !allowed_id(index->labels_[s])) return false;
      if (spec && spec->predicate && !spec->predicate(index->labels_[s])) return false;
      return true;
    }
  };
  struct ContextLease {
    const HNSWIndex* idx;
    std::unique_ptr<Context> ctx;
    explicit ContextLease(const HNSWIndex* i) : idx(i) {
      std::lock_guard<std::mutex> g(i->pool_mu_);
      if (!i->pool_.empty()) {
        ctx = std::move(i->pool_.back());
        i->pool_.pop_back();
      } else {
        ctx = std::make_unique<Context>();
      }
    }
    ~ContextLease() {
      std::lock_guard<std::mutex> g(idx->pool_mu_);
      idx->pool_.push_back(std::move(ctx));
    }
    Context* operator->() { return ctx.get(); }
  };

  // ---- storage ---------------------------------------------------------------------------
  float* vec(uint32_t s) const { return vectors_ + static_cast<std::size_t>(s) * dim_; }
  uint32_t* links(uint32_t s, int level) {
    return level == 0 ? links0_ + static_cast<std::size_t>(s) * (M0_ + 1)
                      : upper_[s].data() + static_cast<std::size_t>(level - 1) * (M_ + 1);
  }
  const uint32_t* links(uint32_t s, int level) const {
    return const_cast<HNSWIndex*>(this)->links(s, level);
  }
  uint16_t* half_vec(uint32_t s) const { return half_ + static_cast<std::size_t>(s) * dim_; }
  int8_t* code(uint32_t s) const { return codes_ + static_cast<std::size_t>(s) * dim_; }
  // The int8 code of slot s: symmetric, one scale per vector (max |x_i| / 127).
  void quantize(uint32_t s) {
    const float* v = vec(s);
    float mx = 0.0f;
    for (std::size_t j = 0; j < dim_; ++j) mx = std::max(mx, std::fabs(v[j]));
    float scale = mx / 127.0f, inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    int8_t* c = code(s);
    for (std::size_t j = 0; j < dim_; ++j)
      c[j] = static_cast<int8_t>(std::lrint(std::min(127.0f, std::max(-127.0f, v[j] * inv))));
    scales_[s] = scale;
  }
  // Distance used while walking the graph at query time (binary16 copy when mixed, int8 codes
  // when int8: 1 - scale * q.code, the metric being cosine or ip).
  float tdist(const float* q, uint32_t s) const {
    if (use_i8_) return 1.0f - scales_[s] * kernels_->dot_i8(q, code(s), dim_);
    if (!use_half_) return dist(q, vec(s));
    if (metric_ == Metric::L2) return kernels_->l2sq_f16(q, half_vec(s), dim_);
    return 1.0f - kernels_->dot_f16(q, half_vec(s), dim_);
  }
  const char* traversal_ptr(uint32_t s) const {
    if (use_i8_) return reinterpret_cast<const char*>(code(s));
    return use_half_ ? reinterpret_cast<const char*>(half_vec(s))
                     : reinterpret_cast<const char*>(vec(s));
  }
  void prefetch_vector(uint32_t s) const {
    const char* p = traversal_ptr(s);
    const std::size_t bytes =
        dim_ * (use_i8_ ? sizeof(int8_t) : use_half_ ? sizeof(uint16_t) : sizeof(float));
    for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
  }
  float dist(const float* a, const float* b) const {
    float d = dist_(a, b, dim_);
    return metric_ == Metric::L2 ? d : 1.0f - d;
  }

  // Caller holds resize_mu_ exclusively (or is the constructor).
  void grow_to(std::size_t cap) {
    float* nv = static_cast<float*>(alloc_block(cap * dim_ * sizeof(float)));
    if (vectors_) {
      std::memcpy(nv, vectors_, n_slots_ * dim_ * sizeof(float));
      std::free(vectors_);
    }
    vectors_ = nv;
    if (use_half_) {
      auto* nh = static_cast<uint16_t*>(alloc_block(cap * dim_ * sizeof(uint16_t)));
      if (half_) {
        std::memcpy(nh, half_, n_slots_ * dim_ * sizeof(uint16_t));
        std::free(half_);
      }
      half_ = nh;
    }
    if (use_i8_) {
      auto* nc = static_cast<int8_t*>(alloc_block(cap * dim_));
      if (codes_) {
        std::memcpy(nc, codes_, n_slots_ * dim_);
        std::free(codes_);
      }
      codes_ = nc;
      scales_.resize(cap, 0.0f);
    }
    auto* nl = static_cast<uint32_t*>(alloc_block(cap * (M0_ + 1) * sizeof(uint32_t)));
    std::memset(nl, 0, cap * (M0_ + 1) * sizeof(uint32_t));
    if (links0_) {
      std::memcpy(nl, links0_, n_slots_ * (M0_ + 1) * sizeof(uint32_t));
      std::free(links0_);
    }
    links0_ = nl;
    upper_.resize(cap);
    labels_.resize(cap, -1);
    deleted_.resize(cap, 1);
    norms_.resize(cap, 1.0f);
    levels_.resize(cap, 0);
    recycle_.resize(cap, 0);
    building_.resize(cap, 0);
    node_locks_.reset(new NodeLock[cap]);
    cap_ = cap;
  }

  // Caller holds map_mu_ and resize_mu_ exclusively; capacity has room.
  uint32_t take_slot_locked() {
    for (std::size_t i = free_slots_.size(); i-- > 0;) {
      uint32_t s = free_slots_[i];
      if (s == entry_) continue;  // the entry point keeps routing; never recycle it
      free_slots_.erase(free_slots_.begin() + static_cast<std::ptrdiff_t>(i));
      recycle_[s] = 1;
      return s;
    }
    uint32_t s = static_cast<uint32_t>(n_slots_++);
    {
      std::lock_guard<std::mutex> l(rng_mu_);
      double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
      levels_[s] = static_cast<int32_t>(-std::log(std::max(u, 1e-12)) * level_mult_);
      if (levels_[s] > 32) levels_[s] = 32;
    }
    upper_[s].assign(static_cast<std::size_t>(levels_[s]) * (M_ + 1), 0);
    return s;
  }

  const float* prepare_query(const float* q, std::vector<float>& buf) const {
    if (metric_ != Metric::Cosine) return q;
    buf.assign(q, q + dim_);
    float nrm = std::sqrt(kernels_->dot(q, q, dim_));
    if (nrm > 0)
      for (auto& x : buf) x /= nrm;
    return buf.data();
  }

  // Used by load() for flat files.
  void add_raw_checked(const std::vector<int64_t>& ids, const std::vector<float>& vecs,
                       std::size_t threads) {
    add(ids.data(), vecs.data(), ids.size(), threads);
  }

  // Re-link the old neighbours of a recycled slot among themselves, dropping the slot.
  void repair_neighbours(uint32_t s, Context& ctx) {
    for (int l = levels_[s]; l >= 0; --l) {
      std::vector<uint32_t> old;
      {
        std::lock_guard<NodeLock> g(node_locks_[s]);
        const uint32_t* ls = links(s, l);
        old.assign(ls + 1, ls + 1 + ls[0]);
        const_cast<uint32_t*>(ls)[0] = 0;
      }
      std::size_t maxc = l == 0 ? M0_ : M_;
      for (uint32_t nb : old) {
        if (nb == s) continue;
        std::lock_guard<NodeLock> g(node_locks_[nb]);
        uint32_t* ln = links(nb, l);
        auto& cand = ctx.tmp;
        cand.clear();
        auto add_c = [&](uint32_t c) {
          if (c == s || c == nb) return;
          for (auto& p : cand)
            if (p.second == c) return;
          if (levels_[c] < l) return;
          cand.emplace_back(dist(vec(nb), vec(c)), c);
        };
        for (uint32_t j = 1; j <= ln[0]; ++j) add_c(ln[j]);
        for (uint32_t c : old) add_c(c);
        std::sort(cand.begin(), cand.end());
        select_heuristic(cand, maxc);
        ln[0] = static_cast<uint32_t>(cand.size());
        for (std::size_t j = 0; j < cand.size(); ++j) ln[1 + j] = cand[j].second;
      }
    }
  }

  void insert_slot(uint32_t s, const float* v) {
    ContextLease ctx(this);
    if (recycle_[s]) {  // set while assigning slots; only this thread touches it now
      recycle_[s] = 0;
      repair_neighbours(s, *ctx.ctx);
    }
    // Store the vector (unit-length for cosine, keeping the original norm).
    float* dst = vec(s);
    float nrm = 1.0f;
    if (metric_ == Metric::Cosine) {
      nrm = std::sqrt(kernels_->dot(v, v, dim_));
      for (std::size_t j = 0; j < dim_; ++j) dst[j] = v[j] / nrm;
    } else {
      std::memcpy(dst, v, dim_ * sizeof(float));
    }
    norms_[s] = nrm;
    if (use_half_) kernels_->to_f16(dst, half_vec(s), dim_);
    if (use_i8_) quantize(s);
    {
      std::lock_guard<NodeLock> g(node_locks_[s]);
      for (int l = 0; l <= levels_[s]; ++l) links(s, l)[0] = 0;
    }
    int level = levels_[s];
    std::unique_lock<std::mutex> glock(global_mu_);
    int maxl = max_level_;
    uint32_t ep = entry_;
    if (ep == kNone) {
      entry_ = s;
      max_level_ = level;
      deleted_[s] = 0;
      __atomic_store_n(&building_[s], 0, __ATOMIC_RELEASE);
      return;
    }
    if (level <= maxl) glock.unlock();
    const float* q = dst;
    uint32_t cur = ep;
    float curd = dist(q, vec(cur));
    for (int l = maxl; l > level; --l) greedy_step(q, cur, curd, l);
    for (int l = std::min(level, maxl); l >= 0; --l) {
      search_layer_build(q, cur, l, *ctx.ctx);
      cur = connect(s, l, *ctx.ctx);
      curd = dist(q, vec(cur));
    }
    deleted_[s] = 0;
    __atomic_store_n(&building_[s], 0, __ATOMIC_RELEASE);
    if (level > maxl) {
      entry_ = s;
      max_level_ = level;
    }
  }

  // A node still being inserted by another thread: construction searches step around it, as
  // if it had been inserted after them (its neighbour lists are not complete yet).
  bool is_building(uint32_t n) const { return __atomic_load_n(&building_[n], __ATOMIC_ACQUIRE); }

  void greedy_step(const float* q, uint32_t& cur, float& curd, int l) const {
    for (bool changed = true; changed;) {
      changed = false;
      std::lock_guard<NodeLock> g(node_locks_[cur]);
      const uint32_t* ls = links(cur, l);
      uint32_t cnt = std::min<uint32_t>(ls[0], static_cast<uint32_t>(M_));
      for (uint32_t j = 1; j <= cnt; ++j) {
        if (is_building(ls[j])) continue;
        float d = dist(q, vec(ls[j]));
        if (d < curd) {
          curd = d;
          cur = ls[j];
          changed = true;
        }
      }
    }
  }

  // ef_construction search at one level with per-node locks; result in ctx.res (max-heap).
  // It measures with the walk's own precision (binary16 or int8 copy; float32 for "f32"), as
  // searches do: half or a quarter of the bytes per candidate, and the same recall on the
  // shared data (neighbour selection below still compares float32 vectors).
  void search_layer_build(const float* q, uint32_t ep, int l, Context& ctx) const {
    ctx.visited.reset(cap_);
    auto& cand = ctx.cand;
    auto& res = ctx.res;
    cand.clear();
    res.clear();
    float d0 = tdist(q, ep);
    ctx.visited.test_and_set(ep);
    cand.emplace_back(-d0, ep);
    res.emplace_back(d0, ep);
    float lower = d0;
    std::size_t maxc = l == 0 ? M0_ : M_;
    while (!cand.empty()) {
      Pair c = cand.front();
      if (-c.first > lower && res.size() >= efc_) break;
      std::pop_heap(cand.begin(), cand.end());
      cand.pop_back();
      auto& nb = ctx.buf;
      nb.clear();
      {
        std::lock_guard<NodeLock> g(node_locks_[c.second]);
        const uint32_t* ls = links(c.second, l);
        uint32_t cnt = std::min<uint32_t>(ls[0], static_cast<uint32_t>(maxc));
        nb.assign(ls + 1, ls + 1 + cnt);
      }
      // the unvisited neighbours, their vectors fetched ahead as in graph_search
      std::size_t todo = 0;
      for (uint32_t n : nb)
        if (!ctx.visited.test_and_set(n) && !is_building(n)) nb[todo++] = n;
      nb.resize(todo);
      for (uint32_t x : nb) __builtin_prefetch(traversal_ptr(x), 0, 3);
      if (!nb.empty()) prefetch_vector(nb[0]);
      for (std::size_t j = 0; j < nb.size(); ++j) {
        uint32_t n = nb[j];
        if (j + 1 < nb.size()) prefetch_vector(nb[j + 1]);
        float d = tdist(q, n);
        if (res.size() < efc_ || d < lower) {
          cand.emplace_back(-d, n);
          std::push_heap(cand.begin(), cand.end());
          res.emplace_back(d, n);
          std::push_heap(res.begin(), res.end());
          if (res.size() > efc_) {
            std::pop_heap(res.begin(), res.end());
            res.pop_back();
          }
          lower = res.front().first;
        }
      }
    }
  }

  // hnswlib's neighbour-selection heuristic over candidates sorted ascending; in place.
  void select_heuristic(std::vector<Pair>& sorted, std::size_t m) const {
    if (sorted.size() <= m) return;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < sorted.size() && kept < m; ++i) {
      const float* cv = vec(sorted[i].second);
      bool good = true;
      for (std::size_t j = 0; j < kept; ++j) {
        if (dist(cv, vec(sorted[j].second)) < sorted[i].first) {
          good = false;
          break;
        }
      }
      if (good) sorted[kept++] = sorted[i];
    }
    sorted.resize(kept);
  }

  // Link new node s at level l to the best of ctx.res; returns the closest neighbour.
  uint32_t connect(uint32_t s, int l, Context& ctx) {
    auto& sel = ctx.tmp;
    sel.clear();
    for (auto& p : ctx.res)
      if (p.second != s) sel.push_back(p);
    std::sort(sel.begin(), sel.end());
    if (sel.empty()) return entry_ == kNone ? s : entry_;
    select_heuristic(sel, M_);
    std::vector<uint32_t> chosen;
    chosen.reserve(sel.size());
    for (auto& p : sel) chosen.push_back(p.second);
    std::size_t maxc = l == 0 ? M0_ : M_;
    {
      // Concurrent inserts may already have linked themselves into s's list at this level
      // (s became reachable through a higher level): keep those links, or the node that made
      // them could end up with no way in.
      std::lock_guard<NodeLock> g(node_locks_[s]);
      uint32_t* ls = links(s, l);
      std::vector<uint32_t> merged(chosen);
      for (uint32_t j = 1; j <= ls[0]; ++j)
        if (ls[j] != s && std::find(merged.begin(), merged.end(), ls[j]) == merged.end())
          merged.push_back(ls[j]);
      if (merged.size() > maxc) {
        std::vector<Pair> cand;
        cand.reserve(merged.size());
        for (uint32_t c : merged) cand.emplace_back(dist(vec(s), vec(c)), c);
        std::sort(cand.begin(), cand.end());
        select_heuristic(cand, maxc);
        merged.clear();
        for (auto& p : cand) merged.push_back(p.second);
      }
      ls[0] = static_cast<uint32_t>(merged.size());
      for (std::size_t j = 0; j < merged.size(); ++j) ls[1 + j] = merged[j];
    }
    for (uint32_t nb : chosen) {
      std::lock_guard<NodeLock> g(node_locks_[nb]);
      uint32_t* ln = links(nb, l);
      uint32_t cnt = ln[0];
      bool present = false;
      for (uint32_t j = 1; j <= cnt; ++j) present |= ln[j] == s;
      if (present) continue;
      if (cnt < maxc) {
        ln[1 + cnt] = s;
        ln[0] = cnt + 1;
        continue;
      }
      auto& cand = ctx.cand;  // free to reuse here
      cand.clear();
      const float* nv = vec(nb);
      cand.emplace_back(dist(nv, vec(s)), s);
      for (uint32_t j = 1; j <= cnt; ++j) cand.emplace_back(dist(nv, vec(ln[j])), ln[j]);
      std::sort(cand.begin(), cand.end());
      select_heuristic(cand, maxc);
      for (std::size_t j = 0; j < cand.size(); ++j) ln[1 + j] = cand[j].second;
      ln[0] = static_cast<uint32_t>(cand.size());
    }
    return chosen.front();
  }

  // Query-time search; returns how many results were written (rest padded).
  std::size_t graph_search(const float* q, std::size_t k, std::size_t ef, const Filter* f,
                           int64_t* oi, float* od) const {
    uint32_t cur;
    int maxl;
    {
      std::lock_guard<std::mutex> g(global_mu_);
      cur = entry_;
      maxl = max_level_;
    }
    if (cur == kNone) {
      for (std::size_t i = 0; i < k; ++i) oi[i] = -1, od[i] = INFINITY;
      return 0;
    }
    float curd = tdist(q, cur);
    for (int l = maxl; l > 0; --l) {
      for (bool changed = true; changed;) {
        changed = false;
        const uint32_t* ls = links(cur, l);
        uint32_t cnt = std::min<uint32_t>(ls[0], static_cast<uint32_t>(M_));
        for (uint32_t j = 1; j <= cnt; ++j) {
          uint32_t n = ls[j];
          float d = tdist(q, n);
          if (d < curd) {
            curd = d;
            cur = n;
            changed = true;
          }
        }
      }
    }
    ContextLease lease(this);
    Context& ctx = *lease.ctx;
    ctx.visited.reset(cap_);
    auto& cand = ctx.cand;
    auto& res = ctx.res;
    cand.clear();
    res.clear();
    bool need_full = f != nullptr || n_live_.load() < n_slots_;
    Filter plain{nullptr, nullptr, this, nullptr, 0};
    const Filter& ff = f ? *f : plain;
    ctx.visited.test_and_set(cur);
    cand.emplace_back(-curd, cur);
    float lower = INFINITY;
    if (ff.pass(cur)) {
      res.emplace_back(curd, cur);
      lower = curd;
    }
    auto& nb = ctx.buf;
    while (!cand.empty()) {
      Pair c = cand.front();
      if (-c.first > lower && (res.size() >= ef || !need_full)) break;
      std::pop_heap(cand.begin(), cand.end());
      cand.pop_back();
      if (!cand.empty()) __builtin_prefetch(links(cand.front().second, 0));
      const uint32_t* ls = links(c.second, 0);
      uint32_t cnt = std::min<uint32_t>(ls[0], static_cast<uint32_t>(M0_));
      nb.clear();
      for (uint32_t j = 1; j <= cnt; ++j) {
        uint32_t n = ls[j];
        if (ctx.visited.test_and_set(n)) continue;
        nb.push_back(n);
      }
      // Pull whole vectors kPrefetchAhead neighbours ahead of the one being measured.
      // Touch the first line of every unvisited neighbour now (starts the page walks and the
      // hardware's adjacent-line fetches early), then pull whole vectors one step ahead.
      constexpr std::size_t kPrefetchAhead = 1;
      for (uint32_t x : nb) __builtin_prefetch(traversal_ptr(x), 0, 3);
      for (std::size_t j = 0; j < std::min(kPrefetchAhead, nb.size()); ++j) prefetch_vector(nb[j]);
      for (std::size_t j = 0; j < nb.size(); ++j) {
        uint32_t n = nb[j];
        if (j + kPrefetchAhead < nb.size()) prefetch_vector(nb[j + kPrefetchAhead]);
        float d = tdist(q, n);
        if (res.size() < ef || d < lower) {
          cand.emplace_back(-d, n);
          std::push_heap(cand.begin(), cand.end());
          if (ff.pass(n)) {
            res.emplace_back(d, n);
            std::push_heap(res.begin(), res.end());
            if (res.size() > ef) {
              std::pop_heap(res.begin(), res.end());
              res.pop_back();
            }
          }
          if (!res.empty()) lower = res.front().first;
        }
      }
    }
    if (use_half_ || use_i8_)  // exact float32 distances for the final ranking
      for (auto& r : res) r.first = dist(q, vec(r.second));
    std::sort(res.begin(), res.end());
    std::size_t got = std::min(k, res.size());
    for (std::size_t i = 0; i < got; ++i) {
      oi[i] = labels_[res[i].second];
      od[i] = res[i].first;
    }
    for (std::size_t i = got; i < k; ++i) oi[i] = -1, od[i] = INFINITY;
    return got;
  }

  // Exact scan over the given slots (or all slots when `slots` is null).
  void brute_force(const float* q, std::size_t k, const uint32_t* slots, std::size_t n,
                   const Filter& f, int64_t* oi, float* od) const {
    TopK top(k);
    for (std::size_t i = 0; i < n; ++i) {
      uint32_t s = slots ? slots[i] : static_cast<uint32_t>(i);
      if (!f.pass(s)) continue;
      top.push(dist(q, vec(s)), labels_[s]);
    }
    top.write(oi, od);
  }

  // ---- state -----------------------------------------------------------------------------
  std::size_t dim_;
  bool use_half_;
  bool use_i8_;
  uint16_t* half_ = nullptr;  // binary16 copy of vectors_ (when use_half_)
  int8_t* codes_ = nullptr;   // int8 codes of vectors_ (when use_i8_)
  std::vector<float> scales_;  // their per-vector scales
  Metric metric_;
  std::size_t M_, M0_, efc_;
  std::atomic<std::size_t> ef_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  double level_mult_;
  const KernelTable* kernels_;
  kernel_fn dist_;

  std::size_t cap_ = 0, n_slots_ = 0;
  std::atomic<std::size_t> n_live_{0};
  float* vectors_ = nullptr;
  uint32_t* links0_ = nullptr;  // cap * (M0 + 1): [count, neighbours...]
  std::vector<std::vector<uint32_t>> upper_;
  std::vector<int64_t> labels_;
  std::vector<uint8_t> deleted_;
  std::vector<float> norms_;
  std::vector<int32_t> levels_;
  std::unique_ptr<NodeLock[]> node_locks_;

  std::unordered_map<int64_t, uint32_t> id2slot_;
  std::vector<uint32_t> free_slots_;
  std::vector<uint8_t> recycle_;
  std::vector<uint8_t> building_;  // 1 while a slot's insert is in progress  // slot is being recycled by a pending insert
  int max_level_ = -1;
  uint32_t entry_ = kNone;

  mutable std::shared_mutex resize_mu_;
  mutable std::mutex map_mu_, global_mu_, rng_mu_, pool_mu_;
  mutable std::vector<std::unique_ptr<Context>> pool_;
};

}  // namespace agentdb
