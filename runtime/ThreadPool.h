// A fixed set of persistent worker threads for data-parallel loops over index ranges.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace enc {

class ThreadPool {
public:
  // Process-wide pool sized from env ENC_NUM_THREADS, else std::thread::hardware_concurrency().
  static ThreadPool &global();

  // `threads` counts the calling thread, so threads - 1 workers are started (at least 1 thread in all).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return size_; }

  // Calls fn(b, e) on disjoint chunks covering [begin, end) exactly once, each at least minChunk long (but
  // the last), using up to size() threads; the caller works too. Blocks until all chunks finish. The first
  // exception thrown by fn is rethrown here (chunks not yet started are then skipped). A parallelFor
  // called from inside a chunk (of any pool) runs serially in that thread, so nesting cannot deadlock.
  // Several threads may call parallelFor on one pool at once.
  void parallelFor(int64_t begin, int64_t end, const std::function<void(int64_t, int64_t)> &fn,
                   int64_t minChunk = 1);

private:
  struct Job;
  void workerLoop();
  static void runChunks(Job &job);

  int size_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> jobs_; // jobs that may still have unclaimed chunks
  std::atomic<uint64_t> posted_{0};       // jobs ever queued: idle workers watch it before they sleep
  bool stop_ = false;
};

} // namespace enc
