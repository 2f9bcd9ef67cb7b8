// 16-bit storage: after accumulateInComputeType no kernel of a shipped layer accumulates into a 16-bit
// buffer.
#include "Fold64Layer.h"
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
