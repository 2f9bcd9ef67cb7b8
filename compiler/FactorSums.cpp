// Factors that do not depend on a sum's reduction indices move out of it:
//
//   sum(b, l: dY[b, c, l] * w[c] * (X[b, c, l] - mu[c]) / (var[c] + eps))
//     ->  w[c] * (1 / (var[c] + eps)) * sum(b, l: dY[b, c, l] * (X[b, c, l] - mu[c]))
//
// Derived gradients are full of such sums (batch norm's backward pass had a division and a
// reciprocal square root per element in each of four sums). Outside, the factors are computed
// once per output; inside, what is left is often the same sum in several definitions, which
// hoistReductions then computes once. The factors left inside keep their order: a
// contraction's operands in the order written, which decides how its tiles are laid out
// (sorting them turned GramMatrix's gradient tiles around: 5 % slower on an H200).
#include "compiler/Passes.h"

#include <algorithm>
#include <set>

namespace enc::ir {
namespace {

bool readsAny(const Expr &e, const std::set<std::string> &names) {
  for (const std::string &v : freeIndexVars(e))
    if (names.count(v)) return true;
  return false;
}

Expr factorSum(const Expr &r) {
  if (r->kind != ExprKind::Reduce || r->reduceOp != ReduceOp::Sum || r->type != Type::Float) return nullptr;
  std::set<std::string> rvars;
  for (const ReduceVar &v : r->rvars) rvars.insert(v.name);
  std::vector<Expr> inside, outside;
  for (const Expr &f : productFactors(r->args[0])) (readsAny(f, rvars) ? inside : outside).push_back(f);
  if (outside.empty()) return nullptr;
  Expr body;
  for (const Expr &f : inside) body = body ? body * f : f;
  Expr sum;
  if (body) {
    sum = reduce(ReduceOp::Sum, r->rvars, body);
  } else { // nothing read the reduction: the sum counts its terms
    sum = floatImm(1);
    for (const ReduceVar &v : r->rvars) sum = sum * cast(Type::Float, v.extent);
  }
  // Constants first, so that they fold into one.
  std::stable_partition(outside.begin(), outside.end(), [](const Expr &f) { return f->kind == ExprKind::FloatImm; });
  Expr coefficient;
  for (const Expr &f : outside) coefficient = coefficient ? coefficient * f : f;
  return coefficient * sum;
}

} // namespace

Program factorSums(Program out) {
  for (Definition &d : out.defs) d.value = mutate(d.value, factorSum);
  return out;
}

} // namespace enc::ir
