// The tensor operations of runtime/TensorOps.h on the CPU against naive loops over Tensor::at/set
// (TensorOpsReference.h): every dtype, results compared exactly (one rounding from the double result, as set() does).
#include "TensorOpsReference.h"

#include "runtime/TensorOps.h"

#include "runtime/Gpu.h"
#include "runtime/Rng.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace enc {
namespace {

using namespace enc::testing;

TEST(TensorOps, ZerosOnesFull) {
  for (DType d : kDTypes) {
    Tensor z = zeros({2, 3}, d), o = ones({4}, d), f = full({3, 1}, 0.1, d);
    EXPECT_EQ(z.dtype(), d);
    EXPECT_EQ(z.shape(), (Shape{2, 3}));
    EXPECT_EQ(f.shape(), (Shape{3, 1}));
    for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(z.at(i), 0);
    for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(o.at(i), 1);
    for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(f.at(i), rounded(0.1, d)) << dtypeName(d);
  }
  EXPECT_EQ(zeros({}).numel(), 1); // a scalar
  EXPECT_EQ(zeros({0, 5}).numel(), 0);
}

TEST(TensorOps, UniformAndNormalAreSeededStreams) {
  Tensor u = uniform({1000}, -2, 3, 7, DType::F64), n = normal({20000}, 1.5, 0.5, 7, DType::F64);
  Rng rng(7); // the documented stream: runtime/Rng.h, in C order
  double lo = 1e9, hi = -1e9;
  for (int64_t i = 0; i < u.numel(); ++i) {
    EXPECT_EQ(u.at(i), rng.uniform(-2, 3)) << i;
    lo = std::min(lo, u.at(i)), hi = std::max(hi, u.at(i));
  }
  EXPECT_GE(lo, -2);
  EXPECT_LT(hi, 3);
  EXPECT_LT(lo, -1.9); // spread over the range
  EXPECT_GT(hi, 2.9);
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n.numel(); ++i) s += n.at(i), s2 += n.at(i) * n.at(i);
  double m = s / 20000, sd = std::sqrt(s2 / 20000 - m * m);
  EXPECT_NEAR(m, 1.5, 0.02);
  EXPECT_NEAR(sd, 0.5, 0.02);
  // Same seed, same values (and in another dtype the same values rounded); another seed, others.
  Tensor again = uniform({1000}, -2, 3, 7, DType::F64), f32 = uniform({1000}, -2, 3, 7), other = uniform({1000}, -2, 3, 8, DType::F64);
  EXPECT_EQ(f32.dtype(), DType::F32);
  int same = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(again.at(i), u.at(i));
    EXPECT_EQ(f32.at(i), rounded(u.at(i), DType::F32));
    same += other.at(i) == u.at(i);
  }
  EXPECT_LT(same, 5);
  EXPECT_NE(messageOf([] { normal({2}, 0, -1, 1); }).find("standard deviation -1"), std::string::npos);
}

TEST(TensorOps, FromHostAndToVector) {
  const std::vector<double> values = {0.1, -2.5, 3, 1e-3, 65504, -0.0};
  const std::vector<float> floats = {0.1f, -2.5f, 3, 1e-3f, 65504, -0.0f};
  for (DType d : kDTypes) {
    Tensor a = fromHost(values, {2, 3}, d), b = fromHost(floats.data(), {3, 2}, d);
    EXPECT_EQ(a.shape(), (Shape{2, 3}));
    EXPECT_EQ(b.shape(), (Shape{3, 2}));
    std::vector<double> back = toVector<double>(a);
    std::vector<float> backF = toVector<float>(b);
    ASSERT_EQ(back.size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
      EXPECT_EQ(back[i], rounded(values[i], d)) << dtypeName(d) << " " << i;
      EXPECT_EQ(a.at(static_cast<int64_t>(i)), back[i]);
      EXPECT_EQ(backF[i], static_cast<float>(rounded(floats[i], d)));
    }
  }
  EXPECT_TRUE(std::signbit(toVector<double>(fromHost(values, {6}))[5])); // -0 stays -0
  std::string e = messageOf([&] { fromHost(values, {4}); });
  EXPECT_NE(e.find("6 values for shape [4]"), std::string::npos) << e;
}

// add, sub, mul, scale against naive loops, exactly.
TEST(TensorOps, ElementwiseMatchesNaiveLoops) {
  for (DType d : kDTypes) {
    Tensor a = varied(d, {3, 5}, 0), b = varied(d, {3, 5}, 1);
    Tensor sum_ = add(a, b), diff = sub(a, b), prod = mul(a, b), scaled = scale(a, -0.3);
    for (Tensor *t : {&sum_, &diff, &prod, &scaled}) {
      EXPECT_EQ(t->dtype(), d);
      EXPECT_EQ(t->shape(), (Shape{3, 5}));
    }
    for (int64_t i = 0; i < 15; ++i) {
      double x = a.at(i), y = b.at(i);
      EXPECT_EQ(sum_.at(i), rounded(x + y, d)) << dtypeName(d) << " " << i;
      EXPECT_EQ(diff.at(i), rounded(x - y, d)) << dtypeName(d) << " " << i;
      EXPECT_EQ(prod.at(i), rounded(x * y, d)) << dtypeName(d) << " " << i;
      EXPECT_EQ(scaled.at(i), rounded(x * -0.3, d)) << dtypeName(d) << " " << i;
    }
    EXPECT_EQ(a.at(0), varied(d, {3, 5}, 0).at(0)); // operands untouched
  }
}

TEST(TensorOps, InPlace) {
  for (DType d : kDTypes) {
    Tensor dst = varied(d, {4, 2}, 0), src = varied(d, {4, 2}, 2);
    Tensor before = dst.clone(), alias = dst; // alias shares dst's storage
    addInPlace(dst, src, -0.5);
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(alias.at(i), rounded(before.at(i) - 0.5 * src.at(i), d)) << i;
    addInPlace(dst, src); // alpha defaults to 1
    fill(dst, 2.25);
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(alias.at(i), 2.25);
    Tensor wide = varied(DType::F64, {4, 2}, 3);
    copyInto(dst, wide); // converts f64 to d
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(alias.at(i), rounded(wide.at(i), d)) << i;
  }
  Tensor a = zeros({2, 3});
  std::string e = messageOf([&] { copyInto(a, zeros({3, 2})); });
  EXPECT_NE(e.find("[2, 3]"), std::string::npos) << e;
  EXPECT_NE(e.find("[3, 2]"), std::string::npos) << e;
  copyInto(a, a); // onto itself: nothing to do
}

TEST(TensorOps, SumAndMean) {
  for (DType d : kDTypes) {
    Tensor a = varied(d, {7, 3}, 0.5);
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += a.at(i);
    EXPECT_NEAR(sum(a), s, 1e-12) << dtypeName(d);
    EXPECT_NEAR(mean(a), s / 21, 1e-12) << dtypeName(d);
  }
  EXPECT_EQ(sum(zeros({0})), 0);
  EXPECT_TRUE(std::isnan(mean(zeros({0}))));
  EXPECT_EQ(mean(full({}, 4)), 4);
}

TEST(TensorOps, Argmax) {
  for (DType d : kDTypes) {
    Tensor logits = varied(d, {6, 4}, 0.3);
    EXPECT_EQ(argmax(logits), naiveArgmax(logits, 1)) << dtypeName(d);
    EXPECT_EQ(argmax(logits, 1), naiveArgmax(logits, 1));
    EXPECT_EQ(argmax(logits, 0), naiveArgmax(logits, 0));
    Tensor cube = varied(d, {2, 5, 3}, 0.7);
    EXPECT_EQ(argmax(cube, 1), naiveArgmax(cube, 1)) << dtypeName(d);
    EXPECT_EQ(argmax(cube, -3), naiveArgmax(cube, 0));
    EXPECT_EQ(argmax(cube, 1).size(), 6u);
  }
  // Ties: the first maximum; NaN: counts as the largest (torch.argmax).
  EXPECT_EQ(argmax(fromHost(std::vector<double>{1, 3, 3, 0, 2, 2}, {2, 3})), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(argmax(fromHost(std::vector<double>{1, NAN, 5, NAN}, {4})), (std::vector<int64_t>{1}));
  std::string e = messageOf([] { argmax(zeros({2, 3}), 2); });
  EXPECT_NE(e.find("dimension 2 is out of range for shape [2, 3]"), std::string::npos) << e;
  EXPECT_NE(messageOf([] { argmax(zeros({})); }).find("scalar"), std::string::npos);
}

TEST(TensorOps, MismatchesNameBothOperands) {
  std::string shapes = messageOf([] { add(zeros({2, 3}), zeros({3, 2})); });
  EXPECT_NE(shapes.find("add: shapes differ: [2, 3] and [3, 2]"), std::string::npos) << shapes;
  std::string dtypes = messageOf([] { mul(zeros({2}), zeros({2}, DType::BF16)); });
  EXPECT_NE(dtypes.find("mul: dtypes differ: f32 and bf16"), std::string::npos) << dtypes;
  Tensor undefined, z = zeros({2});
  EXPECT_NE(messageOf([&] { addInPlace(undefined, z); }).find("undefined"), std::string::npos);
  EXPECT_NE(messageOf([&] { sub(z, zeros({1})); }).find("sub: shapes differ: [2] and [1]"), std::string::npos);
}

} // namespace
} // namespace enc
