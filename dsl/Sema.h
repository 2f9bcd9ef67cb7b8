// Semantic checks of a parsed .enc module: names, types, shapes and index ranges.
// Sema annotates the AST in place (Expr::ref/type, extents of every index) and returns
// a symbol table per layer; the compiler lowers the annotated AST to the tensor IR.
#pragma once

#include "dsl/AST.h"
#include "dsl/Diagnostics.h"
#include "support/NamedList.h"

#include <map>
#include <string>
#include <vector>

namespace enc {

// Update: the new value of a buffer (buffer[...] <- value), stored back after a training pass.
// GradSeed: grad_Y, the gradient of an output, given to a hand-written backward block;
// GradOut: grad_X, the gradient of an input or parameter, which that block defines.
enum class TensorRole { Input, Param, Buffer, Output, Temp, Update, GradSeed, GradOut };
const char *roleName(TensorRole r);

struct TensorSymbol {
  std::string name;
  TensorRole role;
  // Size expressions (AST nodes owned by the declarations); for a variadic input the
  // last entry stands for the product of all trailing dimensions.
  std::vector<const ast::Expr *> shape;
  bool variadic = false; // the last dimension collapses all trailing ones (inputs) / expands (outputs)
  SourceLoc loc;
  const ast::Statement *definition = nullptr; // outputs and temporaries
  bool inBackward = false;                    // declared by or for a hand-written backward block
  // Inputs and outputs, per dimension: written N... (outputs expand those back), and the n
  // of A...(n) (null where there is none).
  std::vector<bool> expands;
  std::vector<const ast::Expr *> counts;
};

// A size known only from an input's shape, such as B or N.
struct SizeSymbol {
  std::string name;
  SourceLoc loc;
  std::string input; // first input whose shape names it
  int dim = 0;
};

struct LayerSymbols {
  const ast::Layer *layer = nullptr;
  // A layer with sub-layers: its forward block is checked once the sub-layers are expanded
  // with the hyper-parameters' values (compiler/ExpandNetwork.h), not here.
  bool network = false;
  std::vector<SizeSymbol> sizes;
  std::vector<const ast::Statement *> updates;          // buffer[...] <- value, in order
  std::vector<const ast::Statement *> recoveries;       // recover X[...] = value where condition
  std::vector<const ast::Requirement *> requirements; // layer-level first, then the forward block's
  NamedList<TensorSymbol> tensors; // params, buffers, inputs, outputs, then temporaries in order
  const TensorSymbol *find(const std::string &name) const;
  const ast::HyperParam *hyperParam(const std::string &name) const;
};

struct CheckedModule {
  std::vector<LayerSymbols> layers; // same order as the module's layers
  const LayerSymbols *find(const std::string &name) const;
};

// Checks every layer; problems go to `diags`. The result is meaningful only without errors.
CheckedModule check(ast::Module &module, DiagnosticEngine &diags);

// Text of a size expression as written ("H * W"), used to compare extents.
std::string sizeText(const ast::Expr &e);

} // namespace enc
