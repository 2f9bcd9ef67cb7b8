#!/usr/bin/env bash
# What synchronizing SyncBatchNorm's statistics costs: the same per-rank work under
# `encc launch -n N`, once with sync=true (one all-reduce forward, one backward) and once
# with sync=false, side by side. One thread per rank, so ranks do not fight over cores.
#   bash bench/dist_overhead.sh [N] [INPUT]     (default: 2 ranks, X=random:8,64,28,28)
set -euo pipefail
cd "$(dirname "$0")/.."
encc=build/tools/encc/encc
ranks=${1:-2}
input=${2:-random:8,64,28,28}
for sync in true false; do
  echo "sync=$sync, $ranks ranks, X=$input per rank:"
  ENC_NUM_THREADS=1 "$encc" launch -n "$ranks" -- "$encc" bench --layer SyncBatchNorm --set num_features=64 \
    --set sync=$sync --device cpu --input X="$input" --runs 50
done
