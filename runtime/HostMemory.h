// Host memory for tensors: 64-byte aligned blocks kept by a CachingAllocator. A pass
// allocates the same tensors every step; reusing freed blocks avoids asking the C library
// again, which for large blocks returns fresh pages from the OS whose first touch costs a
// page fault per 4 KiB (more than the memory traffic of a whole batch-norm pass).
#pragma once

#include "runtime/CachingAllocator.h"

namespace enc {

CachingAllocator &hostAllocator();

// ENC_POISON=1: memory that Tensor::empty hands out (host and GPU) is filled with NaN, so an
// element no kernel writes shows up in a comparison. ENC_CUDA_POISON=1 does it on the GPU only.
bool poisonHostMemory();

} // namespace enc
