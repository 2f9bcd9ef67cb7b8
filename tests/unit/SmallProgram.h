// A one-definition tensor program the pipeline and verifier suites break in chosen ways.
#pragma once

#include "compiler/TensorProgram.h"

namespace enc::testing {

// A one-definition program: Y[i] = X[i] over i < 4.
inline ir::Program smallProgram() {
  ir::Program p;
  p.layer = "Small";
  p.tensors = {{"X", TensorRole::Input, {ir::intImm(4)}, {}}, {"Y", TensorRole::Output, {ir::intImm(4)}, {}}};
  ir::Expr i = ir::var("i", ir::Type::Int, ir::VarKind::Index);
  p.defs.push_back({"Y", {{"i", ir::intImm(4)}}, ir::access("X", {i}), {}, {}});
  return p;
}

} // namespace enc::testing
