// Layers on the GPU against the naive loops of ReferenceMath.h directly.
#include "CliTestSupport.h"
#include "GpuLayerCheck.h"
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

} // namespace
} // namespace enc
