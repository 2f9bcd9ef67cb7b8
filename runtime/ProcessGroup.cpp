#include "runtime/ProcessGroup.h"

#include "runtime/Gpu.h"

#include "support/Env.h"
#include "support/Error.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace enc {

std::string ProcessGroup::describe() const { return fmt::format("rank {} of {}", rank(), size()); }

bool ProcessGroup::allreduceOnDevice(uint64_t, size_t, DType, bool) { return false; }
bool ProcessGroup::startAverageOnSideStream(const std::vector<Tensor *> &) { return false; }
void ProcessGroup::joinSideStream() {}

std::vector<int> ProcessGroup::allRanks() const {
  std::vector<int> ranks(static_cast<size_t>(size()));
  for (int r = 0; r < size(); ++r) ranks[static_cast<size_t>(r)] = r;
  return ranks;
}

std::shared_ptr<ProcessGroup> ProcessGroup::subgroup(std::vector<int> ranks) {
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  for (int r : ranks)
    if (r < 0 || r >= size())
      throw Error(fmt::format("process group: subgroup rank {} is not in the group of {} process{}", r, size(),
                              size() == 1 ? "" : "es"),
                  fmt::format("name ranks from 0 to {}", size() - 1));
  if (ranks.empty()) throw Error("process group: a subgroup needs at least one rank");
  return makeSubgroup(ranks);
}

namespace {

std::mutex defaultMutex;
std::shared_ptr<ProcessGroup> defaultGroup;

constexpr const char *kLauncherHint = "torchrun and encc launch set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT";

// An integer environment variable in [lo, hi]; false when unset. `hint` goes with a bad value.
bool envInt(const char *name, int64_t lo, int64_t hi, int64_t &out, const std::string &hint = kLauncherHint) {
  const char *v = std::getenv(name);
  if (!v) return false;
  std::optional<int64_t> n = parseInteger(v);
  if (!n || *n < lo || *n > hi)
    throw Error(fmt::format("{}='{}' is not an integer from {} to {}", name, v, lo, hi), hint);
  out = *n;
  return true;
}

} // namespace

namespace {

template <typename T> void sumPacked(ProcessGroup &group, const std::vector<Tensor *> &tensors, double scale) {
  std::vector<Tensor> hosts;
  size_t total = 0;
  for (Tensor *t : tensors) {
    hosts.push_back(t->to(Device::CPU));
    total += static_cast<size_t>(t->numel());
  }
  std::vector<T> packed(total);
  size_t at = 0;
  for (const Tensor &h : hosts) {
    std::memcpy(packed.data() + at, h.data(), h.nbytes());
    at += static_cast<size_t>(h.numel());
  }
  group.allreduceSum(packed.data(), total);
  if (scale != 1.0)
    for (T &v : packed) v = static_cast<T>(v * scale);
  at = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    Tensor &t = *tensors[i];
    Tensor sum = t.device() == Device::CPU ? t : Tensor::empty(t.dtype(), t.shape(), Device::CPU);
    std::memcpy(sum.data(), packed.data() + at, sum.nbytes());
    at += static_cast<size_t>(sum.numel());
    if (t.device() != Device::CPU) t = sum.to(t.device());
  }
}

// Sums the tensors (CUDA, one dtype) on the GPU, packed into one buffer when there are several;
// false where the group cannot (a host-memory group, or a scale other than 1 and 1 / size).
bool sumOnDevice(ProcessGroup &group, const std::vector<Tensor *> &tensors, double scale) {
  const bool average = scale != 1.0;
  if (average && scale != 1.0 / group.size()) return false;
  const DType dtype = tensors[0]->dtype();
  if (tensors.size() == 1) {
    Tensor &t = *tensors[0];
    return group.allreduceOnDevice(reinterpret_cast<uint64_t>(t.data()), static_cast<size_t>(t.numel()), dtype, average);
  }
  int64_t total = 0;
  for (const Tensor *t : tensors) total += t->numel();
  cuda::Gpu &gpu = cuda::Gpu::require();
  Tensor packed = Tensor::empty(dtype, {total}, Device::CUDA);
  const uint64_t base = reinterpret_cast<uint64_t>(packed.data());
  size_t at = 0; // bytes
  for (const Tensor *t : tensors) {
    gpu.copyOnDevice(base + at, reinterpret_cast<uint64_t>(t->data()), t->nbytes());
    at += t->nbytes();
  }
  if (!group.allreduceOnDevice(base, static_cast<size_t>(total), dtype, average)) return false;
  at = 0;
  for (Tensor *t : tensors) {
    gpu.copyOnDevice(reinterpret_cast<uint64_t>(t->data()), base + at, t->nbytes());
    at += t->nbytes();
  }
  return true;
}

} // namespace

void allreduceTensors(ProcessGroup &group, const std::vector<Tensor *> &tensors, double scale) {
  std::vector<Tensor *> f32, f64;
  for (Tensor *t : tensors) {
    if (t->dtype() == DType::F32) f32.push_back(t);
    else if (t->dtype() == DType::F64) f64.push_back(t);
    else
      throw Error(fmt::format("allreduceTensors: a {} tensor; only f32 and f64 tensors are summed over a group",
                              dtypeName(t->dtype())),
                  "convert it with to(DType::F32) first");
  }
  auto onDevice = [&](const std::vector<Tensor *> &ts) {
    return !ts.empty() && std::all_of(ts.begin(), ts.end(), [](const Tensor *t) { return t->device() == Device::CUDA; }) &&
           sumOnDevice(group, ts, scale);
  };
  if (!f64.empty() && !onDevice(f64)) sumPacked<double>(group, f64, scale);
  if (!f32.empty() && !onDevice(f32)) sumPacked<float>(group, f32, scale);
}

bool sameCountInGroup(ProcessGroup &group, double n, double *total) {
  double check[2] = {n, n * n}; // equal sums of n and n^2 over p members: every n the same
  group.allreduceSum(check, 2);
  const double p = group.size();
  *total = check[0];
  return check[0] == p * n && check[1] == p * n * n;
}

bool processGroupOptionsFromEnvironment(ProcessGroupOptions &o) {
  int64_t size = 0, rank = 0, port = 0, timeout = 0;
  if (!envInt("WORLD_SIZE", 1, 1 << 20, size)) return false;
  if (!envInt("RANK", 0, size - 1, rank))
    throw Error(fmt::format("WORLD_SIZE is {} but RANK is not set", size), "set RANK (0 to WORLD_SIZE - 1) for each process");
  o.size = static_cast<int>(size);
  o.rank = static_cast<int>(rank);
  if (const char *addr = std::getenv("MASTER_ADDR")) o.masterAddr = addr;
  else if (size > 1) throw Error("WORLD_SIZE is set but MASTER_ADDR is not", "set MASTER_ADDR to the host of rank 0");
  if (envInt("MASTER_PORT", 1, 65535, port)) o.masterPort = static_cast<int>(port);
  else if (size > 1) throw Error("WORLD_SIZE is set but MASTER_PORT is not", "set MASTER_PORT to a free port on rank 0's host");
  if (envInt("ENC_DIST_TIMEOUT", 1, 86400, timeout,
             "ENC_DIST_TIMEOUT is how many seconds a collective or the rendezvous waits for a peer: a whole number "
             "from 1 to 86400 (unset: 300); encc launch --timeout S sets it"))
    o.timeout = std::chrono::seconds(timeout);
  if (const char *token = std::getenv("ENC_DIST_TOKEN")) o.token = token;
  if (const char *backend = std::getenv("ENC_DIST_BACKEND")) {
    o.backend = backend;
    if (o.backend != "auto" && o.backend != "nccl" && o.backend != "gloo")
      throw Error(fmt::format("ENC_DIST_BACKEND='{}' is not a backend", backend), "use nccl, gloo or auto");
  }
  return true;
}

std::shared_ptr<ProcessGroup> defaultProcessGroup() {
  std::lock_guard<std::mutex> lock(defaultMutex);
  return defaultGroup;
}

void setDefaultProcessGroup(std::shared_ptr<ProcessGroup> group) {
  std::lock_guard<std::mutex> lock(defaultMutex);
  defaultGroup = std::move(group);
}

namespace {

// A group of one process (WORLD_SIZE=1): nothing to exchange, no store, no sockets.
class SoloGroup : public ProcessGroup {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduceSum(float *, size_t) override {}
  void allreduceSum(double *, size_t) override {}
  void barrier() override {}
  const char *backend() const override { return "none"; }

protected:
  std::shared_ptr<ProcessGroup> makeSubgroup(const std::vector<int> &) override { return std::make_shared<SoloGroup>(); }
};

} // namespace

std::shared_ptr<ProcessGroup> soloProcessGroup() { return std::make_shared<SoloGroup>(); }

std::shared_ptr<ProcessGroup> initDistributed() {
  ProcessGroupOptions o;
  if (!processGroupOptionsFromEnvironment(o)) return nullptr;
  auto group = newProcessGroup(o);
  setDefaultProcessGroup(group);
  return group;
}

#ifndef ENC_HAVE_GLOO
std::shared_ptr<ProcessGroup> newProcessGroup(const ProcessGroupOptions &o) {
  if (o.size == 1 && o.rank == 0) return o.backend == "nccl" ? withDeviceBackend(soloProcessGroup(), o) : soloProcessGroup();
  throw Error("this encc was built without Gloo: no process groups of more than one process",
              "install libgloo-dev and rebuild");
}
#endif

} // namespace enc
