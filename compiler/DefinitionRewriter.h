// The frame of a pass that rewrites each definition's value knowing which index variables
// are bound at each node (the definition's, then those of the reductions around it) and
// that may add temporaries: hoistReductions, isolateAllreduces.
#pragma once

#include "compiler/TensorProgram.h"

#include <functional>
#include <string>
#include <vector>

namespace enc::ir {

class DefinitionRewriter {
protected:
  // out_ starts as `in` without definitions (in_defs_): the pass adds them in its order.
  explicit DefinitionRewriter(Program in);

  // Starts on `d`: current_ is d, the scope its indices.
  void enter(const Definition &d);
  // `e` over its operands as `child` rewrites them, a reduction's body with the reduction's
  // indices in scope; `e` itself when no operand changed.
  Expr rewriteOperands(const Expr &e, const std::function<Expr(const Expr &)> &child);
  // Adds the temporary name[indices] = value (declared with their extents) to out_; returns
  // the access that reads it at those indices.
  Expr addTemporary(const std::string &name, const std::vector<IndexVar> &indices, Expr value);

  Program out_;
  const std::vector<Definition> in_defs_;
  const Definition *current_ = nullptr;
  IndexScope scope_;
};

} // namespace enc::ir
