// Adam and AdamW with torch.optim's update rules. Per parameter, at step t (counted from 1):
//
//   Adam:  g += weight_decay * p                       (L2: the decay goes through the moments)
//   AdamW: p *= 1 - lr * weight_decay                  (decoupled: the decay bypasses them)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   v_max = max(v_max, v)                              (amsgrad only; then v_max replaces v below)
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// which is p -= lr * m_hat / (sqrt(v_hat) + eps) with the bias-corrected m_hat, v_hat. The
// moments are kept in the parameter's dtype and on its device, as torch keeps them. On the host
// the arithmetic is double; a CUDA parameter is updated on the GPU in its dtype (see
// runtime/Optimizer.h).
#pragma once

#include "runtime/Optimizer.h"

namespace enc {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weightDecay = 0; // L2, added to the gradient
  bool amsgrad = false;
};

// torch.optim.AdamW's defaults: as Adam's, but weight decay 1e-2, decoupled from the gradient.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weightDecay = 1e-2;
  bool amsgrad = false;
};

class Adam : public Optimizer {
public:
  explicit Adam(AdamOptions options) : Adam("Adam", options, false) {}

  void step(Layer &layer, const std::map<std::string, Tensor> &grads) override;

  // Steps taken for a parameter of `layer` (0 before its first).
  int64_t steps(const Layer &layer, const std::string &name) const;

protected:
  Adam(const char *name, AdamOptions options, bool decoupledWeightDecay);

private:
  struct State {
    int64_t step = 0;
    Tensor expAvg, expAvgSq, maxExpAvgSq; // m, v, v_max, on the parameter's device
  };
  AdamOptions options_; // its lr is the initial one: lr() is the current one
  bool decoupled_;
  std::map<const Layer *, std::map<std::string, State>> state_;
};

class AdamW : public Adam {
public:
  explicit AdamW(AdamWOptions o)
      : Adam("AdamW", {o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.amsgrad}, true) {}
};

} // namespace enc
