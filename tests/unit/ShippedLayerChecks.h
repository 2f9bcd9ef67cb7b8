// What the LayerForward and LayerGrad suites share: naive double-precision references written from
// the math in DESIGN.md ("Layer semantics") and torch's definitions, never from the .enc text; the
// harness that runs a case forward (against its reference) or backward (against central finite
// differences of L = sum(Y * G), and f32 against f64); and the cases of every shipped layer.
#pragma once

#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"
#include "ReferenceMath.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace enc::shipped_checks {

using Settings = std::map<std::string, std::string>;
using Vals = std::map<std::string, std::vector<double>>;
using Tensors = std::map<std::string, Tensor>;

inline const std::shared_ptr<const Library> &lib() {
  static std::shared_ptr<const Library> l = Library::shipped();
  return l;
}

// splitmix64: a small seeded generator, so every run (and platform) checks the same values.
class Gen {
public:
  explicit Gen(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53;
  }
  int64_t index(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

private:
  uint64_t state_;
};

inline Tensor randomTensor(const Shape &shape, Gen &gen, double lo = -1, double hi = 1) {
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, gen.uniform(lo, hi));
  return t;
}

// |v| in [0.05, 1] with a random sign: keeps element-wise kinks at 0 out of the finite differences' reach.
inline Tensor awayFromZero(const Shape &shape, Gen &gen) {
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, (gen.next() & 1 ? 1 : -1) * gen.uniform(0.05, 1));
  return t;
}

inline std::vector<double> values(const Tensor &t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i)
    v[static_cast<size_t>(i)] = t.at(i);
  return v;
}

inline size_t uz(int64_t i) { return static_cast<size_t>(i); }

inline int64_t numelFrom(const Shape &s, size_t first) {
  int64_t n = 1;
  for (size_t i = first; i < s.size(); ++i)
    n *= s[i];
  return n;
}

// max |actual - expected| / max(1, max |expected|): relative for large values, absolute near zero.
inline double relError(const Tensor &actual, const std::vector<double> &expected) {
  double maxDiff = 0, maxRef = 1;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    double e = expected[uz(i)], d = std::abs(actual.at(i) - e);
    if (std::isnan(d))
      return INFINITY;
    maxDiff = std::max(maxDiff, d);
    maxRef = std::max(maxRef, std::abs(e));
  }
  return maxDiff / maxRef;
}

inline double forwardTolerance(DType dtype) { return dtype == DType::F64 ? 1e-12 : 1e-5; }

inline std::string settingsString(const Settings &s) {
  std::string out;
  for (const auto &[k, v] : s)
    out += (out.empty() ? "" : " ") + k + "=" + v;
  return out;
}

using enc::testing::errorOf;

// ---- references -----------------------------------------------------------------------------------------

inline std::vector<double> encodingRef(const Vals &v, int64_t B, int64_t D, int64_t N, int64_t K) {
  return testing::encodingRef(v.at("X"), v.at("codewords"), v.at("scale"), B, D, N, K);
}

inline std::vector<double> gramRef(const std::vector<double> &f, int64_t B, int64_t C, int64_t HW) {
  std::vector<double> g(uz(B * C * C));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t e = 0; e < C; ++e) {
        double acc = 0;
        for (int64_t p = 0; p < HW; ++p)
          acc += f[uz((b * C + c) * HW + p)] * f[uz((b * C + e) * HW + p)];
        g[uz((b * C + c) * C + e)] = acc / static_cast<double>(C * HW);
      }
  return g;
}

// A 2-D convolution's geometry, as torch.nn.Conv2d takes it.
struct Conv {
  int64_t cin, cout, kh, kw, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  bool bias = true;
  int64_t outH(int64_t H) const { return (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  int64_t outW(int64_t W) const { return (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
};

inline std::string pair(int64_t a, int64_t b) { return a == b ? std::to_string(a) : fmt::format("{},{}", a, b); }

// Hyper-parameters left at their defaults are not passed, so the defaults are exercised too.
inline Settings convSettings(const Conv &cv, int64_t outChannels) {
  Settings s = {{"in_channels", std::to_string(cv.cin)},
                {"out_channels", std::to_string(outChannels)},
                {"kernel_size", pair(cv.kh, cv.kw)}};
  if (cv.sh != 1 || cv.sw != 1)
    s["stride"] = pair(cv.sh, cv.sw);
  if (cv.ph != 0 || cv.pw != 0)
    s["padding"] = pair(cv.ph, cv.pw);
  if (cv.dh != 1 || cv.dw != 1)
    s["dilation"] = pair(cv.dh, cv.dw);
  if (cv.groups != 1)
    s["groups"] = std::to_string(cv.groups);
  if (!cv.bias)
    s["bias"] = "false";
  return s;
}

// Direct convolution: X[B, cin, H, W], weight[cout, cin/groups, kh, kw] -> [B, cout, Ho, Wo], zero padding.
inline std::vector<double> convRef(const Vals &v, const Conv &cv, int64_t B, int64_t H, int64_t W) {
  const auto &x = v.at("X"), &w = v.at("weight");
  int64_t Ho = cv.outH(H), Wo = cv.outW(W), cinG = cv.cin / cv.groups, coutG = cv.cout / cv.groups;
  std::vector<double> y(uz(B * cv.cout * Ho * Wo));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < cv.cout; ++o)
      for (int64_t h = 0; h < Ho; ++h)
        for (int64_t q = 0; q < Wo; ++q) {
          double acc = cv.bias ? v.at("bias")[uz(o)] : 0.0;
          int64_t g = o / coutG;
          for (int64_t c = 0; c < cinG; ++c)
            for (int64_t i = 0; i < cv.kh; ++i)
              for (int64_t j = 0; j < cv.kw; ++j) {
                int64_t ih = h * cv.sh + i * cv.dh - cv.ph, iw = q * cv.sw + j * cv.dw - cv.pw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                  continue;
                acc += x[uz(((b * cv.cin + g * cinG + c) * H + ih) * W + iw)] *
                       w[uz(((o * cinG + c) * cv.kh + i) * cv.kw + j)];
              }
          y[uz(((b * cv.cout + o) * Ho + h) * Wo + q)] = acc;
        }
  return y;
}

// Pixel shuffle: output channel c at (h*r + i, w*r + j) is input channel c*r^2 + i*r + j at (h, w).
inline std::vector<double> pixelShuffle(const std::vector<double> &in, int64_t B, int64_t C, int64_t H, int64_t W,
                                 int64_t r) {
  std::vector<double> y(in.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w)
          for (int64_t i = 0; i < r; ++i)
            for (int64_t j = 0; j < r; ++j)
              y[uz(((b * C + c) * H * r + h * r + i) * W * r + w * r + j)] =
                  in[uz(((b * C * r * r + c * r * r + i * r + j) * H + h) * W + w)];
  return y;
}

struct Pool {
  int64_t kh, kw, sh = 0, sw = 0, ph = 0, pw = 0, dh = 1, dw = 1; // stride 0: the kernel size
  int64_t strideH() const { return sh > 0 ? sh : kh; }
  int64_t strideW() const { return sw > 0 ? sw : kw; }
  int64_t outH(int64_t H) const { return (H + 2 * ph - dh * (kh - 1) - 1) / strideH() + 1; }
  int64_t outW(int64_t W) const { return (W + 2 * pw - dw * (kw - 1) - 1) / strideW() + 1; }
};

inline Settings poolSettings(const Pool &p, bool withDilation) {
  Settings s = {{"kernel_size", pair(p.kh, p.kw)}};
  if (p.sh != 0 || p.sw != 0)
    s["stride"] = pair(p.sh, p.sw);
  if (p.ph != 0 || p.pw != 0)
    s["padding"] = pair(p.ph, p.pw);
  if (withDilation && (p.dh != 1 || p.dw != 1))
    s["dilation"] = pair(p.dh, p.dw);
  return s;
}

// Max pooling (padding is -inf) or average pooling (padding counts as zeros in kh*kw).
inline std::vector<double> poolRef(const std::vector<double> &x, const Pool &p, bool max, int64_t BC, int64_t H,
                            int64_t W) {
  int64_t Ho = p.outH(H), Wo = p.outW(W);
  std::vector<double> y(uz(BC * Ho * Wo));
  for (int64_t n = 0; n < BC; ++n)
    for (int64_t h = 0; h < Ho; ++h)
      for (int64_t q = 0; q < Wo; ++q) {
        double acc = max ? -INFINITY : 0.0;
        for (int64_t i = 0; i < p.kh; ++i)
          for (int64_t j = 0; j < p.kw; ++j) {
            int64_t ih = h * p.strideH() + i * p.dh - p.ph, iw = q * p.strideW() + j * p.dw - p.pw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W)
              continue;
            double v = x[uz((n * H + ih) * W + iw)];
            acc = max ? std::max(acc, v) : acc + v;
          }
        y[uz((n * Ho + h) * Wo + q)] = max ? acc : acc / static_cast<double>(p.kh * p.kw);
      }
  return y;
}

struct BatchNorm {
  double eps = 1e-5, slope = 0.01;
  bool leaky = false;
};

// y = (x - mu) / sqrt(var + eps) * weight + bias over X[B, C, L]; batch mean and biased variance in
// training, the running statistics in eval; then leaky_relu if asked.
inline std::vector<double> batchNormRef(const Vals &v, const BatchNorm &bn, bool training, int64_t B, int64_t C,
                                 int64_t L) {
  const auto &x = v.at("X");
  std::vector<double> y(x.size());
  for (int64_t c = 0; c < C; ++c) {
    double mu = v.at("running_mean")[uz(c)], var = v.at("running_var")[uz(c)];
    if (training) {
      double n = static_cast<double>(B * L), s = 0, s2 = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t l = 0; l < L; ++l)
          s += x[uz((b * C + c) * L + l)];
      mu = s / n;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t l = 0; l < L; ++l)
          s2 += (x[uz((b * C + c) * L + l)] - mu) * (x[uz((b * C + c) * L + l)] - mu);
      var = s2 / n;
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l) {
        size_t i = uz((b * C + c) * L + l);
        double z = (x[i] - mu) / std::sqrt(var + bn.eps) * v.at("weight")[uz(c)] + v.at("bias")[uz(c)];
        y[i] = bn.leaky && z <= 0 ? bn.slope * z : z;
      }
  }
  return y;
}

// ---- the harness ----------------------------------------------------------------------------------------

// One layer configuration with inputs, parameter values and a reference for its only output.
struct Case {
  std::string layer;
  Settings settings;
  bool training = true;
  Tensors inputs;               // f64
  Tensors state;                // f64 values replacing the initial parameters and buffers
  std::set<std::string> noGrad; // inputs without a gradient to check (class indices)
  Shape outShape;
  std::function<std::vector<double>(const Vals &)> ref; // from inputs, parameters and buffers by name
  bool gradCheck = true; // false: forward only (larger cases, where compiling the backward costs)
};

// The buffers of the shipped layers: state, not learnt, so without a gradient.
inline const std::set<std::string> kBuffers = {"running_mean", "running_var", "G"};

inline std::string describe(const Case &c) {
  std::string s = c.layer + " {" + settingsString(c.settings) + "}";
  for (const auto &[n, t] : c.inputs)
    s += " " + n + shapeString(t.shape());
  return s + (c.training ? " training" : " eval");
}

inline std::unique_ptr<Layer> makeLayer(const Case &c, DType dtype, const Tensors &state) {
  auto layer = std::make_unique<Layer>(lib(), c.layer, c.settings, LayerOptions{dtype, 5, c.training, true});
  for (const auto &[n, t] : state)
    layer->setParam(n, t);
  return layer;
}

inline Tensors converted(const Tensors &ts, DType dtype) {
  Tensors out;
  for (const auto &[n, t] : ts)
    out[n] = t.to(dtype).clone();
  return out;
}

inline Vals valsOf(const Tensors &a, const Tensors &b) {
  Vals v;
  for (const Tensors *m : {&a, &b})
    for (const auto &[n, t] : *m)
      v[n] = values(t);
  return v;
}

inline Tensor onlyOutput(const std::map<std::string, Tensor> &outputs) {
  EXPECT_EQ(outputs.size(), 1u);
  return outputs.empty() ? Tensor() : outputs.begin()->second;
}

inline void checkForward(const Case &c) {
  SCOPED_TRACE(describe(c));
  for (DType dtype : {DType::F64, DType::F32}) {
    SCOPED_TRACE(dtypeName(dtype));
    try {
      auto layer = makeLayer(c, dtype, c.state);
      Tensors inputs = converted(c.inputs, dtype);
      Vals v = valsOf(inputs, layer->params()); // before the pass: training updates the buffers
      Tensor y = onlyOutput(layer->forward(inputs));
      ASSERT_TRUE(y.defined());
      EXPECT_EQ(y.dtype(), dtype);
      ASSERT_EQ(shapeString(y.shape()), shapeString(c.outShape));
      EXPECT_LE(relError(y, c.ref(v)), forwardTolerance(dtype));
    } catch (const Error &e) {
      ADD_FAILURE() << "threw: " << e.what();
    }
  }
}

// Up to `count` distinct flat indices, always the first and the last (borders of padded windows). The
// passes run on cached kernels, so more than a handful cost little; compiling is what takes the time.
inline std::vector<int64_t> sampleIndices(int64_t n, Gen &gen, int64_t count = 12) {
  std::vector<int64_t> out;
  if (n <= count) {
    for (int64_t i = 0; i < n; ++i)
      out.push_back(i);
    return out;
  }
  std::set<int64_t> picked = {0, n - 1};
  while (static_cast<int64_t>(picked.size()) < count)
    picked.insert(gen.index(n));
  return {picked.begin(), picked.end()};
}

constexpr double kStep = 1e-6;
constexpr double kGradTolerance = 1e-6;    // |num - ana| / max(1, |num|), f64
constexpr double kF32GradTolerance = 1e-3; // f32 backward against the f64 one

inline void checkGrad(const Case &c, Gen &gen) {
  SCOPED_TRACE(describe(c));
  try {
    auto ana = makeLayer(c, DType::F64, c.state);
    Tensors state0 = converted(ana->params(), DType::F64); // params and buffers before any pass
    ASSERT_EQ(ana->outputNames().size(), 1u);
    std::string out = ana->outputNames()[0];
    ana->forward(c.inputs);
    Tensor g = randomTensor(c.outShape, gen);
    std::map<std::string, Tensor> grads = ana->backward({{out, g}});

    // The finite differences run through their own instance, its state reset before every pass.
    auto fd = makeLayer(c, DType::F64, state0);
    auto loss = [&](const Tensors &inputs, const Tensors &state) {
      for (const auto &[n, t] : state)
        fd->setParam(n, t);
      Tensor y = fd->forward(inputs).at(out);
      double l = 0;
      for (int64_t i = 0; i < y.numel(); ++i)
        l += y.at(i) * g.at(i);
      return l;
    };

    // What to check: every input but the class indices, every parameter but the buffers.
    std::vector<std::pair<std::string, bool>> wrt; // name, is an input
    for (const auto &[n, _] : c.inputs)
      if (!c.noGrad.count(n))
        wrt.push_back({n, true});
    for (const auto &[n, _] : state0)
      if (!kBuffers.count(n))
        wrt.push_back({n, false});

    for (const auto &[name, isInput] : wrt) {
      SCOPED_TRACE("d/d" + name);
      const Tensor &value = isInput ? c.inputs.at(name) : state0.at(name);
      auto found = grads.find(name);
      ASSERT_NE(found, grads.end()) << "backward returned no gradient";
      const Tensor &ga = found->second;
      ASSERT_EQ(shapeString(ga.shape()), shapeString(value.shape()));
      for (int64_t idx : sampleIndices(value.numel(), gen)) {
        double lv[2], xv[2];
        for (int side = 0; side < 2; ++side) {
          Tensors inputs = c.inputs, state = state0;
          Tensor p = value.clone();
          p.set(idx, value.at(idx) + (side ? -kStep : kStep));
          xv[side] = p.at(idx);
          (isInput ? inputs : state)[name] = p;
          lv[side] = loss(inputs, state);
        }
        double num = (lv[0] - lv[1]) / (xv[0] - xv[1]), a = ga.at(idx);
        EXPECT_LE(std::abs(num - a) / std::max(1.0, std::abs(num)), kGradTolerance)
            << name << "[" << idx << "] numeric " << num << " analytic " << a;
      }
    }

    // The same backward in f32, from the same (rounded) values, against the f64 analytic gradient.
    auto l32 = makeLayer(c, DType::F32, state0);
    l32->forward(converted(c.inputs, DType::F32));
    std::map<std::string, Tensor> grads32 = l32->backward({{out, g.to(DType::F32)}});
    for (const auto &[name, _] : wrt) {
      auto found = grads32.find(name);
      ASSERT_NE(found, grads32.end()) << "f32 backward returned no gradient of " << name;
      EXPECT_EQ(found->second.dtype(), DType::F32);
      ASSERT_EQ(found->second.numel(), grads.at(name).numel());
      EXPECT_LE(relError(found->second, values(grads.at(name))), kF32GradTolerance) << "f32 d/d" << name;
    }
  } catch (const Error &e) {
    ADD_FAILURE() << "threw: " << e.what();
  }
}

inline void checkAll(const std::vector<Case> &cases, bool grad, Gen &gen) {
  for (const Case &c : cases) {
    if (!grad)
      checkForward(c);
    else if (c.gradCheck)
      checkGrad(c, gen);
  }
}

// ---- cases, per layer -----------------------------------------------------------------------------------

inline std::vector<Case> encodingCases(Gen &gen) {
  std::vector<Case> cases;
  // [2, 3, 6] and [2, 3, 2, 3] bind the same sizes (N = 6), so they share compiled kernels.
  for (Shape x : {Shape{2, 3, 6}, Shape{2, 3, 2, 3}, Shape{1, 4, 1}, Shape{3, 8, 40}}) {
    int64_t B = x[0], D = x[1], N = numelFrom(x, 2), K = x[1] == 8 ? 6 : 4;
    Case c{"Encoding", {{"D", std::to_string(D)}, {"K", std::to_string(K)}}};
    c.inputs = {{"X", randomTensor(x, gen)}};
    // Wider than the init, so the soft assignment is far from uniform.
    c.state = {{"codewords", randomTensor({K, D}, gen)}, {"scale", randomTensor({K}, gen, -1.5, -0.1)}};
    c.outShape = {B, K, D};
    c.ref = [=](const Vals &v) { return encodingRef(v, B, D, N, K); };
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<Case> gramCases(Gen &gen) {
  std::vector<Case> cases;
  for (Shape x : {Shape{2, 3, 4, 5}, Shape{1, 1, 3, 1}, Shape{2, 16, 17, 9}}) {
    Case c{"GramMatrix"};
    c.inputs = {{"X", randomTensor(x, gen)}};
    c.outShape = {x[0], x[1], x[1]};
    c.ref = [=](const Vals &v) { return gramRef(v.at("X"), x[0], x[1], x[2] * x[3]); };
    c.gradCheck = x[1] < 16;
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<Case> activationCases(const std::string &layer, Gen &gen) {
  std::vector<Case> cases;
  std::vector<std::pair<Settings, double>> slopes = {{{}, layer == "ReLU" ? 0.0 : 0.01}};
  if (layer == "LeakyReLU")
    slopes.push_back({{{"negative_slope", "0.2"}}, 0.2});
  for (const auto &[settings, slope] : slopes)
    for (Shape x : {Shape{7}, Shape{3, 5}, Shape{2, 3, 4}, Shape{2, 1, 3, 5}, Shape{1, 2, 3, 2, 2},
                    Shape{5, 7, 33, 9}}) {
      Case c{layer, settings};
      c.inputs = {{"X", awayFromZero(x, gen)}};
      c.outShape = x;
      c.ref = [slope = slope](const Vals &v) { return testing::leakyReluRef(v.at("X"), slope); };
      c.gradCheck = x.size() < 4 || x[3] < 9;
      cases.push_back(c);
    }
  return cases;
}

inline std::vector<Case> softmaxCases(Gen &gen) {
  std::vector<Case> cases;
  // Ranks 3 to 5 collapse to the same [B, C, L] (L = 4): one compile, three shapes.
  for (Shape x : {Shape{4, 5}, Shape{2, 3, 4}, Shape{2, 3, 2, 2}, Shape{2, 3, 1, 2, 2}, Shape{4, 33, 65}}) {
    Case c{"Softmax"};
    c.inputs = {{"X", randomTensor(x, gen, -3, 3)}};
    c.outShape = x;
    c.ref = [=](const Vals &v) { return testing::softmaxRef(v.at("X"), x[0], x[1], numelFrom(x, 2)); };
    c.gradCheck = x[1] < 33;
    cases.push_back(c);
  }
  return cases;
}

// Inputs spread per channel (offset and scale), and weight/bias that put outputs on both sides of zero.
inline Case batchNormCase(const std::string &layer, Settings settings, const BatchNorm &bn, bool training,
                   const Shape &x, Gen &gen) {
  int64_t B = x[0], C = x[1], L = numelFrom(x, 2);
  Case c{layer, std::move(settings), training};
  c.settings["num_features"] = std::to_string(C);
  Tensor t(DType::F64, x);
  std::vector<double> offset(uz(C)), spread(uz(C));
  for (int64_t ch = 0; ch < C; ++ch) {
    offset[uz(ch)] = gen.uniform(-2, 2);
    spread[uz(ch)] = gen.uniform(0.5, 2);
  }
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t ch = i / L % C;
    t.set(i, offset[uz(ch)] + spread[uz(ch)] * gen.uniform(-1, 1));
  }
  c.inputs = {{"X", t}};
  Tensor rm(DType::F64, {C}), rv(DType::F64, {C});
  for (int64_t ch = 0; ch < C; ++ch) {
    // Running statistics near the batch's, so eval outputs also straddle zero.
    rm.set(ch, offset[uz(ch)] + gen.uniform(-0.3, 0.3));
    rv.set(ch, spread[uz(ch)] * spread[uz(ch)] / 3 * gen.uniform(0.5, 2));
  }
  c.state = {{"weight", randomTensor({C}, gen, 0.5, 1.5)},
             {"bias", randomTensor({C}, gen, -0.3, 0.3)},
             {"running_mean", rm},
             {"running_var", rv}};
  c.outShape = x;
  c.ref = [=](const Vals &v) { return batchNormRef(v, bn, training, B, C, L); };
  if (bn.leaky) { // both branches of the activation are exercised
    std::vector<double> y = c.ref(valsOf(c.inputs, c.state));
    EXPECT_TRUE(std::any_of(y.begin(), y.end(), [](double v) { return v < 0; })) << describe(c);
    EXPECT_TRUE(std::any_of(y.begin(), y.end(), [](double v) { return v > 0; })) << describe(c);
  }
  return c;
}

inline std::vector<Case> syncBatchNormCases(Gen &gen) {
  std::vector<Case> cases;
  // Ranks 3 to 5 collapse to the same [B, C, L] = [2, 3, 6], so they share compiled kernels.
  std::vector<Shape> shapes = {{6, 3}, {2, 3, 6}, {2, 3, 2, 3}, {2, 3, 1, 2, 3}};
  for (bool training : {true, false})
    for (const Shape &x : shapes) {
      cases.push_back(batchNormCase("SyncBatchNorm", {}, BatchNorm{}, training, x, gen));
      BatchNorm leaky{1e-5, 0.2, true};
      cases.push_back(batchNormCase("SyncBatchNorm", {{"activation", "leaky_relu"}, {"slope", "0.2"}}, leaky,
                                    training, x, gen));
    }
  // eps, sync = false and inplace = false change nothing within one process.
  cases.push_back(batchNormCase("SyncBatchNorm", {{"eps", "0.01"}, {"sync", "false"}}, BatchNorm{0.01}, true,
                                {4, 3, 5}, gen));
  cases.push_back(batchNormCase("SyncBatchNorm",
                                {{"activation", "leaky_relu"}, {"inplace", "false"}, {"momentum", "0.5"}},
                                BatchNorm{1e-5, 0.01, true}, true, {3, 2, 2, 2}, gen));
  // Larger: threads and vector loops (the eval one forward only).
  cases.push_back(batchNormCase("SyncBatchNorm", {{"activation", "leaky_relu"}}, BatchNorm{1e-5, 0.01, true},
                                true, {8, 16, 17, 9}, gen));
  cases.push_back(batchNormCase("SyncBatchNorm", {}, BatchNorm{}, false, {8, 16, 17, 9}, gen));
  cases.back().gradCheck = false;
  return cases;
}

inline std::vector<Case> distSyncBatchNormCases(Gen &gen) {
  std::vector<Case> cases;
  for (bool training : {true, false})
    for (const Shape &x : {Shape{6, 3}, Shape{2, 3, 6}, Shape{2, 3, 2, 3}, Shape{2, 3, 1, 2, 3}})
      cases.push_back(batchNormCase("DistSyncBatchNorm", {}, BatchNorm{}, training, x, gen));
  cases.push_back(batchNormCase("DistSyncBatchNorm", {{"eps", "0.1"}, {"momentum", "0.2"}}, BatchNorm{0.1},
                                true, {3, 2, 4}, gen));
  return cases;
}

inline std::vector<Case> batchNormAliasCases(Gen &gen) {
  std::vector<Case> cases;
  BatchNorm leaky{1e-5, 0.2, true};
  Settings act = {{"activation", "leaky_relu"}, {"slope", "0.2"}};
  for (bool training : {true, false}) {
    cases.push_back(batchNormCase("BatchNorm1d", {}, BatchNorm{}, training, {6, 3}, gen));
    cases.push_back(batchNormCase("BatchNorm1d", act, leaky, training, {2, 3, 6}, gen));
    cases.push_back(batchNormCase("BatchNorm2d", act, leaky, training, {2, 3, 2, 3}, gen));
    cases.push_back(batchNormCase("BatchNorm3d", {}, BatchNorm{}, training, {2, 3, 1, 2, 3}, gen));
  }
  return cases;
}

inline Case convCase(const Conv &cv, const Shape &x, Gen &gen, bool gradCheck = true) {
  int64_t B = x[0], H = x[2], W = x[3];
  Case c{"Conv2d", convSettings(cv, cv.cout)};
  c.inputs = {{"X", randomTensor(x, gen)}};
  c.state = {{"weight", randomTensor({cv.cout, cv.cin / cv.groups, cv.kh, cv.kw}, gen, -0.5, 0.5)}};
  if (cv.bias)
    c.state["bias"] = randomTensor({cv.cout}, gen, -0.5, 0.5);
  c.outShape = {B, cv.cout, cv.outH(H), cv.outW(W)};
  c.ref = [=](const Vals &v) { return convRef(v, cv, B, H, W); };
  c.gradCheck = gradCheck;
  return c;
}

inline std::vector<Case> conv2dCases(Gen &gen) {
  std::vector<Case> cases;
  Conv plain{3, 4, 3, 3};
  cases.push_back(convCase(plain, {2, 3, 6, 5}, gen));
  Conv rect{3, 4, 2, 3}; // (kh, kw) kernel
  cases.push_back(convCase(rect, {2, 3, 5, 6}, gen));
  Conv oneByOne{4, 2, 1, 1};
  oneByOne.bias = false;
  cases.push_back(convCase(oneByOne, {2, 4, 3, 3}, gen));
  Conv strided{3, 2, 3, 3, 2, 1, 1, 2, 1, 2}; // stride (2, 1), padding (1, 2), dilation (1, 2)
  cases.push_back(convCase(strided, {2, 3, 7, 6}, gen));
  Conv grouped{4, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2}; // groups 2, padding 1
  grouped.bias = false;
  cases.push_back(convCase(grouped, {2, 4, 5, 4}, gen));
  Conv depthwise{4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 4}; // depthwise, stride 2, padding 1
  cases.push_back(convCase(depthwise, {2, 4, 6, 7}, gen));
  Conv multiplier{3, 6, 3, 2, 1, 1, 0, 1, 1, 1, 3}; // depthwise with channel multiplier 2
  multiplier.bias = false;
  cases.push_back(convCase(multiplier, {1, 3, 5, 5}, gen));
  Conv everything{4, 6, 3, 2, 2, 1,
                  1, 2, 2, 1, 2}; // (3, 2), stride (2, 1), pad (1, 2), dilation (2, 1), groups 2
  everything.bias = false;
  cases.push_back(convCase(everything, {2, 4, 7, 5}, gen));
  // Stride larger than the kernel: input pixels no window reads get a zero gradient.
  cases.push_back(convCase(Conv{3, 2, 1, 1, 2, 2}, {1, 3, 5, 5}, gen));
  cases.push_back(
      convCase(Conv{2, 2, 2, 2, 3, 3, 1, 1, 2, 2}, {1, 2, 7, 8}, gen)); // stride 3, dilation 2, pad 1
  // Kernel exactly the padded input: a 1x1 output.
  cases.push_back(convCase(Conv{2, 3, 5, 4, 1, 1, 1, 1}, {2, 2, 3, 2}, gen));
  // Larger: threads and vector loops (the second forward only).
  cases.push_back(convCase(Conv{8, 12, 3, 3, 2, 1, 1, 1, 1, 1, 2}, {3, 8, 17, 19}, gen));
  cases.push_back(convCase(Conv{16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16}, {2, 16, 20, 33}, gen, false));
  return cases;
}

inline Case upsampleCase(const Conv &cv, int64_t r, const Shape &x, Gen &gen, bool gradCheck = true) {
  int64_t B = x[0], H = x[2], W = x[3], out = cv.cout / (r * r), Ho = cv.outH(H), Wo = cv.outW(W);
  Settings s = convSettings(cv, out);
  if (r != 1)
    s["scale_factor"] = std::to_string(r);
  Case c{"UpsampleConv2d", s};
  c.inputs = {{"X", randomTensor(x, gen)}};
  c.state = {{"weight", randomTensor({cv.cout, cv.cin / cv.groups, cv.kh, cv.kw}, gen, -0.5, 0.5)}};
  if (cv.bias)
    c.state["bias"] = randomTensor({cv.cout}, gen, -0.5, 0.5);
  c.outShape = {B, out, r * Ho, r * Wo};
  c.ref = [=](const Vals &v) { return pixelShuffle(convRef(v, cv, B, H, W), B, out, Ho, Wo, r); };
  c.gradCheck = gradCheck;
  return c;
}

inline std::vector<Case> upsampleConv2dCases(Gen &gen) {
  // Conv.cout is the convolution's channel count, out_channels * r^2.
  std::vector<Case> cases;
  cases.push_back(upsampleCase(Conv{3, 2, 3, 3}, 1, {2, 3, 5, 4}, gen));
  cases.push_back(upsampleCase(Conv{3, 2 * 4, 3, 3, 1, 1, 1, 1}, 2, {2, 3, 4, 3}, gen)); // padding 1
  cases.push_back(
      upsampleCase(Conv{2, 2 * 9, 3, 3, 2, 2, 1, 1}, 3, {1, 2, 5, 4}, gen)); // stride 2, padding 1
  cases.push_back(
      upsampleCase(Conv{4, 3 * 4, 3, 1, 1, 1, 1, 0, 1, 1, 2}, 2, {2, 4, 3, 3}, gen)); // (3,1), groups 2
  Conv noBias{2, 1 * 4, 3, 1, 2, 2, 0, 0};
  noBias.bias = false;
  cases.push_back(upsampleCase(noBias, 2, {2, 2, 5, 3}, gen)); // (3,1), stride 2, no bias
  // groups 4 divides out_channels * r^2 = 8 but not out_channels = 2.
  cases.push_back(upsampleCase(Conv{4, 2 * 4, 2, 2, 1, 1, 0, 0, 1, 1, 4}, 2, {1, 4, 3, 3}, gen));
  cases.push_back(
      upsampleCase(Conv{3, 2 * 4, 3, 3, 1, 1, 1, 2, 2, 1}, 2, {1, 3, 5, 4}, gen));         // dilation (2, 1)
  cases.push_back(upsampleCase(Conv{8, 4 * 4, 3, 3, 1, 1, 1, 1}, 2, {2, 8, 16, 15}, gen)); // larger
  return cases;
}

inline std::vector<Case> linearCases(Gen &gen) {
  std::vector<Case> cases;
  for (bool bias : {true, false})
    for (auto [B, in, out] :
         {std::tuple<int64_t, int64_t, int64_t>{4, 5, 3}, {1, 1, 1}, {3, 7, 8}, {64, 100, 33}}) {
      Case c{"Linear", {{"in_features", std::to_string(in)}, {"out_features", std::to_string(out)}}};
      if (!bias)
        c.settings["bias"] = "false";
      c.inputs = {{"X", randomTensor({B, in}, gen)}};
      c.state = {{"weight", randomTensor({out, in}, gen)}};
      if (bias)
        c.state["bias"] = randomTensor({out}, gen);
      c.outShape = {B, out};
      c.ref = [=](const Vals &v) {
        std::vector<double> y(uz(B * out));
        for (int64_t b = 0; b < B; ++b)
          for (int64_t o = 0; o < out; ++o) {
            double acc = bias ? v.at("bias")[uz(o)] : 0.0;
            for (int64_t i = 0; i < in; ++i)
              acc += v.at("X")[uz(b * in + i)] * v.at("weight")[uz(o * in + i)];
            y[uz(b * out + o)] = acc;
          }
        return y;
      };
      c.gradCheck = B < 64;
      cases.push_back(c);
    }
  return cases;
}

inline Case poolCase(const std::string &layer, const Pool &p, const Shape &x, Gen &gen, bool gradCheck = true) {
  bool max = layer == "MaxPool2d";
  Case c{layer, poolSettings(p, max)};
  c.inputs = {{"X", randomTensor(x, gen)}};
  c.outShape = {x[0], x[1], p.outH(x[2]), p.outW(x[3])};
  c.ref = [=](const Vals &v) { return poolRef(v.at("X"), p, max, x[0] * x[1], x[2], x[3]); };
  c.gradCheck = gradCheck;
  return c;
}

inline std::vector<Case> poolCases(const std::string &layer, Gen &gen) {
  bool max = layer == "MaxPool2d";
  std::vector<Case> cases;
  cases.push_back(poolCase(layer, Pool{2, 2}, {2, 3, 6, 5}, gen));             // default stride: the kernel
  cases.push_back(poolCase(layer, Pool{3, 2}, {1, 2, 7, 6}, gen));             // (kh, kw), default stride
  cases.push_back(poolCase(layer, Pool{3, 3, 2, 2, 1, 1}, {2, 2, 6, 7}, gen)); // stride 2, padding 1
  cases.push_back(poolCase(layer, Pool{2, 3, 1, 2, 1, 1}, {1, 3, 4, 7}, gen)); // explicit stride (1, 2)
  cases.push_back(
      poolCase(layer, Pool{3, 2, 2, 1, 1, 0}, {2, 1, 7, 4}, gen)); // stride (2, 1), padding (1, 0)
  if (max) {
    cases.push_back(poolCase(layer, Pool{3, 2, 1, 1, 1, 1, 2, 1}, {1, 2, 7, 5}, gen)); // dilation (2, 1)
    cases.push_back(
        poolCase(layer, Pool{2, 2, 1, 1, 1, 1, 2, 2}, {2, 1, 5, 5}, gen)); // dilation 2, padding 1
  }
  cases.push_back(poolCase(layer, Pool{3, 3, 2, 2, 1, 1}, {4, 16, 33, 31}, gen, max)); // larger
  return cases;
}

inline std::vector<Case> globalAvgPoolCases(Gen &gen) {
  std::vector<Case> cases;
  for (Shape x : {Shape{2, 3, 4, 5}, Shape{1, 1, 1, 1}, Shape{3, 2, 1, 6}, Shape{4, 32, 17, 15}}) {
    Case c{"GlobalAvgPool2d"};
    c.inputs = {{"X", randomTensor(x, gen)}};
    c.outShape = {x[0], x[1]};
    c.ref = [=](const Vals &v) {
      std::vector<double> y(uz(x[0] * x[1]), 0.0);
      for (int64_t i = 0; i < x[0] * x[1]; ++i) {
        for (int64_t p = 0; p < x[2] * x[3]; ++p)
          y[uz(i)] += v.at("X")[uz(i * x[2] * x[3] + p)];
        y[uz(i)] /= static_cast<double>(x[2] * x[3]);
      }
      return y;
    };
    c.gradCheck = x[1] < 32;
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<Case> flattenCases(Gen &gen) {
  std::vector<Case> cases;
  for (Shape x : {Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 2, 2}, Shape{2, 1, 2, 3, 2}}) {
    Case c{"Flatten"};
    c.inputs = {{"X", randomTensor(x, gen)}};
    c.outShape = {x[0], numelFrom(x, 1)};
    c.ref = [](const Vals &v) { return v.at("X"); }; // C order: flattening keeps the memory
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<Case> l2NormalizeCases(Gen &gen) {
  std::vector<Case> cases;
  // Ranks 3 to 5 collapse to [B, C, L] = [2, 3, 4], sharing kernels; [2, 3, 4, 1] has a zero column.
  for (Shape x : {Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 2, 2}, Shape{2, 3, 1, 2, 2}, Shape{2, 3, 4, 1}}) {
    for (double eps : {1e-12, 0.5}) {
      if (eps != 1e-12 && x.size() > 3)
        continue;
      Case c{"L2Normalize"};
      if (eps != 1e-12)
        c.settings["eps"] = "0.5"; // some column norms fall below it
      Tensor t = randomTensor(x, gen);
      if (eps == 1e-12 && x.size() == 4 && x[3] == 1) // a zero column: 0 / eps, not NaN (forward only)
        for (int64_t ch = 0; ch < x[1]; ++ch)
          t.set(ch * x[2], 0.0);
      c.inputs = {{"X", t}};
      c.outShape = x;
      int64_t B = x[0], C = x[1], L = numelFrom(x, 2);
      c.ref = [=](const Vals &v) {
        const auto &xs = v.at("X");
        std::vector<double> y(xs.size());
        for (int64_t b = 0; b < B; ++b)
          for (int64_t l = 0; l < L; ++l) {
            double s = 0;
            for (int64_t ch = 0; ch < C; ++ch)
              s += xs[uz((b * C + ch) * L + l)] * xs[uz((b * C + ch) * L + l)];
            double norm = std::max(std::sqrt(s), eps);
            for (int64_t ch = 0; ch < C; ++ch)
              y[uz((b * C + ch) * L + l)] = xs[uz((b * C + ch) * L + l)] / norm;
          }
        return y;
      };
      c.gradCheck = !(eps == 1e-12 && x.size() == 4 && x[3] == 1);
      cases.push_back(c);
    }
  }
  return cases;
}

inline std::vector<Case> reduceCases(const std::string &layer, Gen &gen) {
  bool mean = layer == "Mean";
  std::vector<Case> cases;
  for (Shape x : {Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 2, 2}, Shape{2, 3, 1, 2, 2}, Shape{4, 64, 129}}) {
    Case c{layer};
    c.inputs = {{"X", randomTensor(x, gen)}};
    Shape out = {x[0]};
    out.insert(out.end(), x.begin() + 2, x.end());
    c.outShape = out;
    int64_t B = x[0], C = x[1], L = numelFrom(x, 2);
    c.ref = [=](const Vals &v) {
      std::vector<double> y(uz(B * L), 0.0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t l = 0; l < L; ++l) {
          for (int64_t ch = 0; ch < C; ++ch)
            y[uz(b * L + l)] += v.at("X")[uz((b * C + ch) * L + l)];
          if (mean)
            y[uz(b * L + l)] /= static_cast<double>(C);
        }
      return y;
    };
    c.gradCheck = C < 64;
    cases.push_back(c);
  }
  return cases;
}

inline std::vector<Case> crossEntropyCases(Gen &gen) {
  std::vector<Case> cases;
  // Class indices as numbers; targets equal to ignore_index (torch's default -100, or a class)
  // count for nothing, and the mean is over the others.
  struct Set {
    Shape x;
    std::vector<double> t;
    int64_t ignore = -100;
  };
  for (const Set &set : {Set{{5, 4}, {0, 3, 1, 2, 3}}, Set{{1, 1}, {0}}, Set{{5, 4}, {2, -100, 0, 1, -100}},
                         Set{{4, 3}, {2, 1, 2, 0}, 2}}) {
    Case c{"CrossEntropyLoss"};
    if (set.ignore != -100)
      c.settings["ignore_index"] = std::to_string(set.ignore);
    Tensor T(DType::F64, {set.x[0]});
    for (size_t i = 0; i < set.t.size(); ++i)
      T.set(static_cast<int64_t>(i), set.t[i]);
    c.inputs = {{"X", randomTensor(set.x, gen, -3, 3)}, {"T", T}};
    c.noGrad = {"T"};
    c.outShape = {};
    int64_t B = set.x[0], C = set.x[1], ignore = set.ignore;
    c.ref = [=](const Vals &v) {
      double total = 0, counted = 0;
      for (int64_t b = 0; b < B; ++b) {
        auto cls = static_cast<int64_t>(v.at("T")[uz(b)]);
        if (cls == ignore)
          continue;
        double mx = -INFINITY, s = 0;
        for (int64_t k = 0; k < C; ++k)
          mx = std::max(mx, v.at("X")[uz(b * C + k)]);
        for (int64_t k = 0; k < C; ++k)
          s += std::exp(v.at("X")[uz(b * C + k)] - mx);
        total += mx + std::log(s) - v.at("X")[uz(b * C + cls)];
        counted += 1;
      }
      return std::vector<double>{total / counted};
    };
    cases.push_back(c);
  }
  return cases;
}

// Y[n, c, hw] = sum_k P[t, k, c] X[n, k, hw] with P[t] = weight[0] G[t], t = 0 for one target, n for N.
inline std::vector<Case> inspirationCases(Gen &gen) {
  std::vector<Case> cases;
  for (auto [C, targets, x] : {std::tuple<int64_t, int64_t, Shape>{3, 1, {2, 3, 4, 5}},
                               {3, 2, {2, 3, 3, 4}},
                               {4, 3, {3, 4, 2, 2}},
                               {16, 1, {4, 16, 9, 11}}}) {
    Case c{"Inspiration", {{"C", std::to_string(C)}}};
    if (targets != 1)
      c.settings["B"] = std::to_string(targets);
    c.inputs = {{"X", randomTensor(x, gen)}};
    c.state = {{"weight", randomTensor({1, C, C}, gen)}, {"G", randomTensor({targets, C, C}, gen)}};
    c.outShape = x;
    int64_t N = x[0], HW = x[2] * x[3], T = targets;
    c.ref = [=](const Vals &v) {
      const auto &w = v.at("weight"), &G = v.at("G"), &X = v.at("X");
      std::vector<double> P(uz(T * C * C), 0.0), y(X.size(), 0.0);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < C; ++i)
          for (int64_t j = 0; j < C; ++j)
            for (int64_t k = 0; k < C; ++k)
              P[uz((t * C + i) * C + j)] += w[uz(i * C + k)] * G[uz((t * C + k) * C + j)];
      for (int64_t n = 0; n < N; ++n) {
        int64_t t = T == 1 ? 0 : n;
        for (int64_t ch = 0; ch < C; ++ch)
          for (int64_t p = 0; p < HW; ++p)
            for (int64_t k = 0; k < C; ++k)
              y[uz((n * C + ch) * HW + p)] += P[uz((t * C + k) * C + ch)] * X[uz((n * C + k) * HW + p)];
      }
      return y;
    };
    c.gradCheck = C < 16;
    cases.push_back(c);
  }
  return cases;
}

// One test of `Suite` running the cases `makeCases` (of `gen`, seeded with `seed`) forward only
// (grad false) or with their gradients too.
#define ENC_SHIPPED_LAYER_TEST(Suite, grad, Name, makeCases, seed)                                            \
  TEST(Suite, Name) {                                                                                        \
    Gen gen(seed);                                                                                           \
    checkAll(makeCases, grad, gen);                                                                          \
  }

// Every shipped layer's cases with their seed: X(Name, cases, seed) once per layer, for the
// LayerForward and LayerGrad suites (`gen` is the generator the test seeds).
#define ENC_SHIPPED_LAYER_CASES(X) \
  X(Encoding, encodingCases(gen), 101) \
  X(GramMatrix, gramCases(gen), 102) \
  X(LeakyReLU, activationCases("LeakyReLU", gen), 103) \
  X(ReLU, activationCases("ReLU", gen), 104) \
  X(Softmax, softmaxCases(gen), 105) \
  X(SyncBatchNorm, syncBatchNormCases(gen), 106) \
  X(DistSyncBatchNorm, distSyncBatchNormCases(gen), 107) \
  X(BatchNormAliases, batchNormAliasCases(gen), 108) \
  X(Conv2d, conv2dCases(gen), 109) \
  X(UpsampleConv2d, upsampleConv2dCases(gen), 110) \
  X(Linear, linearCases(gen), 111) \
  X(MaxPool2d, poolCases("MaxPool2d", gen), 112) \
  X(AvgPool2d, poolCases("AvgPool2d", gen), 113) \
  X(GlobalAvgPool2d, globalAvgPoolCases(gen), 114) \
  X(Flatten, flattenCases(gen), 115) \
  X(L2Normalize, l2NormalizeCases(gen), 116) \
  X(Sum, reduceCases("Sum", gen), 117) \
  X(Mean, reduceCases("Mean", gen), 118) \
  X(CrossEntropyLoss, crossEntropyCases(gen), 119) \
  X(Inspiration, inspirationCases(gen), 120)

} // namespace enc::shipped_checks
