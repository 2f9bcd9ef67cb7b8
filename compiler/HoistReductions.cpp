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
  explicit Hoister(Program p) : DefinitionRewriter(std::move(p)) {}

  Program run() {
    countReductions();
    for (const Definition &d : in_defs_) {
      enter(d);
      mainTaken_ = false;
      Definition nd = d;
      nd.value = rewrite(d.value, /*topLevel=*/true);
      // The main reduction may equal one hoisted later in the same definition: read that.
      if (mainTaken_ && cache_.count(mainKey_)) {
        Expr replacement = readShared(cache_[mainKey_], mainReduce_);
        nd.value = mutate(nd.value, [&](const Expr &n) -> Expr { return n->kind == ExprKind::Reduce ? replacement : nullptr; });
      } else if (mainTaken_ && nd.value->kind == ExprKind::Reduce && !d.isScatter()) {
        cache_[mainKey_] = d.tensor; // the reduction and nothing else: others read it here
        layout_[d.tensor] = layoutOf(d.indices, mainReduce_);
      }
      out_.defs.push_back(std::move(nd));
    }
    return std::move(out_);
  }

private:
  bool mainTaken_ = false;
  std::string mainKey_;
  Expr mainReduce_;
  std::map<std::string, std::string> cache_;        // canonical reduction -> temporary
  // Per shared temporary, for each of its dimensions, the position of the index it holds in
  // its reduction's canonical order (-1: an index of extent 1 the reduction does not read).
  std::map<std::string, std::vector<int>> layout_;
  std::map<std::string, int> occurrences_;          // canonical reduction -> definitions' uses
  std::map<std::string, std::vector<int>> preferred_; // canonical reduction -> its definition's layout
  int counter_ = 0;

  // How often each reduction occurs at the top of a definition: one that occurs more than
  // once is computed once, so it is nobody's main reduction unless it is a whole definition.
  // It also notes, per reduction, the layout of an occurrence over exactly its definition's
  // indices: the temporary is laid out as that definition, wherever it is hoisted first.
  void countReductions() {
    for (const Definition &d : in_defs_) {
      enter(d);
      visit(d.value, [&](const Expr &n) {
        if (n->kind != ExprKind::Reduce) return true;
        std::vector<std::string> free = freeIndexVars(n);
        std::string key = canonicalKey(n, {free.begin(), free.end()});
        ++occurrences_[key];
        std::vector<int> layout = layoutOf(d.indices, n);
        if (free.size() == d.indices.size() && std::find(layout.begin(), layout.end(), -1) == layout.end())
          preferred_.emplace(key, std::move(layout));
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
        mainReduce_ = r;
        return r;
      }
      return hoist(r, freeSet);
    }
    return rewriteOperands(e, [&](const Expr &a) { return rewrite(a, topLevel); });
  }

  // The free indices of a reduction in scope order.
  std::vector<IndexVar> freeIndices(const std::set<std::string> &free) const { return boundIndices(scope_, free); }

  // The free indices of a reduction in the order the reduction first reads them: two
  // reductions equal up to a renaming of their free indices list them in corresponding order,
  // whatever the order of the scopes they stand in (Encoding's sum(d: R[b, i, k, d] ^ 2) in
  // A[b, k, i] and, as sum(d: R[b, i, k_r1, d] ^ 2), in its softmax's max over k_r1).
  std::vector<IndexVar> canonicalIndices(const Expr &r, const std::set<std::string> &free) const {
    std::map<std::string, IndexVar> byName;
    for (const IndexVar &v : freeIndices(free)) byName.emplace(v.name, v);
    std::vector<IndexVar> out;
    for (const std::string &name : freeIndexVars(r))
      if (auto it = byName.find(name); it != byName.end()) out.push_back(it->second);
    return out;
  }

  // For each index of a temporary, its position among the canonical indices of r.
  std::vector<int> layoutOf(const std::vector<IndexVar> &indices, const Expr &r) const {
    std::vector<std::string> canonical = freeIndexVars(r);
    std::vector<int> out;
    for (const IndexVar &v : indices) {
      auto it = std::find(canonical.begin(), canonical.end(), v.name);
      out.push_back(it == canonical.end() ? -1 : static_cast<int>(it - canonical.begin()));
    }
    return out;
  }

  // The read of the temporary `name` that holds the reduction r's values, its indices those
  // of r in the temporary's layout.
  Expr readShared(const std::string &name, const Expr &r) const {
    std::vector<std::string> canonical = freeIndexVars(r);
    std::vector<Expr> idx;
    for (int p : layout_.at(name))
      idx.push_back(p < 0 ? intImm(0) : var(canonical[static_cast<size_t>(p)], Type::Int, VarKind::Index));
    return access(name, std::move(idx), current_->loc);
  }

  // Canonical text: free indices renamed by canonical position, so equal reductions share a
  // temporary.
  std::string canonicalKey(const Expr &r, const std::set<std::string> &free) const {
    std::vector<IndexVar> indices = canonicalIndices(r, free);
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
    if (auto it = preferred_.find(key); it != preferred_.end()) {
      std::vector<IndexVar> canonical = canonicalIndices(r, free);
      indices.clear();
      for (int p : it->second) indices.push_back(canonical[static_cast<size_t>(p)]);
    }
    std::string name;
    // Reuse: the temporary's own index names and order may differ.
    if (auto it = cache_.find(key); it != cache_.end()) return readShared(it->second, r);
    // A fresh name: an earlier run of this pass may have left a temporary of the same pattern.
    do {
      name = fmt::format("{}_{}{}", current_->tensor, reduceOpName(r->reduceOp), ++counter_);
    } while (out_.tensor(name)); // out_ declares every tensor of the input too
    cache_[key] = name;
    layout_[name] = layoutOf(indices, r);
    return addTemporary(name, indices, r);
  }
};

} // namespace

Program hoistReductions(Program p) { return Hoister(std::move(p)).run(); }

} // namespace enc::ir
