// What the GPU layer suites share: the cases (LayerCases.h) and the edge cases of the GPU schedule,
// the tolerance per dtype, and expectGpuMatchesCpu, which runs a case on both devices and compares.
#pragma once

#include "LayerCases.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace enc::testing {

using GpuCase = LayerCase;

inline std::vector<LayerCase> cases() { return layerCases(); }

// f64 within 1e-10 and f32 within 1e-4; with 16-bit storage both devices round their results
// to 16 bits, and an f32 difference can land on either side of a rounding boundary: one unit
// in the last place of the stored type.
inline double tolerance(DType t) {
  switch (t) {
  case DType::F64: return 1e-10;
  case DType::F32: return 1e-4;
  case DType::F16: return 2e-3;
  case DType::BF16: return 1.6e-2;
  }
  return 0;
}

// A test parameterized by a case index that skips, saying why, where there is no GPU.
class GpuCaseTest : public ::testing::TestWithParam<size_t> {
protected:
  void SetUp() override {
    if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  }
};

// The same layer, seed and inputs on both devices: outputs, updated buffers and every
// gradient agree, for each of `dtypes`.
inline void expectGpuMatchesCpu(const GpuCase &c, const std::vector<DType> &dtypes) {
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

// Sizes at the edges of the GPU schedule: one past a 64-wide tile or a 16-deep reduction
// slice, several tiles per dimension, 1x1 and dilated convolutions, split reductions whose
// length the chunks do not divide, more codewords than a warp has lanes. f64 and f32.
inline std::vector<GpuCase> edgeCases() {
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

} // namespace enc::testing
