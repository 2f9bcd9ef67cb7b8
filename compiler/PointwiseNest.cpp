#include "compiler/PointwiseNest.h"

namespace enc::ir {

namespace {

bool pointwiseLoopKind(ForKind k) {
  return k == ForKind::Serial || k == ForKind::Parallel || k == ForKind::GpuThreads || k == ForKind::GpuRows ||
         k == ForKind::GpuRowThreads;
}

} // namespace

Stmt PointwiseNest::write() const {
  Stmt s = block(body);
  for (size_t i = loops.size(); i-- > 0;) {
    std::vector<Stmt> level = loops[i].lets;
    level.push_back(s);
    s = forLoop(loops[i].var, loops[i].extent, loops[i].kind, level);
  }
  return s;
}

std::optional<PointwiseNest> pointwiseNest(const Kernel &k) {
  if (k.scatters || k.collective || k.bucket || k.body->kind != StmtKind::For) return std::nullopt;
  PointwiseNest n;
  Stmt loop = k.body;
  while (loop) {
    if (!pointwiseLoopKind(loop->forKind)) return std::nullopt;
    PointwiseNest::Loop level{loop->name, loop->value, loop->forKind, {}};
    std::vector<Stmt> items = withoutBlocks(loop->body);
    loop = nullptr;
    if (!items.empty() && items.back()->kind == StmtKind::For) {
      loop = items.back();
      items.pop_back();
      for (const Stmt &s : items)
        if (s->kind != StmtKind::Let) return std::nullopt;
      level.lets = items;
    } else {
      bool stores = false;
      for (const Stmt &s : items) {
        if (s->kind == StmtKind::Store && !s->accumulate) stores = true;
        else if (s->kind != StmtKind::Let) return std::nullopt;
      }
      if (!stores) return std::nullopt;
      n.body = items;
    }
    n.loops.push_back(level);
  }
  return n;
}

LetValues::LetValues(const PointwiseNest &n) {
  for (const PointwiseNest::Loop &l : n.loops)
    for (const Stmt &s : l.lets) add(s);
  for (const Stmt &s : n.body)
    if (s->kind == StmtKind::Let) add(s);
}

Expr LetValues::expand(const Expr &e) const {
  return substitute(e, [&](const std::string &name, VarKind) -> Expr {
    auto it = values_.find(name);
    return it == values_.end() ? nullptr : it->second;
  });
}

void LetValues::add(const Stmt &s) { values_[s->name] = expand(s->value); }

} // namespace enc::ir
