// Forward+backward of the shipped layers on the CPU: fused (encc's normal compilation)
// against the same math unfused (one loop nest per statement, every intermediate stored),
// same process, same thread pool. The hardware references run in the same process too:
// OpenBLAS sgemm (the bar for contractions) and memcpy (the bar for memory-bound layers).
//
//   OPENBLAS_CORETYPE=SkylakeX build/bench/enc_bench --benchmark_min_time=1
#include "runtime/Layer.h"
#include "runtime/Rng.h"
#include "runtime/ThreadPool.h"

#include <benchmark/benchmark.h>
#ifdef ENC_HAVE_CBLAS
#include <cblas.h>
#endif

#include <cstring>
#include <string>

using namespace enc;

namespace {

// Uniform in [-1, 1), or (`normal`) unit-variance normal, as features after a batch norm are.
Tensor randomTensor(const Shape &shape, uint64_t seed, bool normal = false) {
  Tensor t(DType::F32, shape);
  Rng rng(seed);
  float *p = t.dataAs<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(normal ? rng.normal(0, 1) : rng.uniform(-1, 1));
  return t;
}

struct Case {
  const char *layer;
  std::map<std::string, std::string> sets;
  Shape input;
  bool normalInput = false; // X unit-variance normal (else uniform in [-1, 1))
};

// dtype f16/bf16: the f32 layer with 16-bit inputs, outputs and gradients. `gflop`, when
// given, is the work of one forward+backward pass (reported as a GFLOP/s counter).
void runLayer(benchmark::State &state, const Case &c, bool fuse, DType dtype = DType::F32, double gflop = 0) {
  static auto lib = Library::shipped();
  LayerOptions opts;
  opts.fuse = fuse;
  opts.dtype = dtype;
  Layer layer(lib, c.layer, c.sets, opts);
  Tensor x = randomTensor(c.input, 1, c.normalInput).to(dtype);
  auto out = layer.forward({{"X", x}});
  Tensor g = randomTensor(out.at("Y").shape(), 2).to(dtype);
  layer.backward({{"Y", g}}); // compile both passes before timing
  for (auto _ : state) {
    auto y = layer.forward({{"X", x}});
    auto grads = layer.backward({{"Y", g}});
    benchmark::DoNotOptimize(grads);
  }
  state.counters["threads"] = ThreadPool::global().size();
  if (gflop > 0)
    state.counters["GFLOP/s"] = benchmark::Counter(gflop * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Forward + backward work of a convolution: three contractions (Y, grad_X, grad_weight) of
// 2 * B * Co * Ho * Wo * Ci * kh * kw flops each.
double convGflop(int64_t b, int64_t ci, int64_t co, int64_t ho, int64_t wo, int64_t k) {
  return 3.0 * 2.0 * static_cast<double>(b * co * ho * wo * ci * k * k) / 1e9;
}

const Case kEncoding{"Encoding", {{"D", "128"}, {"K", "32"}}, {8, 128, 1024}};
// The same on unit-variance features: scale * ||x - c||^2 spans about 128 across the
// codewords, so most assignment weights are subnormal or 0 (exp far below -87).
const Case kEncodingNormal{"Encoding", {{"D", "128"}, {"K", "32"}}, {8, 128, 1024}, true};
const Case kGram{"GramMatrix", {}, {8, 128, 32, 32}};
const Case kSoftmax{"Softmax", {}, {16, 64, 32, 32}};
const Case kLeaky{"LeakyReLU", {}, {16, 64, 56, 56}};
const Case kBatchNorm{"SyncBatchNorm", {{"num_features", "64"}}, {16, 64, 56, 56}};
const Case kConv{"Conv2d", {{"in_channels", "64"}, {"out_channels", "64"}, {"kernel_size", "3"}, {"padding", "1"}},
                 {8, 64, 32, 32}};
const Case kUpConv{"UpsampleConv2d",
                   {{"in_channels", "64"}, {"out_channels", "32"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}},
                   {4, 64, 32, 32}};
const Case kInspiration{"Inspiration", {{"C", "128"}}, {8, 128, 32, 32}};
// The shapes of issue 17's comparison with PyTorch's CPU kernels (bench/contractions.py).
const Case kConvResNet{"Conv2d", {{"in_channels", "64"}, {"out_channels", "64"}, {"kernel_size", "3"}, {"padding", "1"}},
                       {8, 64, 56, 56}};
const Case kConvFew{"Conv2d", {{"in_channels", "3"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}},
                    {8, 3, 64, 64}};
const Case kConvStride2{
    "Conv2d", {{"in_channels", "64"}, {"out_channels", "128"}, {"kernel_size", "3"}, {"padding", "1"}, {"stride", "2"}},
    {8, 64, 56, 56}};
const Case kLinear{"Linear", {{"in_features", "1024"}, {"out_features", "1024"}}, {512, 1024}};

// Encoding's work as counted in bench/RESULTS.md since stop 8: 14 * B * N * K * D.
void BM_Encoding_Fused(benchmark::State &s) { runLayer(s, kEncoding, true, DType::F32, 14.0 * 8 * 1024 * 32 * 128 / 1e9); }
void BM_Encoding_Unfused(benchmark::State &s) { runLayer(s, kEncoding, false); }
void BM_Encoding_NormalInput(benchmark::State &s) {
  runLayer(s, kEncodingNormal, true, DType::F32, 14.0 * 8 * 1024 * 32 * 128 / 1e9);
}
// GramMatrix's work: the forward contraction and one of the same size for the gradient.
void BM_Gram_Fused(benchmark::State &s) { runLayer(s, kGram, true, DType::F32, 2 * 2.0 * 8 * 128 * 128 * 1024 / 1e9); }
void BM_Gram_Unfused(benchmark::State &s) { runLayer(s, kGram, false); }
void BM_Softmax_Fused(benchmark::State &s) { runLayer(s, kSoftmax, true); }
void BM_Softmax_Unfused(benchmark::State &s) { runLayer(s, kSoftmax, false); }
void BM_LeakyReLU_Fused(benchmark::State &s) { runLayer(s, kLeaky, true); }
void BM_LeakyReLU_Unfused(benchmark::State &s) { runLayer(s, kLeaky, false); }

void BM_BatchNorm_Fused(benchmark::State &s) { runLayer(s, kBatchNorm, true); }
void BM_BatchNorm_Unfused(benchmark::State &s) { runLayer(s, kBatchNorm, false); }
void BM_BatchNorm_Fused_bf16(benchmark::State &s) { runLayer(s, kBatchNorm, true, DType::BF16); }
void BM_BatchNorm_Fused_f16(benchmark::State &s) { runLayer(s, kBatchNorm, true, DType::F16); }
void BM_LeakyReLU_Fused_bf16(benchmark::State &s) { runLayer(s, kLeaky, true, DType::BF16); }
void BM_LeakyReLU_Fused_f16(benchmark::State &s) { runLayer(s, kLeaky, true, DType::F16); }
void BM_Conv2d_Fused(benchmark::State &s) { runLayer(s, kConv, true, DType::F32, convGflop(8, 64, 64, 32, 32, 3)); }
void BM_UpsampleConv2d_Fused(benchmark::State &s) {
  runLayer(s, kUpConv, true, DType::F32, convGflop(4, 64, 32 * 4, 32, 32, 3));
}
// Gram-like: three contractions of 2 * B * C^2 * HW.
void BM_Inspiration_Fused(benchmark::State &s) { runLayer(s, kInspiration, true, DType::F32, 3 * 2.0 * 8 * 128 * 128 * 1024 / 1e9); }
void BM_Conv2d_ResNet(benchmark::State &s) { runLayer(s, kConvResNet, true, DType::F32, convGflop(8, 64, 64, 56, 56, 3)); }
void BM_Conv2d_FewChannels(benchmark::State &s) { runLayer(s, kConvFew, true, DType::F32, convGflop(8, 3, 8, 64, 64, 3)); }
void BM_Conv2d_Stride2(benchmark::State &s) { runLayer(s, kConvStride2, true, DType::F32, convGflop(8, 64, 128, 28, 28, 3)); }
// CrossEntropyLoss over 1000 classes for a batch of 256 (ImageNet's head): a memory-bound pass
// over the logits each way; targets in range, one in 16 ignored (-100).
void BM_CrossEntropyLoss(benchmark::State &state) {
  static auto lib = Library::shipped();
  Layer layer(lib, "CrossEntropyLoss", {}, {});
  const int64_t B = 256, C = 1000;
  Tensor x = randomTensor({B, C}, 1), t(DType::F32, {B});
  for (int64_t b = 0; b < B; ++b) t.dataAs<float>()[b] = b % 16 == 0 ? -100.0f : static_cast<float>(b * 37 % C);
  Tensor g(DType::F32, {});
  g.dataAs<float>()[0] = 1;
  layer.forward({{"X", x}, {"T", t}});
  layer.backward({{"Y", g}});
  for (auto _ : state) {
    layer.forward({{"X", x}, {"T", t}});
    auto grads = layer.backward({{"Y", g}});
    benchmark::DoNotOptimize(grads);
  }
  state.counters["threads"] = ThreadPool::global().size();
}

void BM_Linear(benchmark::State &s) { runLayer(s, kLinear, true, DType::F32, 3 * 2.0 * 512 * 1024 * 1024 / 1e9); }

BENCHMARK(BM_Encoding_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Encoding_Unfused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Encoding_NormalInput)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Gram_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Gram_Unfused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Softmax_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Softmax_Unfused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LeakyReLU_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LeakyReLU_Unfused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNorm_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNorm_Unfused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNorm_Fused_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNorm_Fused_f16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LeakyReLU_Fused_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LeakyReLU_Fused_f16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2d_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_UpsampleConv2d_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Inspiration_Fused)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2d_ResNet)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2d_FewChannels)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2d_Stride2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Linear)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CrossEntropyLoss)->Unit(benchmark::kMillisecond)->UseRealTime();

// References: the hardware's bars, measured in the same run.
void BM_Memcpy(benchmark::State &state) {
  size_t bytes = size_t{256} << 20;
  std::vector<char> a(bytes, 1), b(bytes);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes * 2));
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef ENC_HAVE_CBLAS
extern "C" char *openblas_get_corename(void);

// OpenBLAS picks its kernels by CPU model; on a virtual CPU it may not recognize it falls back
// to old SSE kernels (Debian's 0.3.21 says "Prescott" here) and the bar drops five-fold. The
// label shows which kernels ran: run with OPENBLAS_CORETYPE=SkylakeX (or Haswell) if needed.
void BM_Sgemm(benchmark::State &state) {
  state.SetLabel(std::string("OpenBLAS core ") + openblas_get_corename());
  int n = 1024;
  Tensor a = randomTensor({n, n}, 3), b = randomTensor({n, n}, 4), c(DType::F32, {n, n});
  for (auto _ : state)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.dataAs<float>(), n, b.dataAs<float>(), n,
                0.0f, c.dataAs<float>(), n);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * n * n * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Sgemm)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

} // namespace

BENCHMARK_MAIN();
