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
// A merged kernel writes at most kMaxMergedOutputs buffers (a network's bias gradients are a
// thousand sums over the batch: they make kernels of 16).
//
// A later kernel joins an earlier one only when it reads nothing that the earlier one or any
// kernel between them writes, so moving it up keeps every value it sees (KernelMerging.h finds
// them without walking the kernels between).
#include "compiler/KernelMerging.h"
#include "compiler/ReductionNest.h"

#include <fmt/format.h>

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

// Reduction nests merged into the first one, one after another: each later one's loops become
// the first one's, its lets join those there, its accumulators (_acc -> _acc1, ...) and epilogue
// follow. Kept as a nest until the end, with the names it declares, so that the n-th kernel to
// join (a network's bias gradients, a thousand sums over the batch) costs what it holds.
class SiblingMerge : public KernelMerge {
public:
  SiblingMerge(const Kernel &first, ReductionNest nest) : first_(first), m_(std::move(nest)), interface_(first) {
    for (const std::string &n : m_.declaredNames()) taken_.insert(n);
  }

  // Joins b when it is a reduction nest over the same domains.
  bool join(const Kernel &b) override {
    if (interface_.outputs() + b.outputs > kMaxMergedOutputs) return false;
    std::optional<ReductionNest> nb = reductionNest(b);
    if (!nb || !sameDomains(m_, *nb)) return false;
    Renaming rename{{nb->output.var, m_.output.var}};
    joinLets(nb->output.lets, m_.output.lets, rename, taken_);
    for (size_t i = 0; i < nb->reduction.size(); ++i) {
      rename[nb->reduction[i].var] = m_.reduction[i].var;
      joinLets(nb->reduction[i].lets, m_.reduction[i].lets, rename, taken_);
    }
    for (const ReductionNest::Accumulator &acc : nb->accumulators) rename[acc.init->name] = taken_.fresh(acc.init->name);
    for (const Stmt &s : nb->epilogue)
      if (s->kind == StmtKind::Let) rename[s->name] = taken_.fresh(s->name);
    ReductionNest rb = nb->renamed(rename);
    m_.accumulators.insert(m_.accumulators.end(), rb.accumulators.begin(), rb.accumulators.end());
    m_.epilogue.insert(m_.epilogue.end(), rb.epilogue.begin(), rb.epilogue.end());
    interface_.add(b);
    joined_ = true;
    return true;
  }

  bool full() const override { return interface_.outputs() >= kMaxMergedOutputs; }

  Kernel result() const override {
    if (!joined_) return first_;
    Kernel k = first_;
    k.body = reductionNestBody(m_);
    interface_.applyTo(k);
    return k;
  }

private:
  Kernel first_;
  ReductionNest m_;
  TakenNames taken_; // every name m_ declares
  MergedInterface interface_;
  bool joined_ = false;
};

// The domains as text: kernels whose texts differ have different domains (sameDomains decides
// for those whose texts are equal).
std::optional<std::string> domainText(const Kernel &k) {
  std::optional<ReductionNest> n = reductionNest(k);
  if (!n) return std::nullopt;
  std::string text = fmt::format("{} {}", forKindName(n->output.kind), print(n->output.extent));
  for (const ReductionNest::Loop &l : n->reduction) text += fmt::format("; {} {}", forKindName(l.kind), print(l.extent));
  return text;
}

} // namespace

LoopProgram fuseSiblingReductions(LoopProgram out) {
  out.kernels = mergeIntoEarlier(std::move(out.kernels),
                                 {.kindOf = domainText,
                                  // Nothing from the earlier kernel on writes what it reads.
                                  .earliest = [](const KernelAccesses &a, size_t j) { return a.lastWriteOfReads(j) + 1; },
                                  .start = [](const Kernel &a) -> std::unique_ptr<KernelMerge> {
                                    return std::make_unique<SiblingMerge>(a, *reductionNest(a));
                                  }});
  return out;
}

} // namespace enc::ir
