// Shared test helpers: deterministic random data and the SIMD paths this CPU supports.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "kernels.hpp"

namespace testutil {

// Uniform floats in [lo, hi), deterministic for a given generator state.
inline std::vector<float> uniform(std::mt19937_64& g, std::size_t n, float lo = -1.0f,
                                  float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

inline std::vector<float> normal(std::mt19937_64& g, std::size_t n, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// Every path name dispatch.cpp knows, and the ones this CPU runs (the rest are reported once
// as skipped, so a log shows what was and was not exercised).
inline const std::vector<std::string>& all_paths() {
  static const std::vector<std::string> p{"scalar", "avx2", "avx512"};
  return p;
}
inline std::vector<std::string> supported_paths() {
  std::vector<std::string> out;
  static bool reported = false;
  for (const std::string& p : all_paths()) {
    if (agentdb::cpu_supports(p.c_str())) out.push_back(p);
    else if (!reported) std::printf("  (SIMD path '%s' not supported here: skipped)\n", p.c_str());
  }
  reported = true;
  return out;
}

// Makes `path` the active kernel path for the lifetime of the object (indexes and attention
// built meanwhile use it), then restores the previous one.
struct ActivePath {
  std::string before;
  explicit ActivePath(const std::string& path) : before(agentdb::active_kernels().name) {
    agentdb::set_active_kernels(path.c_str());
  }
  ~ActivePath() { agentdb::set_active_kernels(before.c_str()); }
};

// A file name in the temp directory, unique to this process (CTest runs suites in parallel).
inline std::string temp_path(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : P_tmpdir) + "/agentdb_cpp_test_" +
         std::to_string(::getpid()) + "_" + name;
}

inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::vector<unsigned char> out;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    unsigned char buf[65536];
    for (std::size_t got; (got = std::fread(buf, 1, sizeof buf, f)) > 0;)
      out.insert(out.end(), buf, buf + got);
    std::fclose(f);
  }
  return out;
}

}  // namespace testutil
