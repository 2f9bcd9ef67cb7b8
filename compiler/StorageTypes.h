// 16-bit storage (f16 / bf16) for an f32 layer: which buffers are stored narrow, and keeping
// accumulation out of them. Arithmetic, locals and reductions stay in f32; only loads and
// stores of the narrow buffers convert (see ElementTypes in LoopIR.h).
#pragma once

#include "compiler/Autodiff.h"
#include "compiler/LoopIR.h"

#include <optional>
#include <string_view>

namespace enc::ir {

std::optional<ElemType> parseElemType(std::string_view name); // "f16", "bf16", "f32", "f64"
bool isNarrow(ElemType t);                                      // f16 or bf16

// The tensors a layer exchanges with its user are stored in `storage`: the forward pass's
// inputs and outputs. Parameters, buffers (running statistics), their updates and every
// intermediate stay in f32. With `storage` f32 or f64 nothing is narrow.
ElementTypes forwardStorage(const Program &forward, ElemType storage);
// The backward pass: the output gradients fed in, the inputs' gradients and the forward
// tensors it reads that were narrow there. Parameters' gradients stay in f32.
ElementTypes backwardStorage(const Gradient &gradient, const Program &forward, ElemType storage);

// A kernel that accumulates into a narrow output (a scatter, a `+=` store, an output row read
// back while it is summed) would round every partial sum to 16 bits. Such an output is
// written to a temporary in the compute type (NAME_acc, declared in the result's tensors) by
// every kernel up to its last writer, then converted by a kernel of its own.
LoopProgram accumulateInComputeType(LoopProgram p);

} // namespace enc::ir
