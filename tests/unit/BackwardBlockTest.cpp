// Hand-written backward blocks: they replace the derived gradients, see the forward tensors
// and the output gradients, and must define every input's and parameter's gradient.
#include "runtime/Layer.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

const char *kSource = R"(
layer MyLeaky(slope: float = 0.1) {
  forward(X: [N...]) -> Y: [N...] {
    Y[i] = select(X[i] > 0, X[i], slope * X[i])
  }
  backward {
    grad_X[i] = select(X[i] > 0, grad_Y[i], slope * grad_Y[i])
  }
}

# Rounding with a straight-through gradient: the derived one would be zero.
layer RoundST() {
  param w[1] = ones
  forward(X: [B, C]) -> Y: [B, C] {
    S[b, c] = X[b, c] * w[0]
    Y[b, c] = floor(S[b, c] + 0.5)
  }
  backward {
    T[b, c] = grad_Y[b, c] * S[b, c]        # reads a forward temporary
    grad_X[b, c] = grad_Y[b, c] * w[0]
    grad_w[j] = sum(b, c: T[b, c]) / w[0]
  }
}
)";

Tensor random(const Shape &s, uint64_t seed) {
  Tensor t(DType::F64, s);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, rng.uniform(-1, 1));
  return t;
}

LayerOptions f64() {
  LayerOptions o;
  o.dtype = DType::F64;
  return o;
}

TEST(BackwardBlock, ReplacesTheDerivedGradient) {
  auto lib = Library::fromSource("blocks.enc", kSource);
  Layer mine(lib, "MyLeaky", {{"slope", "0.3"}}, f64());
  Layer shipped(Library::shipped(), "LeakyReLU", {{"negative_slope", "0.3"}}, f64());
  Tensor x = random({4, 5}, 1), g = random({4, 5}, 2);
  mine.forward({{"X", x}});
  shipped.forward({{"X", x}});
  Tensor a = mine.backward({{"Y", g}}).at("X"), b = shipped.backward({{"Y", g}}).at("X");
  ASSERT_EQ(a.shape(), x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double want = x.at(i) > 0 ? g.at(i) : 0.3 * g.at(i);
    EXPECT_DOUBLE_EQ(a.at(i), want);
    EXPECT_DOUBLE_EQ(b.at(i), want);
  }
}

TEST(BackwardBlock, StraightThroughGradientAndForwardTemporaries) {
  auto lib = Library::fromSource("blocks.enc", kSource);
  Layer layer(lib, "RoundST", {}, f64());
  Tensor w(DType::F64, {1});
  w.set(0, 1.5);
  layer.setParam("w", w);
  Tensor x = random({3, 4}, 3), g = random({3, 4}, 4);
  Tensor y = layer.forward({{"X", x}}).at("Y");
  auto grads = layer.backward({{"Y", g}});
  double gw = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    EXPECT_DOUBLE_EQ(y.at(i), std::floor(1.5 * x.at(i) + 0.5));
    EXPECT_DOUBLE_EQ(grads.at("X").at(i), 1.5 * g.at(i));
    gw += g.at(i) * 1.5 * x.at(i);
  }
  EXPECT_NEAR(grads.at("w").at(0), gw / 1.5, 1e-14);
}

TEST(BackwardBlock, MustDefineEveryGradient) {
  try {
    Library::fromSource("missing.enc", R"(
layer L() {
  param w[2] = ones
  forward(X: [N]) -> Y: [N] {
    Y[i] = X[i] * w[0]
  }
  backward {
    grad_X[i] = grad_Y[i] * w[0]
  }
}
)");
    FAIL() << "a backward block without grad_w was accepted";
  } catch (const CompileError &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("the backward block does not define 'grad_w'"), std::string::npos) << m;
    EXPECT_NE(m.find("missing.enc:7:3"), std::string::npos) << m;
  }
}

} // namespace
} // namespace enc
