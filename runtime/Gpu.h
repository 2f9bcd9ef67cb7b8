// The GPU encc runs on: one device's primary context, one stream that every copy and kernel of
// the process is ordered on, and a caching allocator for its memory. The device is
// ENC_CUDA_DEVICE if set, else LOCAL_RANK modulo the number of GPUs (so the ranks that encc
// launch or torchrun start on a machine spread over its GPUs), else 0.
//
// One stream keeps the rules simple: work is ordered as it is issued, so a block returned to the
// allocator can be handed out again at once (later work runs after earlier work that used it).
#pragma once

#include "runtime/CachingAllocator.h"
#include "runtime/CudaDriver.h"
#include "runtime/Nvrtc.h"

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace enc::cuda {

class Gpu {
public:
  // The process's GPU, set up on first use; nullptr when there is no usable driver or GPU
  // (Driver::unavailableReason() says why). Thread-safe.
  static Gpu *get();
  // get(), or an enc::Error "--device cuda needs a GPU: <reason>" with a hint to use the CPU.
  static Gpu &require();

  const Driver &driver() const { return *driver_; }
  const std::string &name() const { return name_; }   // "NVIDIA H200"
  int computeCapability() const { return cc_; }        // 90
  int ordinal() const { return ordinal_; }             // which of the machine's GPUs
  int multiprocessors() const { return sms_; }
  CUstream stream() const { return stream_; }
  // A second stream, for communication that overlaps the kernels of stream() (data-parallel
  // gradient buckets under NCCL). Work on it is ordered with stream() only through
  // orderAfter, and memory it uses must outlive that work: the caching allocator assumes
  // stream() alone.
  CUstream sideStream();
  // Work issued to `waiter` from now on runs after everything issued to `producer` so far.
  void orderAfter(CUstream waiter, CUstream producer);
  CachingAllocator &allocator() { return *allocator_; }

  // Binds the context to the calling thread (cheap; every entry point below does it).
  void makeCurrent() const;

  // Copies are ordered on the stream; copyToHost returns when the data is there.
  void copyToDevice(CUdeviceptr dst, const void *src, size_t bytes);
  void copyToHost(void *dst, CUdeviceptr src, size_t bytes);
  void copyOnDevice(CUdeviceptr dst, CUdeviceptr src, size_t bytes);
  void fill(CUdeviceptr dst, unsigned char byte, size_t bytes);
  // Waits for everything issued so far; `what` names the work in the error if it failed.
  void synchronize(const std::string &what = "the GPU's stream");
  // Checks run after every wait for the stream (synchronize, copyToHost), before its result is
  // looked at: a process group whose NCCL collectives on the stream were aborted (a lost peer)
  // throws its error there, where the host would otherwise read what they left. `owner`
  // identifies the check for removeStreamCheck. Thread-safe.
  void addStreamCheck(const void *owner, std::function<void()> check);
  void removeStreamCheck(const void *owner);

  // A module from NVRTC's output, loaded once per process per `key` (the source's hash).
  CUmodule loadModule(const std::string &key, const CompileResult &image);
  // `source` compiled through the kernel cache (compileCachedAndLoad: a cached image that does not load is
  // compiled again) and loaded, once per process per `key`.
  CUmodule loadModule(const std::string &key, const std::string &source, const CompileOptions &opts);
  // Whether the driver builds modules from CUDA C++ source itself (the CUDA emulator does; a
  // real driver needs NVRTC's output), and the module it builds from `source`, once per `key`.
  bool loadsSource() const { return driver_->encemuModuleLoadSource != nullptr; }
  CUmodule loadSourceModule(const std::string &key, const std::string &source);
  CUfunction function(CUmodule module, const std::string &name);
  void launch(CUfunction f, unsigned grid, unsigned block, void **args, const std::string &what);

  // Whether fresh device tensors are filled with NaN (ENC_CUDA_POISON=1), so a kernel that
  // leaves an element unwritten shows up in tests.
  bool poisonFreshMemory() const { return poison_; }
  // Whether every kernel is waited for (ENC_CUDA_SYNC=1), so a fault names its kernel.
  bool syncEachKernel() const { return syncEach_; }

  Gpu(const Gpu &) = delete;
  Gpu &operator=(const Gpu &) = delete;

private:
  Gpu(Driver &driver);
  friend struct GpuHolder;

  Driver *driver_;
  CUdevice device_ = 0;
  CUcontext ctx_ = nullptr;
  CUstream stream_ = nullptr;
  std::mutex sideMu_;
  CUstream side_ = nullptr;
  std::string name_;
  int cc_ = 0, sms_ = 0, ordinal_ = 0;
  bool poison_ = false, syncEach_ = false;
  std::unique_ptr<CachingAllocator> allocator_;
  std::mutex checksMu_;
  std::map<const void *, std::function<void()>> streamChecks_;
  std::mutex modulesMu_;
  std::map<std::string, CUmodule> modules_;
};

// Device-side timing of the work issued between start() and stop() on the GPU's stream.
class GpuTimer {
public:
  explicit GpuTimer(Gpu &gpu);
  ~GpuTimer();
  void start();
  double stopSeconds(); // waits for the stream

private:
  Gpu &gpu_;
  CUevent begin_ = nullptr, end_ = nullptr;
};

} // namespace enc::cuda
