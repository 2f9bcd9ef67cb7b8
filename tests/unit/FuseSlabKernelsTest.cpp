// fuseSlabKernels (compiler/FuseSlabKernels.cpp): CPU kernels parallel over one index whose
// iterations each stay in their own slab of what they pass on run as one kernel; a kernel that
// reads another iteration's slab (a mirrored or shifted row) keeps its own, and the layer still
// computes what loops in double precision compute.
#include "compiler/LoopIR.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include "LoweredLoops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>

namespace enc {
namespace {

using testing::lowered;

// The kernel writing `tensor`, or null.
const ir::Kernel *writerOf(const ir::LoopProgram &p, const std::string &tensor) {
  for (const ir::Kernel &k : p.kernels)
    if (ir::kernelWrites(k).count(tensor)) return &k;
  return nullptr;
}

TEST(FuseSlabKernels, SoftmaxIsOneKernelPerBatchElement) {
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(8)}, {"N", ir::intImm(1024)}};
  Layer encoding(Library::shipped(), "Encoding", {{"D", "128"}, {"K", "32"}}, {});
  ir::LoopProgram forward = lowered(encoding.program(), sizes);
  const ir::Kernel *a = writerOf(forward, "A");
  ASSERT_NE(a, nullptr);
  // The distances, the softmax's max, sum and quotient, and the sums over A: one kernel.
  for (const char *t : {"A_sum1", "A_max2", "A_sum3", "Y_sum1", "Y"}) EXPECT_EQ(writerOf(forward, t), a) << t;
  EXPECT_EQ(forward.kernels.size(), 1u) << ir::printLoops(forward);

  Layer softmax(Library::shipped(), "Softmax", {}, {});
  ir::LoopProgram s = lowered(softmax.program(), {{"B", ir::intImm(4)}, {"C", ir::intImm(10)}, {"L", ir::intImm(64)}});
  EXPECT_EQ(s.kernels.size(), 1u) << ir::printLoops(s);
  ir::LoopProgram g = lowered(softmax.gradientProgram(), {{"B", ir::intImm(4)}, {"C", ir::intImm(10)}, {"L", ir::intImm(64)}});
  EXPECT_EQ(g.kernels.size(), 1u) << ir::printLoops(g);
}

// Two kernels parallel over b < 4: the first stores T[b * 8 + i], the second reads T at `at`
// (an index in b and i < 8).
ir::LoopProgram twoKernels(const ir::Expr &at) {
  using namespace ir;
  Expr b = indexVar("b"), i = indexVar("i");
  auto kernel = [&](const std::string &out, const std::string &in, const Expr &where) {
    Kernel k;
    k.name = "k_" + out;
    k.output = out;
    k.buffers = {out, in};
    k.launch = ForKind::Parallel;
    k.launchExtent = intImm(4);
    k.body = forLoop("b", intImm(4), ForKind::Parallel,
                     {forLoop("i", intImm(8), ForKind::Serial, {store(out, b * intImm(8) + i, load(in, where) * floatImm(2), {})})});
    return k;
  };
  LoopProgram p;
  p.kernels = {kernel("T", "X", b * intImm(8) + i), kernel("Y", "T", at)};
  return p;
}

// The rule on loop IR: a read in the iteration's own slab (reversed within it) merges; a read at
// the same stride but past the slab's end, in slabs of another size, or at another stride, does not.
TEST(FuseSlabKernels, OnlyReadsInTheIterationsOwnSlabMerge) {
  using namespace ir;
  Expr b = indexVar("b"), i = indexVar("i");
  EXPECT_EQ(fuseSlabKernels(twoKernels(b * intImm(8) + (intImm(7) - i))).kernels.size(), 1u);
  EXPECT_EQ(fuseSlabKernels(twoKernels(b * intImm(8) + i + intImm(4))).kernels.size(), 2u);
  EXPECT_EQ(fuseSlabKernels(twoKernels(i * intImm(4) + b)).kernels.size(), 2u);
  // Slabs of 4 in a buffer written in slabs of 8: iteration 1 would read iteration 0's.
  EXPECT_EQ(fuseSlabKernels(twoKernels(b * intImm(4) + i % intImm(4))).kernels.size(), 2u);
  EXPECT_EQ(fuseSlabKernels(twoKernels((intImm(3) - b) * intImm(8) + i)).kernels.size(), 2u);
}

const char *kLayers = R"(
layer Mirrored() {
  forward(X: [B, C]) -> Y: [B, C] {
    M[b] = max(c: X[b, c])
    Y[b, c] = X[b, c] - M[B - 1 - b]
  }
}
layer NextRow() {
  forward(X: [B, C]) -> Y: [B, C] {
    M[b] = max(c: X[b, c])
    Y[b, c] = X[b, c] - M[b + 1]
  }
}
layer Flat() {
  forward(X: [B, C]) -> Y: [B, C] {
    S[b, c] = sum(e: X[b, e] * X[b, c])
    Y[b, c] = X[b, c] - S[b, c] + S[(b * C + c + 1) // C % B, (c + 1) % C]
  }
}
)";

// Y from loops in double precision; `shifted` says which row's max each row subtracts.
TEST(FuseSlabKernels, ReadsOfAnotherSlabKeepTheirKernel) {
  auto library = Library::fromSource("slabs.enc", kLayers);
  const int64_t B = 6, C = 37;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  for (DType dtype : {DType::F64, DType::F32}) {
    for (const std::string name : {"Mirrored", "NextRow", "Flat"}) {
      SCOPED_TRACE(name + " " + dtypeName(dtype));
      Layer layer(library, name, {}, {dtype});
      ir::LoopProgram p = lowered(layer.program(), {{"B", ir::intImm(B)}, {"C", ir::intImm(C)}});
      EXPECT_EQ(p.kernels.size(), 2u) << ir::printLoops(p);
      Tensor x(dtype, {B, C});
      for (int64_t i = 0; i < x.numel(); ++i) x.set(i, u(rng));
      Tensor y = layer.forward({{"X", x}}).at("Y");
      auto rowMax = [&](int64_t b) {
        double m = -INFINITY;
        for (int64_t c = 0; c < C; ++c) m = std::max(m, x.at(b * C + c));
        return m;
      };
      auto s = [&](int64_t b, int64_t c) {
        double v = 0;
        for (int64_t e = 0; e < C; ++e) v += x.at(b * C + e) * x.at(b * C + c);
        return v;
      };
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c) {
          double want = x.at(b * C + c);
          if (name == "Mirrored") want -= rowMax(B - 1 - b);
          if (name == "NextRow") want -= b + 1 < B ? rowMax(b + 1) : 0.0;
          if (name == "Flat") {
            int64_t f = b * C + c + 1;
            want += s(f / C % B, f % C) - s(b, c);
          }
          ASSERT_NEAR(y.at(b * C + c), want, (dtype == DType::F64 ? 1e-12 : 1e-4) * (1 + std::abs(want)))
              << "at " << b << ", " << c;
        }
    }
  }
}

} // namespace
} // namespace enc
