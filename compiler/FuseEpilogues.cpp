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
// The pointwise kernel moves up past the kernels between them only when it reads nothing
// they write and they neither read nor write its output.
#include "compiler/LoopIR.h"

#include <fmt/format.h>

#include <map>
#include <optional>
#include <set>

namespace enc::ir {
namespace {

// A warp reduction whose last statement is lane 0's block (stores, and epilogues moved in).
bool isWarpReduction(const Kernel &k) {
  if (k.launch != ForKind::GpuWarps || k.scatters || k.collective) return false;
  const Stmt &top = k.body;
  return top->kind == StmtKind::For && top->forKind == ForKind::GpuWarps && !top->body.empty() &&
         top->body.back()->kind == StmtKind::IfLaneZero;
}

// A pointwise kernel: one thread per output, integer lets, then one plain store at the
// thread's own position.
bool isPointwise(const Kernel &k) {
  if (k.launch != ForKind::GpuThreads || k.scatters || k.collective || k.outputs != 1) return false;
  const Stmt &top = k.body;
  if (top->kind != StmtKind::For || top->forKind != ForKind::GpuThreads || top->body.empty()) return false;
  for (size_t i = 0; i + 1 < top->body.size(); ++i)
    if (top->body[i]->kind != StmtKind::Let || top->body[i]->type != Type::Int) return false;
  const Stmt &st = top->body.back();
  return st->kind == StmtKind::Store && !st->accumulate && st->index->kind == ExprKind::Var && st->index->name == top->name;
}

// Whether every load in `b` (a pointwise kernel) of a buffer in `written` is at b's own
// position once b's lets are substituted.
bool readsOnlyOwnPosition(const Kernel &b, const std::set<std::string> &written) {
  const Stmt &top = b.body;
  std::map<std::string, Expr> lets;
  auto expand = [&](const Expr &e) {
    return substitute(e, [&](const std::string &n, VarKind) -> Expr {
      auto it = lets.find(n);
      return it == lets.end() ? nullptr : it->second;
    });
  };
  for (size_t i = 0; i + 1 < top->body.size(); ++i) lets[top->body[i]->name] = expand(top->body[i]->value);
  bool ok = true;
  visit(top->body.back()->value, [&](const Expr &n) {
    if (n->kind != ExprKind::Load || !written.count(n->name)) return true;
    Expr at = expand(n->args[0]);
    ok &= at->kind == ExprKind::Var && at->name == top->name;
    return true;
  });
  return ok;
}

Expr renameVars(const Expr &e, const std::map<std::string, std::string> &rename) {
  return substitute(e, [&](const std::string &n, VarKind k) -> Expr {
    auto it = rename.find(n);
    return it == rename.end() ? nullptr : var(it->second, Type::Int, k);
  });
}

// `b`'s statements in a's lane-0 block: b's position is a's output index; b's lets get names
// of their own (two epilogues' `c` must not meet in one C++ scope).
Kernel moveInto(const Kernel &a, const Kernel &b, int &fresh) {
  const Stmt &aTop = a.body, &bTop = b.body;
  std::map<std::string, std::string> rename{{bTop->name, aTop->name}};
  std::vector<Stmt> lane0 = aTop->body.back()->body;
  for (size_t i = 0; i + 1 < bTop->body.size(); ++i) {
    const Stmt &l = bTop->body[i];
    std::string name = fmt::format("{}_e{}", l->name, ++fresh);
    Expr value = renameVars(l->value, rename);
    rename[l->name] = name;
    lane0.push_back(let(name, Type::Int, value));
  }
  const Stmt &st = bTop->body.back();
  lane0.push_back(store(st->name, renameVars(st->index, rename), renameVars(st->value, rename), st->loc));
  std::vector<Stmt> body = aTop->body;
  body.back() = ifLaneZero(lane0);
  Kernel k = a;
  k.body = forLoop(aTop->name, aTop->value, ForKind::GpuWarps, body);
  return mergedInterface(k, a, b);
}

} // namespace

LoopProgram fuseReductionEpilogues(const LoopProgram &p) {
  if (p.target != Target::GPU) return p;
  LoopProgram out = p;
  std::vector<Kernel> &ks = out.kernels;
  int fresh = 0;
  for (size_t j = 0; j < ks.size(); ++j) {
    if (!isPointwise(ks[j])) continue;
    const std::set<std::string> bReads = kernelReads(ks[j]);
    const std::string &bOut = ks[j].buffers[0];
    // The nearest earlier warp reduction over the same outputs that it can move into.
    for (size_t i = j; i-- > 0;) {
      const Kernel &a = ks[i];
      const std::set<std::string> aWrites = kernelWrites(a);
      const bool readsA = std::any_of(bReads.begin(), bReads.end(), [&](const std::string &r) { return aWrites.count(r); });
      const bool touchesOut = aWrites.count(bOut) || kernelReads(a).count(bOut);
      if (isWarpReduction(a) && readsA && !touchesOut && structurallyEqual(a.body->value, ks[j].body->value) &&
          readsOnlyOwnPosition(ks[j], aWrites)) {
        ks[i] = moveInto(a, ks[j], fresh);
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
