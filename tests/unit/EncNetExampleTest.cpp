// The EncNet example network (examples/encnet/encnet.enc), compiled whole, in f64 and train
// mode, at a small size (B=2, channels=3, H=5, W=6, width=2 so the features have 4 channels,
// classes=3, ncodes=2).
//
// EncNetExample.ParamsHaveTorchNames: the parameters carry PyTorch-Encoding's state_dict names.
// EncNetExample.ForwardMatchesNaiveLoops: Logits and Loss against the whole network's math
// written here as naive double loops (stem, EncModule, gate, segmentation head, both losses).
// EncNetExample.GradientsMatchFiniteDifferences: backward("Loss") against central finite
// differences of the layer's own forward Loss, for X and several parameters.
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc {
namespace {

using V = std::vector<double>;
using Tensors = std::map<std::string, Tensor>;

// The sizes every test uses; F (the features) has 2 * width channels.
constexpr int64_t kB = 2, kChannels = 3, kH = 5, kW = 6, kWidth = 2, kClasses = 3, kCodes = 2;
constexpr int64_t kF = 2 * kWidth;
constexpr double kSeWeight = 0.2; // EncNet's default se_weight

const std::shared_ptr<const Library> &lib() {
  static std::shared_ptr<const Library> l = Library::fromFile(std::string(ENC_TEST_DIR) + "/../examples/encnet/encnet.enc");
  return l;
}

LayerOptions f64() {
  LayerOptions opts;
  opts.dtype = DType::F64; // train mode is the default
  return opts;
}

Layer makeNet() {
  return Layer(lib(), "EncNet", {{"width", std::to_string(kWidth)}, {"classes", std::to_string(kClasses)},
                                 {"ncodes", std::to_string(kCodes)}}, f64());
}

// Deterministic values in [lo, hi] from a sine of the index.
Tensor wave(const Shape &shape, double f, double phase, double lo = -1, double hi = 1) {
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, lo + (hi - lo) * 0.5 * (1 + std::sin(f * static_cast<double>(i) + phase)));
  return t;
}

V values(const Tensor &t) {
  V v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.at(i);
  return v;
}

// The three inputs: X images, T integer classes in [0, classes) stored as doubles, P 0/1 presence.
Tensors inputs() {
  Tensor x = wave({kB, kChannels, kH, kW}, 0.73, 0.4);
  Tensor t(DType::F64, {kB, kH, kW});
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, static_cast<double>((i * 7 + i / 5) % kClasses));
  Tensor p(DType::F64, {kB, kClasses});
  for (int64_t i = 0; i < p.numel(); ++i) p.set(i, (i % 3 == 1) ? 0.0 : 1.0);
  return {{"X", x}, {"T", t}, {"P", p}};
}

// Every batch norm's affine parameters made non-trivial (they start as ones and zeros), so that
// the reference has to apply them.
void setBatchNormAffine(Layer &net) {
  double phase = 0.1;
  for (const char *bn : {"bn1", "bn2", "bn3", "head.encoding.1", "head.encoding.4"}) {
    const Shape shape = net.params().at(std::string(bn) + ".weight").shape();
    net.setParam(std::string(bn) + ".weight", wave(shape, 1.3, phase += 0.7, 0.5, 1.5));
    net.setParam(std::string(bn) + ".bias", wave(shape, 1.1, phase += 0.7, -0.5, 0.5));
  }
}

// ---- The network's math as naive double loops ------------------------------------------------

// Conv2d at stride 1 that keeps H x W (every one in EncNet): Y[b,o,h,w] = sum(c,kh,kw:
// X[b,c,h+kh*dil-pad,w+kw*dil-pad] * weight[o,c,kh,kw]) + bias[o], zero outside the image.
V conv(const V &x, int64_t cin, const V &weight, int64_t cout, int64_t k, int64_t pad, int64_t dil, const V *bias) {
  V y(static_cast<size_t>(kB * cout * kH * kW), 0.0);
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t o = 0; o < cout; ++o)
      for (int64_t h = 0; h < kH; ++h)
        for (int64_t w = 0; w < kW; ++w) {
          double s = bias ? (*bias)[static_cast<size_t>(o)] : 0.0;
          for (int64_t c = 0; c < cin; ++c)
            for (int64_t kh = 0; kh < k; ++kh)
              for (int64_t kw = 0; kw < k; ++kw) {
                int64_t ih = h + kh * dil - pad, iw = w + kw * dil - pad;
                if (ih < 0 || ih >= kH || iw < 0 || iw >= kW) continue;
                s += x[static_cast<size_t>(((b * cin + c) * kH + ih) * kW + iw)] *
                     weight[static_cast<size_t>(((o * cin + c) * k + kh) * k + kw)];
              }
          y[static_cast<size_t>(((b * cout + o) * kH + h) * kW + w)] = s;
        }
  return y;
}

// SyncBatchNorm in training, one process, on [B, C, L]: per-channel batch mean and biased
// variance over (b, l), y = (x - mean) / sqrt(var + 1e-5) * weight + bias.
V batchNorm(const V &x, int64_t c, int64_t l, const V &weight, const V &bias) {
  V y(x.size());
  const double n = static_cast<double>(kB * l);
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean = 0, var = 0;
    for (int64_t b = 0; b < kB; ++b)
      for (int64_t i = 0; i < l; ++i) mean += x[static_cast<size_t>((b * c + ch) * l + i)];
    mean /= n;
    for (int64_t b = 0; b < kB; ++b)
      for (int64_t i = 0; i < l; ++i) var += std::pow(x[static_cast<size_t>((b * c + ch) * l + i)] - mean, 2);
    var /= n;
    for (int64_t b = 0; b < kB; ++b)
      for (int64_t i = 0; i < l; ++i) {
        size_t at = static_cast<size_t>((b * c + ch) * l + i);
        y[at] = (x[at] - mean) / std::sqrt(var + 1e-5) * weight[static_cast<size_t>(ch)] + bias[static_cast<size_t>(ch)];
      }
  }
  return y;
}

// relu, element-wise.
V relu(V x) {
  for (double &v : x) v = std::max(v, 0.0);
  return x;
}

struct Reference {
  V logits; // [B, classes, H, W]
  double loss = 0;
};

// The whole of EncNet's forward pass, from the layer's current parameters.
Reference reference(const Layer &net, const Tensors &in) {
  auto p = [&](const std::string &name) { return values(net.params().at(name)); };
  const V x = values(in.at("X")), t = values(in.at("T")), presence = values(in.at("P"));
  const int64_t N = kH * kW;

  // Stem: F = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(X))))))))), conv3 dilated (pad 2, dil 2).
  V a = relu(batchNorm(conv(x, kChannels, p("conv1.weight"), kWidth, 3, 1, 1, nullptr), kWidth, N, p("bn1.weight"), p("bn1.bias")));
  V b2 = relu(batchNorm(conv(a, kWidth, p("conv2.weight"), kF, 3, 1, 1, nullptr), kF, N, p("bn2.weight"), p("bn2.bias")));
  const V F = relu(batchNorm(conv(b2, kF, p("conv3.weight"), kF, 3, 2, 2, nullptr), kF, N, p("bn3.weight"), p("bn3.bias")));

  // EncModule head: Xe = relu(encoding.1(encoding.0(F))), encoding.0 a 1x1 conv without bias.
  const V Xe = relu(batchNorm(conv(F, kF, p("head.encoding.0.weight"), kF, 1, 0, 1, nullptr), kF, N,
                              p("head.encoding.1.weight"), p("head.encoding.1.bias")));

  // Encoding (encoding.3): A[b,i,k] = softmax over k of scale[k] * sum(d: (Xe[b,d,i] - c[k,d])^2),
  // Y[b,k,d] = sum(i: A[b,i,k] * (Xe[b,d,i] - c[k,d])).
  const V cw = p("head.encoding.3.codewords"), scale = p("head.encoding.3.scale");
  V enc(static_cast<size_t>(kB * kCodes * kF), 0.0);
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t i = 0; i < N; ++i) {
      V logit(static_cast<size_t>(kCodes));
      for (int64_t k = 0; k < kCodes; ++k) {
        double d2 = 0;
        for (int64_t d = 0; d < kF; ++d)
          d2 += std::pow(Xe[static_cast<size_t>((b * kF + d) * N + i)] - cw[static_cast<size_t>(k * kF + d)], 2);
        logit[static_cast<size_t>(k)] = scale[static_cast<size_t>(k)] * d2;
      }
      double top = *std::max_element(logit.begin(), logit.end()), z = 0;
      for (double l : logit) z += std::exp(l - top);
      for (int64_t k = 0; k < kCodes; ++k) {
        double A = std::exp(logit[static_cast<size_t>(k)] - top) / z;
        for (int64_t d = 0; d < kF; ++d)
          enc[static_cast<size_t>((b * kCodes + k) * kF + d)] +=
              A * (Xe[static_cast<size_t>((b * kF + d) * N + i)] - cw[static_cast<size_t>(k * kF + d)]);
      }
    }

  // encoding.4 (batch norm over the codewords of [B, K, D]: statistics per k over b and d), relu,
  // then E[b,d] = mean over k.
  const V C = relu(batchNorm(enc, kCodes, kF, p("head.encoding.4.weight"), p("head.encoding.4.bias")));
  V E(static_cast<size_t>(kB * kF), 0.0);
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t d = 0; d < kF; ++d) {
      for (int64_t k = 0; k < kCodes; ++k) E[static_cast<size_t>(b * kF + d)] += C[static_cast<size_t>((b * kCodes + k) * kF + d)];
      E[static_cast<size_t>(b * kF + d)] /= static_cast<double>(kCodes);
    }

  // Linear y[b,o] = sum(i: x[b,i] * weight[o,i]) + bias[o].
  auto linear = [&](const V &in, int64_t nin, const std::string &prefix, int64_t nout) {
    const V w = p(prefix + ".weight"), bias = p(prefix + ".bias");
    V y(static_cast<size_t>(kB * nout));
    for (int64_t b = 0; b < kB; ++b)
      for (int64_t o = 0; o < nout; ++o) {
        double s = bias[static_cast<size_t>(o)];
        for (int64_t i = 0; i < nin; ++i) s += in[static_cast<size_t>(b * nin + i)] * w[static_cast<size_t>(o * nin + i)];
        y[static_cast<size_t>(b * nout + o)] = s;
      }
    return y;
  };

  // The squeeze-and-excitation gate: Gamma = sigmoid(fc.0(E)), G = relu(F + F * Gamma[b, c]).
  const V fc = linear(E, kF, "head.fc.0", kF);
  V G(F.size());
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t c = 0; c < kF; ++c) {
      double gamma = 1 / (1 + std::exp(-fc[static_cast<size_t>(b * kF + c)]));
      for (int64_t i = 0; i < N; ++i) {
        size_t at = static_cast<size_t>((b * kF + c) * N + i);
        G[at] = std::max(F[at] + F[at] * gamma, 0.0);
      }
    }

  // Segmentation head: Logits = seg(G), a 1x1 conv with bias.
  const V segBias = p("seg.bias");
  Reference r;
  r.logits = conv(G, kF, p("seg.weight"), kClasses, 1, 0, 1, &segBias);

  // Pixel loss: mean over (b,h,w) of logsumexp over c of Logits - Logits[b, T[b,h,w], h, w].
  double pixel = 0;
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t i = 0; i < N; ++i) {
      double top = -INFINITY, z = 0;
      for (int64_t c = 0; c < kClasses; ++c) top = std::max(top, r.logits[static_cast<size_t>((b * kClasses + c) * N + i)]);
      for (int64_t c = 0; c < kClasses; ++c) z += std::exp(r.logits[static_cast<size_t>((b * kClasses + c) * N + i)] - top);
      int64_t cls = static_cast<int64_t>(t[static_cast<size_t>(b * N + i)]);
      pixel += top + std::log(z) - r.logits[static_cast<size_t>((b * kClasses + cls) * N + i)];
    }
  pixel /= static_cast<double>(kB * N);

  // SE-loss: mean over (b,c) of BCE with logits of S = selayer(E) against P,
  // -(p log sigmoid(s) + (1 - p) log(1 - sigmoid(s))), written in that textbook form here.
  const V S = linear(E, kF, "head.selayer", kClasses);
  double se = 0;
  for (size_t i = 0; i < S.size(); ++i) {
    double sig = 1 / (1 + std::exp(-S[i]));
    se -= presence[i] * std::log(sig) + (1 - presence[i]) * std::log(1 - sig);
  }
  se /= static_cast<double>(S.size());

  // Loss = pixel loss + se_weight * SE-loss.
  r.loss = pixel + kSeWeight * se;
  return r;
}

// ---- Tests ------------------------------------------------------------------------------------

TEST(EncNetExample, ParamsHaveTorchNames) {
  Layer net = makeNet();
  std::set<std::string> names;
  for (const auto &[name, value] : net.params())
    if (net.isParameter(name)) names.insert(name);
  std::set<std::string> want = {"conv1.weight", "bn1.weight", "bn1.bias",
                                "conv2.weight", "bn2.weight", "bn2.bias",
                                "conv3.weight", "bn3.weight", "bn3.bias",
                                "head.encoding.0.weight", "head.encoding.1.weight", "head.encoding.1.bias",
                                "head.encoding.3.codewords", "head.encoding.3.scale",
                                "head.encoding.4.weight", "head.encoding.4.bias",
                                "head.fc.0.weight", "head.fc.0.bias", "head.selayer.weight", "head.selayer.bias",
                                "seg.weight", "seg.bias"};
  EXPECT_EQ(names, want);
  EXPECT_EQ(net.params().at("head.encoding.3.codewords").shape(), (Shape{kCodes, kF}));
  EXPECT_EQ(net.params().at("conv3.weight").shape(), (Shape{kF, kF, 3, 3}));
}

TEST(EncNetExample, ForwardMatchesNaiveLoops) {
  Layer net = makeNet();
  setBatchNormAffine(net);
  Tensors in = inputs();
  Reference want = reference(net, in); // from the parameters before forward updates the running statistics
  Tensors out = net.forward(in);
  ASSERT_TRUE(out.count("Logits") && out.count("Loss"));
  const Tensor &logits = out.at("Logits");
  ASSERT_EQ(logits.shape(), (Shape{kB, kClasses, kH, kW}));
  ASSERT_EQ(static_cast<size_t>(logits.numel()), want.logits.size());
  for (size_t i = 0; i < want.logits.size(); ++i)
    ASSERT_NEAR(logits.at(static_cast<int64_t>(i)), want.logits[i], 1e-10 * (1 + std::abs(want.logits[i]))) << "Logits at " << i;
  ASSERT_EQ(out.at("Loss").numel(), 1);
  EXPECT_NEAR(out.at("Loss").at(0), want.loss, 1e-10 * std::abs(want.loss));
  // Train mode: a second pass (running statistics now moved) gives the same loss.
  EXPECT_NEAR(net.forward(in).at("Loss").at(0), want.loss, 1e-10 * std::abs(want.loss));
}

TEST(EncNetExample, GradientsMatchFiniteDifferences) {
  Layer net = makeNet();
  setBatchNormAffine(net);
  Tensors in = inputs();
  net.forward(in);
  Tensors grads = net.backward("Loss");
  // The layer's own forward Loss (train mode: batch statistics, so the running buffers that
  // each pass updates do not change it).
  auto loss = [&]() { return net.forward(in).at("Loss").at(0); };
  const double h = 1e-6, tol = 1e-6;
  for (const std::string name : {"X", "conv1.weight", "bn3.weight", "head.encoding.3.codewords", "head.encoding.3.scale",
                                 "head.fc.0.weight", "head.selayer.weight", "seg.bias"}) {
    const bool isInput = name == "X";
    const Tensor value = (isInput ? in.at(name) : net.params().at(name)).clone();
    ASSERT_TRUE(grads.count(name)) << name;
    const Tensor &g = grads.at(name);
    ASSERT_EQ(g.shape(), value.shape()) << name;
    // Not a vacuous check: each of these gradients has an element well away from zero.
    double largest = 0;
    for (int64_t i = 0; i < g.numel(); ++i) largest = std::max(largest, std::abs(g.at(i)));
    EXPECT_GT(largest, 1e-3) << name;
    // Every element of a small tensor; about 20 spread over a large one.
    const int64_t step = value.numel() <= 64 ? 1 : value.numel() / 20;
    for (int64_t i = 0; i < value.numel(); i += step) {
      auto at = [&](double v) {
        Tensor t = value.clone();
        t.set(i, v);
        if (isInput) in[name] = t;
        else net.setParam(name, t);
        return loss();
      };
      const double v = value.at(i);
      const double fd = (at(v + h) - at(v - h)) / (2 * h);
      at(v);
      EXPECT_NEAR(g.at(i), fd, tol * (1 + std::abs(fd))) << fmt::format("dLoss/d{}[{}]", name, i);
    }
  }
}

} // namespace
} // namespace enc
