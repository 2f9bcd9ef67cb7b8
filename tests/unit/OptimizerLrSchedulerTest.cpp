// The learning-rate schedules against lr_scheduler's closed forms.
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


TEST(OptimizerLrScheduler, StepLR) {
  SGD sgd({.lr = 0.2});
  StepLR schedule(sgd, 3, 0.5);
  for (int epoch = 0; epoch < 10; ++epoch) {
    EXPECT_DOUBLE_EQ(sgd.lr(), 0.2 * std::pow(0.5, epoch / 3)) << "epoch " << epoch;
    EXPECT_EQ(schedule.epoch(), epoch);
    schedule.step();
  }
  SGD other({.lr = 1});
  StepLR defaults(other, 2);
  defaults.step();
  defaults.step();
  EXPECT_DOUBLE_EQ(other.lr(), 0.1); // gamma defaults to 0.1
}

TEST(OptimizerLrScheduler, CosineAnnealingLR) {
  Adam adam({.lr = 0.1});
  const double etaMin = 0.001, tMax = 8;
  CosineAnnealingLR schedule(adam, 8, etaMin);
  std::vector<double> seen;
  for (int epoch = 0; epoch <= 16; ++epoch) {
    EXPECT_NEAR(adam.lr(), etaMin + (0.1 - etaMin) * (1 + std::cos(M_PI * epoch / tMax)) / 2, 1e-15) << epoch;
    seen.push_back(adam.lr());
    schedule.step();
  }
  EXPECT_DOUBLE_EQ(seen[0], 0.1);
  EXPECT_NEAR(seen[8], etaMin, 1e-15);  // the bottom at T_max
  EXPECT_NEAR(seen[16], 0.1, 1e-15);    // and back up at 2 T_max, as torch's
  EXPECT_LT(seen[5], seen[4]);
}

TEST(OptimizerLrScheduler, LinearWarmup) {
  SGD sgd({.lr = 0.3});
  LinearWarmup warmup(sgd, 4, 0.25);
  const std::vector<double> want = {0.075, 0.13125, 0.1875, 0.24375, 0.3, 0.3, 0.3};
  for (size_t epoch = 0; epoch < want.size(); ++epoch) {
    EXPECT_NEAR(sgd.lr(), want[epoch], 1e-15) << epoch;
    warmup.step();
  }
}

TEST(OptimizerLrScheduler, DrivesTheStep) {
  Layer layer = linear64();
  double w0 = layer.params().at("bias").at(0);
  SGD sgd({.lr = 1});
  StepLR schedule(sgd, 1, 0.5);
  schedule.step(); // lr 0.5
  Tensor g(DType::F64, {2});
  g.set(0, 1);
  sgd.step(layer, {{"bias", g}});
  EXPECT_DOUBLE_EQ(layer.params().at("bias").at(0), w0 - 0.5);
}

TEST(OptimizerLrScheduler, RejectsBadArguments) {
  SGD sgd({});
  EXPECT_THROW(StepLR(sgd, 0), Error);
  EXPECT_THROW(CosineAnnealingLR(sgd, 0), Error);
  EXPECT_THROW(LinearWarmup(sgd, 5, 0), Error);
}

} // namespace
} // namespace enc
