#!/usr/bin/env bash
# Build and run the C++ unit tests of the native core (tests/cpp) with CTest -- no Python.
#
# Usage: bash scripts/cpp_tests.sh [--sanitize] [extra cmake -D options]
#   --sanitize   also build with -fsanitize=address,undefined (in build/cpp-tests-sanitize;
#                about 1.5 min of compiling on 2 cores instead of 20 s)
# Needs: cmake >= 3.18 and a C++17 compiler; Ninja when available, else make. The build goes
# to build/cpp-tests (configured with -DAGENTDB_BUILD_PYTHON=OFF -DAGENTDB_BUILD_CPP_TESTS=ON);
# the script exits non-zero when configuring, building or any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
build=build/cpp-tests
opts=(-DAGENTDB_CPP_TESTS_SANITIZE=OFF)
for a in "$@"; do
    if [ "$a" = "--sanitize" ]; then
        build=build/cpp-tests-sanitize
        opts+=(-DAGENTDB_CPP_TESTS_SANITIZE=ON)
    else
        opts+=("$a")
    fi
done
if command -v ninja > /dev/null 2>&1; then gen="Ninja"; else gen="Unix Makefiles"; fi
# A build directory configured with another generator cannot be reused: start it afresh.
if [ -f "$build/CMakeCache.txt" ] &&
   ! grep -qx "CMAKE_GENERATOR:INTERNAL=$gen" "$build/CMakeCache.txt"; then
    rm -rf "$build"
fi
mkdir -p "$build"
cmake -S . -B "$build" -G "$gen" -DCMAKE_BUILD_TYPE=Release -DAGENTDB_BUILD_PYTHON=OFF \
      -DAGENTDB_BUILD_CPP_TESTS=ON "${opts[@]}" > "$build/configure.log" 2>&1 \
    || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j2
echo "cpp tests: built in $build ($(($(date +%s) - t0)) s)"
(cd "$build" && ctest --output-on-failure -j2)
echo "cpp tests: passed ($(($(date +%s) - t0)) s)"
