// The caching allocator over a fake raw allocator (plain counters), so it runs without a GPU.
#include "runtime/CachingAllocator.h"

#include "support/Error.h"
#include "support/InternalError.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace enc {
namespace {

struct FakeMemory {
  uint64_t next = 0x1000;
  size_t limit = size_t{1} << 30; // bytes the fake device holds
  size_t used = 0;
  std::map<uint64_t, size_t> live;
  int allocs = 0, frees = 0;

  CachingAllocator make() {
    return CachingAllocator(
        [this](size_t bytes) -> uint64_t {
          if (used + bytes > limit) return 0;
          uint64_t a = next;
          next += bytes + 4096;
          live[a] = bytes;
          used += bytes;
          ++allocs;
          return a;
        },
        [this](uint64_t a) {
          used -= live.at(a);
          live.erase(a);
          ++frees;
        },
        "fake GPU");
  }
};

TEST(CachingAllocator, SizeClasses) {
  EXPECT_EQ(CachingAllocator::roundSize(0), 512u);
  EXPECT_EQ(CachingAllocator::roundSize(1), 512u);
  EXPECT_EQ(CachingAllocator::roundSize(512), 512u);
  EXPECT_EQ(CachingAllocator::roundSize(513), 1024u);
  EXPECT_EQ(CachingAllocator::roundSize(1 << 20), size_t{1} << 20);
  EXPECT_EQ(CachingAllocator::roundSize((1 << 20) + 1), size_t{2} << 20);
  EXPECT_EQ(CachingAllocator::roundSize((5 << 20) + 7), size_t{6} << 20);
}

TEST(CachingAllocator, ReusesFreedBlocksOfTheSameClass) {
  FakeMemory mem;
  {
    CachingAllocator a = mem.make();
    uint64_t x = a.allocate(1000);
    a.release(x);
    uint64_t y = a.allocate(900); // same 1024-byte class
    EXPECT_EQ(y, x);
    uint64_t z = a.allocate(3000); // another class: a new block
    EXPECT_NE(z, x);
    EXPECT_EQ(mem.allocs, 2);
    DeviceMemoryStats s = a.stats();
    EXPECT_EQ(s.allocations, 3);
    EXPECT_EQ(s.cacheHits, 1);
    EXPECT_EQ(s.rawAllocations, 2);
    EXPECT_EQ(s.currentBytes, 1024 + 3072);
    EXPECT_EQ(s.peakBytes, 1024 + 3072);
    a.release(y);
    a.release(z);
    s = a.stats();
    EXPECT_EQ(s.currentBytes, 0);
    EXPECT_EQ(s.cachedBytes, 1024 + 3072);
    EXPECT_EQ(s.peakBytes, 1024 + 3072);
    a.resetPeak();
    EXPECT_EQ(a.stats().peakBytes, 0);
    a.emptyCache();
    EXPECT_EQ(mem.frees, 2);
    EXPECT_EQ(a.stats().cachedBytes, 0);
  }
  EXPECT_TRUE(mem.live.empty());
}

TEST(CachingAllocator, OutOfMemoryEmptiesTheCacheThenReports) {
  FakeMemory mem;
  mem.limit = size_t{8} << 20;
  CachingAllocator a = mem.make();
  uint64_t big = a.allocate(size_t{6} << 20);
  a.release(big); // cached: 6 MiB of the 8 held
  uint64_t other = a.allocate(size_t{4} << 20); // fits only once the cache is emptied
  EXPECT_NE(other, 0u);
  EXPECT_EQ(mem.frees, 1);
  try {
    a.allocate(size_t{64} << 20);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    std::string what = e.what();
    EXPECT_NE(what.find("out of memory on fake GPU"), std::string::npos) << what;
    EXPECT_NE(what.find("67108864 bytes"), std::string::npos) << what;
  }
  a.release(other);
}

TEST(CachingAllocator, ReleasingAForeignAddressIsAnError) {
  FakeMemory mem;
  CachingAllocator a = mem.make();
  EXPECT_THROW(a.release(0xdead), InternalError); // a bug in encc, not the user's mistake
}

} // namespace
} // namespace enc
