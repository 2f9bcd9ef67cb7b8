#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang-19 in build-fuzz/, runs the sanitizer suites
# built there (fuzz/CMakeLists.txt: front end, .npy, cache, store, networks, layers; the whole
# suite under the sanitizers is scripts/test.sh --sanitize), then runs each target for SECONDS
# (default 60) from a seed corpus made at run time: the shipped layers and the golden error
# cases (and fuzz/seeds/) for the front end, fuzz/SeedGenerator.cpp's .npy files, cache entries and store
# conversations for the others. Fails when any target finds a crash, a sanitizer report, an
# internal error or a hang; the reproducer is build-fuzz/artifacts/TARGET-crash-* (or
# timeout-*), and `build-fuzz/fuzz/TARGET FILE` runs it again.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]    targets: FrontEnd Npy DiskCache TcpStore
# (the sanitizer suites run only when no TARGET is named).
# New inputs that reach new code are kept in build-fuzz/corpus/TARGET/ between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")

bash scripts/setup.sh # clang-19 and its sanitizer runtimes among the rest

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths inside the checkout are hashed relative to it: clones and worktrees share the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
# Not -fsanitize=function: it reads a signature just before every function called through a
# pointer, and JIT-compiled kernels (runtime/CpuExecutor.cpp) have none, often at a page's start.
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function -fno-sanitize-recover=undefined"
flags+=" -fno-omit-frame-pointer"
# Configured every run (quick), so a tree made with other flags picks these up.
CC=clang-19 CXX=clang++-19 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DENC_BUILD_TESTS=OFF -DENC_BUILD_BENCH=OFF -DENC_BUILD_FUZZERS=ON \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzzers

# Seeds: made afresh each run, never committed.
seeds=build-fuzz/seeds
rm -rf "$seeds"
build-fuzz/fuzz/enc_fuzz_seeds "$seeds"
mkdir -p "$seeds/frontend"
cp layers/*.enc tests/golden/ok/*.enc fuzz/seeds/*.enc "$seeds/frontend/"
for f in tests/golden/errors/*.enc; do cp "$f" "$seeds/frontend/error-$(basename "$f")"; done

export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: the sanitizer suites (build-fuzz/fuzz/enc_sanitizer_tests)"
  # As scripts/test.sh --sanitize: leaks of the process's lifetime are not checked there.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}" build-fuzz/fuzz/enc_sanitizer_tests --gtest_brief=1
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}"
mkdir -p build-fuzz/artifacts
failed=()
[ ${#targets[@]} -gt 0 ] || targets=(FrontEnd Npy DiskCache TcpStore)
for t in "${targets[@]}"; do
  seed="$seeds/$(echo "$t" | tr '[:upper:]' '[:lower:]')"
  corpus="build-fuzz/corpus/$t"
  mkdir -p "$corpus"
  extra=()
  [ "$t" = FrontEnd ] && extra=(-dict=fuzz/enc.dict)
  echo "fuzz: $t for $seconds s"
  if ! build-fuzz/fuzz/"$t"Fuzzer "$corpus" "$seed" "${extra[@]}" -max_total_time="$seconds" -timeout=30 \
      -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-" 2>"build-fuzz/$t.log"; then
    tail -n 60 "build-fuzz/$t.log"
    failed+=("$t")
  else
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ *DONE' "build-fuzz/$t.log" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (reproducers in build-fuzz/artifacts/, logs in build-fuzz/TARGET.log)"
  exit 1
fi
echo "fuzz: no findings"
