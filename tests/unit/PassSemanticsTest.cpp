// Every tensor-level pass keeps what a program computes. For every shipped layer at small odd
// sizes, the reference interpreter (compiler/ReferenceInterpreter.h) evaluates the tensor
// program after each step of the pipeline (compiler/Pipeline.cpp) and the step's outputs,
// updated buffers and gradients must equal those of the step before it to 1e-12 of their
// largest magnitude. Covered: the forward and backward sequences, the sizes sequence, and
// lowering's steps up to lowerToLoops for the CPU and the GPU. From lowerToLoops on the
// program is loop IR, which the interpreter does not evaluate; the layer tests run it
// (LayerNumerics, LayerGrad, GpuLayer).
#include "LayerCases.h"

#include "compiler/HyperParams.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/ReferenceInterpreter.h"

#include <fmt/format.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::ir;
using namespace enc::testing;

namespace {

// Every shipped layer, training and evaluation where they differ, at odd sizes where the
// layer allows (a tile or a vector never fits evenly; nothing here is long enough to split).
std::vector<LayerCase> oddCases() {
  return {
      {"LeakyReLU", {{"negative_slope", "0.2"}}, {{"X", {3, 5}}}},
      {"ReLU", {}, {{"X", {3, 5}}}},
      {"Softmax", {}, {{"X", {3, 5, 3}}}},
      {"SyncBatchNorm", {{"num_features", "3"}}, {{"X", {3, 3, 5}}}},
      {"SyncBatchNorm", {{"num_features", "3"}}, {{"X", {3, 3, 5}}}, false},
      {"SyncBatchNorm", {{"num_features", "3"}, {"activation", "leaky_relu"}}, {{"X", {3, 3, 5}}}},
      {"DistSyncBatchNorm", {{"num_features", "3"}}, {{"X", {3, 3, 5}}}},
      {"Conv2d", {{"in_channels", "3"}, {"out_channels", "5"}, {"kernel_size", "3"}, {"padding", "1"}},
       {{"X", {3, 3, 5, 5}}}},
      {"Conv2d",
       {{"in_channels", "3"}, {"out_channels", "3"}, {"kernel_size", "3,1"}, {"stride", "2"}, {"padding", "1"},
        {"groups", "3"}},
       {{"X", {1, 3, 7, 5}}}},
      {"UpsampleConv2d",
       {{"in_channels", "3"}, {"out_channels", "3"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}},
       {{"X", {1, 3, 3, 3}}}},
      {"Encoding", {{"D", "3"}, {"K", "5"}}, {{"X", {3, 3, 5}}}},
      {"GramMatrix", {}, {{"X", {3, 3, 5, 3}}}},
      {"Inspiration", {{"C", "3"}}, {{"X", {3, 3, 5, 3}}}},
      {"Linear", {{"in_features", "5"}, {"out_features", "3"}}, {{"X", {3, 5}}}},
      {"Linear", {{"in_features", "5"}, {"out_features", "3"}, {"bias", "false"}}, {{"X", {3, 5}}}},
      {"Flatten", {}, {{"X", {3, 5, 3}}}},
      {"L2Normalize", {}, {{"X", {3, 5, 3}}}},
      {"Sum", {{"dim", "1"}}, {{"X", {3, 5, 3}}}},
      {"Mean", {{"dim", "2"}}, {{"X", {3, 3, 5, 3}}}},
      {"CrossEntropyLoss", {}, {{"X", {5, 3}}, {"T", {5}}}, true, {"T"}},
      {"Dropout", {{"p", "0.3"}}, {{"X", {3, 5}}}},
      {"Dropout", {{"p", "0.3"}}, {{"X", {3, 5}}}, false},
      {"MaxPool2d", {{"kernel_size", "3"}, {"stride", "2"}, {"padding", "1"}}, {{"X", {1, 3, 7, 5}}}},
      {"AvgPool2d", {{"kernel_size", "3"}}, {{"X", {1, 3, 9, 5}}}},
      {"GlobalAvgPool2d", {}, {{"X", {3, 3, 5, 3}}}},
  };
}

using Values = std::map<std::string, std::vector<double>>;

// One step of a pipeline sequence and the tensor program after it.
struct Step {
  std::string name;
  Program program;
};

// A pipeline that records the program after each tensor-level step into `steps`.
Pipeline recording(std::vector<Step> &steps) {
  Pipeline::Instrumentation instrumentation = Pipeline::Instrumentation::fromEnvironment();
  instrumentation.afterTensorPass = [&steps](const char *sequence, const char *pass, const Program &p) {
    steps.push_back({fmt::format("{} {}", sequence, pass), p});
  };
  return Pipeline(instrumentation);
}

std::vector<double> valuesOf(const Tensor &t) {
  std::vector<double> out;
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(t.at(i));
  return out;
}

// A layer case compiled with every tensor-level step recorded, and what its programs read.
struct CompiledCase {
  LayerInstance instance; // owns a network's expansion
  std::vector<Step> forward, backward;
  Program forwardProgram, backwardProgram; // fused, as the runtime runs them
  std::map<std::string, Expr> sizes;
  std::map<std::string, double> variables; // hyper-parameters, input sizes, the random seed
  Values given;                            // inputs, parameters and buffers
  std::map<std::string, std::string> seedOf;
};

CompiledCase compileCase(const LayerCase &c) {
  CompiledCase out;
  const LayerSymbols &symbols = resolveLayer(*lib(), c.layer);
  std::map<std::string, Expr> hyper = resolveHyperParams(symbols, c.settings);
  hyper["training"] = boolImm(c.training);
  out.instance = instantiateLayer(*lib(), symbols, hyper);
  const LayerSymbols &layer = *out.instance.symbols;
  out.forwardProgram = recording(out.forward).forward(layer, hyper);
  Gradient g = recording(out.backward).backward(layer, out.forwardProgram, hyper);
  out.backwardProgram = g.program;
  out.seedOf = g.seedOf;

  // Inputs in [-1, 1) (class indices below 3), parameters and buffers in [0.5, 1.5): a
  // variance stays positive, and no weight is zero.
  std::map<std::string, Tensor> inputs;
  uint64_t seed = 1;
  for (const auto &[name, shape] : c.inputs)
    inputs[name] = randomTensor(shape, seed++, c.integerInputs.count(name) > 0, 3);
  for (const auto &[name, t] : inputs) out.given[name] = valuesOf(t);
  out.sizes = bindSizes(out.forwardProgram, layer, inputs, c.layer, hyper).values;
  for (const auto *values : {&hyper, &out.sizes})
    for (const auto &[name, e] : *values) {
      if (e->kind == ExprKind::IntImm) out.variables[name] = static_cast<double>(e->intValue);
      if (e->kind == ExprKind::FloatImm) out.variables[name] = e->floatValue;
      if (e->kind == ExprKind::BoolImm) out.variables[name] = e->boolValue;
    }
  out.variables["distributed"] = 0;
  out.variables[kRandomSeed] = 12345;

  const Program &lowered = out.forward.front().program; // every parameter and buffer, enabled or not
  ReferenceInterpreter shapes(lowered, out.variables);
  for (TensorRole role : {TensorRole::Param, TensorRole::Buffer})
    for (const std::string &name : lowered.namesWithRole(role)) {
      std::vector<int64_t> shape = shapes.shape(name);
      std::vector<double> v = valuesOf(randomTensor(shape, seed++));
      for (double &x : v) x = 1 + x / 2;
      out.given[name] = v;
    }
  return out;
}

// What `p` computes from `given`: every tensor once it has run.
Values evaluate(const Program &p, const std::map<std::string, double> &variables, const Values &given) {
  ReferenceInterpreter in(p, variables);
  for (const TensorDecl &t : p.tensors)
    if (!p.definitionOf(t.name) && given.count(t.name)) in.setTensor(t.name, given.at(t.name));
  in.run();
  return in.tensors();
}

// Each output and gradient of `before` is one of `after` with the same values (to 1e-12 of
// the larger of their largest magnitudes); updated buffers are compared where both update
// them (evaluation mode drops the updates).
void expectSameResults(const Program &before, const Values &x, const Program &after, const Values &y,
                       const std::string &what) {
  for (const TensorDecl &t : before.tensors) {
    if (t.role != TensorRole::Output && t.role != TensorRole::Update) continue;
    auto a = x.find(t.name), b = y.find(t.name);
    if (b == y.end() || !after.tensor(t.name)) {
      if (t.role == TensorRole::Output) ADD_FAILURE() << what << ": output " << t.name << " is gone";
      continue;
    }
    ASSERT_NE(a, x.end()) << what << ": " << t.name << " has no values before";
    ASSERT_EQ(a->second.size(), b->second.size()) << what << ": " << t.name;
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < a->second.size(); ++i) {
      scale = std::max({scale, std::abs(a->second[i]), std::abs(b->second[i])});
      double d = std::abs(a->second[i] - b->second[i]);
      if (std::isnan(d)) d = INFINITY;
      if (d > worst) worst = d, at = i;
    }
    EXPECT_LE(worst, 1e-12 * scale) << what << ": " << t.name << "[" << at << "] is " << b->second[at]
                                    << ", was " << a->second[at] << "\n"
                                    << printProgram(after);
  }
}

// Each step of `steps` computes what the step before it computed.
void expectStepsKeepValues(const std::vector<Step> &steps, const std::map<std::string, double> &variables,
                           const Values &given) {
  Values before;
  for (size_t i = 0; i < steps.size(); ++i) {
    Values after = evaluate(steps[i].program, variables, given);
    if (i > 0)
      expectSameResults(steps[i - 1].program, before, steps[i].program, after,
                        fmt::format("{} (after {})", steps[i].name, steps[i - 1].name));
    before = std::move(after);
  }
}

// The values the backward program reads: the fused forward program's tensors and a seed per output.
Values backwardInputs(const CompiledCase &c) {
  Values given = evaluate(c.forwardProgram, c.variables, c.given);
  uint64_t seed = 100;
  for (const auto &[output, gradient] : c.seedOf) given[gradient] = valuesOf(randomTensor(
      Shape{static_cast<int64_t>(given.at(output).size())}, seed++));
  return given;
}

} // namespace

TEST(PassSemantics, CasesCoverEveryShippedLayer) {
  std::set<std::string> covered;
  for (const LayerCase &c : oddCases()) covered.insert(c.layer);
  for (const std::string &name : lib()->layerNames()) EXPECT_TRUE(covered.count(name)) << name << " has no case";
}

TEST(PassSemantics, ForwardStepsKeepValues) {
  for (const LayerCase &c : oddCases()) {
    SCOPED_TRACE(describe(c));
    CompiledCase compiled = compileCase(c);
    ASSERT_GT(compiled.forward.size(), 5u);
    expectStepsKeepValues(compiled.forward, compiled.variables, compiled.given);
  }
}

TEST(PassSemantics, BackwardStepsKeepValues) {
  for (const LayerCase &c : oddCases()) {
    SCOPED_TRACE(describe(c));
    CompiledCase compiled = compileCase(c);
    ASSERT_GT(compiled.backward.size(), 5u);
    expectStepsKeepValues(compiled.backward, compiled.variables, backwardInputs(compiled));
  }
}

// The sizes sequence, then lowering's tensor-level steps for each target, on both programs.
TEST(PassSemantics, SizeAndLoweringStepsKeepValues) {
  for (const LayerCase &c : oddCases()) {
    SCOPED_TRACE(describe(c));
    CompiledCase compiled = compileCase(c);
    for (bool backward : {false, true}) {
      const Program &program = backward ? compiled.backwardProgram : compiled.forwardProgram;
      Values given = backward ? backwardInputs(compiled) : compiled.given;
      std::vector<Step> sized = {{"fused", program}};
      Program specialized = recording(sized).specializeSizes(program, compiled.sizes);
      expectStepsKeepValues(sized, compiled.variables, given);
      for (Target target : {Target::CPU, Target::GPU}) {
        std::vector<Step> lowering = {{"sizes specialize", specialized}};
        recording(lowering).lower(specialized, {.target = target});
        expectStepsKeepValues(lowering, compiled.variables, given);
      }
    }
  }
}

// The comparison sees a value that is off by a part in 10^9.
TEST(PassSemantics, AWrongValueFails) {
  CompiledCase compiled = compileCase(oddCases().at(2)); // Softmax
  Step wrong = compiled.forward.back();
  wrong.name = "forward wrong";
  for (Definition &d : wrong.program.defs)
    if (d.tensor == "Y") d.value = d.value * floatImm(1 + 1e-9);
  std::vector<Step> steps = {compiled.forward.back(), wrong};
  EXPECT_NONFATAL_FAILURE(expectStepsKeepValues(steps, compiled.variables, compiled.given), "forward wrong");
}
