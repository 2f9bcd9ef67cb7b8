// Trains a small classifier with the C++ runtime API: a network written in .enc (Linear ->
// SyncBatchNorm -> ReLU -> Linear, and its CrossEntropyLoss) on two Gaussian blobs, with SGD
// and momentum. The network compiles whole on first use, for the GPU when there is one (or for
// `--device cpu|cuda`), else for the CPU; one backward pass is derived for all of it. Prints the loss and the training accuracy, and exits non-zero if the loss did
// not fall (so the test suite can run it).
//
// Data-parallel under `encc launch -n N -- build/examples/train_mlp`: each rank trains on
// every N-th sample, SyncBatchNorm normalizes over the whole batch, and the parameter
// gradients are averaged over the ranks by the backward pass itself (LayerOptions::
// dataParallel: in buckets, overlapping the backward kernels), so every rank holds the same
// model; the last line of each rank shows a checksum of its parameters.
#include <enc/enc.h>

#include "runtime/Rng.h"

#include "common/Training.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <iostream>

using namespace enc;

int train(int argc, char **argv) {
  LayerOptions opts;
  opts.dtype = DType::F32;
  opts.seed = 7;
  opts.device = cuda::Gpu::get() ? Device::CUDA : Device::CPU;
  if (argc == 3 && std::strcmp(argv[1], "--device") == 0) {
    auto d = parseDevice(argv[2]);
    if (!d) {
      fmt::print(stderr, "unknown device '{}': use cpu or cuda\n", argv[2]);
      return 2;
    }
    opts.device = *d;
  } else if (argc != 1) {
    fmt::print(stderr, "usage: train_mlp [--device cpu|cuda]\n");
    return 2;
  }
  std::shared_ptr<ProcessGroup> group = initDistributed(); // under encc launch or torchrun
  const int rank = group ? group->rank() : 0, ranks = group ? group->size() : 1;
  if (opts.device == Device::CPU && rank == 0) cuda::noteCpuFallbackOnce(std::cerr);
  if (rank == 0)
    fmt::print("training on the {}{}\n", opts.device == Device::CUDA ? cuda::Gpu::require().name() : "CPU",
               ranks > 1 ? fmt::format(", {} ranks ({})", ranks, group->backend()) : "");
  // The model and its loss, one network: compiled whole, its backward pass derived whole.
  auto net = Library::fromSource("mlp.enc", R"(
layer MLP(hidden: int = 16) {
  fc1 = Linear(in_features=2, out_features=hidden)
  bn = SyncBatchNorm(num_features=hidden)
  fc2 = Linear(in_features=hidden, out_features=2)
  loss = CrossEntropyLoss()
  forward(X: [B, 2], T: [B]) -> (Loss, Logits) {
    Logits = fc2(relu(bn(fc1(X))))
    Loss = loss(Logits, T)
  }
}
)");
  opts.dataParallel = true; // with ranks: backward averages the parameter gradients over them
  Layer model(net, "MLP", {}, opts);
  SGD sgd({.lr = 0.1, .momentum = 0.9, .weightDecay = 1e-4});

  // Two blobs: class 0 around (-1, -1), class 1 around (1, 1). This rank's share: every
  // ranks-th sample of the 128.
  const int64_t total = 128, n = (total - rank + ranks - 1) / ranks;
  Rng rng(1);
  Tensor x(DType::F32, {n, 2}), t(DType::F32, {n});
  for (int64_t i = 0, mine = 0; i < total; ++i) {
    int cls = static_cast<int>(i % 2);
    double a = (cls ? 1.0 : -1.0) + rng.normal(0, 0.7), b = (cls ? 1.0 : -1.0) + rng.normal(0, 0.7);
    if (i % ranks != rank) continue;
    t.set(mine, cls);
    x.set(mine * 2, a);
    x.set(mine * 2 + 1, b);
    ++mine;
  }

  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    auto out = model.forward({{"X", x}, {"T", t}});
    auto grads = model.backward("Loss"); // every parameter's gradient, and the inputs'
    sgd.step(model, grads);

    Tensor scores = out.at("Logits").cpu(); // host copy for the accuracy
    double stats[2] = {out.at("Loss").cpu().at(0) / ranks, 0}; // mean loss over the ranks, correct predictions
    for (int64_t i = 0; i < n; ++i) stats[1] += (scores.at(i * 2 + 1) > scores.at(i * 2)) == (t.at(i) > 0.5);
    if (group) group->allreduceSum(stats, 2);
    if (step == 0) first = stats[0];
    last = stats[0];
    if ((step % 10 == 0 || step == 59) && rank == 0)
      fmt::print("step {:2}  loss {:.4f}  accuracy {:.1f}%\n", step, stats[0], 100.0 * stats[1] / static_cast<double>(total));
  }
  fmt::print("rank {}: parameter checksum {:.17g}\n", rank, examples::parameterChecksum(model)); // parameters and running statistics
  if (!(last < 0.5 * first)) {
    fmt::print(stderr, "training did not converge: loss {} -> {}\n", first, last);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  try {
    return train(argc, argv);
  } catch (const Error &e) {
    std::cerr << "train_mlp: " << e.render() << "\n";
    return 1;
  }
}
