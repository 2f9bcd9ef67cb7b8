// The CPU's register-blocked contraction schedule (compiler/TileContractions.cpp): the loop
// IR it builds, and forward and backward numerics against naive double loops at sizes that
// exercise every remainder (extents not multiples of the blocks, extent 1, the vectorized
// index shorter than a vector).
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/codegen/llvm/LLVMCodegen.h"
#include "runtime/CpuJit.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/raw_ostream.h>

#include "LoweredLoops.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace enc {
namespace {

using V = std::vector<double>;

const std::shared_ptr<const Library> &lib() {
  static std::shared_ptr<const Library> l = Library::shipped();
  return l;
}

Tensor randomTensor(DType dtype, const Shape &shape, std::mt19937_64 &rng) {
  Tensor t(dtype, shape);
  std::uniform_real_distribution<double> u(-1, 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, u(rng));
  return t;
}

V values(const Tensor &t) {
  V v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.at(i);
  return v;
}

void expectClose(const Tensor &got, const V &want, DType dtype, const std::string &what) {
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.size()) << what;
  double tol = dtype == DType::F32 ? 2e-4 : 1e-10;
  for (size_t i = 0; i < want.size(); ++i) {
    double g = got.at(static_cast<int64_t>(i));
    ASSERT_NEAR(g, want[i], tol * (1 + std::abs(want[i]))) << what << " at " << i;
  }
}

// The CPU loops of a program with these sizes fixed.
std::string cpuLoops(const ir::Program &p, const std::map<std::string, ir::Expr> &sizes) {
  return ir::printLoops(ir::lowerToLoops(ir::specialize(p, sizes), ir::Target::CPU));
}

// The printed kernel that starts at the first occurrence of `start` (through the next
// kernel's header), or "" when `start` does not occur.
std::string kernelText(const std::string &text, const std::string &start) {
  size_t at = text.find(start);
  return at == std::string::npos ? "" : text.substr(at, text.find("\nkernel ", at + 1) - at);
}

// Whether every line of `lines` occurs in `kernel`, the first occurrence of each after that of
// the one before it (loops nested in that order, a copy before the loop that reads it).
::testing::AssertionResult inOrder(const std::string &kernel, const std::vector<std::string> &lines) {
  size_t previous = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    size_t found = kernel.find(lines[i]);
    if (found == std::string::npos) return ::testing::AssertionFailure() << "no \"" << lines[i] << "\" in\n" << kernel;
    if (i > 0 && found <= previous)
      return ::testing::AssertionFailure() << "\"" << lines[i] << "\" before \"" << lines[i - 1] << "\" in\n" << kernel;
    previous = found;
  }
  return ::testing::AssertionSuccess();
}

// The benchmarks' convolutions (bench/bench_layers.cpp): ResNet's 64 -> 64 and its stride-2
// 64 -> 128, both on [8, 64, 56, 56].
const std::map<std::string, std::string> kResNetConv = {
    {"in_channels", "64"}, {"out_channels", "64"}, {"kernel_size", "3"}, {"padding", "1"}};
const std::map<std::string, std::string> kStrideTwoConv = {
    {"in_channels", "64"}, {"out_channels", "128"}, {"kernel_size", "3"}, {"padding", "1"}, {"stride", "2"}};
std::map<std::string, ir::Expr> resnetSizes() {
  return {{"B", ir::intImm(8)}, {"H", ir::intImm(56)}, {"W", ir::intImm(56)}};
}

std::string tileLoops(const std::string &layer, const std::map<std::string, std::string> &sets) {
  Layer l(lib(), layer, sets, {});
  return ir::printLoops(ir::lowerToLoops(l.program(), ir::Target::CPU));
}

TEST(CpuTiling, GramVectorizesTheReductionAndBlocksOutputs) {
  std::string text = tileLoops("GramMatrix", {});
  EXPECT_NE(text.find("vectorized for w.l in 0..16:"), std::string::npos) << text;
  EXPECT_NE(text.find("unrolled for c.i in 0..4:"), std::string::npos) << text;
  EXPECT_NE(text.find("unrolled for e.i in 0..4:"), std::string::npos) << text;
  // After full steps, the rest in one 16-lane step ending at W whose lanes before the last
  // W % 16 positions add 0 ...
  EXPECT_NE(text.find("for w.m in 0..min(W / 16, 1) * min(W % 16, 1):"), std::string::npos) << text;
  EXPECT_NE(text.find("select(w.l >= 16 - W % 16, "), std::string::npos) << text;
  // ... and W < 16 in 8 lanes, then one 8-lane step ending at W the same way.
  EXPECT_NE(text.find("vectorized for w.l in 0..8:"), std::string::npos) << text;
  EXPECT_NE(text.find("for w.n in 0..(1 - min(W / 16, 1)) * min(W / 8, 1) * min(W % 8, 1):"), std::string::npos) << text;
  EXPECT_NE(text.find("select(w.l >= 8 - W % 8, "), std::string::npos) << text;
}

// Gram's forward is symmetric in c and e: per block of 4 channels c, the diagonal tile, then
// the tiles of e after it, each storing its outputs twice; the remainders' square last.
TEST(CpuTiling, GramComputesTheTilesOnAndAfterTheDiagonal) {
  std::string text = kernelText(tileLoops("GramMatrix", {}), "kernel k0_Y");
  EXPECT_TRUE(inOrder(text, {"for c.s in 0..C / 4:", "for e.o in 0..1:",
                             "Y[(b * C + (c.s * 4 + (c.o * 4 + c.i))) * C + (c.s * 4 + (e.o * 4 + e.i))] = _sum",
                             "for e.o in 0..(C - c.s * 4 - 4) / 4:",
                             "Y[(b * C + (c.s * 4 + (c.o * 4 + c.i))) * C + (c.s * 4 + 4 + (e.o * 4 + e.i))] = _sum",
                             "Y[(b * C + (c.s * 4 + 4 + (e.o * 4 + e.i))) * C + (c.s * 4 + (c.o * 4 + c.i))] = _sum",
                             "for e.t in 0..(C - c.s * 4 - 4) % 4:", "for c in 0..C % 4:", "for e in 0..C % 4:",
                             "Y[(b * C + (C / 4 * 4 + c)) * C + (C / 4 * 4 + e)] = _sum"}));
}

TEST(CpuTiling, ConvVectorizesOutputColumnsAndBlocksChannels) {
  std::string text =
      tileLoops("Conv2d", {{"in_channels", "8"}, {"out_channels", "10"}, {"kernel_size", "3"}, {"padding", "1"}});
  EXPECT_NE(text.find("vectorized for w.i in 0..32:"), std::string::npos) << text;
  EXPECT_NE(text.find("unrolled for o.i in 0..8:"), std::string::npos) << text;
  EXPECT_NE(text.find("for o.t in 0..2:"), std::string::npos) << text; // 10 = 8 + 2 rows
  EXPECT_NE(text.find("alloc _acc: float[256]"), std::string::npos) << text;
}

// Conv2d's weight gradient grad_weight[o, c, kh, kw] = sum(b, h, w: gY[b, o, h, w] * X[...]) is a
// dot product along w. With o parallel its tile could only block kh x kw (9 multiply-adds per
// 10 loads); with enough input channels the parallel loop runs over c instead and the tile
// blocks 4 output channels by 3 kernel columns (12 per 7).
// A convolution whose output columns fill no whole tile (28 at stride 2) packs its weights once
// per block of 32 output channels as [c, kh, kw][lane] and vectorizes along the channels, 7
// columns per tile as rows: two vector loads per 14 multiply-adds, where 16 rows of 16
// columns took one broadcast per multiply-add.
TEST(CpuTiling, ConvWithShortRowsPacksItsWeights) {
  Layer l(lib(), "Conv2d", kStrideTwoConv, {});
  std::map<std::string, ir::Expr> sizes = resnetSizes();
  std::string text = cpuLoops(l.program(), sizes);
  std::string kernel = kernelText(text, "kernel k0_Y");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_NE(kernel.find("alloc _stage0: float[18432]"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("_stage0[((c * 3 + kh) * 3 + kw) * 32 + o.i] = weight["), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("unrolled for w.i in 0..7:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("vectorized for o.i in 0..32:"), std::string::npos) << kernel;
  // At stride 1 and 56 columns the rows' reads are bounds-checked: the first and the last
  // block of 8 rows keep the checks, the 5 blocks between read X unchecked.
  Layer resnet(lib(), "Conv2d", kResNetConv, {});
  text = cpuLoops(resnet.program(), sizes);
  size_t interior = text.find("for w.m in 0..5:");
  ASSERT_NE(interior, std::string::npos) << text;
  std::string inside = text.substr(interior, text.find("for w.e in 0..1:", interior) - interior);
  EXPECT_NE(inside.find(" * 56 + ((w.m + 1) * 8 + w.i + kw - 1)]"), std::string::npos) << inside;
  EXPECT_EQ(inside.find("w.i + kw - 1 >= 0"), std::string::npos) << inside;
  EXPECT_NE(text.find("for w.o in 0..1:"), std::string::npos) << text;
  // 32 columns fill a tile: vectorized along them, no copy.
  std::map<std::string, ir::Expr> square = {{"B", ir::intImm(8)}, {"H", ir::intImm(64)}, {"W", ir::intImm(64)}};
  text = cpuLoops(l.program(), square);
  EXPECT_EQ(text.find("_stage0"), std::string::npos) << text;
  EXPECT_NE(text.find("vectorized for w.i in 0..32:"), std::string::npos) << text;
}

// A stride-2 convolution's input gradient computes each stride phase of its 56 columns, 28
// positions, as one tile of 8 input channels by two overlapping vectors (columns 0..15 and
// 12..27) that share each weight broadcast (16 rows of 16 lanes broadcast once per
// multiply-add), and stores each vector to every other column with a masked store of the
// spread lanes, not a scatter.
TEST(CpuTiling, StridedInputGradientTilesTwoOverlappingVectors) {
  Layer l(lib(), "Conv2d", kStrideTwoConv, {});
  std::map<std::string, ir::Expr> sizes = resnetSizes();
  ir::LoopProgram loops = testing::lowered(l.gradientProgram(), sizes);
  const ir::Kernel *gradX = nullptr;
  for (const ir::Kernel &k : loops.kernels)
    if (k.name.find("grad_X") != std::string::npos) gradX = &k;
  ASSERT_NE(gradX, nullptr) << ir::printLoops(loops);
  ir::LoopProgram one;
  one.types = loops.types;
  one.kernels = {*gradX};
  std::string kernel = ir::printLoops(one);
  EXPECT_NE(kernel.find("unrolled for j1.i in 0..8:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("unrolled for j3.q.h in 0..2:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("vectorized for j3.q.i in 0..16:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("(2 * (j3.q.h * 12 + j3.q.i) + j3.r)] = _acc["), std::string::npos) << kernel;

  llvm::LLVMContext ctx;
  auto module = CpuJit::instance().newModule("strided", ctx);
  codegen::emitLLVMKernel(*gradX, loops.types, *module);
  std::string ir;
  llvm::raw_string_ostream os(ir);
  module->print(os, nullptr);
  os.flush();
  EXPECT_NE(ir.find("@llvm.masked.store.v32f32"), std::string::npos) << ir;
  EXPECT_EQ(ir.find("masked.scatter"), std::string::npos) << ir;
}

// The tile: 2 output channels by the whole 3 x 3 window (18 accumulators along w), so each
// row of grad_Y is read once per tile, not once per kernel row.
TEST(CpuTiling, ConvWeightGradientRunsParallelOverInputChannels) {
  Layer l(lib(), "Conv2d", {{"in_channels", "32"}, {"out_channels", "7"}, {"kernel_size", "3"}, {"padding", "1"}}, {});
  std::string text = ir::printLoops(ir::lowerToLoops(l.gradientProgram(), ir::Target::CPU));
  std::string kernel = kernelText(text, "kernel k0_grad_weight");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_NE(kernel.find("parallel for c in 0..32:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("unrolled for o.i in 0..2:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("unrolled for kh.i in 0..3:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("unrolled for kw.i in 0..3:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("alloc _acc: float[288]"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("for o.t in 0..1:"), std::string::npos) << kernel; // 7 = 3 x 2 + 1 rows
  EXPECT_NE(kernel.find("vectorized for w.l in 0..16:"), std::string::npos) << kernel;
  // Too few input channels to share among threads: o stays parallel.
  Layer narrow(lib(), "Conv2d", {{"in_channels", "3"}, {"out_channels", "6"}, {"kernel_size", "3"}, {"padding", "1"}}, {});
  text = ir::printLoops(ir::lowerToLoops(narrow.gradientProgram(), ir::Target::CPU));
  EXPECT_NE(text.find("parallel for o in 0..6:"), std::string::npos) << text;
}

// A weight gradient over B * H * W = 25088 positions sums in chunks of 28 rows (1568 positions)
// that loop outside the tiles, each added into the output, and the input channels run in
// groups of 8 inside the chunks: a chunk of grad_Y's rows, all 64 output channels, is read
// from cache by the 8 channels of the group.
TEST(CpuTiling, ConvWeightGradientSumsInChunksOfRows) {
  Layer l(lib(), "Conv2d", kResNetConv, {});
  std::map<std::string, ir::Expr> sizes = resnetSizes();
  std::string text = cpuLoops(l.gradientProgram(), sizes);
  std::string kernel = kernelText(text, "kernel k0_grad_weight");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_TRUE(inOrder(kernel, {"parallel for c.p in 0..8:", "for b in 0..8:", "for h.c in 0..2:", "for c in 0..8:",
                                "for o.o in 0..32:", "for h.i in 0..28:"}));
  EXPECT_NE(kernel.find("= select(b == 0 && h.c == 0, 0.0, grad_weight["), std::string::npos) << kernel;
}

// A sum with one output index and no sibling sum over the same domain (Conv2d's bias gradient
// over B * H * W) keeps 16 lanes of partial sums along the unit-stride reduction index, one
// output per iteration of the parallel loop. (Sums with siblings, batch norm's statistics,
// stay plain loops for fuseSiblingReductions: Passes.FuseSiblingReductionsMergesIndependentSums.)
TEST(CpuTiling, BiasGradientIsADotProduct) {
  Layer l(lib(), "Conv2d", {{"in_channels", "3"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}}, {});
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(8)}, {"H", ir::intImm(64)}, {"W", ir::intImm(64)}};
  std::string text = cpuLoops(l.gradientProgram(), sizes);
  std::string kernel = kernelText(text, "grad_bias(");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_NE(kernel.find("parallel for o in 0..8:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("_acc[w.l] = _acc[w.l] + grad_Y["), std::string::npos) << kernel;
}

// Conv2d's input gradient sums select(in range, select(in range, gY[...], 0) * weight, 0): the
// outer guard repeats the masked read's and is dropped, leaving a masked load times a
// broadcast per multiply-add, as in the forward pass.
TEST(CpuTiling, ConvInputGradientKeepsOneGuard) {
  Layer l(lib(), "Conv2d", {{"in_channels", "8"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}}, {});
  std::string text = ir::printLoops(ir::lowerToLoops(l.gradientProgram(), ir::Target::CPU));
  size_t at = text.find("kernel k2_grad_X");
  ASSERT_NE(at, std::string::npos) << text;
  std::string kernel = text.substr(at);
  size_t sum = kernel.find("_acc[j1.i * 32 + j3.i] + ");
  ASSERT_NE(sum, std::string::npos) << kernel;
  std::string line = kernel.substr(sum, kernel.find('\n', sum) - sum);
  EXPECT_NE(line.find("select("), std::string::npos) << line;
  EXPECT_EQ(line.find("select(", line.find("select(") + 1), std::string::npos) << "a second guard: " << line;
}

// A column sum Y[k] = sum(b, i: f(X[b, i, k])) has k unit-stride in its reads: the CPU splits
// the (b, i) positions into 16 chunks, each summing whole rows of k into Y_part[s, k] (the
// row loop streams and vectorizes), then adds the chunks. 3 x 347 positions do not divide by
// 16: the last chunk is guarded.
const char *kColumnSum = R"(
layer ColumnSum() {
  forward(X: [B, N, K]) -> Y: [K] {
    Y[k] = sum(b, i: exp(X[b, i, k]) * X[b, i, k]) + 1
  }
}
)";

// 1041 positions, and 512: the least that is split (32 per chunk, Linear's bias gradient over
// a batch of 512).
TEST(CpuTiling, ColumnSumsSplitIntoRowsPerChunk) {
  auto library = Library::fromSource("colsum.enc", kColumnSum);
  std::mt19937_64 rng(9);
  struct Case { int64_t B, N; };
  for (Case c : {Case{3, 347}, Case{2, 256}})
    for (DType dtype : {DType::F32, DType::F64}) {
      const int64_t B = c.B, N = c.N, K = 20;
      Layer layer(library, "ColumnSum", {}, {dtype});
      Tensor x = randomTensor(dtype, {B, N, K}, rng);
      Tensor y = layer.forward({{"X", x}}).at("Y");
      V want(K, 1.0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < N; ++i)
          for (int64_t k = 0; k < K; ++k) {
            double v = x.at((b * N + i) * K + k);
            want[static_cast<size_t>(k)] += std::exp(v) * v;
          }
      expectClose(y, want, dtype, fmt::format("ColumnSum {} B={} N={}", dtypeName(dtype), B, N));
      std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(B)}, {"N", ir::intImm(N)}, {"K", ir::intImm(K)}};
      ir::Program split = ir::splitColumnReductions(ir::specialize(layer.program(), sizes));
      std::string text = ir::printLoops(ir::lowerToLoops(split, ir::Target::CPU));
      EXPECT_NE(text.find("parallel for split_s in 0..16:"), std::string::npos) << text;
      EXPECT_NE(text.find("for k in 0..20:"), std::string::npos) << text;
      EXPECT_NE(text.find("Y_part[split_s * 20 + k] = Y_part[split_s * 20 + k] + "), std::string::npos) << text;
    }
}

TEST(CpuTiling, GramForwardBackwardAtOddSizes) {
  std::mt19937_64 rng(1);
  for (DType dtype : {DType::F32, DType::F64})
    // [2, 67, 32, 32] and [2, 65, 64, 48]: rows 1024 and 3072 elements apart, so grad_X copies
    // its column panels (67 and 65 rows: 8 blocks of 8 and a remainder; 48 columns: 32 + 16)
    // and stages gY + gY^T (broadcastStageOf), as at [2, 37, 32, 32] (too few rows to copy).
    for (Shape s : std::vector<Shape>{{1, 1, 1, 1}, {2, 5, 3, 17}, {1, 9, 2, 33}, {2, 4, 1, 16}, {1, 7, 5, 15}, {1, 6, 2, 29},
                                      {2, 37, 32, 32}, {2, 67, 32, 32}, {2, 65, 64, 48},
                                      // 4096 and 4160 positions: the reduction in chunks, the
                                      // symmetric tiles adding each chunk into both elements.
                                      {2, 8, 64, 64}, {2, 9, 64, 65}}) {
      int64_t B = s[0], C = s[1], P = s[2] * s[3];
      Layer layer(lib(), "GramMatrix", {}, {dtype, 0});
      Tensor x = randomTensor(dtype, s, rng);
      V xv = values(x);
      Tensor y = layer.forward({{"X", x}}).at("Y");
      Tensor g = randomTensor(dtype, y.shape(), rng);
      V gv = values(g);
      Tensor gx = layer.backward({{"Y", g}}).at("X");
      V want(static_cast<size_t>(B * C * C)), wantGx(xv.size());
      double n = static_cast<double>(C * P);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < C; ++i)
          for (int64_t j = 0; j < C; ++j) {
            double acc = 0;
            for (int64_t p = 0; p < P; ++p) acc += xv[(b * C + i) * P + p] * xv[(b * C + j) * P + p];
            want[(b * C + i) * C + j] = acc / n;
            double gs = (gv[(b * C + i) * C + j] + gv[(b * C + j) * C + i]) / n;
            for (int64_t p = 0; p < P; ++p) wantGx[(b * C + i) * P + p] += gs * xv[(b * C + j) * P + p];
          }
      std::string what = fmt::format("Gram [{},{},{},{}]", s[0], s[1], s[2], s[3]);
      expectClose(y, want, dtype, what + " Y");
      expectClose(gx, wantGx, dtype, what + " grad X");
    }
}

TEST(CpuTiling, LinearForwardBackwardAtOddSizes) {
  std::mt19937_64 rng(2);
  struct Case { int64_t B, I, O; };
  for (DType dtype : {DType::F32, DType::F64})
    // 263 rows: the parallel loops run over chunks of 16 or 32 rows, the last one 7 rows short.
    // 1024 and 2048 inputs: the column panels of X and W are copied (aliasedPanels), in parallel
    // chunks of 8 rows of 45 and 37 (the last ones short), of 33 and 40.
    for (Case c : {Case{1, 1, 1}, Case{3, 37, 9}, Case{5, 16, 33}, Case{2, 70, 41}, Case{263, 37, 263}, Case{45, 1024, 37},
                   Case{33, 2048, 40}}) {
      Layer layer(lib(), "Linear", {{"in_features", std::to_string(c.I)}, {"out_features", std::to_string(c.O)}},
                  {dtype, 3});
      Tensor x = randomTensor(dtype, {c.B, c.I}, rng);
      V xv = values(x), wv = values(layer.params().at("weight")), bv = values(layer.params().at("bias"));
      Tensor y = layer.forward({{"X", x}}).at("Y");
      Tensor g = randomTensor(dtype, y.shape(), rng);
      V gv = values(g);
      auto grads = layer.backward({{"Y", g}});
      V want(static_cast<size_t>(c.B * c.O)), gx(xv.size()), gw(wv.size()), gb(bv.size());
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t o = 0; o < c.O; ++o) {
          double acc = bv[o];
          for (int64_t i = 0; i < c.I; ++i) {
            acc += xv[b * c.I + i] * wv[o * c.I + i];
            gx[b * c.I + i] += gv[b * c.O + o] * wv[o * c.I + i];
            gw[o * c.I + i] += gv[b * c.O + o] * xv[b * c.I + i];
          }
          want[b * c.O + o] = acc;
          gb[o] += gv[b * c.O + o];
        }
      std::string what = fmt::format("Linear B={} in={} out={}", c.B, c.I, c.O);
      expectClose(y, want, dtype, what + " Y");
      expectClose(grads.at("X"), gx, dtype, what + " grad X");
      expectClose(grads.at("weight"), gw, dtype, what + " grad weight");
      expectClose(grads.at("bias"), gb, dtype, what + " grad bias");
    }
}

// Linear's gradients block the parallel index as the tile's rows; each parallel iteration
// takes a chunk of 64 rows (1024 / 64 = 16 iterations to share) and loops over its row blocks
// inside the loop over column tiles, so a tile's column panel is read from cache by every
// row block of the chunk. (At 1000 inputs: at 1024 the panel is copied, next test.)
TEST(CpuTiling, LinearGradientRowsRunInChunks) {
  Layer l(lib(), "Linear", {{"in_features", "1000"}, {"out_features", "1024"}}, {});
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(512)}};
  std::string text = cpuLoops(l.gradientProgram(), sizes);
  EXPECT_EQ(text.find("_stage"), std::string::npos) << text;
  std::string kernel = kernelText(text, "kernel k0_grad_weight");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_TRUE(inOrder(kernel, {"parallel for o.p in 0..16:", "for i.o in 0..31:", "for o.o in 0..8:"}));
  EXPECT_NE(kernel.find("unrolled for o.i in 0..8:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("o.p * 64 + (o.o * 8 + o.i)"), std::string::npos) << kernel;
}

// At 1024 inputs the rows of X (along the batch, grad_weight's reduction) and of W (along the
// outputs, grad_X's) lie 4 KiB apart: each column panel is copied once into a contiguous
// [reduction][32] array and read by the row blocks of a chunk of 256 rows (4 to share).
TEST(CpuTiling, LinearGradientsCopyColumnPanelsWhoseRowsAlias) {
  Layer l(lib(), "Linear", {{"in_features", "1024"}, {"out_features", "1024"}}, {});
  std::string text = ir::printLoops(testing::lowered(l.gradientProgram(), {{"B", ir::intImm(512)}}));
  std::string weight = kernelText(text, "kernel k0_grad_weight"), input = kernelText(text, "kernel k3_grad_X");
  ASSERT_FALSE(weight.empty()) << text;
  ASSERT_FALSE(input.empty()) << text;
  EXPECT_TRUE(inOrder(weight, {"parallel for o.p in 0..4:", "_stage0[b * 32 + i.i] = X[b * 1024 + (i.o * 32 + i.i)]",
                                "for o.o in 0..32:"}));
  EXPECT_NE(weight.find("alloc _stage0: float[16384]"), std::string::npos) << weight;
  EXPECT_NE(weight.find("* _stage0[b * 32 + i.i]"), std::string::npos) << weight;
  EXPECT_NE(input.find("parallel for b.p in 0..4:"), std::string::npos) << input;
  EXPECT_NE(input.find("_stage0[o * 32 + i.i] = weight[o * 1024 + (i.o * 32 + i.i)]"), std::string::npos) << input;
  EXPECT_NE(input.find("* _stage0[o * 32 + i.i]"), std::string::npos) << input;
}

// The benchmark's 3-channel convolution (3 -> 8, 3 x 3, [8, 3, 64, 64]): its input gradient
// has 3 rows (input channels) and no second index to pair them with, so its tiles are 64 lanes
// wide (12 accumulators); the forward's 8 output channels keep 32.
TEST(CpuTiling, FewRowsTakeWideTiles) {
  Layer l(lib(), "Conv2d", {{"in_channels", "3"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}}, {});
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(8)}, {"H", ir::intImm(64)}, {"W", ir::intImm(64)}};
  std::string grad = cpuLoops(l.gradientProgram(), sizes), fwd = cpuLoops(l.program(), sizes);
  EXPECT_TRUE(inOrder(grad, {"alloc _acc: float[192]", "unrolled for j1.i in 0..3:", "vectorized for j3.i in 0..64:",
                             "grad_X[((j0 * 3 + (j1.o * 3 + j1.i)) * 64 + j2) * 64 + (j3.o * 64 + j3.i)] = _acc[j1.i * 64 + j3.i]"}));
  EXPECT_NE(fwd.find("vectorized for w.i in 0..32:"), std::string::npos) << fwd;
  EXPECT_EQ(fwd.find("vectorized for w.i in 0..64:"), std::string::npos) << fwd;
}

// A stride-1 convolution's weight gradient sums over X's rows h_in = h + kh - 1: X's row is
// the same for the window's 3 rows kh, grad_Y's row h_in - kh + 1 moves with them (read as 0
// where it does not exist). The forward pass, whose kh is the reduction, keeps its sum.
TEST(CpuTiling, ConvWeightGradientSumsOverInputRows) {
  Layer l(lib(), "Conv2d", {{"in_channels", "3"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}}, {});
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(8)}, {"H", ir::intImm(64)}, {"W", ir::intImm(64)}};
  std::string text = ir::printLoops(testing::lowered(l.gradientProgram(), sizes));
  std::string kernel = kernelText(text, "kernel k0_grad_weight");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_TRUE(inOrder(kernel, {"for h_in.c in 0..4:", "unrolled for kh.i in 0..3:", "for h_in.i in 0..16:",
                               "select(h_in.c * 16 + h_in.i - kh.i + 1 >= 0 && h_in.c * 16 + h_in.i - kh.i + 1 < 64, "
                               "grad_Y[((b * 8 + o) * 64 + min(max(h_in.c * 16 + h_in.i - kh.i + 1, 0), 63)) * 64 + "
                               "(w.o * 16 + w.l)], 0.0)",
                               "X[((b * 3 + c) * 64 + (h_in.c * 16 + h_in.i)) * 64 + "}));
  std::string fwd = ir::printLoops(testing::lowered(l.program(), sizes));
  EXPECT_EQ(fwd.find("_in"), std::string::npos) << fwd;
}

// Gram's gradient grad_X[b, c, h, w] = sum(e: (gY[b, c, e] + gY[b, e, c]) * X[b, e, h, w]) / n
// broadcasts a sum of two reads per row and step: it is computed once per batch element into
// a local [c][e] array, and the tile broadcasts from that. X's rows along e lie 1024 elements
// apart at 32 x 32: each column panel is copied, the 16 row blocks of c inside its loop.
TEST(CpuTiling, GramGradientStagesTheSymmetrizedGradient) {
  Layer l(lib(), "GramMatrix", {}, {});
  std::string text = ir::printLoops(
      testing::lowered(l.gradientProgram(), {{"B", ir::intImm(8)}, {"C", ir::intImm(128)}, {"H", ir::intImm(32)}, {"W", ir::intImm(32)}}));
  std::string kernel = kernelText(text, "kernel k0_grad_X");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_TRUE(inOrder(kernel, {"parallel for b in 0..8:", "alloc _bcast: float[16384]",
                               "_bcast[c * 128 + e] = grad_Y[(b * 128 + c) * 128 + e] + grad_Y[(b * 128 + e) * 128 + c]",
                               "for h in 0..32:", "_stage0[e * 32 + w.i] = X[((b * 128 + e) * 32 + h) * 32 + (w.o * 32 + w.i)]",
                               "for c.o in 0..16:", "_bcast[(c.o * 8 + c.i) * 128 + e] * _stage0[e * 32 + w.i]"}));
}

// Inspiration's forward Y[n, c, h, w] = sum(k: P[k, c] * X[n, k, h, w]) at 32 x 32: X's rows
// along k alias in cache, so each column panel is copied before the row blocks that read it;
// at 33 x 34 nothing is copied.
TEST(CpuTiling, InspirationCopiesColumnPanelsWhoseRowsAlias) {
  Layer l(lib(), "Inspiration", {{"C", "128"}}, {});
  for (int64_t w : {32, 34}) {
    std::string text = ir::printLoops(
        testing::lowered(l.program(), {{"N", ir::intImm(8)}, {"H", ir::intImm(32)}, {"W", ir::intImm(w)}}));
    std::string kernel = kernelText(text, "kernel k1_Y");
    ASSERT_FALSE(kernel.empty()) << text;
    if (w == 34) {
      EXPECT_EQ(kernel.find("_stage"), std::string::npos) << kernel;
      continue;
    }
    EXPECT_TRUE(inOrder(kernel, {"for h in 0..32:", "alloc _stage0: float[4096]",
                                 "_stage0[k * 32 + w.i] = X[((n * 128 + k) * 32 + h) * 32 + (w.o * 32 + w.i)]",
                                 "for c.o in 0..16:", "* _stage0[k * 32 + w.i]"}));
  }
}

// rsqrt, relu and leaky_relu widen: a contraction whose epilogue calls them (a batch norm's
// normalization gating a convolution's input gradient, as in a residual network's backward
// pass) keeps the blocked schedule, its epilogue vectorized, and computes what loops compute.
TEST(CpuTiling, EpilogueWithRsqrtAndReluIsBlocked) {
  auto epi = Library::fromSource("epilogue.enc", R"(
layer Epilogue() {
  forward(X: [B, C, L], W: [O, C], S: [O]) -> Y: [B, O, L] {
    Y[b, o, l] = leaky_relu(sum(c: X[b, c, l] * W[o, c]), 0.1) * (relu(X[b, o % C, l]) + rsqrt(S[o] + 2))
  }
})");
  std::string text = ir::printLoops(ir::lowerToLoops(Layer(epi, "Epilogue", {}, {}).program(), ir::Target::CPU));
  EXPECT_NE(text.find("vectorized for l.i in 0..32:"), std::string::npos) << text;
  std::mt19937_64 rng(4);
  struct Case { int64_t B, C, L, O; };
  for (DType dtype : {DType::F32, DType::F64})
    for (Case c : {Case{1, 1, 1, 1}, Case{2, 3, 37, 9}, Case{3, 16, 70, 6}}) {
      Layer layer(epi, "Epilogue", {}, {dtype, 3});
      Tensor x = randomTensor(dtype, {c.B, c.C, c.L}, rng), w = randomTensor(dtype, {c.O, c.C}, rng),
             s = randomTensor(dtype, {c.O}, rng);
      V xv = values(x), wv = values(w), sv = values(s), want(static_cast<size_t>(c.B * c.O * c.L));
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t o = 0; o < c.O; ++o)
          for (int64_t l = 0; l < c.L; ++l) {
            double acc = 0;
            for (int64_t i = 0; i < c.C; ++i) acc += xv[(b * c.C + i) * c.L + l] * wv[o * c.C + i];
            double gate = std::max(xv[(b * c.C + o % c.C) * c.L + l], 0.0) + 1 / std::sqrt(sv[o] + 2);
            want[(b * c.O + o) * c.L + l] = (acc > 0 ? acc : 0.1 * acc) * gate;
          }
      expectClose(layer.forward({{"X", x}, {"W", w}, {"S", s}}).at("Y"), want, dtype,
                  fmt::format("Epilogue B={} C={} L={} O={}", c.B, c.C, c.L, c.O));
    }
}

TEST(CpuTiling, Conv2dForwardBackwardAtOddSizes) {
  std::mt19937_64 rng(3);
  struct Case { int64_t B, Ci, Co, H, W, k, pad, stride = 1; };
  // Strides 2 and 3 read the input through wider loads and shuffles; 5 through gathers.
  for (DType dtype : {DType::F32, DType::F64})
    for (Case c : {Case{1, 1, 1, 1, 1, 1, 0}, Case{2, 3, 6, 5, 35, 3, 1}, Case{1, 5, 9, 4, 17, 3, 0},
                   Case{1, 2, 4, 3, 40, 2, 1}, Case{1, 3, 5, 3, 59, 3, 1}, Case{2, 3, 6, 7, 37, 3, 1, 2},
                   Case{1, 4, 5, 6, 50, 3, 1, 2}, Case{1, 2, 3, 5, 61, 3, 0, 3}, Case{1, 2, 3, 4, 83, 3, 1, 5},
                   Case{2, 17, 6, 5, 19, 3, 1}, // see below
                   // Packed weights (at least 32 output or input channels, columns no multiple
                   // of 32): rows of 8 with a remainder, rows of 7, 32 + 8 lanes, 32 + overlap.
                   Case{2, 5, 37, 6, 23, 3, 1}, Case{1, 33, 40, 5, 28, 3, 1, 2}, Case{1, 34, 3, 4, 19, 3, 1},
                   // ... with first, interior and last row blocks apart: 3 x 10 columns of Y,
                   // 3 x 12 columns of grad_X.
                   Case{1, 4, 33, 5, 30, 3, 1}, Case{1, 35, 4, 4, 36, 3, 1},
                   // Weight gradients over at least 4096 positions sum in chunks of rows: 5 chunks
                   // of 10 rows (no parallel groups: 5 output channels), 8 input channels as one
                   // parallel iteration each, and groups of 2 input channels.
                   Case{2, 3, 5, 50, 47, 3, 1}, Case{2, 3, 8, 48, 48, 3, 1}, Case{3, 16, 4, 40, 37, 3, 1},
                   // Input gradients whose stride phases are 17, 20, 28 and 31 columns: one
                   // tile of two overlapping vectors, stored to every other column; 9 input
                   // channels: a block of 8 rows and one row. Output columns of 17 and 20
                   // (stride 1, fewer than 32 output channels): the same tile in the forward.
                   Case{1, 9, 4, 3, 34, 3, 1, 2}, Case{2, 3, 5, 4, 40, 3, 1, 2}, Case{1, 9, 6, 3, 56, 3, 1, 2},
                   Case{1, 2, 3, 5, 62, 3, 1, 2}, Case{1, 3, 5, 4, 17, 3, 1}, Case{2, 2, 9, 3, 20, 3, 1},
                   // At most 6 input channels and rows too many to pair with them: the input
                   // gradient's tiles are 64 lanes wide (64; 100 = 64 + 32 + an overlapping 8;
                   // stride-2 phases of 66 columns).
                   Case{2, 3, 4, 5, 64, 3, 1}, Case{2, 6, 5, 5, 100, 3, 1}, Case{2, 2, 3, 5, 132, 3, 1, 2},
                   // Weight gradients summed over X's rows (slideWindowSums): 5 x 5 taps with
                   // padding 2, and no padding (X has 2 rows more than grad_Y).
                   Case{2, 3, 4, 9, 20, 5, 2}, Case{2, 4, 6, 10, 21, 3, 0}}) {
      Layer layer(lib(), "Conv2d",
                  {{"in_channels", std::to_string(c.Ci)}, {"out_channels", std::to_string(c.Co)},
                   {"kernel_size", std::to_string(c.k)}, {"padding", std::to_string(c.pad)},
                   {"stride", std::to_string(c.stride)}},
                  {dtype, 4});
      Tensor x = randomTensor(dtype, {c.B, c.Ci, c.H, c.W}, rng);
      V xv = values(x), wv = values(layer.params().at("weight")), bv = values(layer.params().at("bias"));
      Tensor y = layer.forward({{"X", x}}).at("Y");
      int64_t Ho = (c.H + 2 * c.pad - c.k) / c.stride + 1, Wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
      ASSERT_EQ(y.shape(), (Shape{c.B, c.Co, Ho, Wo}));
      Tensor g = randomTensor(dtype, y.shape(), rng);
      V gv = values(g);
      auto grads = layer.backward({{"Y", g}});
      V want(static_cast<size_t>(y.numel())), gx(xv.size()), gw(wv.size()), gb(bv.size());
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t o = 0; o < c.Co; ++o)
          for (int64_t h = 0; h < Ho; ++h)
            for (int64_t w = 0; w < Wo; ++w) {
              int64_t yi = ((b * c.Co + o) * Ho + h) * Wo + w;
              double acc = bv[o];
              gb[o] += gv[yi];
              for (int64_t ci = 0; ci < c.Ci; ++ci)
                for (int64_t kh = 0; kh < c.k; ++kh)
                  for (int64_t kw = 0; kw < c.k; ++kw) {
                    int64_t ih = h * c.stride + kh - c.pad, iw = w * c.stride + kw - c.pad;
                    if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                    int64_t xi = ((b * c.Ci + ci) * c.H + ih) * c.W + iw, wi = ((o * c.Ci + ci) * c.k + kh) * c.k + kw;
                    acc += xv[xi] * wv[wi];
                    gx[xi] += gv[yi] * wv[wi];
                    gw[wi] += gv[yi] * xv[xi];
                  }
              want[yi] = acc;
            }
      std::string what =
          fmt::format("Conv2d B={} {}->{} {}x{} k={} pad={} stride={}", c.B, c.Ci, c.Co, c.H, c.W, c.k, c.pad, c.stride);
      expectClose(y, want, dtype, what + " Y");
      expectClose(grads.at("X"), gx, dtype, what + " grad X");
      expectClose(grads.at("weight"), gw, dtype, what + " grad weight");
      expectClose(grads.at("bias"), gb, dtype, what + " grad bias");
    }
}


// A strided convolution's weight gradient reads X[b, c, h * s + kh * d - p, w * s + kw * d - p],
// s elements apart along the reduction's w: the CPU lowering copies X once into its stride
// phases, X_phases[b, c, y, phase, u] = X[b, c, y, s * u + phase + lo], and the dot product
// along w reads that with unit stride and no column guard. Numerics against double loops at
// odd sizes, strides 2 and 3, dilation 2, even and odd kernels, and columns too few for the
// copy (fewer than 16 output columns: no copy); the forward pass reads its copy too.
// With 32 output channels or more, a strided convolution's weight gradient sums into
// grad_weight_t[c, kh, kw, o] from grad_Y_t[b, h, w, o] (transposeWeightGradients): an outer
// product along o whose rows are the 9 taps, X broadcast at stride 2 with no phase copy; the
// result is copied back into grad_weight[o, c, kh, kw]. At stride 1 the dot product stays.
TEST(CpuTiling, StridedWeightGradientSumsTransposed) {
  std::map<std::string, ir::Expr> sizes = resnetSizes();
  Layer strided(lib(), "Conv2d", kStrideTwoConv, {});
  std::string text = ir::printLoops(testing::lowered(strided.gradientProgram(), sizes));
  EXPECT_NE(text.find("grad_Y_t[((i0 * 28 + i1) * 28 + i2) * 128 + i3] = grad_Y[((i0 * 128 + i3) * 28 + i1) * 28 + i2]"),
            std::string::npos)
      << text;
  std::string kernel = kernelText(text, "kernel k1_grad_weight_t");
  ASSERT_FALSE(kernel.empty()) << text;
  EXPECT_NE(kernel.find("parallel for c in 0..64:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("unrolled for kh.i in 0..3:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("unrolled for kw.i in 0..3:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("vectorized for o.i in 0..32:"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("alloc _acc: float[288]"), std::string::npos) << kernel;
  EXPECT_NE(kernel.find("X[((b * 64 + c) * 56"), std::string::npos) << kernel;
  EXPECT_EQ(text.find("X_phases"), std::string::npos) << text;
  EXPECT_NE(text.find("grad_weight[((o * 64 + c) * 3 + kh) * 3 + kw] = grad_weight_t[((c * 3 + kh) * 3 + kw) * 128 + o]"),
            std::string::npos)
      << text;
  Layer resnet(lib(), "Conv2d", kResNetConv, {});
  text = ir::printLoops(testing::lowered(resnet.gradientProgram(), sizes));
  EXPECT_EQ(text.find("grad_Y_t"), std::string::npos) << text;
  EXPECT_NE(kernelText(text, "kernel k0_grad_weight").find("vectorized for w.l in 0..16:"), std::string::npos) << text;
}

// A sum of several products accumulates term by term (one multiply-add each), and a term's
// constant scales the factor that takes the fewest values per step (Encoding's grad_X:
// grad_A's vector, shared by the tile's 8 rows, not each row's broadcast of the codewords).
TEST(CpuTiling, SumOfProductsAccumulatesTermByTerm) {
  Layer encoding(lib(), "Encoding", {{"D", "128"}, {"K", "32"}}, {});
  std::string text = ir::printLoops(testing::lowered(encoding.gradientProgram(), {{"B", ir::intImm(8)}, {"N", ir::intImm(1024)}}));
  std::string kernel = kernelText(text, "kernel k8_grad_X");
  ASSERT_FALSE(kernel.empty()) << text;
  // (A's and grad_A_sum1's rows lie 1024 elements apart: their column panels are copied.)
  EXPECT_NE(kernel.find("_acc[d.i * 32 + i.i1] = _acc[d.i * 32 + i.i1] + grad_Y[(b * 32 + k) * 128 + (d.o * 8 + d.i)] * "
                        "_stage0[k * 32 + i.i1] - 2.0 * _stage1[k * 32 + i.i1] * codewords[k * 128 + (d.o * 8 + d.i)]\n"),
            std::string::npos)
      << kernel;
}

// Terms added, subtracted, negated and scaled (by a constant on either side, by an integer),
// and one with a quotient, which stays whole: the sums against double loops at odd sizes.
TEST(CpuTiling, AccumulatedTermsAtOddSizes) {
  auto library = Library::fromSource("terms.enc", R"(
layer Terms() {
  forward(P: [M, K], Q: [K, N], R: [M, K], S: [K, N]) -> Y: [M, N] {
    Y[m, n] = sum(k: P[m, k] * Q[k, n] - 3 * (R[m, k] * S[k, n]) + -(P[m, k] * S[k, n]) / (2 + R[m, k] * R[m, k]) + R[m, k] * 0.5 - (-Q[k, n]))
  }
}
)");
  std::mt19937_64 rng(4);
  for (DType dtype : {DType::F32, DType::F64})
    for (auto [M, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{9, 37, 13}, {1, 1, 1}, {16, 64, 40}, {3, 20, 2}}) {
      Layer layer(library, "Terms", {}, {dtype});
      Tensor p = randomTensor(dtype, {M, K}, rng), q = randomTensor(dtype, {K, N}, rng);
      Tensor r = randomTensor(dtype, {M, K}, rng), s = randomTensor(dtype, {K, N}, rng);
      Tensor y = layer.forward({{"P", p}, {"Q", q}, {"R", r}, {"S", s}}).at("Y");
      V want(static_cast<size_t>(M * N), 0.0);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t k = 0; k < K; ++k)
            want[static_cast<size_t>(m * N + n)] += p.at(m * K + k) * q.at(k * N + n) - 3 * r.at(m * K + k) * s.at(k * N + n) -
                                                    p.at(m * K + k) * s.at(k * N + n) / (2 + r.at(m * K + k) * r.at(m * K + k)) +
                                                    r.at(m * K + k) * 0.5 + q.at(k * N + n);
      expectClose(y, want, dtype, fmt::format("Terms {} {}x{}x{}", dtypeName(dtype), M, N, K));
    }
}

TEST(CpuTiling, StridedWeightGradientReadsStridePhases) {
  auto sets = [](int64_t ci, int64_t co, int64_t k, int64_t pad, int64_t stride, int64_t dilation) {
    return std::map<std::string, std::string>{{"in_channels", std::to_string(ci)}, {"out_channels", std::to_string(co)},
                                              {"kernel_size", std::to_string(k)},  {"padding", std::to_string(pad)},
                                              {"stride", std::to_string(stride)},  {"dilation", std::to_string(dilation)}};
  };
  {
    Layer shown(lib(), "Conv2d", sets(8, 8, 3, 1, 2, 1), {});
    std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(2)}, {"H", ir::intImm(56)}, {"W", ir::intImm(56)}};
    std::string text = ir::printLoops(testing::lowered(shown.gradientProgram(), sizes));
    size_t at = text.find("kernel k1_grad_weight");
    ASSERT_NE(at, std::string::npos) << text;
    EXPECT_NE(text.find("X_phases[(((i0 * 8 + i1) * 56 + i2) * 2 + phase) * 29 + u] = select(2 * u + phase - 1 >= 0"),
              std::string::npos)
        << text;
    std::string kernel = text.substr(at, text.find("\nkernel ", at + 1) - at);
    EXPECT_NE(kernel.find("vectorized for w.l in 0..16:"), std::string::npos) << kernel;
    EXPECT_NE(kernel.find("X_phases["), std::string::npos) << kernel;
    EXPECT_EQ(kernel.find("X["), std::string::npos) << kernel;
    EXPECT_EQ(kernel.find("w.l) * 2"), std::string::npos) << "a strided column read left: " << kernel;
    // The forward pass, an outer product along w, reads its own copy the same way: the phase
    // and offset of X_phases[..., kw % 2, w + kw / 2] are the same in every lane.
    // (fuseSlabKernels runs the copy and the convolution per batch element in one kernel: the
    // convolution is the outermost loop storing Y and not the copy.)
    ir::LoopProgram fwdLoops = testing::lowered(shown.program(), sizes);
    std::string yKernel;
    for (const ir::Kernel &k : fwdLoops.kernels)
      ir::visit(k.body, [&](const ir::Stmt &s) {
        if (!yKernel.empty()) return false;
        auto stores = [&](const std::string &buffer) {
          return ir::anyStmt(s, [&](const ir::Stmt &x) { return x->kind == ir::StmtKind::Store && x->name == buffer; });
        };
        if (s->kind == ir::StmtKind::For && stores("Y") && !stores("X_phases")) yKernel = ir::printStmt(s);
        return yKernel.empty();
      });
    ASSERT_FALSE(yKernel.empty()) << ir::printLoops(fwdLoops);
    EXPECT_NE(yKernel.find("vectorized for w.i in 0..16:"), std::string::npos) << yKernel;
    EXPECT_NE(yKernel.find("X_phases["), std::string::npos) << yKernel;
    EXPECT_EQ(yKernel.find("X["), std::string::npos) << yKernel;
  }
  std::mt19937_64 rng(7);
  struct Case { int64_t B, Ci, Co, H, W, k, pad, stride, dilation; };
  for (DType dtype : {DType::F32, DType::F64})
    for (Case c : {Case{2, 3, 5, 5, 37, 3, 1, 2, 1}, Case{1, 2, 6, 4, 36, 4, 1, 2, 1}, Case{1, 3, 4, 3, 53, 5, 2, 3, 1},
                   Case{2, 2, 3, 5, 41, 3, 2, 2, 2}, Case{1, 2, 3, 3, 15, 3, 1, 2, 1}, Case{1, 1, 2, 2, 33, 1, 0, 2, 1},
                   // 32 output channels or more: summed transposed (below), 37 channels a tile of
                   // 32 lanes and the rest, a 2 x 2 kernel 4 rows, stride 3 with dilation 2; a
                   // 5 x 5 kernel (25 rows) keeps the stride phases.
                   Case{2, 3, 37, 5, 37, 3, 1, 2, 1}, Case{1, 2, 64, 4, 36, 2, 1, 2, 1}, Case{1, 3, 33, 3, 53, 3, 2, 3, 2},
                   Case{1, 2, 40, 3, 30, 5, 2, 2, 1}}) {
      Layer layer(lib(), "Conv2d", sets(c.Ci, c.Co, c.k, c.pad, c.stride, c.dilation), {dtype, 4});
      Tensor x = randomTensor(dtype, {c.B, c.Ci, c.H, c.W}, rng);
      V xv = values(x);
      Tensor y = layer.forward({{"X", x}}).at("Y");
      int64_t span = c.dilation * (c.k - 1) + 1;
      int64_t Ho = (c.H + 2 * c.pad - span) / c.stride + 1, Wo = (c.W + 2 * c.pad - span) / c.stride + 1;
      ASSERT_EQ(y.shape(), (Shape{c.B, c.Co, Ho, Wo}));
      Tensor g = randomTensor(dtype, y.shape(), rng);
      V gv = values(g), gw(static_cast<size_t>(c.Co * c.Ci * c.k * c.k), 0.0), want(static_cast<size_t>(y.numel()));
      V wv = values(layer.params().at("weight")), bv = values(layer.params().at("bias"));
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t o = 0; o < c.Co; ++o)
          for (int64_t ci = 0; ci < c.Ci; ++ci)
            for (int64_t kh = 0; kh < c.k; ++kh)
              for (int64_t kw = 0; kw < c.k; ++kw)
                for (int64_t h = 0; h < Ho; ++h)
                  for (int64_t w = 0; w < Wo; ++w) {
                    int64_t ih = h * c.stride + kh * c.dilation - c.pad, iw = w * c.stride + kw * c.dilation - c.pad;
                    size_t yi = static_cast<size_t>(((b * c.Co + o) * Ho + h) * Wo + w);
                    if (ci == 0 && kh == 0 && kw == 0) want[yi] += bv[static_cast<size_t>(o)];
                    if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                    size_t xi = static_cast<size_t>(((b * c.Ci + ci) * c.H + ih) * c.W + iw);
                    size_t wi = static_cast<size_t>(((o * c.Ci + ci) * c.k + kh) * c.k + kw);
                    gw[wi] += gv[yi] * xv[xi];
                    want[yi] += wv[wi] * xv[xi];
                  }
      std::string what = fmt::format("Conv2d B={} {}->{} {}x{} k={} pad={} stride={} dilation={}", c.B, c.Ci, c.Co, c.H,
                                     c.W, c.k, c.pad, c.stride, c.dilation);
      expectClose(y, want, dtype, what + " Y");
      expectClose(layer.backward({{"Y", g}}).at("weight"), gw, dtype, what + " grad weight");
    }
}

// A sum over k of terms that vanish unless (v + k + 1) % 3 == 0 (a strided convolution's
// gradient, with +k where conv's has -k): the CPU splits v into phases v.r < 3 and positions
// v.q, and k into the terms each phase keeps, then vectorizes along v.q.
const char *kPhaseSum = R"(
layer PhaseSum(K: int) {
  param weight[K] = uniform(-1, 1)
  forward(X: [B, N]) -> Y: [B, 3 * N] {
    Y[b, v] = sum(k: select((v + k + 1) % 3 == 0 && (v + k + 1) // 3 < N, X[b, (v + k + 1) // 3], 0) * weight[k])
  }
}
)";

TEST(CpuTiling, StridePhasesSplitDivisibleSums) {
  auto library = Library::fromSource("phase.enc", kPhaseSum);
  Layer shown(library, "PhaseSum", {{"K", "5"}}, {});
  std::string text = ir::printLoops(ir::lowerToLoops(shown.program(), ir::Target::CPU));
  EXPECT_NE(text.find("for v.r in 0..3:"), std::string::npos) << text;
  EXPECT_NE(text.find("vectorized for v.q.i in 0..32:"), std::string::npos) << text;
  EXPECT_EQ(text.find("% 3 == 0"), std::string::npos) << "the divisibility test should be gone: " << text;
  std::mt19937_64 rng(11);
  for (DType dtype : {DType::F32, DType::F64})
    for (int64_t K : {1, 5, 7})
      for (int64_t N : {1, 13, 40}) {
        const int64_t B = 2;
        Layer layer(library, "PhaseSum", {{"K", std::to_string(K)}}, {dtype, 5});
        Tensor x = randomTensor(dtype, {B, N}, rng);
        V xv = values(x), wv = values(layer.params().at("weight"));
        V want(static_cast<size_t>(B * 3 * N), 0.0);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t v = 0; v < 3 * N; ++v)
            for (int64_t k = 0; k < K; ++k)
              if ((v + k + 1) % 3 == 0 && (v + k + 1) / 3 < N)
                want[static_cast<size_t>(b * 3 * N + v)] += xv[static_cast<size_t>(b * N + (v + k + 1) / 3)] * wv[static_cast<size_t>(k)];
        expectClose(layer.forward({{"X", x}}).at("Y"), want, dtype, fmt::format("PhaseSum K={} N={}", K, N));
      }
}

// grad_W[k, d] = sum(b, i: grad_Y[b, i, k] * X[b, d, i]) (a projection's weight gradient): only
// the parallel index k vectorizes, so each iteration of the parallel loop computes all of k
// for a slice of d (the sliced outer product). grad_X[b, d, i] = sum(k: grad_Y[b, i, k] * W[k, d])
// vectorizes along i, where it is stored contiguously, with grad_Y gathered.
const char *kProjection = R"(
layer Projection(K: int, D: int) {
  param W[K, D] = uniform(-1, 1)
  forward(X: [B, D, N]) -> Y: [B, N, K] {
    Y[b, i, k] = sum(d: W[k, d] * X[b, d, i])
  }
}
)";

TEST(CpuTiling, SlicedOuterProductVectorizesTheParallelIndex) {
  Layer l(Library::fromSource("projection.enc", kProjection), "Projection", {{"K", "37"}, {"D", "50"}}, {});
  const ir::Program &grad = l.gradientProgram();
  std::string text = ir::printLoops(ir::lowerToLoops(grad, ir::Target::CPU));
  EXPECT_NE(text.find("parallel for k in 0..37:"), std::string::npos) << text;
  EXPECT_NE(text.find("vectorized for k.i in 0..32:"), std::string::npos) << text;
  EXPECT_NE(text.find("unrolled for d.i in 0..4:"), std::string::npos) << text;
  // grad_X[b, d, i] = sum(k: grad_Y[b, i, k] * W[k, d]): vectorized along i, where it is
  // stored contiguously, gathering grad_Y, rather than along d (stores N elements apart);
  // each block of 32 i copies its grad_Y rows once into [k][lane] order for all of d.
  EXPECT_NE(text.find("vectorized for i.i in 0..32:"), std::string::npos) << text;
  EXPECT_NE(text.find("alloc _stage0: float[1184]"), std::string::npos) << text; // 37 x 32
  EXPECT_NE(text.find("_stage0[k * 32 + i.i] = grad_Y["), std::string::npos) << text;
}

TEST(CpuTiling, SlicedOuterProductAtOddSizes) {
  std::mt19937_64 rng(5);
  auto lib = Library::fromSource("projection.enc", kProjection);
  struct Case { int64_t B, N, K, D; };
  for (DType dtype : {DType::F32, DType::F64})
    for (Case c : {Case{1, 1, 8, 1}, Case{2, 3, 8, 3}, Case{2, 37, 37, 50}, Case{1, 9, 9, 70}, Case{3, 20, 20, 13}, Case{1, 64, 16, 5}}) {
      Layer layer(lib, "Projection", {{"K", std::to_string(c.K)}, {"D", std::to_string(c.D)}}, {dtype, 6});
      Tensor x = randomTensor(dtype, {c.B, c.D, c.N}, rng);
      V xv = values(x), wv = values(layer.params().at("W"));
      Tensor y = layer.forward({{"X", x}}).at("Y");
      ASSERT_EQ(y.shape(), (Shape{c.B, c.N, c.K}));
      Tensor g = randomTensor(dtype, y.shape(), rng);
      V gv = values(g);
      auto grads = layer.backward({{"Y", g}});
      V want(static_cast<size_t>(y.numel())), gx(xv.size()), gw(wv.size());
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t i = 0; i < c.N; ++i)
          for (int64_t k = 0; k < c.K; ++k) {
            int64_t yi = (b * c.N + i) * c.K + k;
            double acc = 0;
            for (int64_t d = 0; d < c.D; ++d) {
              int64_t xi = (b * c.D + d) * c.N + i, wi = k * c.D + d;
              acc += wv[wi] * xv[xi];
              gx[xi] += gv[yi] * wv[wi];
              gw[wi] += gv[yi] * xv[xi];
            }
            want[yi] = acc;
          }
      std::string what = fmt::format("Projection B={} N={} K={} D={}", c.B, c.N, c.K, c.D);
      expectClose(y, want, dtype, what + " Y");
      expectClose(grads.at("X"), gx, dtype, what + " grad X");
      expectClose(grads.at("W"), gw, dtype, what + " grad W");
    }
}

// Encoding stores its softmax weights A[b, k, i] with i last, as X[b, d, i]: every contraction
// of the backward pass reads both operands along i with unit stride (no gathered tiles), the
// codeword gradient sum(b, i: g[b, k, i] * X[b, d, i]) is a dot product blocked 4 x 4 over
// blocks of k in the parallel loop, and the softmax's reductions over k (strided) run outside
// the row of i, so the row loop streams and vectorizes; scale[k], read by every output, does
// not count as a unit-stride read of k.
// Inspiration with one target sums grad_P over N * H * W = 4488 positions under a parallel
// index of one iteration: the threads go to the row blocks, never to a loop whose iterations
// add into the same outputs.
// At [2, 67, 32, 32] and [2, 65, 64, 48] X's and grad_Y's rows alias (1024 and 3072 elements
// apart): Y and grad_X copy their column panels, with row blocks of 8 and a remainder.
TEST(CpuTiling, InspirationGradientsOverLongReductions) {
  std::mt19937_64 rng(12);
  struct Case { int64_t C, N, H, W; };
  for (Case s : {Case{6, 4, 33, 34}, Case{67, 2, 32, 32}, Case{65, 2, 64, 48}})
  for (DType dtype : {DType::F32, DType::F64}) {
    const int64_t C = s.C, N = s.N, H = s.H, W = s.W, L = H * W;
    Layer layer(lib(), "Inspiration", {{"C", std::to_string(C)}}, {dtype, 2});
    layer.setParam("weight", randomTensor(dtype, {1, C, C}, rng));
    layer.setParam("G", randomTensor(dtype, {1, C, C}, rng));
    V wv = values(layer.params().at("weight")), gv = values(layer.params().at("G"));
    Tensor x = randomTensor(dtype, {N, C, H, W}, rng);
    Tensor y = layer.forward({{"X", x}}).at("Y");
    Tensor g = randomTensor(dtype, y.shape(), rng);
    auto grads = layer.backward({{"Y", g}});
    V xv = values(x), dy = values(g), p(C * C, 0.0), gp(C * C, 0.0), want(xv.size()), gx(xv.size()), gw(C * C, 0.0);
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j)
        for (int64_t k = 0; k < C; ++k) p[i * C + j] += wv[i * C + k] * gv[k * C + j];
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t k = 0; k < C; ++k)
          for (int64_t q = 0; q < L; ++q) {
            want[(n * C + c) * L + q] += p[k * C + c] * xv[(n * C + k) * L + q];
            gx[(n * C + k) * L + q] += p[k * C + c] * dy[(n * C + c) * L + q];
            gp[k * C + c] += dy[(n * C + c) * L + q] * xv[(n * C + k) * L + q];
          }
    for (int64_t i = 0; i < C; ++i)
      for (int64_t k = 0; k < C; ++k)
        for (int64_t j = 0; j < C; ++j) gw[i * C + k] += gp[i * C + j] * gv[k * C + j];
    std::string what = fmt::format("Inspiration C={} [{}, {}, {}] {}", C, N, H, W, dtypeName(dtype));
    expectClose(y, want, dtype, what + " Y");
    expectClose(grads.at("X"), gx, dtype, what + " grad X");
    expectClose(grads.at("weight"), gw, dtype, what + " grad weight");
  }
}

TEST(CpuTiling, EncodingReadsItsWeightsAlongPositions) {
  Layer l(lib(), "Encoding", {{"D", "128"}, {"K", "32"}}, {});
  std::map<std::string, ir::Expr> sizes{{"B", ir::intImm(2)}, {"N", ir::intImm(64)}};
  std::string fwd = cpuLoops(l.program(), sizes);
  std::string bwd = cpuLoops(l.gradientProgram(), sizes);
  EXPECT_EQ(bwd.find("_stage"), std::string::npos) << bwd;
  EXPECT_NE(bwd.find("parallel for k_r1.p in 0..8:"), std::string::npos) << bwd;
  EXPECT_NE(fwd.find("    for k_r1 in 0..32:\n      for i in 0..64:\n        A_max2[b * 64 + i] = max("), std::string::npos) << fwd;
}

// Encoding forward and every gradient against double loops, at sizes that leave remainders
// in every blocked index (K = 37: blocks of 4 codewords in the parallel loop and one left).
TEST(CpuTiling, EncodingForwardBackwardAtOddSizes) {
  std::mt19937_64 rng(7);
  struct Case { int64_t B, D, N, K; };
  for (DType dtype : {DType::F32, DType::F64})
    // The last two sum over B * N >= 4096 positions: the codeword gradient in chunks of
    // whole batch elements, its epilogue in a pass after them (6 codewords: chunks only; 33:
    // chunks inside blocks of 4 codewords as rows, one left over).
    for (Case c : {Case{1, 1, 1, 1}, Case{2, 5, 7, 3}, Case{1, 13, 29, 37}, Case{2, 70, 40, 33}, Case{1, 9, 17, 64},
                   Case{3, 5, 1500, 6}, Case{2, 3, 2100, 33}}) {
      Layer layer(lib(), "Encoding", {{"D", std::to_string(c.D)}, {"K", std::to_string(c.K)}}, {dtype, 8});
      std::uniform_real_distribution<double> u(-1, 1), s(-0.5, 0);
      Tensor cw(DType::F64, {c.K, c.D}), sc(DType::F64, {c.K});
      for (int64_t i = 0; i < cw.numel(); ++i) cw.set(i, u(rng));
      for (int64_t i = 0; i < sc.numel(); ++i) sc.set(i, s(rng));
      layer.setParam("codewords", cw);
      layer.setParam("scale", sc);
      Tensor x = randomTensor(dtype, {c.B, c.D, c.N}, rng);
      V xv = values(x), cv = values(layer.params().at("codewords")), sv = values(layer.params().at("scale"));
      Tensor y = layer.forward({{"X", x}}).at("Y");
      Tensor g = randomTensor(dtype, y.shape(), rng);
      V gv = values(g);
      auto grads = layer.backward({{"Y", g}});
      auto X = [&](int64_t b, int64_t d, int64_t i) { return xv[static_cast<size_t>((b * c.D + d) * c.N + i)]; };
      auto C = [&](int64_t k, int64_t d) { return cv[static_cast<size_t>(k * c.D + d)]; };
      auto G = [&](int64_t b, int64_t k, int64_t d) { return gv[static_cast<size_t>((b * c.K + k) * c.D + d)]; };
      V want(static_cast<size_t>(c.B * c.K * c.D)), gx(xv.size()), gc(cv.size()), gs(sv.size());
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t i = 0; i < c.N; ++i) {
          V dist(static_cast<size_t>(c.K)), a(static_cast<size_t>(c.K)), ga(static_cast<size_t>(c.K));
          double top = -INFINITY, total = 0, mix = 0;
          for (int64_t k = 0; k < c.K; ++k) {
            for (int64_t d = 0; d < c.D; ++d) dist[k] += (X(b, d, i) - C(k, d)) * (X(b, d, i) - C(k, d));
            top = std::max(top, sv[k] * dist[k]);
          }
          for (int64_t k = 0; k < c.K; ++k) total += a[k] = std::exp(sv[k] * dist[k] - top);
          for (int64_t k = 0; k < c.K; ++k) {
            a[k] /= total;
            for (int64_t d = 0; d < c.D; ++d) {
              want[(b * c.K + k) * c.D + d] += a[k] * (X(b, d, i) - C(k, d));
              ga[k] += G(b, k, d) * (X(b, d, i) - C(k, d));
              gx[(b * c.D + d) * c.N + i] += G(b, k, d) * a[k];
              gc[k * c.D + d] -= G(b, k, d) * a[k];
            }
            mix += a[k] * ga[k];
          }
          for (int64_t k = 0; k < c.K; ++k) {
            double gsk = a[k] * (ga[k] - mix); // through the softmax
            gs[k] += gsk * dist[k];
            for (int64_t d = 0; d < c.D; ++d) {
              double r = 2 * gsk * sv[k] * (X(b, d, i) - C(k, d));
              gx[(b * c.D + d) * c.N + i] += r;
              gc[k * c.D + d] -= r;
            }
          }
        }
      std::string what = fmt::format("Encoding B={} D={} N={} K={}", c.B, c.D, c.N, c.K);
      expectClose(y, want, dtype, what + " Y");
      expectClose(grads.at("X"), gx, dtype, what + " grad X");
      expectClose(grads.at("codewords"), gc, dtype, what + " grad codewords");
      expectClose(grads.at("scale"), gs, dtype, what + " grad scale");
    }
}

} // namespace
} // namespace enc
