// Vertical fusion of CPU kernels that run parallel over the same leading index (CPU only).
//
// A softmax is three kernels over one input, each parallel over the batch: the max, the sum of
// exponentials, the quotient. Run one after the other, each streams the whole input from
// memory; where every iteration of the parallel loop touches only its own slab of what the
// kernels pass between them, the kernels run as one, the bodies in order inside one parallel
// loop, and the later ones find that slab in cache (Encoding's forward pass: the distances,
// the softmax and both sums over the assignments, one slab of 128 KB per batch element):
//
//   parallel for b in 0..8:          parallel for b in 0..8:
//     M[b * N + ..] = max(..)          M[b * N + ..] = max(..)
//   parallel for b in 0..8:    ==>     S[b * N + ..] = sum(exp(X[..] - M[b * N + ..]))
//     S[b * N + ..] = sum(..)
//
// Rule, so that every value read is the one the separate kernels read: for each buffer one
// kernel writes and the other touches, every access in either is at v * S + g, with v the
// parallel variable, S one constant per buffer and g in [0, S) over the loops around the access
// (index range analysis on constant extents): iteration v then touches only slab v, which no
// other iteration writes, so it reads what the earlier kernel's same iteration stored. The
// earlier kernel touches nothing the later one writes. Only neighbours merge (a chain merges
// pairwise), only kernels whose body is one parallel loop with the same constant extent, and
// only up to kMaxMergedOutputs outputs (a network's chain of layers runs as several kernels).
// It runs after bucketGradients: gradient buckets are collectives, which never merge, so a
// gradient is complete no later than where bucketing placed its bucket.
#include "compiler/IndexRange.h"
#include "compiler/LocalNames.h"
#include "compiler/LoopIR.h"
#include "compiler/TileContractions.h"

#include <map>
#include <optional>
#include <set>
#include <utility>

namespace enc::ir {
namespace {

// The kernel's one parallel loop, when its body is nothing else.
Stmt parallelLoop(const Kernel &k) {
  if (k.scatters || k.collective || k.bucket || !k.body || k.launch != ForKind::Parallel) return nullptr;
  std::vector<Stmt> top = withoutBlocks({k.body});
  if (top.size() != 1 || top[0]->kind != StmtKind::For || top[0]->forKind != ForKind::Parallel) return nullptr;
  int64_t n = 0;
  return isConst(top[0]->value, &n) && n > 0 ? top[0] : nullptr;
}

// For each buffer of `buffers` that the parallel loop `loop` accesses: its slab size S when
// every access is at v * S + g with g in [0, S) (v the loop's variable, g by index ranges over
// the loops around the access), nullopt when some access is not.
using SlabSizes = std::map<std::string, std::optional<int64_t>>;

// Names bound to values in nested scopes: what a scope binds or unbinds is undone when it ends
// (rather than each scope working on a copy of the map: a kernel that merged a thousand sums
// has a thousand lets at its top level).
class Scopes {
public:
  const std::map<std::string, Expr> &values() const { return values_; }
  size_t mark() const { return undo_.size(); }
  void bind(const std::string &name, Expr value) {
    remember(name);
    values_[name] = std::move(value);
  }
  void unbind(const std::string &name) {
    if (!values_.count(name)) return;
    remember(name);
    values_.erase(name);
  }
  // Undoes everything since `mark`.
  void restore(size_t mark) {
    for (; undo_.size() > mark; undo_.pop_back()) {
      auto &[name, old] = undo_.back();
      if (old) values_[name] = *old;
      else values_.erase(name);
    }
  }

private:
  std::map<std::string, Expr> values_;
  std::vector<std::pair<std::string, std::optional<Expr>>> undo_; // name, its value before

  void remember(const std::string &name) {
    auto it = values_.find(name);
    undo_.push_back({name, it == values_.end() ? std::nullopt : std::optional<Expr>(it->second)});
  }
};

class SlabAccesses {
public:
  explicit SlabAccesses(const std::set<std::string> &buffers) : buffers_(buffers) {}

  SlabSizes of(const Stmt &loop) {
    v_ = loop->name;
    for (const Stmt &s : loop->body) walkInto(s);
    return sizes_;
  }

private:
  const std::set<std::string> &buffers_;
  std::string v_;
  SlabSizes sizes_;
  Scopes extents_, lets_; // loop extents, let values

  // The lets in scope substituted, so that an index reads as loop variables and constants.
  Expr expand(const Expr &e) const {
    return substitute(e, [&](const std::string &name, VarKind) -> Expr {
      auto it = lets_.values().find(name);
      return it == lets_.values().end() ? nullptr : it->second;
    });
  }

  Expr atFirstSlab(const Expr &e) const {
    return substitute(e, [&](const std::string &name, VarKind) -> Expr { return name == v_ ? intImm(0) : nullptr; });
  }

  // The slab size of this access, or nullopt.
  std::optional<int64_t> slabOf(const Expr &index) const {
    Expr flat = expand(index);
    std::optional<int64_t> stride = strideIn(flat, v_);
    if (!stride) return std::nullopt;
    std::optional<IndexRange> within = indexRange(atFirstSlab(flat), extents_.values());
    // g in [0, S) also rules out S <= 0 (a mirrored or constant index).
    if (!within || within->lo < 0 || within->hi >= *stride) return std::nullopt;
    return stride;
  }

  void access(const std::string &buffer, const Expr &index) {
    if (!buffers_.count(buffer)) return;
    auto [it, first] = sizes_.try_emplace(buffer);
    if (!first && !it->second) return; // already no slab
    std::optional<int64_t> size = slabOf(index);
    it->second = first || it->second == size ? size : std::nullopt;
  }

  void expressions(const Expr &e) {
    visit(e, [&](const Expr &n) {
      if (n->kind == ExprKind::Load && !n->args.empty()) access(n->name, n->args[0]);
      return true;
    });
  }

  // A statement's scope: a loop's variable and a let are visible in what follows them in their
  // body only, and a name declared again (a second `vectorized for l.i`) is that one from there.
  void walk(const Stmt &s) {
    const size_t extents = extents_.mark(), lets = lets_.mark();
    switch (s->kind) {
    case StmtKind::For:
      expressions(s->value);
      extents_.bind(s->name, expand(s->value));
      lets_.unbind(s->name);
      for (const Stmt &b : s->body) walkInto(b);
      break;
    case StmtKind::Block:
    case StmtKind::If:
      if (s->value) expressions(s->value);
      for (const Stmt &b : s->body) walkInto(b);
      break;
    default:
      if (s->value) expressions(s->value);
      if (s->index) expressions(s->index);
      if (s->kind == StmtKind::Store) access(s->name, s->index);
      for (const Stmt &b : s->body) walk(b);
    }
    extents_.restore(extents);
    lets_.restore(lets);
  }

  // A statement of a body: a let binds the statements after it in the same body.
  void walkInto(const Stmt &s) {
    if (s->kind == StmtKind::Let) {
      expressions(s->value);
      lets_.bind(s->name, expand(s->value));
      extents_.unbind(s->name);
      return;
    }
    if (s->kind == StmtKind::Assign) lets_.unbind(s->name); // an assigned local is no fixed value
    walk(s);
  }
};

// The names `s` declares (loop variables, lets, assigned locals).
void declaredNames(const Stmt &s, std::set<std::string> &names) {
  visit(s, [&](const Stmt &n) {
    if (n->kind == StmtKind::For || n->kind == StmtKind::Let || n->kind == StmtKind::Assign) names.insert(n->name);
    return true;
  });
}

// Neighbour kernels merged one after another into the first one's parallel loop. What the
// merged kernel so far reads, writes, declares and how it accesses its buffers is kept as
// kernels join, so that the n-th kernel to join costs what it holds, not what the n - 1
// before it hold (a network's chain of layers may merge by the thousand).
class SlabGroup {
public:
  explicit SlabGroup(const Kernel &first) : first_(first), loop_(parallelLoop(first)), interface_(first) {
    if (!loop_) return;
    body_ = loop_->body;
    std::set<std::string> declared;
    declaredNames(loop_, declared);
    for (const std::string &n : declared) taken_.insert(n);
    slabs_ = SlabAccesses(interface_.writes()).of(loop_);
  }

  // Joins `b` when it is one parallel loop of the same extent and every access to what the
  // kernels so far write and b reads is in slab v, of one size per buffer, and b writes
  // nothing they read or write.
  bool join(const Kernel &b) {
    Stmt lb = parallelLoop(b);
    if (!loop_ || !lb || !structurallyEqual(loop_->value, lb->value)) return false;
    if (interface_.outputs() + b.outputs > kMaxMergedOutputs) return false;
    const std::set<std::string> bReads = kernelReads(b), bWrites = kernelWrites(b);
    if (meets(bWrites, interface_.reads()) || meets(bWrites, interface_.writes())) return false;
    std::set<std::string> passed; // written before, read by b
    for (const std::string &t : bReads)
      if (interface_.writes().count(t)) passed.insert(t);
    // b's accesses to what it passes on or is passed: what later kernels may check.
    std::set<std::string> tracked = passed;
    tracked.insert(bWrites.begin(), bWrites.end());
    SlabSizes bSlabs = SlabAccesses(tracked).of(lb);
    for (const std::string &t : passed) {
      auto mine = slabs_.find(t), theirs = bSlabs.find(t);
      if ((mine != slabs_.end() && !mine->second) || (theirs != bSlabs.end() && !theirs->second)) return false;
      if (mine != slabs_.end() && theirs != bSlabs.end() && mine->second != theirs->second) return false;
    }

    Renaming rename{{lb->name, loop_->name}};
    std::set<std::string> bNames;
    for (const Stmt &s : lb->body) declaredNames(s, bNames);
    std::vector<std::string> clashes;
    for (const std::string &n : bNames)
      if (taken_.contains(n)) clashes.push_back(n);
    // A new name is neither a's nor b's own (b's j2 renamed j1 beside b's j1 would merge two loops).
    for (const std::string &n : bNames) taken_.insert(n);
    for (const std::string &n : clashes) rename[n] = taken_.fresh(n);
    for (const Stmt &s : lb->body) body_.push_back(renameLocals(s, rename));

    for (auto &[t, size] : bSlabs) {
      auto [it, first] = slabs_.try_emplace(t, size);
      if (!first && it->second != size) it->second = std::nullopt;
    }
    interface_.add(b);
    ++joined_;
    return true;
  }

  Kernel kernel() const {
    if (!joined_) return first_;
    Kernel k = first_;
    k.body = forLoop(loop_->name, loop_->value, ForKind::Parallel, body_);
    interface_.applyTo(k);
    return k;
  }

private:
  Kernel first_;
  Stmt loop_; // the first kernel's parallel loop; nullptr: nothing joins
  std::vector<Stmt> body_;
  TakenNames taken_; // every name the merged body declares
  SlabSizes slabs_;  // the merged body's accesses to what it writes and passes
  MergedInterface interface_;
  int joined_ = 0;
};

} // namespace

LoopProgram fuseSlabKernels(LoopProgram out) {
  const std::vector<Kernel> kernels = std::exchange(out.kernels, {});
  std::optional<SlabGroup> group;
  for (const Kernel &k : kernels) {
    if (group && group->join(k)) continue;
    if (group) out.kernels.push_back(group->kernel());
    group.emplace(k);
  }
  if (group) out.kernels.push_back(group->kernel());
  return out;
}

} // namespace enc::ir
