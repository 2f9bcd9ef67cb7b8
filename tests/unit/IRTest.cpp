// Unit tests of the shared expression IR: folding constructors, printing, traversal and
// rewriting helpers, structural equality and the cost model.
#include "compiler/IR.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

using namespace enc::ir;

namespace {

Expr ivar(const char *n) { return var(n, Type::Int, VarKind::Index); }
Expr size(const char *n) { return var(n, Type::Int, VarKind::Size); }
Expr fparam(const char *n) { return var(n, Type::Float, VarKind::Param); }
Expr bparam(const char *n) { return var(n, Type::Bool, VarKind::Param); }
Expr X(std::vector<Expr> idx) { return access("X", std::move(idx)); }

int64_t intOf(const Expr &e) {
  EXPECT_EQ(e->kind, ExprKind::IntImm) << print(e);
  return e->intValue;
}

double floatOf(const Expr &e) {
  EXPECT_EQ(e->kind, ExprKind::FloatImm) << print(e);
  return e->floatValue;
}

} // namespace

TEST(IR, IntegerDivisionAndModuloFloor) {
  // Python semantics: the quotient rounds toward -inf, the remainder takes the divisor's sign.
  struct Case {
    int64_t a, b, div, mod;
  };
  const Case cases[] = {{-7, 2, -4, 1}, {7, 2, 3, 1},   {7, -2, -4, -1}, {-7, -2, 3, -1},
                        {6, -3, -2, 0}, {-6, 3, -2, 0}, {0, 5, 0, 0},    {-1, 4, -1, 3}};
  for (const Case &c : cases) {
    EXPECT_EQ(intOf(binary(BinOp::Div, intImm(c.a), intImm(c.b))), c.div) << c.a << " // " << c.b;
    EXPECT_EQ(intOf(binary(BinOp::Mod, intImm(c.a), intImm(c.b))), c.mod) << c.a << " % " << c.b;
  }
  EXPECT_EQ(intOf(intImm(-7) / intImm(2)), -4);
  EXPECT_EQ(intOf(intImm(-7) % intImm(2)), 1);
  // Division by a constant zero is left for run time.
  Expr z = intImm(1) / intImm(0);
  EXPECT_EQ(z->kind, ExprKind::Binary);
  EXPECT_EQ(z->binOp, BinOp::Div);
  EXPECT_EQ((intImm(1) % intImm(0))->kind, ExprKind::Binary);
}

TEST(IR, ConstantFolding) {
  EXPECT_EQ(intOf(intImm(2) + intImm(3) * intImm(4)), 14);
  EXPECT_EQ(intOf(intImm(2) - intImm(5)), -3);
  EXPECT_EQ(intOf(binary(BinOp::Pow, intImm(3), intImm(4))), 81);
  EXPECT_EQ(intOf(binary(BinOp::Min, intImm(3), intImm(-4))), -4);
  EXPECT_EQ(intOf(binary(BinOp::Max, intImm(3), intImm(-4))), 3);
  EXPECT_EQ(intOf(unary(UnOp::Neg, intImm(5))), -5);
  EXPECT_DOUBLE_EQ(floatOf(floatImm(1.5) * floatImm(2)), 3.0);
  EXPECT_DOUBLE_EQ(floatOf(floatImm(1) / floatImm(4)), 0.25); // float division is exact
  EXPECT_DOUBLE_EQ(floatOf(binary(BinOp::Pow, floatImm(2), floatImm(0.5))), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(floatOf(unary(UnOp::Neg, floatImm(2.5))), -2.5);

  Expr lt = binary(BinOp::Lt, intImm(1), intImm(2));
  ASSERT_EQ(lt->kind, ExprKind::BoolImm);
  EXPECT_TRUE(lt->boolValue);
  EXPECT_FALSE(binary(BinOp::Ge, floatImm(1), floatImm(2))->boolValue);
  EXPECT_FALSE(binary(BinOp::And, boolImm(true), boolImm(false))->boolValue);
  EXPECT_TRUE(binary(BinOp::Or, boolImm(true), boolImm(false))->boolValue);
  EXPECT_FALSE(unary(UnOp::Not, boolImm(true))->boolValue);
}

TEST(IR, Identities) {
  Expr i = ivar("i");
  Expr f = fparam("f");
  // Adding zero or multiplying by one gives back the very same node.
  EXPECT_EQ(i + intImm(0), i);
  EXPECT_EQ(intImm(0) + i, i);
  EXPECT_EQ(i - intImm(0), i);
  EXPECT_EQ(i * intImm(1), i);
  EXPECT_EQ(intImm(1) * i, i);
  EXPECT_EQ(i / intImm(1), i);
  EXPECT_EQ(f + floatImm(0), f);
  EXPECT_EQ(f * floatImm(1), f);
  EXPECT_EQ(f / floatImm(1), f);
  // Integer times zero is zero; float times zero is not folded (NaN and inf stay NaN).
  EXPECT_EQ(intOf(i * intImm(0)), 0);
  EXPECT_EQ(intOf(intImm(0) * i), 0);
  EXPECT_EQ((f * floatImm(0))->kind, ExprKind::Binary);
  EXPECT_EQ(intOf(i % intImm(1)), 0);
  // 0 - x is a subtraction, not x.
  EXPECT_EQ((intImm(0) - i)->kind, ExprKind::Binary);
  // Logical identities.
  Expr c = binary(BinOp::Lt, i, size("N"));
  EXPECT_EQ(binary(BinOp::And, boolImm(true), c), c);
  EXPECT_EQ(binary(BinOp::And, c, boolImm(true)), c);
  EXPECT_FALSE(binary(BinOp::And, boolImm(false), c)->boolValue);
  EXPECT_TRUE(binary(BinOp::Or, c, boolImm(true))->boolValue);
  EXPECT_EQ(binary(BinOp::Or, boolImm(false), c), c);
}

// Multiples of the divisor pass through floor division and modulo: the rewrite is exact for
// negative operands too (checked here by brute force with the floor semantics written out).
TEST(IR, MultiplesPassThroughDivisionAndModulo) {
  Expr x = ivar("x"), y = ivar("y");
  EXPECT_EQ(print((x * intImm(6) + y) / intImm(3)), "x * 2 + y / 3");
  EXPECT_EQ(print((y + x * intImm(4)) / intImm(4)), "x + y / 4");
  EXPECT_EQ(print((x * intImm(6) + y) % intImm(3)), "y % 3");
  EXPECT_EQ(print((x * intImm(5) + y) / intImm(3)), "(x * 5 + y) / 3"); // 3 does not divide 5
  // Decoding and re-encoding a position gives it back; with another divisor it stays.
  Expr p = x * intImm(7) + y;
  EXPECT_EQ(print((p / intImm(5)) * intImm(5) + p % intImm(5)), "x * 7 + y");
  EXPECT_EQ(print(p % intImm(5) + (p / intImm(5)) * intImm(5)), "x * 7 + y");
  EXPECT_EQ(print((p / intImm(5)) * intImm(4) + p % intImm(5)), "(x * 7 + y) / 5 * 4 + (x * 7 + y) % 5");
  auto floorDiv = [](int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); };
  auto floorMod = [&](int64_t a, int64_t b) { return a - b * floorDiv(a, b); };
  for (int64_t k : {1, 3, 4})
    for (int64_t m : {k, 2 * k, -3 * k})
      for (int64_t xv = -7; xv <= 7; ++xv)
        for (int64_t yv = -9; yv <= 9; ++yv) {
          const int64_t a = xv * m + yv;
          EXPECT_EQ(floorDiv(a, k), xv * (m / k) + floorDiv(yv, k)) << xv << " " << yv << " " << m << " " << k;
          EXPECT_EQ(floorMod(a, k), floorMod(yv, k));
          // The rewritten expressions, evaluated at (xv, yv).
          auto at = [&](const Expr &e) {
            return intOf(substitute(e, [&](const std::string &n, VarKind) -> Expr { return intImm(n == "x" ? xv : yv); }));
          };
          EXPECT_EQ(at((x * intImm(m) + y) / intImm(k)), floorDiv(a, k));
          EXPECT_EQ(at((x * intImm(m) + y) % intImm(k)), floorMod(a, k));
        }
}

TEST(IR, TypePromotion) {
  Expr i = ivar("i");
  Expr f = fparam("f");
  // Int constant with a float: the constant becomes a float constant.
  Expr a = intImm(1) + f;
  ASSERT_EQ(a->kind, ExprKind::Binary);
  EXPECT_EQ(a->type, Type::Float);
  EXPECT_EQ(a->args[0]->kind, ExprKind::FloatImm);
  EXPECT_DOUBLE_EQ(a->args[0]->floatValue, 1.0);
  // Int variable with a float: a cast.
  Expr b = i * f;
  EXPECT_EQ(b->type, Type::Float);
  EXPECT_EQ(b->args[0]->kind, ExprKind::Cast);
  EXPECT_EQ(b->args[0]->type, Type::Float);
  EXPECT_EQ(b->args[1], f);
  EXPECT_EQ(print(b), "float(i) * f");
  // Constants of both kinds fold to a float.
  EXPECT_DOUBLE_EQ(floatOf(intImm(2) + floatImm(0.5)), 2.5);
  EXPECT_DOUBLE_EQ(floatOf(intImm(7) / floatImm(2)), 3.5);
  // Int with Int stays Int; comparisons are Bool.
  EXPECT_EQ((i + size("N"))->type, Type::Int);
  EXPECT_EQ(binary(BinOp::Lt, i, f)->type, Type::Bool);
  EXPECT_EQ(binary(BinOp::Lt, i, f)->args[0]->kind, ExprKind::Cast);
  // Bool in arithmetic becomes Int.
  Expr bi = bparam("flag") + intImm(1);
  EXPECT_EQ(bi->type, Type::Int);
  EXPECT_EQ(bi->args[0]->kind, ExprKind::Cast);
  // Casts of constants fold; a cast to the same type is the identity.
  EXPECT_DOUBLE_EQ(floatOf(cast(Type::Float, intImm(3))), 3.0);
  EXPECT_EQ(intOf(cast(Type::Int, boolImm(true))), 1);
  EXPECT_EQ(cast(Type::Int, i), i);
}

TEST(IR, SelectFolding) {
  Expr a = fparam("a"), b = fparam("b");
  EXPECT_EQ(select(boolImm(true), a, b), a);
  EXPECT_EQ(select(boolImm(false), a, b), b);
  EXPECT_EQ(select(binary(BinOp::Lt, intImm(1), intImm(2)), a, b), a); // the condition folds first

  Expr c = binary(BinOp::Lt, ivar("i"), size("N"));
  Expr s = select(c, intImm(1), floatImm(0.5));
  ASSERT_EQ(s->kind, ExprKind::Select);
  EXPECT_EQ(s->type, Type::Float);
  EXPECT_EQ(s->args[1]->kind, ExprKind::FloatImm);
  EXPECT_EQ(print(s), "select(i < N, 1.0, 0.5)");
}

// Folding must not change an expression's type: select(c, 1, 0.5) is a float whatever c is,
// so select(true, 7, 0.5) / 2 is 3.5, not the integer division 7 // 2.
TEST(IR, SelectFoldingKeepsPromotedType) {
  Expr s = select(boolImm(true), intImm(7), floatImm(0.5));
  EXPECT_EQ(s->type, Type::Float) << print(s);
  Expr half = binary(BinOp::Div, s, intImm(2));
  ASSERT_EQ(half->kind, ExprKind::FloatImm) << print(half);
  EXPECT_DOUBLE_EQ(half->floatValue, 3.5);
}

TEST(IR, CallFolding) {
  EXPECT_DOUBLE_EQ(floatOf(call("sqrt", {floatImm(4.0)})), 2.0);
  EXPECT_DOUBLE_EQ(floatOf(call("sqrt", {intImm(16)})), 4.0); // arguments are promoted
  EXPECT_DOUBLE_EQ(floatOf(call("exp", {floatImm(0)})), 1.0);
  EXPECT_DOUBLE_EQ(floatOf(call("rsqrt", {floatImm(4)})), 0.5);
  EXPECT_DOUBLE_EQ(floatOf(call("relu", {floatImm(-3)})), 0.0);
  EXPECT_DOUBLE_EQ(floatOf(call("abs", {floatImm(-3)})), 3.0);
  EXPECT_DOUBLE_EQ(floatOf(call("leaky_relu", {floatImm(-2), floatImm(0.1)})), -0.2);
  EXPECT_DOUBLE_EQ(floatOf(call("leaky_relu", {floatImm(2), floatImm(0.1)})), 2.0);
  EXPECT_DOUBLE_EQ(floatOf(call("sigmoid", {floatImm(0)})), 0.5);
  // The shipped Encoding initializer bound: 1 / sqrt(K * D) with K = 4, D = 4.
  EXPECT_DOUBLE_EQ(floatOf(intImm(1) / call("sqrt", {intImm(4) * intImm(4)})), 0.25);

  Expr e = call("exp", {ivar("i")});
  ASSERT_EQ(e->kind, ExprKind::Call);
  EXPECT_EQ(e->type, Type::Float);
  EXPECT_EQ(e->args[0]->kind, ExprKind::Cast);
  // A constant and a variable argument: not folded.
  EXPECT_EQ(call("leaky_relu", {floatImm(-2), fparam("s")})->kind, ExprKind::Call);
}

TEST(IR, PrintPrecedence) {
  Expr a = ivar("a"), b = ivar("b"), c = ivar("c");
  Expr x = fparam("x"), y = fparam("y");
  EXPECT_EQ(print((a + b) * c), "(a + b) * c");
  EXPECT_EQ(print(a + b * c), "a + b * c");
  EXPECT_EQ(print(a - (b - c)), "a - (b - c)");
  EXPECT_EQ(print((a - b) - c), "a - b - c");
  EXPECT_EQ(print(a / (b * c)), "a / (b * c)");
  EXPECT_EQ(print(a * b % c), "a * b % c");
  EXPECT_EQ(print(binary(BinOp::Pow, x, binary(BinOp::Pow, y, x))), "x ^ y ^ x");
  EXPECT_EQ(print(binary(BinOp::Pow, binary(BinOp::Pow, x, y), x)), "(x ^ y) ^ x");
  EXPECT_EQ(print(binary(BinOp::Pow, x * y, x)), "(x * y) ^ x");
  EXPECT_EQ(print(binary(BinOp::Pow, unary(UnOp::Neg, x), floatImm(2))), "(-x) ^ 2.0");
  EXPECT_EQ(print(unary(UnOp::Neg, binary(BinOp::Pow, x, floatImm(2)))), "-x ^ 2.0");
  EXPECT_EQ(print(unary(UnOp::Neg, x + y)), "-(x + y)");
  EXPECT_EQ(print(unary(UnOp::Not, binary(BinOp::Lt, a, b))), "!(a < b)");
  EXPECT_EQ(print(binary(BinOp::Or, binary(BinOp::And, binary(BinOp::Lt, a, b), binary(BinOp::Ge, b, c)),
                         binary(BinOp::Eq, a, c))),
            "a < b && b >= c || a == c");
  EXPECT_EQ(print(binary(BinOp::And, binary(BinOp::Lt, a, b),
                         binary(BinOp::Or, binary(BinOp::Lt, b, c), binary(BinOp::Eq, a, c)))),
            "a < b && (b < c || a == c)");
  EXPECT_EQ(print(binary(BinOp::Min, a + b, c)), "min(a + b, c)");
  EXPECT_EQ(print(binary(BinOp::Max, a, intImm(0)) * b), "max(a, 0) * b");
  EXPECT_EQ(print(X({a, b + intImm(1)}) - x), "X[a, b + 1] - x");
  EXPECT_EQ(print(load("X", a * size("N") + b)), "X[a * N + b]");
  EXPECT_EQ(print(reduce(ReduceOp::Sum, {{"i", size("N")}, {"j", size("M")}}, X({a, ivar("i"), ivar("j")}))),
            "sum(i, j: X[a, i, j])");
  EXPECT_EQ(print(reduce(ReduceOp::Max, {{"i", size("N")}}, X({ivar("i")})) + x), "max(i: X[i]) + x");
  // Floats always read as floats.
  EXPECT_EQ(print(floatImm(1)), "1.0");
  EXPECT_EQ(print(floatImm(0.5)), "0.5");
  EXPECT_EQ(print(floatImm(-2)), "-2.0");
  EXPECT_EQ(print(reduceIdentity(ReduceOp::Max, Type::Float)), "-inf");
  EXPECT_EQ(print(reduceIdentity(ReduceOp::Min, Type::Float)), "inf");
}

// Two different expressions must not print the same: passes use the text as a key
// (HoistReductions shares reductions whose canonical text is equal).
TEST(IR, PrintDistinguishesNegativeBaseOfPower) {
  Expr x = fparam("x");
  Expr negBase = binary(BinOp::Pow, floatImm(-2), x);                 // (-2) ^ x
  Expr negPow = unary(UnOp::Neg, binary(BinOp::Pow, floatImm(2), x)); // -(2 ^ x)
  EXPECT_FALSE(structurallyEqual(negBase, negPow));
  EXPECT_NE(print(negBase), print(negPow));
  EXPECT_EQ(print(negPow), "-2.0 ^ x");
}

TEST(IR, SubstituteAndMutateShareUnchangedSubtrees) {
  Expr i = ivar("i"), j = ivar("j");
  Expr left = X({i, j}) * fparam("w");
  Expr right = call("exp", {access("Z", {j})});
  Expr e = left + right;

  // Replacing i touches only the left side; the right side is the same node.
  Expr r = substitute(e, [&](const std::string &n, VarKind k) -> Expr {
    return k == VarKind::Index && n == "i" ? intImm(3) : nullptr;
  });
  EXPECT_EQ(print(r), "X[3, j] * w + exp(Z[j])");
  EXPECT_EQ(r->args[1], right);
  EXPECT_NE(r->args[0], left);
  EXPECT_EQ(r->args[0]->args[1], left->args[1]); // w
  // No match: the very same tree comes back.
  EXPECT_EQ(substitute(e, [](const std::string &, VarKind) -> Expr { return nullptr; }), e);
  // The kind matters: a Size variable named i is not an index.
  Expr s = size("i") + j;
  EXPECT_EQ(substitute(s,
                       [&](const std::string &n, VarKind k) -> Expr {
                         return k == VarKind::Index && n == "i" ? intImm(3) : nullptr;
                       }),
            s);
  // A float variable replaced by an integer constant stays a float.
  Expr f = substitute(fparam("eps") * fparam("x"),
                      [](const std::string &n, VarKind) -> Expr { return n == "eps" ? intImm(2) : nullptr; });
  EXPECT_EQ(f->args[0]->kind, ExprKind::FloatImm);
  EXPECT_EQ(f->type, Type::Float);
  // Substitution refolds: N * i + j with N := 4, i := 2, j := 1 is the constant 9.
  Expr idx = size("N") * i + j;
  Expr folded = substitute(idx, [](const std::string &n, VarKind) -> Expr {
    if (n == "N") return intImm(4);
    if (n == "i") return intImm(2);
    if (n == "j") return intImm(1);
    return nullptr;
  });
  EXPECT_EQ(intOf(folded), 9);

  // mutate: post-order, the callback sees rebuilt children; untouched branches are shared.
  std::vector<std::string> order;
  Expr m = mutate(e, [&](const Expr &n) -> Expr {
    order.push_back(print(n));
    return n->kind == ExprKind::Call ? call("log", n->args) : nullptr;
  });
  EXPECT_EQ(print(m), "X[i, j] * w + log(Z[j])");
  EXPECT_EQ(m->args[0], left);
  ASSERT_FALSE(order.empty());
  EXPECT_EQ(order.front(), "i");
  EXPECT_EQ(order.back(), "X[i, j] * w + log(Z[j])");
  // withArgs refolds over new operands.
  EXPECT_EQ(intOf(withArgs(i + j, {intImm(1), intImm(2)})), 3);
}

TEST(IR, FreeIndexVars) {
  Expr b = ivar("b"), i = ivar("i"), k = ivar("k");
  Expr N = size("N");
  // Reduction variables are bound; sizes are not index variables; first use wins the order.
  Expr e = reduce(ReduceOp::Sum, {{"i", N}}, X({b, i}) * access("W", {i, k})) + access("Z", {k, b, N});
  EXPECT_EQ(freeIndexVars(e), (std::vector<std::string>{"b", "k"}));
  // The same name outside the reduction is free.
  Expr shadow = reduce(ReduceOp::Sum, {{"i", N}}, X({i})) + access("Z", {i});
  EXPECT_EQ(freeIndexVars(shadow), (std::vector<std::string>{"i"}));
  // Nested reductions bind both.
  Expr nested = reduce(ReduceOp::Max, {{"i", N}}, reduce(ReduceOp::Sum, {{"j", N}}, X({i, ivar("j"), k})));
  EXPECT_EQ(freeIndexVars(nested), (std::vector<std::string>{"k"}));
  EXPECT_TRUE(freeIndexVars(X({intImm(0), N})).empty());
  EXPECT_TRUE(containsReduce(shadow));
  EXPECT_FALSE(containsReduce(X({i}) * floatImm(2)));
  // Local variables of the loop IR are not index variables.
  EXPECT_TRUE(freeIndexVars(var("_acc", Type::Float, VarKind::Local) + floatImm(1)).empty());
}

// substituteIndices leaves a reduction's own variables bound: a key it binds is not replaced
// inside it, and a value naming one of them renames it first instead of being captured.
TEST(IR, SubstituteIndicesNeitherReplacesNorCapturesBoundVariables) {
  Expr h = ivar("h"), j = ivar("j"), kh = ivar("kh");
  Expr N = size("N");
  Expr window = reduce(ReduceOp::Sum, {{"kh", intImm(3)}}, X({h + kh - intImm(1)}) * access("W", {kh}));
  // h := j - (kh - 1), the tap kh of an outer sum: the inner kh becomes kh1.
  Expr shifted = substituteIndices(window, {{"h", j - (kh - intImm(1))}});
  EXPECT_EQ(print(shifted), "sum(kh1: X[j - (kh - 1) + kh1 - 1] * W[kh1])");
  EXPECT_EQ(freeIndexVars(shifted), (std::vector<std::string>{"j", "kh"}));
  // The fresh name avoids every name inside and in the value (kh1 is taken: kh2).
  Expr taken = reduce(ReduceOp::Sum, {{"kh", N}}, X({h + kh}) + access("Z", {ivar("kh1")}));
  EXPECT_EQ(print(substituteIndices(taken, {{"h", kh}})), "sum(kh2: X[kh + kh2] + Z[kh1])");
  // A bound key is not replaced inside; the extent, outside the binding, is.
  Expr bound = reduce(ReduceOp::Sum, {{"kh", h}}, X({kh}));
  Expr inside = substituteIndices(bound, {{"kh", intImm(2)}, {"h", N}});
  EXPECT_EQ(print(inside), "sum(kh: X[kh])");
  EXPECT_EQ(print(inside->rvars[0].extent), "N");
  // No capture possible: the node comes back untouched.
  EXPECT_EQ(substituteIndices(window, {{"h", j}})->rvars[0].name, "kh");
  EXPECT_EQ(substituteIndices(window, {{"j", kh}}), window);
}

TEST(IR, StructurallyEqual) {
  auto build = [] { return X({ivar("b"), ivar("i") + intImm(1)}) * call("exp", {fparam("s")}); };
  Expr a = build(), b = build();
  EXPECT_NE(a, b);
  EXPECT_TRUE(structurallyEqual(a, b));
  EXPECT_FALSE(structurallyEqual(a, X({ivar("b"), ivar("i") + intImm(2)}) * call("exp", {fparam("s")})));
  EXPECT_FALSE(structurallyEqual(a, X({ivar("b"), ivar("i") - intImm(1)}) * call("exp", {fparam("s")})));
  EXPECT_FALSE(structurallyEqual(a, X({ivar("b"), ivar("i") + intImm(1)}) * call("log", {fparam("s")})));
  EXPECT_FALSE(
      structurallyEqual(a, access("Y", {ivar("b"), ivar("i") + intImm(1)}) * call("exp", {fparam("s")})));
  // The same name with another kind or type is another variable.
  EXPECT_FALSE(structurallyEqual(ivar("N"), size("N")));
  EXPECT_FALSE(structurallyEqual(ivar("x"), var("x", Type::Float, VarKind::Index)));
  EXPECT_FALSE(structurallyEqual(intImm(1), floatImm(1)));
  // Reductions compare operator, variables and extents.
  Expr r1 = reduce(ReduceOp::Sum, {{"i", size("N")}}, X({ivar("i")}));
  EXPECT_TRUE(structurallyEqual(r1, reduce(ReduceOp::Sum, {{"i", size("N")}}, X({ivar("i")}))));
  EXPECT_FALSE(structurallyEqual(r1, reduce(ReduceOp::Max, {{"i", size("N")}}, X({ivar("i")}))));
  EXPECT_FALSE(structurallyEqual(r1, reduce(ReduceOp::Sum, {{"i", size("M")}}, X({ivar("i")}))));
  EXPECT_FALSE(structurallyEqual(r1, reduce(ReduceOp::Sum, {{"j", size("N")}}, X({ivar("j")}))));
}

TEST(IR, CostOrdering) {
  Expr x = fparam("x"), y = fparam("y");
  EXPECT_GT(costOf(call("exp", {x})), costOf(x + y));
  EXPECT_GT(costOf(x / y), costOf(x * y));
  EXPECT_GT(costOf(reduce(ReduceOp::Sum, {{"i", size("N")}}, X({ivar("i")}))), costOf(call("exp", {x})));
  EXPECT_GT(costOf((x + y) * x), costOf(x + y));
  EXPECT_EQ(costOf(x), 0);
  EXPECT_EQ(costOf(X({ivar("i")})), 0);
}

TEST(IR, ReduceIdentitiesAndIsConst) {
  EXPECT_DOUBLE_EQ(floatOf(reduceIdentity(ReduceOp::Sum, Type::Float)), 0.0);
  EXPECT_DOUBLE_EQ(floatOf(reduceIdentity(ReduceOp::Prod, Type::Float)), 1.0);
  EXPECT_EQ(intOf(reduceIdentity(ReduceOp::Sum, Type::Int)), 0);
  EXPECT_TRUE(std::isinf(floatOf(reduceIdentity(ReduceOp::Max, Type::Float))));
  EXPECT_LT(floatOf(reduceIdentity(ReduceOp::Max, Type::Float)), 0);
  EXPECT_GT(floatOf(reduceIdentity(ReduceOp::Min, Type::Float)), 0);
  int64_t v = 0;
  EXPECT_TRUE(isConst(intImm(42), &v));
  EXPECT_EQ(v, 42);
  EXPECT_FALSE(isConst(floatImm(42)));
  EXPECT_FALSE(isConst(ivar("i")));
  // Reductions always produce floats.
  EXPECT_EQ(reduce(ReduceOp::Sum, {{"i", size("N")}}, ivar("i"))->args[0]->type, Type::Float);
}

TEST(IR, VisitCanSkipChildren) {
  Expr e = reduce(ReduceOp::Sum, {{"i", size("N")}}, X({ivar("i")})) + call("exp", {X({ivar("j")})});
  std::vector<std::string> seen;
  visit(e, [&](const Expr &n) {
    seen.push_back(print(n));
    return n->kind != ExprKind::Reduce; // do not enter reductions
  });
  EXPECT_EQ(seen,
            (std::vector<std::string>{"sum(i: X[i]) + exp(X[j])", "sum(i: X[i])", "exp(X[j])", "X[j]", "j"}));
}
