// Causal hypergraph: header-only, no Python (cpp/bindings/hypergraph.cpp wraps it as
// agentdb._native.Hypergraph; the contract is spec_graph.md, the pure-Python twin is
// python/agentdb/engines/numpy_graph.py).
//
// Model. Nodes have an int64 id (any value but -1) and an int32 label (-1 = none). A hyperedge
// has an int64 id, an int32 type (>= 0), a tail (causes) and a head (effects), each a non-empty
// list of distinct nodes, a float32 confidence in [0, 1] and a float64 timestamp. Queries walk
// the binary projection: hyperedge e gives a -[e]-> b for every a in tail(e), b in head(e).
// "out" walks tail->head, "in" head->tail, "both" either (a pair (b, e) is reported once).
//
// Storage. Node ids map to uint32 slots and edge ids to uint32 slots (open-addressing maps;
// at most 2^32-2 nodes and 2^31-2 edges). Per edge, one 32-byte record holds what traversals
// read (type, confidence, tail/head ranges) over the append-only edge -> tail/head node arrays.
// Node -> out-edges (node in tail) and node -> in-edges (node in head) are CSR arrays covering
// the edges that existed at the last compaction, plus an append buffer: per-node small vectors
// holding the edges added since, visible to the next query. compact() renumbers live
// nodes/edges densely, rebuilds both CSR directions by a counting sort and empties the buffer.
// Removals are tombstones (node: alive flag; edge: type set to -1, which every type filter
// rejects) until the next compaction.
//
// Projection cache. compact() also stores, per node and direction, the CSR relationships as
// contiguous (neighbour, edge, type) pairs, so a traversal step streams one array instead of
// chasing edge records; in-pairs that duplicate an out-pair carry a flag for "both". Edges with
// |tail| * |head| > 64 are not expanded (their pairs could be quadratic): they stay on per-node
// "wide" incidence lists. Removing an edge marks its pairs dead (binary search: each node's
// pairs are in ascending edge order).
//
// Auto-compaction rule: after any add_edge/add_edges call, if buffered() (edges added since the
// last compaction, including ones removed since) exceeds max(1024, csr_edges / 4) (csr_edges =
// live edges at the last compaction, integer division), the graph compacts itself. A bulk call
// that will cross the threshold skips the per-node buffers and compacts directly.
//
// Concurrency: one std::shared_mutex; queries take it shared, writes (including compaction)
// exclusive. Traversal scratch (epoch-stamped visited arrays, DFS frames, neighbour pools) is
// thread_local and reused across queries, so a traversal allocates nothing per step.
//
// Paths are simple: no node repeats, and (as for Cypher relationships) no hyperedge repeats.
// Path scores are accumulated over the edge confidences in returned (forward) order in double:
// product = ((1*c1)*c2)..., min, sum = ((0+c1)+c2)...; an empty path scores (1, 1, 0).
//
// FILE FORMAT "AGDBHYPG" version 1, little endian, written atomically (tmp file + rename):
//   header, 64 bytes:
//     0  char[8]  magic "AGDBHYPG"
//     8  u32      version = 1
//     12 u32      header_size = 64
//     16 u64      n_nodes
//     24 u64      n_edges
//     32 u64      n_tail   (total tail entries)
//     40 u64      n_head   (total head entries)
//     48 u32      flags = 0
//     52 u8[12]   reserved, zero
//   sections, back to back, no padding (live items only):
//     node_ids      i64[n_nodes]      strictly ascending, != -1
//     node_labels   i32[n_nodes]      >= -1
//     edge_ids      i64[n_edges]      strictly ascending, != -1
//     edge_types    i32[n_edges]      >= 0
//     edge_conf     f32[n_edges]      in [0, 1]
//     edge_time     f64[n_edges]
//     tail_offsets  u64[n_edges + 1]  0 = first <= ... <= last = n_tail, each edge non-empty
//     tail_nodes    u32[n_tail]       index into the node section, distinct within an edge
//     head_offsets  u64[n_edges + 1]  same rules with n_head
//     head_nodes    u32[n_head]
//   trailer: u32 CRC-32 (zlib.crc32) of every preceding byte.
// Both backends write byte-identical files for the same graph (tail/head keep caller order).
#pragma once
#include "budget.hpp"
#include "parallel.hpp"
#include <algorithm>
#include <iterator>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "column.hpp"
#include "crc32.hpp"
#include "mapped_file.hpp"

namespace agentdb {

// Unknown node/edge (bindings map it to KeyError, message "unknown node 5").
struct GraphKeyError : std::out_of_range {
  using std::out_of_range::out_of_range;
};
// Invalid argument or graph state (ValueError).
struct GraphValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// A file that is not a valid hypergraph file (ValueError naming the problem).
struct GraphBadFile : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

enum class Dir : uint8_t { Out = 0, In = 1, Both = 2 };
enum class PathScore : uint8_t { Product = 0, Min = 1, Sum = 2 };

// Which edge types a traversal keeps. Removed edges carry type -1 and never pass.
struct TypeFilter {
  bool any = true;
  std::vector<int32_t> types;  // sorted, unique (when !any)

  TypeFilter() = default;
  explicit TypeFilter(std::vector<int32_t> t) : any(false), types(std::move(t)) {
    std::sort(types.begin(), types.end());
    types.erase(std::unique(types.begin(), types.end()), types.end());
  }
  bool operator()(int32_t t) const {
    if (t < 0) return false;
    if (any) return true;
    if (types.size() <= 8) {
      for (int32_t x : types)
        if (x == t) return true;
      return false;
    }
    return std::binary_search(types.begin(), types.end(), t);
  }
};

// Open-addressing int64 -> uint32 map (linear probing, backward-shift deletion). Key -1 is
// never a valid id, so it marks empty cells.
class IdMap {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFFu;

  std::size_t size() const { return size_; }
  std::size_t bytes() const { return keys_.owned_bytes() + vals_.owned_bytes(); }
  std::size_t capacity() const { return keys_.size(); }
  const Column<int64_t>& keys() const { return keys_; }
  const Column<uint32_t>& vals() const { return vals_; }
  // Reads a table saved from keys()/vals() in place (the caller checked it, see
  // Hypergraph::check_map).
  void view(const int64_t* keys, const uint32_t* vals, std::size_t cap, std::size_t size) {
    keys_.view(keys, cap);
    vals_.view(vals, cap);
    size_ = size;
  }
  void own() {
    keys_.own();
    vals_.own();
  }

  uint32_t find(int64_t key) const {
    if (size_ == 0 || key == -1) return kNone;
    std::size_t m = keys_.size() - 1, i = hash(key) & m;
    for (;;) {
      int64_t k = keys_[i];
      if (k == key) return vals_[i];
      if (k == -1) return kNone;
      i = (i + 1) & m;
    }
  }

  void set(int64_t key, uint32_t val) {
    if ((size_ + 1) * 2 > keys_.size()) rehash(std::max<std::size_t>(16, keys_.size() * 2));
    std::size_t m = keys_.size() - 1, i = hash(key) & m;
    for (;;) {
      if (keys_[i] == key) {
        vals_[i] = val;
        return;
      }
      if (keys_[i] == -1) {
        keys_[i] = key;
        vals_[i] = val;
        ++size_;
        return;
      }
      i = (i + 1) & m;
    }
  }

  bool erase(int64_t key) {
    if (size_ == 0 || key == -1) return false;
    std::size_t m = keys_.size() - 1, i = hash(key) & m;
    for (;;) {
      if (keys_[i] == key) break;
      if (keys_[i] == -1) return false;
      i = (i + 1) & m;
    }
    std::size_t j = i;
    for (;;) {
      j = (j + 1) & m;
      if (keys_[j] == -1) break;
      std::size_t home = hash(keys_[j]) & m;
      bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
      if (!in_range) {
        keys_[i] = keys_[j];
        vals_[i] = vals_[j];
        i = j;
      }
    }
    keys_[i] = -1;
    --size_;
    return true;
  }

  void clear_and_reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    keys_.assign(cap, -1);
    vals_.assign(cap, kNone);
    size_ = 0;
  }

 private:
  static uint64_t hash(int64_t k) {
    uint64_t x = static_cast<uint64_t>(k);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
  }
  void rehash(std::size_t cap) {
    std::vector<int64_t> ok = keys_.release();
    std::vector<uint32_t> ov = vals_.release();
    keys_.assign(cap, -1);
    vals_.assign(cap, kNone);
    size_ = 0;
    for (std::size_t i = 0; i < ok.size(); ++i)
      if (ok[i] != -1) set(ok[i], ov[i]);
  }

  Column<int64_t> keys_;
  Column<uint32_t> vals_;
  std::size_t size_ = 0;
};

// Per-thread traversal scratch, reused by every query on that thread (any graph). Arrays are
// epoch-stamped: an entry counts only when its stamp equals the current epoch.
struct GraphScratch {
  struct Frame {
    std::size_t begin, end, cur;
  };
  struct Mark {  // stamp == epoch: val is set for this query
    uint32_t stamp;
    int32_t val;
  };
  uint32_t epoch = 0;
  std::vector<Mark> mark, mark2;  // BFS hop counts / seed flags / distance to dst
  std::vector<uint32_t> allow;    // allow[v] == epoch: v is in the query's end set
  std::vector<uint32_t> frontier, next, reached;
  std::vector<uint32_t> seed_slots;  // khop's seeds
  std::vector<std::pair<int64_t, int32_t>> out, tmp;
  std::vector<std::pair<uint32_t, uint32_t>> pool;
  std::vector<Frame> frames;
  std::vector<uint32_t> path_nodes, path_edges;
  std::vector<double> prod, mn, sm;

  void begin(std::size_t nodes) {
    if (mark.size() < nodes) {
      mark.resize(nodes, Mark{0, 0});
      mark2.resize(nodes, Mark{0, 0});
      allow.resize(nodes, 0);
    }
    if (++epoch == 0) {
      std::fill(mark.begin(), mark.end(), Mark{0, 0});
      std::fill(mark2.begin(), mark2.end(), Mark{0, 0});
      std::fill(allow.begin(), allow.end(), 0u);
      epoch = 1;
    }
  }
  bool seen(uint32_t v) const { return mark[v].stamp == epoch; }
  bool seen2(uint32_t v) const { return mark2[v].stamp == epoch; }
};

// Sort (key, value) pairs by key: LSD radix sort on the signed 64-bit key (11-bit digits,
// digits shared by every key skipped), std::sort for short inputs.
template <class V>
void sort_by_key(std::vector<std::pair<int64_t, V>>& a, std::vector<std::pair<int64_t, V>>& tmp) {
  const std::size_t n = a.size();
  if (n < 2048) {
    std::sort(a.begin(), a.end());
    return;
  }
  constexpr int kBits = 11, kRadix = 1 << kBits, kPasses = 6;
  std::vector<std::size_t> cnt(static_cast<std::size_t>(kPasses) * kRadix, 0);
  auto key = [](int64_t k) { return static_cast<uint64_t>(k) ^ (uint64_t{1} << 63); };
  for (const auto& x : a) {
    uint64_t k = key(x.first);
    for (int p = 0; p < kPasses; ++p) ++cnt[p * kRadix + ((k >> (p * kBits)) & (kRadix - 1))];
  }
  tmp.resize(n);
  for (int p = 0; p < kPasses; ++p) {
    std::size_t* c = &cnt[static_cast<std::size_t>(p) * kRadix];
    if (c[(key(a[0].first) >> (p * kBits)) & (kRadix - 1)] == n) continue;  // constant digit
    std::size_t sum = 0;
    for (int d = 0; d < kRadix; ++d) {
      std::size_t t = c[d];
      c[d] = sum;
      sum += t;
    }
    for (const auto& x : a) tmp[c[(key(x.first) >> (p * kBits)) & (kRadix - 1)]++] = x;
    a.swap(tmp);
  }
}

// Sorts node slots ascending: insertion sort for a few, else LSD radix sort on 8-bit digits
// with as many passes as the largest slot needs (3 below 16M nodes), all histograms taken in
// one pass. A k-hop result of ~50-150 slots sorts about twice as fast as with std::sort, whose
// compares mispredict on random slots.
inline void sort_slots(std::vector<uint32_t>& a, std::vector<uint32_t>& tmp) {
  const std::size_t n = a.size();
  if (n <= 24) {
    for (std::size_t i = 1; i < n; ++i) {
      const uint32_t v = a[i];
      std::size_t j = i;
      for (; j > 0 && a[j - 1] > v; --j) a[j] = a[j - 1];
      a[j] = v;
    }
    return;
  }
  uint32_t any = 0;
  for (uint32_t v : a) any |= v;
  const int passes = (any >> 24) ? 4 : (any >> 16) ? 3 : (any >> 8) ? 2 : 1;
  uint32_t cnt[4][256];
  std::memset(cnt, 0, sizeof(cnt[0]) * static_cast<std::size_t>(passes));
  for (uint32_t v : a)
    for (int p = 0; p < passes; ++p) ++cnt[p][(v >> (8 * p)) & 255u];
  tmp.resize(n);
  uint32_t* src = a.data();
  uint32_t* dst = tmp.data();
  for (int p = 0; p < passes; ++p) {
    uint32_t* c = cnt[p];
    if (c[(src[0] >> (8 * p)) & 255u] == n) continue;  // every slot has this digit
    uint32_t sum = 0;
    for (int d = 0; d < 256; ++d) {
      const uint32_t t = c[d];
      c[d] = sum;
      sum += t;
    }
    for (std::size_t i = 0; i < n; ++i) dst[c[(src[i] >> (8 * p)) & 255u]++] = src[i];
    std::swap(src, dst);
  }
  if (src != a.data()) std::memcpy(a.data(), src, n * sizeof(uint32_t));
}

inline GraphScratch& graph_scratch() {
  thread_local GraphScratch s;
  return s;
}

// Paths in forward order, flat: path i has nodes [node_off[i], node_off[i+1]) and edges
// [edge_off[i], edge_off[i+1]). The result order is order[0], order[1], ... (a permutation,
// so the paths themselves are never moved).
struct PathSet {
  std::vector<int64_t> nodes, edges;
  std::vector<std::size_t> node_off{0}, edge_off{0};
  std::vector<double> product, min, sum;
  std::vector<std::size_t> order;
  std::size_t size() const { return product.size(); }
};

struct PathQuery {
  int64_t src = 0;
  int64_t min_hops = 1, max_hops = 5;
  Dir dir = Dir::Out;
  TypeFilter types;
  bool has_dst = false, has_dst_label = false, has_src_label = false;
  int64_t dst = 0;
  int32_t dst_label = -1, src_label = -1;
  int64_t limit = 100000;
  bool has_ends = false;       // only paths whose traversal end is in `ends`
  std::vector<int64_t> ends;   // node ids; unknown ids are ignored
};

struct ChainQuery {
  std::vector<int32_t> labels;  // 2..4, -1 = any
  std::vector<TypeFilter> types;
  std::vector<Dir> dirs;
  bool has_start = false;
  std::vector<int64_t> start;
  // Per position: when has_allowed[i], node i must be one of allowed[i] (unknown ids ignored).
  std::vector<char> has_allowed;
  std::vector<std::vector<int64_t>> allowed;
  // false: no hyperedge repeats within a row; true: no projected relationship (edge, start,
  // end) repeats (Cypher's rule; directions must then be Out or In).
  bool distinct_relationships = false;
};

struct ChainResult {
  std::size_t rows = 0, width = 0;
  std::vector<int64_t> nodes, edges;  // rows * width, rows * (width - 1)
};

struct EdgeInfo {
  int32_t type;
  std::vector<int64_t> tail, head;
  float confidence;
  double timestamp;
};

// A bulk edge insert, CSR style. Pointers may be null for confidences (-> 1.0) and
// timestamps (-> 0.0). Offsets/lengths are validated by Hypergraph::add_edges.
struct EdgeBatch {
  std::size_t n = 0;
  const int64_t* ids = nullptr;
  const int64_t* types = nullptr;
  const int64_t* tail_off = nullptr;
  const int64_t* tail_nodes = nullptr;
  std::size_t n_tail_nodes = 0;
  const int64_t* head_off = nullptr;
  const int64_t* head_nodes = nullptr;
  std::size_t n_head_nodes = 0;
  const double* confidences = nullptr;
  const double* timestamps = nullptr;
};

inline std::string graph_num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

class Hypergraph {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFFu;
  static constexpr int kMaxHops = 64;
  static constexpr uint32_t kFormatVersion = 1;
  static constexpr std::size_t kHeaderSize = 64;
  static constexpr std::size_t kMinBuffer = 1024;
  static constexpr uint64_t kMaxSlots = 0xFFFFFFFEull;      // nodes
  static constexpr uint64_t kMaxEdges = 0x7FFFFFFEull;      // edges (bit 31 flags pairs)
  static constexpr uint64_t kProjectMax = 64;               // |tail|*|head| of projected edges

  Hypergraph() = default;
  Hypergraph(const Hypergraph&) = delete;
  Hypergraph& operator=(const Hypergraph&) = delete;

  // ---- writes ----------------------------------------------------------------------------
  // Upsert nodes (a re-added id gets the new label). All entries are checked first.
  void add_nodes(const int64_t* ids, const int64_t* labels, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (ids[i] == -1) throw GraphValueError("node id -1 is reserved");
      int64_t lab = labels ? labels[i] : -1;
      if (lab < -1 || lab > std::numeric_limits<int32_t>::max())
        throw GraphValueError("label must be in [-1, 2147483647], got " + std::to_string(lab));
    }
    std::unique_lock<std::shared_mutex> g(mu_);
    materialize_locked();
    if (node_id_.size() + n > kMaxSlots) throw GraphValueError("too many nodes");
    for (std::size_t i = 0; i < n; ++i) {
      int32_t lab = labels ? static_cast<int32_t>(labels[i]) : -1;
      uint32_t s = node_map_.find(ids[i]);
      if (s != IdMap::kNone) {
        node_label_[s] = lab;
        continue;
      }
      s = static_cast<uint32_t>(node_id_.size());
      if (!node_id_.empty() && ids[i] <= node_id_.back()) ids_ascending_ = false;
      node_id_.push_back(ids[i]);
      node_label_.push_back(lab);
      node_alive_.push_back(1);
      node_map_.set(ids[i], s);
      ++n_live_nodes_;
    }
    out_buf_.resize(node_id_.size());
    in_buf_.resize(node_id_.size());
  }

  // Insert edges; everything is validated before anything changes (per edge, in order: id,
  // type, confidence, empty tail/head, duplicate node in tail/head, duplicate edge id, unknown
  // node in tail then head).
  void add_edges(const EdgeBatch& b) {
    check_offsets(b.tail_off, b.n, b.n_tail_nodes, "tail_offsets", "tail_nodes");
    check_offsets(b.head_off, b.n, b.n_head_nodes, "head_offsets", "head_nodes");
    std::unique_lock<std::shared_mutex> g(mu_);
    std::vector<uint32_t> tslots(b.n_tail_nodes), hslots(b.n_head_nodes);
    {
      IdMap batch;
      if (b.n > 1) batch.clear_and_reserve(b.n);
      std::vector<int64_t> tmp;
      for (std::size_t i = 0; i < b.n; ++i) {
        int64_t id = b.ids[i];
        if (id == -1) throw GraphValueError("edge id -1 is reserved");
        int64_t t = b.types[i];
        if (t < 0 || t > std::numeric_limits<int32_t>::max())
          throw GraphValueError("edge type must be in [0, 2147483647], got " + std::to_string(t));
        double c = b.confidences ? b.confidences[i] : 1.0;
        if (!(c >= 0.0 && c <= 1.0))
          throw GraphValueError("confidence must be in [0, 1], got " + graph_num(c) +
                                " (edge " + std::to_string(id) + ")");
        std::size_t t0 = static_cast<std::size_t>(b.tail_off[i]),
                    t1 = static_cast<std::size_t>(b.tail_off[i + 1]);
        std::size_t h0 = static_cast<std::size_t>(b.head_off[i]),
                    h1 = static_cast<std::size_t>(b.head_off[i + 1]);
        if (t0 == t1) throw GraphValueError("edge " + std::to_string(id) + " has an empty tail");
        if (h0 == h1) throw GraphValueError("edge " + std::to_string(id) + " has an empty head");
        check_distinct(b.tail_nodes + t0, t1 - t0, id, "tail", tmp);
        check_distinct(b.head_nodes + h0, h1 - h0, id, "head", tmp);
        if (edge_map_.find(id) != IdMap::kNone || batch.find(id) != IdMap::kNone)
          throw GraphValueError("duplicate edge id " + std::to_string(id));
        if (b.n > 1) batch.set(id, 0);
        for (std::size_t j = t0; j < t1; ++j) {
          uint32_t s = node_map_.find(b.tail_nodes[j]);
          if (s == kNone) throw GraphKeyError("unknown node " + std::to_string(b.tail_nodes[j]));
          tslots[j] = s;
        }
        for (std::size_t j = h0; j < h1; ++j) {
          uint32_t s = node_map_.find(b.head_nodes[j]);
          if (s == kNone) throw GraphKeyError("unknown node " + std::to_string(b.head_nodes[j]));
          hslots[j] = s;
        }
      }
    }
    if (edge_id_.size() + b.n > kMaxEdges) throw GraphValueError("too many edges");
    materialize_locked();  // after validation: a rejected batch leaves a mapped file mapped
    bool will_compact = buffered_locked() + b.n > threshold_locked();
    edge_id_.reserve(edge_id_.size() + b.n);
    erec_.reserve(erec_.size() + b.n);
    edge_ts_.reserve(edge_ts_.size() + b.n);
    tail_nodes_.reserve(tail_nodes_.size() + b.n_tail_nodes);
    head_nodes_.reserve(head_nodes_.size() + b.n_head_nodes);
    for (std::size_t i = 0; i < b.n; ++i) {
      uint32_t e = static_cast<uint32_t>(edge_id_.size());
      edge_id_.push_back(b.ids[i]);
      EdgeRec r;
      r.type = static_cast<int32_t>(b.types[i]);
      r.conf = static_cast<float>(b.confidences ? b.confidences[i] : 1.0);
      r.n_tail = static_cast<uint32_t>(b.tail_off[i + 1] - b.tail_off[i]);
      r.n_head = static_cast<uint32_t>(b.head_off[i + 1] - b.head_off[i]);
      r.tail = tail_nodes_.size();
      r.head = head_nodes_.size();
      erec_.push_back(r);
      edge_ts_.push_back(b.timestamps ? b.timestamps[i] : 0.0);
      for (int64_t j = b.tail_off[i]; j < b.tail_off[i + 1]; ++j) {
        tail_nodes_.push_back(tslots[j]);
        if (!will_compact) out_buf_[tslots[j]].push_back(e);
      }
      for (int64_t j = b.head_off[i]; j < b.head_off[i + 1]; ++j) {
        head_nodes_.push_back(hslots[j]);
        if (!will_compact) in_buf_[hslots[j]].push_back(e);
      }
      edge_map_.set(b.ids[i], e);
      ++n_live_edges_;
    }
    if (will_compact) compact_locked();
  }

  // Remove a node and every edge incident to it.
  void remove_node(int64_t id) {
    std::unique_lock<std::shared_mutex> g(mu_);
    uint32_t s = node_slot(id);
    materialize_locked();
    auto kill = [&](uint32_t e) {
      if (erec_[e].type < 0) return;
      kill_edge(e);
    };
    if (s < csr_nodes_) {  // its CSR edges: through the projection and the wide lists
      for (uint64_t i = out_poff_[s]; i < out_poff_[s + 1]; ++i)
        kill(out_pairs_[i].edge & kEdgeMask);
      for (uint64_t i = in_poff_[s]; i < in_poff_[s + 1]; ++i)
        kill(in_pairs_[i].edge & kEdgeMask);
      if (has_wide_) {
        for (uint64_t i = out_woff_[s]; i < out_woff_[s + 1]; ++i) kill(out_wide_[i]);
        for (uint64_t i = in_woff_[s]; i < in_woff_[s + 1]; ++i) kill(in_wide_[i]);
      }
    }
    for (uint32_t e : out_buf_[s]) kill(e);
    for (uint32_t e : in_buf_[s]) kill(e);
    node_alive_[s] = 0;
    node_map_.erase(id);
    --n_live_nodes_;
  }

  void remove_edge(int64_t id) {
    std::unique_lock<std::shared_mutex> g(mu_);
    uint32_t e = edge_slot(id);
    materialize_locked();
    kill_edge(e);
  }

  void compact() {
    std::unique_lock<std::shared_mutex> g(mu_);
    if (map_) return;  // a mapped file is compact: it was saved that way
    compact_locked();
  }

  // ---- simple reads ----------------------------------------------------------------------
  bool has_node(int64_t id) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return node_map_.find(id) != kNone;
  }
  bool has_edge(int64_t id) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return edge_map_.find(id) != kNone;
  }
  int32_t node_label(int64_t id) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return node_label_[node_slot(id)];
  }
  // has_node / has_edge / node_label that never wait: false when a writer holds the graph
  // (the binding keeps the GIL for these O(1) lookups and releases it only then).
  bool try_has_node(int64_t id, bool& out) const {
    std::shared_lock<std::shared_mutex> g(mu_, std::try_to_lock);
    if (!g.owns_lock()) return false;
    out = node_map_.find(id) != kNone;
    return true;
  }
  bool try_has_edge(int64_t id, bool& out) const {
    std::shared_lock<std::shared_mutex> g(mu_, std::try_to_lock);
    if (!g.owns_lock()) return false;
    out = edge_map_.find(id) != kNone;
    return true;
  }
  bool try_node_label(int64_t id, int32_t& out) const {
    std::shared_lock<std::shared_mutex> g(mu_, std::try_to_lock);
    if (!g.owns_lock()) return false;
    out = node_label_[node_slot(id)];
    return true;
  }
  EdgeInfo edge(int64_t id) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    uint32_t e = edge_slot(id);
    EdgeInfo out{erec_[e].type, {}, {}, erec_[e].conf, edge_ts_[e]};
    for (const uint32_t* v = tail_of(e); v != tail_of(e) + erec_[e].n_tail; ++v)
      out.tail.push_back(node_id_[*v]);
    for (const uint32_t* v = head_of(e); v != head_of(e) + erec_[e].n_head; ++v)
      out.head.push_back(node_id_[*v]);
    return out;
  }
  std::size_t num_nodes() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return n_live_nodes_;
  }
  std::size_t num_edges() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return n_live_edges_;
  }
  std::size_t buffered() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return buffered_locked();
  }
  std::vector<int64_t> node_ids() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    std::vector<int64_t> out;
    out.reserve(n_live_nodes_);
    for (std::size_t s = 0; s < node_id_.size(); ++s)
      if (node_alive_[s]) out.push_back(node_id_[s]);
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<int64_t> edge_ids() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    std::vector<int64_t> out;
    out.reserve(n_live_edges_);
    for (std::size_t e = 0; e < edge_id_.size(); ++e)
      if (erec_[e].type >= 0) out.push_back(edge_id_[e]);
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<int64_t> nodes_with_label(int32_t label) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    std::vector<int64_t> out;
    for (std::size_t s = 0; s < node_id_.size(); ++s)
      if (node_alive_[s] && node_label_[s] == label) out.push_back(node_id_[s]);
    std::sort(out.begin(), out.end());
    return out;
  }

  std::size_t memory_usage() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    auto cap = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
    auto own = [](const auto& c) { return c.owned_bytes(); };
    std::size_t b = sizeof(*this) + own(node_id_) + own(node_label_) + own(node_alive_) +
                    own(edge_id_) + own(erec_) + own(edge_ts_) + own(tail_nodes_) +
                    own(head_nodes_) + own(out_poff_) + own(in_poff_) + own(out_pairs_) + own(in_pairs_) +
                    own(out_woff_) + own(in_woff_) + own(out_wide_) + own(in_wide_) +
                    cap(out_buf_) + cap(in_buf_) + node_map_.bytes() + edge_map_.bytes();
    for (const auto& v : out_buf_) b += cap(v);
    for (const auto& v : in_buf_) b += cap(v);
    return b;
  }

  // ---- traversals ------------------------------------------------------------------------
  // All (b, e) with a -[e]-> b in the projection, sorted by (b id, e id).
  void neighbors(int64_t id, Dir dir, const TypeFilter& tf, std::vector<int64_t>& nodes,
                 std::vector<int64_t>& edges) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    uint32_t a = node_slot(id);
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for_each_nbr(a, dir, tf, [&](uint32_t b, uint32_t e) {
      pairs.emplace_back(node_id_[b], edge_id_[e]);
    });
    std::sort(pairs.begin(), pairs.end());
    nodes.resize(pairs.size());
    edges.resize(pairs.size());
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      nodes[i] = pairs[i].first;
      edges[i] = pairs[i].second;
    }
  }

  // Nodes reached within 1..k hops of the seeds with their minimum hop count (a seed only when
  // re-reached through a cycle), sorted by id.
  void khop(const int64_t* seeds, std::size_t n_seeds, int64_t k, Dir dir, const TypeFilter& tf,
            std::vector<int64_t>& nodes, std::vector<int32_t>& hops) const {
    if (k < 1) throw GraphValueError("k must be >= 1, got " + std::to_string(k));
    std::shared_lock<std::shared_mutex> g(mu_);
    nodes.clear();
    hops.clear();
    khop_locked(seeds, n_seeds, k, dir, tf, nodes, hops, graph_scratch());
  }

  // One k-hop per seed, each what khop({seed}) gives, in one call: seed i's nodes and hops
  // are [offsets[i], offsets[i + 1]) of `nodes` / `hops`. Seeds are spread over `threads`
  // (0 = all cores) when there is enough work to pay for waking the pool (~10-20 µs): from
  // 256 seeds, or 16 when k >= 3 (one- and two-hop walks cost well under a microsecond);
  // the calling thread's budget (budget.hpp)
  // bounds every worker.
  void khop_batch(const int64_t* seeds, std::size_t n_seeds, int64_t k, Dir dir,
                  const TypeFilter& tf, std::size_t threads, std::vector<int64_t>& offsets,
                  std::vector<int64_t>& nodes, std::vector<int32_t>& hops) const {
    if (k < 1) throw GraphValueError("k must be >= 1, got " + std::to_string(k));
    std::shared_lock<std::shared_mutex> g(mu_);
    for (std::size_t i = 0; i < n_seeds; ++i) node_slot(seeds[i]);  // KeyError before work
    offsets.assign(n_seeds + 1, 0);
    nodes.clear();
    hops.clear();
    const std::size_t workers = (n_seeds >= 256 || (n_seeds >= 16 && k >= 3)) ? threads : 1;
    if (workers == 1 || hardware_threads() == 1) {  // serial: append straight to the output
      GraphScratch& scratch = graph_scratch();  // once: a thread-local lookup is a call here
      for (std::size_t i = 0; i < n_seeds; ++i) {
        khop_locked(seeds + i, 1, k, dir, tf, nodes, hops, scratch);
        offsets[i + 1] = static_cast<int64_t>(nodes.size());
      }
      return;
    }
    std::vector<std::vector<int64_t>> pn(n_seeds);
    std::vector<std::vector<int32_t>> ph(n_seeds);
    const Budget* parent = current_budget();
    parallel_for(n_seeds, workers, [&](std::size_t i, std::size_t) {
      Budget local = parent ? *parent : Budget{};
      BudgetScope scope(parent ? &local : nullptr);
      khop_locked(seeds + i, 1, k, dir, tf, pn[i], ph[i], graph_scratch());
    });
    for (std::size_t i = 0; i < n_seeds; ++i)
      offsets[i + 1] = offsets[i] + static_cast<int64_t>(pn[i].size());
    nodes.resize(static_cast<std::size_t>(offsets[n_seeds]));
    hops.resize(nodes.size());
    for (std::size_t i = 0; i < n_seeds; ++i) {
      std::copy(pn[i].begin(), pn[i].end(), nodes.begin() + offsets[i]);
      std::copy(ph[i].begin(), ph[i].end(), hops.begin() + offsets[i]);
    }
  }

 private:
  // khop's walk, its result appended to nodes / hops (sorted by node id); caller holds mu_
  // (shared) and passes this thread's scratch (graph_scratch()).
  void khop_locked(const int64_t* seeds, std::size_t n_seeds, int64_t k, Dir dir,
                   const TypeFilter& tf, std::vector<int64_t>& nodes,
                   std::vector<int32_t>& hops, GraphScratch& s) const {
    BudgetTicker ticker;
    s.begin(node_id_.size());
    const uint32_t ep = s.epoch;
    s.frontier.clear();
    s.reached.clear();
    for (std::size_t i = 0; i < n_seeds; ++i) node_slot(seeds[i]);  // KeyError before work
    for (std::size_t i = 0; i < n_seeds; ++i) {
      uint32_t v = node_map_.find(seeds[i]);
      if (s.mark[v].stamp == ep) continue;
      s.mark[v] = {ep, 0};
      s.mark2[v] = {ep, -1};  // a seed; val = hop at which it was re-reached
      s.frontier.push_back(v);
    }
    std::vector<uint32_t>& seed_list = s.seed_slots;
    seed_list.assign(s.frontier.begin(), s.frontier.end());
    for (int64_t d = 0; d < k && !s.frontier.empty(); ++d) {
      s.next.clear();
      const int32_t h = static_cast<int32_t>(std::min<int64_t>(d + 1, INT32_MAX));
      const std::size_t nf = s.frontier.size();
      for (std::size_t j = 0; j < nf; ++j) {
        if (j + 8 < nf) prefetch_offsets(s.frontier[j + 8], dir);
        if (j + 4 < nf) prefetch_pairs(s.frontier[j + 4], dir);
        const uint32_t u = s.frontier[j];
        for_each_nbr(u, dir, tf, [&](uint32_t b, uint32_t) {
          ticker.tick();
          GraphScratch::Mark& m = s.mark[b];
          if (m.stamp != ep) {  // first visit (seeds are marked from the start)
            m = {ep, h};
            s.next.push_back(b);
            return;
          }
          GraphScratch::Mark& m2 = s.mark2[b];
          if (m.val == 0 && m2.stamp == ep && m2.val < 0) m2.val = h;  // a seed re-reached
        });
      }
      s.reached.insert(s.reached.end(), s.next.begin(), s.next.end());
      std::swap(s.frontier, s.next);
    }
    const std::size_t base = nodes.size();
    if (ids_ascending_) {  // sort 4-byte slots, not (id, hop) pairs: a third of a walk's time
      std::vector<uint32_t>& sl = s.next;
      sl.assign(s.reached.begin(), s.reached.end());
      for (uint32_t v : seed_list)
        if (s.mark2[v].val > 0) sl.push_back(v);
      sort_slots(sl, s.frontier);  // the frontier is not needed any more
      nodes.resize(base + sl.size());
      hops.resize(base + sl.size());
      for (std::size_t i = 0; i < sl.size(); ++i) {
        const uint32_t v = sl[i];
        nodes[base + i] = node_id_[v];
        hops[base + i] = s.mark[v].val > 0 ? s.mark[v].val : s.mark2[v].val;  // seeds: val 0
      }
      return;
    }
    auto& out = s.out;
    out.clear();
    out.reserve(s.reached.size() + seed_list.size());
    for (uint32_t v : s.reached) out.emplace_back(node_id_[v], s.mark[v].val);
    for (uint32_t v : seed_list)
      if (s.mark2[v].val > 0) out.emplace_back(node_id_[v], s.mark2[v].val);
    sort_by_key(out, s.tmp);
    nodes.resize(base + out.size());
    hops.resize(base + out.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      nodes[base + i] = out[i].first;
      hops[base + i] = out[i].second;
    }
  }


 public:
  // Simple paths from q.src (see the header comment), sorted by (length, node ids, edge ids).
  PathSet paths(const PathQuery& q) const {
    check_hops(q.min_hops, q.max_hops);
    if (q.limit < 1) throw GraphValueError("limit must be >= 1, got " + std::to_string(q.limit));
    std::shared_lock<std::shared_mutex> g(mu_);
    Raw raw;
    GraphScratch& s = graph_scratch();
    walk_query(q, s, [](int, uint32_t) {}, [&](int) {
      raw.add(s.path_nodes, s.path_edges);
      if (static_cast<int64_t>(raw.count()) > q.limit)
        throw GraphValueError("more than " + std::to_string(q.limit) +
                              " paths; narrow the query or raise limit");
    });
    return finish(raw, false);
  }

  // What paths(q) would return, reduced while walking: the number of paths and the sum,
  // minimum and maximum of their confidence products (float64 over the stored float32
  // confidences; min/max are NaN without a path), no path kept (q.limit does not apply).
  struct PathTotals {
    int64_t count = 0;
    double sum = 0.0, min = std::numeric_limits<double>::quiet_NaN(),
           max = std::numeric_limits<double>::quiet_NaN();
    void add(double v) {
      ++count;
      sum += v;
      if (!(v >= min)) min = v;  // NaN-aware: the first value replaces NaN
      if (!(v <= max)) max = v;
    }
  };
  PathTotals path_totals(const PathQuery& q) const {
    check_hops(q.min_hops, q.max_hops);
    std::shared_lock<std::shared_mutex> g(mu_);
    PathTotals out;
    GraphScratch& s = graph_scratch();
    s.prod.assign(static_cast<std::size_t>(q.max_hops) + 1, 1.0);
    walk_query(
        q, s,
        [&](int len, uint32_t e) {
          s.prod[len] = s.prod[len - 1] * static_cast<double>(erec_[e].conf);
        },
        [&](int len) { out.add(s.prod[len]); });
    return out;
  }

  // Simple paths a -> ... -> dst (out semantics), enumerated backwards; forward node order.
  PathSet paths_to(int64_t dst_id, int64_t min_hops, int64_t max_hops, const TypeFilter& tf,
                   bool has_src_label, int32_t src_label, int64_t limit,
                   const std::vector<int64_t>* sources = nullptr) const {
    check_hops(min_hops, max_hops);
    if (limit < 1) throw GraphValueError("limit must be >= 1, got " + std::to_string(limit));
    std::shared_lock<std::shared_mutex> g(mu_);
    uint32_t dst = node_slot(dst_id);
    Raw raw;
    GraphScratch& s = graph_scratch();
    s.begin(node_id_.size());
    if (sources) mark_allowed(*sources, s);
    auto src_ok = [&](uint32_t v) {
      return (!has_src_label || node_label_[v] == src_label) &&
             (!sources || s.allow[v] == s.epoch);
    };
    auto emit = [&]() {
      raw.add(s.path_nodes, s.path_edges);
      if (static_cast<int64_t>(raw.count()) > limit)
        throw GraphValueError("more than " + std::to_string(limit) +
                              " paths; narrow the query or raise limit");
    };
    if (min_hops == 0 && src_ok(dst)) {
      s.path_nodes.assign(1, dst);
      s.path_edges.clear();
      emit();
    }
    walk(dst, static_cast<int>(max_hops), Dir::In, tf, s,
         [](int, uint32_t, uint32_t) { return true; },
         [&](int len, uint32_t b, uint32_t) {
           if (len >= min_hops && src_ok(b)) emit();
           return true;
         });
    return finish(raw, true);
  }

  // The n best simple paths from src by score (descending; ties in path order), with
  // branch-and-bound pruning: product and min never increase along a path, and a sum grows by
  // at most 1 per remaining hop.
  PathSet top_paths(int64_t src_id, int64_t min_hops, int64_t max_hops, Dir dir,
                    const TypeFilter& tf, int64_t n, PathScore score, bool has_dst,
                    int64_t dst_id, const std::vector<int64_t>* ends = nullptr) const {
    check_hops(min_hops, max_hops);
    if (n < 1) throw GraphValueError("n must be >= 1, got " + std::to_string(n));
    std::shared_lock<std::shared_mutex> g(mu_);
    uint32_t src = node_slot(src_id);
    uint32_t dst = has_dst ? node_slot(dst_id) : kNone;
    GraphScratch& s = graph_scratch();
    s.begin(node_id_.size());
    if (has_dst) dist_to(dst, static_cast<int>(max_hops) - 1, dir, tf, s);
    if (ends) mark_allowed(*ends, s);
    auto end_ok = [&](uint32_t v) {
      return (!has_dst || v == dst) && (!ends || s.allow[v] == s.epoch);
    };
    const std::size_t cap = static_cast<std::size_t>(std::min<int64_t>(n, 1 << 20));
    std::vector<Cand> heap;  // a max-heap under `better`: front = the worst kept
    std::vector<int64_t> cn, ce;
    auto better = [](const Cand& a, const Cand& b) {
      if (a.score != b.score) return a.score > b.score;
      return path_less(a.nodes, a.edges, b.nodes, b.edges);
    };
    s.prod.assign(static_cast<std::size_t>(max_hops) + 1, 1.0);
    s.mn.assign(static_cast<std::size_t>(max_hops) + 1, 1.0);
    s.sm.assign(static_cast<std::size_t>(max_hops) + 1, 0.0);
    auto score_at = [&](int len) {
      return score == PathScore::Product ? s.prod[len]
             : score == PathScore::Min   ? s.mn[len]
                                         : s.sm[len];
    };
    // Upper bound on the score of any path extending the current prefix of length len.
    auto bound_at = [&](int len, double prod, double mn, double sm) {
      return score == PathScore::Product ? prod
             : score == PathScore::Min   ? mn
                                         : sm + (max_hops - len) + 1e-9;
    };
    auto offer = [&](int len) {
      double sc = score_at(len);
      if (heap.size() >= cap && sc < heap.front().score) return;
      cn.clear();
      ce.clear();
      for (uint32_t v : s.path_nodes) cn.push_back(node_id_[v]);
      for (uint32_t e : s.path_edges) ce.push_back(edge_id_[e]);
      if (heap.size() >= cap) {
        const Cand& w = heap.front();
        if (!(sc > w.score || (sc == w.score && path_less(cn, ce, w.nodes, w.edges)))) return;
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.pop_back();
      }
      heap.push_back(Cand{sc, s.prod[len], s.mn[len], s.sm[len], cn, ce});
      std::push_heap(heap.begin(), heap.end(), better);
    };
    if (min_hops == 0 && end_ok(src)) {
      s.path_nodes.assign(1, src);
      s.path_edges.clear();
      offer(0);
    }
    walk(src, static_cast<int>(max_hops), dir, tf, s,
         [&](int len, uint32_t b, uint32_t e) {
           if (has_dst && !(s.seen2(b) && s.mark2[b].val <= max_hops - len)) return false;
           if (heap.size() < cap) return true;
           double c = erec_[e].conf;
           double bd = bound_at(len, s.prod[len - 1] * c, std::min(s.mn[len - 1], c),
                                s.sm[len - 1] + c);
           return !(bd < heap.front().score);
         },
         [&](int len, uint32_t b, uint32_t e) {
           double c = erec_[e].conf;
           s.prod[len] = s.prod[len - 1] * c;
           s.mn[len] = std::min(s.mn[len - 1], c);
           s.sm[len] = s.sm[len - 1] + c;
           if (len >= min_hops && end_ok(b)) offer(len);
           if (has_dst && b == dst) return false;
           if (heap.size() >= cap &&
               bound_at(len, s.prod[len], s.mn[len], s.sm[len]) < heap.front().score)
             return false;
           return true;
         });
    std::sort(heap.begin(), heap.end(), better);
    PathSet out;
    for (const Cand& c : heap) {
      out.nodes.insert(out.nodes.end(), c.nodes.begin(), c.nodes.end());
      out.edges.insert(out.edges.end(), c.edges.begin(), c.edges.end());
      out.node_off.push_back(out.nodes.size());
      out.edge_off.push_back(out.edges.size());
      out.product.push_back(c.prod);
      out.min.push_back(c.mn);
      out.sum.push_back(c.sm);
      out.order.push_back(out.order.size());
    }
    return out;
  }

  // Fixed-length label chains: every (n0, e1, n1, ...) with n_{i-1} -[e_i]-> n_i in dirs[i-1],
  // label(n_i) matching labels[i] (-1 = any), type(e_i) passing types[i-1], distinct edges.
  // Rows match_chain may materialise before it refuses (GraphValueError): 16.7M rows of
  // 4 nodes and 3 edges are ~940 MB.
  static constexpr std::size_t kMaxChainRows = std::size_t{1} << 24;
  ChainResult match_chain(const ChainQuery& q) const {
    const std::size_t L = q.labels.size();
    if (L < 2 || L > 4)
      throw GraphValueError("labels must have 2 to 4 entries, got " + std::to_string(L));
    if (q.types.size() != L - 1 || q.dirs.size() != L - 1)
      throw GraphValueError("types and directions must have len(labels) - 1 = " +
                            std::to_string(L - 1) + " entries");
    if (q.distinct_relationships)
      for (Dir d : q.dirs)
        if (d == Dir::Both)
          throw GraphValueError("distinct='relationships' needs 'out' or 'in' directions");
    if (!q.has_allowed.empty() && (q.has_allowed.size() != L || q.allowed.size() != L))
      throw GraphValueError("allowed must have len(labels) = " + std::to_string(L) +
                            " entries");
    std::shared_lock<std::shared_mutex> g(mu_);
    // Allowed sets: an id list that is already sorted (what an index lookup gives) is
    // binary-searched as is, so a call costs O(candidates * log |set|) rather than
    // O(|set|); other lists become bitmaps over the node slots.
    struct Allow {
      bool on = false;
      const std::vector<int64_t>* sorted = nullptr;
      std::vector<uint8_t> bits;
    };
    std::vector<Allow> allow(L);
    for (std::size_t i = 0; i < L && !q.has_allowed.empty(); ++i) {
      if (!q.has_allowed[i]) continue;
      allow[i].on = true;
      const std::vector<int64_t>& ids = q.allowed[i];
      if (i > 0 && std::is_sorted(ids.begin(), ids.end())) {
        allow[i].sorted = &ids;
        continue;
      }
      if (i == 0) continue;  // position 0 only seeds the starts below
      allow[i].bits.assign(node_id_.size(), 0);
      for (int64_t id : ids) {
        uint32_t v = node_map_.find(id);
        if (v != kNone) allow[i].bits[v] = 1;
      }
    }
    std::vector<uint32_t> starts;
    auto add_starts = [&](const std::vector<int64_t>& ids, std::vector<uint32_t>& out) {
      for (int64_t id : ids) {
        uint32_t v = node_map_.find(id);
        if (v != kNone) out.push_back(v);
      }
      std::sort(out.begin(), out.end());
      out.erase(std::unique(out.begin(), out.end()), out.end());
    };
    if (q.has_start) {
      add_starts(q.start, starts);
      if (allow[0].on) {  // both: the intersection
        std::vector<uint32_t> a0;
        add_starts(q.allowed[0], a0);
        std::vector<uint32_t> both;
        std::set_intersection(starts.begin(), starts.end(), a0.begin(), a0.end(),
                              std::back_inserter(both));
        starts.swap(both);
      }
    } else if (allow[0].on) {
      add_starts(q.allowed[0], starts);
    } else {
      for (uint32_t v = 0; v < node_id_.size(); ++v)
        if (node_alive_[v]) starts.push_back(v);
    }
    std::vector<uint32_t> rn, re;  // raw rows of slots
    uint32_t bn[4], be[3];
    BudgetTicker ticker;
    auto label_ok = [&](std::size_t i, uint32_t v) {
      if (q.labels[i] != -1 && node_label_[v] != q.labels[i]) return false;
      const Allow& a = allow[i];
      if (!a.on || i == 0) return true;
      if (a.sorted) return std::binary_search(a.sorted->begin(), a.sorted->end(), node_id_[v]);
      return a.bits[v] != 0;
    };
    // (start, end) of the relationship taken at hop j (nodes bn[j] -> bn[j + 1] in walk order)
    auto rel_ends = [&](std::size_t j, uint32_t from, uint32_t to) {
      return q.dirs[j] == Dir::In ? std::make_pair(to, from) : std::make_pair(from, to);
    };
    // Recursion depth is at most 3.
    auto rec = [&](auto&& self, std::size_t i) -> void {
      if (i == L) {
        if (re.size() >= kMaxChainRows * (L - 1))
          throw GraphValueError("the pattern matches more than " + std::to_string(kMaxChainRows) +
                                " rows; narrow it (labels, properties, LIMIT)");
        rn.insert(rn.end(), bn, bn + L);
        re.insert(re.end(), be, be + L - 1);
        return;
      }
      for_each_nbr(bn[i - 1], q.dirs[i - 1], q.types[i - 1], [&](uint32_t b, uint32_t e) {
        ticker.tick();
        if (!label_ok(i, b)) return;
        if (q.distinct_relationships) {
          const auto mine = rel_ends(i - 1, bn[i - 1], b);
          for (std::size_t j = 0; j + 1 < i; ++j)
            if (be[j] == e && rel_ends(j, bn[j], bn[j + 1]) == mine) return;
        } else {
          for (std::size_t j = 0; j + 1 < i; ++j)
            if (be[j] == e) return;
        }
        bn[i] = b;
        be[i - 1] = e;
        self(self, i + 1);
      });
    };
    for (uint32_t v : starts) {
      ticker.tick();
      if (!label_ok(0, v)) continue;
      bn[0] = v;
      rec(rec, 1);
    }
    ChainResult out;
    out.width = L;
    out.rows = re.size() / (L - 1);
    std::vector<int64_t> ni(rn.size()), ei(re.size());
    for (std::size_t i = 0; i < rn.size(); ++i) ni[i] = node_id_[rn[i]];
    for (std::size_t i = 0; i < re.size(); ++i) ei[i] = edge_id_[re[i]];
    std::vector<std::size_t> perm(out.rows);
    for (std::size_t i = 0; i < out.rows; ++i) perm[i] = i;
    const std::size_t W = L, WE = L - 1;
    std::sort(perm.begin(), perm.end(), [&](std::size_t a, std::size_t b) {
      const int64_t *na = &ni[a * W], *nb = &ni[b * W];
      for (std::size_t j = 0; j < W; ++j)
        if (na[j] != nb[j]) return na[j] < nb[j];
      const int64_t *ea = &ei[a * WE], *eb = &ei[b * WE];
      for (std::size_t j = 0; j < WE; ++j)
        if (ea[j] != eb[j]) return ea[j] < eb[j];
      return false;
    });
    out.nodes.resize(ni.size());
    out.edges.resize(ei.size());
    for (std::size_t r = 0; r < out.rows; ++r) {
      std::memcpy(&out.nodes[r * W], &ni[perm[r] * W], W * 8);
      std::memcpy(&out.edges[r * WE], &ei[perm[r] * WE], WE * 8);
    }
    return out;
  }

  // ---- persistence -----------------------------------------------------------------------
  void save(const std::string& path) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    std::vector<uint32_t> nodes, edges;
    nodes.reserve(n_live_nodes_);
    edges.reserve(n_live_edges_);
    for (uint32_t v = 0; v < node_id_.size(); ++v)
      if (node_alive_[v]) nodes.push_back(v);
    for (uint32_t e = 0; e < edge_id_.size(); ++e)
      if (erec_[e].type >= 0) edges.push_back(e);
    std::sort(nodes.begin(), nodes.end(),
              [&](uint32_t a, uint32_t b) { return node_id_[a] < node_id_[b]; });
    std::sort(edges.begin(), edges.end(),
              [&](uint32_t a, uint32_t b) { return edge_id_[a] < edge_id_[b]; });
    std::vector<uint32_t> file_idx(node_id_.size(), kNone);
    for (uint32_t i = 0; i < nodes.size(); ++i) file_idx[nodes[i]] = i;
    const std::size_t nn = nodes.size(), ne = edges.size();
    std::vector<int64_t> i64(std::max(nn, ne));
    std::vector<int32_t> i32(std::max(nn, ne));
    std::vector<float> f32(ne);
    std::vector<double> f64(ne);
    std::vector<uint64_t> toff(ne + 1), hoff(ne + 1);
    std::vector<uint32_t> tn, hn;
    for (std::size_t i = 0; i < ne; ++i) {
      uint32_t e = edges[i];
      for (const uint32_t* v = tail_of(e); v != tail_of(e) + erec_[e].n_tail; ++v)
        tn.push_back(file_idx[*v]);
      for (const uint32_t* v = head_of(e); v != head_of(e) + erec_[e].n_head; ++v)
        hn.push_back(file_idx[*v]);
      toff[i + 1] = tn.size();
      hoff[i + 1] = hn.size();
    }
    unsigned char h[kHeaderSize] = {0};
    std::memcpy(h, "AGDBHYPG", 8);
    auto w32 = [&](std::size_t off, uint32_t v) { std::memcpy(h + off, &v, 4); };
    auto w64 = [&](std::size_t off, uint64_t v) { std::memcpy(h + off, &v, 8); };
    w32(8, kFormatVersion);
    w32(12, kHeaderSize);
    w64(16, nn);
    w64(24, ne);
    w64(32, tn.size());
    w64(40, hn.size());
    w32(48, 0);

    CrcFileWriter out(path);
    auto put = [&](const void* p, std::size_t bytes) { out.put(p, bytes); };
    put(h, kHeaderSize);
    for (std::size_t i = 0; i < nn; ++i) i64[i] = node_id_[nodes[i]];
    put(i64.data(), nn * 8);
    for (std::size_t i = 0; i < nn; ++i) i32[i] = node_label_[nodes[i]];
    put(i32.data(), nn * 4);
    for (std::size_t i = 0; i < ne; ++i) i64[i] = edge_id_[edges[i]];
    put(i64.data(), ne * 8);
    for (std::size_t i = 0; i < ne; ++i) i32[i] = erec_[edges[i]].type;
    put(i32.data(), ne * 4);
    for (std::size_t i = 0; i < ne; ++i) f32[i] = erec_[edges[i]].conf;
    put(f32.data(), ne * 4);
    for (std::size_t i = 0; i < ne; ++i) f64[i] = edge_ts_[edges[i]];
    put(f64.data(), ne * 8);
    put(toff.data(), toff.size() * 8);
    put(tn.data(), tn.size() * 4);
    put(hoff.data(), hoff.size() * 8);
    put(hn.data(), hn.size() * 4);
    out.commit();
  }

  // Parse a whole file image. Throws GraphBadFile with a message naming the problem.
  static std::unique_ptr<Hypergraph> from_bytes(const unsigned char* buf, std::size_t size,
                                                const std::string& path) {
    const std::string where = "'" + path + "'";
    if (size >= 8 && std::memcmp(buf, "AGDBHYPG", 8) != 0)
      throw GraphBadFile(where + " is not an AgentDB hypergraph file (bad magic)");
    if (size < kHeaderSize + 4)
      throw GraphBadFile(where + " is truncated: " + std::to_string(size) +
                         " bytes, expected at least " + std::to_string(kHeaderSize + 4));
    auto r32 = [&](std::size_t off) { return read_le<uint32_t>(buf, off); };
    auto r64 = [&](std::size_t off) { return read_le<uint64_t>(buf, off); };
    uint32_t version = r32(8);
    if (version != kFormatVersion)
      throw GraphBadFile(where + " has unsupported format version " + std::to_string(version) +
                         " (this build reads versions 1 and 2)");
    uint64_t nn = r64(16), ne = r64(24), nt = r64(32), nh = r64(40);
    bool reserved_zero = true;
    for (std::size_t i = 52; i < 64; ++i) reserved_zero = reserved_zero && buf[i] == 0;
    const uint64_t kMaxCount = uint64_t{1} << 40;  // keeps the size arithmetic overflow-free
    if (r32(12) != kHeaderSize || r32(48) != 0 || !reserved_zero || nn > kMaxSlots ||
        ne > kMaxEdges || nt > kMaxCount || nh > kMaxCount)
      throw GraphBadFile(where + " has a corrupt header");
    uint64_t expected = kHeaderSize + nn * 12 + ne * 24 + 2 * (ne + 1) * 8 + (nt + nh) * 4 + 4;
    if (size < expected)
      throw GraphBadFile(where + " is truncated: " + std::to_string(size) + " bytes, expected " +
                         std::to_string(expected));
    if (size > expected)
      throw GraphBadFile(where + " is corrupt: " + std::to_string(size - expected) +
                         " unexpected trailing bytes");
    uint32_t stored;
    std::memcpy(&stored, buf + size - 4, 4);
    if (crc32_parallel(buf, size - 4, 0) != stored)
      throw GraphBadFile(where + " failed its checksum: checksum mismatch (corrupt file)");

    auto bad = [&](const std::string& what) {
      return GraphBadFile(where + " is corrupt: " + what);
    };
    const unsigned char* p = buf + kHeaderSize;
    auto take = [&](auto* dst, std::size_t count) {
      if (count) std::memcpy(dst, p, count * sizeof(*dst));  // dst may be null when empty
      p += count * sizeof(*dst);
    };
    auto g = std::make_unique<Hypergraph>();
    g->node_id_.resize(nn);
    g->node_label_.resize(nn);
    g->node_alive_.assign(nn, 1);
    take(g->node_id_.data(), nn);
    take(g->node_label_.data(), nn);
    for (uint64_t i = 0; i < nn; ++i) {
      if (g->node_id_[i] == -1) throw bad("node id -1 is reserved");
      if (i > 0 && g->node_id_[i] <= g->node_id_[i - 1])
        throw bad("node ids are not strictly ascending");
      if (g->node_label_[i] < -1) throw bad("negative node label");
    }
    g->edge_id_.resize(ne);
    g->edge_ts_.resize(ne);
    g->erec_.resize(ne);
    std::vector<int32_t> etype(ne);
    std::vector<float> econf(ne);
    take(g->edge_id_.data(), ne);
    take(etype.data(), ne);
    take(econf.data(), ne);
    take(g->edge_ts_.data(), ne);
    for (uint64_t i = 0; i < ne; ++i) {
      if (g->edge_id_[i] == -1) throw bad("edge id -1 is reserved");
      if (i > 0 && g->edge_id_[i] <= g->edge_id_[i - 1])
        throw bad("edge ids are not strictly ascending");
      if (etype[i] < 0) throw bad("negative edge type");
      float c = econf[i];
      if (!(c >= 0.0f && c <= 1.0f)) throw bad("confidence outside [0, 1]");
      g->erec_[i].type = etype[i];
      g->erec_[i].conf = c;
    }
    std::vector<uint64_t> off;
    auto side = [&](Column<uint32_t>& nodes, uint64_t total, const char* name, bool is_tail) {
      off.resize(ne + 1);
      nodes.resize(total);
      take(off.data(), ne + 1);
      take(nodes.data(), total);
      if (off[0] != 0 || off[ne] != total) throw bad(std::string(name) + " offsets");
      for (uint64_t i = 0; i < ne; ++i)
        if (off[i + 1] <= off[i] || off[i + 1] > total)
          throw bad(std::string(name) + " offsets (empty or decreasing)");
      for (uint64_t j = 0; j < total; ++j)
        if (nodes[j] >= nn) throw bad(std::string(name) + " node index out of range");
      std::vector<uint32_t> tmp;
      for (uint64_t i = 0; i < ne; ++i) {
        tmp.assign(nodes.begin() + off[i], nodes.begin() + off[i + 1]);
        std::sort(tmp.begin(), tmp.end());
        if (std::adjacent_find(tmp.begin(), tmp.end()) != tmp.end())
          throw bad(std::string("duplicate node in a ") + name);
      }
      for (uint64_t i = 0; i < ne; ++i) {
        EdgeRec& r = g->erec_[i];
        (is_tail ? r.tail : r.head) = off[i];
        (is_tail ? r.n_tail : r.n_head) = static_cast<uint32_t>(off[i + 1] - off[i]);
      }
    };
    side(g->tail_nodes_, nt, "tail", true);
    side(g->head_nodes_, nh, "head", false);
    g->n_live_nodes_ = nn;
    g->n_live_edges_ = ne;
    g->out_buf_.resize(nn);
    g->in_buf_.resize(nn);
    g->compact_locked();
    return g;
  }

  // ---- version 2: the in-memory layout, read in place -------------------------------------
  // A version-2 file holds every array the graph reads (the projection and both id maps too),
  // each in its own 64-byte-aligned, CRC-checked section, so opening one maps the file and
  // checks it instead of rebuilding anything; see kFileFormatV2 in the binding's docs.
  static constexpr uint32_t kFormatVersionMapped = 2;
  static constexpr std::size_t kSections = 19;
  static constexpr std::size_t kHeaderSizeV2 = 64 + kSections * 24;

  // Writes the graph as a version-2 file (atomic). A graph with removed items or buffered
  // edges is written as its compacted copy (this graph is not changed).
  void save_mapped(const std::string& path) const {
    std::shared_lock<std::shared_mutex> g(mu_);
    const bool compact = n_live_nodes_ == node_id_.size() && n_live_edges_ == edge_id_.size() &&
                         csr_nodes_ == node_id_.size() && csr_edges_ == edge_id_.size();
    if (compact) {
      write_v2(path);
      return;
    }
    Hypergraph tmp;
    tmp.node_id_ = node_id_;
    tmp.node_label_ = node_label_;
    tmp.node_alive_ = node_alive_;
    tmp.edge_id_ = edge_id_;
    tmp.erec_ = erec_;
    tmp.edge_ts_ = edge_ts_;
    tmp.tail_nodes_ = tail_nodes_;
    tmp.head_nodes_ = head_nodes_;
    tmp.compact_locked();
    tmp.write_v2(path);
  }

  // Opens a file of either version: version 2 is read in place from `file` (kept alive by the
  // graph until its first write copies it), version 1 is parsed and rebuilt (from_bytes).
  static std::unique_ptr<Hypergraph> open_file(std::shared_ptr<const MappedFile> file,
                                               const std::string& path) {
    const unsigned char* buf = file->data();
    const std::size_t size = file->size();
    if (size >= 12 && std::memcmp(buf, "AGDBHYPG", 8) == 0 &&
        read_le<uint32_t>(buf, 8) == kFormatVersionMapped)
      return from_mapped(std::move(file), path);
    return from_bytes(buf, size, path);
  }

  // True while the graph reads a version-2 file in place (until its first write).
  bool mapped() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return static_cast<bool>(map_);
  }
  // Bytes of the mapped file in this process's resident set (0 when not mapped).
  std::size_t mapped_resident_bytes() const {
    std::shared_lock<std::shared_mutex> g(mu_);
    return map_ ? map_->resident_bytes() : 0;
  }

 private:
  struct SectionV2 {
    const void* data;
    uint64_t count;
    uint32_t elem;
  };
  std::vector<SectionV2> sections_v2() const {
    return {{node_id_.data(), node_id_.size(), 8},
            {node_label_.data(), node_label_.size(), 4},
            {edge_id_.data(), edge_id_.size(), 8},
            {erec_.data(), erec_.size(), sizeof(EdgeRec)},
            {edge_ts_.data(), edge_ts_.size(), 8},
            {tail_nodes_.data(), tail_nodes_.size(), 4},
            {head_nodes_.data(), head_nodes_.size(), 4},
            {out_poff_.data(), out_poff_.size(), 8},
            {in_poff_.data(), in_poff_.size(), 8},
            {out_pairs_.data(), out_pairs_.size(), sizeof(Pair)},
            {in_pairs_.data(), in_pairs_.size(), sizeof(Pair)},
            {out_woff_.data(), out_woff_.size(), 8},
            {in_woff_.data(), in_woff_.size(), 8},
            {out_wide_.data(), out_wide_.size(), 4},
            {in_wide_.data(), in_wide_.size(), 4},
            {node_map_.keys().data(), node_map_.capacity(), 8},
            {node_map_.vals().data(), node_map_.capacity(), 4},
            {edge_map_.keys().data(), edge_map_.capacity(), 8},
            {edge_map_.vals().data(), edge_map_.capacity(), 4}};
  }

  // The file of a compact graph (no removed items, nothing buffered).
  void write_v2(const std::string& path) const {
    static_assert(sizeof(EdgeRec) == 32 && sizeof(Pair) == 12, "file layout");
    std::vector<SectionV2> secs = sections_v2();
    // (node_alive_ is all ones in a compact graph: not stored)
    if (secs.size() != kSections) throw std::logic_error("section count");
    std::vector<unsigned char> h(kHeaderSizeV2, 0);
    auto w32 = [&](std::size_t off, uint32_t v) { std::memcpy(h.data() + off, &v, 4); };
    auto w64 = [&](std::size_t off, uint64_t v) { std::memcpy(h.data() + off, &v, 8); };
    std::memcpy(h.data(), "AGDBHYPG", 8);
    w32(8, kFormatVersionMapped);
    w32(12, kHeaderSizeV2);
    w64(16, node_id_.size());
    w64(24, edge_id_.size());
    w32(32, kSections);
    w32(36, (ids_ascending_ ? 1u : 0u) | (has_wide_ ? 2u : 0u));
    uint64_t off = (kHeaderSizeV2 + 63) & ~uint64_t{63};
    std::vector<uint64_t> offs(kSections);
    std::vector<std::pair<const void*, std::size_t>> spans;
    for (const SectionV2& sec : secs) spans.emplace_back(sec.data, sec.count * sec.elem);
    const std::vector<uint32_t> crcs = crc32_each(spans, 0);
    for (std::size_t i = 0; i < kSections; ++i) {
      const uint64_t bytes = secs[i].count * secs[i].elem;
      offs[i] = off;
      w64(64 + i * 24, off);
      w64(64 + i * 24 + 8, bytes);
      w32(64 + i * 24 + 16, bytes ? crcs[i] : 0);
      w32(64 + i * 24 + 20, secs[i].elem);
      off = (off + bytes + 63) & ~uint64_t{63};
    }
    w32(56, crc32_update(0, h.data(), h.size()));  // the header's own CRC (this field zero)
    // The trailer is the CRC of every preceding byte, combined from the pieces' CRCs.
    const std::string tmp = path + ".tmp";
    FILE* fp = std::fopen(tmp.c_str(), "wb");
    if (!fp) throw std::runtime_error("cannot open '" + tmp + "' for writing");
    bool ok = std::fwrite(h.data(), 1, h.size(), fp) == h.size();
    uint32_t crc = crc32_update(0, h.data(), h.size());
    uint64_t at = h.size();
    static const unsigned char zeros[64] = {0};
    for (std::size_t i = 0; i < kSections && ok; ++i) {
      const std::size_t pad = offs[i] - at;
      if (pad) {
        ok = std::fwrite(zeros, 1, pad, fp) == pad;
        crc = crc32_update(crc, zeros, pad);
        at += pad;
      }
      const uint64_t bytes = secs[i].count * secs[i].elem;
      if (!bytes) continue;
      ok = ok && std::fwrite(secs[i].data, 1, bytes, fp) == bytes;
      uint32_t sec_crc = read_le<uint32_t>(h.data(), 64 + i * 24 + 16);
      crc = crc32_combine(crc, sec_crc, bytes);
      at += bytes;
    }
    if (ok) ok = std::fwrite(&crc, 1, 4, fp) == 4;
    commit_temp_file(fp, ok, tmp, path);
  }

  // Opens a version-2 file in place: header, section table and every section's CRC are
  // checked, then every offset and index a query follows is bounds-checked (so a damaged file
  // is refused with GraphBadFile, never read out of bounds); the pages are then given back to
  // the page cache (the process's resident set stays small; queries fault in what they read).
  static std::unique_ptr<Hypergraph> from_mapped(std::shared_ptr<const MappedFile> file,
                                                 const std::string& path) {
    const std::string where = "'" + path + "'";
    const unsigned char* buf = file->data();
    const std::size_t size = file->size();
    auto bad = [&](const std::string& what) { return GraphBadFile(where + " is corrupt: " + what); };
    if (size < kHeaderSizeV2 + 4)
      throw GraphBadFile(where + " is truncated: " + std::to_string(size) +
                         " bytes, expected at least " + std::to_string(kHeaderSizeV2 + 4));
    auto r32 = [&](std::size_t off) { return read_le<uint32_t>(buf, off); };
    auto r64 = [&](std::size_t off) { return read_le<uint64_t>(buf, off); };
    {
      std::vector<unsigned char> h(buf, buf + kHeaderSizeV2);
      std::memset(h.data() + 56, 0, 4);
      if (r32(12) != kHeaderSizeV2 || r32(32) != kSections ||
          crc32_update(0, h.data(), h.size()) != r32(56))
        throw GraphBadFile(where + " has a corrupt header");
    }
    const uint64_t nn = r64(16), ne = r64(24);
    const uint32_t flags = r32(36);
    if (nn > kMaxSlots || ne > kMaxEdges || (flags & ~3u) != 0 || r64(40) != 0 ||
        r64(48) != 0 || r32(60) != 0)
      throw GraphBadFile(where + " has a corrupt header");
    const bool has_wide = flags & 2u;
    struct Sec {
      const unsigned char* p;
      uint64_t count;
    };
    std::vector<Sec> sec(kSections);
    static const uint32_t kElem[kSections] = {8, 4, 8, 32, 8, 4, 4, 8, 8, 12,
                                              12, 8, 8, 4, 4, 8, 4, 8, 4};
    uint64_t end = kHeaderSizeV2;
    for (std::size_t i = 0; i < kSections; ++i) {
      const uint64_t off = r64(64 + i * 24), bytes = r64(64 + i * 24 + 8);
      const uint32_t elem = r32(64 + i * 24 + 20);
      if (elem != kElem[i] || off % 64 != 0 || off < end || bytes % elem != 0 ||
          bytes > size || off > size - 4 - bytes)
        throw GraphBadFile(where + " has a corrupt section table (section " +
                           std::to_string(i) + ")");
      sec[i] = {buf + off, bytes / elem};
      end = off + bytes;
    }
    if (size != end + 4) {
      if (size < end + 4)
        throw GraphBadFile(where + " is truncated: " + std::to_string(size) + " bytes, expected " +
                           std::to_string(end + 4));
      throw bad(std::to_string(size - end - 4) + " unexpected trailing bytes");
    }
    std::vector<std::pair<const void*, std::size_t>> spans;
    for (std::size_t i = 0; i < kSections; ++i) spans.emplace_back(sec[i].p, sec[i].count * kElem[i]);
    const std::vector<uint32_t> crcs = crc32_each(spans, 0);  // every core, every section
    for (std::size_t i = 0; i < kSections; ++i) {
      if (spans[i].second && crcs[i] != r32(64 + i * 24 + 16))
        throw GraphBadFile(where + " failed its checksum: section " + std::to_string(i) +
                           " (corrupt file)");
    }
    // counts
    const uint64_t nt = sec[5].count, nh = sec[6].count;
    const uint64_t n_off = has_wide ? nn + 1 : 0;
    if (sec[0].count != nn || sec[1].count != nn || sec[2].count != ne || sec[3].count != ne ||
        sec[4].count != ne || sec[7].count != nn + 1 || sec[8].count != nn + 1 ||
        sec[11].count != n_off || sec[12].count != n_off ||
        (!has_wide && (sec[13].count || sec[14].count)))
      throw bad("section sizes do not match the header");
    auto g = std::make_unique<Hypergraph>();
    g->node_id_.view(reinterpret_cast<const int64_t*>(sec[0].p), nn);
    g->node_label_.view(reinterpret_cast<const int32_t*>(sec[1].p), nn);
    g->node_alive_.assign(nn, 1);
    g->edge_id_.view(reinterpret_cast<const int64_t*>(sec[2].p), ne);
    g->erec_.view(reinterpret_cast<const EdgeRec*>(sec[3].p), ne);
    g->edge_ts_.view(reinterpret_cast<const double*>(sec[4].p), ne);
    g->tail_nodes_.view(reinterpret_cast<const uint32_t*>(sec[5].p), nt);
    g->head_nodes_.view(reinterpret_cast<const uint32_t*>(sec[6].p), nh);
    g->out_poff_.view(reinterpret_cast<const uint64_t*>(sec[7].p), nn + 1);
    g->in_poff_.view(reinterpret_cast<const uint64_t*>(sec[8].p), nn + 1);
    g->out_pairs_.view(reinterpret_cast<const Pair*>(sec[9].p), sec[9].count);
    g->in_pairs_.view(reinterpret_cast<const Pair*>(sec[10].p), sec[10].count);
    g->out_woff_.view(reinterpret_cast<const uint64_t*>(sec[11].p), n_off);
    g->in_woff_.view(reinterpret_cast<const uint64_t*>(sec[12].p), n_off);
    g->out_wide_.view(reinterpret_cast<const uint32_t*>(sec[13].p), sec[13].count);
    g->in_wide_.view(reinterpret_cast<const uint32_t*>(sec[14].p), sec[14].count);
    g->ids_ascending_ = flags & 1u;
    g->has_wide_ = has_wide;
    g->csr_nodes_ = g->n_live_nodes_ = nn;
    g->csr_edges_ = g->n_live_edges_ = ne;
    // structure: everything a query dereferences
    const Hypergraph& c = *g;
    for (uint64_t i = 0; i < nn; ++i) {
      if (c.node_id_[i] == -1) throw bad("node id -1 is reserved");
      if (c.node_label_[i] < -1) throw bad("negative node label");
      if (g->ids_ascending_ && i > 0 && c.node_id_[i] <= c.node_id_[i - 1])
        throw bad("node ids are not ascending although flagged so");
    }
    for (uint64_t e = 0; e < ne; ++e) {
      const EdgeRec& r = c.erec_[e];
      if (c.edge_id_[e] == -1) throw bad("edge id -1 is reserved");
      if (r.type < 0 || !(r.conf >= 0.0f && r.conf <= 1.0f) || r.n_tail == 0 || r.n_head == 0 ||
          r.tail > nt || r.n_tail > nt - r.tail || r.head > nh || r.n_head > nh - r.head)
        throw bad("edge record " + std::to_string(e));
    }
    uint32_t worst = 0;
    for (uint32_t v : c.tail_nodes_) worst = std::max(worst, v);
    for (uint32_t v : c.head_nodes_) worst = std::max(worst, v);
    if ((nt || nh) && worst >= nn) throw bad("node index out of range");
    auto check_off = [&](const Column<uint64_t>& off, uint64_t total, const char* what) {
      if (off.empty()) return;
      if (off[0] != 0 || off[off.size() - 1] != total) throw bad(std::string(what) + " offsets");
      for (std::size_t i = 1; i < off.size(); ++i)
        if (off[i] < off[i - 1]) throw bad(std::string(what) + " offsets decrease");
    };
    check_off(c.out_poff_, c.out_pairs_.size(), "out pair");
    check_off(c.in_poff_, c.in_pairs_.size(), "in pair");
    check_off(c.out_woff_, c.out_wide_.size(), "out wide");
    check_off(c.in_woff_, c.in_wide_.size(), "in wide");
    for (const Column<Pair>* ps : {&c.out_pairs_, &c.in_pairs_})
      for (const Pair& p : *ps)
        if (p.node >= nn || (p.edge & kEdgeMask) >= ne || p.type < 0)
          throw bad("relationship pair out of range");
    for (const Column<uint32_t>* ws : {&c.out_wide_, &c.in_wide_})
      for (uint32_t e : *ws)
        if (e >= ne) throw bad("wide-edge list out of range");
    auto map = [&](IdMap& m, const Sec& ks, const Sec& vs, uint64_t n, const char* what) {
      const uint64_t cap = ks.count;
      if (cap != vs.count || (cap & (cap - 1)) != 0 || (cap == 0 && n != 0) ||
          (cap != 0 && n >= cap))
        throw bad(std::string(what) + " id map size");
      const int64_t* k = reinterpret_cast<const int64_t*>(ks.p);
      const uint32_t* v = reinterpret_cast<const uint32_t*>(vs.p);
      uint64_t used = 0;
      for (uint64_t i = 0; i < cap; ++i) {
        if (k[i] == -1) continue;
        ++used;
        // bounds only: whether the entry's key is ids[v[i]] is the CRC's to vouch for (the
        // random reads of that check cost more than the rest of the open)
        if (v[i] >= n) throw bad(std::string(what) + " id map entry");
      }
      if (used != n) throw bad(std::string(what) + " id map count");
      m.view(k, v, cap, n);
    };
    map(g->node_map_, sec[15], sec[16], nn, "node");
    map(g->edge_map_, sec[17], sec[18], ne, "edge");
    file->advise(buf, size, MappedFile::Advice::DontNeed);  // checked: back to the page cache
    file->advise(buf, size, MappedFile::Advice::Random);    // queries jump around
    g->map_ = std::move(file);
    return g;
  }

  // Copies every column of a mapped file into memory and lets the file go (the first write).
  void materialize_locked() {
    if (!map_) return;
    node_id_.own();
    node_label_.own();
    edge_id_.own();
    erec_.own();
    edge_ts_.own();
    tail_nodes_.own();
    head_nodes_.own();
    out_poff_.own();
    in_poff_.own();
    out_pairs_.own();
    in_pairs_.own();
    out_woff_.own();
    in_woff_.own();
    out_wide_.own();
    in_wide_.own();
    node_map_.own();
    edge_map_.own();
    out_buf_.assign(node_id_.size(), {});
    in_buf_.assign(node_id_.size(), {});
    map_.reset();
  }

 public:

 private:
  // Everything a traversal reads per edge, in one 32-byte record (one cache miss).
  struct EdgeRec {
    int32_t type;  // < 0: removed
    float conf;
    uint32_t n_tail, n_head;
    uint64_t tail, head;  // first index into tail_nodes_ / head_nodes_
  };
  static constexpr uint64_t kPrefetch = 4;
  static void prefetch(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
  }
  // Warm the caches for a node that a traversal will expand soon.
  void prefetch_offsets(uint32_t v, Dir dir) const {
    if (v >= csr_nodes_) return;
    if (dir != Dir::In) prefetch(&out_poff_[v]);
    if (dir != Dir::Out) prefetch(&in_poff_[v]);
  }
  void prefetch_pairs(uint32_t v, Dir dir) const {
    if (v >= csr_nodes_) return;
    if (dir != Dir::In) prefetch(out_pairs_.data() + out_poff_[v]);
    if (dir != Dir::Out) prefetch(in_pairs_.data() + in_poff_[v]);
  }
  const uint32_t* tail_of(uint32_t e) const { return tail_nodes_.data() + erec_[e].tail; }
  const uint32_t* head_of(uint32_t e) const { return head_nodes_.data() + erec_[e].head; }

  // The projection cache: for each CSR node, its relationships as contiguous pairs, in
  // ascending edge order. In-direction pairs that the out-direction also reports (a in tail
  // and head of e, b too) carry kDup in `edge`, so "both" can skip them.
  struct Pair {
    uint32_t node;
    uint32_t edge;  // | kDup
    int32_t type;   // -1: removed
  };
  static constexpr uint32_t kDup = 0x80000000u;
  static constexpr uint32_t kEdgeMask = 0x7FFFFFFFu;
  bool projected(uint32_t e) const {
    return e < csr_edges_ && uint64_t{erec_[e].n_tail} * erec_[e].n_head <= kProjectMax;
  }

  // Tombstone a live edge: its record, its id, and its projected pairs.
  void kill_edge(uint32_t e) {
    if (projected(e)) {
      auto mark = [&](const Column<uint64_t>& off, Column<Pair>& pairs, uint32_t v) {
        Pair* lo = pairs.data() + off[v];
        Pair* hi = pairs.data() + off[v + 1];
        Pair* it = std::lower_bound(lo, hi, e, [](const Pair& p, uint32_t x) {
          return (p.edge & kEdgeMask) < x;
        });
        for (; it != hi && (it->edge & kEdgeMask) == e; ++it) it->type = -1;
      };
      for (const uint32_t* v = tail_of(e); v != tail_of(e) + erec_[e].n_tail; ++v)
        mark(out_poff_, out_pairs_, *v);
      for (const uint32_t* v = head_of(e); v != head_of(e) + erec_[e].n_head; ++v)
        mark(in_poff_, in_pairs_, *v);
    }
    erec_[e].type = -1;
    edge_map_.erase(edge_id_[e]);
    --n_live_edges_;
  }

  struct Cand {
    double score, prod, mn, sm;
    std::vector<int64_t> nodes, edges;
  };

  // Raw paths as slots, in walk order.
  struct Raw {
    std::vector<uint32_t> nodes, edges;
    std::vector<std::size_t> noff{0}, eoff{0};
    std::size_t count() const { return noff.size() - 1; }
    void add(const std::vector<uint32_t>& pn, const std::vector<uint32_t>& pe) {
      nodes.insert(nodes.end(), pn.begin(), pn.end());
      edges.insert(edges.end(), pe.begin(), pe.end());
      noff.push_back(nodes.size());
      eoff.push_back(edges.size());
    }
  };

  static bool path_less(const std::vector<int64_t>& an, const std::vector<int64_t>& ae,
                        const std::vector<int64_t>& bn, const std::vector<int64_t>& be) {
    if (ae.size() != be.size()) return ae.size() < be.size();
    if (an != bn) return an < bn;
    return ae < be;
  }

  static void check_hops(int64_t min_hops, int64_t max_hops) {
    if (min_hops < 0)
      throw GraphValueError("min_hops must be >= 0, got " + std::to_string(min_hops));
    if (max_hops < min_hops)
      throw GraphValueError("max_hops must be >= min_hops (" + std::to_string(min_hops) +
                            "), got " + std::to_string(max_hops));
    if (max_hops > kMaxHops)
      throw GraphValueError("max_hops must be <= 64, got " + std::to_string(max_hops));
  }

  static void check_offsets(const int64_t* off, std::size_t n, std::size_t total,
                            const char* name, const char* nodes_name) {
    bool ok = off[0] == 0 && off[n] == static_cast<int64_t>(total);
    for (std::size_t i = 0; ok && i < n; ++i) ok = off[i] <= off[i + 1];
    if (!ok)
      throw GraphValueError(std::string(name) +
                            " must start at 0, be non-decreasing and end at len(" +
                            nodes_name + ") = " + std::to_string(total));
  }

  static void check_distinct(const int64_t* v, std::size_t n, int64_t edge, const char* side,
                             std::vector<int64_t>& tmp) {
    auto fail = [&](int64_t node) {
      throw GraphValueError("duplicate node " + std::to_string(node) + " in the " + side +
                            " of edge " + std::to_string(edge));
    };
    if (n <= 32) {
      for (std::size_t i = 1; i < n; ++i)
        for (std::size_t j = 0; j < i; ++j)
          if (v[i] == v[j]) fail(v[i]);
      return;
    }
    tmp.assign(v, v + n);
    std::sort(tmp.begin(), tmp.end());
    if (std::adjacent_find(tmp.begin(), tmp.end()) == tmp.end()) return;
    std::unordered_set<int64_t> seen;  // report the first repeat in caller order
    for (std::size_t i = 0; i < n; ++i)
      if (!seen.insert(v[i]).second) fail(v[i]);
  }

  uint32_t node_slot(int64_t id) const {
    uint32_t s = node_map_.find(id);
    if (s == kNone) throw GraphKeyError("unknown node " + std::to_string(id));
    return s;
  }
  uint32_t edge_slot(int64_t id) const {
    uint32_t e = edge_map_.find(id);
    if (e == kNone) throw GraphKeyError("unknown edge " + std::to_string(id));
    return e;
  }

  std::size_t buffered_locked() const { return edge_id_.size() - csr_edges_; }
  std::size_t threshold_locked() const { return std::max<std::size_t>(kMinBuffer, csr_edges_ / 4); }

  // Calls f(b, e) once for every distinct pair with a -[e]-> b in direction dir.
  template <class F>
  inline void for_each_nbr(uint32_t a, Dir dir, const TypeFilter& tf, F&& f) const {
    const bool buffered = edge_id_.size() > csr_edges_;
    if (dir != Dir::In) {
      auto visit = [&](uint32_t e) {
        const EdgeRec& r = erec_[e];
        if (!tf(r.type)) return;
        const uint32_t* h = head_nodes_.data() + r.head;
        for (uint32_t i = 0; i < r.n_head; ++i) f(h[i], e);
      };
      if (a < csr_nodes_) {
        const Pair* pend = out_pairs_.data() + out_poff_[a + 1];
        for (const Pair* p = out_pairs_.data() + out_poff_[a]; p != pend; ++p)
          if (tf(p->type)) f(p->node, p->edge);
        if (has_wide_) {
          const uint32_t* list = out_wide_.data();
          for (uint64_t i = out_woff_[a], end = out_woff_[a + 1]; i < end; ++i) {
            if (i + kPrefetch < end) prefetch(&erec_[list[i + kPrefetch]]);
            visit(list[i]);
          }
        }
      }
      if (buffered)
        for (uint32_t e : out_buf_[a]) visit(e);
    }
    if (dir != Dir::Out) {
      const bool both = dir == Dir::Both;
      auto visit = [&](uint32_t e) {
        const EdgeRec& r = erec_[e];
        if (!tf(r.type)) return;
        const uint32_t* t = tail_nodes_.data() + r.tail;
        bool a_in_tail = false;
        if (both)
          for (uint32_t i = 0; i < r.n_tail; ++i) a_in_tail = a_in_tail || t[i] == a;
        for (uint32_t i = 0; i < r.n_tail; ++i) {
          const uint32_t b = t[i];
          if (a_in_tail) {  // (b, e) was already reported by the "out" half if b in head(e)
            const uint32_t* h = head_nodes_.data() + r.head;
            bool dup = false;
            for (uint32_t j = 0; j < r.n_head; ++j) dup = dup || h[j] == b;
            if (dup) continue;
          }
          f(b, e);
        }
      };
      if (a < csr_nodes_) {
        const uint32_t skip = both ? kDup : 0u;
        const Pair* pend = in_pairs_.data() + in_poff_[a + 1];
        for (const Pair* p = in_pairs_.data() + in_poff_[a]; p != pend; ++p)
          if (tf(p->type) && !(p->edge & skip)) f(p->node, p->edge & kEdgeMask);
        if (has_wide_) {
          const uint32_t* list = in_wide_.data();
          for (uint64_t i = in_woff_[a], end = in_woff_[a + 1]; i < end; ++i) {
            if (i + kPrefetch < end) prefetch(&erec_[list[i + kPrefetch]]);
            visit(list[i]);
          }
        }
      }
      if (buffered)
        for (uint32_t e : in_buf_[a]) visit(e);
    }
  }

  // Reverse BFS from dst (against the walking direction) up to max_d hops: s.seen2/val2 hold
  // the hop distance to dst for every node that can reach it within max_d hops.
  // Stamp the live nodes among `ids` in s.allow for this query (unknown ids are skipped).
  void mark_allowed(const std::vector<int64_t>& ids, GraphScratch& s) const {
    for (int64_t id : ids) {
      uint32_t v = node_map_.find(id);
      if (v != kNone) s.allow[v] = s.epoch;
    }
  }

  void dist_to(uint32_t dst, int max_d, Dir dir, const TypeFilter& tf, GraphScratch& s) const {
    const Dir rev = dir == Dir::Out ? Dir::In : dir == Dir::In ? Dir::Out : Dir::Both;
    const uint32_t ep = s.epoch;
    s.frontier.assign(1, dst);
    s.mark2[dst] = {ep, 0};
    for (int d = 0; d < max_d && !s.frontier.empty(); ++d) {
      s.next.clear();
      for (uint32_t u : s.frontier)
        for_each_nbr(u, rev, tf, [&](uint32_t b, uint32_t) {
          if (s.mark2[b].stamp != ep) {
            s.mark2[b] = {ep, d + 1};
            s.next.push_back(b);
          }
        });
      std::swap(s.frontier, s.next);
    }
  }

  // Iterative DFS over simple paths (no repeated node or edge) from root, up to max_hops.
  // admit(len, b, e) filters a candidate when its parent is expanded (pruning); step(len, b, e)
  // runs with b/e pushed onto s.path_nodes/path_edges and returns whether to expand b. "On the
  // current path" is a scan of the (at most 65-entry, cache-resident) path itself, which beats
  // a random access into a per-node mark array. Each frame's candidates live in s.pool.
  template <class Admit, class Step>
  void walk(uint32_t root, int max_hops, Dir dir, const TypeFilter& tf, GraphScratch& s,
            Admit&& admit, Step&& step) const {
    s.path_nodes.assign(1, root);
    s.path_edges.clear();
    s.frames.clear();
    s.pool.clear();
    if (max_hops == 0) return;
    BudgetTicker ticker;
    auto expand = [&](uint32_t v, int len) {
      const std::size_t begin = s.pool.size();
      const uint32_t* pn = s.path_nodes.data();
      const uint32_t* pe = s.path_edges.data();
      const std::size_t nn = s.path_nodes.size(), ne = s.path_edges.size();
      for_each_nbr(v, dir, tf, [&](uint32_t b, uint32_t e) {
        ticker.tick();
        for (std::size_t i = 0; i < nn; ++i)
          if (pn[i] == b) return;
        for (std::size_t i = 0; i < ne; ++i)
          if (pe[i] == e) return;
        if (!admit(len + 1, b, e)) return;
        s.pool.emplace_back(b, e);
      });
      s.frames.push_back({begin, s.pool.size(), begin});
    };
    expand(root, 0);
    while (!s.frames.empty()) {
      GraphScratch::Frame& f = s.frames.back();
      if (f.cur == f.end) {
        s.pool.resize(f.begin);
        s.frames.pop_back();
        if (!s.frames.empty()) {
          s.path_nodes.pop_back();
          s.path_edges.pop_back();
        }
        continue;
      }
      ticker.tick();
      const auto be = s.pool[f.cur++];
      const int len = static_cast<int>(s.frames.size());
      s.path_nodes.push_back(be.first);
      s.path_edges.push_back(be.second);
      if (step(len, be.first, be.second) && len < max_hops) {
        expand(be.first, len);
      } else {
        s.path_nodes.pop_back();
        s.path_edges.pop_back();
      }
    }
  }

  // The walk of paths() / path_totals(): the simple paths from q.src with q's hop range and
  // end conditions. step(len, e) sees every step taken (edge e becomes hop len);
  // on_path(len) every path that qualifies, the path in s.path_nodes / s.path_edges. Caller
  // holds mu_ (shared).
  template <class Step, class OnPath>
  void walk_query(const PathQuery& q, GraphScratch& s, Step&& step, OnPath&& on_path) const {
    uint32_t src = node_slot(q.src);
    uint32_t dst = q.has_dst ? node_slot(q.dst) : kNone;
    if (q.has_src_label && node_label_[src] != q.src_label) return;
    s.begin(node_id_.size());
    if (q.has_dst) dist_to(dst, static_cast<int>(q.max_hops) - 1, q.dir, q.types, s);
    if (q.has_ends) mark_allowed(q.ends, s);
    auto ends_ok = [&](uint32_t v) {
      if (q.has_dst && v != dst) return false;
      if (q.has_dst_label && node_label_[v] != q.dst_label) return false;
      if (q.has_ends && s.allow[v] != s.epoch) return false;
      return true;
    };
    if (q.min_hops == 0 && ends_ok(src)) {
      s.path_nodes.assign(1, src);
      s.path_edges.clear();
      on_path(0);
    }
    walk(src, static_cast<int>(q.max_hops), q.dir, q.types, s,
         [&](int len, uint32_t b, uint32_t) {
           return !q.has_dst || (s.seen2(b) && s.mark2[b].val <= q.max_hops - len);
         },
         [&](int len, uint32_t b, uint32_t e) {
           step(len, e);
           if (len >= q.min_hops && ends_ok(b)) on_path(len);
           return !(q.has_dst && b == dst);
         });
  }

  // Ids, forward order, scores, then the deterministic order (length, node ids, edge ids).
  PathSet finish(Raw& raw, bool reversed) const {
    const std::size_t n = raw.count();
    PathSet out;
    out.nodes.resize(raw.nodes.size());
    out.edges.resize(raw.edges.size());
    out.product.resize(n);
    out.min.resize(n);
    out.sum.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t a = raw.noff[i], b = raw.noff[i + 1];
      for (std::size_t j = a; j < b; ++j)
        out.nodes[j] = node_id_[raw.nodes[reversed ? a + b - 1 - j : j]];
      const std::size_t c = raw.eoff[i], d = raw.eoff[i + 1];
      double p = 1.0, m = 1.0, sm = 0.0;
      for (std::size_t j = c; j < d; ++j) {
        const uint32_t e = raw.edges[reversed ? c + d - 1 - j : j];
        out.edges[j] = edge_id_[e];
        const double cf = erec_[e].conf;
        p *= cf;
        m = std::min(m, cf);
        sm += cf;
      }
      out.product[i] = p;
      out.min[i] = m;
      out.sum[i] = sm;
    }
    out.node_off.swap(raw.noff);
    out.edge_off.swap(raw.eoff);
    // Sort compact keys: the length and the first four node ids inline settle almost every
    // comparison without touching the path arrays.
    struct Key {
      uint32_t len, idx;
      int64_t n[4];
    };
    std::vector<Key> keys(n);
    for (std::size_t i = 0; i < n; ++i) {
      Key& k = keys[i];
      const std::size_t a = out.node_off[i], cnt = out.node_off[i + 1] - a;
      k.len = static_cast<uint32_t>(cnt - 1);
      k.idx = static_cast<uint32_t>(i);
      for (std::size_t j = 0; j < 4; ++j)
        k.n[j] = j < cnt ? out.nodes[a + j] : std::numeric_limits<int64_t>::min();
    }
    std::sort(keys.begin(), keys.end(), [&](const Key& x, const Key& y) {
      if (x.len != y.len) return x.len < y.len;
      for (int j = 0; j < 4; ++j)
        if (x.n[j] != y.n[j]) return x.n[j] < y.n[j];
      const std::size_t len = x.len;
      const int64_t* nx = &out.nodes[out.node_off[x.idx]];
      const int64_t* ny = &out.nodes[out.node_off[y.idx]];
      for (std::size_t j = 4; j <= len; ++j)
        if (nx[j] != ny[j]) return nx[j] < ny[j];
      const int64_t* ex = &out.edges[out.edge_off[x.idx]];
      const int64_t* ey = &out.edges[out.edge_off[y.idx]];
      for (std::size_t j = 0; j < len; ++j)
        if (ex[j] != ey[j]) return ex[j] < ey[j];
      return false;
    });
    out.order.resize(n);
    for (std::size_t i = 0; i < n; ++i) out.order[i] = keys[i].idx;
    return out;
  }

  // Pairs for every projected (narrow) edge and incidence lists for the wide ones, both ways.
  void build_projection(uint32_t nn, uint32_t ne) {
    out_poff_.assign(nn + 1, 0);
    in_poff_.assign(nn + 1, 0);
    std::vector<uint64_t> owide(nn + 1, 0), iwide(nn + 1, 0);
    has_wide_ = false;
    for (uint32_t e = 0; e < ne; ++e) {
      const EdgeRec& r = erec_[e];
      const bool narrow = projected(e);
      has_wide_ = has_wide_ || !narrow;
      for (const uint32_t* v = tail_of(e); v != tail_of(e) + r.n_tail; ++v)
        narrow ? out_poff_[*v + 1] += r.n_head : ++owide[*v + 1];
      for (const uint32_t* v = head_of(e); v != head_of(e) + r.n_head; ++v)
        narrow ? in_poff_[*v + 1] += r.n_tail : ++iwide[*v + 1];
    }
    for (uint32_t v = 0; v < nn; ++v) {
      out_poff_[v + 1] += out_poff_[v];
      in_poff_[v + 1] += in_poff_[v];
      owide[v + 1] += owide[v];
      iwide[v + 1] += iwide[v];
    }
    out_pairs_.assign(out_poff_[nn], Pair{0, 0, 0});
    in_pairs_.assign(in_poff_[nn], Pair{0, 0, 0});
    std::vector<uint64_t> oc(out_poff_.begin(), out_poff_.end() - 1);
    std::vector<uint64_t> ic(in_poff_.begin(), in_poff_.end() - 1);
    if (has_wide_) {
      out_wide_.assign(owide[nn], 0);
      in_wide_.assign(iwide[nn], 0);
    } else {
      out_wide_.clear();
      in_wide_.clear();
    }
    std::vector<uint64_t> owc(owide.begin(), owide.end() - 1), iwc(iwide.begin(), iwide.end() - 1);
    for (uint32_t e = 0; e < ne; ++e) {
      const EdgeRec& r = erec_[e];
      const uint32_t *t = tail_of(e), *h = head_of(e);
      if (!projected(e)) {
        for (uint32_t i = 0; i < r.n_tail; ++i) out_wide_[owc[t[i]]++] = e;
        for (uint32_t j = 0; j < r.n_head; ++j) in_wide_[iwc[h[j]]++] = e;
        continue;
      }
      for (uint32_t i = 0; i < r.n_tail; ++i)
        for (uint32_t j = 0; j < r.n_head; ++j) out_pairs_[oc[t[i]]++] = Pair{h[j], e, r.type};
      for (uint32_t j = 0; j < r.n_head; ++j) {
        bool a_in_tail = false;  // a = h[j]
        for (uint32_t i = 0; i < r.n_tail; ++i) a_in_tail = a_in_tail || t[i] == h[j];
        for (uint32_t i = 0; i < r.n_tail; ++i) {
          bool b_in_head = false;  // b = t[i]
          if (a_in_tail)
            for (uint32_t k = 0; k < r.n_head; ++k) b_in_head = b_in_head || h[k] == t[i];
          in_pairs_[ic[h[j]]++] = Pair{t[i], e | (b_in_head ? kDup : 0u), r.type};
        }
      }
    }
    if (has_wide_) {
      out_woff_.swap(owide);
      in_woff_.swap(iwide);
    } else {
      out_woff_.clear();
      in_woff_.clear();
    }
  }

  // Drop tombstones, renumber densely, rebuild node -> edge CSR both ways, empty the buffer.
  void compact_locked() {
    const std::size_t old_nodes = node_id_.size(), old_edges = edge_id_.size();
    std::vector<uint32_t> nmap(old_nodes, kNone);
    uint32_t nn = 0;
    for (std::size_t v = 0; v < old_nodes; ++v) {
      if (!node_alive_[v]) continue;
      nmap[v] = nn;
      node_id_[nn] = node_id_[v];
      node_label_[nn] = node_label_[v];
      ++nn;
    }
    node_id_.resize(nn);
    node_label_.resize(nn);
    node_alive_.assign(nn, 1);
    ids_ascending_ = std::adjacent_find(node_id_.begin(), node_id_.end(),
                                        std::greater_equal<int64_t>()) == node_id_.end();
    uint32_t ne = 0;
    std::size_t tpos = 0, hpos = 0;
    for (std::size_t e = 0; e < old_edges; ++e) {
      EdgeRec r = erec_[e];
      if (r.type < 0) continue;
      edge_id_[ne] = edge_id_[e];
      edge_ts_[ne] = edge_ts_[e];
      // In place: the write positions never pass the read positions.
      for (uint32_t j = 0; j < r.n_tail; ++j) tail_nodes_[tpos + j] = nmap[tail_nodes_[r.tail + j]];
      for (uint32_t j = 0; j < r.n_head; ++j) head_nodes_[hpos + j] = nmap[head_nodes_[r.head + j]];
      r.tail = tpos;
      r.head = hpos;
      tpos += r.n_tail;
      hpos += r.n_head;
      erec_[ne++] = r;
    }
    edge_id_.resize(ne);
    erec_.resize(ne);
    edge_ts_.resize(ne);
    tail_nodes_.resize(tpos);
    head_nodes_.resize(hpos);
    csr_edges_ = ne;  // projected() reads it
    build_projection(nn, ne);
    out_buf_.clear();
    in_buf_.clear();
    out_buf_.resize(nn);
    in_buf_.resize(nn);
    node_map_.clear_and_reserve(nn);
    for (uint32_t v = 0; v < nn; ++v) node_map_.set(node_id_[v], v);
    edge_map_.clear_and_reserve(ne);
    for (uint32_t e = 0; e < ne; ++e) edge_map_.set(edge_id_[e], e);
    csr_nodes_ = nn;
    csr_edges_ = ne;
    n_live_nodes_ = nn;
    n_live_edges_ = ne;
  }

  mutable std::shared_mutex mu_;
  // nodes (slot-indexed)
  // Every Column below is either owned or a view of map_ (a version-2 file read in place,
  // see from_mapped); the first write copies them all into memory (materialize_locked).
  Column<int64_t> node_id_;
  Column<int32_t> node_label_;
  Column<uint8_t> node_alive_;
  IdMap node_map_;
  // edges (slot-indexed); erec_[e].type < 0 marks a removed edge
  Column<int64_t> edge_id_;
  Column<EdgeRec> erec_;  // the hot per-edge data, one record per edge
  Column<double> edge_ts_;
  Column<uint32_t> tail_nodes_, head_nodes_;
  IdMap edge_map_;
  // node -> edges: the projection below for slots < csr_nodes_ / edges < csr_edges_, then the
  // append buffer (sized to the nodes once the graph owns its memory; empty while mapped)
  std::vector<std::vector<uint32_t>> out_buf_, in_buf_;
  // projection cache over the CSR edges (see Pair), and the wide edges it leaves out
  Column<uint64_t> out_poff_{1, 0}, in_poff_{1, 0};
  Column<Pair> out_pairs_, in_pairs_;
  Column<uint64_t> out_woff_, in_woff_;
  Column<uint32_t> out_wide_, in_wide_;
  std::shared_ptr<const MappedFile> map_;  // the file the views read, while any remain
  bool has_wide_ = false;
  // node ids ascend with their slots (bulk loads, files and new ids above the rest keep it),
  // so results sorted by id can be sorted by slot
  bool ids_ascending_ = true;
  std::size_t csr_nodes_ = 0, csr_edges_ = 0;
  std::size_t n_live_nodes_ = 0, n_live_edges_ = 0;
};

}  // namespace agentdb
