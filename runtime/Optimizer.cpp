#include "runtime/Optimizer.h"

#include "runtime/DeviceOps.h"

#include <cmath>
#include <type_traits>

namespace enc {

Optimizer::Optimizer(const char *name, double lr) : name_(name), lr_(0) { setLr(lr); }

void Optimizer::setLr(double lr) {
  if (!std::isfinite(lr) || lr < 0) fail("{}: invalid learning rate {} (it must be finite and >= 0)", name_, lr);
  lr_ = lr;
}

void Optimizer::checkGradients(const Layer &layer, const std::map<std::string, Tensor> &grads) const {
  auto where = [](const Tensor &t) { return t.isCuda() ? "on the GPU" : "on the CPU"; };
  for (const auto &[name, grad] : grads) {
    if (!layer.isParameter(name)) continue;
    const Tensor &param = layer.params().at(name);
    if (grad.shape() != param.shape())
      throw Error(fmt::format("{}: gradient of '{}' (layer {}) has shape {}, the parameter {}", name_, name,
                              layer.name(), shapeString(grad.shape()), shapeString(param.shape())),
                  "pass the gradients this layer's backward() returned; no parameter was changed");
    if (grad.device() != param.device())
      throw Error(fmt::format("{}: gradient of '{}' (layer {}) is {}, the parameter {}", name_, name, layer.name(),
                              where(grad), where(param)),
                  fmt::format("move the gradient with .to(enc::Device::{}) (backward() returns them on the layer's "
                              "device); no parameter was changed",
                              param.isCuda() ? "CUDA" : "CPU"));
  }
}

Tensor &Optimizer::stateLike(Tensor &state, const Tensor &like) {
  if (!state.defined() || state.dtype() != like.dtype() || state.shape() != like.shape() ||
      state.device() != like.device())
    state = Tensor(like.dtype(), like.shape(), like.device());
  return state;
}

SGD::SGD(SGDOptions options) : Optimizer("SGD", options.lr), options_(options) {}

void SGD::step(Layer &layer, const std::map<std::string, Tensor> &grads) {
  const SGDOptions &o = options_;
  const double lr = this->lr();
  auto &velocity = velocity_[&layer];
  auto onHost = [&](const std::string &name, auto *p, const auto *g, int64_t n) {
    using T = std::remove_pointer_t<decltype(p)>;
    bool first = !velocity.count(name);
    T *v = o.momentum != 0 ? stateLike(velocity[name], layer.params().at(name)).template dataAs<T>() : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      double gi = g[i] + o.weightDecay * p[i];
      double step = gi;
      if (v) {
        double vi = first ? gi : o.momentum * v[i] + (1 - o.dampening) * gi;
        v[i] = static_cast<T>(vi);
        step = o.nesterov ? gi + o.momentum * vi : vi;
      }
      p[i] = static_cast<T>(p[i] - lr * step);
    }
  };
  // The same on the GPU (runtime/DeviceOps.cpp's SgdStep and SgdMomentumStep).
  auto onDevice = [&](const std::string &name, const Tensor &p, const Tensor &g) {
    using device::flat;
    const DType dtype = p.dtype();
    if (o.momentum == 0)
      return device::run("SgdStep", dtype, {{"P", flat(p)}, {"G", flat(g)}, {"S", device::scalars(dtype, {lr, o.weightDecay})}})
          .outputs.at("Q")
          .reshape(p.shape());
    bool first = !velocity.count(name);
    Tensor &v = stateLike(velocity[name], p);
    Tensor s = device::scalars(dtype, {lr, o.weightDecay, o.momentum, 1 - o.dampening, first ? 1.0 : 0.0,
                                       o.nesterov ? 1.0 : 0.0});
    auto out = device::run("SgdMomentumStep", dtype, {{"P", flat(p)}, {"G", flat(g)}, {"V", flat(v)}, {"S", s}}).outputs;
    v = out.at("W").reshape(p.shape());
    return out.at("Q").reshape(p.shape());
  };
  update(layer, grads, onHost, onDevice);
}

} // namespace enc
