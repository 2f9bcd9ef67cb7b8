// The compiler's pipeline: one table of pass sequences that docs/compiler.md shows, `encc emit`
// printing exactly what a Layer compiles, --print-after, and the verifier catching broken IR
// as an internal error that names the pass.
#include "CliTestSupport.h"

#include "compiler/Pipeline.h"
#include "compiler/Verifier.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/InternalError.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::testing;

namespace {

// The block of docs/compiler.md between the pipeline markers.
std::string documentedPipeline() {
  std::string doc = slurp(fs::path(ENC_TEST_DIR) / ".." / "docs" / "compiler.md");
  const std::string begin = "<!-- pipeline: begin -->\n```\n", end = "```\n<!-- pipeline: end -->";
  size_t b = doc.find(begin), e = doc.find(end);
  if (b == std::string::npos || e == std::string::npos || e < b) return "<no pipeline block in docs/compiler.md>";
  return doc.substr(b + begin.size(), e - b - begin.size());
}

TEST(Pipeline, DocsShowTheTableThePipelineRuns) {
  EXPECT_EQ(documentedPipeline(), ir::Pipeline::describe())
      << "update docs/compiler.md with `encc emit --print-pipeline`";
}

TEST(Pipeline, EveryPassHasAName) {
  for (const ir::PassInfo &p : ir::Pipeline::passes()) {
    EXPECT_TRUE(ir::Pipeline::isPassName(p.name));
    EXPECT_TRUE(*p.why) << p.name;
  }
  EXPECT_TRUE(ir::Pipeline::isPassName("all"));
  EXPECT_FALSE(ir::Pipeline::isPassName("factorSum"));
}

struct LayerRun {
  std::string layer;
  std::map<std::string, std::string> settings;
  Shape input;
  std::vector<std::string> sizes; // encc emit --size arguments for that input
};

// A layer run forward and backward on the CPU; `encc emit --emit=loops` with the same
// hyper-parameters and sizes must print the loop programs it ran, character for character.
class EmitMatchesLayer : public CliTest, public ::testing::WithParamInterface<LayerRun> {};

TEST_P(EmitMatchesLayer, LoopsAreWhatTheLayerRan) {
  const LayerRun &c = GetParam();
  Layer layer(Library::shipped(), c.layer, c.settings);
  Tensor x(DType::F32, c.input);
  for (int64_t i = 0; i < x.numel(); ++i) x.set(i, 0.25 * static_cast<double>(i % 7) - 0.5);
  std::map<std::string, Tensor> outputs = layer.forward({{"X", x}});
  std::map<std::string, Tensor> seeds;
  for (const auto &[name, y] : outputs) {
    Tensor g(DType::F32, y.shape());
    for (int64_t i = 0; i < g.numel(); ++i) g.set(i, 0.125 * static_cast<double>(i % 5));
    seeds[name] = g;
  }
  layer.backward(seeds);

  std::string args = fmt::format("emit --emit=loops --layer {}", c.layer);
  for (const auto &[k, v] : c.settings) args += fmt::format(" --set {}", quote(k + "=" + v));
  for (const std::string &s : c.sizes) args += " --size " + s;
  CliResult forward = encc(args);
  ASSERT_EQ(forward.status, 0) << forward;
  EXPECT_EQ(forward.out, ir::printLoops(layer.lastForwardLoops()));
  CliResult backward = encc(args + " --backward");
  ASSERT_EQ(backward.status, 0) << backward;
  EXPECT_EQ(backward.out, ir::printLoops(layer.lastBackwardLoops()));
}

INSTANTIATE_TEST_SUITE_P(
    ShippedLayers, EmitMatchesLayer,
    ::testing::Values(LayerRun{"Encoding", {{"D", "4"}, {"K", "3"}}, {2, 4, 5, 5}, {"B=2", "N=25"}},
                      LayerRun{"SyncBatchNorm", {{"num_features", "3"}}, {4, 3, 6, 6}, {"B=4", "L=36"}},
                      LayerRun{"Conv2d",
                               {{"in_channels", "2"}, {"out_channels", "3"}, {"kernel_size", "3"}, {"padding", "1"}},
                               {2, 2, 6, 6},
                               {"B=2", "H=6", "W=6"}},
                      LayerRun{"GramMatrix", {}, {2, 3, 4, 4}, {"B=2", "C=3", "H=4", "W=4"}}),
    [](const auto &info) { return info.param.layer; });

class PrintAfter : public CliTest {};

TEST_F(PrintAfter, ShowsTheIRAfterTheNamedPass) {
  CliResult r = encc("emit --emit=ir --layer Encoding --print-after=factorSums");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.err, "# ---- after factorSums (forward, layer Encoding) ----")) << r;
  EXPECT_FALSE(contains(r.err, "after hoistReductions")) << r;
  // The program after factorSums still has the sum hoistReductions later gives a temporary.
  EXPECT_TRUE(contains(r.err, "Y[b<B, k<K, d<D] = sum(i: A[b, k, i] * X[b, d, i]) + codewords[k, d] * (-1.0 * sum(")) << r;
}

TEST_F(PrintAfter, AllShowsEveryPassOfEverySequenceRun) {
  CliResult r = encc("emit --emit=loops --backward --layer GramMatrix --size B=2 --size C=3 --size H=4 --size W=4 "
                     "--print-after=all");
  ASSERT_EQ(r.status, 0) << r;
  for (const char *step : {"after lowerLayer (forward", "after factorSums (forward", "after differentiate (backward",
                           "after dropCenteredSums (backward", "after specialize (sizes",
                           "after splitColumnReductions (lower", "after lowerToLoops (lower",
                           "after accumulateInComputeType (lower"})
    EXPECT_TRUE(contains(r.err, step)) << step << "\n" << r;
}

TEST_F(PrintAfter, AnUnknownPassIsAnErrorThatSaysWhereTheNamesAre) {
  CliResult r = encc("emit --layer Encoding --print-after=factorSum");
  expectFailure(r, {"--print-after factorSum", "--print-pipeline"});
}

TEST_F(PrintAfter, PrintPipelineListsTheTable) {
  CliResult r = encc("emit --print-pipeline");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(r.out, ir::Pipeline::describe());
}

// A one-definition program: Y[i] = X[i] over i < 4.
ir::Program smallProgram() {
  ir::Program p;
  p.layer = "Small";
  p.tensors = {{"X", TensorRole::Input, {ir::intImm(4)}, {}}, {"Y", TensorRole::Output, {ir::intImm(4)}, {}}};
  ir::Expr i = ir::var("i", ir::Type::Int, ir::VarKind::Index);
  p.defs.push_back({"Y", {{"i", ir::intImm(4)}}, ir::access("X", {i}), {}, {}});
  return p;
}

TEST(Verifier, AcceptsAWellFormedProgramAndItsLoops) {
  EXPECT_NO_THROW(ir::verifyProgram(smallProgram(), {.oneReductionPerDefinition = true}));
  EXPECT_NO_THROW(ir::verifyLoops(ir::lowerToLoops(smallProgram(), ir::Target::CPU)));
  EXPECT_NO_THROW(ir::verifyLoops(ir::lowerToLoops(smallProgram(), ir::Target::GPU)));
}

// Runs `fn`, expects an InternalError (not a user's enc::Error), returns its message.
template <typename Fn> std::string internalErrorOf(Fn fn) {
  try {
    fn();
  } catch (const InternalError &e) {
    return e.message();
  } catch (const std::exception &e) {
    ADD_FAILURE() << "not an InternalError: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(Verifier, RejectsBrokenTensorIR) {
  ir::Program unbound = smallProgram();
  unbound.defs[0].value = ir::access("X", {ir::var("j", ir::Type::Int, ir::VarKind::Index)});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(unbound); }), "unbound index j"));

  ir::Program arity = smallProgram();
  ir::Expr i = ir::var("i", ir::Type::Int, ir::VarKind::Index);
  arity.defs[0].value = ir::access("X", {i, i});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(arity); }), "with 2 indices"));

  ir::Program undeclared = smallProgram();
  undeclared.defs[0].value = ir::access("Z", {i});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(undeclared); }), "undeclared tensor 'Z'"));

  ir::Program extent = smallProgram();
  extent.defs[0].indices[0].extent = ir::intImm(5);
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(extent); }), "runs to 5"));

  ir::Program twoSums = smallProgram();
  ir::Expr s = ir::reduce(ir::ReduceOp::Sum, {{"r", ir::intImm(4)}},
                          ir::access("X", {ir::var("r", ir::Type::Int, ir::VarKind::Index)}));
  twoSums.defs[0].value = s + s * ir::access("X", {i});
  EXPECT_NO_THROW(ir::verifyProgram(twoSums));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(twoSums, {.oneReductionPerDefinition = true}); }),
                       "2 reductions"));
}

TEST(Verifier, RejectsBrokenLoopIR) {
  ir::LoopProgram loops = ir::lowerToLoops(smallProgram(), ir::Target::CPU);
  ir::LoopProgram intoInput = loops;
  intoInput.kernels[0].body = ir::store("X", ir::intImm(0), ir::floatImm(1), {});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(intoInput); }), "not one of its outputs"));

  ir::LoopProgram unbound = loops;
  unbound.kernels[0].body =
      ir::store("Y", ir::var("q", ir::Type::Int, ir::VarKind::Local), ir::floatImm(1), {});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(unbound); }), "unbound variable q"));

  ir::LoopProgram gpuLoopOnCpu = loops;
  gpuLoopOnCpu.kernels[0].body = ir::forLoop("t", ir::intImm(4), ir::ForKind::GpuThreads, {});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(gpuLoopOnCpu); }), "gpu_threads for"));

  // A barrier must be reached by every thread of the block alike: inside gpu_block_threads,
  // not under a condition, and that loop must have one iteration per thread.
  ir::LoopProgram gpu = ir::lowerToLoops(smallProgram(), ir::Target::GPU);
  auto withBody = [&](ir::Stmt body) {
    ir::LoopProgram p = gpu;
    p.kernels[0].body = std::move(body);
    return p;
  };
  auto threads = [](int64_t n, std::vector<ir::Stmt> body) {
    return ir::forLoop("_t", ir::intImm(n), ir::ForKind::GpuBlockThreads, std::move(body));
  };
  EXPECT_NO_THROW(ir::verifyLoops(withBody(threads(256, {ir::barrier()}))));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(withBody(ir::barrier())); }), "barrier"));
  auto conditional = withBody(threads(256, {ir::ifThen(ir::boolImm(true), {ir::barrier()})}));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(conditional); }), "barrier"));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(withBody(threads(100, {}))); }), "gpu_block_threads"));
  auto sharedOnCpu = loops;
  sharedOnCpu.kernels[0].body = ir::sharedAlloc("s", 4);
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(sharedOnCpu); }), "shared array"));
}

// A broken program handed to the pipeline fails verification after its first pass, and the
// error names that pass and the layer.
TEST(Pipeline, AnInternalErrorNamesThePassAndTheLayer) {
  ir::Program broken = smallProgram();
  broken.defs[0].value = ir::access("Z", {ir::var("i", ir::Type::Int, ir::VarKind::Index)});
  ir::Pipeline::Instrumentation verify;
  verify.verifyEach = true;
  try {
    ir::Pipeline(verify).lower(broken, {.target = ir::Target::CPU});
    FAIL() << "no error";
  } catch (const InternalError &e) {
    EXPECT_EQ(e.pass(), "splitColumnReductions");
    EXPECT_EQ(e.layer(), "Small");
    EXPECT_TRUE(contains(e.render(), "internal compiler error in splitColumnReductions compiling layer Small")) << e.render();
    EXPECT_TRUE(contains(e.render(), "please report")) << e.render();
  }
}

} // namespace
