// Recursive-descent parser for .enc files. Reports syntax errors and recovers at
// statement and declaration boundaries so one run shows several errors.
#pragma once

#include "dsl/AST.h"
#include "dsl/Diagnostics.h"

namespace enc {

ast::Module parse(const SourceFile &file, DiagnosticEngine &diags);

} // namespace enc
