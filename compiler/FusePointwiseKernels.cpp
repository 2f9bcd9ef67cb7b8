// Horizontal fusion of pointwise kernels that share one iteration space (CPU and GPU).
//
// lowerToLoops makes one kernel per stored tensor. Element-wise definitions over the same
// domain whose results are all needed (an optimizer step's new parameter and its moments)
// become several kernels, each loading what it reads and recomputing what it needs. Kernels
// whose loop nests are equal level by level (kinds and extents) become one kernel with an
// output each: the later one's loop variables are the earlier one's, its lets that compute
// what one of the earlier one's computes are that one, and its statements follow:
//
//   gpu_threads for _o in 0..N:           gpu_threads for _o in 0..N:
//     M2[_o] = b1 * M[_o] + ...              M2[_o] = b1 * M[_o] + ...
//   gpu_threads for _o in 0..N:     ==>      V2[_o] = b2 * V[_o] + ...
//     V2[_o] = b2 * V[_o] + ...              Q[_o] = P[_o] - lr * M2[_o] / ...
//   gpu_threads for _o in 0..N:
//     Q[_o] = P[_o] - lr * M2[_o] / ...
//
// Rules, so that every value read is the one the separate kernels read:
// - A kernel may read what the kernel it joins writes only at the position the same iteration
//   stores (lets expanded, the indices equal as expressions): the store comes first in the
//   iteration, so the load sees it. A read elsewhere (a shifted X[i - 1]) is another
//   iteration's, perhaps another thread's, value: no fusion.
// - A kernel moves up past the kernels between only when it reads nothing they write, and they
//   neither read nor write what it writes (KernelMerging.h finds them without walking the
//   kernels between).
// - A merged kernel writes at most kMaxMergedOutputs buffers.
// - A pointwise nest (PointwiseNest.h) is loops, each holding lets and one loop, the innermost
//   lets and plain stores (blocks transparent); scatters, collectives, reductions and tiles
//   are not.
#include "compiler/KernelMerging.h"
#include "compiler/LocalNames.h"
#include "compiler/LoopIR.h"
#include "compiler/PointwiseNest.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace enc::ir {
namespace {

bool sameLoops(const PointwiseNest &a, const PointwiseNest &b) {
  return std::equal(a.loops.begin(), a.loops.end(), b.loops.begin(), b.loops.end(),
                    [](const PointwiseNest::Loop &x, const PointwiseNest::Loop &y) {
                      return x.kind == y.kind && structurallyEqual(x.extent, y.extent);
                    });
}

// Whether every load, in `stmts`, of a buffer the statements `stores` write is at the position
// they store it.
bool readsOnlyStoredPositions(const std::vector<Stmt> &stmts, const std::vector<Stmt> &stores, const LetValues &values,
                              bool allowed) {
  std::map<std::string, Expr> storedAt;
  for (const Stmt &s : stores)
    if (s->kind == StmtKind::Store) storedAt[s->name] = values.expand(s->index);
  bool ok = true;
  for (const Stmt &s : stmts)
    visitExprs(s, [&](const Expr &e) {
      auto at = e->kind == ExprKind::Load ? storedAt.find(e->name) : storedAt.end();
      if (at != storedAt.end()) ok &= allowed && structurallyEqual(values.expand(e->args[0]), at->second);
      return ok;
    });
  return ok;
}

// `b` folded into `a`, or nullopt when either is no pointwise nest, their loops differ or b
// reads a's outputs elsewhere than at the positions a stores.
std::optional<Kernel> merge(const Kernel &a, const Kernel &b) {
  std::optional<PointwiseNest> na = pointwiseNest(a), nb = pointwiseNest(b);
  if (!na || !nb || !sameLoops(*na, *nb)) return std::nullopt;
  TakenNames taken;
  visit(a.body, [&](const Stmt &s) {
    if (s->kind == StmtKind::For || s->kind == StmtKind::Let) taken.insert(s->name);
    return true;
  });
  PointwiseNest m = *na;
  Renaming rename;
  for (size_t i = 0; i < nb->loops.size(); ++i) {
    rename[nb->loops[i].var] = na->loops[i].var;
    joinLets(nb->loops[i].lets, m.loops[i].lets, rename, taken);
  }
  std::vector<Stmt> moved; // b's innermost statements as they join
  for (const Stmt &s : nb->body) {
    if (s->kind == StmtKind::Let) {
      size_t before = m.body.size();
      joinLets({s}, m.body, rename, taken);
      moved.insert(moved.end(), m.body.begin() + static_cast<long>(before), m.body.end());
    } else {
      moved.push_back(renameLocals(s, rename));
      m.body.push_back(moved.back());
    }
  }
  // b's outer lets run before a's stores; its innermost statements after them.
  LetValues values(m);
  std::vector<Stmt> outerLets;
  for (const PointwiseNest::Loop &l : m.loops) outerLets.insert(outerLets.end(), l.lets.begin(), l.lets.end());
  if (!readsOnlyStoredPositions(outerLets, na->body, values, false) ||
      !readsOnlyStoredPositions(moved, na->body, values, true))
    return std::nullopt;
  Kernel k = a;
  k.body = m.write();
  return mergedInterface(k, a, b);
}

// Pointwise kernels merged pairwise: each joins the kernel merged so far (pointwise groups are
// few kernels; reductions' are many, see FuseSiblingReductions.cpp).
class PointwiseMerge : public KernelMerge {
public:
  explicit PointwiseMerge(Kernel first) : merged_(std::move(first)) {}
  bool join(const Kernel &b) override {
    if (merged_.outputs + b.outputs > kMaxMergedOutputs) return false;
    std::optional<Kernel> k = merge(merged_, b);
    if (k) merged_ = std::move(*k);
    return k.has_value();
  }
  bool full() const override { return merged_.outputs >= kMaxMergedOutputs; }
  Kernel result() const override { return merged_; }

private:
  Kernel merged_;
};

// The loops as text: nests whose texts differ have different loops (sameLoops decides for
// those whose texts are equal).
std::optional<std::string> loopsText(const Kernel &k) {
  std::optional<PointwiseNest> n = pointwiseNest(k);
  if (!n) return std::nullopt;
  std::string text;
  for (const PointwiseNest::Loop &l : n->loops) text += fmt::format("{} {}; ", forKindName(l.kind), print(l.extent));
  return text;
}

} // namespace

LoopProgram fusePointwiseKernels(LoopProgram out) {
  out.kernels = mergeIntoEarlier(std::move(out.kernels),
                                 {.kindOf = loopsText,
                                  // The kernels between neither write what it reads (the earlier
                                  // kernel may: merge checks where) nor touch what it writes.
                                  .earliest =
                                      [](const KernelAccesses &a, size_t j) {
                                        return std::max(a.lastWriteOfReads(j), a.lastAccessOfWrites(j) + 1);
                                      },
                                  .start = [](const Kernel &a) { return std::make_unique<PointwiseMerge>(a); }});
  return out;
}

} // namespace enc::ir
