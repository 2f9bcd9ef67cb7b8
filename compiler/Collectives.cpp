// allreduce(x) in the tensor IR: the sum of x over every process of the group.
//
// Kernels cannot talk to other processes, so the compiler cuts the program there: each
// allreduce becomes a collective definition of its own,
//
//   T[i...] = allreduce(U[i...])      (U a stored tensor of T's shape, read element by element)
//
// which the loop IR carries as a body-less collective kernel and the runtime runs through
// the process group between the kernels before and after it. Collectives are then moved
// down to just before their first reader, so that the collectives of one stage (batch
// norm's sums and count) sit next to each other and the runtime sends them in one message.
#include "compiler/DefinitionRewriter.h"
#include "compiler/Passes.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

namespace enc::ir {

bool isAllreduce(const Expr &e) { return e->kind == ExprKind::Call && e->name == "allreduce"; }

bool containsAllreduce(const Expr &e) { return anyNode(e, isAllreduce); }

bool isCollective(const Definition &d) {
  if (d.isScatter() || !isAllreduce(d.value)) return false;
  const Expr &a = d.value->args[0];
  if (a->kind != ExprKind::Access || a->name == d.tensor || a->args.size() != d.indices.size()) return false;
  for (size_t i = 0; i < d.indices.size(); ++i)
    if (a->args[i]->kind != ExprKind::Var || a->args[i]->name != d.indices[i].name) return false;
  return true;
}

Program dropAllreduces(Program p) {
  auto drop = [](const Expr &n) -> Expr { return isAllreduce(n) ? n->args[0] : nullptr; };
  for (Definition &d : p.defs) d.value = mutate(d.value, drop);
  return p;
}

namespace {

class Isolator : DefinitionRewriter {
public:
  explicit Isolator(Program p) : DefinitionRewriter(std::move(p)) {}

  Program run() {
    for (const Definition &d : in_defs_) {
      if (isCollective(d) || !containsAllreduce(d.value)) {
        out_.defs.push_back(d);
        continue;
      }
      enter(d);
      Definition nd = d;
      nd.value = rewrite(d.value, /*whole=*/!d.isScatter());
      out_.defs.push_back(std::move(nd));
    }
    return std::move(out_);
  }

private:
  int counter_ = 0;

  Expr rewrite(const Expr &e, bool whole) {
    if (isAllreduce(e)) return isolate(rewrite(e->args[0], false), whole);
    return rewriteOperands(e, [&](const Expr &a) { return rewrite(a, false); });
  }

  // The indices a temporary of `x` needs: the whole definition's when x is its value (or reads
  // no index at all), else x's free indices with the extents they have where x sits.
  std::vector<IndexVar> indicesFor(const Expr &x, bool whole) const {
    std::vector<std::string> free = freeIndexVars(x);
    if (whole || free.empty()) return current_->indices;
    return boundIndices(scope_, {free.begin(), free.end()});
  }

  // A temporary named after the definition and `suffix`, with a name nobody has.
  Expr addTemp(const std::string &suffix, const std::vector<IndexVar> &indices, Expr value) {
    std::string name;
    do name = fmt::format("{}_{}{}", current_->tensor, suffix, ++counter_);
    while (out_.tensor(name)); // out_ declares every tensor of the input too
    return addTemporary(name, indices, std::move(value));
  }

  Expr isolate(const Expr &x, bool whole) {
    std::vector<IndexVar> indices = indicesFor(x, whole);
    Expr summed = call("allreduce", {addTemp("local", indices, x)});
    return whole ? summed : addTemp("allreduce", indices, summed);
  }
};

} // namespace

Program isolateAllreduces(Program p) { return Isolator(std::move(p)).run(); }

Program sinkCollectives(Program p) {
  if (std::none_of(p.defs.begin(), p.defs.end(), isCollective)) return p;
  std::vector<Definition> collectives, rest;
  for (Definition &d : p.defs) (isCollective(d) ? collectives : rest).push_back(std::move(d));
  auto readsAny = [](const Definition &d, const std::set<std::string> &names) {
    auto reads = [&](const Expr &e) {
      return anyNode(e, [&](const Expr &n) { return n->kind == ExprKind::Access && names.count(n->name); });
    };
    if (reads(d.value)) return true;
    return std::any_of(d.scatter.begin(), d.scatter.end(), reads);
  };
  p.defs.clear();
  std::set<std::string> pending; // collectives not placed yet
  for (const Definition &c : collectives) pending.insert(c.tensor);
  std::map<std::string, int> unplacedDefs; // definitions (scatters too) of each tensor still to place
  for (const auto *defs : {&collectives, &rest})
    for (const Definition &d : *defs) ++unplacedDefs[d.tensor];
  auto put = [&](const Definition &d) {
    p.defs.push_back(d);
    --unplacedDefs[d.tensor];
  };
  auto putCollective = [&](const Definition &c) {
    put(c);
    pending.erase(c.tensor);
  };
  // When a definition needs a collective, every collective whose operand is complete by then
  // goes with it, so that they travel in one message.
  for (const Definition &d : rest) {
    if (readsAny(d, pending))
      for (bool again = true; again;) {
        again = false;
        for (const Definition &c : collectives)
          if (pending.count(c.tensor) && unplacedDefs[c.value->args[0]->name] == 0) {
            putCollective(c);
            again = true;
          }
      }
    put(d);
  }
  for (const Definition &c : collectives) // the unread ones, last
    if (pending.count(c.tensor)) putCollective(c);
  return p;
}

} // namespace enc::ir
