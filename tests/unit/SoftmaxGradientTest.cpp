// Softmax's and logsumexp's own adjoints (compiler/SoftmaxForm.h, Autodiff): the gradient of
// exp(x - max(x)) / sum(exp(x - max(x))) reads the stored probabilities, recomputes no exp and
// equals central finite differences in f64, also where the quotient sits inside a sum and
// where a hand-written softmax stands in for softmax(...); a quotient that only looks like one
// keeps the generic derivation and its gradient stays right. logsumexp's sends adj * exp(x - M) / S
// to x without a second sum.
#include "compiler/IR.h"
#include "compiler/HyperParams.h"
#include "compiler/Pipeline.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include "TensorValues.h"

#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <map>
#include <set>
#include <random>
#include <string>

namespace enc {
namespace {

const char *kLayers = R"(
layer Attend(K: int) {
  param Q[K, 4]
  forward(X: [B, 4, N], V: [B, N, 3]) -> Y: [B, K, 3] {
    S[b, k, i] = sum(d: Q[k, d] * X[b, d, i])
    Y[b, k, e] = sum(i: softmax(k: S[b, k, i]) * V[b, i, e])
  }
}
layer ByHand() {
  forward(X: [B, C]) -> Y: [B, C] {
    M[b] = max(c: X[b, c])
    S[b] = sum(c: exp(X[b, c] - M[b]))
    Y[b, c] = exp(X[b, c] - M[b]) / S[b]
  }
}
layer LogSumExp() {
  forward(X: [B, C, L]) -> Y: [B, L] {
    Y[b, l] = logsumexp(c: X[b, c, l]) * X[b, 0, l]
  }
}
layer NotLogSumExp() {
  forward(X: [B, C]) -> Y: [B] {
    M[b] = max(c: X[b, c])
    S[b] = sum(c: exp(X[b, c] - M[b]) * (X[b, c] + 2))
    Y[b] = M[b] + log(S[b])
  }
}
layer NotSoftmax() {
  forward(X: [B, C]) -> Y: [B, C] {
    M[b] = max(c: X[b, c])
    S[b] = sum(c: exp(2 * X[b, c] - M[b]))
    Y[b, c] = exp(X[b, c] - M[b]) / S[b]
  }
}
)";

bool callsExp(const ir::Program &p) {
  for (const ir::Definition &d : p.defs)
    if (ir::anyNode(d.value, [](const ir::Expr &n) { return n->kind == ir::ExprKind::Call && n->name == "exp"; }))
      return true;
  return false;
}

int definitionsOf(const ir::Program &p, const std::string &tensor) {
  int n = 0;
  for (const ir::Definition &d : p.defs) n += d.tensor == tensor;
  return n;
}

TEST(SoftmaxGradient, ReadsTheStoredProbabilities) {
  Layer softmax(Library::shipped(), "Softmax", {}, {});
  const ir::Program &g = softmax.gradientProgram();
  EXPECT_FALSE(callsExp(g)) << ir::printProgram(g);
  EXPECT_TRUE(ir::tensorsRead(g).count("Y")) << ir::printProgram(g);

  // Encoding: the logits' gradient (scale * A * (grad_A - sum(k: grad_A * A))) is one stored
  // temporary that the codeword, scale and input gradients read, not recomputed in each.
  Layer encoding(Library::shipped(), "Encoding", {{"D", "8"}, {"K", "4"}}, {});
  const ir::Program &ge = encoding.gradientProgram();
  EXPECT_FALSE(callsExp(ge)) << ir::printProgram(ge);
  EXPECT_EQ(definitionsOf(ge, "grad_A_sum1"), 1) << ir::printProgram(ge);

  auto library = Library::fromSource("softmaxes.enc", kLayers);
  EXPECT_FALSE(callsExp(Layer(library, "ByHand", {}, {}).gradientProgram()));
  // (Attend's probabilities live inside a sum and are not stored: its gradient recomputes them.)
  // Its sum exponentiates 2 x: not a softmax, so the derivation goes through M and S.
  EXPECT_TRUE(callsExp(Layer(library, "NotSoftmax", {}, {}).gradientProgram()));
}

bool sumsExp(const ir::Program &p) {
  for (const ir::Definition &d : p.defs)
    if (ir::anyNode(d.value, [](const ir::Expr &n) {
          return n->kind == ir::ExprKind::Reduce &&
                 ir::anyNode(n, [](const ir::Expr &m) { return m->kind == ir::ExprKind::Call && m->name == "exp"; });
        }))
      return true;
  return false;
}

// logsumexp's adjoint, adj * exp(x - M) / S: no second pass summing exp, no select at the max.
TEST(SoftmaxGradient, LogSumExpNeedsNoSecondSum) {
  Layer loss(Library::shipped(), "CrossEntropyLoss", {}, {});
  EXPECT_FALSE(sumsExp(loss.gradientProgram())) << ir::printProgram(loss.gradientProgram());
  auto library = Library::fromSource("softmaxes.enc", kLayers);
  EXPECT_FALSE(sumsExp(Layer(library, "LogSumExp", {}, {}).gradientProgram()));
  EXPECT_TRUE(sumsExp(Layer(library, "NotLogSumExp", {}, {}).gradientProgram()));
}

// What the forward pass keeps for the backward pass is what the fused backward pass reads:
// CrossEntropyLoss's per-row losses (read by the raw gradient of its denominator only) are not.
TEST(SoftmaxGradient, SavesOnlyWhatTheFusedGradientReads) {
  auto lib = Library::shipped();
  const LayerSymbols &layer = lib->get("CrossEntropyLoss");
  std::map<std::string, ir::Expr> hyper = resolveHyperParams(layer, {});
  hyper["training"] = ir::boolImm(true);
  const ir::Pipeline pipeline;
  const ir::Program forward = pipeline.forward(layer, hyper);
  const ir::Gradient g = pipeline.backward(layer, forward, hyper);
  const std::set<std::string> read = ir::tensorsRead(g.program);
  for (const std::string &t : g.saved) EXPECT_TRUE(read.count(t)) << t << " saved but not read";
  EXPECT_EQ(std::count(g.saved.begin(), g.saved.end(), "Loss"), 0);
  EXPECT_EQ(std::count(g.saved.begin(), g.saved.end(), "X"), 1);
}

using Tensors = std::map<std::string, Tensor>;

// Every input's and parameter's gradient of L = sum(Y * G) against central differences (f64),
// and the f32 backward pass against the f64 one.
void checkAgainstFiniteDifferences(const std::shared_ptr<const Library> &library, const std::string &name,
                                   const std::map<std::string, std::string> &settings, const Tensors &inputs,
                                   const Tensors &params, double spread) {
  SCOPED_TRACE(name);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(-1, 1);
  auto make = [&](DType dtype, const Tensors &ps) {
    auto l = std::make_unique<Layer>(library, name, settings, LayerOptions{dtype});
    for (const auto &[n, t] : ps) l->setParam(n, t.to(dtype));
    return l;
  };
  auto layer = make(DType::F64, params);
  Tensor y = layer->forward(inputs).at("Y");
  Tensor g(DType::F64, y.shape());
  for (int64_t i = 0; i < g.numel(); ++i) g.set(i, u(rng));
  std::map<std::string, Tensor> grads = layer->backward({{"Y", g}});

  auto loss = [&](const Tensors &in, const Tensors &ps) {
    Tensor out = make(DType::F64, ps)->forward(in).at("Y");
    double l = 0;
    for (int64_t i = 0; i < out.numel(); ++i) l += out.at(i) * g.at(i);
    return l;
  };
  const double h = 1e-6 * spread;
  for (bool isInput : {true, false})
    for (const auto &[n, value] : isInput ? inputs : params) {
      ASSERT_TRUE(grads.count(n)) << "no gradient of " << n;
      for (int64_t i = 0; i < value.numel(); ++i) {
        double l[2];
        for (int side = 0; side < 2; ++side) {
          Tensors in = inputs, ps = params;
          Tensor moved = value.clone();
          moved.set(i, value.at(i) + (side ? -h : h));
          (isInput ? in : ps)[n] = moved;
          l[side] = loss(in, ps);
        }
        double numeric = (l[0] - l[1]) / (2 * h), analytic = grads.at(n).at(i);
        EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << n << "[" << i << "]";
      }
    }

  auto l32 = make(DType::F32, params);
  Tensors in32;
  for (const auto &[n, t] : inputs) in32[n] = t.to(DType::F32);
  l32->forward(in32);
  std::map<std::string, Tensor> grads32 = l32->backward({{"Y", g.to(DType::F32)}});
  for (const auto &[n, t] : grads) EXPECT_LE(testing::maxRelError(testing::valuesOf(grads32.at(n)), testing::valuesOf(t)), 1e-4) << "f32 d/d" << n;
}

Tensor randomTensor(Shape shape, std::mt19937_64 &rng, double spread) {
  std::uniform_real_distribution<double> u(-spread, spread);
  Tensor t(DType::F64, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, u(rng));
  return t;
}

TEST(SoftmaxGradient, MatchesFiniteDifferences) {
  auto library = Library::fromSource("softmaxes.enc", kLayers);
  std::mt19937_64 rng(3);
  // Logits of either magnitude: around 40 exp(x) alone would overflow f32 without the shift.
  for (double spread : {1.0, 40.0}) {
    SCOPED_TRACE(spread);
    checkAgainstFiniteDifferences(library, "ByHand", {}, {{"X", randomTensor({3, 7}, rng, spread)}}, {}, spread);
    checkAgainstFiniteDifferences(library, "NotSoftmax", {}, {{"X", randomTensor({2, 5}, rng, 1.0)}}, {}, 1.0);
    checkAgainstFiniteDifferences(library, "Attend", {{"K", "5"}},
                                  {{"X", randomTensor({2, 4, 6}, rng, 1.0)}, {"V", randomTensor({2, 6, 3}, rng, 1.0)}},
                                  {{"Q", randomTensor({5, 4}, rng, spread / 2)}}, 1.0);
    checkAgainstFiniteDifferences(Library::shipped(), "Softmax", {}, {{"X", randomTensor({2, 5, 3}, rng, spread)}}, {},
                                  spread);
    checkAgainstFiniteDifferences(library, "LogSumExp", {}, {{"X", randomTensor({2, 4, 3}, rng, spread)}}, {}, spread);
    checkAgainstFiniteDifferences(library, "NotLogSumExp", {}, {{"X", randomTensor({2, 5}, rng, 1.0)}}, {}, 1.0);
  }
}

} // namespace
} // namespace enc
