// parallel_for (cpp/parallel.hpp): every index runs exactly once with tid < threads, through
// the process-wide pool and through the thread-starting fallback (a second caller while the
// pool is busy); a task's exception reaches the caller and the pool keeps working; a call
// from inside a task runs serially; a forked child gets a pool of its own.
#include <atomic>
#include <cstddef>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "check.hpp"
#include "parallel.hpp"

using namespace agentdb;

namespace {

bool covers(std::size_t n, std::size_t threads) {
  std::vector<std::atomic<int>> hits(n);
  std::atomic<bool> bad_tid{false};
  const std::size_t used = std::min(resolve_threads(threads), n);
  parallel_for(n, threads, [&](std::size_t i, std::size_t tid) {
    if (tid >= std::max<std::size_t>(used, 1)) bad_tid = true;
    hits[i].fetch_add(1);
  });
  for (auto& h : hits)
    if (h.load() != 1) return false;
  return !bad_tid.load();
}

}  // namespace

TEST_CASE(parallel, every_index_once) {
  for (std::size_t n : {0, 1, 2, 3, 17, 1000})
    for (std::size_t threads : {0, 1, 2, 3, 8}) CHECK(covers(n, threads));
}

TEST_CASE(parallel, exceptions_reach_the_caller) {
  bool thrown = false;
  try {
    parallel_for(100, 2, [](std::size_t i, std::size_t) {
      if (i == 37) throw std::runtime_error("task 37");
    });
  } catch (const std::runtime_error& e) {
    thrown = std::string(e.what()) == "task 37";
  }
  CHECK(thrown);
  CHECK(covers(500, 2));  // the pool still works
}

TEST_CASE(parallel, nested_calls_run_serially) {
  std::atomic<int> inner{0};
  parallel_for(8, 2, [&](std::size_t, std::size_t) {
    parallel_for(10, 2, [&](std::size_t, std::size_t tid) {
      if (tid == 0) inner.fetch_add(1);
    });
  });
  CHECK_EQ(inner.load(), 80);
}

TEST_CASE(parallel, concurrent_callers) {
  std::atomic<bool> ok{true};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r)
        if (!covers(300, 2)) ok = false;
    });
  for (auto& t : callers) t.join();
  CHECK(ok.load());
}

#if defined(__unix__)
TEST_CASE(parallel, forked_child_has_a_pool) {
  CHECK(covers(100, 2));  // the parent's pool exists
  pid_t pid = fork();
  if (pid == 0) _exit(covers(1000, 2) ? 0 : 3);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
#endif
