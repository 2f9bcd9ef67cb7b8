// SyncBatchNorm across ranks run as threads (RankThreads.h), checked against naive double-precision
// batch norm over the concatenated batch: what the SyncBatchNormAcrossRanks suites share.
#pragma once

#include "LayerCases.h"
#include "RankThreads.h"
#include "ReferenceMath.h"
#include "TensorValues.h"

#include "runtime/Layer.h"
#include "runtime/ProcessGroup.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#ifdef ENC_HAVE_GLOO
namespace enc::testing {

// `batches[r]` samples on rank r of one batch [sum, C, L]: every rank's outputs, input
// gradients and running statistics are those of batch norm over the whole batch, and the
// ranks' weight and bias gradients add up to the whole batch's.
inline void checkSyncBatchNorm(const std::string &layerName, const std::vector<int64_t> &batches, DType dtype, double tol,
                        Device device = Device::CPU, const std::string &backend = "gloo") {
  const int64_t C = 3, L = 5;
  int64_t B = 0;
  for (int64_t b : batches) B += b;
  std::mt19937 gen(5);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> x(static_cast<size_t>(B * C * L)), g(x.size()), w, bias;
  for (double &v : x) v = 2 + 3 * u(gen); // an offset mean: the shifted sums must cope
  for (double &v : g) v = u(gen);
  for (int64_t c = 0; c < C; ++c) {
    w.push_back(1 + 0.5 * u(gen));
    bias.push_back(u(gen));
  }
  // Round the inputs to the layer's precision, so the reference sees what the layer sees.
  x = valuesOf(tensorOf(x, {B, C, L}, dtype));
  g = valuesOf(tensorOf(g, {B, C, L}, dtype));
  BatchNormRef ref = batchNormRef(x, g, w, bias, B, C, L, 1e-5);
  const int n = static_cast<int>(batches.size());
  std::vector<std::vector<double>> gw(batches.size()), gb(batches.size());
  ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(30);
  options.backend = backend;
  runRanks(n, [&](int rank, std::shared_ptr<ProcessGroup> group) {
    EXPECT_EQ(group->backend(), backend);
    LayerOptions o;
    o.dtype = dtype;
    o.group = group;
    o.device = device;
    Layer layer(lib(), layerName, {{"num_features", std::to_string(C)}}, o);
    layer.setParam("weight", tensorOf(w, {C}, DType::F64));
    layer.setParam("bias", tensorOf(bias, {C}, DType::F64));
    int64_t first = 0;
    for (int r = 0; r < rank; ++r) first += batches[static_cast<size_t>(r)];
    const int64_t mine = batches[static_cast<size_t>(rank)];
    auto slice = [&](const std::vector<double> &v) {
      return std::vector<double>(v.begin() + first * C * L, v.begin() + (first + mine) * C * L);
    };
    auto out = layer.forward({{"X", tensorOf(slice(x), {mine, C, L}, dtype)}});
    EXPECT_LT(maxRelError(valuesOf(out.at("Y")), slice(ref.y)), tol) << "rank " << rank << " Y";
    std::vector<double> rm = valuesOf(layer.params().at("running_mean")), rv = valuesOf(layer.params().at("running_var"));
    for (int64_t c = 0; c < C; ++c) {
      EXPECT_NEAR(rm[static_cast<size_t>(c)], 0.1 * ref.mean[static_cast<size_t>(c)], tol) << "rank " << rank;
      double unbiased = ref.var[static_cast<size_t>(c)] * static_cast<double>(B * L) / static_cast<double>(B * L - 1);
      EXPECT_NEAR(rv[static_cast<size_t>(c)], 0.9 + 0.1 * unbiased, tol) << "rank " << rank;
    }
    auto grads = layer.backward({{"Y", tensorOf(slice(g), {mine, C, L}, dtype)}});
    EXPECT_LT(maxRelError(valuesOf(grads.at("X")), slice(ref.gx)), tol) << "rank " << rank << " grad X";
    gw[static_cast<size_t>(rank)] = valuesOf(grads.at("weight"));
    gb[static_cast<size_t>(rank)] = valuesOf(grads.at("bias"));
  }, &options);
  for (int64_t c = 0; c < C; ++c) {
    double sw = 0, sb = 0;
    for (int r = 0; r < n; ++r) {
      sw += gw[static_cast<size_t>(r)].at(static_cast<size_t>(c));
      sb += gb[static_cast<size_t>(r)].at(static_cast<size_t>(c));
    }
    EXPECT_NEAR(sw, ref.gw[static_cast<size_t>(c)], tol * (1 + std::abs(ref.gw[static_cast<size_t>(c)])));
    EXPECT_NEAR(sb, ref.gb[static_cast<size_t>(c)], tol * (1 + std::abs(ref.gb[static_cast<size_t>(c)])));
  }
}

} // namespace enc::testing
#endif
