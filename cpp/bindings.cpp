// pybind11 bindings: the only file that knows Python. Validates input, converts it by one rule
// (np.ascontiguousarray(x, dtype=float32): zero-copy when already so), and releases the GIL
// around every loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "attention.hpp"
#include "exact.hpp"
#include "hnsw.hpp"
#include "hypergraph.hpp"
#include "kernels.hpp"

#ifndef AGENTDB_VERSION
#define AGENTDB_VERSION "0.0.0"
#endif

namespace py = pybind11;
using namespace agentdb;

namespace {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::module_& numpy() {
  // Deliberately leaked: a static py::object would be released after the interpreter is gone.
  static py::module_* np = new py::module_(py::module_::import("numpy"));
  return *np;
}

Metric parse_metric(const std::string& m) {
  if (m == "cosine") return Metric::Cosine;
  if (m == "ip") return Metric::IP;
  if (m == "l2") return Metric::L2;
  throw py::value_error("unknown metric '" + m + "': expected one of 'cosine', 'ip', 'l2'");
}

// The one conversion rule for vectors and matrices.
F32Array as_f32(py::handle obj, const char* what) {
  py::array arr = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                                 : py::array(numpy().attr("asarray")(obj));
  char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(what) + " must be a real numeric array, got dtype " +
                         py::str(arr.dtype()).cast<std::string>());
  }
  return F32Array::ensure(arr);
}

bool all_finite(const float* p, std::size_t n) {
  uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, 4);
    bad |= ((bits & 0x7F800000u) == 0x7F800000u);
  }
  return bad == 0;
}

void require_finite(const F32Array& a, const char* what) {
  if (!all_finite(a.data(), static_cast<std::size_t>(a.size())))
    throw py::value_error(std::string(what) + " contains NaN or infinity");
}

// A (rows, dim) view of a 1-D or 2-D float array. `one` is set for 1-D input.
struct Matrix {
  F32Array arr;
  std::size_t rows = 0, cols = 0;
  bool one = false;
  const float* data() const { return arr.data(); }
};

// `check_finite=false` defers the NaN/inf check for large scanned matrices: a non-finite
// value always yields a non-finite distance, so callers check their (small) results and only
// then scan the input to report it (see finite_or_raise).
Matrix as_matrix(py::handle obj, const char* what, bool check_finite = true) {
  Matrix m{as_f32(obj, what)};
  if (m.arr.ndim() == 1) {
    m.rows = 1;
    m.cols = static_cast<std::size_t>(m.arr.shape(0));
    m.one = true;
  } else if (m.arr.ndim() == 2) {
    m.rows = static_cast<std::size_t>(m.arr.shape(0));
    m.cols = static_cast<std::size_t>(m.arr.shape(1));
  } else {
    throw py::value_error(std::string(what) + " must be 1-D or 2-D, got " +
                          std::to_string(m.arr.ndim()) + "-D");
  }
  if (m.rows == 0 || m.cols == 0) throw py::value_error(std::string(what) + " is empty");
  if (check_finite) require_finite(m.arr, what);
  return m;
}

std::vector<int64_t> as_ids(py::handle obj, const char* what = "ids") {
  if (PyBool_Check(obj.ptr()))
    throw py::type_error(std::string(what) + " must be integers, got bool");
  if (PyLong_Check(obj.ptr())) return {obj.cast<int64_t>()};
  if (PyList_CheckExact(obj.ptr()) || PyTuple_CheckExact(obj.ptr())) {
    // Fast path for short Python sequences of exact ints (no numpy round trip).
    PyObject* seq = obj.ptr();
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject** items = PySequence_Fast_ITEMS(seq);
    std::vector<int64_t> out;
    out.reserve(static_cast<std::size_t>(n));
    bool plain = true;
    for (Py_ssize_t i = 0; i < n && plain; ++i) {
      if (!PyLong_CheckExact(items[i])) {
        plain = false;
        break;
      }
      int overflow = 0;
      long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
      if (overflow) {
        plain = false;  // numpy decides (uint64 or an error naming the problem)
        break;
      }
      out.push_back(v);
    }
    if (plain) return out;
  }
  py::object src = py::reinterpret_borrow<py::object>(obj);
  if (!py::isinstance<py::array>(obj) && !py::isinstance<py::list>(obj) &&
      !py::isinstance<py::tuple>(obj)) {
    if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj))
      throw py::type_error(std::string(what) + " must be integers, got str");
    if (py::hasattr(obj, "__iter__"))
      src = py::module_::import("builtins").attr("list")(obj);  // sets, generators, ...
  }
  py::array arr = numpy().attr("asarray")(src);
  char kind = arr.dtype().kind();
  if (arr.ndim() == 0) arr = arr.attr("reshape")(1);
  if (arr.size() == 0) return {};
  if (kind != 'i' && kind != 'u')
    throw py::type_error(std::string(what) + " must be integers, got dtype " +
                         py::str(arr.dtype()).cast<std::string>());
  if (arr.ndim() > 1) throw py::value_error(std::string(what) + " must be 1-D");
  auto ids = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
  return std::vector<int64_t>(ids.data(), ids.data() + ids.size());
}

py::array_t<float> vector_out(std::vector<std::size_t> shape) {
  return py::array_t<float>(shape);
}

std::string fspath(py::handle path) {
  return py::str(py::module_::import("os").attr("fspath")(path)).cast<std::string>();
}

// ---- module-level kernels ------------------------------------------------------------------

float py_distance(py::handle a, py::handle b, const std::string& metric) {
  Metric m = parse_metric(metric);
  Matrix A = as_matrix(a, "a"), B = as_matrix(b, "b");
  if (!A.one || !B.one) throw py::value_error("distance() takes two 1-D vectors");
  if (A.cols != B.cols)
    throw py::value_error("dimension mismatch: " + std::to_string(A.cols) + " vs " +
                          std::to_string(B.cols));
  return metric_distance(active_kernels(), m, A.data(), B.data(), A.cols);
}

py::array_t<float> py_distances(py::handle q, py::handle x, const std::string& metric,
                                std::size_t threads) {
  Metric m = parse_metric(metric);
  Matrix Q = as_matrix(q, "queries"), X = as_matrix(x, "vectors", false);
  if (Q.cols != X.cols)
    throw py::value_error("dimension mismatch: queries have dim " + std::to_string(Q.cols) +
                          ", vectors have dim " + std::to_string(X.cols));
  py::array_t<float> out = Q.one ? vector_out({X.rows}) : vector_out({Q.rows, X.rows});
  float* o = out.mutable_data();
  bool suspicious;
  {
    py::gil_scoped_release nogil;
    std::size_t t = (Q.rows * X.rows * X.cols < (1u << 20)) ? 1 : threads;
    distance_matrix(active_kernels(), m, Q.data(), Q.rows, X.data(), X.rows, X.cols, o, t);
    suspicious = !all_finite(o, Q.rows * X.rows);
  }
  if (suspicious) require_finite(X.arr, "vectors");
  return out;
}

py::tuple py_exact_search(py::handle q, py::handle x, long k, const std::string& metric,
                          std::size_t threads) {
  Metric m = parse_metric(metric);
  if (k <= 0) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  Matrix Q = as_matrix(q, "queries"), X = as_matrix(x, "vectors", false);
  if (Q.cols != X.cols)
    throw py::value_error("dimension mismatch: queries have dim " + std::to_string(Q.cols) +
                          ", vectors have dim " + std::to_string(X.cols));
  std::size_t kk = static_cast<std::size_t>(k);
  std::vector<std::size_t> shape = Q.one ? std::vector<std::size_t>{kk}
                                         : std::vector<std::size_t>{Q.rows, kk};
  py::array_t<int64_t> ids(shape);
  py::array_t<float> dists(shape);
  int64_t* oi = ids.mutable_data();
  float* od = dists.mutable_data();
  bool suspicious;
  {
    py::gil_scoped_release nogil;
    suspicious = exact_topk(active_kernels(), m, Q.data(), Q.rows, X.data(), X.rows, X.cols,
                            kk, oi, od, threads);
  }
  if (suspicious) require_finite(X.arr, "vectors");
  return py::make_tuple(ids, dists);
}

float py_kernel(const std::string& path, const std::string& name, py::handle a, py::handle b) {
  const KernelTable* t = kernels_for(path.c_str());
  if (!t) throw py::value_error("SIMD path '" + path + "' is not supported on this CPU");
  Matrix A = as_matrix(a, "a"), B = as_matrix(b, "b");
  if (A.cols != B.cols || !A.one || !B.one)
    throw py::value_error("dimension mismatch: " + std::to_string(A.cols) + " vs " +
                          std::to_string(B.cols));
  if (name == "dot") return t->dot(A.data(), B.data(), A.cols);
  if (name == "l2") return t->l2sq(A.data(), B.data(), A.cols);
  if (name == "cosine") return t->cosine(A.data(), B.data(), A.cols);
  if (name == "dot_f16" || name == "l2_f16") {
    // b is rounded to binary16 by the scalar reference conversion, then the path's kernel runs.
    std::vector<uint16_t> hb(B.cols);
    for (std::size_t i = 0; i < B.cols; ++i) hb[i] = float_to_half(B.data()[i]);
    return name == "dot_f16" ? t->dot_f16(A.data(), hb.data(), A.cols)
                             : t->l2sq_f16(A.data(), hb.data(), A.cols);
  }
  if (name == "to_f16") {  // how many values the path converts differently from the reference
    std::vector<uint16_t> hb(B.cols);
    t->to_f16(B.data(), hb.data(), B.cols);
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < B.cols; ++i) mismatches += hb[i] != float_to_half(B.data()[i]);
    return static_cast<float>(mismatches);
  }
  throw py::value_error("unknown kernel '" + name +
                        "': expected 'dot', 'l2', 'cosine', 'dot_f16', 'l2_f16' or 'to_f16'");
}

py::list supported_paths() {
  py::list out;
  for (const char* p : {"scalar", "avx2", "avx512"})
    if (cpu_supports(p)) out.append(p);
  return out;
}

py::dict native_info() {
  py::dict d;
  d["native"] = true;
  d["version"] = AGENTDB_VERSION;
  const char* name = active_kernels().name;
  py::dict simd;
  simd["dot"] = name;
  simd["l2"] = name;
  simd["cosine"] = name;
  d["simd"] = simd;
  d["supported"] = supported_paths();
  d["forced"] = forced_simd() ? py::object(py::str(forced_simd())) : py::object(py::none());
  d["threads"] = hardware_threads();
  d["reason"] = py::none();
  return d;
}

bool parse_precision(const std::string& p) {
  if (p == "mixed") return true;
  if (p == "f32") return false;
  throw py::value_error("precision must be 'mixed' or 'f32', got '" + p + "'");
}

// ---- the index -----------------------------------------------------------------------------

struct PyIndex {
  std::unique_ptr<HNSWIndex> idx;
  std::size_t threads = 0;

  Matrix checked_vectors(py::handle v, const char* what) const {
    Matrix m = as_matrix(v, what);
    if (m.cols != idx->dim())
      throw py::value_error("dimension mismatch: index has dim " + std::to_string(idx->dim()) +
                            ", got " + std::to_string(m.cols));
    return m;
  }

  void add(py::handle ids_obj, py::handle vecs) {
    std::vector<int64_t> ids = as_ids(ids_obj);
    Matrix V = checked_vectors(vecs, "vectors");
    if (ids.size() != V.rows)
      throw py::value_error("got " + std::to_string(ids.size()) + " ids for " +
                            std::to_string(V.rows) + " vectors");
    std::unordered_set<int64_t> seen;
    seen.reserve(ids.size() * 2);
    for (int64_t id : ids) {
      if (id == -1) throw py::value_error("id -1 is reserved (it pads missing results)");
      if (!seen.insert(id).second)
        throw py::value_error("duplicate id " + std::to_string(id) + " in one batch");
    }
    if (idx->metric() == Metric::Cosine) {
      const KernelTable& kt = active_kernels();
      for (std::size_t i = 0; i < V.rows; ++i)
        if (kt.dot(V.data() + i * V.cols, V.data() + i * V.cols, V.cols) == 0.0f)
          throw py::value_error("zero vector (row " + std::to_string(i) + ", id " +
                                std::to_string(ids[i]) +
                                ") cannot be indexed with the cosine metric");
    }
    py::gil_scoped_release nogil;
    idx->add(ids.data(), V.data(), V.rows, V.rows < 64 ? 1 : threads);
  }

  py::tuple search(py::handle q, long k, py::object ef_obj, py::object allowed,
                   py::object predicate) {
    if (k <= 0) throw py::value_error("k must be >= 1, got " + std::to_string(k));
    std::size_t ef = idx->ef_search();
    if (!ef_obj.is_none()) {
      long e = ef_obj.cast<long>();
      if (e <= 0) throw py::value_error("ef must be >= 1, got " + std::to_string(e));
      ef = static_cast<std::size_t>(e);
    }
    Matrix Q = checked_vectors(q, "query");
    if (idx->size() == 0) throw py::value_error("index is empty: add vectors before searching");
    SearchFilter filter;
    bool use_filter = false;
    if (!allowed.is_none()) {
      filter.allowed_ids = as_ids(allowed, "allowed");
      filter.has_allowed = true;
      use_filter = true;
    }
    struct PredState {
      py::object fn;
      std::optional<py::error_already_set> err;
    } state;
    if (!predicate.is_none()) {
      if (!PyCallable_Check(predicate.ptr()))
        throw py::type_error("predicate must be callable: predicate(id) -> bool");
      state.fn = predicate;
      filter.predicate = [&state](int64_t id) -> bool {
        py::gil_scoped_acquire g;
        if (state.err) return false;
        try {
          return py::bool_(state.fn(id)).cast<bool>();
        } catch (py::error_already_set& e) {
          state.err.emplace(std::move(e));
          return false;
        }
      };
      use_filter = true;
    }
    std::size_t kk = static_cast<std::size_t>(k);
    std::vector<std::size_t> shape = Q.one ? std::vector<std::size_t>{kk}
                                           : std::vector<std::size_t>{Q.rows, kk};
    py::array_t<int64_t> ids(shape);
    py::array_t<float> dists(shape);
    int64_t* oi = ids.mutable_data();
    float* od = dists.mutable_data();
    {
      py::gil_scoped_release nogil;
      std::size_t t = (Q.rows < 4 || filter.predicate) ? 1 : threads;
      idx->search(Q.data(), Q.rows, kk, ef, use_filter ? &filter : nullptr, oi, od, t);
    }
    if (state.err) throw *state.err;
    return py::make_tuple(ids, dists);
  }

  void remove(py::handle ids_obj) {
    std::vector<int64_t> ids = as_ids(ids_obj);
    py::gil_scoped_release nogil;
    idx->remove(ids.data(), ids.size());
  }

  static int64_t as_one_id(py::handle id_obj) {
    if (PyLong_Check(id_obj.ptr()) && !PyBool_Check(id_obj.ptr())) return id_obj.cast<int64_t>();
    if (py::isinstance<py::list>(id_obj) || py::isinstance<py::tuple>(id_obj) ||
        py::isinstance<py::str>(id_obj))
      throw py::type_error("id must be an integer");
    std::vector<int64_t> v = as_ids(id_obj, "id");
    if (v.size() != 1) throw py::type_error("id must be an integer");
    return v[0];
  }

  py::array_t<float> get_vector(py::handle id_obj) {
    int64_t id = as_one_id(id_obj);
    py::array_t<float> out(std::vector<std::size_t>{idx->dim()});
    idx->get_vector(id, out.mutable_data());
    return out;
  }

  bool contains(py::handle id_obj) {
    try {
      return idx->contains(as_one_id(id_obj));
    } catch (py::type_error&) {
      return false;
    } catch (py::error_already_set&) {
      return false;
    }
  }

  py::array_t<int64_t> ids() {
    std::vector<int64_t> v = idx->ids();
    py::array_t<int64_t> out(std::vector<std::size_t>{v.size()});
    if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * 8);
    return out;
  }

  void save(py::handle path) {
    std::string p = fspath(path);
    py::gil_scoped_release nogil;
    idx->save(p);
  }

  static PyIndex load(py::handle path_obj, std::size_t threads, const std::string& precision) {
    bool mixed = parse_precision(precision);
    std::string path = fspath(path_obj);
    FILE* fp = std::fopen(path.c_str(), "rb");
    if (!fp) {
      int err = errno;
      PyErr_SetFromErrnoWithFilename(err == ENOENT ? PyExc_FileNotFoundError : PyExc_OSError,
                                     path.c_str());
      throw py::error_already_set();
    }
    std::vector<unsigned char> buf;
    {
      py::gil_scoped_release nogil;
      std::fseek(fp, 0, SEEK_END);
      long size = std::ftell(fp);
      std::fseek(fp, 0, SEEK_SET);
      buf.resize(size > 0 ? static_cast<std::size_t>(size) : 0);
      std::size_t got = buf.empty() ? 0 : std::fread(buf.data(), 1, buf.size(), fp);
      std::fclose(fp);
      buf.resize(got);
    }
    PyIndex out;
    out.threads = threads;
    {
      py::gil_scoped_release nogil;
      out.idx = HNSWIndex::from_bytes(buf.data(), buf.size(), path, threads, mixed);
    }
    return out;
  }

  std::string repr() const {
    std::ostringstream s;
    s << "HNSWIndex(dim=" << idx->dim() << ", metric='" << metric_name(idx->metric())
      << "', M=" << idx->M() << ", len=" << idx->size() << ", backend='native')";
    return s.str();
  }
};

PyIndex make_index(long dim, const std::string& metric, long M, long efc, long ef, long capacity,
                   long threads, uint64_t seed, const std::string& precision) {
  bool mixed = parse_precision(precision);
  Metric m = parse_metric(metric);
  if (dim < 1) throw py::value_error("dim must be >= 1, got " + std::to_string(dim));
  if (M < 2 || M > 2048) throw py::value_error("M must be in [2, 2048], got " + std::to_string(M));
  if (efc < 1)
    throw py::value_error("ef_construction must be >= 1, got " + std::to_string(efc));
  if (ef < 1) throw py::value_error("ef_search must be >= 1, got " + std::to_string(ef));
  if (capacity < 1) throw py::value_error("capacity must be >= 1, got " + std::to_string(capacity));
  if (threads < 0) throw py::value_error("threads must be >= 0, got " + std::to_string(threads));
  PyIndex p;
  p.idx = std::make_unique<HNSWIndex>(dim, m, M, efc, ef, capacity, seed, mixed);
  p.threads = static_cast<std::size_t>(threads);
  return p;
}

}  // namespace

// ---- hypergraph ----------------------------------------------------------------------------
// agentdb._native.Hypergraph (spec_graph.md). Arguments are converted and shape-checked here;
// graph-dependent checks (unknown ids, duplicates) happen in cpp/hypergraph.hpp under its lock.
namespace {

int64_t graph_int(py::handle h, const char* what) {
  if (PyBool_Check(h.ptr())) throw py::type_error(std::string(what) + " must be an int, got bool");
  PyObject* idx = PyNumber_Index(h.ptr());
  if (!idx) {
    PyErr_Clear();
    throw py::type_error(std::string(what) + " must be an int, got " +
                         std::string(Py_TYPE(h.ptr())->tp_name));
  }
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
  Py_DECREF(idx);
  if (overflow) throw py::value_error(std::string(what) + " does not fit in int64");
  return static_cast<int64_t>(v);
}

int32_t graph_i32(py::handle h, const char* what, int64_t lo) {
  int64_t v = graph_int(h, what);
  if (v < lo || v > INT32_MAX)
    throw py::value_error(std::string(what) + " must be in [" + std::to_string(lo) +
                          ", 2147483647], got " + std::to_string(v));
  return static_cast<int32_t>(v);
}

double graph_float(py::handle h, const char* what) {
  if (PyBool_Check(h.ptr()) || py::isinstance<py::str>(h) || py::isinstance<py::bytes>(h))
    throw py::type_error(std::string(what) + " must be a real number");
  double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(std::string(what) + " must be a real number");
  }
  return v;
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
    py::gil_scoped_release nogil;
    return g->has_node(i);
  }
  bool has_edge(py::handle id) {
    int64_t i = graph_int(id, "id");
    py::gil_scoped_release nogil;
    return g->has_edge(i);
  }
  int node_label(py::handle id) {
    int64_t i = graph_int(id, "id");
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

  py::tuple khop(py::handle seeds, py::handle k, py::handle direction, py::handle types) {
    Dir d = parse_dir(direction);
    TypeFilter tf = parse_types(types);
    int64_t kk = graph_int(k, "k");
    std::vector<int64_t> s = as_ids(seeds, "seeds");
    std::vector<int64_t> nodes;
    std::vector<int32_t> hops;
    {
      py::gil_scoped_release nogil;
      g->khop(s.data(), s.size(), kk, d, tf, nodes, hops);
    }
    return py::make_tuple(to_array(nodes), to_array(hops));
  }

  static int64_t hops_arg(py::handle h, const char* what) { return graph_int(h, what); }

  py::object paths(py::handle src, py::handle min_hops, py::handle max_hops,
                   py::handle direction, py::handle types, py::handle dst, py::handle dst_label,
                   py::handle src_label, py::handle limit, py::handle ends,
                   py::handle as_arrays) {
    PathQuery q;
    q.dir = parse_dir(direction);
    q.types = parse_types(types);
    q.min_hops = hops_arg(min_hops, "min_hops");
    q.max_hops = hops_arg(max_hops, "max_hops");
    q.limit = graph_int(limit, "limit");
    q.src = graph_int(src, "src");
    if (!dst.is_none()) {
      q.has_dst = true;
      q.dst = graph_int(dst, "dst");
    }
    if (auto l = opt_label(dst_label, "dst_label")) {
      q.has_dst_label = true;
      q.dst_label = *l;
    }
    if (auto l = opt_label(src_label, "src_label")) {
      q.has_src_label = true;
      q.src_label = *l;
    }
    if (auto e = opt_ids(ends, "ends")) {
      q.has_ends = true;
      q.ends = std::move(*e);
    }
    PathSet ps = nogil([&] { return g->paths(q); });
    return path_result(ps, as_arrays);
  }

  py::object paths_to(py::handle dst, py::handle min_hops, py::handle max_hops,
                      py::handle types, py::handle src_label, py::handle limit,
                      py::handle sources, py::handle as_arrays) {
    TypeFilter tf = parse_types(types);
    int64_t mn = hops_arg(min_hops, "min_hops"), mx = hops_arg(max_hops, "max_hops");
    int64_t lim = graph_int(limit, "limit");
    int64_t d = graph_int(dst, "dst");
    auto sl = opt_label(src_label, "src_label");
    auto srcs = opt_ids(sources, "sources");
    PathSet ps = nogil([&] {
      return g->paths_to(d, mn, mx, tf, sl.has_value(), sl.value_or(-1), lim,
                         srcs ? &*srcs : nullptr);
    });
    return path_result(ps, as_arrays);
  }

  py::object top_paths(py::handle src, py::handle min_hops, py::handle max_hops,
                       py::handle direction, py::handle types, py::handle n, py::handle score,
                       py::handle dst, py::handle ends, py::handle as_arrays) {
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
    PathSet ps = nogil([&] {
      return g->top_paths(s, mn, mx, d, tf, nn, ps_score, has_dst, dd, en ? &*en : nullptr);
    });
    return path_result(ps, as_arrays);
  }

  py::tuple match_chain(py::handle labels, py::handle types, py::handle directions,
                        py::handle start, py::handle allowed, py::handle distinct) {
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
    ChainResult r = nogil([&] { return g->match_chain(q); });
    py::array_t<int64_t> nodes(std::vector<std::size_t>{r.rows, r.width});
    py::array_t<int64_t> edges(std::vector<std::size_t>{r.rows, r.width - 1});
    if (!r.nodes.empty()) std::memcpy(nodes.mutable_data(), r.nodes.data(), r.nodes.size() * 8);
    if (!r.edges.empty()) std::memcpy(edges.mutable_data(), r.edges.data(), r.edges.size() * 8);
    return py::make_tuple(nodes, edges);
  }

  void save(py::handle path) {
    std::string p = fspath(path);
    py::gil_scoped_release nogil;
    g->save(p);
  }

  static PyGraph load(py::handle path_obj) {
    std::string path = fspath(path_obj);
    FILE* fp = std::fopen(path.c_str(), "rb");
    if (!fp) {
      int err = errno;
      PyErr_SetFromErrnoWithFilename(err == ENOENT ? PyExc_FileNotFoundError : PyExc_OSError,
                                     path.c_str());
      throw py::error_already_set();
    }
    PyGraph out;
    py::gil_scoped_release nogil;
    std::vector<unsigned char> buf;
    std::fseek(fp, 0, SEEK_END);
    long size = std::ftell(fp);
    std::fseek(fp, 0, SEEK_SET);
    buf.resize(size > 0 ? static_cast<std::size_t>(size) : 0);
    std::size_t got = buf.empty() ? 0 : std::fread(buf.data(), 1, buf.size(), fp);
    std::fclose(fp);
    buf.resize(got);
    out.g = Hypergraph::from_bytes(buf.data(), buf.size(), path);
    return out;
  }

  std::string repr() const {
    return "Hypergraph(nodes=" + std::to_string(g->num_nodes()) +
           ", edges=" + std::to_string(g->num_edges()) + ", backend='native')";
  }
};

void register_hypergraph(py::module_& mod) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const GraphKeyError& e) {
      PyErr_SetString(PyExc_KeyError, e.what());
    } catch (const GraphBadFile& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const GraphValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
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
           py::arg("types") = none, "k-hop neighbourhood: (node ids, min hops) by node id.")
      .def("paths", &PyGraph::paths, py::arg("src"), py::arg("min_hops") = 1,
           py::arg("max_hops") = 5, py::arg("direction") = "out", py::arg("types") = none,
           py::arg("dst") = none, py::arg("dst_label") = none, py::arg("src_label") = none,
           py::arg("limit") = 100000, py::arg("ends") = none, py::arg("as_arrays") = false,
           "Simple paths from src: [(nodes, edges, product, min, sum)] (or flat arrays).")
      .def("paths_to", &PyGraph::paths_to, py::arg("dst"), py::arg("min_hops") = 1,
           py::arg("max_hops") = 5, py::arg("types") = none, py::arg("src_label") = none,
           py::arg("limit") = 100000, py::arg("sources") = none, py::arg("as_arrays") = false,
           "Simple paths ending at dst, enumerated backwards.")
      .def("top_paths", &PyGraph::top_paths, py::arg("src"), py::arg("min_hops") = 1,
           py::arg("max_hops") = 5, py::arg("direction") = "out", py::arg("types") = none,
           py::arg("n") = 10, py::arg("score") = "product", py::arg("dst") = none,
           py::arg("ends") = none, py::arg("as_arrays") = false,
           "The n best paths by score (branch-and-bound).")
      .def("match_chain", &PyGraph::match_chain, py::arg("labels"), py::arg("types") = none,
           py::arg("directions") = none, py::arg("start") = none, py::arg("allowed") = none,
           py::arg("distinct") = "edges",
           "Label chain pattern: (node table (n, L), edge table (n, L-1)).")
      .def("save", &PyGraph::save, py::arg("path"), "Write the graph to one file (atomic).")
      .def_static("load", &PyGraph::load, py::arg("path"),
                  "Read a hypergraph file written by either backend.")
      .def("__repr__", &PyGraph::repr);
}

}  // namespace

// ---- attention -----------------------------------------------------------------------------
// agentdb._native.{sdpa, multi_head_attention, flash_attention, hyperbolic_attention,
// moe_gating}: the API, results and errors of python/agentdb/_numpy_attention.py. Keys and
// values are not scanned for NaN/inf up front (a non-finite input always gives a non-finite
// logit or output, which is checked; then the inputs are scanned to name the culprit).
namespace {

std::size_t attn_threads(py::handle h) {
  int64_t t = graph_int(h, "threads");
  if (t < 0)
    throw py::value_error("threads must be >= 0 (0 = all cores), got " + std::to_string(t));
  return static_cast<std::size_t>(t);
}

double attn_positive(py::handle h, const char* what, bool allow_zero = false) {
  double v = graph_float(h, what);
  if (!std::isfinite(v) || v < 0.0 || (v == 0.0 && !allow_zero))
    throw py::value_error(std::string(what) + " must be a finite number " +
                          (allow_zero ? ">= 0" : "> 0") + ", got " +
                          py::repr(h).cast<std::string>());
  return v;
}

Matrix attn_rows(py::handle obj, const char* what, bool check_finite) {
  Matrix m = as_matrix(obj, what, check_finite);
  if (m.one)
    throw py::value_error(std::string(what) + " must be 2-D (rows, dim), got 1-D");
  return m;
}

struct AttnIn {
  Matrix Q, K, V;
};

AttnIn attn_inputs(py::handle q, py::handle k, py::handle v, bool check_finite) {
  AttnIn in{as_matrix(q, "queries"), attn_rows(k, "keys", check_finite),
            attn_rows(v, "values", check_finite)};
  if (in.Q.cols != in.K.cols)
    throw py::value_error("dimension mismatch: queries have dim " + std::to_string(in.Q.cols) +
                          ", keys have dim " + std::to_string(in.K.cols));
  if (in.K.rows != in.V.rows)
    throw py::value_error("keys and values must have the same number of rows, got " +
                          std::to_string(in.K.rows) + " keys and " + std::to_string(in.V.rows) +
                          " values");
  return in;
}

std::size_t attn_work_threads(const AttnIn& in, std::size_t threads) {
  double work = double(in.Q.rows) * double(in.K.rows) * double(in.K.cols + in.V.cols);
  return work < double(1 << 22) ? 1 : threads;  // below ~0.2 ms one thread is as fast
}

// After a failed run: name a non-finite input, else report the overflow.
[[noreturn]] void attn_nonfinite(const AttnIn& in) {
  require_finite(in.K.arr, "keys");
  require_finite(in.V.arr, "values");
  throw py::value_error(
      "attention produced NaN or infinity: logits or values overflow float32 (scale them down)");
}

py::object dot_attention(py::handle q, py::handle k, py::handle v, std::size_t heads,
                         py::handle scale_obj, bool want_weights, std::size_t block,
                         py::handle threads_obj, bool head_axis) {
  std::size_t threads = attn_threads(threads_obj);
  AttnIn in = attn_inputs(q, k, v, false);
  if (in.Q.cols % heads != 0)
    throw py::value_error("heads=" + std::to_string(heads) + " does not divide the query/key dim " +
                          std::to_string(in.Q.cols));
  if (in.V.cols % heads != 0)
    throw py::value_error("heads=" + std::to_string(heads) + " does not divide the value dim " +
                          std::to_string(in.V.cols));
  AttnProblem p;
  p.Q = in.Q.data(), p.m = in.Q.rows, p.ldq = in.Q.cols;
  p.K = in.K.data(), p.n = in.K.rows, p.ldk = in.K.cols;
  p.V = in.V.data(), p.ldv = in.V.cols;
  p.d = in.Q.cols / heads, p.dv = in.V.cols / heads, p.heads = heads;
  double scale = scale_obj.is_none() ? 1.0 / std::sqrt(double(p.d))
                                     : attn_positive(scale_obj, "scale");
  py::array_t<float> out = in.Q.one ? vector_out({in.V.cols}) : vector_out({p.m, in.V.cols});
  p.O = out.mutable_data(), p.ldo = in.V.cols;
  py::array_t<float> weights;
  if (want_weights) {
    std::vector<std::size_t> shape;
    if (head_axis) shape.push_back(heads);
    if (!in.Q.one) shape.push_back(p.m);
    shape.push_back(p.n);
    weights = vector_out(shape);
    p.W = weights.mutable_data();
  }
  bool ok;
  {
    py::gil_scoped_release nogil;
    const AttnKernels& ak = active_attn_kernels();
    DotLogits logits{&ak, &p};
    ok = attend(ak, p, logits, static_cast<float>(scale), block, nullptr,
                attn_work_threads(in, threads));
    ok = ok && all_finite(p.O, p.m * in.V.cols);
  }
  if (!ok) attn_nonfinite(in);
  if (want_weights) return py::make_tuple(out, weights);
  return std::move(out);
}

py::object py_sdpa(py::handle q, py::handle k, py::handle v, py::handle scale,
                   bool return_weights, py::handle threads) {
  return dot_attention(q, k, v, 1, scale, return_weights, 0, threads, false);
}

py::object py_mha(py::handle q, py::handle k, py::handle v, py::handle heads_obj,
                  py::handle scale, bool return_weights, py::handle threads) {
  int64_t heads = graph_int(heads_obj, "heads");
  if (heads < 1) throw py::value_error("heads must be >= 1, got " + std::to_string(heads));
  return dot_attention(q, k, v, static_cast<std::size_t>(heads), scale, return_weights, 0,
                       threads, true);
}

py::object py_flash(py::handle q, py::handle k, py::handle v, py::handle scale,
                    py::handle block_obj, py::handle threads) {
  int64_t block = graph_int(block_obj, "block_size");
  if (block < 1) throw py::value_error("block_size must be >= 1, got " + std::to_string(block));
  return dot_attention(q, k, v, 1, scale, false, static_cast<std::size_t>(block), threads, false);
}

constexpr double kBallMargin = 1e-6;  // inputs need c|x|^2 <= 1 - kBallMargin
constexpr double kBallClip = 1e-5;    // outputs: tanh(sqrt(c)|u|) clipped to 1 - kBallClip

// 1 - c|x|^2 of every row (the squared norms computed without the GIL), checking that each
// row is strictly inside the ball.
std::vector<double> ball_gaps(const KernelTable& kt, const Matrix& X, double c, const char* what) {
  std::vector<double> gap(X.rows);
  {
    py::gil_scoped_release nogil;
    for (std::size_t i = 0; i < X.rows; ++i) {
      const float* x = X.data() + i * X.cols;
      gap[i] = 1.0 - c * kt.dot(x, x, X.cols);
    }
  }
  for (std::size_t i = 0; i < X.rows; ++i) {
    if (!(gap[i] >= kBallMargin)) {
      std::ostringstream msg;
      msg << what << " row " << i << " is not strictly inside the Poincare ball of curvature c="
          << c << " (c*|x|^2 = " << 1.0 - gap[i] << ", must be <= 1 - 1e-6); map Euclidean "
          << "vectors into the ball with expmap0() or project()";
      throw py::value_error(msg.str());
    }
  }
  return gap;
}

py::object py_hyperbolic(py::handle q, py::handle k, py::handle v, py::handle c_obj,
                         py::handle beta_obj, bool return_weights, py::handle threads_obj) {
  std::size_t threads = attn_threads(threads_obj);
  double c = attn_positive(c_obj, "c");
  double beta = attn_positive(beta_obj, "beta", true);
  AttnIn in = attn_inputs(q, k, v, true);
  const KernelTable& kt = active_kernels();
  std::vector<double> bq = ball_gaps(kt, in.Q, c, "queries");
  std::vector<double> bk = ball_gaps(kt, in.K, c, "keys");
  const bool v_is_k = in.V.data() == in.K.data() && in.V.cols == in.K.cols;  // memories as both
  std::vector<double> bv = v_is_k ? bk : ball_gaps(kt, in.V, c, "values");
  const double sc = std::sqrt(c);
  std::vector<float> lam(in.V.rows);  // log0(v) = lam * v
  for (std::size_t j = 0; j < in.V.rows; ++j) {
    double r = sc * std::sqrt(std::max(0.0, (1.0 - bv[j]) / c));
    lam[j] = r > 0.0 ? static_cast<float>(std::atanh(r) / r) : 1.0f;
  }
  AttnProblem p;
  p.Q = in.Q.data(), p.m = in.Q.rows, p.ldq = in.Q.cols;
  p.K = in.K.data(), p.n = in.K.rows, p.ldk = in.K.cols;
  p.V = in.V.data(), p.ldv = in.V.cols;
  p.d = in.Q.cols, p.dv = in.V.cols;
  py::array_t<float> out = in.Q.one ? vector_out({p.dv}) : vector_out({p.m, p.dv});
  p.O = out.mutable_data(), p.ldo = p.dv;
  py::array_t<float> weights;
  if (return_weights) {
    weights = in.Q.one ? vector_out({p.n}) : vector_out({p.m, p.n});
    p.W = weights.mutable_data();
  }
  bool ok;
  {
    py::gil_scoped_release nogil;
    std::vector<float> qn(bq.size()), kn(bk.size()), bk_inv(bk.size());
    for (std::size_t i = 0; i < bq.size(); ++i) qn[i] = static_cast<float>((1.0 - bq[i]) / c);
    for (std::size_t j = 0; j < bk.size(); ++j) {
      kn[j] = static_cast<float>((1.0 - bk[j]) / c);
      bk_inv[j] = static_cast<float>(1.0 / bk[j]);
    }
    const AttnKernels& ak = active_attn_kernels();
    HyperbolicLogits logits{&ak, &kt, &p, qn.data(), kn.data(), bq.data(), bk_inv.data(), c, beta};
    ok = attend(ak, p, logits, 1.0f, 0, lam.data(), attn_work_threads(in, threads));
    for (std::size_t i = 0; i < p.m; ++i) {  // exp0 of the tangent-space mean, clipped
      float* u = p.O + i * p.dv;
      double nu = 0.0;
      for (std::size_t col = 0; col < p.dv; ++col) nu += double(u[col]) * u[col];
      nu = std::sqrt(nu);
      double f = nu > 0.0 ? std::min(std::tanh(sc * nu), 1.0 - kBallClip) / (sc * nu) : 0.0;
      for (std::size_t col = 0; col < p.dv; ++col) u[col] = static_cast<float>(u[col] * f);
    }
    ok = ok && all_finite(p.O, p.m * p.dv);
  }
  if (!ok) attn_nonfinite(in);
  if (return_weights) return py::make_tuple(out, weights);
  return std::move(out);
}

py::tuple py_moe(py::handle x, py::handle gate, py::handle k_obj, py::handle bias_obj,
                 py::handle threads_obj) {
  std::size_t threads = attn_threads(threads_obj);
  int64_t k = graph_int(k_obj, "k");
  Matrix X = as_matrix(x, "x");
  Matrix Wg = attn_rows(gate, "gate", true);
  if (Wg.rows != X.cols)
    throw py::value_error("dimension mismatch: x has dim " + std::to_string(X.cols) +
                          ", gate has " + std::to_string(Wg.rows) +
                          " rows (expected (dim, experts))");
  const std::size_t E = Wg.cols;
  if (k < 1 || static_cast<std::size_t>(k) > E)
    throw py::value_error("k must be in [1, " + std::to_string(E) +
                          "] (the number of experts), got " + std::to_string(k));
  std::optional<Matrix> B;
  if (!bias_obj.is_none()) {
    B = as_matrix(bias_obj, "bias");
    if (!B->one || B->cols != E)
      throw py::value_error("bias must have shape (" + std::to_string(E) + ",), got " +
                            py::repr(B->arr.attr("shape")).cast<std::string>());
  }
  const std::size_t kk = static_cast<std::size_t>(k);
  std::vector<std::size_t> shape = X.one ? std::vector<std::size_t>{kk}
                                         : std::vector<std::size_t>{X.rows, kk};
  py::array_t<int64_t> ids(shape);
  py::array_t<float> w(shape);
  bool ok;
  {
    py::gil_scoped_release nogil;
    std::vector<float> Wt(E * X.cols);
    for (std::size_t r = 0; r < X.cols; ++r)
      for (std::size_t e = 0; e < E; ++e) Wt[e * X.cols + r] = Wg.data()[r * E + e];
    std::size_t t = X.rows * E * X.cols < (1u << 24) ? 1 : threads;  // ~1 ms of work
    ok = moe_topk(active_attn_kernels(), X.data(), X.rows, X.cols, Wt.data(), E,
                  B ? B->data() : nullptr, kk, ids.mutable_data(), w.mutable_data(), t);
  }
  if (!ok) throw py::value_error("gate logits overflow float32 (scale x or gate down)");
  return py::make_tuple(ids, w);
}

void register_attention(py::module_& mod) {
  py::none none;
  mod.def("sdpa", &py_sdpa, py::arg("queries"), py::arg("keys"), py::arg("values"),
          py::kw_only(), py::arg("scale") = none, py::arg("return_weights") = false,
          py::arg("threads") = 0,
          "softmax(Q K^T * scale) V (scale defaults to 1/sqrt(d)); optionally the weights.");
  mod.def("multi_head_attention", &py_mha, py::arg("queries"), py::arg("keys"),
          py::arg("values"), py::kw_only(), py::arg("heads"), py::arg("scale") = none,
          py::arg("return_weights") = false, py::arg("threads") = 0,
          "Per-head attention on column slices, outputs concatenated; weights (h, m, n).");
  mod.def("flash_attention", &py_flash, py::arg("queries"), py::arg("keys"), py::arg("values"),
          py::kw_only(), py::arg("scale") = none, py::arg("block_size") = 256,
          py::arg("threads") = 0,
          "sdpa computed over key blocks with the online softmax (no m x n matrix).");
  mod.def("hyperbolic_attention", &py_hyperbolic, py::arg("queries"), py::arg("keys"),
          py::arg("values"), py::kw_only(), py::arg("c") = 1.0, py::arg("beta") = 1.0,
          py::arg("return_weights") = false, py::arg("threads") = 0,
          "Poincare-ball attention: softmax(-beta d_c(q, k)), exp0(sum w log0(v)).");
  mod.def("moe_gating", &py_moe, py::arg("x"), py::arg("gate"), py::kw_only(), py::arg("k") = 2,
          py::arg("bias") = none, py::arg("threads") = 0,
          "Top-k experts of x @ gate + bias per row: (ids int64, softmax weights float32).");
}

}  // namespace

PYBIND11_MODULE(_native, mod) {
  mod.doc() = "AgentDB native core: SIMD distance kernels, exact top-k and an HNSW index.";
  mod.attr("__version__") = AGENTDB_VERSION;
  mod.attr("VERSION") = AGENTDB_VERSION;
  mod.attr("BACKEND") = "native";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const UnknownId& e) {
      PyErr_SetString(PyExc_KeyError, e.what());
    } catch (const BadFile& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  mod.def("distance", &py_distance, py::arg("a"), py::arg("b"), py::arg("metric") = "cosine",
          "Distance between two 1-D vectors: 'cosine' (1 - cos), 'ip' (1 - dot), 'l2' "
          "(squared).");
  mod.def("distances", &py_distances, py::arg("q"), py::arg("X"), py::arg("metric") = "cosine",
          py::arg("threads") = 0,
          "Distances from q (1-D or 2-D) to every row of X: shape (n,) or (m, n).");
  mod.def("exact_search", &py_exact_search, py::arg("queries"), py::arg("X"), py::arg("k") = 10,
          py::arg("metric") = "cosine", py::arg("threads") = 0,
          "Exact top-k rows of X for each query: (ids int64, distances float32).");
  mod.def("native_info", &native_info, "Which backend, version and SIMD path are in use.");
  mod.def("_kernel", &py_kernel, py::arg("path"), py::arg("name"), py::arg("a"), py::arg("b"),
          "Evaluate one kernel on a named SIMD path (tests hold each path to 'scalar').");
  mod.def(
      "_set_simd",
      [](const std::string& path) {
        if (!set_active_kernels(path.c_str()))
          throw py::value_error("SIMD path '" + path + "' is not supported on this CPU");
      },
      py::arg("path"), "Switch the active kernel path (indexes created later use it).");

  py::class_<PyIndex>(mod, "HNSWIndex", "HNSW approximate nearest-neighbour index.")
      .def(py::init(&make_index), py::arg("dim"), py::arg("metric") = "cosine",
           py::arg("M") = 16, py::arg("ef_construction") = 200, py::arg("ef_search") = 64,
           py::arg("capacity") = 1024, py::arg("threads") = 0, py::arg("seed") = 42,
           py::arg("precision") = "mixed")
      .def_property_readonly("dim", [](const PyIndex& p) { return p.idx->dim(); })
      .def_property_readonly("metric",
                             [](const PyIndex& p) { return metric_name(p.idx->metric()); })
      .def_property_readonly("M", [](const PyIndex& p) { return p.idx->M(); })
      .def_property_readonly("ef_construction",
                             [](const PyIndex& p) { return p.idx->ef_construction(); })
      .def_property(
          "ef_search", [](const PyIndex& p) { return p.idx->ef_search(); },
          [](PyIndex& p, long ef) {
            if (ef < 1) throw py::value_error("ef_search must be >= 1, got " + std::to_string(ef));
            p.idx->set_ef_search(static_cast<std::size_t>(ef));
          })
      .def_property_readonly("capacity", [](const PyIndex& p) { return p.idx->capacity(); })
      .def_property(
          "threads", [](const PyIndex& p) { return p.threads; },
          [](PyIndex& p, long t) {
            if (t < 0) throw py::value_error("threads must be >= 0, got " + std::to_string(t));
            p.threads = static_cast<std::size_t>(t);
          })
      .def_property_readonly("backend", [](const PyIndex&) { return "native"; })
      .def_property_readonly("simd", [](const PyIndex& p) { return p.idx->simd(); })
      .def_property_readonly("precision", [](const PyIndex& p) { return p.idx->precision(); })
      .def("add", &PyIndex::add, py::arg("ids"), py::arg("vectors"),
           "Insert or replace vectors (upsert by id).")
      .def("search", &PyIndex::search, py::arg("queries"), py::arg("k") = 10, py::kw_only(),
           py::arg("ef") = py::none(), py::arg("allowed") = py::none(),
           py::arg("predicate") = py::none(),
           "k nearest neighbours: (ids, distances), padded with -1/+inf.")
      .def("remove", &PyIndex::remove, py::arg("ids"), "Tombstone ids (KeyError if unknown).")
      .def("get_vector", &PyIndex::get_vector, py::arg("id"), "The stored vector of an id.")
      .def("contains", &PyIndex::contains, py::arg("id"))
      .def("__contains__", &PyIndex::contains)
      .def("__len__", [](const PyIndex& p) { return p.idx->size(); })
      .def("ids", &PyIndex::ids, "Live ids, ascending.")
      .def("memory_usage", [](const PyIndex& p) { return p.idx->memory_usage(); },
           "Bytes held by the index.")
      .def("save", &PyIndex::save, py::arg("path"), "Write the index to one file (atomic).")
      .def_static("load", &PyIndex::load, py::arg("path"), py::arg("threads") = 0,
                  py::arg("precision") = "mixed",
                  "Read an index file written by either backend.")
      .def("__repr__", &PyIndex::repr);

  register_hypergraph(mod);  // ---- hypergraph ----
  register_attention(mod);   // ---- attention ----
}
