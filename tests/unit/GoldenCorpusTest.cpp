// The golden corpus itself (tests/golden/): enough error cases, covering enough different diagnostics,
// each with its expectation, and every stage of every shipped layer with its golden file.
#include "GoldenFiles.h"

#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <set>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::testing;

namespace {

// The first error of a file with its names, numbers and quoted text blanked out, so that
// "unknown tensor 'W'" and "unknown tensor 'V'" count as one kind of message.
std::string firstErrorKind(const std::string &rendered) {
  static const std::regex errorLine(R"(^[^:\n]*:\d+:\d+: error: (.*)$)");
  for (const std::string &line : splitLines(rendered)) {
    std::smatch m;
    if (std::regex_match(line, m, errorLine)) {
      std::string msg = std::regex_replace(m[1].str(), std::regex(R"('[^']*')"), "'_'");
      return std::regex_replace(msg, std::regex(R"(\d+)"), "N");
    }
  }
  return "";
}

// Keeps the corpus from shrinking unnoticed: enough files, and enough different first errors.
TEST(GoldenCorpus, ErrorsCoverManyDiagnostics) {
  std::vector<std::string> files = stems("errors", ".enc");
  EXPECT_GE(files.size(), 30u) << "tests/golden/errors/ should hold at least 30 error cases";
  std::set<std::string> kinds;
  for (const std::string &s : files) {
    std::string kind = firstErrorKind(checkFile(goldenDir() / "errors" / (s + ".enc")).rendered);
    EXPECT_NE(kind, "") << s << ".enc produces no error";
    kinds.insert(kind);
  }
  EXPECT_GE(kinds.size(), 25u) << "the error cases should cover at least 25 distinct first-error messages";
  // Every case has its expectation, and no expectation is left without its case.
  for (const std::string &s : stems("errors", ".expected"))
    EXPECT_TRUE(std::count(files.begin(), files.end(), s))
        << "errors/" << s << ".expected has no " << s << ".enc";
}

TEST(GoldenCorpus, EveryShippedLayerHasEveryStage) {
  for (const Stage &stage : kStages) {
    std::vector<std::string> have = stems(stage.kind, stage.ext);
    for (const std::string &layer : Library::shipped()->layerNames()) {
      if (std::count(have.begin(), have.end(), layer)) continue;
      if (updating()) compareOrUpdate(goldenDir() / stage.kind / (layer + stage.ext), stage.render(layer));
      else ADD_FAILURE() << "shipped layer " << layer << " has no tests/golden/" << stage.kind << "/" << layer
                         << stage.ext << "; run with ENC_UPDATE_GOLDEN=1 to create it";
    }
  }
}

} // namespace
