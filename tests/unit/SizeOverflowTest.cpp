// Sizes that do not fit: element counts, byte sizes and size expressions from hostile or careless values
// (hyper-parameters, input shapes, declared dimensions) are errors naming the tensor and its shape, never
// a wrapped size that a buffer is then allocated at and written past.
#include "CliTestSupport.h"
#include "ErrorTestSupport.h"

#include "compiler/IR.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>

namespace enc {
namespace {

using namespace enc::testing;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

std::shared_ptr<const Library> shippedLib() {
  static std::shared_ptr<const Library> lib = Library::shipped();
  return lib;
}

// ---- tensors ----------------------------------------------------------------------------------------

TEST(SizeOverflow, ElementCountThatWrapsIsAnError) {
  // 2^32 * 2^32 is 2^64, which wraps to 0.
  Shape wraps = {int64_t{1} << 32, int64_t{1} << 32};
  std::string m = errorOf([&] { shapeNumel(wraps); });
  EXPECT_MENTIONS(m, "[4294967296, 4294967296]");
  m = errorOf([&] { Tensor(DType::F32, wraps); });
  EXPECT_MENTIONS(m, "[4294967296, 4294967296]");
  EXPECT_EQ(shapeNumel({int64_t{1} << 31, int64_t{1} << 31}), int64_t{1} << 62);
  EXPECT_EQ(shapeNumel({kMax, 1}), kMax);
  EXPECT_EQ(shapeNumel({kMax, 0}), 0);
  // Too large whatever the order of its dimensions, with a zero among them or not (as NumPy).
  for (const Shape &s : {Shape{0, int64_t{1} << 32, int64_t{1} << 32}, Shape{int64_t{1} << 32, 0, int64_t{1} << 32},
                         Shape{int64_t{1} << 32, int64_t{1} << 32, 0}})
    EXPECT_MENTIONS(errorOf([&] { shapeNumel(s); }), "more elements than");
}

TEST(SizeOverflow, CheckTensorSizeNamesTheTensorAndItsShape) {
  // 2^62 elements fit, their bytes (2^64 for f32) do not.
  std::string m = errorOf([] { checkTensorSize("input 'X'", {int64_t{1} << 62}, DType::F32); });
  EXPECT_MENTIONS(m, "input 'X'");
  EXPECT_MENTIONS(m, "[4611686018427387904]");
  EXPECT_MENTIONS(m, "too large");
  m = errorOf([] { checkTensorSize("input 'X'", {3, kMax}, DType::F16); });
  EXPECT_MENTIONS(m, "element count");
  m = errorOf([] { checkTensorSize("parameter 'w'", {2, -1}, DType::F32); });
  EXPECT_MENTIONS(m, "parameter 'w'");
  EXPECT_MENTIONS(m, "negative");
  // Representable, but no machine running these tests has 2^60 bytes of memory.
  m = errorOf([] { checkTensorSize("tensor 'Y'", {int64_t{1} << 57}, DType::F64); });
  EXPECT_MENTIONS(m, "tensor 'Y'");
  EXPECT_MENTIONS(m, "more than this machine's memory");
  // On a GPU the device's allocator decides; only the arithmetic is checked here.
  EXPECT_EQ(checkTensorSize("t", {int64_t{1} << 57}, DType::F64, Device::CUDA), size_t{1} << 60);
  EXPECT_EQ(checkTensorSize("t", {2, 3}, DType::F64), 48u);
  EXPECT_EQ(checkTensorSize("t", {}, DType::F16), 2u);
}

// ---- constant folding -------------------------------------------------------------------------------

using ir::BinOp;

ir::Expr fold(BinOp op, int64_t a, int64_t b) { return ir::binary(op, ir::intImm(a), ir::intImm(b)); }

TEST(SizeOverflow, FoldingNeverWraps) {
  int64_t v = 0;
  EXPECT_FALSE(ir::isConst(fold(BinOp::Add, kMax, 1)));
  EXPECT_FALSE(ir::isConst(fold(BinOp::Sub, kMin, 1)));
  EXPECT_FALSE(ir::isConst(fold(BinOp::Mul, int64_t{1} << 32, int64_t{1} << 32)));
  EXPECT_FALSE(ir::isConst(fold(BinOp::Div, kMin, -1)));
  EXPECT_FALSE(ir::isConst(ir::unary(ir::UnOp::Neg, ir::intImm(kMin))));
  EXPECT_FALSE(ir::isConst(fold(BinOp::Pow, 2, 63)));
  ASSERT_TRUE(ir::isConst(fold(BinOp::Pow, 2, 62), &v));
  EXPECT_EQ(v, int64_t{1} << 62);
  ASSERT_TRUE(ir::isConst(fold(BinOp::Pow, -3, 3), &v));
  EXPECT_EQ(v, -27);
  ASSERT_TRUE(ir::isConst(fold(BinOp::Mul, kMax, -1), &v));
  EXPECT_EQ(v, -kMax);
  // A huge exponent of 1 folds at once (the old loop ran 2^63 times).
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(ir::isConst(fold(BinOp::Pow, 1, kMax), &v));
  EXPECT_EQ(v, 1);
  EXPECT_FALSE(ir::isConst(fold(BinOp::Pow, 2, kMax)));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
}

TEST(SizeOverflow, GatheredConstantsNeverWrap) {
  // (x + MAX) + 1 must not become x + MIN: with x = -1 its value is MAX.
  ir::Expr x = ir::var("x", ir::Type::Int, ir::VarKind::Size);
  ir::Expr e = ir::binary(BinOp::Add, ir::binary(BinOp::Add, x, ir::intImm(kMax)), ir::intImm(1));
  ir::Expr at = ir::substitute(e, [](const std::string &, ir::VarKind) { return ir::intImm(-1); });
  int64_t v = 0;
  ASSERT_TRUE(ir::isConst(at, &v)) << ir::print(at);
  EXPECT_EQ(v, kMax);
  // (x * 2^32) * 2^32 likewise: with x = 0 it is 0, not a wrapped product folded early.
  e = ir::binary(BinOp::Mul, ir::binary(BinOp::Mul, x, ir::intImm(int64_t{1} << 32)), ir::intImm(int64_t{1} << 32));
  at = ir::substitute(e, [](const std::string &, ir::VarKind) { return ir::intImm(0); });
  ASSERT_TRUE(ir::isConst(at, &v)) << ir::print(at);
  EXPECT_EQ(v, 0);
}

TEST(SizeOverflow, SizeThatDoesNotFitIsAUserError) {
  std::string m = errorOf([] { evalInt(fold(BinOp::Add, kMax, 3)); });
  EXPECT_MENTIONS(m, "too large");
  EXPECT_EQ(m.find("internal error"), std::string::npos) << m;
}

// ---- layers -----------------------------------------------------------------------------------------

TEST(SizeOverflow, ParameterTooLargeForItsHyperParameters) {
  // weight[num_features]: 2^62 f32 values are 2^64 bytes.
  std::string m = errorOf([] { Layer(shippedLib(), "SyncBatchNorm", {{"num_features", "4611686018427387904"}}); });
  EXPECT_MENTIONS(m, "SyncBatchNorm");
  EXPECT_MENTIONS(m, "parameter '");
  EXPECT_MENTIONS(m, "[4611686018427387904]");
}

TEST(SizeOverflow, DeclaredDimensionTooLarge) {
  auto lib = Library::fromSource("big.enc", R"(layer Big(C: int) {
  param weight[9223372036854775807, C, C] = uniform(0, 0.02)
  forward(X: [B, C]) -> Y: [B, C] {
    Y[b, c] = X[b, c] * weight[0, c, c]
  }
}
)");
  std::string m = errorOf([&] { Layer(lib, "Big", {{"C", "2"}}); });
  EXPECT_EQ(m.rfind("big.enc:2:", 0), 0u) << m; // starts at the declaration
  EXPECT_MENTIONS(m, "parameter 'weight'");
  EXPECT_MENTIONS(m, "[9223372036854775807, 2, 2]");
}

TEST(SizeOverflow, OutputTooLargeForTheHyperParameters) {
  Tensor x(DType::F32, {1, 1, 3, 3});
  // Output extents (3 + 2p - 3) + 1 = 2^31 - 5 each: 2^62 elements fit in 64 bits, their bytes do not.
  // Then larger paddings, up to one whose extent itself does not fit.
  for (const char *padding : {"1073741821", "1073741824", "4611686018427387903", "9223372036854775807"}) {
    SCOPED_TRACE(padding);
    std::string m = errorOf([&] {
      Layer conv(shippedLib(), "Conv2d",
                 {{"in_channels", "1"}, {"out_channels", "1"}, {"kernel_size", "3,3"}, {"padding", padding}});
      conv.forward({{"X", x}});
    });
    EXPECT_MENTIONS(m, "too large");
    EXPECT_MENTIONS(m, "'Y'"); // the tensor, also when one of its dimensions does not fit
    EXPECT_EQ(m.find("internal error"), std::string::npos) << m;
  }
  std::string m = errorOf([&] {
    Layer conv(shippedLib(), "Conv2d",
               {{"in_channels", "1"}, {"out_channels", "1"}, {"kernel_size", "3,3"}, {"padding", "1073741821"}});
    conv.forward({{"X", x}});
  });
  // Refused before the run, at the output's declaration.
  EXPECT_MENTIONS(m, "conv.enc:");
  EXPECT_MENTIONS(m, "output 'Y' would have shape [1, 1, 2147483643, 2147483643]");
}

} // namespace
} // namespace enc
