// Every shipped layer, forward and backward, on the GPU against the CPU backend (which the
// layer suites check against naive double loops and finite differences) and, for a few layers,
// against the naive loops of ReferenceMath.h directly: f64 within 1e-10, f32 within 1e-4,
// f16 / bf16 storage within about one unit in the last place (2e-3 / 1.6e-2), relative to the
// largest magnitude of the reference. Fresh device memory is NaN-filled (ENC_POISON /
// ENC_CUDA_POISON), so an element a kernel forgets to write fails the comparison. Skipped,
// with the reason, where there is no GPU.
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

class GpuLayer : public GpuCaseTest {};

TEST_P(GpuLayer, MatchesTheCpu) {
  expectGpuMatchesCpu(cases()[GetParam()], {DType::F64, DType::F32, DType::F16, DType::BF16});
}

INSTANTIATE_TEST_SUITE_P(Shipped, GpuLayer, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t> &i) {
                           return cases()[i.param].layer + "_" + std::to_string(i.param);
                         });

} // namespace
} // namespace enc
