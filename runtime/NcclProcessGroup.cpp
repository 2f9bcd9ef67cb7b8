// Process groups that sum CUDA tensors with NCCL on the GPUs (ProcessGroup::backend() "nccl").
//
// An NcclGroup wraps a host group (Gloo): host memory, barriers and the bootstrap go through
// it; CUDA tensors are summed by one NCCL communicator per group, enqueued on the GPU's
// stream. The host never waits inside a collective, so a peer that is lost mid-collective
// would leave the stream (and the host, when it next waits for it) hanging: a watchdog thread
// polls each collective's completion event and the communicator's asynchronous error, aborts
// the communicator when a collective fails or has not finished within the group's timeout
// (ENC_DIST_TIMEOUT), and the error, naming this rank and the lost ones the store knows of,
// is thrown where the host waits for the stream (Gpu::addStreamCheck) and by every later
// collective of the group.
#include "runtime/Gpu.h"
#include "runtime/Nccl.h"
#include "runtime/ProcessGroup.h"
#include "support/Error.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include <unistd.h>

namespace enc {
namespace {

using Clock = std::chrono::steady_clock;

class NcclGroup : public ProcessGroup {
public:
  NcclGroup(std::shared_ptr<ProcessGroup> host, nccl::Library &lib, std::chrono::milliseconds timeout)
      : host_(std::move(host)), lib_(lib), gpu_(cuda::Gpu::require()), timeout_(timeout) {
    // Rank 0's unique id reaches the others through the host group, as bytes summed with zeros.
    nccl::ncclUniqueId id{};
    if (host_->rank() == 0) check(lib_.ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::vector<double> bytes(nccl::kUniqueIdBytes, 0.0);
    if (host_->rank() == 0)
      for (int i = 0; i < nccl::kUniqueIdBytes; ++i) bytes[static_cast<size_t>(i)] = static_cast<unsigned char>(id.internal[i]);
    host_->allreduceSum(bytes.data(), bytes.size());
    for (int i = 0; i < nccl::kUniqueIdBytes; ++i) id.internal[i] = static_cast<char>(static_cast<unsigned char>(bytes[static_cast<size_t>(i)]));
    gpu_.makeCurrent(); // NCCL takes the calling thread's device
    check(lib_.ncclCommInitRank(&comm_, host_->size(), id, host_->rank()), "ncclCommInitRank");
    gpu_.addStreamCheck(this, [this] { throwIfFailed(); });
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclGroup() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
    gpu_.removeStreamCheck(this);
    for (const Pending &p : pending_) gpu_.driver().cuEventDestroy_v2(p.done);
    // A communicator whose collectives may still be running (or hang) is aborted, not destroyed.
    if (aborted_) return;
    if (failed()) lib_.ncclCommAbort(comm_);
    else lib_.ncclCommDestroy(comm_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const char *backend() const override { return "nccl"; }
  std::vector<int> lostRanks() override { return host_->lostRanks(); }
  void allreduceSum(float *data, size_t n) override { host_->allreduceSum(data, n); }
  void allreduceSum(double *data, size_t n) override { host_->allreduceSum(data, n); }
  void barrier() override { host_->barrier(); }

  bool allreduceOnDevice(uint64_t data, size_t n, DType dtype, bool average) override {
    if (n == 0) return true;
    if (dtype != DType::F32 && dtype != DType::F64) return false;
    enqueue(gpu_.stream(), [&] { return allReduce(data, n, dtype, average, gpu_.stream()); });
    return true;
  }

  bool startAverageOnSideStream(const std::vector<Tensor *> &tensors) override {
    for (const Tensor *t : tensors)
      if (t->device() != Device::CUDA || (t->dtype() != DType::F32 && t->dtype() != DType::F64)) return false;
    cuda::CUstream side = gpu_.sideStream();
    gpu_.orderAfter(side, gpu_.stream());
    // One group: NCCL runs the all-reduces of a bucket together.
    enqueue(side, [&] {
      nccl::ncclResult_t r = lib_.ncclGroupStart();
      for (size_t i = 0; i < tensors.size() && r == nccl::ncclSuccess; ++i) {
        Tensor &t = *tensors[i];
        if (t.numel() > 0)
          r = allReduce(reinterpret_cast<uint64_t>(t.data()), static_cast<size_t>(t.numel()), t.dtype(), true, side);
      }
      nccl::ncclResult_t end = lib_.ncclGroupEnd();
      return r != nccl::ncclSuccess ? r : end;
    });
    return true;
  }

  void joinSideStream() override { gpu_.orderAfter(gpu_.stream(), gpu_.sideStream()); }

protected:
  std::shared_ptr<ProcessGroup> makeSubgroup(const std::vector<int> &ranks) override {
    std::shared_ptr<ProcessGroup> host = host_->subgroup(ranks);
    if (!host) return nullptr;
    return std::make_shared<NcclGroup>(std::move(host), lib_, timeout_);
  }

private:
  struct Pending {
    cuda::CUevent done; // recorded on the stream after the collective
    Clock::time_point enqueued;
  };
  std::shared_ptr<ProcessGroup> host_;
  nccl::Library &lib_;
  cuda::Gpu &gpu_;
  std::chrono::milliseconds timeout_;
  nccl::ncclComm_t comm_ = nullptr;
  std::atomic<int64_t> inCallSince_{0}; // Clock ticks while a thread is inside ncclAllReduce
  std::atomic<bool> aborted_{false};
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;
  std::string failure_; // why the group failed; "" while it has not
  bool stopping_ = false;
  std::thread watchdog_;

  nccl::ncclResult_t allReduce(uint64_t data, size_t n, DType dtype, bool average, cuda::CUstream stream) {
    return lib_.ncclAllReduce(reinterpret_cast<const void *>(data), reinterpret_cast<void *>(data), n,
                              dtype == DType::F32 ? nccl::ncclFloat32 : nccl::ncclFloat64,
                              average ? nccl::ncclAvg : nccl::ncclSum, comm_, stream);
  }

  // Issues `calls` (NCCL collectives on `stream`), watched by the watchdog while inside them
  // and, through an event recorded after them, until the stream has run them.
  template <typename Calls> void enqueue(cuda::CUstream stream, Calls &&calls) {
    throwIfFailed();
    const cuda::Driver &d = gpu_.driver();
    gpu_.makeCurrent();
    cuda::CUevent done = nullptr;
    d.check(d.cuEventCreate(&done, 2 /* CU_EVENT_DISABLE_TIMING */), "cuEventCreate");
    inCallSince_ = Clock::now().time_since_epoch().count();
    nccl::ncclResult_t r = calls();
    inCallSince_ = 0;
    if (r != nccl::ncclSuccess && r != nccl::ncclInProgress) {
      d.cuEventDestroy_v2(done);
      throwIfFailed(); // the watchdog aborted it: say why
      fail(fmt::format("an NCCL all-reduce failed on {}: {}", describe(), lib_.describe(r, aborted_ ? nullptr : comm_)));
      throwIfFailed();
    }
    d.check(d.cuEventRecord(done, stream), "cuEventRecord");
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back({done, Clock::now()});
    }
    wake_.notify_all();
  }

  void check(nccl::ncclResult_t r, const char *what) {
    if (r != nccl::ncclSuccess)
      throw Error(fmt::format("process group: {} failed on {}: {}", what, describe(), lib_.describe(r, comm_)),
                  "ENC_DIST_BACKEND=gloo sums CUDA tensors through host memory instead");
  }

  bool failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return !failure_.empty();
  }
  void fail(const std::string &why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_.empty()) failure_ = why;
  }
  void throwIfFailed() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_.empty())
      throw Error(failure_, "a peer process exited, crashed or is stuck; see its own error output. ENC_DIST_TIMEOUT "
                            "sets how long a collective may take");
  }

  // Who is missing, for a collective that did not finish.
  std::string missing() {
    std::vector<int> lost = lostRanks();
    if (lost.empty()) return "no peer has exited; one may be stuck or calling a different collective";
    std::string list;
    for (int r : lost) list += (list.empty() ? "" : ", ") + std::to_string(r);
    return fmt::format("rank {} {} gone", list, lost.size() == 1 ? "is" : "are");
  }

  void abort(const std::string &why) {
    fail(why);
    if (!aborted_.exchange(true)) lib_.ncclCommAbort(comm_); // ends the stream's NCCL kernels
  }

  void watch() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(20), [&] { return stopping_; })) {
      if (aborted_) continue;
      const auto now = Clock::now();
      const int64_t since = inCallSince_;
      bool late = since != 0 && now - Clock::time_point(Clock::duration(since)) > timeout_;
      while (!pending_.empty()) {
        gpu_.makeCurrent();
        cuda::CUresult q = gpu_.driver().cuEventQuery(pending_.front().done);
        if (q == cuda::CUDA_ERROR_NOT_READY) {
          late = late || now - pending_.front().enqueued > timeout_;
          break;
        }
        gpu_.driver().cuEventDestroy_v2(pending_.front().done);
        pending_.pop_front();
      }
      nccl::ncclResult_t async = nccl::ncclSuccess;
      lib_.ncclCommGetAsyncError(comm_, &async);
      lock.unlock();
      if (async != nccl::ncclSuccess && async != nccl::ncclInProgress)
        abort(fmt::format("process group: an NCCL all-reduce failed on {}: {}; {}", describe(),
                          lib_.describe(async, comm_), missing()));
      else if (late)
        abort(fmt::format("process group: an NCCL all-reduce did not finish on {} within {} s; {}", describe(),
                          timeout_.count() / 1000.0, missing()));
      lock.lock();
    }
  }
};

// Whether this process can sum CUDA tensors with NCCL; `why` says why not.
bool ncclUsable(std::string &why) {
  if (!nccl::Library::get()) {
    why = nccl::Library::unavailableReason();
    return false;
  }
  if (!cuda::Gpu::get()) {
    why = "no GPU: " + cuda::Driver::unavailableReason();
    return false;
  }
  return true;
}

// Which other rank of `group` (on the same host) drives this process's GPU: a sentence saying
// so, or "" when none does. Every member calls it.
std::string gpuSharedWith(ProcessGroup &group) {
  cuda::Gpu &gpu = cuda::Gpu::require();
  char hostName[256] = {};
  ::gethostname(hostName, sizeof hostName - 1);
  std::vector<double> gpus(static_cast<size_t>(group.size()), 0.0);
  const size_t mine = static_cast<size_t>(group.rank());
  gpus[mine] = static_cast<double>((std::hash<std::string>()(hostName) % (int64_t{1} << 40)) * 64 +
                                   static_cast<size_t>(gpu.ordinal()) + 1);
  group.allreduceSum(gpus.data(), gpus.size());
  std::string why;
  for (int r = 0; r < group.size(); ++r)
    if (r != group.rank() && gpus[static_cast<size_t>(r)] == gpus[mine])
      why = fmt::format("ranks {} and {} share GPU {} ({}), and NCCL needs one GPU per rank", std::min(r, group.rank()),
                        std::max(r, group.rank()), gpu.ordinal(), gpu.name());
  return why;
}

// Whether every member of `group` says yes.
bool everyRank(ProcessGroup &group, bool yes) {
  double votes = yes ? 1 : 0;
  group.allreduceSum(&votes, 1);
  return votes == group.size();
}

} // namespace

std::shared_ptr<ProcessGroup> withDeviceBackend(std::shared_ptr<ProcessGroup> host, const ProcessGroupOptions &o) {
  if (o.backend == "gloo") return host;
  std::string why;
  bool usable = ncclUsable(why);
  // Every rank takes the same backend: NCCL where all can use it.
  bool all = everyRank(*host, usable);
  // NCCL refuses two ranks on one GPU: say so up front. (The CUDA emulator's "GPU" is host
  // memory, which any number of ranks may share.)
  if (all && !cuda::Gpu::require().loadsSource()) {
    why = gpuSharedWith(*host);
    all = everyRank(*host, why.empty());
  }
  if (all) return std::make_shared<NcclGroup>(std::move(host), *nccl::Library::get(), o.timeout);
  if (o.backend == "nccl") {
    if (why.empty()) why = "another rank cannot use NCCL (see its error)";
    throw Error(fmt::format("ENC_DIST_BACKEND=nccl, but rank {} of {} cannot use NCCL: {}", host->rank(), host->size(), why),
                "give each rank a GPU of its own (encc launch sets LOCAL_RANK; ENC_CUDA_DEVICE picks one), or use "
                "ENC_DIST_BACKEND=gloo to sum CUDA tensors through host memory");
  }
  return host;
}

} // namespace enc
