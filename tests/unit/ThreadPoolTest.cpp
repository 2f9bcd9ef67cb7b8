#include "runtime/ThreadPool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace enc;

namespace {

// Runs parallelFor over [begin, end) and checks every index is visited exactly once, by chunks of at
// least minChunk indices (all but the last one).
void expectCoverage(ThreadPool &pool, int64_t begin, int64_t end, int64_t minChunk) {
  int64_t n = std::max<int64_t>(end - begin, 0);
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<int64_t> calls{0}, shortChunks{0};
  std::atomic<bool> badRange{false};
  pool.parallelFor(
      begin, end,
      [&](int64_t b, int64_t e) {
        ++calls;
        if (b < begin || e > end || b >= e) {
          badRange = true;
          return;
        }
        if (e - b < minChunk) ++shortChunks;
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i - begin)].fetch_add(1);
      },
      minChunk);
  SCOPED_TRACE(::testing::Message() << "pool " << pool.size() << " range [" << begin << ", " << end
                                    << ") minChunk " << minChunk);
  EXPECT_FALSE(badRange);
  if (n == 0) {
    EXPECT_EQ(calls.load(), 0);
  }
  EXPECT_LE(shortChunks.load(), 1);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << begin + i;
}

} // namespace

TEST(ThreadPool, CoversEveryIndexOnce) {
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 0},  {5, 5},    {7, 3},   {0, 1},
                                                           {0, 2},  {0, 7},    {3, 100}, {-50, 50},
                                                           {0, 10007}, {1000, 1017}};
  for (int threads : {1, 2, 3, 4, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (auto [b, e] : ranges)
      for (int64_t minChunk : {int64_t(0), int64_t(1), int64_t(3), int64_t(64), int64_t(1) << 40})
        expectCoverage(pool, b, e, minChunk);
  }
}

TEST(ThreadPool, SizeIsAtLeastOne) {
  EXPECT_EQ(ThreadPool(0).size(), 1);
  EXPECT_EQ(ThreadPool(-3).size(), 1);
  EXPECT_GE(ThreadPool::global().size(), 1);
  expectCoverage(ThreadPool::global(), 0, 1000, 1);
}

TEST(ThreadPool, UsesSeveralThreads) {
  ThreadPool pool(4);
  std::mutex mu;
  std::set<std::thread::id> ids;
  pool.parallelFor(0, 64, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_GT(ids.size(), 1u);
  EXPECT_LE(ids.size(), 4u);
}

TEST(ThreadPool, PropagatesFirstException) {
  for (int threads : {1, 4}) {
    ThreadPool pool(threads);
    try {
      pool.parallelFor(0, 1000, [](int64_t b, int64_t e) {
        if (b <= 500 && 500 < e) throw std::runtime_error("boom at 500");
      });
      FAIL() << "expected an exception";
    } catch (const std::runtime_error &e) {
      EXPECT_STREQ(e.what(), "boom at 500");
    }
    // Every chunk throwing still yields exactly one exception, and the pool stays usable.
    EXPECT_THROW(pool.parallelFor(0, 100, [](int64_t, int64_t) { throw std::logic_error("all"); }),
                 std::logic_error);
    expectCoverage(pool, 0, 5000, 1);
  }
}

TEST(ThreadPool, NestedParallelForRunsSerially) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    constexpr int64_t kOuter = 16, kInner = 100;
    std::vector<std::atomic<int>> hits(kOuter * kInner);
    pool.parallelFor(0, kOuter, [&](int64_t ob, int64_t oe) {
      for (int64_t o = ob; o < oe; ++o) {
        std::thread::id self = std::this_thread::get_id();
        pool.parallelFor(0, kInner, [&](int64_t ib, int64_t ie) {
          EXPECT_EQ(std::this_thread::get_id(), self); // nested: same thread
          for (int64_t i = ib; i < ie; ++i) hits[static_cast<size_t>(o * kInner + i)]++;
        });
      }
    });
    for (auto &h : hits) ASSERT_EQ(h.load(), 1);
  }
}

TEST(ThreadPool, ConcurrentCallersShareThePool) {
  ThreadPool pool(3);
  constexpr int kCallers = 4;
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 50; ++rep) {
        int64_t n = 100 + c * 37 + rep;
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallelFor(0, n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
        for (auto &h : hits)
          if (h.load() != 1) ++failures;
      }
    });
  for (std::thread &t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// Idle workers poll for new jobs for a while before they sleep: jobs posted while they poll,
// as they give up, and long after (asleep) all run to completion on several threads.
TEST(ThreadPool, JobsPostedAtAnyPointOfAWorkersIdlingRun) {
  ThreadPool pool(2);
  std::mutex mu;
  std::set<std::thread::id> ids;
  for (int rep = 0; rep < 300; ++rep) {
    // 0 to ~300 microseconds idle: within the polling, around its end, and past it.
    std::this_thread::sleep_for(std::chrono::microseconds(rep % 31 * 10));
    std::vector<std::atomic<int>> hits(64);
    pool.parallelFor(0, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    });
    for (auto &h : hits) ASSERT_EQ(h.load(), 1) << "rep " << rep;
  }
  EXPECT_EQ(ids.size(), 2u);
}

// A pool destroyed right after a job, its workers still polling, joins them at once.
TEST(ThreadPool, DestroyedWhileItsWorkersPoll) {
  auto start = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 50; ++rep) {
    ThreadPool pool(3);
    expectCoverage(pool, 0, 100, 1);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}
