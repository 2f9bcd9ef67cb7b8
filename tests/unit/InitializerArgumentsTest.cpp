// A parameter's initializer takes the arguments torch.nn.init would: finite numbers, uniform's
// low end at most its high end, a non-negative standard deviation. Others were drawn from
// (inverted bounds, NaN parameters); they are a located error naming the parameter.
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include "ErrorTestSupport.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <string>

namespace enc {
namespace {

std::string initError(const std::string &init) {
  return testing::errorOf([&] {
    auto lib = Library::fromSource("init.enc", fmt::format("layer A() {{\n  param w[3] = {}\n  forward(X: [N]) -> Y: [N] {{\n"
                                                           "    Y[i] = X[i] * w[0]\n  }}\n}}\n",
                                                           init));
    Layer layer(lib, "A", {});
  });
}

TEST(InitializerArguments, OutsideTorchsRangesAreErrors) {
  EXPECT_MENTIONS(initError("uniform(1, 0)"), "init.enc:2:16: layer A: the initializer of 'w': uniform(low, high) with low = 1 > high = 0");
  EXPECT_MENTIONS(initError("normal(0, -1)"), "normal(mean, std) with std = -1 < 0");
  EXPECT_MENTIONS(initError("constant(inf - inf)"), "argument 1 of constant(...) is");
  EXPECT_MENTIONS(initError("uniform(log(0), 1)"), "argument 1 of uniform(...) is -inf");
  // The edges are fine: an empty range, a zero deviation.
  for (const char *ok : {"uniform(0.5, 0.5)", "normal(1, 0)", "constant(-2)"}) {
    Layer layer(Library::fromSource("init.enc", fmt::format("layer A() {{\n  param w[3] = {}\n  forward(X: [N]) -> Y: [N] {{\n"
                                                            "    Y[i] = X[i] * w[0]\n  }}\n}}\n",
                                                            ok)),
                "A", {});
    double want = std::string(ok).rfind("uniform", 0) == 0 ? 0.5 : std::string(ok).rfind("normal", 0) == 0 ? 1.0 : -2.0;
    for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(layer.params().at("w").at(i), want) << ok;
  }
}

} // namespace
} // namespace enc
