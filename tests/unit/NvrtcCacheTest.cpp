// NVRTC output through the on-disk cache: a second compile of the same source is read back,
// byte for byte, and `encc cache` shows and clears the entries.
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

// Eight encc processes compile the same layer at once into an empty cache: all succeed with
// the same PTX and leave one valid entry, which a ninth run reads back.
TEST_F(EnccCache, EightProcessesCompilingOneLayerLeaveOneEntry) {
  if (!cuda::nvrtcAvailable()) GTEST_SKIP() << "encc was built without NVRTC";
  std::string cmd = fmt::format("cd {} && for i in 1 2 3 4 5 6 7 8; do "
                                "(ENC_CACHE_DIR={} {} emit --emit=ptx --layer Softmax > out$i.txt 2> err$i.txt; "
                                "echo $? > rc$i.txt) & done; wait",
                                quote(dir.string()), quote((dir / "cache").string()), quote(ENCC_BINARY));
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string first = slurp(path("out1.txt"));
  EXPECT_TRUE(contains(first, ".entry")) << first;
  for (int i = 1; i <= 8; ++i) {
    EXPECT_EQ(slurp(path(fmt::format("rc{}.txt", i))), "0\n") << slurp(path(fmt::format("err{}.txt", i)));
    EXPECT_EQ(slurp(path(fmt::format("out{}.txt", i))), first) << i;
  }
  DiskCache cache(dir / "cache", int64_t{1} << 30);
  std::vector<DiskCacheEntry> entries = cache.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(cache.get(entries[0].key).has_value());
  int leftovers = 0;
  for (const auto &f : fs::directory_iterator(dir / "cache")) leftovers += f.path().filename().string().rfind(".tmp-", 0) == 0;
  EXPECT_EQ(leftovers, 0);
  CliResult again = encc("emit --emit=ptx --layer Softmax");
  EXPECT_EQ(again.out, first);
}

// A corrupted and a truncated NVRTC entry are detected, rebuilt, and give the same PTX.
TEST_F(EnccCache, CorruptAndTruncatedEntriesAreRebuilt) {
  if (!cuda::nvrtcAvailable()) GTEST_SKIP() << "encc was built without NVRTC";
  CliResult first = encc("emit --emit=ptx --layer Softmax");
  ASSERT_EQ(first.status, 0) << first;
  DiskCache cache(dir / "cache", int64_t{1} << 30);
  ASSERT_EQ(cache.list().size(), 1u);
  fs::path entry = cache.entryPath(cache.list()[0].key);
  for (bool truncate : {false, true}) {
    SCOPED_TRACE(truncate ? "truncated" : "corrupted");
    std::string bytes = slurp(entry);
    ASSERT_GT(bytes.size(), 100u);
    if (truncate)
      bytes.resize(bytes.size() / 2);
    else
      bytes[bytes.size() - 10] ^= 0x5a;
    std::ofstream(entry, std::ios::binary | std::ios::trunc) << bytes;
    CliResult again = encc("emit --emit=ptx --layer Softmax");
    EXPECT_EQ(again.status, 0) << again;
    EXPECT_EQ(again.out, first.out);
    // Rebuilt: the entry is whole again and reads back.
    DiskCache after(dir / "cache", int64_t{1} << 30);
    ASSERT_EQ(after.list().size(), 1u);
    EXPECT_TRUE(after.get(after.list()[0].key).has_value());
    EXPECT_NE(slurp(entry), bytes);
  }
}

} // namespace
} // namespace enc
