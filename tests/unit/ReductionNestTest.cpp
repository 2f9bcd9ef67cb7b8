// ReductionNest (compiler/ReductionNest.h) and the fusion passes that use it: every reduction
// kernel that lowering emits is a nest and rebuilds to itself; hand-built nests with their
// statements in another order, extra lets and blocks are nests still, ill-formed ones are not;
// SyncBatchNorm's lowered kernels varied that way fuse as the originals do and compute the
// same values, on the CPU and (ReductionNestGpu, which runs on the CUDA emulator too) on a GPU.
#include "LayerCases.h"
#include "TensorValues.h"

#include "compiler/HyperParams.h"
#include "compiler/Pipeline.h"
#include "compiler/ReductionNest.h"
#include "compiler/Verifier.h"
#include "runtime/Executor.h"
#include "runtime/Gpu.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace enc::ir {
namespace {

using enc::testing::maxRelError;
using enc::testing::tensorOf;
using enc::testing::valuesOf;

Expr local(const std::string &name, Type t = Type::Float) { return var(name, t, VarKind::Local); }

// A CPU kernel `out`[c] for c in 0..4 reading X[24].
Kernel cpuKernel(const std::string &out, std::vector<Stmt> body) {
  Kernel k;
  k.name = "k_" + out;
  k.output = out;
  k.buffers = {out, "X"};
  k.launch = ForKind::Parallel;
  k.launchExtent = intImm(4);
  k.body = forLoop("c", intImm(4), ForKind::Parallel, std::move(body));
  return k;
}

// T[c] = max(j: X[j, c] * 2) written otherwise: an extra let first, the rest in a block, a let
// in the reduction loop, its own accumulator called _acc too, an epilogue let.
Kernel variedMax() {
  Expr at = local("at", Type::Int);
  return cpuKernel(
      "T", {let("row", Type::Int, indexVar("c")),
            block({let("_acc", Type::Float, reduceIdentity(ReduceOp::Max, Type::Float)),
                   forLoop("j", intImm(6), ForKind::Serial,
                           {let("at", Type::Int, indexVar("j") * intImm(4) + local("row", Type::Int)),
                            assign("_acc", binary(BinOp::Max, local("_acc"), load("X", at) * floatImm(2)))})}),
            let("half", Type::Float, local("_acc") / floatImm(2)), store("T", indexVar("c"), local("half"), {})});
}

TEST(ReductionNest, ReadsItsPartsByWhatTheyDeclare) {
  std::optional<ReductionNest> n = reductionNest(variedMax());
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->warp());
  EXPECT_EQ(n->output.var, "c");
  ASSERT_EQ(n->output.lets.size(), 1u);
  EXPECT_EQ(n->output.lets[0]->name, "row");
  ASSERT_EQ(n->reduction.size(), 1u);
  EXPECT_EQ(n->reduction[0].var, "j");
  ASSERT_EQ(n->accumulators.size(), 1u);
  EXPECT_EQ(n->accumulators[0].init->name, "_acc");
  EXPECT_EQ(n->epilogue.size(), 2u); // half, the store
  EXPECT_EQ(n->declaredNames(), (std::set<std::string>{"c", "row", "j", "at", "_acc", "half"}));
  // Rebuilt without the block, in the canonical order.
  EXPECT_EQ(printStmt(reductionNestBody(*n)), "parallel for c in 0..4:\n"
                                              "  let row: int = c\n"
                                              "  let _acc: float = -inf\n"
                                              "  for j in 0..6:\n"
                                              "    let at: int = j * 4 + row\n"
                                              "    _acc = max(_acc, X[at] * 2.0)\n"
                                              "  let half: float = _acc / 2.0\n"
                                              "  T[c] = half\n");
}

// What is not a nest: statements whose order would matter, or that are no part of one.
TEST(ReductionNest, RejectsWhatOrderWouldChange) {
  auto withBody = [](std::vector<Stmt> body) { return cpuKernel("S", std::move(body)); };
  Stmt init = let("_acc", Type::Float, floatImm(0)), init1 = let("_acc1", Type::Float, floatImm(0));
  Expr x = load("X", indexVar("b") * intImm(4) + indexVar("c"));
  Stmt update = assign("_acc", local("_acc") + x), result = store("S", indexVar("c"), local("_acc"), {});
  auto sumLoop = [&](std::vector<Stmt> body) { return forLoop("b", intImm(6), ForKind::Serial, std::move(body)); };
  EXPECT_TRUE(reductionNest(withBody({init, sumLoop({update}), result})));
  // An update that reads another accumulator.
  Stmt readsOther = assign("_acc1", local("_acc1") + local("_acc"));
  EXPECT_FALSE(reductionNest(withBody({init, init1, sumLoop({update, readsOther}), result})));
  // A let before the reduction that reads an accumulator.
  EXPECT_FALSE(reductionNest(withBody({init, let("y", Type::Float, local("_acc")), sumLoop({update}), result})));
  // An accumulator assigned twice, or assigned without being declared by the output loop.
  EXPECT_FALSE(reductionNest(withBody({init, sumLoop({update, assign("_acc", local("_acc") * x)}), result})));
  EXPECT_FALSE(reductionNest(withBody({sumLoop({init, update}), result})));
  // A store in the reduction, an accumulating store after it, no store at all.
  EXPECT_FALSE(reductionNest(withBody({init, sumLoop({update, store("S", indexVar("c"), x, {})}), result})));
  EXPECT_FALSE(reductionNest(withBody({init, sumLoop({update}), store("S", indexVar("c"), local("_acc"), {}, true)})));
  EXPECT_FALSE(reductionNest(withBody({init, sumLoop({update})})));
  // A name declared twice.
  EXPECT_FALSE(reductionNest(withBody({init, sumLoop({let("c", Type::Int, intImm(0)), update}), result})));
  // A scatter kernel.
  Kernel scatter = withBody({init, sumLoop({update}), result});
  scatter.scatters = true;
  EXPECT_FALSE(reductionNest(scatter));
}

// Programs of the shipped layers (layerCases' settings), forward and backward.
std::vector<std::pair<std::string, Program>> shippedPrograms() {
  static auto lib = Library::shipped();
  std::vector<std::pair<std::string, Program>> out;
  for (const enc::testing::LayerCase &c : enc::testing::layerCases()) {
    const LayerSymbols &sym = lib->get(c.layer);
    std::map<std::string, Expr> hyper = resolveHyperParams(sym, c.settings);
    hyper["training"] = boolImm(c.training);
    Pipeline pipeline;
    Program forward = pipeline.forward(sym, hyper);
    out.push_back({c.layer + " forward", forward});
    out.push_back({c.layer + " backward", pipeline.backward(sym, forward, hyper).program});
  }
  return out;
}

// Every GPU warp reduction that lowering emits (not scatters) is a nest, and every nest, fused
// or not, on either target, rebuilds to the statements it was read from.
TEST(ReductionNest, LoweredReductionsRebuildToThemselves) {
  size_t nests = 0;
  for (const auto &[name, program] : shippedPrograms())
    for (Target target : {Target::CPU, Target::GPU})
      for (bool fuse : {false, true}) {
        LoopProgram loops = Pipeline().lower(program, {.target = target, .fuse = fuse});
        for (const Kernel &k : loops.kernels) {
          std::optional<ReductionNest> n = reductionNest(k);
          if (target == Target::GPU && k.launch == ForKind::GpuWarps && !k.scatters) {
            EXPECT_TRUE(n) << name << "\n" << printStmt(k.body);
          }
          if (!n) continue;
          ++nests;
          EXPECT_EQ(printStmt(reductionNestBody(*n)), printStmt(k.body)) << name;
        }
      }
  EXPECT_GT(nests, 50u);
}

// ---- fusion of nests written differently -----------------------------------------------

LoopProgram cpuProgram(std::vector<Kernel> kernels) {
  LoopProgram p;
  p.target = Target::CPU;
  p.tensors.tensors = {{"X", TensorRole::Input, {intImm(24)}, {}}, {"S", TensorRole::Output, {intImm(4)}, {}},
                       {"T", TensorRole::Output, {intImm(4)}, {}}};
  p.kernels = std::move(kernels);
  return p;
}

// S[c] = sum(b: X[b, c]) as lowerToLoops writes it.
Kernel plainSum() {
  Expr x = load("X", indexVar("b") * intImm(4) + indexVar("c"));
  return cpuKernel("S", {let("_acc", Type::Float, floatImm(0)),
                         forLoop("b", intImm(6), ForKind::Serial, {assign("_acc", local("_acc") + x)}),
                         store("S", indexVar("c"), local("_acc"), {})});
}

// The hand-built sum and max merge: j becomes b, the max's accumulator _acc1, its lets join.
TEST(ReductionNest, SiblingsWrittenDifferentlyMerge) {
  LoopProgram fused = fuseSiblingReductions(cpuProgram({plainSum(), variedMax()}));
  ASSERT_EQ(fused.kernels.size(), 1u) << printLoops(fused);
  EXPECT_EQ(fused.kernels[0].outputs, 2);
  EXPECT_EQ(printStmt(fused.kernels[0].body), "parallel for c in 0..4:\n"
                                              "  let row: int = c\n"
                                              "  let _acc: float = 0.0\n"
                                              "  let _acc1: float = -inf\n"
                                              "  for b in 0..6:\n"
                                              "    let at: int = b * 4 + row\n"
                                              "    _acc = _acc + X[b * 4 + c]\n"
                                              "    _acc1 = max(_acc1, X[at] * 2.0)\n"
                                              "  S[c] = _acc\n"
                                              "  let half: float = _acc1 / 2.0\n"
                                              "  T[c] = half\n");
  verifyLoops(fused);
}

// ---- harmless variations of lowered kernels -----------------------------------------------

// Reverses `stmts` between `begin` and `end` (a run of lets) when none of them reads another.
void reverseIfIndependent(std::vector<Stmt> &stmts, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i)
    for (size_t j = begin; j < end; ++j)
      if (mentionsVar(stmts[i]->value, stmts[j]->name)) return;
  std::reverse(stmts.begin() + static_cast<long>(begin), stmts.begin() + static_cast<long>(end));
}

// What lowering does not emit but means the same: first in every loop's body an unused let
// `_extra_<loop variable>` = `salt` (so the same name with another value in each kernel), each
// run of adjacent lets that do not read one another reversed (accumulators before the decoded
// indices, those in the other order), and the loop's body in a block.
Stmt varied(const Stmt &body, int salt) {
  return mutate(body, [&](const Stmt &s) -> Stmt {
    if (s->kind != StmtKind::For) return nullptr;
    std::vector<Stmt> stmts = {let("_extra_" + s->name, Type::Int, intImm(salt))};
    stmts.insert(stmts.end(), s->body.begin(), s->body.end());
    for (size_t i = 0; i < stmts.size();) {
      size_t end = i;
      while (end < stmts.size() && stmts[end]->kind == StmtKind::Let) ++end;
      reverseIfIndependent(stmts, i, end);
      i = end + 1;
    }
    auto copy = std::make_shared<StmtNode>(*s);
    copy->body = {block(stmts)};
    return copy;
  });
}

// Kernels of plain loops (no register tiles, no shared-memory tiles) varied; the rest kept.
LoopProgram varied(LoopProgram p) {
  int salt = 0;
  for (Kernel &k : p.kernels) {
    bool plain = !k.collective && (k.launch == ForKind::GpuWarps || k.launch == ForKind::GpuThreads ||
                                   k.launch == ForKind::Parallel || k.launch == ForKind::Serial);
    visit(k.body, [&](const Stmt &s) {
      plain &= s->kind != StmtKind::Alloc &&
               !(s->kind == StmtKind::For && (s->forKind == ForKind::Unrolled || s->forKind == ForKind::Vectorized));
      return true;
    });
    if (plain) k.body = varied(k.body, ++salt);
  }
  return p;
}

LoopProgram fused(const LoopProgram &p) {
  LoopProgram f = fuseSiblingReductions(p);
  return p.target == Target::GPU ? fuseReductionEpilogues(f) : f;
}

using Values = std::map<std::string, std::vector<double>>;

// Runs `loops` as a Layer would, on fresh buffers: the tensors no kernel writes hold `inputs`
// (the rest start at zero). Returns every tensor a kernel writes.
Values run(const LoopProgram &loops, const Values &inputs) {
  const Device device = loops.target == Target::GPU ? Device::CUDA : Device::CPU;
  std::map<std::string, Tensor> buffers;
  for (const TensorDecl &t : loops.tensors.tensors) {
    Shape shape;
    for (const Expr &d : t.shape) {
      int64_t n = 0;
      EXPECT_TRUE(isConst(d, &n)) << t.name;
      shape.push_back(n);
    }
    auto given = inputs.find(t.name);
    std::vector<double> zeros(static_cast<size_t>(shapeNumel(shape)));
    buffers[t.name] = tensorOf(given != inputs.end() ? given->second : zeros, shape, DType::F32).to(device);
  }
  std::unique_ptr<Executor> executor =
      device == Device::CUDA ? makeGpuExecutor(loops, "varied") : makeCpuExecutor(loops);
  std::set<std::string> written;
  for (size_t i = 0; i < loops.kernels.size(); ++i) {
    const Kernel &k = loops.kernels[i];
    executor->launch(i, buffers, 0, k.scatters && !written.count(k.buffers[0]));
    for (const std::string &w : kernelWrites(k)) written.insert(w);
  }
  executor->finish();
  Values out;
  for (const std::string &w : written) out[w] = valuesOf(buffers.at(w));
  return out;
}

// The tensors of `loops` that no kernel writes, random in [0.5, 1.5].
Values randomInputs(const LoopProgram &loops) {
  std::set<std::string> written;
  for (const Kernel &k : loops.kernels)
    for (const std::string &w : kernelWrites(k)) written.insert(w);
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> dist(0.5, 1.5);
  Values in;
  for (const TensorDecl &t : loops.tensors.tensors) {
    if (written.count(t.name)) continue;
    int64_t n = 1;
    for (const Expr &d : t.shape) {
      int64_t e = 0;
      isConst(d, &e);
      n *= e;
    }
    for (int64_t i = 0; i < n; ++i) in[t.name].push_back(dist(gen));
  }
  return in;
}

// SyncBatchNorm (leaky_relu, [3, 4, 37]) forward and backward lowered for `target` unfused,
// varied, then fused: the same kernels as fusing the lowered program (the forward pass's sums,
// the backward pass's, the epilogues on the GPU), the same values as the unfused program.
void expectVariedBatchNormFusesAlike(Target target) {
  static auto lib = Library::shipped();
  const LayerSymbols &sym = lib->get("SyncBatchNorm");
  std::map<std::string, Expr> hyper = resolveHyperParams(sym, {{"num_features", "4"}, {"activation", "leaky_relu"}});
  hyper["training"] = boolImm(true);
  Pipeline pipeline;
  Program forward = pipeline.forward(sym, hyper);
  for (const Program &p : {forward, pipeline.backward(sym, forward, hyper).program}) {
    Program sized = pipeline.specializeSizes(p, {{"B", intImm(3)}, {"L", intImm(37)}});
    LoopProgram lowered = pipeline.lower(sized, {.target = target, .fuse = false});
    LoopProgram reference = fused(lowered), variant = fused(varied(lowered));
    SCOPED_TRACE(printLoops(variant));
    verifyLoops(variant);
    EXPECT_LT(reference.kernels.size(), lowered.kernels.size());
    ASSERT_EQ(variant.kernels.size(), reference.kernels.size());
    for (size_t i = 0; i < reference.kernels.size(); ++i) {
      EXPECT_EQ(variant.kernels[i].buffers, reference.kernels[i].buffers);
      EXPECT_EQ(variant.kernels[i].outputs, reference.kernels[i].outputs);
    }
    Values inputs = randomInputs(lowered), want = run(lowered, inputs), got = run(variant, inputs);
    ASSERT_EQ(got.size(), want.size());
    for (const auto &[name, values] : want) EXPECT_LT(maxRelError(got.at(name), values), 1e-5) << name;
  }
}

TEST(ReductionNest, VariedBatchNormFusesAlikeOnTheCpu) { expectVariedBatchNormFusesAlike(Target::CPU); }

TEST(ReductionNestGpu, VariedBatchNormFusesAlike) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  expectVariedBatchNormFusesAlike(Target::GPU);
}

} // namespace
} // namespace enc::ir
