#include "compiler/ReductionNest.h"

#include <algorithm>
#include <map>

namespace enc::ir {
namespace {

bool readsAny(const Expr &e, const std::set<std::string> &names) {
  return e && anyNode(e, [&](const Expr &n) {
           return n->kind == ExprKind::Var && (n->varKind == VarKind::Local || n->varKind == VarKind::Index) &&
                  names.count(n->name);
         });
}

// Reads the statements of a kernel body into a nest; each step returns false when they do not
// form one, and then the nest is not used.
class NestReader {
public:
  explicit NestReader(bool warp) : warp_(warp) {}

  std::optional<ReductionNest> read(const Stmt &top) {
    nest_.output = {top->name, top->value, top->forKind, {}};
    const std::vector<Stmt> body = withoutBlocks(top->body);
    auto loop = std::find_if(body.begin(), body.end(), [](const Stmt &s) { return s->kind == StmtKind::For; });
    if (loop == body.end() || !readReduction(*loop, 0)) return std::nullopt;
    const std::vector<Stmt> before(body.begin(), loop), after(loop + 1, body.end());
    if (!readAccumulators(before) || !(warp_ ? readWarpTail(after) : readEpilogue(after))) return std::nullopt;
    if (!independent() || !namesUnique()) return std::nullopt;
    return nest_;
  }

private:
  bool warp_;
  ReductionNest nest_;
  std::map<std::string, Stmt> updates_; // by accumulator

  // A reduction loop, `depth` levels below the output loop: lets and one loop, or (innermost)
  // lets and the accumulators' updates.
  bool readReduction(const Stmt &loop, size_t depth) {
    ForKind want = warp_ && depth == 0 ? ForKind::GpuLanes : ForKind::Serial;
    if (loop->forKind != want) return false;
    nest_.reduction.push_back({loop->name, loop->value, loop->forKind, {}});
    Stmt inner;
    for (const Stmt &s : withoutBlocks(loop->body)) {
      if (s->kind == StmtKind::Let) {
        nest_.reduction[depth].lets.push_back(s);
      } else if (s->kind == StmtKind::For && !inner && updates_.empty()) {
        inner = s;
      } else if (s->kind == StmtKind::Assign && !inner && !updates_.count(s->name)) {
        updates_[s->name] = s;
      } else {
        return false;
      }
    }
    if (inner) return readReduction(inner, depth + 1);
    return !updates_.empty();
  }

  // The output loop's lets before the reduction: the accumulators, in order, and output lets.
  bool readAccumulators(const std::vector<Stmt> &before) {
    for (const Stmt &s : before) {
      if (s->kind != StmtKind::Let) return false;
      auto update = updates_.find(s->name);
      if (update == updates_.end())
        nest_.output.lets.push_back(s);
      else
        nest_.accumulators.push_back({s, update->second, nullptr});
    }
    return nest_.accumulators.size() == updates_.size(); // every assignment is to an accumulator
  }

  // GPU: after the lanes, a warp combine per accumulator, output lets, and lane 0's epilogue.
  bool readWarpTail(const std::vector<Stmt> &after) {
    if (after.empty() || after.back()->kind != StmtKind::IfLaneZero) return false;
    std::map<std::string, Stmt> combines;
    for (size_t i = 0; i + 1 < after.size(); ++i) {
      const Stmt &s = after[i];
      if (s->kind == StmtKind::Let)
        nest_.output.lets.push_back(s);
      else if (s->kind != StmtKind::WarpReduce || !combines.emplace(s->name, s).second)
        return false;
    }
    for (ReductionNest::Accumulator &acc : nest_.accumulators) {
      auto c = combines.find(acc.init->name);
      if (c == combines.end()) return false;
      acc.combine = c->second;
    }
    return combines.size() == nest_.accumulators.size() && readEpilogue(withoutBlocks(after.back()->body));
  }

  bool readEpilogue(const std::vector<Stmt> &stmts) {
    bool stores = false;
    for (const Stmt &s : stmts) {
      if (s->kind == StmtKind::Store && !s->accumulate)
        stores = true;
      else if (s->kind != StmtKind::Let)
        return false;
    }
    nest_.epilogue = stmts;
    return stores;
  }

  // Lets outside the epilogue and accumulator inits read no accumulator; an update reads none
  // but its own. (So the order among them does not matter.)
  bool independent() const {
    std::set<std::string> accs;
    for (const ReductionNest::Accumulator &a : nest_.accumulators) accs.insert(a.init->name);
    for (const ReductionNest::Accumulator &a : nest_.accumulators) {
      std::set<std::string> others = accs;
      others.erase(a.init->name);
      if (readsAny(a.init->value, accs) || readsAny(a.update->value, others)) return false;
    }
    auto letsReadNone = [&](const ReductionNest::Loop &l) {
      return std::none_of(l.lets.begin(), l.lets.end(), [&](const Stmt &s) { return readsAny(s->value, accs); });
    };
    return letsReadNone(nest_.output) && std::all_of(nest_.reduction.begin(), nest_.reduction.end(), letsReadNone);
  }

  bool namesUnique() const {
    size_t declared = 0;
    auto count = [&](const ReductionNest::Loop &l) { declared += 1 + l.lets.size(); };
    count(nest_.output);
    for (const ReductionNest::Loop &l : nest_.reduction) count(l);
    declared += nest_.accumulators.size();
    for (const Stmt &s : nest_.epilogue) declared += s->kind == StmtKind::Let;
    return nest_.declaredNames().size() == declared;
  }
};

} // namespace

std::set<std::string> ReductionNest::declaredNames() const {
  std::set<std::string> names;
  auto add = [&](const Loop &l) {
    names.insert(l.var);
    for (const Stmt &s : l.lets) names.insert(s->name);
  };
  add(output);
  for (const Loop &l : reduction) add(l);
  for (const Accumulator &a : accumulators) names.insert(a.init->name);
  for (const Stmt &s : epilogue)
    if (s->kind == StmtKind::Let) names.insert(s->name);
  return names;
}

ReductionNest ReductionNest::renamed(const Renaming &rename) const {
  auto stmts = [&](const std::vector<Stmt> &ss) {
    std::vector<Stmt> out;
    for (const Stmt &s : ss) out.push_back(renameLocals(s, rename));
    return out;
  };
  auto loop = [&](const Loop &l) {
    auto it = rename.find(l.var);
    return Loop{it == rename.end() ? l.var : it->second, renameLocals(l.extent, rename), l.kind, stmts(l.lets)};
  };
  ReductionNest n;
  n.output = loop(output);
  for (const Loop &l : reduction) n.reduction.push_back(loop(l));
  for (const Accumulator &a : accumulators)
    n.accumulators.push_back({renameLocals(a.init, rename), renameLocals(a.update, rename),
                              a.combine ? renameLocals(a.combine, rename) : nullptr});
  n.epilogue = stmts(epilogue);
  return n;
}

std::optional<ReductionNest> reductionNest(const Kernel &k) {
  if (k.scatters || k.collective || !k.body || k.body->kind != StmtKind::For) return std::nullopt;
  const ForKind kind = k.body->forKind;
  if (k.launch != kind || (kind != ForKind::GpuWarps && kind != ForKind::Parallel)) return std::nullopt;
  return NestReader(kind == ForKind::GpuWarps).read(k.body);
}

Stmt reductionNestBody(const ReductionNest &n) {
  std::vector<Stmt> inner;
  for (const ReductionNest::Accumulator &a : n.accumulators) inner.push_back(a.update);
  for (size_t i = n.reduction.size(); i-- > 0;) {
    const ReductionNest::Loop &l = n.reduction[i];
    std::vector<Stmt> body = l.lets;
    body.insert(body.end(), inner.begin(), inner.end());
    inner = {forLoop(l.var, l.extent, l.kind, body)};
  }
  std::vector<Stmt> body = n.output.lets;
  for (const ReductionNest::Accumulator &a : n.accumulators) body.push_back(a.init);
  body.insert(body.end(), inner.begin(), inner.end());
  if (n.warp()) {
    for (const ReductionNest::Accumulator &a : n.accumulators) body.push_back(a.combine);
    body.push_back(ifLaneZero(n.epilogue));
  } else {
    body.insert(body.end(), n.epilogue.begin(), n.epilogue.end());
  }
  return forLoop(n.output.var, n.output.extent, n.output.kind, body);
}

} // namespace enc::ir
