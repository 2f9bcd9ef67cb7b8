// `encc repl` end to end: a session script on stdin, the real binary, stdout and stderr.
#include "runtime/Npy.h"
#include "runtime/Nvrtc.h"
#include "runtime/Tensor.h"

#include "CliTestSupport.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

class EnccRepl : public CliTest {
protected:
  CliResult session(const std::string &script, const std::string &args = "") {
    std::ofstream(path("session.txt")) << script;
    return encc("repl " + args + " < session.txt");
  }
  // The numbers on the line after "NAME: ..." (printed for short tensors).
  static std::vector<double> valuesAfter(const std::string &out, const std::string &name, int occurrence = 0) {
    std::istringstream in(out);
    std::string line;
    int seen = 0;
    while (std::getline(in, line)) {
      if (!line.starts_with(name + ": ")) continue;
      if (seen++ < occurrence) continue;
      std::getline(in, line);
      std::istringstream nums(line);
      std::vector<double> v;
      for (double x; nums >> x;) v.push_back(x);
      return v;
    }
    return {};
  }
  static Tensor vector(std::vector<double> v) {
    Tensor t(DType::F64, {static_cast<int64_t>(v.size())});
    for (size_t i = 0; i < v.size(); ++i) t.set(static_cast<int64_t>(i), v[i]);
    return t;
  }
};

constexpr const char *kScale = R"(layer Scale(factor: float = 2.0) {
  forward(X: [N]) -> Y: [N] {
    Y[i] = factor * X[i] * X[i]
  }
}
)";

// A layer typed over several lines, run forward with a hyper-parameter and backward from a
// given output gradient: values checked against the definition.
TEST_F(EnccRepl, DefinesRunsAndDifferentiates) {
  writeNpy(path("x.npy").string(), vector({0.5, -1.25, 3.0}));
  writeNpy(path("dy.npy").string(), vector({1.0, 2.0, -0.5}));
  CliResult r = session(std::string(kScale) +
                        ":set dtype f64\n"
                        ":eval Scale X=x.npy\n"
                        ":eval Scale factor=3 X=x.npy\n"
                        ":grad Scale factor=3 X=x.npy Y=dy.npy\n"
                        ":quit\n");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "defined Scale")) << r;
  const std::vector<double> x = {0.5, -1.25, 3.0}, dy = {1.0, 2.0, -0.5};
  std::vector<double> y2 = valuesAfter(r.out, "Y", 0), y3 = valuesAfter(r.out, "Y", 1), gx = valuesAfter(r.out, "grad X");
  ASSERT_EQ(y2.size(), 3u) << r;
  ASSERT_EQ(y3.size(), 3u) << r;
  ASSERT_EQ(gx.size(), 3u) << r;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(y2[i], 2 * x[i] * x[i], 1e-5 * std::abs(x[i] * x[i])) << i;
    EXPECT_NEAR(y3[i], 3 * x[i] * x[i], 1e-5 * std::abs(x[i] * x[i])) << i;
    EXPECT_NEAR(gx[i], 6 * x[i] * dy[i], 1e-5 * std::abs(6 * x[i] * dy[i])) << i; // d(3x^2)/dx = 6x
  }
  EXPECT_TRUE(contains(r.out, "Y: f64 [3]")) << r;
}

// :grad with no output gradient given draws a random one shaped like the output, a rank-0
// loss's too: grad X = dY * 2 X, the same dY for every element.
TEST_F(EnccRepl, GradOfALossDrawsAScalarGradient) {
  writeNpy(path("x.npy").string(), vector({0.5, -1.25, 3.0}));
  CliResult r = session("layer Loss() {\n"
                        "  forward(X: [N]) -> Y: [] {\n"
                        "    Y = sum(i: X[i] ^ 2)\n"
                        "  }\n"
                        "}\n"
                        ":set dtype f64\n"
                        ":grad Loss X=x.npy\n");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_FALSE(contains(r.err, "random:")) << r;
  std::vector<double> y = valuesAfter(r.out, "Y"), gx = valuesAfter(r.out, "grad X");
  ASSERT_EQ(y.size(), 1u) << r;
  EXPECT_NEAR(y[0], 0.25 + 1.5625 + 9.0, 1e-4) << r; // printed to 6 digits
  ASSERT_EQ(gx.size(), 3u) << r;
  const std::vector<double> x = {0.5, -1.25, 3.0};
  double dy = gx[0] / (2 * x[0]);
  EXPECT_NE(dy, 0.0) << r;
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(gx[i], 2 * x[i] * dy, 1e-5 * std::abs(gx[i]) + 1e-9) << i;
}

// :eval takes parameter values from .npy files and --dtype for one command: Y = w * X with w
// given, in f64 while the session stays f32.
TEST_F(EnccRepl, EvalTakesParametersAndADtype) {
  writeNpy(path("x.npy").string(), vector({0.5, -1.25, 3.0}));
  writeNpy(path("w.npy").string(), vector({2.0, 4.0, -1.0}));
  CliResult r = session("layer Weigh(N: int) {\n"
                        "  param w[N] = uniform(-1, 1)\n"
                        "  forward(X: [N]) -> Y: [N] {\n"
                        "    Y[i] = w[i] * X[i]\n"
                        "  }\n"
                        "}\n"
                        ":eval Weigh N=3 X=x.npy w=w.npy --dtype f64\n"
                        ":eval Weigh N=3 X=x.npy w=w.npy\n");
  ASSERT_EQ(r.status, 0) << r;
  std::vector<double> y = valuesAfter(r.out, "Y");
  ASSERT_EQ(y.size(), 3u) << r;
  const std::vector<double> want = {1.0, -5.0, -3.0};
  for (size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(y[i], want[i]) << i;
  EXPECT_TRUE(contains(r.out, "Y: f64 [3]")) << r; // the first command's dtype
  EXPECT_TRUE(contains(r.out, "Y: f32 [3]")) << r; // the session's again
}

// Any stage of a shipped or a typed layer; GPU code with sizes shows tiles and #line.
TEST_F(EnccRepl, EmitsStages) {
  CliResult r = session(std::string(kScale) +
                        ":emit ir Scale factor=4\n"
                        ":emit grad Scale\n"
                        ":emit loops GramMatrix --target gpu\n"
                        ":emit cuda GramMatrix --size B=1 --size C=64 --size H=8 --size W=8\n");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "Y[i<N] = 4.0 * X[i] * X[i]")) << r;
  EXPECT_TRUE(contains(r.out, "grad_X")) << r;
  EXPECT_TRUE(contains(r.out, "__shared__")) << r;
  EXPECT_TRUE(contains(r.out, "#line 5 \"")) << r;
  EXPECT_TRUE(r.err.empty() || !contains(r.err, "error")) << r;
}

// Mistakes are reported with a hint and the session goes on; a definition with an error
// shows the caret diagnostic; the last command still runs.
TEST_F(EnccRepl, ErrorsDoNotEndTheSession) {
  CliResult r = session(":eval Nope X=random:2\n"
                        ":eval GramMatrix\n"
                        ":bogus\n"
                        ":set colour blue\n"
                        ":emit ir\n"
                        ":eval ReLU Y=random:3 X=random:3\n"
                        ":eval ReLU X=random:2 --dtype f64 --dtype f32\n"
                        ":emit ir ReLU --target cpu --target gpu\n"
                        "layer Bad() { forward(X: [N]) -> Y: [N] { Y[i] = Z[i] } }\n"
                        ":eval ReLU X=random:4\n");
  EXPECT_EQ(r.status, 1) << "a script that met errors fails\n" << r;
  for (const char *m : {"unknown layer 'Nope'", "the layers are:", "needs the input X", "unknown command ':bogus'",
                        "unknown setting 'colour'", ":emit takes a stage and a layer", "only :grad and :time take output gradients",
                        "unknown tensor 'Z'", "^", "--dtype is given twice",
                        "--target is given twice"})
    EXPECT_TRUE(contains(r.err, m)) << "expected '" << m << "' in\n" << r;
  EXPECT_TRUE(contains(r.out, "Y: f32 [4]")) << r;
}

// Errors say what to type here, NAME=VALUE words rather than the command line's options, and suggest
// the name that was probably meant.
TEST_F(EnccRepl, ErrorsSpeakTheReplsSyntax) {
  CliResult r = session(":eval Conv2d X=random:1,3,5,5\n"
                        ":eval Conv2d in_channels=3 out_channels=2 kernel_size=(3 X=random:1,3,5,5\n"
                        ":eval ReLU X=random:3,\n"
                        ":eval Conv2D X=random:1,3,5,5\n"
                        ":eval Conv2d in_channels=3 out_channels=2 kernel_size=3 paddin=1 X=random:1,3,5,5\n"
                        ":evl ReLU X=random:3\n");
  EXPECT_EQ(r.status, 1) << r;
  for (const char *m : {"hint: give in_channels=VALUE", "hint: e.g. kernel_size=3 or kernel_size=3,5",
                        "error: X: bad shape 'random:3,'", "unknown layer 'Conv2D'; did you mean 'Conv2d'?",
                        "no hyper-parameter 'paddin'; did you mean 'padding'?",
                        "unknown command ':evl'; did you mean ':eval'?"})
    EXPECT_TRUE(contains(r.err, m)) << "expected '" << m << "' in\n" << r;
  EXPECT_FALSE(contains(r.err, "--set")) << r;
  EXPECT_FALSE(contains(r.err, "--input")) << r;
}

// A name that is a hyper-parameter and a parameter too (Conv2d's bias) sets the hyper-parameter,
// unless its value reads as a tensor (random:..., a .npy name or an existing file); errors say
// NAME=VALUE, never the command line's --param, and an empty value is missing, not a file "".
TEST_F(EnccRepl, HyperParameterNamedLikeAParameter) {
  writeNpy(path("w.npy").string(), vector({0.0}).reshape({1, 1, 1, 1}));
  writeNpy(path("b.npy").string(), vector({5.0}));
  CliResult r = session(":eval Conv2d in_channels=1 out_channels=1 kernel_size=1 bias=false X=random:1,1,2,2\n"
                        ":eval Conv2d in_channels=1 out_channels=1 kernel_size=1 weight=w.npy bias=b.npy "
                        "X=random:1,1,1,2 --dtype f64\n");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "Y: f32 [1, 1, 2, 2]")) << r;
  EXPECT_EQ(valuesAfter(r.out, "Y", 1), std::vector<double>({5.0, 5.0})) << r;

  r = session(":eval Conv2d in_channels=1 out_channels=1 kernel_size=1 weight=nope.npy X=random:1,1,2,2\n"
              ":eval Conv2d in_channels=1 out_channels=1 kernel_size=1 bias=maybe X=random:1,1,2,2\n"
              ":eval ReLU X=\n"
              ":eval Linear in_features=2 out_features=1 weight=random:1,2 X=random:3,2\n");
  EXPECT_EQ(r.status, 1) << r;
  for (const char *m : {"error: weight=nope.npy: cannot read nope.npy", "bias", "error: X=: the value is missing",
                        "hint: e.g. X=FILE.npy or X=random:2,3", "random:D0,D1,... makes only inputs and output gradients"})
    EXPECT_TRUE(contains(r.err, m)) << "expected '" << m << "' in\n" << r;
  EXPECT_FALSE(contains(r.err, "--param")) << r;
  EXPECT_FALSE(contains(r.err, "--input")) << r;
  EXPECT_FALSE(contains(r.err, "cannot read :")) << r;
  EXPECT_FALSE(contains(r.err, "cannot read maybe")) << r;
}

// A definition whose forward header does not parse reports that error alone, not a follow-on
// ("has no forward block") listed before it, nor its body's lines as stray members.
TEST_F(EnccRepl, ParseErrorWithoutFollowOns) {
  CliResult r = session("layer Bad() {\n  forward(X: [N] -> Y: [N] {\n    Y[i] = X[i]\n  }\n}\n");
  EXPECT_TRUE(contains(r.err, "<repl>:2:18: error: expected ')', found '->'")) << r;
  EXPECT_TRUE(contains(r.err, "1 error generated.")) << r;
  EXPECT_FALSE(contains(r.err, "no forward block")) << r;
}

// A script's exit status says whether every input succeeded.
TEST_F(EnccRepl, ScriptExitStatus) {
  EXPECT_EQ(session(":eval ReLU X=random:3\n:layers\n").status, 0);
  CliResult r = session(":bogus\n:eval ReLU X=random:3\n");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.out, "Y: f32 [3]")) << "the rest of the script still runs\n" << r;
  EXPECT_EQ(session("layer Bad() { forward(X: [N]) -> Y: [N] { Y[i] = X[i] + } }\n").status, 1);
  EXPECT_EQ(session(":bogus\n:quit\n").status, 1);
}

// A negative seed is refused, not wrapped to 2^64 - 1; the setting keeps its value.
TEST_F(EnccRepl, SeedIsNotNegative) {
  CliResult r = session(":set seed -1\n:set seed 7\n:set seed 2x\n:set dtype f64\n");
  EXPECT_TRUE(contains(r.err, "bad seed '-1'")) << r;
  EXPECT_TRUE(contains(r.err, "bad seed '2x'")) << r;
  EXPECT_TRUE(contains(r.out, "dtype f64, device auto, mode train, seed 7")) << r;
  EXPECT_FALSE(contains(r.out, "18446744073709551615")) << r;
}

// A layer defined again replaces the first definition; one named like a shipped layer hides it.
TEST_F(EnccRepl, RedefinitionReplaces) {
  CliResult r = session("layer Twice() { forward(X: [N]) -> Y: [N] { Y[i] = 2.0 * X[i] } }\n"
                        "layer Twice() { forward(X: [N]) -> Y: [N] { Y[i] = 3.0 * X[i] } }\n"
                        ":emit ir Twice\n"
                        "layer ReLU() { forward(X: [N]) -> Y: [N] { Y[i] = X[i] } }\n"
                        ":layers\n");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "3.0 * X[i]")) << r;
  EXPECT_FALSE(contains(r.out, "2.0 * X[i]")) << r;
  EXPECT_TRUE(contains(r.out, "defined ReLU (hides the shipped layer)")) << r;
  EXPECT_TRUE(contains(r.out, "Twice  (this session)")) << r;
}

// `encc repl FILE` starts with the file's layers; :time reports both passes.
TEST_F(EnccRepl, LoadsAFileAndTimes) {
  std::ofstream(path("mine.enc")) << kScale;
  CliResult r = session(":time Scale X=random:1000\n:load mine.enc\n", "mine.enc");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(Scale \(f32, [^)]+\): forward [0-9.]+ ms \(min [0-9.]+\), backward [0-9.]+ ms)")))
      << r;
}

// Input that ends inside a definition is an error (exit status 1), not a silent success.
TEST_F(EnccRepl, UnbalancedDefinitionAtEndOfInput) {
  CliResult r = session("layer Open() {\n  forward(X: [N]) -> Y: [N] {\n");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "unbalanced braces")) << r;
}

} // namespace
} // namespace enc
