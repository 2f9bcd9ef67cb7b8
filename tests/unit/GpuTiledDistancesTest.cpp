// Sums of a function of one value per row and one per column that is no product (squared
// and absolute distances) run on the GPU's FMA tiles (compiler/GpuTiling.cpp,
// TiledContraction::combine) at every FMA tile shape (forced with ENC_GPU_TILE), against
// naive double loops written here, at sizes that leave partial tiles on every side. A term
// that does not vanish at zero (exp(x - c)) is not tiled and still right. Skipped, with the
// reason, where there is no GPU (the emulated.* run has one).
#include "GpuTileChecks.h"
#include "ReferenceMath.h"
#include "TensorValues.h"

#include "compiler/GpuTiling.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

// Whether the kernel writing `tensor` (named k<N>_<tensor>) is tiled.
bool tiled(const ir::LoopProgram &loops, const std::string &tensor) {
  const std::string suffix = "_" + tensor;
  for (const ir::Kernel &k : loops.kernels)
    if (k.launch == ir::ForKind::GpuTiles && k.name.size() > suffix.size() &&
        k.name.compare(k.name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  return false;
}

class GpuTiledDistances : public ::testing::Test {
protected:
  void SetUp() override {
    if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  }
};

// Encoding's squared distances ||x_i - c_k||^2 (its first kernel) on each FMA tile shape: D
// = 37 terms (no multiple of any slice), K = 20 columns, 2 x 45 rows.
TEST_F(GpuTiledDistances, EncodingOnEveryFmaShape) {
  const int64_t B = 2, D = 37, N = 45, K = 20;
  auto lib = Library::shipped();
  for (const ir::TileShape &shape : ir::tileShapeCandidates(false)) {
    SCOPED_TRACE(ir::tileShapeName(shape));
    ForcedTile forced(ir::tileShapeName(shape));
    Layer l(lib, "Encoding", {{"D", std::to_string(D)}, {"K", std::to_string(K)}},
            LayerOptions{DType::F64, 5, true, true, Device::CUDA});
    std::vector<double> x = pattern(B * D * N, 0.3);
    std::vector<double> c = valuesOf(l.params().at("codewords")), s = valuesOf(l.params().at("scale"));
    Tensor y = l.forward({{"X", tensorOf(x, {B, D, N}).to(Device::CUDA)}}).at("Y");
    EXPECT_TRUE(tiled(l.lastForwardLoops(), "A_sum1")) << "the squared distances are not tiled";
    EXPECT_LT(maxRelError(valuesOf(y), encodingRef(x, c, s, B, D, N, K)), 1e-12);
  }
}

const char *kDistances = R"(
layer L1Distance(K: int, D: int) {
  param centers[K, D] = uniform(-1, 1)
  forward(X: [N, D]) -> Y: [N, K] {
    Y[n, k] = sum(d: abs(X[n, d] - centers[k, d]))
  }
}
layer ExpDistance(K: int, D: int) {
  param centers[K, D] = uniform(-1, 1)
  forward(X: [N, D]) -> Y: [N, K] {
    Y[n, k] = sum(d: exp(X[n, d] - centers[k, d]))
  }
}
)";

// |x - c| vanishes at zero and tiles; exp(x - c) does not (a slice past the reduction's end
// would add exp(0) per missing term) and keeps the warp schedule. Both against loops, with
// the gradient of X (sum over k of dY times the term's derivative).
TEST_F(GpuTiledDistances, AbsoluteDistancesTileAndExpDoesNot) {
  const int64_t N = 70, D = 37, K = 33;
  auto lib = Library::fromSource("distances.enc", kDistances);
  for (const char *name : {"L1Distance", "ExpDistance"}) {
    SCOPED_TRACE(name);
    const bool l1 = std::string(name) == "L1Distance";
    Layer l(lib, name, {{"K", std::to_string(K)}, {"D", std::to_string(D)}},
            LayerOptions{DType::F64, 5, true, true, Device::CUDA});
    std::vector<double> x = pattern(N * D, 0.2), gy = pattern(N * K, 1.1), c = valuesOf(l.params().at("centers"));
    Tensor y = l.forward({{"X", tensorOf(x, {N, D}).to(Device::CUDA)}}).at("Y");
    EXPECT_EQ(tiled(l.lastForwardLoops(), "Y"), l1);
    Tensor gx = l.backward({{"Y", tensorOf(gy, {N, K}).to(Device::CUDA)}}).at("X");
    std::vector<double> want(N * K, 0.0), wantGx(N * D, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t d = 0; d < D; ++d) {
          double v = x[n * D + d] - c[k * D + d];
          want[n * K + k] += l1 ? std::abs(v) : std::exp(v);
          wantGx[n * D + d] += gy[n * K + k] * (l1 ? (v > 0) - (v < 0) : std::exp(v));
        }
    EXPECT_LT(maxRelError(valuesOf(y), want), 1e-12);
    EXPECT_LT(maxRelError(valuesOf(gx), wantGx), 1e-12);
  }
}

} // namespace
} // namespace enc
