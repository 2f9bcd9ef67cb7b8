// NetworkErrors: mistakes at a call site are reported there, with the sub-layer's declaration.
#include "Networks.h"

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

#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

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

// A sub-layer's hyper-parameter without a value is given in its declaration: --set sets the
// network's own, so the hint points at the declaration.
TEST(NetworkErrors, AMissingSubLayerHyperParameterIsGivenInTheDeclaration) {
  std::string m = errorFor(R"(layer Net() {
  c = Conv2d(in_channels=4, kernel_size=1)
  forward(X: [B, 4, H, W]) -> Y {
    Y = c(X)
  }
}
)",
                           "Net");
  EXPECT_MENTIONS(m, "bad.enc:2:7: error: sub-layer 'c': layer Conv2d needs a value for hyper-parameter 'out_channels'");
  EXPECT_MENTIONS(m, "give it in the declaration: Conv2d(..., out_channels=VALUE)");
  EXPECT_EQ(m.find("--set"), std::string::npos) << m;
}

// A tensor named like a sub-layer would make `a` and `a(X)` two different things; it is refused
// as a parameter's or an input's name is.
TEST(NetworkErrors, ATensorCannotTakeASubLayersName) {
  const char *text = R"(layer Net() {
  a = ReLU()
  forward(X: [B, 4, H, W]) -> Y {
    a = X * 2
    Y = a(X) + a
  }
}
)";
  std::string m = errorFor(text, "Net");
  EXPECT_MENTIONS(m, "bad.enc:4:5: error: cannot define 'a': it is a sub-layer of layer 'Net'");
  EXPECT_MENTIONS(m, "sub-layer 'a' declared here");
  EXPECT_MENTIONS(m, "bad.enc:5:16: error: sub-layer 'a' is used without being called");
  // Checking reports it without expanding the network (k has no value yet).
  std::string unexpanded = text;
  unexpanded.replace(unexpanded.find("Net()"), 5, "Net(k: int)");
  m = errorOf([&] { Library::fromSource("bad.enc", unexpanded); });
  EXPECT_MENTIONS(m, "bad.enc:4:5: error: cannot define 'a': it is a sub-layer of layer 'Net'");
}

// A sub-layer named without a call is not a tensor: said at the name (it read "unknown name 'a'" with a hint
// about indices). An index may share a sub-layer's name.
TEST(NetworkErrors, ASubLayerUsedWithoutACallIsNamedAsOne) {
  std::string m = errorFor(R"(layer Net() {
  a = ReLU()
  forward(X: [B, C]) -> Y {
    Y = a
  }
}
)",
                           "Net");
  EXPECT_MENTIONS(m, "bad.enc:4:9: error: sub-layer 'a' is used without being called");
  EXPECT_MENTIONS(m, "call it on its input, as in a(X)");
  EXPECT_MENTIONS(m, "sub-layer 'a' declared here");
  EXPECT_EQ(m.find("unknown name"), std::string::npos) << m;
  auto lib = Library::fromSource("ok.enc", R"(layer Net() {
  b = ReLU()
  k = ReLU()
  forward(X: [B, C]) -> Y {
    T[b, c] = X[b, c] * 2 + sum(k: X[k, c])
    Y = k(b(T))
  }
}
)");
  Layer net(lib, "Net", {}, {DType::F64, 0});
  Tensor x(DType::F64, {2, 3});
  EXPECT_NO_THROW(net.forward({{"X", x}}));
}

// A repetition count is not a loop: each repetition is inlined, so a huge count ran out of time
// and memory. A network expands to at most kMaxNetworkStatements statements.
TEST(NetworkErrors, ANetworkThatExpandsTooFarIsAnErrorAtOnce) {
  auto repeated = [](const std::string &count) {
    return "layer Net() {\n  r = [ReLU() for i < " + count + "]\n  forward(X: [B, 4, H, W]) -> Y {\n    Y = r(X)\n  }\n}\n";
  };
  auto start = std::chrono::steady_clock::now();
  std::string m = errorFor(repeated("100000000"), "Net");
  EXPECT_MENTIONS(m, "bad.enc:2:23: error: a repetition count of 100000000 is more than a network may expand to");
  // Nested repetitions, each below the limit: the statement past it is the error.
  m = errorFor(R"(layer Block() {
  r = [ReLU() for i < 200]
  forward(X: [B, C, H, W]) -> Y {
    Y = r(X)
  }
}
layer Net() {
  b = [Block() for i < 300]
  forward(X: [B, 4, H, W]) -> Y {
    Y = b(X)
  }
}
)",
               "Net");
  EXPECT_MENTIONS(m, "network 'Net' expands to more than 50000 statements");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 60.0);
  // Below the limit a repetition expands as before.
  EXPECT_NO_THROW(Layer(Library::fromSource("ok.enc", repeated("20")), "Net"));
}

// Sub-layer declarations that lead back to a layer on the way expanded forever (a stack
// overflow, called or not called). They are an error at the network's declaration that starts
// the chain, naming the chain; so is an unknown layer in a declaration never called.
TEST(NetworkErrors, ChainsOfSubLayersThatLeadBackAreErrors) {
  const char *pair = R"(
layer A(n: int = 3) {
  b = B(n=n)
  forward(X: [B, 4, H, W]) -> Y { Y = b(X) }
}
layer B(n: int = 3) {
  a = A(n=n - 1) where n > 0
  forward(X: [B, 4, H, W]) -> Y { Y = select(n > 0, a(X), X + 1) }
}
)";
  for (const char *layer : {"A", "B"}) {
    std::string m = errorFor(pair, layer);
    std::string chain = std::string(layer) == "A" ? "A -> B -> A" : "B -> A -> B";
    EXPECT_MENTIONS(m, fmt::format("layer '{}' contains itself through sub-layer '{}': {}", layer,
                                   std::string(layer) == "A" ? "b" : "a", chain));
    EXPECT_MENTIONS(m, std::string(layer) == "A" ? "bad.enc:3:7: error" : "bad.enc:7:7: error");
  }
  // A cycle further down (B -> C -> B below A), and declarations that are never called.
  std::string m = errorFor(R"(
layer A() {
  b = B()
  forward(X: [B, 4, H, W]) -> Y { Y = b(X) }
}
layer B() {
  c = C()
  forward(X: [B, 4, H, W]) -> Y { Y = X }
}
layer C() {
  b = B()
  forward(X: [B, 4, H, W]) -> Y { Y = X }
}
)",
                           "A");
  EXPECT_MENTIONS(m, "layer 'B' contains itself through sub-layer 'b': A -> B -> C -> B");
  EXPECT_MENTIONS(errorFor("layer A() {\n  a = A()\n  forward(X: [B, 4, H, W]) -> Y { Y = X }\n}\n", "A"),
                  "layer 'A' uses itself as a sub-layer");
  EXPECT_MENTIONS(errorFor("layer A() {\n  b = Nope()\n  forward(X: [B, 4, H, W]) -> Y { Y = X }\n}\n", "A"),
                  "bad.enc:2:7: error: no layer named 'Nope' for sub-layer 'b'");
  // A network used twice beside itself is no chain.
  Layer ok(Library::fromSource("ok.enc", R"(
layer Inner() {
  l = ReLU()
  forward(X: [B, 4, H, W]) -> Y { Y = l(X) }
}
layer Outer() {
  first = Inner()
  second = Inner()
  forward(X: [B, 4, H, W]) -> Y { Y = second(first(X)) }
}
)"),
           "Outer", {});
  EXPECT_EQ(ok.forward({{"X", Tensor(DType::F32, {2, 4, 5, 5})}}).at("Y").shape(), (Shape{2, 4, 5, 5}));
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
