// agentdb._native: the module entry point. Module attributes (version, backend) and
// native_info() live here; every module of the core registers itself through one bind_*()
// function in its own file (kernels.cpp, hnsw.cpp, hypergraph.cpp, attention.cpp), and
// common.hpp / common.cpp hold the argument conversion they share. These files are the only
// code that knows Python: the cores (cpp/*.hpp, cpp/*.cpp) have no pybind11 in them.
#include "common.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace agentdb {
namespace bindings {
namespace {

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

}  // namespace
}  // namespace bindings
}  // namespace agentdb

PYBIND11_MODULE(_native, mod) {
  using namespace agentdb::bindings;
  mod.doc() = "AgentDB native core: SIMD distance kernels, exact top-k and an HNSW index.";
  mod.attr("__version__") = AGENTDB_VERSION;
  mod.attr("VERSION") = AGENTDB_VERSION;
  mod.attr("BACKEND") = "native";

  mod.def("native_info", &native_info, "Which backend, version and SIMD path are in use.");

  bind_kernels(mod);     // ---- distance kernels, exact top-k ----
  bind_hnsw(mod);        // ---- the index ----
  bind_hypergraph(mod);  // ---- hypergraph ----
  bind_attention(mod);   // ---- attention ----
}
