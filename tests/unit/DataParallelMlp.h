// The data-parallel two-layer perceptron the DataParallel suites train: its .enc source, its
// gradients written out in double-precision loops, and checkDataParallel, which trains it on
// ranks run as threads and compares every step with the reference.
#pragma once

#include "RankThreads.h"
#include "TensorValues.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nccl.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#ifdef ENC_HAVE_GLOO
namespace enc::testing {

inline constexpr int64_t kIn = 4, kOut = 3;

inline std::shared_ptr<const Library> mlpLibrary() {
  static auto lib = Library::fromSource("mlp.enc", R"(
layer Mlp(hidden: int = 6) {
  fc1 = Linear(in_features=4, out_features=hidden)
  fc2 = Linear(in_features=hidden, out_features=3)
  forward(X: [B, 4]) -> Y {
    Y = fc2(tanh(fc1(X)))
  }
}
)");
  return lib;
}

using Values = std::map<std::string, std::vector<double>>;

// The gradients of L = sum(Y * G) for Y = fc2(tanh(fc1(X))) over a batch of `b` rows, by name
// (the parameters' and "X").
inline Values mlpGradients(const Values &p, const std::vector<double> &x, const std::vector<double> &g, int64_t b, int64_t hidden) {
  const auto &w1 = p.at("fc1.weight"), &b1 = p.at("fc1.bias"), &w2 = p.at("fc2.weight");
  Values out;
  auto &gw1 = out["fc1.weight"], &gb1 = out["fc1.bias"], &gw2 = out["fc2.weight"], &gb2 = out["fc2.bias"], &gx = out["X"];
  gw1.assign(static_cast<size_t>(hidden * kIn), 0);
  gb1.assign(static_cast<size_t>(hidden), 0);
  gw2.assign(static_cast<size_t>(kOut * hidden), 0);
  gb2.assign(static_cast<size_t>(kOut), 0);
  gx.assign(static_cast<size_t>(b * kIn), 0);
  for (int64_t n = 0; n < b; ++n) {
    std::vector<double> a(static_cast<size_t>(hidden)), gh(static_cast<size_t>(hidden));
    for (int64_t j = 0; j < hidden; ++j) {
      double h = b1[static_cast<size_t>(j)];
      for (int64_t i = 0; i < kIn; ++i) h += w1[static_cast<size_t>(j * kIn + i)] * x[static_cast<size_t>(n * kIn + i)];
      a[static_cast<size_t>(j)] = std::tanh(h);
    }
    for (int64_t o = 0; o < kOut; ++o) {
      double go = g[static_cast<size_t>(n * kOut + o)];
      gb2[static_cast<size_t>(o)] += go;
      for (int64_t j = 0; j < hidden; ++j) {
        gw2[static_cast<size_t>(o * hidden + j)] += go * a[static_cast<size_t>(j)];
        gh[static_cast<size_t>(j)] += go * w2[static_cast<size_t>(o * hidden + j)];
      }
    }
    for (int64_t j = 0; j < hidden; ++j) {
      double d = gh[static_cast<size_t>(j)] * (1 - a[static_cast<size_t>(j)] * a[static_cast<size_t>(j)]);
      gb1[static_cast<size_t>(j)] += d;
      for (int64_t i = 0; i < kIn; ++i) {
        gw1[static_cast<size_t>(j * kIn + i)] += d * x[static_cast<size_t>(n * kIn + i)];
        gx[static_cast<size_t>(n * kIn + i)] += d * w1[static_cast<size_t>(j * kIn + i)];
      }
    }
  }
  return out;
}

struct Batch {
  std::vector<double> x, g; // inputs [b, 4] and output gradients [b, 3]
  int64_t b;
};

inline std::vector<Batch> randomBatches(const std::vector<int64_t> &sizes, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<Batch> out;
  for (int64_t b : sizes) {
    Batch batch{std::vector<double>(static_cast<size_t>(b * kIn)), std::vector<double>(static_cast<size_t>(b * kOut)), b};
    for (double &v : batch.x) v = u(gen);
    for (double &v : batch.g) v = u(gen);
    out.push_back(std::move(batch));
  }
  return out;
}

// Runs `steps` SGD steps (lr 0.1) of the data-parallel Mlp on `ranks[r]`'s batches (one batch per
// rank per step) on `device`, and checks every rank's gradients and parameters at each step
// against the reference: the average over ranks of each rank's gradients.
inline void checkDataParallel(const std::vector<int64_t> &sizes, int steps, Device device, size_t firstBucket, size_t bucket,
                       int wantBuckets) {
  const int n = static_cast<int>(sizes.size());
  const int64_t hidden = 6;
  std::vector<std::vector<Batch>> batches; // [step][rank]
  for (int s = 0; s < steps; ++s) batches.push_back(randomBatches(sizes, 100 + static_cast<unsigned>(s)));
  std::vector<Values> finalParams(static_cast<size_t>(n));
  runRanks(n, [&](int rank, std::shared_ptr<ProcessGroup> group) {
    LayerOptions o;
    o.dtype = DType::F64;
    o.group = group;
    o.device = device;
    o.dataParallel = true;
    o.firstBucketBytes = firstBucket;
    o.bucketBytes = bucket;
    Layer net(mlpLibrary(), "Mlp", {}, o); // the same seed: the same initial parameters on every rank
    Values params;
    for (const auto &[name, t] : net.params()) params[name] = valuesOf(t);
    for (int s = 0; s < steps; ++s) {
      SCOPED_TRACE(fmt::format("rank {}, step {}", rank, s));
      // The reference: every rank's own gradients, averaged.
      std::vector<Values> each;
      for (const Batch &b : batches[static_cast<size_t>(s)]) each.push_back(mlpGradients(params, b.x, b.g, b.b, hidden));
      const Batch &mine = batches[static_cast<size_t>(s)][static_cast<size_t>(rank)];
      net.forward({{"X", tensorOf(mine.x, {mine.b, kIn})}});
      auto grads = net.backward({{"Y", tensorOf(mine.g, {mine.b, kOut})}});
      for (auto &[name, p] : params) {
        std::vector<double> average(p.size(), 0);
        for (const Values &v : each)
          for (size_t i = 0; i < p.size(); ++i) average[i] += v.at(name)[i] / n;
        EXPECT_LT(maxRelError(valuesOf(grads.at(name)), average), 1e-12) << name;
        EXPECT_LT(maxRelError(valuesOf(net.accumulatedGrads().at(name)), average), 1e-12) << name;
        for (size_t i = 0; i < p.size(); ++i) p[i] -= 0.1 * average[i];
        // The same SGD step on the layer, from the gradients it returned.
        Tensor stepped = net.params().at(name).to(Device::CPU).clone();
        std::vector<double> g = valuesOf(grads.at(name));
        for (int64_t i = 0; i < stepped.numel(); ++i) stepped.set(i, stepped.at(i) - 0.1 * g[static_cast<size_t>(i)]);
        net.setParam(name, stepped);
      }
      // The input's gradient stays this rank's own.
      EXPECT_LT(maxRelError(valuesOf(grads.at("X")), each[static_cast<size_t>(rank)].at("X")), 1e-12);
      net.zeroGrad();
    }
    for (const auto &[name, p] : params) EXPECT_LT(maxRelError(valuesOf(net.params().at(name)), p), 1e-12) << name;
    for (const auto &[name, t] : net.params()) finalParams[static_cast<size_t>(rank)][name] = valuesOf(t);
    // The buckets: each gradient in one, started right after the kernel that completes it.
    const ir::LoopProgram &loops = net.lastBackwardLoops();
    std::map<std::string, int> bucketOf;
    int buckets = 0;
    for (size_t i = 0; i < loops.kernels.size(); ++i) {
      const ir::Kernel &k = loops.kernels[i];
      if (!k.bucket) continue;
      ++buckets;
      for (const std::string &g : k.buffers) {
        EXPECT_TRUE(bucketOf.emplace(g, k.message).second) << g << " in two buckets";
        for (size_t j = i + 1; j < loops.kernels.size(); ++j)
          EXPECT_FALSE(loops.kernels[j].buffers.end() !=
                       std::find(loops.kernels[j].buffers.begin(), loops.kernels[j].buffers.end(), g))
              << g << " is still used by kernel " << loops.kernels[j].name << " after " << k.name;
      }
    }
    EXPECT_EQ(bucketOf.size(), 4u);
    EXPECT_EQ(buckets, wantBuckets);
    // Overlap: with several buckets, kernels still run after the first one starts.
    if (wantBuckets > 1) {
      auto first = std::find_if(loops.kernels.begin(), loops.kernels.end(), [](const ir::Kernel &k) { return k.bucket; });
      EXPECT_TRUE(std::any_of(first, loops.kernels.end(), [](const ir::Kernel &k) { return !k.collective; }))
          << "every bucket waits for the end of the pass";
    }
  });
  // Every rank holds the same model, to the bit.
  for (int r = 1; r < n; ++r) EXPECT_TRUE(finalParams[static_cast<size_t>(r)] == finalParams[0]) << "rank " << r;
}

} // namespace enc::testing
#endif
