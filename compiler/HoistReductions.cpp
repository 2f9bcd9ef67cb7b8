// Gives every reduction but a definition's main one a temporary of its own.
#include "compiler/DefinitionRewriter.h"
#include "compiler/Passes.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace enc::ir {
namespace {

class Hoister : DefinitionRewriter {
public:
  explicit Hoister(const Program &p) : DefinitionRewriter(p) {}

  Program run() {
    countReductions();
    for (const Definition &d : in_.defs) {
      enter(d);
      mainTaken_ = false;
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
  bool mainTaken_ = false;
  std::string mainKey_;
  std::set<std::string> mainFree_;
  std::map<std::string, std::string> cache_;        // canonical reduction -> temporary
  std::map<std::string, int> occurrences_;          // canonical reduction -> definitions' uses
  int counter_ = 0;

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
      Expr r = rewriteOperands(e, [&](const Expr &body) { return rewrite(body, false); });
      std::vector<std::string> free = freeIndexVars(r);
      std::set<std::string> freeSet(free.begin(), free.end()), defSet;
      // Indices of extent 1 (folded to 0, see FoldUnitIndices.cpp) need not be read.
      for (const IndexVar &v : current_->indices)
        if (freeSet.count(v.name) || !isUnitExtent(v.extent)) defSet.insert(v.name);
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
    return rewriteOperands(e, [&](const Expr &a) { return rewrite(a, topLevel); });
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
    // A fresh name: an earlier run of this pass may have left a temporary of the same pattern.
    do {
      name = fmt::format("{}_{}{}", current_->tensor, reduceOpName(r->reduceOp), ++counter_);
    } while (in_.tensor(name) || out_.tensor(name));
    cache_[key] = name;
    return addTemporary(name, indices, r);
  }
};

} // namespace

Program hoistReductions(const Program &p) { return Hoister(p).run(); }

} // namespace enc::ir
