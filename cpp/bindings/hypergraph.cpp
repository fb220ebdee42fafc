// agentdb._native.Hypergraph (spec_graph.md): the Python face of cpp/hypergraph.hpp.
// Arguments are converted and shape-checked here; graph-dependent checks (unknown ids,
// duplicates) happen in cpp/hypergraph.hpp under its lock. GraphKeyError -> KeyError,
// GraphBadFile / GraphValueError -> ValueError.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "hypergraph.hpp"
#include "mapped_file.hpp"

namespace agentdb {
namespace bindings {
namespace {

int32_t graph_i32(py::handle h, const char* what, int64_t lo) {
  int64_t v = graph_int(h, what);
  if (v < lo || v > INT32_MAX)
    throw py::value_error(std::string(what) + " must be in [" + std::to_string(lo) +
                          ", 2147483647], got " + std::to_string(v));
  return static_cast<int32_t>(v);
}

std::vector<double> graph_floats(py::handle obj, const char* what) {
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj))
    throw py::type_error(std::string(what) + " must be a 1-D sequence of numbers");
  py::array arr = numpy().attr("asarray")(obj);
  if (arr.ndim() == 0) arr = arr.attr("reshape")(1);
  if (arr.size() == 0) return {};
  char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u')
    throw py::type_error(std::string(what) + " must be real numbers, got dtype " +
                         py::str(arr.dtype()).cast<std::string>());
  if (arr.ndim() > 1) throw py::value_error(std::string(what) + " must be 1-D");
  auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(arr);
  return std::vector<double>(a.data(), a.data() + a.size());
}

Dir parse_dir(py::handle h) {
  if (!py::isinstance<py::str>(h))
    throw py::type_error("direction must be 'out', 'in' or 'both', got " +
                         py::repr(h).cast<std::string>());
  std::string s = h.cast<std::string>();
  if (s == "out") return Dir::Out;
  if (s == "in") return Dir::In;
  if (s == "both") return Dir::Both;
  throw py::value_error("direction must be 'out', 'in' or 'both', got '" + s + "'");
}

TypeFilter parse_types(py::handle h) {
  if (h.is_none()) return TypeFilter();
  std::vector<int64_t> raw = as_ids(h, "types");
  std::vector<int32_t> t;
  t.reserve(raw.size());
  for (int64_t v : raw) {
    if (v < 0 || v > INT32_MAX)
      throw py::value_error("types must be in [0, 2147483647], got " + std::to_string(v));
    t.push_back(static_cast<int32_t>(v));
  }
  return TypeFilter(std::move(t));
}

std::optional<int32_t> opt_label(py::handle h, const char* what) {
  if (h.is_none()) return std::nullopt;
  return graph_i32(h, what, -1);
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> out(std::vector<std::size_t>{v.size()});
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(T));
  return out;
}

// Pauses Python's cyclic GC while a large result of fresh lists/tuples is built (otherwise
// the collector rescans the growing result over and over); restores the previous state.
struct GcPause {
  bool was = false;
  GcPause() {
    py::module_ gc = py::module_::import("gc");
    was = gc.attr("isenabled")().cast<bool>();
    if (was) gc.attr("disable")();
  }
  ~GcPause() {
    if (!was) return;
    try {
      py::module_::import("gc").attr("enable")();
    } catch (py::error_already_set&) {
    }
  }
};

py::object int_list(const int64_t* v, std::size_t n) {
  py::object out = py::reinterpret_steal<py::object>(PyList_New(static_cast<Py_ssize_t>(n)));
  if (!out) throw py::error_already_set();
  for (std::size_t j = 0; j < n; ++j) {
    PyObject* x = PyLong_FromLongLong(v[j]);
    if (!x) throw py::error_already_set();
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(j), x);
  }
  return out;
}

// [(node_ids list, edge_ids list, product, min, sum)] in ps.order.
py::list path_list(const PathSet& ps) {
  std::unique_ptr<GcPause> pause;
  if (ps.size() > 1000) pause = std::make_unique<GcPause>();
  py::list out(ps.size());
  for (std::size_t r = 0; r < ps.size(); ++r) {
    const std::size_t i = ps.order[r];
    py::object t = py::reinterpret_steal<py::object>(PyTuple_New(5));
    if (!t) throw py::error_already_set();
    PyTuple_SET_ITEM(t.ptr(), 0,
                     int_list(&ps.nodes[ps.node_off[i]], ps.node_off[i + 1] - ps.node_off[i])
                         .release()
                         .ptr());
    PyTuple_SET_ITEM(t.ptr(), 1,
                     int_list(&ps.edges[ps.edge_off[i]], ps.edge_off[i + 1] - ps.edge_off[i])
                         .release()
                         .ptr());
    for (int k = 0; k < 3; ++k) {
      double v = k == 0 ? ps.product[i] : k == 1 ? ps.min[i] : ps.sum[i];
      PyObject* f = PyFloat_FromDouble(v);
      if (!f) throw py::error_already_set();
      PyTuple_SET_ITEM(t.ptr(), 2 + k, f);
    }
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(r), t.release().ptr());
  }
  return out;
}

// (nodes, node_offsets, edges, edge_offsets, product, min, sum) as numpy arrays, in ps.order:
// path i is nodes[node_offsets[i]:node_offsets[i + 1]] (likewise edges).
py::tuple path_arrays(const PathSet& ps) {
  const std::size_t n = ps.size();
  py::array_t<int64_t> nodes(std::vector<std::size_t>{ps.nodes.size()});
  py::array_t<int64_t> edges(std::vector<std::size_t>{ps.edges.size()});
  py::array_t<int64_t> noff(std::vector<std::size_t>{n + 1}), eoff(std::vector<std::size_t>{n + 1});
  py::array_t<double> prod(std::vector<std::size_t>{n}), mn(std::vector<std::size_t>{n}),
      sm(std::vector<std::size_t>{n});
  {
    int64_t *pn = nodes.mutable_data(), *pe = edges.mutable_data();
    int64_t *pno = noff.mutable_data(), *peo = eoff.mutable_data();
    double *pp = prod.mutable_data(), *pm = mn.mutable_data(), *ps_ = sm.mutable_data();
    py::gil_scoped_release nogil;
    std::size_t at_n = 0, at_e = 0;
    pno[0] = 0;
    peo[0] = 0;
    for (std::size_t r = 0; r < n; ++r) {
      const std::size_t i = ps.order[r];
      const std::size_t a = ps.node_off[i], b = ps.node_off[i + 1];
      const std::size_t c = ps.edge_off[i], d = ps.edge_off[i + 1];
      if (b > a) std::memcpy(pn + at_n, &ps.nodes[a], (b - a) * 8);
      if (d > c) std::memcpy(pe + at_e, &ps.edges[c], (d - c) * 8);
      at_n += b - a;
      at_e += d - c;
      pno[r + 1] = static_cast<int64_t>(at_n);
      peo[r + 1] = static_cast<int64_t>(at_e);
      pp[r] = ps.product[i];
      pm[r] = ps.min[i];
      ps_[r] = ps.sum[i];
    }
  }
  return py::make_tuple(nodes, noff, edges, eoff, prod, mn, sm);
}

py::object path_result(const PathSet& ps, py::handle as_arrays) {
  if (!PyBool_Check(as_arrays.ptr()))
    throw py::type_error("as_arrays must be a bool, got " + py::repr(as_arrays).cast<std::string>());
  if (as_arrays.ptr() == Py_True) return path_arrays(ps);
  return path_list(ps);
}

std::optional<std::vector<int64_t>> opt_ids(py::handle h, const char* what) {
  if (h.is_none()) return std::nullopt;
  return as_ids(h, what);
}

void check_len(std::size_t got, std::size_t want, const char* what, const char* rule) {
  if (got != want)
    throw py::value_error(std::string(what) + " must have " + rule + " = " +
                          std::to_string(want) + " entries, got " + std::to_string(got));
}

struct PyGraph {
  std::unique_ptr<Hypergraph> g = std::make_unique<Hypergraph>();

  void add_node(py::handle id, py::handle label) {
    int64_t i = graph_int(id, "id");
    int64_t l = graph_int(label, "label");
    py::gil_scoped_release nogil;
    g->add_nodes(&i, &l, 1);
  }

  void add_nodes(py::handle ids_obj, py::handle labels_obj) {
    std::vector<int64_t> ids = as_ids(ids_obj, "ids");
    std::vector<int64_t> labels;
    if (!labels_obj.is_none()) {
      labels = as_ids(labels_obj, "labels");
      check_len(labels.size(), ids.size(), "labels", "len(ids)");
    }
    py::gil_scoped_release nogil;
    g->add_nodes(ids.data(), labels_obj.is_none() ? nullptr : labels.data(), ids.size());
  }

  void add_edge(py::handle id, py::handle type, py::handle tail, py::handle head,
                py::handle confidence, py::handle timestamp) {
    int64_t i = graph_int(id, "id");
    int64_t t = graph_int(type, "type");
    std::vector<int64_t> tn = as_ids(tail, "tail"), hn = as_ids(head, "head");
    double c = graph_float(confidence, "confidence");
    double ts = graph_float(timestamp, "timestamp");
    int64_t toff[2] = {0, static_cast<int64_t>(tn.size())};
    int64_t hoff[2] = {0, static_cast<int64_t>(hn.size())};
    EdgeBatch b{1, &i, &t, toff, tn.data(), tn.size(), hoff, hn.data(), hn.size(), &c, &ts};
    py::gil_scoped_release nogil;
    g->add_edges(b);
  }

  void add_edges(py::handle ids_obj, py::handle types_obj, py::handle toff_obj,
                 py::handle tnodes_obj, py::handle hoff_obj, py::handle hnodes_obj,
                 py::handle conf_obj, py::handle ts_obj) {
    std::vector<int64_t> ids = as_ids(ids_obj, "ids");
    std::vector<int64_t> types = as_ids(types_obj, "types");
    std::vector<int64_t> toff = as_ids(toff_obj, "tail_offsets");
    std::vector<int64_t> tn = as_ids(tnodes_obj, "tail_nodes");
    std::vector<int64_t> hoff = as_ids(hoff_obj, "head_offsets");
    std::vector<int64_t> hn = as_ids(hnodes_obj, "head_nodes");
    std::vector<double> conf, ts;
    if (!conf_obj.is_none()) conf = graph_floats(conf_obj, "confidences");
    if (!ts_obj.is_none()) ts = graph_floats(ts_obj, "timestamps");
    const std::size_t n = ids.size();
    check_len(types.size(), n, "types", "len(ids)");
    check_len(toff.size(), n + 1, "tail_offsets", "len(ids) + 1");
    check_len(hoff.size(), n + 1, "head_offsets", "len(ids) + 1");
    if (!conf_obj.is_none()) check_len(conf.size(), n, "confidences", "len(ids)");
    if (!ts_obj.is_none()) check_len(ts.size(), n, "timestamps", "len(ids)");
    EdgeBatch b{n,         ids.data(), types.data(), toff.data(),
                tn.data(), tn.size(),  hoff.data(),  hn.data(),
                hn.size(), conf_obj.is_none() ? nullptr : conf.data(),
                ts_obj.is_none() ? nullptr : ts.data()};
    py::gil_scoped_release nogil;
    g->add_edges(b);
  }

  void remove_node(py::handle id) {
    int64_t i = graph_int(id, "id");
    py::gil_scoped_release nogil;
    g->remove_node(i);
  }
  void remove_edge(py::handle id) {
    int64_t i = graph_int(id, "id");
    py::gil_scoped_release nogil;
    g->remove_edge(i);
  }
  bool has_node(py::handle id) {
    int64_t i = graph_int(id, "id");
    bool out;
    if (g->try_has_node(i, out)) return out;  // no writer: answer with the GIL held
    py::gil_scoped_release nogil;
    return g->has_node(i);
  }
  bool has_edge(py::handle id) {
    int64_t i = graph_int(id, "id");
    bool out;
    if (g->try_has_edge(i, out)) return out;  // no writer: answer with the GIL held
    py::gil_scoped_release nogil;
    return g->has_edge(i);
  }
  int node_label(py::handle id) {
    int64_t i = graph_int(id, "id");
    int32_t out;
    if (g->try_node_label(i, out)) return out;  // no writer: answer with the GIL held
    py::gil_scoped_release nogil;
    return g->node_label(i);
  }
  py::tuple edge(py::handle id) {
    int64_t i = graph_int(id, "id");
    EdgeInfo e;
    {
      py::gil_scoped_release nogil;
      e = g->edge(i);
    }
    return py::make_tuple(e.type, to_array(e.tail), to_array(e.head),
                          static_cast<double>(e.confidence), e.timestamp);
  }

  template <class Fn>
  auto nogil(Fn&& fn) {
    py::gil_scoped_release nogil;
    return fn();
  }

  py::array_t<int64_t> node_ids() { return to_array(nogil([&] { return g->node_ids(); })); }
  py::array_t<int64_t> edge_ids() { return to_array(nogil([&] { return g->edge_ids(); })); }
  py::array_t<int64_t> nodes_with_label(py::handle label) {
    int32_t l = graph_i32(label, "label", -1);
    return to_array(nogil([&] { return g->nodes_with_label(l); }));
  }

  py::tuple neighbors(py::handle id, py::handle direction, py::handle types) {
    Dir d = parse_dir(direction);
    TypeFilter tf = parse_types(types);
    int64_t i = graph_int(id, "id");
    std::vector<int64_t> nodes, edges;
    {
      py::gil_scoped_release nogil;
      g->neighbors(i, d, tf, nodes, edges);
    }
    return py::make_tuple(to_array(nodes), to_array(edges));
  }

  py::tuple khop(py::handle seeds, py::handle k, py::handle direction, py::handle types,
                 py::handle timeout, py::handle cancel) {
    Dir d = parse_dir(direction);
    TypeFilter tf = parse_types(types);
    int64_t kk = graph_int(k, "k");
    std::vector<int64_t> s = as_ids(seeds, "seeds");
    auto bud = budget_arg(timeout, cancel);
    std::vector<int64_t> nodes;
    std::vector<int32_t> hops;
    nogil_budget(bud, [&] {
      g->khop(s.data(), s.size(), kk, d, tf, nodes, hops);
      return 0;
    });
    return py::make_tuple(to_array(nodes), to_array(hops));
  }

  py::tuple khop_batch(py::handle seeds, py::handle k, py::handle direction, py::handle types,
                       py::handle threads, py::handle timeout, py::handle cancel) {
    Dir d = parse_dir(direction);
    TypeFilter tf = parse_types(types);
    int64_t kk = graph_int(k, "k");
    int64_t th = graph_int(threads, "threads");
    if (th < 0) throw py::value_error("threads must be >= 0, got " + std::to_string(th));
    std::vector<int64_t> s = as_ids(seeds, "seeds");
    auto bud = budget_arg(timeout, cancel);
    std::vector<int64_t> offsets, nodes;
    std::vector<int32_t> hops;
    nogil_budget(bud, [&] {
      g->khop_batch(s.data(), s.size(), kk, d, tf, static_cast<std::size_t>(th), offsets,
                    nodes, hops);
      return 0;
    });
    return py::make_tuple(to_array(offsets), to_array(nodes), to_array(hops));
  }

  static int64_t hops_arg(py::handle h, const char* what) { return graph_int(h, what); }

  // The arguments paths() and path_totals() share.
  static PathQuery path_query(py::handle src, py::handle min_hops, py::handle max_hops,
                              py::handle direction, py::handle types, py::handle dst_label) {
    PathQuery q;
    q.dir = parse_dir(direction);
    q.types = parse_types(types);
    q.min_hops = hops_arg(min_hops, "min_hops");
    q.max_hops = hops_arg(max_hops, "max_hops");
    q.src = graph_int(src, "src");
    if (auto l = opt_label(dst_label, "dst_label")) {
      q.has_dst_label = true;
      q.dst_label = *l;
    }
    return q;
  }

  // A walk's budget from its `timeout` (seconds, <= 0 or None: none) and `cancel` (None, or a
  // one-byte uint8 numpy array another thread may set to 1; read in place, so it must not be
  // a converted copy).
  static std::optional<Budget> budget_arg(py::handle timeout, py::handle cancel) {
    double t = 0.0;
    if (!timeout.is_none()) {
      if (py::isinstance<py::bool_>(timeout) ||
          !(py::isinstance<py::float_>(timeout) || py::isinstance<py::int_>(timeout)))
        throw py::type_error("timeout must be a number of seconds, got " +
                             py::repr(timeout).cast<std::string>());
      t = timeout.cast<double>();
      if (std::isnan(t)) throw py::value_error("timeout must not be NaN");
    }
    const volatile uint8_t* flag = nullptr;
    if (!cancel.is_none()) {
      if (!py::isinstance<py::array>(cancel) ||
          !py::array::ensure(cancel).dtype().is(py::dtype::of<uint8_t>()) ||
          py::reinterpret_borrow<py::array>(cancel).size() < 1)
        throw py::type_error("cancel must be a uint8 numpy array of at least one element");
      flag = static_cast<const volatile uint8_t*>(
          py::reinterpret_borrow<py::array>(cancel).data());
    }
    if (t <= 0.0 && !flag) return std::nullopt;
    return Budget::after(t, flag);
  }
  template <class Fn>
  static auto nogil_budget(std::optional<Budget>& b, Fn&& fn) -> decltype(fn()) {
    py::gil_scoped_release nogil;
    BudgetScope scope(b ? &*b : nullptr);
    return fn();
  }

  py::object paths(py::handle src, py::handle min_hops, py::handle max_hops,
                   py::handle direction, py::handle types, py::handle dst, py::handle dst_label,
                   py::handle src_label, py::handle limit, py::handle ends,
                   py::handle as_arrays, py::handle timeout, py::handle cancel) {
    auto bud = budget_arg(timeout, cancel);
    PathQuery q = path_query(src, min_hops, max_hops, direction, types, dst_label);
    q.limit = graph_int(limit, "limit");
    if (!dst.is_none()) {
      q.has_dst = true;
      q.dst = graph_int(dst, "dst");
    }
    if (auto l = opt_label(src_label, "src_label")) {
      q.has_src_label = true;
      q.src_label = *l;
    }
    if (auto e = opt_ids(ends, "ends")) {
      q.has_ends = true;
      q.ends = std::move(*e);
    }
    PathSet ps = nogil_budget(bud, [&] { return g->paths(q); });
    return path_result(ps, as_arrays);
  }

  py::tuple path_totals(py::handle src, py::handle min_hops, py::handle max_hops,
                        py::handle direction, py::handle types, py::handle dst_label,
                        py::handle timeout, py::handle cancel) {
    auto bud = budget_arg(timeout, cancel);
    PathQuery q = path_query(src, min_hops, max_hops, direction, types, dst_label);
    auto r = nogil_budget(bud, [&] { return g->path_totals(q); });
    return py::make_tuple(r.count, r.sum, r.min, r.max);
  }

  py::object paths_to(py::handle dst, py::handle min_hops, py::handle max_hops,
                      py::handle types, py::handle src_label, py::handle limit,
                      py::handle sources, py::handle as_arrays, py::handle timeout,
                      py::handle cancel) {
    auto bud = budget_arg(timeout, cancel);
    TypeFilter tf = parse_types(types);
    int64_t mn = hops_arg(min_hops, "min_hops"), mx = hops_arg(max_hops, "max_hops");
    int64_t lim = graph_int(limit, "limit");
    int64_t d = graph_int(dst, "dst");
    auto sl = opt_label(src_label, "src_label");
    auto srcs = opt_ids(sources, "sources");
    PathSet ps = nogil_budget(bud, [&] {
      return g->paths_to(d, mn, mx, tf, sl.has_value(), sl.value_or(-1), lim,
                         srcs ? &*srcs : nullptr);
    });
    return path_result(ps, as_arrays);
  }

  py::object top_paths(py::handle src, py::handle min_hops, py::handle max_hops,
                       py::handle direction, py::handle types, py::handle n, py::handle score,
                       py::handle dst, py::handle ends, py::handle as_arrays,
                       py::handle timeout, py::handle cancel) {
    auto bud = budget_arg(timeout, cancel);
    Dir d = parse_dir(direction);
    TypeFilter tf = parse_types(types);
    int64_t mn = hops_arg(min_hops, "min_hops"), mx = hops_arg(max_hops, "max_hops");
    int64_t nn = graph_int(n, "n");
    if (!py::isinstance<py::str>(score))
      throw py::type_error("score must be 'product', 'min' or 'sum', got " +
                           py::repr(score).cast<std::string>());
    std::string sc = score.cast<std::string>();
    PathScore ps_score;
    if (sc == "product") ps_score = PathScore::Product;
    else if (sc == "min") ps_score = PathScore::Min;
    else if (sc == "sum") ps_score = PathScore::Sum;
    else throw py::value_error("score must be 'product', 'min' or 'sum', got '" + sc + "'");
    int64_t s = graph_int(src, "src");
    bool has_dst = !dst.is_none();
    int64_t dd = has_dst ? graph_int(dst, "dst") : 0;
    auto en = opt_ids(ends, "ends");
    PathSet ps = nogil_budget(bud, [&] {
      return g->top_paths(s, mn, mx, d, tf, nn, ps_score, has_dst, dd, en ? &*en : nullptr);
    });
    return path_result(ps, as_arrays);
  }

  py::tuple match_chain(py::handle labels, py::handle types, py::handle directions,
                        py::handle start, py::handle allowed, py::handle distinct,
                        py::handle timeout, py::handle cancel) {
    auto bud = budget_arg(timeout, cancel);
    ChainQuery q;
    for (int64_t l : as_ids(labels, "labels")) {
      if (l < -1 || l > INT32_MAX)
        throw py::value_error("labels must be in [-1, 2147483647], got " + std::to_string(l));
      q.labels.push_back(static_cast<int32_t>(l));
    }
    const std::size_t L = q.labels.size();
    if (L < 2 || L > 4)
      throw py::value_error("labels must have 2 to 4 entries, got " + std::to_string(L));
    auto seq = [&](py::handle h, const char* what, std::size_t want) {
      if (!py::isinstance<py::list>(h) && !py::isinstance<py::tuple>(h))
        throw py::type_error(std::string(what) + " must be a list");
      py::sequence s = py::reinterpret_borrow<py::sequence>(h);
      check_len(s.size(), want, what, want == L ? "len(labels)" : "len(labels) - 1");
      return s;
    };
    if (types.is_none()) {
      q.types.assign(L - 1, TypeFilter());
    } else {
      for (py::handle t : seq(types, "types", L - 1)) q.types.push_back(parse_types(t));
    }
    if (directions.is_none()) {
      q.dirs.assign(L - 1, Dir::Out);
    } else {
      for (py::handle d : seq(directions, "directions", L - 1)) q.dirs.push_back(parse_dir(d));
    }
    if (!start.is_none()) {
      q.has_start = true;
      q.start = as_ids(start, "start");
    }
    if (!allowed.is_none()) {
      for (py::handle a : seq(allowed, "allowed", L)) {
        q.has_allowed.push_back(a.is_none() ? 0 : 1);
        q.allowed.push_back(a.is_none() ? std::vector<int64_t>() : as_ids(a, "allowed"));
      }
    }
    if (!py::isinstance<py::str>(distinct))
      throw py::type_error("distinct must be 'edges' or 'relationships', got " +
                           py::repr(distinct).cast<std::string>());
    std::string dm = distinct.cast<std::string>();
    if (dm == "relationships") q.distinct_relationships = true;
    else if (dm != "edges")
      throw py::value_error("distinct must be 'edges' or 'relationships', got '" + dm + "'");
    ChainResult r = nogil_budget(bud, [&] { return g->match_chain(q); });
    py::array_t<int64_t> nodes(std::vector<std::size_t>{r.rows, r.width});
    py::array_t<int64_t> edges(std::vector<std::size_t>{r.rows, r.width - 1});
    if (!r.nodes.empty()) std::memcpy(nodes.mutable_data(), r.nodes.data(), r.nodes.size() * 8);
    if (!r.edges.empty()) std::memcpy(edges.mutable_data(), r.edges.data(), r.edges.size() * 8);
    return py::make_tuple(nodes, edges);
  }

  void save(py::handle path, bool mappable) {
    std::string p = fspath(path);
    py::gil_scoped_release nogil;
    if (mappable) g->save_mapped(p);
    else g->save(p);
  }

  static PyGraph load(py::handle path_obj) {
    std::string path = fspath(path_obj);
    std::shared_ptr<MappedFile> file;
    {
      py::gil_scoped_release nogil;
      file = std::make_shared<MappedFile>(path);  // mapped, not copied (mapped_file.hpp)
    }
    if (int err = file->error()) {
      errno = err;  // what PyErr_SetFromErrnoWithFilename reports
      PyErr_SetFromErrnoWithFilename(err == ENOENT ? PyExc_FileNotFoundError : PyExc_OSError,
                                     path.c_str());
      throw py::error_already_set();
    }
    PyGraph out;
    py::gil_scoped_release nogil;
    out.g = Hypergraph::open_file(std::move(file), path);  // version 2 stays mapped
    return out;
  }

  std::string repr() const {
    return "Hypergraph(nodes=" + std::to_string(g->num_nodes()) +
           ", edges=" + std::to_string(g->num_edges()) + ", backend='native')";
  }
};

}  // namespace

void bind_hypergraph(py::module_& mod) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const GraphKeyError& e) {
      PyErr_SetString(PyExc_KeyError, e.what());
    } catch (const GraphBadFile& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const GraphValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const Interrupted& e) {
      PyErr_SetString(PyExc_TimeoutError, e.what());
    }
  });
  py::none none;
  py::class_<PyGraph>(mod, "Hypergraph",
                      "Causal hypergraph: CSR incidence both ways, append buffer, traversals.")
      .def(py::init<>())
      .def("add_node", &PyGraph::add_node, py::arg("id"), py::arg("label") = -1,
           "Insert a node or change its label (upsert).")
      .def("add_nodes", &PyGraph::add_nodes, py::arg("ids"), py::arg("labels") = none,
           "Bulk upsert of nodes (labels default to -1).")
      .def("add_edge", &PyGraph::add_edge, py::arg("id"), py::arg("type"), py::arg("tail"),
           py::arg("head"), py::arg("confidence") = 1.0, py::arg("timestamp") = 0.0,
           "Insert a hyperedge tail -> head (edge ids are not upserted).")
      .def("add_edges", &PyGraph::add_edges, py::arg("ids"), py::arg("types"),
           py::arg("tail_offsets"), py::arg("tail_nodes"), py::arg("head_offsets"),
           py::arg("head_nodes"), py::arg("confidences") = none, py::arg("timestamps") = none,
           "Bulk insert, CSR-style offsets; all-or-nothing.")
      .def("remove_node", &PyGraph::remove_node, py::arg("id"),
           "Remove a node and every edge incident to it.")
      .def("remove_edge", &PyGraph::remove_edge, py::arg("id"))
      .def("has_node", &PyGraph::has_node, py::arg("id"))
      .def("has_edge", &PyGraph::has_edge, py::arg("id"))
      .def("node_label", &PyGraph::node_label, py::arg("id"))
      .def("edge", &PyGraph::edge, py::arg("id"),
           "(type, tail ids, head ids, confidence, timestamp)")
      .def("num_nodes", [](PyGraph& p) { return p.nogil([&] { return p.g->num_nodes(); }); })
      .def("num_edges", [](PyGraph& p) { return p.nogil([&] { return p.g->num_edges(); }); })
      .def("node_ids", &PyGraph::node_ids, "Live node ids, ascending.")
      .def("edge_ids", &PyGraph::edge_ids, "Live edge ids, ascending.")
      .def("nodes_with_label", &PyGraph::nodes_with_label, py::arg("label"))
      .def("compact", [](PyGraph& p) { p.nogil([&] { p.g->compact(); }); },
           "Merge the append buffer into the CSR arrays and drop removed items.")
      .def("buffered", [](PyGraph& p) { return p.nogil([&] { return p.g->buffered(); }); },
           "Edges in the append buffer (added since the last compaction).")
      .def("memory_usage",
           [](PyGraph& p) { return p.nogil([&] { return p.g->memory_usage(); }); },
           "Bytes held by the graph.")
      .def("neighbors", &PyGraph::neighbors, py::arg("id"), py::arg("direction") = "out",
           py::arg("types") = none, "One hop: (node ids, edge ids) sorted by (node, edge).")
      .def("khop", &PyGraph::khop, py::arg("seeds"), py::arg("k"), py::arg("direction") = "out",
           py::arg("types") = none, py::kw_only(), py::arg("timeout") = none,
           py::arg("cancel") = none, "k-hop neighbourhood: (node ids, min hops) by node id.")
      .def("khop_batch", &PyGraph::khop_batch, py::arg("seeds"), py::arg("k"),
           py::arg("direction") = "out", py::arg("types") = none, py::kw_only(),
           py::arg("threads") = 0, py::arg("timeout") = none, py::arg("cancel") = none,
           "One k-hop per seed: (offsets, node ids, min hops); seed i's are "
           "[offsets[i], offsets[i+1]).")
      .def("paths", &PyGraph::paths, py::arg("src"), py::arg("min_hops") = 1,
           py::arg("max_hops") = 5, py::arg("direction") = "out", py::arg("types") = none,
           py::arg("dst") = none, py::arg("dst_label") = none, py::arg("src_label") = none,
           py::arg("limit") = 100000, py::arg("ends") = none, py::arg("as_arrays") = false,
           py::kw_only(), py::arg("timeout") = none, py::arg("cancel") = none,
           "Simple paths from src: [(nodes, edges, product, min, sum)] (or flat arrays).")
      .def("path_totals", &PyGraph::path_totals, py::arg("src"), py::arg("min_hops") = 1,
           py::arg("max_hops") = 5, py::arg("direction") = "out", py::arg("types") = none,
           py::arg("dst_label") = none, py::kw_only(), py::arg("timeout") = none,
           py::arg("cancel") = none,
           "(count, sum, min, max) of the confidence products of the simple paths paths() "
           "would give (min/max NaN without a path).")
      .def("paths_to", &PyGraph::paths_to, py::arg("dst"), py::arg("min_hops") = 1,
           py::arg("max_hops") = 5, py::arg("types") = none, py::arg("src_label") = none,
           py::arg("limit") = 100000, py::arg("sources") = none, py::arg("as_arrays") = false,
           py::kw_only(), py::arg("timeout") = none, py::arg("cancel") = none,
           "Simple paths ending at dst, enumerated backwards.")
      .def("top_paths", &PyGraph::top_paths, py::arg("src"), py::arg("min_hops") = 1,
           py::arg("max_hops") = 5, py::arg("direction") = "out", py::arg("types") = none,
           py::arg("n") = 10, py::arg("score") = "product", py::arg("dst") = none,
           py::arg("ends") = none, py::arg("as_arrays") = false, py::kw_only(),
           py::arg("timeout") = none, py::arg("cancel") = none,
           "The n best paths by score (branch-and-bound).")
      .def("match_chain", &PyGraph::match_chain, py::arg("labels"), py::arg("types") = none,
           py::arg("directions") = none, py::arg("start") = none, py::arg("allowed") = none,
           py::arg("distinct") = "edges", py::kw_only(), py::arg("timeout") = none,
           py::arg("cancel") = none,
           "Label chain pattern: (node table (n, L), edge table (n, L-1)).")
      .def("save", &PyGraph::save, py::arg("path"), py::kw_only(), py::arg("mappable") = false,
           "Write the graph to one file (atomic): version 1, or version 2 (read in place by "
           "load) when mappable.")
      .def_static("load", &PyGraph::load, py::arg("path"),
                  "Read a hypergraph file written by either backend (a version-2 file is "
                  "memory-mapped and read in place until the first write).")
      .def("is_mapped", [](PyGraph& p) { return p.nogil([&] { return p.g->mapped(); }); },
           "True while the graph reads a version-2 file in place (until its first write).")
      .def("mapped_resident_bytes",
           [](PyGraph& p) { return p.nogil([&] { return p.g->mapped_resident_bytes(); }); },
           "Bytes of the mapped file in this process's resident set (0 when not mapped).")
      .def("__repr__", &PyGraph::repr);
}

}  // namespace bindings
}  // namespace agentdb
