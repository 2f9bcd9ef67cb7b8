#include "runtime/Gpu.h"

#include "runtime/HostMemory.h"
#include "support/Env.h"
#include "support/Error.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

namespace enc::cuda {

struct GpuHolder {
  Gpu *gpu = nullptr;
  std::string reason;
  GpuHolder() {
    Driver *d = Driver::get();
    if (!d) {
      reason = Driver::unavailableReason();
      return;
    }
    try {
      // Never deleted: tearing down a context while the driver unloads at exit is unsafe.
      gpu = new Gpu(*d);
    } catch (const Error &e) {
      reason = fmt::format("the GPU could not be set up: {}", e.what());
    }
  }
};

namespace {
GpuHolder &holder() {
  static GpuHolder h;
  return h;
}
} // namespace

Gpu *Gpu::get() { return holder().gpu; }

Gpu &Gpu::require() {
  if (Gpu *g = get()) return *g;
  throw Error(fmt::format("--device cuda needs a GPU: {}", holder().reason), "run on the CPU (--device cpu)");
}

int chooseDeviceOrdinal(int count) {
  if (const char *v = std::getenv("ENC_CUDA_DEVICE")) {
    std::optional<int64_t> n = parseInteger(v);
    if (!n || *n < 0 || *n >= count)
      throw Error(fmt::format("ENC_CUDA_DEVICE={} is not a GPU of this machine (it has {}: 0 to {})", v, count, count - 1));
    return static_cast<int>(*n);
  }
  if (std::optional<int64_t> n = parseInteger(std::getenv("LOCAL_RANK")); n && *n >= 0) return static_cast<int>(*n % count);
  return 0;
}

Gpu::Gpu(Driver &driver) : driver_(&driver) {
  ordinal_ = chooseDeviceOrdinal(driver.deviceCount());
  driver.check(driver.cuDeviceGet(&device_, ordinal_), "cuDeviceGet");
  driver.check(driver.cuDevicePrimaryCtxRetain(&ctx_, device_), "cuDevicePrimaryCtxRetain");
  driver.check(driver.cuCtxSetCurrent(ctx_), "cuCtxSetCurrent");
  // Flags 0: a blocking stream, ordered with the legacy default stream as well.
  driver.check(driver.cuStreamCreate(&stream_, 0), "cuStreamCreate");
  name_ = driver.deviceName(ordinal_);
  cc_ = driver.computeCapability(ordinal_);
  sms_ = driver.multiprocessorCount(ordinal_);
  poison_ = envFlag("ENC_CUDA_POISON") || poisonHostMemory();
  syncEach_ = envFlag("ENC_CUDA_SYNC");
  Driver *d = driver_;
  CUcontext ctx = ctx_;
  allocator_ = std::make_unique<CachingAllocator>(
      [d, ctx](size_t bytes) -> uint64_t {
        d->cuCtxSetCurrent(ctx);
        CUdeviceptr p = 0;
        return d->cuMemAlloc_v2(&p, bytes) == CUDA_SUCCESS ? p : 0;
      },
      [d, ctx](uint64_t p) {
        d->cuCtxSetCurrent(ctx);
        d->cuMemFree_v2(p);
      },
      fmt::format("GPU {} ({})", ordinal_, name_));
}

void Gpu::makeCurrent() const { driver_->check(driver_->cuCtxSetCurrent(ctx_), "cuCtxSetCurrent"); }

void Gpu::copyToDevice(CUdeviceptr dst, const void *src, size_t bytes) {
  if (!bytes) return;
  makeCurrent();
  driver_->check(driver_->cuMemcpyHtoDAsync_v2(dst, src, bytes, stream_), "cuMemcpyHtoDAsync");
  // Pageable host memory: the driver has staged it when the call returns, but waiting here
  // keeps the source's lifetime out of the caller's worries.
  synchronize("a copy to the GPU");
}

void Gpu::copyToHost(void *dst, CUdeviceptr src, size_t bytes) {
  if (!bytes) return;
  makeCurrent();
  driver_->check(driver_->cuMemcpyDtoHAsync_v2(dst, src, bytes, stream_), "cuMemcpyDtoHAsync");
  synchronize("a copy from the GPU (or a kernel before it)");
}

void Gpu::copyOnDevice(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  if (!bytes) return;
  makeCurrent();
  driver_->check(driver_->cuMemcpyDtoDAsync_v2(dst, src, bytes, stream_), "cuMemcpyDtoDAsync");
}

void Gpu::fill(CUdeviceptr dst, unsigned char byte, size_t bytes) {
  if (!bytes) return;
  makeCurrent();
  driver_->check(driver_->cuMemsetD8Async(dst, byte, bytes, stream_), "cuMemsetD8Async");
}

void Gpu::synchronize(const std::string &what) {
  makeCurrent();
  CUresult r = driver_->cuStreamSynchronize(stream_);
  std::vector<std::function<void()>> checks;
  {
    std::lock_guard<std::mutex> lock(checksMu_);
    for (const auto &[owner, check] : streamChecks_) checks.push_back(check);
  }
  for (const auto &check : checks) check();
  driver_->check(r, what.c_str());
}

CUstream Gpu::sideStream() {
  std::lock_guard<std::mutex> lock(sideMu_);
  if (!side_) {
    makeCurrent();
    driver_->check(driver_->cuStreamCreate(&side_, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate");
  }
  return side_;
}

void Gpu::orderAfter(CUstream waiter, CUstream producer) {
  makeCurrent();
  CUevent done = nullptr;
  driver_->check(driver_->cuEventCreate(&done, 2 /* CU_EVENT_DISABLE_TIMING */), "cuEventCreate");
  driver_->check(driver_->cuEventRecord(done, producer), "cuEventRecord");
  driver_->check(driver_->cuStreamWaitEvent(waiter, done, 0), "cuStreamWaitEvent");
  driver_->cuEventDestroy_v2(done); // released once the wait no longer needs it
}

void Gpu::addStreamCheck(const void *owner, std::function<void()> check) {
  std::lock_guard<std::mutex> lock(checksMu_);
  streamChecks_[owner] = std::move(check);
}

void Gpu::removeStreamCheck(const void *owner) {
  std::lock_guard<std::mutex> lock(checksMu_);
  streamChecks_.erase(owner);
}

CUmodule Gpu::loadModule(const std::string &key, const CompileResult &image) {
  std::lock_guard<std::mutex> lock(modulesMu_);
  if (auto it = modules_.find(key); it != modules_.end()) return it->second;
  makeCurrent();
  CUmodule m = nullptr;
  const void *data = image.isCubin ? static_cast<const void *>(image.cubin.data()) : image.ptx.c_str();
  driver_->check(driver_->cuModuleLoadData(&m, data), image.isCubin ? "cuModuleLoadData (cubin)" : "cuModuleLoadData (PTX)");
  modules_[key] = m;
  return m;
}

CUmodule Gpu::loadModule(const std::string &key, const std::string &source, const CompileOptions &opts) {
  {
    std::lock_guard<std::mutex> lock(modulesMu_);
    if (auto it = modules_.find(key); it != modules_.end()) return it->second;
  }
  CUmodule m = nullptr;
  compileCachedAndLoad(source, opts, [&](const CompileResult &image) { m = loadModule(key, image); });
  return m;
}

CUmodule Gpu::loadSourceModule(const std::string &key, const std::string &source) {
  std::lock_guard<std::mutex> lock(modulesMu_);
  if (auto it = modules_.find(key); it != modules_.end()) return it->second;
  if (!loadsSource()) internalError("this CUDA driver cannot build modules from source");
  makeCurrent();
  CUmodule m = nullptr;
  driver_->check(driver_->encemuModuleLoadSource(&m, source.c_str()), "encemuModuleLoadSource");
  modules_[key] = m;
  return m;
}

CUfunction Gpu::function(CUmodule module, const std::string &name) {
  makeCurrent();
  CUfunction f = nullptr;
  driver_->check(driver_->cuModuleGetFunction(&f, module, name.c_str()), ("cuModuleGetFunction " + name).c_str());
  return f;
}

void Gpu::launch(CUfunction f, unsigned grid, unsigned block, void **args, const std::string &what) {
  makeCurrent();
  CUresult r = driver_->cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, stream_, args, nullptr);
  if (r != CUDA_SUCCESS) throw Error(fmt::format("CUDA error {} launching {}", driver_->describe(r), what));
  if (syncEach_) synchronize(what);
}

GpuTimer::GpuTimer(Gpu &gpu) : gpu_(gpu) {
  gpu.makeCurrent();
  const Driver &d = gpu.driver();
  d.check(d.cuEventCreate(&begin_, 0), "cuEventCreate");
  d.check(d.cuEventCreate(&end_, 0), "cuEventCreate");
}

GpuTimer::~GpuTimer() {
  gpu_.driver().cuEventDestroy_v2(begin_);
  gpu_.driver().cuEventDestroy_v2(end_);
}

void GpuTimer::start() {
  gpu_.makeCurrent();
  gpu_.driver().check(gpu_.driver().cuEventRecord(begin_, gpu_.stream()), "cuEventRecord");
}

double GpuTimer::stopSeconds() {
  const Driver &d = gpu_.driver();
  d.check(d.cuEventRecord(end_, gpu_.stream()), "cuEventRecord");
  d.check(d.cuEventSynchronize(end_), "cuEventSynchronize");
  float ms = 0;
  d.check(d.cuEventElapsedTime(&ms, begin_, end_), "cuEventElapsedTime");
  return ms * 1e-3;
}

} // namespace enc::cuda
