// Expressions shared by the tensor IR and the loop IR (as in Halide, one Expr type serves
// every stage; Access and Reduce only appear in the tensor IR, Load only in the loop IR).
// Nodes are immutable and shared; passes build new trees.
#pragma once

#include "dsl/Source.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace enc::ir {

enum class Type : uint8_t { Int, Float, Bool };
const char *typeName(Type t);

enum class ExprKind : uint8_t { IntImm, FloatImm, BoolImm, Var, Access, Load, Unary, Binary, Call, Select, Reduce, Cast };

// What a variable stands for.
enum class VarKind : uint8_t {
  Size,  // an integer known before a kernel runs: a hyper-parameter or a size from an input shape
  Param, // a float or bool hyper-parameter
  Index, // an index variable of a definition, reduction or loop
  Local, // a local scalar of the loop IR (accumulators, decoded indices)
};

enum class BinOp : uint8_t { Add, Sub, Mul, Div, Mod, Pow, Min, Max, Lt, Le, Gt, Ge, Eq, Ne, And, Or };
enum class UnOp : uint8_t { Neg, Not };
enum class ReduceOp : uint8_t { Sum, Max, Min, Prod };

const char *binOpSpelling(BinOp op);
const char *reduceOpName(ReduceOp op);

struct ExprNode;
using Expr = std::shared_ptr<const ExprNode>;

struct ReduceVar {
  std::string name;
  Expr extent;
};

struct ExprNode {
  ExprKind kind;
  Type type;
  int64_t intValue = 0;
  double floatValue = 0;
  bool boolValue = false;
  std::string name; // Var, Access/Load (tensor), Call (function)
  VarKind varKind = VarKind::Index;
  BinOp binOp = BinOp::Add;
  UnOp unOp = UnOp::Neg;
  ReduceOp reduceOp = ReduceOp::Sum;
  std::vector<Expr> args;        // operands; Access: indices; Load: [flat index]; Select: cond, then, else
  std::vector<ReduceVar> rvars;  // Reduce: the reduced variables; args[0] is the body
  SourceLoc loc;
};

// ---- constructors (fold constants and promote Int to Float where mixed) ----------------------------
Expr intImm(int64_t v);
Expr floatImm(double v);
Expr boolImm(bool v);
Expr var(std::string name, Type type, VarKind kind);
Expr indexVar(std::string name); // an Int variable of kind Index
Expr access(std::string tensor, std::vector<Expr> indices, SourceLoc loc = {});
Expr load(std::string buffer, Expr flatIndex);
Expr unary(UnOp op, Expr a);
Expr binary(BinOp op, Expr a, Expr b);
Expr call(std::string fn, std::vector<Expr> args);
Expr select(Expr cond, Expr a, Expr b);
Expr reduce(ReduceOp op, std::vector<ReduceVar> vars, Expr body);
Expr cast(Type t, Expr a);

inline Expr operator+(Expr a, Expr b) { return binary(BinOp::Add, std::move(a), std::move(b)); }
inline Expr operator-(Expr a, Expr b) { return binary(BinOp::Sub, std::move(a), std::move(b)); }
inline Expr operator*(Expr a, Expr b) { return binary(BinOp::Mul, std::move(a), std::move(b)); }
inline Expr operator/(Expr a, Expr b) { return binary(BinOp::Div, std::move(a), std::move(b)); }
inline Expr operator%(Expr a, Expr b) { return binary(BinOp::Mod, std::move(a), std::move(b)); }

bool isConst(const Expr &e, int64_t *value = nullptr);
// The identity element of a reduction, e.g. 0 for sum, -inf for max.
Expr reduceIdentity(ReduceOp op, Type t);

// ---- traversal ----------------------------------------------------------------------------------
// Pre-order walk; return false from fn to skip a node's children.
void visit(const Expr &e, const std::function<bool(const Expr &)> &fn);
// Post-order rebuild: fn sees each node after its children were rebuilt and may return a
// replacement (or nullptr to keep it). Unchanged subtrees are shared, not copied.
Expr mutate(const Expr &e, const std::function<Expr(const Expr &)> &fn);
// The same node over new operands (rebuilt through the folding constructors).
Expr withArgs(const Expr &e, std::vector<Expr> args);
// Replaces variables by name.
Expr substitute(const Expr &e, const std::function<Expr(const std::string &name, VarKind kind)> &lookup);
// Replaces the Index variables named in `values`.
Expr substituteIndices(const Expr &e, const std::map<std::string, Expr> &values);
// `name` if no name in `taken` is it, else its stem (trailing digits dropped) with the first
// number 1, 2, ... that makes it new (_acc -> _acc1, _acc1 -> _acc2); the result is added to `taken`.
std::string freshName(const std::string &name, std::set<std::string> &taken);
// Names in use, for a pass that renames many statements apart: fresh() gives what freshName
// gives, but remembers for each stem the number it stopped at (names are only ever added, so
// every number below it stays taken), and the thousandth clash of one name costs one lookup
// rather than a thousand.
class TakenNames {
public:
  bool contains(const std::string &name) const { return names_.count(name) != 0; }
  void insert(const std::string &name) { names_.insert(name); }
  std::string fresh(const std::string &name);

private:
  std::set<std::string> names_;
  std::map<std::string, int> next_; // stem -> the first number that may be free
};
// e with the Index variables a and b exchanged (a symmetric contraction's transposed element).
Expr swapIndices(const Expr &e, const std::string &a, const std::string &b);

// Whether some node of e satisfies pred (stops at the first).
bool anyNode(const Expr &e, const std::function<bool(const Expr &)> &pred);
// Whether e reads the variable `name` (of any kind).
bool mentionsVar(const Expr &e, const std::string &name);
// Whether e reads the variable `name` of kind `kind`.
bool mentionsVar(const Expr &e, const std::string &name, VarKind kind);
bool containsReduce(const Expr &e);
// The first Reduce node of e in pre-order (a definition's main reduction after hoisting).
const ExprNode *firstReduce(const Expr &e);
// The factors of a float product: x * y gives the factors of both, x / y those of x and
// 1 / y, -x the factor -1 and those of x.
std::vector<Expr> productFactors(const Expr &e);
// The product of `factors`, left to right (1 for none): productFactors' inverse.
Expr product(const std::vector<Expr> &factors);
// Names of Index variables used and not bound inside e, in first-use order.
std::vector<std::string> freeIndexVars(const Expr &e);
// A rough count of arithmetic work, for fusion decisions (transcendentals weigh more).
int costOf(const Expr &e);
bool structurallyEqual(const Expr &a, const Expr &b);

// An integer operation without a 64-bit value, which folding leaves unfolded and code would
// compute as undefined behaviour: a division or remainder by the constant 0, or an operation on
// constants whose result overflows (2^62 * 4, -(-2^63), 2 ^ -1).
struct UndefinedArithmetic {
  Expr op;
  std::string why; // "divides by zero", "is too large: its value does not fit in 64 bits", ...
  bool overflow;   // not a division by zero
  // What the user can do about it.
  std::string hint() const;
};
// The first such operation in e (pre-order), if any.
std::optional<UndefinedArithmetic> undefinedArithmetic(const Expr &e);

// Source-like text: "X[b, d, i] - codewords[k, d]".
std::string print(const Expr &e);

} // namespace enc::ir
