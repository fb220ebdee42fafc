// A tiny parallel-for: n tasks over up to `threads` std::threads, work handed out by an atomic
// counter. The first exception thrown by a task is re-thrown on the calling thread.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace agentdb {

inline std::size_t hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

inline std::size_t resolve_threads(std::size_t requested) {
  return requested == 0 ? hardware_threads() : requested;
}

template <class Fn>
void parallel_for(std::size_t n, std::size_t threads, Fn&& fn) {
  threads = std::min(resolve_threads(threads), n);
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i, std::size_t{0});
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto worker = [&](std::size_t tid) {
    for (;;) {
      std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      try {
        fn(i, tid);
      } catch (...) {
        std::lock_guard<std::mutex> g(error_mu);
        if (!error) error = std::current_exception();
        next.store(n);
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace agentdb
