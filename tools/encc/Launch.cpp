// encc launch: runs a program in N processes on this machine that form one process group
// (or, with --nnodes, this machine's share of a group spread over several), setting what
// torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
// MASTER_PORT), and ENC_DIST_TOKEN: the secret rank 0's store asks of every rank, so that only
// the processes launched here can join. When one process fails, the others get `grace`
// seconds to notice through their collectives and exit with their own error, then they are
// stopped. Each rank runs in a process group of its own, and stopping a rank signals that whole
// group: programs the rank started (a shell script's children) stop with it.
#include "tools/encc/Commands.h"

#include "runtime/TcpStore.h"
#include "support/Error.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>
#include <map>
#include <spawn.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

namespace enc::cli {
namespace {

volatile std::sig_atomic_t interrupted = 0;
void onSignal(int sig) { interrupted = sig; }

// The group rank of this machine's `local`-th process.
int globalRank(const LaunchOptions &o, int local) { return o.nodeRank * o.processes + local; }

// 128 random bits in hex.
std::string randomToken() {
  unsigned char bits[16];
  size_t got = 0;
  while (got < sizeof bits) {
    ssize_t n = ::getrandom(bits + got, sizeof bits - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(fmt::format("encc launch: cannot read random bytes for ENC_DIST_TOKEN: {}", std::strerror(errno)));
    got += static_cast<size_t>(n);
  }
  std::string hex;
  for (unsigned char b : bits) hex += fmt::format("{:02x}", b);
  return hex;
}

// The ranks' ENC_DIST_TOKEN: the one in launch's own environment (every machine of a
// --nnodes job must share it, so it cannot be made up here), else a fresh one for a job on
// one machine; empty (anyone may join) for several machines without one.
std::string jobToken(const LaunchOptions &o) {
  if (const char *t = std::getenv("ENC_DIST_TOKEN"); t && *t) return t;
  return o.nodes == 1 ? randomToken() : "";
}

std::vector<std::string> environmentFor(int local, const LaunchOptions &o, int port, const std::string &token) {
  std::map<std::string, std::string> set = {{"RANK", std::to_string(globalRank(o, local))},
                                            {"LOCAL_RANK", std::to_string(local)},
                                            {"WORLD_SIZE", std::to_string(o.nodes * o.processes)},
                                            {"LOCAL_WORLD_SIZE", std::to_string(o.processes)},
                                            {"GROUP_RANK", std::to_string(o.nodeRank)},
                                            {"MASTER_ADDR", o.masterAddr},
                                            {"MASTER_PORT", std::to_string(port)}};
  if (o.timeoutSeconds > 0) set["ENC_DIST_TIMEOUT"] = std::to_string(o.timeoutSeconds);
  if (!o.backend.empty()) set["ENC_DIST_BACKEND"] = o.backend;
  if (!token.empty()) set["ENC_DIST_TOKEN"] = token;
  std::vector<std::string> env;
  for (char **e = environ; *e; ++e) {
    std::string entry = *e;
    if (!set.count(entry.substr(0, entry.find('=')))) env.push_back(entry);
  }
  for (const auto &[k, v] : set) env.push_back(k + "=" + v);
  return env;
}

// Sends `sig` to the process group of each rank in `pgids` (each rank leads its own); a group
// that has already gone is no error.
void signalGroups(const std::vector<pid_t> &pgids, int sig) {
  for (pid_t g : pgids) ::kill(-g, sig);
}

std::string describeStatus(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return "stopped";
}

} // namespace

int runLaunch(LaunchOptions o) {
  if (!o.command.empty() && o.command.front() == "--") o.command.erase(o.command.begin());
  if (o.command.empty()) throw Error("encc launch needs a program to run", "encc launch -n 2 -- PROGRAM [ARGS...]");
  if (o.processes < 1) throw Error(fmt::format("encc launch: -n {} is not a number of processes", o.processes));
  if (o.nodes < 1 || o.nodeRank < 0 || o.nodeRank >= o.nodes)
    throw Error(fmt::format("encc launch: --node-rank {} is not in 0 .. {}", o.nodeRank, o.nodes - 1),
                "each machine runs encc launch with the same --nnodes and its own --node-rank");
  if (o.nodes > 1 && o.masterPort <= 0)
    throw Error("encc launch: --nnodes > 1 needs --master-port (and --master-addr: node 0's address)",
                "every machine must find node 0's rendezvous at the same address and port");
  int port = o.masterPort > 0 ? o.masterPort : dist::freeTcpPort();
  const std::string token = jobToken(o);

  std::vector<char *> argv;
  for (std::string &a : o.command) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  // Each rank leads a new process group (setpgid(0, 0) in the child before exec).
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  ::posix_spawnattr_setpgroup(&attr, 0);
  std::map<pid_t, int> rankOf;
  std::vector<pid_t> groups; // every rank's process group, running or not
  for (int r = 0; r < o.processes; ++r) {
    std::vector<std::string> env = environmentFor(r, o, port, token);
    std::vector<char *> envp;
    for (std::string &e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = 0;
    int rc = ::posix_spawnp(&pid, argv[0], nullptr, &attr, argv.data(), envp.data());
    if (rc != 0) {
      ::posix_spawnattr_destroy(&attr);
      signalGroups(groups, SIGKILL);
      for (const auto &[p, _] : rankOf) ::waitpid(p, nullptr, 0);
      throw Error(fmt::format("encc launch: cannot run '{}': {}", o.command[0], std::strerror(rc)),
                  "give the program's path, or a name found on PATH");
    }
    rankOf[pid] = r;
    groups.push_back(pid);
  }
  ::posix_spawnattr_destroy(&attr);

  int result = 0;
  bool stopping = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (!rankOf.empty()) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      auto it = rankOf.find(pid);
      if (it == rankOf.end()) continue;
      int rank = globalRank(o, it->second);
      rankOf.erase(it);
      bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !stopping) {
        std::cerr << fmt::format("encc launch: rank {} {}; stopping the other ranks\n", rank, describeStatus(status));
        result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        stopping = true;
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.graceSeconds);
        // What the failed rank started goes with it at once; the others get their grace.
        ::kill(-pid, SIGTERM);
      }
      continue;
    }
    if (interrupted && !stopping) {
      std::cerr << "encc launch: interrupted; stopping every rank\n";
      signalGroups(groups, SIGTERM);
      stopping = true;
      result = 128 + interrupted;
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
    if (stopping && std::chrono::steady_clock::now() > deadline) {
      for (const auto &[p, r] : rankOf)
        std::cerr << fmt::format("encc launch: rank {} still running; killing it\n", globalRank(o, r));
      // Every group: a rank that exited may have left a process that ignored SIGTERM.
      signalGroups(groups, SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // A failed or interrupted job leaves nothing running: what its ranks started and left behind goes too.
  if (stopping) signalGroups(groups, SIGKILL);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  return result;
}

} // namespace enc::cli
