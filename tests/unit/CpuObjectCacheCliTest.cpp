// The CPU JIT's object code through the on-disk cache, seen from `encc`: a second process links every
// kernel from disk and compiles nothing, corrupt entries are recompiled (and rewritten), and
// ENC_CACHE_DISABLE=1 writes nothing.
#include "CliTestSupport.h"
#include "FakeElfObject.h"

#include "runtime/CpuObjectCache.h"
#include "runtime/DiskCache.h"
#include "runtime/Npy.h"

#include <gtest/gtest.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/MemoryBuffer.h>

#include <cmath>
#include <map>
#include <optional>
#include <regex>

namespace enc {
namespace {

using namespace enc::testing;

struct JitStats {
  int compiled = -1, fromDisk = -1, fromMemory = -1;
};

// The ENC_JIT_STATS=1 line, or nullopt if stderr has none.
std::optional<JitStats> parseStats(const std::string &err) {
  static const std::regex line(R"(encc: cpu jit: (\d+) compiled \([0-9.]+ s\), (\d+) from the disk cache )"
                               R"(\([0-9.]+ s\), (\d+) from memory)");
  std::smatch m;
  if (!std::regex_search(err, m, line)) return std::nullopt;
  return JitStats{std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3])};
}

// Every file under `dir` by relative path, with its bytes.
std::map<std::string, std::string> filesUnder(const fs::path &dir) {
  std::map<std::string, std::string> out;
  for (const auto &e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = slurp(e.path());
  return out;
}

class CpuObjectCacheCli : public CliTest {
protected:
  // Runs Softmax forward and backward (several kernels) into `out` with the stats line on.
  struct Run {
    CliResult result;
    JitStats stats;
    std::map<std::string, std::string> outputs;
  };

  Run run(const std::string &out) {
    ScopedEnv stats("ENC_JIT_STATS", "1");
    Run r;
    r.result = encc(fmt::format("eval --device cpu --layer Softmax --input X=random:2,3,4 --grad Y=random:2,3,4 --seed 3 "
                                "--out {}",
                                quote(out)));
    EXPECT_EQ(r.result.status, 0) << r.result;
    std::optional<JitStats> s = parseStats(r.result.err);
    EXPECT_TRUE(s) << "no stats line\n" << r.result;
    if (s) r.stats = *s;
    if (fs::exists(path(out))) r.outputs = filesUnder(path(out));
    return r;
  }

  DiskCache cache() const { return DiskCache(path("cache"), int64_t{1} << 40); }

  // The cache's CPU object entries (NVRTC entries would be left out).
  std::vector<DiskCacheEntry> cpuEntries() const {
    std::vector<DiskCacheEntry> out;
    for (DiskCacheEntry &e : cache().list())
      if (e.key.starts_with(kCpuObjectFormat)) out.push_back(std::move(e));
    return out;
  }

  // A softmax over the channel dimension sums to 1 at every (b, l); checks the run computed, not just agreed.
  void expectSoftmaxRowsSumToOne(const std::string &out) {
    Tensor y = readNpy(path(out + "/Y.npy").string());
    ASSERT_EQ(y.shape(), (Shape{2, 3, 4}));
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t l = 0; l < 4; ++l) {
        double sum = 0;
        for (int64_t c = 0; c < 3; ++c) sum += y.at((b * 3 + c) * 4 + l);
        EXPECT_NEAR(sum, 1.0, 1e-5) << "b=" << b << " l=" << l;
      }
  }

  // The user's environment must not decide these tests.
  ScopedEnv enabled_{"ENC_CACHE_DISABLE", nullptr};
  ScopedEnv bound_{"ENC_CACHE_MAX_MB", nullptr};
  ScopedEnv stats_{"ENC_JIT_STATS", nullptr};
};

TEST_F(CpuObjectCacheCli, SecondProcessLoadsEveryKernelFromDisk) {
  Run first = run("first");
  ASSERT_GT(first.stats.compiled, 0) << first.result;
  EXPECT_EQ(first.stats.fromDisk, 0) << first.result;
  int n = first.stats.compiled;
  EXPECT_EQ(static_cast<int>(cpuEntries().size()), n);
  expectSoftmaxRowsSumToOne("first");

  Run second = run("second");
  EXPECT_EQ(second.stats.compiled, 0) << second.result;
  EXPECT_EQ(second.stats.fromDisk, n) << second.result;
  ASSERT_FALSE(first.outputs.empty());
  EXPECT_TRUE(first.outputs.contains("Y.npy"));
  EXPECT_TRUE(first.outputs.contains("grad/X.npy"));
  EXPECT_EQ(first.outputs, second.outputs);
  // Hits rewrite nothing.
  EXPECT_EQ(static_cast<int>(cpuEntries().size()), n);
}

TEST_F(CpuObjectCacheCli, CorruptEntriesAreRecompiled) {
  Run first = run("first");
  int n = first.stats.compiled;
  ASSERT_GT(n, 0) << first.result;
  std::vector<DiskCacheEntry> entries = cpuEntries();
  ASSERT_EQ(static_cast<int>(entries.size()), n);

  // One bad entry: only its kernel is compiled again.
  {
    fs::path p = cache().entryPath(entries[0].key);
    std::string bytes = slurp(p);
    bytes[bytes.size() / 2] ^= 0x40;
    std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  }
  Run one = run("one");
  EXPECT_EQ(one.stats.compiled, 1) << one.result;
  EXPECT_EQ(one.stats.fromDisk, n - 1) << one.result;
  EXPECT_EQ(one.outputs, first.outputs);

  // Every entry bad, alternately a flipped payload byte and a truncated file.
  entries = cpuEntries();
  ASSERT_EQ(static_cast<int>(entries.size()), n);
  for (size_t i = 0; i < entries.size(); ++i) {
    fs::path p = cache().entryPath(entries[i].key);
    if (i % 2 == 0) {
      std::string bytes = slurp(p);
      bytes[bytes.size() - 7] ^= 0x01;
      std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
    } else {
      fs::resize_file(p, fs::file_size(p) / 3);
    }
  }
  Run all = run("all");
  EXPECT_EQ(all.stats.compiled, n) << all.result;
  EXPECT_EQ(all.stats.fromDisk, 0) << all.result;
  EXPECT_EQ(all.outputs, first.outputs);
  expectSoftmaxRowsSumToOne("all");

  // The recompiled objects replaced the bad entries.
  EXPECT_EQ(static_cast<int>(cpuEntries().size()), n);
  Run again = run("again");
  EXPECT_EQ(again.stats.compiled, 0) << again.result;
  EXPECT_EQ(again.stats.fromDisk, n) << again.result;
  EXPECT_EQ(again.outputs, first.outputs);
}

TEST_F(CpuObjectCacheCli, IntactEntriesThatDoNotLoadAreRecompiledAndReplaced) {
  Run first = run("first");
  int n = first.stats.compiled;
  ASSERT_GT(n, 0) << first.result;
  // Every entry replaced through the cache itself: a valid checksum over an object that does not link.
  std::vector<DiskCacheEntry> entries = cpuEntries();
  ASSERT_EQ(static_cast<int>(entries.size()), n);
  {
    DiskCache disk = cache();
    for (const DiskCacheEntry &e : entries) {
      disk.put(e.key, fakeElfObject());
      ASSERT_EQ(disk.get(e.key).value_or(""), fakeElfObject());
    }
  }
  Run bad = run("bad");
  EXPECT_EQ(bad.stats.compiled, n) << bad.result;
  EXPECT_EQ(bad.stats.fromDisk, 0) << bad.result;
  EXPECT_EQ(bad.outputs, first.outputs);
  expectSoftmaxRowsSumToOne("bad");
  // Said once, however many entries were bad.
  size_t warning = bad.result.err.find("warning: the cached object code");
  EXPECT_NE(warning, std::string::npos) << bad.result;
  EXPECT_EQ(bad.result.err.find("warning: the cached object code", warning + 1), std::string::npos) << bad.result;
  EXPECT_FALSE(contains(bad.result.err, "JIT session error")) << "the linker's reasons belong in that one warning\n"
                                                              << bad.result;

  // The fresh objects replaced the entries: the next process loads every kernel from disk.
  entries = cpuEntries();
  EXPECT_EQ(static_cast<int>(entries.size()), n);
  for (const DiskCacheEntry &e : entries) EXPECT_NE(cache().get(e.key).value_or(""), fakeElfObject()) << e.key;
  Run again = run("again");
  EXPECT_EQ(again.stats.compiled, 0) << again.result;
  EXPECT_EQ(again.stats.fromDisk, n) << again.result;
  EXPECT_EQ(again.outputs, first.outputs);
  EXPECT_EQ(again.result.err.find("warning:"), std::string::npos) << again.result;
}

TEST_F(CpuObjectCacheCli, DisabledCacheWritesNothing) {
  ScopedEnv disabled("ENC_CACHE_DISABLE", "1");
  Run first = run("first");
  ASSERT_GT(first.stats.compiled, 0) << first.result;
  Run second = run("second");
  EXPECT_EQ(second.stats.compiled, first.stats.compiled) << second.result;
  EXPECT_EQ(second.stats.fromDisk, 0) << second.result;
  EXPECT_EQ(first.outputs, second.outputs);
  EXPECT_FALSE(fs::exists(path("cache"))) << "ENC_CACHE_DISABLE=1 still created the cache directory";
}

TEST_F(CpuObjectCacheCli, NoStatsLineUnlessAsked) {
  CliResult r = encc("eval --device cpu --layer Softmax --input X=random:2,3 --out out");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_FALSE(parseStats(r.err)) << r;
}

} // namespace
} // namespace enc
