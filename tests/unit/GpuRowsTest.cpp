// The GPU's row schedule (a row per thread block) with 16-bit storage agrees with the CPU.
#include "CliTestSupport.h"
#include "GpuLayerCheck.h"
#include "LayerCases.h"
#include "ReferenceMath.h"

#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

// The row schedule (a row per thread block) with 16-bit storage too.
TEST(GpuRows, SixteenBitStorageMatchesTheCpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  for (const GpuCase &c : edgeCases())
    if ((c.layer == "SyncBatchNorm" || c.layer == "GlobalAvgPool2d") && c.inputs.at("X").back() >= 32)
      expectGpuMatchesCpu(c, {DType::F16, DType::BF16});
}

} // namespace
} // namespace enc
