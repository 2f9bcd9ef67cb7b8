// 16-bit storage: the CPU kernels convert to and from f16 and bf16 exactly as runtime/Float16 rounds.
#include "LayerCases.h"
#include "ReferenceMath.h"

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

// The CPU kernels' own conversions, bit for bit, against runtime/Float16 (checked against
// reference rounding by Float16Test): Y = P + X with P an f32 parameter. With X = 0 the store
// rounds P to 16 bits; with P = -0 every 16-bit input must come back unchanged.
const char *kCast = R"(
layer Cast(n: int) {
  param P[n] = zeros
  forward(X: [n]) -> Y: [n] {
    Y[i] = P[i] + X[i]
  }
}
)";

std::vector<float> narrowingCases(DType dtype) {
  auto decode = [&](uint16_t bits) { return dtype == DType::F16 ? halfBitsToFloat(bits) : bfloat16BitsToFloat(bits); };
  std::vector<float> out;
  for (uint32_t b = 0; b < 0xffff; ++b) {
    float lo = decode(static_cast<uint16_t>(b)), hi = decode(static_cast<uint16_t>(b + 1));
    out.push_back(lo);
    if (!std::isfinite(lo) || !std::isfinite(hi) || std::signbit(lo) != std::signbit(hi)) continue;
    auto mid = static_cast<float>((static_cast<double>(lo) + hi) / 2); // exact in f32: a tie
    out.push_back(mid);
    out.push_back(std::nextafter(mid, 0.0f));
    out.push_back(std::nextafter(mid, INFINITY));
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 100000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    out.push_back(f);
  }
  for (float f : {65504.0f, 65519.99f, 65520.0f, 1e30f, -1e30f, 3.4e38f, 1e-8f, 2.9802322e-08f, 1e-30f, 1e-45f, INFINITY,
                  -INFINITY, NAN})
    out.push_back(f);
  return out;
}

TEST(HalfStorageCpuKernels, ConvertExactlyAsReferenceRounding) {
  auto library = Library::fromSource("cast.enc", kCast);
  for (DType dtype : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtypeName(dtype));
    auto encode = [&](float f) { return dtype == DType::F16 ? floatToHalfBits(f) : floatToBFloat16Bits(f); };
    // Narrowing: f32 parameter values rounded by the kernel's store.
    std::vector<float> values = narrowingCases(dtype);
    auto n = static_cast<int64_t>(values.size());
    Layer narrowing(library, "Cast", {{"n", std::to_string(n)}}, LayerOptions{dtype, 0, true, true, Device::CPU});
    Tensor p(DType::F32, {n});
    for (int64_t i = 0; i < n; ++i) p.dataAs<float>()[i] = values[static_cast<size_t>(i)];
    narrowing.setParam("P", p);
    Tensor y = narrowing.forward({{"X", Tensor(dtype, {n})}}).at("Y");
    ASSERT_EQ(y.dtype(), dtype);
    int wrong = 0;
    for (int64_t i = 0; i < n && wrong < 10; ++i) {
      float v = values[static_cast<size_t>(i)];
      uint16_t got = y.dataAs<uint16_t>()[i], want = encode(v + 0.0f);
      bool ok = std::isnan(v) ? std::isnan(y.at(i)) : got == want;
      if (!ok) ++wrong;
      EXPECT_TRUE(ok) << "rounding " << v << " (" << std::hexfloat << v << std::defaultfloat << "): got 0x" << std::hex
                      << got << ", want 0x" << want;
    }
    // Widening: every bit pattern through the kernel's load and store unchanged.
    Layer widening(library, "Cast", {{"n", "65536"}}, LayerOptions{dtype, 0, true, true, Device::CPU});
    Tensor minusZero(DType::F32, {65536});
    for (int64_t i = 0; i < 65536; ++i) minusZero.dataAs<float>()[i] = -0.0f;
    widening.setParam("P", minusZero);
    Tensor x(dtype, {65536});
    for (int64_t i = 0; i < 65536; ++i) x.dataAs<uint16_t>()[i] = static_cast<uint16_t>(i);
    Tensor back = widening.forward({{"X", x}}).at("Y");
    wrong = 0;
    for (int64_t i = 0; i < 65536 && wrong < 10; ++i) {
      bool ok = std::isnan(x.at(i)) ? std::isnan(back.at(i)) : back.dataAs<uint16_t>()[i] == static_cast<uint16_t>(i);
      if (!ok) ++wrong;
      EXPECT_TRUE(ok) << "bits 0x" << std::hex << i << " came back as 0x" << back.dataAs<uint16_t>()[i];
    }
  }
}

} // namespace
} // namespace enc
