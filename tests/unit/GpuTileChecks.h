// What the GPU tiling suites share (and LayerCases.h's lib()): a smooth input pattern, ENC_GPU_TILE set for
// a scope, and the count of a loop program's tiled kernels, each checked to use a tile shape.
#pragma once

#include "LayerCases.h"

#include "compiler/GpuTiling.h"
#include "compiler/LoopIR.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace enc::testing {

inline std::vector<double> pattern(size_t n, double phase) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + phase);
  return v;
}

// Sets ENC_GPU_TILE for the scope of one test.
class ForcedTile {
public:
  explicit ForcedTile(const std::string &shape) { setenv("ENC_GPU_TILE", shape.c_str(), 1); }
  ~ForcedTile() { unsetenv("ENC_GPU_TILE"); }
};

// Tiled kernels of the loops, each checked to use `shape` (its shared arrays' sizes).
inline int tiledKernels(const ir::LoopProgram &loops, const ir::TileShape &shape) {
  int n = 0;
  for (const ir::Kernel &k : loops.kernels) {
    if (k.launch != ir::ForKind::GpuTiles) continue;
    ++n;
    bool sized = false;
    ir::visit(k.body, [&](const ir::Stmt &s) {
      int64_t size = 0;
      if (s->kind == ir::StmtKind::Alloc && s->shared && s->name == "_as" && ir::isConst(s->value, &size))
        // Per stage: rows of red + 16 bytes on tensor cores (16-bit or TF32 elements), red
        // slices of rows + 1 without.
        sized = shape.tensorCores ? size == shape.stages * int64_t{shape.rows} * (shape.red + 8) ||
                                        size == shape.stages * int64_t{shape.rows} * (shape.red + 4)
                                  : size == shape.stages * int64_t{shape.red} * (shape.rows + 1);
      return true;
    });
    EXPECT_TRUE(sized) << k.name << " is not tiled " << ir::tileShapeName(shape);
  }
  return n;
}

} // namespace enc::testing
