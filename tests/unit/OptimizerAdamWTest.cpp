// AdamW against torch.optim.AdamW's update rule written out naively (OptimizerReference.h): decoupled
// weight decay, unlike Adam's.
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

TEST(OptimizerAdamW, DecoupledWeightDecay) {
  AdamWOptions w{.weightDecay = 0.1};
  AdamW adamw(w);
  expectAdamMatches(adamw, {.weightDecay = 0.1}, true);
}

TEST(OptimizerAdamW, AmsgradAndDefaults) {
  AdamWOptions w{.amsgrad = true};
  AdamW adamw(w);
  expectAdamMatches(adamw, {.weightDecay = 1e-2, .amsgrad = true}, true);
}

// Where a parameter's gradient is zero, AdamW only shrinks it by 1 - lr * wd (its moments stay
// zero), while Adam's L2 decay enters the gradient and moves it by about lr towards zero.
TEST(OptimizerAdamW, DiffersFromAdamWithWeightDecayAsDecoupled) {
  const double lr = 0.1, wd = 0.5;
  Layer a = linear64(), w = linear64();
  std::vector<double> p0 = paramsOf(a);
  Adam adam({.lr = lr, .weightDecay = wd});
  AdamW adamw({.lr = lr, .weightDecay = wd});
  std::vector<double> zeros(8, 0.0);
  adam.step(a, gradsOf(zeros));
  adamw.step(w, gradsOf(zeros));
  std::vector<double> pa = paramsOf(a), pw = paramsOf(w);
  for (size_t i = 0; i < p0.size(); ++i) {
    ASSERT_GT(std::abs(p0[i]), 1e-3) << "the test wants parameters away from zero";
    EXPECT_DOUBLE_EQ(pw[i], p0[i] * (1 - lr * wd)) << i;
    // Adam's first step is lr * g / (|g| + eps) with g = wd * p: lr towards zero, less a hair of eps.
    EXPECT_NEAR(pa[i], p0[i] - std::copysign(lr, p0[i]), 1e-4) << i;
    EXPECT_GT(std::abs(pw[i] - pa[i]), 0.01) << i;
  }
}

} // namespace
} // namespace enc
