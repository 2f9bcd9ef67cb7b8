#!/usr/bin/env bash
# The main job: install, build, then show encc on the shipped layers: check them, print the
# Encoding layer's tensor IR and fused CUDA, compile it to PTX with NVRTC, and evaluate
# layers on the GPU when there is one, else on the CPU (encc says why once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh encc train_mlp
encc=build/tools/encc/encc
out=$(mktemp -d)
# Shows a command, then runs it (the header goes to stderr, so `step cmd > file` works).
step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; "$@"; }

step "$encc" check layers/*.enc
step "$encc" emit --emit=ir --layer Encoding --set D=128 --set K=32
step "$encc" emit --emit=loops --layer Encoding --set D=128 --set K=32
step "$encc" emit --emit=cuda --layer Encoding --set D=128 --set K=32 > "$out/encoding.cu"
echo "(the first 60 of $(wc -l < "$out/encoding.cu") lines of $out/encoding.cu)"
head -60 "$out/encoding.cu"
step "$encc" emit --emit=ptx --arch sm_90 --layer Encoding --set D=128 --set K=32 > "$out/encoding.ptx"
echo "(PTX in $out/encoding.ptx; its kernels:)"
grep -E '\.(target|entry)' "$out/encoding.ptx" || true
step "$encc" emit --emit=grad --layer Encoding --set D=128 --set K=32
# With every size known, the kernels a GPU run compiles: split statistics, fused sums.
step "$encc" emit --emit=loops --target gpu --backward --layer SyncBatchNorm --set num_features=32 --size B=8 --size L=256
device=auto
step "$encc" eval --layer Encoding --set D=128 --set K=32 --device "$device" --input X=random:8,128,32,32 --out "$out/encoding"
step "$encc" eval --layer GramMatrix --device "$device" --input X=random:4,64,32,32 --out "$out/gram"
step "$encc" eval --layer Softmax --device "$device" --dtype f64 --input X=random:2,10,7 --out "$out/softmax"
step "$encc" eval --layer Conv2d --set in_channels=16 --set out_channels=32 --set kernel_size=3 --set padding=1 \
  --device "$device" --input X=random:4,16,32,32 --grad Y=random:4,32,32,32 --out "$out/conv"
step "$encc" eval --layer SyncBatchNorm --set num_features=32 --set activation=leaky_relu \
  --device "$device" --input X=random:8,32,16,16 --grad Y=random:8,32,16,16 --out "$out/bn"
# The same with bf16 inputs, outputs and gradients (f32 arithmetic and parameters).
step "$encc" eval --layer SyncBatchNorm --set num_features=32 --dtype bf16 \
  --device "$device" --input X=random:8,32,16,16 --grad Y=random:8,32,16,16 --out "$out/bn-bf16"
# Forward and backward times of two shipped layers on the same device.
# A network (examples/texture: Deep TEN): its sub-layers expanded into one program, then a
# training pass and its gradients by torch's state_dict names.
step "$encc" emit --emit=ir examples/texture/texture.enc --layer DeepTen
step "$encc" eval examples/texture/texture.enc --layer DeepTen --device "$device" \
  --input X=random:4,3,32,32 --input T=random:4 --grad Logits=random:4,8 --out "$out/deepten"
step "$encc" bench --layer GramMatrix --device "$device" --input X=random:8,128,32,32
step "$encc" bench --layer SyncBatchNorm --set num_features=64 --device "$device" --input X=random:16,64,56,56
# The REPL, driven by a script here: a layer typed in, its gradient, its CUDA.
printf '%s\n' 'layer Square(scale: float = 0.5) {' '  forward(X: [N]) -> Y: [N] { Y[i] = scale * X[i] ^ 2 }' '}' \
  ':grad Square X=random:4' ':emit loops Square' > "$out/repl.txt"
printf '\n\033[1m$ %s\033[0m\n' "$encc repl < $out/repl.txt" >&2
cat "$out/repl.txt"
echo "--"
"$encc" repl < "$out/repl.txt"
step build/examples/train_mlp
# SyncBatchNorm across 3 processes: each rank holds a shard, the statistics are the whole batch's.
step "$encc" emit --emit=loops --distributed --layer SyncBatchNorm --set num_features=8
step "$encc" launch -n 3 -- build/examples/sync_batchnorm
# The classifier trained data-parallel on 2 ranks (SyncBatchNorm, averaged gradients).
step "$encc" launch -n 2 -- build/examples/train_mlp
echo
echo "outputs and parameters written under $out"
