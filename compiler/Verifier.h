// Checks that an IR is well formed. A failure is a compiler bug: it throws InternalError, and
// the Pipeline names the pass after which it happened (ENC_VERIFY_EACH=1 runs it after every
// pass; the tests do).
#pragma once

#include "compiler/LoopIR.h"

namespace enc::ir {

// Invariants that hold from some point of a sequence on (the Pipeline tracks them).
struct VerifyState {
  // After hoistReductions: a definition's value holds at most one reduction.
  bool oneReductionPerDefinition = false;
  // After isolateAllreduces or dropAllreduces: allreduce(...) appears only as the whole value
  // of a collective definition.
  bool allreducesIsolated = false;
};

// Tensor IR: every tensor declared once; every definition of a declared tensor, with as many
// indices as the tensor has dimensions (and, where both are constants, the extents of its
// shape); every access of a declared tensor with one index per dimension; every index variable
// bound by the definition or a reduction around it; every size variable declared in
// Program::sizes; no loop-level node (Load); plus what `state` says holds.
void verifyProgram(const Program &p, const VerifyState &state = {});

// Loop IR: every variable bound (a loop, a local, a kernel parameter); loads of buffers the
// kernel lists or of its local arrays; stores only into its outputs or local arrays; no
// tensor-level node (Access, Reduce); loop kinds of the program's target only.
void verifyLoops(const LoopProgram &p);

} // namespace enc::ir
