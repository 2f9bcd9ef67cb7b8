// ReductionNest (compiler/ReductionNest.h) and the fusion passes that use it: every reduction
// kernel that lowering emits is a nest and rebuilds to itself; hand-built nests with their
// statements in another order, extra lets and blocks are nests still, ill-formed ones are not;
// SyncBatchNorm's lowered kernels varied that way fuse as the originals do and compute the
// same values on the CPU (VariedBatchNorm.h; ReductionNestGpuTest.cpp on a GPU).
#include "LayerCases.h"
#include "TensorValues.h"
#include "VariedBatchNorm.h"

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
using namespace enc::ir::testing;

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

TEST(ReductionNest, VariedBatchNormFusesAlikeOnTheCpu) { expectVariedBatchNormFusesAlike(Target::CPU); }

} // namespace
} // namespace enc::ir
