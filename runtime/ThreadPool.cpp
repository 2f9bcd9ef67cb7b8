#include "runtime/ThreadPool.h"

#include "support/Env.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <string>

namespace enc {

namespace {

// True while this thread runs a parallelFor chunk: nested loops then run serially instead of queueing
// work that every thread of the pool might be blocked waiting on.
thread_local bool tlsInChunk = false;

int threadsFromEnv() {
  if (std::optional<int64_t> n = parseInteger(std::getenv("ENC_NUM_THREADS")); n && *n >= 1)
    return static_cast<int>(std::min<int64_t>(*n, 1024));
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// How long a thread that ran out of work watches for more before it sleeps on a condition
// variable. A layer's kernels follow each other within microseconds; waking a sleeping worker
// takes tens of them (a 0.06 ms kernel ran no faster on two threads than on one), so workers
// and a caller waiting for the last chunks keep polling this long first, as OpenMP runtimes do.
constexpr std::chrono::microseconds kSpin{100};

// Polls `ready` until it holds or kSpin has passed; whether it holds.
template <typename Ready> bool spinFor(Ready ready) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

} // namespace

// One parallelFor call. Threads claim chunk indices from `next`; the caller waits until `done` reaches
// `chunks`. fn is only called for claimed indices < chunks, so the pointer to it is never used after the
// caller returns even if the job is still queued.
struct ThreadPool::Job {
  const std::function<void(int64_t, int64_t)> *fn;
  int64_t begin, end, chunkSize, chunks;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error; // first error; written once, by whoever sets `failed`
  std::mutex mu;
  std::condition_variable finished;
  int64_t done = 0;                  // guarded by mu
  std::atomic<bool> complete{false}; // done == chunks, for a caller polling before it waits
};

ThreadPool &ThreadPool::global() {
  // Never destroyed: joining workers from a static destructor can deadlock if exit() is called from one.
  static ThreadPool *pool = new ThreadPool(threadsFromEnv());
  return *pool;
}

ThreadPool::ThreadPool(int threads) : size_(std::max(threads, 1)) {
  workers_.reserve(static_cast<size_t>(size_ - 1));
  for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread &t : workers_) t.join();
}

void ThreadPool::runChunks(Job &job) {
  bool outer = tlsInChunk;
  tlsInChunk = true;
  int64_t finished = 0;
  for (int64_t i; (i = job.next.fetch_add(1)) < job.chunks; ++finished) {
    if (job.failed.load(std::memory_order_relaxed)) continue; // skip the rest after an error
    int64_t b = job.begin + i * job.chunkSize;
    int64_t e = std::min(job.end, b + job.chunkSize);
    try {
      (*job.fn)(b, e);
    } catch (...) {
      if (!job.failed.exchange(true)) job.error = std::current_exception();
    }
  }
  tlsInChunk = outer;
  if (finished == 0) return;
  std::lock_guard<std::mutex> lock(job.mu);
  job.done += finished;
  if (job.done == job.chunks) {
    job.complete.store(true, std::memory_order_release);
    job.finished.notify_all();
  }
}

void ThreadPool::workerLoop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        // Exhausted jobs leave the queue here; their callers are only waiting for chunks in flight.
        while (!jobs_.empty() && jobs_.front()->next.load() >= jobs_.front()->chunks) jobs_.pop_front();
        if (!jobs_.empty()) break;
        if (stop_) return;
        const uint64_t seen = posted_.load(std::memory_order_acquire);
        lock.unlock();
        bool more = spinFor([&] { return posted_.load(std::memory_order_acquire) != seen; });
        lock.lock();
        if (!more && jobs_.empty() && !stop_ && posted_.load(std::memory_order_acquire) == seen) wake_.wait(lock);
      }
      job = jobs_.front();
    }
    runChunks(*job);
  }
}

void ThreadPool::parallelFor(int64_t begin, int64_t end, const std::function<void(int64_t, int64_t)> &fn,
                             int64_t minChunk) {
  if (end <= begin) return;
  int64_t n = end - begin;
  minChunk = std::max<int64_t>(minChunk, 1);
  if (size_ == 1 || tlsInChunk || n <= minChunk) {
    bool outer = tlsInChunk;
    tlsInChunk = true;
    struct Restore {
      bool &flag;
      bool value;
      ~Restore() { flag = value; }
    } restore{tlsInChunk, outer};
    fn(begin, end);
    return;
  }

  // A few chunks per thread balance uneven chunks and workers busy with other callers' jobs.
  int64_t target = static_cast<int64_t>(size_) * 4;
  int64_t chunkSize = std::max(minChunk, (n + target - 1) / target);
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->begin = begin;
  job->end = end;
  job->chunkSize = chunkSize;
  job->chunks = (n + chunkSize - 1) / chunkSize;

  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(job);
    posted_.fetch_add(1, std::memory_order_release);
  }
  int64_t helpers = std::min<int64_t>(job->chunks - 1, static_cast<int64_t>(workers_.size()));
  for (int64_t i = 0; i < helpers; ++i) wake_.notify_one();

  runChunks(*job);
  if (!spinFor([&] { return job->complete.load(std::memory_order_acquire); })) {
    std::unique_lock<std::mutex> lock(job->mu);
    job->finished.wait(lock, [&] { return job->done == job->chunks; });
  }
  {
    // Workers drop exhausted jobs lazily; drop ours now so the queue does not keep it.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::find(jobs_.begin(), jobs_.end(), job);
    if (it != jobs_.end()) jobs_.erase(it);
  }
  if (job->error) std::rethrow_exception(job->error);
}

} // namespace enc
