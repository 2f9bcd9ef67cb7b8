// Gradients in scatter form (an index map the compiler cannot invert) add into shared
// elements from many iterations; on the CPU they run in parallel with private copies.
#include "compiler/Autodiff.h"
#include "runtime/Layer.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

// Y[i] = X[i // 2] * X[i // 2]: every X element feeds two outputs through a floor division.
const char *kSource = R"(
layer Repeat2() {
  forward(X: [N]) -> Y: [2 * N] {
    Z[i]: [2 * N] = X[i // 2] * X[i // 2]
    Y[i] = Z[i]
  }
}
)";

TEST(ScatterGrad, UsesScatterFormAndAddsEveryContribution) {
  auto lib = Library::fromSource("repeat.enc", kSource);
  LayerOptions o;
  o.dtype = DType::F64;
  Layer layer(lib, "Repeat2", {}, o);
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
  for (int64_t j = 0; j < n; ++j) {
    double want = 2 * x.at(j) * (g.at(2 * j) + g.at(2 * j + 1));
    ASSERT_NEAR(gx.at(j), want, 1e-12) << "element " << j;
  }
}

} // namespace
} // namespace enc
