#include "runtime/GradientAverager.h"

#include "runtime/KernelProfile.h"
#include "support/Error.h"

#include <fmt/format.h>

#include <chrono>
#include <utility>

namespace enc {

void checkBucketCount(ProcessGroup &group, const std::string &label, const std::vector<Tensor *> &tensors) {
  double n = 0;
  for (const Tensor *t : tensors) n += static_cast<double>(t->numel());
  double total = n;
  if (!sameCountInGroup(group, n, &total))
    throw Error(fmt::format("{}: {} averages {} gradient values, but the other processes average a different number "
                            "({} in all over {} processes)",
                            label, group.describe(), n, total, group.size()),
                "every process must train the same network (same hyper-parameters) in data-parallel mode");
}

void averageBucket(ProcessGroup &group, const std::string &label, const std::vector<Tensor *> &tensors, bool checkCount) {
  auto started = std::chrono::steady_clock::now();
  if (checkCount) checkBucketCount(group, label, tensors);
  allreduceTensors(group, tensors, 1.0 / group.size());
  if (kernelProfiling())
    recordKernelTime(label, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

GradientAverager::GradientAverager(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {}

GradientAverager::~GradientAverager() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void GradientAverager::start(std::string label, std::vector<Tensor> tensors, bool checkCount) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({std::move(label), std::move(tensors), checkCount});
    ++busy_;
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }
  wake_.notify_one();
}

void GradientAverager::finish() {
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return busy_ == 0; });
  if (std::exception_ptr f = std::exchange(failure_, nullptr)) std::rethrow_exception(f);
}

void GradientAverager::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // Stopping waits for what was started: the caller's tensors may still be read.
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    Bucket b = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    try {
      average(b);
    } catch (...) {
      std::lock_guard<std::mutex> relock(mu_);
      if (!failure_) failure_ = std::current_exception();
    }
    lock.lock();
    if (--busy_ == 0) done_.notify_all();
  }
}

void GradientAverager::average(Bucket &b) {
  std::vector<Tensor *> tensors;
  for (Tensor &t : b.tensors) tensors.push_back(&t);
  averageBucket(*group_, b.label, tensors, b.checkCount);
}

} // namespace enc
