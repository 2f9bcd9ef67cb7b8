// NetworkNames: parameters and buffers are named as torch's state_dict for the same structure.
#include "Networks.h"

#include "compiler/Pipeline.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nvrtc.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

TEST(NetworkNames, ParametersAndBuffersAreNamedAsTorchStateDict) {
  Layer net(networks(), "Stack", {{"C", "2"}, {"N", "2"}});
  // torchvision's ResNet naming for this structure: layerK.I.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}.
  std::vector<std::string> expected = {"stem.weight", "stem.bias", "fc.weight", "fc.bias"};
  for (int k = 1; k <= 2; ++k)
    for (int i = 0; i < 2; ++i) {
      std::string p = "layer" + std::to_string(k) + "." + std::to_string(i) + ".";
      for (const char *s : {"conv1.weight", "conv2.weight"}) expected.push_back(p + s);
      std::vector<std::string> bns = {"bn1", "bn2"};
      if (k == 2 && i == 0) {
        expected.push_back(p + "downsample.0.weight");
        bns.push_back("downsample.1");
      }
      for (const std::string &bn : bns)
        for (const char *s : {"weight", "bias", "running_mean", "running_var"}) expected.push_back(p + bn + "." + s);
    }
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> names;
  for (const auto &[name, value] : net.params()) names.push_back(name);
  EXPECT_EQ(names, expected);
  EXPECT_TRUE(net.isParameter("layer2.0.downsample.0.weight"));
  EXPECT_FALSE(net.isParameter("layer1.1.bn2.running_var"));
  EXPECT_EQ(net.params().at("layer2.1.conv1.weight").shape(), (Shape{4, 4, 3, 3}));
}

} // namespace
} // namespace enc
