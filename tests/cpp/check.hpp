// A minimal unit-test harness for the C++ core (no external framework, no network).
//
//   TEST_CASE(suite, name) { CHECK(x); CHECK_EQ(a, b); CHECK_NEAR(a, b, tol); ... }
//
// CHECK* record a failure (file:line, the expression, both values, and any SCOPE context)
// and carry on; REQUIRE stops the current test case. CHECK_THROWS(expr, Type) expects an
// exception of Type. SCOPE(a, b, ...) adds context to every failure while it is alive (e.g.
// the SIMD path and the dimension of a loop). main.cpp runs the cases of the suites named on
// its command line (all when none is named), one CTest test per suite (tests/cpp/CMakeLists.txt).
#pragma once
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace check {

struct Case {
  const char* suite;
  const char* name;
  void (*fn)();
};
inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}
struct Register {
  Register(const char* suite, const char* name, void (*fn)()) {
    registry().push_back({suite, name, fn});
  }
};

struct Abort {};  // thrown by REQUIRE to leave the current case

inline int& failures() {  // failed checks in the current case
  static int n = 0;
  return n;
}
inline std::vector<std::string>& context() {
  static std::vector<std::string> ctx;
  return ctx;
}

// Printing of checked values: anything with operator<<, pairs, and containers (first 16 items).
template <class T>
void put(std::ostream& s, const T& v);
template <class A, class B>
void put(std::ostream& s, const std::pair<A, B>& v) {
  s << '(';
  put(s, v.first);
  s << ", ";
  put(s, v.second);
  s << ')';
}
template <class T>
auto put_any(std::ostream& s, const T& v, int) -> decltype(s << v, void()) {
  s << v;
}
template <class T>
auto put_any(std::ostream& s, const T& v, long) -> decltype(v.begin(), v.end(), void()) {
  s << '[';
  std::size_t i = 0;
  for (const auto& x : v) {
    if (i && i < 16) s << ", ";
    if (i++ < 16) put(s, x);
  }
  s << (i > 16 ? ", ...]" : "]");
}
template <class T>
void put(std::ostream& s, const T& v) {
  put_any(s, v, 0);
}

template <class... T>
std::string str(const T&... v) {
  std::ostringstream s;
  s.precision(9);
  (put(s, v), ...);
  return s.str();
}

struct Scope {
  template <class... T>
  [[gnu::noinline]] explicit Scope(const T&... v) {
    context().push_back(str(v...));
  }
  ~Scope() { context().pop_back(); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

[[gnu::noinline, gnu::cold]] inline void fail(const char* file, int line,
                                              const std::string& what) {
  ++failures();
  std::string ctx;
  for (const std::string& c : context()) ctx += " [" + c + "]";
  std::printf("  %s:%d: FAILED: %s%s\n", file, line, what.c_str(), ctx.c_str());
  std::fflush(stdout);
}

// The out-of-line halves of CHECK_EQ / CHECK_NEAR (one instance per type pair, not per use:
// keeps the test files quick to compile with the sanitizers at -O3).
template <class A, class B>
[[gnu::noinline]] bool eq(const A& a, const B& b, const char* expr, const char* file, int line) {
  if (a == b) return true;
  fail(file, line, str(expr, ": ", a, " != ", b));
  return false;
}
[[gnu::noinline]] inline bool near(double a, double b, double tol, const char* expr,
                                   const char* file, int line) {
  if (std::fabs(a - b) <= tol) return true;
  fail(file, line, str(expr, ": ", a, " vs ", b, " differ by ", std::fabs(a - b), " > ", tol));
  return false;
}

}  // namespace check

#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)

#define TEST_CASE(suite, name)                                                      \
  static void suite##__##name();                                                    \
  static const ::check::Register suite##__##name##__reg(#suite, #name, &suite##__##name); \
  static void suite##__##name()

#define SCOPE(...) const ::check::Scope CHECK_CAT(scope_, __LINE__)(__VA_ARGS__)

#define CHECK_IMPL(ok, msg, on_fail)                          \
  do {                                                        \
    if (!(ok)) {                                              \
      ::check::fail(__FILE__, __LINE__, msg);                 \
      on_fail;                                                \
    }                                                         \
  } while (0)

#define CHECK(...) CHECK_IMPL((__VA_ARGS__), "CHECK(" #__VA_ARGS__ ")", (void)0)
#define REQUIRE(...) CHECK_IMPL((__VA_ARGS__), "REQUIRE(" #__VA_ARGS__ ")", throw ::check::Abort())
#define CHECK_EQ(a, b) ::check::eq((a), (b), "CHECK_EQ(" #a ", " #b ")", __FILE__, __LINE__)
#define CHECK_NEAR(a, b, tol) \
  ::check::near((a), (b), (tol), "CHECK_NEAR(" #a ", " #b ")", __FILE__, __LINE__)
#define CHECK_THROWS(expr, Type)                                                         \
  do {                                                                                   \
    bool check_threw_ = false;                                                           \
    try {                                                                                \
      (void)(expr);                                                                      \
    } catch (const Type&) {                                                              \
      check_threw_ = true;                                                               \
    }                                                                                    \
    CHECK_IMPL(check_threw_, "CHECK_THROWS(" #expr ", " #Type "): nothing thrown", (void)0); \
  } while (0)
