// Recursive-descent parser for .enc files. Reports syntax errors and recovers at
// statement and declaration boundaries so one run shows several errors.
#pragma once

#include "dsl/AST.h"
#include "dsl/Diagnostics.h"

namespace enc {

// The deepest an expression may nest. Brackets, calls, reductions, unary operators and each
// operator of a chain (a + b + c is two levels) count as levels. Every stage after the parser
// (sema, lowering, autodiff, the IR passes, code generation) walks expressions recursively, so
// this bound is what keeps their stack use bounded; deeper text is an error with its location.
constexpr int kMaxExpressionDepth = 256;

ast::Module parse(const SourceFile &file, DiagnosticEngine &diags);

} // namespace enc
