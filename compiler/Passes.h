// The compiler's passes, each a function from one IR to the next (see docs/compiler.md). A pass
// that changes a program in place takes it by value: the pipeline moves its program in, so a
// pass copies nothing it does not change (a network's program is large).
#pragma once

#include "compiler/TensorProgram.h"

#include <map>
#include <set>

namespace enc::ir {

// Annotated AST of one checked layer -> tensor IR. softmax, logsumexp and mean are expanded
// into max/sum reductions here; hyper-parameters and input sizes stay symbolic.
Program lowerLayer(const LayerSymbols &layer);
// The run-time seed of rand(...): set for every pass by the runtime, never specialized.
inline constexpr const char *kRandomSeed = "rng_seed";
// The 24-bit uniform hash rand(...) computes, identical in every backend:
//   h = seed; for each index a: h = splitmix64(h ^ (a * 0x9E3779B97F4A7C15)); u = (h >> 40) * 2^-24
double randomUniform(int64_t seed, const std::vector<int64_t> &indices);

// The variable holding component i of an int2 hyper-parameter: kernel_size[1] -> kernel_size_1.
std::string pairComponentName(const std::string &name, int64_t i);
// The layer's hand-written `backward { ... }` block as a tensor program (see Autodiff.h's
// unfusedGradientOf, which uses it when a layer has one).
Program lowerBackwardBlock(const LayerSymbols &layer);
// One checked expression of the layer (an initializer argument, a shape dimension).
Expr lowerExpr(const ast::Expr &e, const LayerSymbols &layer);
// A parameter or buffer whose `where` condition is false with these hyper-parameters does not
// exist: its declaration goes, and nothing may still read it (bias[o] outside select(bias, ..)).
Program dropDisabledState(Program p, const LayerSymbols &layer, const std::map<std::string, Expr> &hyperParams);
// Evaluation passes: buffers are updated by training passes only, so their updates go.
Program dropBufferUpdates(Program p);

// Moves every reduction that is not the main reduction of its definition into a temporary
// of its own, so each definition is pointwise or one reduction with a pointwise epilogue.
// Identical reductions (up to renaming of their free indices) are computed once: in a
// temporary, or in the definition that is that reduction and nothing else.
Program hoistReductions(Program p);

// Every read of def.tensor in `e` replaced by def's value at the read's indices (zero where a
// read through an index expression falls outside the tensor).
Expr substituteDefinition(const Expr &e, const Definition &def);

// Fusion: substitutes cheap pointwise temporaries into their consumers (and ones whose
// consumers iterate the same domain), then drops temporaries nobody reads.
Program inlinePointwise(Program p);

// Replaces hyper-parameters and sizes by constants and folds.
Program specialize(Program p, const std::map<std::string, Expr> &values);
// Throws a located Error where a definition holds integer arithmetic without a value (a
// division by zero, an overflow: IR.h's undefinedArithmetic), as specialization can leave it.
void checkIntegerArithmetic(const Program &p);

// Distributes a sum over a difference (sum(i: a * (x - c)) -> sum(i: a * x) - c * sum(i: a))
// when that turns it into a contraction that the schedules tile; see DistributeSums.cpp.
// Leaves several reductions in a definition: run hoistReductions after it.
Program distributeSums(Program p);
// Sums added together over equal ranges whose bodies share a factor that reads the
// reduction become one sum of (the rest of one + the rest of the other) times the shared
// factors (GramMatrix's gradient: one contraction instead of two); see MergeSums.cpp.
Program mergeSums(Program p);
// Replaces indices of extent 1 by 0 and drops them from reductions; see FoldUnitIndices.cpp.
Program foldUnitIndices(Program p);
// Whether an index extent is the constant 1.
bool isUnitExtent(const Expr &extent);
// Moves the factors of a sum that do not read its reduction indices out of it (the factors
// left inside keep their order); see FactorSums.cpp.
Program factorSums(Program p);
// Whether a product's factors split the output indices `outVars` into rows (read by one side
// only) and columns (read by the other only): a contraction the schedules tile.
bool isContraction(const Expr &term, const std::set<std::string> &outVars);

// Replaces sums of deviations from a mean, sum(r: g * (X[...] - m[...])) where the forward
// program defines m as the mean of that X over r, by 0 (see CenteredSums.cpp).
Program dropCenteredSums(Program backward, const Program &forward);

// For the GPU: a reduction with few outputs and a long, fully specialized domain is cut into
// chunks reduced by a partial tensor (T_part[o..., s]) and then combined, so that enough warps
// share the work (see SplitReductions.cpp). Definitions whose sizes are not constants are
// left alone.
struct SplitReductionOptions {
  int64_t targetWarps = 8192; // about a full H100/H200 (132 multiprocessors x 64 warps)
  int64_t minChunk = 1024;    // reduction positions per warp at the least
  int64_t targetTiles = 256;  // contractions: 64 x 64 tiles to have at least, for two waves
};
Program splitReductions(const Program &p, const SplitReductionOptions &options = {});
// For the CPU: a column sum, T[o] = sum(r...: ...X[..., o]...) with o unit-stride in its reads
// and the reduction long (Encoding's grad_scale[k] over B * N positions), becomes
// T_part[s, o] (one row per chunk of the flattened reduction; the chunks spread over threads,
// the row loop over o streams and vectorizes) and T[o] = sum(s: T_part[s, o]).
Program splitColumnReductions(const Program &p, int64_t chunks = 16);
// CPU: a sum that reads a tensor with a constant stride s > 1 (at most 8) along its innermost
// reduction index, the rest of that index a function of output indices with a constant range
// (a strided convolution's weight gradient), reads a copy split into its s stride phases,
// T_phases[..., p, u] = T[..., s * u + p + lo], with unit stride (see PhaseStridedReads.cpp).
Program phaseStridedReads(const Program &p);
// CPU: a strided convolution's weight gradient, a sum whose first output index (32 or more
// positions) sits plainly in one read whose last index is the innermost reduction index, the
// other read strided along it, sums into a temporary with that index last from a copy of the
// read with it last, then is copied back: an outer product along it instead of a dot product
// along 28 strided columns (see TransposeWeightGradients.cpp).
Program transposeWeightGradients(const Program &p);
// CPU: a sum of two reads whose one read's index is h + k + c (h a reduction index other than the
// innermost, k a kernel's taps, a stride-1 convolution's weight gradient X[b, c, h + kh - 1, ...])
// and whose other read has h plainly sums over r = h + k + c, the first read's positions, instead:
// the taps k then share each load of the first read (see SlideWindowSums.cpp).
Program slideWindowSums(Program p);
// CPU: a temporary that adds a scaled sum into the one definition reading it (as an addend, at
// any place), whose sum runs over the ranges of the reader's own sum, is inlined and the two
// sums become one (Encoding's input gradient: one blocked kernel, no [B, D, N] temporary); see
// MergeAddedContractions.cpp.
Program mergeAddedContractions(Program p);
// CPU: a sum whose epilogue the blocked schedules cannot widen gets a temporary of its own
// (compiler/SplitEpilogues.cpp).
Program splitHeavyEpilogues(const Program &p);

// allreduce(x), the sum of x over the process group (see Collectives.cpp).
bool isAllreduce(const Expr &e);
bool containsAllreduce(const Expr &e);
// A collective definition: T[i...] = allreduce(U[i...]), U stored with T's shape.
bool isCollective(const Definition &d);
// Gives every allreduce a collective definition of its own (its operand a stored temporary);
// run hoistReductions after it.
Program isolateAllreduces(Program p);
// allreduce(x) -> x: a layer that runs in one process.
Program dropAllreduces(Program p);
// Moves each collective definition to just before its first reader, so that collectives of
// one stage are adjacent (and the runtime packs them into one message).
Program sinkCollectives(Program p);

} // namespace enc::ir
