// int(x) of every number: truncated toward zero, saturating at the 64-bit limits, NaN giving 0.
// A plain conversion of infinity, NaN or a number past 2^63 is undefined (LLVM's fptosi is
// poison there): the outputs were whatever memory held, also for reads X[int(inf)] that the
// bounds check should have made 0.
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace enc {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

const char *kLayers = R"(layer ToInt() {
  forward(X: [N]) -> Y: [N] {
    Y[i] = float(int(X[i]))
  }
}
layer ReadAt() {
  forward(X: [N], T: [N]) -> Y: [N] {
    Y[i] = X[int(T[i])] + X[int(inf)] + X[int(-inf)]
  }
}
)";

const std::vector<double> kValues = {kInf, -kInf, std::nan(""), 1e30, -1e30, 2.7, -2.7, 1.0};

Tensor vector(const std::vector<double> &v, DType dtype) {
  Tensor t(DType::F64, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.set(static_cast<int64_t>(i), v[i]);
  return t.to(dtype);
}

void expectSaturates(Device device, DType dtype) {
  auto lib = Library::fromSource("int.enc", kLayers);
  Layer toInt(lib, "ToInt", {}, LayerOptions{dtype, 0, true, true, device});
  Tensor y = toInt.forward({{"X", vector(kValues, dtype)}}).at("Y").to(DType::F64).cpu();
  const double big = 0x1p63;
  const std::vector<double> expected = {big, -big, 0, big, -big, 2, -2, 1};
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(y.at(static_cast<int64_t>(i)), expected[i]) << "int(" << kValues[i] << ")";

  // Out of range reads are 0; int(NaN) is 0, so X[int(NaN)] is X[0].
  Layer readAt(lib, "ReadAt", {}, LayerOptions{dtype, 0, true, true, device});
  std::vector<double> x = {10, 11, 12, 13, 14, 15, 16, 17};
  Tensor r = readAt.forward({{"X", vector(x, dtype)}, {"T", vector(kValues, dtype)}}).at("Y").to(DType::F64).cpu();
  const std::vector<double> read = {0, 0, 10, 0, 0, 12, 0, 11};
  for (size_t i = 0; i < read.size(); ++i)
    EXPECT_EQ(r.at(static_cast<int64_t>(i)), read[i]) << "X[int(" << kValues[i] << ")]";
}

TEST(IntOfNumber, SaturatesAndTakesNaNToZero) {
  for (DType dtype : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtypeName(dtype));
    expectSaturates(Device::CPU, dtype);
  }
}

TEST(IntOfNumber, SaturatesOnTheGpuAsOnTheCpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU";
  for (DType dtype : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtypeName(dtype));
    expectSaturates(Device::CUDA, dtype);
  }
}

} // namespace
} // namespace enc
