// encc eval: run a layer on .npy (or random) inputs, forward and optionally backward.
#include "tools/encc/Commands.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Npy.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace enc::cli {

namespace {

// --load-state: every key must match, unless --partial-state, which sets those the file and the
// layer share and lists the others.
void loadState(Layer &layer, const EvalOptions &o) {
  Layer::StateKeys keys;
  try {
    keys = layer.loadState(o.loadState, /*strict=*/!o.partialState);
  } catch (const Layer::StateKeysError &e) {
    if (e.filePrefix) throw; // its hint, about how the file was saved, holds here too
    throw Error(e.what(), "--partial-state sets the tensors both have (the layer's others keep their initial values)");
  }
  if (!keys.missing.empty())
    std::cerr << fmt::format("encc: warning: --load-state {}: not in the file, left as initialized: {}\n", o.loadState,
                             fmt::join(keys.missing, ", "));
  if (!keys.unexpected.empty())
    std::cerr << fmt::format("encc: warning: --load-state {}: not in layer {}, ignored: {}\n", o.loadState, o.layer,
                             fmt::join(keys.unexpected, ", "));
}

} // namespace

PreparedRun prepareRun(const std::shared_ptr<const Library> &lib, const EvalOptions &o) {
  if (o.mode != "train" && o.mode != "eval") throw Error(fmt::format("unknown --mode '{}'", o.mode), "use train or eval");
  LayerOptions lo;
  if (o.device == "auto") {
    // The GPU when there is one, else the CPU: said once when the user asked for auto, or when a
    // CUDA driver is there but unusable; the default on a machine without one is quiet.
    lo.device = cuda::Gpu::get() ? Device::CUDA : Device::CPU;
    cuda::noteCpuFallbackOnce(std::cerr, /*quietWithoutDriver=*/!o.deviceGiven);
  } else if (auto d = parseDevice(o.device)) {
    lo.device = *d;
    if (lo.device == Device::CUDA) cuda::Gpu::require();
  } else {
    throw Error(fmt::format("unknown --device '{}'", o.device), "use auto, cpu or cuda");
  }
  lo.dtype = parseDTypeOption(o.dtype);
  lo.training = o.mode == "train";
  lo.seed = o.seed;
  lo.allowTf32 = o.allowTf32;
  PreparedRun run;
  run.dtype = lo.dtype;
  run.layer = std::make_unique<Layer>(lib, o.layer, splitPairs(o.sets, "--set"), lo);
  if (!o.loadState.empty()) loadState(*run.layer, o);
  for (const auto &[name, path] : splitPairs(o.params, "--param")) {
    try {
      run.layer->setParam(name, readNpy(path));
    } catch (const Error &e) {
      // random:... makes inputs and output gradients; a parameter starts from its initializer.
      std::error_code ec;
      std::string hint = path.starts_with("random:") && !fs::exists(path, ec)
                             ? "random:D0,D1,... makes only inputs and output gradients; a parameter starts from "
                               "its initializer (drawn from the seed) or is read from a .npy file"
                             : e.hint();
      throw Error(fmt::format("--param {}={}: {}", name, path, e.what()), hint);
    }
  }
  for (const auto &[name, path] : splitPairs(o.inputs, "--input")) {
    Tensor t = path.rfind("random:", 0) == 0 ? randomTensor(path.substr(7), lo.dtype, o.seed, name) : readNpy(path);
    if (t.dtype() != lo.dtype) t = t.to(lo.dtype);
    run.inputs[name] = t;
  }
  return run;
}

Tensor gradientSeed(const std::string &name, const std::string &spec, const EvalOptions &o, DType dtype) {
  Tensor t = spec.rfind("random:", 0) == 0 ? randomTensor(spec.substr(7), dtype, o.seed, "grad:" + name) : readNpy(spec);
  return t.to(dtype);
}

EvalResult evalLayer(const std::shared_ptr<const Library> &lib, const EvalOptions &o, bool randomGrads) {
  PreparedRun run = prepareRun(lib, o);
  EvalResult r;
  for (const auto &[name, t] : run.layer->forward(run.inputs)) r.outputs[name] = t.cpu();
  for (const auto &[name, t] : run.layer->params()) r.params[name] = t.cpu();
  if (!o.saveState.empty()) run.layer->saveState(o.saveState);
  if (o.grads.empty() && !randomGrads) return r;
  std::map<std::string, Tensor> seeds;
  for (const auto &[name, spec] : splitPairs(o.grads, "--grad")) seeds[name] = gradientSeed(name, spec, o, run.dtype);
  // Not given: random, shaped like the output (a loss's [] too), as encc bench makes them.
  if (randomGrads)
    for (const auto &[name, y] : r.outputs)
      if (!seeds.contains(name)) seeds[name] = randomTensor(y.shape(), run.dtype, o.seed, "grad:" + name);
  for (const auto &[name, t] : run.layer->backward(seeds)) r.grads[name] = t.cpu();
  return r;
}

namespace {

// In a process group, "{rank}" in file names is this process's rank (each rank its shard).
std::string withRank(std::string s) {
  auto group = defaultProcessGroup();
  std::string rank = std::to_string(group ? group->rank() : 0);
  for (size_t at = s.find("{rank}"); at != std::string::npos; at = s.find("{rank}", at + rank.size()))
    s.replace(at, 6, rank);
  return s;
}

} // namespace

int runEval(const EvalOptions &given) {
  EvalOptions o = given;
  o.out = withRank(o.out);
  for (auto *list : {&o.inputs, &o.params, &o.grads})
    for (std::string &item : *list) item = withRank(item);
  o.loadState = withRank(o.loadState);
  o.saveState = withRank(o.saveState);
  // Where the results go is made (or found wrong) before the run.
  makeOutputDirectory("--out", o.out);
  makeOutputDirectory("--out", (fs::path(o.out) / "params").string());
  if (!o.grads.empty()) makeOutputDirectory("--out", (fs::path(o.out) / "grad").string());
  if (!o.saveState.empty()) checkOutputFile("--save-state", o.saveState);
  EvalResult r = evalLayer(loadLibrary(o.file), o);
  for (const auto &[name, t] : r.outputs) {
    std::string path = (fs::path(o.out) / (name + ".npy")).string();
    writeNpy(path, t);
    std::cout << fmt::format("{}: {} {} -> {}  ({})\n", name, dtypeName(t.dtype()), shapeString(t.shape()), path, summary(t));
  }
  for (const auto &[name, t] : r.params) writeNpy((fs::path(o.out) / "params" / (name + ".npy")).string(), t);
  if (o.grads.empty()) return 0;
  for (const auto &[name, t] : r.grads) {
    std::string path = (fs::path(o.out) / "grad" / (name + ".npy")).string();
    writeNpy(path, t);
    std::cout << fmt::format("grad {}: {} -> {}  ({})\n", name, shapeString(t.shape()), path, summary(t));
  }
  return 0;
}

} // namespace enc::cli
