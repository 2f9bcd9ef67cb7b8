// A tensor program through the whole lowering pipeline, as a layer's run compiles it: sizes
// fixed, then every lowering pass for the target.
#pragma once

#include "compiler/LoopIR.h"
#include "compiler/Pipeline.h"

#include <map>
#include <string>

namespace enc::testing {

inline ir::LoopProgram lowered(const ir::Program &program, const std::map<std::string, ir::Expr> &sizes,
                               ir::Target target = ir::Target::CPU) {
  ir::Pipeline pipeline;
  ir::TargetOptions options;
  options.target = target;
  return pipeline.lower(pipeline.specializeSizes(program, sizes), options);
}

} // namespace enc::testing
