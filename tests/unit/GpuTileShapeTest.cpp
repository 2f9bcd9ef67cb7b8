// Which tile shape a GPU contraction gets: tensor cores for f32 only with TF32 allowed, none when
// ENC_TENSOR_CORES=0, and ENC_GPU_TILE naming a shape or being a clear error.
#include "GpuTileChecks.h"
#include "TensorValues.h"

#include "compiler/GpuTiling.h"
#include "runtime/Autotune.h"
#include "runtime/DiskCache.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

// An f32 layer keeps the FMA tiles unless TF32 is allowed.
TEST(GpuTileShape, F32UsesTensorCoresOnlyWithTf32Allowed) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  for (bool tf32 : {false, true}) {
    LayerOptions o{DType::F32, 5, true, true, Device::CUDA};
    o.allowTf32 = tf32;
    Layer l(lib(), "GramMatrix", {}, o);
    l.forward({{"X", tensorOf(pattern(2 * 32 * 20, 0.5), {2, 32, 4, 5}, DType::F32).to(Device::CUDA)}});
    EXPECT_EQ(tiledKernels(l.lastForwardLoops(), ir::gpuTileShapes()[tf32 ? 2 : 0]), 1) << "allowTf32 " << tf32;
  }
}

// With 16-bit storage and ENC_TENSOR_CORES=0 the contraction keeps the FMA tiles.
TEST(GpuTileShape, TensorCoresCanBeTurnedOff) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  setenv("ENC_TENSOR_CORES", "0", 1);
  Layer l(lib(), "GramMatrix", {}, LayerOptions{DType::F16, 5, true, true, Device::CUDA});
  l.forward({{"X", tensorOf(pattern(2 * 32 * 20, 0.5), {2, 32, 4, 5}, DType::F16).to(Device::CUDA)}});
  unsetenv("ENC_TENSOR_CORES");
  EXPECT_EQ(tiledKernels(l.lastForwardLoops(), ir::gpuTileShapes()[0]), 1);
}

// ENC_GPU_TILE names a shape or is a clear error; the choice needs no GPU.
TEST(GpuTileShape, EnvironmentNamesAShape) {
  {
    ForcedTile forced("128x128x8");
    ASSERT_TRUE(ir::tileShapeFromEnvironment());
    EXPECT_EQ(ir::tileShapeFromEnvironment()->rows, 128);
  }
  {
    ForcedTile forced("auto");
    EXPECT_FALSE(ir::tileShapeFromEnvironment());
  }
  ForcedTile forced("64x64");
  try {
    ir::tileShapeFromEnvironment();
    FAIL() << "no error for ENC_GPU_TILE=64x64";
  } catch (const Error &e) {
    EXPECT_NE(e.render().find("64x64x16"), std::string::npos) << e.render();
  }
}

} // namespace
} // namespace enc
