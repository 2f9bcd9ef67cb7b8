#include "compiler/CanonicalKernel.h"

#include <fmt/format.h>

#include <map>
#include <set>

namespace enc::ir {

Kernel canonicalKernel(const Kernel &k, const std::string &prefix) {
  std::map<std::string, std::string> names;
  for (size_t i = 0; i < k.buffers.size(); ++i) names.emplace(k.buffers[i], fmt::format("{}b{}", prefix, i));
  std::set<std::string> locals, tiledVars;
  auto declare = [&](const std::string &name) {
    if (names.count(name)) return;
    names.emplace(name, fmt::format("__v{}", locals.size()));
    locals.insert(name);
  };
  if (k.tiled)
    for (const auto *vars : {&k.tiled->batch, &k.tiled->rows, &k.tiled->cols, &k.tiled->red})
      for (const IndexVar &v : *vars) {
        declare(v.name);
        tiledVars.insert(v.name);
      }
  if (k.body)
    visit(k.body, [&](const Stmt &s) {
      if (s->kind == StmtKind::For || s->kind == StmtKind::Let || s->kind == StmtKind::Alloc) declare(s->name);
      return true;
    });
  // A tiled contraction's expressions are emitted without the body: only its own index
  // variables (and buffers) are declared for them, the rest (its "_acc") stays as named.
  auto renameIn = [&](const Expr &e, const std::set<std::string> &vars) -> Expr {
    if (!e) return e;
    return mutate(e, [&](const Expr &n) -> Expr {
      bool named = n->kind == ExprKind::Load || n->kind == ExprKind::Access ||
                   (n->kind == ExprKind::Var && vars.count(n->name));
      auto it = named ? names.find(n->name) : names.end();
      if (it == names.end()) return nullptr;
      auto renamed = std::make_shared<ExprNode>(*n);
      renamed->name = it->second;
      return renamed;
    });
  };
  auto renameExpr = [&](const Expr &e) { return renameIn(e, locals); };
  auto renameTiled = [&](const Expr &e) { return renameIn(e, tiledVars); };
  Kernel out = k;
  for (std::string &b : out.buffers) b = names.at(b);
  if (auto it = names.find(k.output); it != names.end()) out.output = it->second;
  if (k.body) {
    Stmt body = mutate(k.body, [&](const Stmt &s) -> Stmt {
      auto it = names.find(s->name);
      return it != names.end() && s->kind != StmtKind::Block && s->kind != StmtKind::IfLaneZero ? withName(s, it->second)
                                                                                                  : nullptr;
    });
    out.body = mutateExprs(body, renameExpr);
  }
  out.launchExtent = renameExpr(k.launchExtent);
  if (k.tiled) {
    auto t = std::make_shared<TiledContraction>(*k.tiled);
    for (auto *vars : {&t->batch, &t->rows, &t->cols, &t->red})
      for (IndexVar &v : *vars) {
        v.name = names.at(v.name);
        v.extent = renameTiled(v.extent);
      }
    t->a = renameTiled(t->a);
    t->b = renameTiled(t->b);
    t->epilogue = renameTiled(t->epilogue);
    t->flatOut = renameTiled(t->flatOut);
    out.tiled = t;
  }
  return out;
}

} // namespace enc::ir
