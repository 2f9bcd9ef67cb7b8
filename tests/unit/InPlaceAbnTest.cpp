// In-place activated batch norm: SyncBatchNorm(activation=leaky_relu, inplace=true) recovers
// its input from its output (`recover X[...]` in layers/batchnorm.enc; compiler pass
// recoverFromOutputs), so its backward pass keeps Y, not X. Checked against batch norm and
// leaky_relu written out in double-precision loops (ReferenceMath.h), and in a stack of
// convolutions for the activation memory the forward pass keeps.
#include "ReferenceMath.h"
#include "TensorValues.h"

#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace enc {
namespace {

using Settings = std::map<std::string, std::string>;
using testing::tensorOf;
constexpr int64_t B = 3, C = 4, L = 5;
constexpr double kSlope = 0.1;

bool reads(const ir::LoopProgram &loops, const std::string &tensor) {
  for (const ir::Kernel &k : loops.kernels)
    if (std::find(k.buffers.begin() + k.outputs, k.buffers.end(), tensor) != k.buffers.end()) return true;
  return false;
}

Layer abn(bool inplace) {
  LayerOptions o;
  o.dtype = DType::F64;
  return Layer(Library::shipped(), "SyncBatchNorm",
               Settings{{"num_features", std::to_string(C)}, {"activation", "leaky_relu"}, {"slope", "0.1"},
                        {"inplace", inplace ? "true" : "false"}},
               o);
}

struct Case {
  std::vector<double> x, g, w, b;
};

Case randomCase(unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Case c{std::vector<double>(static_cast<size_t>(B * C * L)), std::vector<double>(static_cast<size_t>(B * C * L)), {}, {}};
  for (double &v : c.x) v = 5 + 2 * u(gen); // an offset mean
  for (double &v : c.g) v = u(gen);
  for (int64_t i = 0; i < C; ++i) {
    c.w.push_back((i % 2 ? -1 : 1) * (0.5 + std::abs(u(gen)))); // negative weights too
    c.b.push_back(0.3 * u(gen));
  }
  return c;
}

// Y = leaky_relu(batch_norm(X)); the gradients of sum(Y * G) through the same chain.
void checkAgainstLoops(bool inplace) {
  Case c = randomCase(11);
  testing::BatchNormRef z = testing::batchNormRef(c.x, c.g, c.w, c.b, B, C, L, 1e-5);
  std::vector<double> y(z.y.size()), gz(z.y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    y[i] = z.y[i] > 0 ? z.y[i] : kSlope * z.y[i];
    gz[i] = z.y[i] > 0 ? c.g[i] : kSlope * c.g[i];
  }
  testing::BatchNormRef ref = testing::batchNormRef(c.x, gz, c.w, c.b, B, C, L, 1e-5);
  Layer layer = abn(inplace);
  layer.setParam("weight", tensorOf(c.w, {C}));
  layer.setParam("bias", tensorOf(c.b, {C}));
  Tensor out = layer.forward({{"X", tensorOf(c.x, {B, C, L})}}).at("Y");
  auto grads = layer.backward({{"Y", tensorOf(c.g, {B, C, L})}});
  for (size_t i = 0; i < y.size(); ++i) {
    EXPECT_NEAR(out.at(static_cast<int64_t>(i)), y[i], 1e-12) << i;
    EXPECT_NEAR(grads.at("X").at(static_cast<int64_t>(i)), ref.gx[i], 1e-10) << i;
  }
  for (int64_t i = 0; i < C; ++i) {
    EXPECT_NEAR(grads.at("weight").at(i), ref.gw[static_cast<size_t>(i)], 1e-10) << i;
    EXPECT_NEAR(grads.at("bias").at(i), ref.gb[static_cast<size_t>(i)], 1e-10) << i;
  }
  // In place, the backward pass reads the output and not the input.
  EXPECT_EQ(reads(layer.lastBackwardLoops(), "X"), !inplace);
  EXPECT_EQ(reads(layer.lastBackwardLoops(), "Y"), inplace);
}

TEST(InPlaceAbn, GradientsMatchLoopsReadingTheOutput) { checkAgainstLoops(true); }
TEST(InPlaceAbn, OutOfPlaceReadsTheInput) { checkAgainstLoops(false); }

// A weight of exactly 0 makes Y independent of X: the in-place backward pass cannot recover X,
// and says so with non-finite gradients for that channel instead of quietly wrong ones
// (docs/layers.md; inplace=false computes them from X).
TEST(InPlaceAbn, ZeroWeightGivesNonFiniteGradientsNotWrongOnes) {
  Case c = randomCase(12);
  c.w[1] = 0;
  Layer layer = abn(true);
  layer.setParam("weight", tensorOf(c.w, {C}));
  layer.setParam("bias", tensorOf(c.b, {C}));
  layer.forward({{"X", tensorOf(c.x, {B, C, L})}});
  auto grads = layer.backward({{"Y", tensorOf(c.g, {B, C, L})}});
  EXPECT_FALSE(std::isfinite(grads.at("weight").at(1)));
  for (int64_t i : {0, 2, 3}) EXPECT_TRUE(std::isfinite(grads.at("weight").at(i))) << i;
}

const char *kStack = R"(
layer ConvBnAct(C: int, inplace: bool) {
  conv = Conv2d(in_channels=C, out_channels=C, kernel_size=3, padding=1, bias=false)
  bn = SyncBatchNorm(num_features=C, activation=leaky_relu, inplace=inplace)
  forward(X: [B, C, H, W]) -> Y {
    Y = bn(conv(X))
  }
}

layer Stack(C: int = 8, N: int = 4, inplace: bool = true) {
  stem = Conv2d(in_channels=3, out_channels=C, kernel_size=3, padding=1, bias=false)
  blocks = [ConvBnAct(C=C, inplace=inplace) for i < N]
  forward(X: [B, 3, H, W]) -> Y {
    Y = blocks(stem(X))
  }
}
)";

// A stack of convolution + in-place ABN blocks keeps each block's output only: at least 30 %
// less activation memory than out of place (5 of 8 tensors of one size here), with the same
// outputs and gradients to f32 rounding.
TEST(InPlaceAbn, StackKeepsLessActivationMemory) {
  auto lib = Library::fromSource("stack.enc", kStack);
  std::mt19937 gen(4);
  std::uniform_real_distribution<double> u(-1, 1);
  Tensor x(DType::F32, {2, 3, 8, 8}), g(DType::F32, {2, 8, 8, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x.set(i, u(gen));
  for (int64_t i = 0; i < g.numel(); ++i) g.set(i, u(gen));
  struct Run {
    size_t saved, arena;
    Tensor y;
    std::map<std::string, Tensor> grads;
  };
  auto run = [&](bool inplace) {
    Layer net(lib, "Stack", {{"inplace", inplace ? "true" : "false"}});
    net.forward({{"X", x}});
    net.backward({{"Y", g}}); // derives the backward pass: the next forward keeps only what it reads
    Tensor y = net.forward({{"X", x}}).at("Y");
    std::printf("inplace=%d: keeps %zu bytes for backward, arena %zu bytes\n", inplace, net.savedBytes(),
                net.forwardMemory().arenaBytes);
    return Run{net.savedBytes(), net.forwardMemory().arenaBytes, y, net.backward({{"Y", g}})};
  };
  Run in = run(true), out = run(false);
  const size_t activation = 2 * 8 * 8 * 8 * sizeof(float);
  EXPECT_LE(in.saved, 5 * activation + 4096) << in.saved;
  EXPECT_GE(out.saved, 8 * activation) << out.saved;
  EXPECT_LE(static_cast<double>(in.saved), 0.7 * static_cast<double>(out.saved));
  for (int64_t i = 0; i < in.y.numel(); ++i) ASSERT_NEAR(in.y.at(i), out.y.at(i), 1e-5) << i;
  for (const auto &[name, t] : out.grads)
    for (int64_t i = 0; i < t.numel(); ++i)
      ASSERT_NEAR(in.grads.at(name).at(i), t.at(i), 2e-4 * (1 + std::abs(t.at(i)))) << name << " " << i;
}

} // namespace
} // namespace enc
