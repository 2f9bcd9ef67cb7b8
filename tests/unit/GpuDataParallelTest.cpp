// Data-parallel training with gradients on the GPU (see DataParallelTest.cpp): buckets all-reduced
// through NCCL on the side stream, or through a host-memory group at the end of the pass.
#include "DataParallelMlp.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Nccl.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

#ifdef ENC_HAVE_GLOO
using namespace enc::testing;

// Device gradients: with NCCL (the emulators here: ranks as threads), each bucket's
// all-reduces start on the GPU's side stream where the bucket is complete; through a
// host-memory group (a real GPU shared by thread ranks), at the end of the pass.
TEST(GpuDataParallel, AveragesParameterGradients) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  nccl::Library *nccl = nccl::Library::get();
  const long before = nccl && nccl->encemuNcclAllReduceCalls ? nccl->encemuNcclAllReduceCalls() : 0;
  checkDataParallel({2, 3}, 2, Device::CUDA, 64, 200, 4);
  checkDataParallel({2, 3}, 2, Device::CUDA, size_t{1} << 20, size_t{25} << 20, 1);
  // On the side stream each gradient is an all-reduce of its own (in one NCCL group per
  // bucket): 2 ranks x 2 steps x 4 gradients, twice. (Packed at the end of the pass, the one
  // bucket of the second run would be one all-reduce.)
  if (nccl && nccl->encemuNcclAllReduceCalls) EXPECT_EQ(nccl->encemuNcclAllReduceCalls() - before, 32);
}
#endif

} // namespace
} // namespace enc
