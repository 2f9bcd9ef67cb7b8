// Every shipped layer, forward and backward, on the GPU against the CPU backend (which the
// layer suites check against naive double loops and finite differences) and, for a few layers,
// against the naive loops of ReferenceMath.h directly: f64 within 1e-10, f32 within 1e-4,
// f16 / bf16 storage within about one unit in the last place (2e-3 / 1.6e-2), relative to the
// largest magnitude of the reference. Fresh device memory is NaN-filled (ENC_POISON /
// ENC_CUDA_POISON), so an element a kernel forgets to write fails the comparison. Skipped,
// with the reason, where there is no GPU.
#include "CliTestSupport.h"
#include "LayerCases.h"
#include "ReferenceMath.h"

#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;
using GpuCase = LayerCase;

std::vector<LayerCase> cases() { return layerCases(); }

// f64 within 1e-10 and f32 within 1e-4; with 16-bit storage both devices round their results
// to 16 bits, and an f32 difference can land on either side of a rounding boundary: one unit
// in the last place of the stored type.
double tolerance(DType t) {
  switch (t) {
  case DType::F64: return 1e-10;
  case DType::F32: return 1e-4;
  case DType::F16: return 2e-3;
  case DType::BF16: return 1.6e-2;
  }
  return 0;
}

class GpuLayer : public ::testing::TestWithParam<size_t> {
protected:
  void SetUp() override {
    if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  }
};

TEST(GpuLayerCases, CoversEveryShippedLayer) {
  std::set<std::string> covered;
  for (const GpuCase &c : cases()) covered.insert(c.layer);
  for (const std::string &name : lib()->layerNames()) EXPECT_TRUE(covered.count(name)) << name << " has no GPU case";
}

// The same layer, seed and inputs on both devices: outputs, updated buffers and every
// gradient agree, for each of `dtypes`.
void expectGpuMatchesCpu(const GpuCase &c, const std::vector<DType> &dtypes) {
  SCOPED_TRACE(describe(c));
  for (DType dtype : dtypes) {
    SCOPED_TRACE(dtypeName(dtype));
    try {
      Layer cpu(lib(), c.layer, c.settings, LayerOptions{dtype, 7, c.training, true, Device::CPU});
      Layer gpu(lib(), c.layer, c.settings, LayerOptions{dtype, 7, c.training, true, Device::CUDA});
      // A target for Inspiration (its G is zeros until set), and the same parameters on both.
      uint64_t seed = 100;
      for (const auto &[n, p] : cpu.params()) {
        Tensor v = randomTensor(p.shape(), seed++);
        if (n == "running_var")
          for (int64_t i = 0; i < v.numel(); ++i) v.set(i, 0.5 + std::abs(v.at(i)));
        cpu.setParam(n, v);
        gpu.setParam(n, v);
      }
      Tensors inputs;
      for (const auto &[n, shape] : c.inputs)
        inputs[n] = randomTensor(shape, seed++, c.integerInputs.count(n) > 0, 6).to(dtype);
      Tensors yc = cpu.forward(inputs), yg = gpu.forward(inputs);
      ASSERT_EQ(yc.size(), yg.size());
      Tensors seeds;
      for (const auto &[n, y] : yc) {
        ASSERT_TRUE(yg.count(n));
        EXPECT_TRUE(yg.at(n).isCuda());
        EXPECT_LE(relError(yg.at(n), y), tolerance(dtype)) << "output " << n;
        seeds[n] = randomTensor(y.shape(), seed++).to(dtype);
      }
      for (const auto &[n, p] : cpu.params())
        EXPECT_LE(relError(gpu.params().at(n), p), tolerance(dtype)) << "parameter or buffer " << n << " after forward";
      Tensors gc = cpu.backward(seeds), gg = gpu.backward(seeds);
      ASSERT_EQ(gc.size(), gg.size());
      for (const auto &[n, g] : gc) {
        if (c.integerInputs.count(n)) continue; // no gradient through class indices
        ASSERT_TRUE(gg.count(n)) << n;
        EXPECT_LE(relError(gg.at(n), g), tolerance(dtype)) << "gradient of " << n;
      }
    } catch (const Error &e) {
      ADD_FAILURE() << "threw: " << e.what();
    }
  }
}

TEST_P(GpuLayer, MatchesTheCpu) {
  expectGpuMatchesCpu(cases()[GetParam()], {DType::F64, DType::F32, DType::F16, DType::BF16});
}

INSTANTIATE_TEST_SUITE_P(Shipped, GpuLayer, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t> &i) {
                           return cases()[i.param].layer + "_" + std::to_string(i.param);
                         });

// Sizes at the edges of the GPU schedule: one past a 64-wide tile or a 16-deep reduction
// slice, several tiles per dimension, 1x1 and dilated convolutions, split reductions whose
// length the chunks do not divide, more codewords than a warp has lanes. f64 and f32.
std::vector<GpuCase> edgeCases() {
  return {
      {"GramMatrix", {}, {{"X", {1, 65, 5, 13}}}},
      {"GramMatrix", {}, {{"X", {2, 129, 3, 3}}}},
      {"GramMatrix", {}, {{"X", {1, 30, 47, 47}}}},
      {"Linear", {{"in_features", "17"}, {"out_features", "65"}}, {{"X", {129, 17}}}},
      {"Conv2d", {{"in_channels", "5"}, {"out_channels", "70"}, {"kernel_size", "3"}, {"padding", "1"}},
       {{"X", {1, 5, 11, 13}}}},
      {"Conv2d", {{"in_channels", "16"}, {"out_channels", "8"}, {"kernel_size", "1"}}, {{"X", {2, 16, 10, 10}}}},
      {"Conv2d", {{"in_channels", "3"}, {"out_channels", "4"}, {"kernel_size", "3"}, {"padding", "2"}, {"dilation", "2"}},
       {{"X", {2, 3, 9, 10}}}},
      {"UpsampleConv2d",
       {{"in_channels", "8"}, {"out_channels", "66"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}},
       {{"X", {1, 8, 9, 7}}}},
      {"Inspiration", {{"C", "65"}}, {{"X", {1, 65, 6, 5}}}},
      {"Encoding", {{"D", "65"}, {"K", "33"}}, {{"X", {2, 65, 70}}}},
      {"SyncBatchNorm", {{"num_features", "5"}}, {{"X", {3, 5, 997}}}},
      {"Softmax", {}, {{"X", {2, 2500, 2}}}},
      // A row per block: rows of 1100 (a partial last trip) and, in the gradient, of 16 * 32.
      {"SyncBatchNorm", {{"num_features", "3"}}, {{"X", {2, 3, 1100}}}},
      {"GlobalAvgPool2d", {}, {{"X", {2, 3, 16, 32}}}},
  };
}

class GpuEdgeCase : public GpuLayer {};

TEST_P(GpuEdgeCase, MatchesTheCpu) { expectGpuMatchesCpu(edgeCases()[GetParam()], {DType::F64, DType::F32}); }

INSTANTIATE_TEST_SUITE_P(Edges, GpuEdgeCase, ::testing::Range<size_t>(0, edgeCases().size()),
                         [](const ::testing::TestParamInfo<size_t> &i) {
                           return edgeCases()[i.param].layer + "_" + std::to_string(i.param);
                         });

// The row schedule (a row per thread block) with 16-bit storage too.
TEST(GpuRows, SixteenBitStorageMatchesTheCpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  for (const GpuCase &c : edgeCases())
    if ((c.layer == "SyncBatchNorm" || c.layer == "GlobalAvgPool2d") && c.inputs.at("X").back() >= 32)
      expectGpuMatchesCpu(c, {DType::F16, DType::BF16});
}

// Other unroll factors of the strided loops (ENC_CUDA_UNROLL; 3 leaves a remainder for the
// tail loop), on the cases whose reductions and element-wise loops run longest per thread.
TEST(GpuUnroll, OtherFactorsMatchTheCpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  for (const char *factor : {"1", "3"}) {
    SCOPED_TRACE(std::string("ENC_CUDA_UNROLL=") + factor);
    ScopedEnv unroll("ENC_CUDA_UNROLL", factor);
    for (const GpuCase &c : edgeCases())
      if (c.layer == "SyncBatchNorm" || c.layer == "Softmax") expectGpuMatchesCpu(c, {DType::F32});
  }
}

// Against the naive loops directly, at sizes where the GPU's reductions span many warps.
TEST(GpuLayerReference, EncodingSoftmaxLeakyRelu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  const int64_t B = 3, D = 16, K = 8, N = 300;
  Layer enc(lib(), "Encoding", {{"D", "16"}, {"K", "8"}}, LayerOptions{DType::F64, 3, true, true, Device::CUDA});
  Tensor x = randomTensor({B, D, N}, 1);
  auto vals = [](const Tensor &t) {
    Tensor h = t.cpu();
    std::vector<double> v(static_cast<size_t>(h.numel()));
    for (int64_t i = 0; i < h.numel(); ++i) v[static_cast<size_t>(i)] = h.at(i);
    return v;
  };
  auto near = [](const std::vector<double> &a, const std::vector<double> &b, double tol) {
    double scale = 1, worst = 0;
    for (double v : b) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
    return a.size() == b.size() && worst / scale <= tol;
  };
  std::vector<double> e = vals(enc.forward({{"X", x}}).at("Y"));
  EXPECT_TRUE(near(e, testing::encodingRef(vals(x), vals(enc.params().at("codewords")), vals(enc.params().at("scale")), B, D, N, K), 1e-10));

  Layer sm(lib(), "Softmax", {}, LayerOptions{DType::F64, 3, true, true, Device::CUDA});
  Tensor xs = randomTensor({4, 50, 70}, 2);
  EXPECT_TRUE(near(vals(sm.forward({{"X", xs}}).at("Y")), testing::softmaxRef(vals(xs), 4, 50, 70), 1e-10));

  Layer lr(lib(), "LeakyReLU", {{"negative_slope", "0.1"}}, LayerOptions{DType::F32, 3, true, true, Device::CUDA});
  Tensor xl = randomTensor({1 << 20}, 3).to(DType::F32);
  EXPECT_TRUE(near(vals(lr.forward({{"X", xl}}).at("Y")), testing::leakyReluRef(vals(xl), 0.1), 1e-6));
}

// Device tensors: copies both ways, clones on the device, host-only access refused.
TEST(GpuTensor, CopiesAndRefusesHostAccess) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  Tensor h = randomTensor({3, 1000}, 9);
  Tensor d = h.to(Device::CUDA);
  EXPECT_TRUE(d.isCuda());
  EXPECT_THROW(d.at(0), Error);
  Tensor back = d.clone().cpu();
  EXPECT_FALSE(back.isCuda());
  EXPECT_EQ(relError(back, h), 0.0);
  Tensor z(DType::F32, {5, 7}, Device::CUDA);
  Tensor zh = z.cpu();
  for (int64_t i = 0; i < zh.numel(); ++i) EXPECT_EQ(zh.at(i), 0.0);
}

// The caching allocator serves a tensor from a freed block of its size class, without the driver.
TEST(GpuTensor, AllocatorReusesFreedBlocks) {
  cuda::Gpu *gpu = cuda::Gpu::get();
  if (!gpu) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  { Tensor t(DType::F32, {(1 << 20) + 17}, Device::CUDA); }
  DeviceMemoryStats before = gpu->allocator().stats();
  EXPECT_GT(before.cachedBytes, 0);
  Tensor again(DType::F32, {(1 << 20) + 17}, Device::CUDA);
  DeviceMemoryStats after = gpu->allocator().stats();
  EXPECT_EQ(after.cacheHits, before.cacheHits + 1);
  EXPECT_EQ(after.rawAllocations, before.rawAllocations);
  EXPECT_GE(after.peakBytes, after.currentBytes);
}

// A driver chosen with ENC_CUDA_DRIVER (the suite's second run, on the CUDA emulator) must load:
// otherwise every GPU test would skip quietly.
// Ranks on one machine spread over its GPUs: ENC_CUDA_DEVICE, else LOCAL_RANK modulo the
// number of GPUs (here the emulator reporting three).
TEST(GpuDevice, PicksTheGpuOfItsLocalRank) {
#ifdef ENC_CUDA_EMULATOR
  auto deviceLine = [](const std::string &env) {
    std::string cmd = fmt::format("ENC_CUDA_DRIVER={} ENC_EMULATOR_DEVICES=3 {} {} bench --layer ReLU --device cuda "
                                  "--input X=random:4 --runs 1 --forward-only 2>&1",
                                  ENC_CUDA_EMULATOR, env, ENCC_BINARY);
    std::string out;
    if (FILE *p = ::popen(cmd.c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      ::pclose(p);
    }
    return out;
  };
  EXPECT_NE(deviceLine("").find("(GPU 0)"), std::string::npos) << deviceLine("");
  EXPECT_NE(deviceLine("LOCAL_RANK=4").find("(GPU 1)"), std::string::npos) << deviceLine("LOCAL_RANK=4");
  EXPECT_NE(deviceLine("LOCAL_RANK=4 ENC_CUDA_DEVICE=2").find("(GPU 2)"), std::string::npos);
  std::string bad = deviceLine("ENC_CUDA_DEVICE=3");
  EXPECT_NE(bad.find("ENC_CUDA_DEVICE=3 is not a GPU of this machine"), std::string::npos) << bad;
#else
  GTEST_SKIP() << "built without the CUDA emulator";
#endif
}

TEST(GpuDevice, LoadsTheChosenDriver) {
  const char *chosen = std::getenv("ENC_CUDA_DRIVER");
  if (!chosen || !*chosen) GTEST_SKIP() << "ENC_CUDA_DRIVER is not set";
  ASSERT_NE(cuda::Gpu::get(), nullptr) << cuda::Driver::unavailableReason();
}

// Without a GPU, asking for one is a clear error; with one, a CUDA layer runs.
TEST(GpuDevice, CudaLayerWithoutGpuIsAClearError) {
  if (cuda::Gpu::get()) GTEST_SKIP() << "a GPU is present: nothing to refuse";
  try {
    Layer l(lib(), "ReLU", {}, LayerOptions{DType::F32, 0, true, true, Device::CUDA});
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("needs a GPU"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("--device cpu"), std::string::npos) << e.hint();
  }
  EXPECT_THROW(Tensor(DType::F32, {2}, Device::CUDA), Error);
}

} // namespace
} // namespace enc
