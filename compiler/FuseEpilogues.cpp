// Vertical fusion of small element-wise kernels into the warp reduction that feeds them (GPU).
//
// A per-channel statistic is a warp reduction (one warp per output, lane 0 stores it), and
// what is computed from it per channel is a pointwise kernel over the same outputs: batch
// norm's mu and var from its sums, the running statistics from mu and var, the backward
// pass's adjoints of the sums. Each of those is a launch of its own that moves a few hundred
// values. When a pointwise kernel reads the reduction's outputs only at its own position,
// lane 0 of the reduction's warp can compute it right after storing them:
//
//   gpu_warps for _o in 0..N:                    gpu_threads for _o in 0..N:
//     ... _acc = warp_sum(_acc)                    let c = _o
//     if lane == 0:                                mu[_o] = rm[c] + s[c] / n
//       s[_o] = _acc
//       let c_e1 = _o;  mu[_o] = rm[c_e1] + s[c_e1] / n      <- the pointwise kernel, moved in
//
// The reduction is any warp reduction nest (ReductionNest.h; sibling reductions fused into one
// included), its epilogue extended; the pointwise kernel is recognized by what its statements
// are, not their order. It moves up past the kernels between them only when it reads nothing
// they write and they neither read nor write its output.
#include "compiler/PointwiseNest.h"
#include "compiler/ReductionNest.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace enc::ir {
namespace {

// A pointwise kernel of one thread per output (a PointwiseNest of one gpu_threads loop) whose
// one store is plain and at the thread's own position; lets are pure, so their place around
// the store does not matter.
struct Pointwise {
  PointwiseNest nest;
  Stmt store;

  const std::string &var() const { return nest.loops[0].var; }
  const Expr &extent() const { return nest.loops[0].extent; }
  std::vector<Stmt> lets() const {
    std::vector<Stmt> out = nest.loops[0].lets;
    for (const Stmt &s : nest.body)
      if (s->kind == StmtKind::Let) out.push_back(s);
    return out;
  }
};

std::optional<Pointwise> pointwise(const Kernel &k) {
  if (k.launch != ForKind::GpuThreads || k.outputs != 1) return std::nullopt;
  std::optional<PointwiseNest> n = pointwiseNest(k);
  if (!n || n->loops.size() != 1 || n->loops[0].kind != ForKind::GpuThreads) return std::nullopt;
  Pointwise p{*n, nullptr};
  for (const Stmt &s : n->body)
    if (s->kind != StmtKind::Let) {
      if (p.store) return std::nullopt; // one store only
      p.store = s;
    }
  if (p.store->index->kind != ExprKind::Var || p.store->index->name != p.var()) return std::nullopt;
  return p;
}

// Whether every load in `b` of a buffer in `written` is at b's own position once b's lets are
// substituted.
bool readsOnlyOwnPosition(const Pointwise &b, const std::set<std::string> &written) {
  const LetValues lets(b.nest);
  bool ok = true;
  visit(b.store->value, [&](const Expr &n) {
    if (n->kind != ExprKind::Load || !written.count(n->name)) return true;
    Expr at = lets.expand(n->args[0]);
    ok &= at->kind == ExprKind::Var && at->name == b.var();
    return true;
  });
  return ok;
}

// `b`'s statements in the epilogue of `a` (nest `na`): b's position is a's output index; b's
// lets get names of their own (two epilogues' `c` must not meet in one C++ scope).
Kernel moveInto(const Kernel &a, ReductionNest na, const Kernel &b, const Pointwise &pb, int &fresh) {
  Renaming rename{{pb.var(), na.output.var}};
  for (const Stmt &l : pb.lets()) {
    rename[l->name] = fmt::format("{}_e{}", l->name, ++fresh);
    na.epilogue.push_back(renameLocals(l, rename));
  }
  na.epilogue.push_back(renameLocals(pb.store, rename));
  Kernel k = a;
  k.body = reductionNestBody(na);
  return mergedInterface(k, a, b);
}

} // namespace

LoopProgram fuseReductionEpilogues(const LoopProgram &p) {
  if (p.target != Target::GPU) return p;
  LoopProgram out = p;
  std::vector<Kernel> &ks = out.kernels;
  int fresh = 0;
  for (size_t j = 0; j < ks.size(); ++j) {
    const std::optional<Pointwise> pb = pointwise(ks[j]);
    if (!pb) continue;
    const std::set<std::string> bReads = kernelReads(ks[j]);
    const std::string &bOut = ks[j].buffers[0];
    // The nearest earlier warp reduction over the same outputs that it can move into.
    for (size_t i = j; i-- > 0;) {
      const Kernel &a = ks[i];
      const std::set<std::string> aWrites = kernelWrites(a);
      const bool readsA = meets(bReads, aWrites);
      const bool touchesOut = aWrites.count(bOut) || kernelReads(a).count(bOut);
      const std::optional<ReductionNest> na = readsA && !touchesOut ? reductionNest(a) : std::nullopt;
      if (na && na->warp() && structurallyEqual(na->output.extent, pb->extent()) && readsOnlyOwnPosition(*pb, aWrites)) {
        ks[i] = moveInto(a, *na, ks[j], *pb, fresh);
        ks.erase(ks.begin() + static_cast<long>(j));
        --j;
        break;
      }
      // Moving past a: b must not read what a writes, and a must not touch b's output.
      if (readsA || touchesOut) break;
    }
  }
  return out;
}

} // namespace enc::ir
