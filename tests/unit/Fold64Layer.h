// Fold64: Y[i] = X[3 i mod N]^2 over 64 N outputs, N prime to 3, so each element of grad_X gathers
// 64 contributions through an index map autodiff cannot invert: a scatter gradient, which the
// 16-bit storage suites check is accumulated in f32.
#pragma once

namespace enc::testing {

inline const char *kFold = R"(
layer Fold64() {
  forward(X: [N]) -> Y: [64 * N] {
    Y[i] = X[i * 3 % N] * X[i * 3 % N]
  }
}
)";

} // namespace enc::testing
