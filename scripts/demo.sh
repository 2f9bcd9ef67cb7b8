#!/usr/bin/env bash
# The main job: install, build, then show encc on the shipped layers: check them, print the
# Encoding layer's tensor IR and fused CUDA, compile it to PTX with NVRTC, and evaluate
# layers on the CPU (or say why the GPU is not used).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh encc
encc=build/tools/encc/encc
out=$(mktemp -d)
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$encc" check layers/*.enc
step "$encc" emit --emit=ir --layer Encoding --set D=128 --set K=32
step "$encc" emit --emit=loops --layer Encoding --set D=128 --set K=32
printf '\n\033[1m$ %s\033[0m\n' "$encc emit --emit=cuda --layer Encoding --set D=128 --set K=32 | head -60"
"$encc" emit --emit=cuda --layer Encoding --set D=128 --set K=32 | head -60
printf '\n\033[1m$ %s\033[0m\n' "$encc emit --emit=ptx --arch sm_90 --layer Encoding --set D=128 --set K=32 | grep -E '\\.(target|entry)'"
"$encc" emit --emit=ptx --arch sm_90 --layer Encoding --set D=128 --set K=32 | grep -E '\.(target|entry)' || true
device=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  echo "(a GPU is present, but GPU execution is not implemented yet: evaluating on the CPU)"
fi
step "$encc" eval --layer Encoding --set D=128 --set K=32 --device "$device" --input X=random:8,128,32,32 --out "$out/encoding"
step "$encc" eval --layer GramMatrix --device "$device" --input X=random:4,64,32,32 --out "$out/gram"
step "$encc" eval --layer Softmax --device "$device" --dtype f64 --input X=random:2,10,7 --out "$out/softmax"
echo
echo "outputs and parameters written under $out"
