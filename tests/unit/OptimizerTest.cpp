// SGD against torch.optim.SGD's update rule, written out in the test.
#include "runtime/Optimizer.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

Tensor vec(std::initializer_list<double> v) {
  Tensor t(DType::F64, {static_cast<int64_t>(v.size())});
  int64_t i = 0;
  for (double x : v) t.set(i++, x);
  return t;
}

void expectSgdMatches(SGDOptions o) {
  LayerOptions lo;
  lo.dtype = DType::F64;
  Layer layer(Library::shipped(), "Linear", {{"in_features", "1"}, {"out_features", "3"}}, lo);
  Tensor w0 = layer.params().at("weight").clone(); // [3, 1]
  std::vector<double> p = {w0.at(0), w0.at(1), w0.at(2)}, v(3, 0);
  const std::vector<std::vector<double>> grads = {{0.5, -1, 2}, {0.25, 0, -3}, {1, 1, 1}};
  SGD sgd(o);
  for (size_t step = 0; step < grads.size(); ++step) {
    Tensor g = vec({grads[step][0], grads[step][1], grads[step][2]}).reshape({3, 1});
    sgd.step(layer, {{"weight", g}, {"X", vec({9})}}); // X is not a parameter: ignored
    for (int i = 0; i < 3; ++i) {
      double gi = grads[step][static_cast<size_t>(i)] + o.weightDecay * p[i];
      double d = gi;
      if (o.momentum != 0) {
        v[i] = step == 0 ? gi : o.momentum * v[i] + (1 - o.dampening) * gi;
        d = o.nesterov ? gi + o.momentum * v[i] : v[i];
      }
      p[i] -= o.lr * d;
      EXPECT_NEAR(layer.params().at("weight").at(i), p[i], 1e-15) << "step " << step << " element " << i;
    }
  }
}

TEST(SGD, PlainStep) { expectSgdMatches({.lr = 0.1}); }
TEST(SGD, MomentumAndWeightDecay) { expectSgdMatches({.lr = 0.05, .momentum = 0.9, .weightDecay = 0.01}); }
TEST(SGD, DampeningAndNesterov) {
  expectSgdMatches({.lr = 0.05, .momentum = 0.8, .dampening = 0.1, .nesterov = true});
}

TEST(SGD, LeavesBuffersAlone) {
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
