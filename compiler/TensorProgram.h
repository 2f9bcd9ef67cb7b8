// The tensor IR of one layer: every tensor defined once, element-wise over an index domain.
//   T[i, j] = value        (value may hold at most one top-level reduction after HoistReductions)
#pragma once

#include "compiler/IR.h"
#include "dsl/Sema.h"
#include "support/NamedList.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc::ir {

struct TensorDecl {
  std::string name;
  TensorRole role;
  std::vector<Expr> shape;
  SourceLoc loc;
};

// A program's tensor declarations in order, found by name through an index (NamedList.h):
// passes look tensors up per definition, and an expanded network declares tens of thousands.
using TensorDecls = NamedList<TensorDecl>;

struct IndexVar {
  std::string name;
  Expr extent;
};

struct Definition {
  std::string tensor;
  std::vector<IndexVar> indices;
  Expr value;
  SourceLoc loc;
  // Scatter form (from autodiff, where an index map cannot be inverted): when not empty,
  // `value` over `indices` is added to tensor[scatter] after the tensor's own definition.
  std::vector<Expr> scatter;
  bool isScatter() const { return !scatter.empty(); }
};

// A variable that kernels read but that is fixed before they run.
struct SizeParam {
  std::string name;
  Type type;
  VarKind kind; // Size (int) or Param (float/bool hyper-parameter)
};

// `require condition` of the layer: must hold once hyper-parameters and sizes are known.
struct Requirement {
  Expr condition;
  SourceLoc loc;
  std::string text; // as written
};

// `recover X[i..] = value where condition` of a layer's forward block: X (an input or an
// intermediate) as an expression of tensors the forward pass keeps anyway (its output), which
// the backward pass reads in place of keeping X, where `condition` (hyper-parameters) holds:
// in-place activated batch norm keeps only its output. Applied by recoverFromOutputs.
struct Recovery {
  Definition def; // def.tensor is X
  Expr condition;
};

struct Program {
  std::string layer;
  const SourceFile *source = nullptr;
  TensorDecls tensors;
  std::vector<Definition> defs;
  std::vector<SizeParam> sizes; // every Size/Param variable the program may mention
  std::vector<Requirement> requirements;
  std::map<std::string, std::string> updates; // Update tensor -> the buffer it replaces
  std::vector<Recovery> recoveries;

  const TensorDecl *tensor(const std::string &name) const;
  // `base`, or base2, base3, ...: the first that names no tensor yet (a pass's new temporary).
  std::string unusedTensorName(const std::string &base) const;
  const Definition *definitionOf(const std::string &name) const;
  std::vector<std::string> namesWithRole(TensorRole role) const;
};

// The index variables a rewrite sees at some node: the definition's, then those of the
// reductions around the node (innermost last).
using IndexScope = std::vector<std::pair<std::string, Expr>>;
// The variables named in `names` as `scope` binds them, in scope order; a name bound twice
// (shadowed) counts once, with its innermost extent.
std::vector<IndexVar> boundIndices(const IndexScope &scope, const std::set<std::string> &names);

std::string printProgram(const Program &p);
// Names of the tensors some definition of p reads.
std::set<std::string> tensorsRead(const Program &p);
// Names of the tensors a definition (its value and scatter indices) or an expression reads.
std::set<std::string> tensorsRead(const Definition &d);
std::set<std::string> tensorsRead(const Expr &e);

} // namespace enc::ir
