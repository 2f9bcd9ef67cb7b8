// `encc eval --load-state/--save-state`: a layer's state loaded before the pass and saved after it.
#include "SafetensorsFiles.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"
#include "support/Error.h"

#include "CliTestSupport.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

using namespace enc;
using namespace enc::testing;

namespace {

class SafetensorsCli : public CliTest {};

TEST_F(SafetensorsCli, EvalLoadsBeforeParamsAndSavesAfterThePass) {
  std::map<std::string, Tensor> state = {{"weight", filled(DType::F64, {3}, 7)},
                                         {"bias", filled(DType::F64, {3}, 1)},
                                         {"running_mean", filled(DType::F64, {3}, 2)},
                                         {"running_var", filled(DType::F64, {3}, 9)}};
  writeSafetensors(path("in.safetensors").string(), state);
  Tensor bias = filled(DType::F64, {3}, -3);
  writeNpy(path("bias.npy").string(), bias);
  Tensor x = filled(DType::F64, {2, 3, 4});
  writeNpy(path("x.npy").string(), x);
  auto r = encc("eval --layer SyncBatchNorm --set num_features=3 --dtype f64 --device cpu --mode train "
                "--input X=x.npy --load-state in.safetensors --param bias=bias.npy --save-state out.safetensors --out out");
  ASSERT_EQ(r.status, 0) << r;
  std::map<std::string, Tensor> saved = readSafetensors(path("out.safetensors").string());
  ASSERT_EQ(saved.size(), 4u);
  expectSameTensor(state.at("weight"), saved.at("weight"), "weight from --load-state");
  expectSameTensor(bias, saved.at("bias"), "bias from --param, which wins");
  // The training pass moved the running statistics from the loaded values; the file holds them as
  // params/*.npy does.
  for (const char *buffer : {"running_mean", "running_var"}) {
    expectSameTensor(readNpy(path(fmt::format("out/params/{}.npy", buffer)).string()), saved.at(buffer), buffer);
    EXPECT_NE(saved.at(buffer).at(0), state.at(buffer).at(0)) << buffer;
  }

  r = encc("eval --layer SyncBatchNorm --set num_features=4 --input X=x.npy --load-state in.safetensors --out bad");
  expectFailure(r, {"in.safetensors", "tensor 'bias' has shape [3]", "has shape [4]"});
  r = encc("eval --layer SyncBatchNorm --set num_features=3 --input X=x.npy --load-state nope.safetensors --out bad");
  expectFailure(r, {"cannot read nope.safetensors"});
}

// Keys that differ: the command line's hint names its own remedy, --partial-state (not the C++
// API's loadState(path, false)), which sets the tensors both have and lists the others.
TEST_F(SafetensorsCli, PartialStateLoadsTheKeysBothHave) {
  writeSafetensors(path("part.safetensors").string(),
                   {{"weight", filled(DType::F64, {3}, 7)}, {"extra", filled(DType::F64, {3}, 1)}});
  const std::string run = "eval --layer SyncBatchNorm --set num_features=3 --dtype f64 --input X=random:2,3 "
                          "--load-state part.safetensors";
  CliResult r = encc(run + " --out strict");
  expectFailure(r, {"missing keys", "unexpected keys 'extra'", "hint: --partial-state"});
  EXPECT_FALSE(contains(r.err, "loadState(")) << r;
  r = encc(run + " --partial-state --out partial");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.err, "not in the file, left as initialized: bias, running_mean, running_var")) << r;
  EXPECT_TRUE(contains(r.err, "not in layer SyncBatchNorm, ignored: extra")) << r;
  expectSameTensor(filled(DType::F64, {3}, 7), readNpy(path("partial/params/weight.npy").string()), "weight");
  expectFailure(encc("eval --layer ReLU --input X=random:3 --partial-state --out bad"), {"--partial-state"});
}

} // namespace
