// CPU: a stride-1 convolution's weight gradient
//
//   grad_weight[o, c, kh, kw] = sum(b, h, w: grad_Y[b, o, h, w] * X[b, c, h + kh - 1, w + kw - 1])
//
// is a dot product along w whose tile blocks kh and kw: each step loads one row of grad_Y per
// output channel and one row of X per (kh, kw), 10 vector loads for 9 multiply-adds where the
// tile is the 3 x 3 window alone (3 input channels). Summed over the input's rows r = h + kh - 1
// instead,
//
//   grad_weight[o, c, kh, kw] = sum(b, r, w: grad_Y[b, o, r - kh + 1, w] * X[b, c, r, w + kw - 1])
//
// X's row no longer depends on kh: the window's three rows share each load of X, and grad_Y's
// row moves with kh (6 loads for 9 multiply-adds). Both sums cover the same terms: r runs over
// X's rows, and a read out of range is 0 in either form (the terms of a padded row, and those
// of an r whose grad_Y row does not exist).
#include "compiler/IndexRange.h"
#include "compiler/LocalNames.h"
#include "compiler/Passes.h"
#include "compiler/TileContractions.h"

#include <algorithm>
#include <set>

namespace enc::ir {
namespace {

constexpr int64_t kMaxTaps = 7; // the output index k beside h: a kernel's taps, at most this many
constexpr int64_t kMinRun = 8;  // h: at least this many positions

struct Slide {
  size_t rvar;     // the reduction index h (a position in the sum's rvars)
  Expr window;     // the read whose index is h + k + c (X)
  size_t position; // where that index sits in the window read
  std::string k;   // the output index beside h there (kh)
  int64_t offset;  // c
};

// The read `a` has h as one of its indices, plainly, and nowhere else.
bool readsPlainly(const Expr &a, const std::string &h) {
  size_t plain = 0;
  for (const Expr &i : a->args) {
    if (i->kind == ExprKind::Var && i->varKind == VarKind::Index && i->name == h) ++plain;
    else if (mentionsVar(i, h)) return false;
  }
  return plain == 1;
}

std::optional<Slide> slideOf(const Program &p, const Definition &d, const Expr &body) {
  if (body->kind != ExprKind::Binary || body->binOp != BinOp::Mul) return std::nullopt;
  const Expr &sum = d.value;
  // Not the innermost reduction index: that one is the tile's vectorized index.
  for (size_t ri = 0; ri + 1 < sum->rvars.size(); ++ri) {
    const std::string &h = sum->rvars[ri].name;
    for (int side = 0; side < 2; ++side) {
      const Expr &plain = body->args[side], &window = body->args[1 - side];
      if (plain->kind != ExprKind::Access || window->kind != ExprKind::Access || !readsPlainly(plain, h)) continue;
      const TensorDecl *t = p.tensor(window->name), *pt = p.tensor(plain->name);
      if (!t || t->shape.size() != window->args.size() || !pt || pt->shape.size() != plain->args.size()) continue;
      // The plain read's dimension along h has exactly h's positions: after the change of
      // variables, its reads outside them (h < 0 or past the end) are the terms that are 0.
      bool exact = false;
      for (size_t at = 0; at < plain->args.size(); ++at)
        if (plain->args[at]->kind == ExprKind::Var && plain->args[at]->name == h)
          exact = structurallyEqual(pt->shape[at], sum->rvars[ri].extent);
      if (!exact) continue;
      for (size_t at = 0; at < window->args.size(); ++at) {
        const Expr &ix = window->args[at];
        if (strideIn(ix, h) != std::optional<int64_t>(1) || !isConst(t->shape[at], nullptr)) continue;
        if (std::any_of(window->args.begin(), window->args.end(),
                        [&](const Expr &other) { return other != ix && mentionsVar(other, h); }))
          continue;
        for (const IndexVar &k : d.indices) {
          std::vector<std::string> vars = freeIndexVars(ix);
          if (strideIn(ix, k.name) != std::optional<int64_t>(1) || mentionsVar(plain, k.name) ||
              std::any_of(vars.begin(), vars.end(), [&](const std::string &v) { return v != h && v != k.name; }))
            continue;
          // k a kernel's few taps, h a long run of positions (not the forward pass's
          // sum(kh: X[h + kh - 1] * W[kh]), which this would turn into a sum over all of X's rows).
          int64_t taps = 0, run = 0;
          if (!isConst(k.extent, &taps) || !isConst(sum->rvars[ri].extent, &run) || taps > kMaxTaps || run < kMinRun)
            continue;
          int64_t offset = 0;
          if (!isConst(substituteIndices(ix, {{h, intImm(0)}, {k.name, intImm(0)}}), &offset)) continue;
          return Slide{ri, window, at, k.name, offset};
        }
      }
    }
  }
  return std::nullopt;
}

// A name for the new reduction index that no index of d uses.
std::string inputIndexName(const Definition &d, const std::string &h) {
  std::set<std::string> taken;
  for (const IndexVar &v : d.indices) taken.insert(v.name);
  for (const ReduceVar &v : d.value->rvars) taken.insert(v.name);
  return freshName(h + "_in", taken);
}

} // namespace

Program slideWindowSums(Program out) {
  for (Definition &d : out.defs) {
    if (d.isScatter() || isCollective(d)) continue;
    const Expr &sum = d.value;
    if (sum->kind != ExprKind::Reduce || sum->reduceOp != ReduceOp::Sum || sum->rvars.size() < 2) continue;
    std::map<std::string, Expr> extents;
    bool constant = true;
    for (const IndexVar &v : d.indices) extents[v.name] = v.extent;
    for (const ReduceVar &r : sum->rvars) extents[r.name] = r.extent;
    for (const auto &[name, extent] : extents) constant = constant && isConst(extent, nullptr);
    if (!constant) continue;
    const Expr body = foldByIndexRanges(sum->args[0], extents);
    std::optional<Slide> s = slideOf(out, d, body); // its tensors, which this pass does not change
    if (!s) continue;
    const std::string h = sum->rvars[s->rvar].name, r = inputIndexName(d, h);
    // The window read's index becomes r; every other use of h, r - k - c.
    Expr shifted = indexVar(r) - indexVar(s->k);
    if (s->offset) shifted = shifted + intImm(-s->offset);
    std::vector<Expr> windowAt = s->window->args;
    windowAt[s->position] = indexVar(r);
    Expr window = access(s->window->name, windowAt, s->window->loc);
    Expr other = body->args[0] == s->window ? body->args[1] : body->args[0];
    other = substituteIndices(other, {{h, shifted}});
    Expr slid = body->args[0] == s->window ? window * other : other * window;
    std::vector<ReduceVar> rvars = sum->rvars;
    rvars[s->rvar] = {r, out.tensor(s->window->name)->shape[s->position]};
    d.value = reduce(ReduceOp::Sum, rvars, slid);
  }
  return out;
}

} // namespace enc::ir
