// Renaming the names a kernel body declares for itself (loop variables, lets, accumulators),
// for passes that move statements of one kernel into another: the moved statements must not
// capture or shadow the names already there.
#pragma once

#include "compiler/LoopIR.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc::ir {

using Renaming = std::map<std::string, std::string>;

// Index and local variables named in `rename` under their new names, types kept. Sizes and
// parameters are not a kernel's own names and are never renamed.
Expr renameLocals(const Expr &e, const Renaming &rename);
// The same for every expression of `s` and its body, and for the names its statements declare
// or assign (loop variables, lets, assignments, warp reductions). A store's buffer keeps its name.
Stmt renameLocals(const Stmt &s, const Renaming &rename);

// Lets of another kernel (their reads renamed by `rename` first) joined to `merged`, the lets
// already there: a let with the type and value of one of those is that one (`rename` maps to
// it); any other is appended under a name not in `taken`.
void joinLets(const std::vector<Stmt> &lets, std::vector<Stmt> &merged, Renaming &rename, TakenNames &taken);

} // namespace enc::ir
