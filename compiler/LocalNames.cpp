#include "compiler/LocalNames.h"

#include <algorithm>

namespace enc::ir {

// The variable node `n` under its new name, or nullptr when it keeps its name.
static Expr renamedVar(const Expr &n, const Renaming &rename) {
  if (n->kind != ExprKind::Var || (n->varKind != VarKind::Index && n->varKind != VarKind::Local)) return nullptr;
  auto it = rename.find(n->name);
  if (it == rename.end()) return nullptr;
  auto copy = std::make_shared<ExprNode>(*n);
  copy->name = it->second;
  return copy;
}

Expr renameLocals(const Expr &e, const Renaming &rename) {
  return mutate(e, [&](const Expr &n) { return renamedVar(n, rename); });
}

Stmt renameLocals(const Stmt &s, const Renaming &rename) {
  Stmt names = mutate(s, [&](const Stmt &n) -> Stmt {
    bool declaresLocal = n->kind == StmtKind::For || n->kind == StmtKind::Let || n->kind == StmtKind::Assign ||
                         n->kind == StmtKind::WarpReduce;
    auto it = declaresLocal ? rename.find(n->name) : rename.end();
    return it != rename.end() ? withName(n, it->second) : nullptr;
  });
  return mutateExprs(names, [&](const Expr &n) { return renamedVar(n, rename); });
}

void joinLets(const std::vector<Stmt> &lets, std::vector<Stmt> &merged, Renaming &rename, TakenNames &taken) {
  const std::vector<Stmt> before = merged;
  for (const Stmt &l : lets) {
    Expr value = renameLocals(l->value, rename);
    auto same = std::find_if(before.begin(), before.end(), [&](const Stmt &s) {
      return s->type == l->type && structurallyEqual(s->value, value);
    });
    if (same != before.end()) {
      rename[l->name] = (*same)->name;
      continue;
    }
    rename[l->name] = taken.fresh(l->name);
    merged.push_back(let(rename[l->name], l->type, value));
  }
}

} // namespace enc::ir
