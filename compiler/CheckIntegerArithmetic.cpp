// Integer arithmetic that has no value once hyper-parameters and sizes are constants (a
// division by a size that is 0, K * K past 64 bits) is the user's error, reported at the
// statement; the code generators would compile it as undefined behaviour.
#include "compiler/Passes.h"
#include "support/Error.h"

#include <fmt/format.h>

namespace enc::ir {

namespace {

// The operation as the language writes it (floor division is //).
std::string spelled(const Expr &op) {
  if (op->kind != ExprKind::Binary || op->binOp != BinOp::Div) return print(op);
  return fmt::format("{} // {}", print(op->args[0]), print(op->args[1]));
}

void check(const Expr &e, const std::string &tensor, SourceLoc loc) {
  std::optional<UndefinedArithmetic> bad = undefinedArithmetic(e);
  if (!bad) return;
  throw Error(fmt::format("{}: in the definition of '{}': the integer operation {} {}", loc.where(), tensor,
                          spelled(bad->op), bad->why),
              bad->hint());
}

} // namespace

void checkIntegerArithmetic(const Program &p) {
  auto definition = [&](const Definition &d) {
    for (const IndexVar &v : d.indices) check(v.extent, d.tensor, d.loc);
    check(d.value, d.tensor, d.loc);
    for (const Expr &s : d.scatter) check(s, d.tensor, d.loc);
  };
  for (const Definition &d : p.defs) definition(d);
  for (const Recovery &r : p.recoveries) definition(r.def);
}

} // namespace enc::ir
