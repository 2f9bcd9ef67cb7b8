// Runs the kernels of one compiled pass on one device. A Layer compiles each pass (forward or
// backward, per input-size signature) into a loop program and hands it to the executor of its
// device, which compiles the kernels once (CPU: LLVM's JIT; GPU: NVRTC) and then launches them
// on each call. Collectives are not kernels: the Layer runs them between launches.
#pragma once

#include "compiler/LoopIR.h"
#include "runtime/Tensor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace enc {

class Executor {
public:
  virtual ~Executor() = default;
  // Runs kernel `i` of the loop program on `buffers` (every buffer it names, allocated).
  // `zeroOutput`: its output is zeroed first (a scatter whose tensor no earlier kernel wrote).
  virtual void launch(size_t i, std::map<std::string, Tensor> &buffers, int64_t randomSeed, bool zeroOutput) = 0;
  // Waits until every launched kernel has finished (for timing them).
  virtual void finish() {}
};

// `loops` must outlive the executor. `layer` names the layer in messages.
std::unique_ptr<Executor> makeCpuExecutor(const ir::LoopProgram &loops);
std::unique_ptr<Executor> makeGpuExecutor(const ir::LoopProgram &loops, const std::string &layer);

} // namespace enc
