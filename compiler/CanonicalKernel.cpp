#include "compiler/CanonicalKernel.h"

#include <fmt/format.h>

#include <map>
#include <set>

namespace enc::ir {

Kernel canonicalKernel(const Kernel &k, const std::string &prefix) {
  std::map<std::string, std::string> names;
  for (size_t i = 0; i < k.buffers.size(); ++i) names.emplace(k.buffers[i], fmt::format("{}b{}", prefix, i));
  std::set<std::string> locals;
  auto declare = [&](const std::string &name) {
    if (names.count(name)) return;
    names.emplace(name, fmt::format("__v{}", locals.size()));
    locals.insert(name);
  };
  if (k.body)
    visit(k.body, [&](const Stmt &s) {
      if (s->kind == StmtKind::For || s->kind == StmtKind::Let || s->kind == StmtKind::Alloc) declare(s->name);
      return true;
    });
  auto renameExpr = [&](const Expr &e) -> Expr {
    if (!e) return e;
    return mutate(e, [&](const Expr &n) -> Expr {
      bool named = n->kind == ExprKind::Load || n->kind == ExprKind::Access ||
                   (n->kind == ExprKind::Var && locals.count(n->name));
      auto it = named ? names.find(n->name) : names.end();
      if (it == names.end()) return nullptr;
      auto renamed = std::make_shared<ExprNode>(*n);
      renamed->name = it->second;
      return renamed;
    });
  };
  Kernel out = k;
  for (std::string &b : out.buffers) b = names.at(b);
  if (auto it = names.find(k.output); it != names.end()) out.output = it->second;
  if (k.body) {
    Stmt body = mutate(k.body, [&](const Stmt &s) -> Stmt {
      auto it = names.find(s->name);
      bool named = s->kind != StmtKind::Block && s->kind != StmtKind::IfLaneZero && s->kind != StmtKind::If &&
                   s->kind != StmtKind::Barrier && s->kind != StmtKind::AsyncCommit &&
                   s->kind != StmtKind::AsyncWait; // a Matrix or AsyncCopy statement names an array
      return named && it != names.end() ? withName(s, it->second) : nullptr;
    });
    out.body = mutateExprs(body, renameExpr);
  }
  out.launchExtent = renameExpr(k.launchExtent);
  return out;
}

} // namespace enc::ir
