// Golden tests: exact expected output, one test per file under tests/golden/.
//   errors/NAME.enc  checked in-process; the rendered diagnostics must equal errors/NAME.expected
//   ok/NAME.enc      must check with no diagnostics at all
//   ir/LAYER.ir      the tensor IR of the shipped layer LAYER, as `encc emit --emit=ir --layer LAYER`
//                    prints it (with the --set values of kIRSettings below)
//   grad/LAYER.grad  its backward program, as `encc emit --emit=grad` prints it
//   loops/LAYER.loops  the loop IR of its forward and backward passes for the CPU and the GPU,
//                    as `encc emit --emit=loops [--backward] [--target gpu]` print it
//
// To accept new output after an intended change, run the tests with ENC_UPDATE_GOLDEN=1: every
// expected file (errors/*.expected, ir/*.ir, ..., including missing ones) is rewritten from the
// actual output instead of failing. Review the result with `git diff tests/golden` before
// committing it.
#include "GoldenFiles.h"

#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/HyperParams.h"
#include "runtime/Library.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace enc;

namespace {

using namespace enc::testing;

struct GoldenFile {
  std::string kind; // errors, ok or ir
  std::string stem;
};

void PrintTo(const GoldenFile &g, std::ostream *os) { *os << g.kind << "/" << g.stem; }

std::vector<GoldenFile> goldenFiles(const std::string &kind, const std::string &ext) {
  std::vector<GoldenFile> out;
  for (const std::string &s : stems(kind, ext)) out.push_back({kind, s});
  return out;
}

std::string testName(const ::testing::TestParamInfo<GoldenFile> &info) {
  std::string name = info.param.stem;
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

class Golden : public ::testing::TestWithParam<GoldenFile> {};

TEST_P(Golden, Matches) {
  const GoldenFile &g = GetParam();
  fs::path dir = goldenDir() / g.kind;
  if (g.kind == "errors") {
    std::string actual = checkFile(dir / (g.stem + ".enc")).rendered;
    EXPECT_NE(actual, "") << "no diagnostics: an error case must produce at least one error";
    compareOrUpdate(dir / (g.stem + ".expected"), actual);
  } else if (g.kind == "ok") {
    CheckResult r = checkFile(dir / (g.stem + ".enc"));
    EXPECT_EQ(r.diagnostics, 0u) << "a valid program must check without any diagnostic:\n" << r.rendered;
  } else {
    for (const Stage &stage : kStages)
      if (g.kind == stage.kind) compareOrUpdate(dir / (g.stem + stage.ext), stage.render(g.stem));
  }
}

INSTANTIATE_TEST_SUITE_P(Errors, Golden, ::testing::ValuesIn(goldenFiles("errors", ".enc")), testName);
INSTANTIATE_TEST_SUITE_P(Ok, Golden, ::testing::ValuesIn(goldenFiles("ok", ".enc")), testName);
INSTANTIATE_TEST_SUITE_P(IR, Golden, ::testing::ValuesIn(goldenFiles("ir", ".ir")), testName);
INSTANTIATE_TEST_SUITE_P(Grad, Golden, ::testing::ValuesIn(goldenFiles("grad", ".grad")), testName);
INSTANTIATE_TEST_SUITE_P(Loops, Golden, ::testing::ValuesIn(goldenFiles("loops", ".loops")), testName);

} // namespace
