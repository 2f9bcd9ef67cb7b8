// Turns .enc text into tokens. Newlines end statements, except inside (...) and [...].
#pragma once

#include "dsl/Diagnostics.h"
#include "dsl/Token.h"

#include <vector>

namespace enc {

std::vector<Token> lex(const SourceFile &file, DiagnosticEngine &diags);

} // namespace enc
