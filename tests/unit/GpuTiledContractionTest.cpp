// The GPU's tiled contraction (compiler/GpuTiling.cpp), for every tile shape it chooses from
// (forced with ENC_GPU_TILE): the FMA tiles in f64, the tensor-core tiles with f16 and bf16
// storage, against naive double loops written here: Linear, GramMatrix and Conv2d forward and
// backward at sizes that leave partial tiles on every side (rows, columns and reduction not
// multiples of the tile). Also checks that the kernels were tiled with the forced shape.
// Skipped, with the reason, where there is no GPU (the emulated.* run has one).
#include "GpuTileChecks.h"
#include "TensorValues.h"

#include "compiler/GpuTiling.h"
#include "runtime/Autotune.h"
#include "runtime/DiskCache.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ostream>
#include <string>
#include <vector>

namespace enc {
namespace ir {
void PrintTo(const TileShape &s, std::ostream *os) { *os << tileShapeName(s); }
} // namespace ir
namespace {

using namespace enc::testing;

// The largest |got - want| over the largest |want|; infinite where an element is NaN (one
// no kernel wrote, as the tests poison fresh memory).
double errorOf(const Tensor &got, const std::vector<double> &want) {
  std::vector<double> g = valuesOf(got);
  double worst = g.size() == want.size() ? 0 : 1e300, scale = 0;
  for (size_t i = 0; i < want.size() && i < g.size(); ++i) {
    const double d = std::abs(g[i] - want[i]);
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    scale = std::max(scale, std::abs(want[i]));
  }
  return worst / std::max(scale, 1e-300);
}

// f64 on the FMA tiles: rounding only. 16-bit storage on tensor cores: the factors rounded to
// 16 bits (the weights too), sums in f32, results rounded to 16 bits. f32 on tensor cores
// (TF32): the factors rounded to 10 fraction bits, as f16's, but both of them (the f16 tests'
// gradients multiply inputs already stored in 16 bits), so sums that cancel lose more.
double toleranceOf(DType t) {
  switch (t) {
  case DType::F64: return 1e-12;
  case DType::F16: return 4e-3;
  case DType::F32: return 1e-2;
  case DType::BF16: return 3e-2;
  }
  return 0;
}

struct TileCase {
  ir::TileShape shape;
  DType dtype; // f32: TF32 allowed
};
std::string caseName(const TileCase &c) {
  return ir::tileShapeName(c.shape) + "_" + (c.dtype == DType::F32 ? "tf32" : dtypeName(c.dtype));
}
void PrintTo(const TileCase &c, std::ostream *os) { *os << caseName(c); }

class GpuTiledContraction : public ::testing::TestWithParam<TileCase> {
protected:
  void SetUp() override {
    if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  }
  LayerOptions options() const {
    LayerOptions o{dtype(), 5, true, true, Device::CUDA};
    o.allowTf32 = dtype() == DType::F32;
    return o;
  }
  DType dtype() const { return GetParam().dtype; }
  const ir::TileShape &shape() const { return GetParam().shape; }
  double tolerance() const { return toleranceOf(dtype()); }
  // The widest copy on tensor cores of factors that allow 16-byte ones, in elements.
  int64_t wideCopy() const { return 16 / static_cast<int64_t>(dtypeSize(dtype())); }
  ir::LoopProgram checkLinear(int64_t B, int64_t I, int64_t O);
  ir::LoopProgram checkGram(int64_t B, int64_t C, int64_t H, int64_t W);
  // `v` as the layer's input: rounded to its dtype, on the GPU; `v` becomes the rounded values.
  Tensor input(std::vector<double> &v, Shape s) const {
    Tensor t = tensorOf(v, std::move(s), dtype());
    v = valuesOf(t);
    return t.to(Device::CUDA);
  }
};

// Linear at B x I -> O: returns the forward pass's loops.
ir::LoopProgram GpuTiledContraction::checkLinear(int64_t B, int64_t I, int64_t O) {
  ForcedTile forced(ir::tileShapeName(shape()));
  Layer l(lib(), "Linear", {{"in_features", std::to_string(I)}, {"out_features", std::to_string(O)}}, options());
  std::vector<double> x = pattern(B * I, 0.1), gy = pattern(B * O, 0.7);
  std::vector<double> w = valuesOf(l.params().at("weight")), bias = valuesOf(l.params().at("bias"));
  auto out = l.forward({{"X", input(x, {B, I})}});
  EXPECT_GE(tiledKernels(l.lastForwardLoops(), shape()), 1);
  auto grads = l.backward({{"Y", input(gy, {B, O})}});
  EXPECT_GE(tiledKernels(l.lastBackwardLoops(), shape()), 2);

  std::vector<double> y(B * O), gx(B * I, 0.0), gw(O * I, 0.0), gb(O, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o) {
      double s = bias[o];
      for (int64_t i = 0; i < I; ++i) s += x[b * I + i] * w[o * I + i];
      y[b * O + o] = s;
      for (int64_t i = 0; i < I; ++i) {
        gx[b * I + i] += gy[b * O + o] * w[o * I + i];
        gw[o * I + i] += gy[b * O + o] * x[b * I + i];
      }
      gb[o] += gy[b * O + o];
    }
  EXPECT_LT(errorOf(out.at("Y"), y), tolerance());
  EXPECT_LT(errorOf(grads.at("X"), gx), tolerance());
  EXPECT_LT(errorOf(grads.at("weight"), gw), tolerance());
  EXPECT_LT(errorOf(grads.at("bias"), gb), tolerance());
  return l.lastForwardLoops();
}

// GramMatrix of [B, C, H, W]: returns the forward pass's loops.
ir::LoopProgram GpuTiledContraction::checkGram(int64_t B, int64_t C, int64_t H, int64_t W) {
  ForcedTile forced(ir::tileShapeName(shape()));
  const int64_t N = H * W;
  Layer l(lib(), "GramMatrix", {}, options());
  std::vector<double> x = pattern(B * C * N, 0.3), gy = pattern(B * C * C, 1.1);
  auto out = l.forward({{"X", input(x, {B, C, H, W})}});
  EXPECT_GE(tiledKernels(l.lastForwardLoops(), shape()), 1);
  auto grads = l.backward({{"Y", input(gy, {B, C, C})}});
  EXPECT_GE(tiledKernels(l.lastBackwardLoops(), shape()), 1);

  const double scale = 1.0 / static_cast<double>(C * N);
  std::vector<double> y(B * C * C, 0.0), gx(B * C * N, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t e = 0; e < C; ++e) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) s += x[(b * C + c) * N + n] * x[(b * C + e) * N + n];
        y[(b * C + c) * C + e] = s * scale;
        // dY[c, e] / dX[c, n] = X[e, n] * scale, and / dX[e, n] = X[c, n] * scale.
        for (int64_t n = 0; n < N; ++n) {
          gx[(b * C + c) * N + n] += gy[(b * C + c) * C + e] * x[(b * C + e) * N + n] * scale;
          gx[(b * C + e) * N + n] += gy[(b * C + c) * C + e] * x[(b * C + c) * N + n] * scale;
        }
      }
  EXPECT_LT(errorOf(out.at("Y"), y), tolerance());
  EXPECT_LT(errorOf(grads.at("X"), gx), tolerance());
  return l.lastForwardLoops();
}

// Rows of the factors a multiple of 16 bytes apart along the reduction: on tensor cores each
// copy into shared memory moves 16 bytes (8 16-bit elements, 4 f32 ones), the partial slice
// at the reduction's end included (72 = 2 x 32 + 8). Elsewhere (70 features, 5 x 9 positions)
// one element at a time at most.
TEST_P(GpuTiledContraction, Linear) { EXPECT_LE(widestCopy(checkLinear(130, 70, 140)), 1); }
TEST_P(GpuTiledContraction, LinearWithAlignedRows) {
  if (!shape().tensorCores) GTEST_SKIP() << "FMA tiles hold slices transposed: no wide copies to check";
  EXPECT_EQ(widestCopy(checkLinear(130, 72, 136)), wideCopy());
}
TEST_P(GpuTiledContraction, GramMatrix) { EXPECT_LE(widestCopy(checkGram(2, 130, 5, 9)), 1); }
TEST_P(GpuTiledContraction, GramMatrixWithAlignedRows) {
  if (!shape().tensorCores) GTEST_SKIP() << "FMA tiles hold slices transposed: no wide copies to check";
  EXPECT_EQ(widestCopy(checkGram(2, 130, 9, 8)), wideCopy());
}

TEST_P(GpuTiledContraction, Conv2d) {
  ForcedTile forced(ir::tileShapeName(shape()));
  const int64_t B = 2, Ci = 5, Co = 20, H = 9, W = 11, K = 3;
  Layer l(lib(), "Conv2d",
          {{"in_channels", std::to_string(Ci)}, {"out_channels", std::to_string(Co)}, {"kernel_size", "3"}, {"padding", "1"}},
          options());
  std::vector<double> x = pattern(B * Ci * H * W, 0.2), gy = pattern(B * Co * H * W, 0.9);
  std::vector<double> w = valuesOf(l.params().at("weight")), bias = valuesOf(l.params().at("bias"));
  auto out = l.forward({{"X", input(x, {B, Ci, H, W})}});
  EXPECT_GE(tiledKernels(l.lastForwardLoops(), shape()), 1);
  auto grads = l.backward({{"Y", input(gy, {B, Co, H, W})}});

  std::vector<double> y(B * Co * H * W), gx(x.size(), 0.0), gw(w.size(), 0.0);
  auto X = [&](int64_t b, int64_t c, int64_t h, int64_t v) { return ((b * Ci + c) * H + h) * W + v; };
  auto Wt = [&](int64_t o, int64_t c, int64_t i, int64_t j) { return ((o * Ci + c) * K + i) * K + j; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < Co; ++o)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t v = 0; v < W; ++v) {
          const int64_t at = ((b * Co + o) * H + h) * W + v;
          double s = bias[o];
          for (int64_t c = 0; c < Ci; ++c)
            for (int64_t i = 0; i < K; ++i)
              for (int64_t j = 0; j < K; ++j) {
                int64_t hh = h + i - 1, vv = v + j - 1;
                if (hh < 0 || hh >= H || vv < 0 || vv >= W) continue;
                s += x[X(b, c, hh, vv)] * w[Wt(o, c, i, j)];
                gx[X(b, c, hh, vv)] += gy[at] * w[Wt(o, c, i, j)];
                gw[Wt(o, c, i, j)] += gy[at] * x[X(b, c, hh, vv)];
              }
          y[at] = s;
        }
  EXPECT_LT(errorOf(out.at("Y"), y), tolerance());
  EXPECT_LT(errorOf(grads.at("X"), gx), tolerance());
  EXPECT_LT(errorOf(grads.at("weight"), gw), tolerance());
}

// Every FMA shape in f64; every tensor-core shape with f16 and bf16 storage and in TF32.
std::vector<TileCase> tileCases() {
  std::vector<TileCase> cases;
  for (const ir::TileShape &s : ir::gpuTileShapes())
    if (s.tensorCores)
      cases.insert(cases.end(), {{s, DType::F16}, {s, DType::BF16}, {s, DType::F32}});
    else
      cases.push_back({s, DType::F64});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuTiledContraction, ::testing::ValuesIn(tileCases()),
                         [](const ::testing::TestParamInfo<TileCase> &info) { return caseName(info.param); });

} // namespace
} // namespace enc
