// Layer math written out as plain double-precision loops (from DESIGN.md, independent of the
// .enc files), shared by the test suites that compare layers against it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace enc::testing {

// X[B, D, N] (a 4-D input has the same memory layout with N = H*W), codewords[K, D], scale[K] -> E[B, K, D].
inline std::vector<double> encodingRef(const std::vector<double> &x, const std::vector<double> &c,
                                const std::vector<double> &s, int64_t B, int64_t D, int64_t N, int64_t K) {
  std::vector<double> e(static_cast<size_t>(B * K * D), 0.0), sl(static_cast<size_t>(K));
  auto X = [&](int64_t b, int64_t d, int64_t i) { return x[static_cast<size_t>((b * D + d) * N + i)]; };
  auto C = [&](int64_t k, int64_t d) { return c[static_cast<size_t>(k * D + d)]; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i) {
      // SL = s_k * ||x_i - c_k||^2, A = softmax over k (shifted by the max for stability).
      double mx = -INFINITY;
      for (int64_t k = 0; k < K; ++k) {
        double norm2 = 0;
        for (int64_t d = 0; d < D; ++d)
          norm2 += (X(b, d, i) - C(k, d)) * (X(b, d, i) - C(k, d));
        sl[static_cast<size_t>(k)] = s[static_cast<size_t>(k)] * norm2;
        mx = std::max(mx, sl[static_cast<size_t>(k)]);
      }
      double den = 0;
      for (int64_t k = 0; k < K; ++k)
        den += std::exp(sl[static_cast<size_t>(k)] - mx);
      for (int64_t k = 0; k < K; ++k) {
        double a = std::exp(sl[static_cast<size_t>(k)] - mx) / den;
        for (int64_t d = 0; d < D; ++d)
          e[static_cast<size_t>((b * K + k) * D + d)] += a * (X(b, d, i) - C(k, d));
      }
    }
  return e;
}

inline std::vector<double> leakyReluRef(const std::vector<double> &x, double slope) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    y[i] = x[i] > 0 ? x[i] : slope * x[i];
  return y;
}

// Softmax over dim 1 of X[B, C, L] (L = product of the trailing dimensions, 1 for [B, C]).
inline std::vector<double> softmaxRef(const std::vector<double> &x, int64_t B, int64_t C, int64_t L) {
  std::vector<double> y(x.size());
  auto at = [&](int64_t b, int64_t c, int64_t l) { return static_cast<size_t>((b * C + c) * L + l); };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = 0; l < L; ++l) {
      double mx = -INFINITY, den = 0;
      for (int64_t c = 0; c < C; ++c)
        mx = std::max(mx, x[at(b, c, l)]);
      for (int64_t c = 0; c < C; ++c)
        den += std::exp(x[at(b, c, l)] - mx);
      for (int64_t c = 0; c < C; ++c)
        y[at(b, c, l)] = std::exp(x[at(b, c, l)] - mx) / den;
    }
  return y;
}

// Plain batch norm over a whole batch X[B, C, L] in doubles: outputs and, for an output
// gradient G, the input, weight and bias gradients (no activation).
struct BatchNormRef {
  std::vector<double> y, gx, gw, gb, mean, var;
};
inline BatchNormRef batchNormRef(const std::vector<double> &x, const std::vector<double> &g, const std::vector<double> &w,
                                 const std::vector<double> &bias, int64_t B, int64_t C, int64_t L, double eps) {
  BatchNormRef r;
  r.y.resize(x.size());
  r.gx.resize(x.size());
  auto at = [&](int64_t b, int64_t c, int64_t l) { return static_cast<size_t>((b * C + c) * L + l); };
  const double n = static_cast<double>(B * L);
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0, var = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) mean += x[at(b, c, l)];
    mean /= n;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) var += (x[at(b, c, l)] - mean) * (x[at(b, c, l)] - mean);
    var /= n;
    double rstd = 1 / std::sqrt(var + eps), sg = 0, sgx = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) {
        double xh = (x[at(b, c, l)] - mean) * rstd;
        r.y[at(b, c, l)] = xh * w[static_cast<size_t>(c)] + bias[static_cast<size_t>(c)];
        sg += g[at(b, c, l)];
        sgx += g[at(b, c, l)] * xh;
      }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) {
        double xh = (x[at(b, c, l)] - mean) * rstd;
        r.gx[at(b, c, l)] = w[static_cast<size_t>(c)] * rstd / n * (n * g[at(b, c, l)] - sg - xh * sgx);
      }
    r.gw.push_back(sgx);
    r.gb.push_back(sg);
    r.mean.push_back(mean);
    r.var.push_back(var);
  }
  return r;
}

} // namespace enc::testing
