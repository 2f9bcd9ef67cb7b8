// 16-bit storage (LayerOptions::dtype f16 / bf16): every shipped layer, forward and backward
// on the CPU, against the same layer in f64 (which LayerNumericsTest and LayerGradTest check
// against naive loops and finite differences) fed the same 16-bit inputs. Inputs, outputs and
// their gradients are 16-bit; parameters, buffers and parameter gradients stay f32; sums
// accumulate in f32 (HalfStorageReferenceTest.cpp checks that against naive loops).
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

} // namespace
} // namespace enc
