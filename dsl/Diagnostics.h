// Diagnostics for .enc source: "file:line:col: error: message", the source line,
// a caret under the culprit, then optional notes and a hint.
#pragma once

#include "dsl/Source.h"
#include "support/Error.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace enc {

enum class Severity { Error, Warning, Note };

struct Diagnostic {
  Severity severity = Severity::Error;
  SourceLoc loc;
  std::string message;
  std::string hint;
  // Secondary locations ("note: first defined here").
  std::vector<std::pair<SourceLoc, std::string>> notes;
};

// A .enc file (or a network's expansion) that does not check: carries the rendered diagnostics.
class CompileError : public Error {
public:
  explicit CompileError(std::string diagnostics) : Error(std::move(diagnostics)) {}
};

class DiagnosticEngine {
public:
  Diagnostic &error(SourceLoc loc, std::string message, std::string hint = {});
  Diagnostic &warning(SourceLoc loc, std::string message, std::string hint = {});

  bool hasErrors() const { return errorCount_ > 0; }
  int errorCount() const { return errorCount_; }
  const std::vector<Diagnostic> &diagnostics() const { return diags_; }

  // All diagnostics rendered, followed by "N error(s) generated." when there were errors.
  std::string render() const;
  static std::string render(const Diagnostic &d);

private:
  std::vector<Diagnostic> diags_;
  int errorCount_ = 0;
};

} // namespace enc
