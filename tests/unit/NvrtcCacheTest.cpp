// NVRTC output through the on-disk cache: a second compile of the same source is read back,
// byte for byte, and `encc cache` shows and clears the entries.
#include "CliTestSupport.h"

#include "runtime/DiskCache.h"
#include "runtime/Nvrtc.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

using namespace enc::testing;

const char *kSaxpy = R"(extern "C" __global__ void saxpy(float a, const float *x, float *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
})";

TEST(NvrtcCache, SecondCompileIsReadBack) {
  if (!cuda::nvrtcAvailable()) GTEST_SKIP() << "encc was built without NVRTC";
  if (!DiskCache::global().enabled()) GTEST_SKIP() << "ENC_CACHE_DISABLE is set";
  // A source no earlier run cached: the cache is process-wide and persistent.
  std::string source = fmt::format("{}\n// {}\n", kSaxpy, ::testing::UnitTest::GetInstance()->random_seed() + getpid());
  for (bool ptx : {false, true}) {
    cuda::CompileOptions o;
    o.arch = "sm_80";
    o.wantPtx = ptx;
    bool first = true, second = false;
    cuda::CompileResult a = cuda::compileCached(source, o, &first);
    cuda::CompileResult b = cuda::compileCached(source, o, &second);
    EXPECT_FALSE(first);
    EXPECT_TRUE(second);
    EXPECT_EQ(a.isCubin, b.isCubin);
    EXPECT_EQ(a.arch, b.arch);
    EXPECT_EQ(a.cubin, b.cubin);
    EXPECT_EQ(a.ptx, b.ptx);
    EXPECT_EQ(a.isCubin, !ptx);
  }
}

class EnccCache : public CliTest {};

TEST_F(EnccCache, EmitPtxFillsTheCacheAndClearEmptiesIt) {
  if (!cuda::nvrtcAvailable()) GTEST_SKIP() << "encc was built without NVRTC";
  CliResult first = encc("emit --emit=ptx --layer GramMatrix");
  ASSERT_EQ(first.status, 0) << first;
  CliResult again = encc("emit --emit=ptx --layer GramMatrix");
  ASSERT_EQ(again.status, 0) << again;
  EXPECT_EQ(first.out, again.out);
  CliResult stats = encc("cache stats");
  EXPECT_TRUE(contains(stats.out, "entries:   1")) << stats;
  EXPECT_TRUE(contains(stats.out, "NVRTC cubin/PTX: 1 entries")) << stats;
  CliResult list = encc("cache list");
  EXPECT_TRUE(contains(list.out, "bytes")) << list;
  EXPECT_TRUE(contains(list.out, "encc-nvrtc-1 sm_90 ptx ")) << list;
  CliResult clear = encc("cache clear");
  EXPECT_TRUE(contains(clear.out, "removed 1 entry")) << clear;
  EXPECT_TRUE(contains(encc("cache stats").out, "entries:   0"));
  CliResult bad = encc("cache prune");
  EXPECT_EQ(bad.status, 1) << bad;
}

} // namespace
} // namespace enc
