// The compiler's pipeline: one table of pass sequences that docs/compiler.md shows, and broken IR
// caught by the verifier after a pass as an internal error that names the pass and the layer.
#include "CliTestSupport.h"
#include "SmallProgram.h"

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
