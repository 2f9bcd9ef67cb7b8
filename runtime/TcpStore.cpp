#include "runtime/TcpStore.h"

#include "support/Error.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <thread>

namespace enc::dist {

// Wire format, both ways: [op or status: 1 byte][key length: u32][key][value length: u32][value]
// (replies carry an empty key). Ops: 'H' hello (key: the rank), 'S' set, 'G' get if present
// (status 1 and the value, or 0), 'D' the gone ranks (value: "1,3"), 'B' goodbye.
namespace {

bool sendAll(int fd, const void *data, size_t n) {
  const char *p = static_cast<const char *>(data);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool recvAll(int fd, void *data, size_t n) {
  char *p = static_cast<char *>(data);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool sendMessage(int fd, char op, const std::string &key, const std::vector<char> &value) {
  std::vector<char> buf;
  buf.reserve(9 + key.size() + value.size());
  buf.push_back(op);
  auto put32 = [&](uint32_t v) {
    v = htonl(v);
    const char *b = reinterpret_cast<const char *>(&v);
    buf.insert(buf.end(), b, b + 4);
  };
  put32(static_cast<uint32_t>(key.size()));
  buf.insert(buf.end(), key.begin(), key.end());
  put32(static_cast<uint32_t>(value.size()));
  buf.insert(buf.end(), value.begin(), value.end());
  return sendAll(fd, buf.data(), buf.size());
}

bool recvMessage(int fd, char &op, std::string &key, std::vector<char> &value) {
  uint32_t n = 0;
  if (!recvAll(fd, &op, 1) || !recvAll(fd, &n, 4)) return false;
  n = ntohl(n);
  if (n > (1u << 30)) return false;
  key.assign(n, '\0');
  if (n && !recvAll(fd, key.data(), n)) return false;
  if (!recvAll(fd, &n, 4)) return false;
  n = ntohl(n);
  if (n > (1u << 30)) return false;
  value.assign(n, '\0');
  return n == 0 || recvAll(fd, value.data(), n);
}

// host -> IPv4 address ("localhost", "127.0.0.1", a host name).
sockaddr_in resolve(const std::string &host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res)
    throw Error(fmt::format("process group: cannot resolve MASTER_ADDR '{}': {}", host, gai_strerror(rc)),
                "set MASTER_ADDR to the address of the machine that runs rank 0");
  sockaddr_in addr = *reinterpret_cast<sockaddr_in *>(res->ai_addr);
  ::freeaddrinfo(res);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

} // namespace

int freeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error(fmt::format("cannot find a free TCP port: {}", std::strerror(errno)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class TcpStoreServer {
public:
  TcpStoreServer(const std::string &host, int port) {
    sockaddr_in addr = resolve(host, port);
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 || ::listen(listen_, 128) != 0) {
      int err = errno;
      ::close(listen_);
      throw Error(fmt::format("process group: rank 0 cannot listen on {}:{}: {}", host, port, std::strerror(err)),
                  "choose a free MASTER_PORT (encc launch picks one)");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_, reinterpret_cast<sockaddr *>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }

  ~TcpStoreServer() {
    stopping_ = true;
    ::shutdown(listen_, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread &t : workers_) t.join();
    ::close(listen_);
  }

  int port() const { return port_; }

private:
  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::set<int> clients_;
  std::map<std::string, std::vector<char>> data_;
  std::set<int> gone_;
  std::set<int> present_; // ranks connected now

  void acceptLoop() {
    while (!stopping_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept(listen_, nullptr, nullptr);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> lock(mu_);
      clients_.insert(fd);
      workers_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    int rank = -1;
    bool bye = false;
    char op = 0;
    std::string key;
    std::vector<char> value;
    while (recvMessage(fd, op, key, value)) {
      char status = 1;
      std::vector<char> reply;
      {
        std::lock_guard<std::mutex> lock(mu_);
        switch (op) {
        case 'H':
          if (present_.count(std::atoi(key.c_str()))) { // two processes with one RANK
            status = 0;
            break;
          }
          rank = std::atoi(key.c_str());
          present_.insert(rank);
          gone_.erase(rank); // a rank that reconnects is back
          break;
        case 'S': data_[key] = value; break;
        case 'G': {
          auto it = data_.find(key);
          if (it == data_.end()) status = 0;
          else reply = it->second;
          break;
        }
        case 'D': {
          std::string list;
          for (int r : gone_) list += (list.empty() ? "" : ",") + std::to_string(r);
          reply.assign(list.begin(), list.end());
          break;
        }
        case 'B': bye = true; break;
        default: status = 0;
        }
      }
      if (!sendMessage(fd, status, "", reply)) break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (rank >= 0 && !bye && !stopping_) gone_.insert(rank);
    if (rank >= 0) present_.erase(rank);
    clients_.erase(fd);
    ::close(fd);
  }
};

TcpStore::TcpStore(const std::string &host, int port, bool serve, int rank, std::chrono::milliseconds timeout)
    : host_(host), port_(port), rank_(rank), timeout_(timeout) {
  if (serve) {
    server_ = std::make_unique<TcpStoreServer>(host, port);
    port_ = server_->port();
  }
  sockaddr_in addr = resolve(host, port_);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string lastError;
  while (true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0) break;
    lastError = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(fmt::format("process group: rank {} could not reach the store of rank 0 at {}:{} within {} s: {}", rank,
                              host, port_, timeout.count() / 1000.0, lastError),
                  "start rank 0 too, with the same MASTER_ADDR and MASTER_PORT (or use encc launch)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char status = 0;
  std::vector<char> reply;
  if (!request('H', std::to_string(rank), {}, status, reply))
    throw Error(fmt::format("process group: rank {} lost the store of rank 0 at {}:{} while joining", rank, host, port_));
  if (status != 1)
    throw Error(fmt::format("process group: another process already joined as rank {}", rank),
                "every process needs its own RANK (0 to WORLD_SIZE - 1); with --nnodes each machine needs its own "
                "--node-rank and the same -n");
}

TcpStore::~TcpStore() {
  if (fd_ >= 0) {
    char status = 0;
    std::vector<char> reply;
    request('B', "", {}, status, reply);
    ::close(fd_);
  }
  server_.reset();
}

bool TcpStore::request(char op, const std::string &key, const std::vector<char> &value, char &status,
                       std::vector<char> &reply) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string ignored;
  return fd_ >= 0 && sendMessage(fd_, op, key, value) && recvMessage(fd_, status, ignored, reply);
}

void TcpStore::set(const std::string &key, const std::vector<char> &value) {
  char status = 0;
  std::vector<char> reply;
  if (!request('S', key, value, status, reply))
    throw Error(fmt::format("process group: rank {} lost the store (rank 0 is gone) while setting '{}'", rank_, key));
}

std::vector<char> TcpStore::await(const std::string &key, std::chrono::steady_clock::time_point deadline,
                                  std::chrono::milliseconds timeout) {
  while (true) {
    char status = 0;
    std::vector<char> reply;
    if (!request('G', key, {}, status, reply))
      throw Error(fmt::format("process group: rank {} lost the store (rank 0 is gone) while waiting for '{}'", rank_, key));
    if (status == 1) return reply;
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(fmt::format("process group: rank {} waited {} s for '{}' in the store; a peer did not arrive", rank_,
                              timeout.count() / 1000.0, key),
                  "every rank of the group must start and join it (check WORLD_SIZE, or raise ENC_DIST_TIMEOUT)");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void TcpStore::wait(const std::vector<std::string> &keys, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const std::string &key : keys) await(key, deadline, timeout);
}

std::vector<char> TcpStore::get(const std::string &key) {
  return await(key, std::chrono::steady_clock::now() + timeout_, timeout_);
}

std::vector<int> TcpStore::goneRanks() {
  char status = 0;
  std::vector<char> reply;
  if (!request('D', "", {}, status, reply)) return {0};
  std::vector<int> out;
  std::string list(reply.begin(), reply.end());
  for (size_t pos = 0; pos < list.size();) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    out.push_back(std::atoi(list.substr(pos, comma - pos).c_str()));
    pos = comma + 1;
  }
  return out;
}

} // namespace enc::dist
