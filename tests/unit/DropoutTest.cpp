// Dropout: rand(...) masks in training, identity in evaluation, the forward pass's mask in
// backward, a new mask per pass, and the same masks again from the same seed.
#include "runtime/Layer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enc {
namespace {

Tensor ones(int64_t n) {
  Tensor t(DType::F64, {n});
  for (int64_t i = 0; i < n; ++i) t.set(i, 1.0 + 0.001 * static_cast<double>(i));
  return t;
}

LayerOptions options(bool training, uint64_t seed = 5) {
  LayerOptions o;
  o.dtype = DType::F64;
  o.training = training;
  o.seed = seed;
  return o;
}

TEST(Dropout, MasksAndScalesInTraining) {
  const int64_t n = 20000;
  const double p = 0.3;
  Layer drop(Library::shipped(), "Dropout", {{"p", "0.3"}}, options(true));
  Tensor x = ones(n);
  Tensor y = drop.forward({{"X", x}}).at("Y");
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y.at(i) == 0) ++zeros;
    else EXPECT_DOUBLE_EQ(y.at(i), x.at(i) / (1 - p)) << i;
  }
  double fraction = static_cast<double>(zeros) / n;
  EXPECT_NEAR(fraction, p, 4 * std::sqrt(p * (1 - p) / n)) << "dropped fraction";

  // The backward pass applies the same mask and scale.
  Tensor g = ones(n);
  Tensor gx = drop.backward({{"Y", g}}).at("X");
  for (int64_t i = 0; i < n; ++i) EXPECT_DOUBLE_EQ(gx.at(i), y.at(i) == 0 ? 0.0 : g.at(i) / (1 - p)) << i;
}

TEST(Dropout, NewMaskEachPassSameMasksFromTheSameSeed) {
  const int64_t n = 512;
  Layer a(Library::shipped(), "Dropout", {}, options(true, 9)), b(Library::shipped(), "Dropout", {}, options(true, 9));
  Tensor x = ones(n);
  Tensor a1 = a.forward({{"X", x}}).at("Y"), a2 = a.forward({{"X", x}}).at("Y");
  Tensor b1 = b.forward({{"X", x}}).at("Y");
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(a1.at(i), b1.at(i)) << i;
    differ += (a1.at(i) == 0) != (a2.at(i) == 0);
  }
  EXPECT_GT(differ, n / 10) << "the second pass should draw a new mask";
}

TEST(Dropout, IdentityInEvaluation) {
  Layer drop(Library::shipped(), "Dropout", {{"p", "0.9"}}, options(false));
  Tensor x = ones(100);
  Tensor y = drop.forward({{"X", x}}).at("Y");
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(y.at(i), x.at(i));
}

TEST(Dropout, RejectsProbabilityOne) {
  EXPECT_THROW(Layer(Library::shipped(), "Dropout", {{"p", "1"}}, options(true)), Error);
}

} // namespace
} // namespace enc
