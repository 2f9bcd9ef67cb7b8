// Sema's checks of one statement: its target, the ranges of its indices, and every expression
// in it, with what they need while the statement is checked (the indices bound so far, the
// reductions met). One checker checks one statement; one made for no statement checks an
// expression outside any (a condition, an initializer's arguments, a requirement, a shape).
#pragma once

#include "dsl/LayerScope.h"

#include <map>
#include <string>
#include <vector>

namespace enc::sema {

class StatementChecker {
public:
  explicit StatementChecker(LayerScope &layer) : layer_(layer) {}

  // Checks `s` and records what it defines in the layer's scope.
  void check(ast::Statement &s);
  // Annotates `e` with its type and what its names refer to; returns the type.
  Type checkExpr(Expr &e);
  // A shape dimension: integer arithmetic over integer hyper-parameters, constants and, where
  // allowed, sizes taken from the inputs.
  bool checkSizeExpr(Expr &e, bool allowSizes, const char *where);

private:
  // What one index variable of the statement is known to range over.
  struct IndexInfo {
    SourceLoc loc;
    bool free = false;
    const Expr *extent = nullptr;
    std::string extentFrom; // "dimension 1 of X"
    SourceLoc extentLoc;
    bool reported = false;
  };

  LayerScope &layer_;
  const ast::Statement *current_ = nullptr; // null outside a statement
  std::map<std::string, IndexInfo> indices_;
  std::vector<std::string> visible_; // index names visible now
  std::vector<Expr *> reductions_;
  int reductionDepth_ = 0;     // reductions enclosing the expression being checked
  bool readsPoisoned_ = false; // reads a tensor whose definition had errors

  void constrain(const std::string &var, const Expr *extent, std::string from, SourceLoc loc);
  static bool readsTensor(const Expr &e, const std::string &name);
  void bindQuietly(const Expr &e);
  bool inScope(const std::string &n) const;
  Type checkExprImpl(Expr &e);
  Type checkIdent(Expr &e);
  Type checkAccess(Expr &e);
  void markReported(const Expr &access);
  Type checkCall(Expr &e);
  Type checkReduce(Expr &e);
  Type checkBinary(Expr &e);
};

} // namespace enc::sema
