// Distribution of sums over differences, so that contractions appear (Encoding's
// aggregation, as PyTorch-Encoding's own fallback computes it):
//
//   E[b, k, d] = sum(i: A[b, i, k] * (X[b, d, i] - C[k, d]))
//     ->  sum(i: A[b, i, k] * X[b, d, i]) - C[k, d] * sum(i: A[b, i, k])
//
// The first sum reads k only through A and d only through X: a product whose factors split
// the output indices into rows and columns, which the CPU and GPU schedules tile (a batched
// A^T X); the second is a plain reduction over fewer outputs. A sum is distributed only
// when that creates such a contraction that was not there before: distributing every sum
// of a difference would trade one pass for two and invite cancellation (x - mean) for
// nothing. Factors that do not depend on the reduction move out of it.
#include "compiler/Passes.h"

#include <algorithm>
#include <optional>
#include <set>

namespace enc::ir {
namespace {

constexpr size_t kMaxTerms = 4;

Expr negate(const Expr &e) { return unary(UnOp::Neg, e); }

// e as a sum of terms without additions at the top (nullopt past kMaxTerms).
std::optional<std::vector<Expr>> termsOf(const Expr &e) {
  if (e->type != Type::Float) return std::vector<Expr>{e};
  auto both = [&](bool subtract) -> std::optional<std::vector<Expr>> {
    auto a = termsOf(e->args[0]), b = termsOf(e->args[1]);
    if (!a || !b || a->size() + b->size() > kMaxTerms) return std::nullopt;
    for (const Expr &t : *b) a->push_back(subtract ? negate(t) : t);
    return a;
  };
  if (e->kind == ExprKind::Binary) {
    switch (e->binOp) {
    case BinOp::Add: return both(false);
    case BinOp::Sub: return both(true);
    case BinOp::Mul: {
      auto a = termsOf(e->args[0]), b = termsOf(e->args[1]);
      if (!a || !b || a->size() * b->size() > kMaxTerms) return std::nullopt;
      std::vector<Expr> out;
      for (const Expr &x : *a)
        for (const Expr &y : *b) out.push_back(x * y);
      return out;
    }
    case BinOp::Div: {
      auto a = termsOf(e->args[0]);
      if (!a) return std::nullopt;
      for (Expr &t : *a) t = t / e->args[1];
      return a;
    }
    default: break;
    }
  }
  if (e->kind == ExprKind::Unary && e->unOp == UnOp::Neg) {
    auto a = termsOf(e->args[0]);
    if (!a) return std::nullopt;
    for (Expr &t : *a) t = negate(t);
    return a;
  }
  return std::vector<Expr>{e};
}

std::set<std::string> indexVars(const Expr &e) {
  std::vector<std::string> v = freeIndexVars(e);
  return {v.begin(), v.end()};
}

} // namespace

// Whether the factors of `term` can be put on two sides so that some output index is read by
// one side only and another by the other side only (a contraction's rows and columns).
bool isContraction(const Expr &term, const std::set<std::string> &outVars) {
  std::vector<Expr> fs = productFactors(term);
  std::vector<std::set<std::string>> reads;
  for (const Expr &f : fs) {
    std::set<std::string> vs;
    for (const std::string &v : indexVars(f))
      if (outVars.count(v)) vs.insert(v);
    if (!vs.empty()) reads.push_back(vs);
  }
  if (reads.size() < 2 || reads.size() > 4) return false;
  for (unsigned mask = 1; mask + 1 < (1u << reads.size()); ++mask) {
    std::set<std::string> a, b;
    for (size_t i = 0; i < reads.size(); ++i) ((mask >> i) & 1 ? a : b).insert(reads[i].begin(), reads[i].end());
    bool rows = std::any_of(a.begin(), a.end(), [&](const std::string &v) { return !b.count(v); });
    bool cols = std::any_of(b.begin(), b.end(), [&](const std::string &v) { return !a.count(v); });
    if (rows && cols) return true;
  }
  return false;
}

namespace {

const ExprNode *mainSum(const Expr &value) {
  const ExprNode *r = firstReduce(value);
  return r && r->reduceOp == ReduceOp::Sum ? r : nullptr;
}

// coefficient * sum(rvars: rest), with the factors that do not read the reduction outside.
Expr sumOfTerm(const Expr &term, const ExprNode &r) {
  std::set<std::string> red;
  for (const ReduceVar &v : r.rvars) red.insert(v.name);
  std::vector<Expr> fs = productFactors(term), inside, outside;
  for (const Expr &f : fs) {
    std::set<std::string> vs = indexVars(f);
    (std::any_of(vs.begin(), vs.end(), [&](const std::string &v) { return red.count(v); }) ? inside : outside).push_back(f);
  }
  Expr body;
  for (const Expr &f : inside) body = body ? body * f : f;
  Expr s;
  if (body) {
    s = reduce(ReduceOp::Sum, r.rvars, body);
  } else {
    s = floatImm(1);
    for (const ReduceVar &v : r.rvars) s = s * cast(Type::Float, v.extent);
  }
  for (const Expr &f : outside) s = f * s;
  return s;
}

} // namespace

Program distributeSums(Program out) {
  for (Definition &d : out.defs) {
    if (d.isScatter()) continue;
    const ExprNode *r = mainSum(d.value);
    if (!r) continue;
    std::set<std::string> outVars;
    for (const IndexVar &v : d.indices) outVars.insert(v.name);
    if (isContraction(r->args[0], outVars)) continue; // tiled as it is
    auto terms = termsOf(r->args[0]);
    if (!terms || terms->size() < 2) continue;
    if (std::none_of(terms->begin(), terms->end(), [&](const Expr &t) { return isContraction(t, outVars); })) continue;
    Expr sum;
    for (const Expr &t : *terms) {
      Expr s = sumOfTerm(t, *r);
      sum = sum ? sum + s : s;
    }
    d.value = mutate(d.value, [&](const Expr &n) -> Expr { return n.get() == r ? sum : nullptr; });
  }
  return out;
}

} // namespace enc::ir
