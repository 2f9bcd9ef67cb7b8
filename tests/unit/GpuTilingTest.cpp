// The GPU's tiled contraction (compiler/GpuTiling.cpp), for every tile shape it chooses from
// (forced with ENC_GPU_TILE), against naive double loops written here: Linear, GramMatrix and
// Conv2d forward and backward at sizes that leave partial tiles on every side (rows, columns
// and reduction not multiples of the tile). Also checks that the kernels were tiled with the
// forced shape. Skipped, with the reason, where there is no GPU (the emulated.* run has one).
#include "TensorValues.h"

#include "compiler/GpuTiling.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/Error.h"

#include <gtest/gtest.h>

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

std::shared_ptr<const Library> lib() {
  static auto l = Library::shipped();
  return l;
}

std::vector<double> pattern(size_t n, double phase) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + phase);
  return v;
}

// Sets ENC_GPU_TILE for the scope of one test.
class ForcedTile {
public:
  explicit ForcedTile(const std::string &shape) { setenv("ENC_GPU_TILE", shape.c_str(), 1); }
  ~ForcedTile() { unsetenv("ENC_GPU_TILE"); }
};

// Tiled kernels of the loops, each checked to use `shape` (its shared arrays' sizes).
int tiledKernels(const ir::LoopProgram &loops, const ir::TileShape &shape) {
  int n = 0;
  for (const ir::Kernel &k : loops.kernels) {
    if (k.launch != ir::ForKind::GpuTiles) continue;
    ++n;
    bool sized = false;
    ir::visit(k.body, [&](const ir::Stmt &s) {
      int64_t size = 0;
      if (s->kind == ir::StmtKind::Alloc && s->shared && s->name == "_as" && ir::isConst(s->value, &size))
        sized = size == int64_t{shape.red} * (shape.rows + 1);
      return true;
    });
    EXPECT_TRUE(sized) << k.name << " is not tiled " << ir::tileShapeName(shape);
  }
  return n;
}

class GpuTiledContraction : public ::testing::TestWithParam<ir::TileShape> {
protected:
  void SetUp() override {
    if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  }
  LayerOptions options() const { return LayerOptions{DType::F64, 5, true, true, Device::CUDA}; }
  static constexpr double kTolerance = 1e-11;
};

TEST_P(GpuTiledContraction, Linear) {
  ForcedTile forced(ir::tileShapeName(GetParam()));
  const int64_t B = 130, I = 70, O = 140;
  Layer l(lib(), "Linear", {{"in_features", std::to_string(I)}, {"out_features", std::to_string(O)}}, options());
  std::vector<double> x = pattern(B * I, 0.1), gy = pattern(B * O, 0.7);
  std::vector<double> w = valuesOf(l.params().at("weight")), bias = valuesOf(l.params().at("bias"));
  auto out = l.forward({{"X", tensorOf(x, {B, I}).to(Device::CUDA)}});
  EXPECT_GE(tiledKernels(l.lastForwardLoops(), GetParam()), 1);
  auto grads = l.backward({{"Y", tensorOf(gy, {B, O}).to(Device::CUDA)}});
  EXPECT_GE(tiledKernels(l.lastBackwardLoops(), GetParam()), 2);

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
  EXPECT_LT(maxRelError(valuesOf(out.at("Y")), y), kTolerance);
  EXPECT_LT(maxRelError(valuesOf(grads.at("X")), gx), kTolerance);
  EXPECT_LT(maxRelError(valuesOf(grads.at("weight")), gw), kTolerance);
  EXPECT_LT(maxRelError(valuesOf(grads.at("bias")), gb), kTolerance);
}

TEST_P(GpuTiledContraction, GramMatrix) {
  ForcedTile forced(ir::tileShapeName(GetParam()));
  const int64_t B = 2, C = 130, N = 5 * 9;
  Layer l(lib(), "GramMatrix", {}, options());
  std::vector<double> x = pattern(B * C * N, 0.3), gy = pattern(B * C * C, 1.1);
  auto out = l.forward({{"X", tensorOf(x, {B, C, 5, 9}).to(Device::CUDA)}});
  EXPECT_GE(tiledKernels(l.lastForwardLoops(), GetParam()), 1);
  auto grads = l.backward({{"Y", tensorOf(gy, {B, C, C}).to(Device::CUDA)}});
  EXPECT_GE(tiledKernels(l.lastBackwardLoops(), GetParam()), 1);

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
  EXPECT_LT(maxRelError(valuesOf(out.at("Y")), y), kTolerance);
  EXPECT_LT(maxRelError(valuesOf(grads.at("X")), gx), kTolerance);
}

TEST_P(GpuTiledContraction, Conv2d) {
  ForcedTile forced(ir::tileShapeName(GetParam()));
  const int64_t B = 2, Ci = 5, Co = 20, H = 9, W = 11, K = 3;
  Layer l(lib(), "Conv2d",
          {{"in_channels", std::to_string(Ci)}, {"out_channels", std::to_string(Co)}, {"kernel_size", "3"}, {"padding", "1"}},
          options());
  std::vector<double> x = pattern(B * Ci * H * W, 0.2), gy = pattern(B * Co * H * W, 0.9);
  std::vector<double> w = valuesOf(l.params().at("weight")), bias = valuesOf(l.params().at("bias"));
  auto out = l.forward({{"X", tensorOf(x, {B, Ci, H, W}).to(Device::CUDA)}});
  EXPECT_GE(tiledKernels(l.lastForwardLoops(), GetParam()), 1);
  auto grads = l.backward({{"Y", tensorOf(gy, {B, Co, H, W}).to(Device::CUDA)}});

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
  EXPECT_LT(maxRelError(valuesOf(out.at("Y")), y), kTolerance);
  EXPECT_LT(maxRelError(valuesOf(grads.at("X")), gx), kTolerance);
  EXPECT_LT(maxRelError(valuesOf(grads.at("weight")), gw), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuTiledContraction, ::testing::ValuesIn(ir::gpuTileShapes()),
                         [](const ::testing::TestParamInfo<ir::TileShape> &info) {
                           return "Tile" + ir::tileShapeName(info.param);
                         });

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
