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
#include "index_file.hpp"
#include "kernels.hpp"
#include "mapped_file.hpp"
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
  static constexpr uint32_t kFormatVersion = 2;  // writes 2; reads 1 and 2
  static constexpr std::size_t kHeaderSize = 128;  // of version 1 files

  HNSWIndex(std::size_t dim, Metric metric, std::size_t M, std::size_t ef_construction,
            std::size_t ef_search, std::size_t capacity, uint64_t seed,
            Precision precision = Precision::Mixed, bool allocate = true)
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
    if (allocate) grow_to(std::max<std::size_t>(capacity, 1));
  }

  ~HNSWIndex() {
    std::free(bcodes_);
    if (!owned_) {  // views of a mapped file (and its walk blocks)
      free_walk_blocks();
      return;
    }
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
  int precision_code() const {
    return static_cast<int>(use_i8_ ? Precision::Int8 : use_half_ ? Precision::Mixed : Precision::F32);
  }

  // ---- writes -----------------------------------------------------------------------------
  // Insert or replace n vectors (already validated: finite, right dim, non-zero for cosine,
  // ids unique within the batch and != -1).
  void add(const int64_t* ids, const float* vecs, std::size_t n, std::size_t threads) {
    if (n == 0) return;
    std::vector<uint32_t> slots(n);
    std::size_t live_before = n_live_.load();
    bool made_codes = false;
    {
      std::unique_lock<std::shared_mutex> g(resize_mu_);
      std::lock_guard<std::mutex> m(map_mu_);
      materialize_locked(static_cast<Precision>(precision_code()), threads);
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
      made_codes = begin_build_codes(n, live_before, threads);
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
    {
      std::shared_lock<std::shared_mutex> g(resize_mu_);
      // The first few hundred nodes go in one by one: while a graph is tiny, parallel inserts
      // would mostly see each other half-built and crowd the entry point's neighbour list.
      constexpr std::size_t kSequentialSeed = 512;
      std::size_t seq = live_before < kSequentialSeed
                            ? std::min(n, kSequentialSeed - live_before) : 0;
      for (std::size_t i = 0; i < seq; ++i) insert_slot(slots[i], vecs + i * dim_);
      parallel_for(n - seq, threads, [&](std::size_t i, std::size_t) {
        insert_slot(slots[seq + i], vecs + (seq + i) * dim_);
      });
    }
    if (made_codes) {  // waits for every insert in flight (they hold resize_mu_ shared)
      std::unique_lock<std::shared_mutex> g(resize_mu_);
      drop_build_codes();
    }
  }

  // Large batches of a "mixed"/"f32" cosine or ip index are built on int8 codes (see
  // begin_build_codes); false builds them on the walk's own copy (C++ tests compare both).
  void set_quantized_build(bool on) { build_codes_enabled_ = on; }
  bool quantized_build() const { return build_codes_enabled_; }
  // How many batches were built on construction codes so far.
  std::size_t coded_batches() const { return coded_batches_.load(); }

  // Tombstone ids; all ids are checked before anything changes.
  void remove(const int64_t* ids, std::size_t n) {
    {
      std::unique_lock<std::shared_mutex> g(resize_mu_);
      if (!owned_) {
        std::lock_guard<std::mutex> m(map_mu_);
        materialize_locked(static_cast<Precision>(precision_code()), 0);
      }
    }
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
    ensure_idmap_locked();
    return id2slot_.count(id) != 0;
  }

  // Copies the vector as it was given (cosine vectors are scaled back by their norm).
  void get_vector(int64_t id, float* out) const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    uint32_t s;
    {
      std::lock_guard<std::mutex> m(map_mu_);
      ensure_idmap_locked();
      auto it = id2slot_.find(id);
      if (it == id2slot_.end()) throw UnknownId(id);
      s = it->second;
    }
    const float* v = vec(s);
    float nrm = nrm_[s];
    for (std::size_t j = 0; j < dim_; ++j) out[j] = v[j] * nrm;
  }

  std::vector<int64_t> ids() const {
    std::lock_guard<std::mutex> m(map_mu_);
    ensure_idmap_locked();
    std::vector<int64_t> out;
    out.reserve(id2slot_.size());
    for (auto& kv : id2slot_) out.push_back(kv.first);
    std::sort(out.begin(), out.end());
    return out;
  }

  // Bytes the index holds in RAM: its own blocks, or, while it reads a mapped file, the pages
  // of that file resident in memory (counted whoever else shares them) plus the id map and
  // search contexts.
  std::size_t memory_usage() const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    std::size_t bytes = sizeof(*this) + (owned_ ? owned_bytes() : map_->resident_bytes());
    for (const auto& b : walk_blocks_) bytes += b.second;
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
  // The blocks and per-slot arrays of an index in memory. Caller holds resize_mu_.
  std::size_t owned_bytes() const {
    std::size_t bytes = cap_ * dim_ * sizeof(float);       // vectors
    if (use_half_) bytes += cap_ * dim_ * sizeof(uint16_t);  // traversal copy
    if (use_i8_) bytes += cap_ * (dim_ + sizeof(float));     // int8 codes + scales
    if (bcodes_) bytes += cap_ * (dim_ + sizeof(float));     // construction codes (a batch)
    bytes += cap_ * (M0_ + 1) * sizeof(uint32_t);          // level-0 links
    bytes += cap_ * (sizeof(int64_t) + 1 + sizeof(float) + sizeof(int32_t));  // per-slot arrays
    bytes += cap_ * sizeof(std::vector<uint32_t>);
    for (std::size_t s = 0; s < n_slots_; ++s) bytes += upper_[s].capacity() * sizeof(uint32_t);
    bytes += cap_ * sizeof(NodeLock);
    return bytes;
  }

  // Search nq queries (already validated). Writes k results per query (padded with -1/+inf).
  // With `exact`, every live (and passing) item is measured: exact_scan().
  void search(const float* queries, std::size_t nq, std::size_t k, std::size_t ef,
              const SearchFilter* filter, int64_t* out_ids, float* out_d,
              std::size_t threads, bool exact = false) const {
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
        ensure_idmap_locked();
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
      if (exact) {
        exact_scan(q, k, f, oi, od);
        return;
      }
      std::size_t got = graph_search(q, k, ef, filtered ? &f : nullptr, oi, od);
      // Short of k (a selective filter, or nodes still being inserted): finish exactly.
      if (got < k && (filtered || got < n_live_.load())) brute_force(q, k, nullptr, n_slots_, f, oi, od);
    });
  }

  // ---- persistence -----------------------------------------------------------------------
  // Breadth-first order of the level-0 graph from the entry point, then any slot it did not
  // reach, in slot order. Caller holds resize_mu_.
  std::vector<uint32_t> locality_order() const {
    const std::size_t n = n_slots_;
    std::vector<uint32_t> order;
    order.reserve(n);
    std::vector<uint8_t> seen(n, 0);
    auto visit_from = [&](uint32_t root) {
      std::size_t head = order.size();
      seen[root] = 1;
      order.push_back(root);
      while (head < order.size()) {
        const uint32_t* ls = links(order[head++], 0);
        uint32_t c = std::min<uint32_t>(ls[0], static_cast<uint32_t>(M0_));
        for (uint32_t j = 1; j <= c; ++j)
          if (ls[j] < n && !seen[ls[j]]) {
            seen[ls[j]] = 1;
            order.push_back(ls[j]);
          }
      }
    };
    if (n && entry_ < n) visit_from(entry_);
    for (std::size_t s = 0; s < n; ++s)
      if (!seen[s]) visit_from(static_cast<uint32_t>(s));
    return order;
  }

  // Writes format version 2 (index_file.hpp): the parameters and precision in the header, each
  // array a page-aligned section with its own CRC, the walk's copy (binary16 or int8 codes)
  // stored so that an open can use the file in place.
  void save(const std::string& path) const {
    std::unique_lock<std::shared_mutex> g(resize_mu_);  // a consistent snapshot
    std::lock_guard<std::mutex> m(map_mu_);
    SectionFileWriter out(path);
    const std::size_t n = n_slots_;
    // Slots are written in breadth-first order of the level-0 graph (file slot i holds the
    // index's slot order[i]): a node's neighbours sit near each other, so a walk over the file
    // touches fewer pages and cache lines. The order of an already ordered file is itself.
    const std::vector<uint32_t> order = locality_order();
    std::vector<uint32_t> rank(n);
    for (std::size_t i = 0; i < n; ++i) rank[order[i]] = static_cast<uint32_t>(i);
    // rows of `per` elements of T, in file order, through a small staging buffer
    auto rows = [&](uint32_t id, const auto* base, std::size_t per) {
      using T = std::remove_cv_t<std::remove_pointer_t<decltype(base)>>;
      out.begin(id);
      std::vector<T> buf;
      const std::size_t batch = std::max<std::size_t>(1, (std::size_t{1} << 20) / (per * sizeof(T)));
      for (std::size_t lo = 0; lo < n; lo += batch) {
        std::size_t hi = std::min(n, lo + batch);
        buf.resize((hi - lo) * per);
        for (std::size_t i = lo; i < hi; ++i)
          std::memcpy(buf.data() + (i - lo) * per, base + static_cast<std::size_t>(order[i]) * per,
                      per * sizeof(T));
        out.put(buf.data(), buf.size() * sizeof(T));
      }
      out.end();
    };
    // a neighbour list [count, ids...] with its ids renumbered (garbage past count dropped)
    auto relist = [&](const uint32_t* ls, std::size_t maxc, uint32_t* dst) {
      uint32_t c = std::min<uint32_t>(ls[0], static_cast<uint32_t>(maxc));
      dst[0] = c;
      for (uint32_t j = 1; j <= maxc; ++j) dst[j] = j <= c ? rank[ls[j]] : 0;
    };
    rows(kSecLabels, lab_, 1);
    rows(kSecDeleted, del_, 1);
    rows(kSecNorms, nrm_, 1);
    rows(kSecLevels, lvl_, 1);
    {
      out.begin(kSecLinks0);
      std::vector<uint32_t> buf;
      const std::size_t per = M0_ + 1, batch = 8192;
      for (std::size_t lo = 0; lo < n; lo += batch) {
        std::size_t hi = std::min(n, lo + batch);
        buf.resize((hi - lo) * per);
        for (std::size_t i = lo; i < hi; ++i) relist(links(order[i], 0), M0_, buf.data() + (i - lo) * per);
        out.put(buf.data(), buf.size() * sizeof(uint32_t));
      }
      out.end();
    }
    {
      std::vector<uint64_t> offsets(n + 1, 0);
      for (std::size_t i = 0; i < n; ++i)
        offsets[i + 1] = offsets[i] + static_cast<uint64_t>(lvl_[order[i]]) * (M_ + 1);
      out.section(kSecUpperOffsets, offsets.data(), offsets.size() * sizeof(uint64_t));
      out.begin(kSecUpperWords);
      std::vector<uint32_t> buf(M_ + 1);
      for (std::size_t i = 0; i < n; ++i)
        for (int32_t l = 1; l <= lvl_[order[i]]; ++l) {
          relist(links(order[i], l), M_, buf.data());
          out.put(buf.data(), buf.size() * sizeof(uint32_t));
        }
      out.end();
    }
    rows(kSecVectors, vectors_, dim_);
    if (use_half_) rows(kSecHalf, half_, dim_);
    if (use_i8_) {
      rows(kSecCodes, codes_, dim_);
      rows(kSecScales, scl_, 1);
    }
    unsigned char h[kPage] = {0};
    std::memcpy(h, "AGDBHNSW", 8);
    auto w32 = [&](std::size_t off, uint32_t v) { std::memcpy(h + off, &v, 4); };
    auto w64 = [&](std::size_t off, uint64_t v) { std::memcpy(h + off, &v, 8); };
    w32(8, kFormatVersion);
    w32(12, static_cast<uint32_t>(kPage));
    w32(16, static_cast<uint32_t>(dim_));
    w32(20, static_cast<uint32_t>(metric_));
    w32(24, static_cast<uint32_t>(M_));
    w32(28, static_cast<uint32_t>(efc_));
    w32(32, static_cast<uint32_t>(ef_.load()));
    w32(36, 1u);  // has_graph
    w64(40, n);
    w64(48, n_live_.load());
    int32_t ml = max_level_;
    std::memcpy(h + 56, &ml, 4);
    w32(60, n ? rank[entry_] : entry_);
    w32(64, static_cast<uint32_t>(M0_));
    w64(68, seed_);
    w32(76, static_cast<uint32_t>(precision_code()));
    out.commit(h);
  }

  // Opens an index file. Version 2 files are used in place when `mapped` (the sections stay in
  // the mapping, shared with other processes, until the first write copies them); otherwise,
  // and for version 1 files, everything is read into memory. `precision` -1 keeps the saved
  // one (version 1 files: mixed). `verify` checks every section's CRC now; by default only the
  // header and the small sections are checked at open, the large ones when they are first
  // copied or by verify() (a search never reads outside the file whatever they hold).
  // How open_file holds a version-2 file: read into memory; mapped whole (pages shared with
  // other processes, the walk on 4 KiB pages); or with only the float32 vectors mapped (read
  // with pread to re-rank) and the walk's lists and copy read into private huge-page blocks.
  enum class OpenMode { Copy = 0, Mapped = 1, VectorsMapped = 2 };
  static std::unique_ptr<HNSWIndex> open_file(std::shared_ptr<const MappedFile> file,
                                              const std::string& path, std::size_t threads,
                                              int precision, bool mapped, bool verify) {
    return open_file(std::move(file), path, threads, precision,
                     mapped ? OpenMode::Mapped : OpenMode::Copy, verify);
  }
  static std::unique_ptr<HNSWIndex> open_file(std::shared_ptr<const MappedFile> file,
                                              const std::string& path, std::size_t threads,
                                              int precision, OpenMode mode, bool verify) {
    const bool mapped = mode != OpenMode::Copy;
    const unsigned char* buf = file->data();
    const std::size_t size = file->size();
    const std::string where = "'" + path + "'";
    if (size >= 8 && std::memcmp(buf, "AGDBHNSW", 8) != 0)
      throw BadFile(where + " is not an AgentDB index file (bad magic)");
    if (size >= 12 && read_le<uint32_t>(buf, 8) == 1)
      return from_bytes(buf, size, path, threads,
                        precision < 0 ? Precision::Mixed : static_cast<Precision>(precision));
    auto idx = open_v2(std::move(file), path);
    Precision stored = static_cast<Precision>(idx->precision_code());
    Precision want = precision < 0 ? stored : static_cast<Precision>(precision);
    if (want == Precision::Int8 && idx->metric() == Metric::L2)
      throw std::invalid_argument("precision 'int8' supports the cosine and ip metrics, not l2");
    if (verify) idx->verify(threads);
    if (!mapped || want != stored) {
      std::unique_lock<std::shared_mutex> g(idx->resize_mu_);
      std::lock_guard<std::mutex> m(idx->map_mu_);
      idx->materialize_locked(want, threads);
    } else if (mode == OpenMode::VectorsMapped) {
      idx->load_walk_blocks();
    }
    return idx;
  }

  // Checks the CRC of every section of a mapped file (BadFile naming the first bad one). An
  // index in memory has nothing to check.
  void verify(std::size_t threads = 0) const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    verify_sections(sections_, threads);
    // reading every page put them in this process's resident set: give back the ones no
    // search reads through the mapping (the page cache keeps them)
    for (const auto& sec : sections_)
      if (!walked_in_place(sec.id))
        map_->advise(map_->data() + sec.offset, sec.bytes, MappedFile::Advice::DontNeed);
  }

  // True while the index reads its file in place (until the first write).
  bool mapped() const {
    std::shared_lock<std::shared_mutex> g(resize_mu_);
    return !owned_;
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
    if (version != 1)
      throw BadFile(where + " has unsupported format version " + std::to_string(version) +
                    " (this build reads versions 1 and " + std::to_string(kFormatVersion) + ")");
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
    std::vector<float> vbuf;  // one vector read from a mapped file
    std::vector<int16_t> q16;  // the query as int16 for an int8 walk (prepare_walk_query)
    std::vector<int32_t> sums;  // the integer sums of one neighbour list
    std::vector<float> dists;   // the walk's distances to one neighbour list
    float q16_inv = 0.0f;      // 1 / its scale
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
      if (index->del_[s]) return false;
      if (allowed && !allowed_id(index->lab_[s])) return false;
      if (spec && spec->predicate && !spec->predicate(index->lab_[s])) return false;
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

  // ---- mapped files ----------------------------------------------------------------------
  // Whether searches read section `id` through the mapping (not from a walk block, not only
  // by pread to re-rank).
  bool walked_in_place(uint32_t id) const {
    if (id == kSecVectors) return !use_half_ && !use_i8_;
    if (id == kSecLinks0 || id == kSecHalf || id == kSecCodes || id == kSecScales)
      return walk_blocks_.empty();
    return true;
  }
  // Reads the level-0 lists, the walk's copy and its scales into private blocks on huge pages
  // (with pread, so the mapping's pages are never touched): the walk then pays no 4 KiB TLB
  // misses, the float32 vectors stay in the file. Called once, right after open_v2.
  void load_walk_blocks() {
    auto load = [&](uint32_t id, auto*& view) {
      for (const auto& sec : sections_)
        if (sec.id == id) {
          void* b = alloc_block(sec.bytes);
          walk_blocks_.emplace_back(b, sec.bytes);
          map_->read_at(b, sec.bytes, sec.offset);
          using T = std::remove_pointer_t<std::remove_reference_t<decltype(view)>>;
          view = static_cast<T*>(b);
          map_->advise(map_->data() + sec.offset, sec.bytes, MappedFile::Advice::DontNeed);
          return;
        }
    };
    load(kSecLinks0, links0_);
    if (use_half_) load(kSecHalf, half_);
    if (use_i8_) {
      load(kSecCodes, codes_);
      const std::size_t bytes = n_slots_ * sizeof(float);
      void* b = alloc_block(bytes);
      walk_blocks_.emplace_back(b, bytes);
      std::memcpy(b, scl_, bytes);
      scl_ = static_cast<const float*>(b);
    }
  }
  void free_walk_blocks() {
    for (auto& b : walk_blocks_) std::free(b.first);
    walk_blocks_.clear();
  }
  static const char* section_name(uint32_t id) {
    switch (id) {
      case kSecLabels: return "labels";
      case kSecDeleted: return "deleted";
      case kSecNorms: return "norms";
      case kSecLevels: return "levels";
      case kSecLinks0: return "links0";
      case kSecUpperOffsets: return "upper_offsets";
      case kSecUpperWords: return "upper_words";
      case kSecVectors: return "vectors";
      case kSecHalf: return "half";
      case kSecCodes: return "codes";
      case kSecScales: return "scales";
      default: return "unknown";
    }
  }

  void check_section(const FileSection& sec, std::size_t threads) const {
    if (crc32_parallel(map_->data() + sec.offset, sec.bytes, threads) != sec.crc)
      throw BadFile("'" + map_path_ + "' failed its checksum: section '" +
                    section_name(sec.id) + "' checksum mismatch (corrupt file)");
  }
  void verify_sections(const std::vector<FileSection>& secs, std::size_t threads) const {
    for (const auto& sec : secs) check_section(sec, threads);
  }

  // Parses a version-2 file and points the index's views into it. Checks the header, the
  // section table, and the CRC and consistency of the small sections (ids, tombstones, norms,
  // levels, upper lists: about 1/20 of a 384-d file); the neighbour lists and vectors are
  // checked when copied or by verify(), and searches bound-check every neighbour they follow.
  static std::unique_ptr<HNSWIndex> open_v2(std::shared_ptr<const MappedFile> file,
                                            const std::string& path) {
    const unsigned char* buf = file->data();
    const std::size_t size = file->size();
    const std::string where = "'" + path + "'";
    if (size < kPage)
      throw BadFile(where + " is truncated: " + std::to_string(size) + " bytes");
    auto r32 = [&](std::size_t off) { return read_le<uint32_t>(buf, off); };
    auto r64 = [&](std::size_t off) { return read_le<uint64_t>(buf, off); };
    uint32_t version = r32(8);
    if (version != kFormatVersion)
      throw BadFile(where + " has unsupported format version " + std::to_string(version) +
                    " (this build reads versions 1 and " + std::to_string(kFormatVersion) + ")");
    auto secs = read_section_table<BadFile>(buf, size, where);
    uint32_t header = r32(12), dim = r32(16), metric = r32(20), M = r32(24), efc = r32(28);
    uint32_t ef = r32(32), flags = r32(36), entry = r32(60), M0 = r32(64), prec = r32(76);
    uint64_t n = r64(40), n_live = r64(48), seed = r64(68);
    int32_t max_level;
    std::memcpy(&max_level, buf + 56, 4);
    if (header != kPage || dim == 0 || dim > (1u << 20) || metric > 2 || M < 2 || M > 2048 ||
        M0 != 2 * M || efc == 0 || ef == 0 || n_live > n || n > (uint64_t{1} << 32) - 2 ||
        prec > 2 || (flags & 1u) == 0 ||
        (prec == static_cast<uint32_t>(Precision::Int8) && metric == static_cast<uint32_t>(Metric::L2)))
      throw BadFile(where + " has a corrupt header");
    auto find = [&](uint32_t id, uint64_t bytes) -> const FileSection& {
      for (const auto& sec : secs)
        if (sec.id == id) {
          if (sec.bytes != bytes)
            throw BadFile(where + " has a corrupt section table (section '" + section_name(id) +
                          "' has " + std::to_string(sec.bytes) + " bytes, expected " +
                          std::to_string(bytes) + ")");
          return sec;
        }
      throw BadFile(where + " is missing its '" + std::string(section_name(id)) + "' section");
    };
    auto idx = std::make_unique<HNSWIndex>(dim, static_cast<Metric>(metric), M, efc, ef, 0, seed,
                                           static_cast<Precision>(prec), /*allocate=*/false);
    idx->map_ = file;
    idx->map_path_ = path;
    idx->owned_ = false;
    auto at = [&](const FileSection& sec) { return buf + sec.offset; };
    auto small = [&](uint32_t id, uint64_t bytes) {
      const FileSection& sec = find(id, bytes);
      idx->check_section(sec, 1);
      return at(sec);
    };
    idx->lab_ = reinterpret_cast<const int64_t*>(small(kSecLabels, n * 8));
    idx->del_ = small(kSecDeleted, n);
    idx->nrm_ = reinterpret_cast<const float*>(small(kSecNorms, n * 4));
    idx->lvl_ = reinterpret_cast<const int32_t*>(small(kSecLevels, n * 4));
    idx->up_off_ = reinterpret_cast<const uint64_t*>(small(kSecUpperOffsets, (n + 1) * 8));
    uint64_t live = 0;
    for (uint64_t s = 0; s < n; ++s) {
      int32_t L = idx->lvl_[s];
      if (L < 0 || L > 64 || L > max_level) throw BadFile(where + " has a corrupt level table");
      if (idx->up_off_[s + 1] - idx->up_off_[s] != static_cast<uint64_t>(L) * (M + 1) ||
          idx->up_off_[s + 1] < idx->up_off_[s])
        throw BadFile(where + " has corrupt upper neighbour lists");
      live += idx->del_[s] == 0;
    }
    if (idx->up_off_[0] != 0) throw BadFile(where + " has corrupt upper neighbour lists");
    if (live != n_live) throw BadFile(where + " is corrupt: live count mismatch");
    idx->up_words_ = reinterpret_cast<const uint32_t*>(small(kSecUpperWords, idx->up_off_[n] * 4));
    if (n > 0 && (entry >= n || max_level < 0 || idx->lvl_[entry] != max_level))
      throw BadFile(where + " has a corrupt entry point");
    std::vector<FileSection> later;
    auto big = [&](uint32_t id, uint64_t bytes) {
      const FileSection& sec = find(id, bytes);
      later.push_back(sec);
      return at(sec);
    };
    idx->links0_ = reinterpret_cast<uint32_t*>(const_cast<unsigned char*>(
        big(kSecLinks0, n * 4ull * (M0 + 1))));
    idx->vectors_ =
        reinterpret_cast<float*>(const_cast<unsigned char*>(big(kSecVectors, n * 4ull * dim)));
    if (idx->use_half_)
      idx->half_ = reinterpret_cast<uint16_t*>(
          const_cast<unsigned char*>(big(kSecHalf, n * 2ull * dim)));
    if (idx->use_i8_) {
      idx->codes_ = reinterpret_cast<int8_t*>(const_cast<unsigned char*>(big(kSecCodes, n * dim)));
      idx->scl_ = reinterpret_cast<const float*>(small(kSecScales, n * 4));
    }
    idx->sections_ = later;
    idx->n_slots_ = n;
    idx->cap_ = n;
    idx->n_live_ = n_live;
    idx->max_level_ = n ? max_level : -1;
    idx->entry_ = n ? entry : kNone;
    idx->idmap_ready_ = false;
    // The walk reads the neighbour lists and its copy at random: fetch them now, in the
    // background; the float32 vectors of a quantized walk are read only to re-rank.
    file->advise(buf, size, MappedFile::Advice::Normal);  // undo the loader's "sequential"
    file->advise(at(find(kSecLinks0, n * 4ull * (M0 + 1))), n * 4ull * (M0 + 1),
                 MappedFile::Advice::WillNeed);
    if (idx->use_half_)
      file->advise(reinterpret_cast<const unsigned char*>(idx->half_), n * 2ull * dim,
                   MappedFile::Advice::WillNeed);
    if (idx->use_i8_)
      file->advise(reinterpret_cast<const unsigned char*>(idx->codes_), n * dim,
                   MappedFile::Advice::WillNeed);
    file->advise(reinterpret_cast<const unsigned char*>(idx->vectors_), n * 4ull * dim,
                 prec == static_cast<uint32_t>(Precision::F32) ? MappedFile::Advice::WillNeed
                                                               : MappedFile::Advice::Random);
    return idx;
  }

  // Builds id -> slot and the free-slot list from the views (a mapped file defers this until
  // something looks an id up). Caller holds map_mu_.
  void ensure_idmap_locked() const {
    if (idmap_ready_) return;
    std::unordered_map<int64_t, uint32_t> m;
    m.reserve(n_live_.load());
    std::vector<uint32_t> fr;
    for (std::size_t s = 0; s < n_slots_; ++s) {
      if (del_[s]) {
        if (s != entry_) fr.push_back(static_cast<uint32_t>(s));
        continue;
      }
      if (!m.emplace(lab_[s], static_cast<uint32_t>(s)).second)
        throw BadFile("'" + map_path_ + "' is corrupt: duplicate id " + std::to_string(lab_[s]));
    }
    id2slot_.swap(m);
    free_slots_.swap(fr);
    idmap_ready_ = true;
  }

  // The first write to a mapped index copies it into memory (checking every section's CRC and
  // every neighbour list first, so a bad file fails here, with the index unchanged), in
  // precision `want`. Caller holds resize_mu_ exclusively and map_mu_.
  void materialize_locked(Precision want, std::size_t threads) {
    if (owned_) return;
    verify_sections(sections_, threads);
    ensure_idmap_locked();
    const std::size_t n = n_slots_;
    const uint32_t* uw = up_words_;
    const uint64_t* uo = up_off_;
    for (std::size_t s = 0; s < n; ++s) {
      const uint32_t* l0 = links0_ + s * (M0_ + 1);
      bool bad = l0[0] > M0_;
      for (uint32_t j = 1; !bad && j <= l0[0]; ++j) bad = l0[j] >= n;
      for (int32_t l = 1; !bad && l <= lvl_[s]; ++l) {
        const uint32_t* ls = uw + uo[s] + static_cast<std::size_t>(l - 1) * (M_ + 1);
        bad = ls[0] > M_;
        for (uint32_t j = 1; !bad && j <= ls[0]; ++j) bad = ls[j] >= n || lvl_[ls[j]] < l;
      }
      if (bad) throw BadFile("'" + map_path_ + "' has a corrupt neighbour list");
    }
    const int64_t* lab = lab_;
    const uint8_t* del = del_;
    const float* nrm = nrm_;
    const int32_t* lvl = lvl_;
    const float* scl = scl_;
    bool had_half = use_half_, had_i8 = use_i8_;
    use_half_ = want == Precision::Mixed;
    use_i8_ = want == Precision::Int8;
    if (!use_half_ || !had_half) half_ = nullptr;  // views are never freed, only dropped
    if (!use_i8_ || !had_i8) codes_ = nullptr;
    cap_ = 0;
    grow_to(std::max<std::size_t>(n, 1));  // copies vectors, links and a kept walk copy
    std::memcpy(labels_.data(), lab, n * sizeof(int64_t));
    std::memcpy(deleted_.data(), del, n);
    std::memcpy(norms_.data(), nrm, n * sizeof(float));
    std::memcpy(levels_.data(), lvl, n * sizeof(int32_t));
    for (std::size_t s = 0; s < n; ++s) upper_[s].assign(uw + uo[s], uw + uo[s + 1]);
    constexpr std::size_t kSlice = 16384;
    std::size_t slices = (n + kSlice - 1) / kSlice;
    if (use_i8_ && had_i8) std::memcpy(scales_.data(), scl, n * sizeof(float));
    if ((use_i8_ && !had_i8) || (use_half_ && !had_half))
      parallel_for(slices, threads, [&](std::size_t b, std::size_t) {
        std::size_t lo = b * kSlice, hi = std::min<std::size_t>(n, lo + kSlice);
        if (use_half_) kernels_->to_f16(vec(lo), half_vec(lo), (hi - lo) * dim_);
        if (use_i8_)
          for (std::size_t s = lo; s < hi; ++s) quantize(static_cast<uint32_t>(s));
      });
    point_views();
    free_walk_blocks();
    map_.reset();
    sections_.clear();
  }

  // ---- storage ---------------------------------------------------------------------------
  float* vec(uint32_t s) const { return vectors_ + static_cast<std::size_t>(s) * dim_; }
  uint32_t* links(uint32_t s, int level) {
    if (level == 0) return links0_ + static_cast<std::size_t>(s) * (M0_ + 1);
    std::size_t off = static_cast<std::size_t>(level - 1) * (M_ + 1);
    return up_off_ ? const_cast<uint32_t*>(up_words_) + up_off_[s] + off : upper_[s].data() + off;
  }
  const uint32_t* links(uint32_t s, int level) const {
    return const_cast<HNSWIndex*>(this)->links(s, level);
  }
  uint16_t* half_vec(uint32_t s) const { return half_ + static_cast<std::size_t>(s) * dim_; }
  int8_t* code(uint32_t s) const { return codes_ + static_cast<std::size_t>(s) * dim_; }
  // The int8 code of a vector: symmetric, one scale per vector (max |x_i| / 127); returns
  // the scale.
  float quantize_row(const float* v, int8_t* c) const {
    float mx = 0.0f;
    for (std::size_t j = 0; j < dim_; ++j) mx = std::max(mx, std::fabs(v[j]));
    float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    for (std::size_t j = 0; j < dim_; ++j)
      c[j] = static_cast<int8_t>(std::lrint(std::min(127.0f, std::max(-127.0f, v[j] * inv))));
    return mx / 127.0f;
  }
  void quantize(uint32_t s) { scales_[s] = quantize_row(vec(s), code(s)); }

  // ---- construction codes ------------------------------------------------------------------
  // A large batch added to a "mixed" or "f32" index (cosine or ip) is built by walking int8
  // codes, as an int8 index is: a quarter of float32's bytes per candidate (half of
  // binary16's), the same recall on the shared data (neighbour selection still compares
  // float32). The codes live only while such a batch is being added (cap x dim bytes), then
  // are freed; searches never read them. Made and freed with resize_mu_ held exclusively, so
  // every insert in flight sees one table; an insert that runs while they exist codes its
  // vector too (insert_slot).
  static constexpr std::size_t kBuildCodesMinBatch = 1024;
  bool begin_build_codes(std::size_t n, std::size_t live_before, std::size_t threads) {
    if (use_i8_ || metric_ == Metric::L2 || bcodes_ != nullptr || !build_codes_enabled_ ||
        n < kBuildCodesMinBatch || n * 16 < live_before)
      return false;  // too small a batch for coding the whole index to pay off
    bcodes_ = static_cast<int8_t*>(alloc_block(cap_ * dim_));
    bscales_.assign(cap_, 0.0f);
    coded_batches_.fetch_add(1);
    constexpr std::size_t kSlice = 8192;
    const std::size_t slots = n_slots_, slices = (slots + kSlice - 1) / kSlice;
    parallel_for(slices, threads, [&](std::size_t b, std::size_t) {
      for (std::size_t s = b * kSlice, hi = std::min(slots, s + kSlice); s < hi; ++s)
        bscales_[s] = quantize_row(vec(static_cast<uint32_t>(s)), bcodes_ + s * dim_);
    });
    return true;
  }
  void drop_build_codes() {
    std::free(bcodes_);
    bcodes_ = nullptr;
    std::vector<float>().swap(bscales_);
  }
  // The int8 codes (and scales) a walk measures with: the index's own, or during a batch
  // the construction codes (`build`), else none.
  const int8_t* walk_codes(bool build) const {
    return use_i8_ ? codes_ : build ? bcodes_ : nullptr;
  }
  const float* walk_scales(bool build) const { return use_i8_ ? scl_ : build ? bscales_.data() : nullptr; }

  // Distance used while walking the graph at query time (binary16 copy when mixed, int8 codes
  // when int8: 1 - scale * q.code, the metric being cosine or ip).
  float tdist(const float* q, uint32_t s) const {
    if (use_i8_) return 1.0f - scl_[s] * kernels_->dot_i8(q, code(s), dim_);
    if (!use_half_) return dist(q, vec(s));
    if (metric_ == Metric::L2) return kernels_->l2sq_f16(q, half_vec(s), dim_);
    return 1.0f - kernels_->dot_f16(q, half_vec(s), dim_);
  }
  // An int8 walk measures with an int16 copy of the query and the integer kernel (exact sums,
  // no float conversion per code): the query keeps 15 bits (to 2^31 / (127 dim) levels, so
  // the int32 sum cannot overflow), the codes' error is unchanged.
  void prepare_walk_query(const float* q, Context& ctx, bool build = false) const {
    if (walk_codes(build) == nullptr) return;
    float mx = 0.0f;
    for (std::size_t j = 0; j < dim_; ++j) mx = std::max(mx, std::fabs(q[j]));
    double cap = std::min(32767.0, std::floor(2147483647.0 / (127.0 * static_cast<double>(dim_))));
    float scale = mx > 0.0f ? static_cast<float>(cap / mx) : 0.0f;
    ctx.q16.resize(dim_);
    for (std::size_t j = 0; j < dim_; ++j)
      ctx.q16[j] = static_cast<int16_t>(std::lrint(q[j] * scale));
    ctx.q16_inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  }
  float tdist_q(const Context& ctx, const float* q, uint32_t s, bool build = false) const {
    if (const int8_t* codes = walk_codes(build))
      return 1.0f - walk_scales(build)[s] * ctx.q16_inv *
                        static_cast<float>(kernels_->dot_i16i8(
                            ctx.q16.data(), codes + static_cast<std::size_t>(s) * dim_, dim_));
    return tdist(q, s);
  }
  // The walk's distances from q to every slot of `list`, into ctx.dists: one list ("gather")
  // kernel call for the int8 and binary16 copies; float32 one by one, the next vector
  // fetched ahead.
  void list_distances(Context& ctx, const float* q, const std::vector<uint32_t>& list,
                      bool build = false) const {
    const std::size_t m = list.size();
    ctx.dists.resize(m);
    if (const int8_t* codes = walk_codes(build)) {
      const float* scl = walk_scales(build);
      ctx.sums.resize(m);
      kernels_->dot_i16i8_gather(ctx.q16.data(), codes, list.data(), m, dim_, ctx.sums.data());
      for (std::size_t j = 0; j < m; ++j)
        ctx.dists[j] = 1.0f - scl[list[j]] * ctx.q16_inv * static_cast<float>(ctx.sums[j]);
    } else if (use_half_ && metric_ == Metric::L2) {
      kernels_->l2sq_f16_gather(q, half_, list.data(), m, dim_, ctx.dists.data());
    } else if (use_half_) {
      kernels_->dot_f16_gather(q, half_, list.data(), m, dim_, ctx.dists.data());
      for (float& d : ctx.dists) d = 1.0f - d;
    } else {
      if (m) prefetch_vector(list[0]);
      for (std::size_t j = 0; j < m; ++j) {
        if (j + 1 < m) prefetch_vector(list[j + 1]);
        ctx.dists[j] = dist(q, vec(list[j]));
      }
    }
  }
  const char* traversal_ptr(uint32_t s, bool build = false) const {
    if (const int8_t* codes = walk_codes(build))
      return reinterpret_cast<const char*>(codes + static_cast<std::size_t>(s) * dim_);
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

  // Caller holds resize_mu_ exclusively (or is the constructor). Copies the first n_slots_
  // entries of every array; the old blocks are freed when this index owns them (not when
  // they are views of a mapped file, see materialize()).
  void grow_to(std::size_t cap) {
    auto regrow = [&](auto*& block, std::size_t per_slot) {
      using T = std::remove_pointer_t<std::remove_reference_t<decltype(block)>>;
      auto* nb = static_cast<T*>(alloc_block(cap * per_slot * sizeof(T)));
      if (block) {
        // large copies in 16 MiB pieces over the cores (a mapped file's first write)
        const std::size_t bytes = n_slots_ * per_slot * sizeof(T), piece = std::size_t{16} << 20;
        parallel_for((bytes + piece - 1) / piece, bytes > 4 * piece ? 0 : 1,
                     [&](std::size_t i, std::size_t) {
                       std::size_t lo = i * piece, len = std::min(piece, bytes - lo);
                       std::memcpy(reinterpret_cast<char*>(nb) + lo,
                                   reinterpret_cast<const char*>(block) + lo, len);
                     });
        if (owned_) std::free(block);
      }
      block = nb;
    };
    drop_build_codes();  // only made after growing (add), so none are in use here
    regrow(vectors_, dim_);
    if (use_half_) regrow(half_, dim_);
    if (use_i8_) {
      regrow(codes_, dim_);
      scales_.resize(cap, 0.0f);
    }
    bool had_links = links0_ != nullptr;
    regrow(links0_, M0_ + 1);
    std::memset(links0_ + (had_links ? n_slots_ : 0) * (M0_ + 1), 0,
                (cap - (had_links ? n_slots_ : 0)) * (M0_ + 1) * sizeof(uint32_t));
    upper_.resize(cap);
    labels_.resize(cap, -1);
    deleted_.resize(cap, 1);
    norms_.resize(cap, 1.0f);
    levels_.resize(cap, 0);
    recycle_.resize(cap, 0);
    building_.resize(cap, 0);
    node_locks_.reset(new NodeLock[cap]);
    cap_ = cap;
    owned_ = true;
    point_views();
  }
  // The read views at the owned arrays.
  void point_views() {
    lab_ = labels_.data();
    del_ = deleted_.data();
    nrm_ = norms_.data();
    lvl_ = levels_.data();
    scl_ = scales_.data();
    up_off_ = nullptr;
    up_words_ = nullptr;
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


 public:
  // Whether float32's sum of squares of a vector (ss) is exact enough to normalise with: no
  // underflow (values below ~1e-17) and no overflow (above ~1e17).
  static bool in_float_range(float ss) { return ss >= 1e-30f && ss <= 1e30f; }
  // |v| in double, scaled by the largest magnitude so nothing under- or overflows (0 for an
  // all-zero vector). The binding checks vectors with it before they reach the index.
  static double wide_norm(const float* v, std::size_t dim) {
    double mx = 0.0;
    for (std::size_t j = 0; j < dim; ++j) mx = std::max(mx, std::fabs(static_cast<double>(v[j])));
    if (mx == 0.0) return 0.0;
    double acc = 0.0;
    for (std::size_t j = 0; j < dim; ++j) {
      double t = static_cast<double>(v[j]) / mx;
      acc += t * t;
    }
    return mx * std::sqrt(acc);
  }

 private:
  double wide_norm(const float* v) const { return wide_norm(v, dim_); }

  const float* prepare_query(const float* q, std::vector<float>& buf) const {
    if (metric_ != Metric::Cosine) return q;
    buf.assign(q, q + dim_);
    float ss = kernels_->dot(q, q, dim_);
    if (in_float_range(ss)) {
      float nrm = std::sqrt(ss);
      for (auto& x : buf) x /= nrm;
    } else if (double nrm = wide_norm(q); nrm > 0.0) {  // too small or large for float32's sum
      for (std::size_t j = 0; j < dim_; ++j) buf[j] = static_cast<float>(q[j] / nrm);
    }
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
      float ss = kernels_->dot(v, v, dim_);
      if (in_float_range(ss)) {
        nrm = std::sqrt(ss);
        for (std::size_t j = 0; j < dim_; ++j) dst[j] = v[j] / nrm;
      } else {  // too small or large for float32's sum of squares (the binding checked
        double wide = wide_norm(v);  // that the norm itself is a float32)
        nrm = static_cast<float>(wide);
        for (std::size_t j = 0; j < dim_; ++j) dst[j] = static_cast<float>(v[j] / wide);
      }
    } else {
      std::memcpy(dst, v, dim_ * sizeof(float));
    }
    norms_[s] = nrm;
    if (use_half_) kernels_->to_f16(dst, half_vec(s), dim_);
    if (use_i8_) quantize(s);
    else if (bcodes_) bscales_[s] = quantize_row(dst, bcodes_ + static_cast<std::size_t>(s) * dim_);
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
    prepare_walk_query(q, *ctx.ctx, /*build=*/true);
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
    float d0 = tdist_q(ctx, q, ep, /*build=*/true);
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
      for (uint32_t x : nb) __builtin_prefetch(traversal_ptr(x, /*build=*/true), 0, 3);
      list_distances(ctx, q, nb, /*build=*/true);
      for (std::size_t j = 0; j < nb.size(); ++j) {
        uint32_t n = nb[j];
        float d = ctx.dists[j];
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
    ContextLease lease(this);
    Context& ctx = *lease.ctx;
    prepare_walk_query(q, ctx);
    float curd = tdist_q(ctx, q, cur);
    for (int l = maxl; l > 0; --l) {
      for (bool changed = true; changed;) {
        changed = false;
        const uint32_t* ls = links(cur, l);
        uint32_t cnt = std::min<uint32_t>(ls[0], static_cast<uint32_t>(M_));
        for (uint32_t j = 1; j <= cnt; ++j) {
          uint32_t n = ls[j];
          // bounds: a mapped file's lists are not checksummed before use (see open_mapped)
          if (n >= n_slots_ || lvl_[n] < l) continue;
          float d = tdist_q(ctx, q, n);
          if (d < curd) {
            curd = d;
            cur = n;
            changed = true;
          }
        }
      }
    }
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
        if (n >= n_slots_ || ctx.visited.test_and_set(n)) continue;
        nb.push_back(n);
      }
      // Touch the first line of every unvisited neighbour now (starts the page walks and the
      // hardware's adjacent-line fetches early); list_distances pulls whole vectors ahead.
      for (uint32_t x : nb) __builtin_prefetch(traversal_ptr(x), 0, 3);
      list_distances(ctx, q, nb);
      for (std::size_t j = 0; j < nb.size(); ++j) {
        uint32_t n = nb[j];
        float d = ctx.dists[j];
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
    std::sort(res.begin(), res.end());
    if (use_half_ || use_i8_) {
      // Exact float32 distances for the final ranking of the best candidates by the walk's
      // distance (its error is about 1e-3; on the shared 100k data re-ranking k + 2 gives the
      // recall of re-ranking all ef candidates for k = 1, 5, 10 and 100, at int8 and binary16;
      // k + 2 + k/32 are taken). A mapped file's vectors are read with pread, not through the
      // mapping, so re-ranking never grows the resident set: the walk's copy is what a search
      // holds.
      std::size_t keep = std::min(res.size(), k + 2 + k / 32);
      res.resize(keep);
      rerank(q, res, ctx.vbuf);
      std::sort(res.begin(), res.end());
    }
    std::size_t got = std::min(k, res.size());
    for (std::size_t i = 0; i < got; ++i) {
      oi[i] = lab_[res[i].second];
      od[i] = res[i].first;
    }
    for (std::size_t i = got; i < k; ++i) oi[i] = -1, od[i] = INFINITY;
    return got;
  }

  // Exact top k over every slot that passes `f`. A quantized index reads its walk copy
  // (int8 codes: a quarter of float32's bytes; binary16 for cosine: half) for approximate
  // distances a_s, then measures in float32 every slot with a_s <= A_k + 2 B, where A_k is the
  // k-th smallest a_s and B bounds |a_s - d_s| (below): a superset of the true top k (each of
  // its k items has d <= A_k + B, so a_s <= A_k + 2 B), hence the float32 scan's answer.
  // Other precisions and metrics scan float32.
  //   int8: |q.x - q16.c / qs * scale| <= scale (|q|_1 / 2 + 127 dim / (2 qs))  (code and
  //         query rounding), with the largest scale of the index;
  //   binary16, cosine (unit q and x): 2^-11 sum |q_i x_i| <= 2^-11, plus subnormal and
  //         summation terms.
  void exact_scan(const float* q, std::size_t k, const Filter& f, int64_t* oi, float* od) const {
    bool half_cos = use_half_ && metric_ == Metric::Cosine;
    if (!use_i8_ && !half_cos) {
      brute_force(q, k, nullptr, n_slots_, f, oi, od);
      return;
    }
    ContextLease lease(this);
    Context& ctx = *lease.ctx;
    prepare_walk_query(q, ctx);
    auto& approx = ctx.vbuf;  // one value per slot, +inf where the filter says no
    approx.assign(n_slots_, INFINITY);
    std::vector<float> kth;  // max-heap of the k smallest approximate distances
    kth.reserve(k + 1);
    float max_scale = 0.0f;
    for (std::size_t s = 0; s < n_slots_; ++s) {
      auto slot = static_cast<uint32_t>(s);
      if (!f.pass(slot)) continue;
      float a = tdist_q(ctx, q, slot);
      if (use_i8_) max_scale = std::max(max_scale, scl_[s]);
      approx[s] = a;
      if (kth.size() < k) {
        kth.push_back(a);
        std::push_heap(kth.begin(), kth.end());
      } else if (a < kth.front()) {
        std::pop_heap(kth.begin(), kth.end());
        kth.back() = a;
        std::push_heap(kth.begin(), kth.end());
      }
    }
    // B, plus float32 summation error (dim 2^-23 of sum |q_i x_i|) on either side
    double bound, eps;
    if (use_i8_) {
      double l1 = 0.0;
      for (std::size_t j = 0; j < dim_; ++j) l1 += std::fabs(q[j]);
      double q_step = ctx.q16_inv;  // one int16 level of the query
      bound = max_scale * (0.5 * l1 + 0.5 * 127.0 * static_cast<double>(dim_) * q_step);
      eps = static_cast<double>(dim_) * 1.2e-7 * std::max(1.0, l1 * 127.0 * max_scale);
    } else {
      bound = std::ldexp(1.0, -11) + static_cast<double>(dim_) * 3e-8;
      eps = static_cast<double>(dim_) * 1.2e-7;
    }
    float limit = kth.size() < k ? INFINITY
                                 : static_cast<float>(kth.front() + 2.0 * (bound + eps) * 1.01);
    TopK top(k);
    std::vector<float> buf;
    for (std::size_t s = 0; s < n_slots_; ++s) {
      if (!(approx[s] <= limit)) continue;
      top.push(dist(q, vector_for_rerank(static_cast<uint32_t>(s), buf)), lab_[s]);
    }
    top.write(oi, od);
  }
  // The float32 vector of slot s: in memory, or read from the mapped file into `buf` (pread:
  // the resident set does not grow).
  // Exact distances for the candidates in `res` (slots in .second). A mapped file's vectors
  // are read with pread, candidates sorted by slot, and the ones that lie within a few pages
  // of each other read together (files are saved in a locality order, so the best candidates
  // of a query are often neighbours in the file): fewer system calls than one per vector.
  void rerank(const float* q, std::vector<Pair>& res, std::vector<float>& buf) const {
    if (owned_) {
      for (auto& r : res) r.first = dist(q, vec(r.second));
      return;
    }
    std::sort(res.begin(), res.end(), [](const Pair& a, const Pair& b) { return a.second < b.second; });
    const std::size_t row = dim_ * sizeof(float);
    const std::size_t base =
        static_cast<std::size_t>(reinterpret_cast<const unsigned char*>(vectors_) - map_->data());
    const std::size_t max_span = std::max<std::size_t>(row, 32768), max_gap = 8192;
    buf.resize((max_span + row) / sizeof(float));
    for (std::size_t i = 0; i < res.size();) {
      std::size_t j = i + 1;
      const std::size_t lo = static_cast<std::size_t>(res[i].second) * row;
      std::size_t hi = lo + row;
      while (j < res.size()) {
        std::size_t o = static_cast<std::size_t>(res[j].second) * row;
        if (o > hi + max_gap || o + row - lo > max_span) break;
        hi = o + row;
        ++j;
      }
      map_->read_at(buf.data(), hi - lo, base + lo);
      for (std::size_t t = i; t < j; ++t)
        res[t].first = dist(q, buf.data() + (static_cast<std::size_t>(res[t].second) * row - lo) / sizeof(float));
      i = j;
    }
  }
  const float* vector_for_rerank(uint32_t s, std::vector<float>& buf) const {
    if (owned_) return vec(s);
    buf.resize(dim_);
    const std::size_t base =
        static_cast<std::size_t>(reinterpret_cast<const unsigned char*>(vectors_) - map_->data());
    map_->read_at(buf.data(), dim_ * sizeof(float), base + static_cast<std::size_t>(s) * dim_ * sizeof(float));
    return buf.data();
  }

  // Exact scan over the given slots (or all slots when `slots` is null).
  void brute_force(const float* q, std::size_t k, const uint32_t* slots, std::size_t n,
                   const Filter& f, int64_t* oi, float* od) const {
    TopK top(k);
    for (std::size_t i = 0; i < n; ++i) {
      uint32_t s = slots ? slots[i] : static_cast<uint32_t>(i);
      if (!f.pass(s)) continue;
      top.push(dist(q, vec(s)), lab_[s]);
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
  int8_t* bcodes_ = nullptr;    // construction codes while a large batch is added (see above)
  std::vector<float> bscales_;  // and their scales
  bool build_codes_enabled_ = true;
  std::atomic<std::size_t> coded_batches_{0};
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

  // What reads go through: the arrays above, or a mapped file's sections until the first
  // write copies them (materialize). Searches use only these and the blocks above.
  bool owned_ = true;
  const int64_t* lab_ = nullptr;
  const uint8_t* del_ = nullptr;
  const float* nrm_ = nullptr;
  const int32_t* lvl_ = nullptr;
  const float* scl_ = nullptr;
  const uint64_t* up_off_ = nullptr;   // mapped upper lists: first word of each slot's lists
  const uint32_t* up_words_ = nullptr;
  std::shared_ptr<const MappedFile> map_;
  std::string map_path_;
  std::vector<FileSection> sections_;  // of the mapped file, for verify() and materialize()
  std::vector<std::pair<void*, std::size_t>> walk_blocks_;  // OpenMode::VectorsMapped's copies
  mutable bool idmap_ready_ = true;            // false until a mapped index first needs id -> slot

  mutable std::unordered_map<int64_t, uint32_t> id2slot_;  // built lazily for a mapped file
  mutable std::vector<uint32_t> free_slots_;
  std::vector<uint8_t> recycle_;
  std::vector<uint8_t> building_;  // 1 while a slot's insert is in progress  // slot is being recycled by a pending insert
  int max_level_ = -1;
  uint32_t entry_ = kNone;

  mutable std::shared_mutex resize_mu_;
  mutable std::mutex map_mu_, global_mu_, rng_mu_, pool_mu_;
  mutable std::vector<std::unique_ptr<Context>> pool_;
};

}  // namespace agentdb
