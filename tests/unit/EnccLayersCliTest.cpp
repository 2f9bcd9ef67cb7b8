// End-to-end tests of the shipped layer library through the real `encc eval` command line (ENCC_BINARY):
// the errors a user meets (wrong shapes, bad hyper-parameters, bad --param files, failed requirements) and
// the behaviour docs/layers.md promises (train vs eval, gradients, optional bias, Inspiration's target).
// Each test runs in a temporary directory of its own, with stdout and stderr captured separately.
#include "runtime/Npy.h"
#include "runtime/Tensor.h"

#include "CliTestSupport.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace enc {
namespace {

using namespace enc::testing;

size_t countOf(const std::string &haystack, const std::string &needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1))
    ++n;
  return n;
}

Tensor randomTensor(const Shape &shape, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, u(gen));
  return t;
}

class EnccLayersCli : public CliTest {
protected:
  // Every failure: status 1, an "encc: error:" line on stderr naming what went wrong, nothing on stdout,
  // and no output written.
  void expectFailure(const CliResult &r, const std::vector<std::string> &mentions) const {
    CliTest::expectFailure(r, mentions);
    EXPECT_TRUE(contains(r.err, "encc: error:")) << r;
    EXPECT_FALSE(fs::exists(path("out/Y.npy"))) << r;
  }

  Tensor read(const std::string &name) const { return readNpy(path(name).string()); }
  void write(const std::string &name, const Tensor &t) const { writeNpy(path(name).string(), t); }
};

const char *kConv = "eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3";

// ---- shapes --------------------------------------------------------------------------------------------

TEST_F(EnccLayersCli, Conv2dWrongInputRank) {
  CliResult r = encc(fmt::format("{} --input X=random:2,3,5 --out out", kConv));
  expectFailure(r, {"Conv2d", "'X'", "[2, 3, 5]", "[B, in_channels, H, W]", "3 dimensions instead of 4"});
}

TEST_F(EnccLayersCli, Conv2dWrongChannelCount) {
  CliResult r = encc(fmt::format("{} --input X=random:2,2,5,5 --out out", kConv));
  expectFailure(r, {"Conv2d", "'X'", "[2, 2, 5, 5]", "[B, in_channels, H, W]", "in_channels = 3"});
}

TEST_F(EnccLayersCli, GroupsMustDivideChannels) {
  // in_channels = 3 is not a multiple of groups = 2.
  CliResult r =
      encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3 --set groups=2 "
           "--input X=random:2,3,5,5 --out out");
  expectFailure(r, {"Conv2d", "requires", "in_channels % groups == 0", "groups = 2", "in_channels = 3"});
  // out_channels = 3 is not.
  r = encc("eval --layer Conv2d --set in_channels=4 --set out_channels=3 --set kernel_size=3 --set groups=2 "
           "--input X=random:2,4,5,5 --out out");
  expectFailure(r, {"Conv2d", "requires", "out_channels % groups == 0", "out_channels = 3"});

  r = encc("eval --layer UpsampleConv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3 "
           "--set groups=2 --input X=random:2,3,5,5 --out out");
  expectFailure(r,
                {"UpsampleConv2d", "requires", "in_channels % groups == 0", "groups = 2", "in_channels = 3"});
  // UpsampleConv2d's convolution has out_channels * scale_factor^2 channels: 3 * 1 is odd, 3 * 4 is not.
  r = encc("eval --layer UpsampleConv2d --set in_channels=4 --set out_channels=3 --set kernel_size=3 "
           "--set groups=2 --input X=random:2,4,5,5 --out out");
  expectFailure(
      r, {"UpsampleConv2d", "out_channels * scale_factor * scale_factor % groups == 0", "scale_factor = 1"});
  r = encc("eval --layer UpsampleConv2d --set in_channels=4 --set out_channels=3 --set kernel_size=3 "
           "--set groups=2 --set scale_factor=2 --input X=random:2,4,5,5 --out ok");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(read("ok/Y.npy").shape()), "[2, 3, 6, 6]");
}

TEST_F(EnccLayersCli, KernelLargerThanPaddedInput) {
  // (5 + 0 - 6) // 1 + 1 = 0 and (5 - 7) // 1 + 1 = -1: no output.
  CliResult r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=6 "
                     "--input X=random:2,3,5,5 --out out");
  expectFailure(r, {"Conv2d", "'Y'", "size 0", "[2, 3, 5, 5]", "kernel size"});
  r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=7 "
           "--input X=random:2,3,5,5 --out out");
  expectFailure(r, {"Conv2d", "'Y'", "size -1", "[2, 3, 5, 5]"});
  r = encc("eval --layer UpsampleConv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3,7 "
           "--set scale_factor=2 --input X=random:2,3,5,5 --out out");
  expectFailure(r, {"UpsampleConv2d", "'Y'", "dimension 3"});
  // Padding makes it fit: (5 + 2 - 7) // 1 + 1 = 1.
  r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=7 --set padding=1 "
           "--input X=random:2,3,5,5 --out ok");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(read("ok/Y.npy").shape()), "[2, 4, 1, 1]");
}

// ---- --param -------------------------------------------------------------------------------------------

TEST_F(EnccLayersCli, MissingParamFile) {
  CliResult r = encc(fmt::format("{} --param weight=missing.npy --input X=random:2,3,5,5 --out out", kConv));
  expectFailure(r, {"missing.npy"});
}

TEST_F(EnccLayersCli, ParamOfWrongShape) {
  write("w.npy", randomTensor({4, 3, 3, 2}, 1));
  CliResult r = encc(fmt::format("{} --param weight=w.npy --input X=random:2,3,5,5 --out out", kConv));
  expectFailure(r, {"Conv2d", "'weight'", "[4, 3, 3, 3]", "[4, 3, 3, 2]"});
  // The same file fits a 3x2 kernel.
  r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3,2 "
           "--param weight=w.npy --input X=random:2,3,5,5 --out ok");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(read("ok/Y.npy").shape()), "[2, 4, 3, 4]");
}

// ---- batch norm ----------------------------------------------------------------------------------------

TEST_F(EnccLayersCli, BatchNorm2dChecksRankAndWarnsOnce) {
  CliResult r = encc("eval --layer BatchNorm2d --set num_features=3 --input X=random:2,3,4 --out out");
  expectFailure(r, {"BatchNorm2d", "'X'", "[2, 3, 4]", "4 dimensions", "SyncBatchNorm"});
  EXPECT_EQ(countOf(r.err, "deprecated"), 1u) << r;
  EXPECT_TRUE(contains(r.err, "warning: BatchNorm2d is deprecated")) << r;

  // A 4-D input runs, forward and backward, and still warns exactly once.
  r = encc("eval --layer BatchNorm2d --set num_features=3 --input X=random:2,3,4,4 --grad Y=random:2,3,4,4 "
           "--out ok");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(countOf(r.err, "deprecated"), 1u) << r;
  EXPECT_EQ(shapeString(read("ok/Y.npy").shape()), "[2, 3, 4, 4]");
  EXPECT_EQ(shapeString(read("ok/grad/X.npy").shape()), "[2, 3, 4, 4]");

  // BatchNorm1d takes 2 or 3 dimensions; SyncBatchNorm itself takes all of them without a warning.
  r = encc("eval --layer BatchNorm1d --set num_features=3 --input X=random:2,3,4,4 --out out");
  expectFailure(r, {"BatchNorm1d", "[2, 3, 4, 4]", "2 or 3 dimensions"});
  EXPECT_EQ(countOf(r.err, "deprecated"), 1u) << r;
  r = encc("eval --layer SyncBatchNorm --set num_features=3 --input X=random:2,3,4 --out sync");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_FALSE(contains(r.err, "deprecated")) << r;
}

TEST_F(EnccLayersCli, SyncBatchNormNeedsMoreThanOneValuePerChannelInTraining) {
  for (const char *shape : {"1,3", "1,3,1", "1,3,1,1"}) {
    CliResult r = encc(
        fmt::format("eval --layer SyncBatchNorm --set num_features=3 --input X=random:{} --out out", shape));
    expectFailure(r, {"SyncBatchNorm", "requires", "B * L > 1", "B = 1", "L = 1"});
  }
  // Evaluation uses the running statistics: one value per channel is fine.
  CliResult r =
      encc("eval --layer SyncBatchNorm --set num_features=3 --mode eval --input X=random:1,3 --out ok");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(read("ok/Y.npy").shape()), "[1, 3]");
}

// --mode eval leaves the buffers at their initial values; --mode train moves them by momentum towards the
// batch statistics (torch's unbiased running_var).
TEST_F(EnccLayersCli, SyncBatchNormModeSelectsTraining) {
  const int64_t B = 4, C = 3, L = 5;
  Tensor x = randomTensor({B, C, L}, 7, -2, 3);
  write("x.npy", x);
  CliResult r = encc(
      "eval --layer SyncBatchNorm --set num_features=3 --dtype f64 --mode eval --input X=x.npy --out ev");
  ASSERT_EQ(r.status, 0) << r;
  Tensor mean0 = read("ev/params/running_mean.npy"), var0 = read("ev/params/running_var.npy");
  ASSERT_EQ(shapeString(mean0.shape()), "[3]");
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(mean0.at(c), 0.0) << c;
    EXPECT_EQ(var0.at(c), 1.0) << c;
  }
  // Eval normalizes with the running statistics: y = x / sqrt(1 + eps).
  Tensor yEval = read("ev/Y.npy");
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(yEval.at(i), x.at(i) / std::sqrt(1 + 1e-5), 1e-12) << i;

  r = encc(
      "eval --layer SyncBatchNorm --set num_features=3 --dtype f64 --mode train --input X=x.npy --out tr");
  ASSERT_EQ(r.status, 0) << r;
  Tensor mean1 = read("tr/params/running_mean.npy"), var1 = read("tr/params/running_var.npy");
  ASSERT_EQ(shapeString(mean1.shape()), "[3]");
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0, sq = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l)
        sum += x.at((b * C + c) * L + l);
    double mu = sum / (B * L);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l)
        sq += (x.at((b * C + c) * L + l) - mu) * (x.at((b * C + c) * L + l) - mu);
    EXPECT_NE(mean1.at(c), 0.0) << c;
    EXPECT_NEAR(mean1.at(c), 0.1 * mu, 1e-12) << c;
    EXPECT_NEAR(var1.at(c), 0.9 + 0.1 * sq / (B * L - 1), 1e-12) << c;
  }
  // The default is training.
  r = encc("eval --layer SyncBatchNorm --set num_features=3 --dtype f64 --input X=x.npy --out def");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(slurp(path("def/params/running_mean.npy")), slurp(path("tr/params/running_mean.npy")));
}

// ---- hyper-parameters ----------------------------------------------------------------------------------

TEST_F(EnccLayersCli, UnknownSetNameForConv2d) {
  CliResult r = encc(fmt::format("{} --set kernel=3 --input X=random:2,3,5,5 --out out", kConv));
  expectFailure(r, {"Conv2d", "'kernel'", "kernel_size", "in_channels", "groups"});
}

// An integer hyper-parameter past 64 bits says so (it said "is an int").
TEST_F(EnccLayersCli, IntegerHyperParameterOutOfRange) {
  expectFailure(encc("emit --emit=ir --layer Linear --set in_features=9223372036854775808 --set out_features=2"),
                {"hyper-parameter 'in_features' of layer Linear: 9223372036854775808 is out of range", "64-bit"});
}

// A float hyper-parameter is a decimal number, as the language writes one: hexadecimal, inf, nan,
// spaces and out-of-range values are refused (strtod took them).
TEST_F(EnccLayersCli, FloatHyperParameterIsADecimalNumber) {
  const std::string bn = "emit --emit=ir --layer SyncBatchNorm --set num_features=3 ";
  for (const char *bad : {"0x10", "0x1p-3", "inf", "nan", " 1e-5", "1e-5 ", "1e999", "+-1", "++1", "1e", "abc"}) {
    SCOPED_TRACE(bad);
    expectFailure(encc(fmt::format("{} --set 'eps={}'", bn, bad)),
                  {"hyper-parameter 'eps' of layer SyncBatchNorm is a float", fmt::format("got '{}'", bad)});
  }
  for (const char *good : {"1e-5", "+2.5e-3", ".5", "5.", "3"}) {
    SCOPED_TRACE(good);
    CliResult r = encc(fmt::format("{} --set 'eps={}'", bn, good));
    EXPECT_EQ(r.status, 0) << r;
  }
}

TEST_F(EnccLayersCli, BadInt2Value) {
  CliResult r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3,x "
                     "--input X=random:2,3,5,5 --out out");
  expectFailure(r, {"Conv2d", "'kernel_size'", "3,x", "pair of ints"});
  r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3,5,7 "
           "--input X=random:2,3,5,5 --out out");
  expectFailure(r, {"'kernel_size'", "3,5,7"});
  // Parentheses come in one balanced pair around the whole value.
  for (const char *bad : {"(3, 3", "3, 3)", "((3, 3))", "(3)(3)", "()", "(,)", "3,", ",3", ""}) {
    r = encc(fmt::format("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set 'kernel_size={}' "
                         "--input X=random:2,3,5,5 --out out",
                         bad));
    expectFailure(r, {"'kernel_size'", fmt::format("got '{}'", bad)});
  }
  // A pair may also be written (3, 1), as in Python.
  r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set 'kernel_size=(3, 1)' "
           "--set stride=2,1 --input X=random:2,3,7,5 --out pair");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(read("pair/Y.npy").shape()), "[2, 4, 3, 5]");
  EXPECT_EQ(shapeString(read("pair/params/weight.npy").shape()), "[4, 3, 3, 1]");
}

// Hyper-parameters torch would refuse, or that give NaN everywhere, are refused by the layers' requires,
// naming the condition and the values; the edges of the allowed ranges are accepted.
TEST_F(EnccLayersCli, ShippedLayersRequireSensibleHyperParameters) {
  struct Case {
    std::string args, condition, value;
  };
  const std::string bn = "--layer SyncBatchNorm --set num_features=3 --input X=random:4,3,5";
  const std::string dist = "--layer DistSyncBatchNorm --set num_features=3 --input X=random:4,3,5";
  const std::string conv = "--set kernel_size=3 --input X=random:1,3,5,5";
  const Case cases[] = {
      {bn + " --set eps=-1", "eps > 0", "eps = -1"},
      {bn + " --set eps=0", "eps > 0", "eps = 0"},
      {bn + " --set momentum=-0.1", "momentum >= 0 && momentum <= 1", "momentum = -0.1"},
      {bn + " --set momentum=1.5", "momentum >= 0 && momentum <= 1", "momentum = 1.5"},
      {"--layer SyncBatchNorm --set num_features=0 --input X=random:4,0,5", "num_features > 0", "num_features = 0"},
      {dist + " --set eps=-1", "eps > 0", "eps = -1"},
      {dist + " --set momentum=2", "momentum >= 0 && momentum <= 1", "momentum = 2"},
      {"--layer BatchNorm2d --set num_features=3 --set eps=0 --input X=random:4,3,5,5", "eps > 0", "eps = 0"},
      {"--layer Conv2d --set in_channels=0 --set out_channels=4 " + conv, "in_channels > 0", "in_channels = 0"},
      {"--layer Conv2d --set in_channels=3 --set out_channels=0 " + conv, "out_channels > 0", "out_channels = 0"},
      {"--layer Conv2d --set in_channels=3 --set out_channels=4 --set stride=0 " + conv, "stride[0] > 0", "stride"},
      {"--layer UpsampleConv2d --set in_channels=0 --set out_channels=4 " + conv, "in_channels > 0", "in_channels = 0"},
      {"--layer Linear --set in_features=0 --set out_features=2 --input X=random:2,0", "in_features > 0",
       "in_features = 0"},
      {"--layer Encoding --set D=0 --set K=2 --input X=random:2,0,3", "D > 0", "D = 0"},
      {"--layer Inspiration --set C=0 --input X=random:1,0,2,2", "C > 0", "C = 0"},
      {"--layer L2Normalize --set eps=-1 --input X=random:2,3", "eps > 0", "eps = -1"},
      {"--layer Dropout --set p=1 --input X=random:4", "p < 1", "p = 1"},
  };
  for (const Case &c : cases) {
    CliResult r = encc("eval " + c.args + " --out out");
    expectFailure(r, {"requires", c.condition, c.value});
  }
  for (const char *momentum : {"0", "1"}) {
    CliResult r = encc(fmt::format("eval {} --set momentum={} --out ok{}", bn, momentum, momentum));
    EXPECT_EQ(r.status, 0) << r;
  }
}

// ---- gradients, optional bias, Inspiration's target ----------------------------------------------------

TEST_F(EnccLayersCli, Conv2dGradShapes) {
  CliResult r = encc(fmt::format("{} --input X=random:2,3,5,5 --grad Y=random:2,4,3,3 --out out", kConv));
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(read("out/Y.npy").shape()), "[2, 4, 3, 3]");
  EXPECT_EQ(shapeString(read("out/grad/X.npy").shape()), "[2, 3, 5, 5]");
  EXPECT_EQ(shapeString(read("out/grad/weight.npy").shape()), "[4, 3, 3, 3]");
  EXPECT_EQ(shapeString(read("out/grad/bias.npy").shape()), "[4]");

  // The bias gradient is the output gradient summed over batch and positions.
  Tensor dy = randomTensor({2, 4, 3, 3}, 3);
  write("dy.npy", dy);
  r = encc(fmt::format("{} --dtype f64 --input X=random:2,3,5,5 --grad Y=dy.npy --out file", kConv));
  ASSERT_EQ(r.status, 0) << r;
  Tensor db = read("file/grad/bias.npy");
  for (int64_t o = 0; o < 4; ++o) {
    double sum = 0;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 9; ++i)
        sum += dy.at((b * 4 + o) * 9 + i);
    EXPECT_NEAR(db.at(o), sum, 1e-12) << o;
  }

  // A gradient of the wrong shape names both shapes.
  r = encc(fmt::format("{} --input X=random:2,3,5,5 --grad Y=random:2,4,3,2 --out bad", kConv));
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "[2, 4, 3, 2]") && contains(r.err, "[2, 4, 3, 3]")) << r;
}

TEST_F(EnccLayersCli, LinearWithoutBias) {
  Tensor x = randomTensor({3, 4}, 11);
  write("x.npy", x);
  CliResult r =
      encc("eval --layer Linear --set in_features=4 --set out_features=2 --set bias=false --dtype f64 "
           "--input X=x.npy --grad Y=random:3,2 --out out");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(fs::exists(path("out/params/weight.npy")));
  EXPECT_FALSE(fs::exists(path("out/params/bias.npy")));
  EXPECT_FALSE(fs::exists(path("out/grad/bias.npy")));
  EXPECT_TRUE(fs::exists(path("out/grad/weight.npy")));
  Tensor w = read("out/params/weight.npy"), y = read("out/Y.npy");
  ASSERT_EQ(shapeString(w.shape()), "[2, 4]");
  ASSERT_EQ(shapeString(y.shape()), "[3, 2]");
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t o = 0; o < 2; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < 4; ++i)
        acc += x.at(b * 4 + i) * w.at(o * 4 + i);
      EXPECT_NEAR(y.at(b * 2 + o), acc, 1e-12) << b << "," << o;
    }
  // A bias that does not exist cannot be given.
  write("b.npy", randomTensor({2}, 12));
  r = encc("eval --layer Linear --set in_features=4 --set out_features=2 --set bias=false --param bias=b.npy "
           "--input X=x.npy --out out2");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "'bias'")) << r;

  // With the default bias = true it is there.
  r = encc("eval --layer Linear --set in_features=4 --set out_features=2 --input X=x.npy --out with");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(read("with/params/bias.npy").shape()), "[2]");
}

TEST_F(EnccLayersCli, InspirationTargetChangesOutput) {
  const int64_t N = 2, C = 3, HW = 4;
  Tensor x = randomTensor({N, C, 2, 2}, 21);
  write("x.npy", x);
  CliResult r = encc("eval --layer Inspiration --set C=3 --dtype f64 --input X=x.npy --out zero");
  ASSERT_EQ(r.status, 0) << r;
  Tensor y0 = read("zero/Y.npy");
  ASSERT_EQ(shapeString(y0.shape()), "[2, 3, 2, 2]");
  for (int64_t i = 0; i < y0.numel(); ++i)
    EXPECT_EQ(y0.at(i), 0.0) << "G is zeros until set: " << i;
  EXPECT_EQ(shapeString(read("zero/params/G.npy").shape()), "[1, 3, 3]");

  Tensor g = randomTensor({1, C, C}, 22);
  write("g.npy", g);
  r = encc("eval --layer Inspiration --set C=3 --dtype f64 --input X=x.npy --param G=g.npy --out target");
  ASSERT_EQ(r.status, 0) << r;
  Tensor y = read("target/Y.npy"), w = read("target/params/weight.npy");
  ASSERT_EQ(shapeString(y.shape()), "[2, 3, 2, 2]");
  EXPECT_NE(slurp(path("zero/Y.npy")), slurp(path("target/Y.npy")));
  // P = weight G; Y[n, :, hw] = P^T X[n, :, hw], the one target applying to the whole batch.
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t hw = 0; hw < HW; ++hw) {
        double acc = 0;
        for (int64_t k = 0; k < C; ++k) {
          double p = 0;
          for (int64_t j = 0; j < C; ++j)
            p += w.at(k * C + j) * g.at(j * C + c);
          acc += p * x.at((n * C + k) * HW + hw);
        }
        EXPECT_NEAR(y.at((n * C + c) * HW + hw), acc, 1e-12) << n << "," << c << "," << hw;
      }

  // A G of the wrong shape names both shapes.
  write("g_bad.npy", randomTensor({2, C, C}, 23));
  r = encc("eval --layer Inspiration --set C=3 --input X=x.npy --param G=g_bad.npy --out bad");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "'G'") && contains(r.err, "[1, 3, 3]") && contains(r.err, "[2, 3, 3]")) << r;
}

} // namespace
} // namespace enc
