#include "compiler/GpuTiling.h"

#include "compiler/IndexRange.h"
#include "compiler/TileContractions.h"
#include "compiler/codegen/cuda/CudaCodegen.h"

#include "support/Error.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
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

Expr product(const std::vector<Expr> &fs) {
  Expr p;
  for (const Expr &f : fs) p = p ? p * f : f;
  return p ? p : floatImm(1);
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

} // namespace

const std::vector<TileShape> &gpuTileShapes() {
  // 64 x 64 tiles, 16 deep, 4 x 4 outputs per thread: small problems still fill the GPU.
  // 128 x 128 tiles, 8 deep, 8 x 8 per thread: twice the multiply-adds per shared read.
  static const std::vector<TileShape> shapes = {{64, 64, 16, 4, 4}, {128, 128, 8, 8, 8}};
  for (const TileShape &s : shapes)
    ENC_INTERNAL_ASSERT((s.rows / s.threadRows) * (s.cols / s.threadCols) == codegen::kCudaBlockSize &&
                            s.rows * s.red % codegen::kCudaBlockSize == 0 && s.cols * s.red % codegen::kCudaBlockSize == 0,
                        "GPU tile shape {}x{}x{} does not fit a block", s.rows, s.cols, s.red);
  return shapes;
}

int64_t TiledContraction::tiles() const {
  return batchTotal * ((rowsTotal + shape.rows - 1) / shape.rows) * ((colsTotal + shape.cols - 1) / shape.cols);
}

std::string tileShapeName(const TileShape &s) { return fmt::format("{}x{}x{}", s.rows, s.cols, s.red); }

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

// The tile shape for a problem: the large tiles where every dimension fills them and there
// are still enough blocks to occupy a large GPU (a few per multiprocessor of ~132), else
// the small ones.
TileShape chooseTileShape(const TiledContraction &t) {
  if (std::optional<TileShape> forced = tileShapeFromEnvironment()) return *forced;
  const TileShape &large = gpuTileShapes()[1];
  int64_t largeTiles = t.batchTotal * ((t.rowsTotal + large.rows - 1) / large.rows) *
                       ((t.colsTotal + large.cols - 1) / large.cols);
  if (t.rowsTotal >= large.rows && t.colsTotal >= large.cols && t.redTotal >= 64 && largeTiles >= 256) return large;
  return gpuTileShapes()[0];
}

Expr intLocal(const std::string &name) { return var(name, Type::Int, VarKind::Local); }

// Lets binding `vars` (row-major) from the flat position `flat`.
void decode(std::vector<Stmt> &out, const std::vector<IndexVar> &vars, const Expr &flat) {
  Expr rest = flat;
  for (size_t i = vars.size(); i-- > 0;) {
    out.push_back(let(vars[i].name, Type::Int, i == 0 ? rest : rest % vars[i].extent));
    rest = rest / vars[i].extent;
  }
}

Expr both(Expr a, Expr b) {
  if (!a) return b;
  if (!b) return a;
  return binary(BinOp::And, std::move(a), std::move(b));
}

} // namespace

Stmt tiledContractionBody(const TiledContraction &t, const std::string &output, SourceLoc loc) {
  const TileShape &sh = t.shape;
  const int64_t R = sh.rows, C = sh.cols, K = sh.red, threads = codegen::kCudaBlockSize;
  const int64_t tilesC = (t.colsTotal + C - 1) / C, tilesR = (t.rowsTotal + R - 1) / R;
  const int64_t threadCols = C / sh.threadCols, threadRows = R / sh.threadRows; // threads along each side
  const Expr tile = intLocal("_tile"), thread = intLocal("_t");

  std::vector<Stmt> perTile;
  perTile.push_back(let("_col0", Type::Int, (tile % intImm(tilesC)) * intImm(C)));
  perTile.push_back(let("_row0", Type::Int, ((tile / intImm(tilesC)) % intImm(tilesR)) * intImm(R)));
  decode(perTile, t.batch, tile / intImm(tilesC * tilesR));
  // One column of padding: stores along the reduction hit distinct banks.
  perTile.push_back(sharedAlloc("_as", K * (R + 1)));
  perTile.push_back(sharedAlloc("_bs", K * (C + 1)));

  std::vector<Stmt> perThread;
  perThread.push_back(let("_tx", Type::Int, thread % intImm(threadCols)));
  perThread.push_back(let("_ty", Type::Int, thread / intImm(threadCols)));
  const int64_t accs = int64_t{sh.threadRows} * sh.threadCols;
  perThread.push_back(alloc("_accs", accs));
  perThread.push_back(forLoop("_i", intImm(accs), ForKind::Unrolled, {store("_accs", intLocal("_i"), floatImm(0), {})}));

  // The slice of a factor at reduction offset _red0: element e of the slice goes to
  // shared[rl * (width + 1) + ol]; consecutive threads walk the factor's unit-stride side.
  const bool redPartial = t.redTotal % K != 0;
  auto stage = [&](const std::string &shared, const Expr &factor, const std::vector<IndexVar> &own, int64_t ownTotal,
                   const std::string &origin, int64_t width, bool alongRed, const std::string &q) {
    std::vector<Stmt> body;
    Expr e = thread + intLocal(q) * intImm(threads);
    body.push_back(let("_ol", Type::Int, alongRed ? e / intImm(K) : e % intImm(width)));
    body.push_back(let("_rl", Type::Int, alongRed ? e % intImm(K) : e / intImm(width)));
    body.push_back(let("_op", Type::Int, intLocal(origin) + intLocal("_ol")));
    body.push_back(let("_rp", Type::Int, intLocal("_red0") + intLocal("_rl")));
    decode(body, own, intLocal("_op"));
    decode(body, t.red, intLocal("_rp"));
    Expr inRange = both(ownTotal % width ? binary(BinOp::Lt, intLocal("_op"), intImm(ownTotal)) : nullptr,
                        redPartial ? binary(BinOp::Lt, intLocal("_rp"), intImm(t.redTotal)) : nullptr);
    Expr value = inRange ? select(inRange, factor, floatImm(0)) : factor;
    body.push_back(store(shared, intLocal("_rl") * intImm(width + 1) + intLocal("_ol"), value, {}));
    return forLoop(q, intImm(width * K / threads), ForKind::Unrolled, body);
  };

  std::vector<Stmt> perSlice;
  perSlice.push_back(let("_red0", Type::Int, intLocal("_red") * intImm(K)));
  perSlice.push_back(stage("_as", t.a, t.rows, t.rowsTotal, "_row0", R, t.aAlongRed, "_qa"));
  perSlice.push_back(stage("_bs", t.b, t.cols, t.colsTotal, "_col0", C, t.bAlongRed, "_qb"));
  perSlice.push_back(barrier());
  // Each step of the slice: the thread's columns of b into registers, then each of its rows
  // of a times them.
  Expr accIndex = intLocal("_i") * intImm(sh.threadCols) + intLocal("_j");
  Expr colInTile = intLocal("_tx") + intLocal("_j") * intImm(threadCols);
  Expr rowInTile = intLocal("_ty") + intLocal("_i") * intImm(threadRows);
  perSlice.push_back(forLoop(
      "_k", intImm(K), ForKind::Unrolled,
      {alloc("_bk", sh.threadCols),
       forLoop("_j", intImm(sh.threadCols), ForKind::Unrolled,
               {store("_bk", intLocal("_j"), load("_bs", intLocal("_k") * intImm(C + 1) + colInTile), {})}),
       forLoop("_i", intImm(sh.threadRows), ForKind::Unrolled,
               {let("_ak", Type::Float, load("_as", intLocal("_k") * intImm(R + 1) + rowInTile)),
                forLoop("_j", intImm(sh.threadCols), ForKind::Unrolled,
                        {store("_accs", accIndex,
                               load("_accs", accIndex) + var("_ak", Type::Float, VarKind::Local) *
                                                             load("_bk", intLocal("_j")),
                               {})})})}));
  perSlice.push_back(barrier());
  perThread.push_back(forLoop("_red", intImm((t.redTotal + K - 1) / K), ForKind::Serial, perSlice));

  // The epilogue: each of the thread's outputs inside the output, through `epilogue`.
  std::vector<Stmt> perCol;
  perCol.push_back(let("_cp", Type::Int, intLocal("_col0") + colInTile));
  std::vector<Stmt> colBody;
  decode(colBody, t.cols, intLocal("_cp"));
  colBody.push_back(let("_acc", Type::Float, load("_accs", accIndex)));
  colBody.push_back(store(output, t.flatOut, t.epilogue, loc));
  if (t.colsTotal % C)
    perCol.push_back(ifThen(binary(BinOp::Lt, intLocal("_cp"), intImm(t.colsTotal)), colBody));
  else
    perCol.insert(perCol.end(), colBody.begin(), colBody.end());
  std::vector<Stmt> perRow;
  perRow.push_back(let("_rp", Type::Int, intLocal("_row0") + rowInTile));
  std::vector<Stmt> rowBody;
  decode(rowBody, t.rows, intLocal("_rp"));
  rowBody.push_back(forLoop("_j", intImm(sh.threadCols), ForKind::Unrolled, perCol));
  if (t.rowsTotal % R)
    perRow.push_back(ifThen(binary(BinOp::Lt, intLocal("_rp"), intImm(t.rowsTotal)), rowBody));
  else
    perRow.insert(perRow.end(), rowBody.begin(), rowBody.end());
  perThread.push_back(forLoop("_i", intImm(sh.threadRows), ForKind::Unrolled, perRow));

  perTile.push_back(forLoop("_t", intImm(threads), ForKind::GpuBlockThreads, perThread));
  return forLoop("_tile", intImm(t.tiles()), ForKind::GpuTiles, perTile);
}

std::shared_ptr<const TiledContraction> tileForGpu(const std::vector<IndexVar> &indices, const ExprNode &reduction,
                                                   const Expr &epilogue, const Expr &flatOut) {
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
  std::vector<Expr> factors, varying, constant;
  factorsOf(foldByIndexRanges(reduction.args[0], extents), factors);
  for (const Expr &f : factors) {
    std::set<std::string> vs = indexVarsOf(f);
    bool readsOut = std::any_of(vs.begin(), vs.end(), [&](const std::string &n) { return outNames.count(n); });
    (readsOut ? varying : constant).push_back(f);
  }
  if (varying.size() < 2 || varying.size() > 4) return nullptr;

  // Every way to put the varying factors on two sides; the best gives the most reuse.
  std::shared_ptr<TiledContraction> best;
  int64_t bestReuse = 0;
  for (unsigned mask = 1; mask + 1 < (1u << varying.size()); ++mask) {
    std::vector<Expr> sideA = constant, sideB;
    for (size_t i = 0; i < varying.size(); ++i) ((mask >> i) & 1 ? sideA : sideB).push_back(varying[i]);
    Expr a = product(sideA), b = product(sideB);
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
    if (t->rowsTotal < 16 || t->colsTotal < 16 || t->redTotal < 1) continue;
    int64_t reuse = std::min(t->rowsTotal, t->colsTotal);
    if (best && reuse <= bestReuse) continue;
    t->a = a;
    t->b = b;
    t->epilogue = epilogue;
    t->flatOut = flatOut;
    const std::string &innerRed = red.back().name;
    t->aAlongRed = unitStrideIn(a, innerRed) || !unitStrideIn(a, t->rows.back().name);
    t->bAlongRed = unitStrideIn(b, innerRed) || !unitStrideIn(b, t->cols.back().name);
    t->shape = chooseTileShape(*t);
    best = t;
    bestReuse = reuse;
  }
  return best;
}

} // namespace enc::ir
