// GPU benchmarks: forward+backward of the shipped layers at the sizes of issue #5, timed on the
// GPU's stream with CUDA events (inputs, parameters and gradients already on the device), next
// to a device-to-device copy measured in the same run (the bar for memory-bound layers); issue
// 14's ResNet-style block stack compiled as one network against its layers run one by one. Also
// NVRTC: a cold compile of each layer's kernels, a disk-cache hit and a memory hit (these run
// without a GPU).
//
//   build/bench/enc_bench_gpu --benchmark_min_time=0.5
//   ENC_BENCH_STACK="B C HW N" sets the block stack's size (default 16 64 56 2; the test suite
//   runs it tiny on the CUDA emulator).
#include "BlockStack.h"

#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "runtime/DiskCache.h"
#include "runtime/Gpu.h"
#include "compiler/HyperParams.h"
#include "runtime/Layer.h"
#include "runtime/Nvrtc.h"
#include "runtime/Rng.h"

#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>

using namespace enc;

namespace {

Tensor randomTensor(const Shape &shape, DType dtype, uint64_t seed) {
  Tensor t(dtype, shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, rng.uniform(-1, 1));
  return t;
}

struct Case {
  const char *layer;
  std::map<std::string, std::string> sets;
  Shape input;
  DType dtype = DType::F32;
  double flops = 0;        // forward + backward, for GFLOP/s (0: not reported)
  double idealBytes = 0;   // one read of each input and write of each output, both passes
  std::map<std::string, int64_t> sizes; // the input's size names, for the kernels' own traffic
};

// Bytes the GPU kernels of one pass touch: each kernel reads each of its inputs and writes
// each output once (what the schedule moves at the least; the DRAM traffic when the
// per-kernel working set does not fit in L2).
// With 16-bit storage the layer's input and output and their gradients (X, Y, grad_X, grad_Y)
// take 2 bytes an element, everything else f32's 4.
double kernelBytes(const ir::Program &pass, const std::map<std::string, int64_t> &sizes, DType dtype) {
  static const std::set<std::string> exchanged = {"X", "Y", "grad_X", "grad_Y"};
  std::map<std::string, ir::Expr> values;
  for (const auto &[n, v] : sizes) values[n] = ir::intImm(v);
  const ir::Pipeline pipeline;
  ir::LoopProgram loops = pipeline.lower(pipeline.specializeSizes(pass, values), {.target = ir::Target::GPU});
  const ir::Program &p = loops.tensors;
  double bytes = 0;
  for (const ir::Kernel &k : loops.kernels)
    for (const std::string &b : k.buffers) {
      double n = 1;
      for (const ir::Expr &d : p.tensor(b)->shape) {
        int64_t v = 0;
        if (ir::isConst(d, &v)) n *= static_cast<double>(v);
      }
      DType stored = isHalfPrecision(dtype) && !exchanged.count(b) ? DType::F32 : dtype;
      bytes += n * static_cast<double>(dtypeSize(stored));
    }
  return bytes;
}

void runOnGpu(benchmark::State &state, const Case &c) {
  cuda::Gpu *gpu = cuda::Gpu::get();
  if (!gpu) {
    state.SkipWithError(("no GPU: " + cuda::Driver::unavailableReason()).c_str());
    return;
  }
  static auto lib = Library::shipped();
  try {
    LayerOptions opts;
    opts.dtype = c.dtype;
    opts.device = Device::CUDA;
    Layer layer(lib, c.layer, c.sets, opts);
    Tensor x = randomTensor(c.input, c.dtype, 1).to(Device::CUDA);
    auto out = layer.forward({{"X", x}});
    Tensor g = randomTensor(out.at("Y").shape(), c.dtype, 2).to(Device::CUDA);
    layer.backward({{"Y", g}}); // compile both passes before timing
    cuda::GpuTimer timer(*gpu);
    for (auto _ : state) {
      timer.start();
      auto y = layer.forward({{"X", x}});
      auto grads = layer.backward({{"Y", g}});
      state.SetIterationTime(timer.stopSeconds());
    }
    double n = static_cast<double>(state.iterations());
    if (c.flops > 0) state.counters["GFLOP/s"] = benchmark::Counter(c.flops * n / 1e9, benchmark::Counter::kIsRate);
    if (c.idealBytes > 0) state.counters["GB/s"] = benchmark::Counter(c.idealBytes * n / 1e9, benchmark::Counter::kIsRate);
    if (!c.sizes.empty()) {
      double touched = kernelBytes(layer.program(), c.sizes, c.dtype) + kernelBytes(layer.gradientProgram(), c.sizes, c.dtype);
      state.counters["kernel_GB/s"] = benchmark::Counter(touched * n / 1e9, benchmark::Counter::kIsRate);
      state.counters["kernel_GB"] = touched / 1e9;
    }
    state.SetLabel(gpu->name());
  } catch (const std::exception &e) {
    state.SkipWithError(e.what());
  }
}

double numel(const Shape &s) { return static_cast<double>(shapeNumel(s)); }

// SyncBatchNorm [32, 256, 56, 56]: forward reads X and writes Y, backward reads X and dY and
// writes dX: 5 tensor-sized transfers at the least.
const Shape kBnShape{32, 256, 56, 56};
const Case kBatchNorm{"SyncBatchNorm", {{"num_features", "256"}}, kBnShape, DType::F32, 0, 5 * 4 * numel(kBnShape),
                      {{"B", 32}, {"L", 56 * 56}}};
// The same with 16-bit X, Y, dY and dX: half the bytes.
const Case kBatchNormBf16{"SyncBatchNorm", {{"num_features", "256"}}, kBnShape, DType::BF16, 0, 5 * 2 * numel(kBnShape),
                          {{"B", 32}, {"L", 56 * 56}}};
const Case kBatchNormF16{"SyncBatchNorm", {{"num_features", "256"}}, kBnShape, DType::F16, 0, 5 * 2 * numel(kBnShape),
                         {{"B", 32}, {"L", 56 * 56}}};
// Encoding B=16, D=512, K=32, N=3600: the x·c and A^T x contractions are 2·B·N·K·D each;
// backward has three of that size.
double encodingFlops() { return 5 * 2.0 * 16 * 3600 * 32 * 512; }
const Case kEncodingF32{"Encoding", {{"D", "512"}, {"K", "32"}}, {16, 512, 60, 60}, DType::F32, encodingFlops()};
const Case kEncodingF64{"Encoding", {{"D", "512"}, {"K", "32"}}, {16, 512, 60, 60}, DType::F64, encodingFlops()};
// GramMatrix [16, 512, 64, 64]: 2·B·C·C·HW forward, twice that backward.
double gramFlops() { return 3 * 2.0 * 16 * 512 * 512 * 4096; }
const Case kGram{"GramMatrix", {}, {16, 512, 64, 64}, DType::F32, gramFlops()};
const Case kInspiration{"Inspiration", {{"C", "512"}}, {16, 512, 64, 64}, DType::F32, gramFlops()};
// Stored in 16 bits: the contractions run on tensor cores (against 989 TFLOP/s dense on the H200).
const Case kGramF16{"GramMatrix", {}, {16, 512, 64, 64}, DType::F16, gramFlops()};
const Case kGramBf16{"GramMatrix", {}, {16, 512, 64, 64}, DType::BF16, gramFlops()};
// Conv2d 256 -> 256, 3x3, pad 1 on [32, 256, 28, 28] (ResNet's third stage): three
// convolution-sized contractions forward and backward.
double convFlops() { return 3 * 2.0 * 32 * 256 * 28 * 28 * 256 * 9; }
const Case kConvF32{"Conv2d",
                    {{"in_channels", "256"}, {"out_channels", "256"}, {"kernel_size", "3"}, {"padding", "1"}},
                    {32, 256, 28, 28},
                    DType::F32,
                    convFlops()};
const Case kConvBf16{"Conv2d",
                     {{"in_channels", "256"}, {"out_channels", "256"}, {"kernel_size", "3"}, {"padding", "1"}},
                     {32, 256, 28, 28},
                     DType::BF16,
                     convFlops()};
// UpsampleConv2d 128 -> 64, 3x3, r = 2 on [16, 128, 64, 64]: a 128 -> 256 convolution, three
// convolution-sized contractions forward and backward.
double upconvFlops() { return 3 * 2.0 * 16 * 256 * 64 * 64 * 128 * 9; }
const Case kUpConv{"UpsampleConv2d",
                   {{"in_channels", "128"}, {"out_channels", "64"}, {"kernel_size", "3"}, {"padding", "1"},
                    {"scale_factor", "2"}},
                   {16, 128, 64, 64},
                   DType::F32,
                   upconvFlops()};

// LeakyReLU at the same size: element-wise both ways (5 tensor transfers).
const Case kLeaky{"LeakyReLU", {}, kBnShape, DType::F32, 0, 5 * 4 * numel(kBnShape), {{"N", 32 * 256 * 56 * 56}}};

void BM_Gpu_SyncBatchNorm_f32(benchmark::State &s) { runOnGpu(s, kBatchNorm); }
void BM_Gpu_SyncBatchNorm_bf16(benchmark::State &s) { runOnGpu(s, kBatchNormBf16); }
void BM_Gpu_SyncBatchNorm_f16(benchmark::State &s) { runOnGpu(s, kBatchNormF16); }
void BM_Gpu_LeakyReLU_f32(benchmark::State &s) { runOnGpu(s, kLeaky); }
BENCHMARK(BM_Gpu_LeakyReLU_f32)->Unit(benchmark::kMillisecond)->UseManualTime();
void BM_Gpu_Encoding_f32(benchmark::State &s) { runOnGpu(s, kEncodingF32); }
void BM_Gpu_Encoding_f64(benchmark::State &s) { runOnGpu(s, kEncodingF64); }
void BM_Gpu_GramMatrix_f32(benchmark::State &s) { runOnGpu(s, kGram); }
void BM_Gpu_Inspiration_f32(benchmark::State &s) { runOnGpu(s, kInspiration); }
void BM_Gpu_UpsampleConv2d_f32(benchmark::State &s) { runOnGpu(s, kUpConv); }
void BM_Gpu_GramMatrix_f16(benchmark::State &s) { runOnGpu(s, kGramF16); }
void BM_Gpu_GramMatrix_bf16(benchmark::State &s) { runOnGpu(s, kGramBf16); }
void BM_Gpu_Conv2d_f32(benchmark::State &s) { runOnGpu(s, kConvF32); }
void BM_Gpu_Conv2d_bf16(benchmark::State &s) { runOnGpu(s, kConvBf16); }
BENCHMARK(BM_Gpu_SyncBatchNorm_f32)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_SyncBatchNorm_bf16)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_SyncBatchNorm_f16)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_Encoding_f32)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_Encoding_f64)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_GramMatrix_f32)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_Inspiration_f32)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_UpsampleConv2d_f32)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_GramMatrix_f16)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_GramMatrix_bf16)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_Conv2d_f32)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_Conv2d_bf16)->Unit(benchmark::kMillisecond)->UseManualTime();

// The block stack (bench/BlockStack.h) fwd+bwd on the GPU, `whole` as one network or else as
// separate Layers: time by CUDA events, kernels per pass, the device allocator's peak during
// the timed passes (parameters and inputs included).
void stackOnGpu(benchmark::State &state, bool whole) {
  cuda::Gpu *gpu = cuda::Gpu::get();
  if (!gpu) {
    state.SkipWithError(("no GPU: " + cuda::Driver::unavailableReason()).c_str());
    return;
  }
  int64_t b = 16, c = 64, hw = 56, n = 2;
  if (const char *size = std::getenv("ENC_BENCH_STACK"))
    if (std::sscanf(size, "%ld %ld %ld %ld", &b, &c, &hw, &n) != 4) {
      state.SkipWithError("ENC_BENCH_STACK must be four numbers: B C HW N");
      return;
    }
  try {
    static auto lib = Library::fromSource("stack.enc", bench::kStackSource);
    std::unique_ptr<bench::BlockStack> stack;
    if (whole) stack = std::make_unique<bench::WholeStack>(lib, b, c, hw, static_cast<int>(n), Device::CUDA);
    else stack = std::make_unique<bench::SeparateStack>(b, c, hw, static_cast<int>(n), Device::CUDA);
    stack->pass(); // compiles
    stack->pass(); // the forward pass planned once the backward pass exists
    gpu->synchronize();
    gpu->allocator().resetPeak();
    cuda::GpuTimer timer(*gpu);
    for (auto _ : state) {
      timer.start();
      stack->pass();
      state.SetIterationTime(timer.stopSeconds());
    }
    state.counters["kernels"] = static_cast<double>(stack->kernels());
    state.counters["peak_MiB"] = static_cast<double>(gpu->allocator().stats().peakBytes) / 1048576.0;
    state.SetLabel(fmt::format("{} x Residual, [{}, {}, {}, {}], {}", n, b, c, hw, hw, gpu->name()));
  } catch (const std::exception &e) {
    state.SkipWithError(e.what());
  }
}
void BM_Gpu_Stack_Network(benchmark::State &s) { stackOnGpu(s, true); }
void BM_Gpu_Stack_SeparateLayers(benchmark::State &s) { stackOnGpu(s, false); }
BENCHMARK(BM_Gpu_Stack_Network)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Gpu_Stack_SeparateLayers)->Unit(benchmark::kMillisecond)->UseManualTime();

// The bar: a device-to-device copy of 1 GiB, counting bytes read and written.
void BM_Gpu_CopyBandwidth(benchmark::State &state) {
  cuda::Gpu *gpu = cuda::Gpu::get();
  if (!gpu) {
    state.SkipWithError(("no GPU: " + cuda::Driver::unavailableReason()).c_str());
    return;
  }
  size_t bytes = size_t{1} << 30;
  Tensor a(DType::F32, {static_cast<int64_t>(bytes / 4)}, Device::CUDA);
  Tensor b = Tensor::empty(DType::F32, {static_cast<int64_t>(bytes / 4)}, Device::CUDA);
  cuda::GpuTimer timer(*gpu);
  for (auto _ : state) {
    timer.start();
    gpu->copyOnDevice(reinterpret_cast<cuda::CUdeviceptr>(b.data()), reinterpret_cast<cuda::CUdeviceptr>(a.data()), bytes);
    state.SetIterationTime(timer.stopSeconds());
  }
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * static_cast<double>(bytes) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
  state.SetLabel(gpu->name());
}
BENCHMARK(BM_Gpu_CopyBandwidth)->Unit(benchmark::kMillisecond)->UseManualTime();

// NVRTC: every kernel of one layer's forward and backward in one translation unit.
std::string layerSource(const char *name, const std::map<std::string, std::string> &sets) {
  static auto lib = Library::shipped();
  const LayerSymbols &sym = lib->get(name);
  auto hyper = resolveHyperParams(sym, sets);
  hyper["training"] = ir::boolImm(true);
  const LayerInstance instance = instantiateLayer(*lib, sym, hyper);
  const ir::Pipeline pipeline;
  return codegen::emitCuda(pipeline.lower(pipeline.forward(*instance.symbols, hyper), {.target = ir::Target::GPU}));
}

// Cold: a unique comment defeats every cache. Disk: the entry written by the first call is read
// back (the process's ENC_CACHE_DIR).
void nvrtcBench(benchmark::State &state, const char *layer, const std::map<std::string, std::string> &sets, bool disk) {
  if (!cuda::nvrtcAvailable()) {
    state.SkipWithError("built without NVRTC");
    return;
  }
  std::string src = layerSource(layer, sets);
  cuda::CompileOptions opts;
  opts.arch = "sm_90";
  if (disk) cuda::compileCached(src, opts);
  int64_t salt = 0;
  bool cached = true;
  for (auto _ : state) {
    if (disk) {
      bool hit = false;
      benchmark::DoNotOptimize(cuda::compileCached(src, opts, &hit));
      cached = cached && hit;
    } else {
      benchmark::DoNotOptimize(cuda::compile(src + "// " + std::to_string(salt++) + "\n", opts));
    }
  }
  if (disk && !cached) state.SkipWithError("the disk cache missed (ENC_CACHE_DISABLE set?)");
}
const std::map<std::string, std::string> kEncodingSets{{"D", "512"}, {"K", "32"}};
const std::map<std::string, std::string> kBnSets{{"num_features", "256"}};
const std::map<std::string, std::string> kConvSets{
    {"in_channels", "128"}, {"out_channels", "64"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}};
void BM_Nvrtc_Cold_Encoding(benchmark::State &s) { nvrtcBench(s, "Encoding", kEncodingSets, false); }
void BM_Nvrtc_DiskHit_Encoding(benchmark::State &s) { nvrtcBench(s, "Encoding", kEncodingSets, true); }
void BM_Nvrtc_Cold_SyncBatchNorm(benchmark::State &s) { nvrtcBench(s, "SyncBatchNorm", kBnSets, false); }
void BM_Nvrtc_DiskHit_SyncBatchNorm(benchmark::State &s) { nvrtcBench(s, "SyncBatchNorm", kBnSets, true); }
void BM_Nvrtc_Cold_UpsampleConv2d(benchmark::State &s) { nvrtcBench(s, "UpsampleConv2d", kConvSets, false); }
void BM_Nvrtc_DiskHit_UpsampleConv2d(benchmark::State &s) { nvrtcBench(s, "UpsampleConv2d", kConvSets, true); }
BENCHMARK(BM_Nvrtc_Cold_Encoding)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Nvrtc_DiskHit_Encoding)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Nvrtc_Cold_SyncBatchNorm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Nvrtc_DiskHit_SyncBatchNorm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Nvrtc_Cold_UpsampleConv2d)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Nvrtc_DiskHit_UpsampleConv2d)->Unit(benchmark::kMillisecond)->UseRealTime();

// Memory hit: a second layer with the same settings and input shape finds its kernels loaded
// in the process (a new Layer, its first forward on a small input, timed on the host).
void BM_Gpu_MemoryHit_SyncBatchNorm(benchmark::State &state) {
  if (!cuda::Gpu::get()) {
    state.SkipWithError(("no GPU: " + cuda::Driver::unavailableReason()).c_str());
    return;
  }
  static auto lib = Library::shipped();
  LayerOptions opts;
  opts.device = Device::CUDA;
  Tensor x = randomTensor({2, 256, 4, 4}, DType::F32, 1).to(Device::CUDA);
  Layer(lib, "SyncBatchNorm", kBnSets, opts).forward({{"X", x}});
  for (auto _ : state) {
    Layer layer(lib, "SyncBatchNorm", kBnSets, opts);
    benchmark::DoNotOptimize(layer.forward({{"X", x}}));
    cuda::Gpu::get()->synchronize();
  }
}
BENCHMARK(BM_Gpu_MemoryHit_SyncBatchNorm)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
