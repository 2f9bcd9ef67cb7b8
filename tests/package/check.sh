#!/usr/bin/env bash
# Installs the build tree BUILD into a fresh prefix, builds tests/package (find_package(enc))
# against it with the same compiler, and runs it on the installed copy of the shipped layers.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
launcher=$(sed -n 's/^CCACHE_PROGRAM:[A-Z]*=//p' "$build/CMakeCache.txt")
cmake -S "$here" -B "$work/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_CXX_COMPILER="$cxx" ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher"} > "$work/configure.log"
cmake --build "$work/consumer" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
ENC_LAYER_PATH="$work/prefix/share/encc/layers" "$work/consumer/consumer"
