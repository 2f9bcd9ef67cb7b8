// A reduction kernel described by its structure rather than by its statement order, so that
// the fusion passes recognize what lowerToLoops emits (and what they made of it) however its
// independent statements are arranged:
//
//   <output loop> o in 0..N:                 one iteration per output (gpu_warps or parallel)
//     <lets of o>                            (output.lets: decoded indices, any pure value)
//     let acc_i = init_i                     (accumulators: the lets the reduction assigns)
//     <reduction loop> r in 0..R:            (reduction: gpu_lanes, or serial loops nested)
//       <lets of r>
//       acc_i = update_i                     (each reads its own accumulator, no other)
//     acc_i = warp_op(acc_i)                 (GPU: the lanes' partial values combined)
//     <epilogue>                             lets and stores (GPU: under `if lane == 0`)
//
// reductionNest recognizes it from a kernel by which statements declare, assign and read which
// names; reductionNestBody writes it back in the order above.
#pragma once

#include "compiler/LoopIR.h"
#include "compiler/LocalNames.h"

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace enc::ir {

struct ReductionNest {
  struct Loop {
    std::string var;
    Expr extent;
    ForKind kind = ForKind::Serial;
    std::vector<Stmt> lets; // values of the loop variables around them, in order; no accumulator read
  };
  struct Accumulator {
    Stmt init;    // Let, at the output level
    Stmt update;  // Assign, in the innermost reduction loop
    Stmt combine; // WarpReduce after the reduction (GPU); null on the CPU
  };
  Loop output;                           // GpuWarps (a warp per output) or Parallel (CPU)
  std::vector<Loop> reduction;           // outermost first: one GpuLanes loop, or Serial loops
  std::vector<Accumulator> accumulators; // at least one
  std::vector<Stmt> epilogue;            // lets and plain stores (at least one), in order

  bool warp() const { return output.kind == ForKind::GpuWarps; }
  // Every name the nest declares: loop variables, lets, accumulators.
  std::set<std::string> declaredNames() const;
  // The nest with its declared names, and what reads them, renamed.
  ReductionNest renamed(const Renaming &rename) const;
};

// The nest `k` is, or nullopt. Rules (anything else is not a nest):
// - k is no scatter or collective kernel; its body is one loop over the outputs, GpuWarps or
//   (CPU) Parallel, as k is launched. Blocks are transparent everywhere.
// - The output loop's first loop is the reduction. A reduction loop's body is lets and either
//   one more reduction loop or (the innermost) assignments. On the GPU the outermost reduction
//   loop is GpuLanes; every other one is Serial.
// - An accumulator is a let of the output loop, before the reduction, that the innermost loop
//   assigns exactly once, reading no other accumulator. Every assignment is to one.
// - No let outside the epilogue and no accumulator's init reads an accumulator, so their order
//   among each other does not matter. The other lets before the reduction are output lets.
// - After the reduction: on the GPU one WarpReduce per accumulator, lets that are output lets
//   too, and last an `if lane == 0` whose body is the epilogue; on the CPU the epilogue itself.
//   The epilogue is lets and non-accumulating stores, at least one store.
// - Every name is declared once.
std::optional<ReductionNest> reductionNest(const Kernel &k);

// The loop nest of `n` in the canonical order of the picture above (what lowerToLoops emits).
Stmt reductionNestBody(const ReductionNest &n);

} // namespace enc::ir
