// Synchronized batch norm across processes:
//
//   encc launch -n 3 -- build/examples/sync_batchnorm
//
// Each rank holds a shard of one batch (rank r: r + 1 samples) and runs SyncBatchNorm on it.
// The statistics are those of the whole batch, which every rank can also compute directly
// here (the batch is a formula): each rank checks its running mean and variance against
// them, prints one line, and exits 1 on a mismatch. Alone (no WORLD_SIZE) it runs as rank 0
// of 1.
//
// --exit-after-join R: rank R exits right after joining the group, to show what the others
// report when a peer is lost (an error naming rank R, not a hang).
#include <enc/enc.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>

using namespace enc;

namespace {

constexpr int64_t kChannels = 4, kLength = 6;

double value(int64_t sample, int64_t c, int64_t l) { return 3.0 + std::sin(0.7 * sample + 1.3 * c + 0.1 * l) * (c + 1); }

} // namespace

int main(int argc, char **argv) {
  int exitRank = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--exit-after-join") == 0 && i + 1 < argc) {
      exitRank = std::atoi(argv[++i]);
    } else {
      std::cerr << "usage: sync_batchnorm [--exit-after-join RANK]   (run it with encc launch -n N -- ...)\n";
      return 2;
    }
  }
  try {
    std::shared_ptr<ProcessGroup> group = initDistributed();
    const int rank = group ? group->rank() : 0, size = group ? group->size() : 1;
    if (rank == exitRank) {
      std::cerr << "sync_batchnorm: rank " << rank << " leaves on purpose (--exit-after-join)\n";
      std::_Exit(3);
    }
    int64_t first = 0, total = 0;
    for (int r = 0; r < size; ++r) {
      if (r < rank) first += r + 1;
      total += r + 1;
    }
    const int64_t mine = rank + 1;

    Layer bn(Library::shipped(), "SyncBatchNorm", {{"num_features", std::to_string(kChannels)}}, {DType::F64});
    Tensor x(DType::F64, {mine, kChannels, kLength});
    for (int64_t b = 0; b < mine; ++b)
      for (int64_t c = 0; c < kChannels; ++c)
        for (int64_t l = 0; l < kLength; ++l) x.set((b * kChannels + c) * kLength + l, value(first + b, c, l));
    Tensor y = bn.forward({{"X", x}}).at("Y");
    bn.backward({{"Y", y}});

    double worst = 0;
    const double n = static_cast<double>(total * kLength);
    for (int64_t c = 0; c < kChannels; ++c) {
      double mean = 0, var = 0;
      for (int64_t s = 0; s < total; ++s)
        for (int64_t l = 0; l < kLength; ++l) mean += value(s, c, l) / n;
      for (int64_t s = 0; s < total; ++s)
        for (int64_t l = 0; l < kLength; ++l) var += (value(s, c, l) - mean) * (value(s, c, l) - mean) / (n - 1);
      worst = std::max(worst, std::abs(bn.params().at("running_mean").at(c) - 0.1 * mean));
      worst = std::max(worst, std::abs(bn.params().at("running_var").at(c) - (0.9 + 0.1 * var)));
    }
    bool ok = worst < 1e-12;
    std::cout << "rank " << rank << " of " << size << ": " << mine << " of " << total
              << " samples; running statistics " << (ok ? "match" : "DO NOT match") << " the whole batch's (max error "
              << worst << ")\n";
    return ok ? 0 : 1;
  } catch (const Error &e) {
    std::cerr << "sync_batchnorm: " << e.render() << "\n";
    return 1;
  }
}
