// The f16/bf16 conversions in runtime/Float16.h and the F16/BF16 tensor dtypes, checked against reference
// arithmetic written here in double (ldexp/frexp/nearbyint), never against the code under test.
#include "runtime/Float16.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <bit>
#include <cfenv>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace enc;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A binary floating-point format: `p` significand bits (with the implicit one), smallest normal exponent
// `emin`, exponent field `expBits` wide.
struct Format {
  const char *name;
  int p;
  int emin;
  int expBits;
  double maxFinite() const { return std::ldexp(2.0 - std::ldexp(1.0, 1 - p), -emin + 1); }
};
constexpr Format kHalf{"f16", 11, -14, 5};
constexpr Format kBF16{"bf16", 8, -126, 8};
constexpr Format kF32{"f32", 24, -126, 8};

// Decodes a 16-bit pattern from its sign, exponent and mantissa fields.
double referenceDecode(const Format &f, uint16_t bits) {
  int mantBits = f.p - 1;
  int expMax = (1 << f.expBits) - 1;
  int bias = expMax / 2;
  bool negative = (bits >> 15) & 1;
  int exp = (bits >> mantBits) & expMax;
  int mant = bits & ((1 << mantBits) - 1);
  double magnitude;
  if (exp == expMax)
    magnitude = mant == 0 ? kInf : std::numeric_limits<double>::quiet_NaN();
  else if (exp == 0)
    magnitude = std::ldexp(mant, f.emin - mantBits);
  else
    magnitude = std::ldexp(mant + (1 << mantBits), exp - bias - mantBits);
  return negative ? -magnitude : magnitude;
}

// Rounds `x` to the format: to nearest, ties to even (nearbyint in the default rounding mode), with a
// fixed quantum below the smallest normal exponent (subnormals) and overflow to infinity.
double referenceRound(const Format &f, double x) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  int e = 0;
  std::frexp(std::fabs(x), &e); // |x| = m * 2^e, m in [0.5, 1): the leading bit has exponent e - 1
  int quantum = std::max(e - 1, f.emin) - (f.p - 1);
  double r = std::ldexp(std::nearbyint(std::ldexp(std::fabs(x), -quantum)), quantum);
  if (r > f.maxFinite()) r = kInf;
  return std::copysign(r, x);
}

// Same value, or both NaN; zeros must agree in sign.
bool sameValue(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

float floatOf(uint32_t bits) { return std::bit_cast<float>(bits); }

// Every representable value of `f` (both signs), the midpoints between neighbours (the ties), and the
// floats just either side of each midpoint.
std::vector<float> tieCases(const Format &f) {
  std::vector<float> out;
  int maxPositive = ((1 << f.expBits) - 1) << (f.p - 1); // the pattern of +inf
  for (int bits = 0; bits < maxPositive; ++bits) {
    double lo = referenceDecode(f, static_cast<uint16_t>(bits));
    // Above the largest finite value, the next value with an unbounded exponent is 2^(emax + 1).
    double hi = bits + 1 == maxPositive ? std::ldexp(1.0, 1 - f.emin + 1)
                                        : referenceDecode(f, static_cast<uint16_t>(bits + 1));
    auto mid = static_cast<float>((lo + hi) / 2);
    EXPECT_EQ(static_cast<double>(mid), (lo + hi) / 2) << "midpoints must be exact floats";
    for (float v : {static_cast<float>(lo), mid, std::nextafter(mid, -INFINITY), std::nextafter(mid, INFINITY)}) {
      out.push_back(v);
      out.push_back(-v);
    }
  }
  return out;
}

std::vector<float> specialCases() {
  using L = std::numeric_limits<float>;
  std::vector<float> out = {0.0f,
                            L::infinity(),
                            L::quiet_NaN(),
                            L::signaling_NaN(),
                            floatOf(0x7f800001),
                            floatOf(0x7fc00000),
                            floatOf(0x7f80ffff),
                            L::max(),
                            L::min(),
                            L::denorm_min(),
                            floatOf(0x00000002),
                            floatOf(0x007fffff),
                            std::ldexp(1.0f, -24),
                            std::ldexp(1.0f, -25),
                            std::nextafter(std::ldexp(1.0f, -25), 1.0f),
                            std::nextafter(std::ldexp(1.0f, -25), 0.0f),
                            std::ldexp(1.5f, -25),
                            std::ldexp(1.0f, -26),
                            std::ldexp(1.0f, -14),
                            std::nextafter(std::ldexp(1.0f, -14), 0.0f),
                            65504.0f,
                            65519.0f,
                            std::nextafter(65520.0f, 0.0f),
                            65520.0f,
                            65536.0f,
                            1e10f,
                            1.0f,
                            1.0f / 3,
                            3.14159265f,
                            floatOf(0x7f7f8000),
                            floatOf(0x7f7f7fff)};
  size_t n = out.size();
  for (size_t i = 0; i < n; ++i) out.push_back(-out[i]);
  return out;
}

std::vector<float> randomFloats(size_t n) {
  std::mt19937 rng(20240611);
  std::vector<float> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(floatOf(static_cast<uint32_t>(rng()))); // every exponent
  return out;
}

// Encodes each input and checks the decoded result (via the reference decoder) and the NaN bits.
template <typename Encode>
void checkEncoder(const Format &f, Encode encode, const std::vector<float> &inputs, uint16_t quietBit) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  int failures = 0;
  for (float x : inputs) {
    uint16_t bits = encode(x);
    double got = referenceDecode(f, bits);
    double want = referenceRound(f, static_cast<double>(x));
    if (!sameValue(got, want) && ++failures <= 10)
      ADD_FAILURE() << f.name << ": x = " << std::hexfloat << x << " (bits 0x" << std::hex
                    << std::bit_cast<uint32_t>(x) << ") encodes to 0x" << bits << " = " << got << ", want "
                    << want;
    if (std::isnan(x)) {
      EXPECT_TRUE(bits & quietBit) << f.name << ": NaN must become a quiet NaN, got 0x" << std::hex << bits;
      EXPECT_EQ(bits >> 15, std::signbit(x) ? 1 : 0) << f.name << ": NaN keeps its sign";
    }
  }
  EXPECT_EQ(failures, 0) << f.name << ": " << failures << " of " << inputs.size() << " inputs misrounded";
}

const DType kAllDTypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16};

// The value `x` becomes when stored in `t`.
double referenceStore(DType t, double x) {
  switch (t) {
  case DType::F64: return x;
  case DType::F32: return referenceRound(kF32, x);
  case DType::F16: return referenceRound(kHalf, x);
  case DType::BF16: return referenceRound(kBF16, x);
  }
  return 0;
}

} // namespace

// --- The formats' reference definitions themselves, on a few known constants ---

TEST(Float16, ReferenceModelMatchesKnownConstants) {
  EXPECT_EQ(kHalf.maxFinite(), 65504.0);
  EXPECT_EQ(kBF16.maxFinite(), static_cast<double>(std::numeric_limits<float>::max()) - std::ldexp(1.0, 104) *
                                                                                            (std::ldexp(1.0, 16) - 1));
  EXPECT_EQ(kF32.maxFinite(), static_cast<double>(std::numeric_limits<float>::max()));
  EXPECT_EQ(referenceDecode(kHalf, 0x3c00), 1.0);
  EXPECT_EQ(referenceDecode(kHalf, 0x0001), std::ldexp(1.0, -24));
  EXPECT_EQ(referenceDecode(kHalf, 0x7bff), 65504.0);
  EXPECT_EQ(referenceDecode(kBF16, 0x3f80), 1.0);
  EXPECT_EQ(referenceDecode(kBF16, 0x0001), std::ldexp(1.0, -133));
  EXPECT_EQ(referenceRound(kHalf, 65519.0), 65504.0);
  EXPECT_EQ(referenceRound(kHalf, 65520.0), kInf);
  EXPECT_EQ(referenceRound(kHalf, std::ldexp(1.0, -25)), 0.0);
  EXPECT_EQ(referenceRound(kHalf, std::ldexp(3.0, -26)), std::ldexp(1.0, -24));
}

// --- Exact bit patterns, independent of the reference code ---

TEST(Float16, EncodesKnownBitPatterns) {
  EXPECT_EQ(floatToHalfBits(1.0f), 0x3c00);
  EXPECT_EQ(floatToHalfBits(-2.0f), 0xc000);
  EXPECT_EQ(floatToHalfBits(1.0f / 3), 0x3555);
  EXPECT_EQ(floatToHalfBits(65504.0f), 0x7bff);
  EXPECT_EQ(floatToHalfBits(65519.0f), 0x7bff);
  EXPECT_EQ(floatToHalfBits(65520.0f), 0x7c00);
  EXPECT_EQ(floatToHalfBits(-0.0f), 0x8000);
  EXPECT_EQ(floatToHalfBits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(floatToHalfBits(std::ldexp(1.0f, -25)), 0x0000);                           // tie to even: 0
  EXPECT_EQ(floatToHalfBits(std::ldexp(3.0f, -25)), 0x0002);                           // tie to even: 2
  EXPECT_EQ(floatToHalfBits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);     // just above the tie
  EXPECT_EQ(floatToHalfBits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);                    // tie to even: down
  EXPECT_EQ(floatToHalfBits(1.0f + std::ldexp(3.0f, -11)), 0x3c02);                    // tie to even: up
  EXPECT_EQ(floatToHalfBits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(floatToHalfBits(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(floatToHalfBits(-std::numeric_limits<float>::denorm_min()), 0x8000);
  EXPECT_EQ(floatToHalfBits(std::bit_cast<float>(0x7fc00000u)) & 0xfe00, 0x7e00);
  EXPECT_EQ(floatToHalfBits(std::bit_cast<float>(0xffc00000u)) & 0xfe00, 0xfe00);
  EXPECT_EQ(floatToBFloat16Bits(1.0f), 0x3f80);
  EXPECT_EQ(floatToBFloat16Bits(3.14159265f), 0x4049);
  EXPECT_EQ(floatToBFloat16Bits(-0.0f), 0x8000);
  EXPECT_EQ(floatToBFloat16Bits(std::bit_cast<float>(0x3f808000u)), 0x3f80); // tie to even: down
  EXPECT_EQ(floatToBFloat16Bits(std::bit_cast<float>(0x3f818000u)), 0x3f82); // tie to even: up
  EXPECT_EQ(floatToBFloat16Bits(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(floatToBFloat16Bits(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(floatToBFloat16Bits(-std::numeric_limits<float>::infinity()), 0xff80);
  // A NaN whose payload lies only in the low 16 bits must not truncate to infinity.
  uint16_t nan = floatToBFloat16Bits(std::bit_cast<float>(0x7f800001u));
  EXPECT_EQ(nan & 0xffc0, 0x7fc0);
  EXPECT_EQ(floatToBFloat16Bits(std::bit_cast<float>(0xff800001u)) & 0xffc0, 0xffc0);
}

TEST(Float16, DecodesKnownBitPatterns) {
  EXPECT_EQ(halfBitsToFloat(0x3c00), 1.0f);
  EXPECT_EQ(halfBitsToFloat(0xc000), -2.0f);
  EXPECT_EQ(halfBitsToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(halfBitsToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(halfBitsToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(halfBitsToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::signbit(halfBitsToFloat(0x8000)));
  EXPECT_TRUE(std::isnan(halfBitsToFloat(0x7c01)));
  EXPECT_EQ(bfloat16BitsToFloat(0x3f80), 1.0f);
  EXPECT_EQ(bfloat16BitsToFloat(0x0001), std::ldexp(1.0f, -133));
  EXPECT_EQ(bfloat16BitsToFloat(0xff80), -std::numeric_limits<float>::infinity());
}

// --- Exhaustive and randomized comparison with the reference ---

TEST(Float16, DecodesAllBitPatternsLikeTheReference) {
  for (uint32_t i = 0; i < 65536; ++i) {
    auto bits = static_cast<uint16_t>(i);
    double half = halfBitsToFloat(bits), bf16 = bfloat16BitsToFloat(bits);
    ASSERT_TRUE(sameValue(half, referenceDecode(kHalf, bits)))
        << std::hex << "f16 0x" << i << ": " << std::hexfloat << half << " vs " << referenceDecode(kHalf, bits);
    ASSERT_TRUE(sameValue(bf16, referenceDecode(kBF16, bits)))
        << std::hex << "bf16 0x" << i << ": " << std::hexfloat << bf16 << " vs " << referenceDecode(kBF16, bits);
  }
}

TEST(Float16, HalfEncodesValuesAndTiesLikeTheReference) {
  checkEncoder(kHalf, floatToHalfBits, tieCases(kHalf), 0x0200);
  checkEncoder(kHalf, floatToHalfBits, tieCases(kBF16), 0x0200); // also many values far out of f16's range
  checkEncoder(kHalf, floatToHalfBits, specialCases(), 0x0200);
}

TEST(Float16, BFloat16EncodesValuesAndTiesLikeTheReference) {
  checkEncoder(kBF16, floatToBFloat16Bits, tieCases(kBF16), 0x0040);
  checkEncoder(kBF16, floatToBFloat16Bits, tieCases(kHalf), 0x0040);
  checkEncoder(kBF16, floatToBFloat16Bits, specialCases(), 0x0040);
}

TEST(Float16, EncodesRandomFloatsLikeTheReference) {
  std::vector<float> inputs = randomFloats(1'000'000);
  checkEncoder(kHalf, floatToHalfBits, inputs, 0x0200);
  checkEncoder(kBF16, floatToBFloat16Bits, inputs, 0x0040);
  // Uniform bit patterns rarely land in f16's range; add values spread over it, subnormals included.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> exponent(-27, 17);
  std::vector<float> near;
  for (int i = 0; i < 200'000; ++i) {
    auto x = static_cast<float>(std::exp2(exponent(rng)));
    near.push_back(i % 2 ? -x : x);
  }
  checkEncoder(kHalf, floatToHalfBits, near, 0x0200);
}

TEST(Float16, DoubleInputsAreRoundedOnce) {
  // Just above a tie: rounding to float first would land on the tie and then round to even (down).
  double aboveHalfTie = 1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  EXPECT_EQ(doubleToHalfBits(aboveHalfTie), 0x3c01);
  EXPECT_EQ(doubleToHalfBits(-aboveHalfTie), 0xbc01);
  double aboveBF16Tie = 1 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  EXPECT_EQ(doubleToBFloat16Bits(aboveBF16Tie), 0x3f81);
  EXPECT_EQ(doubleToHalfBits(1e300), 0x7c00);
  EXPECT_EQ(doubleToBFloat16Bits(-1e300), 0xff80);
  EXPECT_EQ(doubleToHalfBits(1e-300), 0x0000);
  EXPECT_EQ(doubleToBFloat16Bits(-1e-300), 0x8000);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> exponent(-140, 130);
  int failures = 0;
  for (int i = 0; i < 300'000; ++i) {
    double x = std::exp2(exponent(rng)) * (i % 2 ? -1 : 1);
    failures += !sameValue(referenceDecode(kHalf, doubleToHalfBits(x)), referenceRound(kHalf, x));
    failures += !sameValue(referenceDecode(kBF16, doubleToBFloat16Bits(x)), referenceRound(kBF16, x));
  }
  EXPECT_EQ(failures, 0);
}

// --- Tensors of the new dtypes ---

TEST(Float16, DTypeNamesAndSizes) {
  EXPECT_EQ(dtypeSize(DType::F16), 2u);
  EXPECT_EQ(dtypeSize(DType::BF16), 2u);
  EXPECT_EQ(dtypeSize(DType::F32), 4u);
  EXPECT_EQ(dtypeSize(DType::F64), 8u);
  EXPECT_STREQ(dtypeName(DType::F16), "f16");
  EXPECT_STREQ(dtypeName(DType::BF16), "bf16");
  EXPECT_STREQ(dtypeName(DType::F32), "f32");
  EXPECT_STREQ(dtypeName(DType::F64), "f64");
  for (const char *name : {"f16", "float16", "half"}) EXPECT_EQ(parseDType(name), DType::F16) << name;
  for (const char *name : {"bf16", "bfloat16"}) EXPECT_EQ(parseDType(name), DType::BF16) << name;
  EXPECT_EQ(parseDType("f32"), DType::F32);
  EXPECT_EQ(parseDType("double"), DType::F64);
  for (const char *name : {"F16", "fp16", "bf", "b16", "", "float8"}) EXPECT_FALSE(parseDType(name)) << name;
  for (DType t : kAllDTypes) EXPECT_EQ(parseDType(dtypeName(t)), t);
  EXPECT_TRUE(isHalfPrecision(DType::F16));
  EXPECT_TRUE(isHalfPrecision(DType::BF16));
  EXPECT_FALSE(isHalfPrecision(DType::F32));
  EXPECT_FALSE(isHalfPrecision(DType::F64));
}

TEST(Float16, TensorStorageIsTwoBytesAnElement) {
  for (DType t : {DType::F16, DType::BF16}) {
    Tensor x(t, {7, 3});
    EXPECT_EQ(x.nbytes(), 42u);
    for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(x.at(i), 0.0);
    x.set(20, 1.0);
    const auto *raw = x.dataAs<uint16_t>();
    EXPECT_EQ(raw[20], t == DType::F16 ? 0x3c00 : 0x3f80);
    EXPECT_EQ(raw[19], 0); // nothing written past the element
  }
  EXPECT_EQ(Tensor(DType::F16, {0}).nbytes(), 0u);
}

TEST(Float16, TensorSetAndAtRoundTrip) {
  for (auto [t, f] : {std::pair{DType::F16, kHalf}, std::pair{DType::BF16, kBF16}}) {
    SCOPED_TRACE(dtypeName(t));
    // Every representable value comes back unchanged.
    Tensor all(t, {65536});
    for (uint32_t i = 0; i < 65536; ++i) all.set(i, referenceDecode(f, static_cast<uint16_t>(i)));
    for (uint32_t i = 0; i < 65536; ++i)
      ASSERT_TRUE(sameValue(all.at(i), referenceDecode(f, static_cast<uint16_t>(i)))) << std::hex << i;
    // Other values are rounded to nearest, ties to even.
    std::vector<float> ties = tieCases(f);
    Tensor x(t, {static_cast<int64_t>(ties.size())});
    for (size_t i = 0; i < ties.size(); ++i) x.set(static_cast<int64_t>(i), ties[i]);
    int failures = 0;
    for (size_t i = 0; i < ties.size(); ++i)
      failures += !sameValue(x.at(static_cast<int64_t>(i)), referenceRound(f, ties[i]));
    EXPECT_EQ(failures, 0);
  }
}

TEST(Float16, TensorConvertsBetweenAllDTypes) {
  // Values exact in f64 but not necessarily in the narrower types: ties, near-ties, out-of-range, specials.
  std::vector<double> values = {0.0,
                                -0.0,
                                1.0,
                                -2.5,
                                1.0 / 3,
                                65504,
                                65519.99,
                                65520,
                                -1e6,
                                1e38,
                                3.4e38,
                                std::ldexp(1.0, -24),
                                std::ldexp(1.0, -25),
                                std::ldexp(1.0, -25) * (1 + 1e-12),
                                std::ldexp(1.0, -130),
                                std::ldexp(1.0, -149),
                                1e-300,
                                1 + std::ldexp(1.0, -11),
                                1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40),
                                1 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40),
                                1 + std::ldexp(3.0, -9),
                                kInf,
                                -kInf,
                                std::numeric_limits<double>::quiet_NaN()};
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> exponent(-30, 30);
  for (int i = 0; i < 2000; ++i) values.push_back(std::exp2(exponent(rng)) * (i % 2 ? -1 : 1));
  auto n = static_cast<int64_t>(values.size());
  for (DType from : kAllDTypes) {
    Tensor src(from, {n});
    for (int64_t i = 0; i < n; ++i) src.set(i, values[static_cast<size_t>(i)]);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_TRUE(sameValue(src.at(i), referenceStore(from, values[static_cast<size_t>(i)])))
          << dtypeName(from) << " set/at of " << values[static_cast<size_t>(i)];
    for (DType to : kAllDTypes) {
      SCOPED_TRACE(fmt::format("{} -> {}", dtypeName(from), dtypeName(to)));
      Tensor dst = src.to(to);
      ASSERT_EQ(dst.dtype(), to);
      ASSERT_EQ(dst.shape(), src.shape());
      EXPECT_EQ(dst.nbytes(), static_cast<size_t>(n) * dtypeSize(to));
      int failures = 0;
      for (int64_t i = 0; i < n; ++i) {
        double want = referenceStore(to, src.at(i));
        if (!sameValue(dst.at(i), want) && ++failures <= 5)
          ADD_FAILURE() << std::hexfloat << src.at(i) << " became " << dst.at(i) << ", want " << want;
      }
      EXPECT_EQ(failures, 0);
    }
  }
}
