// Networks: layers with sub-layers, expanded into one layer (compiler/ExpandNetwork.cpp).
//
// NetworkNumerics: a residual block compiled whole equals the same layers run one by one as
// separate Layers, in f64, forward, every gradient and the running statistics; the element-wise
// glue between them (relu, the residual add) is computed here in plain loops.
// NetworkGrad: gradients of small networks (a sub-layer called twice, helpers) against central
// finite differences of L = sum(Y * G).
// NetworkNames: parameters and buffers are named as torch's state_dict for the same structure.
// NetworkErrors: mistakes at a call site are reported there, with the sub-layer's declaration.
#include "compiler/Pipeline.h"
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

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc {
namespace {

using Tensors = std::map<std::string, Tensor>;
using Settings = std::map<std::string, std::string>;

const char *kBlock = R"(
layer Block(inplanes: int, planes: int, stride: int = 1) {
  conv1 = Conv2d(in_channels=inplanes, out_channels=planes, kernel_size=3, stride=stride, padding=1, bias=false)
  bn1 = SyncBatchNorm(num_features=planes)
  conv2 = Conv2d(in_channels=planes, out_channels=planes, kernel_size=3, padding=1, bias=false)
  bn2 = SyncBatchNorm(num_features=planes)
  downsample = [Conv2d(in_channels=inplanes, out_channels=planes, kernel_size=1, stride=stride, bias=false),
                SyncBatchNorm(num_features=planes)] where stride != 1 || inplanes != planes

  forward(X: [B, inplanes, H, W]) -> Y {
    F = relu(bn1(conv1(X)))
    G = bn2(conv2(F))
    Y = relu(G + select(stride != 1 || inplanes != planes, downsample(X), X))
  }
}

layer Stack(C: int = 4, N: int = 2) {
  stem = Conv2d(in_channels=3, out_channels=C, kernel_size=3, padding=1)
  layer1 = [Block(inplanes=C, planes=C) for i < N]
  layer2 = [Block(inplanes=select(i == 0, C, 2 * C), planes=2 * C, stride=select(i == 0, 2, 1)) for i < N]
  fc = Linear(in_features=2 * C, out_features=3)
  forward(X: [B, 3, H, W]) -> Y {
    F = layer2(layer1(relu(stem(X))))
    Y = fc(spatial_mean(F))
  }
}

layer Twice(D: int = 3) {
  lin = Linear(in_features=D, out_features=D)
  forward(X: [B, D]) -> Y {
    Y = lin(tanh(lin(X))) + X
  }
}

layer Normalized() {
  n = L2Normalize()
  fc = Linear(in_features=4, out_features=3)
  forward(X: [B, 4]) -> Y {
    Y = fc(n(tanh(X)))
  }
}

layer Flattens() {
  conv = Conv2d(in_channels=2, out_channels=3, kernel_size=1)
  fl = Flatten()
  forward(X: [B, 2, 2, 3]) -> (A, F) {
    Z = conv(X)
    A = fl(Z)
    F = flatten(Z) * 1
  }
}

# Sum and Mean split their input at a counted A...(dim): none, one, two and every dimension
# before the reduced one.
layer Reduces() {
  conv = Conv2d(in_channels=2, out_channels=3, kernel_size=1)
  s0 = Sum(dim=0)
  s2 = Sum(dim=2)
  m3 = Mean(dim=3)
  m1 = Mean(dim=1)
  forward(X: [B, 2, 3, 4]) -> (S0, S2, M3, Y) {
    Z = tanh(conv(X))
    S0 = s0(Z)
    S2 = s2(Z)
    M3 = m3(Z)
    Y = m1(S2 * S2)
  }
}

layer Helpers() {
  a = Conv2d(in_channels=2, out_channels=3, kernel_size=1)
  b = Conv2d(in_channels=2, out_channels=2, kernel_size=1)
  fc = Linear(in_features=20, out_features=2)
  forward(X: [B, 2, 2, 2]) -> (Y, M) {
    Z = cat(a(X), b(X))
    Y = fc(flatten(sigmoid(Z) * 2))
    M = spatial_mean(Z)
  }
}
)";

std::shared_ptr<const Library> lib() {
  static auto l = Library::fromSource("networks.enc", kBlock);
  return l;
}

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Tensor random(const Shape &shape, uint64_t seed, double lo = -1, double hi = 1) {
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, lo + (hi - lo) * static_cast<double>(mix(seed * 7919 + static_cast<uint64_t>(i) + 1) >> 11) * 0x1.0p-53);
  return t;
}

double maxDiff(const Tensor &a, const Tensor &b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel() && a.shape() == b.shape(); ++i) m = std::max(m, std::abs(a.at(i) - b.at(i)));
  return m;
}

double maxAbs(const Tensor &a) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.at(i)));
  return m;
}

Tensor map2(const Tensor &a, const Tensor &b, const std::function<double(double, double)> &f) {
  Tensor out(DType::F64, a.shape());
  for (int64_t i = 0; i < a.numel(); ++i) out.set(i, f(a.at(i), b.at(i)));
  return out;
}

LayerOptions f64() { return {.dtype = DType::F64}; }

TEST(NetworkNumerics, ResidualBlockEqualsItsLayersRunOneByOne) {
  Layer net(lib(), "Block", {{"inplanes", "3"}, {"planes", "4"}, {"stride", "2"}}, f64());
  auto shipped = Library::shipped();
  Layer conv1(shipped, "Conv2d", {{"in_channels", "3"}, {"out_channels", "4"}, {"kernel_size", "3"}, {"stride", "2"},
                                  {"padding", "1"}, {"bias", "false"}}, f64());
  Layer conv2(shipped, "Conv2d", {{"in_channels", "4"}, {"out_channels", "4"}, {"kernel_size", "3"}, {"padding", "1"},
                                  {"bias", "false"}}, f64());
  Layer ds0(shipped, "Conv2d", {{"in_channels", "3"}, {"out_channels", "4"}, {"kernel_size", "1"}, {"stride", "2"},
                                {"bias", "false"}}, f64());
  Layer bn1(shipped, "SyncBatchNorm", {{"num_features", "4"}}, f64());
  Layer bn2(shipped, "SyncBatchNorm", {{"num_features", "4"}}, f64());
  Layer ds1(shipped, "SyncBatchNorm", {{"num_features", "4"}}, f64());
  std::map<std::string, Layer *> parts = {{"conv1", &conv1}, {"conv2", &conv2}, {"downsample.0", &ds0},
                                          {"bn1", &bn1},     {"bn2", &bn2},     {"downsample.1", &ds1}};
  // Same weights everywhere: the network's, with the batch norms' affine parameters made non-trivial.
  uint64_t seed = 1;
  for (auto &[prefix, layer] : parts)
    for (const auto &[name, value] : layer->params()) {
      std::string full = prefix + "." + name;
      ASSERT_TRUE(net.params().count(full)) << full;
      Tensor v = layer->isParameter(name) ? random(value.shape(), ++seed, 0.5, 1.5) : net.params().at(full);
      net.setParam(full, v);
      layer->setParam(name, v);
    }

  Tensor x = random({2, 3, 6, 5}, 100);
  Tensor y = net.forward({{"X", x}}).at("Y");
  // One by one.
  Tensor a = conv1.forward({{"X", x}}).at("Y");
  Tensor b = bn1.forward({{"X", a}}).at("Y");
  Tensor f = map2(b, b, [](double v, double) { return std::max(v, 0.0); });
  Tensor c = conv2.forward({{"X", f}}).at("Y");
  Tensor g = bn2.forward({{"X", c}}).at("Y");
  Tensor d = ds0.forward({{"X", x}}).at("Y");
  Tensor e = ds1.forward({{"X", d}}).at("Y");
  Tensor s = map2(g, e, [](double p, double q) { return p + q; });
  Tensor ref = map2(s, s, [](double v, double) { return std::max(v, 0.0); });
  ASSERT_EQ(y.shape(), (Shape{2, 4, 3, 3}));
  EXPECT_LT(maxDiff(y, ref), 1e-12);
  EXPECT_GT(maxAbs(ref), 0.1);

  // Backward of L = sum(Y * G).
  Tensor gy = random(y.shape(), 200);
  Tensors grads = net.backward({{"Y", gy}});
  Tensor gs = map2(gy, s, [](double gv, double v) { return v > 0 ? gv : 0; });
  Tensors gBn2 = bn2.backward({{"Y", gs}});
  Tensors gConv2 = conv2.backward({{"Y", gBn2.at("X")}});
  Tensor gb = map2(gConv2.at("X"), b, [](double gv, double v) { return v > 0 ? gv : 0; });
  Tensors gBn1 = bn1.backward({{"Y", gb}});
  Tensors gConv1 = conv1.backward({{"Y", gBn1.at("X")}});
  Tensors gDs1 = ds1.backward({{"Y", gs}});
  Tensors gDs0 = ds0.backward({{"Y", gDs1.at("X")}});
  Tensor gx = map2(gConv1.at("X"), gDs0.at("X"), [](double p, double q) { return p + q; });
  EXPECT_LT(maxDiff(grads.at("X"), gx), 1e-11);
  std::map<std::string, Tensors *> partGrads = {{"conv1", &gConv1}, {"conv2", &gConv2}, {"downsample.0", &gDs0},
                                                {"bn1", &gBn1},     {"bn2", &gBn2},     {"downsample.1", &gDs1}};
  for (auto &[prefix, pg] : partGrads)
    for (const auto &[name, value] : *pg) {
      if (name == "X") continue;
      ASSERT_TRUE(grads.count(prefix + "." + name)) << prefix << "." << name;
      EXPECT_LT(maxDiff(grads.at(prefix + "." + name), value), 1e-11) << prefix << "." << name;
    }
  // Running statistics after one training pass.
  for (auto &[prefix, layer] : parts)
    for (const auto &[name, value] : layer->params())
      if (!layer->isParameter(name))
        EXPECT_LT(maxDiff(net.params().at(prefix + "." + name), value), 1e-13) << prefix << "." << name;
}

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
  Layer net(lib(), "Twice", {}, f64());
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
  Layer train(lib(), "Stack", {{"C", "2"}, {"N", "2"}}, f64());
  Tensor x = random({2, 3, 4, 4}, 11);
  checkGradients(train, {{"X", x}}, {"X", "stem.weight", "layer2.0.downsample.0.weight", "layer1.1.bn2.weight"}, 2e-6);
  LayerOptions eval = f64();
  eval.training = false;
  Layer net(lib(), "Stack", {{"C", "2"}, {"N", "1"}}, eval);
  checkGradients(net, {{"X", x}}, {"X", "layer2.0.conv1.weight", "fc.weight"});
}

// L2Normalize of an intermediate: the adjoint of its reads recomputes sum(c: T[b, c] ^ 2), whose
// c must stay bound when the read's own index c is renamed to the gradient's.
TEST(NetworkGrad, NormalizeAnIntermediate) {
  Layer net(lib(), "Normalized", {}, f64());
  checkGradients(net, {{"X", random({3, 4}, 5)}}, {"X", "fc.weight"});
}

TEST(NetworkGrad, ConcatenateFlattenAndSpatialMean) {
  Layer net(lib(), "Helpers", {}, f64());
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
  Layer net(lib(), "Flattens", {}, f64());
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
  Layer net(lib(), "Reduces", {}, f64());
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
const char *kTwoOutputs = R"(
layer Two(C: int) {
  param w[C] = uniform(-1, 1)
  forward(X: [B, C]) -> (Y: [B, C], S: [B]) {
    Y[b, c] = X[b, c] * w[c]
    S[b] = sum(c: X[b, c] * X[b, c] * w[c])
  }
}
layer Net(C: int = 3) {
  head = Two(C=C)
  lin = Linear(in_features=C, out_features=2)
  forward(X: [B, C]) -> (Z, T) {
    (A, S) = head(relu(X))
    Z = lin(A)
    T[b] = S[b] * 2
  }
}
)";

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
  Layer net(lib(), "Twice", {}, f64());
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

// On the GPU (and, in every test run, on the CUDA emulator): a network's kernels and tensors are
// named by path, which CUDA C++ spells as mangled identifiers.
// The CUDA module keeps one function per kernel up to names: a stack of three blocks per stage
// has its blocks' kernels once, and NVRTC compiles that module.
TEST(NetworkGpu, RepeatedBlocksAreOneCudaFunction) {
  Layer net(lib(), "Stack", {{"C", "4"}, {"N", "3"}}, {});
  ir::Program sized = ir::Pipeline().specializeSizes(
      net.program(), {{"B", ir::intImm(2)}, {"H", ir::intImm(8)}, {"W", ir::intImm(8)}});
  ir::LoopProgram loops = ir::Pipeline().lower(sized, {.target = ir::Target::GPU});
  codegen::CudaModuleSource module = codegen::emitCudaModule(loops);
  ASSERT_EQ(module.functions.size(), loops.kernels.size());
  std::map<std::string, std::string> byOutput; // kernel output -> function
  for (size_t i = 0; i < loops.kernels.size(); ++i) byOutput[loops.kernels[i].output] = module.functions[i];
  EXPECT_LT(module.distinct * 2, loops.kernels.size()) << module.distinct << " of " << loops.kernels.size();
  for (const auto &[a, b] : {std::pair{"layer1.1.conv1", "layer1.2.conv1"}, std::pair{"layer2.1.conv2", "layer2.2.conv2"}}) {
    auto find = [&](const std::string &prefix) {
      for (const auto &[out, f] : byOutput)
        if (out.rfind(prefix, 0) == 0) return f;
      return std::string();
    };
    EXPECT_FALSE(find(a).empty()) << a;
    EXPECT_EQ(find(a), find(b)) << a << " / " << b;
  }
  if (cuda::nvrtcAvailable()) EXPECT_NO_THROW(cuda::compile(module.source, {.arch = "sm_80"}));
}

TEST(NetworkGpu, StackMatchesTheCpu) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  LayerOptions gpu = f64();
  gpu.device = Device::CUDA;
  // Two blocks per stage: the repeated blocks' kernels run as one CUDA function each.
  Layer cpu(lib(), "Stack", {{"C", "2"}, {"N", "2"}}, f64()), dev(lib(), "Stack", {{"C", "2"}, {"N", "2"}}, gpu);
  for (const auto &[name, value] : cpu.params()) dev.setParam(name, value);
  Tensor x = random({2, 3, 4, 4}, 9), gy = random({2, 3}, 10);
  EXPECT_LT(maxDiff(cpu.forward({{"X", x}}).at("Y"), dev.forward({{"X", x}}).at("Y").cpu()), 1e-12);
  Tensors gc = cpu.backward({{"Y", gy}}), gd = dev.backward({{"Y", gy}});
  for (const char *name : {"X", "stem.weight", "layer2.0.downsample.0.weight", "fc.bias"})
    EXPECT_LT(maxDiff(gc.at(name), gd.at(name).cpu()), 1e-11) << name;
}

TEST(NetworkNames, ParametersAndBuffersAreNamedAsTorchStateDict) {
  Layer net(lib(), "Stack", {{"C", "2"}, {"N", "2"}});
  // torchvision's ResNet naming for this structure: layerK.I.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}.
  std::vector<std::string> expected = {"stem.weight", "stem.bias", "fc.weight", "fc.bias"};
  for (int k = 1; k <= 2; ++k)
    for (int i = 0; i < 2; ++i) {
      std::string p = "layer" + std::to_string(k) + "." + std::to_string(i) + ".";
      for (const char *s : {"conv1.weight", "conv2.weight"}) expected.push_back(p + s);
      std::vector<std::string> bns = {"bn1", "bn2"};
      if (k == 2 && i == 0) {
        expected.push_back(p + "downsample.0.weight");
        bns.push_back("downsample.1");
      }
      for (const std::string &bn : bns)
        for (const char *s : {"weight", "bias", "running_mean", "running_var"}) expected.push_back(p + bn + "." + s);
    }
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> names;
  for (const auto &[name, value] : net.params()) names.push_back(name);
  EXPECT_EQ(names, expected);
  EXPECT_TRUE(net.isParameter("layer2.0.downsample.0.weight"));
  EXPECT_FALSE(net.isParameter("layer1.1.bn2.running_var"));
  EXPECT_EQ(net.params().at("layer2.1.conv1.weight").shape(), (Shape{4, 4, 3, 3}));
}

std::string errorFor(const std::string &text, const std::string &layer, const Settings &settings = {}) {
  return testing::errorOf([&] {
    auto l = Library::fromSource("bad.enc", text);
    Layer net(l, layer, settings);
    net.forward({{"X", Tensor(DType::F32, {2, 4, 5, 5})}});
  });
}

TEST(NetworkErrors, AShapeMismatchIsReportedAtTheCallWithTheSubLayersDeclaration) {
  std::string m = errorFor(R"(
layer Net() {
  conv = Conv2d(in_channels=3, out_channels=8, kernel_size=3)
  forward(X: [B, 4, H, W]) -> Y {
    Y = conv(X)
  }
}
)",
                           "Net");
  EXPECT_MENTIONS(m, "bad.enc:5:14: error: sub-layer 'conv' expects X [B, 3, H, W], but 'X' is [B, 4, H, W]");
  EXPECT_MENTIONS(m, "conv.enc");
  EXPECT_MENTIONS(m, "input 'X' of layer Conv2d declared here");
}

TEST(NetworkErrors, BadHyperParametersRequirementsAndNames) {
  auto net = [](const std::string &member, const std::string &body) {
    return "layer Net(k: int = 3) {\n  " + member + "\n  forward(X: [B, 4, H, W]) -> Y {\n    " + body + "\n  }\n}\n";
  };
  EXPECT_MENTIONS(errorFor(net("c = Conv2d(in_channels=4, out_channels=8, kernel=3)", "Y = c(X)"), "Net"),
                  "sub-layer 'c': layer Conv2d has no hyper-parameter 'kernel'; did you mean 'kernel_size'?");
  EXPECT_MENTIONS(errorFor(net("c = Conv2d(in_channels=4, out_channels=6, kernel_size=k, groups=4)", "Y = c(X)"), "Net"),
                  "sub-layer 'c': layer Conv2d requires in_channels % groups == 0 && out_channels % groups == 0");
  EXPECT_MENTIONS(errorFor(net("c = Conv3d(in_channels=4)", "Y = c(X)"), "Net"), "no layer named 'Conv3d'");
  EXPECT_MENTIONS(errorFor(net("c = Linear(in_features=4, out_features=2) where k > 3", "Y = c(X)"), "Net"),
                  "sub-layer 'c' does not exist with these hyper-parameters");
  EXPECT_MENTIONS(errorFor(net("c = Net()", "Y = c(X)"), "Net"), "layer 'Net' uses itself as a sub-layer");
  EXPECT_MENTIONS(errorFor(net("c = Linear(in_features=4, out_features=2)", "Y[b, c, h, w] = c(X)"), "Net"),
                  "'c' gives a whole tensor");
  EXPECT_MENTIONS(errorFor(net("c = Conv2d(in_channels=4, out_channels=8, kernel_size=1)", "Y = c(X) + X"), "Net"),
                  "element-wise operands of different shapes");
  EXPECT_MENTIONS(errorFor(net("c = [Conv2d(in_channels=4, out_channels=4, kernel_size=1) for i < k - 5]", "Y = c(X)"),
                           "Net"),
                  "a repetition count must be a non-negative integer");
  EXPECT_MENTIONS(errorFor("layer Net() {\n  forward(X: [B]) -> Y: [B] {\n    Y[b] = exp(x=X[b])\n  }\n}\n", "Net"),
                  "'exp' takes no named arguments");
}

TEST(NetworkErrors, SubLayersWithSeveralOutputsAreCalledWithAllOfThemNamed) {
  std::string two = std::string(kTwoOutputs).substr(0, std::string(kTwoOutputs).find("layer Net("));
  auto net = [&](const std::string &body) {
    return two + "layer Bad() {\n  head = Two(C=4)\n  forward(X: [B, 4, H, W]) -> Y {\n    " + body + "\n  }\n}\n";
  };
  std::string m = errorFor(net("Y = head(spatial_mean(X))"), "Bad");
  EXPECT_MENTIONS(m, "sub-layer 'head' has 2 outputs (Y, S); a call in an expression gives one tensor");
  EXPECT_MENTIONS(m, "name them all: (Y, S) = head(...)");
  EXPECT_MENTIONS(errorFor(net("(Y, S, Q) = head(spatial_mean(X))"), "Bad"), "sub-layer 'head' has 2 outputs (Y, S); the statement names 3");
  EXPECT_MENTIONS(errorFor(net("(Y, S) = relu(X)"), "Bad"), "2 tensors are defined by one call of a sub-layer");
  EXPECT_MENTIONS(errorFor("layer L() {\n  forward(X: [B]) -> Y: [B] {\n    (Y, Z) = X\n  }\n}\n", "L"),
                  "only a network's call of a sub-layer with several outputs defines several tensors");
  EXPECT_MENTIONS(errorFor("layer L() {\n  forward(X: [B]) -> Y: [B] {\n    (Y) = X\n  }\n}\n", "L"),
                  "parentheses around one tensor name");
}

TEST(NetworkErrors, SemaErrorsInTheExpansionPointAtTheNetworksText) {
  std::string m = errorFor(R"(
layer Net() {
  conv = Conv2d(in_channels=4, out_channels=8, kernel_size=1)
  forward(X: [B, 4, H, W]) -> Y: [B, 8] {
    F = conv(X)
    Y[b, c] = F[b, c]
  }
}
)",
                           "Net");
  EXPECT_MENTIONS(m, "in network Net:");
  EXPECT_MENTIONS(m, "bad.enc:6:15");
  EXPECT_MENTIONS(m, "1 error generated");
}

TEST(NetworkErrors, ADeclaredOutputShapeMustMatch) {
  std::string m = errorFor(R"(
layer Net() {
  conv = Conv2d(in_channels=4, out_channels=8, kernel_size=3)
  forward(X: [B, 4, H, W]) -> Y: [B, 8, H, W] {
    Y = conv(X)
  }
}
)",
                           "Net");
  EXPECT_MENTIONS(m, "output 'Y' is declared [B, 8, H, W] but is given [B, 8, H - 2, W - 2]");
}

} // namespace
} // namespace enc
