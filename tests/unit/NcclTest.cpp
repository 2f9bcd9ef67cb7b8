// The NCCL backend of process groups (runtime/NcclProcessGroup.cpp): choosing it, and refusing it
// with a clear error where it cannot work (NcclGpuTest.cpp runs it on a GPU).
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

} // namespace
} // namespace enc
