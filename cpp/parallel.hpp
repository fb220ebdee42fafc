// A tiny parallel-for: n tasks over up to `threads` threads, work handed out by an atomic
// counter; task i runs as fn(i, tid) with tid < threads (per-thread scratch can be indexed by
// it). The first exception thrown by a task is re-thrown on the calling thread.
//
// The threads come from one process-wide pool started on first use (hardware threads - 1
// workers; the caller is thread 0), so a call costs a wake-up, not a thread start (~60 us
// here, as much as 200 one-hop graph walks); a worker watches for the next job for ~100 us
// after each one before it sleeps. A call made while the pool is busy with another
// caller's job starts its own threads as before; a call from inside a task runs serially. A
// forked child starts a new pool on first use (the parent's threads do not exist there).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace agentdb {

inline std::size_t hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

inline std::size_t resolve_threads(std::size_t requested) {
  return requested == 0 ? hardware_threads() : requested;
}

namespace detail {

struct Pool {
  std::mutex job_mu;  // held by the caller whose job the workers run
  std::mutex mu;
  std::condition_variable wake, done;
  std::vector<std::thread> workers;
  std::atomic<uint64_t> generation{0};
  std::function<void(std::size_t)> work;  // the current job's body, given the tid
  std::size_t want = 0;                   // workers taking part (tids 1..want)
  std::atomic<std::size_t> active{0};     // of those, still running
};

inline bool& in_parallel_task() {
  thread_local bool inside = false;
  return inside;
}

inline void pool_worker(Pool* p, std::size_t k) {
  in_parallel_task() = true;
  uint64_t seen = 0;
  for (;;) {
    // Watch for the next job for ~100 us before sleeping: waking a sleeping thread costs
    // tens of microseconds on a VM, and calls often come back to back.
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
    while (p->generation.load(std::memory_order_acquire) == seen &&
           std::chrono::steady_clock::now() < until) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    std::function<void(std::size_t)> body;
    {
      std::unique_lock<std::mutex> lk(p->mu);
      p->wake.wait(lk, [&] { return p->generation.load() != seen; });
      seen = p->generation.load();
      if (k >= p->want) continue;
      body = p->work;
    }
    body(k + 1);
    std::lock_guard<std::mutex> lk(p->mu);
    if (p->active.fetch_sub(1) == 1) p->done.notify_all();
  }
}

inline std::atomic<Pool*>& pool_slot() {
  static std::atomic<Pool*> slot{nullptr};
  return slot;
}

// The pool (never destroyed: its threads sleep until the process ends).
inline Pool& pool() {
  static std::mutex create_mu;
  Pool* p = pool_slot().load(std::memory_order_acquire);
  if (p) return *p;
  std::lock_guard<std::mutex> g(create_mu);
  p = pool_slot().load(std::memory_order_relaxed);
  if (p) return *p;
#if defined(__unix__) || defined(__APPLE__)
  static bool hooked = [] {
    // in a forked child the parent's workers are gone: start a new pool there
    pthread_atfork(nullptr, nullptr, [] { pool_slot().store(nullptr); });
    return true;
  }();
  (void)hooked;
#endif
  p = new Pool();
  const std::size_t n = hardware_threads() > 1 ? hardware_threads() - 1 : 0;
  for (std::size_t k = 0; k < n; ++k) {
    p->workers.emplace_back(pool_worker, p, k);
    p->workers.back().detach();
  }
  pool_slot().store(p, std::memory_order_release);
  return *p;
}

// One call's tasks: each thread takes the next index until none is left; the first
// exception stops the hand-out and is kept for the caller.
template <class Fn>
struct Tasks {
  std::size_t n;
  Fn& fn;
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;

  Tasks(std::size_t count, Fn& f) : n(count), fn(f) {}
  void run(std::size_t tid) {
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
  }
  void rethrow() {
    if (error) std::rethrow_exception(error);
  }
};

template <class Fn>
void spawn_for(std::size_t n, std::size_t threads, Fn& fn) {
  Tasks<Fn> tasks(n, fn);
  std::vector<std::thread> threads_v;
  threads_v.reserve(threads - 1);
  for (std::size_t t = 1; t < threads; ++t) threads_v.emplace_back([&tasks, t] { tasks.run(t); });
  tasks.run(0);
  for (auto& th : threads_v) th.join();
  tasks.rethrow();
}

}  // namespace detail

template <class Fn>
void parallel_for(std::size_t n, std::size_t threads, Fn&& fn) {
  threads = std::min(resolve_threads(threads), n);
  if (threads <= 1 || detail::in_parallel_task()) {
    for (std::size_t i = 0; i < n; ++i) fn(i, std::size_t{0});
    return;
  }
  detail::Pool& p = detail::pool();
  std::unique_lock<std::mutex> own(p.job_mu, std::try_to_lock);
  if (!own.owns_lock() || p.workers.size() < threads - 1) {
    detail::spawn_for(n, threads, fn);
    return;
  }
  detail::Tasks<std::remove_reference_t<Fn>> tasks(n, fn);
  auto body = [&tasks](std::size_t tid) { tasks.run(tid); };
  {
    std::lock_guard<std::mutex> lk(p.mu);
    p.work = body;
    p.want = threads - 1;
    p.active.store(threads - 1);
    p.generation.fetch_add(1, std::memory_order_release);
  }
  p.wake.notify_all();
  detail::in_parallel_task() = true;  // a nested call from a task on this thread runs serially
  body(0);
  detail::in_parallel_task() = false;
  // the workers usually finish within microseconds of the caller: watch before sleeping
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
  while (p.active.load(std::memory_order_acquire) != 0 &&
         std::chrono::steady_clock::now() < until) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  {
    std::unique_lock<std::mutex> lk(p.mu);
    p.done.wait(lk, [&] { return p.active.load() == 0; });
    p.work = nullptr;
  }
  tasks.rethrow();
}

}  // namespace agentdb
