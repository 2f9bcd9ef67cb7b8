// Reverse-mode automatic differentiation of a tensor program.
//
// Each definition is differentiated in reverse order. The adjoint of a read X[e(v)] inside
// a definition over variables v is turned into gather form where the index map can be
// inverted (plain indices, or an affine index in one variable with a constant or size
// coefficient): grad_X[j] = sum(remaining v: guard ? adjoint : 0). Where it cannot, the
// contribution is a scatter definition (grad_X[e(v)] += adjoint), accumulated serially on
// the CPU and atomically on the GPU.
#pragma once

#include "compiler/TensorProgram.h"

#include <map>
#include <string>

namespace enc::ir {

struct Gradient {
  Program program;                           // the backward pass
  std::map<std::string, std::string> gradOf; // input or parameter -> its gradient (an output of `program`)
  std::map<std::string, std::string> seedOf; // forward output -> the gradient fed in (an input of `program`)
  std::vector<std::string> saved;            // forward tensors the backward pass reads (inputs of `program`)
};

std::string gradientName(const std::string &tensor); // "grad_X"

// `forward` is a tensor program after hoistReductions and inlinePointwise; the result is a
// raw tensor program (Pipeline::backward fuses it).
Gradient differentiate(const Program &forward);

// The backward pass of a layer before fusion: its hand-written backward block if it has one
// (specialized with `hyperParams` like the forward pass), else differentiate(forward).
// Pipeline::backward is what compiles a layer's backward pass; this is its first step.
Gradient unfusedGradientOf(const LayerSymbols &layer, const Program &forward,
                           const std::map<std::string, Expr> &hyperParams);

// The forward program's recoveries (`recover X[...] = ...`) whose condition holds and whose
// value reads only tensors the forward pass stores: the backward pass reads X through them,
// so X is no longer saved for it (in-place ABN keeps its output only). See
// RecoverFromOutputs.cpp.
Gradient recoverFromOutputs(const Gradient &g, const Program &forward);

// The forward tensors (inputs, parameters, buffers, outputs) `backward` reads.
std::vector<std::string> forwardTensorsRead(const Program &backward, const Program &forward);

} // namespace enc::ir
