// Conversions between float and the two 16-bit floating-point formats a Tensor can store: IEEE 754 binary16
// ("half", f16: 5 exponent bits, 10 mantissa bits) and bfloat16 (bf16: float's 8 exponent bits, 7 mantissa
// bits). They are storage types for activations, halving memory and bandwidth; arithmetic stays in f32.
//
// Narrowing rounds to nearest, ties to even (independent of the floating-point environment). NaN becomes a
// quiet NaN of the same sign, ±Inf stays ±Inf, values too large for the format become ±Inf, -0 stays -0,
// and f16 underflows gradually through its subnormals. Widening to float is exact.
#pragma once

#include <cstdint>

namespace enc {

uint16_t floatToHalfBits(float value);
float halfBitsToFloat(uint16_t bits);

uint16_t floatToBFloat16Bits(float value);
float bfloat16BitsToFloat(uint16_t bits);

// Rounding straight from double (a single rounding, so no double-rounding error at midpoints).
uint16_t doubleToHalfBits(double value);
uint16_t doubleToBFloat16Bits(double value);

} // namespace enc
