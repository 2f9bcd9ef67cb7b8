// encc: the command line of the encc compiler and runtime.
#include "compiler/Autodiff.h"
#include "compiler/Passes.h"
#include "compiler/StorageTypes.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "compiler/codegen/llvm/LLVMCodegen.h"
#include "dsl/Parser.h"
#include "runtime/CpuJit.h"
#include "runtime/CudaDriver.h"
#include "runtime/DiskCache.h"
#include "runtime/Gpu.h"
#include "runtime/HyperParams.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Npy.h"
#include "runtime/Nvrtc.h"
#include "runtime/Rng.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using namespace enc;

namespace {

constexpr const char *kVersion = "0.1.0";

// NAME=VALUE pairs from repeated options.
std::map<std::string, std::string> splitPairs(const std::vector<std::string> &items, const char *option) {
  std::map<std::string, std::string> out;
  for (const std::string &item : items) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error(fmt::format("{} expects NAME=VALUE, got '{}'", option, item),
                  fmt::format("e.g. {} {}", option, std::string(option) == "--set" ? "K=32" : "X=input.npy"));
    std::string name = item.substr(0, eq);
    if (out.count(name)) throw Error(fmt::format("{} {} is given twice", option, name));
    out[name] = item.substr(eq + 1);
  }
  return out;
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read '{}'", path), "check the path");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::shared_ptr<const Library> loadLibrary(const std::string &file) {
  return file.empty() ? Library::shipped() : Library::fromFile(file);
}

DType parseDTypeOption(const std::string &s) {
  auto d = parseDType(s);
  if (!d) throw Error(fmt::format("unknown dtype '{}'", s), "use f32, f64, f16 or bf16 (f16/bf16: f32 arithmetic, 16-bit tensors)");
  return *d;
}

// ---- check --------------------------------------------------------------------------------------
int runCheck(const std::vector<std::string> &files) {
  int status = 0;
  for (const std::string &path : files) {
    std::vector<std::unique_ptr<SourceFile>> sources;
    sources.push_back(std::make_unique<SourceFile>(path, readFile(path)));
    DiagnosticEngine diags;
    auto lib = Library::check(std::move(sources), diags);
    std::cerr << diags.render();
    if (diags.hasErrors()) {
      status = 1;
      continue;
    }
    std::string names;
    for (const std::string &n : lib->layerNames()) names += (names.empty() ? "" : ", ") + n;
    std::cout << fmt::format("{}: ok ({})\n", path, names.empty() ? "no layers" : names);
  }
  return status;
}

// ---- emit ---------------------------------------------------------------------------------------
struct EmitOptions {
  std::string kind = "ir";
  std::string file;
  std::string layer;
  std::vector<std::string> sets;
  std::string arch = "sm_90";
  std::string target = "cpu";
  std::string dtype = "f32";
  std::string mode = "train";
  std::vector<std::string> sizes; // NAME=N: input sizes fixed as at run time
  bool backward = false;          // the kernels of the backward pass
};

std::string emitOne(const EmitOptions &o, const LayerSymbols &sym) {
  auto hyper = resolveHyperParams(sym, splitPairs(o.sets, "--set"), /*allowMissing=*/true);
  if (o.mode != "train" && o.mode != "eval") throw Error(fmt::format("unknown --mode '{}'", o.mode), "use train or eval");
  hyper["training"] = ir::boolImm(o.mode == "train");
  ir::Program prog = ir::buildTensorProgram(sym, hyper);
  ir::ElemType storage = elemTypeOf(parseDTypeOption(o.dtype));
  const ir::Program forward = prog;
  std::optional<ir::Gradient> gradient;
  if (o.kind == "grad" || o.backward) {
    gradient = ir::gradientOf(sym, prog, hyper);
    prog = gradient->program;
  }
  std::map<std::string, ir::Expr> sizes;
  for (const auto &[name, value] : splitPairs(o.sizes, "--size")) {
    bool known = std::any_of(prog.sizes.begin(), prog.sizes.end(), [&](const ir::SizeParam &p) {
      return p.name == name && p.kind == ir::VarKind::Size && !hyper.count(name);
    });
    if (!known) throw Error(fmt::format("--size {}: layer {} has no input size '{}'", name, sym.layer->name.text, name),
                            "sizes are the names of input dimensions (see --emit=ir)");
    int64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size() || v < 0)
      throw Error(fmt::format("--size {}={}: not a non-negative integer", name, value));
    sizes[name] = ir::intImm(v);
  }
  if (!sizes.empty()) prog = ir::specialize(prog, sizes);
  // What the runtime runs on a GPU: with every size known, long reductions are split.
  bool gpu = o.kind == "cuda" || o.kind == "ptx" || (o.kind == "loops" && o.target == "gpu");
  if (gpu) prog = ir::splitReductions(prog);
  // On the CPU, with every size known, column sums are split as the runtime splits them.
  if (!gpu && !sizes.empty()) prog = ir::splitColumnReductions(prog);
  if (o.kind == "ir" || o.kind == "grad") return ir::printProgram(prog);
  // As the runtime compiles it: fused, with the storage types of --dtype.
  auto lowered = [&](ir::Target target) {
    ir::LoopProgram loops = ir::fuseSiblingReductions(ir::lowerToLoops(prog, target));
    loops.types = gradient ? ir::backwardStorage(*gradient, forward, storage) : ir::forwardStorage(forward, storage);
    return ir::accumulateInComputeType(loops);
  };
  if (o.kind == "loops") {
    if (o.target != "cpu" && o.target != "gpu") throw Error(fmt::format("unknown --target '{}'", o.target), "use cpu or gpu");
    return ir::printLoops(lowered(o.target == "cpu" ? ir::Target::CPU : ir::Target::GPU));
  }
  if (o.kind == "cuda" || o.kind == "ptx") {
    std::string src = codegen::emitCuda(lowered(ir::Target::GPU));
    if (o.kind == "cuda") return src;
    cuda::CompileOptions co;
    co.arch = o.arch;
    co.wantPtx = true;
    co.sourceName = sym.layer->name.text + ".cu";
    return cuda::compileCached(src, co).ptx;
  }
  if (o.kind == "llvm") {
    ir::LoopProgram loops = lowered(ir::Target::CPU);
    llvm::LLVMContext ctx;
    auto mod = CpuJit::instance().newModule(sym.layer->name.text, ctx);
    for (const ir::Kernel &k : loops.kernels) codegen::emitLLVMKernel(k, loops.types, *mod);
    return CpuJit::instance().optimizeAndPrint(*mod);
  }
  throw Error(fmt::format("unknown --emit kind '{}'", o.kind), "use ast, ir, grad, loops, cuda, ptx or llvm");
}

int runEmit(const EmitOptions &o) {
  if (o.file.empty() && o.layer.empty())
    throw Error("encc emit needs a .enc file or --layer NAME", "e.g. encc emit --emit=cuda --layer Encoding");
  auto lib = loadLibrary(o.file);
  if (o.kind == "ast") {
    std::vector<std::string> files = {o.file.empty() ? "" : o.file};
    if (o.file.empty()) files[0] = resolveLayer(*lib, o.layer).layer->loc.file->name();
    DiagnosticEngine diags;
    SourceFile src(files[0], readFile(files[0]));
    ast::Module m = parse(src, diags);
    std::cout << ast::printAST(m);
    return 0;
  }
  std::vector<std::string> layers = o.layer.empty() ? lib->layerNames() : std::vector<std::string>{o.layer};
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers.size() > 1) std::cout << (i ? "\n" : "") << fmt::format("# ---- {} ----\n", layers[i]);
    std::cout << emitOne(o, resolveLayer(*lib, layers[i]));
  }
  return 0;
}

// ---- eval ---------------------------------------------------------------------------------------
// "--input X=random:2,3,4,5": uniform in [-1, 1), from the seed and the input's name ("random:" alone is a scalar).
Tensor randomTensor(const std::string &dims, DType dtype, uint64_t seed, const std::string &name) {
  Shape shape;
  std::stringstream ss(dims);
  for (std::string item; std::getline(ss, item, ',');) {
    int64_t v = -1;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || p != item.data() + item.size() || v < 0)
      throw Error(fmt::format("bad shape 'random:{}' for input {}", dims, name), "write e.g. X=random:2,64,8,8");
    shape.push_back(v);
  }
  Tensor t(dtype, shape);
  Rng rng(seed, "input:" + name);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, rng.uniform(-1, 1));
  return t;
}

std::string summary(const Tensor &t) {
  double lo = 0, hi = 0, sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = t.at(i);
    lo = i ? std::min(lo, v) : v;
    hi = i ? std::max(hi, v) : v;
    sum += v;
  }
  return fmt::format("min {:.6g}  max {:.6g}  mean {:.6g}", lo, hi, t.numel() ? sum / static_cast<double>(t.numel()) : 0.0);
}

struct EvalOptions {
  std::string file, layer, dtype = "f32", device = "auto", mode = "train", out;
  uint64_t seed = 0;
  std::vector<std::string> sets, inputs, params, grads;
};

int runEval(const EvalOptions &o) {
  if (o.mode != "train" && o.mode != "eval") throw Error(fmt::format("unknown --mode '{}'", o.mode), "use train or eval");
  LayerOptions lo;
  if (o.device == "auto") {
    // The GPU when there is one; otherwise say once why not and use the CPU.
    lo.device = cuda::Gpu::get() ? Device::CUDA : Device::CPU;
    cuda::noteCpuFallbackOnce(std::cerr);
  } else if (auto d = parseDevice(o.device)) {
    lo.device = *d;
    if (lo.device == Device::CUDA) cuda::Gpu::require();
  } else {
    throw Error(fmt::format("unknown --device '{}'", o.device), "use auto, cpu or cuda");
  }
  auto lib = loadLibrary(o.file);
  lo.dtype = parseDTypeOption(o.dtype);
  lo.training = o.mode == "train";
  lo.seed = o.seed;
  Layer layer(lib, o.layer, splitPairs(o.sets, "--set"), lo);
  for (const auto &[name, path] : splitPairs(o.params, "--param")) {
    try {
      layer.setParam(name, readNpy(path));
    } catch (const Error &e) {
      throw Error(fmt::format("--param {}={}: {}", name, path, e.what()), e.hint());
    }
  }
  std::map<std::string, Tensor> inputs;
  for (const auto &[name, path] : splitPairs(o.inputs, "--input")) {
    Tensor t = path.rfind("random:", 0) == 0 ? randomTensor(path.substr(7), lo.dtype, o.seed, name) : readNpy(path);
    if (t.dtype() != lo.dtype) t = t.to(lo.dtype);
    inputs[name] = t;
  }
  auto outputs = layer.forward(inputs);
  fs::create_directories(fs::path(o.out) / "params");
  for (const auto &[name, result] : outputs) {
    Tensor t = result.cpu();
    writeNpy((fs::path(o.out) / (name + ".npy")).string(), t);
    std::cout << fmt::format("{}: {} {} -> {}  ({})\n", name, dtypeName(t.dtype()), shapeString(t.shape()),
                             (fs::path(o.out) / (name + ".npy")).string(), summary(t));
  }
  for (const auto &[name, t] : layer.params()) writeNpy((fs::path(o.out) / "params" / (name + ".npy")).string(), t);
  if (o.grads.empty()) return 0;
  std::map<std::string, Tensor> seeds;
  for (const auto &[name, path] : splitPairs(o.grads, "--grad")) {
    Tensor t = path.rfind("random:", 0) == 0 ? randomTensor(path.substr(7), lo.dtype, o.seed, "grad:" + name) : readNpy(path);
    seeds[name] = t.to(lo.dtype);
  }
  fs::create_directories(fs::path(o.out) / "grad");
  for (const auto &[name, result] : layer.backward(seeds)) {
    Tensor t = result.cpu();
    std::string path = (fs::path(o.out) / "grad" / (name + ".npy")).string();
    writeNpy(path, t);
    std::cout << fmt::format("grad {}: {} -> {}  ({})\n", name, shapeString(t.shape()), path, summary(t));
  }
  return 0;
}

// ---- cache --------------------------------------------------------------------------------------
int runCache(const std::string &action) {
  DiskCache &cache = DiskCache::global();
  if (action == "clear") {
    size_t n = cache.list().size();
    cache.clear();
    std::cout << fmt::format("removed {} entr{} from {}\n", n, n == 1 ? "y" : "ies", cache.dir().string());
    return 0;
  }
  std::vector<DiskCacheEntry> entries = cache.list();
  if (action == "list") {
    for (const DiskCacheEntry &e : entries) std::cout << fmt::format("{}  {:>10} bytes\n", e.key, e.bytes);
    return 0;
  }
  DiskCacheStats s = cache.stats();
  std::cout << fmt::format("directory: {}{}\nentries:   {}\nbytes:     {}\n", cache.dir().string(),
                           cache.enabled() ? "" : " (disabled by ENC_CACHE_DISABLE)", s.entries, s.bytes);
  // By kind: the first word of the key.
  std::map<std::string, std::pair<int64_t, int64_t>> kinds;
  for (const DiskCacheEntry &e : entries) {
    std::string kind = e.key.substr(0, e.key.find(' '));
    kind = kind == "encc-cpu-object-1" ? "CPU object code" : kind == "encc-nvrtc-1" ? "NVRTC cubin/PTX" : "other";
    kinds[kind].first += 1;
    kinds[kind].second += e.bytes;
  }
  for (const auto &[kind, n] : kinds) std::cout << fmt::format("  {}: {} entries, {} bytes\n", kind, n.first, n.second);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"encc: a compiler and runtime for neural-network layers written in the .enc language"};
  app.set_version_flag("--version", fmt::format("encc {}", kVersion));
  app.require_subcommand(1);

  std::vector<std::string> checkFiles;
  auto *check = app.add_subcommand("check", "Check .enc files and print diagnostics (exit status 1 on errors)");
  check->add_option("files", checkFiles, "the .enc files")->required();

  EmitOptions emit;
  auto *emitCmd = app.add_subcommand("emit", "Print a layer at one compilation stage");
  emitCmd->add_option("--emit", emit.kind, "stage: ast, ir, grad, loops, cuda, ptx or llvm")->capture_default_str();
  emitCmd->add_option("file", emit.file, "a .enc file (default: the shipped layer library)");
  emitCmd->add_option("--layer", emit.layer, "the layer to print (default: every layer of the file)");
  emitCmd->add_option("--set", emit.sets, "a hyper-parameter value, NAME=VALUE (repeatable)");
  emitCmd->add_option("--arch", emit.arch, "GPU architecture for --emit=ptx")->capture_default_str();
  emitCmd->add_option("--target", emit.target, "schedule shown by --emit=loops: cpu or gpu")->capture_default_str();
  emitCmd->add_option("--dtype", emit.dtype, "element type of generated code: f32, f64, or f16/bf16 (f32 arithmetic, inputs and outputs stored in 16 bits)")->capture_default_str();
  emitCmd->add_option("--mode", emit.mode, "train or eval: the pass to show")->capture_default_str();
  emitCmd->add_option("--size", emit.sizes, "an input size, NAME=N (repeatable): fixes it as a run would, so GPU code shows split reductions");
  emitCmd->add_flag("--backward", emit.backward, "show the backward pass's kernels (loops, cuda, ptx, llvm)");

  EvalOptions eval;
  auto *evalCmd = app.add_subcommand("eval", "Run a layer on .npy inputs and write .npy outputs");
  evalCmd->add_option("file", eval.file, "a .enc file (default: the shipped layer library)");
  evalCmd->add_option("--layer", eval.layer, "the layer to run")->required();
  evalCmd->add_option("--set", eval.sets, "a hyper-parameter value, NAME=VALUE (repeatable)");
  evalCmd->add_option("--dtype", eval.dtype, "f32, f64, f16 or bf16 (f16/bf16: f32 arithmetic and parameters, inputs, outputs and gradients in 16 bits)")->capture_default_str();
  evalCmd->add_option("--device", eval.device, "auto (the GPU if there is one), cpu or cuda")->capture_default_str();
  evalCmd->add_option("--mode", eval.mode, "train or eval")->capture_default_str();
  evalCmd->add_option("--seed", eval.seed, "seed of parameter initialization")->capture_default_str();
  evalCmd->add_option("--input", eval.inputs, "an input, NAME=FILE.npy or NAME=random:D0,D1,... (repeatable)");
  evalCmd->add_option("--param", eval.params, "a parameter value, NAME=FILE.npy (repeatable)");
  evalCmd->add_option("--grad", eval.grads, "the gradient of an output, NAME=FILE.npy: also runs backward and writes DIR/grad/*.npy");
  evalCmd->add_option("--out", eval.out, "directory for the outputs")->required();

  std::string cacheAction;
  auto *cacheCmd = app.add_subcommand("cache", "Inspect or clear the on-disk kernel cache ($ENC_CACHE_DIR)");
  cacheCmd->add_option("action", cacheAction, "list, stats or clear")
      ->required()
      ->check(CLI::IsMember({"list", "stats", "clear"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success &e) {
    return app.exit(e); // --help, --version
  } catch (const CLI::ParseError &e) {
    std::cerr << fmt::format("encc: error: {}\n  hint: run '{} --help' for the options\n", e.what(),
                             app.get_subcommands().empty() ? "encc" : "encc " + app.get_subcommands()[0]->get_name());
    return 1;
  }

  try {
    if (*check) return runCheck(checkFiles);
    if (*emitCmd) return runEmit(emit);
    if (*evalCmd) return runEval(eval);
    if (*cacheCmd) return runCache(cacheAction);
  } catch (const CompileError &e) {
    std::cerr << e.what();
    return 1;
  } catch (const Error &e) {
    std::cerr << "encc: " << e.render() << "\n";
    return 1;
  } catch (const std::exception &e) {
    std::cerr << "encc: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
