// An index whose extent is 1 can only be 0: it is replaced by 0, and a reduction over such an
// index alone is its one term. Gradients of reads at a constant index produce these
// (Inspiration reads P[0, k, c] from P of shape [1, C, C]; the gradient of P is
// grad_P[t < 1, i, j] = sum(n, h, w: select(t == 0, grad_Y[...] * X[...], 0))), and the
// select hid a contraction that the schedules tile once the condition folds to true.
#include "compiler/Passes.h"

#include <map>
#include <set>

namespace enc::ir {
namespace {

Expr zeroed(const Expr &e, const std::set<std::string> &names) {
  std::map<std::string, Expr> zeros;
  for (const std::string &n : names) zeros[n] = intImm(0);
  return substituteIndices(e, zeros);
}

Expr foldReduction(const Expr &n) {
  if (n->kind != ExprKind::Reduce) return nullptr;
  std::vector<ReduceVar> kept;
  std::set<std::string> unit;
  for (const ReduceVar &v : n->rvars) {
    if (isUnitExtent(v.extent)) unit.insert(v.name);
    else kept.push_back(v);
  }
  if (unit.empty()) return nullptr;
  Expr body = zeroed(n->args[0], unit);
  return kept.empty() ? body : reduce(n->reduceOp, kept, body);
}

} // namespace

bool isUnitExtent(const Expr &extent) {
  int64_t n = 0;
  return isConst(extent, &n) && n == 1;
}

Program foldUnitIndices(Program out) {
  for (Definition &d : out.defs) {
    if (isCollective(d)) continue; // T[i...] = allreduce(U[i...]) keeps its form
    std::set<std::string> unit;
    for (const IndexVar &v : d.indices)
      if (isUnitExtent(v.extent)) unit.insert(v.name);
    d.value = zeroed(mutate(d.value, foldReduction), unit);
    for (Expr &e : d.scatter) e = zeroed(e, unit);
  }
  return out;
}

} // namespace enc::ir
