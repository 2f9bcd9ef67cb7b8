// A sum of deviations from a mean is zero.
//
// The backward pass of batch norm holds sum(b, l: g[c] * (X[b, c, l] - mu[c])) (the gradient
// reaching mu through the variance), where the forward pass defined
// mu[c] = sum(b, l: X[b, c, l]) / float(B * L). Exactly, that sum is zero; computed, it is
// rounding noise that costs a pass over X. When a backward reduction is a product of factors
// that do not depend on its variables and one factor X[...] - m[...] whose m is such a mean of
// that same X over the same variables, the reduction is replaced by 0. In evaluation mode mu
// is the running mean, a different definition, and nothing matches.
#include "compiler/Passes.h"

#include <map>

namespace enc::ir {
namespace {

bool readsAny(const Expr &e, const std::map<std::string, Expr> &vars) {
  for (const std::string &v : freeIndexVars(e))
    if (vars.count(v)) return true;
  return false;
}

// Whether `centered` (X[...] - m[...]) subtracts from X the forward mean of X over `rvars`.
bool isCenteredOnMean(const Expr &centered, const std::vector<ReduceVar> &rvars, const Program &forward) {
  if (centered->kind != ExprKind::Binary || centered->binOp != BinOp::Sub) return false;
  const Expr &x = centered->args[0], &m = centered->args[1];
  if (x->kind != ExprKind::Access || m->kind != ExprKind::Access) return false;
  const Definition *def = forward.definitionOf(m->name);
  if (!def || def->isScatter() || def->indices.size() != m->args.size()) return false;
  // m's definition: sum(rvars': X[...]) / float(product of the rvars' extents).
  const Expr &v = def->value;
  if (v->kind != ExprKind::Binary || v->binOp != BinOp::Div) return false;
  const Expr &sum = v->args[0];
  if (sum->kind != ExprKind::Reduce || sum->reduceOp != ReduceOp::Sum || sum->rvars.size() != rvars.size()) return false;
  // Rename the definition's indices to m's index expressions here and its reduction
  // variables to ours, then the summand must be our X.
  std::map<std::string, Expr> rename;
  Expr count = intImm(1);
  for (size_t i = 0; i < rvars.size(); ++i) {
    if (!structurallyEqual(sum->rvars[i].extent, rvars[i].extent)) return false;
    rename[sum->rvars[i].name] = var(rvars[i].name, Type::Int, VarKind::Index);
    count = count * rvars[i].extent;
  }
  for (size_t i = 0; i < def->indices.size(); ++i) rename[def->indices[i].name] = m->args[i];
  Expr body = substitute(sum->args[0], [&](const std::string &n, VarKind k) -> Expr {
    auto it = rename.find(n);
    return k == VarKind::Index && it != rename.end() ? it->second : nullptr;
  });
  return structurallyEqual(body, x) && structurallyEqual(v->args[1], cast(Type::Float, count));
}

} // namespace

Program dropCenteredSums(Program out, const Program &forward) {
  for (Definition &d : out.defs) {
    if (d.isScatter()) continue;
    d.value = mutate(d.value, [&](const Expr &n) -> Expr {
      if (n->kind != ExprKind::Reduce || n->reduceOp != ReduceOp::Sum) return nullptr;
      std::map<std::string, Expr> red;
      for (const ReduceVar &v : n->rvars) red[v.name] = v.extent;
      std::vector<Expr> factors = productFactors(n->args[0]);
      const Expr *centered = nullptr;
      for (const Expr &f : factors) {
        if (!readsAny(f, red)) continue;
        if (centered) return nullptr; // a second factor varies with the reduction
        centered = &f;
      }
      return centered && isCenteredOnMean(*centered, n->rvars, forward) ? floatImm(0) : nullptr;
    });
  }
  return out;
}

} // namespace enc::ir
