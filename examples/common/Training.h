// Training helpers the examples share (header-only: train_mlp does not link the
// image library).
#pragma once

#include <enc/enc.h>

#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace examples {

// Rows [first, first + n) of `t` (along its first dimension) as a new f32 tensor: a rank's
// share of a batch.
inline enc::Tensor rowsOf(const enc::Tensor &t, int64_t first, int64_t n) {
  enc::Shape shape = t.shape();
  int64_t per = t.numel() / shape[0];
  shape[0] = n;
  enc::Tensor out(enc::DType::F32, shape);
  for (int64_t i = 0; i < n * per; ++i) out.set(i, t.at(first * per + i));
  return out;
}

// A number that differs when any parameter or buffer does (sum of value * position): ranks
// that trained in step print the same one.
inline double parameterChecksum(const enc::Layer &model) {
  double checksum = 0;
  for (const auto &[name, p] : model.params()) {
    enc::Tensor h = p.cpu();
    for (int64_t i = 0; i < h.numel(); ++i) checksum += h.at(i) * static_cast<double>(i + 1);
  }
  return checksum;
}

// The end of a training run: each rank's parameter checksum when there are several (they
// must agree), the model saved by rank 0 to `out` (when given), and the exit status: 1, with a
// message, when the loss did not fall below 0.75 of the first epoch's.
inline int finishTraining(const char *program, const enc::Layer &model, int rank, int ranks, const std::string &out,
                          double firstLoss, double lastLoss) {
  if (ranks > 1) fmt::print("rank {}: parameter checksum {:.17g}\n", rank, parameterChecksum(model));
  if (!out.empty() && rank == 0) {
    model.saveState(out);
    fmt::print("saved {}\n", out);
  }
  if (lastLoss < 0.75 * firstLoss) return 0;
  std::fflush(stdout);
  fmt::print(stderr, "{}: training did not converge: loss {} -> {}\n", program, firstLoss, lastLoss);
  return 1;
}

} // namespace examples
