#include "compiler/GpuTiling.h"

#include "compiler/IndexRange.h"
#include "compiler/TileContractions.h"
#include "compiler/codegen/cuda/CudaCodegen.h"

#include "support/Error.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string_view>

namespace enc::ir {
namespace {

std::set<std::string> indexVarsOf(const Expr &e);

bool isZero(const Expr &e) {
  return (e->kind == ExprKind::FloatImm && e->floatValue == 0) || (e->kind == ExprKind::IntImm && e->intValue == 0);
}

// The factors of a product. select(c, x * y, 0) counts as select(c, x, 0) * y when c reads
// no index that x does not read (a guard of a transposed convolution's input).
void factorsOf(const Expr &e, std::vector<Expr> &out) {
  if (e->kind == ExprKind::Binary && e->binOp == BinOp::Mul && e->type == Type::Float) {
    factorsOf(e->args[0], out);
    factorsOf(e->args[1], out);
    return;
  }
  if (e->kind == ExprKind::Select && isZero(e->args[2])) {
    std::vector<Expr> inner;
    factorsOf(e->args[1], inner);
    std::set<std::string> cond = indexVarsOf(e->args[0]);
    for (size_t i = 0; i < inner.size() && inner.size() > 1; ++i) {
      std::set<std::string> vs = indexVarsOf(inner[i]);
      if (std::includes(vs.begin(), vs.end(), cond.begin(), cond.end())) {
        inner[i] = select(e->args[0], inner[i], floatImm(0));
        out.insert(out.end(), inner.begin(), inner.end());
        return;
      }
    }
  }
  out.push_back(e);
}

std::set<std::string> indexVarsOf(const Expr &e) {
  std::vector<std::string> v = freeIndexVars(e);
  return {v.begin(), v.end()};
}

// Whether the first load of `operand` has unit stride in `v`.
bool unitStrideIn(const Expr &operand, const std::string &v) {
  bool unit = false, seen = false;
  visit(operand, [&](const Expr &n) {
    if (seen) return false;
    if (n->kind == ExprKind::Load) {
      seen = true;
      auto s = strideIn(unclampedIndex(n->args[0]), v);
      unit = s && *s == 1;
      return false;
    }
    return true;
  });
  return unit;
}

int64_t totalOf(const std::vector<IndexVar> &vars) {
  int64_t n = 1;
  for (const IndexVar &v : vars) {
    int64_t e = 0;
    isConst(v.extent, &e);
    n *= e;
  }
  return n;
}

constexpr int64_t kThreads = codegen::kCudaBlockSize;
// Statically declared shared arrays may take 48 KiB of a block.
constexpr int64_t kSharedBytes = 48 * 1024;

// The shared memory a shape needs at most: FMA tiles staging f64, tensor-core tiles staging
// f32 (TF32). Matches the allocations of tiledContractionBody and tensorCoreBody.
int64_t sharedBytesAtMost(const TileShape &s) {
  if (s.tensorCores)
    return s.stages * int64_t{s.rows + s.cols} * (s.red + 4) * 4 + kThreads / 32 * kFragmentSize * kFragmentSize * 4;
  return s.stages * int64_t{s.red} * (s.rows + 1 + s.cols + 1) * 8;
}

} // namespace

const std::vector<TileShape> &gpuTileShapes() {
  // 64 x 64 tiles, 16 deep, 4 x 4 outputs per thread: small problems still fill the GPU.
  // 128 x 128 tiles, 8 deep, 8 x 8 per thread: twice the multiply-adds per shared read.
  // 32 x 128 and 128 x 32 tiles, 16 deep, 4 x 4 per thread: for 32 rows or columns or fewer,
  // which would leave half of a 64-wide side empty.
  // Tensor cores: 64 x 64 or 128 x 128 tiles, 32 deep (two fragment steps per slice); 32 x 128
  // and 128 x 32 ones with the warp grid turned along the long side (2 x 4, 4 x 2).
  // The square ones but the largest tensor-core tile (whose two f32 slices would not fit
  // shared memory) also with two stages. Each kind lists its single-stage shapes first.
  static const std::vector<TileShape> shapes = [] {
    std::vector<TileShape> all = {{64, 64, 16, 4, 4},
                                  {128, 128, 8, 8, 8},
                                  {32, 128, 16, 4, 4},
                                  {128, 32, 16, 4, 4},
                                  {64, 64, 32, 0, 0, true},
                                  {128, 128, 32, 0, 0, true},
                                  {32, 128, 32, 0, 0, true},
                                  {128, 32, 32, 0, 0, true, 1, 4, 2},
                                  {64, 64, 16, 4, 4, false, 2},
                                  {128, 128, 8, 8, 8, false, 2},
                                  {64, 64, 32, 0, 0, true, 2}};
    for (const TileShape &s : all) {
      bool fits = s.rows * s.red % kThreads == 0 && s.cols * s.red % kThreads == 0 && (s.stages == 1 || s.stages == 2) &&
                  sharedBytesAtMost(s) <= kSharedBytes;
      if (s.tensorCores)
        fits = fits && s.warpRows * s.warpCols * 32 == kThreads && s.rows % (s.warpRows * kFragmentSize) == 0 &&
               s.cols % (s.warpCols * kFragmentSize) == 0 && s.red % kFragmentSize == 0;
      else
        fits = fits && (s.rows / s.threadRows) * (s.cols / s.threadCols) == kThreads;
      ENC_INTERNAL_ASSERT(fits, "GPU tile shape {} does not fit a block", tileShapeName(s));
    }
    return all;
  }();
  return shapes;
}

std::vector<TileShape> tileShapeCandidates(bool tensorCores) {
  std::vector<TileShape> out;
  for (const TileShape &s : gpuTileShapes())
    if (s.tensorCores == tensorCores) out.push_back(s);
  return out;
}

int64_t TiledContraction::tiles() const {
  const int64_t tilesR = (rowsTotal + shape.rows - 1) / shape.rows, tilesC = (colsTotal + shape.cols - 1) / shape.cols;
  return batchTotal * (symmetric() ? tilesR * (tilesR + 1) / 2 : tilesR * tilesC);
}

std::string tileShapeName(const TileShape &s) {
  return fmt::format("{}{}x{}x{}{}", s.tensorCores ? "tc" : "", s.rows, s.cols, s.red,
                     s.stages > 1 ? fmt::format("s{}", s.stages) : "");
}

std::optional<TileShape> tileShapeFromEnvironment() {
  const char *text = std::getenv("ENC_GPU_TILE");
  if (!text || !*text || std::string_view(text) == "auto") return std::nullopt;
  std::string names;
  for (const TileShape &s : gpuTileShapes()) {
    if (tileShapeName(s) == text) return s;
    names += (names.empty() ? "" : ", ") + tileShapeName(s);
  }
  throw Error(fmt::format("ENC_GPU_TILE='{}' is not a GPU tile shape", text), fmt::format("use auto, {}", names));
}

namespace {

// The side of a narrow tile: a problem with this many rows (or columns) or fewer would leave
// at least half of a 64-wide side empty.
constexpr int kNarrowSide = 32;

// The single-stage shape of the kind with `rows` x `cols` outputs.
TileShape singleStageShape(bool tensorCores, int rows, int cols) {
  for (const TileShape &s : gpuTileShapes())
    if (s.tensorCores == tensorCores && s.stages == 1 && s.rows == rows && s.cols == cols) return s;
  internalError("no single-stage GPU tile shape of {} x {}", rows, cols);
}

// The tile shape for a problem: a narrow tile where one side has at most 32 rows (or
// columns) and the other more; else the large tiles where every dimension fills them and
// there are still enough blocks to occupy a large GPU (a few per multiprocessor of ~132), else
// the small ones. The rule picks single-stage shapes: whether a second stage's overlap is
// worth its registers and shared memory is for timing to judge (runtime/Autotune).
TileShape chooseTileShape(const TiledContraction &t, bool tensorCores, const std::string *shapeName) {
  if (shapeName)
    for (const TileShape &s : gpuTileShapes())
      if (tileShapeName(s) == *shapeName && s.tensorCores == tensorCores) return s;
  std::optional<TileShape> forced = tileShapeFromEnvironment();
  if (forced && forced->tensorCores == tensorCores) return *forced;
  const bool fewRows = t.rowsTotal <= kNarrowSide, fewCols = t.colsTotal <= kNarrowSide;
  if (fewRows && !fewCols) return singleStageShape(tensorCores, kNarrowSide, 128);
  if (fewCols && !fewRows) return singleStageShape(tensorCores, 128, kNarrowSide);
  const TileShape large = singleStageShape(tensorCores, 128, 128);
  int64_t largeTiles = t.batchTotal * ((t.rowsTotal + large.rows - 1) / large.rows) *
                       ((t.colsTotal + large.cols - 1) / large.cols);
  if (t.rowsTotal >= large.rows && t.colsTotal >= large.cols && t.redTotal >= 64 && largeTiles >= 256) return large;
  return singleStageShape(tensorCores, 64, 64);
}

Expr intLocal(const std::string &name) { return var(name, Type::Int, VarKind::Local); }

Expr both(Expr a, Expr b) {
  if (!a) return b;
  if (!b) return a;
  return binary(BinOp::And, std::move(a), std::move(b));
}

// `e` as a read an asynchronous copy can make: a Load, under selects with a zero else
// (select(c1 && c2, Load, 0)); nullopt for anything computed.
std::optional<Expr> plainRead(const Expr &e) {
  Expr cond;
  Expr at = e;
  while (at->kind == ExprKind::Select && isZero(at->args[2])) {
    cond = both(cond, at->args[0]);
    at = at->args[1];
  }
  if (at->kind != ExprKind::Load) return std::nullopt;
  return cond ? select(cond, at, floatImm(0)) : at;
}

// What both tiled schedules share: the tile's origin, staging a slice of a factor into a
// shared array, and storing one output through the epilogue.
class TileWriter {
public:
  TileWriter(const TiledContraction &t, std::string output, SourceLoc loc)
      : t_(t), output_(std::move(output)), loc_(loc) {}

  // _col0, _row0 and the batch indices of block _tile.
  void origin(std::vector<Stmt> &out) const {
    const int64_t tilesC = (t_.colsTotal + t_.shape.cols - 1) / t_.shape.cols;
    const int64_t tilesR = (t_.rowsTotal + t_.shape.rows - 1) / t_.shape.rows;
    const Expr tile = intLocal("_tile");
    if (t_.symmetric()) {
      // Tile _tri of the T(T + 1) / 2 on and above the diagonal, row by row: row _ti starts at
      // first(_ti) = _ti * T - _ti * (_ti - 1) / 2, and _ti counts the rows after the first
      // that start at or before _tri.
      const int64_t T = tilesR, triangle = T * (T + 1) / 2;
      auto first = [&](const Expr &i) { return i * intImm(T) - i * (i - intImm(1)) / intImm(2); };
      out.push_back(let("_tri", Type::Int, tile % intImm(triangle)));
      out.push_back(let("_ti", Type::Int, intImm(0)));
      const Expr s = intLocal("_s") + intImm(1);
      out.push_back(forLoop("_s", intImm(T - 1), ForKind::Serial,
                            {assign("_ti", intLocal("_ti") + select(binary(BinOp::Ge, intLocal("_tri"), first(s)),
                                                                    intImm(1), intImm(0)))}));
      out.push_back(let("_row0", Type::Int, intLocal("_ti") * intImm(t_.shape.rows)));
      out.push_back(let("_col0", Type::Int,
                        (intLocal("_ti") + intLocal("_tri") - first(intLocal("_ti"))) * intImm(t_.shape.cols)));
      decodeIndices(out, t_.batch, tile / intImm(triangle));
      return;
    }
    out.push_back(let("_col0", Type::Int, (tile % intImm(tilesC)) * intImm(t_.shape.cols)));
    out.push_back(let("_row0", Type::Int, ((tile / intImm(tilesC)) % intImm(tilesR)) * intImm(t_.shape.rows)));
    decodeIndices(out, t_.batch, tile / intImm(tilesC * tilesR));
  }

  // This thread's elements of the slice of factor a (or b) at reduction offset `red0`:
  // element _t + q * threads of the slice is (_ol, _rl) = (its row or column in the tile, its
  // reduction position in the slice), consecutive threads walking the factor's unit-stride
  // side. With `width` > 1 (a factor along the reduction) a thread's item is that many
  // consecutive elements along it, the first at (_ol, _rl). `move` gets the (first) element's
  // value (0 past an edge; null without `withValue`) and the loop variable q, and says where it
  // goes.
  Stmt eachElement(bool a, const Expr &red0, bool withValue,
                   const std::function<Stmt(const Expr &value, const Expr &q)> &move, int64_t width = 1) const {
    const Expr &factor = a ? t_.a : t_.b;
    const std::vector<IndexVar> &own = a ? t_.rows : t_.cols;
    const int64_t ownTotal = a ? t_.rowsTotal : t_.colsTotal, side = a ? t_.shape.rows : t_.shape.cols;
    const int64_t K = t_.shape.red;
    const bool alongRed = a ? t_.aAlongRed : t_.bAlongRed;
    ENC_INTERNAL_ASSERT(width == 1 || (alongRed && K % width == 0), "GpuTiling: copies of {} elements across the reduction",
                        width);
    const std::string q = a ? "_qa" : "_qb";
    const int64_t items = side * K / width, perThread = (items + kThreads - 1) / kThreads;
    std::vector<Stmt> body;
    Expr e = intLocal("_t") + intLocal(q) * intImm(kThreads);
    if (width > 1) {
      body.push_back(let("_ol", Type::Int, e / intImm(K / width)));
      body.push_back(let("_rl", Type::Int, e % intImm(K / width) * intImm(width)));
    } else {
      body.push_back(let("_ol", Type::Int, alongRed ? e / intImm(K) : e % intImm(side)));
      body.push_back(let("_rl", Type::Int, alongRed ? e % intImm(K) : e / intImm(side)));
    }
    Expr value;
    if (withValue) {
      body.push_back(let("_op", Type::Int, intLocal(a ? "_row0" : "_col0") + intLocal("_ol")));
      body.push_back(let("_rp", Type::Int, red0 + intLocal("_rl")));
      decodeIndices(body, own, intLocal("_op"));
      decodeIndices(body, t_.red, intLocal("_rp"));
      Expr inRange = both(ownTotal % side ? binary(BinOp::Lt, intLocal("_op"), intImm(ownTotal)) : nullptr,
                          t_.redTotal % K ? binary(BinOp::Lt, intLocal("_rp"), intImm(t_.redTotal)) : nullptr);
      value = inRange ? select(inRange, factor, floatImm(0)) : factor;
    }
    body.push_back(move(value, intLocal(q)));
    // Fewer items than threads (a narrow tile's wide copies): the threads past them idle.
    if (items % kThreads) body = {ifThen(binary(BinOp::Lt, e, intImm(items)), body)};
    return forLoop(q, intImm(perThread), ForKind::Unrolled, body);
  }

  // A factor's shared array: element (ol, rl) of a slice at place(ol, rl), each stage's slice
  // `sliceSize` elements after the previous one; with `async` its slices travel by
  // asynchronous copies of `width` elements, else through registers (two stages) or plain
  // stores (one).
  struct Staging {
    std::string shared;
    int64_t sliceSize;
    std::function<Expr(const Expr &ol, const Expr &rl)> place;
    bool async = false;
    int64_t width = 1;
  };

  // `index` into factor a's (or b's) shared array within the slice being multiplied (at _sa
  // or _sb with two stages).
  Expr inSlice(bool a, const Expr &index) const {
    return t_.shape.stages > 1 ? intLocal(a ? "_sa" : "_sb") + index : index;
  }

  // The loop over reduction slices: both factors' slices staged, then `step` multiplies the
  // slice (reading it through inSlice). A factor with asynchronous copies has its copies waited
  // for before the barrier that opens the step. One stage: stage, (commit, wait,) barrier,
  // step, barrier. Two stages: slice 0 staged before the loop, and each iteration stages the
  // next slice into the other stage while `step` runs, so a thread writes a stage only after
  // every thread passed the barrier that ended the step reading it: asynchronous copies are
  // issued before the step (then commit, wait for the current slice, barrier, step, barrier),
  // the other factor is loaded into registers before the step and stored after it (with no
  // asynchronous factor: load, step, store, barrier).
  std::vector<Stmt> reduction(const Staging &a, const Staging &b, std::vector<Stmt> step) const {
    const int64_t K = t_.shape.red, slices = (t_.redTotal + K - 1) / K;
    const bool anyAsync = a.async || b.async;
    // Element (_ol, _rl) of factor a's (or b's) slice into its shared array, in the only or
    // first stage or, with `other`, in the stage after the one _sa/_sb name: `write` makes the
    // statement from the array, the position there, the element's value and q.
    using Write = std::function<Stmt(const std::string &shared, const Expr &at, const Expr &value, const Expr &q)>;
    auto intoStage = [&](bool ofA, bool other, Write write) {
      const Staging *s = ofA ? &a : &b;
      Expr base = other ? intImm(s->sliceSize) - intLocal(ofA ? "_sa" : "_sb") : nullptr;
      return [s, base, write](const Expr &value, const Expr &q) {
        Expr at = s->place(intLocal("_ol"), intLocal("_rl"));
        return write(s->shared, base ? base + at : at, value, q);
      };
    };
    // Factor a's (or b's) slice at red0 into the first stage (or the other one), by
    // asynchronous copies or plain stores.
    auto stage = [&](bool ofA, const Expr &red0, bool other) {
      const Staging &s = ofA ? a : b;
      const int64_t width = s.async ? s.width : 1;
      return eachElement(ofA, red0, true, intoStage(ofA, other, [width, async = s.async](const std::string &shared,
                                                                                          const Expr &at, const Expr &value,
                                                                                          const Expr &) {
                           return async ? asyncCopy(shared, at, *plainRead(value), width) : store(shared, at, value, {});
                         }),
                         width);
    };
    if (t_.shape.stages == 1) {
      std::vector<Stmt> slice{let("_red0", Type::Int, intLocal("_red") * intImm(K)), stage(true, intLocal("_red0"), false),
                              stage(false, intLocal("_red0"), false)};
      if (anyAsync) slice.insert(slice.end(), {asyncCommit(), asyncWait(0)});
      slice.push_back(barrier());
      slice.insert(slice.end(), step.begin(), step.end());
      slice.push_back(barrier());
      return {forLoop("_red", intImm(slices), ForKind::Serial, std::move(slice))};
    }
    Expr hasNext = binary(BinOp::Lt, intLocal("_red") + intImm(1), intImm(slices));
    Expr next0 = (intLocal("_red") + intImm(1)) * intImm(K);
    std::vector<Stmt> out, fetch, keep;
    for (bool ofA : {true, false}) {
      const Staging &s = ofA ? a : b;
      if (s.async) {
        fetch.push_back(stage(ofA, next0, true));
        continue;
      }
      const std::string regs = ofA ? "_pa" : "_pb";
      out.push_back(alloc(regs, (ofA ? t_.shape.rows : t_.shape.cols) * K / kThreads));
      fetch.push_back(eachElement(ofA, next0, true, [regs](const Expr &value, const Expr &q) {
        return store(regs, q, value, {});
      }));
      keep.push_back(eachElement(ofA, nullptr, false,
                                 intoStage(ofA, true, [regs](const std::string &shared, const Expr &at, const Expr &,
                                                             const Expr &q) { return store(shared, at, load(regs, q), {}); })));
    }
    out.push_back(stage(true, intImm(0), false));
    out.push_back(stage(false, intImm(0), false));
    out.push_back(anyAsync ? asyncCommit() : barrier());
    std::vector<Stmt> slice{let("_sa", Type::Int, (intLocal("_red") % intImm(2)) * intImm(a.sliceSize)),
                            let("_sb", Type::Int, (intLocal("_red") % intImm(2)) * intImm(b.sliceSize)),
                            ifThen(hasNext, fetch)};
    // Every iteration closes a group (the last an empty one): the current slice's is then the
    // one before the newest.
    if (anyAsync) slice.insert(slice.end(), {asyncCommit(), asyncWait(1), barrier()});
    slice.insert(slice.end(), step.begin(), step.end());
    if (!keep.empty()) slice.push_back(ifThen(hasNext, keep));
    slice.push_back(barrier());
    out.push_back(forLoop("_red", intImm(slices), ForKind::Serial, std::move(slice)));
    if (anyAsync) out.push_back(asyncWait(0));
    return out;
  }

  // Output (row0 + row, col0 + col) = epilogue(acc), where it lies inside the output.
  std::vector<Stmt> storeOutput(const Expr &row, const Expr &col, const Expr &acc) const {
    std::vector<Stmt> out{let("_rp", Type::Int, intLocal("_row0") + row), let("_cp", Type::Int, intLocal("_col0") + col)};
    std::vector<Stmt> inside;
    decodeIndices(inside, t_.rows, intLocal("_rp"));
    decodeIndices(inside, t_.cols, intLocal("_cp"));
    inside.push_back(let("_acc", Type::Float, acc));
    inside.push_back(store(output_, t_.flatOut, t_.epilogue, loc_));
    // Off the diagonal, the transposed element too (no other tile computes it).
    if (t_.symmetric())
      inside.push_back(ifThen(binary(BinOp::Ne, intLocal("_row0"), intLocal("_col0")),
                              {store(output_, t_.mirrorOut, t_.epilogue, loc_)}));
    Expr guard = both(t_.rowsTotal % t_.shape.rows ? binary(BinOp::Lt, intLocal("_rp"), intImm(t_.rowsTotal)) : nullptr,
                      t_.colsTotal % t_.shape.cols ? binary(BinOp::Lt, intLocal("_cp"), intImm(t_.colsTotal)) : nullptr);
    if (guard)
      out.push_back(ifThen(guard, inside));
    else
      out.insert(out.end(), inside.begin(), inside.end());
    return out;
  }

  Stmt blocks(std::vector<Stmt> perTile, std::vector<Stmt> perThread) const {
    perTile.push_back(forLoop("_t", intImm(kThreads), ForKind::GpuBlockThreads, std::move(perThread)));
    return forLoop("_tile", intImm(t_.tiles()), ForKind::GpuTiles, std::move(perTile));
  }

private:
  const TiledContraction &t_;
  std::string output_;
  SourceLoc loc_;
};

// One term of t's sum from a value of a and one of b.
Expr termOf(const TiledContraction &t, const Expr &a, const Expr &b) {
  if (!t.combine) return a * b;
  return substitute(t.combine, [&](const std::string &name, VarKind kind) -> Expr {
    if (kind != VarKind::Local) return nullptr;
    return name == "_av" ? a : name == "_bv" ? b : nullptr;
  });
}

// How many consecutive elements of factor a's (or b's) slice one asynchronous copy into its
// `elem` shared array moves: up to 16 bytes' worth where the factor is a plain read of a buffer
// stored as `elem` (no conversion) that walks the innermost reduction index with unit stride,
// that index's extent is a multiple of the width (a copy stays in one row of the factor, and
// the reduction's end falls between copies), its guards do not read that index, and every
// other index and the constant offset move it by multiples of the width (each copy starts
// aligned to its size in a buffer that does: the runtime's start 64-byte aligned). 1 for an
// element at a time, 0 where the factor cannot be copied at all.
int64_t copyWidth(const TiledContraction &t, bool a, ElemType elem, const ElementTypes &types) {
  std::optional<Expr> read = plainRead(a ? t.a : t.b);
  if (!read) return 0;
  const std::optional<AsyncCopySource> source = asyncCopySource(*read);
  if (!source || types.of(source->load->name) != elem) return 0;
  const int64_t V = 16 / elemTypeBytes(elem);
  const IndexVar &inner = t.red.back();
  int64_t extent = 0;
  if (!(a ? t.aAlongRed : t.bAlongRed) || !isConst(inner.extent, &extent) || extent % V || t.shape.red % V ||
      (source->cond && mentionsVar(source->cond, inner.name)))
    return 1;
  const Expr index = unclampedIndex(source->load->args[0]);
  std::map<std::string, Expr> zero;
  bool aligned = strideIn(index, inner.name) == std::optional<int64_t>(1);
  visit(index, [&](const Expr &n) {
    if (n->kind != ExprKind::Var) return true;
    const std::optional<int64_t> stride = strideIn(index, n->name);
    aligned = aligned && stride && (n->name == inner.name || *stride % V == 0);
    zero[n->name] = intImm(0);
    return false;
  });
  int64_t offset = 0;
  const Expr origin = substitute(index, [&](const std::string &name, VarKind) -> Expr {
    return zero.count(name) ? intImm(0) : nullptr;
  });
  return aligned && isConst(origin, &offset) && offset % V == 0 ? V : 1;
}

// Marks t symmetric where it is: sets its mirrorOut (see TiledContraction::symmetric).
void markSymmetric(TiledContraction &t) {
  if (t.rows.size() != 1 || t.cols.size() != 1 || t.rowsTotal != t.colsTotal || t.shape.rows != t.shape.cols || t.combine)
    return;
  const std::string &r = t.rows[0].name, &c = t.cols[0].name;
  auto swapped = [&](const Expr &e) { return swapIndices(e, r, c); };
  if (!structurallyEqual(swapped(t.a), t.b) || !structurallyEqual(swapped(t.epilogue), t.epilogue)) return;
  Expr mirror = swapped(t.flatOut);
  if (structurallyEqual(mirror, t.flatOut)) return;
  t.mirrorOut = mirror;
}

} // namespace

Stmt tiledContractionBody(const TiledContraction &t, const std::string &output, SourceLoc loc) {
  const TileShape &sh = t.shape;
  const int64_t R = sh.rows, C = sh.cols, K = sh.red;
  const int64_t threadCols = C / sh.threadCols, threadRows = R / sh.threadRows; // threads along each side
  TileWriter w(t, output, loc);
  std::vector<Stmt> perTile;
  w.origin(perTile);
  // One column of padding: stores along the reduction hit distinct banks.
  perTile.push_back(sharedAlloc("_as", sh.stages * K * (R + 1)));
  perTile.push_back(sharedAlloc("_bs", sh.stages * K * (C + 1)));

  std::vector<Stmt> perThread;
  perThread.push_back(let("_tx", Type::Int, intLocal("_t") % intImm(threadCols)));
  perThread.push_back(let("_ty", Type::Int, intLocal("_t") / intImm(threadCols)));
  const int64_t accs = int64_t{sh.threadRows} * sh.threadCols;
  perThread.push_back(alloc("_accs", accs));
  perThread.push_back(forLoop("_i", intImm(accs), ForKind::Unrolled, {store("_accs", intLocal("_i"), floatImm(0), {})}));

  // Shared arrays [rl][ol]: a step of the slice reads one row of each.
  auto place = [](int64_t width) {
    return [width](const Expr &ol, const Expr &rl) { return rl * intImm(width + 1) + ol; };
  };
  Expr accIndex = intLocal("_i") * intImm(sh.threadCols) + intLocal("_j");
  Expr colInTile = intLocal("_tx") + intLocal("_j") * intImm(threadCols);
  Expr rowInTile = intLocal("_ty") + intLocal("_i") * intImm(threadRows);
  // Each step of the slice: the thread's columns of b into registers, then each of its rows
  // of a times them.
  Stmt step = forLoop(
      "_k", intImm(K), ForKind::Unrolled,
      {alloc("_bk", sh.threadCols),
       forLoop("_j", intImm(sh.threadCols), ForKind::Unrolled,
               {store("_bk", intLocal("_j"), load("_bs", w.inSlice(false, intLocal("_k") * intImm(C + 1) + colInTile)), {})}),
       forLoop("_i", intImm(sh.threadRows), ForKind::Unrolled,
               {let("_ak", Type::Float, load("_as", w.inSlice(true, intLocal("_k") * intImm(R + 1) + rowInTile))),
                forLoop("_j", intImm(sh.threadCols), ForKind::Unrolled,
                        {store("_accs", accIndex,
                               load("_accs", accIndex) + termOf(t, var("_ak", Type::Float, VarKind::Local),
                                                                load("_bk", intLocal("_j"))),
                               {})})})});
  // Two stages: asynchronous copies where both factors are plain reads.
  const bool async = sh.stages > 1 && plainRead(t.a) && plainRead(t.b);
  for (Stmt &s : w.reduction({"_as", K * (R + 1), place(R), async}, {"_bs", K * (C + 1), place(C), async}, {step}))
    perThread.push_back(s);
  perThread.push_back(forLoop(
      "_i", intImm(sh.threadRows), ForKind::Unrolled,
      {forLoop("_j", intImm(sh.threadCols), ForKind::Unrolled, w.storeOutput(rowInTile, colInTile, load("_accs", accIndex)))}));
  return w.blocks(perTile, perThread);
}

Stmt tensorCoreBody(const TiledContraction &t, const std::string &output, SourceLoc loc, ElemType elem,
                    const ElementTypes &types) {
  const TileShape &sh = t.shape;
  // TF32 (f32 operands) multiplies 8 deep, 16-bit types 16 deep. 16 bytes of padding per row.
  const bool tf32 = elem == ElemType::F32;
  const int64_t F = kFragmentSize, depth = tf32 ? kTf32FragmentDepth : kFragmentSize, K = sh.red;
  const int64_t ld = K + (tf32 ? 4 : 8);
  const int64_t FR = sh.rows / sh.warpRows / F, FC = sh.cols / sh.warpCols / F; // fragments per warp
  TileWriter w(t, output, loc);
  std::vector<Stmt> perTile;
  w.origin(perTile);
  // a as rows of m and b as columns of n, k contiguous in both: fragments A row-major and B
  // column-major with leading dimension ld.
  perTile.push_back(typedAlloc("_as", sh.stages * sh.rows * ld, elem, true));
  perTile.push_back(typedAlloc("_bs", sh.stages * sh.cols * ld, elem, true));
  // Each warp's accumulators pass through here on the way to the epilogue.
  perTile.push_back(typedAlloc("_cs", kThreads / 32 * F * F, ElemType::F32, true));

  std::vector<Stmt> perThread;
  perThread.push_back(let("_w", Type::Int, intLocal("_t") / intImm(32)));
  perThread.push_back(let("_lane", Type::Int, intLocal("_t") % intImm(32)));
  perThread.push_back(let("_wr", Type::Int, intLocal("_w") / intImm(sh.warpCols)));
  perThread.push_back(let("_wc", Type::Int, intLocal("_w") % intImm(sh.warpCols)));
  perThread.push_back(fragmentAlloc("_fc", FR * FC, Fragment::Accumulator, ElemType::F32, depth));
  perThread.push_back(fragmentAlloc("_fa", FR, Fragment::MatrixA, elem, depth));
  perThread.push_back(fragmentAlloc("_fb", FC, Fragment::MatrixB, elem, depth));
  perThread.push_back(forLoop("_f", intImm(FR * FC), ForKind::Unrolled, {matrixFill("_fc", intLocal("_f"), floatImm(0))}));

  auto place = [ld](const Expr &ol, const Expr &rl) { return ol * intImm(ld) + rl; };
  Expr accIndex = intLocal("_i") * intImm(FC) + intLocal("_j");
  Stmt step = forLoop(
      "_k", intImm(K / depth), ForKind::Unrolled,
      {forLoop("_i", intImm(FR), ForKind::Unrolled,
               {matrixLoad("_fa", intLocal("_i"),
                           load("_as", w.inSlice(true, (intLocal("_wr") * intImm(FR) + intLocal("_i")) * intImm(F * ld) +
                                                           intLocal("_k") * intImm(depth))),
                           ld)}),
       forLoop("_j", intImm(FC), ForKind::Unrolled,
               {matrixLoad("_fb", intLocal("_j"),
                           load("_bs", w.inSlice(false, (intLocal("_wc") * intImm(FC) + intLocal("_j")) * intImm(F * ld) +
                                                            intLocal("_k") * intImm(depth))),
                           ld)}),
       forLoop("_i", intImm(FR), ForKind::Unrolled,
               {forLoop("_j", intImm(FC), ForKind::Unrolled,
                        {matrixMma("_fc", accIndex, load("_fa", intLocal("_i")) * load("_fb", intLocal("_j")))})})});
  auto staging = [&](bool a) {
    const int64_t width = copyWidth(t, a, elem, types);
    // A 16-bit element is too small for a copy of its own (cp.async moves 4 bytes or more),
    // and one stage gains from copies only where they are wide.
    const bool async = width * elemTypeBytes(elem) >= 4 && (sh.stages > 1 || width > 1);
    return TileWriter::Staging{a ? "_as" : "_bs", (a ? sh.rows : sh.cols) * ld, place, async, width};
  };
  for (Stmt &s : w.reduction(staging(true), staging(false), {step}))
    perThread.push_back(s);

  // The epilogue, a fragment at a time: the warp stores it to its part of _cs, then each lane
  // takes 8 of its 256 elements.
  Expr warpArea = intLocal("_w") * intImm(F * F);
  Expr el = intLocal("_el");
  Expr row = (intLocal("_wr") * intImm(FR) + intLocal("_f") / intImm(FC)) * intImm(F) + el / intImm(F);
  Expr col = (intLocal("_wc") * intImm(FC) + intLocal("_f") % intImm(FC)) * intImm(F) + el % intImm(F);
  std::vector<Stmt> perElement{let("_el", Type::Int, intLocal("_lane") + intLocal("_q") * intImm(32))};
  for (Stmt &s : w.storeOutput(row, col, load("_cs", warpArea + el))) perElement.push_back(s);
  perThread.push_back(forLoop("_f", intImm(FR * FC), ForKind::Unrolled,
                              {matrixStore("_cs", warpArea, load("_fc", intLocal("_f")), F), warpBarrier(),
                               forLoop("_q", intImm(F * F / 32), ForKind::Unrolled, perElement), warpBarrier()}));
  return w.blocks(perTile, perThread);
}

std::shared_ptr<const TiledContraction> tileForGpu(const std::vector<IndexVar> &indices, const ExprNode &reduction,
                                                   const Expr &epilogue, const Expr &flatOut,
                                                   std::optional<ElemType> tensorCores, const std::string *shapeName) {
  if (reduction.kind != ExprKind::Reduce || reduction.reduceOp != ReduceOp::Sum) return nullptr;
  for (const IndexVar &v : indices)
    if (!isConst(v.extent)) return nullptr;
  std::vector<IndexVar> red;
  for (const ReduceVar &v : reduction.rvars) {
    if (!isConst(v.extent)) return nullptr;
    red.push_back({v.name, v.extent});
  }
  std::set<std::string> outNames;
  for (const IndexVar &v : indices) outNames.insert(v.name);

  // Factors that read output indices decide the split; the rest ride along with a.
  std::map<std::string, Expr> extents;
  for (const IndexVar &v : indices) extents[v.name] = v.extent;
  for (const IndexVar &v : red) extents[v.name] = v.extent;
  const Expr body = foldByIndexRanges(reduction.args[0], extents);
  std::vector<Expr> factors, varying, constant;
  factorsOf(body, factors);
  for (const Expr &f : factors) {
    std::set<std::string> vs = indexVarsOf(f);
    bool readsOut = std::any_of(vs.begin(), vs.end(), [&](const std::string &n) { return outNames.count(n); });
    (readsOut ? varying : constant).push_back(f);
  }
  // The contraction with a and b as its sides, or nullptr where a side has too few rows or
  // columns to tile.
  auto splitAs = [&](const Expr &a, const Expr &b) -> std::shared_ptr<TiledContraction> {
    std::set<std::string> va = indexVarsOf(a), vb = indexVarsOf(b);
    auto t = std::make_shared<TiledContraction>();
    for (const IndexVar &v : indices) {
      bool inA = va.count(v.name) > 0, inB = vb.count(v.name) > 0;
      (inA && !inB ? t->rows : !inA && inB ? t->cols : t->batch).push_back(v);
    }
    t->red = red;
    t->batchTotal = totalOf(t->batch);
    t->rowsTotal = totalOf(t->rows);
    t->colsTotal = totalOf(t->cols);
    t->redTotal = totalOf(red);
    if (t->rowsTotal < 16 || t->colsTotal < 16 || t->redTotal < 1) return nullptr;
    t->a = a;
    t->b = b;
    t->epilogue = epilogue;
    t->flatOut = flatOut;
    const std::string &innerRed = red.back().name;
    t->aAlongRed = unitStrideIn(a, innerRed) || !unitStrideIn(a, t->rows.back().name);
    t->bAlongRed = unitStrideIn(b, innerRed) || !unitStrideIn(b, t->cols.back().name);
    return t;
  };

  // Not a product: a function of exactly two reads, each of one side's output indices, and
  // of nothing else that varies.
  if (varying.size() < 2) {
    std::vector<Expr> loads;
    visit(body, [&](const Expr &n) {
      if (n->kind != ExprKind::Load) return true;
      if (std::none_of(loads.begin(), loads.end(), [&](const Expr &l) { return structurallyEqual(l, n); }))
        loads.push_back(n);
      return false;
    });
    if (loads.size() != 2) return nullptr;
    std::shared_ptr<TiledContraction> t = splitAs(loads[0], loads[1]);
    if (!t || t->rows.empty() || t->cols.empty()) return nullptr;
    t->combine = mutate(body, [&](const Expr &n) -> Expr {
      if (n->kind != ExprKind::Load) return nullptr;
      return var(structurallyEqual(n, loads[0]) ? "_av" : "_bv", Type::Float, VarKind::Local);
    });
    if (!freeIndexVars(t->combine).empty() || containsReduce(t->combine)) return nullptr;
    // A slice past the reduction's end is staged as zeros: their term must vanish.
    if (!isZero(termOf(*t, floatImm(0), floatImm(0)))) return nullptr;
    t->shape = chooseTileShape(*t, false, shapeName);
    return t;
  }
  if (varying.size() > 4) return nullptr;

  // Every way to put the varying factors on two sides; the best gives the most reuse.
  std::shared_ptr<TiledContraction> best;
  int64_t bestReuse = 0;
  for (unsigned mask = 1; mask + 1 < (1u << varying.size()); ++mask) {
    std::vector<Expr> sideA = constant, sideB;
    for (size_t i = 0; i < varying.size(); ++i) ((mask >> i) & 1 ? sideA : sideB).push_back(varying[i]);
    std::shared_ptr<TiledContraction> t = splitAs(product(sideA), product(sideB));
    if (!t) continue;
    int64_t reuse = std::min(t->rowsTotal, t->colsTotal);
    if (best && reuse <= bestReuse) continue;
    t->shape = chooseTileShape(*t, tensorCores.has_value(), shapeName);
    markSymmetric(*t);
    best = t;
    bestReuse = reuse;
  }
  return best;
}

} // namespace enc::ir
