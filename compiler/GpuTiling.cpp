#include "compiler/GpuTiling.h"

#include "compiler/IndexRange.h"
#include "compiler/TileContractions.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

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

int64_t TiledContraction::tiles() const {
  return batchTotal * ((rowsTotal + kTileRows - 1) / kTileRows) * ((colsTotal + kTileCols - 1) / kTileCols);
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
    best = t;
    bestReuse = reuse;
  }
  return best;
}

} // namespace enc::ir
