// What the Network suites share: small networks (a residual block, a stack of them, a sub-layer called
// twice, helpers) in one library, seeded random tensors and element-wise helpers.
#pragma once

#include "compiler/Pipeline.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nvrtc.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc::testing {

using Tensors = std::map<std::string, Tensor>;
using Settings = std::map<std::string, std::string>;

inline const char *kBlock = R"(
layer Block(inplanes: int, planes: int, stride: int = 1) {
  conv1 = Conv2d(in_channels=inplanes, out_channels=planes, kernel_size=3, stride=stride, padding=1, bias=false)
  bn1 = SyncBatchNorm(num_features=planes)
  conv2 = Conv2d(in_channels=planes, out_channels=planes, kernel_size=3, padding=1, bias=false)
  bn2 = SyncBatchNorm(num_features=planes)
  downsample = [Conv2d(in_channels=inplanes, out_channels=planes, kernel_size=1, stride=stride, bias=false),
                SyncBatchNorm(num_features=planes)] where stride != 1 || inplanes != planes

  forward(X: [B, inplanes, H, W]) -> Y {
    F = relu(bn1(conv1(X)))
    G = bn2(conv2(F))
    Y = relu(G + select(stride != 1 || inplanes != planes, downsample(X), X))
  }
}

layer Stack(C: int = 4, N: int = 2) {
  stem = Conv2d(in_channels=3, out_channels=C, kernel_size=3, padding=1)
  layer1 = [Block(inplanes=C, planes=C) for i < N]
  layer2 = [Block(inplanes=select(i == 0, C, 2 * C), planes=2 * C, stride=select(i == 0, 2, 1)) for i < N]
  fc = Linear(in_features=2 * C, out_features=3)
  forward(X: [B, 3, H, W]) -> Y {
    F = layer2(layer1(relu(stem(X))))
    Y = fc(spatial_mean(F))
  }
}

layer Twice(D: int = 3) {
  lin = Linear(in_features=D, out_features=D)
  forward(X: [B, D]) -> Y {
    Y = lin(tanh(lin(X))) + X
  }
}

layer Normalized() {
  n = L2Normalize()
  fc = Linear(in_features=4, out_features=3)
  forward(X: [B, 4]) -> Y {
    Y = fc(n(tanh(X)))
  }
}

layer Flattens() {
  conv = Conv2d(in_channels=2, out_channels=3, kernel_size=1)
  fl = Flatten()
  forward(X: [B, 2, 2, 3]) -> (A, F) {
    Z = conv(X)
    A = fl(Z)
    F = flatten(Z) * 1
  }
}

# Sum and Mean split their input at a counted A...(dim): none, one, two and every dimension
# before the reduced one.
layer Reduces() {
  conv = Conv2d(in_channels=2, out_channels=3, kernel_size=1)
  s0 = Sum(dim=0)
  s2 = Sum(dim=2)
  m3 = Mean(dim=3)
  m1 = Mean(dim=1)
  forward(X: [B, 2, 3, 4]) -> (S0, S2, M3, Y) {
    Z = tanh(conv(X))
    S0 = s0(Z)
    S2 = s2(Z)
    M3 = m3(Z)
    Y = m1(S2 * S2)
  }
}

layer Helpers() {
  a = Conv2d(in_channels=2, out_channels=3, kernel_size=1)
  b = Conv2d(in_channels=2, out_channels=2, kernel_size=1)
  fc = Linear(in_features=20, out_features=2)
  forward(X: [B, 2, 2, 2]) -> (Y, M) {
    Z = cat(a(X), b(X))
    Y = fc(flatten(sigmoid(Z) * 2))
    M = spatial_mean(Z)
  }
}
)";

// The networks above, in one library.
inline std::shared_ptr<const Library> networks() {
  static auto l = Library::fromSource("networks.enc", kBlock);
  return l;
}

inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline Tensor random(const Shape &shape, uint64_t seed, double lo = -1, double hi = 1) {
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, lo + (hi - lo) * static_cast<double>(mix(seed * 7919 + static_cast<uint64_t>(i) + 1) >> 11) * 0x1.0p-53);
  return t;
}

inline double maxDiff(const Tensor &a, const Tensor &b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel() && a.shape() == b.shape(); ++i) m = std::max(m, std::abs(a.at(i) - b.at(i)));
  return m;
}

inline double maxAbs(const Tensor &a) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.at(i)));
  return m;
}

inline Tensor map2(const Tensor &a, const Tensor &b, const std::function<double(double, double)> &f) {
  Tensor out(DType::F64, a.shape());
  for (int64_t i = 0; i < a.numel(); ++i) out.set(i, f(a.at(i), b.at(i)));
  return out;
}

inline LayerOptions f64() { return {.dtype = DType::F64}; }

// A network whose sub-layer has two outputs, called once: (A, S) = head(relu(X)) defines both.
inline const char *kTwoOutputs = R"(
layer Two(C: int) {
  param w[C] = uniform(-1, 1)
  forward(X: [B, C]) -> (Y: [B, C], S: [B]) {
    Y[b, c] = X[b, c] * w[c]
    S[b] = sum(c: X[b, c] * X[b, c] * w[c])
  }
}
layer Net(C: int = 3) {
  head = Two(C=C)
  lin = Linear(in_features=C, out_features=2)
  forward(X: [B, C]) -> (Z, T) {
    (A, S) = head(relu(X))
    Z = lin(A)
    T[b] = S[b] * 2
  }
}
)";

} // namespace enc::testing
