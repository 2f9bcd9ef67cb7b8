#include "runtime/LrScheduler.h"

#include <algorithm>
#include <cmath>

namespace enc {

void LrScheduler::step() {
  ++epoch_;
  optimizer_.setLr(lrAt(epoch_));
}

StepLR::StepLR(Optimizer &optimizer, int64_t stepSize, double gamma)
    : LrScheduler(optimizer), stepSize_(stepSize), gamma_(gamma) {
  if (stepSize <= 0) fail("StepLR: step size {} must be positive (epochs between decays)", stepSize);
  if (!(gamma >= 0)) fail("StepLR: gamma {} must be >= 0", gamma);
  start();
}

double StepLR::lrAt(int64_t epoch) const {
  return baseLr() * std::pow(gamma_, static_cast<double>(epoch / stepSize_));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer &optimizer, int64_t tMax, double etaMin)
    : LrScheduler(optimizer), tMax_(tMax), etaMin_(etaMin) {
  if (tMax <= 0) fail("CosineAnnealingLR: T_max {} must be positive (epochs to anneal over)", tMax);
  if (!(etaMin >= 0)) fail("CosineAnnealingLR: eta_min {} must be >= 0", etaMin);
  start();
}

double CosineAnnealingLR::lrAt(int64_t epoch) const {
  double phase = M_PI * static_cast<double>(epoch) / static_cast<double>(tMax_);
  return etaMin_ + (baseLr() - etaMin_) * (1 + std::cos(phase)) / 2;
}

LinearWarmup::LinearWarmup(Optimizer &optimizer, int64_t totalIters, double startFactor, double endFactor)
    : LrScheduler(optimizer), totalIters_(totalIters), startFactor_(startFactor), endFactor_(endFactor) {
  if (totalIters <= 0) fail("LinearWarmup: total iterations {} must be positive", totalIters);
  // torch's ranges: a start factor of 0 would make epoch 0's rate 0.
  if (!(startFactor > 0 && startFactor <= 1)) fail("LinearWarmup: start factor {} must be in (0, 1]", startFactor);
  if (!(endFactor >= 0 && endFactor <= 1)) fail("LinearWarmup: end factor {} must be in [0, 1]", endFactor);
  start();
}

double LinearWarmup::lrAt(int64_t epoch) const {
  double done = static_cast<double>(std::min(epoch, totalIters_)) / static_cast<double>(totalIters_);
  return baseLr() * (startFactor_ + (endFactor_ - startFactor_) * done);
}

} // namespace enc
