// Process groups: allreduce of values and tensors, subgroups, ranks leaving, the store, and the
// options from the environment. Ranks run as threads of this process, each with its own Gloo
// group over TCP on loopback. (SyncBatchNorm across ranks: SyncBatchNormAcrossRanksTest; separate
// processes, encc launch and a lost peer: EnccLaunchTest.)
#include "LayerCases.h"
#include "RankThreads.h"
#include "TensorValues.h"
#include "ReferenceMath.h"

#include "compiler/Passes.h"
#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nccl.h"
#include "runtime/ProcessGroup.h"
#include "runtime/TcpStore.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <thread>

using namespace enc;
using enc::testing::BatchNormRef;
using enc::testing::batchNormRef;
using enc::testing::lib;
using enc::testing::maxRelError;
using enc::testing::tensorOf;
using enc::testing::valuesOf;
using enc::testing::RankOutcomes;
using enc::testing::runRanks;
using enc::testing::runRanksCollecting;

namespace {

#ifdef ENC_HAVE_GLOO
TEST(ProcessGroup, AllreduceSumsEveryRanksValues) {
  constexpr int n = 3;
  runRanks(n, [=](int rank, std::shared_ptr<ProcessGroup> g) {
    EXPECT_EQ(g->rank(), rank);
    EXPECT_EQ(g->size(), n);
    std::vector<float> f(1000);
    std::vector<double> d(7);
    for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(rank * 1000 + static_cast<int>(i));
    for (size_t i = 0; i < d.size(); ++i) d[i] = std::pow(2.0, rank) * (static_cast<double>(i) + 0.5);
    g->allreduceSum(f.data(), f.size());
    g->allreduceSum(d.data(), d.size());
    for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f[i], 3000.0f + 3.0f * static_cast<float>(i)) << i;
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d[i], 7.0 * (static_cast<double>(i) + 0.5)) << i;
    g->barrier();
  });
}

// Large sums (data-parallel gradients) travel in large chunks, the last one partial,
// interleaved with small ones: every value arrives summed, on every rank.
TEST(ProcessGroup, LargeAndSmallSumsInterleaved) {
  constexpr int n = 3;
  runRanks(n, [=](int rank, std::shared_ptr<ProcessGroup> g) {
    for (int round = 0; round < 3; ++round) {
      std::vector<float> big(150001);
      std::vector<double> bigD(70001), small(5, rank + 1.0);
      for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>((i % 1000) * (rank + 1) + round);
      for (size_t i = 0; i < bigD.size(); ++i) bigD[i] = static_cast<double>(i) * (rank + 1);
      g->allreduceSum(big.data(), big.size());
      g->allreduceSum(small.data(), small.size());
      g->allreduceSum(bigD.data(), bigD.size());
      for (size_t i = 0; i < big.size(); ++i)
        ASSERT_EQ(big[i], static_cast<float>((i % 1000) * 6 + 3 * round)) << "round " << round << ", " << i;
      for (size_t i = 0; i < bigD.size(); ++i) ASSERT_EQ(bigD[i], 6.0 * static_cast<double>(i)) << i;
      for (double v : small) ASSERT_EQ(v, 6.0);
    }
  });
}

// Back-to-back sums with ranks drifting apart: each call sees its own values (a fast peer's
// next call never lands in a slow rank's current one), and every rank gets the same bits.
TEST(ProcessGroup, BackToBackSumsStayInStepAndAgree) {
  constexpr int n = 3, calls = 300;
  std::vector<std::vector<double>> results(n);
  runRanks(n, [&](int rank, std::shared_ptr<ProcessGroup> g) {
    std::mt19937 gen(static_cast<unsigned>(rank));
    for (int k = 0; k < calls; ++k) {
      if (gen() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(gen() % 300));
      double exact[2] = {static_cast<double>(k * 10 + rank), 1.0};
      g->allreduceSum(exact, 2);
      ASSERT_EQ(exact[0], k * 30 + 3) << "call " << k;
      ASSERT_EQ(exact[1], 3.0) << "call " << k;
      // Values whose sum rounds: the same bits everywhere.
      std::vector<double> v(1500);
      std::mt19937 shared(static_cast<unsigned>(k * n + rank));
      for (double &x : v) x = std::ldexp(static_cast<double>(shared() % 1000000), -static_cast<int>(shared() % 40));
      g->allreduceSum(v.data(), v.size());
      results[static_cast<size_t>(rank)].insert(results[static_cast<size_t>(rank)].end(), v.begin(), v.end());
    }
  });
  for (int r = 1; r < n; ++r) EXPECT_TRUE(results[static_cast<size_t>(r)] == results[0]) << "rank " << r;
}

// A rank that leaves right after a collective must not fail a peer still finishing it: the
// group's destructor waits (through the store) until every member has left its last one.
TEST(ProcessGroup, LeavingRightAfterACollectiveFailsNoPeer) {
  constexpr int n = 3;
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    runRanks(n, [&](int rank, std::shared_ptr<ProcessGroup> g) {
      std::vector<double> v(3000, static_cast<double>(rank + 1)); // three chunks
      if (rank == round % n) std::this_thread::sleep_for(std::chrono::microseconds(200));
      g->allreduceSum(v.data(), v.size());
      EXPECT_EQ(v.back(), 6.0);
    });
  }
}

// A rank that leaves the group before a collective the others are in (its program failed
// first): it does not wait for them to leave too, and their collective fails at once,
// naming it; then, their group having failed, they leave without waiting either.
TEST(ProcessGroup, RankThatLeavesEarlyIsNamedAndNobodyWaits) {
  RankOutcomes out = runRanksCollecting(3, [](int r, std::shared_ptr<ProcessGroup> g) {
    double v = 1;
    if (r != 2) g->allreduceSum(&v, 1);
  });
  for (int r = 0; r < 3; ++r) EXPECT_LT(out.finishedAfter[static_cast<size_t>(r)], 5.0) << "rank " << r;
  EXPECT_EQ(out.errors[2], "");
  for (int r = 0; r < 2; ++r)
    EXPECT_NE(out.errors[static_cast<size_t>(r)].find(
                  fmt::format("an all-reduce failed on rank {} of 3: rank 2 left the group", r)),
              std::string::npos)
        << out.errors[static_cast<size_t>(r)];
}

// Data-parallel gradients: every rank's tensors averaged, f32 and f64 together.
TEST(ProcessGroup, AllreduceTensorsAverages) {
  runRanks(2, [](int rank, std::shared_ptr<ProcessGroup> g) {
    Tensor a(DType::F32, {2, 3}), b(DType::F64, {4});
    for (int64_t i = 0; i < a.numel(); ++i) a.set(i, rank * 10.0 + static_cast<double>(i));
    for (int64_t i = 0; i < b.numel(); ++i) b.set(i, rank == 0 ? 1.0 : 3.0);
    allreduceTensors(*g, {&a, &b}, 0.5);
    for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a.at(i), 5.0 + static_cast<double>(i)) << i;
    for (int64_t i = 0; i < b.numel(); ++i) EXPECT_EQ(b.at(i), 2.0) << i;
    Tensor h(DType::F16, {1});
    std::string err;
    try {
      allreduceTensors(*g, {&h});
    } catch (const Error &e) {
      err = e.what();
    }
    EXPECT_NE(err.find("f16"), std::string::npos) << err;
  });
}

TEST(ProcessGroup, SubgroupSumsOnlyItsMembers) {
  runRanks(4, [](int rank, std::shared_ptr<ProcessGroup> g) {
    auto sub = g->subgroup({3, 1});
    if (rank == 1 || rank == 3) {
      ASSERT_TRUE(sub);
      EXPECT_EQ(sub->size(), 2);
      EXPECT_EQ(sub->rank(), rank == 1 ? 0 : 1);
      double v = rank;
      sub->allreduceSum(&v, 1);
      EXPECT_EQ(v, 4.0);
    } else {
      EXPECT_FALSE(sub);
    }
    // The world group still works after (and its collectives do not mix with the subgroup's).
    float w = 1;
    g->allreduceSum(&w, 1);
    EXPECT_EQ(w, 4.0f);
    std::string err;
    try {
      g->subgroup({0, 9});
    } catch (const Error &e) {
      err = e.what();
    }
    EXPECT_NE(err.find("rank 9"), std::string::npos) << err;
  });
}

TEST(ProcessGroup, StoreWaitTimesOutNamingTheKey) {
  dist::TcpStoreOptions o;
  o.serve = true;
  o.timeout = std::chrono::milliseconds(200);
  dist::TcpStore store(o);
  store.set("here", {'1'});
  EXPECT_EQ(store.get("here"), std::vector<char>{'1'});
  std::string err;
  try {
    store.get("never");
  } catch (const Error &e) {
    err = e.what();
  }
  EXPECT_NE(err.find("'never'"), std::string::npos) << err;
  EXPECT_TRUE(store.goneRanks().empty());
}
#endif

// WORLD_SIZE=1: a group without sockets; layers in it compute as in no group.
TEST(ProcessGroup, GroupOfOneNeedsNoRendezvous) {
  ProcessGroupOptions o;
  o.masterAddr = "no-such-host.invalid"; // never resolved
  auto g = newProcessGroup(o);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->size(), 1);
  double v = 3;
  g->allreduceSum(&v, 1);
  EXPECT_EQ(v, 3.0);
  EXPECT_TRUE(g->subgroup({0}));
}

// The environment torchrun and encc launch set.
TEST(ProcessGroup, OptionsFromTheEnvironment) {
  struct Saved {
    const char *name;
    std::string value;
    bool set;
  };
  std::vector<Saved> saved;
  for (const char *n : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "ENC_DIST_TIMEOUT"}) {
    const char *v = std::getenv(n);
    saved.push_back({n, v ? v : "", v != nullptr});
    ::unsetenv(n);
  }
  ProcessGroupOptions o;
  EXPECT_FALSE(processGroupOptionsFromEnvironment(o));
  EXPECT_EQ(initDistributed(), nullptr);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("RANK", "2", 1);
  ::setenv("MASTER_ADDR", "10.0.0.7", 1);
  ::setenv("MASTER_PORT", "29511", 1);
  ::setenv("ENC_DIST_TIMEOUT", "12", 1);
  EXPECT_TRUE(processGroupOptionsFromEnvironment(o));
  EXPECT_EQ(o.size, 4);
  EXPECT_EQ(o.rank, 2);
  EXPECT_EQ(o.masterAddr, "10.0.0.7");
  EXPECT_EQ(o.masterPort, 29511);
  EXPECT_EQ(o.timeout, std::chrono::seconds(12));
  const std::vector<std::pair<const char *, const char *>> bad = {{"RANK", "4"}, {"RANK", "x"}, {"MASTER_PORT", "70000"}};
  for (auto [name, value] : bad) {
    ::setenv(name, value, 1);
    std::string err;
    try {
      processGroupOptionsFromEnvironment(o);
    } catch (const Error &e) {
      err = e.what();
    }
    EXPECT_NE(err.find(name), std::string::npos) << name << "=" << value << ": " << err;
    ::setenv("RANK", "2", 1);
    ::setenv("MASTER_PORT", "29511", 1);
  }
  // A bad ENC_DIST_TIMEOUT gets a hint about its range, not about the launcher's variables.
  for (const char *value : {"0", "-5", "86401", "soon"}) {
    ::setenv("ENC_DIST_TIMEOUT", value, 1);
    std::string err, hint;
    try {
      processGroupOptionsFromEnvironment(o);
    } catch (const Error &e) {
      err = e.what();
      hint = e.hint();
    }
    EXPECT_NE(err.find("is not an integer from 1 to 86400"), std::string::npos) << value << ": " << err;
    EXPECT_NE(hint.find("seconds a collective or the rendezvous waits"), std::string::npos) << hint;
    EXPECT_EQ(hint.find("torchrun"), std::string::npos) << hint;
  }
  for (const Saved &s : saved)
    if (s.set) ::setenv(s.name, s.value.c_str(), 1);
    else ::unsetenv(s.name);
}

} // namespace
