// The optimizers and learning-rate schedules against torch.optim's update rules and
// lr_scheduler's closed forms, written out naively in the test in double precision.
#include "runtime/Adam.h"
#include "runtime/Gpu.h"
#include "runtime/LrScheduler.h"
#include "runtime/Optimizer.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enc {
namespace {

Tensor vec(std::initializer_list<double> v) {
  Tensor t(DType::F64, {static_cast<int64_t>(v.size())});
  int64_t i = 0;
  for (double x : v) t.set(i++, x);
  return t;
}

// `tolerance` is relative to the reference value's magnitude (at least 1).
void expectSgdMatches(SGDOptions o, DType dtype = DType::F64, Device device = Device::CPU, double tolerance = 1e-15) {
  LayerOptions lo;
  lo.dtype = dtype;
  lo.device = device;
  Layer layer(Library::shipped(), "Linear", {{"in_features", "1"}, {"out_features", "3"}}, lo);
  Tensor w0 = layer.params().at("weight").cpu(); // [3, 1]
  std::vector<double> p = {w0.at(0), w0.at(1), w0.at(2)}, v(3, 0);
  const std::vector<std::vector<double>> grads = {{0.5, -1, 2}, {0.25, 0, -3}, {1, 1, 1}, {-2, 0.5, 0}};
  SGD sgd(o);
  for (size_t step = 0; step < grads.size(); ++step) {
    Tensor g = vec({grads[step][0], grads[step][1], grads[step][2]}).reshape({3, 1}).to(dtype).to(device);
    sgd.step(layer, {{"weight", g}, {"X", vec({9})}}); // X is not a parameter: ignored
    Tensor w = layer.params().at("weight");
    EXPECT_EQ(w.device(), device);
    w = w.cpu();
    for (int i = 0; i < 3; ++i) {
      double gi = grads[step][static_cast<size_t>(i)] + o.weightDecay * p[i];
      double d = gi;
      if (o.momentum != 0) {
        v[i] = step == 0 ? gi : o.momentum * v[i] + (1 - o.dampening) * gi;
        d = o.nesterov ? gi + o.momentum * v[i] : v[i];
      }
      p[i] -= o.lr * d;
      EXPECT_NEAR(w.at(i), p[i], tolerance * std::max(1.0, std::abs(p[i]))) << "step " << step << " element " << i;
    }
  }
}

TEST(OptimizerSGD, PlainStep) { expectSgdMatches({.lr = 0.1}); }
TEST(OptimizerSGD, MomentumAndWeightDecay) { expectSgdMatches({.lr = 0.05, .momentum = 0.9, .weightDecay = 0.01}); }
TEST(OptimizerSGD, DampeningAndNesterov) {
  expectSgdMatches({.lr = 0.05, .momentum = 0.8, .dampening = 0.1, .nesterov = true});
}

TEST(OptimizerSGD, LeavesBuffersAlone) {
  Layer bn(Library::shipped(), "SyncBatchNorm", {{"num_features", "2"}});
  Tensor rm = bn.params().at("running_mean").clone();
  SGD sgd({.lr = 1});
  sgd.step(bn, {{"running_mean", vec({5, 5})}});
  EXPECT_EQ(bn.params().at("running_mean").at(0), rm.at(0));
  EXPECT_FALSE(bn.isParameter("running_mean"));
  EXPECT_TRUE(bn.isParameter("weight"));
}

// ---- Adam, AdamW ----

// Linear(3 -> 2): weight [2, 3] and bias [2], 8 parameters in all; the same values on either device.
Layer linear(DType dtype, Device device) {
  LayerOptions lo;
  lo.dtype = dtype;
  lo.seed = 3;
  lo.device = device;
  return Layer(Library::shipped(), "Linear", {{"in_features", "3"}, {"out_features", "2"}}, lo);
}
Layer linear64() { return linear(DType::F64, Device::CPU); }

// Four steps of gradients, one per parameter element (weight's 6, then bias's 2); the zeros
// let weight decay alone move an element.
const std::vector<std::vector<double>> kGrads = {{0.5, -1, 2, 0, 0.1, -0.3, 1, -2},
                                                 {0.25, 0, -3, 0, 0.2, 0.3, -1, 0.5},
                                                 {1, 1, 1, 0, -0.1, 0, 2, 2},
                                                 {-0.5, 2, 0.5, 0, 0.4, -0.2, 0, -1}};
const std::vector<double> kLrs = {0.1, 0.05, 0.05, 0.02}; // the rate changes mid-run, as a schedule does

std::vector<double> paramsOf(const Layer &l) {
  std::vector<double> v;
  for (const char *name : {"weight", "bias"}) {
    Tensor t = l.params().at(name).cpu();
    for (int64_t i = 0; i < t.numel(); ++i) v.push_back(t.at(i));
  }
  return v;
}

std::map<std::string, Tensor> gradsOf(const std::vector<double> &g, DType dtype = DType::F64,
                                      Device device = Device::CPU) {
  Tensor w(dtype, {2, 3}), b(dtype, {2});
  for (int64_t i = 0; i < 6; ++i) w.set(i, g[static_cast<size_t>(i)]);
  for (int64_t i = 0; i < 2; ++i) b.set(i, g[static_cast<size_t>(6 + i)]);
  return {{"weight", w.to(device)}, {"bias", b.to(device)}, {"X", vec({9, 9, 9})}}; // X is not a parameter: ignored
}

// The textbook form: m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), p -= lr * m_hat / (sqrt(v_hat) + eps).
// `relative`: the tolerance scales with the reference value's magnitude (at least 1).
void expectAdamMatches(Optimizer &opt, AdamOptions o, bool decoupled, double tolerance = 1e-13,
                       DType dtype = DType::F64, Device device = Device::CPU, bool relative = false) {
  Layer layer = linear(dtype, device);
  std::vector<double> p = paramsOf(layer), m(p.size(), 0), v(p.size(), 0), vMax(p.size(), 0);
  for (size_t step = 0; step < kGrads.size(); ++step) {
    double lr = kLrs[step], t = static_cast<double>(step + 1);
    opt.setLr(lr);
    opt.step(layer, gradsOf(kGrads[step], dtype, device));
    for (const auto &[name, param] : layer.params()) EXPECT_EQ(param.device(), device) << name;
    std::vector<double> got = paramsOf(layer);
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[step][i];
      if (decoupled) p[i] = p[i] - lr * o.weightDecay * p[i];
      else g = g + o.weightDecay * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      vMax[i] = std::max(vMax[i], v[i]);
      double mHat = m[i] / (1 - std::pow(o.beta1, t));
      double vHat = (o.amsgrad ? vMax[i] : v[i]) / (1 - std::pow(o.beta2, t));
      p[i] = p[i] - lr * mHat / (std::sqrt(vHat) + o.eps);
      EXPECT_NEAR(got[i], p[i], tolerance * (relative ? std::max(1.0, std::abs(p[i])) : 1))
          << "step " << step << " element " << i;
    }
  }
}

TEST(OptimizerAdam, DefaultsAreTorchs) {
  AdamOptions a;
  EXPECT_EQ(a.lr, 1e-3);
  EXPECT_EQ(a.beta1, 0.9);
  EXPECT_EQ(a.beta2, 0.999);
  EXPECT_EQ(a.eps, 1e-8);
  EXPECT_EQ(a.weightDecay, 0);
  EXPECT_FALSE(a.amsgrad);
  EXPECT_EQ(AdamWOptions{}.weightDecay, 1e-2);
}

TEST(OptimizerAdam, MatchesTheReference) {
  AdamOptions o{.beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3}; // large eps: it shows in the result
  Adam adam(o);
  expectAdamMatches(adam, o, false);
}

TEST(OptimizerAdam, L2WeightDecayGoesThroughTheMoments) {
  AdamOptions o{.weightDecay = 0.1};
  Adam adam(o);
  expectAdamMatches(adam, o, false);
}

TEST(OptimizerAdam, Amsgrad) {
  AdamOptions o{.beta2 = 0.5, .weightDecay = 0.05, .amsgrad = true}; // small beta2: v falls, v_max does not
  Adam adam(o);
  expectAdamMatches(adam, o, false);
}

TEST(OptimizerAdamW, DecoupledWeightDecay) {
  AdamWOptions w{.weightDecay = 0.1};
  AdamW adamw(w);
  expectAdamMatches(adamw, {.weightDecay = 0.1}, true);
}

TEST(OptimizerAdamW, AmsgradAndDefaults) {
  AdamWOptions w{.amsgrad = true};
  AdamW adamw(w);
  expectAdamMatches(adamw, {.weightDecay = 1e-2, .amsgrad = true}, true);
}

// Where a parameter's gradient is zero, AdamW only shrinks it by 1 - lr * wd (its moments stay
// zero), while Adam's L2 decay enters the gradient and moves it by about lr towards zero.
TEST(OptimizerAdamW, DiffersFromAdamWithWeightDecayAsDecoupled) {
  const double lr = 0.1, wd = 0.5;
  Layer a = linear64(), w = linear64();
  std::vector<double> p0 = paramsOf(a);
  Adam adam({.lr = lr, .weightDecay = wd});
  AdamW adamw({.lr = lr, .weightDecay = wd});
  std::vector<double> zeros(8, 0.0);
  adam.step(a, gradsOf(zeros));
  adamw.step(w, gradsOf(zeros));
  std::vector<double> pa = paramsOf(a), pw = paramsOf(w);
  for (size_t i = 0; i < p0.size(); ++i) {
    ASSERT_GT(std::abs(p0[i]), 1e-3) << "the test wants parameters away from zero";
    EXPECT_DOUBLE_EQ(pw[i], p0[i] * (1 - lr * wd)) << i;
    // Adam's first step is lr * g / (|g| + eps) with g = wd * p: lr towards zero, less a hair of eps.
    EXPECT_NEAR(pa[i], p0[i] - std::copysign(lr, p0[i]), 1e-4) << i;
    EXPECT_GT(std::abs(pw[i] - pa[i]), 0.01) << i;
  }
}

TEST(OptimizerAdam, F32LayerFollowsTheReference) {
  Layer layer(Library::shipped(), "Linear", {{"in_features", "3"}, {"out_features", "2"}});
  std::vector<double> p = paramsOf(layer);
  Adam adam({.lr = 0.01});
  Tensor gw(DType::F32, {2, 3}), gb(DType::F32, {2});
  for (int64_t i = 0; i < 6; ++i) gw.set(i, 0.5 - 0.25 * static_cast<double>(i));
  for (int step = 0; step < 3; ++step) adam.step(layer, {{"weight", gw}, {"bias", gb}});
  std::vector<double> got = paramsOf(layer);
  // Constant gradients: m_hat = g and v_hat = g^2 at every step, so each step is lr * sign(g).
  for (size_t i = 0; i < 6; ++i) {
    double g = 0.5 - 0.25 * static_cast<double>(i);
    EXPECT_NEAR(got[i], p[i] - 3 * 0.01 * (g > 0 ? 1 : -1) * std::abs(g) / (std::abs(g) + 1e-8), 1e-6) << i;
  }
  EXPECT_EQ(got[6], p[6]); // zero gradient, no decay: unchanged
  EXPECT_EQ(adam.steps(layer, "weight"), 3);
}

TEST(OptimizerAdam, KeepsStatePerLayerAndName) {
  Layer a = linear64(), b = linear64();
  Adam adam({.lr = 0.1});
  adam.step(a, gradsOf(kGrads[0]));
  adam.step(a, gradsOf(kGrads[1]));
  adam.step(b, {{"bias", gradsOf(kGrads[0]).at("bias")}});
  EXPECT_EQ(adam.steps(a, "weight"), 2);
  EXPECT_EQ(adam.steps(a, "bias"), 2);
  EXPECT_EQ(adam.steps(b, "bias"), 1);
  EXPECT_EQ(adam.steps(b, "weight"), 0);
}

TEST(OptimizerAdam, ShapeMismatchNamesBothShapesAndChangesNothing) {
  Layer layer = linear64();
  std::vector<double> before = paramsOf(layer);
  Adam adam({});
  auto grads = gradsOf(kGrads[0]);
  grads["weight"] = Tensor(DType::F64, {3, 2});
  try {
    adam.step(layer, grads); // "bias" comes first and is fine: it must not move either
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("Adam: gradient of 'weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3, 2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty());
  }
  EXPECT_EQ(paramsOf(layer), before);
  EXPECT_EQ(adam.steps(layer, "bias"), 0);
}

TEST(OptimizerAdam, RejectsBadOptions) {
  EXPECT_THROW(Adam({.beta1 = 1}), Error);
  EXPECT_THROW(Adam({.beta2 = -0.1}), Error);
  EXPECT_THROW(Adam({.lr = -1}), Error);
  EXPECT_THROW(AdamW({.weightDecay = -1}), Error);
  Adam adam({});
  EXPECT_THROW(adam.setLr(std::nan("")), Error);
}

// ---- copies: setParam shares a value of the layer's dtype and device ----

TEST(OptimizerCopies, SetParamSharesAValueOfTheLayersDtypeAndDevice) {
  Layer layer = linear64();
  Tensor same = vec({1, 2});
  layer.setParam("bias", same);
  EXPECT_EQ(layer.params().at("bias").data(), same.data());
  Tensor narrow = vec({3, 4}).to(DType::F32);
  layer.setParam("bias", narrow);
  EXPECT_NE(layer.params().at("bias").data(), narrow.data());
  EXPECT_EQ(layer.params().at("bias").dtype(), DType::F64);
  EXPECT_EQ(layer.params().at("bias").at(1), 4);
}

// A host step writes each parameter's new value into one copy (allocated once, handed to the
// layer without a second copy); a state dict taken before the step keeps the old values.
TEST(OptimizerCopies, AHostStepCopiesEachParameterOnce) {
  for (bool adam : {false, true}) {
    Layer layer = linear64();
    SGD sgd({.lr = 0.1, .momentum = 0.9});
    Adam adamOpt({.lr = 0.1});
    Optimizer &o = adam ? static_cast<Optimizer &>(adamOpt) : sgd;
    o.step(layer, gradsOf(kGrads[0])); // allocates the state
    std::map<std::string, Tensor> before = layer.stateDict();
    const double bias0 = before.at("bias").at(0);
    const std::map<std::string, Tensor> grads = gradsOf(kGrads[1]);
    resetAllocationStats();
    o.step(layer, grads);
    EXPECT_EQ(allocationStats().allocations, 2) << o.name() << ": weight and bias, once each";
    EXPECT_EQ(before.at("bias").at(0), bias0) << o.name();
    EXPECT_NE(layer.params().at("bias").at(0), bias0) << o.name();
  }
}

// ---- on the GPU (also run on the CUDA emulator: the suite's name matches its filter) ----

#define REQUIRE_GPU() \
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason()

TEST(OptimizerGpu, SgdFollowsTheReference) {
  REQUIRE_GPU();
  for (const SGDOptions &o : {SGDOptions{.lr = 0.1}, SGDOptions{.lr = 0.05, .momentum = 0.9, .weightDecay = 0.01},
                              SGDOptions{.lr = 0.05, .momentum = 0.8, .dampening = 0.1, .nesterov = true}}) {
    expectSgdMatches(o, DType::F64, Device::CUDA, 1e-13);
    expectSgdMatches(o, DType::F32, Device::CUDA, 1e-6);
  }
}

// Every Adam configuration of the tests above, in f64 and in f32.
TEST(OptimizerGpu, AdamFollowsTheReference) {
  REQUIRE_GPU();
  const std::vector<AdamOptions> cases = {{.beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3},
                                          {.weightDecay = 0.1},
                                          {.beta2 = 0.5, .weightDecay = 0.05, .amsgrad = true}};
  for (const AdamOptions &o : cases)
    for (DType dtype : {DType::F64, DType::F32}) {
      Adam adam(o);
      expectAdamMatches(adam, o, false, dtype == DType::F64 ? 1e-12 : 1e-6, dtype, Device::CUDA, true);
    }
  for (bool amsgrad : {false, true})
    for (DType dtype : {DType::F64, DType::F32}) {
      AdamW adamw({.weightDecay = 0.1, .amsgrad = amsgrad});
      expectAdamMatches(adamw, {.weightDecay = 0.1, .amsgrad = amsgrad}, true, dtype == DType::F64 ? 1e-12 : 1e-6,
                        dtype, Device::CUDA, true);
    }
}

// A larger layer over several steps: the parameters on the GPU equal those the CPU path computes
// to rounding, and after the first step (which compiles the updates) nothing of a parameter's
// size is allocated on the host: parameters, gradients and state stay on the GPU.
void expectDeviceMatchesHost(Optimizer &onCpu, Optimizer &onGpu, DType dtype, double tolerance) {
  LayerOptions lo;
  lo.dtype = dtype;
  lo.seed = 5;
  const std::map<std::string, std::string> sizes = {{"in_features", "64"}, {"out_features", "32"}};
  Layer cpu(Library::shipped(), "Linear", sizes, lo);
  lo.device = Device::CUDA;
  Layer gpu(Library::shipped(), "Linear", sizes, lo);
  const int64_t biasBytes = 32 * static_cast<int64_t>(dtypeSize(dtype));
  Rng rng(11);
  for (int step = 0; step < 5; ++step) {
    onCpu.setLr(0.01 / (step + 1)); // as a schedule would
    onGpu.setLr(0.01 / (step + 1));
    Tensor gw(dtype, {32, 64}), gb(dtype, {32});
    for (int64_t i = 0; i < gw.numel(); ++i) gw.set(i, rng.normal(0, 1));
    for (int64_t i = 0; i < gb.numel(); ++i) gb.set(i, rng.normal(0, 0.1));
    std::map<std::string, Tensor> onDevice = {{"weight", gw.to(Device::CUDA)}, {"bias", gb.to(Device::CUDA)}};
    resetAllocationStats();
    onGpu.step(gpu, onDevice);
    if (step > 0)
      EXPECT_LT(allocationStats().largestBytes, biasBytes) << onGpu.name() << " step " << step << ": a host copy";
    onCpu.step(cpu, {{"weight", gw}, {"bias", gb}});
    for (const char *name : {"weight", "bias"}) {
      ASSERT_TRUE(gpu.params().at(name).isCuda());
      Tensor want = cpu.params().at(name), got = gpu.params().at(name).cpu();
      for (int64_t i = 0; i < want.numel(); ++i)
        ASSERT_NEAR(got.at(i), want.at(i), tolerance * std::max(1.0, std::abs(want.at(i))))
            << onGpu.name() << " " << dtypeName(dtype) << " step " << step << " " << name << "[" << i << "]";
    }
  }
}

TEST(OptimizerGpu, MatchesTheCpuPathAndKeepsStateOnTheDevice) {
  REQUIRE_GPU();
  for (DType dtype : {DType::F32, DType::F64}) {
    const double tolerance = dtype == DType::F64 ? 1e-12 : 1e-6;
    SGDOptions sgd{.lr = 0.01, .momentum = 0.9, .weightDecay = 1e-3, .nesterov = true};
    SGD sgdCpu(sgd), sgdGpu(sgd);
    expectDeviceMatchesHost(sgdCpu, sgdGpu, dtype, tolerance);
    Adam adamCpu({.weightDecay = 0.01}), adamGpu({.weightDecay = 0.01});
    expectDeviceMatchesHost(adamCpu, adamGpu, dtype, tolerance);
    AdamW adamwCpu({.amsgrad = true}), adamwGpu({.amsgrad = true});
    expectDeviceMatchesHost(adamwCpu, adamwGpu, dtype, tolerance);
  }
}

// A device step allocates the update kernel's outputs (the new parameter and, for Adam, its
// moments: one kernel) and the step's numbers where they change, nothing more: the new
// parameter is not copied again.
TEST(OptimizerGpu, AStepAllocatesOnlyTheUpdatesOutputs) {
  REQUIRE_GPU();
  for (bool adam : {false, true}) {
    Layer layer = linear(DType::F32, Device::CUDA);
    SGD sgd({.lr = 0.1});
    Adam adamOpt({.lr = 0.1});
    Optimizer &o = adam ? static_cast<Optimizer &>(adamOpt) : sgd;
    auto grads = gradsOf(kGrads[0], DType::F32, Device::CUDA);
    o.step(layer, grads); // compiles, allocates the state
    o.step(layer, grads);
    const DeviceMemoryStats before = cuda::Gpu::get()->allocator().stats();
    o.step(layer, grads);
    const int64_t allocations = cuda::Gpu::get()->allocator().stats().allocations - before.allocations;
    // Adam's bias corrections change every step: its numbers (S) go over anew, one small tensor.
    EXPECT_EQ(allocations, adam ? 2 * 3 + 1 : 2) << o.name() << ": per parameter " << (adam ? "Q, M2 and V2" : "Q");
  }
}

TEST(OptimizerGpu, KeepsStatePerLayerAndName) {
  REQUIRE_GPU();
  Layer a = linear(DType::F32, Device::CUDA), b = linear(DType::F32, Device::CUDA);
  Adam adam({.lr = 0.1});
  adam.step(a, gradsOf(kGrads[0], DType::F32, Device::CUDA));
  adam.step(a, gradsOf(kGrads[1], DType::F32, Device::CUDA));
  adam.step(b, {{"bias", gradsOf(kGrads[0], DType::F32, Device::CUDA).at("bias")}});
  EXPECT_EQ(adam.steps(a, "weight"), 2);
  EXPECT_EQ(adam.steps(b, "bias"), 1);
  EXPECT_EQ(adam.steps(b, "weight"), 0);
  // b's bias took one step of lr * sign(g) (m_hat = g, v_hat = g^2); its weight none.
  std::vector<double> p0 = paramsOf(linear(DType::F32, Device::CPU)), pb = paramsOf(b);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(pb[i], p0[i]) << i;
  for (size_t i = 6; i < 8; ++i) EXPECT_NEAR(pb[i], p0[i] - 0.1 * (kGrads[0][i] > 0 ? 1 : -1), 1e-6) << i;
}

TEST(OptimizerGpu, MixedDevicesAreAnError) {
  REQUIRE_GPU();
  Layer gpu = linear(DType::F32, Device::CUDA);
  std::vector<double> before = paramsOf(gpu);
  SGD sgd({.lr = 0.1});
  auto grads = gradsOf(kGrads[0], DType::F32, Device::CUDA);
  grads["weight"] = grads["weight"].cpu();
  try {
    sgd.step(gpu, grads); // "bias" comes first and is fine: it must not move either
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("SGD: gradient of 'weight' (layer Linear) is on the CPU, the parameter on the GPU"),
              std::string::npos)
        << e.what();
    EXPECT_NE(e.hint().find("no parameter was changed"), std::string::npos) << e.hint();
  }
  EXPECT_EQ(paramsOf(gpu), before);
  Layer cpu = linear(DType::F32, Device::CPU);
  Adam adam({});
  try {
    adam.step(cpu, gradsOf(kGrads[0], DType::F32, Device::CUDA));
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("is on the GPU, the parameter on the CPU"), std::string::npos) << e.what();
  }
  EXPECT_EQ(adam.steps(cpu, "bias"), 0);
}

// ---- learning-rate schedules ----

TEST(OptimizerLrScheduler, StepLR) {
  SGD sgd({.lr = 0.2});
  StepLR schedule(sgd, 3, 0.5);
  for (int epoch = 0; epoch < 10; ++epoch) {
    EXPECT_DOUBLE_EQ(sgd.lr(), 0.2 * std::pow(0.5, epoch / 3)) << "epoch " << epoch;
    EXPECT_EQ(schedule.epoch(), epoch);
    schedule.step();
  }
  SGD other({.lr = 1});
  StepLR defaults(other, 2);
  defaults.step();
  defaults.step();
  EXPECT_DOUBLE_EQ(other.lr(), 0.1); // gamma defaults to 0.1
}

TEST(OptimizerLrScheduler, CosineAnnealingLR) {
  Adam adam({.lr = 0.1});
  const double etaMin = 0.001, tMax = 8;
  CosineAnnealingLR schedule(adam, 8, etaMin);
  std::vector<double> seen;
  for (int epoch = 0; epoch <= 16; ++epoch) {
    EXPECT_NEAR(adam.lr(), etaMin + (0.1 - etaMin) * (1 + std::cos(M_PI * epoch / tMax)) / 2, 1e-15) << epoch;
    seen.push_back(adam.lr());
    schedule.step();
  }
  EXPECT_DOUBLE_EQ(seen[0], 0.1);
  EXPECT_NEAR(seen[8], etaMin, 1e-15);  // the bottom at T_max
  EXPECT_NEAR(seen[16], 0.1, 1e-15);    // and back up at 2 T_max, as torch's
  EXPECT_LT(seen[5], seen[4]);
}

TEST(OptimizerLrScheduler, LinearWarmup) {
  SGD sgd({.lr = 0.3});
  LinearWarmup warmup(sgd, 4, 0.25);
  const std::vector<double> want = {0.075, 0.13125, 0.1875, 0.24375, 0.3, 0.3, 0.3};
  for (size_t epoch = 0; epoch < want.size(); ++epoch) {
    EXPECT_NEAR(sgd.lr(), want[epoch], 1e-15) << epoch;
    warmup.step();
  }
}

TEST(OptimizerLrScheduler, DrivesTheStep) {
  Layer layer = linear64();
  double w0 = layer.params().at("bias").at(0);
  SGD sgd({.lr = 1});
  StepLR schedule(sgd, 1, 0.5);
  schedule.step(); // lr 0.5
  Tensor g(DType::F64, {2});
  g.set(0, 1);
  sgd.step(layer, {{"bias", g}});
  EXPECT_DOUBLE_EQ(layer.params().at("bias").at(0), w0 - 0.5);
}

TEST(OptimizerLrScheduler, RejectsBadArguments) {
  SGD sgd({});
  EXPECT_THROW(StepLR(sgd, 0), Error);
  EXPECT_THROW(CosineAnnealingLR(sgd, 0), Error);
  EXPECT_THROW(LinearWarmup(sgd, 5, 0), Error);
}

} // namespace
} // namespace enc
