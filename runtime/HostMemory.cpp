#include "runtime/HostMemory.h"

#include "support/Env.h"

#include <cstdlib>

namespace enc {

CachingAllocator &hostAllocator() {
  // Never destroyed: tensors held by other static objects may be released after main returns.
  static CachingAllocator *allocator = new CachingAllocator(
      [](size_t bytes) { return reinterpret_cast<uint64_t>(std::aligned_alloc(64, bytes)); },
      [](uint64_t address) { std::free(reinterpret_cast<void *>(address)); }, "host memory");
  return *allocator;
}

bool poisonHostMemory() {
  static const bool poison = envFlag("ENC_POISON");
  return poison;
}

} // namespace enc
