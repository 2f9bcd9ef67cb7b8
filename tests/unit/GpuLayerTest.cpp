// Every shipped layer, forward and backward, on the GPU against the CPU backend (which the
// layer suites check against naive double loops and finite differences) and, for a few layers,
// against the naive loops of ReferenceMath.h directly: f64 within 1e-10, f32 within 1e-4,
// relative to the largest magnitude of the reference. Fresh device memory is NaN-filled
// (ENC_CUDA_POISON), so an element a kernel forgets to write fails the comparison. Skipped,
// with the reason, where there is no GPU.
#include "ReferenceMath.h"

#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc {
namespace {

using Settings = std::map<std::string, std::string>;
using Tensors = std::map<std::string, Tensor>;

struct GpuCase {
  std::string layer;
  Settings settings;
  std::map<std::string, Shape> inputs;
  bool training = true;
  std::set<std::string> integerInputs; // class indices: values in [0, classes)
};

// At least one case per shipped layer (GpuLayer.CoversEveryShippedLayer checks it).
std::vector<GpuCase> cases() {
  return {
      {"LeakyReLU", {{"negative_slope", "0.2"}}, {{"X", {2, 3, 5}}}},
      {"ReLU", {}, {{"X", {4, 7}}}},
      {"Softmax", {}, {{"X", {3, 6, 4}}}},
      {"SyncBatchNorm", {{"num_features", "4"}}, {{"X", {3, 4, 5, 2}}}},
      {"SyncBatchNorm", {{"num_features", "4"}, {"activation", "leaky_relu"}}, {{"X", {2, 4, 7}}}},
      {"SyncBatchNorm", {{"num_features", "4"}}, {{"X", {3, 4, 5}}}, false},
      {"SyncBatchNorm", {{"num_features", "3"}}, {{"X", {64, 3, 33, 17}}}}, // long reductions
      {"DistSyncBatchNorm", {{"num_features", "4"}}, {{"X", {2, 4, 6}}}},
      {"Conv2d", {{"in_channels", "4"}, {"out_channels", "6"}, {"kernel_size", "3"}, {"padding", "1"}, {"groups", "2"}},
       {{"X", {2, 4, 7, 6}}}},
      {"Conv2d",
       {{"in_channels", "3"}, {"out_channels", "5"}, {"kernel_size", "3,2"}, {"stride", "2"}, {"padding", "1"}},
       {{"X", {2, 3, 9, 8}}}},
      {"UpsampleConv2d",
       {{"in_channels", "4"}, {"out_channels", "2"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}},
       {{"X", {2, 4, 5, 5}}}},
      {"Encoding", {{"D", "6"}, {"K", "5"}}, {{"X", {2, 6, 3, 4}}}},
      {"GramMatrix", {}, {{"X", {2, 5, 4, 3}}}},
      {"Inspiration", {{"C", "6"}}, {{"X", {2, 6, 4, 5}}}},
      {"Linear", {{"in_features", "7"}, {"out_features", "5"}}, {{"X", {4, 7}}}},
      {"Linear", {{"in_features", "7"}, {"out_features", "5"}, {"bias", "false"}}, {{"X", {3, 7}}}},
      {"Flatten", {}, {{"X", {3, 2, 4}}}},
      {"L2Normalize", {}, {{"X", {3, 5, 4}}}},
      {"Sum", {{"dim", "1"}}, {{"X", {2, 5, 3}}}},
      {"Mean", {{"dim", "2"}}, {{"X", {2, 3, 4, 5}}}},
      {"CrossEntropyLoss", {}, {{"X", {4, 6}}, {"T", {4}}}, true, {"T"}},
      {"Dropout", {{"p", "0.3"}}, {{"X", {10, 100}}}},
      {"MaxPool2d", {{"kernel_size", "3"}, {"stride", "2"}, {"padding", "1"}}, {{"X", {2, 3, 9, 8}}}},
      {"AvgPool2d", {{"kernel_size", "2"}}, {{"X", {2, 3, 8, 6}}}},
      {"GlobalAvgPool2d", {}, {{"X", {2, 3, 5, 4}}}},
      // Reductions long enough to be split on the GPU (and fused with their siblings).
      {"GramMatrix", {}, {{"X", {2, 3, 40, 60}}}},
      {"Mean", {{"dim", "1"}}, {{"X", {2, 5000, 3}}}},
      {"Encoding", {{"D", "6"}, {"K", "5"}}, {{"X", {2, 6, 3000}}}},
      // Contractions big enough for shared-memory tiles, with partial tiles at the edges.
      {"GramMatrix", {}, {{"X", {2, 40, 12, 10}}}},
      {"GramMatrix", {}, {{"X", {1, 70, 9, 37}}}},
      {"Linear", {{"in_features", "37"}, {"out_features", "33"}}, {{"X", {70, 37}}}},
      {"Conv2d", {{"in_channels", "3"}, {"out_channels", "20"}, {"kernel_size", "3"}, {"padding", "1"}, {"stride", "2"}},
       {{"X", {2, 3, 17, 16}}}},
      {"Conv2d", {{"in_channels", "8"}, {"out_channels", "24"}, {"kernel_size", "3"}, {"padding", "1"}, {"groups", "2"}},
       {{"X", {2, 8, 9, 9}}}},
      {"Inspiration", {{"C", "20"}}, {{"X", {2, 20, 5, 4}}}},
      // Few tiles over a long reduction: the contraction is split as well (split-K).
      {"GramMatrix", {}, {{"X", {1, 40, 64, 64}}}},
      {"Encoding", {{"D", "32"}, {"K", "20"}}, {{"X", {2, 32, 2500}}}},
      {"UpsampleConv2d",
       {{"in_channels", "4"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}},
       {{"X", {2, 4, 6, 6}}}},
  };
}

std::shared_ptr<const Library> lib() {
  static auto l = Library::shipped();
  return l;
}

Tensor randomTensor(const Shape &shape, uint64_t seed, bool integer = false, int64_t classes = 1) {
  Tensor t(DType::F64, shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, integer ? static_cast<double>(static_cast<int64_t>(rng.next() % static_cast<uint64_t>(classes)))
                     : rng.uniform(-1, 1));
  return t;
}

// max |a - b| / max(1, max |b|), over every element; NaN anywhere is infinitely wrong.
double relError(const Tensor &a, const Tensor &b) {
  Tensor x = a.cpu(), y = b.cpu();
  if (x.shape() != y.shape()) return INFINITY;
  double worst = 0, scale = 1;
  for (int64_t i = 0; i < y.numel(); ++i) scale = std::max(scale, std::abs(y.at(i)));
  for (int64_t i = 0; i < y.numel(); ++i) {
    double d = std::abs(x.at(i) - y.at(i));
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst / scale;
}

double tolerance(DType t) { return t == DType::F64 ? 1e-10 : 1e-4; }

std::string describe(const GpuCase &c) {
  std::string s = c.layer + " {";
  for (const auto &[k, v] : c.settings) s += " " + k + "=" + v;
  s += " }";
  for (const auto &[n, shape] : c.inputs) s += " " + n + shapeString(shape);
  return s + (c.training ? " training" : " eval");
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
// gradient agree.
TEST_P(GpuLayer, MatchesTheCpu) {
  const GpuCase c = cases()[GetParam()];
  SCOPED_TRACE(describe(c));
  for (DType dtype : {DType::F64, DType::F32}) {
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

INSTANTIATE_TEST_SUITE_P(Shipped, GpuLayer, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t> &i) {
                           return cases()[i.param].layer + "_" + std::to_string(i.param);
                         });

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
