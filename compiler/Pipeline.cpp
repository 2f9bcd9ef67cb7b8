// The compiler's pass sequences, each read top to bottom. The table says which passes each
// sequence runs, when and why; the functions below run them in that order (a run that strays
// from the table is an internal error, so the two cannot drift), and docs/compiler.md shows the
// table as `encc emit --print-pipeline` prints it.
#include "compiler/Pipeline.h"

#include "compiler/StorageTypes.h"
#include "compiler/Verifier.h"
#include "support/Env.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <set>
#include <sstream>
#include <utility>

namespace enc::ir {

namespace {

const std::vector<PassInfo> kPasses = {
    // forward: a checked layer and its hyper-parameters -> the fused tensor program.
    {"forward", "lowerLayer", "", "annotated AST -> tensor IR; softmax, logsumexp and mean become reductions"},
    {"forward", "specialize", "",
     "hyper-parameters folded first, so branches on them (training, activation) vanish before fusion"},
    {"forward", "isolateAllreduces", "distributed", "each allreduce a collective definition of its own"},
    {"forward", "dropAllreduces", "one process", "allreduce(x) -> x: no collective at all"},
    {"forward", "dropBufferUpdates", "evaluation mode", "buffers are updated by training passes only"},
    {"forward", "dropDisabledState", "", "parameters whose `where` is false with these hyper-parameters go"},
    {"forward", "hoistReductions", "", "one reduction per definition; equal reductions computed once"},
    {"forward", "foldUnitIndices", "fused", "an index of extent 1 is 0"},
    {"forward", "inlinePointwise", "fused", "cheap or same-domain pointwise temporaries into their consumers"},
    {"forward", "distributeSums", "fused", "a sum over a difference split into a contraction and a plain sum"},
    {"forward", "factorSums", "fused", "factors that do not read a sum's indices move out of it"},
    {"forward", "hoistReductions", "fused", "again: distributeSums and factorSums leave several sums"},
    // backward: the fused forward program -> the fused backward program.
    {"backward", "differentiate", "", "the derived gradient, or the layer's backward block specialized"},
    {"backward", "recoverFromOutputs", "recoveries", "a recovered tensor (in-place ABN's input) read through its recovery"},
    {"backward", "isolateAllreduces", "distributed", "the adjoint of allreduce(x) is allreduce(adjoint)"},
    {"backward", "dropAllreduces", "one process", "a backward block's allreduce(x) -> x"},
    {"backward", "mergeSums", "fused", "added sums that share a factor become one (GramMatrix's gradient)"},
    {"backward", "hoistReductions", "", "one reduction per definition"},
    {"backward", "foldUnitIndices", "fused", "the gradient of a read at a constant index is a contraction again"},
    {"backward", "inlinePointwise", "fused", "adjoint temporaries into their consumers"},
    {"backward", "distributeSums", "fused", "as forward"},
    {"backward", "factorSums", "fused", "batch norm's four per-channel sums become two"},
    {"backward", "hoistReductions", "fused", "again, after distributeSums and factorSums"},
    {"backward", "dropCenteredSums", "fused", "a sum of deviations from its own mean is 0"},
    {"backward", "inlinePointwise", "fused", "what dropCenteredSums left pointwise"},
    // sizes: input sizes known.
    {"sizes", "specialize", "", "input sizes replaced by constants and folded"},
    // lower: a specialized tensor program -> loop IR for one target.
    {"lower", "splitReductions", "GPU", "long reductions with few outputs cut into chunks, for enough warps"},
    {"lower", "splitColumnReductions", "CPU, fused", "long column sums cut into per-thread rows"},
    {"lower", "mergeAddedContractions", "CPU, fused", "a temporary adding a sum into its one reader's sum: one sum"},
    {"lower", "splitHeavyEpilogues", "CPU, fused", "a contraction's epilogue blocked code cannot widen: its own kernel"},
    {"lower", "transposeWeightGradients", "CPU, fused",
     "a strided convolution's weight gradient sums transposed, vectorized along its output channels"},
    {"lower", "slideWindowSums", "CPU, fused",
     "a stride-1 convolution's weight gradient sums over the input's rows: the kernel rows share each load of X"},
    {"lower", "phaseStridedReads", "CPU, fused",
     "a sum's read strided along its innermost reduction index reads a copy split into stride phases"},
    {"lower", "sinkCollectives", "", "collectives of one stage adjacent: one message"},
    {"lower", "lowerToLoops", "", "one kernel per stored tensor; contractions tiled"},
    {"lower", "moveParallelismInward", "CPU", "a parallel loop of one iteration hands its work to the loop inside"},
    {"lower", "fuseSiblingReductions", "fused", "reductions over the same domains read their inputs in one pass"},
    {"lower", "fuseReductionEpilogues", "GPU, fused", "pointwise kernels over a warp reduction into its epilogue"},
    {"lower", "fusePointwiseKernels", "fused",
     "pointwise kernels over one iteration space: one kernel with an output each (Adam's three)"},
    {"lower", "accumulateInComputeType", "", "16-bit storage: no kernel accumulates into a 16-bit buffer"},
    {"lower", "bucketGradients", "data-parallel backward",
     "parameter gradients averaged over the group in buckets, each started once its gradients are complete"},
    {"lower", "fuseSlabKernels", "CPU, fused",
     "neighbour kernels parallel over one index, each iteration in its own slab of what they pass: one kernel"},
};

// What a pass does to the invariants the verifier checks beyond well-formedness.
struct PassEffect {
  int oneReduction = 0; // +1: after it a definition holds at most one reduction; -1: it may not; 0: unchanged
  bool isolatesAllreduces = false;
};

PassEffect effectOf(const std::string &name) {
  if (name == "hoistReductions") return {+1, false};
  if (name == "isolateAllreduces") return {-1, true};
  if (name == "dropAllreduces") return {0, true};
  if (name == "distributeSums" || name == "lowerLayer" || name == "differentiate") return {-1, false};
  return {};
}

} // namespace

Pipeline::Instrumentation Pipeline::Instrumentation::fromEnvironment() {
  Instrumentation i;
  i.verifyEach = envFlag("ENC_VERIFY_EACH");
  if (envFlag("ENC_TIME_PASSES"))
    i.passTime = [](const char *sequence, const char *pass, double seconds) {
      std::cerr << fmt::format("# time {} ({}): {:.6f} s\n", pass, sequence, seconds);
    };
  if (const char *names = std::getenv("ENC_PRINT_AFTER")) {
    std::stringstream in(names);
    for (std::string n; std::getline(in, n, ',');)
      if (!n.empty()) i.printAfter.insert(n);
  }
  return i;
}

Pipeline::Pipeline(Instrumentation instrumentation) : instr_(std::move(instrumentation)) {}

const std::vector<PassInfo> &Pipeline::passes() { return kPasses; }

bool Pipeline::isPassName(const std::string &name) {
  if (name == "all") return true;
  for (const PassInfo &p : kPasses)
    if (name == p.name) return true;
  return false;
}

std::string Pipeline::describe() {
  std::string out;
  const char *sequence = "";
  for (const PassInfo &p : kPasses) {
    if (std::string(sequence) != p.sequence) {
      sequence = p.sequence;
      out += fmt::format("{}{}:\n", out.empty() ? "" : "\n", sequence);
    }
    std::string when = *p.when ? fmt::format("[{}]", p.when) : "";
    out += fmt::format("  {:<24} {:<18} {}\n", p.name, when, p.why);
  }
  return out;
}

// One run of one sequence: runs its steps, checks that they follow the table's order, and
// prints and verifies the IR after each as the instrumentation asks.
class Pipeline::Run {
public:
  Run(const Pipeline &pipeline, const char *sequence, std::string layer, VerifyState state = {})
      : pipeline_(pipeline), sequence_(sequence), layer_(std::move(layer)), state_(state) {}

  template <typename IR, typename Pass> IR step(const char *name, IR ir, Pass &&pass) {
    enter(name);
    try {
      const auto start = std::chrono::steady_clock::now();
      ir = pass(std::move(ir));
      if (pipeline_.instr_.passTime)
        pipeline_.instr_.passTime(sequence_, name,
                                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      PassEffect effect = effectOf(name);
      if (effect.oneReduction > 0) state_.oneReductionPerDefinition = true;
      if (effect.oneReduction < 0) state_.oneReductionPerDefinition = false;
      if (effect.isolatesAllreduces) state_.allreducesIsolated = true;
      if (pipeline_.instr_.verifyEach) verify(ir, state_);
    } catch (InternalError &e) {
      e.locate(name, layer_);
      throw;
    }
    print(name, ir);
    observe(name, ir);
    return ir;
  }

private:
  const Pipeline &pipeline_;
  const char *sequence_;
  std::string layer_;
  VerifyState state_;
  size_t next_ = 0; // the first row of kPasses the next step may be

  // The step must be a row of this sequence at or after the last one run (rows whose
  // condition does not hold are skipped).
  void enter(const char *name) {
    for (size_t i = next_; i < kPasses.size(); ++i)
      if (std::string(kPasses[i].sequence) == sequence_ && std::string(kPasses[i].name) == name) {
        next_ = i + 1;
        return;
      }
    internalError("the {} sequence runs pass {} where Pipeline.cpp's table does not have it", sequence_, name);
  }

  static std::string text(const Program &p) { return printProgram(p); }
  static std::string text(const LoopProgram &p) { return printLoops(p); }
  static std::string text(const Gradient &g) { return printProgram(g.program); }
  static void verify(const Program &p, const VerifyState &s) { verifyProgram(p, s); }
  static void verify(const LoopProgram &p, const VerifyState &) { verifyLoops(p); }
  static void verify(const Gradient &g, const VerifyState &s) { verifyProgram(g.program, s); }

  void observe(const char *name, const Program &p) const {
    if (pipeline_.instr_.afterTensorPass) pipeline_.instr_.afterTensorPass(sequence_, name, p);
  }
  void observe(const char *name, const Gradient &g) const { observe(name, g.program); }
  void observe(const char *, const LoopProgram &) const {}

  template <typename IR> void print(const char *name, const IR &ir) const {
    const auto &names = pipeline_.instr_.printAfter;
    if (!names.count(name) && !names.count("all")) return;
    std::ostream &out = pipeline_.instr_.out ? *pipeline_.instr_.out : std::cerr;
    out << fmt::format("# ---- after {} ({}, layer {}) ----\n", name, sequence_, layer_) << text(ir);
    out.flush();
  }
};

Program Pipeline::forward(const LayerSymbols &layer, const std::map<std::string, Expr> &hyperParams,
                          const BuildOptions &options) const {
  ENC_INTERNAL_ASSERT(!layer.network, "Pipeline::forward: network {} was not expanded (instantiateLayer)",
                      layer.layer->name.text);
  std::map<std::string, Expr> values = hyperParams;
  values.emplace("distributed", boolImm(options.distributed));
  auto training = values.find("training");
  bool evaluation = training != values.end() && training->second->kind == ExprKind::BoolImm &&
                    !training->second->boolValue;

  Run run(*this, "forward", layer.layer->name.text);
  Program p = run.step("lowerLayer", Program{}, [&](Program) { return lowerLayer(layer); });
  p = run.step("specialize", std::move(p), [&](Program q) { return specialize(std::move(q), values); });
  if (options.distributed)
    p = run.step("isolateAllreduces", std::move(p), isolateAllreduces);
  else
    p = run.step("dropAllreduces", std::move(p), dropAllreduces);
  if (evaluation) p = run.step("dropBufferUpdates", std::move(p), dropBufferUpdates);
  p = run.step("dropDisabledState", std::move(p), [&](Program q) { return dropDisabledState(std::move(q), layer, values); });
  p = run.step("hoistReductions", std::move(p), hoistReductions);
  if (!options.fuse) return p;
  p = run.step("foldUnitIndices", std::move(p), foldUnitIndices);
  p = run.step("inlinePointwise", std::move(p), inlinePointwise);
  p = run.step("distributeSums", std::move(p), distributeSums);
  p = run.step("factorSums", std::move(p), factorSums);
  p = run.step("hoistReductions", std::move(p), hoistReductions);
  return p;
}

Gradient Pipeline::backward(const LayerSymbols &layer, const Program &forward,
                            const std::map<std::string, Expr> &hyperParams, const BuildOptions &options) const {
  Run run(*this, "backward", layer.layer->name.text);
  Gradient g = run.step("differentiate", Gradient{},
                        [&](Gradient) { return unfusedGradientOf(layer, forward, hyperParams); });
  auto onProgram = [&](const char *name, auto pass) {
    g.program = run.step(name, std::move(g.program), pass);
  };
  if (!forward.recoveries.empty() && !layer.layer->backward)
    g = run.step("recoverFromOutputs", std::move(g), [&](const Gradient &in) { return recoverFromOutputs(in, forward); });
  if (options.distributed)
    onProgram("isolateAllreduces", isolateAllreduces);
  else
    onProgram("dropAllreduces", dropAllreduces);
  if (options.fuse) onProgram("mergeSums", mergeSums);
  onProgram("hoistReductions", hoistReductions);
  if (options.fuse) {
    onProgram("foldUnitIndices", foldUnitIndices);
    onProgram("inlinePointwise", inlinePointwise);
    onProgram("distributeSums", distributeSums);
    onProgram("factorSums", factorSums);
    onProgram("hoistReductions", hoistReductions);
    onProgram("dropCenteredSums", [&](Program q) { return dropCenteredSums(std::move(q), forward); });
    onProgram("inlinePointwise", inlinePointwise);
  }
  // A backward block's saved tensors are what it still reads once fused; a derived gradient's
  // lose what fusion stopped reading (CrossEntropyLoss's per-row losses, read only by the
  // gradient of a denominator that is no input), which the forward pass need not keep.
  if (layer.layer->backward) {
    g.saved = forwardTensorsRead(g.program, forward);
  } else {
    const std::set<std::string> read = tensorsRead(g.program);
    std::erase_if(g.saved, [&](const std::string &t) { return !read.count(t); });
  }
  return g;
}

Program Pipeline::specializeSizes(const Program &p, const std::map<std::string, Expr> &sizes) const {
  Run run(*this, "sizes", p.layer, {.oneReductionPerDefinition = true, .allreducesIsolated = true});
  return run.step("specialize", p, [&](Program q) { return specialize(std::move(q), sizes); });
}

// A layer stored in 16 bits multiplies on tensor cores in that type (as mixed-precision
// training does), an f32 layer only when TF32 is allowed (f32 meaning TF32 there); neither
// with ENC_TENSOR_CORES=0.
static std::optional<ElemType> tensorCoreType(const ElementTypes &types, bool allowTf32) {
  if (!envFlag("ENC_TENSOR_CORES", true) || types.compute != ElemType::F32) return std::nullopt;
  for (const auto &[name, t] : types.stored)
    if (isNarrow(t)) return t;
  if (allowTf32) return ElemType::F32;
  return std::nullopt;
}

LoopProgram Pipeline::lower(const Program &specialized, const TargetOptions &t) const {
  Run run(*this, "lower", specialized.layer, {.oneReductionPerDefinition = true, .allreducesIsolated = true});
  Program p = specialized;
  if (t.target == Target::GPU)
    p = run.step("splitReductions", std::move(p), [&](const Program &q) { return splitReductions(q, t.split); });
  else if (t.fuse) {
    p = run.step("splitColumnReductions", std::move(p), [](const Program &q) { return splitColumnReductions(q); });
    p = run.step("mergeAddedContractions", std::move(p), mergeAddedContractions);
    p = run.step("splitHeavyEpilogues", std::move(p), splitHeavyEpilogues);
    p = run.step("transposeWeightGradients", std::move(p), transposeWeightGradients);
    p = run.step("slideWindowSums", std::move(p), slideWindowSums);
    p = run.step("phaseStridedReads", std::move(p), phaseStridedReads);
  }
  p = run.step("sinkCollectives", std::move(p), sinkCollectives);
  LoopProgram loops = run.step("lowerToLoops", LoopProgram{}, [&](LoopProgram) {
    GpuTiling tiling;
    if (t.target == Target::GPU) tiling = {tensorCoreType(t.types, t.allowTf32), t.tileShapes, t.types};
    return lowerToLoops(p, t.target, tiling);
  });
  if (t.target == Target::CPU) loops = run.step("moveParallelismInward", std::move(loops), moveParallelismInward);
  if (t.fuse) {
    loops = run.step("fuseSiblingReductions", std::move(loops), fuseSiblingReductions);
    if (t.target == Target::GPU) loops = run.step("fuseReductionEpilogues", std::move(loops), fuseReductionEpilogues);
    loops = run.step("fusePointwiseKernels", std::move(loops), fusePointwiseKernels);
  }
  loops = run.step("accumulateInComputeType", std::move(loops), [&](LoopProgram l) {
    l.types = t.types;
    return accumulateInComputeType(std::move(l));
  });
  if (!t.averageGradients.gradients.empty())
    loops = run.step("bucketGradients", std::move(loops), [&](const LoopProgram &l) { return bucketGradients(l, t.averageGradients); });
  // Last, once buckets stand between the kernels whose gradients they send: a bucket, a
  // collective, is never merged across, so no gradient completes later than bucketing placed it.
  if (t.fuse && t.target == Target::CPU) loops = run.step("fuseSlabKernels", std::move(loops), fuseSlabKernels);
  return loops;
}

} // namespace enc::ir
