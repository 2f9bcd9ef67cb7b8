// Gives every reduction but a definition's main one a temporary of its own.
#include "compiler/Passes.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace enc::ir {
namespace {

class Hoister {
public:
  explicit Hoister(const Program &p) : in_(p) {}

  Program run() {
    countReductions();
    out_ = in_;
    out_.defs.clear();
    for (const Definition &d : in_.defs) {
      enter(d);
      Definition nd = d;
      nd.value = rewrite(d.value, /*topLevel=*/true);
      // The main reduction may equal one hoisted later in the same definition: read that.
      if (mainTaken_ && cache_.count(mainKey_)) {
        const Definition *shared = out_.definitionOf(cache_[mainKey_]);
        std::vector<Expr> idx;
        for (const IndexVar &v : freeIndices(mainFree_)) idx.push_back(var(v.name, Type::Int, VarKind::Index));
        Expr replacement = access(shared->tensor, idx, d.loc);
        nd.value = mutate(nd.value, [&](const Expr &n) -> Expr { return n->kind == ExprKind::Reduce ? replacement : nullptr; });
      } else if (mainTaken_ && nd.value->kind == ExprKind::Reduce && !d.isScatter()) {
        cache_[mainKey_] = d.tensor; // the reduction and nothing else: others read it here
      }
      out_.defs.push_back(std::move(nd));
    }
    return std::move(out_);
  }

private:
  const Program &in_;
  Program out_;
  const Definition *current_ = nullptr;
  bool mainTaken_ = false;
  std::string mainKey_;
  std::set<std::string> mainFree_;
  IndexScope scope_;
  std::map<std::string, std::string> cache_;        // canonical reduction -> temporary
  std::map<std::string, int> occurrences_;          // canonical reduction -> definitions' uses
  int counter_ = 0;

  void enter(const Definition &d) {
    current_ = &d;
    mainTaken_ = false;
    scope_.clear();
    for (const IndexVar &v : d.indices) scope_.push_back({v.name, v.extent});
  }

  // How often each reduction occurs at the top of a definition: one that occurs more than
  // once is computed once, so it is nobody's main reduction unless it is a whole definition.
  void countReductions() {
    for (const Definition &d : in_.defs) {
      enter(d);
      visit(d.value, [&](const Expr &n) {
        if (n->kind != ExprKind::Reduce) return true;
        std::vector<std::string> free = freeIndexVars(n);
        ++occurrences_[canonicalKey(n, {free.begin(), free.end()})];
        return false;
      });
    }
  }

  Expr rewrite(const Expr &e, bool topLevel) {
    if (e->kind == ExprKind::Reduce) {
      for (const ReduceVar &v : e->rvars) scope_.push_back({v.name, v.extent});
      Expr body = rewrite(e->args[0], false);
      scope_.resize(scope_.size() - e->rvars.size());
      Expr r = reduce(e->reduceOp, e->rvars, body);
      std::vector<std::string> free = freeIndexVars(r);
      std::set<std::string> freeSet(free.begin(), free.end()), defSet;
      // Indices of extent 1 (folded to 0, see FoldUnitIndices.cpp) need not be read.
      for (const IndexVar &v : current_->indices) {
        int64_t extent = 0;
        if (freeSet.count(v.name) || !isConst(v.extent, &extent) || extent != 1) defSet.insert(v.name);
      }
      const std::string key = canonicalKey(r, freeSet);
      const bool shared = occurrences_[key] > 1 && e != current_->value;
      if (topLevel && !mainTaken_ && freeSet == defSet && !cache_.count(key) && !shared) {
        mainTaken_ = true;
        mainKey_ = key;
        mainFree_ = freeSet;
        return r;
      }
      return hoist(r, freeSet);
    }
    if (e->args.empty()) return e;
    std::vector<Expr> args;
    bool changed = false;
    for (const Expr &a : e->args) {
      args.push_back(rewrite(a, topLevel));
      changed |= args.back() != a;
    }
    return changed ? withArgs(e, std::move(args)) : e;
  }

  // The free indices of a reduction in scope order.
  std::vector<IndexVar> freeIndices(const std::set<std::string> &free) const { return boundIndices(scope_, free); }

  // Canonical text: free indices renamed by position, so equal reductions share a temporary.
  std::string canonicalKey(const Expr &r, const std::set<std::string> &free) const {
    std::vector<IndexVar> indices = freeIndices(free);
    std::map<std::string, std::string> canon;
    std::string key;
    for (size_t i = 0; i < indices.size(); ++i) {
      canon[indices[i].name] = fmt::format("_{}", i);
      key += print(indices[i].extent) + ";";
    }
    return key + print(substitute(r, [&](const std::string &n, VarKind k) -> Expr {
             auto it = canon.find(n);
             return k == VarKind::Index && it != canon.end() ? var(it->second, Type::Int, VarKind::Index) : nullptr;
           }));
  }

  Expr hoist(const Expr &r, const std::set<std::string> &free) {
    std::vector<IndexVar> indices = freeIndices(free);
    std::string key = canonicalKey(r, free);
    std::string name;
    if (auto it = cache_.find(key); it != cache_.end()) {
      name = it->second;
      // Reuse: the temporary's own index names may differ; index it positionally.
      const Definition *def = out_.definitionOf(name);
      std::vector<Expr> idx;
      for (size_t i = 0; i < def->indices.size(); ++i) idx.push_back(var(indices[i].name, Type::Int, VarKind::Index));
      return access(name, std::move(idx), current_->loc);
    }
    name = fmt::format("{}_{}{}", current_->tensor, reduceOpName(r->reduceOp), ++counter_);
    cache_[key] = name;
    TensorDecl decl{name, TensorRole::Temp, {}, current_->loc};
    std::vector<Expr> idx;
    for (const IndexVar &v : indices) {
      decl.shape.push_back(v.extent);
      idx.push_back(var(v.name, Type::Int, VarKind::Index));
    }
    out_.tensors.push_back(decl);
    out_.defs.push_back(Definition{name, indices, r, current_->loc, {}});
    return access(name, std::move(idx), current_->loc);
  }
};

} // namespace

Program hoistReductions(const Program &p) { return Hoister(p).run(); }

} // namespace enc::ir
