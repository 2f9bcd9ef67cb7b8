// Host tensors come from a caching allocator: a freed block is handed out again instead of
// fresh pages, Tensor(...) is zero-filled, and Tensor::empty is NaN-filled under ENC_POISON=1
// (which the test suite sets), so a kernel that skips an element cannot go unnoticed.
#include "runtime/HostMemory.h"
#include "runtime/Tensor.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enc {
namespace {

TEST(HostMemory, FreedBlocksAreReused) {
  const Shape shape{3, 1 << 20}; // 12 MiB: the kind of block that would otherwise be fresh pages
  { Tensor warm = Tensor::empty(DType::F32, shape, Device::CPU); }
  DeviceMemoryStats before = hostAllocator().stats();
  for (int i = 0; i < 5; ++i) {
    Tensor t = Tensor::empty(DType::F32, shape, Device::CPU);
    t.set(t.numel() - 1, 1.0);
  }
  DeviceMemoryStats after = hostAllocator().stats();
  EXPECT_EQ(after.allocations - before.allocations, 5);
  EXPECT_EQ(after.cacheHits - before.cacheHits, 5);
  EXPECT_EQ(after.rawAllocations, before.rawAllocations);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(Tensor::empty(DType::F64, {3}, Device::CPU).data()) % 64, 0u);
}

TEST(HostMemory, ZeroFilledAndPoisoned) {
  const Shape shape{1000};
  for (DType dtype : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtypeName(dtype));
    { Tensor dirty = Tensor::empty(dtype, shape, Device::CPU); for (int64_t i = 0; i < 1000; ++i) dirty.set(i, 7.0); }
    Tensor zero(dtype, shape); // may reuse the dirty block
    for (int64_t i = 0; i < zero.numel(); ++i) ASSERT_EQ(zero.at(i), 0.0) << i;
    if (!poisonHostMemory()) continue;
    Tensor fresh = Tensor::empty(dtype, shape, Device::CPU);
    for (int64_t i = 0; i < fresh.numel(); ++i) ASSERT_TRUE(std::isnan(fresh.at(i))) << i;
  }
  if (!poisonHostMemory()) GTEST_SKIP() << "ENC_POISON is not set (the test suite sets it): poisoning not checked";
}

} // namespace
} // namespace enc
