// NetworkGrad: gradients of small networks (a sub-layer called twice, helpers) against central finite
// differences of L = sum(Y * G).
#include "Networks.h"

#include "compiler/Pipeline.h"
#include "compiler/TensorProgram.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nvrtc.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"

#include <gtest/gtest.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

// L = sum(Y * G) for each output; the gradients of the inputs and parameters named in `check`
// against central differences.
void checkGradients(Layer &net, Tensors inputs, const std::vector<std::string> &check, double tol = 1e-7) {
  Tensors out = net.forward(inputs);
  Tensors seeds;
  uint64_t seed = 50;
  for (const auto &[name, y] : out) seeds[name] = random(y.shape(), ++seed);
  Tensors grads = net.backward(seeds);
  auto loss = [&]() {
    double l = 0;
    for (const auto &[name, y] : net.forward(inputs))
      for (int64_t i = 0; i < y.numel(); ++i) l += y.at(i) * seeds.at(name).at(i);
    return l;
  };
  const double h = 1e-6;
  for (const std::string &name : check) {
    bool isInput = inputs.count(name) > 0;
    Tensor value = (isInput ? inputs.at(name) : net.params().at(name)).clone();
    ASSERT_TRUE(grads.count(name)) << name;
    const Tensor &g = grads.at(name);
    for (int64_t i = 0; i < value.numel(); ++i) {
      double v = value.at(i);
      auto at = [&](double w) {
        Tensor t = value.clone();
        t.set(i, w);
        if (isInput) inputs[name] = t;
        else net.setParam(name, t);
        return loss();
      };
      double fd = (at(v + h) - at(v - h)) / (2 * h);
      at(v);
      EXPECT_NEAR(g.at(i), fd, tol * std::max(1.0, std::abs(fd))) << name << "[" << i << "]";
    }
  }
}

TEST(NetworkGrad, ASubLayerCalledTwiceSharesItsParameters) {
  Layer net(networks(), "Twice", {}, f64());
  std::vector<std::string> names;
  for (const auto &[name, value] : net.params()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"lin.bias", "lin.weight"}));
  // Y = lin(tanh(lin(X))) + X, written out here.
  Tensor x = random({2, 3}, 7);
  const Tensor &w = net.params().at("lin.weight");
  const Tensor &bias = net.params().at("lin.bias");
  auto linear = [&](const std::vector<double> &in) {
    std::vector<double> out(3);
    for (int o = 0; o < 3; ++o) {
      out[o] = bias.at(o);
      for (int i = 0; i < 3; ++i) out[o] += w.at(o * 3 + i) * in[i];
    }
    return out;
  };
  Tensor y = net.forward({{"X", x}}).at("Y");
  for (int b = 0; b < 2; ++b) {
    std::vector<double> in = {x.at(b * 3), x.at(b * 3 + 1), x.at(b * 3 + 2)};
    std::vector<double> h = linear(in);
    for (double &v : h) v = std::tanh(v);
    std::vector<double> ref = linear(h);
    for (int o = 0; o < 3; ++o) EXPECT_NEAR(y.at(b * 3 + o), ref[o] + in[o], 1e-14);
  }
  checkGradients(net, {{"X", x}}, {"X", "lin.weight", "lin.bias"});
}

TEST(NetworkGrad, StackOfBlocksInTrainingAndEvaluation) {
  Layer train(networks(), "Stack", {{"C", "2"}, {"N", "2"}}, f64());
  Tensor x = random({2, 3, 4, 4}, 11);
  checkGradients(train, {{"X", x}}, {"X", "stem.weight", "layer2.0.downsample.0.weight", "layer1.1.bn2.weight"}, 2e-6);
  LayerOptions eval = f64();
  eval.training = false;
  Layer net(networks(), "Stack", {{"C", "2"}, {"N", "1"}}, eval);
  checkGradients(net, {{"X", x}}, {"X", "layer2.0.conv1.weight", "fc.weight"});
}

// L2Normalize of an intermediate: the adjoint of its reads recomputes sum(c: T[b, c] ^ 2), whose
// c must stay bound when the read's own index c is renamed to the gradient's.
TEST(NetworkGrad, NormalizeAnIntermediate) {
  Layer net(networks(), "Normalized", {}, f64());
  checkGradients(net, {{"X", random({3, 4}, 5)}}, {"X", "fc.weight"});
}

// An activation f around a convolution in one statement, Y = sum(f(conv(2 X))^2). The
// gradient of X needs f' at the output position each tap lands on: relu and leaky_relu with a
// slope >= 0 test their stored output, sigmoid reads it as its value; the others (sin, a
// negative slope) recompute the sum at (h - (kh - 1), w - (kw - 1)), whose own kh, kw must not
// capture the tap's; and the fused kernel's second nest keeps its loops apart (grad_X's j2
// renamed beside its j1). Against loops written here and central differences.
struct ActivationCase {
  std::string call; // f(z) in the layer, z standing for the sum
  std::function<double(double)> f, df;
  bool readsOutput; // f'(z) from the stored F: the gradient does not recompute the sum
};

void checkActivationAroundAConvolution(const ActivationCase &act) {
  std::string call = act.call;
  call.replace(call.find('z'), 1, "sum(c, kh, kw: P[b, c, h + kh - 1, w + kw - 1] * w2[o, c, kh, kw])");
  auto lib = Library::fromSource("shifted.enc", fmt::format(R"(
layer ShiftedMask(C: int = 3) {{
  param w2[C, C, 3, 3] = uniform(-1, 1)
  forward(X: [B, C, H, W]) -> Y: [] {{
    P[b, c, h, w]: [B, C, H, W] = X[b, c, h, w] * 2
    F[b, o, h, w]: [B, C, H, W] = {}
    Y = sum(b, o, h, w: F[b, o, h, w] ^ 2)
  }}
}}
)",
                                                              call));
  const int B = 2, C = 3, H = 5, W = 4;
  Layer net(lib, "ShiftedMask", {}, f64());
  const std::string grad = ir::printProgram(net.gradientProgram());
  size_t sums = 0; // grad_w2's and grad_X's; recomputing z for f' adds one for each
  for (size_t at = grad.find("sum("); at != std::string::npos; at = grad.find("sum(", at + 1)) ++sums;
  EXPECT_EQ(sums, act.readsOutput ? 2u : 4u) << act.call << ":\n" << grad;
  Tensor x = random({B, C, H, W}, 17);
  const Tensor &w = net.params().at("w2");
  auto at = [&](const Tensor &t, int b, int c, int h, int q) { return t.at(((b * C + c) * H + h) * W + q); };
  auto z = [&](int b, int o, int h, int q) {
    double v = 0;
    for (int c = 0; c < C; ++c)
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw) {
          int r = h + kh - 1, s = q + kw - 1;
          if (r >= 0 && r < H && s >= 0 && s < W) v += 2 * at(x, b, c, r, s) * w.at(((o * C + c) * 3 + kh) * 3 + kw);
        }
    return v;
  };
  net.forward({{"X", x}});
  Tensor one(DType::F64, {});
  one.set(0, 1.0);
  Tensor gx = net.backward({{"Y", one}}).at("X");
  // dY/dX[b, c, r, s] = sum over the outputs (o, h, q) that read it: 2 f(z) f'(z) * w * 2.
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      for (int r = 0; r < H; ++r)
        for (int s = 0; s < W; ++s) {
          double g = 0;
          for (int o = 0; o < C; ++o)
            for (int kh = 0; kh < 3; ++kh)
              for (int kw = 0; kw < 3; ++kw) {
                int h = r - kh + 1, q = s - kw + 1;
                if (h < 0 || h >= H || q < 0 || q >= W) continue;
                const double zv = z(b, o, h, q);
                g += 2 * act.f(zv) * act.df(zv) * 2 * w.at(((o * C + c) * 3 + kh) * 3 + kw);
              }
          EXPECT_NEAR(at(gx, b, c, r, s), g, 1e-12 * std::max(1.0, std::abs(g)))
              << act.call << " at " << b << " " << c << " " << r << " " << s;
        }
  checkGradients(net, {{"X", x}}, {"X", "w2"}, 1e-5); // the kinks cost the differences some digits
}

TEST(NetworkGrad, ActivationAroundAConvolutionMasksEachTapAtItsOwnPosition) {
  auto sigmoid = [](double v) { return 1 / (1 + std::exp(-v)); };
  const std::vector<ActivationCase> cases = {
      {"relu(z)", [](double v) { return std::max(v, 0.0); }, [](double v) { return v > 0 ? 1.0 : 0.0; }, true},
      {"leaky_relu(z, 0.25)", [](double v) { return v > 0 ? v : 0.25 * v; }, [](double v) { return v > 0 ? 1.0 : 0.25; }, true},
      {"leaky_relu(z, -0.5)", [](double v) { return v > 0 ? v : -0.5 * v; }, [](double v) { return v > 0 ? 1.0 : -0.5; }, false},
      {"sigmoid(z)", sigmoid, [&](double v) { return sigmoid(v) * (1 - sigmoid(v)); }, true},
      {"sin(z)", [](double v) { return std::sin(v); }, [](double v) { return std::cos(v); }, false},
  };
  for (const ActivationCase &act : cases) checkActivationAroundAConvolution(act);
}

TEST(NetworkGrad, ConcatenateFlattenAndSpatialMean) {
  Layer net(networks(), "Helpers", {}, f64());
  Tensor x = random({2, 2, 2, 2}, 3);
  Tensors out = net.forward({{"X", x}});
  // Z = cat(a(X), b(X)) along channels; M its mean over h, w; Y = fc(flatten(2 sigmoid(Z))).
  auto conv = [&](const std::string &p, int co, int b, int c, int h, int w) {
    double v = net.params().at(p + ".bias").at(c);
    for (int i = 0; i < 2; ++i) v += net.params().at(p + ".weight").at(c * 2 + i) * x.at(((b * 2 + i) * 2 + h) * 2 + w);
    (void)co;
    return v;
  };
  auto z = [&](int b, int c, int h, int w) { return c < 3 ? conv("a", 3, b, c, h, w) : conv("b", 2, b, c - 3, h, w); };
  const Tensor &m = out.at("M"), &y = out.at("Y");
  ASSERT_EQ(m.shape(), (Shape{2, 5}));
  ASSERT_EQ(y.shape(), (Shape{2, 2}));
  for (int b = 0; b < 2; ++b) {
    for (int c = 0; c < 5; ++c) {
      double mean = 0;
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < 2; ++w) mean += z(b, c, h, w) / 4;
      EXPECT_NEAR(m.at(b * 5 + c), mean, 1e-14);
    }
    for (int o = 0; o < 2; ++o) {
      double v = net.params().at("fc.bias").at(o);
      for (int f = 0; f < 20; ++f)
        v += net.params().at("fc.weight").at(o * 20 + f) * 2 / (1 + std::exp(-z(b, f / 4, f / 2 % 2, f % 2)));
      EXPECT_NEAR(y.at(b * 2 + o), v, 1e-13);
    }
  }
  checkGradients(net, {{"X", x}}, {"X", "a.weight", "b.bias", "fc.weight"});
}

TEST(NetworkGrad, TheFlattenLayerAsASubLayerIsTheFlattenHelper) {
  Layer net(networks(), "Flattens", {}, f64());
  Tensor x = random({2, 2, 2, 3}, 5);
  Tensors out = net.forward({{"X", x}});
  ASSERT_EQ(out.at("A").shape(), (Shape{2, 18}));
  EXPECT_EQ(maxDiff(out.at("A"), out.at("F")), 0.0);
  // Element (b, c, h, w) of conv(X) lands at column (c * 2 + h) * 3 + w.
  const Tensor &w = net.params().at("conv.weight"), &bias = net.params().at("conv.bias");
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 2; ++h)
        for (int q = 0; q < 3; ++q) {
          double v = bias.at(c);
          for (int i = 0; i < 2; ++i) v += w.at(c * 2 + i) * x.at(((b * 2 + i) * 2 + h) * 3 + q);
          EXPECT_NEAR(out.at("A").at(b * 18 + (c * 2 + h) * 3 + q), v, 1e-14);
        }
  checkGradients(net, {{"X", x}}, {"X", "conv.weight"});
}

// Counted inputs (X: [A...(dim), D, Q...]) as sub-layers, against loops written here.
TEST(NetworkGrad, CountedDimensionsOfSumAndMean) {
  Layer net(networks(), "Reduces", {}, f64());
  Tensor x = random({2, 2, 3, 4}, 9);
  Tensors out = net.forward({{"X", x}});
  const Tensor &w = net.params().at("conv.weight"), &bias = net.params().at("conv.bias");
  auto z = [&](int b, int c, int h, int q) {
    double v = bias.at(c);
    for (int i = 0; i < 2; ++i) v += w.at(c * 2 + i) * x.at(((b * 2 + i) * 3 + h) * 4 + q);
    return std::tanh(v);
  };
  ASSERT_EQ(out.at("S0").shape(), (Shape{3, 3, 4}));
  ASSERT_EQ(out.at("S2").shape(), (Shape{2, 3, 4}));
  ASSERT_EQ(out.at("M3").shape(), (Shape{2, 3, 3}));
  ASSERT_EQ(out.at("Y").shape(), (Shape{2, 4}));
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 3; ++h)
      for (int q = 0; q < 4; ++q)
        EXPECT_NEAR(out.at("S0").at((c * 3 + h) * 4 + q), z(0, c, h, q) + z(1, c, h, q), 1e-14);
  for (int b = 0; b < 2; ++b) {
    for (int c = 0; c < 3; ++c) {
      for (int q = 0; q < 4; ++q)
        EXPECT_NEAR(out.at("S2").at((b * 3 + c) * 4 + q), z(b, c, 0, q) + z(b, c, 1, q) + z(b, c, 2, q), 1e-14);
      for (int h = 0; h < 3; ++h)
        EXPECT_NEAR(out.at("M3").at((b * 3 + c) * 3 + h), (z(b, c, h, 0) + z(b, c, h, 1) + z(b, c, h, 2) + z(b, c, h, 3)) / 4,
                    1e-14);
    }
    for (int q = 0; q < 4; ++q) {
      double mean = 0;
      for (int c = 0; c < 3; ++c) {
        double s = z(b, c, 0, q) + z(b, c, 1, q) + z(b, c, 2, q);
        mean += s * s / 3;
      }
      EXPECT_NEAR(out.at("Y").at(b * 4 + q), mean, 1e-13);
    }
  }
  checkGradients(net, {{"X", x}}, {"X", "conv.weight", "conv.bias"});
}

// A sub-layer with two outputs, called once: (A, S) = head(relu(X)) defines both.
TEST(NetworkGrad, ASubLayerWithTwoOutputsDefinesBoth) {
  Layer net(Library::fromSource("two.enc", kTwoOutputs), "Net", {}, f64());
  Tensor x = random({4, 3}, 31);
  Tensors out = net.forward({{"X", x}});
  const Tensor &w = net.params().at("head.w"), &lw = net.params().at("lin.weight"), &lb = net.params().at("lin.bias");
  for (int b = 0; b < 4; ++b) {
    double s = 0;
    for (int c = 0; c < 3; ++c) s += std::pow(std::max(x.at(b * 3 + c), 0.0), 2) * w.at(c);
    EXPECT_NEAR(out.at("T").at(b), 2 * s, 1e-14);
    for (int o = 0; o < 2; ++o) {
      double z = lb.at(o);
      for (int c = 0; c < 3; ++c) z += std::max(x.at(b * 3 + c), 0.0) * w.at(c) * lw.at(o * 3 + c);
      EXPECT_NEAR(out.at("Z").at(b * 2 + o), z, 1e-14);
    }
  }
  checkGradients(net, {{"X", x}}, {"X", "head.w", "lin.weight"});
}

TEST(NetworkGrad, GradientsAccumulateOverMicroBatchesUntilZeroed) {
  Layer net(networks(), "Twice", {}, f64());
  Tensor a = random({2, 3}, 21), b = random({3, 3}, 22);
  net.forward({{"X", a}});
  Tensors ga = net.backward({{"Y", random({2, 3}, 23)}});
  net.forward({{"X", b}});
  Tensors gb = net.backward({{"Y", random({3, 3}, 24)}});
  const Tensors &acc = net.accumulatedGrads();
  ASSERT_EQ(acc.size(), 2u); // parameters only, not X
  for (const char *p : {"lin.weight", "lin.bias"})
    for (int64_t i = 0; i < acc.at(p).numel(); ++i)
      EXPECT_NEAR(acc.at(p).at(i), ga.at(p).at(i) + gb.at(p).at(i), 1e-15) << p;
  net.zeroGrad();
  EXPECT_TRUE(net.accumulatedGrads().empty());
  net.forward({{"X", a}});
  Tensors again = net.backward({{"Y", random({2, 3}, 23)}});
  EXPECT_EQ(maxDiff(net.accumulatedGrads().at("lin.weight"), again.at("lin.weight")), 0.0);
  // After one pass the entries are the returned tensors themselves (no copy); a second pass
  // adds into new tensors and leaves the first pass's as they were.
  EXPECT_EQ(net.accumulatedGrads().at("lin.weight").data(), again.at("lin.weight").data());
  Tensor first = again.at("lin.weight").clone();
  net.forward({{"X", b}});
  Tensors more = net.backward({{"Y", random({3, 3}, 24)}});
  EXPECT_EQ(maxDiff(again.at("lin.weight"), first), 0.0);
  for (int64_t i = 0; i < first.numel(); ++i)
    EXPECT_NEAR(net.accumulatedGrads().at("lin.weight").at(i), first.at(i) + more.at("lin.weight").at(i), 1e-15);
}

} // namespace
} // namespace enc
