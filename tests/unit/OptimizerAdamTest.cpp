// Adam against torch.optim.Adam's update rule written out naively (OptimizerReference.h): defaults,
// weight decay, amsgrad, f32 layers, state per layer and name, and bad shapes and options.
#include "OptimizerReference.h"

#include "runtime/Adam.h"
#include "runtime/Gpu.h"
#include "runtime/LrScheduler.h"
#include "runtime/Optimizer.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enc {
namespace {

using namespace enc::testing;

TEST(OptimizerAdam, DefaultsAreTorchs) {
  AdamOptions a;
  EXPECT_EQ(a.lr, 1e-3);
  EXPECT_EQ(a.beta1, 0.9);
  EXPECT_EQ(a.beta2, 0.999);
  EXPECT_EQ(a.eps, 1e-8);
  EXPECT_EQ(a.weightDecay, 0);
  EXPECT_FALSE(a.amsgrad);
  EXPECT_EQ(AdamWOptions{}.weightDecay, 1e-2);
}

TEST(OptimizerAdam, MatchesTheReference) {
  AdamOptions o{.beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3}; // large eps: it shows in the result
  Adam adam(o);
  expectAdamMatches(adam, o, false);
}

TEST(OptimizerAdam, L2WeightDecayGoesThroughTheMoments) {
  AdamOptions o{.weightDecay = 0.1};
  Adam adam(o);
  expectAdamMatches(adam, o, false);
}

TEST(OptimizerAdam, Amsgrad) {
  AdamOptions o{.beta2 = 0.5, .weightDecay = 0.05, .amsgrad = true}; // small beta2: v falls, v_max does not
  Adam adam(o);
  expectAdamMatches(adam, o, false);
}

TEST(OptimizerAdam, F32LayerFollowsTheReference) {
  Layer layer(Library::shipped(), "Linear", {{"in_features", "3"}, {"out_features", "2"}});
  std::vector<double> p = paramsOf(layer);
  Adam adam({.lr = 0.01});
  Tensor gw(DType::F32, {2, 3}), gb(DType::F32, {2});
  for (int64_t i = 0; i < 6; ++i) gw.set(i, 0.5 - 0.25 * static_cast<double>(i));
  for (int step = 0; step < 3; ++step) adam.step(layer, {{"weight", gw}, {"bias", gb}});
  std::vector<double> got = paramsOf(layer);
  // Constant gradients: m_hat = g and v_hat = g^2 at every step, so each step is lr * sign(g).
  for (size_t i = 0; i < 6; ++i) {
    double g = 0.5 - 0.25 * static_cast<double>(i);
    EXPECT_NEAR(got[i], p[i] - 3 * 0.01 * (g > 0 ? 1 : -1) * std::abs(g) / (std::abs(g) + 1e-8), 1e-6) << i;
  }
  EXPECT_EQ(got[6], p[6]); // zero gradient, no decay: unchanged
  EXPECT_EQ(adam.steps(layer, "weight"), 3);
}

TEST(OptimizerAdam, KeepsStatePerLayerAndName) {
  Layer a = linear64(), b = linear64();
  Adam adam({.lr = 0.1});
  adam.step(a, gradsOf(kGrads[0]));
  adam.step(a, gradsOf(kGrads[1]));
  adam.step(b, {{"bias", gradsOf(kGrads[0]).at("bias")}});
  EXPECT_EQ(adam.steps(a, "weight"), 2);
  EXPECT_EQ(adam.steps(a, "bias"), 2);
  EXPECT_EQ(adam.steps(b, "bias"), 1);
  EXPECT_EQ(adam.steps(b, "weight"), 0);
}

TEST(OptimizerAdam, ShapeMismatchNamesBothShapesAndChangesNothing) {
  Layer layer = linear64();
  std::vector<double> before = paramsOf(layer);
  Adam adam({});
  auto grads = gradsOf(kGrads[0]);
  grads["weight"] = Tensor(DType::F64, {3, 2});
  try {
    adam.step(layer, grads); // "bias" comes first and is fine: it must not move either
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("Adam: gradient of 'weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3, 2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty());
  }
  EXPECT_EQ(paramsOf(layer), before);
  EXPECT_EQ(adam.steps(layer, "bias"), 0);
}

TEST(OptimizerAdam, RejectsBadOptions) {
  EXPECT_THROW(Adam({.beta1 = 1}), Error);
  EXPECT_THROW(Adam({.beta2 = -0.1}), Error);
  EXPECT_THROW(Adam({.lr = -1}), Error);
  EXPECT_THROW(AdamW({.weightDecay = -1}), Error);
  Adam adam({});
  EXPECT_THROW(adam.setLr(std::nan("")), Error);
}

} // namespace
} // namespace enc
