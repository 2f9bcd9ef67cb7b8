// Averages a data-parallel backward pass's gradient buckets over a process group on a thread of
// its own, so that each bucket's all-reduce runs while the pass computes the gradients after it
// (the bucket kernels of compiler/GradientBuckets.h say when one can start). Buckets are
// averaged one at a time, in the order they were started: every process starts the same
// buckets in the same order, so their all-reduces meet.
//
// The group must not be used by another thread meanwhile: a Layer gives it a group of its own
// (a subgroup of all its group's ranks), apart from the one its pass's collectives use.
#pragma once

#include "runtime/ProcessGroup.h"
#include "runtime/Tensor.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace enc {

class GradientAverager {
public:
  explicit GradientAverager(std::shared_ptr<ProcessGroup> group);
  ~GradientAverager(); // waits for the buckets started; their failures are dropped
  GradientAverager(const GradientAverager &) = delete;
  GradientAverager &operator=(const GradientAverager &) = delete;

  ProcessGroup &group() const { return *group_; }

  // Starts averaging `tensors` (f32 or f64, in host memory) in place. `label` names the bucket
  // in ENC_PROFILE's report and in errors. `checkCount`: first make sure every process sends
  // as many values (once per compiled pass: a process with other parameter shapes would
  // average misaligned data).
  void start(std::string label, std::vector<Tensor> tensors, bool checkCount);
  // Waits for every bucket started; throws the first failure (later buckets still ran).
  void finish();

private:
  struct Bucket {
    std::string label;
    std::vector<Tensor> tensors;
    bool checkCount;
  };
  std::shared_ptr<ProcessGroup> group_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::deque<Bucket> queue_;
  size_t busy_ = 0; // buckets queued or running
  bool stopping_ = false;
  std::exception_ptr failure_;
  std::thread thread_;

  void loop();
  void average(Bucket &b);
};

// Throws Error unless every member of `group` passes as many values as `tensors` hold (see
// GradientAverager::start's checkCount).
void checkBucketCount(ProcessGroup &group, const std::string &label, const std::vector<Tensor *> &tensors);

// Averages `tensors` over `group` at once, on the calling thread: a bucket of device tensors
// where the group sums through host memory. Same checks as GradientAverager::start.
void averageBucket(ProcessGroup &group, const std::string &label, const std::vector<Tensor *> &tensors, bool checkCount);

} // namespace enc
