// What the passes that merge added sums share (MergeSums.cpp, MergeAddedContractions.cpp): the
// terms of an added float sum, and one sum's body written over another's reduction variables;
// and the signed terms of a sum, which the CPU tiler accumulates one by one (TileContractions).
#pragma once

#include "compiler/IR.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace enc::ir {

inline void collectAddends(const Expr &e, std::vector<Expr> &out) {
  if (e->kind == ExprKind::Binary && e->binOp == BinOp::Add && e->type == Type::Float) {
    collectAddends(e->args[0], out);
    collectAddends(e->args[1], out);
    return;
  }
  out.push_back(e);
}

// The terms of a float sum written with +: x + (y + z) gives x, y and z (anything else is one
// term).
inline std::vector<Expr> addends(const Expr &e) {
  std::vector<Expr> out;
  collectAddends(e, out);
  return out;
}

// The terms of a float sum written with +, - and unary -, each with whether it is subtracted
// (see signedAddends). addends above keeps a difference whole, which the merging passes rely on.
inline void collectSignedAddends(const Expr &e, bool negated, std::vector<std::pair<Expr, bool>> &out) {
  if (e->kind == ExprKind::Binary && e->type == Type::Float && (e->binOp == BinOp::Add || e->binOp == BinOp::Sub)) {
    collectSignedAddends(e->args[0], negated, out);
    collectSignedAddends(e->args[1], negated != (e->binOp == BinOp::Sub), out);
  } else if (e->kind == ExprKind::Unary && e->unOp == UnOp::Neg && e->type == Type::Float) {
    collectSignedAddends(e->args[0], !negated, out);
  } else {
    out.emplace_back(e, negated);
  }
}

// (p + q) - r gives (p, false), (q, false), (r, true): the tiler's term-by-term accumulation.
inline std::vector<std::pair<Expr, bool>> signedAddends(const Expr &e) {
  std::vector<std::pair<Expr, bool>> out;
  collectSignedAddends(e, false, out);
  return out;
}

// The body of the sum b with its reduction variables renamed to those of the sum a, level by
// level, or nothing when their ranges differ or a name a binds that b reads freely would be
// captured by the renaming.
inline std::optional<Expr> bodyOnRangesOf(const Expr &a, const Expr &b) {
  if (a->rvars.size() != b->rvars.size()) return std::nullopt;
  std::map<std::string, Expr> rename;
  for (size_t i = 0; i < a->rvars.size(); ++i) {
    if (!structurallyEqual(a->rvars[i].extent, b->rvars[i].extent)) return std::nullopt;
    rename[b->rvars[i].name] = indexVar(a->rvars[i].name);
  }
  for (const ReduceVar &r : a->rvars)
    if (mentionsVar(b->args[0], r.name) &&
        std::none_of(b->rvars.begin(), b->rvars.end(), [&](const ReduceVar &v) { return v.name == r.name; }))
      return std::nullopt;
  return substituteIndices(b->args[0], rename);
}

} // namespace enc::ir
