// Other unroll factors of the GPU's strided loops (ENC_CUDA_UNROLL) agree with the CPU.
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

// Other unroll factors of the strided loops (ENC_CUDA_UNROLL; 3 leaves a remainder for the
// tail loop), on the cases whose reductions and element-wise loops run longest per thread.
TEST(GpuUnroll, OtherFactorsMatchTheCpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  for (const char *factor : {"1", "3"}) {
    SCOPED_TRACE(std::string("ENC_CUDA_UNROLL=") + factor);
    ScopedEnv unroll("ENC_CUDA_UNROLL", factor);
    for (const GpuCase &c : edgeCases())
      if (c.layer == "SyncBatchNorm" || c.layer == "Softmax") expectGpuMatchesCpu(c, {DType::F32});
  }
}

} // namespace
} // namespace enc
