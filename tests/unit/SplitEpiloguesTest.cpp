// splitHeavyEpilogues (compiler/SplitEpilogues.cpp): a contraction whose epilogue blocked code
// cannot widen keeps its blocked schedule in a kernel of its own, and computes the same.
#include "compiler/LoopIR.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enc {
namespace {

const char *kHeavy = R"(
layer Heavy() {
  param w[8, 8] = uniform(-1, 1)
  forward(X: [B, 8, N]) -> Y: [B, 8, N] {
    Y[b, o, n] = tanh(X[b, o, n]) * sum(c: w[o, c] * X[b, c, n])
  }
}
)";

TEST(SplitEpilogues, ASumUnderTanhGetsABlockedKernelOfItsOwn) {
  Layer layer(Library::fromSource("heavy.enc", kHeavy), "Heavy", {}, {.dtype = DType::F64});
  Tensor x(DType::F64, {2, 8, 40});
  for (int64_t i = 0; i < x.numel(); ++i) x.set(i, std::sin(0.37 * static_cast<double>(i)));
  Tensor y = layer.forward({{"X", x}}).at("Y");
  const ir::LoopProgram &loops = layer.lastForwardLoops();
  // Y_sum stored by blocked code, Y after it (fuseSlabKernels may run both per batch element
  // in one kernel).
  ASSERT_GE(loops.kernels.size(), 1u) << ir::printLoops(loops);
  EXPECT_EQ(loops.kernels[0].buffers[0], "Y_sum");
  EXPECT_TRUE(ir::kernelWrites(loops.kernels.back()).count("Y")) << ir::printLoops(loops);
  EXPECT_NE(ir::printLoops(loops).find("vectorized for"), std::string::npos) << ir::printLoops(loops);
  const Tensor &w = layer.params().at("w");
  for (int b = 0; b < 2; ++b)
    for (int o = 0; o < 8; ++o)
      for (int n = 0; n < 40; ++n) {
        double s = 0;
        for (int c = 0; c < 8; ++c) s += w.at(o * 8 + c) * x.at((b * 8 + c) * 40 + n);
        double want = std::tanh(x.at((b * 8 + o) * 40 + n)) * s;
        EXPECT_NEAR(y.at((b * 8 + o) * 40 + n), want, 1e-13);
      }
}

} // namespace
} // namespace enc
