// CPU: a strided convolution's weight gradient
//
//   grad_weight[o, c, kh, kw] = sum(b, h, w: grad_Y[b, o, h, w] * X[b, c, h * 2 + kh - 1, w * 2 + kw - 1])
//
// is a dot product along w for the tiler (no output index has unit stride in a read), 28
// positions per row at stride 2: two 16-lane steps, one masked, and a sum across lanes per
// output and chunk of the batch, over a phase copy of X. Summed instead as
//
//   grad_Y_t[b, h, w, o]          = grad_Y[b, o, h, w]
//   grad_weight_t[c, kh, kw, o]   = sum(b, h, w: grad_Y_t[b, h, w, o] * X[b, c, h * 2 + kh - 1, w * 2 + kw - 1])
//   grad_weight[o, c, kh, kw]     = grad_weight_t[c, kh, kw, o]
//
// it is an outer product vectorized along o, the kernel's taps its rows (9 rows of 32 lanes):
// each step two vector loads of grad_Y_t and 9 broadcasts of X at any stride, no copy of X,
// the sums kept in registers over the whole reduction. At stride 1 the dot product's rows are
// long (56 positions: 48 + 8 lanes, no mask) and as fast as the transposed form, so the rule
// takes strided reads only.
#include "compiler/IndexRange.h"
#include "compiler/Passes.h"
#include "compiler/TileContractions.h"

#include <algorithm>

namespace enc::ir {
namespace {

constexpr int64_t kMinLanes = 32;             // the transposed output's last index: one full tile of lanes at least
constexpr int64_t kMinRows = 4, kMaxRows = 12; // the other output indices after the parallel one: the tile's rows

struct Match {
  Expr sum;        // the definition's value
  Expr transposed; // the read to copy transposed (grad_Y)
  size_t position; // where the first output index sits in that read's indices
};

// Where `v` sits among the read's indices, when every index is a distinct plain index variable.
std::optional<size_t> plainPositionOf(const Expr &read, const std::string &v) {
  std::optional<size_t> at;
  for (size_t i = 0; i < read->args.size(); ++i) {
    const Expr &a = read->args[i];
    if (a->kind != ExprKind::Var || a->varKind != VarKind::Index) return std::nullopt;
    for (size_t j = 0; j < i; ++j)
      if (read->args[j]->name == a->name) return std::nullopt;
    if (a->name == v) at = i;
  }
  return at;
}

std::optional<Match> matchOf(const Program &p, const Definition &d) {
  if (d.isScatter() || isCollective(d) || d.indices.size() < 3) return std::nullopt;
  const Expr &sum = d.value;
  if (sum->kind != ExprKind::Reduce || sum->reduceOp != ReduceOp::Sum || sum->rvars.empty()) return std::nullopt;
  std::map<std::string, Expr> extents;
  for (const IndexVar &v : d.indices) extents[v.name] = v.extent;
  for (const ReduceVar &r : sum->rvars) extents[r.name] = r.extent;
  for (const auto &[name, extent] : extents)
    if (!isConst(extent, nullptr)) return std::nullopt;
  // Lanes: the first output index, a full tile of them; rows: the indices after the second.
  int64_t lanes = 0, rows = 1;
  isConst(d.indices[0].extent, &lanes);
  for (size_t i = 2; i < d.indices.size(); ++i) rows *= d.indices[i].extent->intValue;
  if (lanes < kMinLanes || rows < kMinRows || rows > kMaxRows) return std::nullopt;
  const Expr body = foldByIndexRanges(sum->args[0], extents);
  if (body->kind != ExprKind::Binary || body->binOp != BinOp::Mul) return std::nullopt;
  const std::string &first = d.indices[0].name, &inner = sum->rvars.back().name;
  for (int side = 0; side < 2; ++side) {
    const Expr &a = body->args[side], &b = body->args[1 - side];
    if (a->kind != ExprKind::Access || b->kind != ExprKind::Access || mentionsVar(b, first)) continue;
    const TensorDecl *t = p.tensor(a->name);
    if (!t || t->shape.size() != a->args.size() || a->args.empty()) continue;
    // a: the first output index plainly, the innermost reduction index last (unit stride);
    // b: strided along that reduction index in its last index only.
    std::optional<size_t> at = plainPositionOf(a, first);
    if (!at || *at + 1 == a->args.size() || a->args.back()->name != inner) continue;
    // The rows (c, kh, kw) are read by b alone.
    if (std::any_of(d.indices.begin() + 1, d.indices.end(), [&](const IndexVar &v) { return mentionsVar(a, v.name); }))
      continue;
    std::optional<int64_t> stride = b->args.empty() ? std::nullopt : strideIn(b->args.back(), inner);
    if (!stride || *stride < 2 ||
        std::any_of(b->args.begin(), b->args.end() - 1, [&](const Expr &i) { return mentionsVar(i, inner); }))
      continue;
    return Match{reduce(ReduceOp::Sum, sum->rvars, body), a, *at};
  }
  return std::nullopt;
}

} // namespace

Program transposeWeightGradients(const Program &in) {
  Program out = in;
  out.defs.clear();
  for (const Definition &d : in.defs) {
    std::optional<Match> m = matchOf(in, d);
    if (!m) {
      out.defs.push_back(d);
      continue;
    }
    const Expr &read = m->transposed;
    const TensorDecl &source = *in.tensor(read->name);
    // The copy: the read's indices with the first output index moved last.
    std::vector<size_t> order;
    for (size_t i = 0; i < read->args.size(); ++i)
      if (i != m->position) order.push_back(i);
    order.push_back(m->position);
    TensorDecl copyDecl{out.unusedTensorName(source.name + "_t"), TensorRole::Temp, {}, d.loc};
    Definition copy;
    copy.tensor = copyDecl.name;
    copy.loc = d.loc;
    std::vector<Expr> sourceAt(read->args.size()), copyAt;
    for (size_t k = 0; k < order.size(); ++k) {
      std::string v = "i" + std::to_string(k);
      copyDecl.shape.push_back(source.shape[order[k]]);
      copy.indices.push_back({v, source.shape[order[k]]});
      sourceAt[order[k]] = indexVar(v);
      copyAt.push_back(read->args[order[k]]);
    }
    copy.value = access(source.name, sourceAt, d.loc);
    out.tensors.push_back(copyDecl);
    out.defs.push_back(copy);
    // The sum into the transposed output, reading the copy.
    TensorDecl sumDecl{out.unusedTensorName(d.tensor + "_t"), TensorRole::Temp, {}, d.loc};
    Definition transposedSum;
    transposedSum.tensor = sumDecl.name;
    transposedSum.loc = d.loc;
    for (size_t i = 1; i < d.indices.size(); ++i) transposedSum.indices.push_back(d.indices[i]);
    transposedSum.indices.push_back(d.indices[0]);
    for (const IndexVar &v : transposedSum.indices) sumDecl.shape.push_back(v.extent);
    Expr copied = access(copyDecl.name, copyAt, read->loc);
    transposedSum.value = mutate(m->sum, [&](const Expr &n) -> Expr { return n == read ? copied : nullptr; });
    out.tensors.push_back(sumDecl);
    out.defs.push_back(transposedSum);
    // The output, transposed back.
    Definition back = d;
    std::vector<Expr> at;
    for (const IndexVar &v : transposedSum.indices) at.push_back(indexVar(v.name));
    back.value = access(sumDecl.name, at, d.loc);
    out.defs.push_back(back);
  }
  return out;
}

} // namespace enc::ir
