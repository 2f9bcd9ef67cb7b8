#include "compiler/DefinitionRewriter.h"

#include <utility>

namespace enc::ir {

DefinitionRewriter::DefinitionRewriter(Program in) : out_(std::move(in)), in_defs_(std::exchange(out_.defs, {})) {}

void DefinitionRewriter::enter(const Definition &d) {
  current_ = &d;
  scope_.clear();
  for (const IndexVar &v : d.indices) scope_.push_back({v.name, v.extent});
}

Expr DefinitionRewriter::rewriteOperands(const Expr &e, const std::function<Expr(const Expr &)> &child) {
  if (e->kind == ExprKind::Reduce) {
    for (const ReduceVar &v : e->rvars) scope_.push_back({v.name, v.extent});
    Expr body = child(e->args[0]);
    scope_.resize(scope_.size() - e->rvars.size());
    return body == e->args[0] ? e : reduce(e->reduceOp, e->rvars, body);
  }
  if (e->args.empty()) return e;
  std::vector<Expr> args;
  bool changed = false;
  for (const Expr &a : e->args) {
    args.push_back(child(a));
    changed |= args.back() != a;
  }
  return changed ? withArgs(e, std::move(args)) : e;
}

Expr DefinitionRewriter::addTemporary(const std::string &name, const std::vector<IndexVar> &indices, Expr value) {
  TensorDecl decl{name, TensorRole::Temp, {}, current_->loc};
  std::vector<Expr> idx;
  for (const IndexVar &v : indices) {
    decl.shape.push_back(v.extent);
    idx.push_back(var(v.name, Type::Int, VarKind::Index));
  }
  out_.tensors.push_back(decl);
  out_.defs.push_back(Definition{name, indices, std::move(value), current_->loc, {}});
  return access(name, std::move(idx), current_->loc);
}

} // namespace enc::ir
