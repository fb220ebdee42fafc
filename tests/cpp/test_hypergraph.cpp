// The causal hypergraph (cpp/hypergraph.hpp) without Python: a small hand-made graph with
// known answers (neighbours, k-hop, paths, top paths, chains, removals, errors); the
// auto-compaction rule; random graphs checked against a brute-force model before and after
// compaction and removals (CSR + append buffer + projection cache + wide hyperedges); and
// save / load round trips with corrupt-file rejection.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "check.hpp"
#include "crc32.hpp"
#include "hypergraph.hpp"
#include "util.hpp"

using namespace agentdb;
using Ids = std::vector<int64_t>;

namespace {

void add_edge(Hypergraph& g, int64_t id, int64_t type, Ids tail, Ids head, double conf = 1.0,
              double ts = 0.0) {
  int64_t toff[2] = {0, static_cast<int64_t>(tail.size())};
  int64_t hoff[2] = {0, static_cast<int64_t>(head.size())};
  EdgeBatch b{1, &id, &type, toff, tail.data(), tail.size(), hoff, head.data(), head.size(),
              &conf, &ts};
  g.add_edges(b);
}

void add_nodes(Hypergraph& g, const Ids& ids, const Ids& labels = {}) {
  g.add_nodes(ids.data(), labels.empty() ? nullptr : labels.data(), ids.size());
}

std::vector<std::pair<int64_t, int64_t>> nbrs(const Hypergraph& g, int64_t id, Dir d,
                                              const TypeFilter& tf = TypeFilter()) {
  Ids nodes, edges;
  g.neighbors(id, d, tf, nodes, edges);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (std::size_t i = 0; i < nodes.size(); ++i) out.emplace_back(nodes[i], edges[i]);
  return out;
}

std::map<int64_t, int32_t> khop(const Hypergraph& g, const Ids& seeds, int64_t k, Dir d,
                                const TypeFilter& tf = TypeFilter()) {
  Ids nodes;
  std::vector<int32_t> hops;
  g.khop(seeds.data(), seeds.size(), k, d, tf, nodes, hops);
  std::map<int64_t, int32_t> out;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i) CHECK(nodes[i - 1] < nodes[i]);  // sorted by id
    out[nodes[i]] = hops[i];
  }
  return out;
}

struct Path {
  Ids nodes, edges;
  double product, min, sum;
  bool operator==(const Path& o) const {
    return nodes == o.nodes && edges == o.edges && product == o.product && min == o.min &&
           sum == o.sum;
  }
};

std::vector<Path> unpack(const PathSet& ps) {
  std::vector<Path> out;
  for (std::size_t r = 0; r < ps.size(); ++r) {
    std::size_t i = ps.order[r];
    out.push_back({Ids(ps.nodes.begin() + ps.node_off[i], ps.nodes.begin() + ps.node_off[i + 1]),
                   Ids(ps.edges.begin() + ps.edge_off[i], ps.edges.begin() + ps.edge_off[i + 1]),
                   ps.product[i], ps.min[i], ps.sum[i]});
  }
  return out;
}

std::ostream& operator<<(std::ostream& s, const Path& p) {
  s << "{nodes ";
  check::put(s, p.nodes);
  s << " edges ";
  check::put(s, p.edges);
  return s << " product " << p.product << " min " << p.min << " sum " << p.sum << "}";
}

// 1 -10-> 2 -11-> {3, 4};  3 -12-> 5;  {4, 5} -13-> 6;  6 -14-> 1 (a cycle back)
void small_graph(Hypergraph& g) {
  add_nodes(g, {1, 2, 3, 4, 5, 6}, {0, 0, 1, 1, 2, 2});
  add_edge(g, 10, 0, {1}, {2}, 0.5);
  add_edge(g, 11, 1, {2}, {3, 4}, 0.5);
  add_edge(g, 12, 0, {3}, {5}, 0.75);
  add_edge(g, 13, 2, {4, 5}, {6}, 0.25, 123.5);
  add_edge(g, 14, 0, {6}, {1}, 1.0);
}

// ---- a brute-force model of the same graph ------------------------------------------------
struct Model {
  struct Edge {
    int32_t type;
    Ids tail, head;
    double conf;
  };
  std::map<int64_t, int32_t> label;
  std::map<int64_t, Edge> edges;

  void add(Hypergraph& g, int64_t id, int32_t type, const Ids& tail, const Ids& head,
           double conf) {
    add_edge(g, id, type, tail, head, conf);
    edges[id] = {type, tail, head, static_cast<double>(static_cast<float>(conf))};
    touch();
  }
  void remove_edge(Hypergraph& g, int64_t id) {
    g.remove_edge(id);
    edges.erase(id);
    touch();
  }
  void remove_node(Hypergraph& g, int64_t v) {
    g.remove_node(v);
    label.erase(v);
    for (auto it = edges.begin(); it != edges.end();) {
      const Edge& e = it->second;
      bool hit = std::count(e.tail.begin(), e.tail.end(), v) ||
                 std::count(e.head.begin(), e.head.end(), v);
      it = hit ? edges.erase(it) : std::next(it);
    }
    touch();
  }
  // (b, e) with a -[e]-> b, sorted by (b, e); from a per-direction adjacency built on demand
  std::vector<std::pair<int64_t, int64_t>> nbrs(int64_t a, Dir d,
                                                const TypeFilter& tf = TypeFilter()) const {
    if (cached_version != version) rebuild();
    std::vector<std::pair<int64_t, int64_t>> out;
    auto it = adj[int(d)].find(a);
    if (it == adj[int(d)].end()) return out;
    for (const auto& [b, e, type] : it->second)
      if (tf(type)) out.emplace_back(b, e);
    return out;
  }
  void touch() { ++version; }
  mutable std::map<int64_t, std::vector<std::tuple<int64_t, int64_t, int32_t>>> adj[3];
  std::size_t version = 0;
  mutable std::size_t cached_version = ~std::size_t{0};
  void rebuild() const {
    std::set<std::tuple<int64_t, int64_t, int64_t, int32_t>> sets[3];  // (a, b, e, type)
    for (const auto& [id, e] : edges) {
      for (int64_t a : e.tail)
        for (int64_t b : e.head) {
          sets[int(Dir::Out)].emplace(a, b, id, e.type);
          sets[int(Dir::Both)].emplace(a, b, id, e.type);
          sets[int(Dir::In)].emplace(b, a, id, e.type);
          sets[int(Dir::Both)].emplace(b, a, id, e.type);
        }
    }
    for (int d = 0; d < 3; ++d) {
      adj[d].clear();
      for (const auto& [a, b, e, t] : sets[d]) adj[d][a].emplace_back(b, e, t);
    }
    cached_version = version;
  }
  std::map<int64_t, int32_t> khop(const Ids& seeds, int64_t k, Dir d,
                                  const TypeFilter& tf = TypeFilter()) const {
    std::map<int64_t, int32_t> dist;
    for (int64_t s : seeds) dist[s] = 0;
    std::vector<int64_t> frontier(seeds.begin(), seeds.end());
    std::map<int64_t, int32_t> out;
    for (int32_t h = 1; h <= k && !frontier.empty(); ++h) {
      std::vector<int64_t> next;
      for (int64_t u : frontier)
        for (auto [b, e] : nbrs(u, d, tf)) {
          (void)e;
          if (!dist.count(b)) {
            dist[b] = h;
            out[b] = h;
            next.push_back(b);
          } else if (dist[b] == 0 && !out.count(b)) {
            out[b] = h;  // a seed re-reached
          }
        }
      std::sort(next.begin(), next.end());
      next.erase(std::unique(next.begin(), next.end()), next.end());
      frontier = next;
    }
    return out;
  }
  // Every simple path from src in direction d with min..max hops, in path order.
  std::vector<Path> paths(int64_t src, int64_t mn, int64_t mx, Dir d) const {
    std::vector<Path> out;
    Ids pn{src}, pe;
    std::function<void()> rec = [&] {
      if (static_cast<int64_t>(pe.size()) >= mn) {
        Path p{pn, pe, 1.0, 1.0, 0.0};
        for (int64_t e : pe) {
          double c = edges.at(e).conf;
          p.product *= c;
          p.min = std::min(p.min, c);
          p.sum += c;
        }
        out.push_back(p);
      }
      if (static_cast<int64_t>(pe.size()) == mx) return;
      for (auto [b, e] : nbrs(pn.back(), d)) {
        if (std::count(pn.begin(), pn.end(), b) || std::count(pe.begin(), pe.end(), e)) continue;
        pn.push_back(b);
        pe.push_back(e);
        rec();
        pn.pop_back();
        pe.pop_back();
      }
    };
    rec();
    std::stable_sort(out.begin(), out.end(), [](const Path& a, const Path& b) {
      if (a.edges.size() != b.edges.size()) return a.edges.size() < b.edges.size();
      if (a.nodes != b.nodes) return a.nodes < b.nodes;
      return a.edges < b.edges;
    });
    return out;
  }
  // Label chains of length L (labels[i] = -1: any), distinct edges, sorted rows.
  std::vector<std::pair<Ids, Ids>> chains(const std::vector<int32_t>& labels,
                                          const std::vector<Dir>& dirs) const {
    std::vector<std::pair<Ids, Ids>> out;
    Ids rn, re;
    std::function<void()> rec = [&] {
      if (rn.size() == labels.size()) {
        out.emplace_back(rn, re);
        return;
      }
      for (auto [b, e] : nbrs(rn.back(), dirs[rn.size() - 1])) {
        if (labels[rn.size()] != -1 && label.at(b) != labels[rn.size()]) continue;
        if (std::count(re.begin(), re.end(), e)) continue;
        rn.push_back(b);
        re.push_back(e);
        rec();
        rn.pop_back();
        re.pop_back();
      }
    };
    for (const auto& [v, l] : label) {
      if (labels[0] != -1 && l != labels[0]) continue;
      rn.assign(1, v);
      re.clear();
      rec();
    }
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::vector<std::pair<Ids, Ids>> chains(const Hypergraph& g, const std::vector<int32_t>& labels,
                                        const std::vector<Dir>& dirs) {
  ChainQuery q;
  q.labels = labels;
  q.dirs = dirs;
  q.types.assign(labels.size() - 1, TypeFilter());
  ChainResult r = g.match_chain(q);
  std::vector<std::pair<Ids, Ids>> out;
  for (std::size_t i = 0; i < r.rows; ++i)
    out.emplace_back(Ids(r.nodes.begin() + i * r.width, r.nodes.begin() + (i + 1) * r.width),
                     Ids(r.edges.begin() + i * (r.width - 1),
                         r.edges.begin() + (i + 1) * (r.width - 1)));
  return out;
}

// Random graph: n nodes with labels 0..2, `m` edges of types 0..3 with 1..3 tail and head nodes
// (sometimes a node on both sides), a few wide ones (9 x 9 pairs: not projected), confidences
// in {0.25, 0.5, 0.75, 1} (exact in binary, so ties are exact), added in batches of varied size.
void random_graph(std::mt19937_64& rng, Hypergraph& g, Model& m, int64_t n, int64_t edges,
                  int64_t first_edge_id = 1000) {
  Ids nodes, labels;
  for (int64_t v = 0; v < n; ++v) {
    nodes.push_back(v * 3 + 1);
    labels.push_back(static_cast<int64_t>(rng() % 3));
    m.label[v * 3 + 1] = static_cast<int32_t>(labels.back());
  }
  add_nodes(g, nodes, labels);
  auto pick = [&](std::size_t k) {
    Ids out;
    while (out.size() < k) {
      int64_t v = nodes[rng() % nodes.size()];
      if (!std::count(out.begin(), out.end(), v)) out.push_back(v);
    }
    return out;
  };
  const double confs[] = {0.25, 0.5, 0.75, 1.0};
  for (int64_t i = 0; i < edges; ++i) {
    bool wide = rng() % 40 == 0;
    Ids tail = pick(wide ? 9 : 1 + rng() % 3), head = pick(wide ? 9 : 1 + rng() % 3);
    if (rng() % 10 == 0 && !std::count(head.begin(), head.end(), tail[0]))
      head.push_back(tail[0]);  // a node in both tail and head
    m.add(g, first_edge_id + i, static_cast<int32_t>(rng() % 4), tail, head, confs[rng() % 4]);
  }
}

void compare_with_model(const Hypergraph& g, const Model& m, std::mt19937_64& rng,
                        const char* when) {
  SCOPE(when);
  CHECK_EQ(g.num_nodes(), m.label.size());
  CHECK_EQ(g.num_edges(), m.edges.size());
  Ids ids;
  for (const auto& kv : m.label) ids.push_back(kv.first);
  CHECK(g.node_ids() == ids);
  const TypeFilter some(std::vector<int32_t>{0, 2});
  std::size_t bad = 0;
  for (int64_t v : ids)
    for (Dir d : {Dir::Out, Dir::In, Dir::Both}) {
      if (nbrs(g, v, d) != m.nbrs(v, d) && bad++ < 3) CHECK_EQ(nbrs(g, v, d), m.nbrs(v, d));
      if (nbrs(g, v, d, some) != m.nbrs(v, d, some) && bad++ < 3)
        CHECK_EQ(nbrs(g, v, d, some), m.nbrs(v, d, some));
    }
  CHECK_EQ(bad, std::size_t{0});
  for (int trial = 0; trial < 10; ++trial) {
    Ids seeds = {ids[rng() % ids.size()], ids[rng() % ids.size()]};
    int64_t k = 1 + static_cast<int64_t>(rng() % 3);
    for (Dir d : {Dir::Out, Dir::In, Dir::Both}) {
      SCOPE("khop seeds ", seeds, " k=", k, " dir=", int(d));
      CHECK_EQ(khop(g, seeds, k, d), m.khop(seeds, k, d));
      CHECK_EQ(khop(g, seeds, k, d, some), m.khop(seeds, k, d, some));
    }
  }
  CHECK(chains(g, {0, -1, 2}, {Dir::Out, Dir::Out}) == m.chains({0, -1, 2}, {Dir::Out, Dir::Out}));
  CHECK(chains(g, {1, 1}, {Dir::Both}) == m.chains({1, 1}, {Dir::Both}));
  CHECK(chains(g, {-1, 0, -1}, {Dir::In, Dir::Out}) ==
        m.chains({-1, 0, -1}, {Dir::In, Dir::Out}));
}

}  // namespace

TEST_CASE(hypergraph, small_graph_reads) {
  Hypergraph g;
  small_graph(g);
  CHECK_EQ(g.num_nodes(), std::size_t{6});
  CHECK_EQ(g.num_edges(), std::size_t{5});
  CHECK(g.has_node(4) && !g.has_node(7));
  CHECK(g.has_edge(13) && !g.has_edge(15));
  CHECK_EQ(g.node_label(3), 1);
  CHECK(g.nodes_with_label(2) == Ids({5, 6}));
  CHECK(g.edge_ids() == Ids({10, 11, 12, 13, 14}));
  EdgeInfo e = g.edge(13);
  CHECK_EQ(e.type, 2);
  CHECK(e.tail == Ids({4, 5}) && e.head == Ids({6}));
  CHECK_EQ(e.confidence, 0.25f);
  CHECK_EQ(e.timestamp, 123.5);
  using P = std::vector<std::pair<int64_t, int64_t>>;
  CHECK(nbrs(g, 2, Dir::Out) == P({{3, 11}, {4, 11}}));
  CHECK(nbrs(g, 2, Dir::In) == P({{1, 10}}));
  CHECK(nbrs(g, 2, Dir::Both) == P({{1, 10}, {3, 11}, {4, 11}}));
  CHECK(nbrs(g, 6, Dir::In) == P({{4, 13}, {5, 13}}));
  CHECK(nbrs(g, 2, Dir::Out, TypeFilter(std::vector<int32_t>{0})).empty());
  CHECK(nbrs(g, 1, Dir::Both, TypeFilter(std::vector<int32_t>{0, 5})) == P({{2, 10}, {6, 14}}));
  using H = std::map<int64_t, int32_t>;
  CHECK(khop(g, {1}, 2, Dir::Out) == H({{2, 1}, {3, 2}, {4, 2}}));
  // 6 at hop 3 (via 4), and the seed 1 re-reached through 6 -14-> 1 at hop 4
  CHECK(khop(g, {1}, 5, Dir::Out) == H({{1, 4}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {6, 3}}));
  CHECK(khop(g, {6}, 2, Dir::In) == H({{2, 2}, {3, 2}, {4, 1}, {5, 1}}));
  CHECK(khop(g, {1, 2}, 1, Dir::Out) == H({{2, 1}, {3, 1}, {4, 1}}));
  CHECK(khop(g, {}, 3, Dir::Out).empty());
}

TEST_CASE(hypergraph, small_graph_paths) {
  Hypergraph g;
  small_graph(g);
  PathQuery q;
  q.src = 1;
  q.has_dst = true;
  q.dst = 6;
  std::vector<Path> got = unpack(g.paths(q));
  std::vector<Path> want = {
      {{1, 2, 4, 6}, {10, 11, 13}, 0.5 * 0.5 * 0.25, 0.25, 1.25},
      {{1, 2, 3, 5, 6}, {10, 11, 12, 13}, 0.5 * 0.5 * 0.75 * 0.25, 0.25, 2.0},
  };
  CHECK_EQ(got, want);
  q.max_hops = 3;  // the longer path no longer fits
  CHECK_EQ(unpack(g.paths(q)), std::vector<Path>{want[0]});
  q = PathQuery();
  q.src = 1;
  q.min_hops = 0;
  q.max_hops = 1;
  CHECK(unpack(g.paths(q)) ==
        std::vector<Path>({{{1}, {}, 1.0, 1.0, 0.0}, {{1, 2}, {10}, 0.5, 0.5, 0.5}}));
  // paths ending at 6 (walked backwards, reported forwards), sorted by (length, nodes)
  got = unpack(g.paths_to(6, 1, 2, TypeFilter(), false, -1, 1000));
  CHECK(got.size() == 4);
  if (got.size() == 4) {
    CHECK(got[0].nodes == Ids({4, 6}) && got[0].edges == Ids({13}));
    CHECK(got[1].nodes == Ids({5, 6}) && got[1].edges == Ids({13}));
    CHECK(got[2].nodes == Ids({2, 4, 6}) && got[2].edges == Ids({11, 13}));
    CHECK(got[3].nodes == Ids({3, 5, 6}) && got[3].edges == Ids({12, 13}));
  }
  // best paths by score
  auto top = [&](PathScore s, int64_t n) {
    return unpack(g.top_paths(1, 1, 5, Dir::Out, TypeFilter(), n, s, true, 6));
  };
  CHECK_EQ(top(PathScore::Product, 1), std::vector<Path>{want[0]});
  CHECK_EQ(top(PathScore::Sum, 1), std::vector<Path>{want[1]});
  CHECK_EQ(top(PathScore::Min, 5), want);  // a tie (0.25 both): path order decides
  // limits and argument errors
  q = PathQuery();
  q.src = 1;
  q.limit = 2;
  CHECK_THROWS(g.paths(q), GraphValueError);  // more than 2 paths
  q.limit = 100;
  q.max_hops = 65;
  CHECK_THROWS(g.paths(q), GraphValueError);
  q.max_hops = 0;
  CHECK_THROWS(g.paths(q), GraphValueError);  // max_hops < min_hops
  q.max_hops = 3;
  q.src = 99;
  CHECK_THROWS(g.paths(q), GraphKeyError);
  // label chains: label 0 -> label 1 (out)
  CHECK(chains(g, {0, 1}, {Dir::Out}) ==
        std::vector<std::pair<Ids, Ids>>({{{2, 3}, {11}}, {{2, 4}, {11}}}));
  CHECK(chains(g, {0, 1, 2}, {Dir::Out, Dir::Out}).size() == 2);  // 2-3-5, 2-4-6
}

TEST_CASE(hypergraph, removals_and_errors) {
  Hypergraph g;
  small_graph(g);
  g.remove_edge(11);
  CHECK(!g.has_edge(11));
  CHECK(nbrs(g, 2, Dir::Out).empty());
  CHECK_THROWS(g.edge(11), GraphKeyError);
  CHECK_THROWS(g.remove_edge(11), GraphKeyError);
  g.remove_node(5);  // takes 12 and 13 with it
  CHECK_EQ(g.num_nodes(), std::size_t{5});
  CHECK(g.edge_ids() == Ids({10, 14}));
  CHECK_THROWS(nbrs(g, 5, Dir::Out), GraphKeyError);
  CHECK(nbrs(g, 6, Dir::In).empty());
  g.compact();
  CHECK_EQ(g.buffered(), std::size_t{0});
  CHECK(g.edge_ids() == Ids({10, 14}));
  CHECK(nbrs(g, 6, Dir::Both) == std::vector<std::pair<int64_t, int64_t>>({{1, 14}}));
  // every edge of a batch is validated before any is added
  std::size_t before = g.num_edges();
  CHECK_THROWS(add_edge(g, 10, 0, {1}, {2}), GraphValueError);   // duplicate edge id
  CHECK_THROWS(add_edge(g, 20, 0, {1}, {99}), GraphKeyError);    // unknown node
  CHECK_THROWS(add_edge(g, 21, 0, {}, {2}), GraphValueError);    // empty tail
  CHECK_THROWS(add_edge(g, 22, 0, {1, 1}, {2}), GraphValueError);  // repeated tail node
  CHECK_THROWS(add_edge(g, 23, 0, {1}, {2}, 1.5), GraphValueError);  // confidence > 1
  CHECK_THROWS(add_edge(g, 24, -1, {1}, {2}), GraphValueError);  // negative type
  CHECK_THROWS(add_edge(g, -1, 0, {1}, {2}), GraphValueError);   // reserved id
  Ids ids = {30, 31}, types = {0, 0}, toff = {0, 1, 2}, tn = {1, 2}, hoff = {0, 1, 2},
      hn = {2, 77};
  EdgeBatch bad{2, ids.data(), types.data(), toff.data(), tn.data(), 2, hoff.data(), hn.data(),
                2, nullptr, nullptr};
  CHECK_THROWS(g.add_edges(bad), GraphKeyError);  // the second edge names node 77
  CHECK_EQ(g.num_edges(), before);
  CHECK(!g.has_edge(30));
  toff = {0, 2, 2};  // an empty tail
  CHECK_THROWS(g.add_edges(bad), GraphValueError);
  toff = {1, 1, 2};  // offsets not starting at 0
  CHECK_THROWS(g.add_edges(bad), GraphValueError);
  Ids bad_node = {-1};
  CHECK_THROWS(g.add_nodes(bad_node.data(), nullptr, 1), GraphValueError);
  Ids seeds = {1};
  Ids out_nodes;
  std::vector<int32_t> out_hops;
  CHECK_THROWS(g.khop(seeds.data(), 1, 0, Dir::Out, TypeFilter(), out_nodes, out_hops),
               GraphValueError);
  // upsert of a node changes its label only
  add_nodes(g, {1}, {7});
  CHECK_EQ(g.node_label(1), 7);
  CHECK_EQ(g.num_nodes(), std::size_t{5});
}

TEST_CASE(hypergraph, auto_compaction_rule) {
  Hypergraph g;
  Ids nodes;
  for (int64_t v = 0; v < 100; ++v) nodes.push_back(v);
  add_nodes(g, nodes);
  std::mt19937_64 rng(51);
  auto bulk = [&](int64_t start, int64_t n) {
    Ids ids, types(n, 0), toff{0}, tn, hoff{0}, hn;
    for (int64_t i = 0; i < n; ++i) {
      ids.push_back(start + i);
      tn.push_back(static_cast<int64_t>(rng() % 100));
      hn.push_back(static_cast<int64_t>(rng() % 100));
      toff.push_back(i + 1);
      hoff.push_back(i + 1);
    }
    EdgeBatch b{static_cast<std::size_t>(n), ids.data(), types.data(), toff.data(), tn.data(),
                tn.size(), hoff.data(), hn.data(), hn.size(), nullptr, nullptr};
    g.add_edges(b);
  };
  bulk(0, 1000);
  CHECK_EQ(g.buffered(), std::size_t{1000});
  for (int64_t i = 0; i < 24; ++i) bulk(1000 + i, 1);
  CHECK_EQ(g.buffered(), std::size_t{1024});  // not above max(1024, 0 / 4)
  bulk(1024, 1);
  CHECK_EQ(g.buffered(), std::size_t{0});  // compacted itself
  CHECK_EQ(g.num_edges(), std::size_t{1025});
  bulk(2000, 1024);
  CHECK_EQ(g.buffered(), std::size_t{1024});
  g.remove_edge(2000);  // removed buffered edges count until the next compaction
  bulk(5000, 1);
  CHECK_EQ(g.buffered(), std::size_t{0});
  CHECK_EQ(g.num_edges(), std::size_t{2049});
  bulk(9000, 3000);  // a big batch compacts at once
  CHECK_EQ(g.buffered(), std::size_t{0});
  bulk(20000, 1262);  // threshold now 5049 / 4 = 1262
  CHECK_EQ(g.buffered(), std::size_t{1262});
  g.compact();
  CHECK_EQ(g.buffered(), std::size_t{0});
  CHECK_EQ(g.num_edges(), std::size_t{5049 + 1262});
}

TEST_CASE(hypergraph, random_graphs_match_a_brute_force_model) {
  for (uint64_t seed : {52, 53}) {
    SCOPE("seed=", seed);
    std::mt19937_64 rng(seed);
    Hypergraph g;
    Model m;
    random_graph(rng, g, m, 150, 700);  // below the auto-compaction threshold: all buffered
    CHECK_EQ(g.buffered(), std::size_t{700});
    compare_with_model(g, m, rng, "buffered");
    g.compact();
    compare_with_model(g, m, rng, "compacted");
    // more edges on top of the CSR (buffer + CSR), then removals, then compaction again
    for (int64_t i = 0; i < 300; ++i) {
      Ids tail = {1 + 3 * static_cast<int64_t>(rng() % 150)};
      Ids head = {1 + 3 * static_cast<int64_t>(rng() % 150), 1 + 3 * static_cast<int64_t>(i % 150)};
      if (head[0] == head[1]) head.pop_back();
      m.add(g, 50000 + i, static_cast<int32_t>(rng() % 4), tail, head, 0.5);
    }
    compare_with_model(g, m, rng, "CSR + buffer");
    std::vector<int64_t> edge_ids;
    for (const auto& kv : m.edges) edge_ids.push_back(kv.first);
    for (std::size_t i = 0; i < edge_ids.size(); i += 7) m.remove_edge(g, edge_ids[i]);
    for (int64_t v : {1, 4, 301, 448}) m.remove_node(g, v);
    compare_with_model(g, m, rng, "after removals");
    g.compact();
    compare_with_model(g, m, rng, "after removals + compaction");
  }
}

TEST_CASE(hypergraph, random_paths_match_a_brute_force_model) {
  std::mt19937_64 rng(54);
  Hypergraph g;
  Model m;
  random_graph(rng, g, m, 30, 45);
  for (int64_t src : {1, 4, 7, 10}) {
    for (Dir d : {Dir::Out, Dir::In, Dir::Both}) {
      SCOPE("src=", src, " dir=", int(d));
      PathQuery q;
      q.src = src;
      q.dir = d;
      q.min_hops = 0;
      q.max_hops = 4;
      q.limit = 1000000;
      std::vector<Path> want = m.paths(src, 0, 4, d);
      std::vector<Path> got = unpack(g.paths(q));
      CHECK_EQ(got.size(), want.size());
      CHECK_EQ(got, want);
      for (PathScore s : {PathScore::Product, PathScore::Min, PathScore::Sum}) {
        // the n best by score, ties in path order
        std::vector<Path> best(want.begin(), want.end());
        std::stable_sort(best.begin(), best.end(), [&](const Path& a, const Path& b) {
          auto sc = [&](const Path& p) {
            return s == PathScore::Product ? p.product : s == PathScore::Min ? p.min : p.sum;
          };
          return sc(a) > sc(b);
        });
        best.resize(std::min<std::size_t>(best.size(), 7));
        std::vector<Path> t = unpack(g.top_paths(src, 0, 4, d, TypeFilter(), 7, s, false, 0));
        SCOPE("score=", int(s));
        CHECK_EQ(t, best);
      }
    }
  }
  // paths_to(dst) are the out-paths of every source that end at dst
  for (int64_t dst : {1, 13, 22}) {
    SCOPE("dst=", dst);
    std::vector<Path> want;
    for (const auto& kv : m.label)
      for (const Path& p : m.paths(kv.first, 1, 3, Dir::Out))
        if (p.nodes.back() == dst) want.push_back(p);
    std::stable_sort(want.begin(), want.end(), [](const Path& a, const Path& b) {
      if (a.edges.size() != b.edges.size()) return a.edges.size() < b.edges.size();
      if (a.nodes != b.nodes) return a.nodes < b.nodes;
      return a.edges < b.edges;
    });
    CHECK_EQ(unpack(g.paths_to(dst, 1, 3, TypeFilter(), false, -1, 1000000)), want);
  }
}

TEST_CASE(hypergraph, save_load_round_trip) {
  std::mt19937_64 rng(55);
  Hypergraph g;
  Model m;
  random_graph(rng, g, m, 60, 200);
  m.remove_edge(g, 1005);
  m.remove_node(g, 31);
  const std::string path = testutil::temp_path("graph.agdb");
  g.save(path);
  std::vector<unsigned char> bytes = testutil::read_bytes(path);
  std::remove(path.c_str());
  REQUIRE(bytes.size() > Hypergraph::kHeaderSize + 4);
  CHECK_EQ(std::memcmp(bytes.data(), "AGDBHYPG", 8), 0);
  CHECK_EQ(crc32_update(0, bytes.data(), bytes.size() - 4),
           read_le<uint32_t>(bytes.data(), bytes.size() - 4));
  auto back = Hypergraph::from_bytes(bytes.data(), bytes.size(), path);
  CHECK(back->node_ids() == g.node_ids());
  CHECK(back->edge_ids() == g.edge_ids());
  for (int64_t e : g.edge_ids()) {
    EdgeInfo a = g.edge(e), b = back->edge(e);
    CHECK(a.type == b.type && a.tail == b.tail && a.head == b.head &&
          a.confidence == b.confidence && a.timestamp == b.timestamp);
  }
  for (int64_t v : g.node_ids()) CHECK_EQ(back->node_label(v), g.node_label(v));
  compare_with_model(*back, m, rng, "loaded");
  // saving the loaded graph gives the same bytes
  back->save(path);
  CHECK(testutil::read_bytes(path) == bytes);
  std::remove(path.c_str());
  // corrupt files
  auto load = [&](const std::vector<unsigned char>& b) {
    return Hypergraph::from_bytes(b.data(), b.size(), "g.agdb");
  };
  std::vector<unsigned char> b = bytes;
  b[bytes.size() / 2] ^= 0x01;
  CHECK_THROWS(load(b), GraphBadFile);
  b = bytes;
  b[3] = 'x';
  CHECK_THROWS(load(b), GraphBadFile);
  b.assign(bytes.begin(), bytes.end() - 5);
  CHECK_THROWS(load(b), GraphBadFile);
  b.assign(bytes.begin(), bytes.begin() + 10);
  CHECK_THROWS(load(b), GraphBadFile);
  b = bytes;
  b.insert(b.end() - 4, 0);
  CHECK_THROWS(load(b), GraphBadFile);
  Hypergraph empty;  // the empty graph round-trips too
  empty.save(path);
  b = testutil::read_bytes(path);
  std::remove(path.c_str());
  CHECK_EQ(b.size(), Hypergraph::kHeaderSize + 2 * 8 + 4);  // header, two offsets, CRC
  CHECK_EQ(load(b)->num_nodes(), std::size_t{0});
}

TEST_CASE(hypergraph, column_copies_a_view_on_first_write) {
  const std::vector<int64_t> backing{5, 6, 7};
  Column<int64_t> c;
  c.view(backing.data(), backing.size());
  const Column<int64_t>& reader = c;  // const access: reads, never copies
  CHECK(c.is_view());
  CHECK_EQ(reader.data(), backing.data());  // reads go to the viewed memory itself
  CHECK(reader[2] == 7 && reader.size() == 3);
  CHECK_EQ(c.owned_bytes(), std::size_t{0});
  CHECK(c.is_view());
  const Column<int64_t> copy = c;  // a copy owns its elements
  CHECK(!copy.is_view());
  c[1] = 60;  // the first mutable access copies
  CHECK(!c.is_view());
  CHECK(backing[1] == 6 && c[1] == 60 && c.size() == 3 && copy[1] == 6);
  c.push_back(8);
  CHECK(c.back() == 8 && c.size() == 4);
  std::vector<int64_t> out = c.release();
  CHECK(out.size() == 4 && c.empty() && !c.is_view());
}

TEST_CASE(hypergraph, mapped_file_round_trip) {
  std::mt19937_64 rng(77);
  Hypergraph g;
  Model m;
  random_graph(rng, g, m, 60, 200);
  m.remove_edge(g, 1005);
  m.remove_node(g, 31);  // tombstones: saved as the compacted copy
  const std::string path = testutil::temp_path("graph.v2");
  g.save_mapped(path);
  const std::vector<unsigned char> bytes = testutil::read_bytes(path);
  CHECK_EQ(read_le<uint32_t>(bytes.data(), 8), Hypergraph::kFormatVersionMapped);
  CHECK_EQ(crc32_update(0, bytes.data(), bytes.size() - 4),
           read_le<uint32_t>(bytes.data(), bytes.size() - 4));
  auto back = Hypergraph::open_file(std::make_shared<MappedFile>(path), path);
  CHECK(back->mapped());
  CHECK(back->node_ids() == g.node_ids() && back->edge_ids() == g.edge_ids());
  compare_with_model(*back, m, rng, "mapped");
  CHECK(back->mapped());  // reads never copy
  m.remove_edge(*back, back->edge_ids().front());  // the first write copies the file
  CHECK(!back->mapped());
  compare_with_model(*back, m, rng, "written");
  CHECK(testutil::read_bytes(path) == bytes);  // and leaves it alone
  // a damaged section is refused, naming it
  std::vector<unsigned char> bad = bytes;
  bad[bad.size() - 40] ^= 0x10;
  const std::string bad_path = testutil::temp_path("graph-bad.v2");
  {
    std::FILE* f = std::fopen(bad_path.c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fwrite(bad.data(), 1, bad.size(), f);
    std::fclose(f);
  }
  CHECK_THROWS(Hypergraph::open_file(std::make_shared<MappedFile>(bad_path), bad_path),
               GraphBadFile);
  std::remove(bad_path.c_str());
  std::remove(path.c_str());
}

TEST_CASE(hypergraph, sort_slots_matches_std_sort) {
  std::mt19937_64 rng(5);
  std::vector<uint32_t> a, tmp;
  for (std::size_t n : {0, 1, 2, 23, 24, 25, 67, 150, 1000, 5000}) {
    for (uint32_t top : {1u, 255u, 256u, 70000u, 200000u, 1u << 24, 0xFFFFFFFEu}) {
      SCOPE("n=", n, " top=", top);
      a.resize(n);
      for (auto& v : a) v = static_cast<uint32_t>(rng() % (uint64_t{top} + 1));
      std::vector<uint32_t> want = a;
      std::sort(want.begin(), want.end());
      sort_slots(a, tmp);
      CHECK(a == want);
    }
  }
}
