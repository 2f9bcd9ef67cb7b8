// Integer arithmetic without a 64-bit value once hyper-parameters and sizes are known (a
// division or remainder by zero, an overflow) is a located error, where it compiled to
// undefined behaviour and ran (garbage outputs, reads before the tensor).
#include "compiler/IR.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"

#include "ErrorTestSupport.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace enc {
namespace {

using testing::errorOf;

TEST(IntegerArithmetic, UndefinedOperationsAreFoundWhereFoldingLeftThem) {
  using namespace ir;
  Expr i = indexVar("i");
  auto why = [](const Expr &e) {
    std::optional<UndefinedArithmetic> u = undefinedArithmetic(e);
    return u ? print(u->op) + ": " + u->why : std::string("none");
  };
  EXPECT_EQ(why(access("X", {i / intImm(0)})), "i / 0: divides by zero");
  EXPECT_EQ(why(access("X", {binary(BinOp::Mod, i + intImm(1), intImm(0))})), "(i + 1) % 0: takes a remainder by zero");
  int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(why(cast(Type::Float, intImm(big) + intImm(1))), "9223372036854775807 + 1: is too large: its value does not fit in 64 bits");
  EXPECT_EQ(why(intImm(int64_t{1} << 32) * intImm(int64_t{1} << 32)), "4294967296 * 4294967296: is too large: its value does not fit in 64 bits");
  EXPECT_EQ(why(binary(BinOp::Pow, intImm(2), intImm(-1))), "2 ^ (-1): is an integer to a negative power");
  // What folds, or divides by something that is not 0, is fine.
  EXPECT_EQ(why(access("X", {i / intImm(2), binary(BinOp::Mod, i, intImm(3))}) * floatImm(0.0) / floatImm(0.0)), "none");
  EXPECT_EQ(why(intImm(6) / intImm(3) + i), "none");
  EXPECT_EQ(why(select(boolImm(false), access("X", {i / intImm(0)}), floatImm(0))), "none");
}

std::string runError(const char *text, const std::string &layer, const std::map<std::string, std::string> &set,
                     std::map<std::string, Tensor> inputs) {
  return errorOf([&] {
    Layer l(Library::fromSource("arith.enc", text), layer, set);
    l.forward(inputs);
  });
}

Tensor filled(Shape shape) {
  Tensor t(DType::F32, shape);
  for (int64_t k = 0; k < t.numel(); ++k) t.set(k, 1.0 + static_cast<double>(k));
  return t;
}

TEST(IntegerArithmetic, ADivisorOfZeroIsAnErrorAtTheStatement) {
  const char *down = R"(
layer Down(s: int = 2) {
  forward(X: [N]) -> Y: [N] {
    Y[i] = X[i // s] + float(i % s)
  }
}
)";
  std::string m = runError(down, "Down", {{"s", "0"}}, {{"X", filled({3})}});
  EXPECT_MENTIONS(m, "arith.enc:4:5: in the definition of 'Y': the integer operation i // 0 divides by zero");
  EXPECT_MENTIONS(m, "require s > 0");
  // With s = 2 it runs: Y[i] = X[i // 2] + i % 2.
  Layer ok(Library::fromSource("arith.enc", down), "Down", {{"s", "2"}});
  Tensor y = ok.forward({{"X", filled({3})}}).at("Y");
  EXPECT_EQ(y.at(0), 1.0);
  EXPECT_EQ(y.at(1), 2.0);
  EXPECT_EQ(y.at(2), 2.0);

  // An input's size of 0 as the divisor: P's size M.
  const char *tile = R"(
layer Tile() {
  forward(X: [N], P: [M]) -> Y: [N] {
    Y[i] = X[i] + P[i % M]
  }
}
)";
  EXPECT_MENTIONS(runError(tile, "Tile", {}, {{"X", filled({3})}, {"P", filled({0})}}),
                  "the integer operation i % 0 takes a remainder by zero");
  // A division the layer guards is no error.
  const char *guarded = R"(
layer Guarded(s: int = 2) {
  forward(X: [N]) -> Y: [N] {
    Y[i] = select(s > 0, X[i // max(s, 1)] * float(i // s), X[i])
  }
}
)";
  Layer g(Library::fromSource("arith.enc", guarded), "Guarded", {{"s", "0"}});
  EXPECT_EQ(g.forward({{"X", filled({3})}}).at("Y").at(2), 3.0);
}

TEST(IntegerArithmetic, AnOverflowIsAnErrorAtTheStatement) {
  const char *scale = R"(
layer Scale(K: int = 4) {
  forward(X: [N]) -> Y: [N] {
    Y[i] = X[i] / float(K * K)
  }
}
)";
  std::string m = runError(scale, "Scale", {{"K", "4294967296"}}, {{"X", filled({3})}});
  EXPECT_MENTIONS(m, "arith.enc:4:5: in the definition of 'Y': the integer operation 4294967296 * 4294967296 is too large: its value does not fit in 64 bits");
  // A shape divided by zero says so (it said "too large").
  const char *shape = R"(
layer Shape(s: int = 2) {
  param w[4 // s] = ones
  forward(X: [N]) -> Y: [N] {
    Y[i] = X[i] * w[0]
  }
}
)";
  std::string z = runError(shape, "Shape", {{"s", "0"}}, {{"X", filled({3})}});
  EXPECT_MENTIONS(z, "arith.enc:3:11: layer Shape: parameter 'w': size 4 / 0 divides by zero");
  EXPECT_EQ(z.find("too large"), std::string::npos) << z;
}

// Arithmetic on index variables that leaves 64 bits for some index in its range wrapped around in
// the generated code: X[i * 2^62 * 4 + i] read X[i] (2^64 i + i), silently. Now an error at the
// statement, naming the operation and the ranges; what stays within 64 bits runs, out-of-range
// reads giving 0.
TEST(IntegerArithmetic, IndexArithmeticThatLeaves64BitsIsAnError) {
  const char *wrap = R"(
layer Wrap(s: int = 1) {
  forward(X: [N]) -> Y: [N] {
    Y[i] = X[i * s * 4 + i]
  }
}
)";
  std::string m = runError(wrap, "Wrap", {{"s", "4611686018427387904"}}, {{"X", filled({3})}});
  EXPECT_MENTIONS(m, "arith.enc:4:5: in the definition of 'Y': the integer operation i * 4611686018427387904 "
                     "leaves 64 bits for some index (i < 3), where it would wrap around");
  // Inside a sum, over its variable's range; a negative side too.
  const char *sum = R"(
layer Sum(s: int = 1) {
  forward(X: [N]) -> Y: [N] {
    Y[i] = sum(j < 4: X[i - j * s])
  }
}
)";
  m = runError(sum, "Sum", {{"s", "-4611686018427387904"}}, {{"X", filled({3})}});
  EXPECT_MENTIONS(m, "in the definition of 'Y': the integer operation j * -4611686018427387904 leaves 64 bits "
                     "for some index (j < 4)");
  // Large but within 64 bits: the reads fall outside X and give 0.
  Layer fits(Library::fromSource("arith.enc", wrap), "Wrap", {{"s", "576460752303423488"}});
  std::map<std::string, Tensor> out = fits.forward({{"X", filled({3})}});
  EXPECT_EQ(out.at("Y").at(0), 1.0); // i = 0 reads X[0]
  EXPECT_EQ(out.at("Y").at(1), 0.0);
  EXPECT_EQ(out.at("Y").at(2), 0.0);
}

} // namespace
} // namespace enc
