// GPU code generation: a loop program (GPU schedule) -> one CUDA C++ translation unit with
// one extern "C" __global__ function per kernel. Statements carry #line directives back to
// the .enc source, so an NVRTC error or a profiler points at the user's line.
#pragma once

#include "compiler/LoopIR.h"

#include <cstdint>
#include <string>
#include <vector>

namespace enc::codegen {

// Threads per block the generated kernels are written for (8 warps).
constexpr int kCudaBlockSize = 256;

struct CudaCodegenOptions {
  // Every read and write of a buffer whose size is known checks its index first; one out of
  // range prints "encc: out-of-bounds ..." (kernel, buffer, index, size, .enc line) and traps,
  // failing the launch. A debugging aid (ENC_CUDA_CHECK_BOUNDS=1), on by default on the CUDA
  // emulator.
  bool checkBounds = false;
  // Grid-stride and lane loops run this many iterations per trip, so that each thread has as
  // many independent loads in flight (1 = not unrolled). ENC_CUDA_UNROLL, for tuning.
  int strideUnroll = 4;
};

// The options a run uses: ENC_CUDA_CHECK_BOUNDS (default `checkBoundsByDefault`) and
// ENC_CUDA_UNROLL (1 to 16; anything else is an error).
CudaCodegenOptions cudaCodegenOptionsFromEnvironment(bool checkBoundsByDefault);

// Arithmetic in program.types.compute; each buffer stored as program.types.of(buffer).
std::string emitCuda(const ir::LoopProgram &program, const CudaCodegenOptions &options = {});

// The translation unit the runtime compiles: one function per distinct kernel, where kernels
// that differ only in names (a network's repeated blocks) are one (ir::canonicalKernel), so
// NVRTC compiles each once. Its functions have canonical names; `functions[i]` is the one that
// runs loop kernel i ("" for a collective).
struct CudaModuleSource {
  std::string source;
  std::vector<std::string> functions;
  size_t distinct = 0; // functions in `source`
};
CudaModuleSource emitCudaModule(const ir::LoopProgram &program, const CudaCodegenOptions &options = {});

// A kernel, buffer or variable name as the CUDA C++ spells it (the name of a kernel's function
// too): itself when it is a plain identifier that is not a keyword, else a mangled one.
std::string cudaIdentifier(const std::string &name);

// How a generated kernel is launched, for its launch loop's kind: a tile per block
// (GpuTiles), a row per block (GpuRows, grid-stride past 32 blocks per multiprocessor), or
// a thread (warp, for GpuWarps) per iteration with grid-stride loops past the same bound.
struct CudaLaunch {
  int64_t blocks = 1;
  int threadsPerBlock = kCudaBlockSize;
};
// `extent`: the kernel's launch extent (> 0), evaluated.
CudaLaunch cudaLaunch(const ir::Kernel &kernel, int64_t extent, int multiprocessors);

} // namespace enc::codegen
