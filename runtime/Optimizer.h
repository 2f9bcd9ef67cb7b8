// What every optimizer shares, and SGD.
//
// An optimizer updates a layer's learnable parameters from the gradients Layer::backward
// returned. Entries that are not parameters (the input's gradient, buffers) are ignored; a
// gradient whose shape is not its parameter's is an enc::Error, raised before any parameter
// changes. State (momentum, moment estimates) is kept per layer object and parameter name, so
// one optimizer serves every layer of a network, whatever its parameters are called.
//
// Where the update runs is where the parameter lives:
// - CPU parameters: on the host, as plain arrays of the parameter's dtype (f32, or f64 for an
//   f64 layer: 16-bit layers keep f32 parameters), element by element in double, rounded to the
//   dtype where torch stores a tensor; put back with Layer::setParam.
// - CUDA parameters: on the GPU, as small .enc layers compiled by encc itself
//   (runtime/DeviceOps.h), in the parameter's dtype, with the state (momentum buffers, moments)
//   kept on the GPU in that dtype. No parameter, gradient or state crosses to the host; the
//   numbers of a step (learning rate, bias corrections) go over as a few values. The results
//   equal the host's to rounding (the GPU rounds every operation to the dtype).
// A gradient must be on its parameter's device: anything else is an enc::Error, raised before
// any parameter changes.
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

  // Checks every gradient (shape, device), then for every parameter `grads` has a gradient for:
  // - a CPU parameter: runs `onHost(name, p, g, n)` with `p` the parameter's n values (float * or
  //   double *, updated in place) and `g` its gradient in the same type, then stores `p` back;
  // - a CUDA parameter: `onDevice(name, param, grad)` with both on the GPU in the parameter's
  //   dtype returns the new value, which is stored (an empty parameter goes to onHost, n = 0).
  template <typename OnHost, typename OnDevice>
  void update(Layer &layer, const std::map<std::string, Tensor> &grads, OnHost &&onHost, OnDevice &&onDevice);

  // A zero-filled tensor of `like`'s dtype, shape and device, for per-parameter state; reused
  // when `state` already is one (a state that no longer fits is started afresh).
  static Tensor &stateLike(Tensor &state, const Tensor &like);

private:
  const char *name_;
  double lr_;

  void checkGradients(const Layer &layer, const std::map<std::string, Tensor> &grads) const;
};

template <typename OnHost, typename OnDevice>
void Optimizer::update(Layer &layer, const std::map<std::string, Tensor> &grads, OnHost &&onHost, OnDevice &&onDevice) {
  checkGradients(layer, grads);
  for (const auto &[name, grad] : grads) {
    if (!layer.isParameter(name)) continue;
    const Tensor &param = layer.params().at(name);
    if (param.isCuda() && param.numel() > 0) {
      layer.setParam(name, onDevice(name, param, grad.to(param.dtype())));
      continue;
    }
    Tensor p = param.cpu().clone();
    const Tensor g = grad.cpu().to(p.dtype()); // may share the caller's storage: read only
    int64_t n = p.numel();
    if (p.dtype() == DType::F64) onHost(name, p.dataAs<double>(), g.dataAs<double>(), n);
    else onHost(name, p.dataAs<float>(), g.dataAs<float>(), n);
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
