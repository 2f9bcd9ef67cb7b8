// The CPU schedule of contractions: register blocking of a sum reduction whose body reads
// tensors (GramMatrix, convolutions, Encoding's aggregation, Linear ...). See
// TileContractions.cpp and docs/compiler.md.
#pragma once

#include "compiler/LoopIR.h"

#include <optional>

namespace enc::ir {

// A definition `output[indices] = epilogue(sum(rvars: body))` whose reads are already loads
// of flat buffers.
struct Contraction {
  std::string output;
  std::vector<IndexVar> indices; // indices[0] stays the caller's (parallel) loop
  std::vector<ReduceVar> rvars;
  Expr body;     // the summand
  Expr epilogue; // the definition's value with the sum replaced by the local "_acc"
  Expr flatOut;  // the flat index of the output element
  SourceLoc loc;
};

// The kernel's loop nest: a parallel loop over indices[0] around the loops over the other
// indices and the reduction, register-blocked, or nullptr when the contraction fits no
// blocked schedule (the caller keeps the plain loop nest). The parallel loop runs over blocks
// of indices[0] (`<index>.p`) when indices[0] is a row of the tile; in the sliced outer
// product, iteration indices[0] = s computes every indices[0] for the s-th slice of another
// index instead. Free variables of the result: the sizes.
Stmt tileContraction(const Contraction &c);

// Whether blocked code computes `e` in vector registers: no call it cannot widen (dsl/Intrinsics.h),
// no power it does not expand, and (with allowReads false) no tensor-level read.
bool vectorizable(const Expr &e, bool allowReads = false);

// The output index the caller should make its parallel loop, i.e. move to indices[0]: 0,
// unless the contraction is a dot product whose tile would block other indices for at least
// 1.25 times the reuse with another index parallel (Conv2d's weight gradient
// grad_weight[o, c, kh, kw]: parallel over the input channels c, tiles of 4 output channels
// by 3 kernel columns, 12 multiply-adds per 7 loads instead of 9 per 10).
size_t parallelIndex(const Contraction &c);

// The contraction with every output index v that occurs only as (v + a +- k) / s and
// (v + a +- k) % s (a strided convolution's input gradient: k a kernel index, s the stride)
// split into a phase v.r < s and a position v.q (v = s * v.q + v.r, v.r before v.q in
// indices), and k into k0 + s * k.t with k0 chosen by the phase, so that every term of the sum
// is one the condition keeps and v.q moves reads by one element (StridePhases.cpp).
Contraction splitStridePhases(const Contraction &c);

// A vectorized read whose index moves by 2 to this many elements per lane is one wider
// masked load and a shuffle in the CPU code generator (not a gather), so the schedules may
// vectorize along such an index (a strided convolution's input).
constexpr int64_t kMaxVectorLoadStride = 4;

// Strips the clamps min(max(x, 0), n - 1) that bounds-checked reads put around an index, or
// the max(x, 0) or min(x, n - 1) that range folding leaves of one, outermost ones only (a
// clamp written in the source, inside them, stays).
Expr unclampedIndex(const Expr &e);
// The constant coefficient of `v` in the integer expression e when e is affine in v with a
// constant coefficient (0 when e does not mention v), otherwise nothing.
std::optional<int64_t> strideIn(const Expr &e, const std::string &v);

} // namespace enc::ir
