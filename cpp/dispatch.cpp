// Runtime kernel dispatch: the best path the CPU and OS support, chosen once, overridable by
// AGENTDB_SIMD=scalar|avx2|avx512 (an unsupported forced path falls back to the best one).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels.hpp"

namespace agentdb {

bool cpu_supports(const char* path) {
  if (std::strcmp(path, "scalar") == 0) return true;
#if defined(AGENTDB_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (std::strcmp(path, "avx2") == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  if (std::strcmp(path, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
#endif
  return false;
}

const KernelTable* kernels_for(const char* path) {
  if (!cpu_supports(path)) return nullptr;
  if (std::strcmp(path, "scalar") == 0) return &scalar_kernels();
#if defined(AGENTDB_X86)
  if (std::strcmp(path, "avx2") == 0) return &avx2_kernels();
  if (std::strcmp(path, "avx512") == 0) return &avx512_kernels();
#endif
  return nullptr;
}

namespace {

const KernelTable* best_kernels() {
  static const char* order[] = {"avx512", "avx2", "scalar"};
  for (const char* p : order)
    if (const KernelTable* t = kernels_for(p)) return t;
  return &scalar_kernels();
}

const KernelTable* initial_kernels() {
  if (const char* f = forced_simd())
    if (const KernelTable* t = kernels_for(f)) return t;
  return best_kernels();
}

std::atomic<const KernelTable*>& active_slot() {
  static std::atomic<const KernelTable*> slot{initial_kernels()};
  return slot;
}

}  // namespace

const char* forced_simd() {
  static const char* forced = [] {
    const char* v = std::getenv("AGENTDB_SIMD");
    return (v && *v) ? v : nullptr;
  }();
  return forced;
}

const KernelTable& active_kernels() { return *active_slot().load(std::memory_order_acquire); }

bool set_active_kernels(const char* path) {
  const KernelTable* t = kernels_for(path);
  if (!t) return false;
  active_slot().store(t, std::memory_order_release);
  return true;
}

}  // namespace agentdb
