// mergeAddedContractions (compiler/MergeAddedContractions.cpp): a temporary that adds a sum
// into its one reader's sum over the same ranges is inlined and the sums become one, on the
// CPU only; the merged layer computes what loops in double precision compute.
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include "LoweredLoops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>

namespace enc {
namespace {

using testing::lowered;

bool writes(const ir::LoopProgram &p, const std::string &tensor) {
  for (const ir::Kernel &k : p.kernels)
    if (ir::kernelWrites(k).count(tensor)) return true;
  return false;
}

// Encoding's input gradient: grad_X_sum3 (X * 2 * s - 2 * sum(k: gA * C)) joins grad_X's own
// sum over k on the CPU; grad_Y_sum1[b, k], a sum per row that grad_A reads at every i, stays.
TEST(MergeAddedContractions, EncodingInputGradientIsOneKernelOnTheCpu) {
  Layer l(Library::shipped(), "Encoding", {{"D", "128"}, {"K", "32"}}, {});
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(8)}, {"N", ir::intImm(1024)}};
  ir::LoopProgram cpu = lowered(l.gradientProgram(), sizes, ir::Target::CPU);
  EXPECT_FALSE(writes(cpu, "grad_X_sum3")) << ir::printLoops(cpu);
  EXPECT_TRUE(writes(cpu, "grad_X"));
  EXPECT_TRUE(writes(cpu, "grad_Y_sum1")) << ir::printLoops(cpu);
  ir::LoopProgram gpu = lowered(l.gradientProgram(), sizes, ir::Target::GPU);
  EXPECT_TRUE(writes(gpu, "grad_X_sum3")) << ir::printLoops(gpu);
}

const char *kTwoSums = R"(
layer TwoSums(K: int) {
  param W[K, 5]
  forward(X: [B, 5, N], A: [B, K, N], G: [B, K, 5]) -> Y: [B, 5, N] {
    T[b, d, i] = X[b, d, i] * 3 + -2 * sum(k: A[b, k, i] * W[k, d])
    Y[b, d, i] = sum(k: G[b, k, d] * A[b, k, i]) + T[b, d, i]
  }
}
)";

// The rule on a layer of its own: one kernel, and Y = sum(k: G A) + 3 X - 2 sum(k: A W) at odd
// sizes in f64 and f32 against loops.
TEST(MergeAddedContractions, MergedSumsComputeWhatLoopsCompute) {
  auto library = Library::fromSource("twosums.enc", kTwoSums);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(-1, 1);
  const int64_t B = 3, D = 5, N = 47, K = 7;
  for (DType dtype : {DType::F64, DType::F32}) {
    Layer layer(library, "TwoSums", {{"K", std::to_string(K)}}, {dtype});
    Tensor w(dtype, {K, D}), x(dtype, {B, D, N}), a(dtype, {B, K, N}), g(dtype, {B, K, D});
    for (Tensor *t : {&w, &x, &a, &g})
      for (int64_t i = 0; i < t->numel(); ++i) t->set(i, u(rng));
    layer.setParam("W", w);
    Tensor y = layer.forward({{"X", x}, {"A", a}, {"G", g}}).at("Y");
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d)
        for (int64_t i = 0; i < N; ++i) {
          double want = 3 * x.at((b * D + d) * N + i);
          for (int64_t k = 0; k < K; ++k)
            want += g.at((b * K + k) * D + d) * a.at((b * K + k) * N + i) - 2 * a.at((b * K + k) * N + i) * w.at(k * D + d);
          ASSERT_NEAR(y.at((b * D + d) * N + i), want, (dtype == DType::F64 ? 1e-12 : 1e-4) * (1 + std::abs(want)))
              << dtypeName(dtype) << " at " << b << ", " << d << ", " << i;
        }
  }
  Layer layer(library, "TwoSums", {{"K", std::to_string(K)}}, {});
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(B)}, {"N", ir::intImm(N)}};
  ir::LoopProgram cpu = lowered(layer.program(), sizes, ir::Target::CPU);
  EXPECT_EQ(cpu.kernels.size(), 1u) << ir::printLoops(cpu);
}

} // namespace
} // namespace enc
