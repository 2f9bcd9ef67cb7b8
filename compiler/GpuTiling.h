// The GPU schedule of contractions: recognizes out[...] = epilogue(sum(red: a * b)) where the
// product's factors split the output indices into rows and columns (GramMatrix, Linear,
// Inspiration, convolutions as implicit GEMM) and writes the shared-memory tiled kernel for it
// as loop IR (thread blocks, shared arrays, barriers, register blocks), which codegen prints.
#pragma once

#include "compiler/LoopIR.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace enc::ir {

// How a block tiles the contraction: it computes rows x cols outputs of one batch element,
// staging `red`-deep slices of both factors in shared memory. Without tensor cores each of its
// 256 threads owns a threadRows x threadCols block of outputs in registers, rows
// ty + (rows / threadRows) * i and columns tx + (cols / threadCols) * j, so that shared reads
// are broadcasts or conflict-free and stores coalesce. With tensor cores its 8 warps form a
// warpRows x warpCols grid (2 x 4; 4 x 2 for a tile of 32 columns), each warp owning
// (rows / warpRows) x (cols / warpCols) outputs as 16 x 16 accumulator fragments. With two
// stages the shared arrays hold two slices: while the block multiplies one, the next arrives
// in the other, by asynchronous copies where both factors are plain reads, else through each
// thread's registers (loaded before the multiply, stored after it), so that global loads
// overlap arithmetic.
struct TileShape {
  int rows = 64, cols = 64, red = 16, threadRows = 4, threadCols = 4;
  bool tensorCores = false;
  int stages = 1;
  int warpRows = 2, warpCols = 4;
  bool operator==(const TileShape &) const = default;
};
// The shapes the GPU tiler chooses from (every one valid for kCudaBlockSize threads).
const std::vector<TileShape> &gpuTileShapes();
std::string tileShapeName(const TileShape &s); // "64x64x16", "32x128x16", "tc128x128x32", "128x128x8s2"
// ENC_GPU_TILE: a shape by name forces it for every tiled contraction of its kind (tensor
// cores or not); unset or "auto" lets the tiler choose by size. Another value is an
// enc::Error naming the shapes.
std::optional<TileShape> tileShapeFromEnvironment();

// A contraction split for tiling: out's indices as rows (read by a only), cols (read by b
// only) and batch (the rest).
struct TiledContraction {
  std::vector<IndexVar> batch, rows, cols, red;
  int64_t batchTotal = 1, rowsTotal = 1, colsTotal = 1, redTotal = 1;
  Expr a, b;      // the factors (loop-level: loads), over batch + rows + red and batch + cols + red
  // What each term of the sum is, of a and b as the locals "_av" and "_bv"; null: a * b.
  // Sums of another function of one value per row and one per column (Encoding's squared
  // distances (x - c)^2) tile as products do, on FMA tiles only.
  Expr combine;
  Expr epilogue;  // the stored value, of the local "_acc" and the output indices
  Expr flatOut;   // where it is stored
  bool aAlongRed = true, bAlongRed = true; // a load walks the reduction (unit stride there)
  TileShape shape;
  // Where the contraction is symmetric in its one row and one column index (GramMatrix's
  // forward: b is a with them swapped, the epilogue does not tell them apart) and its tiles are
  // square, flatOut with them swapped: only the tiles on and above the diagonal run, each
  // storing its outputs also there. nullptr otherwise.
  Expr mirrorOut;
  bool symmetric() const { return mirrorOut != nullptr; }
  int64_t tiles() const; // blocks to launch
};

// `reduction` is the definition's main Sum reduction with loop-level loads in its body;
// `epilogue` the value with the reduction replaced by the local "_acc". Returns nullptr when
// the body is neither such a product nor a function of exactly two reads, one per side, a
// size is not constant, or rows or columns are too few (under 16) for tiles to pay. The tile
// shape is chosen by the problem's size (or is the one `shapeName` names, when it is of the
// right kind); with `tensorCores` a tensor-core shape.
std::shared_ptr<const TiledContraction> tileForGpu(const std::vector<IndexVar> &indices, const ExprNode &reduction,
                                                   const Expr &epilogue, const Expr &flatOut,
                                                   std::optional<ElemType> tensorCores = std::nullopt,
                                                   const std::string *shapeName = nullptr);
// The shapes a contraction of that kind (tensor cores or not) can be tiled with.
std::vector<TileShape> tileShapeCandidates(bool tensorCores);

// The kernel body computing `t` into `output`: a `gpu_tiles` loop (one block per tile) around
// a `gpu_block_threads` loop (the block's threads) that stages both factors in shared arrays,
// accumulates in a local array and stores through the epilogue.
Stmt tiledContractionBody(const TiledContraction &t, const std::string &output, SourceLoc loc);
// The same on tensor cores: both factors staged as `elem` (f16 or bf16, rounded to nearest
// even; f32 for TF32, rounded when loaded into fragments) in shared arrays, each warp's
// fragments loaded from them and multiplied with f32 accumulation; the epilogue reads the
// accumulators through a per-warp shared array.
// `types` says how each buffer is stored: a factor stored as `elem` is staged by asynchronous
// copies, as wide as its layout allows, and others through registers, converted.
Stmt tensorCoreBody(const TiledContraction &t, const std::string &output, SourceLoc loc, ElemType elem,
                    const ElementTypes &types);

} // namespace enc::ir
