// Recovered tensors (see Autodiff.h, recoverFromOutputs): a backward pass that reads a tensor
// the forward block can recover from what it keeps anyway reads the recovery instead.
//
// SyncBatchNorm with an invertible activation (leaky_relu, slope > 0, inplace) recovers its
// input from its output: X = mu + (leaky_relu^-1(Y) - bias) / weight * sqrt(var + eps). Its
// derived backward pass then reads Y and per-channel statistics, not X, and in a network X
// (a convolution's output) no longer outlives the forward pass: InPlace-ABN's saving (Rota
// Bulo et al., CVPR 2018) without a hand-written backward pass.
#include "compiler/Autodiff.h"
#include "compiler/Passes.h"

#include <algorithm>
#include <set>

namespace enc::ir {

namespace {

// (m + d) - m -> d: batch norm's backward pass reads X - mu, and the recovery is mu + d;
// cancelling mu exactly keeps d's precision where |mu| is large against the deviations.
Expr cancelOffsets(const Expr &e) {
  return mutate(e, [](const Expr &n) -> Expr {
    if (n->kind != ExprKind::Binary || n->binOp != BinOp::Sub) return nullptr;
    Expr a = cancelOffsets(n->args[0]), b = cancelOffsets(n->args[1]);
    if (a->kind == ExprKind::Binary && a->binOp == BinOp::Add && structurallyEqual(a->args[0], b)) return a->args[1];
    return binary(BinOp::Sub, a, b);
  });
}

} // namespace

Gradient recoverFromOutputs(const Gradient &in, const Program &forward) {
  Gradient g = in;
  for (const Recovery &r : forward.recoveries) {
    if (!(r.condition->kind == ExprKind::BoolImm && r.condition->boolValue)) continue;
    const std::set<std::string> reads = tensorsRead(r.def.value);
    // Only what the (fused) forward pass stores can be read instead.
    if (reads.count(r.def.tensor) ||
        !std::all_of(reads.begin(), reads.end(), [&](const std::string &t) { return forward.tensor(t) != nullptr; }))
      continue;
    if (!tensorsRead(g.program).count(r.def.tensor)) continue;
    for (Definition &d : g.program.defs) {
      d.value = cancelOffsets(substituteDefinition(d.value, r.def));
      for (Expr &e : d.scatter) e = substituteDefinition(e, r.def);
    }
    for (const std::string &t : reads)
      if (!g.program.tensor(t)) {
        const TensorDecl *decl = forward.tensor(t);
        g.program.tensors.push_back({t, TensorRole::Input, decl->shape, decl->loc});
      }
    // The recovered tensor is no longer an input of the backward pass, nor saved for it.
    g.program.tensors.eraseIf([&](const TensorDecl &t) { return t.name == r.def.tensor && t.role == TensorRole::Input; });
  }
  // What the forward pass keeps for the backward pass: every forward tensor it still reads.
  const std::set<std::string> read = tensorsRead(g.program);
  g.saved.clear();
  for (const TensorDecl &t : forward.tensors)
    if (read.count(t.name)) g.saved.push_back(t.name);
  return g;
}

} // namespace enc::ir
