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
// pairwise), and only kernels whose body is one parallel loop with the same constant extent.
// It runs after bucketGradients: gradient buckets are collectives, which never merge, so a
// gradient is complete no later than where bucketing placed its bucket.
#include "compiler/IndexRange.h"
#include "compiler/LocalNames.h"
#include "compiler/LoopIR.h"
#include "compiler/TileContractions.h"

#include <map>
#include <optional>
#include <set>

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

// Whether every access to `buffers` under `loop` (the parallel loop) is in slab `v` of that
// buffer, the slab sizes agreeing with those in `slab` (entries added for buffers first seen).
class SlabAccesses {
public:
  SlabAccesses(const std::set<std::string> &buffers, std::map<std::string, int64_t> &slab)
      : buffers_(buffers), slab_(slab) {}

  bool check(const Stmt &loop) {
    v_ = loop->name;
    std::map<std::string, Expr> extents, lets;
    for (const Stmt &s : loop->body) walkInto(s, extents, lets);
    return ok_;
  }

private:
  const std::set<std::string> &buffers_;
  std::map<std::string, int64_t> &slab_;
  std::string v_;
  bool ok_ = true;

  // The lets in scope substituted, so that an index reads as loop variables and constants.
  static Expr expand(const Expr &e, const std::map<std::string, Expr> &lets) {
    return substitute(e, [&](const std::string &name, VarKind) -> Expr {
      auto it = lets.find(name);
      return it == lets.end() ? nullptr : it->second;
    });
  }

  Expr atFirstSlab(const Expr &e) const {
    return substitute(e, [&](const std::string &name, VarKind) -> Expr { return name == v_ ? intImm(0) : nullptr; });
  }

  void access(const std::string &buffer, const Expr &index, const std::map<std::string, Expr> &extents,
              const std::map<std::string, Expr> &lets) {
    if (!ok_ || !buffers_.count(buffer)) return;
    Expr flat = expand(index, lets);
    std::optional<int64_t> stride = strideIn(flat, v_);
    if (!stride) {
      ok_ = false;
      return;
    }
    std::optional<IndexRange> within = indexRange(atFirstSlab(flat), extents);
    // g in [0, S) also rules out S <= 0 (a mirrored or constant index).
    auto it = slab_.emplace(buffer, *stride).first;
    ok_ = within && within->lo >= 0 && within->hi < *stride && it->second == *stride;
  }

  void expressions(const Expr &e, const std::map<std::string, Expr> &extents, const std::map<std::string, Expr> &lets) {
    visit(e, [&](const Expr &n) {
      if (n->kind == ExprKind::Load && !n->args.empty()) access(n->name, n->args[0], extents, lets);
      return ok_;
    });
  }

  // Scopes by value: a loop's variable and a let are visible in what follows them in their
  // body only, and a name declared again (a second `vectorized for l.i`) is that one from there.
  void walk(const Stmt &s, std::map<std::string, Expr> extents, std::map<std::string, Expr> lets) {
    if (!ok_) return;
    switch (s->kind) {
    case StmtKind::For: {
      expressions(s->value, extents, lets);
      extents[s->name] = expand(s->value, lets);
      lets.erase(s->name);
      std::map<std::string, Expr> innerLets = lets;
      for (const Stmt &b : s->body) walkInto(b, extents, innerLets);
      return;
    }
    case StmtKind::Block:
    case StmtKind::If: {
      if (s->value) expressions(s->value, extents, lets);
      for (const Stmt &b : s->body) walkInto(b, extents, lets);
      return;
    }
    default:
      if (s->value) expressions(s->value, extents, lets);
      if (s->index) expressions(s->index, extents, lets);
      if (s->kind == StmtKind::Store) access(s->name, s->index, extents, lets);
      for (const Stmt &b : s->body) walk(b, extents, lets);
    }
  }

  // A statement of a body: a let binds the statements after it in the same body.
  void walkInto(const Stmt &s, std::map<std::string, Expr> &extents, std::map<std::string, Expr> &lets) {
    if (s->kind == StmtKind::Let) {
      expressions(s->value, extents, lets);
      lets[s->name] = expand(s->value, lets);
      extents.erase(s->name);
      return;
    }
    if (s->kind == StmtKind::Assign) lets.erase(s->name); // an assigned local is no fixed value
    walk(s, extents, lets);
  }
};

// The names `s` declares (loop variables, lets, assigned locals).
void declaredNames(const Stmt &s, std::set<std::string> &names) {
  visit(s, [&](const Stmt &n) {
    if (n->kind == StmtKind::For || n->kind == StmtKind::Let || n->kind == StmtKind::Assign) names.insert(n->name);
    return true;
  });
}

std::optional<Kernel> merge(const Kernel &a, const Kernel &b) {
  Stmt la = parallelLoop(a), lb = parallelLoop(b);
  if (!la || !lb || !structurallyEqual(la->value, lb->value)) return std::nullopt;
  const std::set<std::string> aReads = kernelReads(a), aWrites = kernelWrites(a), bReads = kernelReads(b),
                              bWrites = kernelWrites(b);
  if (meets(bWrites, aReads) || meets(bWrites, aWrites)) return std::nullopt;
  std::set<std::string> passed; // written by a, read by b
  for (const std::string &t : aWrites)
    if (bReads.count(t)) passed.insert(t);
  std::map<std::string, int64_t> slab;
  if (!SlabAccesses(passed, slab).check(la) || !SlabAccesses(passed, slab).check(lb)) return std::nullopt;

  std::set<std::string> taken;
  declaredNames(la, taken);
  Renaming rename{{lb->name, la->name}};
  std::set<std::string> bNames, clashes;
  for (const Stmt &s : lb->body) declaredNames(s, bNames);
  for (const std::string &n : bNames)
    if (taken.count(n)) clashes.insert(n);
  // A new name is neither a's nor b's own (b's j2 renamed j1 beside b's j1 would merge two loops).
  taken.insert(bNames.begin(), bNames.end());
  for (const std::string &n : clashes) rename[n] = freshName(n, taken);
  std::vector<Stmt> body = la->body;
  for (const Stmt &s : lb->body) body.push_back(renameLocals(s, rename));
  Kernel k = a;
  k.body = forLoop(la->name, la->value, ForKind::Parallel, body);
  return mergedInterface(k, a, b);
}

} // namespace

LoopProgram fuseSlabKernels(const LoopProgram &p) {
  LoopProgram out = p;
  std::vector<Kernel> &ks = out.kernels;
  for (size_t i = 0; i + 1 < ks.size();) {
    if (std::optional<Kernel> merged = merge(ks[i], ks[i + 1])) {
      ks[i] = *merged;
      ks.erase(ks.begin() + static_cast<long>(i) + 1);
    } else {
      ++i;
    }
  }
  return out;
}

} // namespace enc::ir
