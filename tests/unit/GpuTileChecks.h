// What the GPU tiling suites share (and LayerCases.h's lib()): a smooth input pattern, ENC_GPU_TILE set for
// a scope, and the count of a loop program's tiled kernels, each checked to use a tile shape.
#pragma once

#include "LayerCases.h"

#include "compiler/GpuTiling.h"
#include "compiler/LoopIR.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <algorithm>
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

// Whether kernel `k` is tiled with `shape` (its shared arrays' sizes).
inline bool tiledWith(const ir::Kernel &k, const ir::TileShape &shape) {
  if (k.launch != ir::ForKind::GpuTiles) return false;
  // Per stage: a side's rows of red + 16 bytes on tensor cores (16-bit or TF32 elements), red
  // slices of the side + 1 without.
  auto sized = [&](int64_t size, int64_t side) {
    return shape.tensorCores ? size == shape.stages * side * (shape.red + 8) || size == shape.stages * side * (shape.red + 4)
                             : size == shape.stages * int64_t{shape.red} * (side + 1);
  };
  bool a = false, b = false;
  ir::visit(k.body, [&](const ir::Stmt &s) {
    int64_t size = 0;
    if (s->kind == ir::StmtKind::Alloc && s->shared && ir::isConst(s->value, &size)) {
      if (s->name == "_as") a = sized(size, shape.rows);
      if (s->name == "_bs") b = sized(size, shape.cols);
    }
    return true;
  });
  return a && b;
}

// Tiled kernels of the loops, each checked to use `shape`.
inline int tiledKernels(const ir::LoopProgram &loops, const ir::TileShape &shape) {
  int n = 0;
  for (const ir::Kernel &k : loops.kernels) {
    if (k.launch != ir::ForKind::GpuTiles) continue;
    ++n;
    EXPECT_TRUE(tiledWith(k, shape)) << k.name << " is not tiled " << ir::tileShapeName(shape);
  }
  return n;
}

// Tiled kernels of the loops that use `shape`.
inline int kernelsTiledWith(const ir::LoopProgram &loops, const ir::TileShape &shape) {
  int n = 0;
  for (const ir::Kernel &k : loops.kernels) n += tiledWith(k, shape);
  return n;
}

// The most elements any asynchronous copy of the loops moves at once (0 without any).
inline int64_t widestCopy(const ir::LoopProgram &loops) {
  int64_t widest = 0;
  for (const ir::Kernel &k : loops.kernels)
    if (k.body)
      ir::visit(k.body, [&](const ir::Stmt &s) {
        if (s->kind == ir::StmtKind::AsyncCopy) widest = std::max(widest, s->width);
        return true;
      });
  return widest;
}

} // namespace enc::testing
