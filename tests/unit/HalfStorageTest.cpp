// 16-bit storage (LayerOptions::dtype f16 / bf16): every shipped layer, forward and backward
// on the CPU, against the same layer in f64 (which LayerNumericsTest and LayerGradTest check
// against naive loops and finite differences) fed the same 16-bit inputs, and Encoding against
// the naive loops of ReferenceMath.h directly. Inputs, outputs and their gradients are 16-bit;
// parameters, buffers and parameter gradients stay f32; sums accumulate in f32 (checked to
// half a unit in the last place on a scatter and on a long contraction).
#include "LayerCases.h"
#include "ReferenceMath.h"

#include "compiler/Autodiff.h"
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "runtime/Float16.h"
#include "compiler/HyperParams.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

namespace enc {
namespace {

using namespace enc::testing;

// Relative to the largest reference magnitude: about one unit in the last place of the stored
// type (2^-10 for f16, 2^-7 for bf16). Rounding the stored result costs half of it (the worst
// seen); rounded intermediates read back (saved outputs in a backward pass) may add some.
double tolerance(DType t) { return t == DType::F16 ? 1e-3 : 8e-3; }

// Half a unit in the last place of `t` at the magnitude of v.
double halfUlp(double v, DType t) {
  int significand = t == DType::F16 ? 11 : 8;
  int minExponent = t == DType::F16 ? -14 : -126;
  int e = v == 0 ? minExponent : std::max(minExponent, std::ilogb(v));
  return std::ldexp(1.0, e - significand);
}

std::vector<double> values(const Tensor &t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) out[static_cast<size_t>(i)] = t.at(i);
  return out;
}

using Param = std::tuple<size_t, DType>;
class HalfStorage : public ::testing::TestWithParam<Param> {};

TEST_P(HalfStorage, MatchesF64OnTheSameInputs) {
  const auto [index, dtype] = GetParam();
  const LayerCase c = layerCases()[index];
  SCOPED_TRACE(describe(c) + " " + dtypeName(dtype));
  try {
    Layer narrow(lib(), c.layer, c.settings, LayerOptions{dtype, 7, c.training, true, Device::CPU});
    Layer ref(lib(), c.layer, c.settings, LayerOptions{DType::F64, 7, c.training, true, Device::CPU});
    uint64_t seed = 100;
    for (const auto &[n, p] : narrow.params()) {
      EXPECT_EQ(p.dtype(), DType::F32) << "parameter or buffer " << n << " is kept in f32";
      Tensor v = randomTensor(p.shape(), seed++);
      if (n == "running_var")
        for (int64_t i = 0; i < v.numel(); ++i) v.set(i, 0.5 + std::abs(v.at(i)));
      narrow.setParam(n, v);
      ref.setParam(n, narrow.params().at(n)); // the f32 values, exactly
    }
    // Inputs rounded to 16 bits once; the reference sees the same values.
    Tensors inputs, refInputs;
    for (const auto &[n, shape] : c.inputs) {
      inputs[n] = randomTensor(shape, seed++, c.integerInputs.count(n) > 0, 6).to(dtype);
      refInputs[n] = inputs[n].to(DType::F64);
    }
    Tensors y = narrow.forward(inputs), yr = ref.forward(refInputs);
    Tensors seeds, refSeeds;
    for (const auto &[n, want] : yr) {
      ASSERT_TRUE(y.count(n));
      EXPECT_EQ(y.at(n).dtype(), dtype) << "output " << n;
      EXPECT_LE(relError(y.at(n), want), tolerance(dtype)) << "output " << n;
      seeds[n] = randomTensor(want.shape(), seed++).to(dtype);
      refSeeds[n] = seeds[n].to(DType::F64);
    }
    // Updated buffers (running statistics) come from f32 arithmetic on exact inputs.
    for (const auto &[n, p] : ref.params()) {
      EXPECT_EQ(narrow.params().at(n).dtype(), DType::F32) << n;
      EXPECT_LE(relError(narrow.params().at(n), p), 1e-5) << "parameter or buffer " << n << " after forward";
    }
    Tensors g = narrow.backward(seeds), gr = ref.backward(refSeeds);
    for (const auto &[n, want] : gr) {
      if (c.integerInputs.count(n)) continue; // no gradient through class indices
      ASSERT_TRUE(g.count(n)) << n;
      bool isInput = c.inputs.count(n) > 0;
      EXPECT_EQ(g.at(n).dtype(), isInput ? dtype : DType::F32) << "gradient of " << n;
      EXPECT_LE(relError(g.at(n), want), tolerance(dtype)) << "gradient of " << n;
    }
  } catch (const Error &e) {
    ADD_FAILURE() << "threw: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Shipped, HalfStorage,
                         ::testing::Combine(::testing::Range<size_t>(0, layerCases().size()),
                                            ::testing::Values(DType::F16, DType::BF16)),
                         [](const ::testing::TestParamInfo<Param> &i) {
                           return layerCases()[std::get<0>(i.param)].layer + "_" + std::to_string(std::get<0>(i.param)) +
                                  "_" + dtypeName(std::get<1>(i.param));
                         });

// Encoding with bf16 inputs and output against the naive double loops.
TEST(HalfStorageReference, EncodingAgainstNaiveLoops) {
  const int64_t B = 2, D = 12, K = 6, N = 70;
  Layer enc(lib(), "Encoding", {{"D", "12"}, {"K", "6"}}, LayerOptions{DType::BF16, 3, true, true, Device::CPU});
  Tensor x = randomTensor({B, D, N}, 1).to(DType::BF16);
  std::vector<double> want = encodingRef(values(x), values(enc.params().at("codewords")),
                                         values(enc.params().at("scale")), B, D, N, K);
  Tensor e = enc.forward({{"X", x}}).at("Y");
  ASSERT_EQ(e.dtype(), DType::BF16);
  ASSERT_EQ(e.numel(), static_cast<int64_t>(want.size()));
  for (int64_t i = 0; i < e.numel(); ++i) {
    double w = want[static_cast<size_t>(i)];
    // The stored result is the f32 sum rounded once to bf16.
    EXPECT_LE(std::abs(e.at(i) - w), halfUlp(w, DType::BF16) + 1e-4 * std::abs(w) + 1e-6) << "element " << i;
  }
}

// A scatter gradient (Y[i] = X[3 i mod N]^2 over 64 N outputs, N prime to 3: each grad_X
// element gathers 64 contributions through a map autodiff cannot invert) and a long contraction
// (GramMatrix over 4096 positions) are accumulated in f32 and rounded once: within half a unit
// in the last place of the naive double result (plus f32 summation error). Summing in the
// 16-bit type would be off by many units.
const char *kFold = R"(
layer Fold64() {
  forward(X: [N]) -> Y: [64 * N] {
    Y[i] = X[i * 3 % N] * X[i * 3 % N]
  }
}
)";

TEST(HalfStorageReference, ScatterAccumulatesInF32) {
  auto library = Library::fromSource("fold.enc", kFold);
  for (DType dtype : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtypeName(dtype));
    Layer layer(library, "Fold64", {}, LayerOptions{dtype, 0, true, true, Device::CPU});
    bool scatter = false;
    for (const ir::Definition &d : layer.gradientProgram().defs) scatter |= d.isScatter();
    ASSERT_TRUE(scatter) << ir::printProgram(layer.gradientProgram());
    const int64_t n = 301;
    Tensor x = randomTensor({n}, 5).to(dtype), g = randomTensor({64 * n}, 6).to(dtype);
    layer.forward({{"X", x}});
    Tensor gx = layer.backward({{"Y", g}}).at("X");
    ASSERT_EQ(gx.dtype(), dtype);
    std::vector<double> sum(static_cast<size_t>(n), 0.0), magnitude(static_cast<size_t>(n), 0.0);
    for (int64_t i = 0; i < 64 * n; ++i) {
      auto k = static_cast<size_t>(i * 3 % n);
      sum[k] += g.at(i);
      magnitude[k] += std::abs(g.at(i));
    }
    for (int64_t j = 0; j < n; ++j) {
      double want = 2 * x.at(j) * sum[static_cast<size_t>(j)];
      EXPECT_LE(std::abs(gx.at(j) - want), halfUlp(want, dtype) + 1e-6 * magnitude[static_cast<size_t>(j)])
          << "element " << j;
    }
  }
}

TEST(HalfStorageReference, LongContractionAccumulatesInF32) {
  const int64_t C = 3, L = 4096;
  for (DType dtype : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtypeName(dtype));
    Layer gram(lib(), "GramMatrix", {}, LayerOptions{dtype, 0, true, true, Device::CPU});
    Tensor x = randomTensor({1, C, 64, 64}, 8).to(dtype);
    Tensor y = gram.forward({{"X", x}}).at("Y");
    ASSERT_EQ(y.dtype(), dtype);
    ASSERT_EQ(y.numel(), C * C);
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) {
        double dot = 0, magnitude = 0;
        for (int64_t l = 0; l < L; ++l) {
          dot += x.at(i * L + l) * x.at(j * L + l);
          magnitude += std::abs(x.at(i * L + l) * x.at(j * L + l));
        }
        double want = dot / static_cast<double>(C * L);
        double slack = 1e-6 * magnitude / static_cast<double>(C * L);
        EXPECT_LE(std::abs(y.at(i * C + j) - want), halfUlp(want, dtype) + slack) << i << ", " << j;
      }
  }
}

// The CPU kernels' own conversions, bit for bit, against runtime/Float16 (checked against
// reference rounding by Float16Test): Y = P + X with P an f32 parameter. With X = 0 the store
// rounds P to 16 bits; with P = -0 every 16-bit input must come back unchanged.
const char *kCast = R"(
layer Cast(n: int) {
  param P[n] = zeros
  forward(X: [n]) -> Y: [n] {
    Y[i] = P[i] + X[i]
  }
}
)";

std::vector<float> narrowingCases(DType dtype) {
  auto decode = [&](uint16_t bits) { return dtype == DType::F16 ? halfBitsToFloat(bits) : bfloat16BitsToFloat(bits); };
  std::vector<float> out;
  for (uint32_t b = 0; b < 0xffff; ++b) {
    float lo = decode(static_cast<uint16_t>(b)), hi = decode(static_cast<uint16_t>(b + 1));
    out.push_back(lo);
    if (!std::isfinite(lo) || !std::isfinite(hi) || std::signbit(lo) != std::signbit(hi)) continue;
    auto mid = static_cast<float>((static_cast<double>(lo) + hi) / 2); // exact in f32: a tie
    out.push_back(mid);
    out.push_back(std::nextafter(mid, 0.0f));
    out.push_back(std::nextafter(mid, INFINITY));
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 100000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    out.push_back(f);
  }
  for (float f : {65504.0f, 65519.99f, 65520.0f, 1e30f, -1e30f, 3.4e38f, 1e-8f, 2.9802322e-08f, 1e-30f, 1e-45f, INFINITY,
                  -INFINITY, NAN})
    out.push_back(f);
  return out;
}

TEST(HalfStorageCpuKernels, ConvertExactlyAsReferenceRounding) {
  auto library = Library::fromSource("cast.enc", kCast);
  for (DType dtype : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtypeName(dtype));
    auto encode = [&](float f) { return dtype == DType::F16 ? floatToHalfBits(f) : floatToBFloat16Bits(f); };
    // Narrowing: f32 parameter values rounded by the kernel's store.
    std::vector<float> values = narrowingCases(dtype);
    auto n = static_cast<int64_t>(values.size());
    Layer narrowing(library, "Cast", {{"n", std::to_string(n)}}, LayerOptions{dtype, 0, true, true, Device::CPU});
    Tensor p(DType::F32, {n});
    for (int64_t i = 0; i < n; ++i) p.dataAs<float>()[i] = values[static_cast<size_t>(i)];
    narrowing.setParam("P", p);
    Tensor y = narrowing.forward({{"X", Tensor(dtype, {n})}}).at("Y");
    ASSERT_EQ(y.dtype(), dtype);
    int wrong = 0;
    for (int64_t i = 0; i < n && wrong < 10; ++i) {
      float v = values[static_cast<size_t>(i)];
      uint16_t got = y.dataAs<uint16_t>()[i], want = encode(v + 0.0f);
      bool ok = std::isnan(v) ? std::isnan(y.at(i)) : got == want;
      if (!ok) ++wrong;
      EXPECT_TRUE(ok) << "rounding " << v << " (" << std::hexfloat << v << std::defaultfloat << "): got 0x" << std::hex
                      << got << ", want 0x" << want;
    }
    // Widening: every bit pattern through the kernel's load and store unchanged.
    Layer widening(library, "Cast", {{"n", "65536"}}, LayerOptions{dtype, 0, true, true, Device::CPU});
    Tensor minusZero(DType::F32, {65536});
    for (int64_t i = 0; i < 65536; ++i) minusZero.dataAs<float>()[i] = -0.0f;
    widening.setParam("P", minusZero);
    Tensor x(dtype, {65536});
    for (int64_t i = 0; i < 65536; ++i) x.dataAs<uint16_t>()[i] = static_cast<uint16_t>(i);
    Tensor back = widening.forward({{"X", x}}).at("Y");
    wrong = 0;
    for (int64_t i = 0; i < 65536 && wrong < 10; ++i) {
      bool ok = std::isnan(x.at(i)) ? std::isnan(back.at(i)) : back.dataAs<uint16_t>()[i] == static_cast<uint16_t>(i);
      if (!ok) ++wrong;
      EXPECT_TRUE(ok) << "bits 0x" << std::hex << i << " came back as 0x" << back.dataAs<uint16_t>()[i];
    }
  }
}

// After accumulateInComputeType no kernel of any shipped layer (forward or backward, CPU or
// GPU schedule) adds into or reads back a 16-bit output, and the conversion kernels it adds
// store every element of the 16-bit tensor they stand for.
bool readsOrAdds(const ir::Stmt &s, const std::string &buffer) {
  auto loads = [&](const ir::Expr &e) {
    return e && ir::anyNode(e, [&](const ir::Expr &n) { return n->kind == ir::ExprKind::Load && n->name == buffer; });
  };
  if ((s->kind == ir::StmtKind::Store && s->name == buffer && s->accumulate) || loads(s->value) || loads(s->index))
    return true;
  for (const ir::Stmt &c : s->body)
    if (readsOrAdds(c, buffer)) return true;
  return false;
}

TEST(HalfStorageSchedule, NoKernelAccumulatesInSixteenBits) {
  int conversions = 0;
  std::vector<std::pair<std::shared_ptr<const Library>, std::string>> layers;
  for (const std::string &name : lib()->layerNames()) layers.push_back({lib(), name});
  layers.push_back({Library::fromSource("fold.enc", kFold), "Fold64"}); // a scatter
  for (const auto &[library, name] : layers) {
    const LayerSymbols &sym = library->get(name);
    std::map<std::string, std::string> settings;
    for (const LayerCase &c : layerCases())
      if (c.layer == name) settings = c.settings;
    auto hyper = resolveHyperParams(sym, settings);
    hyper["training"] = ir::boolImm(true);
    const ir::Pipeline pipeline;
    ir::Program forward = pipeline.forward(sym, hyper);
    ir::Gradient gradient = pipeline.backward(sym, forward, hyper);
    for (ir::Target target : {ir::Target::CPU, ir::Target::GPU})
      for (bool backward : {false, true}) {
        SCOPED_TRACE(fmt::format("{} {} {}", name, target == ir::Target::CPU ? "CPU" : "GPU", backward ? "backward" : "forward"));
        ir::LoopProgram out = pipeline.lower(
            backward ? gradient.program : forward,
            {.target = target,
             .types = backward ? ir::backwardStorage(gradient, forward, ir::ElemType::BF16)
                               : ir::forwardStorage(forward, ir::ElemType::BF16)});
        ASSERT_FALSE(out.types.stored.empty());
        for (const ir::Kernel &k : out.kernels)
          for (int o = 0; o < k.outputs; ++o) {
            const std::string &b = k.buffers[static_cast<size_t>(o)];
            if (!ir::isNarrow(out.types.of(b))) continue;
            EXPECT_FALSE(k.scatters) << k.name;
            EXPECT_FALSE(readsOrAdds(k.body, b)) << k.name << " accumulates into " << b << "\n" << ir::printLoops(out);
          }
        for (const ir::Kernel &k : out.kernels) {
          if (k.name.rfind("kcvt_", 0) != 0) continue;
          ++conversions;
          EXPECT_TRUE(ir::isNarrow(out.types.of(k.buffers[0])));
          EXPECT_EQ(out.types.of(k.buffers[1]), ir::ElemType::F32);
          EXPECT_TRUE(out.tensors.tensor(k.buffers[1])) << "the f32 temporary is declared";
        }
      }
  }
  EXPECT_GT(conversions, 0) << "Fold64's backward pass scatters into its input's gradient";
}

} // namespace
} // namespace enc
