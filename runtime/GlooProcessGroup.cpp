// ProcessGroup over Gloo's TCP transport, with TcpStore for the rendezvous.
#include "runtime/ProcessGroup.h"
#include "runtime/TcpStore.h"
#include "support/Error.h"

#include <gloo/allgather_ring.h>
#include <gloo/barrier.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <csignal>
#include <thread>

#include <unistd.h>

namespace enc {
namespace {

// Gloo's view of our store, under a prefix per group.
class PrefixedStore : public gloo::rendezvous::Store {
public:
  PrefixedStore(dist::TcpStore &store, std::string prefix) : store_(store), prefix_(std::move(prefix)) {}
  void set(const std::string &key, const std::vector<char> &data) override { store_.set(prefix_ + key, data); }
  std::vector<char> get(const std::string &key) override { return store_.get(prefix_ + key); }
  void wait(const std::vector<std::string> &keys) override { wait(keys, store_.timeout()); }
  void wait(const std::vector<std::string> &keys, const std::chrono::milliseconds &timeout) override {
    std::vector<std::string> full;
    for (const std::string &k : keys) full.push_back(prefix_ + k);
    store_.wait(full, timeout);
  }

private:
  dist::TcpStore &store_;
  std::string prefix_;
};

// What a group shares with its subgroups: the store connection and the transport device.
struct Shared {
  std::unique_ptr<dist::TcpStore> store;
  std::shared_ptr<gloo::transport::Device> device;
  std::chrono::milliseconds timeout;
};

class GlooProcessGroup : public ProcessGroup {
public:
  // `worldRanks[i]`: the world rank of this group's rank i (for messages and subgroups).
  GlooProcessGroup(std::shared_ptr<Shared> shared, std::string prefix, std::vector<int> worldRanks, int rank)
      : shared_(std::move(shared)), prefix_(std::move(prefix)), worldRanks_(std::move(worldRanks)), rank_(rank) {
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, size());
    context->setTimeout(shared_->timeout);
    PrefixedStore store(*shared_->store, prefix_);
    guarded("joining the group", [&] { context->connectFullMesh(store, shared_->device); });
    context_ = context;
    if (size() > 1) {
      for (int turn = 0; turn < 2; ++turn) {
        makeGather(floatGathers_[turn]);
        makeGather(doubleGathers_[turn]);
      }
      // Nobody leaves the constructor before every member has made its own.
      guarded("joining the group", [&] {
        for (int turn = 0; turn < 2; ++turn) {
          floatGathers_[turn].algorithm->run();
          doubleGathers_[turn].algorithm->run();
        }
      });
    }
  }

  // A peer may still be finishing the last collective when this rank is done with it, and
  // closing the connections now would fail that peer ("Connection closed by peer"). So each
  // rank first says it is leaving and waits until every member has said so, through the store
  // rather than the connections; a bounded wait, cut short when any rank is gone.
  ~GlooProcessGroup() override {
    if (size() == 1) return;
    try {
      dist::TcpStore &store = *shared_->store;
      store.set(fmt::format("{}left/{}", prefix_, rank_), {'1'});
      std::vector<std::string> keys;
      for (int r = 0; r < size(); ++r) keys.push_back(fmt::format("{}left/{}", prefix_, r));
      const auto deadline = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(shared_->timeout, kLeaveWait);
      while (true) {
        try {
          store.wait(keys, std::chrono::milliseconds(100));
          return;
        } catch (const std::exception &) {
          if (std::chrono::steady_clock::now() > deadline || !store.goneRanks().empty()) return;
        }
      }
    } catch (const std::exception &) {
      // The store is gone (its host left): nobody is waiting for this rank any more.
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(worldRanks_.size()); }

  void allreduceSum(float *data, size_t n) override { allreduce(data, n); }
  void allreduceSum(double *data, size_t n) override { allreduce(data, n); }

  void barrier() override {
    guarded("a barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTag(nextTag());
      gloo::barrier(opts);
    });
  }

protected:
  std::shared_ptr<ProcessGroup> makeSubgroup(const std::vector<int> &ranks) override {
    // Every member of this group counts its subgroups alike, so the prefix names one group.
    std::string prefix = fmt::format("{}sub{}/", prefix_, ++subgroups_);
    auto mine = std::find(ranks.begin(), ranks.end(), rank_);
    if (mine == ranks.end()) return nullptr;
    std::vector<int> world;
    for (int r : ranks) world.push_back(worldRanks_[static_cast<size_t>(r)]);
    return std::make_shared<GlooProcessGroup>(shared_, prefix, world, static_cast<int>(mine - ranks.begin()));
  }

private:
  std::shared_ptr<Shared> shared_;
  std::string prefix_;
  std::vector<int> worldRanks_;
  int rank_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t tag_ = 0;
  int subgroups_ = 0;

  uint32_t nextTag() { return tag_++ & 0xffffff; }

  static constexpr std::chrono::milliseconds kLeaveWait{10000};

  // Sums go through Gloo's ring all-gather of a fixed buffer of kChunk elements per element
  // type, made when the group is (every peer alive and connected) and reused: larger sums go
  // in chunks. Each rank then adds the gathered values in rank order, so every rank gets the
  // same bits (a ring all-reduce adds in a different order on each rank, and data-parallel
  // replicas would drift apart). Two gathers per type take turns: peers that finished one
  // call send the next one's data as soon as they have it, and it must not land in the buffer
  // this rank is still adding up. A gather made after a peer died could wait for it forever;
  // the unbound-buffer gloo::allreduce took over a millisecond per call on loopback where this
  // takes ~50 us.
  static constexpr size_t kChunk = 1024;
  template <typename T> struct Gather {
    std::vector<T> in, out; // kChunk, size() * kChunk
    std::unique_ptr<gloo::AllgatherRing<T>> algorithm;
  };
  Gather<float> floatGathers_[2];
  Gather<double> doubleGathers_[2];
  unsigned floatTurn_ = 0, doubleTurn_ = 0;
  Gather<float> &gatherFor(float *) { return floatGathers_[floatTurn_++ % 2]; }
  Gather<double> &gatherFor(double *) { return doubleGathers_[doubleTurn_++ % 2]; }

  template <typename T> void makeGather(Gather<T> &g) {
    g.in.assign(kChunk, T(0));
    g.out.assign(kChunk * static_cast<size_t>(size()), T(0));
    guarded("setting up the group's all-reduce", [&] {
      g.algorithm = std::make_unique<gloo::AllgatherRing<T>>(context_, std::vector<const T *>{g.in.data()}, g.out.data(),
                                                              static_cast<int>(kChunk));
    });
  }

  template <typename T> void allreduce(T *data, size_t n) {
    if (size() == 1 || n == 0) return;
    for (size_t at = 0; at < n; at += kChunk) {
      Gather<T> &g = gatherFor(data);
      size_t m = std::min(kChunk, n - at);
      std::copy(data + at, data + at + m, g.in.begin());
      guarded("an all-reduce", [&] { g.algorithm->run(); });
      for (size_t j = 0; j < m; ++j) {
        T sum = g.out[j];
        for (size_t r = 1; r < static_cast<size_t>(size()); ++r) sum += g.out[r * kChunk + j];
        data[at + j] = sum;
      }
    }
  }

  // Runs a Gloo call; its failure becomes an Error that says which rank is gone if the store
  // knows (a dead process's store connection closes too), else that the peers timed out.
  template <typename F> void guarded(const char *what, F &&f) {
    try {
      f();
    } catch (const Error &) {
      throw;
    } catch (const std::exception &e) {
      std::vector<int> gone;
      for (int i = 0; i < 20; ++i) { // the store may see the closed connection a moment later
        for (int r : shared_->store->goneRanks())
          if (std::find(worldRanks_.begin(), worldRanks_.end(), r) != worldRanks_.end()) gone.push_back(r);
        if (!gone.empty()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      std::string who = fmt::format("rank {} of {}", worldRanks_[static_cast<size_t>(rank_)], size());
      if (!gone.empty()) {
        std::string list;
        for (int r : gone) list += (list.empty() ? "" : ", ") + std::to_string(r);
        throw Error(fmt::format("process group: {} failed on {}: rank {} {} gone ({})", what, who, list,
                                gone.size() == 1 ? "is" : "are", e.what()),
                    "a peer process exited or crashed; see its own error output");
      }
      throw Error(fmt::format("process group: {} failed on {} after waiting up to {} s; no peer has exited, one may be "
                              "stuck or calling a different collective ({})",
                              what, who, shared_->timeout.count() / 1000.0, e.what()),
                  "every rank must run the same layers in the same order; ENC_DIST_TIMEOUT sets the wait");
    }
  }
};

} // namespace

std::shared_ptr<ProcessGroup> newProcessGroup(const ProcessGroupOptions &o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size)
    throw Error(fmt::format("process group: rank {} is not in a group of {} processes", o.rank, o.size),
                "RANK must be from 0 to WORLD_SIZE - 1");
  if (o.size == 1) return soloProcessGroup();
  // A peer that dies mid-send must be an error here, not a SIGPIPE that kills this process too.
  struct sigaction old {};
  if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);
  auto shared = std::make_shared<Shared>();
  shared->timeout = o.timeout;
  // The store's join checks that every rank has rank 0's WORLD_SIZE and token.
  dist::TcpStoreOptions store;
  store.host = o.masterAddr;
  store.port = o.masterPort;
  store.serve = o.rank == 0;
  store.rank = o.rank;
  store.worldSize = o.size;
  store.timeout = o.timeout;
  store.token = o.token;
  shared->store = std::make_unique<dist::TcpStore>(store);
  gloo::transport::tcp::attr attr;
  // Peers reach this process where they reach rank 0: loopback for a single machine.
  attr.hostname = o.masterAddr == "localhost" || o.masterAddr.rfind("127.", 0) == 0 ? "127.0.0.1" : "";
  if (attr.hostname.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    attr.hostname = host;
  }
  shared->device = gloo::transport::tcp::CreateDevice(attr);
  std::vector<int> world(static_cast<size_t>(o.size));
  for (int i = 0; i < o.size; ++i) world[static_cast<size_t>(i)] = i;
  return std::make_shared<GlooProcessGroup>(shared, "world/", world, o.rank);
}

} // namespace enc
