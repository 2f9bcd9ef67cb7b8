// A caching allocator for device memory: freed blocks are kept and handed out again to requests
// of the same size class, so a training loop that allocates the same tensors every step calls
// the driver's (slow, synchronizing) allocator only in its first step.
//
// The raw allocator is a pair of functions, so this class knows nothing of CUDA and is tested
// on the CPU. Addresses are plain integers (CUdeviceptr is one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace enc {

struct DeviceMemoryStats {
  int64_t currentBytes = 0;   // in tensors now (rounded sizes)
  int64_t peakBytes = 0;      // the most ever in tensors at once (since resetPeak)
  int64_t cachedBytes = 0;    // freed blocks kept for reuse
  int64_t allocations = 0;    // allocate() calls
  int64_t cacheHits = 0;      // of those, answered with a cached block
  int64_t rawAllocations = 0; // calls of the raw allocator
};

class CachingAllocator {
public:
  using RawAlloc = std::function<uint64_t(size_t bytes)>; // 0 when out of memory
  using RawFree = std::function<void(uint64_t address)>;

  // `device` names the memory in errors ("GPU 0 (NVIDIA H200)").
  CachingAllocator(RawAlloc alloc, RawFree free, std::string device);
  // Cached blocks are returned to the raw allocator; blocks still in use are not touched.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator &) = delete;
  CachingAllocator &operator=(const CachingAllocator &) = delete;

  // The size class `bytes` is served from: multiples of 512 bytes up to 1 MiB, of 2 MiB above.
  static size_t roundSize(size_t bytes);

  // A block of at least `bytes` (a zero-byte request gets a minimal block). On out-of-memory the
  // cache is emptied and the raw allocation retried once; then an enc::Error says how much was
  // asked for and how much is in use.
  uint64_t allocate(size_t bytes);
  // Returns a block from allocate() to the cache.
  void release(uint64_t address);
  // Frees every cached block.
  void emptyCache();

  DeviceMemoryStats stats() const;
  void resetPeak();

private:
  RawAlloc rawAlloc_;
  RawFree rawFree_;
  std::string device_;
  mutable std::mutex mu_;
  std::multimap<size_t, uint64_t> free_; // size class -> cached block
  std::map<uint64_t, size_t> inUse_;     // block -> size class
  DeviceMemoryStats stats_;

  void emptyCacheLocked();
};

} // namespace enc
