// Where encc keeps compiled kernels, and whom it trusts with them: the default directory is per user and
// private, a directory others can write is refused (the run goes on uncached, with one warning), and a
// size bound that does not fit is an error rather than a silently disabled cache.
#include "CliTestSupport.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

namespace enc {
namespace {

using namespace enc::testing;

class CacheDirectoryCli : public CliTest {
protected:
  // `encc ARGS` with HOME, XDG_CACHE_HOME and ENC_CACHE_DIR unset and TMPDIR set to this test's directory:
  // the cache then falls back to the temp directory.
  CliResult enccWithoutHome(const std::string &args) const {
    std::string cmd = fmt::format("cd {} && env -u HOME -u XDG_CACHE_HOME -u ENC_CACHE_DIR TMPDIR={} {} {} >{} 2>{}",
                                  quote(dir.string()), quote(dir.string()), quote(ENCC_BINARY), args,
                                  quote((dir / "stdout.txt").string()), quote((dir / "stderr.txt").string()));
    int raw = std::system(cmd.c_str());
    CliResult r;
    r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(dir / "stdout.txt");
    r.err = slurp(dir / "stderr.txt");
    return r;
  }

  fs::path perUserDir() const { return dir / fmt::format("encc-cache-{}", ::geteuid()); }

  static int entryFiles(const fs::path &d) {
    int n = 0;
    if (fs::exists(d))
      for (const auto &e : fs::directory_iterator(d)) n += e.path().extension() == ".entry";
    return n;
  }

  static constexpr const char *kEval = "eval --device cpu --layer Softmax --input X=random:2,3 --out out";
  ScopedEnv enabled_{"ENC_CACHE_DISABLE", nullptr};
  ScopedEnv bound_{"ENC_CACHE_MAX_MB", nullptr};
};

TEST_F(CacheDirectoryCli, DefaultWithoutHomeIsPrivateAndPerUser) {
  CliResult stats = enccWithoutHome("cache stats");
  ASSERT_EQ(stats.status, 0) << stats;
  EXPECT_TRUE(contains(stats.out, "directory: " + perUserDir().string())) << stats;
  CliResult r = enccWithoutHome(kEval);
  ASSERT_EQ(r.status, 0) << r;
  struct stat st;
  ASSERT_EQ(::stat(perUserDir().c_str(), &st), 0) << r;
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_GT(entryFiles(perUserDir()), 0);
  EXPECT_FALSE(contains(r.err, "warning")) << r;
}

TEST_F(CacheDirectoryCli, DirectoryOthersCanWriteIsRefused) {
  // Made in advance by someone else, or carelessly: writable by everyone.
  fs::create_directories(perUserDir());
  ASSERT_EQ(::chmod(perUserDir().c_str(), 0777), 0);
  for (int i = 0; i < 2; ++i) {
    CliResult r = enccWithoutHome(kEval);
    ASSERT_EQ(r.status, 0) << r;
    size_t warning = r.err.find("warning: not using the kernel cache " + perUserDir().string());
    EXPECT_NE(warning, std::string::npos) << r;
    EXPECT_TRUE(contains(r.err, "writable by others")) << r;
    EXPECT_EQ(r.err.find("warning: not using", warning + 1), std::string::npos) << "said more than once\n" << r;
    EXPECT_EQ(entryFiles(perUserDir()), 0) << "wrote into a directory others can write";
  }
  CliResult stats = enccWithoutHome("cache stats");
  EXPECT_TRUE(contains(stats.out, "not used: it is writable by others")) << stats;
  // Once it is private again, it is used.
  ASSERT_EQ(::chmod(perUserDir().c_str(), 0700), 0);
  CliResult r = enccWithoutHome(kEval);
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_FALSE(contains(r.err, "warning")) << r;
  EXPECT_GT(entryFiles(perUserDir()), 0);
}

TEST_F(CacheDirectoryCli, MaxMegabytesThatOverflowIsAnError) {
  {
    // 2^44 MiB is 2^64 bytes.
    ScopedEnv bound("ENC_CACHE_MAX_MB", "17592186044416");
    CliResult r = encc(kEval);
    expectFailure(r, {"ENC_CACHE_MAX_MB='17592186044416'"});
    r = encc("cache stats");
    expectFailure(r, {"ENC_CACHE_MAX_MB"});
  }
  {
    ScopedEnv bound("ENC_CACHE_MAX_MB", "lots");
    expectFailure(encc(kEval), {"ENC_CACHE_MAX_MB='lots'"});
  }
  ScopedEnv bound("ENC_CACHE_MAX_MB", "64");
  CliResult r = encc(kEval);
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_GT(entryFiles(path("cache")), 0);
}

} // namespace
} // namespace enc
