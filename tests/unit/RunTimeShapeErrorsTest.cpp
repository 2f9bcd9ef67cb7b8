// Run-time shape errors start with the file:line:col of what the .enc source declares or requires and
// the input violates: the input's declaration (its rank), the dimension's size, the requirement, the
// output's shape, the parameter's declaration (setParam, loadState), the output's (backward's gradient).
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Safetensors.h"
#include "runtime/Tensor.h"

#include "CliTestSupport.h"
#include "ErrorTestSupport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

namespace enc {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::errorOf;
namespace fs = std::filesystem;

constexpr const char *kFile = "shapes.enc";
constexpr std::string_view kSource = R"(layer Shapes(k: int = 3, m: int = 1) {
  param w[k] = ones
  forward(X: [B, k], P: [A...(m), D]) -> (Y: [B, k], Z: [B - 2], S: [D]) {
    require B > 1
    Y[b, j] = X[b, j] * w[j]
    Z[i] = sum(j < 3: X[i + j, 0])
    S[d] = sum(a: P[a, d])
  }
}
)";

// "shapes.enc:LINE:COL: " of the `occurrence`-th appearance of `text` in kSource, counted independently of
// the compiler's own line table.
std::string at(std::string_view text, int occurrence = 1) {
  size_t pos = std::string_view::npos;
  for (int i = 0; i < occurrence; ++i) pos = kSource.find(text, pos == std::string_view::npos ? 0 : pos + 1);
  EXPECT_NE(pos, std::string_view::npos) << text;
  std::string_view before = kSource.substr(0, pos);
  size_t line = 1 + static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  size_t lineStart = before.rfind('\n');
  size_t col = pos - (lineStart == std::string_view::npos ? 0 : lineStart + 1) + 1;
  return fmt::format("{}:{}:{}: ", kFile, line, col);
}

std::shared_ptr<const Library> shapesLibrary() { return Library::fromSource(kFile, std::string(kSource)); }

LayerOptions f64() {
  LayerOptions o;
  o.dtype = DType::F64;
  return o;
}

std::map<std::string, Tensor> goodInputs(int64_t batch = 4) {
  return {{"X", Tensor(DType::F64, {batch, 3})}, {"P", Tensor(DType::F64, {2, 5})}};
}

TEST(RunTimeShapeErrors, WrongRankNamesTheInputsDeclaration) {
  auto lib = shapesLibrary();
  Layer layer(lib, "Shapes", {}, f64());
  std::map<std::string, Tensor> in = goodInputs();
  in["X"] = Tensor(DType::F64, {4, 3, 1});
  std::string m = errorOf([&] { layer.forward(in); });
  EXPECT_THAT(m, StartsWith(at("X: [B, k]") + "layer Shapes: input 'X' has shape [4, 3, 1]"));
  EXPECT_THAT(m, HasSubstr("3 dimensions instead of 2"));
}

TEST(RunTimeShapeErrors, WrongDimensionNamesItsSize) {
  auto lib = shapesLibrary();
  Layer layer(lib, "Shapes", {}, f64());
  std::map<std::string, Tensor> in = goodInputs();
  in["X"] = Tensor(DType::F64, {4, 5});
  std::string m = errorOf([&] { layer.forward(in); });
  EXPECT_THAT(m, StartsWith(at("k], P") + "layer Shapes: input 'X' has shape [4, 5]"));
  EXPECT_THAT(m, HasSubstr("dimension 1 is 5, but k = 3"));
}

TEST(RunTimeShapeErrors, NegativeCountNamesTheCount) {
  auto lib = shapesLibrary();
  Layer layer(lib, "Shapes", {{"m", "-1"}}, f64());
  std::string m = errorOf([&] { layer.forward(goodInputs()); });
  EXPECT_THAT(m, StartsWith(at("m), D]") + "layer Shapes: A...(m) of input 'P' is -1"));
}

TEST(RunTimeShapeErrors, FailedRequirementNamesItAndTheInputs) {
  auto lib = shapesLibrary();
  Layer layer(lib, "Shapes", {}, f64());
  std::string m = errorOf([&] { layer.forward(goodInputs(1)); });
  EXPECT_THAT(m, StartsWith(at("require B > 1") + "layer Shapes requires B > 1 (B = 1)"));
  EXPECT_THAT(m, HasSubstr("for input P [2, 5], X [1, 3]"));
  // An empty input is marked as such.
  m = errorOf([&] { layer.forward(goodInputs(0)); });
  EXPECT_THAT(m, HasSubstr("for input P [2, 5], X [0, 3] (no elements)"));
}

TEST(RunTimeShapeErrors, OutputTooSmallNamesTheOutputsDeclaration) {
  // B = 1 fails the requirement first; a layer without it shows the output's own error.
  std::string source(kSource);
  source.replace(source.find("    require B > 1\n"), std::string("    require B > 1\n").size(), "\n");
  auto lib = Library::fromSource(kFile, source);
  Layer layer(lib, "Shapes", {}, f64());
  std::string m = errorOf([&] { layer.forward(goodInputs(1)); });
  EXPECT_THAT(m, StartsWith(at("Z: [B - 2]") + "layer Shapes: output 'Z' would have dimension 0 of size -1"));
  EXPECT_THAT(m, HasSubstr("for input P [2, 5], X [1, 3]"));
}

TEST(RunTimeShapeErrors, WrongParameterShapeNamesItsDeclaration) {
  auto lib = shapesLibrary();
  Layer layer(lib, "Shapes", {}, f64());
  std::string m = errorOf([&] { layer.setParam("w", Tensor(DType::F64, {4})); });
  EXPECT_THAT(m, StartsWith(at("w[k]") + "layer Shapes: parameter 'w' has shape [3], but the value given has shape [4]"));

  fs::path dir = fs::temp_directory_path() / fmt::format("encc-shape-errors-{}", ::getpid());
  fs::create_directories(dir);
  std::string file = (dir / "w.safetensors").string();
  writeSafetensors(file, {{"w", Tensor(DType::F64, {4})}});
  m = errorOf([&] { layer.loadState(file); });
  fs::remove_all(dir);
  EXPECT_THAT(m, StartsWith(file + ": tensor 'w' has shape [4], but layer Shapes's parameter 'w' has shape [3]"));
  EXPECT_THAT(m, HasSubstr("(declared at " + at("w[k]").substr(0, at("w[k]").size() - 2) + ")"));
}

TEST(RunTimeShapeErrors, WrongGradientShapeNamesTheOutputsDeclaration) {
  auto lib = shapesLibrary();
  Layer layer(lib, "Shapes", {}, f64());
  layer.forward(goodInputs());
  std::string m = errorOf([&] { layer.backward({{"Y", Tensor(DType::F64, {4, 2})}}); });
  EXPECT_THAT(m, StartsWith(at("Y: [B, k]") + "layer Shapes: the gradient of output 'Y' has shape [4, 2]"));
}

TEST(RunTimeShapeErrors, WrongDTypeNamesTheInputsDeclaration) {
  auto lib = shapesLibrary();
  Layer layer(lib, "Shapes", {}, f64());
  std::map<std::string, Tensor> in = goodInputs();
  in["X"] = Tensor(DType::F32, {4, 3});
  std::string m = errorOf([&] { layer.forward(in); });
  EXPECT_THAT(m, StartsWith(at("X: [B, k]") + "layer Shapes: input 'X' is f32 but the layer runs in f64"));
}

// Every dimension fits in 64 bits, their product does not: empty inputs bound no other dimension by
// memory, so the output's element count is what overflows.
TEST(RunTimeShapeErrors, TooManyElementsNamesTheOutputsDeclaration) {
  constexpr std::string_view kOuter = R"(layer Outer() {
  forward(X: [N, A], Z: [N, C]) -> (Y: [A, C]) {
    Y[a, c] = sum(n: X[n, a] * Z[n, c])
  }
}
)";
  auto lib = Library::fromSource("outer.enc", std::string(kOuter));
  Layer layer(lib, "Outer", {}, f64());
  const int64_t big = int64_t(1) << 32;
  std::string m = errorOf([&] {
    layer.forward({{"X", Tensor(DType::F64, {0, big})}, {"Z", Tensor(DType::F64, {0, big})}});
  });
  EXPECT_THAT(m, StartsWith("outer.enc:2:37: layer Outer: output 'Y' would have shape [4294967296, 4294967296]"));
  EXPECT_THAT(m, HasSubstr("is too large"));
  // 2^31 x 2^31 elements fit a 64-bit count but not, at 8 bytes each, a byte count.
  m = errorOf([&] {
    layer.forward({{"X", Tensor(DType::F64, {0, big / 2})}, {"Z", Tensor(DType::F64, {0, big / 2})}});
  });
  EXPECT_THAT(m, StartsWith("outer.enc:2:37: layer Outer: output 'Y' would have shape [2147483648, 2147483648]"));
  // The product of ordinary sizes runs.
  std::map<std::string, Tensor> out =
      layer.forward({{"X", Tensor(DType::F64, {0, 3})}, {"Z", Tensor(DType::F64, {0, 2})}});
  EXPECT_EQ(out.at("Y").shape(), (Shape{3, 2}));
}

// PyTorch-Encoding's BatchNorm2d (an alias of SyncBatchNorm for rank-4 inputs) names the input's
// declaration in the shipped layer.
TEST(RunTimeShapeErrors, AliasRankNamesTheInputsDeclaration) {
  Layer bn2(Library::shipped(), "BatchNorm2d", {{"num_features", "3"}}, {DType::F32, 0});
  std::string m = errorOf([&] { bn2.forward({{"X", Tensor(DType::F32, {2, 3, 4})}}); });
  EXPECT_THAT(m, ::testing::ContainsRegex(R"(^[^ ]*batchnorm\.enc:[0-9]+:[0-9]+: layer BatchNorm2d: input 'X' has shape )"
                                        R"(\[2, 3, 4\] \(3 dimensions\), but BatchNorm2d takes inputs with 4)"));
}

// The command line shows the same prefix, for a shipped layer too.
class RunTimeShapeErrorsCli : public testing::CliTest {};

TEST_F(RunTimeShapeErrorsCli, EvalNamesTheDeclaration) {
  std::ofstream(path(kFile)) << kSource;
  testing::CliResult r = encc(fmt::format("eval {} --layer Shapes --input X=random:4,3,1 --input P=random:2,5 --out out",
                                          kFile));
  expectFailure(r, {"encc: error: " + at("X: [B, k]") + "layer Shapes: input 'X' has shape [4, 3, 1]"});
  r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3 --input X=random:8,3,32 "
           "--out out");
  expectFailure(r, {"conv.enc:", ": layer Conv2d: input 'X' has shape [8, 3, 32]"});
}

} // namespace
} // namespace enc
