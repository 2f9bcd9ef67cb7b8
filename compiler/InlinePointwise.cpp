// Fusion of element-wise chains: a pointwise temporary is substituted into its consumers
// when that costs little recomputation, so it is never stored.
#include "compiler/Passes.h"

#include <algorithm>
#include <set>
#include <vector>

namespace enc::ir {
namespace {

// Above this cost a temporary is recomputed in consumers only if they iterate the same domain.
constexpr int kCheapCost = 3;
// No consumer grows past this many nodes by inlining: a chain whose every link reads the one
// before twice (T2 = T1 * 2 + T1, ...) would otherwise double in size with each link.
constexpr size_t kMaxFusedNodes = 4096;

size_t nodeCount(const Expr &e) {
  size_t n = 0;
  visit(e, [&](const Expr &) { return ++n <= kMaxFusedNodes; }); // stops counting past the bound
  return n;
}

bool reads(const Expr &e, const std::string &tensor) {
  return anyNode(e, [&](const Expr &n) { return n->kind == ExprKind::Access && n->name == tensor; });
}

// Substitutes `def` into the reads of it in `e`. A read through an index expression may
// fall outside the temporary, where it reads zero: the substituted value keeps that guard.
Expr inlineInto(const Expr &e, const Definition &def) {
  return mutate(e, [&](const Expr &n) -> Expr {
    if (n->kind != ExprKind::Access || n->name != def.tensor) return nullptr;
    Expr value = substitute(def.value, [&](const std::string &name, VarKind kind) -> Expr {
      if (kind != VarKind::Index) return nullptr;
      for (size_t i = 0; i < def.indices.size(); ++i)
        if (def.indices[i].name == name) return n->args[i];
      return nullptr;
    });
    Expr inBounds = boolImm(true);
    for (size_t i = 0; i < n->args.size(); ++i) {
      const Expr &ix = n->args[i];
      if (ix->kind == ExprKind::Var && ix->varKind == VarKind::Index) continue; // in range by range inference
      inBounds = binary(BinOp::And, inBounds,
                        binary(BinOp::And, binary(BinOp::Ge, ix, intImm(0)), binary(BinOp::Lt, ix, def.indices[i].extent)));
    }
    return select(inBounds, value, floatImm(0));
  });
}

// The tensors each definition's value reads, by definition.
std::vector<std::set<std::string>> readSets(const Program &p) {
  std::vector<std::set<std::string>> out(p.defs.size());
  for (size_t i = 0; i < p.defs.size(); ++i)
    visit(p.defs[i].value, [&](const Expr &n) {
      if (n->kind == ExprKind::Access) out[i].insert(n->name);
      return true;
    });
  return out;
}

// Inlines the first temporary that may be; `tooLarge` collects those that would make some
// consumer too large (consumers only grow, so they stay too large).
bool tryInlineOne(Program &p, std::set<std::string> &tooLarge) {
  const std::vector<std::set<std::string>> readsOf = readSets(p);
  for (size_t di = 0; di < p.defs.size(); ++di) {
    const Definition &d = p.defs[di];
    const TensorDecl *t = p.tensor(d.tensor);
    if (!t || t->role != TensorRole::Temp || d.isScatter() || tooLarge.count(d.tensor) || containsReduce(d.value) ||
        containsAllreduce(d.value))
      continue;
    bool scattered = false;
    for (size_t ci = 0; ci < p.defs.size(); ++ci) {
      const Definition &c = p.defs[ci];
      scattered |= c.isScatter() && c.tensor == d.tensor;
      // A collective sums a stored tensor: what it reads stays stored.
      scattered |= isCollective(c) && readsOf[ci].count(d.tensor);
    }
    if (scattered) continue;
    bool cheap = costOf(d.value) <= kCheapCost;
    bool sameDomain = true;
    for (size_t ci = 0; ci < p.defs.size(); ++ci) {
      const Definition &c = p.defs[ci];
      if (readsOf[ci].count(d.tensor) && (containsReduce(c.value) || c.indices.size() != d.indices.size()))
        sameDomain = false;
    }
    if (!cheap && !sameDomain) continue;
    Definition victim = d;
    std::vector<std::pair<size_t, Expr>> inlined; // consumer, its value with victim substituted
    for (size_t ci = 0; ci < p.defs.size(); ++ci)
      if (readsOf[ci].count(victim.tensor)) inlined.push_back({ci, inlineInto(p.defs[ci].value, victim)});
    if (std::any_of(inlined.begin(), inlined.end(), [](const auto &c) { return nodeCount(c.second) > kMaxFusedNodes; })) {
      tooLarge.insert(victim.tensor);
      continue;
    }
    for (auto &[ci, value] : inlined) p.defs[ci].value = value;
    p.defs.erase(p.defs.begin() + static_cast<long>(di));
    p.tensors.erase(std::remove_if(p.tensors.begin(), p.tensors.end(),
                                   [&](const TensorDecl &x) { return x.name == victim.tensor; }),
                    p.tensors.end());
    return true;
  }
  return false;
}

bool dropDeadTemps(Program &p) {
  for (size_t di = 0; di < p.defs.size(); ++di) {
    const TensorDecl *t = p.tensor(p.defs[di].tensor);
    if (!t || t->role != TensorRole::Temp) continue;
    bool used = false;
    for (const Definition &c : p.defs) used |= reads(c.value, t->name);
    if (used) continue;
    std::string name = t->name;
    p.defs.erase(std::remove_if(p.defs.begin(), p.defs.end(), [&](const Definition &x) { return x.tensor == name; }),
                 p.defs.end());
    p.tensors.erase(std::remove_if(p.tensors.begin(), p.tensors.end(), [&](const TensorDecl &x) { return x.name == name; }),
                    p.tensors.end());
    return true;
  }
  return false;
}

} // namespace

Program inlinePointwise(const Program &in) {
  Program p = in;
  std::set<std::string> tooLarge;
  while (tryInlineOne(p, tooLarge) || dropDeadTemps(p)) {
  }
  return p;
}

Program specialize(const Program &in, const std::map<std::string, Expr> &values) {
  auto lookup = [&](const std::string &name, VarKind kind) -> Expr {
    if (kind != VarKind::Size && kind != VarKind::Param) return nullptr;
    auto it = values.find(name);
    return it == values.end() ? nullptr : it->second;
  };
  Program p = in;
  for (TensorDecl &t : p.tensors)
    for (Expr &s : t.shape) s = substitute(s, lookup);
  for (Definition &d : p.defs) {
    for (IndexVar &v : d.indices) v.extent = substitute(v.extent, lookup);
    d.value = substitute(d.value, lookup);
    for (Expr &e : d.scatter) e = substitute(e, lookup);
  }
  for (Requirement &r : p.requirements) r.condition = substitute(r.condition, lookup);
  std::vector<SizeParam> remaining;
  for (const SizeParam &s : p.sizes)
    if (!values.count(s.name)) remaining.push_back(s);
  p.sizes = std::move(remaining);
  return p;
}

} // namespace enc::ir
