// What a layer keeps between a forward pass and its backward pass.
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

// Between a forward pass and its backward pass a layer keeps only what backward reads (once
// it has been derived): UpsampleConv2d's convolution before the pixel shuffle, an
// activation-sized temporary, and its output are let go.
TEST(LayerMemory, KeepsOnlyWhatBackwardReads) {
  Layer layer(lib(), "UpsampleConv2d",
              {{"in_channels", "4"}, {"out_channels", "2"}, {"kernel_size", "3"}, {"scale_factor", "2"}}, {DType::F64, 3});
  Tensor x(DType::F64, {2, 4, 34, 34});
  const int64_t convBytes = 2 * 8 * 32 * 32 * 8; // Conv [B, out * r^2, H - 2, W - 2] in f64
  auto before = allocationStats().currentBytes;
  layer.forward({{"X", x}}); // the output is dropped by the caller at once
  auto first = allocationStats().currentBytes - before;
  layer.backward({{"Y", Tensor(DType::F64, {2, 2, 64, 64})}});
  layer.zeroGrad(); // the accumulated parameter gradients are not what this measures
  layer.forward({{"X", x}});
  auto second = allocationStats().currentBytes - before;
  // The first pass keeps Conv and Y (backward not derived yet); the second neither.
  EXPECT_GE(first - second, 2 * convBytes) << "first " << first << " second " << second;
  // Backward still works from what was kept.
  auto g = layer.backward({{"Y", Tensor(DType::F64, {2, 2, 64, 64})}});
  EXPECT_EQ(g.at("X").shape(), (Shape{2, 4, 34, 34}));
}

} // namespace
} // namespace enc
