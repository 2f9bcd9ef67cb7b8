// Ranks of a process group as threads of the test process, each with its own Gloo group over
// TCP on loopback (tests of collectives that need no separate processes).
#pragma once

#include "runtime/ProcessGroup.h"
#include "runtime/TcpStore.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace enc::testing {

// What each rank of runRanksCollecting ended with: its error ("" if none) and when it finished,
// in seconds from the start.
struct RankOutcomes {
  std::vector<std::string> errors;
  std::vector<double> finishedAfter;
};

// Runs body(rank, group) on `n` ranks at once, each in a group of its own making (with
// `base`'s backend and timeout, 30 s unless given).
inline RankOutcomes runRanksCollecting(int n, const std::function<void(int, std::shared_ptr<ProcessGroup>)> &body,
                                       const ProcessGroupOptions *base = nullptr) {
  const int port = dist::freeTcpPort();
  RankOutcomes out{std::vector<std::string>(static_cast<size_t>(n)), std::vector<double>(static_cast<size_t>(n))};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        ProcessGroupOptions o;
        if (base) o = *base;
        else o.timeout = std::chrono::seconds(30);
        o.rank = r;
        o.size = n;
        o.masterPort = port;
        body(r, newProcessGroup(o));
      } catch (const std::exception &e) {
        out.errors[static_cast<size_t>(r)] = e.what();
      }
      out.finishedAfter[static_cast<size_t>(r)] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
  for (std::thread &t : threads) t.join();
  return out;
}

// Runs body(rank, group) on `n` ranks at once; every rank's failure is reported.
inline void runRanks(int n, const std::function<void(int, std::shared_ptr<ProcessGroup>)> &body,
                     const ProcessGroupOptions *base = nullptr) {
  RankOutcomes out = runRanksCollecting(n, body, base);
  for (int r = 0; r < n; ++r) EXPECT_EQ(out.errors[static_cast<size_t>(r)], "") << "rank " << r;
}

} // namespace enc::testing
