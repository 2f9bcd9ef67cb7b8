#include "runtime/CudaDriver.h"

#include "support/Error.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <ostream>
#include <type_traits>
#include <vector>

namespace enc::cuda {

namespace {
// Values from cuda.h; declared here so the file builds without it.
constexpr int CUDA_ERROR_NO_DEVICE = 100;
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;

// Names for the codes a broken setup returns before the driver can describe them itself (the toolkit's
// stub libcuda answers every call, cuGetErrorName included, with CUDA_ERROR_STUB_LIBRARY).
const char *fallbackErrorName(int result) {
  switch (result) {
  case 34: return "CUDA_ERROR_STUB_LIBRARY (libcuda.so.1 is the toolkit's stub, not a real driver)";
  case 35: return "CUDA_ERROR_INSUFFICIENT_DRIVER (the driver is older than the CUDA runtime)";
  case 100: return "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)";
  case 803: return "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (driver and kernel module versions differ)";
  case 804: return "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE (forward compatibility unsupported)";
  default: return nullptr;
  }
}
} // namespace

// Loads the driver once (a magic static in loader()) and remembers why it failed, if it did.
struct DriverLoader {
  std::unique_ptr<Driver> driver;
  std::string reason;
  bool noLibrary = false; // libcuda.so.1 itself is missing: the common CPU-only machine

  DriverLoader() { load(); }

  void load() {
    dlerror();
    const char *chosen = std::getenv("ENC_CUDA_DRIVER");
    const std::string path = chosen && *chosen ? chosen : "libcuda.so.1";
    void *lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char *err = dlerror();
      reason = fmt::format("no CUDA driver found (dlopen {}: {})", path, err ? err : "unknown error");
      noLibrary = !(chosen && *chosen); // a driver asked for by path that fails to load is worth the details
      return;
    }

    std::unique_ptr<Driver> d(new Driver());
    std::vector<std::string> missing;
    auto resolve = [&](auto &fn, const char *name) {
      void *sym = dlsym(lib, name);
      if (!sym) missing.emplace_back(name);
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(sym);
    };
#define ENC_RESOLVE(name) resolve(d->name, #name)
    ENC_RESOLVE(cuInit);
    ENC_RESOLVE(cuDriverGetVersion);
    ENC_RESOLVE(cuDeviceGetCount);
    ENC_RESOLVE(cuDeviceGet);
    ENC_RESOLVE(cuDeviceGetName);
    ENC_RESOLVE(cuDeviceGetAttribute);
    ENC_RESOLVE(cuDevicePrimaryCtxRetain);
    ENC_RESOLVE(cuDevicePrimaryCtxRelease_v2);
    ENC_RESOLVE(cuCtxSetCurrent);
    ENC_RESOLVE(cuCtxSynchronize);
    ENC_RESOLVE(cuModuleLoadData);
    ENC_RESOLVE(cuModuleLoadDataEx);
    ENC_RESOLVE(cuModuleUnload);
    ENC_RESOLVE(cuModuleGetFunction);
    ENC_RESOLVE(cuLaunchKernel);
    ENC_RESOLVE(cuMemAlloc_v2);
    ENC_RESOLVE(cuMemFree_v2);
    ENC_RESOLVE(cuMemcpyHtoD_v2);
    ENC_RESOLVE(cuMemcpyDtoH_v2);
    ENC_RESOLVE(cuMemsetD8_v2);
    ENC_RESOLVE(cuMemsetD8Async);
    ENC_RESOLVE(cuMemcpyHtoDAsync_v2);
    ENC_RESOLVE(cuMemcpyDtoHAsync_v2);
    ENC_RESOLVE(cuMemcpyDtoDAsync_v2);
    ENC_RESOLVE(cuMemGetInfo_v2);
    ENC_RESOLVE(cuEventCreate);
    ENC_RESOLVE(cuEventDestroy_v2);
    ENC_RESOLVE(cuEventRecord);
    ENC_RESOLVE(cuEventSynchronize);
    ENC_RESOLVE(cuEventQuery);
    ENC_RESOLVE(cuEventElapsedTime);
    ENC_RESOLVE(cuStreamCreate);
    ENC_RESOLVE(cuStreamDestroy_v2);
    ENC_RESOLVE(cuStreamSynchronize);
    ENC_RESOLVE(cuStreamWaitEvent);
    ENC_RESOLVE(cuGetErrorString);
    ENC_RESOLVE(cuGetErrorName);
#undef ENC_RESOLVE
    d->encemuModuleLoadSource = reinterpret_cast<decltype(d->encemuModuleLoadSource)>(dlsym(lib, "encemuModuleLoadSource"));
    if (!missing.empty()) {
      reason =
          fmt::format("the CUDA driver ({}) is too old: it lacks {}", path, fmt::join(missing, ", "));
      dlclose(lib); // nothing was called yet, so unloading is safe
      return;
    }

    // From here on the library stays loaded for the life of the process, even on failure: unloading a
    // driver that has been initialized is not safe.
    CUresult r = d->cuInit(0);
    if (r == CUDA_ERROR_NO_DEVICE) {
      reason = fmt::format("CUDA driver found but no GPU (cuInit: {})", d->describe(r));
      return;
    }
    if (r != CUDA_SUCCESS) {
      reason = fmt::format("CUDA driver found but cuInit failed: {}", d->describe(r));
      return;
    }
    if (d->cuDriverGetVersion(&d->driverVersion_) != CUDA_SUCCESS) d->driverVersion_ = 0;
    r = d->cuDeviceGetCount(&d->deviceCount_);
    if (r != CUDA_SUCCESS) {
      reason = fmt::format("CUDA driver found but cuDeviceGetCount failed: {}", d->describe(r));
      return;
    }
    if (d->deviceCount_ <= 0) {
      reason = "CUDA driver found but no GPU (cuDeviceGetCount returned 0)";
      return;
    }
    driver = std::move(d);
  }
};

namespace {
const DriverLoader &loader() {
  static const DriverLoader instance;
  return instance;
}
} // namespace

Driver *Driver::get() { return loader().driver.get(); }

const std::string &Driver::unavailableReason() { return loader().reason; }

std::string Driver::deviceName(int dev) const {
  if (dev < 0 || dev >= deviceCount_)
    throw Error(fmt::format("there is no CUDA device {} (this machine has {})", dev, deviceCount_));
  CUdevice device = 0;
  check(cuDeviceGet(&device, dev), "cuDeviceGet");
  char name[256] = {};
  check(cuDeviceGetName(name, static_cast<int>(sizeof(name) - 1), device), "cuDeviceGetName");
  return name;
}

int Driver::computeCapability(int dev) const {
  if (dev < 0 || dev >= deviceCount_)
    throw Error(fmt::format("there is no CUDA device {} (this machine has {})", dev, deviceCount_));
  CUdevice device = 0;
  check(cuDeviceGet(&device, dev), "cuDeviceGet");
  int major = 0, minor = 0;
  check(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
        "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)");
  check(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
        "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)");
  return major * 10 + minor;
}

int Driver::multiprocessorCount(int dev) const {
  if (dev < 0 || dev >= deviceCount_)
    throw Error(fmt::format("there is no CUDA device {} (this machine has {})", dev, deviceCount_));
  CUdevice device = 0;
  check(cuDeviceGet(&device, dev), "cuDeviceGet");
  int n = 0;
  check(cuDeviceGetAttribute(&n, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device),
        "cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)");
  return n;
}

std::string Driver::describe(CUresult result) const {
  const char *name = nullptr;
  const char *text = nullptr;
  if (cuGetErrorName && cuGetErrorName(result, &name) != CUDA_SUCCESS) name = nullptr;
  if (cuGetErrorString && cuGetErrorString(result, &text) != CUDA_SUCCESS) text = nullptr;
  if (!name) {
    if (const char *known = fallbackErrorName(result)) return known;
    return fmt::format("{} (unknown CUDA error)", result);
  }
  if (!text) return name;
  return fmt::format("{} ({})", name, text);
}

void Driver::check(CUresult result, const char *what) const {
  if (result == CUDA_SUCCESS) return;
  throw Error(fmt::format("CUDA error {} in {}", describe(result), what));
}

void noteCpuFallbackOnce(std::ostream &os, bool quietWithoutDriver) {
  const DriverLoader &l = loader();
  if (l.driver || (quietWithoutDriver && l.noLibrary)) return;
  static std::atomic<bool> noted{false};
  if (noted.exchange(true)) return;
  // A missing libcuda is the ordinary CPU-only machine: the dlopen details would only be noise.
  if (l.noLibrary)
    os << "encc: no CUDA driver found, using the CPU\n";
  else
    os << "encc: " << l.reason << ", using the CPU\n";
}

} // namespace enc::cuda
