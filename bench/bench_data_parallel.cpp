// Data-parallel training: what averaging the gradients costs, with the bucketed all-reduces
// overlapping the backward pass (LayerOptions::dataParallel) and without (one all-reduce of
// every gradient after the pass, as a training loop would write it by hand), next to the
// backward pass alone. Run it under encc launch, one thread per rank so the ranks do not
// fight over the cores:
//   ENC_NUM_THREADS=1 build/tools/encc/encc launch -n 2 -- build/bench/enc_bench_data_parallel [--device cpu|cuda]
// Rank 0 prints the medians. The network: an MLP of 8 Linear layers of 1024 (33.6 MB of
// gradients: a 4.2 MB first bucket, then 25 MB buckets).
#include <enc/enc.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <vector>

using namespace enc;

namespace {

const char *kMlp = R"(
layer Deep(D: int = 1024) {
  fcs = [Linear(in_features=D, out_features=D) for i < 8]
  forward(X: [B, D]) -> Y {
    Y = fcs(X)
  }
}
)";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Milliseconds of one backward pass (the forward pass before it not counted), `runs` times.
template <typename F> std::vector<double> time(Layer &net, const Tensor &x, const Tensor &g, int runs, F &&after) {
  std::vector<double> ms;
  for (int i = 0; i < runs + 1; ++i) {
    net.forward({{"X", x}});
    if (auto group = net.group()) group->barrier(); // start together
    auto start = std::chrono::steady_clock::now();
    auto grads = net.backward({{"Y", g}});
    after(grads);
    if (net.device() == Device::CUDA) grads.begin()->second.cpu(); // wait for the GPU
    if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return ms;
}

int run(int argc, char **argv) {
  Device device = Device::CPU;
  if (argc == 3 && std::strcmp(argv[1], "--device") == 0 && parseDevice(argv[2])) device = *parseDevice(argv[2]);
  else if (argc != 1) {
    fmt::print(stderr, "usage: enc_bench_data_parallel [--device cpu|cuda]  (under encc launch -n N)\n");
    return 2;
  }
  std::shared_ptr<ProcessGroup> group = initDistributed();
  if (!group || group->size() < 2) {
    fmt::print(stderr, "run it under encc launch -n 2 (or more)\n");
    return 2;
  }
  auto lib = Library::fromSource("deep.enc", kMlp);
  const int64_t B = 64, D = 1024;
  Tensor x(DType::F32, {B, D}), g(DType::F32, {B, D});
  for (int64_t i = 0; i < x.numel(); ++i) {
    x.set(i, static_cast<double>((i * 7919) % 1000) / 1000.0 - 0.5);
    g.set(i, static_cast<double>((i * 104729) % 1000) / 1000.0 - 0.5);
  }
  const int runs = 15;
  LayerOptions o;
  o.device = device;
  Layer plain(lib, "Deep", {}, o);
  std::vector<double> alone = time(plain, x, g, runs, [](auto &) {});
  std::vector<double> after = time(plain, x, g, runs, [&](std::map<std::string, Tensor> &grads) {
    std::vector<Tensor *> params;
    for (auto &[name, t] : grads)
      if (plain.isParameter(name)) params.push_back(&t);
    allreduceTensors(*group, params, 1.0 / group->size());
  });
  o.dataParallel = true;
  Layer parallel(lib, "Deep", {}, o);
  std::vector<double> overlapped = time(parallel, x, g, runs, [](auto &) {});
  int buckets = 0;
  for (const ir::Kernel &k : parallel.lastBackwardLoops().kernels) buckets += k.bucket;
  if (group->rank() == 0) {
    fmt::print("{} ranks ({}), {} on the {}, backward of 8 x Linear({}) at [{}, {}], median of {}:\n", group->size(),
               group->backend(), "f32", device == Device::CUDA ? "GPU" : "CPU", D, B, D, runs);
    fmt::print("  backward alone                          {:8.2f} ms\n", median(alone));
    fmt::print("  backward, then one all-reduce of all    {:8.2f} ms\n", median(after));
    fmt::print("  data-parallel: {} buckets, overlapped    {:8.2f} ms\n", buckets, median(overlapped));
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const Error &e) {
    std::cerr << "enc_bench_data_parallel: " << e.render() << "\n";
    return 1;
  }
}
