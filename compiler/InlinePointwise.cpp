// Fusion of element-wise chains: a pointwise temporary is substituted into its consumers
// when that costs little recomputation, so it is never stored.
#include "compiler/Passes.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace enc::ir {

// A read through an index expression may fall outside the temporary, where it reads zero:
// the substituted value keeps that guard.
Expr substituteDefinition(const Expr &e, const Definition &def) {
  return mutate(e, [&](const Expr &n) -> Expr {
    if (n->kind != ExprKind::Access || n->name != def.tensor) return nullptr;
    // Capture-free: a sum in the value keeps its own variables apart from the read's indices.
    std::map<std::string, Expr> at;
    for (size_t i = 0; i < def.indices.size(); ++i) at[def.indices[i].name] = n->args[i];
    Expr value = substituteIndices(def.value, at);
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

namespace {

// Above this cost a temporary is recomputed in consumers only if they iterate the same domain.
constexpr int kCheapCost = 3;
// No consumer grows past this many nodes by inlining: a chain whose every link reads the one
// before twice (T2 = T1 * 2 + T1, ...) would otherwise double in size with each link.
constexpr size_t kMaxFusedNodes = 4096;

// Nor does a consumer nest more than this many calls and selects: each one's derivative reads its
// argument, so the backward pass recomputes the chain below it once per level, and a chain of n
// activations inlined into one definition (relu(relu(... + 2) + 1)) derives a gradient of n^2
// nodes. Stored every so many levels, the chain costs the backward pass a bounded recomputation
// per level.
constexpr size_t kMaxNestedCalls = 32;

size_t nodeCount(const Expr &e) {
  size_t n = 0;
  visit(e, [&](const Expr &) { return ++n <= kMaxFusedNodes; }); // stops counting past the bound
  return n;
}

// The most calls and selects on one path from the root of `e` down.
size_t callDepth(const Expr &e) {
  size_t deepest = 0;
  for (const Expr &a : e->args) deepest = std::max(deepest, callDepth(a));
  return deepest + (e->kind == ExprKind::Call || e->kind == ExprKind::Select);
}


// The program being fused, with an index of who reads and who defines each tensor, so that a
// step costs what the definitions it touches cost, not a walk over the whole program: a network
// has thousands of definitions.
//
// The order of decisions is the order of a plain fixed-point loop: inline the first temporary (in
// program order) that may be, and start over; when none may be, drop the first dead temporary. A
// definition that may not be inlined only becomes one that may when its readers change, which
// happens to the producers of what an inlined or dropped definition read; so the next search
// starts at the first of those rather than at the top.
class Fuser {
public:
  explicit Fuser(Program &p) : p_(p), alive_(p.defs.size(), true), reads_(p.defs.size()) {
    for (const TensorDecl &t : p.tensors) role_[t.name] = t.role;
    for (size_t i = 0; i < p.defs.size(); ++i) {
      reads_[i] = tensorsRead(p.defs[i].value);
      for (const std::string &r : reads_[i]) readers_[r].insert(i);
      definers_[p.defs[i].tensor].insert(i);
    }
    for (size_t i = 0; i < p.defs.size(); ++i) noteIfDead(i);
  }

  void run() {
    size_t start = 0;
    for (;;) {
      if (auto next = inlineFrom(start)) {
        start = *next;
        continue;
      }
      if (dead_.empty()) break;
      start = drop(*dead_.begin());
    }
    compact();
  }

private:
  Program &p_;
  std::vector<bool> alive_;
  std::vector<std::set<std::string>> reads_;           // by definition
  std::map<std::string, std::set<size_t>> readers_;    // by tensor: the live definitions reading it
  std::map<std::string, std::set<size_t>> definers_;   // by tensor: its live definitions
  std::map<std::string, TensorRole> role_;
  std::set<std::string> tooLarge_; // inlining would make some consumer too large (consumers only grow)
  std::set<size_t> dead_;          // live definitions of temporaries nothing reads
  std::set<std::string> removed_;

  bool isTemp(const std::string &tensor) const {
    auto it = role_.find(tensor);
    return it != role_.end() && it->second == TensorRole::Temp;
  }

  void noteIfDead(size_t i) {
    const std::string &t = p_.defs[i].tensor;
    if (alive_[i] && isTemp(t) && readers_[t].empty()) dead_.insert(i);
    else dead_.erase(i);
  }

  // The first definition of a tensor in `tensors`, or `limit`.
  size_t firstProducer(const std::set<std::string> &tensors, size_t limit) {
    for (const std::string &t : tensors)
      if (!definers_[t].empty()) limit = std::min(limit, *definers_[t].begin());
    return limit;
  }

  bool mayInline(size_t di) {
    const Definition &d = p_.defs[di];
    if (!isTemp(d.tensor) || d.isScatter() || tooLarge_.count(d.tensor) || containsReduce(d.value) ||
        containsAllreduce(d.value))
      return false;
    for (size_t ci : definers_[d.tensor])
      if (p_.defs[ci].isScatter()) return false;
    // A collective sums a stored tensor: what it reads stays stored.
    for (size_t ci : readers_[d.tensor])
      if (isCollective(p_.defs[ci])) return false;
    if (costOf(d.value) <= kCheapCost) return !readBySeveralSumsRepeatedly(di);
    for (size_t ci : readers_[d.tensor])
      if (containsReduce(p_.defs[ci].value) || p_.defs[ci].indices.size() != d.indices.size()) return false;
    return true;
  }

  // A temporary combining several tensors that two or more sums read repeatedly (the same
  // element for every value of one of the sum's indices: an operand of a contraction) stays
  // stored: recomputed there it costs its work once per repeat, stored one write and a read
  // (softmax's gradient, which each of Encoding's gradients reads per feature).
  bool readBySeveralSumsRepeatedly(size_t di) {
    const Definition &d = p_.defs[di];
    if (reads_[di].size() < 2) return false;
    int repeated = 0;
    for (size_t ci : readers_[d.tensor]) {
      const Definition &c = p_.defs[ci];
      const ExprNode *r = firstReduce(c.value);
      if (!r || r->reduceOp != ReduceOp::Sum) continue;
      std::vector<std::string> domain;
      for (const IndexVar &v : c.indices) domain.push_back(v.name);
      for (const ReduceVar &v : r->rvars) domain.push_back(v.name);
      bool again = anyNode(r->args[0], [&](const Expr &n) {
        if (n->kind != ExprKind::Access || n->name != d.tensor) return false;
        return std::any_of(domain.begin(), domain.end(), [&](const std::string &v) {
          return std::none_of(n->args.begin(), n->args.end(),
                              [&](const Expr &a) { return mentionsVar(a, v, VarKind::Index); });
        });
      });
      repeated += again;
    }
    return repeated >= 2;
  }

  // Inlines the first temporary from `start` on that may be; returns where the next search starts.
  std::optional<size_t> inlineFrom(size_t start) {
    for (size_t di = start; di < p_.defs.size(); ++di) {
      if (!alive_[di] || !mayInline(di)) continue;
      const Definition &victim = p_.defs[di];
      std::vector<std::pair<size_t, Expr>> inlined; // consumer, its value with victim substituted
      for (size_t ci : readers_[victim.tensor]) inlined.push_back({ci, substituteDefinition(p_.defs[ci].value, victim)});
      if (std::any_of(inlined.begin(), inlined.end(), [](const auto &c) {
            return nodeCount(c.second) > kMaxFusedNodes || callDepth(c.second) > kMaxNestedCalls;
          })) {
        tooLarge_.insert(victim.tensor);
        continue;
      }
      for (auto &[ci, value] : inlined) {
        p_.defs[ci].value = value;
        reads_[ci].erase(victim.tensor);
        for (const std::string &r : reads_[di]) {
          reads_[ci].insert(r);
          readers_[r].insert(ci);
        }
      }
      readers_[victim.tensor].clear();
      return remove(di);
    }
    return std::nullopt;
  }

  size_t drop(size_t di) {
    size_t next = di;
    for (size_t i : std::set<size_t>(definers_[p_.defs[di].tensor])) next = std::min(next, remove(i));
    return next;
  }

  // Removes definition `di`; returns the first definition whose readers changed.
  size_t remove(size_t di) {
    const std::string tensor = p_.defs[di].tensor;
    alive_[di] = false;
    dead_.erase(di);
    definers_[tensor].erase(di);
    if (definers_[tensor].empty()) removed_.insert(tensor);
    for (const std::string &r : reads_[di]) {
      readers_[r].erase(di);
      for (size_t i : definers_[r]) noteIfDead(i);
    }
    return firstProducer(reads_[di], di);
  }

  void compact() {
    std::vector<Definition> defs;
    for (size_t i = 0; i < p_.defs.size(); ++i)
      if (alive_[i]) defs.push_back(std::move(p_.defs[i]));
    p_.defs = std::move(defs);
    p_.tensors.eraseIf([&](const TensorDecl &x) { return removed_.count(x.name) > 0; });
  }
};

} // namespace

Program inlinePointwise(Program p) {
  Fuser(p).run();
  return p;
}

Program specialize(Program p, const std::map<std::string, Expr> &values) {
  auto lookup = [&](const std::string &name, VarKind kind) -> Expr {
    if (kind != VarKind::Size && kind != VarKind::Param) return nullptr;
    auto it = values.find(name);
    return it == values.end() ? nullptr : it->second;
  };
  for (TensorDecl &t : p.tensors)
    for (Expr &s : t.shape) s = substitute(s, lookup);
  for (Definition &d : p.defs) {
    for (IndexVar &v : d.indices) v.extent = substitute(v.extent, lookup);
    d.value = substitute(d.value, lookup);
    for (Expr &e : d.scatter) e = substitute(e, lookup);
  }
  for (Requirement &r : p.requirements) r.condition = substitute(r.condition, lookup);
  for (Recovery &r : p.recoveries) {
    for (IndexVar &v : r.def.indices) v.extent = substitute(v.extent, lookup);
    r.def.value = substitute(r.def.value, lookup);
    r.condition = substitute(r.condition, lookup);
  }
  std::vector<SizeParam> remaining;
  for (const SizeParam &s : p.sizes)
    if (!values.count(s.name)) remaining.push_back(s);
  p.sizes = std::move(remaining);
  return p;
}

} // namespace enc::ir
