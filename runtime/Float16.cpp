#include "runtime/Float16.h"

#include <bit>
#include <cmath>
#include <limits>

namespace enc {

namespace {

// Shifts `m` right by `shift` bits (1..31), rounding to nearest, ties to even. A carry out of the
// mantissa correctly bumps the exponent field above it.
uint32_t shiftRightRounded(uint32_t m, int shift) {
  uint32_t kept = m >> shift;
  uint32_t rest = m & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1))) ++kept;
  return kept;
}

// The float nearest `d` in round-to-odd: inexact results get an odd last bit. Rounding that float again
// to a format with at least 2 fewer significand bits gives the correctly rounded result of `d`.
float roundToOddFloat(double d) {
  constexpr float kMax = std::numeric_limits<float>::max(); // its last bit is odd
  if (std::isfinite(d) && std::fabs(d) > kMax) return std::copysign(kMax, static_cast<float>(d));
  float f = static_cast<float>(d);
  if (std::isnan(d) || static_cast<double>(f) == d) return f;
  uint32_t bits = std::bit_cast<uint32_t>(f);
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) --bits; // truncate toward zero
  return std::bit_cast<float>(bits | 1u);
}

} // namespace

uint16_t floatToHalfBits(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((abs >> 13) & 0x3ffu); // quiet NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u; // >= 65520, the tie above 65504 (odd): inf
  uint32_t exp = abs >> 23;
  if (exp >= 113) // normal in f16 (unbiased exponent >= -14): rebias 127 -> 15 and drop 13 bits
    return sign | static_cast<uint16_t>(shiftRightRounded(abs - (112u << 23), 13));
  if (exp < 102) return sign; // below 2^-25, half the smallest subnormal: rounds to zero
  // Subnormal in f16: the result counts units of 2^-24; the float is (2^23 + mantissa) * 2^(exp - 150).
  uint32_t significand = (abs & 0x7fffffu) | 0x800000u;
  return sign | static_cast<uint16_t>(shiftRightRounded(significand, 126 - static_cast<int>(exp)));
}

float halfBitsToFloat(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13)); // inf or NaN
  if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal: mantissa * 2^-24, normalized so that its leading 1 becomes float's implicit bit.
  int shift = 11 - std::bit_width(mantissa); // moves the leading 1 to bit 10
  uint32_t floatExp = 113 - static_cast<uint32_t>(shift);
  return std::bit_cast<float>(sign | (floatExp << 23) | ((mantissa << shift) & 0x3ffu) << 13);
}

uint16_t floatToBFloat16Bits(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u); // quiet NaN
  // Round the low 16 bits away, ties to even; a carry overflows to inf exactly when it should.
  return static_cast<uint16_t>(shiftRightRounded(bits & 0x7fffffffu, 16) | ((bits >> 16) & 0x8000u));
}

float bfloat16BitsToFloat(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t doubleToHalfBits(double value) { return floatToHalfBits(roundToOddFloat(value)); }

uint16_t doubleToBFloat16Bits(double value) { return floatToBFloat16Bits(roundToOddFloat(value)); }

} // namespace enc
