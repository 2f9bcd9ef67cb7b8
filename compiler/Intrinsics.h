// What the compiler knows of each intrinsic (dsl/Intrinsics.h): its value on constants and
// its derivative. Each is a switch over every Intrinsic, as are the code generators'.
#pragma once

#include "compiler/IR.h"
#include "dsl/Intrinsics.h"

#include <optional>
#include <vector>

namespace enc::ir {

// The intrinsic a Call node calls (an unknown name is an internal error).
Intrinsic intrinsicOf(const ExprNode &call);

// f(args) on constants, or nullopt where f has no value at compile time (rand, allreduce).
std::optional<double> foldIntrinsic(Intrinsic f, const std::vector<double> &args);

// The adjoint that reaches argument `arg` of the call `e`, given the adjoint `adj` of e's
// value (e itself stands for that value); nullptr where none flows (floor, rand's indices).
Expr intrinsicAdjoint(const Expr &e, const Expr &adj, size_t arg);

} // namespace enc::ir
