#include "runtime/CachingAllocator.h"

#include "support/Error.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <algorithm>

namespace enc {

CachingAllocator::CachingAllocator(RawAlloc alloc, RawFree free, std::string device)
    : rawAlloc_(std::move(alloc)), rawFree_(std::move(free)), device_(std::move(device)) {}

CachingAllocator::~CachingAllocator() { emptyCache(); }

size_t CachingAllocator::roundSize(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t{2} << 20, kSmallLimit = size_t{1} << 20;
  if (bytes == 0) return kSmall;
  if (bytes <= kSmallLimit) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

uint64_t CachingAllocator::allocate(size_t bytes) {
  size_t size = roundSize(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.allocations;
  uint64_t address = 0;
  if (auto it = free_.find(size); it != free_.end()) {
    address = it->second;
    free_.erase(it);
    stats_.cachedBytes -= static_cast<int64_t>(size);
    ++stats_.cacheHits;
  } else {
    address = rawAlloc_(size);
    if (!address && !free_.empty()) {
      // Cached blocks of other sizes may be what stands in the way.
      emptyCacheLocked();
      address = rawAlloc_(size);
    }
    if (!address)
      throw Error(fmt::format("out of memory on {}: could not allocate {} bytes ({} MiB in tensors)", device_, bytes,
                              stats_.currentBytes >> 20),
                  "use smaller inputs (a smaller batch)");
    ++stats_.rawAllocations;
  }
  inUse_[address] = size;
  stats_.currentBytes += static_cast<int64_t>(size);
  stats_.peakBytes = std::max(stats_.peakBytes, stats_.currentBytes);
  return address;
}

void CachingAllocator::release(uint64_t address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = inUse_.find(address);
  if (it == inUse_.end()) internalError("releasing {:#x}, which {} did not allocate", address, device_);
  size_t size = it->second;
  inUse_.erase(it);
  free_.emplace(size, address);
  stats_.currentBytes -= static_cast<int64_t>(size);
  stats_.cachedBytes += static_cast<int64_t>(size);
}

void CachingAllocator::emptyCache() {
  std::lock_guard<std::mutex> lock(mu_);
  emptyCacheLocked();
}

void CachingAllocator::emptyCacheLocked() {
  for (const auto &[size, address] : free_) rawFree_(address);
  free_.clear();
  stats_.cachedBytes = 0;
}

DeviceMemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::resetPeak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peakBytes = stats_.currentBytes;
}

} // namespace enc
