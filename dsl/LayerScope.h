// What sema knows about one layer while it checks it: the symbols declared so far and the
// names they use. Both checkers share it: the layer checker (dsl/Sema.cpp) declares into it,
// the statement checker (dsl/StatementChecker.h) reads it and records what a statement defines.
// It lives as long as the layer's check.
#pragma once

#include "dsl/AST.h"
#include "dsl/Diagnostics.h"
#include "dsl/Sema.h"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace enc::sema {

using ast::Expr;
using Type = ast::Expr::Type;
using Ref = ast::Expr::Ref;

struct LayerScope {
  LayerScope(ast::Layer &layer, DiagnosticEngine &diags);

  ast::Layer &decl;
  DiagnosticEngine &diags;
  LayerSymbols syms;
  std::map<std::string, SourceLoc> names; // every name declared at layer level
  std::map<std::string, int64_t> enumerators;
  std::set<std::string> poisoned;        // tensors whose definition had errors: don't cascade
  std::set<std::string> updated;         // buffers with an update statement
  std::set<const Expr *> badSizes;       // shape dimensions already reported: no ranges from them
  std::string_view forwardText;          // the forward block's text when it has syntax errors

  TensorSymbol *findTensor(const std::string &name);
  // Whether the text of a forward block with syntax errors has a statement 'name[...] =' or
  // 'name =' that is not in the AST.
  bool definedByDroppedStatement(const std::string &name) const;
  // "a hyper-parameter", "a size", "an enumerator", "an input", ... or "" for a fresh name.
  std::string whatIs(const std::string &name);
  // A tensor whose name is a likely typo of `name`: equal ignoring case, or at most one edit
  // away (two for longer names).
  const TensorSymbol *closestTensor(const std::string &name) const;
  bool isSize(const std::string &name) const;
  // Declares a layer-level name; a name declared twice is an error noting the first.
  bool declareName(const ast::Name &n, const char *what);
  static Type hyperParamType(const ast::HyperParam &hp);

  // int2 hyper-parameters: `kernel_size[0]` is one component; the bare name is an error.
  bool isPair(const std::string &name) const;
  bool pairWithoutComponent(const Expr &e);
  Type pairComponent(Expr &e);
};

} // namespace enc::sema
