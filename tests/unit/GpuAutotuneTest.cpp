// GPU autotuning (runtime/Autotune.cpp, ENC_AUTOTUNE=1): each candidate tile shape timed once, the
// choice remembered in the disk cache and used by later compiles, with the right values.
#include "GpuTileChecks.h"
#include "TensorValues.h"

#include "compiler/GpuTiling.h"
#include "runtime/Autotune.h"
#include "runtime/DiskCache.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "support/Error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

// ENC_AUTOTUNE=1 (on the emulator too): a pass with tiled kernels times each candidate shape
// once and stores the choice in the disk cache; a later layer reads it back (a choice written
// there by hand is the one it uses) and still computes the right values.
TEST(GpuAutotune, ChoosesATileShapeAndRemembersIt) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  setenv("ENC_AUTOTUNE", "1", 1);
  const int64_t B = 2, C = 130, N = 45;
  std::vector<double> x = pattern(B * C * N, 0.4);
  auto run = [&] {
    Layer l(lib(), "GramMatrix", {}, LayerOptions{DType::F64, 5, true, true, Device::CUDA});
    Tensor y = l.forward({{"X", tensorOf(x, {B, C, 5, 9}).to(Device::CUDA)}}).at("Y");
    std::vector<double> got = valuesOf(y), want(B * C * C, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t e = 0; e < C; ++e) {
          double s = 0;
          for (int64_t n = 0; n < N; ++n) s += x[(b * C + c) * N + n] * x[(b * C + e) * N + n];
          want[(b * C + c) * C + e] = s / static_cast<double>(C * N);
        }
    EXPECT_LT(maxRelError(got, want), 1e-12);
    return l.lastForwardLoops();
  };
  run();
  // The key comes from the kernel at the first candidate shape.
  setenv("ENC_AUTOTUNE", "0", 1);
  ir::LoopProgram first;
  {
    ForcedTile forced(ir::tileShapeName(ir::tileShapeCandidates(false)[0]));
    first = run();
  }
  setenv("ENC_AUTOTUNE", "1", 1);
  const ir::Kernel *tiled = nullptr;
  for (const ir::Kernel &k : first.kernels)
    if (k.launch == ir::ForKind::GpuTiles) tiled = &k;
  ASSERT_TRUE(tiled);
  DiskCache &cache = DiskCache::global();
  if (!cache.usable()) {
    unsetenv("ENC_AUTOTUNE");
    GTEST_SKIP() << "the disk cache is off here: nothing to remember";
  }
  const std::string key = autotuneKey(first, *tiled);
  std::optional<std::string> stored = cache.get(key);
  ASSERT_TRUE(stored) << "no tuning entry " << key;
  std::vector<std::string> names;
  for (const ir::TileShape &s : ir::tileShapeCandidates(false)) names.push_back(ir::tileShapeName(s));
  EXPECT_THAT(names, ::testing::Contains(*stored));
  // Whatever was timed, a stored choice is what the next compile uses.
  for (const ir::TileShape &s : ir::tileShapeCandidates(false)) {
    cache.put(key, ir::tileShapeName(s));
    EXPECT_EQ(tiledKernels(run(), s), 1) << ir::tileShapeName(s);
  }
  unsetenv("ENC_AUTOTUNE");
}

} // namespace
} // namespace enc
