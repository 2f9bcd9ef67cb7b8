// Layers at sizes on the edges of the GPU schedule (GpuLayerCheck.h's edgeCases) agree with the CPU in f64
// and f32.
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

class GpuEdgeCase : public GpuCaseTest {};

TEST_P(GpuEdgeCase, MatchesTheCpu) { expectGpuMatchesCpu(edgeCases()[GetParam()], {DType::F64, DType::F32}); }

INSTANTIATE_TEST_SUITE_P(Edges, GpuEdgeCase, ::testing::Range<size_t>(0, edgeCases().size()),
                         [](const ::testing::TestParamInfo<size_t> &i) {
                           return edgeCases()[i.param].layer + "_" + std::to_string(i.param);
                         });

} // namespace
} // namespace enc
