// Shared by the pybind11 binding files (cpp/bindings/*.cpp, the only code that knows Python):
// the one conversion rule for vectors and matrices (np.ascontiguousarray(x, dtype=float32):
// zero-copy when already so), id / number / path argument conversion, the NaN/inf checks, and
// the per-module registration functions that module.cpp calls. Every binding validates its
// input, converts it here, and releases the GIL (py::gil_scoped_release) around every loop.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "exact.hpp"

#ifndef AGENTDB_VERSION
#define AGENTDB_VERSION "0.0.0"
#endif

namespace py = pybind11;

namespace agentdb {
namespace bindings {

// ---- registration, one per module (called in this order by PYBIND11_MODULE in module.cpp) --
void bind_kernels(py::module_& mod);     // kernels.cpp: distance(s), exact_search, _kernel, ...
void bind_hnsw(py::module_& mod);        // hnsw.cpp: HNSWIndex (+ UnknownId/BadFile errors)
void bind_hypergraph(py::module_& mod);  // hypergraph.cpp: Hypergraph (+ Graph* errors)
void bind_attention(py::module_& mod);   // attention.cpp: sdpa, ..., moe_gating

// ---- conversions (common.cpp) -----------------------------------------------------------
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::module_& numpy();

Metric parse_metric(const std::string& m);

// The one conversion rule for vectors and matrices.
F32Array as_f32(py::handle obj, const char* what);

inline bool all_finite(const float* p, std::size_t n) {
  uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, 4);
    bad |= ((bits & 0x7F800000u) == 0x7F800000u);
  }
  return bad == 0;
}

void require_finite(const F32Array& a, const char* what);

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
Matrix as_matrix(py::handle obj, const char* what, bool check_finite = true);

std::vector<int64_t> as_ids(py::handle obj, const char* what = "ids");

py::array_t<float> vector_out(std::vector<std::size_t> shape);

std::string fspath(py::handle path);

// Python ints / floats given one at a time (ids, counts, hop limits, thresholds, ...).
int64_t graph_int(py::handle h, const char* what);
double graph_float(py::handle h, const char* what);

}  // namespace bindings
}  // namespace agentdb
