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

#include "exact.hpp"
#include "hnsw.hpp"
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

Matrix as_matrix(py::handle obj, const char* what) {
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
  require_finite(m.arr, what);
  return m;
}

std::vector<int64_t> as_ids(py::handle obj, const char* what = "ids") {
  if (PyBool_Check(obj.ptr()))
    throw py::type_error(std::string(what) + " must be integers, got bool");
  if (PyLong_Check(obj.ptr())) return {obj.cast<int64_t>()};
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
  Matrix Q = as_matrix(q, "queries"), X = as_matrix(x, "vectors");
  if (Q.cols != X.cols)
    throw py::value_error("dimension mismatch: queries have dim " + std::to_string(Q.cols) +
                          ", vectors have dim " + std::to_string(X.cols));
  py::array_t<float> out = Q.one ? vector_out({X.rows}) : vector_out({Q.rows, X.rows});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    std::size_t t = (Q.rows * X.rows * X.cols < (1u << 20)) ? 1 : threads;
    distance_matrix(active_kernels(), m, Q.data(), Q.rows, X.data(), X.rows, X.cols, o, t);
  }
  return out;
}

py::tuple py_exact_search(py::handle q, py::handle x, long k, const std::string& metric,
                          std::size_t threads) {
  Metric m = parse_metric(metric);
  if (k <= 0) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  Matrix Q = as_matrix(q, "queries"), X = as_matrix(x, "vectors");
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
  {
    py::gil_scoped_release nogil;
    exact_topk(active_kernels(), m, Q.data(), Q.rows, X.data(), X.rows, X.cols, kk, oi, od,
               threads);
  }
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
}
