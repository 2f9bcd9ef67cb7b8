// The CUDA driver API, loaded at run time with dlopen("libcuda.so.1").
//
// encc never links libcuda: the same binary runs on machines without an NVIDIA driver (falling back to
// the CPU) and needs no cuda.h to build. The few types used are declared here; the opaque handle structs
// have the same global names as cuda.h's, so handles are interchangeable if both headers are included.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

struct CUctx_st;
struct CUmod_st;
struct CUfunc_st;
struct CUstream_st;
struct CUevent_st;

namespace enc::cuda {

using CUresult = int; // CUDA_SUCCESS == 0
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = CUctx_st *;
using CUmodule = CUmod_st *;
using CUfunction = CUfunc_st *;
using CUstream = CUstream_st *;
using CUevent = CUevent_st *;

inline constexpr CUresult CUDA_SUCCESS = 0, CUDA_ERROR_NOT_READY = 600;

class Driver {
public:
  // The process-wide driver, initialized (cuInit) with at least one GPU; nullptr when there is no usable
  // driver or GPU. Thread-safe; loading is attempted once per process. The library is libcuda.so.1, or
  // the path in $ENC_CUDA_DRIVER (tests point it at the CUDA emulator).
  static Driver *get();
  // Why get() returned nullptr, e.g. "no CUDA driver found (dlopen libcuda.so.1: ...)"; "" when it didn't.
  static const std::string &unavailableReason();

  int driverVersion() const { return driverVersion_; } // 13000 for CUDA 13.0
  int deviceCount() const { return deviceCount_; }
  std::string deviceName(int dev) const;
  int computeCapability(int dev) const; // 90 for sm_90
  int multiprocessorCount(int dev) const;

  // Throws enc::Error "CUDA error CUDA_ERROR_X (text) in <what>" unless result is CUDA_SUCCESS.
  void check(CUresult result, const char *what) const;
  // "CUDA_ERROR_X (text)" for any result code.
  std::string describe(CUresult result) const;

  // Entry points, named after the exported symbols (the _v2 ones are what cuda.h's macros select).
  CUresult (*cuInit)(unsigned flags) = nullptr;
  CUresult (*cuDriverGetVersion)(int *version) = nullptr;
  CUresult (*cuDeviceGetCount)(int *count) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice *device, int ordinal) = nullptr;
  CUresult (*cuDeviceGetName)(char *name, int len, CUdevice dev) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int *value, int attribute, CUdevice dev) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice dev) = nullptr;
  CUresult (*cuDevicePrimaryCtxRelease_v2)(CUdevice dev) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext ctx) = nullptr;
  CUresult (*cuCtxSynchronize)() = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule *module, const void *image) = nullptr;
  CUresult (*cuModuleLoadDataEx)(CUmodule *module, const void *image, unsigned numOptions, int *options,
                                 void **optionValues) = nullptr;
  CUresult (*cuModuleUnload)(CUmodule module) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction *fn, CUmodule module, const char *name) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction f, unsigned gridX, unsigned gridY, unsigned gridZ, unsigned blockX,
                             unsigned blockY, unsigned blockZ, unsigned sharedMemBytes, CUstream stream,
                             void **kernelParams, void **extra) = nullptr;
  CUresult (*cuMemAlloc_v2)(CUdeviceptr *ptr, size_t bytes) = nullptr;
  CUresult (*cuMemFree_v2)(CUdeviceptr ptr) = nullptr;
  CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr dst, const void *src, size_t bytes) = nullptr;
  CUresult (*cuMemcpyDtoH_v2)(void *dst, CUdeviceptr src, size_t bytes) = nullptr;
  CUresult (*cuMemsetD8_v2)(CUdeviceptr dst, unsigned char value, size_t count) = nullptr;
  CUresult (*cuMemsetD8Async)(CUdeviceptr dst, unsigned char value, size_t count, CUstream stream) = nullptr;
  CUresult (*cuMemcpyHtoDAsync_v2)(CUdeviceptr dst, const void *src, size_t bytes, CUstream stream) = nullptr;
  CUresult (*cuMemcpyDtoHAsync_v2)(void *dst, CUdeviceptr src, size_t bytes, CUstream stream) = nullptr;
  CUresult (*cuMemcpyDtoDAsync_v2)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) = nullptr;
  CUresult (*cuMemGetInfo_v2)(size_t *free, size_t *total) = nullptr;
  CUresult (*cuEventCreate)(CUevent *event, unsigned flags) = nullptr;
  CUresult (*cuEventDestroy_v2)(CUevent event) = nullptr;
  CUresult (*cuEventRecord)(CUevent event, CUstream stream) = nullptr;
  CUresult (*cuEventSynchronize)(CUevent event) = nullptr;
  CUresult (*cuEventQuery)(CUevent event) = nullptr; // CUDA_SUCCESS once done, CUDA_ERROR_NOT_READY before
  CUresult (*cuEventElapsedTime)(float *ms, CUevent start, CUevent end) = nullptr;
  CUresult (*cuStreamCreate)(CUstream *stream, unsigned flags) = nullptr;
  CUresult (*cuStreamDestroy_v2)(CUstream stream) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream stream) = nullptr;
  CUresult (*cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned flags) = nullptr;
  CUresult (*cuGetErrorString)(CUresult result, const char **text) = nullptr;
  CUresult (*cuGetErrorName)(CUresult result, const char **name) = nullptr;
  // Only encc's CUDA emulator (tools/cuda-emulator) has this: it builds modules from CUDA C++
  // source instead of cubin or PTX. nullptr with a real driver.
  CUresult (*encemuModuleLoadSource)(CUmodule *module, const char *source) = nullptr;

  Driver(const Driver &) = delete;
  Driver &operator=(const Driver &) = delete;

private:
  Driver() = default;
  friend struct DriverLoader;

  int driverVersion_ = 0;
  int deviceCount_ = 0;
};

// Prints "encc: no CUDA driver found, using the CPU" (or the actual reason there is no usable GPU) once
// per process; calls while a GPU is usable print nothing. With quietWithoutDriver, a machine without a
// CUDA driver library (the ordinary CPU-only machine, where the CPU is no surprise) is not mentioned
// either, but a driver that is there and fails still is.
void noteCpuFallbackOnce(std::ostream &os, bool quietWithoutDriver = false);

} // namespace enc::cuda
