// CPU: a contraction keeps its register-blocked schedule when its epilogue is heavy.
//
// The blocked schedules (TileContractions.cpp) apply the epilogue in vector registers, so they
// take only epilogues they can widen. A network's gradients fuse more than that into a
// contraction: the residual input's gradient is a relu mask of the batch norm after it plus the
// convolution's input gradient,
//
//   grad_X[b, c, h, w] = select(bn2(...)[b, c, h, w] + X[b, c, h, w] > 0, grad_Y[...], 0) + sum(o, kh, kw: ...)
//
// and without the blocked schedule the sum runs as a plain loop nest, several times slower. Such
// a definition is split: the sum into a temporary of its own, which tiles, and the epilogue into
// a pointwise definition that reads it.
//
//   grad_X_sum[b, c, h, w] = sum(o, kh, kw: ...)
//   grad_X[b, c, h, w] = select(...) + grad_X_sum[b, c, h, w]
#include "compiler/Passes.h"
#include "compiler/TileContractions.h"

namespace enc::ir {
namespace {

// The one reduction of `value`, when it is a sum over a body the blocked schedules can widen.
Expr tileableSum(const Expr &value) {
  Expr found;
  int reductions = 0;
  visit(value, [&](const Expr &n) {
    if (n->kind != ExprKind::Reduce) return true;
    ++reductions;
    found = n;
    return false;
  });
  if (reductions != 1 || found == value || found->reduceOp != ReduceOp::Sum) return nullptr;
  return vectorizable(found->args[0], /*allowReads=*/true) ? found : nullptr;
}

} // namespace

Program splitHeavyEpilogues(const Program &in) {
  Program out = in;
  out.defs.clear();
  for (const Definition &d : in.defs) {
    Expr sum = d.isScatter() || isCollective(d) ? nullptr : tileableSum(d.value);
    if (!sum) {
      out.defs.push_back(d);
      continue;
    }
    std::vector<Expr> at;
    for (const IndexVar &v : d.indices) at.push_back(indexVar(v.name));
    std::string name = out.unusedTensorName(d.tensor + "_sum");
    Expr read = access(name, at, d.loc);
    Expr epilogue = mutate(d.value, [&](const Expr &n) -> Expr { return n == sum ? read : nullptr; });
    if (vectorizable(epilogue, /*allowReads=*/true)) {
      out.defs.push_back(d);
      continue;
    }
    TensorDecl t{name, TensorRole::Temp, {}, d.loc};
    for (const IndexVar &v : d.indices) t.shape.push_back(v.extent);
    out.tensors.push_back(t);
    out.defs.push_back({name, d.indices, sum, d.loc, {}});
    Definition rest = d;
    rest.value = epilogue;
    out.defs.push_back(rest);
  }
  return out;
}

} // namespace enc::ir
