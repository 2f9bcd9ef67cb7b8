// A small, portable, seeded generator (splitmix64), so a seed gives the same parameters on
// every platform and standard library.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace enc {

class Rng {
public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // An independent stream per name: parameters don't depend on declaration order.
  Rng(uint64_t seed, std::string_view stream) : state_(seed) {
    for (char c : stream) state_ = (state_ ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
    next();
  }

  // As if next() had been called n times (the state advances by a constant per call).
  void skip(uint64_t n) { state_ += n * kStep; }

  uint64_t next() { return mix(state_ += kStep); }
  // What the (n + 1)-th next() from here returns, without advancing: draws of a stream are
  // independent of one another, so a fill can compute them in any order (and vectorized).
  uint64_t peek(uint64_t n) const { return mix(state_ + (n + 1) * kStep); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return toUnit(next()); }
  static double toUnit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal(double mean, double stddev) {
    double u1 = 1.0 - uniform(), u2 = uniform();
    return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

private:
  static constexpr uint64_t kStep = 0x9e3779b97f4a7c15ULL;
  uint64_t state_;

  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

} // namespace enc
