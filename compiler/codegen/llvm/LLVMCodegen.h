// CPU code generation: one loop-IR kernel -> one LLVM function.
//
// ABI of the generated function:
//   void NAME(void **buffers, const int64_t *params, int64_t begin, int64_t end)
// buffers: kernel.buffers in order (output first); params: one 8-byte slot per
// kernel.params entry (int64 for sizes and bools, double for float hyper-parameters);
// [begin, end): the slice of the outermost Parallel loop this call runs.
#pragma once

#include "compiler/LoopIR.h"

namespace llvm {
class Module;
class Function;
} // namespace llvm

namespace enc::codegen {

using CpuKernelFn = void (*)(void **buffers, const int64_t *params, int64_t begin, int64_t end);

// Arithmetic in types.compute; each buffer loaded and stored as types.of(buffer). A collective
// kernel has no code (the runtime runs it): nullptr.
llvm::Function *emitLLVMKernel(const ir::Kernel &kernel, const ir::ElementTypes &types, llvm::Module &module);

} // namespace enc::codegen
