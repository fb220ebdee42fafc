// agentdb._native module-level kernels: distance, distances, exact_search, and the test hooks
// _kernel (one kernel on a named SIMD path) and _set_simd (switch the active path). The
// kernels themselves are cpp/kernels*.cpp + cpp/dispatch.cpp; exact top-k is cpp/exact.hpp.
#include <string>
#include <vector>

#include "common.hpp"
#include "exact.hpp"
#include "kernels.hpp"

namespace agentdb {
namespace bindings {
namespace {

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

}  // namespace

void bind_kernels(py::module_& mod) {
  mod.def("distance", &py_distance, py::arg("a"), py::arg("b"), py::arg("metric") = "cosine",
          "Distance between two 1-D vectors: 'cosine' (1 - cos), 'ip' (1 - dot), 'l2' "
          "(squared).");
  mod.def("distances", &py_distances, py::arg("q"), py::arg("X"), py::arg("metric") = "cosine",
          py::arg("threads") = 0,
          "Distances from q (1-D or 2-D) to every row of X: shape (n,) or (m, n).");
  mod.def("exact_search", &py_exact_search, py::arg("queries"), py::arg("X"), py::arg("k") = 10,
          py::arg("metric") = "cosine", py::arg("threads") = 0,
          "Exact top-k rows of X for each query: (ids int64, distances float32).");
  mod.def("_kernel", &py_kernel, py::arg("path"), py::arg("name"), py::arg("a"), py::arg("b"),
          "Evaluate one kernel on a named SIMD path (tests hold each path to 'scalar').");
  mod.def(
      "_set_simd",
      [](const std::string& path) {
        if (!set_active_kernels(path.c_str()))
          throw py::value_error("SIMD path '" + path + "' is not supported on this CPU");
      },
      py::arg("path"), "Switch the active kernel path (indexes created later use it).");
}

}  // namespace bindings
}  // namespace agentdb
