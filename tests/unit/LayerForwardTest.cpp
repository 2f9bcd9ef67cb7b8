// LayerForward: every shipped layer's outputs through the C++ API against naive double-precision loops
// (ShippedLayerChecks.h), and the errors for inputs a layer cannot take.
#include "ShippedLayerChecks.h"

#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"
#include "ReferenceMath.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::shipped_checks;

#define FORWARD_TEST(Name, makeCases, seed) ENC_SHIPPED_LAYER_TEST(LayerForward, false, Name, makeCases, seed)
ENC_SHIPPED_LAYER_CASES(FORWARD_TEST)

TEST(LayerForward, Conv2dGroupsMustDivideChannels) {
  std::string m = errorOf([] {
    Layer(lib(), "Conv2d",
          {{"in_channels", "6"}, {"out_channels", "4"}, {"kernel_size", "3"}, {"groups", "4"}});
  });
  EXPECT_MENTIONS(m, "Conv2d");
  EXPECT_MENTIONS(m, "groups");
  m = errorOf([] {
    Layer(lib(), "Conv2d",
          {{"in_channels", "4"}, {"out_channels", "6"}, {"kernel_size", "3"}, {"groups", "4"}});
  });
  EXPECT_MENTIONS(m, "Conv2d");
  EXPECT_MENTIONS(m, "out_channels");
}

// A 5x5 Conv2d on 2 channels, plus one more hyper-parameter, for inputs smaller than the kernel.
std::unique_ptr<Layer> smallConv(const std::string &extraName, const std::string &extraValue) {
  Settings s = {{"in_channels", "2"}, {"out_channels", "2"}, {"kernel_size", "5"}};
  if (!extraName.empty())
    s[extraName] = extraValue;
  return std::make_unique<Layer>(lib(), "Conv2d", s, LayerOptions{DType::F64});
}

TEST(LayerForward, Conv2dKernelLargerThanPaddedInput) {
  auto conv = smallConv("", "");
  std::string m = errorOf([&] { conv->forward({{"X", Tensor(DType::F64, {1, 2, 3, 3})}}); });
  EXPECT_MENTIONS(m, "Conv2d");
  EXPECT_MENTIONS(m, "'Y'");
  // One short of the kernel with stride 2: (4 - 4 - 1) // 2 + 1 = 0 with floor division; truncating
  // division would give a 1-row output that reads only padding.
  auto strided = smallConv("stride", "2");
  m = errorOf([&] { strided->forward({{"X", Tensor(DType::F64, {1, 2, 4, 8})}}); });
  EXPECT_MENTIONS(m, "Conv2d");
  // Padding makes room: (3 + 2 - 4 - 1) + 1 = 1 row, no error; one row less is an error again.
  auto padded = smallConv("padding", "1");
  EXPECT_EQ(shapeString(padded->forward({{"X", Tensor(DType::F64, {1, 2, 3, 3})}}).at("Y").shape()),
            "[1, 2, 1, 1]");
  m = errorOf([&] { padded->forward({{"X", Tensor(DType::F64, {1, 2, 2, 3})}}); });
  EXPECT_MENTIONS(m, "Conv2d");
  // The same with a dilated kernel: 2 * (3 - 1) + 1 = 5 rows needed.
  auto dilated = std::make_unique<Layer>(
      lib(), "Conv2d",
      Settings{{"in_channels", "2"}, {"out_channels", "2"}, {"kernel_size", "3"}, {"dilation", "2"}},
      LayerOptions{DType::F64});
  m = errorOf([&] { dilated->forward({{"X", Tensor(DType::F64, {1, 2, 4, 5})}}); });
  EXPECT_MENTIONS(m, "Conv2d");
  EXPECT_EQ(shapeString(dilated->forward({{"X", Tensor(DType::F64, {1, 2, 5, 5})}}).at("Y").shape()),
            "[1, 2, 1, 1]");
}

// Regression: the "input too small" error once named the layer and the output dimension ("layer Conv2d:
// output 'Y' would have dimension 2 of size -1 for these inputs") but not the input's shape, unlike every
// other shape error (DESIGN.md: "a clear error naming the layer, the input and both shapes").
TEST(LayerForward, Conv2dTooSmallInputErrorNamesTheInputShape) {
  auto conv = smallConv("", "");
  std::string m = errorOf([&] { conv->forward({{"X", Tensor(DType::F64, {1, 2, 3, 3})}}); });
  EXPECT_MENTIONS(m, "[1, 2, 3, 3]");
  EXPECT_MENTIONS(m, "conv.enc:19:"); // where the output's shape is declared
  auto strided = smallConv("stride", "2");
  m = errorOf([&] { strided->forward({{"X", Tensor(DType::F64, {1, 2, 4, 8})}}); });
  EXPECT_MENTIONS(m, "[1, 2, 4, 8]");
}

TEST(LayerForward, Conv2dWrongChannelsOrRank) {
  Layer conv(lib(), "Conv2d", {{"in_channels", "3"}, {"out_channels", "2"}, {"kernel_size", "3"}},
             {DType::F64});
  std::string m = errorOf([&] { conv.forward({{"X", Tensor(DType::F64, {1, 4, 5, 5})}}); });
  EXPECT_MENTIONS(m, "Conv2d");
  EXPECT_MENTIONS(m, "'X'");
  EXPECT_MENTIONS(m, "[1, 4, 5, 5]");
  EXPECT_MENTIONS(m, "in_channels = 3");
  m = errorOf([&] { conv.forward({{"X", Tensor(DType::F64, {3, 5, 5})}}); });
  EXPECT_MENTIONS(m, "Conv2d");
  EXPECT_MENTIONS(m, "[3, 5, 5]");
  EXPECT_MENTIONS(m, "[B, in_channels, H, W]");
  m = errorOf([&] { conv.forward({{"X", Tensor(DType::F64, {1, 3, 5, 5, 2})}}); });
  EXPECT_MENTIONS(m, "[1, 3, 5, 5, 2]");
}

TEST(LayerForward, LinearWrongInFeatures) {
  Layer linear(lib(), "Linear", {{"in_features", "5"}, {"out_features", "3"}}, {DType::F32});
  std::string m = errorOf([&] { linear.forward({{"X", Tensor(DType::F32, {2, 4})}}); });
  EXPECT_MENTIONS(m, "Linear");
  EXPECT_MENTIONS(m, "'X'");
  EXPECT_MENTIONS(m, "[2, 4]");
  EXPECT_MENTIONS(m, "in_features = 5");
  m = errorOf([&] { linear.forward({{"X", Tensor(DType::F32, {2, 5, 1})}}); });
  EXPECT_MENTIONS(m, "[2, 5, 1]");
}

TEST(LayerForward, UpsampleConv2dGroupsMustDivideConvChannels) {
  // out_channels * r^2 = 3 is odd.
  std::string m = errorOf([] {
    Layer(lib(), "UpsampleConv2d",
          {{"in_channels", "4"}, {"out_channels", "3"}, {"kernel_size", "3"}, {"groups", "2"}});
  });
  EXPECT_MENTIONS(m, "UpsampleConv2d");
  EXPECT_MENTIONS(m, "groups");
  // 2 * 3^2 = 18 is not a multiple of 4.
  m = errorOf([] {
    Layer(lib(), "UpsampleConv2d",
          {{"in_channels", "4"},
           {"out_channels", "2"},
           {"kernel_size", "3"},
           {"groups", "4"},
           {"scale_factor", "3"}});
  });
  EXPECT_MENTIONS(m, "UpsampleConv2d");
  // The rule is on out_channels * r^2 (8 for out 2, r 2), not out_channels: groups 4 is fine.
  EXPECT_NO_THROW(Layer(lib(), "UpsampleConv2d",
                        {{"in_channels", "4"},
                         {"out_channels", "2"},
                         {"kernel_size", "3"},
                         {"groups", "4"},
                         {"scale_factor", "2"}}));
  // and in_channels must divide too.
  m = errorOf([] {
    Layer(lib(), "UpsampleConv2d",
          {{"in_channels", "3"},
           {"out_channels", "2"},
           {"kernel_size", "3"},
           {"groups", "2"},
           {"scale_factor", "2"}});
  });
  EXPECT_MENTIONS(m, "in_channels");
}

// One target per sample needs as many samples as targets.
TEST(LayerForward, InspirationTargetCountMustMatchBatch) {
  Layer layer(lib(), "Inspiration", {{"C", "3"}, {"B", "2"}}, {DType::F64, 0});
  std::string m = errorOf([&] { layer.forward({{"X", Tensor(DType::F64, {3, 3, 2, 2})}}); });
  EXPECT_MENTIONS(m, "Inspiration");
  EXPECT_MENTIONS(m, "B == 1 || B == N");
  m = errorOf([&] { layer.forward({{"X", Tensor(DType::F64, {2, 4, 2, 2})}}); });
  EXPECT_MENTIONS(m, "[2, 4, 2, 2]");
}

} // namespace
} // namespace enc
