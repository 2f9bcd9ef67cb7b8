// The NCCL calls encc makes (runtime/Nccl.h), answered for ranks that are threads of one
// process whose "device" memory is host memory (the CUDA emulator's). Communicators made from
// one unique id form a clique; an all-reduce returns once every rank of the clique has called
// it (the emulated stream runs each call to completion), each rank's result summed in rank
// order, so every rank gets the same bits. A rank whose peer never comes waits until its
// communicator is aborted (ncclCommAbort, from another thread), and then fails with
// ncclRemoteError, as a real communicator's kernels end when it is aborted.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace {

// Values from nccl.h.
constexpr int kSuccess = 0, kInvalidArgument = 4, kInvalidUsage = 5, kRemoteError = 6;
constexpr int kFloat32 = 7, kFloat64 = 8, kSum = 0, kAvg = 4;

struct UniqueId {
  char internal[128];
};

// One collective call of a clique: every rank's buffer, and how far the ranks are.
struct Round {
  std::vector<const void *> send;
  int posted = 0, read = 0;
};

struct Clique {
  int size = 0;
  int joined = 0;
  std::mutex mu;
  std::condition_variable changed;
  std::map<uint64_t, Round> rounds; // by call number
};

std::mutex registryMu;
std::map<std::string, std::shared_ptr<Clique>> cliques; // by unique id
std::atomic<long> allReduceCalls{0};
thread_local std::string lastError;

int failWith(int code, std::string why) {
  lastError = std::move(why);
  return code;
}

} // namespace

struct ncclComm {
  std::shared_ptr<Clique> clique;
  int rank = 0;
  uint64_t calls = 0;
  std::atomic<bool> aborted{false};
};

namespace {

template <typename T> void reduce(ncclComm *c, Round &round, void *recv, size_t n, bool average) {
  std::vector<T> sum(n, T(0));
  for (int r = 0; r < c->clique->size; ++r) {
    const T *in = static_cast<const T *>(round.send[static_cast<size_t>(r)]);
    for (size_t i = 0; i < n; ++i) sum[i] += in[i];
  }
  if (average)
    for (T &v : sum) v /= static_cast<T>(c->clique->size);
  std::memcpy(recv, sum.data(), n * sizeof(T));
}

} // namespace

extern "C" {

int ncclGetVersion(int *version) {
  *version = 22800;
  return kSuccess;
}

int ncclGetUniqueId(UniqueId *id) {
  static std::mt19937_64 gen(std::random_device{}());
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::memset(id->internal, 0, sizeof id->internal);
  std::string text = "encemu-" + std::to_string(gen());
  std::memcpy(id->internal, text.data(), text.size());
  return kSuccess;
}

int ncclCommInitRank(ncclComm **comm, int nranks, UniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return failWith(kInvalidArgument, "rank out of range");
  std::string key(id.internal, strnlen(id.internal, sizeof id.internal));
  std::shared_ptr<Clique> clique;
  {
    std::lock_guard<std::mutex> lock(registryMu);
    auto &slot = cliques[key];
    if (!slot) {
      slot = std::make_shared<Clique>();
      slot->size = nranks;
    }
    clique = slot;
  }
  if (clique->size != nranks) return failWith(kInvalidUsage, "ranks disagree on the communicator's size");
  {
    // Every rank waits for the others, as a real initialization does.
    std::unique_lock<std::mutex> lock(clique->mu);
    ++clique->joined;
    clique->changed.notify_all();
    clique->changed.wait(lock, [&] { return clique->joined == clique->size; });
  }
  auto *c = new ncclComm;
  c->clique = clique;
  c->rank = rank;
  *comm = c;
  return kSuccess;
}

int ncclAllReduce(const void *send, void *recv, size_t count, int type, int op, ncclComm *c, void *) {
  if (type != kFloat32 && type != kFloat64) return failWith(kInvalidArgument, "the emulator sums f32 and f64 only");
  if (op != kSum && op != kAvg) return failWith(kInvalidArgument, "the emulator sums and averages only");
  if (c->aborted) return failWith(kRemoteError, "the communicator was aborted");
  ++allReduceCalls;
  Clique &q = *c->clique;
  const uint64_t call = c->calls++;
  std::unique_lock<std::mutex> lock(q.mu);
  Round &round = q.rounds[call];
  round.send.resize(static_cast<size_t>(q.size));
  round.send[static_cast<size_t>(c->rank)] = send;
  ++round.posted;
  q.changed.notify_all();
  // Each rank reads every rank's buffer before any writes its result (in place is allowed).
  if (!q.changed.wait_for(lock, std::chrono::hours(24), [&] { return round.posted == q.size || c->aborted; }) ||
      c->aborted)
    return failWith(kRemoteError, "the communicator was aborted while waiting for its peers");
  lock.unlock();
  std::vector<char> result(count * (type == kFloat32 ? 4 : 8));
  if (type == kFloat32) reduce<float>(c, round, result.data(), count, op == kAvg);
  else reduce<double>(c, round, result.data(), count, op == kAvg);
  lock.lock();
  ++round.read;
  q.changed.notify_all();
  if (!q.changed.wait_for(lock, std::chrono::hours(24), [&] { return round.read >= q.size || c->aborted; }) ||
      c->aborted)
    return failWith(kRemoteError, "the communicator was aborted while waiting for its peers");
  std::memcpy(recv, result.data(), result.size());
  if (++round.read == 2 * q.size) q.rounds.erase(call); // the last rank out
  return kSuccess;
}

// Calls run to completion one by one here; a group changes nothing.
int ncclGroupStart() { return kSuccess; }
int ncclGroupEnd() { return kSuccess; }

int ncclCommGetAsyncError(ncclComm *c, int *error) {
  *error = c->aborted ? kRemoteError : kSuccess;
  return kSuccess;
}

int ncclCommAbort(ncclComm *c) {
  {
    std::lock_guard<std::mutex> lock(c->clique->mu);
    c->aborted = true;
  }
  c->clique->changed.notify_all();
  return kSuccess; // kept, not freed: another thread may still be returning from a call on it
}

int ncclCommDestroy(ncclComm *c) {
  delete c;
  return kSuccess;
}

const char *ncclGetErrorString(int result) {
  switch (result) {
  case kSuccess: return "no error";
  case kInvalidArgument: return "invalid argument";
  case kInvalidUsage: return "invalid usage";
  case kRemoteError: return "remote process exited or there was a network error";
  default: return "unknown result code";
  }
}

const char *ncclGetLastError(ncclComm *) { return lastError.c_str(); }

long encemuNcclAllReduceCalls() { return allReduceCalls; }

} // extern "C"
