// SGD against torch.optim.SGD's update rule written out naively (OptimizerReference.h).
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

TEST(OptimizerSGD, PlainStep) { expectSgdMatches({.lr = 0.1}); }

TEST(OptimizerSGD, MomentumAndWeightDecay) { expectSgdMatches({.lr = 0.05, .momentum = 0.9, .weightDecay = 0.01}); }

TEST(OptimizerSGD, DampeningAndNesterov) {
  expectSgdMatches({.lr = 0.05, .momentum = 0.8, .dampening = 0.1, .nesterov = true});
}

TEST(OptimizerSGD, LeavesBuffersAlone) {
  Layer bn(Library::shipped(), "SyncBatchNorm", {{"num_features", "2"}});
  Tensor rm = bn.params().at("running_mean").clone();
  SGD sgd({.lr = 1});
  sgd.step(bn, {{"running_mean", vec({5, 5})}});
  EXPECT_EQ(bn.params().at("running_mean").at(0), rm.at(0));
  EXPECT_FALSE(bn.isParameter("running_mean"));
  EXPECT_TRUE(bn.isParameter("weight"));
}

} // namespace
} // namespace enc
