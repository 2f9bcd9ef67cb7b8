// A key-value store over TCP for the rendezvous of a process group (what torchrun's
// MASTER_ADDR / MASTER_PORT point at). Rank 0 serves it; every rank, rank 0 included, is a
// client with one connection that it keeps open while the group lives. The server notes a
// client whose connection drops before it said goodbye, so that a rank whose collective
// failed can ask which peer is gone.
//
// Anyone who can reach MASTER_ADDR:MASTER_PORT can connect, so the server believes nothing
// from a connection before it has joined. A client joins by naming its rank, its WORLD_SIZE
// and the job's token (ENC_DIST_TOKEN); the server refuses a wrong token without disturbing
// the job, and fails the rendezvous at once (every rank's wait, rank 0's included) for a
// WORLD_SIZE other than rank 0's or a rank that another process holds. Messages are bounded
// in size (kMaxKeyBytes, kMaxValueBytes; much less before joining), connections in number
// (maxConnections), and every socket operation, on either side, in time. docs/runtime.md
// states what this does and does not protect against.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace enc::dist {

class TcpStoreServer;

// The largest key and value the store accepts; a message over them closes its connection.
// encc's keys are under 100 bytes; its largest value is Gloo's list of one rank's addresses
// to its peers, about 140 bytes per peer (64 MiB: some 470,000 ranks).
inline constexpr size_t kMaxKeyBytes = 4096;
inline constexpr size_t kMaxValueBytes = size_t(64) << 20;
// The longest ENC_DIST_TOKEN (a join message is at most this plus a few bytes).
inline constexpr size_t kMaxTokenBytes = 1024;
// A connection that has not joined within this (or the store's timeout, when shorter) is
// closed: a stranger cannot hold one of the slots below.
inline constexpr std::chrono::milliseconds kJoinWait{10000};

// The connections the server keeps at once: one per rank, plus as many again and a margin
// for connections that have not joined yet. Further connections are refused, and a refused
// rank tries again until its timeout.
int maxConnections(int worldSize);

// For the fuzzer and tests: what a fresh store of `worldSize` ranks with `token` sends back to
// `connections`, each the bytes one client sends before it closes its end, served one after
// the other by the server's own code over a socket pair (no port).
std::string serveConnectionsForTesting(const std::vector<std::string> &connections, int worldSize,
                                       const std::string &token);

// A TCP port that is free on this machine now (for MASTER_PORT: encc launch, tests).
int freeTcpPort();

struct TcpStoreOptions {
  std::string host = "127.0.0.1";
  int port = 0;       // with `serve`, 0 picks a free one (see TcpStore::port())
  bool serve = false; // this process hosts the store on host:port
  int rank = 0;
  int worldSize = 1;
  // Joining retries until this passes, so ranks may start in any order; each exchange with
  // the store after that must finish within it.
  std::chrono::milliseconds timeout{300000};
  // The job's shared secret (ENC_DIST_TOKEN); the server admits only clients with the same
  // one. Empty: anyone who can connect may join.
  std::string token;
};

class TcpStore {
public:
  explicit TcpStore(const TcpStoreOptions &options);
  ~TcpStore(); // says goodbye: this rank left on purpose

  int port() const { return port_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  void set(const std::string &key, const std::vector<char> &value);
  // Waits for the key until the timeout, then throws Error naming it. Throws at once when
  // the rendezvous has failed (a rank with another WORLD_SIZE, two processes with one rank).
  std::vector<char> get(const std::string &key);
  void wait(const std::vector<std::string> &keys, std::chrono::milliseconds timeout);
  // The value of `key` if it is set now (one round trip, no waiting).
  std::optional<std::vector<char>> check(const std::string &key);
  // Ranks whose connection to the store closed without a goodbye (a process that died). If
  // the store itself cannot be reached, {hostRank}: the rank that served it is gone.
  std::vector<int> goneRanks();

private:
  std::unique_ptr<TcpStoreServer> server_;
  std::string host_;
  int port_ = 0;
  int rank_ = 0;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::mutex mu_;

  enum class Outcome { ok, lost, timedOut, garbled };
  struct Reply {
    char status = 0;
    std::string key;
    std::vector<char> value;
  };

  void join(const TcpStoreOptions &options);
  // The value of `key` once it is set; throws Error naming it when `deadline` (the end of a
  // wait of `timeout`) passes first, or when the store is lost.
  std::vector<char> await(const std::string &key, std::chrono::steady_clock::time_point deadline,
                          std::chrono::milliseconds timeout);
  // One request, one reply, within the store's timeout. A request that times out or gets a
  // malformed reply closes the connection (a late reply would answer the next request), so
  // later ones are `lost`.
  Outcome request(char op, const std::string &key, const std::vector<char> &value, Reply &reply);
  // The Error for a request that did not succeed while doing `what`.
  [[noreturn]] void fail(Outcome outcome, const std::string &what);
};

} // namespace enc::dist
