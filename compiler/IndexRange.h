// Interval arithmetic on integer index expressions: the values an expression can take when
// each index variable ranges over [0, extent). Used to leave out bounds checks that can never
// fail, e.g. on indices decoded from a split reduction ((s * 3136 + j) / 3136 < 32).
#pragma once

#include "compiler/IR.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace enc::ir {

struct IndexRange {
  int64_t lo, hi; // inclusive
};

// The range of `e` given constant extents of its index variables; nullopt when some part of
// it is not understood (a load, a symbolic size, a variable without a constant extent).
std::optional<IndexRange> indexRange(const Expr &e, const std::map<std::string, Expr> &extents);

// e with every integer subexpression that takes a single value over the ranges replaced by
// that value (a group index o / 20 with o < 20 is 0), x % k with x in [0, k) by x, min and max
// of two sides whose ranges do not overlap by the side they pick (a clamp min(max(i, 0), 55)
// with i in [1, 54] is i), every order comparison the ranges decide (j >= 0, j < 128 with
// j < 128) replaced by true or false, and && / || with a decided side simplified, so selects
// on them fold away. (Equalities such as t == 0 with t < 1 would fold the same way; not yet done, as the
// GPU schedules they would change have not run on a GPU.)
Expr foldByIndexRanges(const Expr &e, const std::map<std::string, Expr> &extents);

} // namespace enc::ir
