// A set of checked .enc layers: the shipped library or the layers of one file.
#pragma once

#include "dsl/AST.h"
#include "dsl/Diagnostics.h"
#include "dsl/Sema.h"
#include "support/Error.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace enc {

class Library {
public:
  // Parses and checks; throws CompileError with every diagnostic on failure.
  static std::shared_ptr<const Library> fromSource(std::string name, std::string text);
  static std::shared_ptr<const Library> fromFile(const std::string &path);
  // The text of a .enc file, as every reader of one gets it: enc::Error when `path` is a
  // directory or cannot be read.
  static std::string readSource(const std::string &path);
  // Every shipped layers/*.enc, from shippedDir().
  static std::shared_ptr<const Library> shipped();
  // $ENC_LAYER_PATH if set, else chooseLayerDir for the running program.
  static std::string shippedDir();

  // Parses and checks without throwing: diagnostics (errors and warnings) land in `diags`.
  static std::shared_ptr<const Library> check(std::vector<std::unique_ptr<SourceFile>> files, DiagnosticEngine &diags);

  const LayerSymbols *find(const std::string &layer) const;
  // A layer a network of this library names as a sub-layer: its own, else a shipped one.
  const LayerSymbols *findSubLayer(const std::string &layer) const;
  // find(), or an Error listing the layers there are.
  const LayerSymbols &get(const std::string &layer) const;
  std::vector<std::string> layerNames() const;

private:
  bool shipped_ = false;
  mutable std::mutex preludeMutex_;
  mutable std::shared_ptr<const Library> prelude_; // the shipped layers, loaded when first needed
  std::vector<std::unique_ptr<SourceFile>> files_;
  std::vector<ast::Module> modules_;
  std::vector<CheckedModule> checked_;
};

// Where a program finds the shipped layers: one of the build tree `buildDir` uses the source
// tree's `sourceLayers`; any other (an installed encc, a program linked against the installed
// package) the installed copy when there is one, else the source tree's.
std::string chooseLayerDir(const std::string &program, const std::string &buildDir, const std::string &sourceLayers,
                           const std::string &installedLayers);

} // namespace enc
