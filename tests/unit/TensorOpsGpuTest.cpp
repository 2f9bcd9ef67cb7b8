// The tensor operations of runtime/TensorOps.h on the GPU (also run on the CUDA emulator: the suite's
// name matches its filter), against the naive loops of TensorOpsReference.h.
#include "TensorOpsReference.h"

#include "runtime/Gpu.h"
#include "runtime/TensorOps.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace enc {
namespace {

using namespace enc::testing;

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
