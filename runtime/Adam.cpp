#include "runtime/Adam.h"

#include "runtime/DeviceOps.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace enc {

Adam::Adam(const char *name, AdamOptions options, bool decoupledWeightDecay)
    : Optimizer(name, options.lr), options_(options), decoupled_(decoupledWeightDecay) {
  // torch.optim checks the same ranges when an optimizer is made.
  auto check = [&](const char *what, double value, bool ok, const char *range) {
    if (!ok) fail("{}: invalid {} {} (it must be {})", name, what, value, range);
  };
  check("beta1", options.beta1, options.beta1 >= 0 && options.beta1 < 1, "in [0, 1)");
  check("beta2", options.beta2, options.beta2 >= 0 && options.beta2 < 1, "in [0, 1)");
  check("eps", options.eps, options.eps >= 0, ">= 0");
  check("weight decay", options.weightDecay, options.weightDecay >= 0, ">= 0");
}

int64_t Adam::steps(const Layer &layer, const std::string &name) const {
  auto l = state_.find(&layer);
  if (l == state_.end()) return 0;
  auto s = l->second.find(name);
  return s == l->second.end() ? 0 : s->second.step;
}

void Adam::step(Layer &layer, const std::map<std::string, Tensor> &grads) {
  const AdamOptions &o = options_;
  const double lr = this->lr();
  auto &states = state_[&layer];
  // What a step of parameter `name` multiplies by: its bias corrections and decays.
  struct Factors {
    double stepSize, correction2Sqrt, decay, l2;
  };
  auto factors = [&](State &s) {
    const auto t = static_cast<double>(++s.step);
    return Factors{lr / (1 - std::pow(o.beta1, t)), std::sqrt(1 - std::pow(o.beta2, t)),
                   decoupled_ ? 1 - lr * o.weightDecay : 1, decoupled_ ? 0 : o.weightDecay};
  };
  auto onHost = [&](const std::string &name, auto *p, const auto *g, int64_t n) {
    using T = std::remove_pointer_t<decltype(p)>;
    State &s = states[name];
    const Tensor &param = layer.params().at(name);
    T *m = stateLike(s.expAvg, param).template dataAs<T>();
    T *v = stateLike(s.expAvgSq, param).template dataAs<T>();
    T *vMax = o.amsgrad ? stateLike(s.maxExpAvgSq, param).template dataAs<T>() : nullptr;
    const Factors f = factors(s);
    // Intermediates are rounded to T where torch stores a tensor, so f32 follows torch closely.
    for (int64_t i = 0; i < n; ++i) {
      const double pi = static_cast<T>(f.decay * p[i]);
      const double gi = static_cast<T>(g[i] + f.l2 * p[i]);
      m[i] = static_cast<T>(o.beta1 * m[i] + (1 - o.beta1) * gi);
      v[i] = static_cast<T>(o.beta2 * v[i] + (1 - o.beta2) * gi * gi);
      double vi = v[i];
      if (vMax) vi = vMax[i] = std::max(vMax[i], v[i]);
      p[i] = static_cast<T>(pi - f.stepSize * m[i] / (std::sqrt(vi) / f.correction2Sqrt + o.eps));
    }
  };
  // The same on the GPU (runtime/DeviceOps.cpp's AdamStep and AdamAmsgradStep).
  auto onDevice = [&](const std::string &name, const Tensor &p, const Tensor &g) {
    using device::flat;
    State &s = states[name];
    const DType dtype = p.dtype();
    std::map<std::string, Tensor> in = {{"P", flat(p)},
                                        {"G", flat(g)},
                                        {"M", flat(stateLike(s.expAvg, p))},
                                        {"V", flat(stateLike(s.expAvgSq, p))}};
    if (o.amsgrad) in["X"] = flat(stateLike(s.maxExpAvgSq, p));
    const Factors f = factors(s);
    in["S"] = device::scalars(dtype, {f.decay, f.l2, o.beta1, 1 - o.beta1, o.beta2, 1 - o.beta2, f.stepSize,
                                      f.correction2Sqrt, o.eps});
    auto out = device::run(o.amsgrad ? "AdamAmsgradStep" : "AdamStep", dtype, in).outputs;
    s.expAvg = out.at("M2").reshape(p.shape());
    s.expAvgSq = out.at("V2").reshape(p.shape());
    if (o.amsgrad) s.maxExpAvgSq = out.at("X2").reshape(p.shape());
    return out.at("Q").reshape(p.shape());
  };
  update(layer, grads, onHost, onDevice);
}

} // namespace enc
