// SyncBatchNorm and DistSyncBatchNorm across ranks run as threads, each with its own Gloo group over TCP
// on loopback: what the whole batch gives, with 16-bit storage, empty ranks and one sample per rank,
// sync=false, subgroups, and mismatched channel counts.
#include "SyncBatchNormAcrossRanks.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nccl.h"
#include "runtime/ProcessGroup.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::testing;

namespace {

#ifdef ENC_HAVE_GLOO
TEST(SyncBatchNormAcrossRanks, MatchesTheWholeBatchF64) { checkSyncBatchNorm("SyncBatchNorm", {3, 1, 2}, DType::F64, 1e-10); }

TEST(SyncBatchNormAcrossRanks, MatchesTheWholeBatchF32) { checkSyncBatchNorm("SyncBatchNorm", {2, 3}, DType::F32, 1e-4); }

// 16-bit storage: the sums are f32 temporaries, summed over the group as such (outputs and
// gradients to bf16's 8 bits).
TEST(SyncBatchNormAcrossRanks, MatchesTheWholeBatchBF16) { checkSyncBatchNorm("SyncBatchNorm", {2, 3}, DType::BF16, 2e-2); }

// A rank with no samples contributes nothing and still gets the group's statistics.
TEST(SyncBatchNormAcrossRanks, RankWithoutSamples) { checkSyncBatchNorm("SyncBatchNorm", {2, 0, 1}, DType::F64, 1e-10); }

// One sample per rank: too few for one process, enough for the group.
TEST(SyncBatchNormAcrossRanks, OneValuePerRankIsEnoughForTheGroup) {
  checkSyncBatchNorm("DistSyncBatchNorm", {1, 1}, DType::F64, 1e-10);
}

TEST(SyncBatchNormAcrossRanks, SyncFalseKeepsStatisticsLocal) {
  runRanks(2, [](int rank, std::shared_ptr<ProcessGroup> group) {
    LayerOptions o;
    o.dtype = DType::F64;
    o.group = group;
    Layer layer(lib(), "SyncBatchNorm", {{"num_features", "1"}, {"sync", "false"}}, o);
    Tensor x(DType::F64, {2, 1});
    x.set(0, rank * 10.0);
    x.set(1, rank * 10.0 + 2);
    layer.forward({{"X", x}});
    EXPECT_DOUBLE_EQ(layer.params().at("running_mean").at(0), 0.1 * (rank * 10.0 + 1)) << rank;
  });
}

TEST(SyncBatchNormAcrossRanks, DistSyncBatchNormInASubgroup) {
  runRanks(3, [](int rank, std::shared_ptr<ProcessGroup> world) {
    auto pair = world->subgroup({0, 2});
    LayerOptions o;
    o.dtype = DType::F64;
    o.group = pair;
    Layer layer(lib(), "DistSyncBatchNorm", {{"num_features", "1"}}, o);
    Tensor x(DType::F64, {2, 1});
    x.set(0, rank * rank);
    x.set(1, rank * rank + 1.0);
    layer.forward({{"X", x}});
    // Ranks 0 and 2 share {0, 1, 4, 5} (mean 2.5, unbiased variance 17/3); rank 1, alone, {1, 2}.
    EXPECT_NEAR(layer.params().at("running_mean").at(0), 0.1 * (rank == 1 ? 1.5 : 2.5), 1e-12) << rank;
    EXPECT_NEAR(layer.params().at("running_var").at(0), 0.9 + 0.1 * (rank == 1 ? 0.5 : 17.0 / 3.0), 1e-12) << rank;
  });
}

TEST(SyncBatchNormAcrossRanks, OtherChannelCountsAreAnError) {
  std::vector<std::string> errors(2);
  runRanks(2, [&](int rank, std::shared_ptr<ProcessGroup> group) {
    LayerOptions o;
    o.dtype = DType::F64;
    o.group = group;
    Layer layer(lib(), "SyncBatchNorm", {{"num_features", rank == 0 ? "3" : "4"}}, o);
    try {
      layer.forward({{"X", Tensor(DType::F64, {2, rank == 0 ? 3 : 4})}});
    } catch (const Error &e) {
      errors[static_cast<size_t>(rank)] = e.what();
    }
  });
  for (const std::string &e : errors) EXPECT_NE(e.find("different number"), std::string::npos) << e;
}

#endif

} // namespace
