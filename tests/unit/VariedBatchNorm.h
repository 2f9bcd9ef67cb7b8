// SyncBatchNorm's lowered kernels varied in ways that do not change their meaning (unused lets,
// independent lets reordered, bodies in blocks), and the check that they fuse as the originals do
// and compute the same values: the ReductionNest suites run it on the CPU and on a GPU.
#pragma once

#include "TensorValues.h"

#include "compiler/HyperParams.h"
#include "compiler/Pipeline.h"
#include "compiler/ReductionNest.h"
#include "compiler/Verifier.h"
#include "runtime/Executor.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace enc::ir::testing {

using enc::testing::maxRelError;
using enc::testing::tensorOf;
using enc::testing::valuesOf;

// Reverses `stmts` between `begin` and `end` (a run of lets) when none of them reads another.
inline void reverseIfIndependent(std::vector<Stmt> &stmts, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i)
    for (size_t j = begin; j < end; ++j)
      if (mentionsVar(stmts[i]->value, stmts[j]->name)) return;
  std::reverse(stmts.begin() + static_cast<long>(begin), stmts.begin() + static_cast<long>(end));
}

// What lowering does not emit but means the same: first in every loop's body an unused let
// `_extra_<loop variable>` = `salt` (so the same name with another value in each kernel), each
// run of adjacent lets that do not read one another reversed (accumulators before the decoded
// indices, those in the other order), and the loop's body in a block.
inline Stmt varied(const Stmt &body, int salt) {
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
inline LoopProgram varied(LoopProgram p) {
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

inline LoopProgram fused(const LoopProgram &p) {
  LoopProgram f = fuseSiblingReductions(p);
  return p.target == Target::GPU ? fuseReductionEpilogues(f) : f;
}

using Values = std::map<std::string, std::vector<double>>;

// Runs `loops` as a Layer would, on fresh buffers: the tensors no kernel writes hold `inputs`
// (the rest start at zero). Returns every tensor a kernel writes.
inline Values run(const LoopProgram &loops, const Values &inputs) {
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
inline Values randomInputs(const LoopProgram &loops) {
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
inline void expectVariedBatchNormFusesAlike(Target target) {
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

} // namespace enc::ir::testing
