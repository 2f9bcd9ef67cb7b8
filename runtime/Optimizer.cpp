#include "runtime/Optimizer.h"

namespace enc {

void SGD::step(Layer &layer, const std::map<std::string, Tensor> &grads) {
  const SGDOptions &o = options_;
  for (const auto &[name, grad] : grads) {
    if (!layer.isParameter(name)) continue;
    // The update runs on the host; setParam puts the result back on the layer's device.
    Tensor p = layer.params().at(name).cpu().clone();
    Tensor g = grad.cpu().to(p.dtype());
    if (g.shape() != p.shape())
      fail("SGD: gradient of '{}' has shape {}, parameter {}", name, shapeString(g.shape()), shapeString(p.shape()));
    auto &velocity = velocity_[&layer];
    bool first = !velocity.count(name);
    if (o.momentum != 0 && first) velocity[name] = Tensor(p.dtype(), p.shape());
    for (int64_t i = 0, n = p.numel(); i < n; ++i) {
      double gi = g.at(i) + o.weightDecay * p.at(i);
      double step = gi;
      if (o.momentum != 0) {
        Tensor &v = velocity[name];
        double vi = first ? gi : o.momentum * v.at(i) + (1 - o.dampening) * gi;
        v.set(i, vi);
        step = o.nesterov ? gi + o.momentum * vi : vi;
      }
      p.set(i, p.at(i) - o.lr * step);
    }
    layer.setParam(name, p);
  }
}

} // namespace enc
