// The terms of a float sum written with +: x + (y + z) gives x, y and z (anything else is one
// term). Shared by the passes that merge added sums.
#pragma once

#include "compiler/IR.h"

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

inline std::vector<Expr> addends(const Expr &e) {
  std::vector<Expr> out;
  collectAddends(e, out);
  return out;
}

} // namespace enc::ir
