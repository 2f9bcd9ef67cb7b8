#include "runtime/Optimizer.h"

#include <cmath>
#include <type_traits>

namespace enc {

Optimizer::Optimizer(const char *name, double lr) : name_(name), lr_(0) { setLr(lr); }

void Optimizer::setLr(double lr) {
  if (!std::isfinite(lr) || lr < 0) fail("{}: invalid learning rate {} (it must be finite and >= 0)", name_, lr);
  lr_ = lr;
}

void Optimizer::checkShapes(const Layer &layer, const std::map<std::string, Tensor> &grads) const {
  for (const auto &[name, grad] : grads) {
    if (!layer.isParameter(name)) continue;
    const Shape &want = layer.params().at(name).shape();
    if (grad.shape() != want)
      throw Error(fmt::format("{}: gradient of '{}' (layer {}) has shape {}, the parameter {}", name_, name,
                              layer.name(), shapeString(grad.shape()), shapeString(want)),
                  "pass the gradients this layer's backward() returned; no parameter was changed");
  }
}

Tensor &Optimizer::stateLike(Tensor &state, const Tensor &like) {
  if (!state.defined() || state.dtype() != like.dtype() || state.shape() != like.shape())
    state = Tensor(like.dtype(), like.shape());
  return state;
}

SGD::SGD(SGDOptions options) : Optimizer("SGD", options.lr), options_(options) {}

void SGD::step(Layer &layer, const std::map<std::string, Tensor> &grads) {
  const SGDOptions &o = options_;
  const double lr = this->lr();
  auto &velocity = velocity_[&layer];
  updateOnHost(layer, grads, [&](const std::string &name, auto *p, const auto *g, int64_t n) {
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
  });
}

} // namespace enc
