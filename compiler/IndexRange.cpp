#include "compiler/IndexRange.h"

#include <algorithm>

namespace enc::ir {
namespace {

// Floor division, as the IR's integer '/' is.
int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b, r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;
}

// Bounds beyond this are not worth tracking (and sums of two of them cannot overflow).
constexpr int64_t kLimit = int64_t{1} << 40;

std::optional<IndexRange> checked(int64_t lo, int64_t hi) {
  if (lo < -kLimit || hi > kLimit) return std::nullopt;
  return IndexRange{lo, hi};
}

} // namespace

std::optional<IndexRange> indexRange(const Expr &e, const std::map<std::string, Expr> &extents) {
  switch (e->kind) {
  case ExprKind::IntImm: return checked(e->intValue, e->intValue);
  case ExprKind::Var: {
    auto it = extents.find(e->name);
    int64_t n = 0;
    if (e->varKind != VarKind::Index || it == extents.end() || !isConst(it->second, &n) || n <= 0) return std::nullopt;
    return checked(0, n - 1);
  }
  case ExprKind::Binary: {
    if (e->type != Type::Int) return std::nullopt;
    auto a = indexRange(e->args[0], extents);
    auto b = indexRange(e->args[1], extents);
    if (!a || !b) return std::nullopt;
    switch (e->binOp) {
    case BinOp::Add: return checked(a->lo + b->lo, a->hi + b->hi);
    case BinOp::Sub: return checked(a->lo - b->hi, a->hi - b->lo);
    case BinOp::Mul: {
      // Bounds up to 2^40 still make products beyond 64 bits: those ranges are not tracked.
      int64_t p[4];
      if (__builtin_mul_overflow(a->lo, b->lo, &p[0]) || __builtin_mul_overflow(a->lo, b->hi, &p[1]) ||
          __builtin_mul_overflow(a->hi, b->lo, &p[2]) || __builtin_mul_overflow(a->hi, b->hi, &p[3]))
        return std::nullopt;
      return checked(*std::min_element(p, p + 4), *std::max_element(p, p + 4));
    }
    case BinOp::Div:
      // By a positive constant: floor division is monotonic.
      if (b->lo != b->hi || b->lo <= 0) return std::nullopt;
      return checked(floorDiv(a->lo, b->lo), floorDiv(a->hi, b->lo));
    case BinOp::Mod:
      if (b->lo != b->hi || b->lo <= 0) return std::nullopt;
      if (a->lo >= 0 && a->hi < b->lo) return a; // already below the modulus
      return checked(0, b->lo - 1);
    case BinOp::Min: return checked(std::min(a->lo, b->lo), std::min(a->hi, b->hi));
    case BinOp::Max: return checked(std::max(a->lo, b->lo), std::max(a->hi, b->hi));
    default: return std::nullopt;
    }
  }
  case ExprKind::Unary:
    if (e->unOp == UnOp::Neg && e->type == Type::Int)
      if (auto a = indexRange(e->args[0], extents)) return checked(-a->hi, -a->lo);
    return std::nullopt;
  default: return std::nullopt;
  }
}

Expr foldByIndexRanges(const Expr &e, const std::map<std::string, Expr> &extents) {
  return mutate(e, [&](const Expr &n) -> Expr {
    if (n->kind != ExprKind::Binary) return nullptr;
    if (n->type == Type::Int) {
      auto r = indexRange(n, extents);
      if (r && r->lo == r->hi) return intImm(r->lo);
      // min(a, b) and max(a, b) where one side's range lies below the other's (a clamp of an
      // index that stays in range).
      if (n->binOp == BinOp::Min || n->binOp == BinOp::Max) {
        auto a = indexRange(n->args[0], extents), b = indexRange(n->args[1], extents);
        if (a && b && a->hi <= b->lo) return n->args[n->binOp == BinOp::Min ? 0 : 1];
        if (a && b && b->hi <= a->lo) return n->args[n->binOp == BinOp::Min ? 1 : 0];
        return nullptr;
      }
      // x % k with x already in [0, k) is x.
      int64_t k = 0;
      auto x = n->binOp == BinOp::Mod && isConst(n->args[1], &k) ? indexRange(n->args[0], extents) : std::nullopt;
      return x && x->lo >= 0 && x->hi < k ? n->args[0] : nullptr;
    }
    // A conjunction or disjunction with a side the ranges decided.
    if (n->binOp == BinOp::And || n->binOp == BinOp::Or) {
      const bool identity = n->binOp == BinOp::And;
      for (int side = 0; side < 2; ++side)
        if (const Expr &c = n->args[side]; c->kind == ExprKind::BoolImm)
          return c->boolValue == identity ? n->args[1 - side] : c;
      return nullptr;
    }
    if (n->type != Type::Bool || n->args[0]->type != Type::Int) return nullptr;
    auto a = indexRange(n->args[0], extents), b = indexRange(n->args[1], extents);
    if (!a || !b) return nullptr;
    switch (n->binOp) {
    case BinOp::Lt: return a->hi < b->lo ? boolImm(true) : a->lo >= b->hi ? boolImm(false) : nullptr;
    case BinOp::Le: return a->hi <= b->lo ? boolImm(true) : a->lo > b->hi ? boolImm(false) : nullptr;
    case BinOp::Gt: return a->lo > b->hi ? boolImm(true) : a->hi <= b->lo ? boolImm(false) : nullptr;
    case BinOp::Ge: return a->lo >= b->hi ? boolImm(true) : a->hi < b->lo ? boolImm(false) : nullptr;
    default: return nullptr;
    }
  });
}

} // namespace enc::ir
