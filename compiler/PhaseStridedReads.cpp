// CPU: a sum that reads a tensor with a constant stride s > 1 along its innermost reduction
// index reads a copy of that tensor split into its s stride phases instead, with unit stride.
//
// A stride-2 convolution's weight gradient
//
//   grad_weight[o, c, kh, kw] = sum(b, h, w: grad_Y[b, o, h, w] * X[b, c, h * 2 + kh - 1, w * 2 + kw - 1])
//
// is a dot-product tile along w (TileContractions.cpp) whose X reads are each a wider masked
// vector load and a shuffle, with a lane mask for the padding. Writing the last index as
// s * w + e (e an expression of output indices only, lo <= e <= hi constants; here e = kw - 1)
// and copying once per pass
//
//   X_phases[b, c, y, p, u] = X[b, c, y, s * u + p + lo]         (out of range: 0, the padding)
//
// for u < W_out + (hi - lo) / s, the read becomes
// X_phases[b, c, h * 2 + kh - 1, (e - lo) % s, w + (e - lo) / s]: a phase
// that only the output index decides (a constant once the tile unrolls kw) and a position that
// moves by one element with w, always in bounds. The copy reads and writes X once; the sum
// reads it once per block of output channels.
//
// The forward pass, Y[b, o, h, w] = sum(c, kh, kw: X[b, c, h * 2 + kh - 1, w * 2 + kw - 1] * W[...]),
// is an outer-product tile vectorized along the output's w, strided 2 in X: with e = kw - 1 of
// reduction indices only, the read of X_phases[..., (e - lo) % s, w + (e - lo) / s] has the same
// phase and offset in every lane, a plain vector load.
#include "compiler/IndexRange.h"
#include "compiler/Passes.h"
#include "compiler/TileContractions.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace enc::ir {
namespace {

constexpr int64_t kMinPositions = 16; // the innermost reduction: at least one dot-product vector
constexpr int64_t kMaxStride = 8;
constexpr int64_t kMinVectorIndex = 8; // an output index the outer product could vectorize

// The one reduction of a definition's value, when it is a sum over a body the blocked
// schedules can widen.
const ExprNode *tileableSum(const Definition &d) {
  if (d.isScatter() || isCollective(d)) return nullptr;
  const ExprNode *r = firstReduce(d.value);
  if (!r || r->reduceOp != ReduceOp::Sum || r->rvars.empty() || !vectorizable(r->args[0], /*allowReads=*/true))
    return nullptr;
  return r;
}

// A read A[..., s * v + e] to rewrite: s the stride along v (the innermost reduction index, or
// the output's last index), e of the other kind of index only, with the constant range
// [lo, hi].
struct StridedRead {
  Expr access;
  std::string along;                    // v
  Expr extent;                          // v's
  int64_t stride = 0, lo = 0, span = 0; // span: (hi - lo) / s, the positions past v's extent
  Expr rest;                            // e
};

// The read's last index as s * v + e, when v occurs in no other index and 2 <= s <= kMaxStride.
std::optional<std::pair<int64_t, Expr>> stridedLast(const Expr &access, const std::string &v) {
  if (access->args.empty()) return std::nullopt;
  for (size_t i = 0; i + 1 < access->args.size(); ++i)
    if (mentionsVar(access->args[i], v)) return std::nullopt;
  const Expr &last = access->args.back();
  std::optional<int64_t> s = strideIn(last, v);
  if (!s || *s < 2 || *s > kMaxStride) return std::nullopt;
  return std::make_pair(*s, substituteIndices(last, {{v, intImm(0)}}));
}

StridedRead phasedRead(const Expr &access, const std::string &v, Expr extent, int64_t stride, Expr rest,
                       IndexRange range) {
  return {access, v, std::move(extent), stride, range.lo, (range.hi - range.lo) / stride, std::move(rest)};
}

std::optional<StridedRead> stridedRead(const Expr &access, const ReduceVar &r, const ExprNode &sum,
                                       const std::map<std::string, Expr> &outputExtents) {
  auto last = stridedLast(access, r.name);
  if (!last) return std::nullopt;
  const auto &[s, rest] = *last;
  for (const ReduceVar &v : sum.rvars)
    if (mentionsVar(rest, v.name)) return std::nullopt;
  // An output index with unit stride there and enough positions to vectorize (a correlation
  // Y[j] = sum(r: A[r] * X[j + 2 * r])) may be the outer product's vector index: the phase
  // would put it under a division.
  for (const auto &[name, extent] : outputExtents) {
    int64_t n = 0;
    if (strideIn(rest, name) == std::optional<int64_t>(1) && (!isConst(extent, &n) || n >= kMinVectorIndex))
      return std::nullopt;
  }
  std::optional<IndexRange> range = indexRange(rest, outputExtents);
  if (!range) return std::nullopt;
  return phasedRead(access, r.name, r.extent, s, rest, *range);
}

// The outer-product form: A[..., s * j + e] with j the output's last index (a strided
// convolution's forward pass, X[b, c, h * 2 + kh - 1, w * 2 + kw - 1] along w) and e of
// reduction indices only. The phase (e - lo) % s and offset (e - lo) / s are the same for every
// lane of a tile vectorized along j, so the read becomes a plain vector load.
std::optional<StridedRead> outputStridedRead(const Expr &access, const IndexVar &j, const ExprNode &sum) {
  auto last = stridedLast(access, j.name);
  if (!last) return std::nullopt;
  const auto &[s, rest] = *last;
  std::map<std::string, Expr> reductionExtents;
  for (const ReduceVar &v : sum.rvars) reductionExtents[v.name] = v.extent;
  std::optional<IndexRange> range = indexRange(rest, reductionExtents);
  // Every phase the copy writes is read (a 1 x 1 stride-2 convolution reads one phase only).
  if (!range || range->hi - range->lo + 1 < s) return std::nullopt;
  return phasedRead(access, j.name, j.extent, s, rest, *range);
}

// Whether some read moves with the reduction but not along j: an outer product's other
// operand (a convolution's weights), which each phased vector load then serves. A sum of the
// strided reads alone (average pooling) would only pay for the copy.
bool weighted(const Expr &body, const std::string &j, const ExprNode &sum) {
  return anyNode(body, [&](const Expr &n) {
    if (n->kind != ExprKind::Access || mentionsVar(n, j)) return false;
    return std::any_of(sum.rvars.begin(), sum.rvars.end(), [&](const ReduceVar &v) { return mentionsVar(n, v.name); });
  });
}

// Whether every other read that moves along r has it as its unit-stride index (the sum then
// is a dot product along r once the strided reads are phased).
bool otherReadsContiguous(const Expr &body, const ReduceVar &r, const std::vector<StridedRead> &strided) {
  bool ok = true;
  visit(body, [&](const Expr &n) {
    if (n->kind != ExprKind::Access || !mentionsVar(n, r.name)) return true;
    for (const StridedRead &s : strided)
      if (s.access == n) return true;
    for (size_t i = 0; i + 1 < n->args.size(); ++i)
      if (mentionsVar(n->args[i], r.name)) ok = false;
    if (n->args.empty() || strideIn(n->args.back(), r.name) != std::optional<int64_t>(1)) ok = false;
    return true;
  });
  return ok;
}

} // namespace

Program phaseStridedReads(const Program &in) {
  Program out = in;
  out.defs.clear();
  // One copy per tensor, stride, offset and length: (tensor, s, lo, U) -> its name.
  std::map<std::tuple<std::string, int64_t, int64_t, std::string>, std::string> copies;
  for (const Definition &d : in.defs) {
    const ExprNode *sum = tileableSum(d);
    if (!sum) {
      out.defs.push_back(d);
      continue;
    }
    const ReduceVar &r = sum->rvars.back();
    int64_t positions = 0;
    bool shortReduction = isConst(r.extent, &positions) && positions < kMinPositions;
    std::map<std::string, Expr> outputExtents;
    for (const IndexVar &v : d.indices) outputExtents[v.name] = v.extent;
    std::vector<StridedRead> strided;
    visit(sum->args[0], [&](const Expr &n) {
      if (n->kind != ExprKind::Access) return true;
      if (const TensorDecl *t = in.tensor(n->name); t && t->shape.size() == n->args.size())
        if (std::optional<StridedRead> s = stridedRead(n, r, *sum, outputExtents)) strided.push_back(*s);
      return true;
    });
    if (shortReduction || strided.empty() || !otherReadsContiguous(sum->args[0], r, strided)) {
      strided.clear();
      // Else the outer product along the output's last index j, when j has enough positions
      // to vectorize and is strided only in the reads to rewrite.
      const IndexVar j = d.indices.empty() ? IndexVar{} : d.indices.back();
      int64_t columns = 0;
      if (!d.indices.empty() && !(isConst(j.extent, &columns) && columns < kMinVectorIndex) &&
          weighted(sum->args[0], j.name, *sum))
        visit(sum->args[0], [&](const Expr &n) {
          if (n->kind != ExprKind::Access) return true;
          if (const TensorDecl *t = in.tensor(n->name); t && t->shape.size() == n->args.size())
            if (std::optional<StridedRead> s = outputStridedRead(n, j, *sum)) strided.push_back(*s);
          return true;
        });
      ReduceVar jr{j.name, j.extent};
      if (strided.empty() || !otherReadsContiguous(sum->args[0], jr, strided)) {
        out.defs.push_back(d);
        continue;
      }
    }
    std::vector<std::pair<Expr, Expr>> replacement; // read -> the read of its phases
    for (const StridedRead &s : strided) {
      const TensorDecl &x = *in.tensor(s.access->name);
      Expr S = intImm(s.stride);
      Expr length = s.extent + intImm(s.span); // U: positions of each phase the sum reads
      auto key = std::make_tuple(x.name, s.stride, s.lo, print(length));
      auto [it, fresh] = copies.emplace(key, "");
      if (fresh) {
        std::string name = out.unusedTensorName(x.name + "_phases");
        it->second = name;
        TensorDecl decl{name, TensorRole::Temp, {}, d.loc};
        Definition copy;
        copy.tensor = name;
        copy.loc = d.loc;
        std::vector<Expr> at;
        for (size_t i = 0; i + 1 < x.shape.size(); ++i) {
          std::string v = "i" + std::to_string(i);
          decl.shape.push_back(x.shape[i]);
          copy.indices.push_back({v, x.shape[i]});
          at.push_back(indexVar(v));
        }
        decl.shape.push_back(S);
        decl.shape.push_back(length);
        copy.indices.push_back({"phase", S});
        copy.indices.push_back({"u", length});
        // Positions outside X read 0, as the sum's own read did there.
        Expr column = S * indexVar("u") + indexVar("phase");
        at.push_back(s.lo < 0 ? column - intImm(-s.lo) : column + intImm(s.lo));
        copy.value = access(x.name, at, d.loc);
        out.tensors.push_back(decl);
        out.defs.push_back(copy);
      }
      std::vector<Expr> at(s.access->args.begin(), s.access->args.end() - 1);
      Expr offset = s.rest - intImm(s.lo); // in [0, s * span + s)
      at.push_back(offset % S);
      at.push_back(indexVar(s.along) + offset / S);
      replacement.emplace_back(s.access, access(it->second, at, s.access->loc));
    }
    Definition rewritten = d;
    rewritten.value = mutate(d.value, [&](const Expr &n) -> Expr {
      for (const auto &[read, phased] : replacement)
        if (structurallyEqual(n, read)) return phased;
      return nullptr;
    });
    out.defs.push_back(rewritten);
  }
  return out;
}

} // namespace enc::ir
