// encc bench: how long a layer's forward and backward passes take, on one Layer instance with
// its inputs already on the device (what a training loop sees), after a first run that
// compiles.
#include "tools/encc/Commands.h"

#include "runtime/Gpu.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>

namespace enc::cli {

namespace {
// Waits for the GPU's stream when the layer runs there.
void finish(Device device) {
  if (device == Device::CUDA) cuda::Gpu::require().synchronize("a timed pass");
}
double msSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}
} // namespace

BenchResult benchLayer(const std::shared_ptr<const Library> &lib, const EvalOptions &o, int runs, bool backward) {
  if (runs < 1) throw Error(fmt::format("--runs {}: at least one run", runs));
  PreparedRun run = prepareRun(lib, o);
  const Device device = run.layer->device();
  BenchResult r;
  r.device = device == Device::CUDA
                 ? fmt::format("{} (GPU {})", cuda::Gpu::require().name(), cuda::Gpu::require().ordinal())
                 : "cpu";
  for (auto &[name, t] : run.inputs) {
    t = t.to(device);
    r.tensorBytes += static_cast<int64_t>(t.nbytes());
  }
  // The first run compiles and gives the outputs' shapes for the gradients.
  std::map<std::string, Tensor> seeds;
  std::map<std::string, std::string> given = splitPairs(o.grads, "--grad");
  for (const auto &[name, y] : run.layer->forward(run.inputs)) {
    r.tensorBytes += static_cast<int64_t>(y.nbytes());
    // Not given: random, shaped like the output (a loss's [] too); the values "random:" + its
    // dimensions would give.
    auto it = given.find(name);
    Tensor seed = it != given.end() ? gradientSeed(name, it->second, o, run.dtype)
                                    : randomTensor(y.shape(), run.dtype, o.seed, "grad:" + name);
    seeds[name] = seed.to(device);
  }
  if (backward) run.layer->backward(seeds);
  finish(device);
  for (int i = 0; i < runs; ++i) {
    auto started = std::chrono::steady_clock::now();
    run.layer->forward(run.inputs);
    finish(device);
    r.forwardMs.push_back(msSince(started));
    if (!backward) continue;
    started = std::chrono::steady_clock::now();
    run.layer->backward(seeds);
    finish(device);
    r.backwardMs.push_back(msSince(started));
  }
  std::sort(r.forwardMs.begin(), r.forwardMs.end());
  std::sort(r.backwardMs.begin(), r.backwardMs.end());
  return r;
}

std::string benchSummary(const BenchResult &r, bool backward) {
  auto median = [](const std::vector<double> &v) { return v[v.size() / 2]; };
  std::string s = fmt::format("forward {:.3f} ms (min {:.3f})", median(r.forwardMs), r.forwardMs.front());
  if (backward) s += fmt::format(", backward {:.3f} ms (min {:.3f})", median(r.backwardMs), r.backwardMs.front());
  // Each input and output crosses memory at least once per forward: a floor on its traffic.
  s += fmt::format("; forward inputs + outputs {:.1f} MB: {:.1f} GB/s", static_cast<double>(r.tensorBytes) / 1e6,
                   static_cast<double>(r.tensorBytes) / (median(r.forwardMs) * 1e6));
  return s;
}

int runBench(const EvalOptions &o, int runs, bool backward) {
  BenchResult r = benchLayer(loadLibrary(o.file), o, runs, backward);
  auto group = defaultProcessGroup(); // under encc launch: which rank says this
  std::string who = group && group->size() > 1 ? fmt::format("rank {}: ", group->rank()) : "";
  std::cout << fmt::format("{}{} ({}, {}, {} runs): {}\n", who, o.layer, o.dtype, r.device, runs, benchSummary(r, backward));
  return 0;
}

} // namespace enc::cli
