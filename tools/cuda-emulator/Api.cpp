// The CUDA driver API as encc's runtime calls it (runtime/CudaDriver.h), answered on the host:
// "device" memory is host memory, the one stream runs each call to completion, and kernels are
// built from CUDA C++ source by ModuleBuilder and run a block at a time by BlockScheduler.
//
// Load it with ENC_CUDA_DRIVER=<path of this library>. It cannot load cubin or PTX; encc hands
// it the source through encemuModuleLoadSource, the one entry point the real driver lacks.
#include "ModuleBuilder.h"

#include "support/Env.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

struct CUctx_st {};
struct CUmod_st {
  std::unique_ptr<encemu::Module> module;
};
struct CUfunc_st {
  CUmod_st *module;
  std::string name;
  encemu::KernelThunk thunk;
};
struct CUstream_st {};
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
};

namespace {

using CUresult = int;
using CUdeviceptr = unsigned long long;

// Codes from cuda.h.
constexpr CUresult kSuccess = 0, kInvalidValue = 1, kOutOfMemory = 2, kInvalidDevice = 101, kInvalidImage = 200,
                   kInvalidSource = 300, kNotFound = 500, kLaunchFailed = 719;

constexpr int kMultiprocessors = 2; // few blocks per grid-stride launch: each block is costly here
constexpr size_t kMemoryBytes = size_t{16} << 30;

std::mutex mu;                           // one caller at a time, as one stream would order them
std::map<CUdeviceptr, size_t> allocated; // live allocations: their sizes
size_t allocatedBytes = 0;
std::string lastError;                   // detail of the last failure, for cuGetErrorString
CUctx_st primaryContext;
std::map<CUmod_st *, std::vector<std::unique_ptr<CUfunc_st>>> functions;

CUresult failWith(CUresult code, std::string detail) {
  lastError = std::move(detail);
  return code;
}

} // namespace

extern "C" {

CUresult cuInit(unsigned) { return kSuccess; }
CUresult cuDriverGetVersion(int *version) {
  *version = 13000;
  return kSuccess;
}
// ENC_EMULATOR_DEVICES (default 1): how many GPUs the emulator reports; they are all the
// same host CPU, which lets a test check which one a process picks.
int emulatedDevices() {
  std::optional<int64_t> n = enc::parseInteger(std::getenv("ENC_EMULATOR_DEVICES"));
  return n && *n >= 1 && *n <= 64 ? static_cast<int>(*n) : 1;
}
CUresult cuDeviceGetCount(int *count) {
  *count = emulatedDevices();
  return kSuccess;
}
CUresult cuDeviceGet(int *device, int ordinal) {
  if (ordinal < 0 || ordinal >= emulatedDevices()) return kInvalidDevice;
  *device = ordinal;
  return kSuccess;
}
CUresult cuDeviceGetName(char *name, int len, int) {
  std::snprintf(name, static_cast<size_t>(len), "%s", "encc CUDA emulator (host CPU)");
  return kSuccess;
}
CUresult cuDeviceGetAttribute(int *value, int attribute, int) {
  switch (attribute) {
  case 16: *value = kMultiprocessors; break; // MULTIPROCESSOR_COUNT
  case 75: *value = 9; break;                // COMPUTE_CAPABILITY_MAJOR
  case 76: *value = 0; break;                // COMPUTE_CAPABILITY_MINOR
  default: *value = 0; break;
  }
  return kSuccess;
}
CUresult cuDevicePrimaryCtxRetain(CUctx_st **ctx, int) {
  *ctx = &primaryContext;
  return kSuccess;
}
CUresult cuDevicePrimaryCtxRelease_v2(int) { return kSuccess; }
CUresult cuCtxSetCurrent(CUctx_st *) { return kSuccess; }
CUresult cuCtxSynchronize() { return kSuccess; }

CUresult cuModuleLoadData(CUmod_st **, const void *) {
  std::lock_guard<std::mutex> lock(mu);
  return failWith(kInvalidImage, "the CUDA emulator runs CUDA C++ source only, not cubin or PTX");
}
CUresult cuModuleLoadDataEx(CUmod_st **m, const void *image, unsigned, int *, void **) { return cuModuleLoadData(m, image); }

CUresult encemuModuleLoadSource(CUmod_st **module, const char *source) {
  std::lock_guard<std::mutex> lock(mu);
  try {
    auto m = std::make_unique<CUmod_st>();
    m->module = encemu::buildModule(source);
    *module = m.release();
    return kSuccess;
  } catch (const std::exception &e) {
    return failWith(kInvalidSource, e.what());
  }
}

CUresult cuModuleUnload(CUmod_st *module) {
  std::lock_guard<std::mutex> lock(mu);
  functions.erase(module);
  delete module;
  return kSuccess;
}

CUresult cuModuleGetFunction(CUfunc_st **fn, CUmod_st *module, const char *name) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = module->module->kernels.find(name);
  if (it == module->module->kernels.end()) return failWith(kNotFound, std::string("no kernel named ") + name);
  functions[module].push_back(std::make_unique<CUfunc_st>(CUfunc_st{module, name, it->second}));
  *fn = functions[module].back().get();
  return kSuccess;
}

CUresult cuLaunchKernel(CUfunc_st *f, unsigned gridX, unsigned gridY, unsigned gridZ, unsigned blockX, unsigned blockY,
                        unsigned blockZ, unsigned sharedMemBytes, CUstream_st *, void **params, void **extra) {
  std::lock_guard<std::mutex> lock(mu);
  if (extra || sharedMemBytes) return failWith(kInvalidValue, "the CUDA emulator takes neither extra arguments nor dynamic shared memory");
  if (!gridX || !gridY || !gridZ || !blockX || !blockY || !blockZ || blockX * blockY * blockZ > 1024)
    return failWith(kInvalidValue, "grid or block dimensions out of range");
  static encemu::BlockScheduler scheduler;
  encemu::ThreadContext &ctx = f->module->module->context;
  ctx.gridSize = {gridX, gridY, gridZ};
  ctx.blockSize = {blockX, blockY, blockZ};
  for (unsigned z = 0; z < gridZ; ++z)
    for (unsigned y = 0; y < gridY; ++y)
      for (unsigned x = 0; x < gridX; ++x) {
        ctx.block = {x, y, z};
        std::string error = scheduler.runBlock(ctx, f->thunk, params);
        if (!error.empty()) return failWith(kLaunchFailed, "kernel " + f->name + ": " + error);
      }
  return kSuccess;
}

CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  std::lock_guard<std::mutex> lock(mu);
  if (allocatedBytes + bytes > kMemoryBytes) return kOutOfMemory;
  void *p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  if (!p) return kOutOfMemory;
  *ptr = reinterpret_cast<CUdeviceptr>(p);
  allocated[*ptr] = bytes;
  allocatedBytes += bytes;
  return kSuccess;
}
CUresult cuMemFree_v2(CUdeviceptr ptr) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = allocated.find(ptr);
  if (it == allocated.end()) return failWith(kInvalidValue, "cuMemFree of an address cuMemAlloc did not return");
  allocatedBytes -= it->second;
  allocated.erase(it);
  std::free(reinterpret_cast<void *>(ptr));
  return kSuccess;
}
CUresult cuMemGetInfo_v2(size_t *free, size_t *total) {
  std::lock_guard<std::mutex> lock(mu);
  *total = kMemoryBytes;
  *free = kMemoryBytes - allocatedBytes;
  return kSuccess;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes) {
  std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  return kSuccess;
}
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes) {
  std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
  return kSuccess;
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t count) {
  std::memset(reinterpret_cast<void *>(dst), value, count);
  return kSuccess;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t count, CUstream_st *) { return cuMemsetD8_v2(dst, value, count); }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, CUstream_st *) { return cuMemcpyHtoD_v2(dst, src, bytes); }
CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes, CUstream_st *) { return cuMemcpyDtoH_v2(dst, src, bytes); }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream_st *) {
  std::memmove(reinterpret_cast<void *>(dst), reinterpret_cast<const void *>(src), bytes);
  return kSuccess;
}

CUresult cuEventCreate(CUevent_st **event, unsigned) {
  *event = new CUevent_st{};
  return kSuccess;
}
CUresult cuEventDestroy_v2(CUevent_st *event) {
  delete event;
  return kSuccess;
}
CUresult cuEventRecord(CUevent_st *event, CUstream_st *) {
  event->at = std::chrono::steady_clock::now();
  return kSuccess;
}
CUresult cuEventSynchronize(CUevent_st *) { return kSuccess; }
CUresult cuEventQuery(CUevent_st *) { return kSuccess; } // the stream runs each call to completion
CUresult cuEventElapsedTime(float *ms, CUevent_st *start, CUevent_st *end) {
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return kSuccess;
}
CUresult cuStreamCreate(CUstream_st **stream, unsigned) {
  *stream = new CUstream_st{};
  return kSuccess;
}
CUresult cuStreamDestroy_v2(CUstream_st *stream) {
  delete stream;
  return kSuccess;
}
CUresult cuStreamSynchronize(CUstream_st *) { return kSuccess; }
CUresult cuStreamWaitEvent(CUstream_st *, CUevent_st *, unsigned) { return kSuccess; } // calls run in order

CUresult cuGetErrorName(CUresult result, const char **name) {
  switch (result) {
  case kSuccess: *name = "CUDA_SUCCESS"; return kSuccess;
  case kInvalidValue: *name = "CUDA_ERROR_INVALID_VALUE"; return kSuccess;
  case kOutOfMemory: *name = "CUDA_ERROR_OUT_OF_MEMORY"; return kSuccess;
  case kInvalidDevice: *name = "CUDA_ERROR_INVALID_DEVICE"; return kSuccess;
  case kInvalidImage: *name = "CUDA_ERROR_INVALID_IMAGE"; return kSuccess;
  case kInvalidSource: *name = "CUDA_ERROR_INVALID_SOURCE"; return kSuccess;
  case kNotFound: *name = "CUDA_ERROR_NOT_FOUND"; return kSuccess;
  case kLaunchFailed: *name = "CUDA_ERROR_LAUNCH_FAILED"; return kSuccess;
  default: return kInvalidValue;
  }
}
// The detail of the latest failure stands in for the driver's fixed text.
CUresult cuGetErrorString(CUresult result, const char **text) {
  if (result == kSuccess) {
    *text = "no error";
    return kSuccess;
  }
  *text = lastError.empty() ? "failed in the CUDA emulator" : lastError.c_str();
  return kSuccess;
}

} // extern "C"
