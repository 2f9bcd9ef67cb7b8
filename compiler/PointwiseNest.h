// A pointwise loop nest: the shape of kernel that the horizontal and vertical fusions of
// element-wise kernels recognize (FusePointwiseKernels.cpp, FuseEpilogues.cpp). Each level is a
// loop holding lets and the next loop; the innermost holds lets and plain stores (blocks
// transparent). Scatters, collectives, reductions and tiles are not pointwise nests.
#pragma once

#include "compiler/LoopIR.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace enc::ir {

struct PointwiseNest {
  struct Loop {
    std::string var;
    Expr extent;
    ForKind kind = ForKind::Serial;
    std::vector<Stmt> lets;
  };
  std::vector<Loop> loops; // outermost first
  std::vector<Stmt> body;  // the innermost loop's lets and stores, in order

  Stmt write() const; // the nest as statements again
};

// k's body as a pointwise nest (loops serial, parallel, gpu_threads, gpu_rows or
// gpu_row_threads), or nullopt.
std::optional<PointwiseNest> pointwiseNest(const Kernel &k);

// Expressions with every let of a nest substituted, so that positions compare as values.
class LetValues {
public:
  explicit LetValues(const PointwiseNest &n);
  Expr expand(const Expr &e) const;

private:
  std::map<std::string, Expr> values_;
  void add(const Stmt &s);
};

} // namespace enc::ir
