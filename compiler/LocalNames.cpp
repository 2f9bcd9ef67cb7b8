#include "compiler/LocalNames.h"

#include <algorithm>
#include <cctype>

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

std::string freshName(const std::string &name, std::set<std::string> &taken) {
  std::string fresh = name;
  if (taken.count(fresh)) {
    std::string stem = name;
    while (!stem.empty() && std::isdigit(static_cast<unsigned char>(stem.back()))) stem.pop_back();
    for (int i = 1; taken.count(fresh = stem + std::to_string(i)); ++i) {
    }
  }
  taken.insert(fresh);
  return fresh;
}

void joinLets(const std::vector<Stmt> &lets, std::vector<Stmt> &merged, Renaming &rename, std::set<std::string> &taken) {
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
    rename[l->name] = freshName(l->name, taken);
    merged.push_back(let(rename[l->name], l->type, value));
  }
}

} // namespace enc::ir
