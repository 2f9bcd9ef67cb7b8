// The optimizers on the GPU (also run on the CUDA emulator: the suite's name matches its filter): the
// references of OptimizerReference.h, the CPU path's results, and state kept on the device.
#include "OptimizerReference.h"

#include "runtime/Adam.h"
#include "runtime/Gpu.h"
#include "runtime/LrScheduler.h"
#include "runtime/Optimizer.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enc {
namespace {

using namespace enc::testing;


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

// Every Adam configuration of OptimizerAdamTest and OptimizerAdamWTest, in f64 and in f32.
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

} // namespace
} // namespace enc
