// NCCL process groups on a GPU (runtime/NcclProcessGroup.cpp): a world of one runs a real communicator,
// and a lost peer is an error within the timeout. They run on a real GPU where there is one and on the
// CUDA and NCCL emulators (emulated.*).
#include "RankThreads.h"
#include "ReferenceMath.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nccl.h"
#include "runtime/ProcessGroup.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <regex>

namespace enc {
namespace {

// NCCL at world size 1: a real communicator whose all-reduces run (a layer keeps its
// collectives), and SyncBatchNorm computes what it computes alone: batch norm, checked against
// double-precision loops.
TEST(NcclGpu, WorldOfOneRunsARealCommunicator) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  nccl::Library *lib = nccl::Library::get();
  if (!lib) GTEST_SKIP() << nccl::Library::unavailableReason();
  ProcessGroupOptions o;
  o.backend = "nccl";
  auto group = newProcessGroup(o);
  EXPECT_STREQ(group->backend(), "nccl");
  const int64_t B = 4, C = 3, L = 5;
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> x(static_cast<size_t>(B * C * L)), g(x.size()), w(C, 1.0), b(C, 0.0);
  for (double &v : x) v = 1 + 2 * u(gen);
  for (double &v : g) v = u(gen);
  testing::BatchNormRef ref = testing::batchNormRef(x, g, w, b, B, C, L, 1e-5);
  LayerOptions lo;
  lo.dtype = DType::F64;
  lo.device = Device::CUDA;
  lo.group = group;
  Layer layer(Library::shipped(), "SyncBatchNorm", {{"num_features", std::to_string(C)}}, lo);
  ASSERT_TRUE(layer.group());
  auto tensor = [&](const std::vector<double> &v) {
    Tensor t(DType::F64, {B, C, L});
    for (int64_t i = 0; i < t.numel(); ++i) t.set(i, v[static_cast<size_t>(i)]);
    return t;
  };
  const long before = lib->encemuNcclAllReduceCalls ? lib->encemuNcclAllReduceCalls() : 0;
  Tensor y = layer.forward({{"X", tensor(x)}}).at("Y").cpu();
  Tensor gx = layer.backward({{"Y", tensor(g)}}).at("X").cpu();
  for (int64_t i = 0; i < y.numel(); ++i) {
    EXPECT_NEAR(y.at(i), ref.y[static_cast<size_t>(i)], 1e-10) << i;
    EXPECT_NEAR(gx.at(i), ref.gx[static_cast<size_t>(i)], 1e-10) << i;
  }
  if (lib->encemuNcclAllReduceCalls) EXPECT_EQ(lib->encemuNcclAllReduceCalls() - before, 2); // forward, backward
}

#ifdef ENC_HAVE_GLOO
// A peer that never joins a collective: the rank waiting in it fails within the group's
// timeout with an error naming it, not a hang (the watchdog aborts the communicator).
TEST(NcclGpu, LostPeerIsAnErrorWithinTheTimeout) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  if (!cuda::Gpu::get()->loadsSource())
    GTEST_SKIP() << "ranks as threads share one GPU, which NCCL refuses: this test runs on the CUDA emulator";
  if (!nccl::Library::get()) GTEST_SKIP() << nccl::Library::unavailableReason();
  ProcessGroupOptions o;
  o.backend = "nccl";
  o.timeout = std::chrono::seconds(1);
  testing::RankOutcomes out = testing::runRanksCollecting(2, [](int rank, std::shared_ptr<ProcessGroup> g) {
    if (rank == 1) return; // never arrives
    Tensor t = Tensor(DType::F32, {8}).to(Device::CUDA);
    allreduceTensors(*g, {&t});
    t.cpu(); // the host waits for the stream here
  }, &o);
  EXPECT_NE(out.errors[0].find("an NCCL all-reduce did not finish on rank 0 of 2 within 1 s"), std::string::npos)
      << out.errors[0];
  EXPECT_LT(out.finishedAfter[0], 10.0);
  EXPECT_EQ(out.errors[1], "");
}
#endif

} // namespace
} // namespace enc
