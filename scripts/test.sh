#!/usr/bin/env bash
# Installs dependencies, builds everything and runs the whole test suite.
#   bash scripts/test.sh             the release build in build/ (what CI runs)
#   bash scripts/test.sh --sanitize  an AddressSanitizer + UndefinedBehaviorSanitizer build in
#                                    build-asan/, and the suite under it (slower: on demand)
# Further arguments go to ctest (e.g. -R Parser).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
if [ "${1:-}" = "--sanitize" ]; then
  sanitize=1
  shift
fi
bash scripts/setup.sh
if [ $sanitize = 0 ]; then
  bash scripts/build.sh
  ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
  exit
fi
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths inside the checkout are hashed relative to it: clones and worktrees share the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DENC_BUILD_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="-O1 -g $flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags"
fi
cmake --build build-asan -j"$(nproc)"
# NVRTC and the CUDA driver allocate for the life of the process: leaks are not checked.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
# The package test links the instrumented libraries into an uninstrumented program: left out.
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 1200 -E '^Package\.' "$@"
