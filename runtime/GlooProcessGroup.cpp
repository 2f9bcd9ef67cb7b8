// ProcessGroup over Gloo's TCP transport, with TcpStore for the rendezvous.
#include "runtime/ProcessGroup.h"
#include "runtime/TcpStore.h"
#include "support/Env.h"
#include "support/Error.h"

#include <gloo/allgather_ring.h>
#include <gloo/barrier.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <list>
#include <mutex>
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

using Clock = std::chrono::steady_clock;

// Where a rank is in its group's sequence of collectives: `call` counts the collectives it
// has entered (the one it is in, while `since` is not 0).
struct Progress {
  std::string key; // the store key that tells peers, "<prefix>busy/<rank>"
  std::atomic<uint64_t> call{0};
  std::atomic<int64_t> since{0}; // Clock ticks when it entered; 0 outside collectives
  uint64_t told = 0;             // the last call written to `key`
};

// A collective's number as a peer wrote it to the store; -1 when it has not (or wrote nonsense).
int64_t callOf(const std::optional<std::vector<char>> &value) {
  if (!value) return -1;
  std::optional<int64_t> n = parseInteger(std::string(value->begin(), value->end()).c_str());
  return n && *n >= 0 ? *n : -1;
}

// Writes to the store the collective a rank has been waiting in for a while (kSlow). A peer
// that leaves the group without entering it reads that and closes its connections at once,
// which fails this rank's collective at once, instead of both waiting: the leaver for this
// rank to leave too, this rank for the timeout. A thread per process group tree, asleep
// unless a collective is slow; no store traffic on the fast path.
class Watchdog {
public:
  explicit Watchdog(dist::TcpStore &store) : store_(store) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void watch(Progress *p) {
    std::lock_guard<std::mutex> lock(mu_);
    watched_.push_back(p);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }
  void unwatch(Progress *p) {
    std::lock_guard<std::mutex> lock(mu_);
    watched_.remove(p);
  }

  static constexpr std::chrono::milliseconds kSlow{100};

private:
  dist::TcpStore &store_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::list<Progress *> watched_;
  bool stopping_ = false;
  std::thread thread_;

  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!wake_.wait_for(lock, kSlow / 2, [&] { return stopping_; })) {
      const int64_t slowSince = (Clock::now() - kSlow).time_since_epoch().count();
      for (Progress *p : watched_) {
        const int64_t since = p->since;
        const uint64_t call = p->call;
        if (since == 0 || since > slowSince || call == p->told) continue;
        p->told = call;
        std::string key = p->key, value = std::to_string(call);
        lock.unlock(); // a slow store must not hold up unwatch(); `p` is not used below
        try {
          store_.set(key, {value.begin(), value.end()});
        } catch (const std::exception &) {
          // The store is gone: the collective fails by itself.
        }
        lock.lock();
        break; // watched_ may have changed; look again at the next tick
      }
    }
  }
};

// What a group shares with its subgroups: the store connection, the transport device and
// the watchdog (stopped before the store closes).
struct Shared {
  std::unique_ptr<dist::TcpStore> store;
  std::shared_ptr<gloo::transport::Device> device;
  std::chrono::milliseconds timeout;
  std::unique_ptr<Watchdog> watchdog;
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
        makeGather(floatGathers_[turn], kChunk);
        makeGather(doubleGathers_[turn], kChunk);
        makeGather(floatLarge_[turn], kLargeChunk);
        makeGather(doubleLarge_[turn], kLargeChunk);
      }
      progress_.key = fmt::format("{}busy/{}", prefix_, rank_);
      shared_->watchdog->watch(&progress_);
      // Nobody leaves the constructor before every member has made its own.
      try {
        collective("joining the group", [&] {
          for (int turn = 0; turn < 2; ++turn) {
            floatGathers_[turn].algorithm->run();
            doubleGathers_[turn].algorithm->run();
            floatLarge_[turn].algorithm->run();
            doubleLarge_[turn].algorithm->run();
          }
        });
      } catch (...) {
        shared_->watchdog->unwatch(&progress_);
        throw;
      }
    }
  }

  // A peer may still be finishing the last collective when this rank is done with it, and
  // closing the connections now would fail that peer ("Connection closed by peer"). So each
  // rank says, through the store, that it is leaving after its n-th collective, and waits
  // until every member has said so too. It does not wait for a member known to be waiting in
  // a later collective (which this rank will never enter: it fails as soon as this rank
  // closes its connections), nor at all once a member is gone; and never longer than
  // kLeaveWait, or kLeaveWaitAfterFailure once a collective of this group failed (the peers
  // that failed with it then only need the store, which rank 0 serves, to say why).
  ~GlooProcessGroup() override {
    if (size() == 1) return;
    shared_->watchdog->unwatch(&progress_);
    try {
      dist::TcpStore &store = *shared_->store;
      const uint64_t calls = progress_.call;
      const std::string mine = std::to_string(calls);
      store.set(fmt::format("{}left/{}", prefix_, rank_), {mine.begin(), mine.end()});
      std::vector<int> waiting;
      for (int r = 0; r < size(); ++r)
        if (r != rank_) waiting.push_back(r);
      const auto deadline =
          Clock::now() + std::min<std::chrono::milliseconds>(shared_->timeout, failed_ ? kLeaveWaitAfterFailure : kLeaveWait);
      while (true) {
        std::erase_if(waiting, [&](int r) {
          if (store.check(fmt::format("{}left/{}", prefix_, r))) return true;
          return callOf(store.check(fmt::format("{}busy/{}", prefix_, r))) > static_cast<int64_t>(calls);
        });
        if (waiting.empty() || Clock::now() > deadline || !goneMembers().empty()) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } catch (const std::exception &) {
      // The store is gone (its host left): nobody is waiting for this rank any more.
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(worldRanks_.size()); }

  void allreduceSum(float *data, size_t n) override { allreduce(data, n); }
  void allreduceSum(double *data, size_t n) override { allreduce(data, n); }

  const char *backend() const override { return "gloo"; }
  std::vector<int> lostRanks() override {
    try {
      return goneMembers();
    } catch (const std::exception &) {
      return {0}; // the store is unreachable: its host is gone
    }
  }

  void barrier() override {
    collective("a barrier", [&] {
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
  Progress progress_;
  bool failed_ = false; // a collective failed: the group's connections are not to be trusted

  uint32_t nextTag() { return tag_++ & 0xffffff; }

  static constexpr std::chrono::milliseconds kLeaveWait{10000}, kLeaveWaitAfterFailure{2000};

  // Sums go through Gloo's ring all-gather of a fixed buffer of kChunk elements per element
  // type, made when the group is (every peer alive and connected) and reused: larger sums go
  // in chunks. Each rank then adds the gathered values in rank order, so every rank gets the
  // same bits (a ring all-reduce adds in a different order on each rank, and data-parallel
  // replicas would drift apart). Two gathers per type take turns: peers that finished one
  // call send the next one's data as soon as they have it, and it must not land in the buffer
  // this rank is still adding up. A gather made after a peer died could wait for it forever;
  // the unbound-buffer gloo::allreduce took over a millisecond per call on loopback where this
  // takes ~50 us. Large sums (data-parallel gradients) go through a second pair of gathers of
  // kLargeChunk elements: in 1024-element chunks, 33 MB of gradients took 0.9 s on loopback
  // (each chunk a round of messages). Consecutive calls never use the same buffer (each pair
  // takes turns), and a peer is at most one call ahead.
  static constexpr size_t kChunk = 1024, kLargeChunk = 65536;
  template <typename T> struct Gather {
    size_t chunk = 0;
    std::vector<T> in, out; // chunk, size() * chunk
    std::unique_ptr<gloo::AllgatherRing<T>> algorithm;
  };
  Gather<float> floatGathers_[2], floatLarge_[2];
  Gather<double> doubleGathers_[2], doubleLarge_[2];
  unsigned floatTurn_ = 0, doubleTurn_ = 0, floatLargeTurn_ = 0, doubleLargeTurn_ = 0;
  Gather<float> &gatherFor(float *, size_t n) {
    return n > 4 * kChunk ? floatLarge_[floatLargeTurn_++ % 2] : floatGathers_[floatTurn_++ % 2];
  }
  Gather<double> &gatherFor(double *, size_t n) {
    return n > 4 * kChunk ? doubleLarge_[doubleLargeTurn_++ % 2] : doubleGathers_[doubleTurn_++ % 2];
  }

  template <typename T> void makeGather(Gather<T> &g, size_t chunk) {
    g.chunk = chunk;
    g.in.assign(chunk, T(0));
    g.out.assign(chunk * static_cast<size_t>(size()), T(0));
    guarded("setting up the group's all-reduce", [&] {
      g.algorithm = std::make_unique<gloo::AllgatherRing<T>>(context_, std::vector<const T *>{g.in.data()}, g.out.data(),
                                                              static_cast<int>(chunk));
    });
  }

  template <typename T> void allreduce(T *data, size_t n) {
    if (size() == 1 || n == 0) return;
    for (size_t at = 0; at < n;) {
      Gather<T> &g = gatherFor(data, n);
      size_t m = std::min(g.chunk, n - at);
      std::copy(data + at, data + at + m, g.in.begin());
      collective("an all-reduce", [&] { g.algorithm->run(); });
      for (size_t j = 0; j < m; ++j) {
        T sum = g.out[j];
        for (size_t r = 1; r < static_cast<size_t>(size()); ++r) sum += g.out[r * g.chunk + j];
        data[at + j] = sum;
      }
      at += m;
    }
  }

  // The members whose connection to the store closed without a goodbye.
  std::vector<int> goneMembers() {
    std::vector<int> gone;
    for (int r : shared_->store->goneRanks())
      if (std::find(worldRanks_.begin(), worldRanks_.end(), r) != worldRanks_.end()) gone.push_back(r);
    return gone;
  }

  // The members (world ranks) that left the group before entering the collective this rank
  // is in.
  std::vector<int> leftEarly() {
    std::vector<int> early;
    for (int r = 0; r < size(); ++r) {
      if (r == rank_) continue;
      int64_t left = callOf(shared_->store->check(fmt::format("{}left/{}", prefix_, r)));
      if (left >= 0 && left < static_cast<int64_t>(progress_.call.load())) early.push_back(worldRanks_[static_cast<size_t>(r)]);
    }
    return early;
  }

  // A Gloo collective, counted in progress_ for the watchdog and for peers that leave.
  template <typename F> void collective(const char *what, F &&f) {
    ++progress_.call;
    progress_.since = Clock::now().time_since_epoch().count();
    struct Done {
      Progress &p;
      ~Done() { p.since = 0; }
    } done{progress_};
    guarded(what, f);
  }

  // Runs a Gloo call; its failure becomes an Error that says which rank is gone if the store
  // knows (a dead process's store connection closes too) or which left the group before this
  // collective, else that the peers timed out.
  template <typename F> void guarded(const char *what, F &&f) {
    try {
      f();
    } catch (const Error &) {
      failed_ = true;
      throw;
    } catch (const std::exception &e) {
      failed_ = true;
      std::vector<int> gone, early;
      try {
        for (int i = 0; i < 20; ++i) { // the store may see the closed connection a moment later
          if (!(gone = goneMembers()).empty() || !(early = leftEarly()).empty()) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      } catch (const std::exception &) {
        gone = {0}; // the store is unreachable: its host is gone
      }
      auto list = [](const std::vector<int> &ranks) {
        std::string out;
        for (int r : ranks) out += (out.empty() ? "" : ", ") + std::to_string(r);
        return out;
      };
      std::string who = fmt::format("rank {} of {}", worldRanks_[static_cast<size_t>(rank_)], size());
      if (!gone.empty())
        throw Error(fmt::format("process group: {} failed on {}: rank {} {} gone ({})", what, who, list(gone),
                                gone.size() == 1 ? "is" : "are", e.what()),
                    "a peer process exited or crashed; see its own error output");
      if (!early.empty())
        throw Error(fmt::format("process group: {} failed on {}: rank {} left the group without taking part ({})", what,
                                who, list(early), e.what()),
                    "that rank stopped early (see its own error output); every rank must run the same layers in the "
                    "same order");
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
  if (o.size == 1) return o.backend == "nccl" ? withDeviceBackend(soloProcessGroup(), o) : soloProcessGroup();
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
  shared->watchdog = std::make_unique<Watchdog>(*shared->store);
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
  return withDeviceBackend(std::make_shared<GlooProcessGroup>(shared, "world/", world, o.rank), o);
}

} // namespace enc
