// Learning-rate schedules with torch.optim.lr_scheduler's meaning, for any Optimizer.
//
// A schedule reads the optimizer's learning rate when it is made (the base rate), sets the rate
// of epoch 0 at once, and each step() advances one epoch and sets that epoch's rate:
//
//   SGD sgd({.lr = 0.1});
//   CosineAnnealingLR schedule(sgd, /*tMax=*/50);
//   for (int epoch = 0; epoch < 50; ++epoch) {
//     ... forward, backward, sgd.step(layer, grads) for every batch ...
//     schedule.step();
//   }
//
// Rates come from closed forms of the epoch, so they do not drift with the number of steps.
// The optimizer must outlive its schedule.
#pragma once

#include "runtime/Optimizer.h"

#include <cstdint>

namespace enc {

class LrScheduler {
public:
  virtual ~LrScheduler() = default;

  // Advances one epoch and sets the optimizer's learning rate to that epoch's.
  void step();
  int64_t epoch() const { return epoch_; }
  double baseLr() const { return baseLr_; }
  // The rate at `epoch` (epoch 0: the rate the schedule starts with).
  virtual double lrAt(int64_t epoch) const = 0;

protected:
  explicit LrScheduler(Optimizer &optimizer) : optimizer_(optimizer), baseLr_(optimizer.lr()) {}
  // Sets epoch 0's rate; every subclass's constructor calls it last (lrAt is virtual).
  void start() { optimizer_.setLr(lrAt(0)); }

private:
  Optimizer &optimizer_;
  double baseLr_;
  int64_t epoch_ = 0;
};

// torch's StepLR: base_lr * gamma^floor(epoch / step_size).
class StepLR : public LrScheduler {
public:
  StepLR(Optimizer &optimizer, int64_t stepSize, double gamma = 0.1);
  double lrAt(int64_t epoch) const override;

private:
  int64_t stepSize_;
  double gamma_;
};

// torch's CosineAnnealingLR: eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2,
// which falls from base_lr to eta_min over T_max epochs (and rises again after, as torch's does).
class CosineAnnealingLR : public LrScheduler {
public:
  CosineAnnealingLR(Optimizer &optimizer, int64_t tMax, double etaMin = 0);
  double lrAt(int64_t epoch) const override;

private:
  int64_t tMax_;
  double etaMin_;
};

// A linear warm-up, torch's LinearLR: base_lr * factor, where factor goes linearly from
// startFactor at epoch 0 to endFactor at epoch totalIters and stays there.
class LinearWarmup : public LrScheduler {
public:
  LinearWarmup(Optimizer &optimizer, int64_t totalIters = 5, double startFactor = 1.0 / 3, double endFactor = 1);
  double lrAt(int64_t epoch) const override;

private:
  int64_t totalIters_;
  double startFactor_, endFactor_;
};

} // namespace enc
