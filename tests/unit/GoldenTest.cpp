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

namespace fs = std::filesystem;
using namespace enc;

namespace {

// Hyper-parameters for layers that have no defaults (--set K=V on the command line).
const std::map<std::string, std::map<std::string, std::string>> kIRSettings = {
    {"Encoding", {{"D", "4"}, {"K", "3"}}},
    {"SyncBatchNorm", {{"num_features", "4"}, {"activation", "leaky_relu"}}},
    {"DistSyncBatchNorm", {{"num_features", "4"}}},
    {"Conv2d", {{"in_channels", "4"}, {"out_channels", "6"}, {"kernel_size", "3"}, {"padding", "1"}, {"groups", "2"}}},
    {"UpsampleConv2d", {{"in_channels", "4"}, {"out_channels", "2"}, {"kernel_size", "3"}, {"stride", "2"},
                        {"padding", "1"}, {"scale_factor", "2"}}},
    {"Linear", {{"in_features", "5"}, {"out_features", "3"}}},
    {"MaxPool2d", {{"kernel_size", "3"}, {"stride", "2"}, {"padding", "1"}}},
    {"AvgPool2d", {{"kernel_size", "2"}}},
    {"Inspiration", {{"C", "8"}}},
};

fs::path goldenDir() { return fs::path(ENC_TEST_DIR) / "golden"; }

bool updating() {
  const char *v = std::getenv("ENC_UPDATE_GOLDEN");
  return v && std::string(v) == "1";
}

std::string readText(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeText(const fs::path &p, const std::string &text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

// Sorted stems of dir/*.ext, so test names and order do not depend on the file system.
std::vector<std::string> stems(const std::string &sub, const std::string &ext) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto &entry : fs::directory_iterator(goldenDir() / sub, ec))
    if (entry.path().extension() == ext) out.push_back(entry.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

struct CheckResult {
  std::string rendered;
  size_t diagnostics = 0; // errors and warnings
};

// Checks one file in-process as `encc check NAME.enc` does from inside its directory: the bare
// file name is the SourceFile's name, so the output does not depend on the checkout's path.
CheckResult checkFile(const fs::path &path) {
  std::vector<std::unique_ptr<SourceFile>> files;
  files.push_back(std::make_unique<SourceFile>(path.filename().string(), readText(path)));
  DiagnosticEngine diags;
  auto lib = Library::check(std::move(files), diags); // owns the files the diagnostics point into
  return {diags.render(), diags.diagnostics().size()};
}

// A shipped layer's programs as `encc emit` shows them: a training pass, hyper-parameters
// (kIRSettings) folded before fusion, input sizes symbolic.
struct ShippedPrograms {
  ir::Pipeline pipeline;
  ir::Program forward;
  ir::Gradient backward;

  explicit ShippedPrograms(const std::string &layerName) {
    static auto lib = Library::shipped();
    const LayerSymbols &sym = lib->get(layerName);
    auto it = kIRSettings.find(layerName);
    std::map<std::string, std::string> settings;
    if (it != kIRSettings.end()) settings = it->second;
    auto hyper = resolveHyperParams(sym, settings, /*allowMissing=*/true);
    hyper["training"] = ir::boolImm(true);
    forward = pipeline.forward(sym, hyper);
    backward = pipeline.backward(sym, forward, hyper);
  }
};

std::string renderIR(const std::string &layerName) { return ir::printProgram(ShippedPrograms(layerName).forward); }

std::string renderGrad(const std::string &layerName) {
  return ir::printProgram(ShippedPrograms(layerName).backward.program);
}

std::string renderLoops(const std::string &layerName) {
  ShippedPrograms p(layerName);
  std::string out;
  for (ir::Target target : {ir::Target::CPU, ir::Target::GPU})
    for (bool backward : {false, true}) {
      out += fmt::format("# ---- {} {} ----\n", target == ir::Target::CPU ? "cpu" : "gpu", backward ? "backward" : "forward");
      out += ir::printLoops(p.pipeline.lower(backward ? p.backward.program : p.forward, {.target = target}));
    }
  return out;
}

// The printed stages of shipped layers that have golden files: directory, extension, renderer.
struct Stage {
  const char *kind, *ext;
  std::string (*render)(const std::string &layer);
};
const Stage kStages[] = {{"ir", ".ir", renderIR}, {"grad", ".grad", renderGrad}, {"loops", ".loops", renderLoops}};

std::vector<std::string> splitLines(const std::string &s) {
  std::vector<std::string> lines;
  std::stringstream ss(s);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  return lines;
}

// A line diff (longest common subsequence): "  same", "- expected only", "+ actual only".
std::string lineDiff(const std::string &expected, const std::string &actual) {
  std::vector<std::string> a = splitLines(expected), b = splitLines(actual);
  std::vector<std::vector<size_t>> lcs(a.size() + 1, std::vector<size_t>(b.size() + 1, 0));
  for (size_t i = a.size(); i-- > 0;)
    for (size_t j = b.size(); j-- > 0;)
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  std::string out = "--- expected\n+++ actual\n";
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && j < b.size() && a[i] == b[j]) {
      out += "  " + a[i++] + "\n";
      ++j;
    } else if (i < a.size() && (j == b.size() || lcs[i + 1][j] >= lcs[i][j + 1])) {
      out += "- " + a[i++] + "\n";
    } else {
      out += "+ " + b[j++] + "\n";
    }
  }
  if (!expected.empty() && expected.back() != '\n') out += "(expected output has no final newline)\n";
  return out;
}

// Compares with the expected file, or rewrites it under ENC_UPDATE_GOLDEN=1.
void compareOrUpdate(const fs::path &expectedPath, const std::string &actual) {
  if (updating()) {
    if (!fs::exists(expectedPath) || readText(expectedPath) != actual) {
      writeText(expectedPath, actual);
      std::cout << "updated " << expectedPath.string() << "\n";
    }
    return;
  }
  ASSERT_TRUE(fs::exists(expectedPath)) << expectedPath.string()
                                        << " is missing; run with ENC_UPDATE_GOLDEN=1 to create it from:\n"
                                        << actual;
  std::string expected = readText(expectedPath);
  if (expected != actual)
    ADD_FAILURE() << "output differs from " << expectedPath.string()
                  << " (ENC_UPDATE_GOLDEN=1 accepts the new output):\n"
                  << lineDiff(expected, actual);
}

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
