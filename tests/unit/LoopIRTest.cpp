// Unit tests of loop IR helpers (compiler/LoopIR.h): taking apart an asynchronous copy's
// source.
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

} // namespace
