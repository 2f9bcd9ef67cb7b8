// A group of processes that sum tensors together: what allreduce(...) in a layer means when
// the layer runs in more than one process (SyncBatchNorm's statistics). Made from the
// environment torchrun and `encc launch` set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
// over Gloo (TCP), which sums host memory (CUDA tensors are copied over and back). Where every
// rank has a GPU of its own and NCCL loads, the group also sums CUDA tensors on the GPUs with
// NCCL (backend "nccl"; runtime/NcclProcessGroup.cpp); ENC_DIST_BACKEND=gloo|nccl chooses.
//
// A lost peer is an error, never a hang: a collective that cannot finish within the
// timeout (ENC_DIST_TIMEOUT seconds, default 300), or whose peer's connection closed,
// throws Error naming this rank and, where the store can tell, the rank that is gone.
#pragma once

#include "runtime/Tensor.h"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace enc {

class ProcessGroup {
public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums data[0 .. n) element-wise over the group, in place. Every member calls it, with the
  // same n, in the same order as its other collectives.
  virtual void allreduceSum(float *data, size_t n) = 0;
  virtual void allreduceSum(double *data, size_t n) = 0;
  virtual void barrier() = 0;
  // "gloo" (host memory), "nccl" (CUDA tensors on the GPUs, host memory through Gloo) or
  // "none" (a group of one process).
  virtual const char *backend() const = 0;
  // Sums `n` values of `dtype` (f32 or f64) at `data`, memory of this process's GPU, over the
  // group in place (and divides them by size() with `average`), enqueued on the GPU's stream
  // without waiting for it. false, having done nothing, where the group sums host memory only.
  virtual bool allreduceOnDevice(uint64_t data, size_t n, DType dtype, bool average);
  // Starts averaging each of `tensors` (CUDA, f32 or f64) over the group in place on the GPU's
  // side stream (Gpu::sideStream), after the work issued to its main stream so far, and returns
  // without waiting: the main stream's kernels go on meanwhile (data-parallel gradient
  // buckets). joinSideStream() orders the main stream after it; until then the tensors must
  // stay alive and untouched. false, having done nothing, where the group cannot (it sums host
  // memory only, or a tensor is not a CUDA f32/f64 one).
  virtual bool startAverageOnSideStream(const std::vector<Tensor *> &tensors);
  virtual void joinSideStream();
  // Members the group knows to be gone (their connection closed without a goodbye): for
  // messages about a collective that did not finish.
  virtual std::vector<int> lostRanks() { return {}; }
  // A group of some of this group's ranks (as torch.distributed.new_group): every member of
  // this group calls it with the same ranks; non-members get nullptr. Ranks out of range, or
  // none, are an Error.
  std::shared_ptr<ProcessGroup> subgroup(std::vector<int> ranks);
  // "rank 1 of 4"
  std::string describe() const;
  // The ranks 0 .. size() - 1, for subgroup(): a group of its own over the same processes.
  std::vector<int> allRanks() const;

protected:
  // subgroup() with `ranks` sorted, distinct, in range and not empty.
  virtual std::shared_ptr<ProcessGroup> makeSubgroup(const std::vector<int> &ranks) = 0;
};

// Sums each tensor element-wise over the group, in place, then multiplies by `scale` (1 /
// size() averages: data-parallel gradients). f32 and f64 tensors on the host or the GPU
// (on the GPU where the group's backend is NCCL and `scale` is 1 or 1 / size(); else through
// host memory); the tensors of one dtype travel in one message. Every member passes tensors of
// the same shapes in the same order.
void allreduceTensors(ProcessGroup &group, const std::vector<Tensor *> &tensors, double scale = 1.0);

// Whether every member of the group passes the same `n` (the values a collective is about to
// sum: a member with other sizes would sum misaligned data). `total` gets the sum over the group.
bool sameCountInGroup(ProcessGroup &group, double n, double *total);

struct ProcessGroupOptions {
  int rank = 0;
  int size = 1;
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  std::chrono::milliseconds timeout{300000};
  // The job's secret (ENC_DIST_TOKEN): rank 0's store admits only ranks that present the same
  // one. Empty: any process that can reach MASTER_ADDR:MASTER_PORT may join.
  std::string token;
  // ENC_DIST_BACKEND: "auto" (NCCL for CUDA tensors where every rank has a GPU of its own and
  // NCCL loads, else Gloo alone), "nccl" (an error where it cannot be) or "gloo".
  std::string backend = "auto";
};

// A Gloo group, with NCCL for CUDA tensors as options.backend says (throws Error where encc was
// built without Gloo); a group of one process (size 1) needs no rendezvous, store or sockets.
std::shared_ptr<ProcessGroup> newProcessGroup(const ProcessGroupOptions &options);
std::shared_ptr<ProcessGroup> soloProcessGroup();

// NCCL for `host`'s CUDA tensors as `options.backend` asks: `host` itself (Gloo alone), or a
// group that sums CUDA tensors with NCCL and everything else through `host`. Every member of
// `host` calls it. (runtime/NcclProcessGroup.cpp)
std::shared_ptr<ProcessGroup> withDeviceBackend(std::shared_ptr<ProcessGroup> host, const ProcessGroupOptions &options);

// The options from RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ENC_DIST_TIMEOUT,
// ENC_DIST_TOKEN and ENC_DIST_BACKEND; false when WORLD_SIZE is not set. Malformed values throw Error naming the
// variable.
bool processGroupOptionsFromEnvironment(ProcessGroupOptions &options);

// The group layers use unless given one: set by initDistributed (or explicitly).
std::shared_ptr<ProcessGroup> defaultProcessGroup();
void setDefaultProcessGroup(std::shared_ptr<ProcessGroup> group);
// Joins the group the environment describes and makes it the default; returns it, or
// nullptr (and does nothing) when WORLD_SIZE is not set.
std::shared_ptr<ProcessGroup> initDistributed();

} // namespace enc
