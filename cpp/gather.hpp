// The list form of a one-vector kernel: out[i] = kernel(q, v + slots[i] * n, n), fetching the
// vector two slots ahead while the current one is summed. Included by the per-ISA kernel files
// *inside their anonymous namespace*, so every ISA gets its own internal copy (nothing compiled
// with wide-vector flags can be picked by the linker for another translation unit).
#pragma once

// flatten: the kernel is inlined into the loop (a call per vector costs about as much as
// a 384-d int8 sum).
template <class Q, class V, class Out, class Kernel>
__attribute__((flatten)) inline void gather_rows(Kernel kernel, const Q* q, const V* v, const uint32_t* slots,
                        std::size_t count, std::size_t n, Out* out) {
  for (std::size_t i = 0; i < count; ++i) {
    if (i + 2 < count) {
      const char* next = reinterpret_cast<const char*>(v + static_cast<std::size_t>(slots[i + 2]) * n);
      for (std::size_t off = 0; off < n * sizeof(V); off += 64) __builtin_prefetch(next + off, 0, 3);
    }
    out[i] = kernel(q, v + static_cast<std::size_t>(slots[i]) * n, n);
  }
}
