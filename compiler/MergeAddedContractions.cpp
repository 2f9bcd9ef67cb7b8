// CPU: a temporary that adds a scaled sum into the one definition that reads it, read there
// as an addend at the reader's own places, and whose sum runs over the same ranges as the
// reader's own sum, is inlined and the two sums become one:
//
//   grad_X_sum3[b, d, i] = X[b, d, i] * (2 * s[b, i]) + -2 * sum(k1: gA[b, k1, i] * C[k1, d])
//   grad_X[b, d, i]      = sum(k: gY[b, k, d] * A[b, k, i]) + grad_X_sum3[b, d, i]
//     ->
//   grad_X[b, d, i] = sum(k: gY[b, k, d] * A[b, k, i] + -2 * (gA[b, k, i] * C[k, d])) + X[b, d, i] * (2 * s[b, i])
//
// (Encoding's input gradient): one blocked kernel whose tile reads both pairs, instead of two
// kernels with a [B, D, N] temporary written and read back between them. Only where the merged
// body is one the blocked code widens. The GPU keeps them apart: its tiles multiply one
// product per sum (GpuTiling.h).
#include "compiler/AddedSums.h"
#include "compiler/Passes.h"
#include "compiler/TileContractions.h"

#include <algorithm>
#include <map>
#include <set>

namespace enc::ir {
namespace {

// An addend `scale * sum(...)` (either order, nested: -1 * (2 * sum(...))) with a scale free
// of reductions: the sum and its scale (1 for a bare sum).
struct ScaledSum {
  Expr sum;
  Expr scale;
};

std::optional<ScaledSum> scaledSum(const Expr &e) {
  if (e->kind == ExprKind::Reduce && e->reduceOp == ReduceOp::Sum && e->type == Type::Float) return ScaledSum{e, floatImm(1)};
  if (e->kind != ExprKind::Binary || e->binOp != BinOp::Mul || e->type != Type::Float) return std::nullopt;
  for (int side = 0; side < 2; ++side) {
    const Expr &factor = e->args[1 - side];
    if (containsReduce(factor)) continue;
    if (std::optional<ScaledSum> inner = scaledSum(e->args[side])) {
      bool bound = std::any_of(inner->sum->rvars.begin(), inner->sum->rvars.end(),
                               [&](const ReduceVar &r) { return mentionsVar(factor, r.name); });
      if (!bound) return ScaledSum{inner->sum, factor * inner->scale};
    }
  }
  return std::nullopt;
}

Expr added(const std::vector<Expr> &terms) {
  Expr out;
  for (const Expr &t : terms) out = out ? out + t : t;
  return out ? out : floatImm(0);
}

// How often each tensor is read (in values and scatter targets), by one definition or all.
void countReads(const Definition &d, std::map<std::string, int> &counts, int sign) {
  auto count = [&](const Expr &e) {
    visit(e, [&](const Expr &n) {
      if (n->kind == ExprKind::Access) counts[n->name] += sign;
      return true;
    });
  };
  count(d.value);
  for (const Expr &s : d.scatter) count(s);
}

// d's value with the temporary `read` (an addend of it) inlined from `t` and the sums merged,
// or nullptr.
Expr mergedValue(const Definition &d, const Expr &read, const Definition &t) {
  std::vector<Expr> terms = addends(d.value);
  auto readAt = std::find_if(terms.begin(), terms.end(), [&](const Expr &e) { return e == read; });
  if (readAt == terms.end()) return nullptr;
  // The reader's one sum, an addend.
  auto ownAt = terms.end();
  std::optional<ScaledSum> own;
  for (auto it = terms.begin(); it != terms.end(); ++it)
    if (containsReduce(*it)) {
      if (ownAt != terms.end() || !(own = scaledSum(*it))) return nullptr;
      ownAt = it;
    }
  if (!own) return nullptr;
  // The temporary's value at the reader's place: addends free of sums, and one scaled sum.
  std::map<std::string, Expr> at;
  for (size_t i = 0; i < t.indices.size(); ++i) at[t.indices[i].name] = read->args[i];
  std::vector<Expr> rest;
  std::vector<Expr> inlined = addends(substituteIndices(t.value, at));
  std::optional<ScaledSum> theirs;
  for (const Expr &e : inlined) {
    if (!containsReduce(e)) {
      rest.push_back(e);
      continue;
    }
    if (theirs || !(theirs = scaledSum(e))) return nullptr;
  }
  if (!theirs) return nullptr;
  const Expr &a = own->sum;
  std::optional<Expr> bBody = bodyOnRangesOf(a, theirs->sum);
  // Their scale moves inside a's sum: a name a binds would capture it.
  if (!bBody || std::any_of(a->rvars.begin(), a->rvars.end(),
                            [&](const ReduceVar &r) { return mentionsVar(theirs->scale, r.name); }))
    return nullptr;
  Expr body = own->scale * a->args[0] + theirs->scale * *bBody;
  if (!vectorizable(body, /*allowReads=*/true)) return nullptr;
  Expr merged = reduce(ReduceOp::Sum, a->rvars, body);
  std::vector<Expr> out;
  for (auto it = terms.begin(); it != terms.end(); ++it) {
    if (it == ownAt) out.push_back(merged);
    else if (it == readAt) out.insert(out.end(), rest.begin(), rest.end());
    else out.push_back(*it);
  }
  return added(out);
}

} // namespace

// Definitions are visited in order; a merged temporary is only marked removed (and skipped)
// until the end, so the indexes by position stay valid.
Program mergeAddedContractions(Program p) {
  std::map<std::string, int> reads; // kept up to date as values change
  std::map<std::string, std::vector<size_t>> definers;
  for (size_t i = 0; i < p.defs.size(); ++i) {
    countReads(p.defs[i], reads, +1);
    definers[p.defs[i].tensor].push_back(i);
  }
  std::vector<bool> removed(p.defs.size(), false);
  std::set<std::string> removedTensors;
  for (size_t di = 0; di < p.defs.size(); ++di) {
    Definition &d = p.defs[di];
    if (removed[di] || d.isScatter()) continue;
    std::vector<Expr> terms = addends(d.value);
    for (const Expr &term : terms) {
      if (term->kind != ExprKind::Access || reads[term->name] != 1) continue;
      const TensorDecl *decl = p.tensor(term->name);
      // Its one definition: a temporary read once has not been merged away.
      const std::vector<size_t> &defs = definers[term->name];
      // Read at the reader's own places (each of its indices once): a temporary over fewer
      // indices (a sum per row that every column reads) would be summed again per column.
      std::set<std::string> places;
      for (const Expr &a : term->args)
        if (a->kind == ExprKind::Var && std::any_of(d.indices.begin(), d.indices.end(),
                                                     [&](const IndexVar &v) { return v.name == a->name; }))
          places.insert(a->name);
      if (places.size() != d.indices.size() || term->args.size() != d.indices.size()) continue;
      if (!decl || decl->role != TensorRole::Temp || defs.size() != 1 || p.defs[defs[0]].isScatter() ||
          p.defs[defs[0]].indices.size() != term->args.size())
        continue;
      const size_t ti = defs[0];
      Expr value = mergedValue(d, term, p.defs[ti]);
      if (!value) continue;
      countReads(d, reads, -1);
      countReads(p.defs[ti], reads, -1);
      d.value = value;
      countReads(d, reads, +1);
      removed[ti] = true;
      removedTensors.insert(term->name);
      definers.erase(term->name);
      break;
    }
  }
  std::vector<Definition> kept;
  for (size_t i = 0; i < p.defs.size(); ++i)
    if (!removed[i]) kept.push_back(std::move(p.defs[i]));
  p.defs = std::move(kept);
  p.tensors.eraseIf([&](const TensorDecl &t) { return removedTensors.count(t.name) > 0; });
  return p;
}

} // namespace enc::ir
