#!/usr/bin/env bash
# Installs every build and test dependency of encc from Debian's packages.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail

packages=(
  cmake ninja-build g++ ccache pkg-config
  llvm-19-dev libzstd-dev libedit-dev zlib1g-dev
  libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev python3-numpy libgloo-dev
  libstb-dev python3-skimage  # examples/texture
  clang-19 libclang-rt-19-dev # the fuzzers (scripts/fuzz.sh, in CI)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

if [ -x /usr/local/cuda/bin/nvcc ] || [ -f /usr/local/cuda/lib64/libnvrtc.so ]; then
  echo "setup: CUDA toolkit found in /usr/local/cuda (NVRTC code generation enabled)"
else
  echo "setup: no CUDA toolkit in /usr/local/cuda; the build will be CPU-only"
fi
