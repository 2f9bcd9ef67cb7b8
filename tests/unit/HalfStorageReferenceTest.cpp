// 16-bit storage against naive double loops (ReferenceMath.h): Encoding in bf16, and a scatter
// gradient and a long contraction accumulated in f32 and rounded once, within half a unit in the last
// place (see HalfStorageTest.cpp).
#include "LayerCases.h"
#include "Fold64Layer.h"
#include "ReferenceMath.h"
#include "TensorValues.h"

#include "compiler/Autodiff.h"
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "runtime/Float16.h"
#include "compiler/HyperParams.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

namespace enc {
namespace {

using namespace enc::testing;

// Half a unit in the last place of `t` at the magnitude of v.
double halfUlp(double v, DType t) {
  int significand = t == DType::F16 ? 11 : 8;
  int minExponent = t == DType::F16 ? -14 : -126;
  int e = v == 0 ? minExponent : std::max(minExponent, std::ilogb(v));
  return std::ldexp(1.0, e - significand);
}

// Encoding with bf16 inputs and output against the naive double loops.
TEST(HalfStorageReference, EncodingAgainstNaiveLoops) {
  const int64_t B = 2, D = 12, K = 6, N = 70;
  Layer enc(lib(), "Encoding", {{"D", "12"}, {"K", "6"}}, LayerOptions{DType::BF16, 3, true, true, Device::CPU});
  Tensor x = randomTensor({B, D, N}, 1).to(DType::BF16);
  std::vector<double> want = encodingRef(valuesOf(x), valuesOf(enc.params().at("codewords")),
                                         valuesOf(enc.params().at("scale")), B, D, N, K);
  Tensor e = enc.forward({{"X", x}}).at("Y");
  ASSERT_EQ(e.dtype(), DType::BF16);
  ASSERT_EQ(e.numel(), static_cast<int64_t>(want.size()));
  for (int64_t i = 0; i < e.numel(); ++i) {
    double w = want[static_cast<size_t>(i)];
    // The stored result is the f32 sum rounded once to bf16.
    EXPECT_LE(std::abs(e.at(i) - w), halfUlp(w, DType::BF16) + 1e-4 * std::abs(w) + 1e-6) << "element " << i;
  }
}

// A scatter gradient (Y[i] = X[3 i mod N]^2 over 64 N outputs, N prime to 3: each grad_X
// element gathers 64 contributions through a map autodiff cannot invert) and a long contraction
// (GramMatrix over 4096 positions) are accumulated in f32 and rounded once: within half a unit
// in the last place of the naive double result (plus f32 summation error). Summing in the
// 16-bit type would be off by many units.

TEST(HalfStorageReference, ScatterAccumulatesInF32) {
  auto library = Library::fromSource("fold.enc", kFold);
  for (DType dtype : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtypeName(dtype));
    Layer layer(library, "Fold64", {}, LayerOptions{dtype, 0, true, true, Device::CPU});
    bool scatter = false;
    for (const ir::Definition &d : layer.gradientProgram().defs) scatter |= d.isScatter();
    ASSERT_TRUE(scatter) << ir::printProgram(layer.gradientProgram());
    const int64_t n = 301;
    Tensor x = randomTensor({n}, 5).to(dtype), g = randomTensor({64 * n}, 6).to(dtype);
    layer.forward({{"X", x}});
    Tensor gx = layer.backward({{"Y", g}}).at("X");
    ASSERT_EQ(gx.dtype(), dtype);
    std::vector<double> sum(static_cast<size_t>(n), 0.0), magnitude(static_cast<size_t>(n), 0.0);
    for (int64_t i = 0; i < 64 * n; ++i) {
      auto k = static_cast<size_t>(i * 3 % n);
      sum[k] += g.at(i);
      magnitude[k] += std::abs(g.at(i));
    }
    for (int64_t j = 0; j < n; ++j) {
      double want = 2 * x.at(j) * sum[static_cast<size_t>(j)];
      EXPECT_LE(std::abs(gx.at(j) - want), halfUlp(want, dtype) + 1e-6 * magnitude[static_cast<size_t>(j)])
          << "element " << j;
    }
  }
}

// [1, 3, 64, 64]: 4096 terms per output; [2, 13, 16, 16]: the symmetric tiles (3 blocks of 4
// channels and one more, each off-diagonal output stored twice).
TEST(HalfStorageReference, LongContractionAccumulatesInF32) {
  for (Shape shape : std::vector<Shape>{{1, 3, 64, 64}, {2, 13, 16, 16}})
  for (DType dtype : {DType::F16, DType::BF16}) {
    const int64_t B = shape[0], C = shape[1], L = shape[2] * shape[3];
    SCOPED_TRACE(dtypeName(dtype));
    Layer gram(lib(), "GramMatrix", {}, LayerOptions{dtype, 0, true, true, Device::CPU});
    Tensor x = randomTensor(shape, 8).to(dtype);
    Tensor y = gram.forward({{"X", x}}).at("Y");
    ASSERT_EQ(y.dtype(), dtype);
    ASSERT_EQ(y.numel(), B * C * C);
    for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) {
        double dot = 0, magnitude = 0;
        for (int64_t l = 0; l < L; ++l) {
          double p = x.at((b * C + i) * L + l) * x.at((b * C + j) * L + l);
          dot += p;
          magnitude += std::abs(p);
        }
        double want = dot / static_cast<double>(C * L);
        double slack = 1e-6 * magnitude / static_cast<double>(C * L);
        EXPECT_LE(std::abs(y.at((b * C + i) * C + j) - want), halfUlp(want, dtype) + slack) << b << ", " << i << ", " << j;
      }
  }
}

} // namespace
} // namespace enc
