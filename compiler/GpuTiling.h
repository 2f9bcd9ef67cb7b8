// The GPU schedule of contractions: recognizes out[...] = epilogue(sum(red: a * b)) where the
// product's factors split the output indices into rows and columns (GramMatrix, Linear,
// Inspiration, convolutions as implicit GEMM), for a shared-memory tiled kernel.
#pragma once

#include "compiler/LoopIR.h"

#include <memory>

namespace enc::ir {

// `reduction` is the definition's main Sum reduction with loop-level loads in its body;
// `epilogue` the value with the reduction replaced by the local "_acc". Returns nullptr when
// the body is not such a product, a size is not constant, or rows or columns are too few
// (under 16) for tiles to pay.
std::shared_ptr<const TiledContraction> tileForGpu(const std::vector<IndexVar> &indices, const ExprNode &reduction,
                                                   const Expr &epilogue, const Expr &flatOut);

} // namespace enc::ir
