// Unit tests of loop IR helpers (compiler/LoopIR.h): taking apart an asynchronous copy's
// source, and searching a statement tree.
#include "compiler/LoopIR.h"

#include <gtest/gtest.h>

using namespace enc::ir;

namespace {

Expr x0() { return load("X", intImm(0)); }
Expr inBounds() { return var("inBounds", Type::Bool, VarKind::Param); }

TEST(LoopIR, AsyncCopySourceOfALoadIsUnconditional) {
  Expr value = x0();
  std::optional<AsyncCopySource> source = asyncCopySource(value);
  ASSERT_TRUE(source);
  EXPECT_EQ(source->cond, nullptr);
  EXPECT_EQ(source->load, value);
}

TEST(LoopIR, AsyncCopySourceOfAZeroPaddedLoadHasItsCondition) {
  Expr value = select(inBounds(), x0(), floatImm(0));
  ASSERT_EQ(value->kind, ExprKind::Select) << print(value);
  std::optional<AsyncCopySource> source = asyncCopySource(value);
  ASSERT_TRUE(source);
  EXPECT_EQ(source->cond, value->args[0]);
  EXPECT_EQ(source->load, value->args[1]);
}

TEST(LoopIR, AsyncCopySourceOfAnythingElseIsNone) {
  EXPECT_FALSE(asyncCopySource(x0() * x0()));
  EXPECT_FALSE(asyncCopySource(floatImm(0)));
  // A select padding with another value than 0, or choosing something other than a load.
  EXPECT_FALSE(asyncCopySource(select(inBounds(), x0(), floatImm(1))));
  EXPECT_FALSE(asyncCopySource(select(inBounds(), x0() * x0(), floatImm(0))));
}

TEST(LoopIR, AnyStmtSearchesTheWholeTree) {
  Stmt copy = asyncCopy("s", intImm(0), x0());
  Stmt body = block({sharedAlloc("s", 4),
                     forLoop("i", intImm(4), ForKind::Serial, {ifThen(inBounds(), {copy, asyncCommit()})})});
  auto kindIs = [](StmtKind kind) { return [kind](const Stmt &s) { return s->kind == kind; }; };
  EXPECT_TRUE(anyStmt(body, kindIs(StmtKind::AsyncCopy))); // three levels down
  EXPECT_TRUE(anyStmt(body, kindIs(StmtKind::Block)));     // the root itself
  EXPECT_FALSE(anyStmt(body, kindIs(StmtKind::Barrier)));
  EXPECT_FALSE(anyStmt(nullptr, kindIs(StmtKind::Block)));

  // It stops at the first match.
  int seen = 0;
  EXPECT_TRUE(anyStmt(body, [&](const Stmt &s) {
    ++seen;
    return s->kind == StmtKind::For;
  }));
  EXPECT_EQ(seen, 3); // the block, the alloc, the loop

  Kernel k;
  k.body = body;
  EXPECT_TRUE(usesAsyncCopies(k));
  EXPECT_FALSE(usesFragments(k));
  k.body = nullptr; // a collective
  EXPECT_FALSE(usesAsyncCopies(k));
}

} // namespace
