// fusePointwiseKernels (compiler/FusePointwiseKernels.cpp): pointwise kernels over one iteration
// space become one kernel with an output each, unless one reads another's output at another
// position. The device optimizers' Adam step is one kernel on the CPU and on the GPU
// (FusePointwiseKernelsGpu, run on the CUDA emulator too) and equals Adam written in double
// here; a shifted read keeps its kernels apart and its values right.
#include "TensorValues.h"

#include "compiler/LoopIR.h"
#include "runtime/DeviceOps.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc {
namespace {

using testing::maxRelError;
using testing::tensorOf;
using testing::valuesOf;

std::vector<double> draws(size_t n, uint64_t seed, double lo, double hi) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double &x : v) x = rng.uniform(lo, hi);
  return v;
}

LayerOptions f64On(Device device) {
  LayerOptions o;
  o.dtype = DType::F64;
  o.device = device;
  return o;
}

// Step t of Adam (AdamW when `decoupled`) on n values, as torch.optim computes it, in double.
struct AdamReference {
  std::vector<double> p, m, v;
};
AdamReference adamStep(const std::vector<double> &p, const std::vector<double> &g, const std::vector<double> &m,
                       const std::vector<double> &v, double lr, double b1, double b2, double eps, double wd,
                       bool decoupled, int t) {
  AdamReference r{p, m, v};
  for (size_t i = 0; i < p.size(); ++i) {
    double grad = decoupled ? g[i] : g[i] + wd * p[i];
    double param = decoupled ? p[i] * (1 - lr * wd) : p[i];
    r.m[i] = b1 * m[i] + (1 - b1) * grad;
    r.v[i] = b2 * v[i] + (1 - b2) * grad * grad;
    double mHat = r.m[i] / (1 - std::pow(b1, t)), vHat = r.v[i] / (1 - std::pow(b2, t));
    r.p[i] = param - lr * mHat / (std::sqrt(vHat) + eps);
  }
  return r;
}

// The AdamStep layer the device optimizers run, on `device`: one kernel, Adam's values.
void expectAdamStepIsOneKernel(Device device) {
  const size_t n = 1000;
  const std::vector<double> p = draws(n, 1, -1, 1), g = draws(n, 2, -0.5, 0.5), m = draws(n, 3, -0.1, 0.1),
                            v = draws(n, 4, 0, 0.01);
  for (bool decoupled : {false, true}) {
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    const int t = 3;
    Layer layer(device::library(), "AdamStep", {}, f64On(device));
    // S as runtime/Adam.cpp passes it.
    const std::vector<double> s = {decoupled ? 1 - lr * wd : 1, decoupled ? 0 : wd, b1, 1 - b1, b2, 1 - b2,
                                   lr / (1 - std::pow(b1, t)), std::sqrt(1 - std::pow(b2, t)), eps};
    const int64_t count = static_cast<int64_t>(n);
    std::map<std::string, Tensor> in = {{"P", tensorOf(p, {count})}, {"G", tensorOf(g, {count})},
                                        {"M", tensorOf(m, {count})}, {"V", tensorOf(v, {count})},
                                        {"S", tensorOf(s, {9})}};
    for (auto &[name, tensor] : in) tensor = tensor.to(device);
    auto out = layer.forward(in);
    EXPECT_EQ(layer.lastForwardLoops().kernels.size(), 1u) << ir::printLoops(layer.lastForwardLoops());
    EXPECT_EQ(layer.lastForwardLoops().kernels[0].outputs, 3);
    AdamReference want = adamStep(p, g, m, v, lr, b1, b2, eps, wd, decoupled, t);
    EXPECT_LT(maxRelError(valuesOf(out.at("Q")), want.p), 1e-13) << "decoupled " << decoupled;
    EXPECT_LT(maxRelError(valuesOf(out.at("M2")), want.m), 1e-14);
    EXPECT_LT(maxRelError(valuesOf(out.at("V2")), want.v), 1e-14);
  }
}

// A reads X; B reads A at `shift` from its own position (0: the same one; outside the row: 0).
constexpr const char *kShifted = R"enc(
layer Shifted(shift: int) {
  forward(X: [R, L]) -> (A: [R, L], B: [R, L]) {
    A[r, l] = 2 * X[r, l] + 1
    B[r, l] = A[r, l + shift] * X[r, l] - A[r, l]
  }
}
)enc";

// Whether one loop stores both buffers in its own body (one pointwise nest).
bool storedInOneLoop(const ir::LoopProgram &p, const std::string &a, const std::string &b) {
  bool found = false;
  for (const ir::Kernel &k : p.kernels)
    ir::visit(k.body, [&](const ir::Stmt &s) {
      if (s->kind != ir::StmtKind::For) return true;
      std::set<std::string> stored;
      for (const ir::Stmt &x : ir::withoutBlocks(s->body))
        if (x->kind == ir::StmtKind::Store) stored.insert(x->name);
      found |= stored.count(a) && stored.count(b);
      return true;
    });
  return found;
}

void expectShiftedReadsStayApart(Device device) {
  auto lib = Library::fromSource("shifted.enc", kShifted);
  const int64_t rows = 3, cols = 300; // rows long enough for the GPU's row schedule
  for (int shift : {0, 1, -7}) {
    // Other values for each run: memory left from an earlier run must not look right.
    const std::vector<double> x = draws(static_cast<size_t>(rows * cols), 20 + static_cast<uint64_t>(shift + 10), -1, 1);
    Layer layer(lib, "Shifted", {{"shift", std::to_string(shift)}}, f64On(device));
    auto out = layer.forward({{"X", tensorOf(x, {rows, cols}).to(device)}});
    std::vector<double> a(x.size()), b(x.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t l = 0; l < cols; ++l) a[static_cast<size_t>(r * cols + l)] = 2 * x[static_cast<size_t>(r * cols + l)] + 1;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t l = 0; l < cols; ++l) {
        size_t at = static_cast<size_t>(r * cols + l);
        const int64_t from = l + shift;
        const double shifted = from >= 0 && from < cols ? a[static_cast<size_t>(r * cols + from)] : 0;
        b[at] = shifted * x[at] - a[at];
      }
    const ir::LoopProgram &loops = layer.lastForwardLoops();
    // Read at its own position only: one nest; read elsewhere: A's loop runs before B's (in a
    // kernel of its own, or, on the CPU, before B's in the same row: fuseSlabKernels).
    EXPECT_EQ(storedInOneLoop(loops, "A", "B"), shift == 0) << "shift " << shift << "\n" << ir::printLoops(loops);
    EXPECT_LT(maxRelError(valuesOf(out.at("A")), a), 1e-15) << "shift " << shift;
    EXPECT_LT(maxRelError(valuesOf(out.at("B")), b), 1e-15) << "shift " << shift;
  }
}

TEST(FusePointwiseKernels, AdamStepIsOneKernel) { expectAdamStepIsOneKernel(Device::CPU); }

TEST(FusePointwiseKernels, ShiftedReadsStayApart) { expectShiftedReadsStayApart(Device::CPU); }

#define REQUIRE_GPU() \
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason()

TEST(FusePointwiseKernelsGpu, AdamStepIsOneKernel) {
  REQUIRE_GPU();
  expectAdamStepIsOneKernel(Device::CUDA);
}

TEST(FusePointwiseKernelsGpu, ShiftedReadsStayApart) {
  REQUIRE_GPU();
  expectShiftedReadsStayApart(Device::CUDA);
}

} // namespace
} // namespace enc
