#include "runtime/DeviceOps.h"

#include "runtime/Layer.h"
#include "runtime/ProcessGroup.h"

#include <bit>
#include <memory>
#include <mutex>

namespace enc::device {
namespace {

// The layers, over 1-D tensors of N elements. S holds an update's numbers for the step, in the
// tensors' dtype; `param s[1]` a factor kept in f32 for 16-bit tensors.
constexpr const char *kSource = R"enc(
# SGD without momentum. S = [lr, weight_decay].
layer SgdStep() {
  forward(P: [N], G: [N], S: [2]) -> Q: [N] {
    Q[i] = P[i] - S[0] * (G[i] + S[1] * P[i])
  }
}

# SGD with momentum. S = [lr, weight_decay, momentum, 1 - dampening, first step (1 or 0),
# nesterov (1 or 0)]; V is not read on the first step.
layer SgdMomentumStep() {
  forward(P: [N], G: [N], V: [N], S: [6]) -> (Q: [N], W: [N]) {
    D[i] = G[i] + S[1] * P[i]
    W[i] = select(S[4] > 0, D[i], S[2] * V[i] + S[3] * D[i])
    Q[i] = P[i] - S[0] * select(S[5] > 0, D[i] + S[2] * W[i], W[i])
  }
}

# Adam and AdamW. S = [1 - lr * decoupled weight decay, L2 weight decay, beta1, 1 - beta1, beta2,
# 1 - beta2, lr / (1 - beta1^t), sqrt(1 - beta2^t), eps].
layer AdamStep() {
  forward(P: [N], G: [N], M: [N], V: [N], S: [9]) -> (Q: [N], M2: [N], V2: [N]) {
    D[i] = G[i] + S[1] * P[i]
    M2[i] = S[2] * M[i] + S[3] * D[i]
    V2[i] = S[4] * V[i] + S[5] * D[i] * D[i]
    Q[i] = S[0] * P[i] - S[6] * M2[i] / (sqrt(V2[i]) / S[7] + S[8])
  }
}

# The same with amsgrad: X is v_max.
layer AdamAmsgradStep() {
  forward(P: [N], G: [N], M: [N], V: [N], X: [N], S: [9]) -> (Q: [N], M2: [N], V2: [N], X2: [N]) {
    D[i] = G[i] + S[1] * P[i]
    M2[i] = S[2] * M[i] + S[3] * D[i]
    V2[i] = S[4] * V[i] + S[5] * D[i] * D[i]
    X2[i] = max(X[i], V2[i])
    Q[i] = S[0] * P[i] - S[6] * M2[i] / (sqrt(X2[i]) / S[7] + S[8])
  }
}

layer Add() {
  forward(A: [N], B: [N]) -> Y: [N] { Y[i] = A[i] + B[i] }
}
layer Sub() {
  forward(A: [N], B: [N]) -> Y: [N] { Y[i] = A[i] - B[i] }
}
layer Mul() {
  forward(A: [N], B: [N]) -> Y: [N] { Y[i] = A[i] * B[i] }
}
layer Scale() {
  param s[1]
  forward(A: [N]) -> Y: [N] { Y[i] = A[i] * s[0] }
}
layer AddScaled() {
  param s[1]
  forward(A: [N], B: [N]) -> Y: [N] { Y[i] = A[i] + s[0] * B[i] }
}

# Reductions leave their result in a buffer: f32 (f64) even for 16-bit inputs.
layer Total() {
  buffer total[1]
  forward(X: [N]) -> Y: [] {
    T = sum(i: X[i])
    Y = T
    total[j] <- T
  }
}

# The index of the first maximum along K, a NaN counting as the largest (torch.argmax).
layer Argmax(outer: int, inner: int) {
  buffer index[outer, inner]
  forward(X: [outer, K, inner]) -> Y: [outer, inner] {
    Top[o, j] = max(k: X[o, k, j])
    FirstNan[o, j] = min(k: select(X[o, k, j] != X[o, k, j], float(k), inf))
    FirstTop[o, j] = min(k: select(X[o, k, j] == Top[o, j], float(k), inf))
    Best[o, j] = select(FirstNan[o, j] < inf, FirstNan[o, j], FirstTop[o, j])
    Y[o, j] = Best[o, j]
    index[o, j] <- Best[o, j]
  }
}
)enc";

struct Entry {
  std::unique_ptr<Layer> layer;
  std::map<std::string, uint64_t> params; // the bits of each parameter's value as set last
};

struct Cache {
  std::mutex mu;
  std::map<std::string, Entry> layers; // by layer, dtype and settings
  // scalars() by dtype and the values' bits: a step's numbers are the same for every parameter
  // of a layer, and a copy to the GPU waits for it, so each goes over once.
  std::map<std::pair<DType, std::vector<uint64_t>>, Tensor> scalars;
};

// Never destroyed: its layers hold device memory, which must not be freed after the GPU is gone.
Cache &cache() {
  static Cache *c = new Cache;
  return *c;
}

uint64_t bitsOf(double v) { return std::bit_cast<uint64_t>(v); }

} // namespace

std::shared_ptr<const Library> library() {
  static const std::shared_ptr<const Library> lib = Library::fromSource("device-ops.enc", kSource);
  return lib;
}

Result run(const std::string &name, DType dtype, const std::map<std::string, Tensor> &inputs,
           const std::map<std::string, std::string> &settings, const std::map<std::string, double> &params) {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  std::string key = fmt::format("{} {}", name, dtypeName(dtype));
  for (const auto &[k, v] : settings) key += fmt::format(" {}={}", k, v);
  Entry &e = c.layers[key];
  if (!e.layer) {
    LayerOptions options;
    options.dtype = dtype;
    options.device = Device::CUDA;
    options.training = true; // buffer updates (the reductions' results) happen in training passes
    options.group = soloProcessGroup(); // no collectives, whatever the process's group
    e.layer = std::make_unique<Layer>(library(), name, settings, options);
  }
  for (const auto &[p, value] : params) {
    auto last = e.params.find(p);
    if (last != e.params.end() && last->second == bitsOf(value)) continue; // already there
    Tensor t(e.layer->paramDType(), {1});
    t.set(0, value);
    e.layer->setParam(p, t);
    e.params[p] = bitsOf(value);
  }
  Result r;
  r.outputs = e.layer->forward(inputs);
  for (const auto &[n, t] : e.layer->params())
    if (!e.layer->isParameter(n)) r.buffers[n] = t;
  e.layer->releasePass();
  return r;
}

Tensor scalars(DType dtype, const std::vector<double> &values) {
  Cache &c = cache();
  std::vector<uint64_t> bits;
  for (double v : values) bits.push_back(bitsOf(v));
  std::lock_guard<std::mutex> lock(c.mu);
  auto key = std::make_pair(dtype, bits);
  if (!c.scalars.count(key) && c.scalars.size() >= 64) c.scalars.clear(); // old steps' numbers
  Tensor &t = c.scalars[key];
  if (!t.defined()) {
    Tensor host(dtype, {static_cast<int64_t>(values.size())});
    for (size_t i = 0; i < values.size(); ++i) host.set(static_cast<int64_t>(i), values[i]);
    t = host.to(Device::CUDA);
  }
  return t;
}

} // namespace enc::device
