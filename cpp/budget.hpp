// What one query may spend inside the core: a deadline and a cancel flag, checked by the long
// loops of the graph walks (match_chain, paths, paths_to, top_paths, khop) every few thousand
// steps. A caller sets it for the current thread with BudgetScope around a call; without one
// the checks cost a thread-local load and a branch.
#pragma once
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace agentdb {

// Thrown by a check when the deadline passed or the flag was raised (the bindings turn it
// into Python's TimeoutError; the caller tells the two apart by its own flag).
class Interrupted : public std::runtime_error {
 public:
  Interrupted(const std::string& what, bool cancelled)
      : std::runtime_error(what), cancelled_(cancelled) {}
  bool cancelled() const { return cancelled_; }

 private:
  bool cancelled_;
};

struct Budget {
  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline = Clock::time_point::max();
  // Raised (non-zero) by another thread to cancel; read without a lock. A byte of a numpy
  // array the caller keeps alive for the duration of the call.
  const volatile uint8_t* cancel = nullptr;
  uint32_t ticks = 0;

  static Budget after(double seconds, const volatile uint8_t* flag) {
    Budget b;
    if (seconds > 0) {
      auto d = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
      b.deadline = Clock::now() + d;
    }
    b.cancel = flag;
    return b;
  }
  void check() const {
    if (cancel && *cancel) throw Interrupted("query cancelled", true);
    if (deadline != Clock::time_point::max() && Clock::now() > deadline)
      throw Interrupted("query timed out", false);
  }
};

inline Budget*& current_budget() {
  thread_local Budget* b = nullptr;
  return b;
}

// One step of a long loop: checks the current thread's budget every 4096 steps.
inline void budget_tick() {
  Budget* b = current_budget();
  if (b && (++b->ticks & 4095u) == 0) b->check();
}

// budget_tick for one loop: the current budget read once at construction (each read of a
// thread-local from a shared module is a __tls_get_addr call: 13% of a k-hop walk).
class BudgetTicker {
 public:
  BudgetTicker() : b_(current_budget()) {}
  void tick() {
    if (b_ && (++b_->ticks & 4095u) == 0) b_->check();
  }

 private:
  Budget* b_;
};

// Makes `b` the current thread's budget for the scope (checked once at entry).
class BudgetScope {
 public:
  explicit BudgetScope(Budget* b) : prev_(current_budget()) {
    current_budget() = b;
    if (b) b->check();
  }
  ~BudgetScope() { current_budget() = prev_; }
  BudgetScope(const BudgetScope&) = delete;
  BudgetScope& operator=(const BudgetScope&) = delete;

 private:
  Budget* prev_;
};

}  // namespace agentdb
