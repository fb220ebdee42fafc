// Test runner: `agentdb_cpp_tests [suite ...]` runs every case of the named suites (all cases
// when none is named; `--list` prints them). Exit status 0 only when every check passed and
// every named suite exists.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <set>
#include <string>

#include "check.hpp"

int main(int argc, char** argv) {
  std::set<std::string> wanted;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--list") == 0) list = true;
    else wanted.insert(argv[i]);
  }
  std::set<std::string> seen;
  int cases = 0, failed = 0;
  for (const check::Case& c : check::registry()) {
    if (!wanted.empty() && !wanted.count(c.suite)) continue;
    seen.insert(c.suite);
    if (list) {
      std::printf("%s.%s\n", c.suite, c.name);
      continue;
    }
    ++cases;
    check::failures() = 0;
    check::context().clear();
    auto t0 = std::chrono::steady_clock::now();
    try {
      c.fn();
    } catch (const check::Abort&) {
    } catch (const std::exception& e) {
      check::fail(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    } catch (...) {
      check::fail(__FILE__, __LINE__, "unexpected non-standard exception");
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count();
    bool ok = check::failures() == 0;
    failed += !ok;
    std::printf("[%s] %s.%s (%.0f ms)\n", ok ? " OK " : "FAIL", c.suite, c.name, ms);
    std::fflush(stdout);
  }
  for (const std::string& w : wanted)
    if (!seen.count(w)) {
      std::fprintf(stderr, "no test suite named '%s'\n", w.c_str());
      return 2;
    }
  if (list) return 0;
  std::printf("%d of %d test cases passed\n", cases - failed, cases);
  return failed ? 1 : 0;
}
