// `encc emit --print-after=PASS` (and `all`) prints the IR after the named passes; an unknown name is an
// error that says where the names are; --print-pipeline prints the table.
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

} // namespace
