// SyncBatchNorm's lowered kernels varied harmlessly fuse as the originals do and compute the same
// values on a GPU (and on the CUDA emulator, whose filter matches the suite's name); see
// ReductionNestTest.cpp for the CPU.
#include "VariedBatchNorm.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"

#include <gtest/gtest.h>

namespace enc::ir {
namespace {

using namespace enc::ir::testing;

TEST(ReductionNestGpu, VariedBatchNormFusesAlike) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  expectVariedBatchNormFusesAlike(Target::GPU);
}

} // namespace
} // namespace enc::ir
