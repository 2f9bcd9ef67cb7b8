// LayerGrad: every shipped layer's derived backward pass through the C++ API against central finite
// differences of L = sum(Y * G) for a random G, in f64, and the f32 backward against the f64 one
// (ShippedLayerChecks.h); cross-entropy's gradient in full; backward passes repeated or after new shapes.
#include "ShippedLayerChecks.h"

#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"
#include "ReferenceMath.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::shipped_checks;

#define GRAD_TEST(Name, makeCases, seed) ENC_SHIPPED_LAYER_TEST(LayerGrad, true, Name, makeCases, seed)
ENC_SHIPPED_LAYER_CASES(GRAD_TEST)

// int() of the class indices is piecewise constant: if the layer reports a gradient for T, it is zero.
TEST(LayerGrad, CrossEntropyLossClassIndicesGetNoGradient) {
  Gen gen(121);
  Layer layer(lib(), "CrossEntropyLoss", {}, {DType::F64, 0});
  Tensor T(DType::F64, {3});
  T.set(0, 2);
  T.set(1, 0);
  T.set(2, 1);
  layer.forward({{"X", randomTensor({3, 4}, gen)}, {"T", T}});
  Tensor one(DType::F64, {});
  one.set(0, 1.0);
  auto grads = layer.backward({{"Y", one}});
  ASSERT_TRUE(grads.count("X"));
  if (grads.count("T"))
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_EQ(grads.at("T").at(i), 0.0) << i;
}

// A target outside [0, C) that is not ignore_index cannot pass unnoticed: the loss is NaN, and so
// is the gradient of that row of X (the other rows keep theirs).
TEST(LayerGrad, CrossEntropyLossTargetOutOfRangeIsNaN) {
  Gen gen(124);
  for (double bad : {-1.0, 4.0, 1e9}) {
    Layer layer(lib(), "CrossEntropyLoss", {}, {DType::F64, 0});
    Tensor T(DType::F64, {3});
    T.set(0, 2);
    T.set(1, bad);
    T.set(2, 0);
    Tensor y = layer.forward({{"X", randomTensor({3, 4}, gen)}, {"T", T}}).at("Y");
    EXPECT_TRUE(std::isnan(y.at(0))) << bad << ": " << y.at(0);
    Tensor one(DType::F64, {});
    one.set(0, 1.0);
    Tensor gx = layer.backward({{"Y", one}}).at("X");
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t k = 0; k < 4; ++k)
        EXPECT_EQ(std::isnan(gx.at(b * 4 + k)), b == 1) << bad << " [" << b << ", " << k << "]";
  }
}

// The full gradient of the mean loss: (softmax(X) - onehot(T)) / B, every element.
TEST(LayerGrad, CrossEntropyLossGradientIsSoftmaxMinusOneHot) {
  Gen gen(122);
  int64_t B = 4, C = 5;
  Layer layer(lib(), "CrossEntropyLoss", {}, {DType::F64, 0});
  Tensor X = randomTensor({B, C}, gen, -2, 2), T(DType::F64, {B});
  for (int64_t b = 0; b < B; ++b)
    T.set(b, static_cast<double>((b * 3) % C));
  layer.forward({{"X", X}, {"T", T}});
  Tensor one(DType::F64, {});
  one.set(0, 1.0);
  Tensor gx = layer.backward({{"Y", one}}).at("X");
  std::vector<double> p = testing::softmaxRef(values(X), B, C, 1);
  for (int64_t b = 0; b < B; ++b)
    p[uz(b * C + (b * 3) % C)] -= 1;
  for (double &v : p)
    v /= static_cast<double>(B);
  EXPECT_LE(relError(gx, p), 1e-12);
}

// Backward twice after one forward gives the same gradients: nothing accumulates across calls (the
// pixel shuffle's and the strided convolution's adjoints are scatters or guarded gathers).
TEST(LayerGrad, BackwardTwiceGivesSameGradients) {
  Gen gen(123);
  Layer layer(lib(), "UpsampleConv2d",
              {{"in_channels", "2"},
               {"out_channels", "1"},
               {"kernel_size", "3"},
               {"stride", "2"},
               {"scale_factor", "2"}},
              {DType::F64, 9});
  layer.forward({{"X", randomTensor({1, 2, 5, 5}, gen)}});
  Tensor g = randomTensor({1, 1, 4, 4}, gen);
  auto first = layer.backward({{"Y", g}});
  auto second = layer.backward({{"Y", g}});
  ASSERT_EQ(first.size(), second.size());
  for (const auto &[name, t] : first)
    for (int64_t i = 0; i < t.numel(); ++i)
      ASSERT_EQ(t.at(i), second.at(name).at(i)) << name << "[" << i << "]";
}

// A layer compiles per input shape; backward follows the last forward's shapes and values.
TEST(LayerGrad, BackwardFollowsTheLastForward) {
  Gen gen(124);
  Settings s = {{"in_features", "4"}, {"out_features", "3"}};
  Layer layer(lib(), "Linear", s, {DType::F64, 2});
  Layer fresh(lib(), "Linear", s, {DType::F64, 2});
  Tensor x2 = randomTensor({2, 4}, gen), g = randomTensor({2, 3}, gen);
  layer.forward({{"X", randomTensor({5, 4}, gen)}});
  layer.forward({{"X", x2}});
  fresh.forward({{"X", x2}});
  auto a = layer.backward({{"Y", g}}), b = fresh.backward({{"Y", g}});
  for (const char *name : {"X", "weight", "bias"}) {
    ASSERT_EQ(shapeString(a.at(name).shape()), shapeString(b.at(name).shape())) << name;
    EXPECT_LE(relError(a.at(name), values(b.at(name))), 1e-15) << name;
  }
  EXPECT_EQ(shapeString(a.at("X").shape()), "[2, 4]");
}

} // namespace
} // namespace enc
