// Stride phases of a contraction (see TileContractions.h): the gradient of a strided
// convolution reads its output gradient at (v + a - k) / s where (v + a - k) % s == 0, so a
// plain loop nest spends s - 1 of every s steps of k on terms that vanish, and nothing about
// v is affine enough to vectorize. Writing v = s * q + r (phase r < s) and k = k0 + s * t with
// k0 = (r + a) mod s, the condition holds for every term and the quotient is q - t + δ,
// δ = (r + a - k0) / s exact: unit stride in q and no division left.
#include "compiler/TileContractions.h"

#include <algorithm>

namespace enc::ir {
namespace {

// A numerator n = v + c * k + a of a division or remainder by the constant s: v an output
// index with coefficient 1, k a reduction index with coefficient c = ±1, a free of both and of
// every other index.
struct PhaseForm {
  std::string v, k;
  int64_t s = 0, c = 0;
  Expr a;
  Expr numerator;
};

bool freeOfIndices(const Expr &e) {
  return !anyNode(e, [](const Expr &n) { return n->kind == ExprKind::Var && n->varKind == VarKind::Index; });
}

std::optional<PhaseForm> formOf(const Expr &divOrMod, const Contraction &c) {
  int64_t s = 0;
  if (!isConst(divOrMod->args[1], &s) || s < 2 || divOrMod->type != Type::Int) return std::nullopt;
  const Expr &n = divOrMod->args[0];
  PhaseForm f;
  f.s = s;
  f.numerator = n;
  for (const IndexVar &v : c.indices)
    if (strideIn(n, v.name) == std::optional<int64_t>(1) && f.v.empty()) f.v = v.name;
    else if (mentionsVar(n, v.name)) return std::nullopt;
  for (const ReduceVar &r : c.rvars) {
    if (!mentionsVar(n, r.name)) continue;
    std::optional<int64_t> k = strideIn(n, r.name);
    if (!f.k.empty() || !k || (*k != 1 && *k != -1)) return std::nullopt;
    f.k = r.name;
    f.c = *k;
  }
  if (f.v.empty() || f.k.empty() || f.v == c.indices[0].name) return std::nullopt;
  f.a = substituteIndices(n, {{f.v, intImm(0)}, {f.k, intImm(0)}});
  if (!freeOfIndices(f.a)) return std::nullopt;
  return f;
}

// The first form whose output index occurs only inside its divisions and remainders (by
// structurally equal numerators), in the body and the epilogue.
std::optional<PhaseForm> findPhaseForm(const Contraction &c) {
  std::vector<PhaseForm> forms;
  visit(c.body, [&](const Expr &n) {
    if (n->kind == ExprKind::Binary && (n->binOp == BinOp::Div || n->binOp == BinOp::Mod))
      if (std::optional<PhaseForm> f = formOf(n, c)) forms.push_back(*f);
    return true;
  });
  for (const PhaseForm &f : forms) {
    // Every occurrence of v, with the matching divisions cut off, must be gone.
    auto cut = [&](const Expr &e) {
      return mutate(e, [&](const Expr &n) -> Expr {
        if (n->kind == ExprKind::Binary && (n->binOp == BinOp::Div || n->binOp == BinOp::Mod) &&
            isConst(n->args[1], nullptr) && n->args[1]->intValue == f.s && structurallyEqual(n->args[0], f.numerator))
          return intImm(0);
        return nullptr;
      });
    };
    if (!mentionsVar(cut(c.body), f.v) && !mentionsVar(c.epilogue, f.v)) return f;
  }
  return std::nullopt;
}

Contraction splitOne(const Contraction &c, const PhaseForm &f) {
  Expr s = intImm(f.s);
  std::string rName = f.v + ".r", qName = f.v + ".q", tName = f.k + ".t";
  Expr r = indexVar(rName), q = indexVar(qName), t = indexVar(tName);
  // k ≡ -c (r + a) (mod s). With c = -1: k0 = (r + a) mod s and r + a - k0 = s * floor((r + a) / s);
  // with c = 1: k0 = -(r + a) mod s and r + a + k0 = s * ceil((r + a) / s).
  Expr k0 = (f.c == -1 ? r + f.a : intImm(0) - (r + f.a)) % s;
  Expr quotient = f.c == -1 ? q - t + (r + f.a) / s : q + t + (r + f.a + intImm(f.s - 1)) / s;
  auto rewrite = [&](const Expr &e) {
    Expr cut = mutate(e, [&](const Expr &n) -> Expr {
      if (n->kind != ExprKind::Binary || (n->binOp != BinOp::Div && n->binOp != BinOp::Mod) ||
          !isConst(n->args[1], nullptr) || n->args[1]->intValue != f.s || !structurallyEqual(n->args[0], f.numerator))
        return nullptr;
      return n->binOp == BinOp::Mod ? intImm(0) : quotient;
    });
    return substituteIndices(cut, {{f.v, s * q + r}, {f.k, k0 + s * t}});
  };
  Contraction out = c;
  out.body = rewrite(c.body);
  out.epilogue = rewrite(c.epilogue);
  out.flatOut = substituteIndices(c.flatOut, {{f.v, s * q + r}});
  auto v = std::find_if(out.indices.begin(), out.indices.end(), [&](const IndexVar &i) { return i.name == f.v; });
  Expr n = v->extent;
  // Every phase has n / s positions where s divides n (56 columns, stride 2: 28 and 28): a
  // constant extent, which the tiler can plan its vector tiles for.
  int64_t nc = 0;
  Expr positions = isConst(n, &nc) && nc % f.s == 0 ? intImm(nc / f.s) : (n - r + intImm(f.s - 1)) / s;
  *v = IndexVar{qName, positions};
  out.indices.insert(v, IndexVar{rName, s});
  for (ReduceVar &rv : out.rvars)
    if (rv.name == f.k) rv = ReduceVar{tName, (rv.extent - k0 + intImm(f.s - 1)) / s};
  return out;
}

} // namespace

Contraction splitStridePhases(const Contraction &contraction) {
  Contraction c = contraction;
  for (int i = 0; i < 4; ++i) { // each output index splits at most once (height and width)
    std::optional<PhaseForm> f = findPhaseForm(c);
    if (!f) break;
    c = splitOne(c, *f);
  }
  return c;
}

} // namespace enc::ir
