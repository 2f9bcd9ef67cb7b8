#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, after scripts/build.sh: the GPU tests on the real driver,
# the GPU benchmarks, a per-kernel profile of SyncBatchNorm at the benchmark's size, and
# SyncBatchNorm synchronized over 2 ranks on the GPU —
# what the GPU sections of bench/RESULTS.md record. BUILD=dir picks another build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"

echo "== GPU tests (fresh memory NaN-filled, every kernel waited for)"
ENC_POISON=1 ENC_CUDA_SYNC=1 "$build/tests/enc_unit_tests" \
  --gtest_filter='*Gpu*:CudaDriver*:CachingAllocator*:CudaEmulator*'

echo "== GPU benchmarks (medians of 3)"
"$build/bench/enc_bench_gpu" --benchmark_min_time=0.3 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true

echo "== Memory-bound layers at other unroll factors (ENC_CUDA_UNROLL; the default is 4)"
for u in 1 2 8; do
  echo "-- ENC_CUDA_UNROLL=$u"
  ENC_CUDA_UNROLL=$u "$build/bench/enc_bench_gpu" --benchmark_filter='LeakyReLU|SyncBatchNorm|Copy' \
    --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
done

echo "== Contractions at each tile shape (ENC_GPU_TILE, autotuning off; the runs above autotuned)"
for tile in 64x64x16 128x128x8 32x128x16 128x32x16 64x64x16s2 128x128x8s2 tc64x64x32 tc128x128x32 tc32x128x32 \
  tc128x32x32 tc64x64x32s2; do
  echo "-- ENC_GPU_TILE=$tile"
  ENC_AUTOTUNE=0 ENC_GPU_TILE=$tile "$build/bench/enc_bench_gpu" --benchmark_filter='GramMatrix|Conv2d_|Inspiration|Encoding' \
    --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
done
echo "-- ENC_TENSOR_CORES=0 (16-bit layers on the f32 multiply-add tiles)"
ENC_AUTOTUNE=0 ENC_TENSOR_CORES=0 "$build/bench/enc_bench_gpu" --benchmark_filter='GramMatrix_(f16|bf16)|Conv2d_bf16' \
  --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

sbn=("$build/tools/encc/encc" bench --layer SyncBatchNorm --set num_features=256 --input X=random:32,256,56,56
  --device cuda)
echo "== SyncBatchNorm [32,256,56,56] f32, per kernel"
ENC_PROFILE=1 "${sbn[@]}" --runs 20

# Nsight Compute, where the machine has it: DRAM bytes and rate, occupancy and registers per kernel.
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 || true)
if [ -n "$ncu" ]; then
  echo "== SyncBatchNorm under $ncu (one forward + backward)"
  timeout 120 "$ncu" --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,\
dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,\
launch__grid_size,launch__registers_per_thread "${sbn[@]}" --runs 1 || echo "(ncu failed)"
fi

echo "== Synchronized batch norm on the GPU: 2 ranks (collectives through host memory)"
"$build/tools/encc/encc" launch -n 2 -- "$build/examples/train_mlp" --device cuda
ENC_NUM_THREADS=1 "$build/tools/encc/encc" launch -n 2 -- "$build/tools/encc/encc" bench --layer SyncBatchNorm \
  --set num_features=256 --input X=random:16,256,56,56 --device cuda --runs 20
