// Hyper-parameter values of a layer instance, from `--set K=V` text or the API.
#pragma once

#include "compiler/IR.h"
#include "dsl/Sema.h"

#include <map>
#include <string>

namespace enc {

// Parses `settings` (name -> text) against the layer's hyper-parameters, fills in defaults,
// and returns every hyper-parameter as a constant. Throws Error for an unknown name, a value
// of the wrong type, or a missing value without a default.
std::map<std::string, ir::Expr> resolveHyperParams(const LayerSymbols &layer,
                                                   const std::map<std::string, std::string> &settings,
                                                   bool allowMissing = false);

} // namespace enc
