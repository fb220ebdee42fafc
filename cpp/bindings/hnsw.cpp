// agentdb._native.HNSWIndex: the Python face of cpp/hnsw.hpp. Arguments are validated and
// converted here (ids, vectors, filters, the predicate, which is called back with the GIL held);
// the index itself runs without the GIL. UnknownId -> KeyError, BadFile -> ValueError.
#include <cerrno>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "common.hpp"
#include "hnsw.hpp"
#include "mapped_file.hpp"

namespace agentdb {
namespace bindings {
namespace {

Precision parse_precision(const std::string& p) {
  if (p == "mixed") return Precision::Mixed;
  if (p == "f32") return Precision::F32;
  if (p == "int8") return Precision::Int8;
  throw py::value_error("precision must be 'mixed', 'f32' or 'int8', got '" + p + "'");
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
      // The index normalises (in double when float32's sum of squares would under- or
      // overflow) and keeps the norm as a float32: zero, and norms outside float32's normal
      // range, are refused here.
      const KernelTable& kt = active_kernels();
      for (std::size_t i = 0; i < V.rows; ++i) {
        const float* row = V.data() + i * V.cols;
        float ss = kt.dot(row, row, V.cols);
        if (HNSWIndex::in_float_range(ss)) continue;
        double nrm = HNSWIndex::wide_norm(row, V.cols);
        std::string where = "(row " + std::to_string(i) + ", id " + std::to_string(ids[i]) + ")";
        if (nrm == 0.0)
          throw py::value_error("zero vector " + where +
                                " cannot be indexed with the cosine metric");
        if (nrm > std::numeric_limits<float>::max() || nrm < std::numeric_limits<float>::min()) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.3g", nrm);
          throw py::value_error("vector " + where + " has norm " + buf +
                                ", outside float32's range: the cosine metric keeps the norm "
                                "as a float32; scale the vector");
        }
      }
    }
    py::gil_scoped_release nogil;
    idx->add(ids.data(), V.data(), V.rows, V.rows < 64 ? 1 : threads);
  }

  py::tuple search(py::handle q, long k, py::object ef_obj, py::object allowed,
                   py::object predicate, bool exact) {
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
      idx->search(Q.data(), Q.rows, kk, ef, use_filter ? &filter : nullptr, oi, od, t, exact);
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

  static PyIndex load(py::handle path_obj, std::size_t threads, py::object precision,
                      py::object mmap_obj, bool verify) {
    HNSWIndex::OpenMode mode;
    if (py::isinstance<py::bool_>(mmap_obj))
      mode = mmap_obj.cast<bool>() ? HNSWIndex::OpenMode::Mapped : HNSWIndex::OpenMode::Copy;
    else if (py::isinstance<py::str>(mmap_obj) && mmap_obj.cast<std::string>() == "vectors")
      mode = HNSWIndex::OpenMode::VectorsMapped;
    else
      throw py::value_error("mmap must be True, False or 'vectors', got " +
                            py::repr(mmap_obj).cast<std::string>());
    int prec = precision.is_none() ? -1
                                   : static_cast<int>(parse_precision(precision.cast<std::string>()));
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
    PyIndex out;
    out.threads = threads;
    {
      py::gil_scoped_release nogil;
      out.idx = HNSWIndex::open_file(std::move(file), path, threads, prec, mode, verify);
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
  Precision prec = parse_precision(precision);
  Metric m = parse_metric(metric);
  if (dim < 1) throw py::value_error("dim must be >= 1, got " + std::to_string(dim));
  if (M < 2 || M > 2048) throw py::value_error("M must be in [2, 2048], got " + std::to_string(M));
  if (efc < 1)
    throw py::value_error("ef_construction must be >= 1, got " + std::to_string(efc));
  if (ef < 1) throw py::value_error("ef_search must be >= 1, got " + std::to_string(ef));
  if (capacity < 1) throw py::value_error("capacity must be >= 1, got " + std::to_string(capacity));
  if (threads < 0) throw py::value_error("threads must be >= 0, got " + std::to_string(threads));
  if (prec == Precision::Int8 && m == Metric::L2)
    throw py::value_error("precision 'int8' supports the cosine and ip metrics, not l2");
  PyIndex p;
  p.idx = std::make_unique<HNSWIndex>(dim, m, M, efc, ef, capacity, seed, prec);
  p.threads = static_cast<std::size_t>(threads);
  return p;
}

}  // namespace

void bind_hnsw(py::module_& mod) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const UnknownId& e) {
      PyErr_SetString(PyExc_KeyError, e.what());
    } catch (const BadFile& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

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
           py::arg("predicate") = py::none(), py::arg("exact") = false,
           "k nearest neighbours: (ids, distances), padded with -1/+inf. exact=True measures "
           "every item (an int8 or cosine binary16 index reads its codes first, then float32 "
           "for the candidates that can still be in the top k).")
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
                  py::arg("precision") = py::none(), py::kw_only(), py::arg("mmap") = py::bool_(true),
                  py::arg("verify") = false,
                  "Open an index file written by either backend (in place when mmap).")
      .def_property_readonly("mapped", [](const PyIndex& p) { return p.idx->mapped(); })
      .def(
          "verify",
          [](const PyIndex& p) {
            py::gil_scoped_release nogil;
            p.idx->verify(p.threads);
          },
          "Check the CRC of every section of a mapped file (ValueError if one is bad).")
      .def("__repr__", &PyIndex::repr);
}

}  // namespace bindings
}  // namespace agentdb
