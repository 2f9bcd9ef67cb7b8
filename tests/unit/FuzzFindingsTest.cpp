// What the fuzzers (fuzz/, scripts/fuzz.sh) found, each as the smallest input that showed it.
// Some findings are undefined behaviour that only the sanitizers report: those tests fail in the
// sanitizer build (scripts/test.sh --sanitize, which CI runs on these suites).
#include "compiler/HyperParams.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace enc {
namespace {

// What the front end's fuzzer does with a layer: defaults, a network expanded, forward and
// backward built, every input size 3, both lowered for the CPU with the IR verified.
void lowerForCpu(const std::string &text, const std::string &layerName) {
  auto lib = Library::fromSource("finding.enc", text);
  const LayerSymbols &layer = lib->get(layerName);
  std::map<std::string, ir::Expr> hyper = resolveHyperParams(layer, {});
  hyper["training"] = ir::boolImm(true);
  const LayerInstance instance = instantiateLayer(*lib, layer, hyper);
  ir::Pipeline::Instrumentation instrumentation;
  instrumentation.verifyEach = true;
  const ir::Pipeline pipeline(instrumentation);
  const ir::Program forward = pipeline.forward(*instance.symbols, hyper);
  std::map<std::string, ir::Expr> sizes;
  for (const ir::SizeParam &p : forward.sizes)
    if (p.kind == ir::VarKind::Size && !hyper.count(p.name)) sizes[p.name] = ir::intImm(3);
  pipeline.lower(pipeline.specializeSizes(forward, sizes),
                 {.target = ir::Target::CPU, .types = ir::forwardStorage(forward, ir::ElemType::F32)});
  const ir::Gradient g = pipeline.backward(*instance.symbols, forward, hyper);
  pipeline.lower(pipeline.specializeSizes(g.program, sizes),
                 {.target = ir::Target::CPU, .types = ir::backwardStorage(g, forward, ir::ElemType::F32)});
}

// A sum of products into a scalar (the loss of a network): lowering for the CPU moved an
// output index for parallelism on an empty index list (begin() + 1 of an empty vector: UBSan's
// "applying non-zero offset to null pointer").
TEST(FuzzFindings, ScalarContractionLowersForTheCpu) {
  const std::string text = R"(
layer MLP(hidden: int = 16) {
  fc1 = Linear(in_features=2, out_features=hidden)
  bn = SyncBatchNorm(num_features=hidden)
  fc2 = Linear(in_features=hidden, out_features=2)
  loss = CrossEntropyLoss()
  forward(X: [B, 2], T: [B]) -> (Loss, Logits) {
    Logits = fc2(relu(bn(fc1(X))))
    Loss = loss(Logits, T)
  }
}
)";
  EXPECT_NO_THROW(lowerForCpu(text, "MLP"));
}

} // namespace
} // namespace enc
