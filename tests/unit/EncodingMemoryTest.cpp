// EncodingMemory: the B*N*K*D residual of Encoding is never stored (and is, without fusion).
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

constexpr int64_t kMemB = 2, kMemD = 32, kMemK = 16, kMemN = 64 * 64;
constexpr int64_t kResidualBytes = kMemB * kMemN * kMemK * kMemD * 4;

AllocationStats encodingPassStats(bool fuse) {
  Gen gen(301);
  Layer layer(lib(), "Encoding", {{"D", "32"}, {"K", "16"}},
              LayerOptions{.dtype = DType::F32, .seed = 1, .fuse = fuse});
  Tensor x = randomTensor({kMemB, kMemD, 64, 64}, gen).to(DType::F32);
  Tensor g = randomTensor({kMemB, kMemK, kMemD}, gen).to(DType::F32);
  resetAllocationStats();
  layer.forward({{"X", x}});
  auto grads = layer.backward({{"Y", g}});
  EXPECT_TRUE(grads.count("X") && grads.count("codewords") && grads.count("scale"));
  return allocationStats();
}

TEST(EncodingMemory, ResidualNeverStored) {
  AllocationStats s = encodingPassStats(true);
  EXPECT_LT(s.largestBytes, kResidualBytes / 8) << "largest allocation " << s.largestBytes;
  // The statistics are live: the gradient of X, [B, D, N], was allocated.
  EXPECT_GE(s.largestBytes, kMemB * kMemD * kMemN * 4);
}

// Without fusion the residual is stored, so the check above can fail.
TEST(EncodingMemory, UnfusedStoresResidual) {
  AllocationStats s = encodingPassStats(false);
  EXPECT_GE(s.largestBytes, kResidualBytes) << "largest allocation " << s.largestBytes;
}

} // namespace
} // namespace enc
