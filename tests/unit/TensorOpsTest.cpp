// The tensor operations of runtime/TensorOps.h against naive loops over Tensor::at/set written
// here: every dtype, results compared exactly (one rounding from the double result, as set() does).
#include "runtime/TensorOps.h"

#include "runtime/Gpu.h"
#include "runtime/Rng.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace enc {
namespace {

const DType kDTypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16};

// `v` rounded to `dtype` the way Tensor::set rounds.
double rounded(double v, DType dtype) {
  Tensor t(dtype, {1});
  t.set(0, v);
  return t.at(0);
}

// A host tensor of varied values (some negative, not all representable in 16 bits), set element by element.
Tensor varied(DType dtype, const Shape &shape, double offset) {
  Tensor t(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, std::sin(static_cast<double>(i) * 1.7 + offset) * 3.1);
  return t;
}

std::string messageOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "(no error)";
}

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

// The naive argmax: for each position of the other dimensions, the first index of the maximum.
std::vector<int64_t> naiveArgmax(const Tensor &a, int dim) {
  int64_t outer = 1, inner = 1, n = a.dim(dim);
  for (int i = 0; i < dim; ++i) outer *= a.dim(i);
  for (int i = dim + 1; i < a.rank(); ++i) inner *= a.dim(i);
  std::vector<int64_t> out;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      int64_t best = 0;
      for (int64_t k = 1; k < n; ++k)
        if (a.at((o * n + k) * inner + in) > a.at((o * n + best) * inner + in)) best = k;
      out.push_back(best);
    }
  return out;
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

// ---- on the GPU (also run on the CUDA emulator: the suites' names match its filter) ----

#define REQUIRE_GPU() \
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason()

// The largest difference a GPU result may have from the value rounded once from double: the GPU
// computes 16-bit tensors in f32 and f32 in f32 (a factor such as scale's is rounded to f32).
double slack(double want, DType d) {
  switch (d) {
  case DType::F64: return 1e-12 * std::max(1.0, std::abs(want));
  case DType::F32: return 1e-6 * std::max(1.0, std::abs(want));
  default: return 0; // an f32 result of f16/bf16 operands rounds to the same 16-bit value
  }
}

TEST(TensorOpsGpu, ElementwiseRunsOnTheDevice) {
  REQUIRE_GPU();
  for (DType d : kDTypes) {
    Tensor ha = varied(d, {3, 40}, 0), hb = varied(d, {3, 40}, 1);
    Tensor a = ha.to(Device::CUDA), b = hb.to(Device::CUDA);
    Tensor s = add(a, b), df = sub(a, b), pr = mul(a, b), sc = scale(a, -0.3);
    for (Tensor *t : {&s, &df, &pr, &sc}) {
      EXPECT_TRUE(t->isCuda());
      EXPECT_EQ(t->dtype(), d);
      EXPECT_EQ(t->shape(), (Shape{3, 40}));
    }
    Tensor hs = s.cpu(), hd = df.cpu(), hp = pr.cpu(), hc = sc.cpu();
    for (int64_t i = 0; i < 120; ++i) {
      double x = ha.at(i), y = hb.at(i);
      EXPECT_EQ(hs.at(i), rounded(x + y, d)) << dtypeName(d) << " " << i; // exact: one rounding of an f32 sum
      EXPECT_EQ(hd.at(i), rounded(x - y, d)) << dtypeName(d) << " " << i;
      EXPECT_EQ(hp.at(i), rounded(x * y, d)) << dtypeName(d) << " " << i;
      // -0.3 in f32 for 16-bit tensors: within one unit in the last place of the rounded product.
      double want = rounded(x * -0.3, d);
      EXPECT_NEAR(hc.at(i), want, isHalfPrecision(d) ? std::abs(want) * (d == DType::F16 ? 1e-3 : 8e-3) : slack(want, d))
          << dtypeName(d) << " " << i;
    }
    Tensor alias = a;
    addInPlace(a, b, 2);
    // Compiled now: the operations allocate nothing of the tensors' size on the host.
    resetAllocationStats();
    addInPlace(a, b, -0.5);
    add(a, b), sub(a, b), mul(a, b), scale(a, 1.5);
    EXPECT_LT(allocationStats().largestBytes, static_cast<int64_t>(ha.nbytes())) << dtypeName(d) << ": a host copy";
    Tensor host = alias.cpu();
    for (int64_t i = 0; i < 120; ++i) {
      double want = rounded(rounded(ha.at(i) + 2 * hb.at(i), d) - 0.5 * hb.at(i), d);
      EXPECT_EQ(host.at(i), want) << dtypeName(d) << " " << i; // both factors exact in every dtype
    }
  }
  std::string e = messageOf([] { add(zeros({2}), zeros({2}, DType::F32, Device::CUDA)); });
  EXPECT_NE(e.find("one tensor is on the GPU, the other on the CPU"), std::string::npos) << e;
  e = messageOf([] {
    Tensor g = zeros({2}, DType::F32, Device::CUDA);
    addInPlace(g, zeros({2}));
  });
  EXPECT_NE(e.find("GPU"), std::string::npos) << e;
}

TEST(TensorOpsGpu, FillFullAndCopy) {
  REQUIRE_GPU();
  for (DType d : kDTypes) {
    for (int64_t n : {1, 2, 7, 1000}) {
      Tensor t = full({n}, 0.1, d, Device::CUDA), z = zeros({n}, d, Device::CUDA), o = ones({n}, d, Device::CUDA);
      ASSERT_TRUE(t.isCuda());
      Tensor ht = t.cpu(), hz = z.cpu(), ho = o.cpu();
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(ht.at(i), rounded(0.1, d)) << dtypeName(d) << " n " << n << " " << i;
        ASSERT_EQ(hz.at(i), 0);
        ASSERT_EQ(ho.at(i), 1);
      }
      fill(t, -1); // every byte differs from the next
      fill(z, std::nan("")); // all-ones bytes? not in every dtype: either way, NaN everywhere
      ht = t.cpu(), hz = z.cpu();
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(ht.at(i), -1);
        ASSERT_TRUE(std::isnan(hz.at(i)));
      }
    }
    Tensor a = varied(d, {3, 4}, 0).to(Device::CUDA), b = zeros({3, 4}, d, Device::CUDA);
    copyInto(b, a); // on the device
    Tensor back = zeros({3, 4}, d);
    copyInto(back, b); // device to host
    for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(back.at(i), varied(d, {3, 4}, 0).at(i));
    copyInto(b, varied(d, {3, 4}, 2)); // host to device
    EXPECT_EQ(b.cpu().at(5), varied(d, {3, 4}, 2).at(5));
  }
}

// Reductions on the device return small results: sums in f32 (f64 for f64), argmax indices.
TEST(TensorOpsGpu, SumMeanAndArgmax) {
  REQUIRE_GPU();
  for (DType d : kDTypes) {
    Tensor h = varied(d, {50, 41}, 0.5), a = h.to(Device::CUDA);
    double s = 0, magnitude = 0;
    for (int64_t i = 0; i < h.numel(); ++i) s += h.at(i), magnitude += std::abs(h.at(i));
    const double tolerance = (d == DType::F64 ? 1e-13 : 1e-6) * magnitude; // f32 sums: a tree's rounding
    EXPECT_NEAR(sum(a), s, tolerance) << dtypeName(d);
    EXPECT_NEAR(mean(a), s / 2050, tolerance / 2050) << dtypeName(d);
    resetAllocationStats();
    sum(a);
    EXPECT_LT(allocationStats().largestBytes, 1024) << dtypeName(d) << ": the tensor came to the host";
    EXPECT_EQ(sum(zeros({0}, d, Device::CUDA)), 0);
    EXPECT_EQ(mean(full({}, 4, d, Device::CUDA)), 4);

    EXPECT_EQ(argmax(a), naiveArgmax(h, 1)) << dtypeName(d);
    EXPECT_EQ(argmax(a, 0), naiveArgmax(h, 0)) << dtypeName(d);
    Tensor cube = varied(d, {2, 5, 3}, 0.7);
    EXPECT_EQ(argmax(cube.to(Device::CUDA), 1), naiveArgmax(cube, 1)) << dtypeName(d);
    EXPECT_EQ(argmax(cube.to(Device::CUDA), -3), naiveArgmax(cube, 0)) << dtypeName(d);
    // Ties: the first maximum; NaN counts as the largest, the first NaN wins; -inf rows.
    Tensor special = fromHost(std::vector<double>{1, 3, 3, 0, 2, 2, 1, NAN, 5, NAN, -INFINITY, -INFINITY}, {4, 3}, d,
                              Device::CUDA);
    EXPECT_EQ(argmax(special), (std::vector<int64_t>{1, 1, 1, 0})) << dtypeName(d);
  }
  // An argmax over more than 2^24 f32 values would need exact indices beyond f32: the host does it.
  std::string e = messageOf([] { argmax(zeros({2, 3}, DType::F32, Device::CUDA), 2); });
  EXPECT_NE(e.find("dimension 2 is out of range for shape [2, 3]"), std::string::npos) << e;
}

} // namespace
} // namespace enc
