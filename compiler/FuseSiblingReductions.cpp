// Horizontal fusion of reductions (GPU warp reductions, and the CPU's plain reduction loops).
//
// The GPU schedule lowers each reduction to its own kernel: one warp per output, its lanes
// striding through the reduction, then a warp-wide combine and a store from lane 0. Sibling
// reductions over the same domains, such as the batch-norm gradient's per-channel sums of dY
// and dY * x, would each read dY and X once more. Here such kernels become one kernel with
// an accumulator per reduction, so their inputs are read once:
//
//   gpu_warps for _o in 0..N:            (decoded output indices, shared)
//     let _acc = 0;  let _acc1 = 0
//     gpu_lanes for _r in 0..R:          (decoded reduction indices, shared)
//       _acc = _acc + ...;  _acc1 = _acc1 + ...
//     _acc = warp_sum(_acc);  _acc1 = warp_sum(_acc1)
//     if lane == 0:  A[_o] = f(_acc);  B[_o] = g(_acc1)
//
// On the CPU the same holds for plain reduction loop nests (parallel over the outputs, the
// reduction's loops inside). Both are reduction nests (ReductionNest.h), recognized by what
// their statements declare and read, not by their order; two merge when their loops have the
// same extents level by level. The later one's lets that compute what one of the earlier
// one's computes (the decoded indices) become that one; others join under fresh names.
//
// A later kernel joins an earlier one only when it reads nothing that the earlier one or any
// kernel between them writes, so moving it up keeps every value it sees.
#include "compiler/ReductionNest.h"

#include <algorithm>
#include <optional>
#include <set>

namespace enc::ir {
namespace {

// The same domains: output loops and reduction loops of equal extents and kinds, level by level.
// LowerToLoops' hasSiblingSum states this rule on definitions (equal index and reduction
// extents) to keep such one-index sums plain loops rather than dot tiles, so that they meet
// here: the two must agree.
bool sameDomains(const ReductionNest &a, const ReductionNest &b) {
  auto same = [](const ReductionNest::Loop &x, const ReductionNest::Loop &y) {
    return x.kind == y.kind && structurallyEqual(x.extent, y.extent);
  };
  return same(a.output, b.output) &&
         std::equal(a.reduction.begin(), a.reduction.end(), b.reduction.begin(), b.reduction.end(), same);
}

// `b` folded into `a`, or nullopt when either is no reduction nest or their domains differ:
// b's loops become a's, its lets join a's, its accumulators (_acc -> _acc1, ...) and epilogue
// follow a's.
std::optional<Kernel> merge(const Kernel &a, const Kernel &b) {
  std::optional<ReductionNest> na = reductionNest(a), nb = reductionNest(b);
  if (!na || !nb || !sameDomains(*na, *nb)) return std::nullopt;
  ReductionNest m = *na;
  std::set<std::string> taken = na->declaredNames();
  Renaming rename{{nb->output.var, na->output.var}};
  joinLets(nb->output.lets, m.output.lets, rename, taken);
  for (size_t i = 0; i < nb->reduction.size(); ++i) {
    rename[nb->reduction[i].var] = na->reduction[i].var;
    joinLets(nb->reduction[i].lets, m.reduction[i].lets, rename, taken);
  }
  for (const ReductionNest::Accumulator &acc : nb->accumulators)
    rename[acc.init->name] = freshName(acc.init->name, taken);
  for (const Stmt &s : nb->epilogue)
    if (s->kind == StmtKind::Let) rename[s->name] = freshName(s->name, taken);
  ReductionNest rb = nb->renamed(rename);
  m.accumulators.insert(m.accumulators.end(), rb.accumulators.begin(), rb.accumulators.end());
  m.epilogue.insert(m.epilogue.end(), rb.epilogue.begin(), rb.epilogue.end());
  Kernel k = a;
  k.body = reductionNestBody(m);
  return mergedInterface(k, a, b);
}

} // namespace

LoopProgram fuseSiblingReductions(const LoopProgram &p) {
  LoopProgram out = p;
  std::vector<Kernel> &ks = out.kernels;
  for (size_t i = 0; i < ks.size(); ++i) {
    if (!reductionNest(ks[i])) continue;
    std::set<std::string> written = kernelWrites(ks[i]);
    for (size_t j = i + 1; j < ks.size();) {
      std::set<std::string> r = kernelReads(ks[j]);
      bool independent = !meets(r, written);
      std::optional<Kernel> merged = independent ? merge(ks[i], ks[j]) : std::nullopt;
      if (merged) {
        ks[i] = *merged;
        written = kernelWrites(ks[i]);
        // Kernels between i and j still count as written before anything later.
        for (size_t m = i + 1; m < j; ++m)
          for (const std::string &w : kernelWrites(ks[m])) written.insert(w);
        ks.erase(ks.begin() + static_cast<long>(j));
        continue;
      }
      for (const std::string &w : kernelWrites(ks[j])) written.insert(w);
      ++j;
    }
  }
  return out;
}

} // namespace enc::ir
