// The NCCL backend of process groups (runtime/NcclProcessGroup.cpp): choosing it, refusing it
// with a clear error where it cannot work, a world of one on a GPU, and a lost peer. The Gpu
// tests run on a real GPU where there is one and on the CUDA and NCCL emulators (emulated.*).
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

std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const Error &e) {
    return std::string(e.what()) + "\nhint: " + e.hint();
  }
  return "";
}

// The toolkit ships NCCL: where it loads, it is recent enough and says which version it is.
TEST(Nccl, LoadsWhereInstalled) {
  nccl::Library *lib = nccl::Library::get();
  if (!lib) GTEST_SKIP() << nccl::Library::unavailableReason();
  EXPECT_GE(lib->version(), 21000);
  EXPECT_TRUE(std::regex_match(lib->versionText(), std::regex(R"(2\.\d+\.\d+)"))) << lib->versionText();
}

TEST(Nccl, BackendFromTheEnvironment) {
  const char *was = std::getenv("ENC_DIST_BACKEND");
  std::string saved = was ? was : "";
  ::setenv("WORLD_SIZE", "1", 1);
  ::setenv("RANK", "0", 1);
  ProcessGroupOptions o;
  ::setenv("ENC_DIST_BACKEND", "gloo", 1);
  ASSERT_TRUE(processGroupOptionsFromEnvironment(o));
  EXPECT_EQ(o.backend, "gloo");
  ::setenv("ENC_DIST_BACKEND", "mpi", 1);
  std::string err = errorOf([&] { processGroupOptionsFromEnvironment(o); });
  EXPECT_NE(err.find("ENC_DIST_BACKEND='mpi' is not a backend"), std::string::npos) << err;
  EXPECT_NE(err.find("use nccl, gloo or auto"), std::string::npos) << err;
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
  if (was) ::setenv("ENC_DIST_BACKEND", saved.c_str(), 1);
  else ::unsetenv("ENC_DIST_BACKEND");
}

// Without a GPU, asking for NCCL is an error that says why and what to use instead; auto
// quietly takes Gloo.
TEST(Nccl, WithoutAGpuNcclIsAClearError) {
  if (cuda::Gpu::get()) GTEST_SKIP() << "this machine has a GPU";
  ProcessGroupOptions o;
  o.backend = "nccl";
  std::string err = errorOf([&] { newProcessGroup(o); });
  EXPECT_NE(err.find("ENC_DIST_BACKEND=nccl, but rank 0 of 1 cannot use NCCL"), std::string::npos) << err;
  EXPECT_NE(err.find("ENC_DIST_BACKEND=gloo"), std::string::npos) << err;
  EXPECT_NE(err.find(nccl::Library::get() ? "no GPU" : "NCCL not found"), std::string::npos) << err;
#ifdef ENC_HAVE_GLOO
  std::vector<std::string> errors(2);
  testing::RankOutcomes out = testing::runRanksCollecting(2, [](int, std::shared_ptr<ProcessGroup>) {}, &o);
  for (const std::string &e : out.errors) EXPECT_NE(e.find("cannot use NCCL"), std::string::npos) << e;
  ProcessGroupOptions automatic;
  automatic.timeout = std::chrono::seconds(30);
  testing::runRanks(2, [](int, std::shared_ptr<ProcessGroup> g) { EXPECT_STREQ(g->backend(), "gloo"); }, &automatic);
#endif
}

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
