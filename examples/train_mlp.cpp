// Trains a small classifier with the C++ runtime API: Linear -> ReLU -> Linear ->
// CrossEntropyLoss on two Gaussian blobs, with SGD and momentum. Each layer is an .enc layer
// from the shipped library, compiled on first use for the GPU when there is one (or for
// `--device cpu|cuda`), else for the CPU; backward passes are derived by the compiler.
// Prints the loss and the training accuracy, and exits non-zero if the loss did not fall
// (so the test suite can run it).
#include <enc/enc.h>

#include "runtime/Rng.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <iostream>

using namespace enc;

int train(int argc, char **argv) {
  auto lib = Library::shipped();
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
  if (opts.device == Device::CPU) cuda::noteCpuFallbackOnce(std::cerr);
  fmt::print("training on the {}\n", opts.device == Device::CUDA ? cuda::Gpu::require().name() : "CPU");
  Layer fc1(lib, "Linear", {{"in_features", "2"}, {"out_features", "16"}}, opts);
  Layer relu(lib, "ReLU", {}, opts);
  Layer fc2(lib, "Linear", {{"in_features", "16"}, {"out_features", "2"}}, opts);
  Layer loss(lib, "CrossEntropyLoss", {}, opts);
  SGD sgd({.lr = 0.1, .momentum = 0.9, .weightDecay = 1e-4});

  // Two blobs: class 0 around (-1, -1), class 1 around (1, 1).
  const int64_t n = 128;
  Rng rng(1);
  Tensor x(DType::F32, {n, 2}), t(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) {
    int cls = static_cast<int>(i % 2);
    t.set(i, cls);
    for (int d = 0; d < 2; ++d) x.set(i * 2 + d, (cls ? 1.0 : -1.0) + rng.normal(0, 0.7));
  }

  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    Tensor h = fc1.forward({{"X", x}}).at("Y");
    Tensor a = relu.forward({{"X", h}}).at("Y");
    Tensor logits = fc2.forward({{"X", a}}).at("Y");
    Tensor l = loss.forward({{"X", logits}, {"T", t}}).at("Y").cpu();

    // Backward, layer by layer in reverse: each returns its input's and parameters' gradients.
    Tensor one(DType::F32, {});
    one.set(0, 1.0);
    auto gLoss = loss.backward({{"Y", one}});
    auto g2 = fc2.backward({{"Y", gLoss.at("X")}});
    auto gRelu = relu.backward({{"Y", g2.at("X")}});
    auto g1 = fc1.backward({{"Y", gRelu.at("X")}});
    sgd.step(fc2, g2);
    sgd.step(fc1, g1);

    Tensor scores = logits.cpu(); // host copy for the accuracy
    int correct = 0;
    for (int64_t i = 0; i < n; ++i) correct += (scores.at(i * 2 + 1) > scores.at(i * 2)) == (t.at(i) > 0.5);
    if (step == 0) first = l.at(0);
    last = l.at(0);
    if (step % 10 == 0 || step == 59)
      fmt::print("step {:2}  loss {:.4f}  accuracy {:.1f}%\n", step, l.at(0), 100.0 * correct / static_cast<double>(n));
  }
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
