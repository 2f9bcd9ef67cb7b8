#include "runtime/TcpStore.h"

#include "support/Env.h"
#include "support/Error.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <list>
#include <map>
#include <set>
#include <string_view>
#include <thread>

namespace enc::dist {

// Wire format, both ways: [op or status: 1 byte][key length: u32][key][value length: u32][value].
// Ops: 'H' join (key: the rank; value: "WORLD_SIZE:token"), 'S' set, 'G' get if present, 'D' the
// gone ranks (value: "1,3"), 'B' goodbye. Replies: status kOk (and the value), kAbsent (a key
// not set yet), or kRefused with a reason in the key and a sentence in the value. A
// connection's first message is its join; anything else first, an unknown op, a length over
// the limits or a message that stops arriving closes that connection, never the server.
namespace {

using Clock = std::chrono::steady_clock;
constexpr Clock::time_point kNever = Clock::time_point::max();

constexpr char kAbsent = 0, kOk = 1, kRefused = 2;
// Reasons for kRefused.
const std::string kBusy = "busy";     // too many connections; try again
const std::string kToken = "token";   // the join's token is not the job's
const std::string kGroup = "group";   // the join does not fit the group (WORLD_SIZE, rank)
const std::string kFailed = "failed"; // the rendezvous failed (a wait's answer)

struct Limits {
  size_t key, value;
};
constexpr Limits kJoinLimits{32, 32 + kMaxTokenBytes};
constexpr Limits kLimits{kMaxKeyBytes, kMaxValueBytes};

enum class Io { ok, closed, timedOut, malformed };

// Until `fd` is ready for `events` (or has an error, which the next call reports), or
// `deadline` passes.
Io ready(int fd, short events, Clock::time_point deadline) {
  while (true) {
    int ms = -1;
    if (deadline != kNever) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Io::timedOut;
      ms = static_cast<int>(std::min<int64_t>(left, INT_MAX));
    }
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, ms);
    if (rc > 0) return Io::ok;
    if (rc < 0 && errno != EINTR) return Io::closed;
  }
}

Io sendAll(int fd, const char *p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    if (Io r = ready(fd, POLLOUT, deadline); r != Io::ok) return r;
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (w <= 0) return Io::closed;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Io::ok;
}

Io recvAll(int fd, char *p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    if (Io r = ready(fd, POLLIN, deadline); r != Io::ok) return r;
    ssize_t got = ::recv(fd, p, n, MSG_DONTWAIT);
    if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (got <= 0) return Io::closed;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return Io::ok;
}

// n bytes, held only as they arrive: a length announced and never sent costs nothing.
template <typename Bytes> Io recvBytes(int fd, Bytes &out, size_t n, Clock::time_point deadline) {
  constexpr size_t kPiece = size_t(1) << 16;
  out.clear();
  while (out.size() < n) {
    size_t at = out.size(), piece = std::min(kPiece, n - at);
    out.resize(at + piece);
    if (Io r = recvAll(fd, out.data() + at, piece, deadline); r != Io::ok) return r;
  }
  return Io::ok;
}

std::vector<char> encode(char op, const std::string &key, const std::vector<char> &value) {
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
  return buf;
}

Io sendMessage(int fd, char op, const std::string &key, const std::vector<char> &value, Clock::time_point deadline) {
  std::vector<char> buf = encode(op, key, value);
  return sendAll(fd, buf.data(), buf.size(), deadline);
}

struct Message {
  char op = 0;
  std::string key;
  std::vector<char> value;
};

// The first byte by `first` (kNever: whenever the peer speaks), the rest within `rest` of it
// and by `first`.
Io recvMessage(int fd, Message &m, Limits limits, Clock::time_point first, std::chrono::milliseconds rest) {
  if (Io r = recvAll(fd, &m.op, 1, first); r != Io::ok) return r;
  const Clock::time_point deadline = std::min(first, Clock::now() + rest);
  auto length = [&](size_t limit, size_t &n) {
    uint32_t raw = 0;
    if (Io r = recvAll(fd, reinterpret_cast<char *>(&raw), 4, deadline); r != Io::ok) return r;
    n = ntohl(raw);
    return n > limit ? Io::malformed : Io::ok;
  };
  size_t n = 0;
  if (Io r = length(limits.key, n); r != Io::ok) return r;
  if (Io r = recvBytes(fd, m.key, n, deadline); r != Io::ok) return r;
  if (Io r = length(limits.value, n); r != Io::ok) return r;
  return recvBytes(fd, m.value, n, deadline);
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

// Equal strings, in a time that does not depend on where they differ.
bool sameSecret(const std::string &a, const std::string &b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::vector<char> bytes(const std::string &s) { return {s.begin(), s.end()}; }
std::string text(const std::vector<char> &v) { return {v.begin(), v.end()}; }

double seconds(std::chrono::milliseconds t) { return static_cast<double>(t.count()) / 1000.0; }

} // namespace

int maxConnections(int worldSize) { return 2 * worldSize + 16; }

int freeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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
  explicit TcpStoreServer(const TcpStoreOptions &o)
      : worldSize_(o.worldSize), token_(o.token), timeout_(o.timeout),
        joinWait_(std::min(o.timeout, kJoinWait)) {
    sockaddr_in addr = resolve(o.host, o.port);
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 || ::listen(listen_, 128) != 0) {
      int err = errno;
      ::close(listen_);
      throw Error(fmt::format("process group: rank 0 cannot listen on {}:{}: {}", o.host, o.port, std::strerror(err)),
                  "choose a free MASTER_PORT (encc launch picks one)");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_, reinterpret_cast<sockaddr *>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }

  // A store that listens nowhere: serveConnectionsForTesting hands it connections.
  struct Unlistening {};
  TcpStoreServer(const TcpStoreOptions &o, Unlistening)
      : worldSize_(o.worldSize), token_(o.token), timeout_(o.timeout), joinWait_(std::min(o.timeout, kJoinWait)) {}

  ~TcpStoreServer() {
    stopping_ = true;
    if (listen_ >= 0) ::shutdown(listen_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
    }
    for (Worker &w : workers_) w.thread.join();
    if (listen_ >= 0) ::close(listen_);
  }

  int port() const { return port_; }

private:
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };

  const int worldSize_;
  const std::string token_;
  const std::chrono::milliseconds timeout_, joinWait_;
  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::list<Worker> workers_; // the acceptor's alone
  std::mutex mu_;
  std::set<int> clients_;
  std::map<std::string, std::vector<char>> data_;
  std::set<int> gone_;
  std::set<int> present_; // ranks connected now
  std::set<int> joined_;  // ranks that ever joined
  std::string failure_;   // why the rendezvous cannot succeed; every wait fails with it

  void acceptLoop() {
    while (!stopping_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      workers_.remove_if([](Worker &w) {
        if (!*w.done) return false;
        w.thread.join();
        return true;
      });
      if (workers_.size() >= static_cast<size_t>(maxConnections(worldSize_))) {
        // Told why (a rank tries again), without waiting for it to listen.
        std::vector<char> busy = encode(kRefused, kBusy, bytes("the store has too many connections"));
        [[maybe_unused]] ssize_t sent = ::send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(fd);
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto done = std::make_shared<std::atomic<bool>>(false);
      std::lock_guard<std::mutex> lock(mu_);
      clients_.insert(fd);
      workers_.push_back({std::thread([this, fd, done] {
                            serve(fd);
                            *done = true;
                          }),
                          done});
    }
  }

  // A join: "WORLD_SIZE:token" from a client that says it is rank `key`. Sets `rank` when
  // admitted; otherwise the reply says why. A join that contradicts the group while it forms
  // fails the rendezvous; a wrong token never does (that may be anyone), nor anything once
  // every rank has joined.
  void join(const Message &m, int &rank, char &status, std::string &reason, std::vector<char> &reply) {
    const std::string value = text(m.value);
    const size_t colon = value.find(':');
    std::optional<int64_t> r = parseInteger(m.key.c_str());
    std::optional<int64_t> size =
        colon == std::string::npos ? std::nullopt : parseInteger(value.substr(0, colon).c_str());
    status = kRefused;
    if (!r || !size || *r < 0 || *size < 1 || *r >= *size) {
      reason = kGroup;
      reply = bytes("a malformed join");
      return;
    }
    if (!sameSecret(value.substr(colon + 1), token_)) {
      reason = kToken;
      reply = bytes("its ENC_DIST_TOKEN is not the job's");
      return;
    }
    std::string problem;
    if (*size != worldSize_) problem = fmt::format("rank {} has WORLD_SIZE {} but rank 0 has {}", *r, *size, worldSize_);
    else if (present_.count(static_cast<int>(*r))) problem = fmt::format("another process already joined as rank {}", *r);
    if (!problem.empty()) {
      reason = kGroup;
      reply = bytes(problem);
      if (failure_.empty() && joined_.size() < static_cast<size_t>(worldSize_)) failure_ = problem;
      return;
    }
    status = kOk;
    rank = static_cast<int>(*r);
    present_.insert(rank);
    joined_.insert(rank);
    gone_.erase(rank); // a rank that reconnects is back
  }

  friend std::string serveConnectionsForTesting(const std::vector<std::string> &, int, const std::string &);

  void serve(int fd) {
    int rank = -1;
    bool bye = false;
    const Clock::time_point joinBy = Clock::now() + joinWait_;
    while (true) {
      Message m;
      if (recvMessage(fd, m, rank < 0 ? kJoinLimits : kLimits, rank < 0 ? joinBy : kNever, timeout_) != Io::ok) break;
      if ((rank < 0) != (m.op == 'H')) break; // a connection joins first, and once
      if (std::string_view("HSGDB").find(m.op) == std::string_view::npos) break;
      char status = kOk;
      std::string reason;
      std::vector<char> reply;
      {
        std::lock_guard<std::mutex> lock(mu_);
        switch (m.op) {
        case 'H': join(m, rank, status, reason, reply); break;
        case 'S': data_[m.key] = std::move(m.value); break;
        case 'G': {
          auto it = data_.find(m.key);
          if (it != data_.end()) reply = it->second;
          else if (failure_.empty()) status = kAbsent;
          else {
            status = kRefused;
            reason = kFailed;
            reply = bytes(failure_);
          }
          break;
        }
        case 'D': {
          std::string list;
          for (int r : gone_) list += (list.empty() ? "" : ",") + std::to_string(r);
          reply = bytes(list);
          break;
        }
        case 'B': bye = true; break;
        }
      }
      if (sendMessage(fd, status, reason, reply, Clock::now() + timeout_) != Io::ok || rank < 0) break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (rank >= 0 && !bye && !stopping_) gone_.insert(rank);
    if (rank >= 0) present_.erase(rank);
    clients_.erase(fd);
    ::close(fd);
  }
};

std::string serveConnectionsForTesting(const std::vector<std::string> &connections, int worldSize,
                                       const std::string &token) {
  TcpStoreOptions o;
  o.worldSize = worldSize;
  o.token = token;
  o.timeout = std::chrono::milliseconds(10000);
  TcpStoreServer server(o, TcpStoreServer::Unlistening{});
  std::string replies;
  for (const std::string &sent : connections) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
      throw Error(fmt::format("socketpair: {}", std::strerror(errno)));
    // The client: one thread sends (then closes its sending side), one reads until the server closes.
    std::thread writer([&sent, fd = fds[1]] {
      sendAll(fd, sent.data(), sent.size(), Clock::now() + std::chrono::seconds(10));
      ::shutdown(fd, SHUT_WR);
    });
    std::string got;
    std::thread reader([&got, fd = fds[1]] {
      char buf[4096];
      while (ready(fd, POLLIN, Clock::now() + std::chrono::seconds(10)) == Io::ok) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
    });
    {
      std::lock_guard<std::mutex> lock(server.mu_);
      server.clients_.insert(fds[0]);
    }
    server.serve(fds[0]); // closes fds[0]
    writer.join();
    reader.join();
    ::close(fds[1]);
    replies += got;
  }
  return replies;
}

TcpStore::TcpStore(const TcpStoreOptions &o) : host_(o.host), port_(o.port), rank_(o.rank), timeout_(o.timeout) {
  if (o.token.size() > kMaxTokenBytes)
    throw Error(fmt::format("ENC_DIST_TOKEN has {} bytes; at most {} are allowed", o.token.size(), kMaxTokenBytes),
                "a random token of 32 hex digits is plenty");
  if (o.serve) {
    server_ = std::make_unique<TcpStoreServer>(o);
    port_ = server_->port();
  }
  join(o);
}

// Connects and joins, trying again until the timeout while nothing listens yet or the store
// is busy. A listener that accepts and never answers is an error at the timeout.
void TcpStore::join(const TcpStoreOptions &o) {
  sockaddr_in addr = resolve(host_, port_);
  const Clock::time_point deadline = Clock::now() + timeout_;
  std::string lastError;
  while (true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) throw Error(fmt::format("process group: rank {} cannot make a socket: {}", rank_, std::strerror(errno)));
    int rc = ::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr);
    Io io = rc == 0 || errno == EINPROGRESS ? ready(fd_, POLLOUT, deadline) : Io::closed;
    int err = rc == 0 ? 0 : errno;
    if (io == Io::ok) {
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (io == Io::ok && err == 0) {
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      Reply reply;
      Outcome outcome = request('H', std::to_string(rank_), bytes(fmt::format("{}:{}", o.worldSize, o.token)), reply);
      if (outcome == Outcome::timedOut || outcome == Outcome::garbled) fail(outcome, "joining");
      if (outcome == Outcome::ok && reply.status == kOk) return;
      if (outcome == Outcome::ok && reply.key == kToken)
        throw Error(fmt::format("process group: the store of rank 0 at {}:{} refused rank {}: {}", host_, port_, rank_,
                                text(reply.value)),
                    "every rank needs the job's ENC_DIST_TOKEN (encc launch sets one for the ranks it starts; with "
                    "torchrun or encc launch --nnodes, export the same value on every machine)");
      if (outcome == Outcome::ok && reply.key == kGroup)
        throw Error(fmt::format("process group: {} (the store of rank 0 at {}:{} refused rank {})", text(reply.value),
                                host_, port_, rank_),
                    "every process needs its own RANK (0 to WORLD_SIZE - 1) and the same WORLD_SIZE; with --nnodes "
                    "each machine needs its own --node-rank and the same -n");
      lastError = outcome == Outcome::ok ? text(reply.value) : "the connection closed before an answer";
    } else {
      lastError = io == Io::timedOut ? "no connection" : std::strerror(err);
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (Clock::now() > deadline)
      throw Error(fmt::format("process group: rank {} could not join the store of rank 0 at {}:{} within {} s: {}",
                              rank_, host_, port_, seconds(timeout_), lastError),
                  "start rank 0 too, with the same MASTER_ADDR and MASTER_PORT (or use encc launch)");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The goodbye needs no answer (the server reads it before the connection's end), so leaving
// never waits on a stopped or busy server for long.
TcpStore::~TcpStore() {
  if (fd_ >= 0) {
    sendMessage(fd_, 'B', "", {}, Clock::now() + std::min<std::chrono::milliseconds>(timeout_, std::chrono::seconds(1)));
    ::close(fd_);
  }
  server_.reset();
}

TcpStore::Outcome TcpStore::request(char op, const std::string &key, const std::vector<char> &value, Reply &reply) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) return Outcome::lost;
  const Clock::time_point deadline = Clock::now() + timeout_;
  Io io = sendMessage(fd_, op, key, value, deadline);
  Message m;
  if (io == Io::ok) io = recvMessage(fd_, m, kLimits, deadline, timeout_);
  if (io == Io::ok && (m.op == kOk || m.op == kAbsent || m.op == kRefused)) {
    reply.status = m.op;
    reply.key = std::move(m.key);
    reply.value = std::move(m.value);
    return Outcome::ok;
  }
  ::close(fd_);
  fd_ = -1;
  return io == Io::timedOut ? Outcome::timedOut : io == Io::closed ? Outcome::lost : Outcome::garbled;
}

void TcpStore::fail(Outcome outcome, const std::string &what) {
  if (outcome == Outcome::garbled)
    throw Error(fmt::format("process group: rank {} got an answer that is not an encc store's from {}:{} while {}", rank_,
                            host_, port_, what),
                "MASTER_ADDR:MASTER_PORT must be where rank 0 of this job listens (encc launch picks a free port)");
  if (outcome == Outcome::timedOut)
    throw Error(fmt::format("process group: rank {} got no answer from the store of rank 0 at {}:{} within {} s while {}",
                            rank_, host_, port_, seconds(timeout_), what),
                "rank 0 may be stopped or overloaded, or MASTER_ADDR:MASTER_PORT is another program's; "
                "ENC_DIST_TIMEOUT sets the wait");
  throw Error(fmt::format("process group: rank {} lost the store of rank 0 at {}:{} (rank 0 is gone) while {}", rank_,
                          host_, port_, what),
              "rank 0 exited or crashed; see its own error output");
}

void TcpStore::set(const std::string &key, const std::vector<char> &value) {
  if (key.size() > kMaxKeyBytes || value.size() > kMaxValueBytes)
    throw Error(fmt::format("process group: '{}' is too large for the store ({} byte key, {} byte value; at most {} and {})",
                            key.substr(0, 64), key.size(), value.size(), kMaxKeyBytes, kMaxValueBytes));
  Reply reply;
  if (Outcome o = request('S', key, value, reply); o != Outcome::ok) fail(o, fmt::format("setting '{}'", key));
}

std::vector<char> TcpStore::await(const std::string &key, Clock::time_point deadline, std::chrono::milliseconds timeout) {
  while (true) {
    Reply reply;
    if (Outcome o = request('G', key, {}, reply); o != Outcome::ok) fail(o, fmt::format("waiting for '{}'", key));
    if (reply.status == kOk) return std::move(reply.value);
    if (reply.status == kRefused)
      throw Error(fmt::format("process group: rank {} cannot form the group: {}", rank_, text(reply.value)),
                  "every process needs its own RANK (0 to WORLD_SIZE - 1) and the same WORLD_SIZE; with --nnodes "
                  "each machine needs its own --node-rank and the same -n");
    if (Clock::now() > deadline)
      throw Error(fmt::format("process group: rank {} waited {} s for '{}' in the store; a peer did not arrive", rank_,
                              seconds(timeout), key),
                  "every rank of the group must start and join it (check WORLD_SIZE, or raise ENC_DIST_TIMEOUT)");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void TcpStore::wait(const std::vector<std::string> &keys, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (const std::string &key : keys) await(key, deadline, timeout);
}

std::optional<std::vector<char>> TcpStore::check(const std::string &key) {
  Reply reply;
  if (Outcome o = request('G', key, {}, reply); o != Outcome::ok) fail(o, fmt::format("reading '{}'", key));
  if (reply.status == kOk) return std::move(reply.value);
  return std::nullopt;
}

std::vector<char> TcpStore::get(const std::string &key) { return await(key, Clock::now() + timeout_, timeout_); }

std::vector<int> TcpStore::goneRanks() {
  Reply reply;
  if (request('D', "", {}, reply) != Outcome::ok) return {0};
  std::vector<int> out;
  std::string list = text(reply.value);
  for (size_t pos = 0; pos < list.size();) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    out.push_back(std::atoi(list.substr(pos, comma - pos).c_str()));
    pos = comma + 1;
  }
  return out;
}

} // namespace enc::dist
