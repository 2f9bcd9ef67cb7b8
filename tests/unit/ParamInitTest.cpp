// Parameter initialization fills in parallel chunks; every element must still be the draw a
// sequential pass over the layer's seeded stream gives it (runtime/Rng.h: one stream per name).
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enc {
namespace {

TEST(ParamInit, ParallelFillEqualsTheSequentialStream) {
  auto lib = Library::fromSource("init.enc", R"(
layer Init() {
  param u[300, 400] = uniform(-0.5, 0.25)
  param n[70001] = normal(1, 2)
  forward(X: [B]) -> Y: [B] {
    Y[b] = X[b] * u[0, 0] * n[0]
  }
}
)");
  Layer layer(lib, "Init", {}, {.dtype = DType::F64, .seed = 5});
  Rng u(5, "u"), n(5, "n");
  const Tensor &pu = layer.params().at("u"), &pn = layer.params().at("n");
  for (int64_t i = 0; i < pu.numel(); ++i) ASSERT_EQ(pu.at(i), u.uniform(-0.5, 0.25)) << i;
  for (int64_t i = 0; i < pn.numel(); ++i) ASSERT_EQ(pn.at(i), n.normal(1, 2)) << i;
}

} // namespace
} // namespace enc
