// Device tensors: copies both ways, clones on the device, host access refused, freed blocks reused.
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

// Device tensors: copies both ways, clones on the device, host-only access refused.
TEST(GpuTensor, CopiesAndRefusesHostAccess) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  Tensor h = randomTensor({3, 1000}, 9);
  Tensor d = h.to(Device::CUDA);
  EXPECT_TRUE(d.isCuda());
  EXPECT_THROW(d.at(0), Error);
  Tensor back = d.clone().cpu();
  EXPECT_FALSE(back.isCuda());
  EXPECT_EQ(relError(back, h), 0.0);
  Tensor z(DType::F32, {5, 7}, Device::CUDA);
  Tensor zh = z.cpu();
  for (int64_t i = 0; i < zh.numel(); ++i) EXPECT_EQ(zh.at(i), 0.0);
}

// The caching allocator serves a tensor from a freed block of its size class, without the driver.
TEST(GpuTensor, AllocatorReusesFreedBlocks) {
  cuda::Gpu *gpu = cuda::Gpu::get();
  if (!gpu) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  { Tensor t(DType::F32, {(1 << 20) + 17}, Device::CUDA); }
  DeviceMemoryStats before = gpu->allocator().stats();
  EXPECT_GT(before.cachedBytes, 0);
  Tensor again(DType::F32, {(1 << 20) + 17}, Device::CUDA);
  DeviceMemoryStats after = gpu->allocator().stats();
  EXPECT_EQ(after.cacheHits, before.cacheHits + 1);
  EXPECT_EQ(after.rawAllocations, before.rawAllocations);
  EXPECT_GE(after.peakBytes, after.currentBytes);
}

} // namespace
} // namespace enc
