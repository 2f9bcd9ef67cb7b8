// Max and min along a contiguous row on the CPU (LowerToLoops' maxAcrossLanes): 16 lanes, an
// overlapping last vector where 16 does not divide the row, then the max of the lanes. The
// values equal loops in double precision at row lengths with and without a tail, for rows in
// the middle of a tensor, and a NaN in a row is skipped as max and min skip it elsewhere
// (maxnum/minnum); with 16-bit storage too.
#include "compiler/LoopIR.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include "LoweredLoops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

namespace enc {
namespace {

const char *kRows = R"(
layer Columns() {
  forward(X: [B, C, N]) -> Y: [B] {
    Y[b] = max(n < N, c < C: X[b, c, n])
  }
}
layer Rows() {
  forward(X: [B, C, N]) -> Y: [B, C] {
    Y[b, c] = max(n: X[b, c, n] * 2) - min(n: X[b, c, n]) + max(e < C, n: X[b, e, n] + c)
  }
}
)";

// Whether some kernel of the CPU forward pass reduces across 16 lanes (a `_lanes` array).
bool usesLanes(const Layer &layer, int64_t B, int64_t C, int64_t N) {
  ir::LoopProgram p = testing::lowered(layer.program(), {{"B", ir::intImm(B)}, {"C", ir::intImm(C)}, {"N", ir::intImm(N)}});
  return ir::printLoops(p).find("_lanes") != std::string::npos;
}

TEST(LaneReductions, MaxAndMinAlongRowsEqualLoops) {
  auto library = Library::fromSource("rows.enc", kRows);
  std::mt19937_64 rng(13);
  std::uniform_real_distribution<double> u(-100, 100);
  const int64_t B = 3, C = 5;
  for (int64_t N : {32, 37, 48, 1000, 7}) {
    for (DType dtype : {DType::F64, DType::F32, DType::BF16}) {
      SCOPED_TRACE("N = " + std::to_string(N) + " " + dtypeName(dtype));
      Layer layer(library, "Rows", {}, {dtype});
      EXPECT_EQ(usesLanes(layer, B, C, N), N >= 32);
      Tensor x(dtype, {B, C, N});
      for (int64_t i = 0; i < x.numel(); ++i) x.set(i, u(rng));
      // Extremes at the first, the last and a tail position; a NaN in one row.
      x.set(0, 1000);
      x.set(N - 1, -1000);
      x.set((1 * C + 2) * N + N - 3, 999);
      x.set((2 * C + 4) * N + N / 2, std::numeric_limits<double>::quiet_NaN());
      Tensor y = layer.forward({{"X", x}}).at("Y");
      auto at = [&](int64_t b, int64_t c, int64_t n) { return x.at((b * C + c) * N + n); };
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c) {
          double mx = -INFINITY, mn = INFINITY, all = -INFINITY;
          for (int64_t n = 0; n < N; ++n) {
            if (!std::isnan(at(b, c, n))) mx = std::max(mx, at(b, c, n) * 2), mn = std::min(mn, at(b, c, n));
            for (int64_t e = 0; e < C; ++e)
              if (!std::isnan(at(b, e, n))) all = std::max(all, at(b, e, n) + static_cast<double>(c));
          }
          double want = mx - mn + all;
          ASSERT_NEAR(y.at(b * C + c), want, (dtype == DType::F64 ? 1e-12 : dtype == DType::F32 ? 1e-4 : 8e-3) * (1 + std::abs(want)))
              << "at " << b << ", " << c;
        }
    }
  }
}

// A max whose innermost reduction index is strided (c, N apart) keeps its loops.
TEST(LaneReductions, StridedReductionsStayLoops) {
  Layer layer(Library::fromSource("rows.enc", kRows), "Columns", {}, {});
  EXPECT_FALSE(usesLanes(layer, 2, 64, 40));
}

} // namespace
} // namespace enc
