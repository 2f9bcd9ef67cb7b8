// encc eval's output paths: --out (and its params/ and grad/) made before the run, so that
// --save-state may write into it; a path that cannot be a directory, or a --save-state whose
// directory is missing, is an error naming it, not std::filesystem's text after the run.
#include "CliTestSupport.h"

#include <gtest/gtest.h>

#include <fstream>

using namespace enc::testing;

namespace {

class EnccOutputPaths : public CliTest {};

constexpr const char *kSyncBn = "eval --layer SyncBatchNorm --set num_features=3 --input X=random:2,3";

TEST_F(EnccOutputPaths, SaveStateInsideANewOutDirectory) {
  CliResult r = encc(fmt::format("{} --out o13 --save-state o13/s.safetensors", kSyncBn));
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(fs::is_regular_file(path("o13/s.safetensors")));
  EXPECT_TRUE(fs::is_regular_file(path("o13/Y.npy")));
  EXPECT_TRUE(fs::is_regular_file(path("o13/params/running_mean.npy")));
  r = encc(fmt::format("{} --grad Y=random:2,3 --out new/nested/out", kSyncBn));
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(fs::is_regular_file(path("new/nested/out/grad/X.npy")));
}

TEST_F(EnccOutputPaths, SaveStateIntoAMissingDirectoryFailsBeforeTheRun) {
  CliResult r = encc(fmt::format("{} --out out --save-state nodir/s.safetensors", kSyncBn));
  expectFailure(r, {"--save-state nodir/s.safetensors", "nodir is not a directory"});
  EXPECT_FALSE(fs::exists(path("out/Y.npy"))) << "the run did not start";
  r = encc(fmt::format("{} --out out --save-state out", kSyncBn));
  expectFailure(r, {"--save-state out: is a directory"});
}

TEST_F(EnccOutputPaths, OutThatCannotBeADirectory) {
  std::ofstream(path("afile")) << "not a directory\n";
  CliResult r = encc(fmt::format("{} --out afile", kSyncBn));
  expectFailure(r, {"--out afile: not a directory", "hint:"});
  EXPECT_FALSE(contains(r.err, "filesystem error")) << r;
  r = encc(fmt::format("{} --out afile/sub", kSyncBn));
  expectFailure(r, {"--out afile/sub: afile is not a directory"});
  r = encc(fmt::format("{} --out /proc/nope", kSyncBn));
  expectFailure(r, {"--out /proc/nope: cannot create directory /proc/nope", "hint:"});
  EXPECT_FALSE(contains(r.err, "filesystem error")) << r;
  EXPECT_EQ(slurp(path("afile")), "not a directory\n");
}

} // namespace
