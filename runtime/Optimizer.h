// What every optimizer shares, and SGD.
//
// An optimizer updates a layer's learnable parameters from the gradients Layer::backward
// returned. Entries that are not parameters (the input's gradient, buffers) are ignored; a
// gradient whose shape is not its parameter's is an enc::Error, raised before any parameter
// changes. State (momentum, moment estimates) is kept per layer object and parameter name, so
// one optimizer serves every layer of a network, whatever its parameters are called.
//
// The update runs on the host: each parameter and its gradient are copied there as plain
// arrays of the parameter's dtype (f32, or f64 for an f64 layer: 16-bit layers keep f32
// parameters), updated element by element, and put back on the layer's device with
// Layer::setParam. Correct on every device; a GPU-side update is future work.
//
// The learning rate is settable (lr(), setLr()) so that a schedule (runtime/LrScheduler.h)
// can drive any optimizer.
#pragma once

#include "runtime/Layer.h"

#include <map>
#include <string>
#include <utility>

namespace enc {

class Optimizer {
public:
  virtual ~Optimizer() = default;

  // Updates `layer`'s parameters from `grads` (see above). Buffers are not touched.
  virtual void step(Layer &layer, const std::map<std::string, Tensor> &grads) = 0;

  double lr() const { return lr_; }
  void setLr(double lr); // enc::Error if negative or not finite

  const char *name() const { return name_; }

protected:
  Optimizer(const char *name, double lr);

  // Runs `update(name, p, g, n)` for every parameter `grads` has a gradient for, with `p` the
  // parameter's n values (float * or double *, updated in place) and `g` its gradient in the
  // same type, then stores `p` back into the layer. Shapes are all checked first.
  template <typename Update>
  void updateOnHost(Layer &layer, const std::map<std::string, Tensor> &grads, Update &&update);

  // A host array of `like`'s dtype and shape, zero-filled, for per-parameter state; reused when
  // `state` already is one (a state that no longer fits is started afresh).
  static Tensor &stateLike(Tensor &state, const Tensor &like);

private:
  const char *name_;
  double lr_;

  void checkShapes(const Layer &layer, const std::map<std::string, Tensor> &grads) const;
};

template <typename Update>
void Optimizer::updateOnHost(Layer &layer, const std::map<std::string, Tensor> &grads, Update &&update) {
  checkShapes(layer, grads);
  for (const auto &[name, grad] : grads) {
    if (!layer.isParameter(name)) continue;
    Tensor p = layer.params().at(name).cpu().clone();
    const Tensor g = grad.cpu().to(p.dtype()); // may share the caller's storage: read only
    int64_t n = p.numel();
    if (p.dtype() == DType::F64) update(name, p.dataAs<double>(), g.dataAs<double>(), n);
    else update(name, p.dataAs<float>(), g.dataAs<float>(), n);
    layer.setParam(name, p);
  }
}

// Stochastic gradient descent with momentum and weight decay, with torch.optim.SGD's
// conventions: g += weight_decay * p; v = momentum * v + (1 - dampening) * g (v = g on the
// first step); p -= lr * (nesterov ? g + momentum * v : v).
struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weightDecay = 0;
  bool nesterov = false;
};

class SGD : public Optimizer {
public:
  explicit SGD(SGDOptions options);

  void step(Layer &layer, const std::map<std::string, Tensor> &grads) override;

private:
  SGDOptions options_; // its lr is the initial one: lr() is the current one
  std::map<const Layer *, std::map<std::string, Tensor>> velocity_;
};

} // namespace enc
