// The CPU code generator's f32 exp (compiler/codegen/llvm/LLVMCodegen.cpp, expF32): inline
// arithmetic rather than the vector library, whose expf leaves its fast path for arguments
// below about -87. Checked against std::exp in double rounded to float, across the whole
// range: normal, subnormal and overflowing results, and the special values; then in the
// kernels users hit it in, a softmax and Encoding's assignment weights over logits that span
// far more than 87.
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace enc {
namespace {

const char *kExp = R"(
layer Exp() {
  forward(X: [N]) -> Y: [N] {
    Y[i] = exp(X[i])
  }
}
)";

// Units in the last place between two non-negative floats (subnormals included: their ulp is
// 2^-149, and 0 lies one ulp below the least of them).
int64_t ulpsApart(float a, float b) {
  return std::abs(static_cast<int64_t>(std::bit_cast<uint32_t>(a)) - static_cast<int64_t>(std::bit_cast<uint32_t>(b)));
}

TEST(CpuExp, MatchesCorrectlyRoundedExpAcrossTheRange) {
  auto library = Library::fromSource("exp.enc", kExp);
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs = {-inf, inf, -0.0f, 0.0f, 1e-8f, -1e-8f, -87.33654f, -87.3366f, -103.9720f, -103.9721f,
                           -104.0f, -110.0f, -1e30f, 88.72283f, 88.72284f, 89.0f, 1e30f, 0.34657359f, -0.34657359f};
  // Every 2^-7 from -110 to 95, and random points in between.
  for (float x = -110.0f; x <= 95.0f; x += 0.0078125f) xs.push_back(x);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-105.0f, 90.0f);
  for (int i = 0; i < 20000; ++i) xs.push_back(u(rng));
  const int64_t n = static_cast<int64_t>(xs.size());
  Layer layer(library, "Exp", {}, {DType::F32});
  Tensor x(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) x.set(i, xs[static_cast<size_t>(i)]);
  Tensor y = layer.forward({{"X", x}}).at("Y");
  int64_t worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    float xi = xs[static_cast<size_t>(i)];
    float got = static_cast<float>(y.at(i));
    float want = static_cast<float>(std::exp(static_cast<double>(xi)));
    ASSERT_FALSE(std::isnan(got)) << "exp(" << xi << ")";
    int64_t apart = ulpsApart(got, want);
    worst = std::max(worst, apart);
    ASSERT_LE(apart, 2) << fmt::format("exp({:.9g}) = {:.9g}, want {:.9g}", xi, got, want);
  }
  RecordProperty("worst_ulps", static_cast<int>(worst));
  // The ends exactly: 0 below the subnormals, inf above FLT_MAX.
  for (int64_t i = 0; i < n; ++i) {
    float xi = xs[static_cast<size_t>(i)];
    if (xi <= -104.0f) EXPECT_EQ(y.at(i), 0.0) << "exp(" << xi << ")";
    if (xi >= 88.72284f) EXPECT_EQ(y.at(i), static_cast<double>(inf)) << "exp(" << xi << ")";
  }
}

TEST(CpuExp, NanStaysNan) {
  auto library = Library::fromSource("exp.enc", kExp);
  Layer layer(library, "Exp", {}, {DType::F32});
  Tensor x(DType::F32, {37});
  for (int64_t i = 0; i < 37; ++i) x.set(i, i % 5 == 0 ? std::nan("") : -0.5 * static_cast<double>(i));
  Tensor y = layer.forward({{"X", x}}).at("Y");
  for (int64_t i = 0; i < 37; ++i) {
    if (i % 5 == 0) EXPECT_TRUE(std::isnan(y.at(i))) << i;
    else EXPECT_NEAR(y.at(i), std::exp(-0.5 * static_cast<double>(i)), 1e-6 * std::exp(-0.5 * static_cast<double>(i))) << i;
  }
}

// sigmoid is 1 / (1 + e^-x) with the same exp: 0 to 1 over [-120, 120], no NaN where e^-x
// overflows.
TEST(CpuExp, SigmoidAcrossTheRange) {
  auto library = Library::fromSource("sigmoid.enc", R"(
layer Sigmoid() {
  forward(X: [N]) -> Y: [N] {
    Y[i] = sigmoid(X[i])
  }
}
)");
  Layer layer(library, "Sigmoid", {}, {DType::F32});
  const int64_t n = 4801;
  Tensor x(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) x.set(i, -120.0 + 0.05 * static_cast<double>(i));
  Tensor y = layer.forward({{"X", x}}).at("Y");
  for (int64_t i = 0; i < n; ++i) {
    double want = 1 / (1 + std::exp(-x.at(i)));
    ASSERT_NEAR(y.at(i), want, 1e-6 * want + 1e-37) << "sigmoid(" << x.at(i) << ")";
  }
}

// Softmax over rows whose logits span up to 300: most weights underflow to 0 or to
// subnormals, the rest must still sum to 1 and match double precision.
TEST(CpuExp, SoftmaxOverLogitsSpanningFarBeyondTheSubnormals) {
  Layer layer(Library::shipped(), "Softmax", {}, {DType::F32});
  const int64_t B = 3, C = 203, L = 5;
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-300, 0);
  Tensor x(DType::F32, {B, C, L});
  for (int64_t i = 0; i < x.numel(); ++i) x.set(i, u(rng));
  Tensor y = layer.forward({{"X", x}}).at("Y");
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = 0; l < L; ++l) {
      auto at = [&](int64_t c) { return (b * C + c) * L + l; };
      double m = -1e300, s = 0;
      for (int64_t c = 0; c < C; ++c) m = std::max(m, x.at(at(c)));
      for (int64_t c = 0; c < C; ++c) s += std::exp(x.at(at(c)) - m);
      for (int64_t c = 0; c < C; ++c) {
        double want = std::exp(x.at(at(c)) - m) / s;
        // f32 rounds x - max, up to 300, to 2^-23 of it: that much relative error in e^(x - max).
        ASSERT_NEAR(y.at(at(c)), want, 4e-5 * want + 1e-44) << fmt::format("b {} c {} l {}", b, c, l);
      }
    }
}

// Encoding's assignment weights on unit-variance features: ||x - c||^2 is about D = 128, so
// scale * distance spans about 128 across the codewords. The output against double loops.
TEST(CpuExp, EncodingOnUnitVarianceFeatures) {
  const int64_t B = 2, D = 128, K = 32, N = 67;
  Layer layer(Library::shipped(), "Encoding", {{"D", std::to_string(D)}, {"K", std::to_string(K)}}, {DType::F32});
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0, 1);
  Tensor x(DType::F32, {B, D, N});
  for (int64_t i = 0; i < x.numel(); ++i) x.set(i, normal(rng));
  Tensor y = layer.forward({{"X", x}}).at("Y");
  const Tensor &c = layer.params().at("codewords"), &s = layer.params().at("scale");
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> want(static_cast<size_t>(K * D), 0.0);
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> logit(static_cast<size_t>(K));
      double m = -1e300;
      for (int64_t k = 0; k < K; ++k) {
        double d2 = 0;
        for (int64_t d = 0; d < D; ++d) {
          double r = x.at((b * D + d) * N + i) - c.at(k * D + d);
          d2 += r * r;
        }
        logit[static_cast<size_t>(k)] = s.at(k) * d2;
        m = std::max(m, logit[static_cast<size_t>(k)]);
      }
      double z = 0;
      for (double l : logit) z += std::exp(l - m);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t d = 0; d < D; ++d)
          want[static_cast<size_t>(k * D + d)] +=
              std::exp(logit[static_cast<size_t>(k)] - m) / z * (x.at((b * D + d) * N + i) - c.at(k * D + d));
    }
    for (int64_t k = 0; k < K; ++k)
      for (int64_t d = 0; d < D; ++d) {
        double w = want[static_cast<size_t>(k * D + d)];
        ASSERT_NEAR(y.at((b * K + k) * D + d), w, 2e-3 * (1 + std::abs(w))) << fmt::format("b {} k {} d {}", b, k, d);
      }
  }
}

} // namespace
} // namespace enc
