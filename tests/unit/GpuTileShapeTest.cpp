// Which tile shape a GPU contraction gets: tensor cores for f32 only with TF32 allowed, none when
// ENC_TENSOR_CORES=0, and ENC_GPU_TILE naming a shape or being a clear error.
#include "GpuTileChecks.h"
#include "ReferenceMath.h"
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
    EXPECT_EQ(tiledKernels(l.lastForwardLoops(), ir::tileShapeCandidates(tf32)[0]), 1) << "allowTf32 " << tf32;
  }
}

// With 16-bit storage and ENC_TENSOR_CORES=0 the contraction keeps the FMA tiles.
TEST(GpuTileShape, TensorCoresCanBeTurnedOff) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  setenv("ENC_TENSOR_CORES", "0", 1);
  Layer l(lib(), "GramMatrix", {}, LayerOptions{DType::F16, 5, true, true, Device::CUDA});
  l.forward({{"X", tensorOf(pattern(2 * 32 * 20, 0.5), {2, 32, 4, 5}, DType::F16).to(Device::CUDA)}});
  unsetenv("ENC_TENSOR_CORES");
  EXPECT_EQ(tiledKernels(l.lastForwardLoops(), ir::tileShapeCandidates(false)[0]), 1);
}

// The single-stage shape of a kind with rows x cols outputs.
ir::TileShape shapeOf(bool tensorCores, int rows, int cols) {
  for (const ir::TileShape &s : ir::tileShapeCandidates(tensorCores))
    if (s.stages == 1 && s.rows == rows && s.cols == cols) return s;
  ADD_FAILURE() << "no shape " << rows << "x" << cols;
  return {};
}

// 32 columns (Linear's 32 outputs) or 32 rows (its weight gradient's) get the narrow tiles,
// which a 64-wide side would leave half empty; 130 x 70 (the input gradient) the small ones.
// f64 against loops; f16 (tensor cores) for the choice.
TEST(GpuTileShape, NarrowTilesForFewRowsOrColumns) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  const int64_t B = 130, I = 70, O = 32;
  for (DType dtype : {DType::F64, DType::F16}) {
    const bool tc = dtype == DType::F16;
    SCOPED_TRACE(dtypeName(dtype));
    Layer l(lib(), "Linear", {{"in_features", std::to_string(I)}, {"out_features", std::to_string(O)}},
            LayerOptions{dtype, 5, true, true, Device::CUDA});
    std::vector<double> x = pattern(B * I, 0.1), gy = pattern(B * O, 0.7);
    auto out = l.forward({{"X", tensorOf(x, {B, I}, dtype).to(Device::CUDA)}});
    auto grads = l.backward({{"Y", tensorOf(gy, {B, O}, dtype).to(Device::CUDA)}});
    EXPECT_EQ(tiledKernels(l.lastForwardLoops(), shapeOf(tc, 128, 32)), 1);
    EXPECT_EQ(kernelsTiledWith(l.lastBackwardLoops(), shapeOf(tc, 32, 128)), 1) << "the weight gradient";
    EXPECT_EQ(kernelsTiledWith(l.lastBackwardLoops(), shapeOf(tc, 64, 64)), 1) << "the input gradient";
    if (tc) continue;
    std::vector<double> w = valuesOf(l.params().at("weight")), bias = valuesOf(l.params().at("bias"));
    std::vector<double> y(B * O), gx(B * I, 0.0), gw(O * I, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t o = 0; o < O; ++o) {
        double s = bias[o];
        for (int64_t i = 0; i < I; ++i) {
          s += x[b * I + i] * w[o * I + i];
          gx[b * I + i] += gy[b * O + o] * w[o * I + i];
          gw[o * I + i] += gy[b * O + o] * x[b * I + i];
        }
        y[b * O + o] = s;
      }
    EXPECT_LT(maxRelError(valuesOf(out.at("Y")), y), 1e-12);
    EXPECT_LT(maxRelError(valuesOf(grads.at("X")), gx), 1e-12);
    EXPECT_LT(maxRelError(valuesOf(grads.at("weight")), gw), 1e-12);
  }
}

// Encoding with K = 32 codewords: its squared distances (rows b, i; 32 columns k) on the
// narrow FMA tile, against loops.
TEST(GpuTileShape, EncodingWith32CodewordsUsesANarrowTile) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  const int64_t B = 2, D = 64, N = 45, K = 32;
  Layer l(lib(), "Encoding", {{"D", std::to_string(D)}, {"K", std::to_string(K)}},
          LayerOptions{DType::F64, 5, true, true, Device::CUDA});
  std::vector<double> x = pattern(B * D * N, 0.3);
  std::vector<double> c = valuesOf(l.params().at("codewords")), s = valuesOf(l.params().at("scale"));
  Tensor y = l.forward({{"X", tensorOf(x, {B, D, N}).to(Device::CUDA)}}).at("Y");
  EXPECT_GE(kernelsTiledWith(l.lastForwardLoops(), shapeOf(false, 128, 32)), 1);
  EXPECT_LT(maxRelError(valuesOf(y), encodingRef(x, c, s, B, D, N, K)), 1e-12);
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
