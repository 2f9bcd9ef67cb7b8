// GPU code generation: a loop program (GPU schedule) -> one CUDA C++ translation unit with
// one extern "C" __global__ function per kernel. Statements carry #line directives back to
// the .enc source, so an NVRTC error or a profiler points at the user's line.
#pragma once

#include "compiler/LoopIR.h"

#include <string>

namespace enc::codegen {

// Threads per block the generated kernels are written for (8 warps).
constexpr int kCudaBlockSize = 256;

// Arithmetic in program.types.compute; each buffer stored as program.types.of(buffer).
std::string emitCuda(const ir::LoopProgram &program);

} // namespace enc::codegen
