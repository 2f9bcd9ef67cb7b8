// The GPU layer cases (LayerCases.h) cover every shipped layer.
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

TEST(GpuLayerCases, CoversEveryShippedLayer) {
  std::set<std::string> covered;
  for (const GpuCase &c : cases()) covered.insert(c.layer);
  for (const std::string &name : lib()->layerNames()) EXPECT_TRUE(covered.count(name)) << name << " has no GPU case";
}

} // namespace
} // namespace enc
