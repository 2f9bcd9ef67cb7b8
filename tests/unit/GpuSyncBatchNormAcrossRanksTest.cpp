// SyncBatchNorm across ranks with CUDA tensors: through Gloo (host memory between kernels) and through
// NCCL on the device (on the CUDA and NCCL emulators: ranks as threads share one GPU).
#include "SyncBatchNormAcrossRanks.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nccl.h"
#include "runtime/ProcessGroup.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::testing;

namespace {

#ifdef ENC_HAVE_GLOO
// CUDA tensors through Gloo: the collectives go through host memory between the kernels.
TEST(GpuSyncBatchNormAcrossRanks, MatchesTheWholeBatch) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  checkSyncBatchNorm("SyncBatchNorm", {2, 1}, DType::F64, 1e-10, Device::CUDA);
  checkSyncBatchNorm("SyncBatchNorm", {1, 3}, DType::F32, 1e-4, Device::CUDA);
}

// CUDA tensors through NCCL, on the device: every collective is an NCCL all-reduce. Ranks as
// threads share the process's GPU, which NCCL refuses on a real one: this runs on the CUDA and
// NCCL emulators (emulated.*); several real GPUs are tested by EnccLaunch.NcclOnSeveralGpus.
TEST(GpuSyncBatchNormAcrossRanks, NcclSumsOnTheDevice) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  if (!cuda::Gpu::get()->loadsSource())
    GTEST_SKIP() << "ranks as threads share one GPU, which NCCL refuses: this test runs on the CUDA emulator";
  nccl::Library *nccl = nccl::Library::get();
  if (!nccl) GTEST_SKIP() << nccl::Library::unavailableReason();
  ASSERT_TRUE(nccl->encemuNcclAllReduceCalls) << "ENC_NCCL_LIBRARY is not the NCCL emulator";
  const long before = nccl->encemuNcclAllReduceCalls();
  checkSyncBatchNorm("SyncBatchNorm", {2, 1}, DType::F64, 1e-10, Device::CUDA, "nccl");
  // Two ranks, one message per pass: forward and backward.
  EXPECT_EQ(nccl->encemuNcclAllReduceCalls() - before, 4);
  checkSyncBatchNorm("SyncBatchNorm", {1, 3}, DType::F32, 1e-4, Device::CUDA, "nccl");
}

#endif

} // namespace
