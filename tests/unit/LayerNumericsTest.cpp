// Numerics of every shipped layer through the C++ API, against naive double-precision loops
// written from the math in DESIGN.md ("Layer semantics"), not from the .enc text.
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"
#include "ReferenceMath.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace enc {
namespace {

using enc::testing::encodingRef;
using enc::testing::errorOf;
using enc::testing::leakyReluRef;
using enc::testing::softmaxRef;

const std::shared_ptr<const Library> &shippedLib() {
  static std::shared_ptr<const Library> lib = Library::shipped();
  return lib;
}

// A small seeded generator, so every run checks the same shapes and values.
class Gen {
public:
  explicit Gen(uint64_t seed) : engine_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(engine_); }
  int64_t size(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(engine_); }

private:
  std::mt19937_64 engine_;
};

Tensor randomTensor(DType dtype, const Shape &shape, Gen &gen, double lo = -1, double hi = 1) {
  Tensor t(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, gen.uniform(lo, hi));
  return t;
}

// The tensor's values as doubles (after any rounding to the tensor's dtype), so the reference sees
// exactly what the layer saw.
std::vector<double> values(const Tensor &t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i)
    v[static_cast<size_t>(i)] = t.at(i);
  return v;
}

double tolerance(DType dtype) { return dtype == DType::F64 ? 1e-12 : 1e-5; }

// max |actual - expected| / max(1, max |expected|): relative for large outputs, absolute near zero.
double relError(const Tensor &actual, const std::vector<double> &expected) {
  double maxDiff = 0, maxRef = 1;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    double e = expected[static_cast<size_t>(i)];
    double d = std::abs(actual.at(i) - e);
    if (std::isnan(d))
      return INFINITY;
    maxDiff = std::max(maxDiff, d);
    maxRef = std::max(maxRef, std::abs(e));
  }
  return maxDiff / maxRef;
}

void expectClose(const Tensor &actual, const Shape &shape, const std::vector<double> &expected, DType dtype) {
  ASSERT_TRUE(actual.defined());
  EXPECT_EQ(actual.dtype(), dtype);
  ASSERT_EQ(shapeString(actual.shape()), shapeString(shape));
  ASSERT_EQ(static_cast<size_t>(actual.numel()), expected.size());
  EXPECT_LE(relError(actual, expected), tolerance(dtype));
}

std::string traceName(const Shape &shape, DType dtype) {
  return fmt::format("{} {}", shapeString(shape), dtypeName(dtype));
}

// ---- references -----------------------------------------------------------------------------------------

// F[B, C, H*W] -> G[B, C, C] = F F^T / (C*H*W).
std::vector<double> gramRef(const std::vector<double> &f, int64_t B, int64_t C, int64_t HW) {
  std::vector<double> g(static_cast<size_t>(B * C * C));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t e = 0; e < C; ++e) {
        double acc = 0;
        for (int64_t p = 0; p < HW; ++p)
          acc += f[static_cast<size_t>((b * C + c) * HW + p)] * f[static_cast<size_t>((b * C + e) * HW + p)];
        g[static_cast<size_t>((b * C + c) * C + e)] = acc / static_cast<double>(C * HW);
      }
  return g;
}

const DType kDTypes[] = {DType::F64, DType::F32};

// ---- Encoding -------------------------------------------------------------------------------------------

struct EncodingCase {
  int64_t D, K;
  Shape x; // [B, D, N] or [B, D, H, W]
};

void checkEncoding(const EncodingCase &c, DType dtype, Gen &gen) {
  SCOPED_TRACE(fmt::format("Encoding D={} K={} X{}", c.D, c.K, traceName(c.x, dtype)));
  Layer layer(shippedLib(), "Encoding", {{"D", std::to_string(c.D)}, {"K", std::to_string(c.K)}}, {dtype, 7});
  // Random params over a wider range than the init, so the softmax is far from uniform.
  layer.setParam("codewords", randomTensor(DType::F64, {c.K, c.D}, gen, -1, 1));
  layer.setParam("scale", randomTensor(DType::F64, {c.K}, gen, -2, 0));
  Tensor x = randomTensor(dtype, c.x, gen);
  auto out = layer.forward({{"X", x}});
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out.count("Y"));
  int64_t B = c.x[0], N = 1;
  for (size_t i = 2; i < c.x.size(); ++i)
    N *= c.x[i];
  std::vector<double> ref = encodingRef(values(x), values(layer.params().at("codewords")),
                                        values(layer.params().at("scale")), B, c.D, N, c.K);
  expectClose(out.at("Y"), {B, c.K, c.D}, ref, dtype);
}

TEST(LayerNumerics, Encoding3D) {
  Gen gen(1);
  std::vector<EncodingCase> cases = {
      {1, 1, {1, 1, 1}},   {5, 3, {2, 5, 7}},  {3, 7, {1, 3, 13}},
      {13, 2, {3, 13, 1}}, {4, 33, {2, 4, 5}}, {7, 5, {1, 7, 33}},
  };
  for (int r = 0; r < 4; ++r) { // random shapes
    int64_t D = gen.size(1, 9), K = gen.size(1, 9);
    cases.push_back({D, K, {gen.size(1, 4), D, gen.size(1, 40)}});
  }
  cases.push_back({32, 16, {4, 32, 1024}}); // large: threads split the batch, inner loops vectorize
  for (DType dtype : kDTypes)
    for (const EncodingCase &c : cases)
      checkEncoding(c, dtype, gen);
}

TEST(LayerNumerics, Encoding4D) {
  Gen gen(2);
  std::vector<EncodingCase> cases = {
      {1, 1, {1, 1, 1, 1}},   {5, 3, {2, 5, 3, 4}}, {3, 4, {1, 3, 7, 1}},
      {2, 13, {3, 2, 1, 13}}, {6, 5, {2, 6, 5, 7}},
  };
  for (int r = 0; r < 3; ++r) {
    int64_t D = gen.size(1, 8), K = gen.size(1, 8);
    cases.push_back({D, K, {gen.size(1, 3), D, gen.size(1, 9), gen.size(1, 9)}});
  }
  cases.push_back({16, 8, {3, 16, 33, 33}});
  for (DType dtype : kDTypes)
    for (const EncodingCase &c : cases)
      checkEncoding(c, dtype, gen);
}

// A 4-D input is exactly the 3-D input with N = H*W.
TEST(LayerNumerics, Encoding4DEquals3DView) {
  Gen gen(3);
  Layer layer(shippedLib(), "Encoding", {{"D", "6"}, {"K", "4"}}, {DType::F64, 11});
  Tensor x = randomTensor(DType::F64, {2, 6, 5, 7}, gen);
  Tensor y4 = layer.forward({{"X", x}}).at("Y");
  Tensor y3 = layer.forward({{"X", x.reshape({2, 6, 35})}}).at("Y");
  ASSERT_EQ(y4.shape(), y3.shape());
  for (int64_t i = 0; i < y4.numel(); ++i)
    EXPECT_EQ(y4.at(i), y3.at(i)) << i;
}

// ---- GramMatrix -----------------------------------------------------------------------------------------

TEST(LayerNumerics, GramMatrix) {
  Gen gen(4);
  std::vector<Shape> shapes = {{1, 1, 1, 1},  {2, 3, 4, 5},  {1, 7, 1, 13},
                               {3, 13, 7, 1}, {2, 33, 3, 3}, {1, 1, 33, 7}};
  for (int r = 0; r < 4; ++r)
    shapes.push_back({gen.size(1, 4), gen.size(1, 20), gen.size(1, 12), gen.size(1, 12)});
  shapes.push_back({4, 64, 33, 31}); // large
  for (DType dtype : kDTypes) {
    Layer layer(shippedLib(), "GramMatrix", {}, {dtype, 0});
    EXPECT_TRUE(layer.params().empty());
    for (const Shape &s : shapes) {
      SCOPED_TRACE("GramMatrix X" + traceName(s, dtype));
      Tensor x = randomTensor(dtype, s, gen);
      Tensor y = layer.forward({{"X", x}}).at("Y");
      expectClose(y, {s[0], s[1], s[1]}, gramRef(values(x), s[0], s[1], s[2] * s[3]), dtype);
    }
  }
}

// ---- LeakyReLU / ReLU -----------------------------------------------------------------------------------

std::vector<Shape> elementwiseShapes(Gen &gen) {
  std::vector<Shape> shapes = {{1},       {7},          {13, 1},         {1, 33},
                               {2, 3, 5}, {3, 1, 7, 2}, {2, 3, 1, 5, 7}, {33, 13}};
  for (int rank = 1; rank <= 5; ++rank) { // random shapes of every rank
    Shape s;
    for (int d = 0; d < rank; ++d)
      s.push_back(gen.size(1, rank <= 2 ? 40 : 9));
    shapes.push_back(s);
  }
  shapes.push_back({1 << 20});          // large, 1-D
  shapes.push_back({4, 16, 65, 33, 3}); // large, 5-D, odd tail for the vector loop's remainder
  return shapes;
}

void checkLeaky(const std::map<std::string, std::string> &settings, double slope, DType dtype, Gen &gen) {
  Layer layer(shippedLib(), "LeakyReLU", settings, {dtype, 0});
  EXPECT_TRUE(layer.params().empty());
  for (const Shape &s : elementwiseShapes(gen)) {
    SCOPED_TRACE(fmt::format("LeakyReLU slope={} X{}", slope, traceName(s, dtype)));
    Tensor x = randomTensor(dtype, s, gen);
    x.set(0, 0.0); // x = 0 exactly maps to 0 for any slope
    expectClose(layer.forward({{"X", x}}).at("Y"), s, leakyReluRef(values(x), slope), dtype);
  }
}

TEST(LayerNumerics, LeakyReLUDefaultSlope) {
  Gen gen(5);
  for (DType dtype : kDTypes)
    checkLeaky({}, 0.01, dtype, gen);
}

TEST(LayerNumerics, LeakyReLUSetSlope) {
  Gen gen(6);
  for (DType dtype : kDTypes) {
    checkLeaky({{"negative_slope", "0.2"}}, 0.2, dtype, gen);
    checkLeaky({{"negative_slope", "-1.5"}}, -1.5, dtype, gen);
    checkLeaky({{"negative_slope", "1"}}, 1.0, dtype, gen); // an int spelling of a float
  }
}

TEST(LayerNumerics, ReLU) {
  Gen gen(7);
  for (DType dtype : kDTypes) {
    Layer layer(shippedLib(), "ReLU", {}, {dtype, 0});
    for (const Shape &s : elementwiseShapes(gen)) {
      SCOPED_TRACE("ReLU X" + traceName(s, dtype));
      Tensor x = randomTensor(dtype, s, gen);
      expectClose(layer.forward({{"X", x}}).at("Y"), s, leakyReluRef(values(x), 0.0), dtype);
    }
  }
}

// ---- Softmax --------------------------------------------------------------------------------------------

void checkSoftmax(const std::vector<Shape> &shapes, Gen &gen) {
  for (DType dtype : kDTypes) {
    Layer layer(shippedLib(), "Softmax", {}, {dtype, 0});
    for (const Shape &s : shapes) {
      SCOPED_TRACE("Softmax X" + traceName(s, dtype));
      // Inputs up to +-30 so that an unshifted exp would lose f32 precision.
      Tensor x = randomTensor(dtype, s, gen, -30, 30);
      int64_t L = 1;
      for (size_t i = 2; i < s.size(); ++i)
        L *= s[i];
      Tensor y;
      try {
        y = layer.forward({{"X", x}}).at("Y");
      } catch (const Error &e) {
        ADD_FAILURE() << "forward threw: " << e.what();
        continue;
      }
      expectClose(y, s, softmaxRef(values(x), s[0], s[1], L), dtype);
    }
  }
}

TEST(LayerNumerics, Softmax3D) {
  Gen gen(8);
  std::vector<Shape> shapes = {{1, 1, 1}, {2, 7, 13}, {3, 13, 1}, {1, 33, 7}, {2, 1, 5}};
  for (int r = 0; r < 4; ++r)
    shapes.push_back({gen.size(1, 4), gen.size(1, 40), gen.size(1, 40)});
  shapes.push_back({8, 64, 1031});
  checkSoftmax(shapes, gen);
}

TEST(LayerNumerics, Softmax4D) {
  Gen gen(9);
  std::vector<Shape> shapes = {{1, 1, 1, 1}, {2, 7, 3, 5}, {1, 13, 1, 7}, {3, 33, 2, 1}};
  for (int r = 0; r < 4; ++r)
    shapes.push_back({gen.size(1, 4), gen.size(1, 20), gen.size(1, 12), gen.size(1, 12)});
  shapes.push_back({4, 21, 65, 63});
  checkSoftmax(shapes, gen);
}

// A variadic dimension `L...` also matches zero trailing dimensions (L = 1): docs/layers.md says Softmax
// works on [B, C, ...]. (bindSizes once rejected [B, C] with "2 dimensions instead of at least 3".)
TEST(LayerNumerics, Softmax2D) {
  Gen gen(10);
  std::vector<Shape> shapes = {{1, 1}, {3, 7}, {13, 33}, {1, 13}};
  for (int r = 0; r < 3; ++r)
    shapes.push_back({gen.size(1, 20), gen.size(1, 40)});
  shapes.push_back({1000, 129});
  checkSoftmax(shapes, gen);
}

// The softmax of every column sums to one, even where exp would overflow without the max shift.
TEST(LayerNumerics, SoftmaxExtremeInputsStayFinite) {
  for (DType dtype : kDTypes) {
    Layer layer(shippedLib(), "Softmax", {}, {dtype, 0});
    Tensor x(dtype, {1, 3, 2});
    const double v[] = {1000, -1000, 1000, 0, -1000, 1000};
    for (int i = 0; i < 6; ++i)
      x.set(i, v[i]);
    Tensor y = layer.forward({{"X", x}}).at("Y");
    expectClose(y, {1, 3, 2}, softmaxRef(values(x), 1, 3, 2), dtype);
  }
}

// ---- parameters -----------------------------------------------------------------------------------------

bool sameParams(const Layer &a, const Layer &b) {
  if (a.params().size() != b.params().size())
    return false;
  for (const auto &[name, t] : a.params()) {
    const Tensor &u = b.params().at(name);
    if (t.shape() != u.shape())
      return false;
    for (int64_t i = 0; i < t.numel(); ++i)
      if (t.at(i) != u.at(i))
        return false;
  }
  return true;
}

TEST(LayerNumerics, SeedDeterminesParams) {
  for (DType dtype : kDTypes) {
    std::map<std::string, std::string> set = {{"D", "5"}, {"K", "3"}};
    Layer a(shippedLib(), "Encoding", set, {dtype, 42});
    Layer b(shippedLib(), "Encoding", set, {dtype, 42});
    Layer c(shippedLib(), "Encoding", set, {dtype, 43});
    ASSERT_EQ(a.params().size(), 2u);
    EXPECT_TRUE(a.params().count("codewords"));
    EXPECT_TRUE(a.params().count("scale"));
    EXPECT_TRUE(sameParams(a, b));
    // Each parameter differs, not just one of them.
    for (const auto &[name, t] : a.params()) {
      const Tensor &u = c.params().at(name);
      bool differs = false;
      for (int64_t i = 0; i < t.numel(); ++i)
        differs |= t.at(i) != u.at(i);
      EXPECT_TRUE(differs) << name;
    }
    // The same seed gives the same outputs, too.
    Gen gen(12);
    Tensor x = randomTensor(dtype, {2, 5, 9}, gen);
    Tensor ya = a.forward({{"X", x}}).at("Y"), yb = b.forward({{"X", x}}).at("Y");
    for (int64_t i = 0; i < ya.numel(); ++i)
      EXPECT_EQ(ya.at(i), yb.at(i));
  }
}

TEST(LayerNumerics, ParamInitRanges) {
  for (DType dtype : kDTypes)
    for (auto [D, K] : {std::pair<int, int>{64, 32}, {5, 3}, {1, 1}, {128, 7}}) {
      SCOPED_TRACE(fmt::format("D={} K={} {}", D, K, dtypeName(dtype)));
      Layer layer(shippedLib(), "Encoding", {{"D", std::to_string(D)}, {"K", std::to_string(K)}}, {dtype, 3});
      const Tensor &cw = layer.params().at("codewords");
      const Tensor &sc = layer.params().at("scale");
      EXPECT_EQ(cw.dtype(), dtype);
      EXPECT_EQ(shapeString(cw.shape()), shapeString({K, D}));
      EXPECT_EQ(shapeString(sc.shape()), shapeString({K}));
      // f32 rounding may move a value just past the f64 bound.
      double bound = 1 / std::sqrt(static_cast<double>(K * D)), slack = dtype == DType::F32 ? 1e-6 : 0;
      double cmin = INFINITY, cmax = -INFINITY, smin = INFINITY, smax = -INFINITY;
      for (int64_t i = 0; i < cw.numel(); ++i) {
        cmin = std::min(cmin, cw.at(i));
        cmax = std::max(cmax, cw.at(i));
      }
      for (int64_t i = 0; i < sc.numel(); ++i) {
        smin = std::min(smin, sc.at(i));
        smax = std::max(smax, sc.at(i));
      }
      EXPECT_GE(cmin, -bound * (1 + slack));
      EXPECT_LE(cmax, bound * (1 + slack));
      EXPECT_GE(smin, -1.0);
      EXPECT_LT(smax, 0.0);
      // Enough samples to see the ranges used, not a degenerate constant.
      if (cw.numel() >= 1000) {
        EXPECT_LT(cmin, -0.9 * bound);
        EXPECT_GT(cmax, 0.9 * bound);
      }
      if (sc.numel() >= 32) {
        EXPECT_LT(smin, -0.8);
        EXPECT_GT(smax, -0.2);
      }
    }
}

TEST(LayerNumerics, SetParamConvertsAndChecksShape) {
  Layer layer(shippedLib(), "Encoding", {{"D", "5"}, {"K", "3"}}, {DType::F32, 0});
  Gen gen(13);
  Tensor c = randomTensor(DType::F64, {3, 5}, gen);
  layer.setParam("codewords", c);
  EXPECT_EQ(layer.params().at("codewords").dtype(), DType::F32);
  EXPECT_FLOAT_EQ(static_cast<float>(layer.params().at("codewords").at(4)), static_cast<float>(c.at(4)));
  EXPECT_THROW(layer.setParam("codewords", Tensor(DType::F64, {5, 3})), Error);
  EXPECT_THROW(layer.setParam("nope", Tensor(DType::F64, {3})), Error);
}

// ---- errors ---------------------------------------------------------------------------------------------


TEST(LayerNumerics, WrongRankNamesLayerInputAndShapes) {
  Layer enc(shippedLib(), "Encoding", {{"D", "5"}, {"K", "3"}}, {DType::F64, 0});
  // Rank 1: below [B, D] even when `N...` stands for no dimensions at all.
  std::string m = errorOf([&] { enc.forward({{"X", Tensor(DType::F64, {5})}}); });
  EXPECT_MENTIONS(m, "Encoding");
  EXPECT_MENTIONS(m, "'X'");
  EXPECT_MENTIONS(m, "[5]");
  EXPECT_MENTIONS(m, "[B, D, N...]");

  Layer gram(shippedLib(), "GramMatrix", {}, {DType::F32, 0});
  m = errorOf([&] { gram.forward({{"X", Tensor(DType::F32, {2, 3, 4})}}); });
  EXPECT_MENTIONS(m, "GramMatrix");
  EXPECT_MENTIONS(m, "'X'");
  EXPECT_MENTIONS(m, "[2, 3, 4]");
  EXPECT_MENTIONS(m, "[B, C, H, W]");
  m = errorOf([&] { gram.forward({{"X", Tensor(DType::F32, {2, 3, 4, 5, 6})}}); });
  EXPECT_MENTIONS(m, "[2, 3, 4, 5, 6]");

  Layer softmax(shippedLib(), "Softmax", {}, {DType::F32, 0});
  m = errorOf([&] { softmax.forward({{"X", Tensor(DType::F32, {6})}}); });
  EXPECT_MENTIONS(m, "Softmax");
  EXPECT_MENTIONS(m, "[6]");
}

TEST(LayerNumerics, WrongChannelCountNamesD) {
  Layer enc(shippedLib(), "Encoding", {{"D", "5"}, {"K", "3"}}, {DType::F64, 0});
  for (Shape s : {Shape{2, 6, 7}, Shape{2, 4, 3, 3}, Shape{1, 1, 5}}) {
    std::string m = errorOf([&] { enc.forward({{"X", Tensor(DType::F64, s)}}); });
    EXPECT_MENTIONS(m, "Encoding");
    EXPECT_MENTIONS(m, "'X'");
    EXPECT_MENTIONS(m, shapeString(s));
    EXPECT_MENTIONS(m, "[B, D, N...]");
    EXPECT_MENTIONS(m, "D = 5");
  }
}

TEST(LayerNumerics, WrongDTypeThrows) {
  Layer enc(shippedLib(), "Encoding", {{"D", "5"}, {"K", "3"}}, {DType::F64, 0});
  std::string m = errorOf([&] { enc.forward({{"X", Tensor(DType::F32, {2, 5, 3})}}); });
  EXPECT_MENTIONS(m, "Encoding");
  EXPECT_MENTIONS(m, "f32");
  EXPECT_MENTIONS(m, "f64");
  Layer relu(shippedLib(), "ReLU", {}, {DType::F32, 0});
  EXPECT_THROW(relu.forward({{"X", Tensor(DType::F64, {4})}}), Error);
}

TEST(LayerNumerics, UnknownAndMissingInputThrow) {
  Layer enc(shippedLib(), "Encoding", {{"D", "5"}, {"K", "3"}}, {DType::F64, 0});
  std::string m = errorOf([&] { enc.forward({{"Z", Tensor(DType::F64, {2, 5, 3})}}); });
  EXPECT_MENTIONS(m, "'Z'");
  EXPECT_MENTIONS(m, "Encoding");
  m = errorOf([&] { enc.forward({{"X", Tensor(DType::F64, {2, 5, 3})}, {"W", Tensor(DType::F64, {1})}}); });
  EXPECT_MENTIONS(m, "'W'");
  m = errorOf([&] { enc.forward({}); });
  EXPECT_MENTIONS(m, "'X'");
}

TEST(LayerNumerics, MissingHyperParamNamesIt) {
  std::string m = errorOf([] { Layer(shippedLib(), "Encoding", {{"K", "3"}}, {DType::F64, 0}); });
  EXPECT_MENTIONS(m, "'D'");
  EXPECT_MENTIONS(m, "Encoding");
  m = errorOf([] { Layer(shippedLib(), "Encoding", {}, {DType::F64, 0}); });
  EXPECT_TRUE(m.find("'D'") != std::string::npos || m.find("'K'") != std::string::npos) << m;
  m = errorOf([] { Layer(shippedLib(), "Encoding", {{"D", "5"}, {"K", "3"}, {"Q", "1"}}, {DType::F64, 0}); });
  EXPECT_MENTIONS(m, "'Q'");
  m = errorOf([] { Layer(shippedLib(), "NoSuchLayer", {}, {DType::F64, 0}); });
  EXPECT_MENTIONS(m, "NoSuchLayer");
  EXPECT_MENTIONS(m, "Encoding");
}

} // namespace
} // namespace enc
