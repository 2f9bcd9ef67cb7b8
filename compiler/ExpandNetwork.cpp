#include "compiler/ExpandNetwork.h"

#include "compiler/HyperParams.h"
#include "compiler/Passes.h"
#include "dsl/Diagnostics.h"
#include "support/Error.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <set>

namespace enc {
namespace {

using ast::Expr;
using ast::ExprPtr;
using Kind = ast::Expr::Kind;
using Ref = ast::Expr::Ref;

// Thrown after the diagnostic is reported: expansion stops at its first error.
struct ExpansionFailed {};

// ---- building AST -------------------------------------------------------------------------------

ExprPtr clone(const Expr &e) {
  auto c = std::make_unique<Expr>(e.kind, e.loc);
  c->name = e.name;
  c->op = e.op;
  c->intValue = e.intValue;
  c->floatValue = e.floatValue;
  c->boolValue = e.boolValue;
  c->vars = e.vars;
  c->argNames = e.argNames;
  c->nameLoc = e.nameLoc;
  for (const ExprPtr &a : e.args) c->args.push_back(clone(*a));
  for (const ExprPtr &b : e.varBounds) c->varBounds.push_back(b ? clone(*b) : nullptr);
  return c;
}

ExprPtr intLit(int64_t v, SourceLoc loc) {
  if (v < 0) {
    auto u = std::make_unique<Expr>(Kind::Unary, loc);
    u->op = "-";
    u->args.push_back(intLit(v == INT64_MIN ? INT64_MAX : -v, loc));
    return u;
  }
  auto e = std::make_unique<Expr>(Kind::IntLit, loc);
  e->intValue = v;
  return e;
}

ExprPtr floatLit(double v, SourceLoc loc) {
  if (std::signbit(v)) {
    auto u = std::make_unique<Expr>(Kind::Unary, loc);
    u->op = "-";
    u->args.push_back(floatLit(-v, loc));
    return u;
  }
  if (std::isinf(v)) {
    auto e = std::make_unique<Expr>(Kind::Ident, loc);
    e->name = "inf";
    return e;
  }
  auto e = std::make_unique<Expr>(Kind::FloatLit, loc);
  e->floatValue = v;
  return e;
}

ExprPtr boolLit(bool v, SourceLoc loc) {
  auto e = std::make_unique<Expr>(Kind::BoolLit, loc);
  e->boolValue = v;
  return e;
}

ExprPtr ident(std::string name, SourceLoc loc) {
  auto e = std::make_unique<Expr>(Kind::Ident, loc);
  e->name = std::move(name);
  return e;
}

ExprPtr binary(std::string op, ExprPtr a, ExprPtr b) {
  auto e = std::make_unique<Expr>(Kind::Binary, SourceLoc::join(a->loc, b->loc));
  e->op = std::move(op);
  e->args.push_back(std::move(a));
  e->args.push_back(std::move(b));
  return e;
}

ExprPtr access(std::string tensor, std::vector<ExprPtr> indices, SourceLoc loc) {
  auto e = std::make_unique<Expr>(Kind::Access, loc);
  e->name = std::move(tensor);
  e->nameLoc = loc;
  e->args = std::move(indices);
  return e;
}

// ---- canonical sizes ----------------------------------------------------------------------------
// A size as sum(coefficient * atom) + constant; atoms are size names and what is not linear
// (`(H - 1) // 2`, `H * W`), keyed by their text. Equal sizes written differently get one form
// where the difference is linear or a division that cancels.
struct Size {
  std::map<std::string, std::pair<int64_t, std::shared_ptr<const Expr>>> terms;
  int64_t constant = 0;

  bool isConstant() const { return terms.empty(); }
};

int64_t checkedAdd(int64_t a, int64_t b, SourceLoc loc);
int64_t checkedMul(int64_t a, int64_t b, SourceLoc loc);

[[noreturn]] void sizeTooLarge(SourceLoc loc) {
  throw Error(fmt::format("{}: a size is too large: its value does not fit in 64 bits", loc.where()),
              "use smaller hyper-parameters");
}
int64_t checkedAdd(int64_t a, int64_t b, SourceLoc loc) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) sizeTooLarge(loc);
  return r;
}
int64_t checkedMul(int64_t a, int64_t b, SourceLoc loc) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) sizeTooLarge(loc);
  return r;
}
int64_t floorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
int64_t floorMod(int64_t a, int64_t b) { return a - floorDiv(a, b) * b; }

ExprPtr toExpr(const Size &s, SourceLoc loc);

Size atom(ExprPtr e) {
  Size s;
  std::string key = ast::printExpr(*e);
  s.terms[key] = {1, std::shared_ptr<const Expr>(std::move(e))};
  return s;
}

Size scaled(Size s, int64_t k, SourceLoc loc) {
  if (k == 0) return {};
  for (auto &[key, term] : s.terms) term.first = checkedMul(term.first, k, loc);
  s.constant = checkedMul(s.constant, k, loc);
  return s;
}

Size sum(Size a, const Size &b, SourceLoc loc) {
  for (const auto &[key, term] : b.terms) {
    auto [it, inserted] = a.terms.emplace(key, term);
    if (!inserted) {
      it->second.first = checkedAdd(it->second.first, term.first, loc);
      if (it->second.first == 0) a.terms.erase(it);
    }
  }
  a.constant = checkedAdd(a.constant, b.constant, loc);
  return a;
}

// `e` is integer arithmetic on literals and size names (hyper-parameters already substituted).
Size canonical(const Expr &e) {
  switch (e.kind) {
  case Kind::IntLit: {
    Size s;
    s.constant = e.intValue;
    return s;
  }
  case Kind::Ident: return atom(ident(e.name, e.loc));
  case Kind::Unary:
    if (e.op == "-") return scaled(canonical(*e.args[0]), -1, e.loc);
    break;
  case Kind::Binary: {
    Size a = canonical(*e.args[0]), b = canonical(*e.args[1]);
    if (e.op == "+") return sum(std::move(a), b, e.loc);
    if (e.op == "-") return sum(std::move(a), scaled(std::move(b), -1, e.loc), e.loc);
    if (e.op == "*") {
      if (b.isConstant()) return scaled(std::move(a), b.constant, e.loc);
      if (a.isConstant()) return scaled(std::move(b), a.constant, e.loc);
      ExprPtr x = toExpr(a, e.loc), y = toExpr(b, e.loc);
      if (ast::printExpr(*y) < ast::printExpr(*x)) std::swap(x, y);
      return atom(binary("*", std::move(x), std::move(y)));
    }
    if ((e.op == "//" || e.op == "%") && b.isConstant() && b.constant > 0) {
      int64_t d = b.constant;
      bool divisible = true;
      for (const auto &[key, term] : a.terms) divisible &= term.first % d == 0;
      if (divisible) {
        if (e.op == "%") {
          Size s;
          s.constant = floorMod(a.constant, d);
          return s;
        }
        for (auto &[key, term] : a.terms) term.first /= d;
        a.constant = floorDiv(a.constant, d);
        return a;
      }
      return atom(binary(e.op, toExpr(a, e.loc), intLit(d, e.loc)));
    }
    if (e.op == "//" || e.op == "%") return atom(binary(e.op, toExpr(a, e.loc), toExpr(b, e.loc)));
    break;
  }
  case Kind::Call:
    if ((e.name == "min" || e.name == "max") && e.args.size() == 2) {
      Size a = canonical(*e.args[0]), b = canonical(*e.args[1]);
      if (a.isConstant() && b.isConstant()) {
        Size s;
        s.constant = e.name == "min" ? std::min(a.constant, b.constant) : std::max(a.constant, b.constant);
        return s;
      }
      auto c = std::make_unique<Expr>(Kind::Call, e.loc);
      c->name = e.name;
      c->args.push_back(toExpr(a, e.loc));
      c->args.push_back(toExpr(b, e.loc));
      return atom(std::move(c));
    }
    if (e.name == "select" && e.args.size() == 3 && e.args[0]->kind == Kind::BoolLit)
      return canonical(*e.args[e.args[0]->boolValue ? 1 : 2]);
    break;
  default: break;
  }
  return atom(clone(e)); // not arithmetic on sizes (sema reports what is wrong with it)
}

ExprPtr toExpr(const Size &s, SourceLoc loc) {
  ExprPtr out;
  for (const auto &[key, term] : s.terms) {
    auto [k, a] = term;
    int64_t mag = k < 0 ? -k : k;
    ExprPtr t = mag == 1 ? clone(*a) : binary("*", intLit(mag, loc), clone(*a));
    if (!out) {
      if (k < 0) {
        auto u = std::make_unique<Expr>(Kind::Unary, loc);
        u->op = "-";
        u->args.push_back(std::move(t));
        t = std::move(u);
      }
      out = std::move(t);
    } else {
      out = binary(k < 0 ? "-" : "+", std::move(out), std::move(t));
    }
  }
  if (!out) return intLit(s.constant, loc);
  if (s.constant > 0) out = binary("+", std::move(out), intLit(s.constant, loc));
  if (s.constant < 0) out = binary("-", std::move(out), intLit(-s.constant, loc));
  return out;
}

std::string text(const Size &s) { return ast::printExpr(*toExpr(s, {})); }

std::string shapeText(const std::vector<Size> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + text(shape[i]);
  return out + "]";
}

// ---- values of hyper-parameter expressions ------------------------------------------------------
struct Value {
  enum class Kind { Int, Float, Bool, Enum, Pair } kind = Kind::Int;
  int64_t i = 0, j = 0; // Int; Enum: position; Pair: both components
  double f = 0;
  bool b = false;
  std::string name; // Enum: the enumerator; empty for a bare enumerator not yet resolved

  double number() const { return kind == Kind::Float ? f : static_cast<double>(i); }
  // Settings text, as `--set` takes it.
  std::string settingText() const {
    switch (kind) {
    case Kind::Int: return std::to_string(i);
    case Kind::Float: return fmt::format("{}", f);
    case Kind::Bool: return b ? "true" : "false";
    case Kind::Enum: return name;
    case Kind::Pair: return fmt::format("{},{}", i, j);
    }
    return "";
  }
};

Value intValue(int64_t v) { return {Value::Kind::Int, v}; }
Value floatValue(double v) {
  Value x{Value::Kind::Float};
  x.f = v;
  return x;
}
Value boolValue(bool v) {
  Value x{Value::Kind::Bool};
  x.b = v;
  return x;
}

// ---- the expander -------------------------------------------------------------------------------

// A sub-layer inlined at one call: how its names map to the flat layer's.
struct Inlining {
  const LayerSymbols *callee = nullptr;
  std::map<std::string, ir::Expr> values;             // the callee's hyper-parameters
  std::map<std::string, std::string> tensors;         // callee tensor -> flat tensor
  std::map<std::string, std::vector<Size>> sizes;     // callee size -> the caller's dimensions
  std::set<std::string> variadics;                    // sizes that stand for several (L of L..., A of A...(n))
  std::set<std::string> reserved;                     // flat names an index must not take
};

// A statement's index variables that stand for several dimensions, and their new names.
using IndexExpansion = std::map<std::string, std::vector<std::string>>;

class Expander {
public:
  Expander(const LayerSymbols &net, const std::map<std::string, ir::Expr> &hyper, const LayerLookup &lookup,
           DiagnosticEngine &diags)
      : net_(net), hyper_(hyper), lookup_(lookup), diags_(diags) {}

  std::unique_ptr<ast::Layer> run() {
    const ast::Layer &src = *net_.layer;
    out_ = std::make_unique<ast::Layer>();
    out_->name = src.name;
    out_->loc = src.loc;
    for (const ast::HyperParam &hp : src.hyperParams) {
      ast::HyperParam c;
      c.name = hp.name;
      c.type = hp.type;
      c.typeLoc = hp.typeLoc;
      if (hp.defaultValue) c.defaultValue = clone(*hp.defaultValue);
      if (hp.defaultSecond) c.defaultSecond = clone(*hp.defaultSecond);
      out_->hyperParams.push_back(std::move(c));
    }
    for (const ast::Requirement &r : src.requirements) out_->requirements.push_back(networkRequirement(r));
    for (const ast::TensorDecl &p : src.params) out_->params.push_back(networkState(p));
    for (const ast::TensorDecl &b : src.buffers) out_->buffers.push_back(networkState(b));
    for (const ast::SubLayer &s : src.subLayers) subLayers_[s.name.text] = &s;

    const ast::Forward &f = *src.forward;
    fwd_ = std::make_unique<ast::Forward>();
    fwd_->loc = f.loc;
    fwd_->closeLoc = f.closeLoc;
    for (const ast::TensorDecl &in : f.inputs) {
      ast::TensorDecl d;
      d.name = in.name;
      d.loc = in.loc;
      shapes_[in.name.text] = networkShape(in.dims, d.dims);
      for (const ast::Dim &dim : in.dims)
        if (dim.size->kind == Kind::Ident && !hyper_.count(dim.size->name)) sizeNames_.insert(dim.size->name);
      fwd_->inputs.push_back(std::move(d));
    }
    for (const ast::TensorDecl &o : f.outputs) {
      outputs_[o.name.text] = &o;
      if (!o.shapeOmitted) {
        std::vector<Size> shape;
        for (const ast::Dim &dim : o.dims) shape.push_back(canonical(*networkExpr(*dim.size)));
        declaredOutputs_[o.name.text] = std::move(shape);
      }
    }
    for (const ast::Requirement &r : f.requirements) fwd_->requirements.push_back(networkRequirement(r));
    for (const ast::Statement &s : f.statements) networkStatement(s);
    for (const ast::TensorDecl &o : f.outputs) {
      ast::TensorDecl d;
      d.name = o.name;
      d.loc = o.loc;
      auto it = shapes_.find(o.name.text);
      if (it == shapes_.end() && declaredOutputs_.count(o.name.text)) it = declaredOutputs_.find(o.name.text);
      if (it == shapes_.end()) {
        diags_.error(o.loc, fmt::format("output '{}' is never defined", o.name.text),
                     fmt::format("add a statement '{} = ...' to the forward block", o.name.text));
        throw ExpansionFailed{};
      }
      for (const Size &s : it->second) {
        ast::Dim nd;
        nd.size = toExpr(s, o.loc);
        d.dims.push_back(std::move(nd));
      }
      fwd_->outputs.push_back(std::move(d));
    }
    out_->forward = std::move(fwd_);
    return std::move(out_);
  }

private:
  const LayerSymbols &net_;
  const std::map<std::string, ir::Expr> &hyper_;
  const LayerLookup &lookup_;
  DiagnosticEngine &diags_;
  std::unique_ptr<ast::Layer> out_;
  std::unique_ptr<ast::Forward> fwd_;
  std::map<std::string, const ast::SubLayer *> subLayers_;
  std::map<std::string, std::vector<Size>> shapes_;          // flat tensors whose shape is known
  std::map<std::string, std::vector<Size>> declaredOutputs_; // the network's outputs, as declared
  std::map<std::string, const ast::TensorDecl *> outputs_;
  std::set<std::string> sizeNames_;   // the network's input sizes
  std::set<std::string> declaredState_; // parameters and buffers declared so far (shared sub-layers)
  std::set<std::string> updatedBy_;     // sub-layer paths whose buffer updates were inlined
  std::map<std::string, int> calls_;    // calls of each sub-layer path so far
  int temps_ = 0;
  std::vector<std::pair<SourceLoc, std::string>> context_; // "in sub-layer ... called here" notes

  Diagnostic &error(SourceLoc loc, std::string message, std::string hint = {}) {
    Diagnostic &d = diags_.error(loc, std::move(message), std::move(hint));
    for (auto it = context_.rbegin(); it != context_.rend(); ++it) d.notes.push_back(*it);
    return d;
  }

  // ---- the network's own text: hyper-parameters by value ----------------------------------------
  Value hyperValue(const std::string &name, SourceLoc loc) const {
    const ast::HyperParam *hp = net_.hyperParam(name);
    if (hp && hp->type.kind == ast::HyperParamType::Kind::Int2) {
      Value v{Value::Kind::Pair};
      ir::isConst(hyper_.at(ir::pairComponentName(name, 0)), &v.i);
      ir::isConst(hyper_.at(ir::pairComponentName(name, 1)), &v.j);
      return v;
    }
    auto it = hyper_.find(name);
    if (it == hyper_.end()) internalError("expandNetwork: hyper-parameter '{}' has no value", name);
    const ir::Expr &e = it->second;
    if (hp && hp->type.kind == ast::HyperParamType::Kind::Enum) {
      Value v{Value::Kind::Enum};
      v.i = e->intValue;
      v.name = hp->type.enumerators.at(static_cast<size_t>(e->intValue)).text;
      return v;
    }
    (void)loc;
    switch (e->kind) {
    case ir::ExprKind::IntImm: return intValue(e->intValue);
    case ir::ExprKind::FloatImm: return floatValue(e->floatValue);
    case ir::ExprKind::BoolImm: return boolValue(e->boolValue);
    default: internalError("expandNetwork: hyper-parameter '{}' is not a constant", name);
    }
  }

  int64_t enumeratorPosition(const std::string &name) const {
    for (const ast::HyperParam &hp : net_.layer->hyperParams)
      if (hp.type.kind == ast::HyperParamType::Kind::Enum)
        for (size_t i = 0; i < hp.type.enumerators.size(); ++i)
          if (hp.type.enumerators[i].text == name) return static_cast<int64_t>(i);
    return -1;
  }

  ExprPtr literal(const Value &v, SourceLoc loc) const {
    switch (v.kind) {
    case Value::Kind::Int:
    case Value::Kind::Enum: return intLit(v.i, loc);
    case Value::Kind::Float: return floatLit(v.f, loc);
    case Value::Kind::Bool: return boolLit(v.b, loc);
    case Value::Kind::Pair: break;
    }
    internalError("expandNetwork: an int2 value where one number is expected");
  }

  // A copy of network text with its hyper-parameters and enumerators replaced by their values.
  ExprPtr networkExpr(const Expr &e) const {
    if (e.kind == Kind::Ident && net_.hyperParam(e.name)) {
      if (net_.hyperParam(e.name)->type.kind == ast::HyperParamType::Kind::Int2) return clone(e); // sema reports it
      return literal(hyperValue(e.name, e.loc), e.loc);
    }
    if (e.kind == Kind::Ident && !isTensorName(e.name) && enumeratorPosition(e.name) >= 0)
      return intLit(enumeratorPosition(e.name), e.loc);
    if (e.kind == Kind::Access && e.args.size() == 1 && e.args[0]->kind == Kind::IntLit && net_.hyperParam(e.name)) {
      Value v = hyperValue(e.name, e.loc);
      if (v.kind == Value::Kind::Pair) return intLit(e.args[0]->intValue == 0 ? v.i : v.j, e.loc);
    }
    ExprPtr c = clone(e);
    c->args.clear();
    for (const ExprPtr &a : e.args) c->args.push_back(networkExpr(*a));
    c->varBounds.clear();
    for (const ExprPtr &b : e.varBounds) c->varBounds.push_back(b ? networkExpr(*b) : nullptr);
    return c;
  }

  bool isTensorName(const std::string &name) const { return shapes_.count(name) || net_.find(name); }

  ast::Requirement networkRequirement(const ast::Requirement &r) const {
    return {networkExpr(*r.condition), r.loc};
  }

  // A declared shape of the network in canonical form, appended to `out` as text too.
  std::vector<Size> networkShape(const std::vector<ast::Dim> &dims, std::vector<ast::Dim> &out) const {
    std::vector<Size> shape;
    for (const ast::Dim &dim : dims) {
      Size s = canonical(*networkExpr(*dim.size));
      ast::Dim nd;
      nd.size = toExpr(s, dim.size->loc);
      out.push_back(std::move(nd));
      shape.push_back(std::move(s));
    }
    return shape;
  }

  ast::TensorDecl networkState(const ast::TensorDecl &d) {
    ast::TensorDecl c;
    c.name = d.name;
    c.loc = d.loc;
    shapes_[d.name.text] = networkShape(d.dims, c.dims);
    if (d.init) c.init = networkExpr(*d.init);
    if (d.condition) c.condition = networkExpr(*d.condition);
    declaredState_.insert(d.name.text);
    return c;
  }

  // Evaluates a network-level constant expression: hyper-parameters, literals, the repetition index.
  Value eval(const Expr &e, const std::map<std::string, int64_t> &locals) {
    auto bad = [&](const std::string &why) -> Value {
      error(e.loc, fmt::format("'{}' is not a constant of the hyper-parameters: {}", ast::printExpr(e), why),
            "a sub-layer's arguments, counts and conditions are computed from the network's hyper-parameters");
      throw ExpansionFailed{};
    };
    switch (e.kind) {
    case Kind::IntLit: return intValue(e.intValue);
    case Kind::FloatLit: return floatValue(e.floatValue);
    case Kind::BoolLit: return boolValue(e.boolValue);
    case Kind::Ident: {
      if (auto it = locals.find(e.name); it != locals.end()) return intValue(it->second);
      if (net_.hyperParam(e.name)) return hyperValue(e.name, e.loc);
      if (e.name == "training") return boolValue(hyper_.count("training") && hyper_.at("training")->boolValue);
      if (e.name == "inf") return floatValue(INFINITY);
      Value v{Value::Kind::Enum}; // an enumerator of the sub-layer's enumeration, resolved by its name
      v.name = e.name;
      v.i = enumeratorPosition(e.name);
      return v;
    }
    case Kind::Access: {
      Value v = eval(*ident(e.name, e.loc), locals);
      if (v.kind != Value::Kind::Pair || e.args.size() != 1 || e.args[0]->kind != Kind::IntLit ||
          e.args[0]->intValue < 0 || e.args[0]->intValue > 1)
        return bad("only an int2's components [0] and [1] can be indexed");
      return intValue(e.args[0]->intValue == 0 ? v.i : v.j);
    }
    case Kind::Unary: {
      Value a = eval(*e.args[0], locals);
      if (e.op == "!") return boolValue(!a.b);
      if (a.kind == Value::Kind::Float) return floatValue(-a.f);
      return intValue(-a.i);
    }
    case Kind::Binary: {
      Value a = eval(*e.args[0], locals), b = eval(*e.args[1], locals);
      const std::string &op = e.op;
      if (op == "&&") return boolValue(a.b && b.b);
      if (op == "||") return boolValue(a.b || b.b);
      if (a.kind == Value::Kind::Enum || b.kind == Value::Kind::Enum) {
        bool same = a.kind == b.kind ? a.name == b.name : a.i == b.i;
        if (op == "==") return boolValue(same);
        if (op == "!=") return boolValue(!same);
        return bad("enumerators compare with == and != only");
      }
      if (a.kind == Value::Kind::Bool || b.kind == Value::Kind::Bool) {
        if (op == "==") return boolValue(a.b == b.b);
        if (op == "!=") return boolValue(a.b != b.b);
        return bad("a condition is not a number");
      }
      bool ints = a.kind == Value::Kind::Int && b.kind == Value::Kind::Int;
      double x = a.number(), y = b.number();
      if (op == "<") return boolValue(x < y);
      if (op == "<=") return boolValue(x <= y);
      if (op == ">") return boolValue(x > y);
      if (op == ">=") return boolValue(x >= y);
      if (op == "==") return boolValue(x == y);
      if (op == "!=") return boolValue(x != y);
      if (op == "/") return floatValue(x / y);
      if (op == "^") return floatValue(std::pow(x, y));
      if (ints) {
        if (op == "+") return intValue(checkedAdd(a.i, b.i, e.loc));
        if (op == "-") return intValue(checkedAdd(a.i, -b.i, e.loc));
        if (op == "*") return intValue(checkedMul(a.i, b.i, e.loc));
        if ((op == "//" || op == "%") && b.i == 0) return bad("division by zero");
        if (op == "//") return intValue(floorDiv(a.i, b.i));
        if (op == "%") return intValue(floorMod(a.i, b.i));
      } else {
        if (op == "+") return floatValue(x + y);
        if (op == "-") return floatValue(x - y);
        if (op == "*") return floatValue(x * y);
      }
      return bad(fmt::format("'{}' needs integers", op));
    }
    case Kind::Call: {
      std::vector<Value> args;
      for (const ExprPtr &a : e.args) args.push_back(eval(*a, locals));
      if (e.name == "select" && args.size() == 3) return args[0].b ? args[1] : args[2];
      if ((e.name == "min" || e.name == "max") && args.size() == 2) {
        bool first = e.name == "min" ? args[0].number() <= args[1].number() : args[0].number() >= args[1].number();
        return first ? args[0] : args[1];
      }
      if (e.name == "float" && args.size() == 1) return floatValue(args[0].number());
      if (e.name == "int" && args.size() == 1) return intValue(static_cast<int64_t>(args[0].number()));
      if (e.name == "sqrt" && args.size() == 1) return floatValue(std::sqrt(args[0].number()));
      return bad(fmt::format("'{}' is not available here", e.name));
    }
    default: return bad("it reads tensors or indices");
    }
  }

  // ---- statements of the network ----------------------------------------------------------------
  static bool isHelper(const std::string &name) {
    return name == "cat" || name == "flatten" || name == "spatial_mean";
  }

  // Whether `e` is about whole tensors: it calls a sub-layer or a shape helper, or names a tensor
  // of rank >= 1 without indices.
  bool isWhole(const Expr &e) const {
    if (e.kind == Kind::Call && (subLayers_.count(e.name) || isHelper(e.name))) return true;
    if (e.kind == Kind::Ident && shapes_.count(e.name) && !shapes_.at(e.name).empty()) return true;
    for (const ExprPtr &a : e.args)
      if (isWhole(*a)) return true;
    return false;
  }

  void emit(ast::Statement s) {
    if (fwd_->statements.size() >= kMaxNetworkStatements) {
      error(s.loc, fmt::format("network '{}' expands to more than {} statements", net_.layer->name.text,
                               kMaxNetworkStatements),
            "use fewer or smaller sub-layers (a smaller repetition count)");
      throw ExpansionFailed{};
    }
    if (!context_.empty()) contexts_.push_back({s.loc, context_});
    fwd_->statements.push_back(std::move(s));
  }

public:
  // The sub-layer calls a statement at `loc` was inlined through ("in sub-layer ... called
  // here" notes), for sema's diagnostics on the expansion; empty for the network's own text.
  std::vector<std::pair<SourceLoc, std::string>> contextOf(SourceLoc loc) const {
    for (const auto &[at, notes] : contexts_)
      if (at.file == loc.file && loc.offset >= at.offset && loc.offset < at.offset + std::max<uint32_t>(at.length, 1))
        return {notes.rbegin(), notes.rend()};
    return {};
  }

private:
  std::vector<std::pair<SourceLoc, std::vector<std::pair<SourceLoc, std::string>>>> contexts_;

  void networkStatement(const ast::Statement &s) {
    if (!s.moreTargets.empty()) {
      outputsStatement(s);
      return;
    }
    if (s.indices.empty() && !s.update && s.shape.empty() && !s.guard && isWhole(*s.value)) {
      wholeStatement(s);
      return;
    }
    ast::Statement c;
    c.target = s.target;
    c.loc = s.loc;
    c.update = s.update;
    for (const ExprPtr &i : s.indices) c.indices.push_back(networkExpr(*i));
    checkNoCalls(*s.value);
    c.value = networkExpr(*s.value);
    if (s.guard) c.guard = networkExpr(*s.guard);
    std::vector<Size> declared;
    for (const ExprPtr &d : s.shape) {
      declared.push_back(canonical(*networkExpr(*d)));
      c.shape.push_back(toExpr(declared.back(), d->loc));
    }
    if (!s.update) {
      if (!declared.empty()) shapes_[s.target.text] = declared;
      else if (auto inferred = inferShape(c)) shapes_[s.target.text] = *inferred;
      if (outputs_.count(s.target.text) && c.shape.empty() && declaredOutputs_.count(s.target.text) == 0 &&
          !shapes_.count(s.target.text)) {
        error(s.target.loc, fmt::format("the shape of output '{}' is not known here", s.target.text),
              fmt::format("declare it, as in {}[...]: [B, C] = ..., or in the forward block's outputs", s.target.text));
        throw ExpansionFailed{};
      }
    }
    emit(std::move(c));
  }

  void checkNoCalls(const Expr &e) {
    if (e.kind == Kind::Call && (subLayers_.count(e.name) || isHelper(e.name))) {
      error(e.loc, fmt::format("'{}' gives a whole tensor: it cannot be indexed inside an element-wise statement",
                               e.name),
            fmt::format("define it first, T = {}(...), then read T[...]", e.name));
      throw ExpansionFailed{};
    }
    for (const ExprPtr &a : e.args) checkNoCalls(*a);
  }

  // The shape of an indexed definition, from plain uses of its indices in tensors of known shape.
  std::optional<std::vector<Size>> inferShape(const ast::Statement &s) const {
    std::vector<Size> shape;
    for (const ExprPtr &i : s.indices) {
      if (i->kind != Kind::Ident) return std::nullopt;
      std::optional<Size> found;
      std::function<void(const Expr &)> look = [&](const Expr &e) {
        if (found) return;
        if (e.kind == Kind::Access && shapes_.count(e.name)) {
          const auto &sh = shapes_.at(e.name);
          for (size_t k = 0; k < e.args.size() && k < sh.size(); ++k)
            if (e.args[k]->kind == Kind::Ident && e.args[k]->name == i->name) {
              found = sh[k];
              return;
            }
        }
        for (const ExprPtr &a : e.args) look(*a);
      };
      look(*s.value);
      if (!found) return std::nullopt;
      shape.push_back(*found);
    }
    return shape;
  }

  std::string freshTemp() { return fmt::format("_t{}", temps_++); }

  // (A, B, ...) = head(...): one call of a sub-layer with that many outputs, each defining its
  // tensor.
  void outputsStatement(const ast::Statement &s) {
    const Expr &e = *s.value;
    if (e.kind != Kind::Call || !subLayers_.count(e.name)) {
      error(e.loc, fmt::format("{} tensors are defined by one call of a sub-layer with as many outputs",
                               s.moreTargets.size() + 1),
            "write (Y, S) = head(X) with head a sub-layer; other values define one tensor each");
      throw ExpansionFailed{};
    }
    const ast::SubLayer &sub = *subLayers_.at(e.name);
    if (sub.sequence) {
      error(e.loc, fmt::format("sequence '{}' gives one tensor (its last layer's output)", e.name),
            "call a sub-layer that is one layer to name several outputs");
      throw ExpansionFailed{};
    }
    std::vector<std::string> args, argNames;
    for (size_t i = 0; i < e.args.size(); ++i) {
      args.push_back(tensorOperand(*e.args[i]));
      argNames.push_back(i < e.argNames.size() ? e.argNames[i].text : "");
    }
    // After the arguments (which may call sub-layers themselves): the next inlined layer is this call.
    for (const ast::Name &n : s.moreTargets) moreOutputs_.push_back({n.text, n.loc});
    callSubLayer(sub, e, args, argNames, s.target.text);
  }

  // T = whole-tensor expression.
  void wholeStatement(const ast::Statement &s) {
    ExprPtr value = hoist(*s.value, s.target.text);
    if (value->kind == Kind::Ident && value->name == s.target.text) return; // a call defined it
    materialize(s.target.text, *value, s.loc);
  }

  // Replaces sub-layer calls and helpers by the tensors they define; `name` is the tensor the
  // outermost one may define directly.
  ExprPtr hoist(const Expr &e, const std::string &name) {
    if (e.kind == Kind::Call && e.name == "select" && e.args.size() == 3 && isConstant(*e.args[0])) {
      // A branch on hyper-parameters: the other side is never expanded (a sub-layer that exists
      // only under a condition is called under it).
      return hoist(*e.args[eval(*e.args[0], {}).b ? 1 : 2], name);
    }
    if (e.kind == Kind::Call && subLayers_.count(e.name)) {
      std::vector<std::string> args;
      std::vector<std::string> argNames;
      for (size_t i = 0; i < e.args.size(); ++i) {
        args.push_back(tensorOperand(*e.args[i]));
        argNames.push_back(i < e.argNames.size() ? e.argNames[i].text : "");
      }
      std::string result = name.empty() ? "" : name;
      return ident(callSubLayer(*subLayers_.at(e.name), e, args, argNames, result), e.loc);
    }
    if (e.kind == Kind::Call && isHelper(e.name)) {
      std::vector<std::string> args;
      for (const ExprPtr &a : e.args) args.push_back(tensorOperand(*a));
      std::string result = name.empty() ? freshTemp() : name;
      helper(e, args, result);
      return ident(result, e.loc);
    }
    ExprPtr c = clone(e);
    c->args.clear();
    for (const ExprPtr &a : e.args) c->args.push_back(hoist(*a, ""));
    return c;
  }

  bool isConstant(const Expr &e) const {
    if (e.kind == Kind::Ident) return net_.hyperParam(e.name) || e.name == "training" || enumeratorPosition(e.name) >= 0;
    if (e.kind == Kind::Access) return net_.hyperParam(e.name) != nullptr;
    if (e.kind == Kind::Reduce) return false;
    for (const ExprPtr &a : e.args)
      if (!isConstant(*a)) return false;
    return true;
  }

  // A whole-tensor operand as a tensor name: a name as it is, anything else computed into a temporary.
  std::string tensorOperand(const Expr &e) {
    ExprPtr h = hoist(e, "");
    if (h->kind == Kind::Ident && shapes_.count(h->name)) return h->name;
    std::string t = freshTemp();
    materialize(t, *h, e.loc);
    return t;
  }

  // name[_i0, ...] = e, element-wise over tensors of one shape (and scalars).
  void materialize(const std::string &name, const Expr &e, SourceLoc loc) {
    const std::vector<Size> *shape = nullptr;
    std::string first;
    std::function<void(const Expr &)> find = [&](const Expr &x) {
      if (x.kind == Kind::Ident && shapes_.count(x.name) && !shapes_.at(x.name).empty()) {
        const auto &s = shapes_.at(x.name);
        if (!shape) {
          shape = &s, first = x.name;
        } else if (shapeText(*shape) != shapeText(s)) {
          error(x.loc, fmt::format("element-wise operands of different shapes: '{}' is {}, '{}' is {}", first,
                                   shapeText(*shape), x.name, shapeText(s)),
                "whole-tensor arithmetic needs equal shapes; write an indexed statement to broadcast, "
                "as in Y[b, c, h, w] = F[b, c, h, w] * G[b, c]");
          throw ExpansionFailed{};
        }
      }
      if (x.kind != Kind::Access)
        for (const ExprPtr &a : x.args) find(*a);
    };
    find(e);
    std::vector<Size> out = shape ? *shape : std::vector<Size>{};
    std::vector<std::string> idx;
    for (size_t i = 0; i < out.size(); ++i) idx.push_back(fmt::format("_i{}", i));
    std::function<ExprPtr(const Expr &)> index = [&](const Expr &x) -> ExprPtr {
      if (x.kind == Kind::Ident && shapes_.count(x.name) && !shapes_.at(x.name).empty()) {
        std::vector<ExprPtr> ix;
        for (const std::string &v : idx) ix.push_back(ident(v, x.loc));
        return access(x.name, std::move(ix), x.loc);
      }
      if (x.kind == Kind::Access) return networkExpr(x);
      if (x.kind == Kind::Ident) return networkExpr(x);
      ExprPtr c = clone(x);
      c->args.clear();
      for (const ExprPtr &a : x.args) c->args.push_back(index(*a));
      return c;
    };
    define(name, idx, index(e), out, loc);
  }

  // Emits name[idx] : [shape] = value, checking a declared output's shape.
  void define(const std::string &name, const std::vector<std::string> &idx, ExprPtr value,
              const std::vector<Size> &shape, SourceLoc loc) {
    checkOutputShape(name, shape, loc);
    ast::Statement s;
    s.target = {name, loc};
    s.loc = loc;
    for (const std::string &v : idx) s.indices.push_back(ident(v, loc));
    if (!outputs_.count(name)) // an output's shape is in the signature
      for (const Size &d : shape) s.shape.push_back(toExpr(d, loc));
    s.value = std::move(value);
    emit(std::move(s));
    shapes_[name] = shape;
  }

  void checkOutputShape(const std::string &name, const std::vector<Size> &shape, SourceLoc loc) {
    auto it = declaredOutputs_.find(name);
    if (it == declaredOutputs_.end() || shapeText(it->second) == shapeText(shape)) return;
    Diagnostic &d = error(loc, fmt::format("output '{}' is declared {} but is given {}", name, shapeText(it->second),
                                           shapeText(shape)),
                          "correct the output's declared shape, or leave it out: a network's output may take the "
                          "shape of its definition (-> Y)");
    d.notes.push_back({outputs_.at(name)->loc, "declared here"});
    throw ExpansionFailed{};
  }

  // ---- shape helpers ----------------------------------------------------------------------------
  void helper(const Expr &call, const std::vector<std::string> &args, const std::string &result) {
    SourceLoc loc = call.loc;
    auto need = [&](bool ok, const std::string &what) {
      if (ok) return;
      error(loc, fmt::format("{}: {}", call.name, what));
      throw ExpansionFailed{};
    };
    auto reads = [&](const std::string &t, std::vector<ExprPtr> ix) { return access(t, std::move(ix), loc); };
    if (call.name == "cat") {
      // Along the channels (dimension 1): out-of-range reads are zero, so the parts add up.
      need(args.size() >= 2, "concatenates two or more tensors: cat(A, B, ...)");
      const std::vector<Size> &a = shapes_.at(args[0]);
      need(a.size() >= 2, fmt::format("'{}' has no dimension 1 to concatenate along", args[0]));
      std::vector<Size> shape = a;
      shape[1] = Size{};
      ExprPtr value;
      Size offset;
      std::vector<std::string> idx;
      for (size_t i = 0; i < a.size(); ++i) idx.push_back(fmt::format("_i{}", i));
      for (const std::string &t : args) {
        const std::vector<Size> &s = shapes_.at(t);
        bool same = s.size() == a.size();
        for (size_t i = 0; same && i < s.size(); ++i) same = i == 1 || text(s[i]) == text(a[i]);
        need(same, fmt::format("'{}' is {} and '{}' is {}: all dimensions but 1 must agree", args[0], shapeText(a), t,
                               shapeText(s)));
        std::vector<ExprPtr> ix;
        for (size_t i = 0; i < idx.size(); ++i)
          ix.push_back(i == 1 ? binary("-", ident(idx[i], loc), toExpr(offset, loc)) : ident(idx[i], loc));
        ExprPtr part = reads(t, std::move(ix));
        value = value ? binary("+", std::move(value), std::move(part)) : std::move(part);
        offset = sum(offset, s[1], loc);
      }
      shape[1] = offset;
      define(result, idx, std::move(value), shape, loc);
      return;
    }
    need(args.size() == 1, "takes one tensor");
    const std::vector<Size> &a = shapes_.at(args[0]);
    if (call.name == "flatten") {
      // [B, d1, ..., dk] -> [B, d1 * ... * dk]: the flat index's digits address the input.
      need(a.size() >= 2, fmt::format("'{}' is {}: nothing to flatten", args[0], shapeText(a)));
      std::vector<ExprPtr> ix;
      ix.push_back(ident("_i0", loc));
      Size total;
      total.constant = 1;
      for (size_t i = 1; i < a.size(); ++i) {
        Size place;
        place.constant = 1;
        for (size_t j = i + 1; j < a.size(); ++j) place = canonical(*binary("*", toExpr(place, loc), toExpr(a[j], loc)));
        ExprPtr digit = ident("_i1", loc);
        if (!(place.isConstant() && place.constant == 1)) digit = binary("//", std::move(digit), toExpr(place, loc));
        if (i > 1) digit = binary("%", std::move(digit), toExpr(a[i], loc));
        ix.push_back(std::move(digit));
        total = canonical(*binary("*", toExpr(total, loc), toExpr(a[i], loc)));
      }
      define(result, {"_i0", "_i1"}, reads(args[0], std::move(ix)), {a[0], total}, loc);
      return;
    }
    // spatial_mean: [B, C, ...] -> [B, C], the mean over every dimension after the channels.
    need(a.size() >= 2, fmt::format("'{}' is {}: it needs [B, C, ...]", args[0], shapeText(a)));
    std::vector<ExprPtr> ix;
    auto reduce = std::make_unique<Expr>(Kind::Reduce, loc);
    reduce->name = "mean";
    reduce->nameLoc = loc;
    for (size_t i = 0; i < a.size(); ++i) {
      std::string v = i < 2 ? fmt::format("_i{}", i) : fmt::format("_r{}", i);
      ix.push_back(ident(v, loc));
      if (i >= 2) {
        reduce->vars.push_back({v, loc});
        reduce->varBounds.push_back(nullptr);
      }
    }
    ExprPtr body = reads(args[0], std::move(ix));
    if (reduce->vars.empty()) {
      define(result, {"_i0", "_i1"}, std::move(body), {a[0], a[1]}, loc);
      return;
    }
    reduce->args.push_back(std::move(body));
    define(result, {"_i0", "_i1"}, std::move(reduce), {a[0], a[1]}, loc);
  }

  // ---- calling a sub-layer ----------------------------------------------------------------------
  // Inlines the call; returns the tensor holding its output (`result` when given).
  std::string callSubLayer(const ast::SubLayer &sub, const Expr &call, const std::vector<std::string> &args,
                           const std::vector<std::string> &argNames, const std::string &result) {
    if (sub.condition && !eval(*sub.condition, {}).b) {
      Diagnostic &d = error(call.loc, fmt::format("sub-layer '{}' does not exist with these hyper-parameters (its "
                                                  "condition '{}' is false)",
                                                  sub.name.text, ast::printExpr(*sub.condition)),
                            fmt::format("call it under that condition: select({}, {}(...), ...)",
                                        ast::printExpr(*sub.condition), sub.name.text));
      d.notes.push_back({sub.loc, "declared here"});
      throw ExpansionFailed{};
    }
    std::vector<std::pair<const Expr *, std::string>> items; // each item's call and its path
    if (sub.sequence && sub.repeatCount) {
      Value n = eval(*sub.repeatCount, {});
      if (n.kind != Value::Kind::Int || n.i < 0) {
        error(sub.repeatCount->loc, fmt::format("a repetition count must be a non-negative integer, not {}",
                                                n.settingText()));
        throw ExpansionFailed{};
      }
      if (n.i > static_cast<int64_t>(kMaxNetworkStatements)) {
        error(sub.repeatCount->loc, fmt::format("a repetition count of {} is more than a network may expand to ({} "
                                                "statements)",
                                                n.i, kMaxNetworkStatements),
              "use a smaller repetition count");
        throw ExpansionFailed{};
      }
      for (int64_t i = 0; i < n.i; ++i) items.push_back({sub.items[0].get(), fmt::format("{}.{}", sub.name.text, i)});
    } else if (sub.sequence) {
      for (size_t i = 0; i < sub.items.size(); ++i) items.push_back({sub.items[i].get(), fmt::format("{}.{}", sub.name.text, i)});
    } else {
      items.push_back({sub.items[0].get(), sub.name.text});
    }
    if (sub.sequence && (args.size() != 1 || !argNames[0].empty())) {
      error(call.loc, fmt::format("sequence '{}' takes one input tensor, positionally", sub.name.text));
      throw ExpansionFailed{};
    }
    if (items.empty()) return args[0]; // an empty sequence is the identity
    std::vector<std::string> in = args, names = argNames;
    std::string out;
    for (size_t k = 0; k < items.size(); ++k) {
      std::map<std::string, int64_t> locals;
      if (sub.repeatCount) locals[sub.repeatVar.text] = static_cast<int64_t>(k);
      bool last = k + 1 == items.size();
      out = inlineItem(*items[k].first, items[k].second, locals, call, in, names, last ? result : "");
      in = {out};
      names = {""};
    }
    return out;
  }

  // One layer called at `call` as the sub-layer at `path`.
  std::string inlineItem(const Expr &decl, const std::string &path, const std::map<std::string, int64_t> &locals,
                         const Expr &call, const std::vector<std::string> &args, const std::vector<std::string> &argNames,
                         const std::string &result) {
    // checkDeclarationChains found every declared layer and no chain back to this one.
    const LayerSymbols *callee = lookup_(decl.name);
    ENC_INTERNAL_ASSERT(callee && callee->layer != net_.layer, "expandNetwork: sub-layer '{}' ({}) was not checked",
                        path, decl.name);
    // The callee's hyper-parameters, as --set would give them.
    std::map<std::string, std::string> settings;
    for (size_t i = 0; i < decl.args.size(); ++i) {
      std::string name = i < decl.argNames.size() ? decl.argNames[i].text : "";
      if (name.empty()) {
        if (i >= callee->layer->hyperParams.size()) {
          Diagnostic &d = error(decl.args[i]->loc, fmt::format("layer {} takes {} hyper-parameters; this is argument {}",
                                                              decl.name, callee->layer->hyperParams.size(), i + 1));
          d.notes.push_back({callee->layer->loc, fmt::format("layer {} declared here", decl.name)});
          throw ExpansionFailed{};
        }
        name = callee->layer->hyperParams[i].name.text;
      }
      if (settings.count(name)) {
        error(decl.args[i]->loc, fmt::format("hyper-parameter '{}' of {} is given twice", name, decl.name));
        throw ExpansionFailed{};
      }
      settings[name] = eval(*decl.args[i], locals).settingText();
    }
    // A value missing here is given in the declaration, not by --set (which sets the network's);
    // a misspelt name is reported first, by resolveHyperParams.
    const bool namesKnown = std::all_of(settings.begin(), settings.end(),
                                        [&](const auto &s) { return callee->hyperParam(s.first) != nullptr; });
    for (const ast::HyperParam &hp : callee->layer->hyperParams)
      if (namesKnown && !hp.defaultValue && !settings.count(hp.name.text)) {
        Diagnostic &d = error(decl.loc, fmt::format("sub-layer '{}': layer {} needs a value for hyper-parameter '{}'", path,
                                                    decl.name, hp.name.text),
                              fmt::format("give it in the declaration: {}(..., {}=VALUE)", decl.name, hp.name.text));
        d.notes.push_back({callee->layer->loc, fmt::format("layer {} declared here", decl.name)});
        throw ExpansionFailed{};
      }
    Inlining in;
    in.callee = callee;
    try {
      in.values = resolveHyperParams(*callee, settings);
    } catch (const Error &e) {
      Diagnostic &d = error(decl.loc, fmt::format("sub-layer '{}': {}", path, e.what()), e.hint());
      d.notes.push_back({callee->layer->loc, fmt::format("layer {} declared here", decl.name)});
      throw ExpansionFailed{};
    }
    in.values["training"] = hyper_.count("training") ? hyper_.at("training") : ir::boolImm(true);
    context_.push_back({call.loc, fmt::format("in sub-layer '{}' ({}) called here", path, decl.name)});
    for (const ast::Requirement &r : callee->layer->requirements) checkCalleeRequirement(in, r, decl, path);
    if (callee->network) {
      // A network as a sub-layer: expand it first, then inline the result like any layer.
      std::shared_ptr<const ExpandedNetwork> inner;
      try {
        inner = expandNetwork(*callee, in.values, lookup_);
      } catch (const CompileError &e) {
        // Its diagnostics are rendered already; add where it was called.
        Diagnostic &d = error(call.loc, fmt::format("sub-layer '{}' ({}) does not expand", path, decl.name));
        d.hint = e.what();
        throw ExpansionFailed{};
      }
      expanded_.push_back(inner);
      in.callee = &inner->symbols;
      in.values = resolveHyperParams(inner->symbols, settings);
      in.values["training"] = hyper_.count("training") ? hyper_.at("training") : ir::boolImm(true);
    }
    if (in.callee->layer->backward) {
      error(call.loc, fmt::format("layer {} has a hand-written backward block: it cannot be a sub-layer yet", decl.name),
            "a network's gradient is derived for the whole network");
      throw ExpansionFailed{};
    }
    std::string out = inlineLayer(in, path, call, args, argNames, result);
    context_.pop_back();
    return out;
  }

  // The tensors (and where they are named) for the outputs after the first of the next layer
  // inlined: set by (A, B) = head(X) once head's arguments are expanded.
  std::vector<std::pair<std::string, SourceLoc>> moreOutputs_;
  std::map<std::string, std::vector<Size>> flatIndices_; // the statement's flattening indices
  bool leftSide_ = false;                                 // calleeIndices is on a definition's left side
  bool unboundSizesByName_ = false; // calleeExpr keeps sizes not bound yet as their names
  std::vector<std::shared_ptr<const ExpandedNetwork>> expanded_;

  void checkCalleeRequirement(const Inlining &in, const ast::Requirement &r, const Expr &decl, const std::string &path) {
    ExprPtr cond = calleeExpr(in, *r.condition, nullptr);
    Value v = eval(*cond, {});
    if (v.kind != Value::Kind::Bool || v.b) return;
    std::string values;
    for (const auto &[name, value] : in.values)
      if (name != "training" && mentions(*r.condition, name.substr(0, name.find('['))))
        values += fmt::format("{}{} = {}", values.empty() ? "" : ", ", name, ir::print(value));
    Diagnostic &d = error(decl.loc, fmt::format("sub-layer '{}': layer {} requires {} ({})", path, decl.name,
                                                ast::printExpr(*r.condition), values));
    d.notes.push_back({r.loc, "the requirement"});
    throw ExpansionFailed{};
  }

  static bool mentions(const Expr &e, const std::string &name) {
    if ((e.kind == Kind::Ident || e.kind == Kind::Access) && e.name == name) return true;
    for (const ExprPtr &a : e.args)
      if (mentions(*a, name)) return true;
    return false;
  }

  std::string inlineLayer(Inlining &in, const std::string &path, const Expr &call, const std::vector<std::string> &args,
                          const std::vector<std::string> &argNames, const std::string &result) {
    const LayerSymbols &callee = *in.callee;
    const ast::Forward &f = *callee.layer->forward;
    int callNo = ++calls_[path];
    std::string tempPrefix = callNo == 1 ? path + "." : fmt::format("{}@{}.", path, callNo);
    // Inputs: positional, then by name.
    if (args.size() != f.inputs.size()) {
      Diagnostic &d = error(call.loc, fmt::format("sub-layer '{}' takes {} input{} ({}); this call gives {}", path,
                                                  f.inputs.size(), f.inputs.size() == 1 ? "" : "s",
                                                  inputList(f), args.size()));
      d.notes.push_back({f.loc, "its forward block"});
      throw ExpansionFailed{};
    }
    std::vector<const ast::TensorDecl *> bound(args.size(), nullptr);
    for (size_t i = 0; i < args.size(); ++i) {
      const ast::TensorDecl *target = nullptr;
      if (argNames[i].empty()) target = &f.inputs[i];
      for (const ast::TensorDecl &d : f.inputs)
        if (!argNames[i].empty() && d.name.text == argNames[i]) target = &d;
      if (!target) {
        error(call.args[i]->loc, fmt::format("sub-layer '{}' has no input '{}'", path, argNames[i]),
              fmt::format("its inputs are {}", inputList(f)));
        throw ExpansionFailed{};
      }
      for (const ast::TensorDecl *b : bound)
        if (b == target) {
          error(call.args[i]->loc, fmt::format("input '{}' of sub-layer '{}' is given twice", target->name.text, path));
          throw ExpansionFailed{};
        }
      bound[i] = target;
    }
    for (size_t i = 0; i < args.size(); ++i) bindInput(in, path, call, *bound[i], args[i], call.args[i]->loc);
    for (const TensorSymbol &t : callee.tensors) {
      switch (t.role) {
      case TensorRole::Param:
      case TensorRole::Buffer: in.tensors[t.name] = path + "." + t.name; break;
      case TensorRole::Temp: in.tensors[t.name] = tempPrefix + t.name; break;
      default: break;
      }
    }
    // The outputs: the first is the call's value; (A, B) = head(X) names the others.
    std::vector<std::pair<std::string, SourceLoc>> more = std::move(moreOutputs_);
    moreOutputs_.clear();
    if (f.outputs.size() != more.size() + 1) {
      std::string names;
      for (const ast::TensorDecl &o : f.outputs) names += (names.empty() ? "" : ", ") + o.name.text;
      Diagnostic &d =
          more.empty()
              ? error(call.loc, fmt::format("sub-layer '{}' has {} outputs ({}); a call in an expression gives one tensor",
                                            path, f.outputs.size(), names),
                      fmt::format("name them all: ({}) = {}(...)", names, path))
              : error(call.loc, fmt::format("sub-layer '{}' has {} output{} ({}); the statement names {}", path,
                                            f.outputs.size(), f.outputs.size() == 1 ? "" : "s", names, more.size() + 1));
      d.notes.push_back({f.loc, "its forward block"});
      throw ExpansionFailed{};
    }
    std::string out = result.empty() ? tempPrefix + f.outputs[0].name.text : result;
    in.tensors[f.outputs[0].name.text] = out;
    for (size_t i = 0; i < more.size(); ++i) in.tensors[f.outputs[i + 1].name.text] = more[i].first;
    in.reserved = sizeNames_;
    for (const auto &[name, value] : hyper_) in.reserved.insert(name);

    // Parameters and buffers, once per sub-layer however often it is called.
    for (const ast::TensorDecl &p : callee.layer->params) calleeState(in, p, true);
    for (const ast::TensorDecl &b : callee.layer->buffers) calleeState(in, b, false);
    bool updates = false;
    for (const ast::Statement &s : f.statements) updates |= s.update;
    if (updates && !updatedBy_.insert(path).second) {
      error(call.loc, fmt::format("sub-layer '{}' updates its buffers and is called a second time in one pass", path),
            "declare one sub-layer per call (bn1, bn2) for layers with running statistics");
      throw ExpansionFailed{};
    }
    for (const ast::Requirement &r : f.requirements) fwd_->requirements.push_back({calleeExpr(in, *r.condition, nullptr), r.loc});
    for (const ast::Statement &s : f.statements) calleeStatement(in, s, f);
    // The outputs' shapes, as the callee declares them.
    for (size_t k = 0; k < f.outputs.size(); ++k) {
      const TensorSymbol *o = callee.find(f.outputs[k].name.text);
      std::vector<Size> shape;
      for (size_t i = 0; i < o->shape.size(); ++i) {
        if (o->expands[i]) {
          for (const Size &s : in.sizes.at(o->shape[i]->name)) shape.push_back(s);
        } else {
          shape.push_back(canonical(*calleeExpr(in, *o->shape[i], nullptr)));
        }
      }
      const std::string &name = k == 0 ? out : more[k - 1].first;
      checkOutputShape(name, shape, k == 0 ? call.loc : more[k - 1].second);
      shapes_[name] = shape;
    }
    return out;
  }

  static std::string inputList(const ast::Forward &f) {
    std::string out;
    for (const ast::TensorDecl &d : f.inputs) out += (out.empty() ? "" : ", ") + d.name.text;
    return out;
  }

  // Matches the caller's tensor `arg` to the callee's input `decl`: sizes named there take the
  // caller's dimensions, and dimensions fixed by hyper-parameters must agree.
  void bindInput(Inlining &in, const std::string &path, const Expr &call, const ast::TensorDecl &decl,
                 const std::string &arg, SourceLoc argLoc) {
    in.tensors[decl.name.text] = arg;
    auto it = shapes_.find(arg);
    if (it == shapes_.end()) {
      error(argLoc, fmt::format("the shape of '{}' is not known here", arg),
            fmt::format("declare it where it is defined, as in {}[b, c]: [B, C] = ...", arg));
      throw ExpansionFailed{};
    }
    const std::vector<Size> &shape = it->second;
    auto mismatch = [&](const std::string &why) {
      unboundSizesByName_ = true; // the declaration as written, with hyper-parameters' values
      std::string expected = "[";
      for (size_t i = 0; i < decl.dims.size(); ++i)
        expected += (i ? ", " : "") + ast::printExpr(*calleeExpr(in, *decl.dims[i].size, nullptr)) +
                    (decl.dims[i].variadic ? "..." : "") +
                    (decl.dims[i].count ? "(" + ast::printExpr(*calleeExpr(in, *decl.dims[i].count, nullptr)) + ")" : "");
      expected += "]";
      Diagnostic &d = error(argLoc, fmt::format("sub-layer '{}' expects {} {}, but '{}' is {}{}", path, decl.name.text,
                                                expected, arg, shapeText(shape), why));
      d.notes.push_back({decl.loc, fmt::format("input '{}' of layer {} declared here", decl.name.text,
                                               in.callee->layer->name.text)});
      throw ExpansionFailed{};
    };
    // A counted dimension A...(n) takes n of the caller's dimensions, an uncounted variadic
    // one (the last) the rest, any other one.
    std::vector<size_t> taken(decl.dims.size(), 1);
    size_t fixed = 0;
    bool rest = false;
    for (size_t i = 0; i < decl.dims.size(); ++i) {
      const ast::Dim &d = decl.dims[i];
      if (d.count) {
        Size n = canonical(*calleeExpr(in, *d.count, nullptr));
        if (!n.isConstant() || n.constant < 0) {
          error(call.loc, fmt::format("sub-layer '{}': the count of {}...({}) of layer {}'s input '{}' is {}, not a "
                                      "whole number of dimensions",
                                      path, d.size->name, ast::printExpr(*d.count), in.callee->layer->name.text,
                                      decl.name.text, text(n)),
                "give the sub-layer a hyper-parameter value that makes it 0 or more");
          throw ExpansionFailed{};
        }
        taken[i] = static_cast<size_t>(n.constant);
      } else if (d.variadic) {
        rest = true;
        taken[i] = 0;
      }
      fixed += taken[i];
    }
    if (rest ? shape.size() < fixed : shape.size() != fixed) mismatch(" (rank)");
    for (size_t i = 0, at = 0; i < decl.dims.size(); ++i) {
      const Expr &d = *decl.dims[i].size;
      if (decl.dims[i].variadic) {
        size_t n = decl.dims[i].count ? taken[i] : shape.size() - fixed;
        in.sizes[d.name] = std::vector<Size>(shape.begin() + static_cast<long>(at), shape.begin() + static_cast<long>(at + n));
        in.variadics.insert(d.name);
        at += n;
        continue;
      }
      const Size &dim = shape[at++];
      if (d.kind == Kind::Ident && d.ref == Ref::SizeSymbol) {
        auto [sit, fresh] = in.sizes.emplace(d.name, std::vector<Size>{dim});
        if (!fresh && text(sit->second[0]) != text(dim))
          mismatch(fmt::format(" (its size {} is {} in one place and {} in another)", d.name, text(sit->second[0]),
                               text(dim)));
        continue;
      }
      Size want = canonical(*calleeExpr(in, d, nullptr));
      if (text(want) != text(dim))
        mismatch(fmt::format(" (dimension {} must be {})", i, text(want)));
    }
  }

  void calleeState(const Inlining &in, const ast::TensorDecl &d, bool param) {
    std::string name = in.tensors.at(d.name.text);
    if (!declaredState_.insert(name).second) return;
    ast::TensorDecl c;
    c.name = {name, d.name.loc};
    c.loc = d.loc;
    std::vector<Size> shape;
    for (const ast::Dim &dim : d.dims) {
      Size s = canonical(*calleeExpr(in, *dim.size, nullptr));
      ast::Dim nd;
      nd.size = toExpr(s, dim.size->loc);
      c.dims.push_back(std::move(nd));
      shape.push_back(std::move(s));
    }
    if (d.init) c.init = calleeExpr(in, *d.init, nullptr);
    if (d.condition) c.condition = calleeExpr(in, *d.condition, nullptr);
    shapes_[name] = std::move(shape);
    (param ? out_->params : out_->buffers).push_back(std::move(c));
  }

  // The index variables of `s` that range over a variadic size, with their new names.
  IndexExpansion expansionOf(const Inlining &in, const ast::Statement &s) const {
    IndexExpansion x;
    auto add = [&](const std::string &v, const Expr *extent) {
      if (!extent || extent->kind != Kind::Ident || !in.variadics.count(extent->name)) return;
      size_t k = in.sizes.at(extent->name).size();
      std::vector<std::string> names;
      for (size_t i = 0; i < k; ++i) names.push_back(k == 1 ? indexName(in, v) : fmt::format("{}_{}", v, i));
      x[v] = names;
    };
    for (size_t i = 0; i < s.indices.size() && i < s.indexExtents.size(); ++i)
      if (s.indices[i]->kind == Kind::Ident && !flatIndices_.count(s.indices[i]->name))
        add(s.indices[i]->name, s.indexExtents[i]);
    std::function<void(const Expr &)> walk = [&](const Expr &e) {
      if (e.kind == Kind::Reduce)
        for (size_t i = 0; i < e.vars.size() && i < e.varExtents.size(); ++i) add(e.vars[i].text, e.varExtents[i]);
      for (const ExprPtr &a : e.args) walk(*a);
    };
    walk(*s.value);
    if (s.guard) walk(*s.guard);
    return x;
  }

  static std::string indexName(const Inlining &in, const std::string &v) {
    return in.reserved.count(v) ? "_" + v : v;
  }

  void calleeStatement(const Inlining &in, const ast::Statement &s, const ast::Forward &f) {
    // An output that flattens the variadic dimensions (Y: [B, F] of X: [B, F...]) keeps one
    // index there, whose digits address what it reads.
    flatIndices_.clear();
    if (const TensorSymbol *o = in.callee->find(s.target.text); o && o->role == TensorRole::Output)
      for (size_t i = 0; i < s.indices.size() && i < o->shape.size(); ++i)
        if (!o->expands[i] && o->shape[i]->kind == Kind::Ident && in.variadics.count(o->shape[i]->name) &&
            in.sizes.at(o->shape[i]->name).size() != 1 && s.indices[i]->kind == Kind::Ident)
          flatIndices_[s.indices[i]->name] = in.sizes.at(o->shape[i]->name);
    IndexExpansion x = expansionOf(in, s);
    ast::Statement c;
    c.target = {in.tensors.count(s.target.text) ? in.tensors.at(s.target.text) : s.target.text, s.target.loc};
    c.loc = s.loc;
    c.update = s.update;
    c.recover = s.recover; // of the caller's tensor the sub-layer's input stands for
    leftSide_ = true;
    c.indices = calleeIndices(in, s.indices, x);
    leftSide_ = false;
    c.value = calleeExpr(in, *s.value, &x);
    if (s.guard) c.guard = calleeExpr(in, *s.guard, &x);
    std::vector<Size> declared;
    for (size_t i = 0; i < s.shape.size(); ++i) {
      const Expr &d = *s.shape[i];
      if (d.kind == Kind::Ident && in.variadics.count(d.name)) {
        for (const Size &z : in.sizes.at(d.name)) declared.push_back(z);
      } else {
        declared.push_back(canonical(*calleeExpr(in, d, &x)));
      }
    }
    // The callee's output becomes an intermediate here: it keeps its declared shape.
    bool isOutput = false;
    for (const ast::TensorDecl &o : f.outputs) isOutput |= o.name.text == s.target.text;
    if (isOutput && !s.update && declared.empty()) {
      const TensorSymbol *o = in.callee->find(s.target.text);
      for (size_t i = 0; i < o->shape.size(); ++i) {
        if (o->expands[i]) {
          for (const Size &z : in.sizes.at(o->shape[i]->name)) declared.push_back(z);
        } else {
          declared.push_back(canonical(*calleeExpr(in, *o->shape[i], &x)));
        }
      }
    }
    if (!outputs_.count(c.target.text))
      for (const Size &d : declared) c.shape.push_back(toExpr(d, s.loc));
    if (!s.update && !s.recover && !declared.empty()) shapes_[c.target.text] = declared;
    emit(std::move(c));
  }

  std::vector<ExprPtr> calleeIndices(const Inlining &in, const std::vector<ExprPtr> &indices, const IndexExpansion &x) {
    std::vector<ExprPtr> out;
    for (const ExprPtr &i : indices) {
      if (i->kind == Kind::Ident) {
        if (auto it = x.find(i->name); it != x.end()) {
          for (const std::string &v : it->second) out.push_back(ident(v, i->loc));
          continue;
        }
        if (auto it = flatIndices_.find(i->name); it != flatIndices_.end() && !leftSide_) {
          // Digits of the flat index, most significant first: f // (d1 * d2), f // d2 % d1, f % d2.
          const std::vector<Size> &dims = it->second;
          for (size_t d = 0; d < dims.size(); ++d) {
            Size place;
            place.constant = 1;
            for (size_t e = d + 1; e < dims.size(); ++e)
              place = canonical(*binary("*", toExpr(place, i->loc), toExpr(dims[e], i->loc)));
            ExprPtr digit = ident(indexName(in, i->name), i->loc);
            if (!(place.isConstant() && place.constant == 1)) digit = binary("//", std::move(digit), toExpr(place, i->loc));
            if (d > 0) digit = binary("%", std::move(digit), toExpr(dims[d], i->loc));
            out.push_back(std::move(digit));
          }
          continue;
        }
      }
      out.push_back(calleeExpr(in, *i, &x));
    }
    return out;
  }

  // A copy of the callee's (checked) text in the flat layer's terms.
  ExprPtr calleeExpr(const Inlining &in, const Expr &e, const IndexExpansion *x) {
    SourceLoc loc = e.loc;
    switch (e.kind) {
    case Kind::Ident:
      switch (e.ref) {
      case Ref::HyperParam: return hyperLiteral(in, e.name, loc);
      case Ref::EnumValue: return intLit(e.enumValue, loc);
      case Ref::SizeSymbol: {
        auto it = in.sizes.find(e.name);
        if (it == in.sizes.end() && unboundSizesByName_) return ident(e.name, loc);
        if (it == in.sizes.end()) internalError("expandNetwork: size '{}' of {} is not bound", e.name, in.callee->layer->name.text);
        Size product;
        product.constant = 1;
        for (const Size &s : it->second) product = canonical(*binary("*", toExpr(product, loc), toExpr(s, loc)));
        return toExpr(product, loc);
      }
      case Ref::IndexVar: {
        if (x)
          if (auto it = x->find(e.name); it != x->end()) {
            if (it->second.size() == 1) return ident(it->second[0], loc);
            error(loc, fmt::format("layer {} uses index '{}' of a variadic size in arithmetic; it cannot be inlined "
                                   "with {} dimensions there",
                                   in.callee->layer->name.text, e.name, it->second.size()),
                  "give it an input with exactly one dimension there (flatten it first)");
            throw ExpansionFailed{};
          }
        return ident(indexName(in, e.name), loc);
      }
      case Ref::Tensor: return ident(in.tensors.count(e.name) ? in.tensors.at(e.name) : e.name, loc);
      default: return clone(e); // training, distributed, inf
      }
    case Kind::Access:
      if (e.ref == Ref::HyperParam) {
        int64_t v = 0;
        ir::isConst(in.values.at(ir::pairComponentName(e.name, e.enumValue)), &v);
        return intLit(v, loc);
      }
      {
        std::vector<ExprPtr> ix = x ? calleeIndices(in, e.args, *x) : calleeIndices(in, e.args, {});
        auto a = access(in.tensors.count(e.name) ? in.tensors.at(e.name) : e.name, std::move(ix), loc);
        a->nameLoc = e.nameLoc;
        return a;
      }
    case Kind::Reduce: {
      auto r = std::make_unique<Expr>(Kind::Reduce, loc);
      r->name = e.name;
      r->nameLoc = e.nameLoc;
      for (size_t i = 0; i < e.vars.size(); ++i) {
        const Expr *bound = i < e.varBounds.size() ? e.varBounds[i].get() : nullptr;
        if (x)
          if (auto it = x->find(e.vars[i].text); it != x->end()) {
            for (const std::string &v : it->second) {
              r->vars.push_back({v, e.vars[i].loc});
              r->varBounds.push_back(nullptr);
            }
            continue;
          }
        r->vars.push_back({indexName(in, e.vars[i].text), e.vars[i].loc});
        r->varBounds.push_back(bound ? toExpr(canonical(*calleeExpr(in, *bound, x)), bound->loc) : nullptr);
      }
      ExprPtr body = calleeExpr(in, *e.args[0], x);
      if (r->vars.empty()) {
        if (e.name == "softmax") return floatLit(1, loc); // softmax over no dimensions: one element
        return body; // every reduced index was a variadic one of no dimensions
      }
      r->args.push_back(std::move(body));
      return r;
    }
    default: {
      ExprPtr c = clone(e);
      c->args.clear();
      for (const ExprPtr &a : e.args) c->args.push_back(calleeExpr(in, *a, x));
      return c;
    }
    }
  }

  ExprPtr hyperLiteral(const Inlining &in, const std::string &name, SourceLoc loc) const {
    auto it = in.values.find(name);
    if (it == in.values.end()) internalError("expandNetwork: hyper-parameter '{}' has no value", name);
    const ir::Expr &v = it->second;
    switch (v->kind) {
    case ir::ExprKind::IntImm: return intLit(v->intValue, loc);
    case ir::ExprKind::FloatImm: return floatLit(v->floatValue, loc);
    case ir::ExprKind::BoolImm: return boolLit(v->boolValue, loc);
    default: internalError("expandNetwork: hyper-parameter '{}' is not a constant", name);
    }
  }
};

} // namespace

namespace {

// Sub-layer declarations that lead back to a layer on the way (A declares B, B declares A)
// would expand forever: each of the network's own declarations is followed through the
// networks it names, called or not, and a chain that returns is an error at that declaration,
// as is a name no layer has.
void checkDeclarationChains(const LayerSymbols &network, const LayerLookup &lookup, DiagnosticEngine &diags) {
  std::set<const ast::Layer *> acyclic; // networks whose declarations lead back to nothing
  std::vector<const ast::Layer *> chain{network.layer};
  std::function<bool(const ast::Layer &)> leadsBack = [&](const ast::Layer &layer) {
    if (acyclic.count(&layer)) return false;
    if (std::count(chain.begin(), chain.end(), &layer)) {
      chain.push_back(&layer);
      return true;
    }
    chain.push_back(&layer);
    for (const ast::SubLayer &sub : layer.subLayers)
      for (const ast::ExprPtr &item : sub.items)
        if (const LayerSymbols *callee = lookup(item->name); callee && callee->network && leadsBack(*callee->layer))
          return true;
    chain.pop_back();
    acyclic.insert(&layer);
    return false;
  };
  for (const ast::SubLayer &sub : network.layer->subLayers)
    for (const ast::ExprPtr &item : sub.items) {
      const LayerSymbols *callee = lookup(item->name);
      if (!callee) {
        diags.error(item->nameLoc, fmt::format("no layer named '{}' for sub-layer '{}'", item->name, sub.name.text),
                    "sub-layers are layers of the same file or shipped layers (encc layers lists them)");
        continue;
      }
      chain.resize(1);
      if (callee->layer != network.layer && !(callee->network && leadsBack(*callee->layer))) continue;
      if (callee->layer == network.layer) chain.push_back(callee->layer);
      std::string names;
      for (const ast::Layer *l : chain) names += (names.empty() ? "" : " -> ") + l->name.text;
      diags.error(item->nameLoc,
                  chain.size() == 2 ? fmt::format("layer '{}' uses itself as a sub-layer", item->name)
                                    : fmt::format("layer '{}' contains itself through sub-layer '{}': {}",
                                                  chain.back()->name.text, sub.name.text, names),
                  "a network cannot contain itself, directly or through its sub-layers; use a sequence "
                  "[Block(...) for i < N] to repeat a block");
    }
}

} // namespace

std::shared_ptr<const ExpandedNetwork> expandNetwork(const LayerSymbols &network,
                                                     const std::map<std::string, ir::Expr> &hyperParams,
                                                     const LayerLookup &lookup) {
  ENC_INTERNAL_ASSERT(network.network && network.layer->forward, "expandNetwork: '{}' is not a checked network",
                      network.layer->name.text);
  DiagnosticEngine diags;
  auto out = std::make_shared<ExpandedNetwork>();
  checkDeclarationChains(network, lookup, diags);
  Expander expander(network, hyperParams, lookup, diags);
  try {
    if (!diags.hasErrors()) out->module.layers.push_back(expander.run());
  } catch (const ExpansionFailed &) {
  }
  if (diags.hasErrors())
    throw CompileError(fmt::format("in network {}:\n{}", network.layer->name.text, diags.render()));
  DiagnosticEngine sema;
  out->symbols = std::move(enc::check(out->module, sema).layers.at(0));
  if (sema.hasErrors()) {
    // Sema's findings in the expansion, each with the sub-layer calls its statement came through.
    DiagnosticEngine located;
    for (const Diagnostic &d : sema.diagnostics()) {
      Diagnostic &c = d.severity == Severity::Warning ? located.warning(d.loc, d.message, d.hint)
                                                      : located.error(d.loc, d.message, d.hint);
      c.notes = d.notes;
      for (auto &note : expander.contextOf(d.loc)) c.notes.push_back(note);
    }
    throw CompileError(fmt::format("in network {}:\n{}", network.layer->name.text, located.render()));
  }
  return out;
}

} // namespace enc
