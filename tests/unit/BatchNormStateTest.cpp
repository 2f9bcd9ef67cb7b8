// BatchNormState: batch norm's running statistics, evaluation mode, and its input checks (aliases
// included), through the C++ API.
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

// Per-channel batch mean and unbiased variance of X[B, C, L...].
void channelStats(const Tensor &x, std::vector<double> &mean, std::vector<double> &unbiased) {
  int64_t B = x.dim(0), C = x.dim(1), L = numelFrom(x.shape(), 2);
  double n = static_cast<double>(B * L);
  mean.assign(uz(C), 0.0);
  unbiased.assign(uz(C), 0.0);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l)
        mean[uz(c)] += x.at((b * C + c) * L + l) / n;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l)
        unbiased[uz(c)] += std::pow(x.at((b * C + c) * L + l) - mean[uz(c)], 2) / (n - 1);
  }
}

TEST(BatchNormState, RunningStatsAfterThreeSteps) {
  Gen gen(201);
  int64_t C = 3;
  // Three batches of different sizes (n = 18, 12, 8 values per channel) and offsets.
  std::vector<Shape> shapes = {{2, C, 3, 3}, {3, C, 2, 2}, {4, C, 1, 2}};
  for (DType dtype : {DType::F64, DType::F32})
    for (auto [layerName, momentum] : {std::pair<std::string, double>{"SyncBatchNorm", 0.1},
                                       {"SyncBatchNorm", 0.3},
                                       {"DistSyncBatchNorm", 0.25},
                                       {"BatchNorm2d", 0.1}}) {
      SCOPED_TRACE(fmt::format("{} momentum={} {}", layerName, momentum, dtypeName(dtype)));
      Settings s = {{"num_features", std::to_string(C)}};
      if (momentum != 0.1)
        s["momentum"] = fmt::format("{}", momentum);
      if (layerName == "SyncBatchNorm")
        s["activation"] = "leaky_relu"; // the activation must not leak into the statistics
      Layer layer(lib(), layerName, s, {dtype, 3});
      // Initial running statistics: mean 0, variance 1.
      for (int64_t c = 0; c < C; ++c) {
        EXPECT_EQ(layer.params().at("running_mean").at(c), 0.0);
        EXPECT_EQ(layer.params().at("running_var").at(c), 1.0);
      }
      std::vector<std::vector<double>> means, vars;
      for (size_t k = 0; k < shapes.size(); ++k) {
        Tensor x = randomTensor(shapes[k], gen, -1, 1);
        for (int64_t i = 0; i < x.numel(); ++i)
          x.set(i, x.at(i) * (1 + static_cast<double>(k)) + 2 * static_cast<double>(k) - 1);
        x = x.to(dtype);
        std::vector<double> mu, var;
        channelStats(x, mu, var);
        means.push_back(mu);
        vars.push_back(var);
        layer.forward({{"X", x}});
      }
      // rm_3 = (1-m)^3 rm_0 + sum_k m (1-m)^(3-k) mu_k, likewise rv with the unbiased variances.
      double m = momentum;
      for (int64_t c = 0; c < C; ++c) {
        double rm = 0.0 * std::pow(1 - m, 3), rv = 1.0 * std::pow(1 - m, 3);
        for (size_t k = 0; k < 3; ++k) {
          rm += m * std::pow(1 - m, static_cast<double>(2 - k)) * means[k][uz(c)];
          rv += m * std::pow(1 - m, static_cast<double>(2 - k)) * vars[k][uz(c)];
        }
        double tol = dtype == DType::F64 ? 1e-12 : 1e-5;
        EXPECT_NEAR(layer.params().at("running_mean").at(c), rm, tol * std::max(1.0, std::abs(rm))) << c;
        EXPECT_NEAR(layer.params().at("running_var").at(c), rv, tol * std::max(1.0, std::abs(rv))) << c;
      }
    }
}

// A forward pass must not update the buffers of another instance, and backward does not touch them.
TEST(BatchNormState, BackwardLeavesBuffers) {
  Gen gen(202);
  Layer layer(lib(), "SyncBatchNorm", {{"num_features", "2"}}, {DType::F64, 0});
  layer.forward({{"X", randomTensor({4, 2, 3}, gen)}});
  Tensor rm = layer.params().at("running_mean").clone(), rv = layer.params().at("running_var").clone();
  layer.backward({{"Y", randomTensor({4, 2, 3}, gen)}});
  for (int64_t c = 0; c < 2; ++c) {
    EXPECT_EQ(layer.params().at("running_mean").at(c), rm.at(c));
    EXPECT_EQ(layer.params().at("running_var").at(c), rv.at(c));
  }
}

TEST(BatchNormState, EvalUsesRunningStatsAndActivation) {
  Gen gen(203);
  int64_t C = 3;
  Settings s = {{"num_features", "3"}, {"activation", "leaky_relu"}, {"slope", "0.2"}};
  for (DType dtype : {DType::F64, DType::F32}) {
    SCOPED_TRACE(dtypeName(dtype));
    Layer train(lib(), "SyncBatchNorm", s, {dtype, 0});
    train.setParam("weight", randomTensor({C}, gen, 0.5, 1.5));
    train.setParam("bias", randomTensor({C}, gen, -0.2, 0.2));
    for (int step = 0; step < 3; ++step)
      train.forward({{"X", randomTensor({4, C, 3, 2}, gen, -1, 3).to(dtype)}});

    Layer eval(lib(), "SyncBatchNorm", s, LayerOptions{.dtype = dtype, .training = false});
    for (const auto &[n, t] : train.params())
      eval.setParam(n, t);
    Tensor x = randomTensor({2, C, 2, 3}, gen, -2, 4).to(dtype);
    Vals v = valsOf({{"X", x}}, eval.params());
    Tensor y = eval.forward({{"X", x}}).at("Y");
    std::vector<double> ref = batchNormRef(v, BatchNorm{1e-5, 0.2, true}, false, 2, C, 6);
    EXPECT_LE(relError(y, ref), forwardTolerance(dtype));
    // Both branches of the activation are exercised.
    int negative = 0, positive = 0;
    for (double r : ref)
      (r < 0 ? negative : positive)++;
    EXPECT_GT(negative, 0);
    EXPECT_GT(positive, 0);
    // The batch's own statistics would give another answer.
    EXPECT_GT(relError(y, batchNormRef(v, BatchNorm{1e-5, 0.2, true}, true, 2, C, 6)), 1e-3);
    // Eval passes leave the buffers alone.
    for (const char *b : {"running_mean", "running_var"})
      for (int64_t c = 0; c < C; ++c)
        EXPECT_EQ(eval.params().at(b).at(c), train.params().at(b).at(c)) << b << c;
    // One value per channel is fine in eval.
    EXPECT_NO_THROW(eval.forward({{"X", randomTensor({1, C}, gen).to(dtype)}}));
  }
}

TEST(BatchNormState, OneValuePerChannelInTrainingIsAnError) {
  for (const char *name : {"SyncBatchNorm", "DistSyncBatchNorm", "BatchNorm1d"}) {
    Layer layer(lib(), name, {{"num_features", "3"}}, {DType::F64, 0});
    std::string m = errorOf([&] { layer.forward({{"X", Tensor(DType::F64, {1, 3})}}); });
    EXPECT_MENTIONS(m, name);
    if (std::string(name) != "BatchNorm1d") {
      m = errorOf([&] { layer.forward({{"X", Tensor(DType::F64, {1, 3, 1, 1})}}); });
      EXPECT_MENTIONS(m, name);
    }
    // Two values are enough, even from one sample.
    EXPECT_NO_THROW(layer.forward({{"X", Tensor(DType::F64, {1, 3, 2})}}));
  }
}

TEST(BatchNormState, AliasesCheckTheRank) {
  Layer bn2(lib(), "BatchNorm2d", {{"num_features", "3"}}, {DType::F32, 0});
  std::string m = errorOf([&] { bn2.forward({{"X", Tensor(DType::F32, {2, 3, 4})}}); });
  EXPECT_MENTIONS(m, "BatchNorm2d");
  EXPECT_MENTIONS(m, "[2, 3, 4]");
  EXPECT_MENTIONS(m, "4");
  Layer bn1(lib(), "BatchNorm1d", {{"num_features", "3"}}, {DType::F32, 0});
  m = errorOf([&] { bn1.forward({{"X", Tensor(DType::F32, {2, 3, 4, 4})}}); });
  EXPECT_MENTIONS(m, "BatchNorm1d");
  EXPECT_MENTIONS(m, "[2, 3, 4, 4]");
  Layer bn3(lib(), "BatchNorm3d", {{"num_features", "3"}}, {DType::F32, 0});
  m = errorOf([&] { bn3.forward({{"X", Tensor(DType::F32, {2, 3, 4, 4})}}); });
  EXPECT_MENTIONS(m, "BatchNorm3d");
  EXPECT_MENTIONS(m, "[2, 3, 4, 4]");
  // The accepted ranks work.
  EXPECT_NO_THROW(bn1.forward({{"X", Tensor(DType::F32, {2, 3})}}));
  EXPECT_NO_THROW(bn1.forward({{"X", Tensor(DType::F32, {2, 3, 2})}}));
  EXPECT_NO_THROW(bn3.forward({{"X", Tensor(DType::F32, {2, 3, 1, 1, 2})}}));
}

// Regression: a wrong channel count given to BatchNorm2d was once reported as "layer SyncBatchNorm: input
// 'X' has shape [2, 4, 3, 3], but the layer expects [B, num_features, L...]: ...", naming the alias's
// target instead of the BatchNorm2d the user created (the rank check did say BatchNorm2d).
TEST(BatchNormState, AliasShapeErrorsNameTheAlias) {
  Layer bn2(lib(), "BatchNorm2d", {{"num_features", "3"}}, {DType::F32, 0});
  std::string m = errorOf([&] { bn2.forward({{"X", Tensor(DType::F32, {2, 4, 3, 3})}}); });
  EXPECT_MENTIONS(m, "[2, 4, 3, 3]");
  EXPECT_MENTIONS(m, "BatchNorm2d");
}

} // namespace
} // namespace enc
