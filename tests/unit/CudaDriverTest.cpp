#include "runtime/CudaDriver.h"
#include "runtime/Nvrtc.h"

#include "support/Error.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <dlfcn.h>

#include <cmath>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace enc::cuda {
namespace {

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

// Whether libcuda.so.1 can be loaded at all, asked independently of Driver.
bool libcudaLoads() {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib) dlclose(lib);
  return lib != nullptr;
}

TEST(CudaDriver, ReportsAvailability) {
  Driver *d = Driver::get();
  EXPECT_EQ(d, Driver::get()); // loaded once
  if (!d) {
    const std::string &why = Driver::unavailableReason();
    EXPECT_FALSE(why.empty());
    if (!libcudaLoads()) {
      EXPECT_TRUE(contains(why, "no CUDA driver")) << why;
    }
    return;
  }
  EXPECT_EQ(Driver::unavailableReason(), "");
  EXPECT_GT(d->deviceCount(), 0);
  EXPECT_GE(d->computeCapability(0), 70);
  EXPECT_FALSE(d->deviceName(0).empty());
  EXPECT_GT(d->driverVersion(), 0);
  EXPECT_THROW(d->computeCapability(d->deviceCount()), Error);
}

TEST(CudaDriver, GetIsThreadSafe) {
  std::vector<Driver *> seen(8, reinterpret_cast<Driver *>(1));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < seen.size(); ++t) threads.emplace_back([&, t] { seen[t] = Driver::get(); });
  for (std::thread &th : threads) th.join();
  for (Driver *d : seen) EXPECT_EQ(d, Driver::get());
}

TEST(CudaDriver, CpuFallbackNoteOnce) {
  std::ostringstream first, second;
  noteCpuFallbackOnce(first);
  noteCpuFallbackOnce(second);
  EXPECT_EQ(second.str(), "");
  if (Driver::get()) {
    EXPECT_EQ(first.str(), "");
    return;
  }
  // Empty when something earlier in this process already printed the note.
  if (first.str().empty()) return;
  if (!libcudaLoads()) {
    EXPECT_EQ(first.str(), "encc: no CUDA driver found, using the CPU\n");
  } else {
    EXPECT_TRUE(first.str().starts_with("encc: ") && contains(first.str(), "using the CPU")) << first.str();
  }
}

TEST(CudaDriver, CheckNamesTheError) {
  Driver *d = Driver::get();
  if (!d) GTEST_SKIP() << Driver::unavailableReason();
  EXPECT_NO_THROW(d->check(CUDA_SUCCESS, "nothing"));
  try {
    d->check(1, "cuSomething"); // CUDA_ERROR_INVALID_VALUE
    FAIL() << "no exception";
  } catch (const Error &e) {
    EXPECT_TRUE(contains(e.what(), "CUDA error CUDA_ERROR_INVALID_VALUE (")) << e.what();
    EXPECT_TRUE(contains(e.what(), "in cuSomething")) << e.what();
  }
}

TEST(CudaDriver, SaxpyOnGpu) {
  Driver *d = Driver::get();
  if (!d) GTEST_SKIP() << Driver::unavailableReason();
  if (!nvrtcAvailable()) GTEST_SKIP() << "encc was built without NVRTC";

  CUdevice device = 0;
  d->check(d->cuDeviceGet(&device, 0), "cuDeviceGet");
  CUcontext ctx = nullptr;
  d->check(d->cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain");
  d->check(d->cuCtxSetCurrent(ctx), "cuCtxSetCurrent");

  CompileOptions opts;
  opts.arch = fmt::format("sm_{}", d->computeCapability(0));
  const char *source = R"(extern "C" __global__ void saxpy(float a, const float *x, float *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
)";
  CompileResult compiled = compile(source, opts);
  // A cubin unless this GPU is newer than NVRTC; then the PTX fallback, which the driver JIT-compiles.
  const void *image =
      compiled.isCubin ? static_cast<const void *>(compiled.cubin.data()) : compiled.ptx.c_str();
  CUmodule module = nullptr;
  if (d->encemuModuleLoadSource) // the CUDA emulator runs the source itself
    d->check(d->encemuModuleLoadSource(&module, source), "encemuModuleLoadSource");
  else
    d->check(d->cuModuleLoadData(&module, image), "cuModuleLoadData");
  CUfunction fn = nullptr;
  d->check(d->cuModuleGetFunction(&fn, module, "saxpy"), "cuModuleGetFunction");

  int n = 1000;
  float a = 2.5f;
  std::vector<float> x(n), y(n), expected(n), got(n, -1.0f);
  for (int i = 0; i < n; ++i) {
    x[i] = 0.5f * static_cast<float>(i) - 17.0f;
    y[i] = std::sin(static_cast<float>(i));
    expected[i] = a * x[i] + y[i];
  }
  size_t bytes = sizeof(float) * static_cast<size_t>(n);
  CUdeviceptr dx = 0, dy = 0;
  d->check(d->cuMemAlloc_v2(&dx, bytes), "cuMemAlloc(x)");
  d->check(d->cuMemAlloc_v2(&dy, bytes), "cuMemAlloc(y)");

  // cuMemsetD8 first, to see it clear the buffer.
  d->check(d->cuMemsetD8_v2(dy, 0, bytes), "cuMemsetD8");
  d->check(d->cuMemcpyDtoH_v2(got.data(), dy, bytes), "cuMemcpyDtoH");
  for (int i = 0; i < n; ++i) ASSERT_EQ(got[i], 0.0f) << i;

  d->check(d->cuMemcpyHtoD_v2(dx, x.data(), bytes), "cuMemcpyHtoD(x)");
  d->check(d->cuMemcpyHtoD_v2(dy, y.data(), bytes), "cuMemcpyHtoD(y)");
  CUstream stream = nullptr;
  d->check(d->cuStreamCreate(&stream, 0), "cuStreamCreate");
  void *args[] = {&a, &dx, &dy, &n};
  unsigned block = 128, grid = (static_cast<unsigned>(n) + block - 1) / block;
  d->check(d->cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, stream, args, nullptr), "cuLaunchKernel");
  d->check(d->cuStreamSynchronize(stream), "cuStreamSynchronize");
  d->check(d->cuMemcpyDtoH_v2(got.data(), dy, bytes), "cuMemcpyDtoH");
  // The GPU may fuse a*x+y into one FMA, so allow a rounding step of difference.
  for (int i = 0; i < n; ++i)
    EXPECT_NEAR(got[i], expected[i], 1e-5f * (1.0f + std::fabs(expected[i]))) << "element " << i;

  d->check(d->cuStreamDestroy_v2(stream), "cuStreamDestroy");
  d->check(d->cuMemFree_v2(dx), "cuMemFree(x)");
  d->check(d->cuMemFree_v2(dy), "cuMemFree(y)");
  d->check(d->cuModuleUnload(module), "cuModuleUnload");
  d->check(d->cuDevicePrimaryCtxRelease_v2(device), "cuDevicePrimaryCtxRelease");
}

} // namespace
} // namespace enc::cuda
