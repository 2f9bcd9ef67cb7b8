// Storage for a pass's temporaries by liveness: one arena, in which a temporary takes a range
// that no other temporary alive at the same time overlaps.
//
//   kernel:      0    1    2    3    4
//   A            [ write .. read ]              A and C never live at once:
//   B                 [ write ..... read ]      C reuses A's bytes
//   C                           [ write . read ]
#pragma once

#include "compiler/LoopIR.h"
#include "runtime/Tensor.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc {

struct MemoryPlan {
  struct Slot {
    std::string tensor;
    size_t offset = 0, bytes = 0;
    size_t first = 0, last = 0; // the kernels that first and last touch it
  };
  std::vector<Slot> slots;   // in order of first use
  size_t arenaBytes = 0;     // the planned temporaries' peak
  size_t unplannedBytes = 0; // the same temporaries each in storage of its own
};

// Plans every tensor of `shapes` that the pass allocates itself and that need not outlive it:
// not in `given` (inputs, parameters, saved tensors) and not in `keep` (what the caller reads
// afterwards). Offsets are 64-byte aligned.
MemoryPlan planMemory(const ir::LoopProgram &loops, const std::map<std::string, Shape> &shapes,
                      const std::set<std::string> &given, const std::set<std::string> &keep);

} // namespace enc
