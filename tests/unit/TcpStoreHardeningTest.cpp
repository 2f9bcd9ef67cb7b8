// The rendezvous store against what can reach its port: a listener that never answers, raw
// clients sending oversized or garbled messages or the wrong token, more connections than a
// job needs, ranks that disagree about the group. Each time the real ranks still get a clear
// error or a working store, within the timeout. Only loopback; every wait is bounded.
#include "runtime/ProcessGroup.h"
#include "runtime/TcpStore.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <thread>

using namespace enc;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The Error `f` throws ("" if none).
std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

dist::TcpStoreOptions storeOptions(int port, bool serve, int rank, int worldSize, milliseconds timeout,
                                   std::string token = "") {
  dist::TcpStoreOptions o;
  o.port = port;
  o.serve = serve;
  o.rank = rank;
  o.worldSize = worldSize;
  o.timeout = timeout;
  o.token = std::move(token);
  return o;
}

// A message in the store's wire format, lengths as given (they may lie).
std::string message(char op, const std::string &key, const std::string &value, uint32_t keyLength,
                    uint32_t valueLength) {
  std::string out(1, op);
  auto put32 = [&](uint32_t v) {
    v = htonl(v);
    out.append(reinterpret_cast<const char *>(&v), 4);
  };
  put32(keyLength);
  out += key;
  put32(valueLength);
  out += value;
  return out;
}
std::string message(char op, const std::string &key, const std::string &value) {
  return message(op, key, value, static_cast<uint32_t>(key.size()), static_cast<uint32_t>(value.size()));
}

// A client that speaks bytes, not the protocol.
class RawClient {
public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient &) = delete;
  RawClient &operator=(const RawClient &) = delete;

  bool connected() const { return connected_; }
  void send(const std::string &bytes) { (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }

  // Reads what the server sends until it closes the connection; false if it is still open
  // after `limit`.
  bool closedWithin(milliseconds limit, std::string *received = nullptr) {
    const Clock::time_point deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      int left = static_cast<int>(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
      if (::poll(&p, 1, std::max(left, 1)) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
      if (n > 0 && received) received->append(buf, static_cast<size_t>(n));
    }
    return false;
  }

  // The status byte of the next reply, or -1 when the connection closes first or `limit` passes.
  int status(milliseconds limit) {
    pollfd p{fd_, POLLIN, 0};
    char c = 0;
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0 || ::recv(fd_, &c, 1, 0) != 1) return -1;
    return c;
  }

private:
  int fd_ = -1;
  bool connected_ = false;
};

// A listener on MASTER_PORT that is not an encc store: it accepts and never answers (or,
// with `join`, answers the join and then nothing), as a stopped rank 0 or another program.
class SilentListener {
public:
  explicit SilentListener(bool join = false) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr *>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, join] {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) return;
      int client = ::accept(fd_, nullptr, nullptr);
      if (join) {
        char buf[256];
        (void)::recv(client, buf, sizeof buf, 0); // the join, small enough for one read
        std::string ok = message(1, "", "");
        (void)::send(client, ok.data(), ok.size(), MSG_NOSIGNAL);
      }
      for (int i = 0; i < 1000 && !done_; ++i) std::this_thread::sleep_for(milliseconds(10));
      ::close(client);
    });
  }
  ~SilentListener() {
    done_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }

private:
  int fd_ = -1, port_ = 0;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Rank 1 joins rank 0's store, sets a key, and rank 0 reads it: the store still serves.
void expectServesRank1(dist::TcpStore &rank0, const std::string &token = "") {
  dist::TcpStore rank1(storeOptions(rank0.port(), false, 1, 2, milliseconds(3000), token));
  rank1.set("after", {'o', 'k'});
  EXPECT_EQ(rank0.get("after"), (std::vector<char>{'o', 'k'}));
  EXPECT_EQ(rank1.get("after"), (std::vector<char>{'o', 'k'}));
  EXPECT_TRUE(rank0.goneRanks().empty());
}

int threadCount() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

TEST(TcpStoreHardening, ListenerThatNeverAnswersIsATimeoutNamingTheStore) {
  SilentListener foreign;
  const Clock::time_point start = Clock::now();
  std::string err = errorOf([&] { dist::TcpStore(storeOptions(foreign.port(), false, 1, 2, milliseconds(1000))); });
  EXPECT_LT(secondsSince(start), 4.0);
  EXPECT_NE(err.find(fmt::format("rank 1 got no answer from the store of rank 0 at 127.0.0.1:{} within 1 s",
                                 foreign.port())),
            std::string::npos)
      << err;
}

// Rank 0 stopped after the join (kill -STOP): every request ends at the timeout.
TEST(TcpStoreHardening, StoreThatStopsAnsweringIsATimeout) {
  SilentListener stopped(/*join=*/true);
  dist::TcpStore store(storeOptions(stopped.port(), false, 1, 2, milliseconds(1000)));
  const Clock::time_point start = Clock::now();
  std::string err = errorOf([&] { store.get("key"); });
  EXPECT_LT(secondsSince(start), 4.0);
  EXPECT_NE(err.find("within 1 s while waiting for 'key'"), std::string::npos) << err;
  // The connection is closed (a late answer must not be taken for the next one's).
  err = errorOf([&] { store.set("other", {'1'}); });
  EXPECT_NE(err.find("lost the store"), std::string::npos) << err;
}

TEST(TcpStoreHardening, OversizedLengthsCloseTheConnectionNotTheServer) {
  dist::TcpStore rank0(storeOptions(0, true, 0, 2, milliseconds(1500)));
  // A 1 GiB key before joining, four times (rank 0 used to allocate each).
  for (int i = 0; i < 4; ++i) {
    RawClient stray(rank0.port());
    ASSERT_TRUE(stray.connected());
    stray.send(message('H', "1", "", 1u << 30, 0));
    EXPECT_TRUE(stray.closedWithin(milliseconds(2000))) << i;
  }
  // A join too long for a join (a token over kMaxTokenBytes).
  {
    RawClient stray(rank0.port());
    stray.send(message('H', "1", std::string(2000, 'x')));
    EXPECT_TRUE(stray.closedWithin(milliseconds(2000)));
  }
  // A joined client announcing a value over kMaxValueBytes, or a key over kMaxKeyBytes.
  for (uint32_t keyLength : {0u, static_cast<uint32_t>(dist::kMaxKeyBytes + 1)}) {
    RawClient client(rank0.port());
    client.send(message('H', "1", "2:"));
    ASSERT_EQ(client.status(milliseconds(2000)), 1);
    std::string rest;
    ASSERT_FALSE(client.closedWithin(milliseconds(50), &rest)); // the rest of the reply
    client.send(message('S', "k", "", keyLength, keyLength ? 0 : static_cast<uint32_t>(dist::kMaxValueBytes + 1)));
    EXPECT_TRUE(client.closedWithin(milliseconds(2000))) << keyLength;
  }
  // A message that stops arriving: closed at the timeout.
  {
    RawClient slow(rank0.port());
    slow.send(message('H', "1", "2:", 1, 1000).substr(0, 8));
    const Clock::time_point start = Clock::now();
    EXPECT_TRUE(slow.closedWithin(milliseconds(5000)));
    EXPECT_GT(secondsSince(start), 1.0);
  }
  expectServesRank1(rank0);
}

TEST(TcpStoreHardening, GarbageClosesTheConnectionNotTheServer) {
  dist::TcpStore rank0(storeOptions(0, true, 0, 2, milliseconds(3000)));
  const std::vector<std::string> garbage = {
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",          // another protocol
      message('G', "key", ""),                        // a request before joining
      message('Z', "1", "2:"),                        // an unknown op
      message('H', "one", "2:"),                      // a rank that is not a number
      message('H', "1", "two"),                       // no WORLD_SIZE
      message('H', "-1", "2:"),                       // ranks out of range
      message('H', "2", "2:"),
      std::string("\x48\xff\xff\xff\xff\x00\x00", 7), // a truncated length
  };
  for (const std::string &g : garbage) {
    RawClient stray(rank0.port());
    stray.send(g);
    EXPECT_TRUE(stray.closedWithin(milliseconds(4000))) << g;
  }
  // A joined client that sends nonsense next.
  RawClient client(rank0.port());
  client.send(message('H', "1", "2:"));
  ASSERT_EQ(client.status(milliseconds(2000)), 1);
  client.send(message('H', "1", "2:") + message('Q', "", ""));
  EXPECT_TRUE(client.closedWithin(milliseconds(2000)));
  EXPECT_EQ(rank0.goneRanks(), std::vector<int>{1}); // it left without a goodbye
  expectServesRank1(rank0);                          // a rank that joins again is back
}

TEST(TcpStoreHardening, WrongTokenIsRefusedWithoutDisturbingTheJob) {
  const std::string token = "0123456789abcdef";
  dist::TcpStore rank0(storeOptions(0, true, 0, 2, milliseconds(3000), token));
  // A stranger claiming rank 1: refused at once, the rank still free, no failure recorded.
  for (const std::string &wrong : {std::string(), std::string("0123456789abcdeX"), token + "0"}) {
    const Clock::time_point start = Clock::now();
    std::string err = errorOf([&] { dist::TcpStore(storeOptions(rank0.port(), false, 1, 2, milliseconds(3000), wrong)); });
    EXPECT_LT(secondsSince(start), 2.0) << wrong;
    EXPECT_NE(err.find("refused rank 1: its ENC_DIST_TOKEN is not the job's"), std::string::npos) << err;
    EXPECT_EQ(err.find(token), std::string::npos) << err; // the secret is not shown
  }
  // One with the wrong token and another WORLD_SIZE does not fail the rendezvous either.
  RawClient stray(rank0.port());
  stray.send(message('H', "1", "7:nope"));
  EXPECT_EQ(stray.status(milliseconds(2000)), 2);
  EXPECT_TRUE(stray.closedWithin(milliseconds(2000)));
  // Without a token of its own, the store refuses one that brings a token.
  dist::TcpStore tokenless(storeOptions(0, true, 0, 2, milliseconds(3000)));
  std::string err =
      errorOf([&] { dist::TcpStore(storeOptions(tokenless.port(), false, 1, 2, milliseconds(3000), token)); });
  EXPECT_NE(err.find("ENC_DIST_TOKEN"), std::string::npos) << err;
  expectServesRank1(rank0, token);
}

TEST(TcpStoreHardening, ConnectionsAreBounded) {
  dist::TcpStore rank0(storeOptions(0, true, 0, 2, milliseconds(5000)));
  const int limit = dist::maxConnections(2), extra = 40;
  const int threadsBefore = threadCount();
  std::vector<std::unique_ptr<RawClient>> strays;
  for (int i = 0; i < limit + extra; ++i) strays.push_back(std::make_unique<RawClient>(rank0.port()));
  // Rank 0's own connection holds one slot: at least `extra` are refused, told why.
  std::vector<bool> closed(strays.size(), false);
  int refused = 0, told = 0;
  const Clock::time_point deadline = Clock::now() + milliseconds(4000);
  while (refused < extra + 1 && Clock::now() < deadline) {
    for (size_t i = 0; i < strays.size(); ++i) {
      std::string received;
      if (closed[i] || !strays[i]->closedWithin(milliseconds(1), &received)) continue;
      closed[i] = true;
      ++refused;
      told += received.find("too many connections") != std::string::npos;
    }
  }
  EXPECT_GE(refused, extra + 1);
  EXPECT_GE(told, 1);
  EXPECT_LE(threadCount(), threadsBefore + limit);
  strays.clear();
  expectServesRank1(rank0); // a rank refused while the slots are held tries again
}

TEST(TcpStoreHardening, ConnectionThatNeverJoinsIsClosed) {
  dist::TcpStore rank0(storeOptions(0, true, 0, 2, milliseconds(1000)));
  RawClient idle(rank0.port());
  const Clock::time_point start = Clock::now();
  EXPECT_TRUE(idle.closedWithin(milliseconds(5000)));
  EXPECT_GT(secondsSince(start), 0.5);
  expectServesRank1(rank0);
}

// A rank with another WORLD_SIZE, or a second process with a taken rank, while the group
// forms: refused, and rank 0's wait fails at once with the reason rather than at the timeout.
TEST(TcpStoreHardening, GroupMismatchFailsRankZeroAtOnce) {
  for (bool sizeMismatch : {true, false}) {
    SCOPED_TRACE(sizeMismatch);
    dist::TcpStore rank0(storeOptions(0, true, 0, 3, milliseconds(20000)));
    std::unique_ptr<dist::TcpStore> rank1;
    if (!sizeMismatch) rank1 = std::make_unique<dist::TcpStore>(storeOptions(rank0.port(), false, 1, 3, milliseconds(20000)));
    const Clock::time_point start = Clock::now();
    std::string rank0Error;
    std::thread waiter([&] { rank0Error = errorOf([&] { rank0.get("never"); }); });
    std::string err =
        errorOf([&] { dist::TcpStore(storeOptions(rank0.port(), false, 1, sizeMismatch ? 2 : 3, milliseconds(20000))); });
    waiter.join();
    EXPECT_LT(secondsSince(start), 5.0);
    const std::string why =
        sizeMismatch ? "rank 1 has WORLD_SIZE 2 but rank 0 has 3" : "another process already joined as rank 1";
    EXPECT_NE(err.find(why), std::string::npos) << err;
    EXPECT_NE(rank0Error.find("rank 0 cannot form the group: " + why), std::string::npos) << rank0Error;
    if (rank1) EXPECT_NE(errorOf([&] { rank1->get("never"); }).find(why), std::string::npos);
  }
}

// Once every rank has joined, a process claiming a rank is refused and the job goes on.
TEST(TcpStoreHardening, LateClaimOnARankIsRefusedWithoutFailingTheJob) {
  dist::TcpStore rank0(storeOptions(0, true, 0, 2, milliseconds(3000)));
  dist::TcpStore rank1(storeOptions(rank0.port(), false, 1, 2, milliseconds(3000)));
  std::string err = errorOf([&] { dist::TcpStore(storeOptions(rank0.port(), false, 1, 2, milliseconds(3000))); });
  EXPECT_NE(err.find("another process already joined as rank 1"), std::string::npos) << err;
  rank1.set("key", {'1'});
  EXPECT_EQ(rank0.get("key"), std::vector<char>{'1'});
  EXPECT_EQ(rank0.check("absent"), std::nullopt);
}

#ifdef ENC_HAVE_GLOO
// The same through newProcessGroup, as two processes started with different WORLD_SIZEs.
TEST(TcpStoreHardening, ProcessGroupWorldSizeMismatchIsReportedAtOnce) {
  const int port = dist::freeTcpPort();
  std::string errors[2];
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      ProcessGroupOptions o;
      o.rank = r;
      o.size = r == 0 ? 2 : 3;
      o.masterPort = port;
      o.timeout = std::chrono::seconds(30);
      errors[r] = errorOf([&] { newProcessGroup(o); });
    });
  for (std::thread &t : ranks) t.join();
  EXPECT_LT(secondsSince(start), 5.0);
  for (const std::string &e : errors) EXPECT_NE(e.find("rank 1 has WORLD_SIZE 3 but rank 0 has 2"), std::string::npos) << e;
}
#endif

TEST(TcpStoreHardening, OversizedSetIsAnErrorOnTheClient) {
  dist::TcpStore store(storeOptions(0, true, 0, 1, milliseconds(1000)));
  std::string err = errorOf([&] { store.set(std::string(dist::kMaxKeyBytes + 1, 'k'), {}); });
  EXPECT_NE(err.find("too large for the store"), std::string::npos) << err;
  store.set("fine", {'1'});
  EXPECT_EQ(store.get("fine"), std::vector<char>{'1'});
}

// The fuzzer's way in (fuzz/TcpStoreFuzzer.cpp): the server's own code over socket pairs. A join
// with the job's token, a set and a get are answered; anything before a join is not; a wrong
// token is refused.
TEST(TcpStoreHardening, ServesConnectionsOverSocketPairsForTheFuzzer) {
  auto u32 = [](uint32_t v) {
    v = htonl(v);
    return std::string(reinterpret_cast<const char *>(&v), 4);
  };
  auto message = [&](char op, const std::string &key, const std::string &value) {
    return std::string(1, op) + u32(static_cast<uint32_t>(key.size())) + key + u32(static_cast<uint32_t>(value.size())) +
           value;
  };
  const std::string join = message('H', "0", "1:t"), set = message('S', "k", "v"), get = message('G', "k", "");
  const std::string ok = message('\1', "", "");
  EXPECT_EQ(dist::serveConnectionsForTesting({join + set + get}, 1, "t"), ok + ok + message('\1', "", "v"));
  EXPECT_EQ(dist::serveConnectionsForTesting({set + join}, 1, "t"), "");
  const std::string refused = dist::serveConnectionsForTesting({message('H', "0", "1:wrong") + set}, 1, "t");
  EXPECT_EQ(refused.substr(0, 10), std::string(1, '\2') + u32(5) + "token");
  // Connections one after another share the store: a value set by one is read by the next.
  EXPECT_EQ(dist::serveConnectionsForTesting({join + set, join + get}, 1, "t"), ok + ok + ok + message('\1', "", "v"));
}

} // namespace
