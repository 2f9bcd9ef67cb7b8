// mergeSums (compiler/MergeSums.cpp): added sums over equal ranges that share a factor reading
// the reduction become one sum; the gradient is still the naive double-loop one.
#include "compiler/Passes.h"
#include "compiler/TensorProgram.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <string>

namespace enc {
namespace {

size_t count(const std::string &text, const std::string &what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

Tensor wave(const Shape &shape, double f) {
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, std::sin(f * static_cast<double>(i) + 0.3));
  return t;
}

TEST(MergeSums, GramGradientIsOneContraction) {
  Layer layer(Library::shipped(), "GramMatrix", {}, {.dtype = DType::F64});
  std::string text = ir::printProgram(layer.gradientProgram());
  EXPECT_EQ(count(text, "sum("), 1u) << text;
  EXPECT_NE(text.find("grad_Y[b, c, e] + grad_Y[b, e, c]"), std::string::npos) << text;
  EXPECT_EQ(text.find("temp "), std::string::npos) << "no stored intermediate: " << text;
}

// X read twice with a weight between: dX[b, c, n] = sum(e: gY[b, c, e] * W[e, c] * X[b, e, n])
// + sum(e: gY[b, e, c] * W[c, e] * X[b, e, n]), merged into one sum of both rows times X.
const char *kWeightedGram = R"(
layer WeightedGram(C: int) {
  param W[C, C] = uniform(-1, 1)
  forward(X: [B, C, N]) -> Y: [B, C, C] {
    Y[b, c, e] = sum(n: X[b, c, n] * W[e, c] * X[b, e, n])
  }
}
)";

TEST(MergeSums, MergedGradientMatchesNaiveLoops) {
  auto lib = Library::fromSource("weighted.enc", kWeightedGram);
  for (int64_t C : {1, 5, 9})
    for (int64_t N : {1, 7, 40}) {
      const int64_t B = 2;
      Layer layer(lib, "WeightedGram", {{"C", std::to_string(C)}}, {.dtype = DType::F64});
      if (C > 1) { // with one channel the sums over it fold away
        std::string text = ir::printProgram(layer.gradientProgram());
        size_t at = text.find("grad_X[b<");
        ASSERT_NE(at, std::string::npos) << text;
        EXPECT_EQ(count(text.substr(at, text.find('\n', at) - at), "sum("), 1u) << text;
      }
      Tensor x = wave({B, C, N}, 0.71), g = wave({B, C, C}, 0.29);
      layer.forward({{"X", x}});
      Tensor gx = layer.backward({{"Y", g}}).at("X");
      const Tensor &w = layer.params().at("W");
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t n = 0; n < N; ++n) {
            double want = 0;
            for (int64_t e = 0; e < C; ++e) {
              double xe = x.at((b * C + e) * N + n);
              want += g.at((b * C + c) * C + e) * w.at(e * C + c) * xe + g.at((b * C + e) * C + c) * w.at(c * C + e) * xe;
            }
            ASSERT_NEAR(gx.at((b * C + c) * N + n), want, 1e-12 * (1 + std::abs(want)))
                << fmt::format("C={} N={} at b={} c={} n={}", C, N, b, c, n);
          }
    }
}

// Y[c, n] = sum(e < E: A[c, e] * X[e, n]) + sum(f < 5: B[f, c] * X[f, n]): merged when E is 5,
// left apart otherwise (the ranges differ) and when the shared factor does not move with the
// reduction.
ir::Program twoSums(int64_t e, bool sharedReadMoves) {
  using namespace ir;
  Expr c = indexVar("c"), n = indexVar("n"), ev = indexVar("e"), fv = indexVar("f");
  Expr xe = sharedReadMoves ? access("X", {ev, n}) : access("X", {c, n});
  Expr xf = sharedReadMoves ? access("X", {fv, n}) : access("X", {c, n});
  Program p;
  p.layer = "TwoSums";
  p.defs.push_back(Definition{"Y",
                              {{"c", intImm(5)}, {"n", intImm(7)}},
                              reduce(ReduceOp::Sum, {{"e", intImm(e)}}, access("A", {c, ev}) * xe) +
                                  reduce(ReduceOp::Sum, {{"f", intImm(5)}}, access("B", {fv, c}) * xf),
                              {},
                              {}});
  return p;
}

TEST(MergeSums, OnlyEqualRangesWithAMovingSharedReadMerge) {
  auto sums = [](const ir::Program &p) { return count(ir::print(p.defs[0].value), "sum("); };
  ir::Program merged = ir::mergeSums(twoSums(5, true));
  EXPECT_EQ(sums(merged), 1u) << ir::print(merged.defs[0].value);
  EXPECT_NE(ir::print(merged.defs[0].value).find("A[c, e] + B[e, c]"), std::string::npos) << ir::print(merged.defs[0].value);
  ir::Program ranges = ir::mergeSums(twoSums(3, true));
  EXPECT_EQ(sums(ranges), 2u) << ir::print(ranges.defs[0].value);
  ir::Program still = ir::mergeSums(twoSums(5, false));
  EXPECT_EQ(sums(still), 2u) << ir::print(still.defs[0].value);
}

} // namespace
} // namespace enc
