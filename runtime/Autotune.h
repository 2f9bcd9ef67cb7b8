// Autotuning of the GPU's tiled contractions: the first time a pass with tiled kernels is
// compiled at its sizes, every tile shape of each kernel's kind (compiler/GpuTiling.h) is
// compiled and timed on this GPU, and the fastest is remembered in the disk cache, keyed by the
// GPU, its architecture and the kernel (canonical loop IR, buffer types, the candidates). Later
// compiles, in this process or another, read the choice back without timing anything.
#pragma once

#include "compiler/Pipeline.h"

#include <map>
#include <string>

namespace enc {

// ENC_AUTOTUNE: "0" off, another value on; unset, on for a real GPU and off on the CUDA
// emulator (where timings mean nothing and every candidate costs a host compile).
bool autotuneEnabled();

// For each tiled kernel of `lowered` (the pass lowered with `target`, tile shapes chosen by
// size), the name of its fastest tile shape, by the tensor it defines: the map to put in
// TargetOptions::tileShapes. Timing a kernel takes a few launches (at most ~100 ms of them).
std::map<std::string, std::string> autotuneTiles(const ir::Pipeline &pipeline, const ir::Program &specialized,
                                                 const ir::TargetOptions &target, const ir::LoopProgram &lowered,
                                                 const std::string &layer);

// The disk cache key of a tiled kernel's tuning entry, "encc-gpu-tile-1 GPU sm_XX HASH", from
// the kernel as lowered at the first candidate shape of its kind (tileShapeCandidates).
std::string autotuneKey(const ir::LoopProgram &lowered, const ir::Kernel &kernel);

} // namespace enc
