// What the optimizer suites share: the reference updates of torch.optim written out naively in double
// precision (SGD, Adam, AdamW), the Linear layer they train and its gradients step by step.
#pragma once

#include "runtime/Adam.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace enc::testing {

inline Tensor vec(std::initializer_list<double> v) {
  Tensor t(DType::F64, {static_cast<int64_t>(v.size())});
  int64_t i = 0;
  for (double x : v) t.set(i++, x);
  return t;
}

// `tolerance` is relative to the reference value's magnitude (at least 1).
inline void expectSgdMatches(SGDOptions o, DType dtype = DType::F64, Device device = Device::CPU, double tolerance = 1e-15) {
  LayerOptions lo;
  lo.dtype = dtype;
  lo.device = device;
  Layer layer(Library::shipped(), "Linear", {{"in_features", "1"}, {"out_features", "3"}}, lo);
  Tensor w0 = layer.params().at("weight").cpu(); // [3, 1]
  std::vector<double> p = {w0.at(0), w0.at(1), w0.at(2)}, v(3, 0);
  const std::vector<std::vector<double>> grads = {{0.5, -1, 2}, {0.25, 0, -3}, {1, 1, 1}, {-2, 0.5, 0}};
  SGD sgd(o);
  for (size_t step = 0; step < grads.size(); ++step) {
    Tensor g = vec({grads[step][0], grads[step][1], grads[step][2]}).reshape({3, 1}).to(dtype).to(device);
    sgd.step(layer, {{"weight", g}, {"X", vec({9})}}); // X is not a parameter: ignored
    Tensor w = layer.params().at("weight");
    EXPECT_EQ(w.device(), device);
    w = w.cpu();
    for (int i = 0; i < 3; ++i) {
      double gi = grads[step][static_cast<size_t>(i)] + o.weightDecay * p[i];
      double d = gi;
      if (o.momentum != 0) {
        v[i] = step == 0 ? gi : o.momentum * v[i] + (1 - o.dampening) * gi;
        d = o.nesterov ? gi + o.momentum * v[i] : v[i];
      }
      p[i] -= o.lr * d;
      EXPECT_NEAR(w.at(i), p[i], tolerance * std::max(1.0, std::abs(p[i]))) << "step " << step << " element " << i;
    }
  }
}

// Linear(3 -> 2): weight [2, 3] and bias [2], 8 parameters in all; the same values on either device.
inline Layer linear(DType dtype, Device device) {
  LayerOptions lo;
  lo.dtype = dtype;
  lo.seed = 3;
  lo.device = device;
  return Layer(Library::shipped(), "Linear", {{"in_features", "3"}, {"out_features", "2"}}, lo);
}
inline Layer linear64() { return linear(DType::F64, Device::CPU); }

// Four steps of gradients, one per parameter element (weight's 6, then bias's 2); the zeros
// let weight decay alone move an element.
inline const std::vector<std::vector<double>> kGrads = {{0.5, -1, 2, 0, 0.1, -0.3, 1, -2},
                                                 {0.25, 0, -3, 0, 0.2, 0.3, -1, 0.5},
                                                 {1, 1, 1, 0, -0.1, 0, 2, 2},
                                                 {-0.5, 2, 0.5, 0, 0.4, -0.2, 0, -1}};
inline const std::vector<double> kLrs = {0.1, 0.05, 0.05, 0.02}; // the rate changes mid-run, as a schedule does

inline std::vector<double> paramsOf(const Layer &l) {
  std::vector<double> v;
  for (const char *name : {"weight", "bias"}) {
    Tensor t = l.params().at(name).cpu();
    for (int64_t i = 0; i < t.numel(); ++i) v.push_back(t.at(i));
  }
  return v;
}

inline std::map<std::string, Tensor> gradsOf(const std::vector<double> &g, DType dtype = DType::F64,
                                      Device device = Device::CPU) {
  Tensor w(dtype, {2, 3}), b(dtype, {2});
  for (int64_t i = 0; i < 6; ++i) w.set(i, g[static_cast<size_t>(i)]);
  for (int64_t i = 0; i < 2; ++i) b.set(i, g[static_cast<size_t>(6 + i)]);
  return {{"weight", w.to(device)}, {"bias", b.to(device)}, {"X", vec({9, 9, 9})}}; // X is not a parameter: ignored
}

// The textbook form: m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), p -= lr * m_hat / (sqrt(v_hat) + eps).
// `relative`: the tolerance scales with the reference value's magnitude (at least 1).
inline void expectAdamMatches(Optimizer &opt, AdamOptions o, bool decoupled, double tolerance = 1e-13,
                       DType dtype = DType::F64, Device device = Device::CPU, bool relative = false) {
  Layer layer = linear(dtype, device);
  std::vector<double> p = paramsOf(layer), m(p.size(), 0), v(p.size(), 0), vMax(p.size(), 0);
  for (size_t step = 0; step < kGrads.size(); ++step) {
    double lr = kLrs[step], t = static_cast<double>(step + 1);
    opt.setLr(lr);
    opt.step(layer, gradsOf(kGrads[step], dtype, device));
    for (const auto &[name, param] : layer.params()) EXPECT_EQ(param.device(), device) << name;
    std::vector<double> got = paramsOf(layer);
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[step][i];
      if (decoupled) p[i] = p[i] - lr * o.weightDecay * p[i];
      else g = g + o.weightDecay * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      vMax[i] = std::max(vMax[i], v[i]);
      double mHat = m[i] / (1 - std::pow(o.beta1, t));
      double vHat = (o.amsgrad ? vMax[i] : v[i]) / (1 - std::pow(o.beta2, t));
      p[i] = p[i] - lr * mHat / (std::sqrt(vHat) + o.eps);
      EXPECT_NEAR(got[i], p[i], tolerance * (relative ? std::max(1.0, std::abs(p[i])) : 1))
          << "step " << step << " element " << i;
    }
  }
}

} // namespace enc::testing
