// Data-parallel training (LayerOptions::dataParallel): each backward pass averages the
// parameter gradients over the group in buckets (compiler/GradientBuckets.cpp) whose
// all-reduces overlap the rest of the pass. Ranks run as threads (RankThreads.h); gradients
// and SGD steps are checked against a two-layer perceptron's gradients written out in
// double-precision loops (DataParallelMlp.h).
#include "DataParallelMlp.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nccl.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace enc {
namespace {

#ifdef ENC_HAVE_GLOO
using namespace enc::testing;

TEST(DataParallel, AveragesParameterGradientsInBuckets) {
  // fc2's gradients complete first (they need only Y's), then fc1's: fc2.weight (144 bytes) is
  // the first bucket (64) on its own, fc2.bias (24) cannot share the next (200) with fc1.weight
  // (192), nor can fc1.weight with fc1.bias (48): four buckets.
  checkDataParallel({3, 2}, 3, Device::CPU, 64, 200, 4);
}

TEST(DataParallel, SmallGradientsShareOneBucket) { checkDataParallel({2, 1, 4}, 2, Device::CPU, size_t{1} << 20, size_t{25} << 20, 1); }

TEST(DataParallel, RankWithoutSamplesStillAverages) { checkDataParallel({3, 0}, 1, Device::CPU, 64, 200, 4); }

// A network with SyncBatchNorm: its own collectives (on the main thread) and the gradient
// buckets (on the averager's thread and group) run at once; every rank ends with the same
// bits, and the gradients are the average over ranks of what each rank's share gives (checked
// against the same network run by one process on each share, with the whole batch's
// statistics: the ranks' own passes with sync = false would differ).
TEST(DataParallel, SyncBatchNormCollectivesAndBucketsRunTogether) {
  auto lib = Library::fromSource("bnmlp.enc", R"(
layer BnMlp() {
  fc1 = Linear(in_features=4, out_features=8)
  bn = SyncBatchNorm(num_features=8)
  fc2 = Linear(in_features=8, out_features=3)
  forward(X: [B, 4]) -> Y {
    Y = fc2(relu(bn(fc1(X))))
  }
}
)");
  std::vector<Batch> batches = randomBatches({3, 5}, 7);
  std::vector<std::map<std::string, std::vector<double>>> grads(2);
  runRanks(2, [&](int rank, std::shared_ptr<ProcessGroup> group) {
    LayerOptions o;
    o.dtype = DType::F64;
    o.group = group;
    o.dataParallel = true;
    o.firstBucketBytes = 64; // several buckets
    o.bucketBytes = 128;
    Layer net(lib, "BnMlp", {}, o);
    const Batch &mine = batches[static_cast<size_t>(rank)];
    for (int step = 0; step < 3; ++step) {
      net.forward({{"X", tensorOf(mine.x, {mine.b, kIn})}});
      auto g = net.backward({{"Y", tensorOf(mine.g, {mine.b, kOut})}});
      for (const auto &[name, t] : g)
        if (net.isParameter(name)) grads[static_cast<size_t>(rank)][name] = valuesOf(t);
    }
  });
  ASSERT_FALSE(grads[0].empty());
  for (const auto &[name, v] : grads[0]) EXPECT_TRUE(v == grads[1].at(name)) << name << " differs between the ranks";
  // One process on the whole batch (8 rows) with the loss scaled as the average of the ranks'.
  Batch whole{batches[0].x, batches[0].g, 8};
  whole.x.insert(whole.x.end(), batches[1].x.begin(), batches[1].x.end());
  whole.g.insert(whole.g.end(), batches[1].g.begin(), batches[1].g.end());
  for (double &v : whole.g) v /= 2; // the average of two ranks' sums
  LayerOptions o;
  o.dtype = DType::F64;
  Layer one(lib, "BnMlp", {}, o);
  one.forward({{"X", tensorOf(whole.x, {8, kIn})}});
  auto g = one.backward({{"Y", tensorOf(whole.g, {8, kOut})}});
  for (const auto &[name, v] : grads[0]) EXPECT_LT(maxRelError(valuesOf(g.at(name)), v), 1e-12) << name;
}

TEST(DataParallel, OtherNetworksOnTheRanksAreAnError) {
  std::vector<std::string> errors(2);
  runRanks(2, [&](int rank, std::shared_ptr<ProcessGroup> group) {
    LayerOptions o;
    o.dtype = DType::F64;
    o.group = group;
    o.dataParallel = true;
    Layer net(mlpLibrary(), "Mlp", {{"hidden", rank == 0 ? "6" : "5"}}, o);
    net.forward({{"X", Tensor(DType::F64, {2, kIn})}});
    try {
      net.backward({{"Y", Tensor(DType::F64, {2, kOut})}});
    } catch (const Error &e) {
      errors[static_cast<size_t>(rank)] = e.what();
    }
  });
  for (const std::string &e : errors) {
    EXPECT_NE(e.find("gradient bucket0"), std::string::npos) << e;
    EXPECT_NE(e.find("the other processes average a different number"), std::string::npos) << e;
  }
}
#endif

// One process: data-parallel changes nothing, and there is no bucket to run.
TEST(DataParallel, OneProcessHasNoBuckets) {
  LayerOptions o;
  o.dtype = DType::F64;
  o.dataParallel = true;
  o.group = soloProcessGroup();
  Layer net(Library::fromSource("one.enc", "layer One() {\n  fc = Linear(in_features=2, out_features=2)\n"
                                           "  forward(X: [B, 2]) -> Y {\n    Y = fc(X)\n  }\n}\n"),
            "One", {}, o);
  net.forward({{"X", Tensor(DType::F64, {1, 2})}});
  net.backward({{"Y", Tensor(DType::F64, {1, 2})}});
  for (const ir::Kernel &k : net.lastBackwardLoops().kernels) EXPECT_FALSE(k.bucket) << k.name;
}

} // namespace
} // namespace enc
