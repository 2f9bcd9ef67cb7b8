// Stochastic gradient descent with momentum and weight decay, with torch.optim.SGD's
// conventions: g += weight_decay * p; v = momentum * v + (1 - dampening) * g (v = g on the
// first step); p -= lr * (nesterov ? g + momentum * v : v).
#pragma once

#include "runtime/Layer.h"

#include <map>
#include <string>

namespace enc {

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weightDecay = 0;
  bool nesterov = false;
};

class SGD {
public:
  explicit SGD(SGDOptions options) : options_(options) {}

  // Updates `layer`'s parameters from the gradients Layer::backward returned (entries that
  // are not parameters, such as the input's gradient, are ignored). Buffers are not touched.
  void step(Layer &layer, const std::map<std::string, Tensor> &grads);

private:
  SGDOptions options_;
  std::map<const Layer *, std::map<std::string, Tensor>> velocity_;
};

} // namespace enc
