// The GPU device: ranks spread over a machine's GPUs, the chosen driver loads, and asking for a GPU
// where there is none is a clear error.
#include "CliTestSupport.h"
#include "GpuLayerCheck.h"
#include "LayerCases.h"
#include "ReferenceMath.h"

#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

// Ranks on one machine spread over its GPUs: ENC_CUDA_DEVICE, else LOCAL_RANK modulo the
// number of GPUs (here the emulator reporting three).
TEST(GpuDevice, PicksTheGpuOfItsLocalRank) {
#ifdef ENC_CUDA_EMULATOR
  auto deviceLine = [](const std::string &env) {
    std::string cmd = fmt::format("ENC_CUDA_DRIVER={} ENC_EMULATOR_DEVICES=3 {} {} bench --layer ReLU --device cuda "
                                  "--input X=random:4 --runs 1 --forward-only 2>&1",
                                  ENC_CUDA_EMULATOR, env, ENCC_BINARY);
    std::string out;
    if (FILE *p = ::popen(cmd.c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      ::pclose(p);
    }
    return out;
  };
  EXPECT_NE(deviceLine("").find("(GPU 0)"), std::string::npos) << deviceLine("");
  EXPECT_NE(deviceLine("LOCAL_RANK=4").find("(GPU 1)"), std::string::npos) << deviceLine("LOCAL_RANK=4");
  EXPECT_NE(deviceLine("LOCAL_RANK=4 ENC_CUDA_DEVICE=2").find("(GPU 2)"), std::string::npos);
  std::string bad = deviceLine("ENC_CUDA_DEVICE=3");
  EXPECT_NE(bad.find("ENC_CUDA_DEVICE=3 is not a GPU of this machine"), std::string::npos) << bad;
#else
  GTEST_SKIP() << "built without the CUDA emulator";
#endif
}

// A driver chosen with ENC_CUDA_DRIVER (the suite's second run, on the CUDA emulator) must load:
// otherwise every GPU test would skip quietly.
TEST(GpuDevice, LoadsTheChosenDriver) {
  const char *chosen = std::getenv("ENC_CUDA_DRIVER");
  if (!chosen || !*chosen) GTEST_SKIP() << "ENC_CUDA_DRIVER is not set";
  ASSERT_NE(cuda::Gpu::get(), nullptr) << cuda::Driver::unavailableReason();
}

// Without a GPU, asking for one is a clear error; with one, a CUDA layer runs.
TEST(GpuDevice, CudaLayerWithoutGpuIsAClearError) {
  if (cuda::Gpu::get()) GTEST_SKIP() << "a GPU is present: nothing to refuse";
  try {
    Layer l(lib(), "ReLU", {}, LayerOptions{DType::F32, 0, true, true, Device::CUDA});
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("needs a GPU"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("--device cpu"), std::string::npos) << e.hint();
  }
  EXPECT_THROW(Tensor(DType::F32, {2}, Device::CUDA), Error);
}

} // namespace
} // namespace enc
