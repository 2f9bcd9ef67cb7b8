// `encc cache` over the NVRTC cache: emitting PTX fills it, `encc cache clear` empties it, processes
// compiling one layer at once leave one entry, and corrupt or truncated entries are rebuilt.
#include "CliTestSupport.h"

#include "runtime/DiskCache.h"
#include "runtime/Nvrtc.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

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

// `list` shows what a run would refuse, each with why; `clear` removes it, a FIFO and a link without opening
// or following them, and leaves a directory with contents (which encc never writes), saying so.
TEST_F(EnccCache, ListShowsUnreadableFilesAndClearRemovesThem) {
  fs::path cacheDir = dir / "cache";
  DiskCache cache(cacheDir, int64_t{1} << 30);
  cache.put("encc-test-1 sound", "payload");
  cache.put("encc-test-1 cut", "a payload cut short");
  std::string cut = slurp(cache.entryPath("encc-test-1 cut"));
  std::ofstream(cache.entryPath("encc-test-1 cut"), std::ios::binary | std::ios::trunc) << cut.substr(0, cut.size() - 4);
  ASSERT_EQ(::mkfifo((cacheDir / "fifo.entry").c_str(), 0600), 0);
  fs::create_symlink(path("outside.txt"), cacheDir / "link.entry");
  std::ofstream(path("outside.txt")) << "not the cache's";
  fs::create_directories(cacheDir / "full.entry" / "inside");

  CliResult list = encc("cache list");
  ASSERT_EQ(list.status, 0) << list;
  EXPECT_TRUE(contains(list.out, "encc-test-1 sound ")) << list;
  std::string cutName = cache.entryPath("encc-test-1 cut").filename().string();
  EXPECT_TRUE(contains(list.out, cutName + "  ")) << list;
  EXPECT_TRUE(contains(list.out, "unreadable: truncated: its header announces 19 payload bytes, the file holds 15"))
      << list;
  EXPECT_TRUE(contains(list.out, "fifo.entry           0 bytes  unreadable: a FIFO, not a cache entry")) << list;
  EXPECT_TRUE(contains(list.out, "link.entry")) << list;
  EXPECT_TRUE(contains(list.out, "unreadable: a symbolic link")) << list;
  EXPECT_TRUE(contains(list.out, "full.entry")) << list;
  EXPECT_TRUE(contains(list.out, "4 unreadable")) << list;
  CliResult stats = encc("cache stats");
  EXPECT_TRUE(contains(stats.out, "unreadable: 4")) << stats;

  CliResult clear = encc("cache clear");
  ASSERT_EQ(clear.status, 0) << clear;
  EXPECT_TRUE(contains(clear.out, "removed 2 entries")) << clear;
  EXPECT_TRUE(contains(clear.out, "fifo.entry (a FIFO, not a cache entry)")) << clear;
  EXPECT_TRUE(contains(clear.out, "link.entry (a symbolic link, not a cache entry)")) << clear;
  EXPECT_TRUE(contains(clear.err, "warning: left " + (cacheDir / "full.entry").string() + ": a directory that is not empty"))
      << clear;
  EXPECT_EQ(slurp(path("outside.txt")), "not the cache's");
  std::vector<std::string> remaining;
  for (const auto &f : fs::directory_iterator(cacheDir)) remaining.push_back(f.path().filename().string());
  EXPECT_EQ(remaining, std::vector<std::string>{"full.entry"});
}

} // namespace
} // namespace enc
