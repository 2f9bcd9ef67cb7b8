#include "compiler/SoftmaxForm.h"

#include <algorithm>
#include <set>

namespace enc::ir {

namespace {

// The one plain definition of temporary `name` as a single-variable reduction `op` whose
// body holds no further reduction; null otherwise.
const Definition *reductionDefinition(const Program &p, const std::string &name, ReduceOp op) {
  const TensorDecl *t = p.tensor(name);
  if (!t || t->role != TensorRole::Temp) return nullptr;
  const Definition *def = nullptr;
  for (const Definition &d : p.defs)
    if (d.tensor == name) {
      if (def || d.isScatter()) return nullptr;
      def = &d;
    }
  if (!def || def->value->kind != ExprKind::Reduce || def->value->reduceOp != op || def->value->rvars.size() != 1 ||
      containsReduce(def->value->args[0]))
    return nullptr;
  return def;
}

// The body of `def`'s reduction as read at `read` (the definition's indices replaced by the
// read's arguments) with the reduction variable replaced by `k`.
Expr bodyAt(const Definition &def, const Expr &read, const std::string &k) {
  std::map<std::string, Expr> values{{def.value->rvars[0].name, indexVar(k)}};
  for (size_t i = 0; i < def.indices.size(); ++i) values[def.indices[i].name] = read->args[i];
  return substituteIndices(def.value->args[0], values);
}

// The definitions of M and S read at `maxRead` and `sumRead`: a max and a sum over one
// variable each, of equal extents; nullopt otherwise. Whether S sums exp of M's body shifted
// by M is the callers' test, where they know the variable.
struct MaxAndSum {
  const Definition *max, *sum;
  Expr extent;
};

std::optional<MaxAndSum> maxAndSum(const Program &program, const Expr &maxRead, const Expr &sumRead) {
  if (maxRead->kind != ExprKind::Access || sumRead->kind != ExprKind::Access) return std::nullopt;
  const Definition *maxDef = reductionDefinition(program, maxRead->name, ReduceOp::Max);
  const Definition *sumDef = reductionDefinition(program, sumRead->name, ReduceOp::Sum);
  if (!maxDef || !sumDef || maxRead->args.size() != maxDef->indices.size() ||
      sumRead->args.size() != sumDef->indices.size() ||
      !structurallyEqual(maxDef->value->rvars[0].extent, sumDef->value->rvars[0].extent))
    return std::nullopt;
  return MaxAndSum{maxDef, sumDef, maxDef->value->rvars[0].extent};
}

} // namespace

std::optional<SoftmaxForm> matchSoftmax(const Expr &quotient, const std::vector<IndexVar> &scope,
                                        const Program &program) {
  if (quotient->kind != ExprKind::Binary || quotient->binOp != BinOp::Div) return std::nullopt;
  const Expr &numerator = quotient->args[0], &sumRead = quotient->args[1];
  if (numerator->kind != ExprKind::Call || numerator->name != "exp" || numerator->args.size() != 1) return std::nullopt;
  const Expr &shifted = numerator->args[0];
  if (shifted->kind != ExprKind::Binary || shifted->binOp != BinOp::Sub) return std::nullopt;
  const Expr &x = shifted->args[0], &maxRead = shifted->args[1];
  std::optional<MaxAndSum> defs = maxAndSum(program, maxRead, sumRead);
  if (!defs) return std::nullopt;
  auto readsVar = [](const Expr &read, const std::string &k) {
    return std::any_of(read->args.begin(), read->args.end(),
                       [&](const Expr &a) { return mentionsVar(a, k, VarKind::Index); });
  };
  std::set<std::string> seen; // an inner variable shadows an outer one of the same name
  for (auto it = scope.rbegin(); it != scope.rend(); ++it) {
    const IndexVar &k = *it;
    if (!seen.insert(k.name).second) continue;
    if (!structurallyEqual(k.extent, defs->extent) || readsVar(maxRead, k.name) || readsVar(sumRead, k.name)) continue;
    if (structurallyEqual(bodyAt(*defs->max, maxRead, k.name), x) &&
        structurallyEqual(bodyAt(*defs->sum, sumRead, k.name), numerator))
      return SoftmaxForm{x, k};
  }
  return std::nullopt;
}

std::optional<LogSumExpForm> matchLogSumExp(const Expr &sum, const std::string &k, const Program &program) {
  if (sum->kind != ExprKind::Binary || sum->binOp != BinOp::Add) return std::nullopt;
  const Expr &maxRead = sum->args[0], &log = sum->args[1];
  if (log->kind != ExprKind::Call || log->name != "log" || log->args.size() != 1) return std::nullopt;
  const Expr &sumRead = log->args[0];
  std::optional<MaxAndSum> defs = maxAndSum(program, maxRead, sumRead);
  if (!defs) return std::nullopt;
  Expr x = bodyAt(*defs->max, maxRead, k);
  if (!structurallyEqual(bodyAt(*defs->sum, sumRead, k), call("exp", {x - maxRead}))) return std::nullopt;
  return LogSumExpForm{x, defs->extent, maxRead, sumRead};
}

} // namespace enc::ir
