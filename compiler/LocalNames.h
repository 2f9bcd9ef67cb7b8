// Renaming the names a kernel body declares for itself (loop variables, lets, accumulators),
// for passes that move statements of one kernel into another: the moved statements must not
// capture or shadow the names already there.
#pragma once

#include "compiler/LoopIR.h"

#include <map>
#include <set>
#include <string>

namespace enc::ir {

using Renaming = std::map<std::string, std::string>;

// Index and local variables named in `rename` under their new names, types kept. Sizes and
// parameters are not a kernel's own names and are never renamed.
Expr renameLocals(const Expr &e, const Renaming &rename);
// The same for every expression of `s` and its body, and for the names its statements declare
// or assign (loop variables, lets, assignments, warp reductions). A store's buffer keeps its name.
Stmt renameLocals(const Stmt &s, const Renaming &rename);

// `name` if no name in `taken` is it, else its stem (trailing digits dropped) with the first
// number 1, 2, ... that makes it new (_acc -> _acc1, _acc1 -> _acc2); the result is added to `taken`.
std::string freshName(const std::string &name, std::set<std::string> &taken);

} // namespace enc::ir
