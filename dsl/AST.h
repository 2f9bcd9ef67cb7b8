// The syntax tree of a .enc file, as the parser builds it (no meaning attached yet).
#pragma once

#include "dsl/Source.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace enc::ast {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Name {
  std::string text;
  SourceLoc loc;
};

struct Expr {
  enum class Kind {
    IntLit,   // 3
    FloatLit, // 1e-5
    BoolLit,  // true
    Ident,    // K, b, eps
    Access,   // X[b, d, i]          name = tensor, args = indices
    Call,     // exp(x), select(c, a, b)   name = function, args
    Reduce,   // sum(i, j: body)     name = operator, vars, args[0] = body
    Unary,    // -x, !c              op, args[0]
    Binary,   // a + b               op, args[0], args[1]
  };
  Kind kind;
  SourceLoc loc;
  std::string name;       // identifier, tensor, function or reduction
  std::string op;         // operator spelling for Unary/Binary
  int64_t intValue = 0;
  double floatValue = 0;
  bool boolValue = false;
  std::vector<ExprPtr> args;
  std::vector<Name> vars; // Reduce only
  // Call: `name=` of each argument, "" where positional (named arguments are for sub-layers:
  // Conv2d(in_channels=C, ...) and calls of sub-layers with several inputs).
  std::vector<Name> argNames;
  std::vector<ExprPtr> varBounds; // Reduce: `kh < K` gives kh the range K (null where not given)
  SourceLoc nameLoc;      // the name token of Access/Call/Reduce

  // ---- filled in by sema ----
  // Implicit: the implicit bools `training` and `distributed`; Constant: `inf` (floatValue).
  enum class Ref { None, HyperParam, EnumValue, SizeSymbol, IndexVar, Tensor, Implicit, Constant } ref = Ref::None;
  enum class Type { Unknown, Int, Float, Bool } type = Type::Unknown;
  int64_t enumValue = 0;                     // EnumValue: position in its enumeration; int2 component
  std::vector<const Expr *> varExtents;      // Reduce: the extent of each of `vars`

  Expr(Kind k, SourceLoc l) : kind(k), loc(l) {}
};

// int, float, bool, or an enumeration {none, leaky_relu}.
struct HyperParamType {
  enum class Kind { Int, Float, Bool, Enum, Int2 } kind = Kind::Int;
  std::vector<Name> enumerators;
};

struct HyperParam {
  Name name;
  HyperParamType type;
  SourceLoc typeLoc;
  ExprPtr defaultValue;  // may be null
  ExprPtr defaultSecond; // int2 written as a pair: (3, 5)
};

// One dimension of a declared shape. `N...` (variadic) takes all trailing dimensions of an input.
// In an input, `N...` (variadic) takes all trailing dimensions and `A...(n)` exactly n of
// them (n an integer expression of hyper-parameters); in an output, `N...` expands to what
// the input's N collapsed.
struct Dim {
  ExprPtr size;
  bool variadic = false;
  ExprPtr count; // A...(n)
};

struct TensorDecl {
  Name name;
  std::vector<Dim> dims;
  ExprPtr init;      // params and buffers: uniform(a, b), zeros, ...
  ExprPtr condition; // params and buffers: `where bias` (exists only when it holds)
  SourceLoc loc;
  bool shapeOmitted = false; // a network's output written without a shape: its definition gives it
};

// `require condition`: checked when the layer is created (hyper-parameters) or run (sizes).
struct Requirement {
  ExprPtr condition;
  SourceLoc loc;
};

// target[indices] = value [where guard]
struct Statement {
  Name target;
  // (A, B) = head(X) in a network: the tensors after the first, one per output of the
  // sub-layer called (target is the first).
  std::vector<Name> moreTargets;
  std::vector<ExprPtr> indices;
  ExprPtr value;
  ExprPtr guard;
  SourceLoc loc;
  bool update = false;       // buffer[c] <- value: the buffer's new value after a training pass
  // recover X[b, c] = value where condition: X (an input or intermediate) as an expression of
  // what the forward pass keeps anyway, which a backward pass reads instead of keeping X;
  // `guard` is the condition (hyper-parameters) under which that holds.
  bool recover = false;
  std::vector<ExprPtr> shape; // T[i, j]: [S0, S1] = ...: declared shape of an intermediate
  // filled in by sema: the extent of each index on the left side
  std::vector<const Expr *> indexExtents;
};

struct Forward {
  SourceLoc loc;
  std::vector<TensorDecl> inputs;
  std::vector<TensorDecl> outputs;
  std::vector<Statement> statements;
  std::vector<Requirement> requirements;
  SourceLoc closeLoc;
};

// A sub-layer of a network, declared at layer level:
//   conv1 = Conv2d(in_channels=C, out_channels=planes, kernel_size=3)
//   downsample = [Conv2d(...), SyncBatchNorm(...)] where downsample     a sequence: downsample.0, .1
//   layer1 = [BasicBlock(inplanes=select(i == 0, C, planes), planes=planes) for i < N]
// Each item is a Call of a layer's name with hyper-parameter arguments (expressions of the
// network's hyper-parameters and of the repetition index).
struct SubLayer {
  Name name;
  std::vector<ExprPtr> items;
  bool sequence = false; // written [ ... ]: called in order, each item's output the next one's input
  Name repeatVar;        // [Item for i < count]: `count` items, i = 0 .. count-1
  ExprPtr repeatCount;
  ExprPtr condition;     // `where cond`: exists only when it holds
  SourceLoc loc;
};

struct Layer {
  Name name;
  std::vector<SubLayer> subLayers; // non-empty: the layer is a network
  std::vector<HyperParam> hyperParams;
  std::vector<TensorDecl> params;
  std::vector<TensorDecl> buffers;
  std::unique_ptr<Forward> forward;
  // `backward { ... }`: hand-written gradients instead of derived ones (no inputs/outputs).
  std::unique_ptr<Forward> backward;
  std::vector<Requirement> requirements;
  SourceLoc loc;
  bool forwardFailed = false; // a forward block that did not parse: its absence is not a second error
};

struct Module {
  std::vector<std::unique_ptr<Layer>> layers;
};

// An indented tree, for `encc emit --emit=ast`.
std::string printAST(const Module &m);
std::string printExpr(const Expr &e); // source-like text, fully parenthesized where it matters

} // namespace enc::ast
