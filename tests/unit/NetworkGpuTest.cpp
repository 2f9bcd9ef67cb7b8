// NetworkGpu: a network on the GPU (and, in every test run, on the CUDA emulator).
#include "Networks.h"

#include "compiler/Pipeline.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nvrtc.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

// On the GPU (and, in every test run, on the CUDA emulator): a network's kernels and tensors are
// named by path, which CUDA C++ spells as mangled identifiers.
// The CUDA module keeps one function per kernel up to names: a stack of three blocks per stage
// has its blocks' kernels once, and NVRTC compiles that module.
TEST(NetworkGpu, RepeatedBlocksAreOneCudaFunction) {
  Layer net(networks(), "Stack", {{"C", "4"}, {"N", "3"}}, {});
  ir::Program sized = ir::Pipeline().specializeSizes(
      net.program(), {{"B", ir::intImm(2)}, {"H", ir::intImm(8)}, {"W", ir::intImm(8)}});
  ir::LoopProgram loops = ir::Pipeline().lower(sized, {.target = ir::Target::GPU});
  codegen::CudaModuleSource module = codegen::emitCudaModule(loops);
  ASSERT_EQ(module.functions.size(), loops.kernels.size());
  std::map<std::string, std::string> byOutput; // kernel output -> function
  for (size_t i = 0; i < loops.kernels.size(); ++i) byOutput[loops.kernels[i].output] = module.functions[i];
  EXPECT_LT(module.distinct * 2, loops.kernels.size()) << module.distinct << " of " << loops.kernels.size();
  for (const auto &[a, b] : {std::pair{"layer1.1.conv1", "layer1.2.conv1"}, std::pair{"layer2.1.conv2", "layer2.2.conv2"}}) {
    auto find = [&](const std::string &prefix) {
      for (const auto &[out, f] : byOutput)
        if (out.rfind(prefix, 0) == 0) return f;
      return std::string();
    };
    EXPECT_FALSE(find(a).empty()) << a;
    EXPECT_EQ(find(a), find(b)) << a << " / " << b;
  }
  if (cuda::nvrtcAvailable()) EXPECT_NO_THROW(cuda::compile(module.source, {.arch = "sm_80"}));
}

TEST(NetworkGpu, StackMatchesTheCpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  LayerOptions gpu = f64();
  gpu.device = Device::CUDA;
  // Two blocks per stage: the repeated blocks' kernels run as one CUDA function each.
  Layer cpu(networks(), "Stack", {{"C", "2"}, {"N", "2"}}, f64()), dev(networks(), "Stack", {{"C", "2"}, {"N", "2"}}, gpu);
  for (const auto &[name, value] : cpu.params()) dev.setParam(name, value);
  Tensor x = random({2, 3, 4, 4}, 9), gy = random({2, 3}, 10);
  EXPECT_LT(maxDiff(cpu.forward({{"X", x}}).at("Y"), dev.forward({{"X", x}}).at("Y").cpu()), 1e-12);
  Tensors gc = cpu.backward({{"Y", gy}}), gd = dev.backward({{"Y", gy}});
  for (const char *name : {"X", "stem.weight", "layer2.0.downsample.0.weight", "fc.bias"})
    EXPECT_LT(maxDiff(gc.at(name), gd.at(name).cpu()), 1e-11) << name;
}

} // namespace
} // namespace enc
