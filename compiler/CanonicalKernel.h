// A kernel named canonically, so that kernels that differ only in names (the repeated blocks
// of a network, whose gradients also use fresh index names) compare equal: the CPU JIT keys
// its functions by it and the CUDA module keeps one function per such kernel.
#pragma once

#include "compiler/LoopIR.h"

namespace enc::ir {

// `k` with its buffers named `prefix`b0, `prefix`b1, ... by their position in Kernel::buffers
// (the order the runtime passes them in), the variables its statements declare (loops, lets,
// local and shared arrays) __v0, __v1, ... in the order they are declared. Sizes, parameters and the kernel's name are kept.
Kernel canonicalKernel(const Kernel &k, const std::string &prefix = "_");

} // namespace enc::ir
