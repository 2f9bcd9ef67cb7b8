// Sums added together over the same range that share a factor become one sum:
//
//   sum(e: gY[b, c, e] / n * X[b, e, h, w]) + sum(c': gY[b, c', c] / n * X[b, c', h, w])
//     ->  sum(e: (gY[b, c, e] + gY[b, e, c]) * (1 / n) * X[b, e, h, w])
//
// GramMatrix's gradient: X is read twice in the forward pass, so autodiff adds one
// contraction per read. Each alone is as much work as the forward pass, and hoistReductions
// would store one of them in a temporary for the other to read back; merged, the backward
// pass is one contraction whose rows add two reads of gY. Only sums whose shared factors
// include a read that moves with the reduction, and whose other factors each do too, merge
// (see `merged`).
#include "compiler/AddedSums.h"
#include "compiler/Passes.h"

#include <algorithm>

namespace enc::ir {
namespace {

bool isSum(const Expr &e) { return e->kind == ExprKind::Reduce && e->reduceOp == ReduceOp::Sum && e->type == Type::Float; }

bool readsAny(const Expr &e, const std::vector<ReduceVar> &rvars) {
  return std::any_of(rvars.begin(), rvars.end(), [&](const ReduceVar &r) { return mentionsVar(e, r.name, VarKind::Index); });
}

// a and b merged into one sum, or nullptr.
Expr merged(const Expr &a, const Expr &b) {
  std::optional<Expr> bBody = bodyOnRangesOf(a, b);
  if (!bBody) return nullptr;
  std::vector<Expr> fa = productFactors(a->args[0]);
  std::vector<Expr> fb = productFactors(*bBody);
  std::vector<Expr> common, restA, restB = fb;
  for (const Expr &f : fa) {
    auto match = std::find_if(restB.begin(), restB.end(), [&](const Expr &g) { return structurallyEqual(f, g); });
    if (match == restB.end()) {
      restA.push_back(f);
      continue;
    }
    common.push_back(f);
    restB.erase(match);
  }
  // Both sums must be contractions of the shared read with a read of their own that moves
  // too: a sum whose other factors are fixed along the reduction (softmax's gradient through
  // its max, sum(c: g[b, l] * exp(...)) next to sum(c: gY[b, c, l] * exp(...))) would make
  // one pass wait for another sum that the sibling reductions now compute in the same pass.
  auto movingRead = [&](const std::vector<Expr> &fs) {
    return std::any_of(fs.begin(), fs.end(), [&](const Expr &f) {
      return anyNode(f, [&](const Expr &n) { return n->kind == ExprKind::Access && readsAny(n, a->rvars); });
    });
  };
  if (!movingRead(common) || !movingRead(restA) || !movingRead(restB)) return nullptr;
  std::vector<Expr> body = {product(restA) + product(restB)};
  body.insert(body.end(), common.begin(), common.end());
  return reduce(ReduceOp::Sum, a->rvars, product(body));
}

Expr mergeIn(const Expr &value) {
  return mutate(value, [](const Expr &n) -> Expr {
    if (n->kind != ExprKind::Binary || n->binOp != BinOp::Add || n->type != Type::Float) return nullptr;
    std::vector<Expr> terms = addends(n);
    bool changed = false;
    for (size_t i = 0; i < terms.size(); ++i)
      for (size_t j = i + 1; j < terms.size() && isSum(terms[i]); ++j)
        if (isSum(terms[j]))
          if (Expr m = merged(terms[i], terms[j])) {
            terms[i] = m;
            terms.erase(terms.begin() + static_cast<long>(j));
            changed = true;
            --j;
          }
    if (!changed) return nullptr;
    Expr sum = terms[0];
    for (size_t i = 1; i < terms.size(); ++i) sum = sum + terms[i];
    return sum;
  });
}

} // namespace

Program mergeSums(Program out) {
  for (Definition &d : out.defs) d.value = mergeIn(d.value);
  return out;
}

} // namespace enc::ir
