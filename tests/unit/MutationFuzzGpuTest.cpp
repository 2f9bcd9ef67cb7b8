// Mutated shipped layers that run on the CPU run on the GPU too, with the same results (see
// MutationFuzzTest.cpp; on the CUDA emulator in every test run).
#include "MutationFuzzing.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

namespace enc {
namespace {

using namespace enc::testing;

// Mutated layers that run on the CPU give the same outputs and gradients on the GPU (the
// CUDA emulator in every test run): two code generators checked against each other on
// programs nobody wrote. f64, within 1e-9 of the largest magnitude; NaN and infinity where
// the CPU has them.
TEST(MutationFuzzGpu, MutatedLayersAgreeOnTheGpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  const std::vector<std::string> texts = shippedTexts();
  int compared = 0;
  const auto [firstSeed, endSeed] = seedRange();
  const int toCompare = std::getenv("ENC_FUZZ_SEEDS") ? 1000 : 12;
  for (uint64_t seed = firstSeed; seed < endSeed && compared < toCompare; ++seed) {
    std::mt19937_64 rng(seed);
    const std::string text = mutate(texts[seed % texts.size()], rng);
    std::map<std::string, Tensor> cpu;
    try {
      compileEverything(text);
      cpu = runLayers(text, Device::CPU);
    } catch (const Error &) {
      continue;
    }
    if (cpu.empty()) continue;
    ++compared;
    SCOPED_TRACE(fmt::format("seed {}\n--- text ---\n{}", seed, text));
    std::map<std::string, Tensor> gpu;
    try {
      gpu = runLayers(text, Device::CUDA);
    } catch (const Error &e) {
      ADD_FAILURE() << "runs on the CPU but not on the GPU: " << e.what();
      continue;
    }
    ASSERT_EQ(gpu.size(), cpu.size());
    for (const auto &[what, c] : cpu) {
      const Tensor &g = gpu.at(what);
      ASSERT_EQ(g.shape(), c.shape()) << what;
      double scale = 1, worst = 0;
      for (int64_t i = 0; i < c.numel(); ++i)
        if (std::isfinite(c.at(i))) scale = std::max(scale, std::abs(c.at(i)));
      for (int64_t i = 0; i < c.numel(); ++i) {
        const double a = c.at(i), b = g.at(i);
        if (!std::isfinite(a)) {
          EXPECT_TRUE(std::isnan(a) ? std::isnan(b) : a == b) << what << " [" << i << "]: cpu " << a << " gpu " << b;
          continue;
        }
        worst = std::max(worst, std::abs(a - b));
      }
      EXPECT_LE(worst / scale, 1e-9) << what;
    }
  }
  if (toCompare == 12) EXPECT_EQ(compared, 12);
  else EXPECT_GT(compared, 0);
}

} // namespace
} // namespace enc
