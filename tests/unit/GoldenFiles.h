// What the golden suites share: the expected files under tests/golden/, the shipped layers' printed
// stages rendered as `encc emit` prints them, and the comparison that ENC_UPDATE_GOLDEN=1 turns into
// rewriting the expected file.
#pragma once

#include "compiler/HyperParams.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "dsl/Diagnostics.h"
#include "runtime/Library.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace enc::testing {

namespace fs = std::filesystem;

// Hyper-parameters for layers that have no defaults (--set K=V on the command line).
inline const std::map<std::string, std::map<std::string, std::string>> kIRSettings = {
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

inline fs::path goldenDir() { return fs::path(ENC_TEST_DIR) / "golden"; }

inline bool updating() {
  const char *v = std::getenv("ENC_UPDATE_GOLDEN");
  return v && std::string(v) == "1";
}

inline std::string readText(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void writeText(const fs::path &p, const std::string &text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

// Sorted stems of dir/*.ext, so test names and order do not depend on the file system.
inline std::vector<std::string> stems(const std::string &sub, const std::string &ext) {
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
inline CheckResult checkFile(const fs::path &path) {
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

inline std::string renderIR(const std::string &layerName) { return ir::printProgram(ShippedPrograms(layerName).forward); }

inline std::string renderGrad(const std::string &layerName) {
  return ir::printProgram(ShippedPrograms(layerName).backward.program);
}

inline std::string renderLoops(const std::string &layerName) {
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
inline const Stage kStages[] = {{"ir", ".ir", renderIR}, {"grad", ".grad", renderGrad}, {"loops", ".loops", renderLoops}};

inline std::vector<std::string> splitLines(const std::string &s) {
  std::vector<std::string> lines;
  std::stringstream ss(s);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  return lines;
}

// A line diff (longest common subsequence): "  same", "- expected only", "+ actual only".
inline std::string lineDiff(const std::string &expected, const std::string &actual) {
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
inline void compareOrUpdate(const fs::path &expectedPath, const std::string &actual) {
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

} // namespace enc::testing
