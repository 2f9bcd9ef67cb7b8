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
#include "compiler/IndexRange.h"
#include "compiler/Passes.h"
#include "compiler/TileContractions.h"

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

// A read A[..., s * r + e] to rewrite: s the stride along the innermost reduction index r, e
// of output indices only, with the constant range [lo, hi].
struct StridedRead {
  Expr access;
  int64_t stride = 0, lo = 0, span = 0; // span: (hi - lo) / s, the positions past r's extent
  Expr rest;                            // e
};

std::optional<StridedRead> stridedRead(const Expr &access, const ReduceVar &r, const ExprNode &sum,
                                       const std::map<std::string, Expr> &outputExtents) {
  if (access->args.empty()) return std::nullopt;
  for (size_t i = 0; i + 1 < access->args.size(); ++i)
    if (mentionsVar(access->args[i], r.name)) return std::nullopt;
  const Expr &last = access->args.back();
  std::optional<int64_t> s = strideIn(last, r.name);
  if (!s || *s < 2 || *s > kMaxStride) return std::nullopt;
  Expr rest = substituteIndices(last, {{r.name, intImm(0)}});
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
  StridedRead out;
  out.access = access;
  out.stride = *s;
  out.rest = rest;
  out.lo = range->lo;
  out.span = (range->hi - out.lo) / *s;
  return out;
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
      out.defs.push_back(d);
      continue;
    }
    std::vector<std::pair<Expr, Expr>> replacement; // read -> the read of its phases
    for (const StridedRead &s : strided) {
      const TensorDecl &x = *in.tensor(s.access->name);
      Expr S = intImm(s.stride);
      Expr length = r.extent + intImm(s.span); // U: positions of each phase the sum reads
      auto key = std::make_tuple(x.name, s.stride, s.lo, print(length));
      auto [it, fresh] = copies.emplace(key, "");
      if (fresh) {
        std::string name = x.name + "_phases";
        for (int i = 2; out.tensor(name); ++i) name = x.name + "_phases" + std::to_string(i);
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
      at.push_back(indexVar(r.name) + offset / S);
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
