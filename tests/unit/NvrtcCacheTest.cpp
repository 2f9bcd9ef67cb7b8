// NVRTC output through the on-disk cache: a second compile of the same source is read back,
// byte for byte, and an image that does not load is compiled again.
#include "CliTestSupport.h"

#include "runtime/DiskCache.h"
#include "runtime/Nvrtc.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

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

TEST(NvrtcCache, CachedImageThatDoesNotLoadIsCompiledAgain) {
  if (!cuda::nvrtcAvailable()) GTEST_SKIP() << "encc was built without NVRTC";
  if (!DiskCache::global().usable()) GTEST_SKIP() << "the kernel cache is disabled or refused";
  std::string source = fmt::format("{}\n// bad {}\n", kSaxpy, ::testing::UnitTest::GetInstance()->random_seed() + getpid());
  cuda::CompileOptions o;
  o.arch = "sm_80";
  // An intact entry (its checksum is right) holding an image no driver loads.
  DiskCache::global().put(cuda::compileCacheKey(source, o), "C0080not a cubin");
  std::vector<std::string> offered;
  // Stands in for cuModuleLoadData: accepts ELF images only, failing as the driver does.
  auto load = [&](const cuda::CompileResult &image) {
    offered.push_back(image.cubin);
    if (!image.cubin.starts_with("\x7f" "ELF")) throw Error("CUDA error CUDA_ERROR_INVALID_IMAGE in cuModuleLoadData");
  };
  ::testing::internal::CaptureStderr();
  cuda::CompileResult r = cuda::compileCachedAndLoad(source, o, load);
  std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(offered.size(), 2u);
  EXPECT_EQ(offered[0], "not a cubin");
  EXPECT_TRUE(r.isCubin);
  EXPECT_TRUE(r.cubin.starts_with("\x7f" "ELF"));
  EXPECT_EQ(offered[1], r.cubin);
  EXPECT_NE(err.find("warning: the cached cubin"), std::string::npos) << err;
  // The entry now holds the image that loaded.
  bool cached = false;
  cuda::CompileResult again = cuda::compileCached(source, o, &cached);
  EXPECT_TRUE(cached);
  EXPECT_EQ(again.cubin, r.cubin);
  // A good entry is loaded once; an image compiled here that does not load is the loader's error.
  offered.clear();
  cuda::compileCachedAndLoad(source, o, load);
  EXPECT_EQ(offered.size(), 1u);
  DiskCache::global().remove(cuda::compileCacheKey(source, o));
  EXPECT_THROW(cuda::compileCachedAndLoad(source, o, [](const cuda::CompileResult &) { throw Error("rejected"); }),
               Error);
}

} // namespace
} // namespace enc
