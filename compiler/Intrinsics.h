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
// value; nullptr where none flows (floor, rand's indices). `result`, where given, reads e's
// stored value: an adjoint that needs e's value reads it, and relu's and leaky_relu's masks
// (slope >= 0: the sign of the result is the sign of x) test it rather than x, as torch's
// threshold_backward does. Without it e itself stands for its value.
Expr intrinsicAdjoint(const Expr &e, const Expr &adj, size_t arg, const Expr &result = nullptr);

} // namespace enc::ir
