// encc launch: N processes forming one group. SyncBatchNorm through `encc eval` on per-rank
// shards gives the whole batch's result; a rank that dies is named by the others' errors,
// and launch stops the rest and fails with its status.
#include "CliTestSupport.h"
#include "ReferenceMath.h"

#include "runtime/CudaDriver.h"
#include "runtime/Nccl.h"
#include "runtime/Npy.h"
#include "runtime/TcpStore.h"
#include "runtime/Tensor.h"

#include <cerrno>
#include <cmath>
#include <csignal>
#include <regex>

using namespace enc;
using namespace enc::testing;

namespace {

class EnccLaunch : public CliTest {
protected:
#ifdef ENC_SYNC_BN_EXAMPLE
  struct TwoNodes {
    int status; // node 0's exit status
    std::string node0, node1;
  };
  // The sync_batchnorm example launched as two "machines" at once (two encc launch commands,
  // --nnodes 2, node 1 in the background), each with its own further options.
  TwoNodes launchTwoNodes(const std::string &node0Options, const std::string &node1Options) {
    const int port = dist::freeTcpPort();
    auto node = [&](int rank, const std::string &options) {
      return fmt::format("{} launch --nnodes 2 --node-rank {} --master-port {} {} -- {} > node{}.txt 2>&1",
                         quote(ENCC_BINARY), rank, port, options, quote(ENC_SYNC_BN_EXAMPLE), rank);
    };
    std::string cmd = fmt::format("cd {} && ({} & {}; s=$?; wait; exit $s)", quote(dir.string()), node(1, node1Options),
                                  node(0, node0Options));
    int raw = std::system(cmd.c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(path("node0.txt")), slurp(path("node1.txt"))};
  }
#endif
};

// The parameter checksums the training examples print, one per rank.
std::vector<double> checksums(const std::string &out) {
  std::vector<double> v;
  for (size_t at = out.find("parameter checksum "); at != std::string::npos; at = out.find("parameter checksum ", at + 1))
    v.push_back(std::stod(out.substr(at + 19)));
  return v;
}

// Tests whose processes form a group need Gloo (scripts/setup.sh installs it).
#ifdef ENC_HAVE_GLOO
#define REQUIRE_GLOO()
#else
#define REQUIRE_GLOO() GTEST_SKIP() << "built without Gloo (libgloo-dev): no process groups"
#endif

TEST_F(EnccLaunch, HelpAndBadUse) {
  CliResult r = encc("launch --help");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "WORLD_SIZE")) << r;
  r = encc("launch -n 2");
  EXPECT_NE(r.status, 0) << r;
  EXPECT_TRUE(contains(r.err, "command")) << r;
  r = encc("launch -n 2 -- ./no-such-program");
  EXPECT_NE(r.status, 0) << r;
  EXPECT_TRUE(contains(r.err, "no-such-program")) << r;
}

// Every rank sees its own RANK and the shared WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
TEST_F(EnccLaunch, SetsTheTorchrunEnvironment) {
  CliResult r = encc("launch -n 3 -- sh -c 'echo \"rank=$RANK size=$WORLD_SIZE addr=$MASTER_ADDR port=$MASTER_PORT\" > "
                     "env$RANK.txt'");
  ASSERT_EQ(r.status, 0) << r;
  std::string port;
  for (int rank = 0; rank < 3; ++rank) {
    std::string line = slurp(path(fmt::format("env{}.txt", rank)));
    EXPECT_TRUE(contains(line, fmt::format("rank={} size=3 addr=127.0.0.1 port=", rank))) << line;
    std::string p = line.substr(line.find("port=") + 5);
    if (rank == 0) port = p;
    EXPECT_EQ(p, port);
  }
  r = encc("launch -n 2 --backend gloo -- sh -c 'printf %s \"$ENC_DIST_BACKEND\" > backend$RANK.txt'");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(slurp(path("backend1.txt")), "gloo");
  r = encc("launch -n 2 --backend mpi -- true");
  EXPECT_NE(r.status, 0) << r;
  EXPECT_TRUE(contains(r.err, "--backend")) << r;
}

// --timeout and --grace are checked against the range the ranks accept for ENC_DIST_TIMEOUT, not
// dropped when out of it.
TEST_F(EnccLaunch, TimeoutAndGraceOutOfRangeAreErrors) {
  for (const char *bad : {"--timeout 0", "--timeout -5", "--timeout 86401"})
    expectFailure(encc(fmt::format("launch -n 1 {} -- true", bad)), {"--timeout", "86400"});
  for (const char *bad : {"--grace -1", "--grace 86401"})
    expectFailure(encc(fmt::format("launch -n 1 {} -- true", bad)), {"--grace", "86400"});
  CliResult r = encc("launch -n 1 --timeout 7 --grace 0 -- sh -c 'printf %s \"${ENC_DIST_TIMEOUT-unset}\" > t.txt'");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(slurp(path("t.txt")), "7");
}

// --master-port is a TCP port and --master-addr an address: a value the ranks would refuse (or
// that -5 would quietly replace by a free port) is launch's own error.
TEST_F(EnccLaunch, MasterPortOutOfRangeAndEmptyAddressAreErrors) {
  for (const char *bad : {"--master-port 0", "--master-port -5", "--master-port 65536", "--master-port 70000"})
    expectFailure(encc(fmt::format("launch -n 1 {} -- true", bad)), {"--master-port", "65535"});
  expectFailure(encc("launch -n 1 --master-addr '' -- true"), {"--master-addr", "empty"});
  CliResult r = encc("launch -n 1 --master-port 65535 -- sh -c 'printf %s \"$MASTER_PORT\" > port.txt'");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(slurp(path("port.txt")), "65535");
}

// Every rank gets the job's ENC_DIST_TOKEN, which rank 0's store asks of each rank: a fresh
// random one per launch, or the one launch was given (every machine of a --nnodes job must
// share it).
TEST_F(EnccLaunch, RanksShareTheJobsToken) {
  auto tokens = [&] {
    CliResult r = encc("launch -n 2 -- sh -c 'printf %s \"$ENC_DIST_TOKEN\" > token$RANK.txt'");
    EXPECT_EQ(r.status, 0) << r;
    return std::pair(slurp(path("token0.txt")), slurp(path("token1.txt")));
  };
  ScopedEnv none("ENC_DIST_TOKEN", nullptr);
  const auto [a0, a1] = tokens();
  EXPECT_EQ(a0.size(), 32u) << a0;
  EXPECT_EQ(a0.find_first_not_of("0123456789abcdef"), std::string::npos) << a0;
  EXPECT_EQ(a1, a0);
  EXPECT_NE(tokens().first, a0);
  ScopedEnv given("ENC_DIST_TOKEN", "shared-secret");
  EXPECT_EQ(tokens(), std::pair(std::string("shared-secret"), std::string("shared-secret")));
}

// Shards of one batch through encc eval --input X=x{rank}.npy: outputs and input gradients
// equal batch norm over the whole batch, computed here in doubles.
TEST_F(EnccLaunch, EvalOnShardsMatchesTheWholeBatch) {
  REQUIRE_GLOO();
  const int64_t C = 2, L = 3;
  const std::vector<int64_t> batch = {2, 3};
  auto x = [](int64_t s, int64_t c, int64_t l) { return 1.5 + std::cos(0.9 * s + 2.1 * c + 0.4 * l); };
  auto g = [](int64_t s, int64_t c, int64_t l) { return std::sin(1.7 * s + 0.3 * c + l); };
  int64_t total = 0;
  for (size_t r = 0; r < batch.size(); ++r) {
    Tensor xs(DType::F64, {batch[r], C, L}), gs(DType::F64, {batch[r], C, L});
    for (int64_t b = 0; b < batch[r]; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t l = 0; l < L; ++l) {
          xs.set((b * C + c) * L + l, x(total + b, c, l));
          gs.set((b * C + c) * L + l, g(total + b, c, l));
        }
    writeNpy(path(fmt::format("x{}.npy", r)).string(), xs);
    writeNpy(path(fmt::format("g{}.npy", r)).string(), gs);
    total += batch[r];
  }
  CliResult r = encc("launch -n 2 -- " + quote(ENCC_BINARY) +
                     " eval --layer SyncBatchNorm --set num_features=2 --dtype f64 --device cpu "
                     "--input X=x{rank}.npy --grad Y=g{rank}.npy --out out{rank}");
  ASSERT_EQ(r.status, 0) << r;
  // The whole batch [total, C, L], and batch norm over it with the default weight and bias.
  std::vector<double> xAll, gAll;
  for (int64_t s = 0; s < total; ++s)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t l = 0; l < L; ++l) {
        xAll.push_back(x(s, c, l));
        gAll.push_back(g(s, c, l));
      }
  const enc::testing::BatchNormRef ref =
      enc::testing::batchNormRef(xAll, gAll, std::vector<double>(C, 1.0), std::vector<double>(C, 0.0), total, C, L, 1e-5);
  int64_t first = 0;
  for (size_t rank = 0; rank < batch.size(); ++rank) {
    Tensor y = readNpy(path(fmt::format("out{}/Y.npy", rank)).string());
    Tensor gx = readNpy(path(fmt::format("out{}/grad/X.npy", rank)).string());
    ASSERT_EQ(y.shape(), (Shape{batch[rank], C, L}));
    for (int64_t i = 0; i < y.numel(); ++i) {
      const size_t whole = static_cast<size_t>(first * C * L + i); // the same element in the whole batch
      EXPECT_NEAR(y.at(i), ref.y[whole], 1e-10) << "rank " << rank;
      EXPECT_NEAR(gx.at(i), ref.gx[whole], 1e-10) << "rank " << rank;
    }
    first += batch[rank];
  }
}

#ifdef ENC_SYNC_BN_EXAMPLE
TEST_F(EnccLaunch, ExampleRanksAgreeWithTheWholeBatch) {
  REQUIRE_GLOO();
  CliResult r = encc(std::string("launch -n 3 -- ") + quote(ENC_SYNC_BN_EXAMPLE));
  ASSERT_EQ(r.status, 0) << r;
  for (int rank = 0; rank < 3; ++rank)
    EXPECT_TRUE(contains(r.out, fmt::format("rank {} of 3: {} of 6 samples; running statistics match", rank, rank + 1)))
        << r;
}

// Two "machines" (two encc launch commands, --nnodes 2, 2 processes each) form one group of
// 4: ranks are numbered node by node and the statistics are the whole batch's.
TEST_F(EnccLaunch, NodesFormOneGroup) {
  REQUIRE_GLOO();
  const auto [status, node0, node1] = launchTwoNodes("-n 2", "-n 2");
  EXPECT_EQ(status, 0) << node0 << node1;
  EXPECT_TRUE(contains(node0, "rank 0 of 4: 1 of 10 samples; running statistics match")) << node0;
  EXPECT_TRUE(contains(node0, "rank 1 of 4: 2 of 10 samples; running statistics match")) << node0;
  EXPECT_TRUE(contains(node1, "rank 2 of 4: 3 of 10 samples; running statistics match")) << node1;
  EXPECT_TRUE(contains(node1, "rank 3 of 4: 4 of 10 samples; running statistics match")) << node1;
  CliResult r = encc("launch --nnodes 2 -n 1 -- true");
  EXPECT_NE(r.status, 0) << r;
  EXPECT_TRUE(contains(r.err, "--master-port")) << r;
}

// Processes that disagree on the group: an error at once, not a wait.
TEST_F(EnccLaunch, MismatchedGroupsAreErrors) {
  REQUIRE_GLOO();
  // Node 1 with another -n: a different WORLD_SIZE.
  const TwoNodes nodes = launchTwoNodes("--timeout 3 -n 2", "--timeout 3 -n 1");
  std::string out = nodes.node0 + nodes.node1;
  EXPECT_TRUE(contains(out, "has WORLD_SIZE 2 but rank 0 has 4") || contains(out, "already joined as rank 1")) << out;
  // Two processes with one RANK.
  std::string cmd =
      fmt::format("cd {0} && (RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={1} ENC_DIST_TIMEOUT=3 {2} > a.txt 2>&1 &"
                  " RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={1} ENC_DIST_TIMEOUT=3 {2} > b.txt 2>&1; wait)",
                  quote(dir.string()), dist::freeTcpPort(), quote(ENC_SYNC_BN_EXAMPLE));
  std::system(cmd.c_str());
  out = slurp(path("a.txt")) + slurp(path("b.txt"));
  EXPECT_TRUE(contains(out, "already joined as rank 0") || contains(out, "cannot listen")) << out;
}

#ifdef ENC_TRAIN_MLP_EXAMPLE
// Data-parallel training (SyncBatchNorm, averaged gradients) on 2 ranks: the ranks end with
// the same parameters, and those of training on the whole batch in one process.
TEST_F(EnccLaunch, DataParallelTrainingMatchesOneProcess) {
  REQUIRE_GLOO();
  CliResult one = encc(std::string("launch -n 1 -- ") + quote(ENC_TRAIN_MLP_EXAMPLE) + " --device cpu");
  ASSERT_EQ(one.status, 0) << one;
  CliResult two = encc(std::string("launch -n 2 -- ") + quote(ENC_TRAIN_MLP_EXAMPLE) + " --device cpu");
  ASSERT_EQ(two.status, 0) << two;
  EXPECT_TRUE(contains(two.out, "2 ranks")) << two;
  std::vector<double> a = checksums(one.out), b = checksums(two.out);
  ASSERT_EQ(a.size(), 1u) << one;
  ASSERT_EQ(b.size(), 2u) << two;
  EXPECT_EQ(b[0], b[1]) << two;                                 // the same bits on both ranks
  EXPECT_NEAR(b[0], a[0], 1e-4 * std::abs(a[0])) << one << two; // f32, sums in another order
  // The profile shows each bucket's all-reduce, once per step, and the wait for them.
  CliResult profiled =
      enccWith("ENC_PROFILE=1", std::string("launch -n 2 -- ") + quote(ENC_TRAIN_MLP_EXAMPLE) + " --device cpu");
  ASSERT_EQ(profiled.status, 0) << profiled;
  EXPECT_TRUE(std::regex_search(profiled.err, std::regex(R"( 60  MLP gradient bucket0: all-reduce of 6 tensors)")))
      << profiled;
  EXPECT_TRUE(std::regex_search(profiled.err, std::regex(R"( 60  MLP waiting for gradient buckets)"))) << profiled;
}
#endif

// NCCL across processes, one GPU each: CUDA tensors summed on the GPUs; the ranks agree with
// each other to the bit and with one process to f32 rounding.
TEST_F(EnccLaunch, NcclOnSeveralGpus) {
  REQUIRE_GLOO();
  cuda::Driver *driver = cuda::Driver::get();
  if (!driver || driver->deviceCount() < 2)
    GTEST_SKIP() << "needs 2 GPUs: " << (driver ? fmt::format("this machine has {}", driver->deviceCount())
                                                : cuda::Driver::unavailableReason());
  if (!nccl::Library::get()) GTEST_SKIP() << nccl::Library::unavailableReason();
  CliResult one = encc(std::string("launch -n 1 -- ") + quote(ENC_TRAIN_MLP_EXAMPLE) + " --device cuda");
  ASSERT_EQ(one.status, 0) << one;
  CliResult two = enccWith("ENC_DIST_BACKEND=nccl",
                           std::string("launch -n 2 -- ") + quote(ENC_TRAIN_MLP_EXAMPLE) + " --device cuda");
  ASSERT_EQ(two.status, 0) << two;
  EXPECT_TRUE(contains(two.out, "2 ranks (nccl)")) << two;
  std::vector<double> a = checksums(one.out), b = checksums(two.out);
  ASSERT_EQ(b.size(), 2u) << two;
  EXPECT_EQ(b[0], b[1]) << two;
  EXPECT_NEAR(b[0], a.at(0), 1e-4 * std::abs(a.at(0))) << one << two;
}

// A rank that dies after joining: the others fail with an error naming it (no hang), and
// launch reports it and exits with its status.
TEST_F(EnccLaunch, LostPeerIsAnErrorNamingTheRank) {
  REQUIRE_GLOO();
  CliResult r = encc(std::string("launch -n 3 --grace 20 -- ") + quote(ENC_SYNC_BN_EXAMPLE) + " --exit-after-join 1");
  EXPECT_EQ(r.status, 3) << r;
  EXPECT_TRUE(contains(r.err, "encc launch: rank 1 exited with status 3")) << r;
  EXPECT_TRUE(contains(r.err, "rank 1 is gone")) << r;
  EXPECT_FALSE(contains(r.err, "killing")) << r; // the others stopped by themselves
}
#endif

} // namespace

namespace {

// Whether process `pid` has ended: gone, or a zombie that nobody reaped (an orphan stays one
// where PID 1 does not reap).
bool processEnded(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::string stat = slurp(fmt::format("/proc/{}/stat", pid));
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

// The pid in FILE (written by a rank), waiting up to a few seconds for the rank to write it.
pid_t pidIn(const fs::path &file) {
  for (int i = 0; i < 500 && slurp(file).empty(); ++i) ::usleep(10000);
  std::string text = slurp(file);
  return text.empty() ? 0 : static_cast<pid_t>(std::stol(text));
}

// After launch returns, within a moment, the processes the ranks started are gone too (the
// test kills any that are left, so that none outlives it).
void expectEnded(const std::vector<pid_t> &pids) {
  for (pid_t pid : pids) {
    ASSERT_GT(pid, 0);
    bool ended = false;
    for (int i = 0; i < 200 && !(ended = processEnded(pid)); ++i) ::usleep(10000);
    EXPECT_TRUE(ended) << "process " << pid << ", started by a rank, outlived encc launch";
    if (!ended) ::kill(pid, SIGKILL);
  }
}

// A failed job stops what its ranks started, not only the ranks: rank 1's child (stopped at the
// end of the grace period, with rank 1), one that ignores SIGTERM (rank 2's), and those that a
// rank left when it exited (the failed rank 0's, and rank 3's, which succeeded).
TEST_F(EnccLaunch, FailedJobLeavesNoProcessBehind) {
  std::ofstream(path("rank.sh")) << R"(#!/bin/sh
case "$RANK" in
  0) sleep 60 & echo $! > child0.pid
     while [ ! -s child1.pid ] || [ ! -s child2.pid ] || [ ! -s child3.pid ]; do sleep 0.05; done
     exit 3 ;;
  1) sleep 60 & echo $! > child1.pid; wait ;;
  2) trap '' TERM; sleep 60 & echo $! > child2.pid; wait ;;
  3) sleep 60 & echo $! > child3.pid; exit 0 ;;
esac
)";
  fs::permissions(path("rank.sh"), fs::perms::owner_all, fs::perm_options::add);
  CliResult r = encc("launch -n 4 --grace 1 -- ./rank.sh");
  EXPECT_EQ(r.status, 3) << r;
  EXPECT_TRUE(contains(r.err, "rank 0 exited with status 3")) << r;
  std::vector<pid_t> children;
  for (int rank = 0; rank < 4; ++rank) children.push_back(pidIn(path(fmt::format("child{}.pid", rank))));
  expectEnded(children);
}

// SIGTERM (or Ctrl-C) to launch stops each rank with what it started.
TEST_F(EnccLaunch, InterruptStopsWhatTheRanksStarted) {
  std::ofstream(path("rank.sh")) << "#!/bin/sh\nsleep 60 & echo $! > child$RANK.pid; wait\n";
  fs::permissions(path("rank.sh"), fs::perms::owner_all, fs::perm_options::add);
  std::string cmd = fmt::format(
      "cd {} && ({} launch -n 2 -- ./rank.sh 2>err.txt & l=$!; while [ ! -s child0.pid ] || [ ! -s child1.pid ]; "
      "do sleep 0.05; done; kill -TERM $l; wait $l; echo $? > status.txt)",
      quote(dir.string()), quote(ENCC_BINARY));
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(slurp(path("status.txt")), "143\n") << slurp(path("err.txt"));
  EXPECT_TRUE(contains(slurp(path("err.txt")), "interrupted")) << slurp(path("err.txt"));
  expectEnded({pidIn(path("child0.pid")), pidIn(path("child1.pid"))});
}

// encc emit --distributed shows the collectives a group run has: batch norm's count and
// sums leave in one message per pass (adjacent collectives, packed by the runtime).
TEST_F(EnccLaunch, EmitDistributedShowsOneMessagePerPass) {
  for (const char *pass : {"", " --backward"}) {
    CliResult r = encc(std::string("emit --emit=loops --distributed --layer SyncBatchNorm --set num_features=8") + pass);
    ASSERT_EQ(r.status, 0) << r;
    std::vector<bool> collective;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("kernel ", 0) == 0 || line.rfind("collective ", 0) == 0) collective.push_back(line[0] == 'c');
    int runs = 0, count = 0;
    for (size_t i = 0; i < collective.size(); ++i) {
      count += collective[i];
      runs += collective[i] && (i == 0 || !collective[i - 1]);
    }
    EXPECT_EQ(runs, 1) << r;
    EXPECT_EQ(count, *pass ? 2 : 3) << r; // backward: the adjoints of the two sums
    EXPECT_TRUE(contains(r.out, "# message 0,")) << r;
    EXPECT_FALSE(contains(r.out, "# message 1,")) << r;
  }
  CliResult r = encc("emit --emit=loops --layer SyncBatchNorm --set num_features=8");
  EXPECT_FALSE(contains(r.out, "collective")) << r; // one process: none
}

// encc emit --data-parallel shows where each gradient bucket starts: Linear's weight gradient
// (1.2 MB, past the 1 MiB first bucket) leaves on its own while the bias and input gradients
// are still to be computed.
TEST_F(EnccLaunch, EmitDataParallelShowsTheBuckets) {
  CliResult r = encc("emit --emit=loops --backward --data-parallel --layer Linear --set in_features=300 "
                     "--set out_features=1000 --size B=8");
  ASSERT_EQ(r.status, 0) << r;
  std::vector<std::string> heads;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("kernel ", 0) == 0 || line.rfind("bucket ", 0) == 0) heads.push_back(line.substr(0, line.find('(')));
  EXPECT_EQ(heads, (std::vector<std::string>{"kernel k0_grad_weight", "bucket bucket0: average", "kernel k1_grad_bias",
                                             "bucket bucket1: average", "kernel k2_grad_X"}))
      << r;
  EXPECT_TRUE(contains(r.out, "bucket bucket0: average(grad_weight) over the group  # 300000 elements")) << r;
  CliResult forward = encc("emit --emit=loops --data-parallel --layer Linear --set in_features=3 --set out_features=2");
  EXPECT_NE(forward.status, 0) << forward;
  EXPECT_TRUE(contains(forward.err, "add --backward")) << forward;
}

} // namespace
