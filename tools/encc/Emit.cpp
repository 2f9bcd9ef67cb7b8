// encc emit: a layer at one compilation stage.
#include "tools/encc/Commands.h"

#include "compiler/Autodiff.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "compiler/codegen/llvm/LLVMCodegen.h"
#include "dsl/Parser.h"
#include "runtime/CpuJit.h"
#include "compiler/HyperParams.h"
#include "runtime/Layer.h"
#include "runtime/Nvrtc.h"
#include "support/Env.h"

#include <fmt/format.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <optional>

namespace enc::cli {

namespace {

// The parameter gradients as data-parallel training averages them, in buckets of the
// runtime's default sizes; `backward` (specialized) must give each a constant shape.
ir::GradientBuckets averagedGradients(const ir::Program &backward, const ir::Program &forward, const ir::Gradient &g) {
  ir::GradientBuckets buckets;
  buckets.gradients = ir::parameterGradients(g, forward);
  for (const auto &[x, gname] : g.gradOf)
    if (std::find(buckets.gradients.begin(), buckets.gradients.end(), gname) != buckets.gradients.end())
      for (const ir::Expr &d : backward.tensor(gname)->shape)
        if (!ir::isConst(d))
          throw Error(fmt::format("--data-parallel: the shape of parameter '{}' is not known", x),
                      "pass --set for its hyper-parameters");
  return buckets;
}

} // namespace

std::string emitOne(const EmitOptions &o, const Library &lib, const LayerSymbols &layer) {
  // Options are checked whether or not the stage uses them (--dtype, --target matter from loops on,
  // --arch for ptx).
  if (o.target != "cpu" && o.target != "gpu") throw Error(fmt::format("unknown --target '{}'", o.target), "use cpu or gpu");
  (void)parseDTypeOption(o.dtype);
  cuda::requireSupportedArch(o.arch);
  auto hyper = resolveHyperParams(layer, splitPairs(o.sets, "--set"), /*allowMissing=*/true);
  if (o.mode != "train" && o.mode != "eval") throw Error(fmt::format("unknown --mode '{}'", o.mode), "use train or eval");
  hyper["training"] = ir::boolImm(o.mode == "train");
  const LayerInstance instance = instantiateLayer(lib, layer, hyper);
  const LayerSymbols &sym = *instance.symbols;
  ir::Pipeline::Instrumentation instrumentation = ir::Pipeline::Instrumentation::fromEnvironment();
  for (const std::string &name : o.printAfter) {
    if (!ir::Pipeline::isPassName(name))
      throw Error(fmt::format("--print-after {}: no pass of that name", name),
                  "encc emit --print-pipeline lists the passes; 'all' prints after every one");
    instrumentation.printAfter.insert(name);
  }
  const ir::Pipeline pipeline(instrumentation);
  if (o.dataParallel && !o.backward)
    throw Error("--data-parallel shows the backward pass's buckets", "add --backward (with --emit=loops, cuda or llvm)");
  const ir::BuildOptions build{.fuse = true, .distributed = o.distributed || o.dataParallel};
  const ir::Program forward = pipeline.forward(sym, hyper, build);
  // What a run refuses, emit refuses too: false requirements, arithmetic without a value.
  checkFoldedRequirements(forward, layer.layer->name.text, sym, hyper, {}, false);
  ir::checkIntegerArithmetic(forward);
  ir::Program prog = forward;
  std::optional<ir::Gradient> gradient;
  if (o.kind == "grad" || o.backward) {
    gradient = pipeline.backward(sym, forward, hyper, build);
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
  if (!sizes.empty()) {
    prog = pipeline.specializeSizes(prog, sizes);
    checkFoldedRequirements(prog, layer.layer->name.text, sym, hyper, sizes, false);
    std::string given;
    for (const auto &[n, v] : sizes) given += fmt::format("{}{}={}", given.empty() ? "" : " ", n, ir::print(v));
    checkSpecializedShapes(prog, sym.layer->name.text, sizes, "--size " + given, false);
    ir::checkIntegerArithmetic(prog);
  }
  if (o.kind == "ir" || o.kind == "grad") return ir::printProgram(prog);
  // As the runtime compiles it: the same passes, with the storage types of --dtype.
  auto lowered = [&](ir::Target target) {
    ir::ElemType storage = elemTypeOf(parseDTypeOption(o.dtype));
    ir::TargetOptions t;
    t.target = target;
    t.types = gradient ? ir::backwardStorage(*gradient, forward, storage) : ir::forwardStorage(forward, storage);
    if (o.dataParallel) t.averageGradients = averagedGradients(prog, forward, *gradient);
    t.allowTf32 = o.allowTf32 || envFlag("ENC_ALLOW_TF32");
    return pipeline.lower(prog, t);
  };
  if (o.kind == "loops") {
    return ir::printLoops(lowered(o.target == "cpu" ? ir::Target::CPU : ir::Target::GPU));
  }
  if (o.kind == "cuda" || o.kind == "ptx") {
    // Shows what a run with the same environment compiles.
    std::string src =
        codegen::emitCuda(lowered(ir::Target::GPU), codegen::cudaCodegenOptionsFromEnvironment(false));
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
  if (o.printPipeline) {
    std::cout << ir::Pipeline::describe();
    return 0;
  }
  if (o.file.empty() && o.layer.empty())
    throw Error("encc emit needs a .enc file or --layer NAME", "e.g. encc emit --emit=cuda --layer Encoding");
  auto lib = loadLibrary(o.file);
  if (o.kind == "ast") {
    std::vector<std::string> files = {o.file.empty() ? "" : o.file};
    if (o.file.empty()) files[0] = resolveLayer(*lib, o.layer).layer->loc.file->name();
    DiagnosticEngine diags;
    SourceFile src(files[0], Library::readSource(files[0]));
    ast::Module m = parse(src, diags);
    std::cout << ast::printAST(m);
    return 0;
  }
  std::vector<std::string> layers = o.layer.empty() ? lib->layerNames() : std::vector<std::string>{o.layer};
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers.size() > 1) std::cout << (i ? "\n" : "") << fmt::format("# ---- {} ----\n", layers[i]);
    std::cout << emitOne(o, *lib, resolveLayer(*lib, layers[i]));
  }
  return 0;
}

} // namespace enc::cli
