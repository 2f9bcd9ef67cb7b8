// Sizes that do not fit, given on the command line: `encc eval` refuses a random input or hyper-parameters
// too large for their tensors, and writes no output.
#include "CliTestSupport.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

using namespace enc::testing;

class SizeOverflowCli : public CliTest {};

TEST_F(SizeOverflowCli, RandomInputTooLarge) {
  for (const char *dims : {"4611686018427387904", "4294967296,4294967296", "9223372036854775807,2"}) {
    CliResult r = encc(fmt::format("eval --device cpu --layer LeakyReLU --input X=random:{} --out out", dims));
    expectFailure(r, {"random input 'X'", "too large"});
    EXPECT_FALSE(fs::exists(path("out/Y.npy"))) << dims;
  }
}

TEST_F(SizeOverflowCli, HyperParametersTooLarge) {
  CliResult r = encc("eval --device cpu --layer SyncBatchNorm --set num_features=4611686018427387904 "
                     "--input X=random:2,2 --out out");
  expectFailure(r, {"parameter '", "[4611686018427387904]"});
  r = encc("eval --device cpu --layer Conv2d --set in_channels=1 --set out_channels=1 --set kernel_size=3,3 "
           "--set padding=1073741821 --input X=random:1,1,3,3 --out out");
  expectFailure(r, {"output 'Y'", "too large"});
  EXPECT_FALSE(fs::exists(path("out/Y.npy")));
}

} // namespace
} // namespace enc
