// Gradients in scatter form (an index map the compiler cannot invert) add into shared
// elements from many iterations; on the CPU they run in parallel with private copies.
#include "compiler/Autodiff.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

#include <vector>

namespace enc {
namespace {

// Y[i] = X[(3 i) mod N]^2 over 2N outputs: with N prime to 3 every X element feeds two of
// them, through an index map autodiff cannot invert.
const char *kSource = R"(
layer Fold3() {
  forward(X: [N]) -> Y: [2 * N] {
    Z[i]: [2 * N] = X[i * 3 % N] * X[i * 3 % N]
    Y[i] = Z[i]
  }
}
)";

TEST(ScatterGrad, UsesScatterFormAndAddsEveryContribution) {
  auto lib = Library::fromSource("fold.enc", kSource);
  LayerOptions o;
  o.dtype = DType::F64;
  Layer layer(lib, "Fold3", {}, o);
  // The derived program really takes the scatter path.
  bool scatter = false;
  for (const ir::Definition &d : layer.gradientProgram().defs) scatter |= d.isScatter();
  ASSERT_TRUE(scatter) << ir::printProgram(layer.gradientProgram());

  const int64_t n = 10007; // many chunks across the thread pool
  Tensor x(DType::F64, {n}), g(DType::F64, {2 * n});
  Rng rng(3);
  for (int64_t i = 0; i < n; ++i) x.set(i, rng.uniform(-1, 1));
  for (int64_t i = 0; i < 2 * n; ++i) g.set(i, rng.uniform(-1, 1));
  layer.forward({{"X", x}});
  Tensor gx = layer.backward({{"Y", g}}).at("X");
  std::vector<double> want(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < 2 * n; ++i) {
    int64_t k = i * 3 % n;
    want[static_cast<size_t>(k)] += 2 * x.at(k) * g.at(i);
  }
  for (int64_t j = 0; j < n; ++j) ASSERT_NEAR(gx.at(j), want[static_cast<size_t>(j)], 1e-12) << "element " << j;
}

// A variable read only as its digits v // r and v % r (a pixel shuffle) is split into two,
// and the reads' indices solve for them: Y[i] = X[i // 2]^2 and UpsampleConv2d's shuffle get
// gathers, not scatters, and the right values.
const char *kDigits = R"(
layer Repeat2() {
  forward(X: [N]) -> Y: [2 * N] {
    Y[i] = X[i // 2] * X[i // 2]
  }
}
layer Shuffle(r: int) {
  forward(X: [B, C, H, W]) -> Y: [B, C // (r * r), H * r, W * r] {
    Y[b, c, y, x] = X[b, c * r * r + y % r * r + x % r, y // r, x // r]
  }
}
)";

TEST(ScatterGrad, DigitsOfAnIndexAreSolvedForAGather) {
  auto lib = Library::fromSource("digits.enc", kDigits);
  LayerOptions o;
  o.dtype = DType::F64;
  Rng rng(4);
  {
    Layer layer(lib, "Repeat2", {}, o);
    for (const ir::Definition &d : layer.gradientProgram().defs)
      EXPECT_FALSE(d.isScatter()) << ir::printProgram(layer.gradientProgram());
    const int64_t n = 1001;
    Tensor x(DType::F64, {n}), g(DType::F64, {2 * n});
    for (int64_t i = 0; i < n; ++i) x.set(i, rng.uniform(-1, 1));
    for (int64_t i = 0; i < 2 * n; ++i) g.set(i, rng.uniform(-1, 1));
    layer.forward({{"X", x}});
    Tensor gx = layer.backward({{"Y", g}}).at("X");
    for (int64_t j = 0; j < n; ++j)
      ASSERT_NEAR(gx.at(j), 2 * x.at(j) * (g.at(2 * j) + g.at(2 * j + 1)), 1e-12) << "element " << j;
  }
  for (int64_t r : {2, 3}) {
    SCOPED_TRACE(r);
    Layer layer(lib, "Shuffle", {{"r", std::to_string(r)}}, o);
    for (const ir::Definition &d : layer.gradientProgram().defs)
      EXPECT_FALSE(d.isScatter()) << ir::printProgram(layer.gradientProgram());
    const int64_t B = 2, C = 2 * r * r, H = 3, W = 5;
    Tensor x(DType::F64, {B, C, H, W}), g(DType::F64, {B, C / (r * r), H * r, W * r});
    for (int64_t i = 0; i < x.numel(); ++i) x.set(i, rng.uniform(-1, 1));
    for (int64_t i = 0; i < g.numel(); ++i) g.set(i, rng.uniform(-1, 1));
    Tensor y = layer.forward({{"X", x}}).at("Y");
    Tensor gx = layer.backward({{"Y", g}}).at("X");
    // Every output element is one input element: the gradient moves g back to it.
    std::vector<double> want(static_cast<size_t>(x.numel()), -1e300);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C / (r * r); ++c)
        for (int64_t yy = 0; yy < H * r; ++yy)
          for (int64_t xx = 0; xx < W * r; ++xx) {
            int64_t out = ((b * (C / (r * r)) + c) * H * r + yy) * W * r + xx;
            int64_t in = ((b * C + c * r * r + yy % r * r + xx % r) * H + yy / r) * W + xx / r;
            ASSERT_EQ(y.at(out), x.at(in));
            want[static_cast<size_t>(in)] = g.at(out);
          }
    for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(gx.at(i), want[static_cast<size_t>(i)]) << "element " << i;
  }
}

// A scatter whose target index reads a tensor (X[1, int(T[b])], as a mutated CrossEntropyLoss
// has): the backward pass reads T too, and adds each contribution at T's index; an index out of
// range adds nothing.
TEST(ScatterGrad, TargetIndexReadsATensor) {
  auto lib = Library::fromSource("pick.enc", R"(
layer Pick() {
  forward(X: [B, C], T: [B]) -> Y: [] {
    L[b] = X[1, int(T[b])] * 2.0
    Y = sum(b: L[b])
  }
}
)");
  LayerOptions o;
  o.dtype = DType::F64;
  Layer layer(lib, "Pick", {}, o);
  Tensor x(DType::F64, {4, 4}), t(DType::F64, {4}), g(DType::F64, {});
  for (int64_t i = 0; i < 16; ++i) x.set(i, static_cast<double>(i));
  const double targets[] = {0, 3, 3, 9};
  for (int64_t b = 0; b < 4; ++b) t.set(b, targets[b]);
  g.set(0, 1.5);
  EXPECT_EQ(layer.forward({{"X", x}, {"T", t}}).at("Y").at(0), 2.0 * (4 + 7 + 7));
  Tensor gx = layer.backward({{"Y", g}}).at("X");
  for (int64_t i = 0; i < 16; ++i)
    EXPECT_EQ(gx.at(i), i == 4 ? 3.0 : i == 7 ? 6.0 : 0.0) << "element " << i;
}

} // namespace
} // namespace enc
