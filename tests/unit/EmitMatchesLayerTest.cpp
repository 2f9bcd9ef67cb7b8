// `encc emit --emit=loops` prints exactly the loop programs a Layer ran, for the same hyper-parameters
// and sizes, forward and backward.
#include "CliTestSupport.h"

#include "compiler/Pipeline.h"
#include "compiler/Verifier.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/InternalError.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::testing;

namespace {

struct LayerRun {
  std::string layer;
  std::map<std::string, std::string> settings;
  Shape input;
  std::vector<std::string> sizes; // encc emit --size arguments for that input
};

// A layer run forward and backward on the CPU; `encc emit --emit=loops` with the same
// hyper-parameters and sizes must print the loop programs it ran, character for character.
class EmitMatchesLayer : public CliTest, public ::testing::WithParamInterface<LayerRun> {};

TEST_P(EmitMatchesLayer, LoopsAreWhatTheLayerRan) {
  const LayerRun &c = GetParam();
  Layer layer(Library::shipped(), c.layer, c.settings);
  Tensor x(DType::F32, c.input);
  for (int64_t i = 0; i < x.numel(); ++i) x.set(i, 0.25 * static_cast<double>(i % 7) - 0.5);
  std::map<std::string, Tensor> outputs = layer.forward({{"X", x}});
  std::map<std::string, Tensor> seeds;
  for (const auto &[name, y] : outputs) {
    Tensor g(DType::F32, y.shape());
    for (int64_t i = 0; i < g.numel(); ++i) g.set(i, 0.125 * static_cast<double>(i % 5));
    seeds[name] = g;
  }
  layer.backward(seeds);

  std::string args = fmt::format("emit --emit=loops --layer {}", c.layer);
  for (const auto &[k, v] : c.settings) args += fmt::format(" --set {}", quote(k + "=" + v));
  for (const std::string &s : c.sizes) args += " --size " + s;
  CliResult forward = encc(args);
  ASSERT_EQ(forward.status, 0) << forward;
  EXPECT_EQ(forward.out, ir::printLoops(layer.lastForwardLoops()));
  CliResult backward = encc(args + " --backward");
  ASSERT_EQ(backward.status, 0) << backward;
  EXPECT_EQ(backward.out, ir::printLoops(layer.lastBackwardLoops()));
}

INSTANTIATE_TEST_SUITE_P(
    ShippedLayers, EmitMatchesLayer,
    ::testing::Values(LayerRun{"Encoding", {{"D", "4"}, {"K", "3"}}, {2, 4, 5, 5}, {"B=2", "N=25"}},
                      LayerRun{"SyncBatchNorm", {{"num_features", "3"}}, {4, 3, 6, 6}, {"B=4", "L=36"}},
                      LayerRun{"Conv2d",
                               {{"in_channels", "2"}, {"out_channels", "3"}, {"kernel_size", "3"}, {"padding", "1"}},
                               {2, 2, 6, 6},
                               {"B=2", "H=6", "W=6"}},
                      LayerRun{"GramMatrix", {}, {2, 3, 4, 4}, {"B=2", "C=3", "H=4", "W=4"}}),
    [](const auto &info) { return info.param.layer; });

} // namespace
