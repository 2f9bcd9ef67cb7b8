#include "runtime/Autotune.h"

#include "compiler/CanonicalKernel.h"
#include "compiler/GpuTiling.h"
#include "runtime/DiskCache.h"
#include "runtime/Executor.h"
#include "runtime/Gpu.h"
#include "runtime/Hash.h"
#include "runtime/Layer.h"
#include "support/Env.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

namespace enc {

namespace {

std::vector<std::string> candidateNames(bool tensorCores) {
  std::vector<std::string> names;
  for (const ir::TileShape &s : ir::tileShapeCandidates(tensorCores)) names.push_back(ir::tileShapeName(s));
  return names;
}

// The mean seconds per launch of `kernel` over a few launches (at least 8, until 20 ms or 64),
// after one untimed launch.
double timeKernel(Executor &executor, size_t kernel, std::map<std::string, Tensor> &buffers) {
  using Clock = std::chrono::steady_clock;
  executor.launch(kernel, buffers, 0, false);
  executor.finish();
  const auto start = Clock::now();
  int runs = 0;
  double elapsed = 0;
  do {
    for (int i = 0; i < 4; ++i) executor.launch(kernel, buffers, 0, false);
    executor.finish();
    runs += 4;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < 0.02 && runs < 64);
  return elapsed / runs;
}

} // namespace

bool autotuneEnabled() {
  if (std::getenv("ENC_AUTOTUNE")) return envFlag("ENC_AUTOTUNE");
  cuda::Gpu *gpu = cuda::Gpu::get();
  return gpu && !gpu->loadsSource();
}

std::string autotuneKey(const ir::LoopProgram &lowered, const ir::Kernel &kernel) {
  const cuda::Gpu &gpu = cuda::Gpu::require();
  std::string text = ir::printStmt(ir::canonicalKernel(kernel).body);
  for (const std::string &b : kernel.buffers) text += fmt::format("\n{} {}", b == kernel.buffers[0] ? "out" : "in",
                                                                  ir::elemTypeName(lowered.types.of(b)));
  for (const std::string &c : candidateNames(ir::usesFragments(kernel))) text += "\n" + c;
  std::string name = gpu.name();
  std::replace(name.begin(), name.end(), ' ', '_');
  return fmt::format("encc-gpu-tile-1 {} sm_{} {}", name, gpu.computeCapability(), sha256Hex(text));
}

std::map<std::string, std::string> autotuneTiles(const ir::Pipeline &pipeline, const ir::Program &specialized,
                                                 const ir::TargetOptions &target, const ir::LoopProgram &lowered,
                                                 const std::string &layer) {
  DiskCache &cache = DiskCache::global();
  std::map<std::string, std::string> chosen;
  struct Untuned {
    std::string output, key;
    bool tensorCores;
  };
  std::vector<Untuned> untuned;
  // Keys from the kernels at their first candidate shape: the same whatever size rule or
  // ENC_GPU_TILE chose for `lowered`.
  ir::TargetOptions reference = target;
  for (const ir::Kernel &k : lowered.kernels)
    if (k.launch == ir::ForKind::GpuTiles) reference.tileShapes[k.output] = candidateNames(ir::usesFragments(k))[0];
  const ir::LoopProgram keyed = pipeline.lower(specialized, reference);
  for (const ir::Kernel &k : keyed.kernels) {
    if (k.launch != ir::ForKind::GpuTiles) continue;
    const bool tc = ir::usesFragments(k);
    std::string key = autotuneKey(keyed, k);
    std::vector<std::string> names = candidateNames(tc);
    std::optional<std::string> stored = cache.get(key);
    if (stored && std::find(names.begin(), names.end(), *stored) != names.end())
      chosen[k.output] = *stored;
    else
      untuned.push_back({k.output, key, tc});
  }
  if (untuned.empty()) return chosen;

  // Each candidate: the pass lowered with every untuned contraction at that shape, compiled
  // once; each kernel timed alone on zero-filled buffers of its sizes.
  std::map<std::string, double> best;
  for (bool tc : {false, true}) {
    bool any = std::any_of(untuned.begin(), untuned.end(), [&](const Untuned &u) { return u.tensorCores == tc; });
    if (!any) continue;
    for (const std::string &shape : candidateNames(tc)) {
      ir::TargetOptions t = target;
      for (const Untuned &u : untuned)
        if (u.tensorCores == tc) t.tileShapes[u.output] = shape;
      ir::LoopProgram candidate = pipeline.lower(specialized, t);
      std::unique_ptr<Executor> executor = makeGpuExecutor(candidate, layer + " (autotuning " + shape + ")");
      for (size_t i = 0; i < candidate.kernels.size(); ++i) {
        const ir::Kernel &k = candidate.kernels[i];
        auto u = std::find_if(untuned.begin(), untuned.end(),
                              [&](const Untuned &x) { return x.output == k.output && x.tensorCores == tc; });
        if (k.launch != ir::ForKind::GpuTiles || u == untuned.end()) continue;
        std::map<std::string, Tensor> buffers;
        for (const std::string &b : k.buffers) {
          Shape shape;
          for (const ir::Expr &d : candidate.tensors.tensor(b)->shape) shape.push_back(evalInt(d));
          buffers.emplace(b, Tensor(dtypeOf(candidate.types.of(b)), shape, Device::CUDA));
        }
        double seconds = timeKernel(*executor, i, buffers);
        auto b = best.find(k.output);
        if (b == best.end() || seconds < b->second) {
          best[k.output] = seconds;
          chosen[k.output] = shape;
        }
      }
    }
  }
  for (const Untuned &u : untuned)
    if (auto c = chosen.find(u.output); c != chosen.end()) cache.put(u.key, c->second);
  return chosen;
}

} // namespace enc
