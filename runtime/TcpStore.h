// A key-value store over TCP for the rendezvous of a process group (what torchrun's
// MASTER_ADDR / MASTER_PORT point at). Rank 0 serves it; every rank, rank 0 included, is a
// client with one connection that it keeps open while the group lives. The server notes a
// client whose connection drops before it said goodbye, so that a rank whose collective
// failed can ask which peer is gone.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace enc::dist {

class TcpStoreServer;

// A TCP port that is free on this machine now (for MASTER_PORT: encc launch, tests).
int freeTcpPort();

class TcpStore {
public:
  // `serve`: this process hosts the store on host:port (port 0 picks a free one, see port()).
  // Connecting retries until `timeout`, so ranks may start in any order.
  TcpStore(const std::string &host, int port, bool serve, int rank, std::chrono::milliseconds timeout);
  ~TcpStore(); // says goodbye: this rank left on purpose

  int port() const { return port_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  void set(const std::string &key, const std::vector<char> &value);
  // Waits for the key until the timeout, then throws Error naming it.
  std::vector<char> get(const std::string &key);
  void wait(const std::vector<std::string> &keys, std::chrono::milliseconds timeout);
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

  // The value of `key` once it is set; throws Error naming it when `deadline` (the end of a
  // wait of `timeout`) passes first, or when the store is lost.
  std::vector<char> await(const std::string &key, std::chrono::steady_clock::time_point deadline,
                          std::chrono::milliseconds timeout);
  // One request, one reply; false when the connection is broken.
  bool request(char op, const std::string &key, const std::vector<char> &value, char &status, std::vector<char> &reply);
};

} // namespace enc::dist
