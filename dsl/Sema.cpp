#include "dsl/Sema.h"

#include "dsl/Intrinsics.h"
#include "support/Suggest.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <cctype>
#include <optional>
#include <set>
#include <string_view>

namespace enc {

using ast::Expr;
using Type = ast::Expr::Type;
using Ref = ast::Expr::Ref;

const char *roleName(TensorRole r) {
  switch (r) {
  case TensorRole::Input: return "input";
  case TensorRole::Param: return "parameter";
  case TensorRole::Buffer: return "buffer";
  case TensorRole::Output: return "output";
  case TensorRole::Temp: return "intermediate";
  case TensorRole::Update: return "buffer update";
  case TensorRole::GradSeed: return "output gradient";
  case TensorRole::GradOut: return "gradient";
  }
  return "tensor";
}

const TensorSymbol *LayerSymbols::find(const std::string &name) const {
  for (const TensorSymbol &t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const ast::HyperParam *LayerSymbols::hyperParam(const std::string &name) const {
  for (const ast::HyperParam &hp : layer->hyperParams)
    if (hp.name.text == name) return &hp;
  return nullptr;
}

const LayerSymbols *CheckedModule::find(const std::string &name) const {
  for (const LayerSymbols &l : layers)
    if (l.layer->name.text == name) return &l;
  return nullptr;
}

std::string sizeText(const ast::Expr &e) { return ast::printExpr(e); }

namespace {

// Functions by name and argument count: the intrinsics (dsl/Intrinsics.h) and the operators
// written as calls.
const std::map<std::string, int> kFunctions = [] {
  std::map<std::string, int> f = {{"pow", 2}, {"min", 2}, {"max", 2}, {"select", 3}, {"float", 1}, {"int", 1}};
  for (const IntrinsicInfo &i : intrinsics()) f[i.name] = i.minArgs;
  return f;
}();

// "exp(x), log(x), ..." for the hint on an unknown function.
std::string functionList() {
  std::string out;
  for (const IntrinsicInfo &i : intrinsics()) out += std::string(i.signature) + ", ";
  return out + "pow(x, y), min(a, b), max(a, b), select(cond, a, b), float(n), int(x)";
}
const std::set<std::string> kReductions = {"sum", "max", "min", "mean", "prod", "softmax", "logsumexp"};
const std::map<std::string, int> kInitializers = {{"uniform", 2}, {"normal", 2}, {"zeros", 0}, {"ones", 0}, {"constant", 1}};

const char *typeWord(Type t) {
  switch (t) {
  case Type::Int: return "an integer";
  case Type::Float: return "a float";
  case Type::Bool: return "a bool";
  default: return "unknown";
  }
}

bool numeric(Type t) { return t == Type::Int || t == Type::Float || t == Type::Unknown; }

// What one index variable of a statement is known to range over.
struct IndexInfo {
  SourceLoc loc;
  bool free = false;
  const Expr *extent = nullptr;
  std::string extentFrom; // "dimension 1 of X"
  SourceLoc extentLoc;
  bool reported = false;
};

class LayerChecker {
public:
  LayerChecker(ast::Layer &layer, DiagnosticEngine &diags) : layer_(layer), diags_(diags) { syms_.layer = &layer; }

  LayerSymbols run() {
    checkHyperParams();
    for (ast::TensorDecl &p : layer_.params) declareStateTensor(p, TensorRole::Param);
    for (ast::TensorDecl &b : layer_.buffers) declareStateTensor(b, TensorRole::Buffer);
    if (!layer_.forward) {
      if (!layer_.forwardFailed)
        diags_.error(layer_.name.loc, fmt::format("layer '{}' has no forward block", layer_.name.text),
                     "add forward(X: [B, C]) -> Y: [B, C] { Y[b, c] = ... }");
      return std::move(syms_);
    }
    ast::Forward &f = *layer_.forward;
    noteSyntaxErrors(f);
    if (!layer_.subLayers.empty()) return checkNetwork(f);
    for (ast::TensorDecl &in : f.inputs) declareInput(in);
    for (ast::TensorDecl &out : f.outputs) declareOutput(out);
    for (ast::Statement &s : f.statements) checkStatement(s);
    if (layer_.backward) checkBackward(*layer_.backward);
    for (ast::Requirement &r : layer_.requirements) checkRequirement(r);
    for (ast::Requirement &r : f.requirements) checkRequirement(r);
    for (const TensorSymbol &t : syms_.tensors)
      if (t.role == TensorRole::Output && !t.definition && !definedByDroppedStatement(t.name))
        diags_.error(t.loc, fmt::format("output '{}' is never defined", t.name),
                     fmt::format("add a statement '{}[...] = ...' to the forward block", t.name));
    return std::move(syms_);
  }

private:
  // A network's members and signature; its statements use sub-layers and whole tensors, and are
  // checked after expansion, when the sub-layers' shapes are known.
  LayerSymbols checkNetwork(ast::Forward &f) {
    syms_.network = true;
    for (ast::SubLayer &sub : layer_.subLayers) declareName(sub.name, "sub-layer");
    if (layer_.backward)
      diags_.error(layer_.backward->loc, "a network's gradients are derived: it cannot have a backward block",
                   "move the hand-written gradient into a layer of its own and use that as a sub-layer");
    for (ast::TensorDecl &in : f.inputs) {
      for (const ast::Dim &d : in.dims)
        if (d.variadic)
          diags_.error(d.size->loc, "a network's inputs have a fixed rank: '...' is for layers",
                       "name each dimension, as in X: [B, C, H, W]");
      declareInput(in);
    }
    for (ast::TensorDecl &out : f.outputs) declareName(out.name, "output");
    for (ast::Requirement &r : layer_.requirements) checkRequirement(r);
    for (ast::Requirement &r : f.requirements) checkRequirement(r);
    return std::move(syms_);
  }

  ast::Layer &layer_;
  DiagnosticEngine &diags_;
  LayerSymbols syms_;
  std::map<std::string, SourceLoc> layerNames_; // every name declared at layer level
  std::map<std::string, int64_t> enumerators_;
  std::set<std::string> poisoned_; // tensors whose definition had errors: don't cascade
  std::set<std::string> updated_;  // buffers with an update statement
  std::set<const Expr *> badSizes_; // shape dimensions already reported: no ranges from them
  std::string_view forwardText_;     // the forward block's text when it has syntax errors
  // Per statement:
  const ast::Statement *current_ = nullptr;
  std::map<std::string, IndexInfo> indices_;
  std::vector<std::string> scope_; // index names visible now
  std::vector<Expr *> reductions_;
  int reductionDepth_ = 0;     // reductions enclosing the expression being checked
  bool readsPoisoned_ = false; // reads a tensor whose definition had errors

  TensorSymbol *findTensor(const std::string &name) {
    for (TensorSymbol &t : syms_.tensors)
      if (t.name == name) return &t;
    return nullptr;
  }

  // The parser drops a statement it cannot parse (and an unterminated block ends early).
  // Remember the block's text then, so a tensor such a statement defines is not reported as
  // unknown or never defined as well.
  void noteSyntaxErrors(const ast::Forward &f) {
    const std::string &text = f.loc.file->text();
    uint32_t end = f.closeLoc.valid() ? f.closeLoc.offset : static_cast<uint32_t>(text.size());
    for (const Diagnostic &d : diags_.diagnostics())
      if (d.severity == Severity::Error && d.loc.file == f.loc.file && d.loc.offset > f.loc.offset &&
          d.loc.offset <= end) {
        forwardText_ = std::string_view(text).substr(f.loc.offset, end - f.loc.offset);
        return;
      }
  }

  // Whether the text of a forward block with syntax errors has a statement 'name[...] =' or
  // 'name =' that is not in the AST.
  bool definedByDroppedStatement(const std::string &name) const {
    std::string_view t = forwardText_;
    size_t pos = 0;
    while (pos < t.size()) {
      size_t end = t.find_first_of("\n;", pos);
      if (end == std::string_view::npos) end = t.size();
      std::string_view line = t.substr(pos, end - pos);
      pos = end + 1;
      size_t i = line.find_first_not_of(" \t{");
      if (i == std::string_view::npos || line.compare(i, name.size(), name) != 0) continue;
      i = line.find_first_not_of(" \t", i + name.size());
      if (i == std::string_view::npos) continue;
      if (line[i] == '[' || (line[i] == '=' && (i + 1 == line.size() || line[i + 1] != '='))) return true;
    }
    return false;
  }

  // "a hyper-parameter", "a size", "an enumerator", "an input", ... or "" for a fresh name.
  std::string whatIs(const std::string &name) {
    if (syms_.hyperParam(name)) return "a hyper-parameter";
    if (isSize(name)) return "a size";
    if (enumerators_.count(name)) return "an enumerator";
    if (const TensorSymbol *t = findTensor(name))
      return fmt::format("{} {}", t->role == TensorRole::Input || t->role == TensorRole::Output ? "an" : "a",
                         roleName(t->role));
    return "";
  }

  // A tensor whose name is a likely typo of `name`: equal ignoring case, or at most one edit
  // away (two for longer names).
  const TensorSymbol *closestTensor(const std::string &name) const {
    const TensorSymbol *best = nullptr;
    size_t bestDist = name.size() >= 6 ? 3 : 2;
    const std::string key = suggest_detail::lower(name);
    for (const TensorSymbol &t : syms_.tensors) {
      size_t d = suggest_detail::editDistance(key, suggest_detail::lower(t.name));
      if (d < bestDist) {
        bestDist = d;
        best = &t;
      }
    }
    return best;
  }

  bool isSize(const std::string &name) const {
    for (const SizeSymbol &sz : syms_.sizes)
      if (sz.name == name) return true;
    return false;
  }

  bool declareName(const ast::Name &n, const char *what) {
    auto [it, inserted] = layerNames_.emplace(n.text, n.loc);
    if (inserted) return true;
    Diagnostic &d = diags_.error(n.loc, fmt::format("{} '{}' reuses a name already declared in layer '{}'", what, n.text,
                                                    layer_.name.text));
    d.notes.push_back({it->second, fmt::format("'{}' first declared here", n.text)});
    return false;
  }

  // ---- hyper-parameters ---------------------------------------------------------------------------
  void checkHyperParams() {
    for (ast::HyperParam &hp : layer_.hyperParams) {
      declareName(hp.name, "hyper-parameter");
      using K = ast::HyperParamType::Kind;
      if (hp.type.kind == K::Enum) {
        std::set<std::string> seen;
        for (size_t i = 0; i < hp.type.enumerators.size(); ++i) {
          const ast::Name &e = hp.type.enumerators[i];
          if (!seen.insert(e.text).second)
            diags_.error(e.loc, fmt::format("enumerator '{}' appears twice in the type of '{}'", e.text, hp.name.text));
          else if (enumerators_.count(e.text) && enumerators_[e.text] != static_cast<int64_t>(i))
            diags_.error(e.loc, fmt::format("enumerator '{}' already names another position in another enumeration", e.text),
                         "enumerators shared between hyper-parameters must be at the same position");
          enumerators_[e.text] = static_cast<int64_t>(i);
        }
      }
      if (!hp.defaultValue) continue;
      Expr &d = *hp.defaultValue;
      const Expr *lit = &d;
      bool negated = false;
      if (d.kind == Expr::Kind::Unary && d.op == "-") {
        lit = d.args[0].get();
        negated = true;
      }
      auto bad = [&](const char *want, const char *hint) {
        diags_.error(d.loc, fmt::format("default value of hyper-parameter '{}' must be {}; found '{}'", hp.name.text, want,
                                        ast::printExpr(d)),
                     hint);
      };
      switch (hp.type.kind) {
      case K::Int:
        if (lit->kind != Expr::Kind::IntLit) bad("an integer", "write an integer such as 4, or declare it ': float'");
        d.type = Type::Int;
        break;
      case K::Int2:
        for (Expr *part : {&d, hp.defaultSecond.get()}) {
          if (!part) continue;
          const Expr *l = part->kind == Expr::Kind::Unary && part->op == "-" ? part->args[0].get() : part;
          if (l->kind != Expr::Kind::IntLit)
            diags_.error(part->loc, fmt::format("default value of hyper-parameter '{}' must be an integer or a pair "
                                                "of integers; found '{}'", hp.name.text, ast::printExpr(*part)),
                         "write 3 or (3, 5)");
          part->type = Type::Int;
        }
        break;
      case K::Float:
        if (lit->kind != Expr::Kind::IntLit && lit->kind != Expr::Kind::FloatLit) bad("a number", "write a number such as 1e-5");
        d.type = Type::Float;
        break;
      case K::Bool:
        if (lit->kind != Expr::Kind::BoolLit || negated) bad("true or false", "");
        d.type = Type::Bool;
        break;
      case K::Enum: {
        bool ok = !negated && lit->kind == Expr::Kind::Ident;
        if (ok) {
          ok = false;
          for (size_t i = 0; i < hp.type.enumerators.size(); ++i)
            if (hp.type.enumerators[i].text == lit->name) {
              d.ref = Ref::EnumValue;
              d.enumValue = static_cast<int64_t>(i);
              ok = true;
            }
        }
        if (!ok) {
          std::string choices;
          for (const ast::Name &e : hp.type.enumerators) choices += (choices.empty() ? "" : ", ") + e.text;
          bad("one of its enumerators", ("choose one of: " + choices).c_str());
        }
        d.type = Type::Int;
        break;
      }
      }
    }
  }

  Type hyperParamType(const ast::HyperParam &hp) const {
    switch (hp.type.kind) {
    case ast::HyperParamType::Kind::Float: return Type::Float;
    case ast::HyperParamType::Kind::Bool: return Type::Bool;
    default: return Type::Int;
    }
  }

  // ---- shapes -------------------------------------------------------------------------------------
  // A shape dimension: integer arithmetic over integer hyper-parameters, constants and, where
  // allowed, sizes taken from the inputs.
  bool checkSizeExpr(Expr &e, bool allowSizes, const char *where) {
    switch (e.kind) {
    case Expr::Kind::IntLit:
      e.type = Type::Int;
      if (e.intValue < 0) {
        diags_.error(e.loc, fmt::format("a dimension of {} is negative", where));
        return false;
      }
      return true;
    case Expr::Kind::Ident: {
      if (const ast::HyperParam *hp = syms_.hyperParam(e.name)) {
        e.ref = Ref::HyperParam;
        e.type = Type::Int;
        if (hp->type.kind == ast::HyperParamType::Kind::Int2) return pairWithoutComponent(e);
        if (hp->type.kind != ast::HyperParamType::Kind::Int) {
          diags_.error(e.loc, fmt::format("dimension '{}' of {} is a {} hyper-parameter; dimensions must be integers", e.name,
                                          where, hyperParamType(*hp) == Type::Float ? "float" : "non-integer"));
          return false;
        }
        return true;
      }
      for (const SizeSymbol &s : syms_.sizes)
        if (s.name == e.name && allowSizes) {
          e.ref = Ref::SizeSymbol;
          e.type = Type::Int;
          return true;
        }
      diags_.error(e.loc,
                   fmt::format("'{}' in the shape of {} is not {}", e.name, where,
                               allowSizes ? "a hyper-parameter or a size of an input" : "an integer hyper-parameter"),
                   allowSizes ? fmt::format("name it in an input's shape or add '{}: int' to the layer's hyper-parameters", e.name)
                              : fmt::format("parameter shapes are fixed when the layer is created; add '{}: int' to the "
                                            "layer's hyper-parameters",
                                            e.name));
      return false;
    }
    case Expr::Kind::Binary:
      if (e.op == "+" || e.op == "-" || e.op == "*" || e.op == "//" || e.op == "%") {
        bool ok = checkSizeExpr(*e.args[0], allowSizes, where);
        ok = checkSizeExpr(*e.args[1], allowSizes, where) && ok;
        e.type = Type::Int;
        return ok;
      }
      break;
    case Expr::Kind::Access:
      if (isPair(e.name)) return pairComponent(e) != Type::Unknown;
      break;
    case Expr::Kind::Call:
      // select(cond, a, b), min(a, b), max(a, b) of sizes: e.g. a stride that defaults to the kernel.
      if ((e.name == "select" && e.args.size() == 3) || ((e.name == "min" || e.name == "max") && e.args.size() == 2)) {
        bool ok = true;
        size_t first = 0;
        if (e.name == "select") {
          Type c = checkExpr(*e.args[0]);
          if (c != Type::Bool && c != Type::Unknown) {
            diags_.error(e.args[0]->loc, "the first argument of select must be a condition");
            ok = false;
          }
          first = 1;
        }
        for (size_t i = first; i < e.args.size(); ++i) ok = checkSizeExpr(*e.args[i], allowSizes, where) && ok;
        e.type = Type::Int;
        return ok;
      }
      break;
    case Expr::Kind::Unary:
      // Literals are never negative: '-2' is a negation.
      if (e.op == "-" && e.args[0]->kind == Expr::Kind::IntLit) {
        diags_.error(e.loc, fmt::format("a dimension of {} is negative", where));
        return false;
      }
      break;
    default: break;
    }
    diags_.error(e.loc, fmt::format("a dimension of {} must be integer arithmetic (+ - * // %) on sizes and constants", where),
                 e.kind == Expr::Kind::Binary && e.op == "/" ? "use '//' for integer division" : "");
    return false;
  }

  void declareStateTensor(ast::TensorDecl &d, TensorRole role) {
    // A parameter may share its name with a hyper-parameter (PyTorch's `bias` flag and `bias`
    // tensor): an indexed use is the tensor, a bare one the hyper-parameter.
    if (!syms_.hyperParam(d.name.text) || findTensor(d.name.text)) declareName(d.name, roleName(role));
    if (d.condition) {
      Type t = checkExpr(*d.condition);
      if (t != Type::Bool && t != Type::Unknown)
        diags_.error(d.condition->loc, fmt::format("the condition of {} '{}' must be a bool", roleName(role), d.name.text),
                     "e.g. 'where bias' with a bool hyper-parameter bias");
    }
    TensorSymbol t{d.name.text, role, {}, false, d.loc, nullptr};
    std::string where = fmt::format("{} '{}'", roleName(role), d.name.text);
    for (ast::Dim &dim : d.dims) {
      if (!checkSizeExpr(*dim.size, /*allowSizes=*/false, where.c_str())) badSizes_.insert(dim.size.get());
      t.shape.push_back(dim.size.get());
    }
    syms_.tensors.push_back(std::move(t));
    if (d.init) checkInitializer(d, *d.init);
  }

  void checkInitializer(const ast::TensorDecl &d, Expr &init) {
    std::string name = init.kind == Expr::Kind::Call || init.kind == Expr::Kind::Ident ? init.name : "";
    auto it = kInitializers.find(name);
    if (it == kInitializers.end()) {
      diags_.error(init.loc, fmt::format("unknown initializer '{}' for '{}'", name.empty() ? ast::printExpr(init) : name,
                                         d.name.text),
                   "initializers are uniform(lo, hi), normal(mean, std), zeros, ones and constant(v)");
      return;
    }
    size_t given = init.kind == Expr::Kind::Call ? init.args.size() : 0;
    if (given != static_cast<size_t>(it->second)) {
      diags_.error(init.loc, fmt::format("initializer '{}' takes {} argument{}, given {}", name, it->second,
                                         it->second == 1 ? "" : "s", given));
      return;
    }
    for (ast::ExprPtr &a : init.args) {
      Type t = checkExpr(*a);
      if (!numeric(t) || t == Type::Unknown) continue;
    }
  }

  void declareInput(ast::TensorDecl &d) {
    declareName(d.name, "input");
    TensorSymbol t{d.name.text, TensorRole::Input, {}, false, d.loc, nullptr};
    std::string where = fmt::format("input '{}'", d.name.text);
    for (size_t i = 0; i < d.dims.size(); ++i) {
      Expr &e = *d.dims[i].size;
      // A bare name that is not a hyper-parameter introduces a size symbol.
      if (e.kind == Expr::Kind::Ident && !syms_.hyperParam(e.name)) {
        bool known = false;
        for (const SizeSymbol &s : syms_.sizes) known |= s.name == e.name;
        if (!known) {
          if (layerNames_.count(e.name)) {
            declareName({e.name, e.loc}, "size");
          }
          syms_.sizes.push_back({e.name, e.loc, d.name.text, static_cast<int>(i)});
        } else if (d.dims[i].variadic) {
          diags_.error(e.loc, fmt::format("variadic size '{}' must not appear in another shape", e.name),
                       "name the collapsed dimensions with a fresh size, as in [B, D, N...]");
        }
        e.ref = Ref::SizeSymbol;
        e.type = Type::Int;
      } else {
        if (d.dims[i].variadic)
          diags_.error(e.loc, "'...' must follow a fresh size name, not a hyper-parameter or expression");
        if (!checkSizeExpr(e, /*allowSizes=*/true, where.c_str())) badSizes_.insert(&e);
      }
      t.shape.push_back(&e);
      t.expands.push_back(d.dims[i].variadic);
      t.counts.push_back(d.dims[i].count.get());
      if (d.dims[i].count) {
        std::string what = fmt::format("the count of '{}...'", e.name);
        if (!checkSizeExpr(*d.dims[i].count, /*allowSizes=*/false, what.c_str())) badSizes_.insert(d.dims[i].count.get());
      }
      t.variadic = d.dims[i].variadic && !d.dims[i].count;
    }
    syms_.tensors.push_back(std::move(t));
  }

  void declareOutput(ast::TensorDecl &d) {
    declareName(d.name, "output");
    if (d.shapeOmitted)
      diags_.error(d.loc, fmt::format("output '{}' needs its shape", d.name.text),
                   "outputs are declared with their shape, Y: [B, K, D]; only a network's may leave it to its definition");
    TensorSymbol t{d.name.text, TensorRole::Output, {}, false, d.loc, nullptr};
    std::string where = fmt::format("output '{}'", d.name.text);
    for (ast::Dim &dim : d.dims) {
      if (!checkSizeExpr(*dim.size, /*allowSizes=*/true, where.c_str())) badSizes_.insert(dim.size.get());
      if (dim.variadic && !isVariadicSize(*dim.size))
        diags_.error(dim.size->loc, fmt::format("'{}...' in output '{}' must name the variadic size of an input",
                                                ast::printExpr(*dim.size), d.name.text),
                     "an output dimension N... expands to the dimensions an input's N... collapsed");
      if (dim.count) diags_.error(dim.count->loc, "an output's N... takes no count: it expands to what the input's collapsed");
      t.shape.push_back(dim.size.get());
      t.expands.push_back(dim.variadic);
      t.counts.push_back(nullptr);
    }
    t.variadic = !d.dims.empty() && d.dims.back().variadic;
    syms_.tensors.push_back(std::move(t));
  }

  bool isVariadicSize(const Expr &e) const {
    if (e.kind != Expr::Kind::Ident) return false;
    for (const TensorSymbol &t : syms_.tensors)
      if (t.role == TensorRole::Input)
        for (size_t i = 0; i < t.shape.size(); ++i)
          if (t.expands[i] && sizeText(*t.shape[i]) == e.name) return true;
    return false;
  }

  // ---- int2 hyper-parameters ----------------------------------------------------------------------
  bool isPair(const std::string &name) const {
    const ast::HyperParam *hp = syms_.hyperParam(name);
    return hp && hp->type.kind == ast::HyperParamType::Kind::Int2;
  }

  bool pairWithoutComponent(const Expr &e) {
    diags_.error(e.loc, fmt::format("'{}' is a pair (int2)", e.name),
                 fmt::format("use {0}[0] or {0}[1]", e.name));
    return false;
  }

  // kernel_size[0]: one component of an int2 hyper-parameter.
  Type pairComponent(Expr &e) {
    if (e.args.size() != 1 || e.args[0]->kind != Expr::Kind::IntLit || e.args[0]->intValue < 0 || e.args[0]->intValue > 1) {
      diags_.error(e.loc, fmt::format("'{}' is a pair (int2): index it with [0] or [1]", e.name));
      return Type::Unknown;
    }
    e.ref = Ref::HyperParam;
    e.enumValue = e.args[0]->intValue;
    e.type = Type::Int;
    return Type::Int;
  }

  // A hand-written backward block sees every forward tensor, grad_Y for each output, and
  // must define grad_X for each input and parameter (same shapes as X).
  void checkBackward(ast::Forward &b) {
    std::vector<TensorSymbol> added;
    for (const TensorSymbol &t : syms_.tensors) {
      TensorRole role;
      if (t.role == TensorRole::Output) role = TensorRole::GradSeed;
      else if (t.role == TensorRole::Input || t.role == TensorRole::Param) role = TensorRole::GradOut;
      else continue;
      TensorSymbol g{"grad_" + t.name, role, t.shape, t.variadic, b.loc, nullptr};
      g.inBackward = true;
      added.push_back(std::move(g));
    }
    size_t firstNew = syms_.tensors.size();
    for (TensorSymbol &g : added) {
      if (findTensor(g.name))
        diags_.error(findTensor(g.name)->loc, fmt::format("'{}' is the name of a gradient in the backward block", g.name),
                     "rename this tensor");
      syms_.tensors.push_back(std::move(g));
    }
    for (ast::Statement &s : b.statements) {
      size_t before = syms_.tensors.size();
      checkStatement(s);
      for (size_t i = before; i < syms_.tensors.size(); ++i) syms_.tensors[i].inBackward = true;
      if (s.update) diags_.error(s.target.loc, "buffers are updated in the forward block, not in backward");
      if (s.recover) diags_.error(s.target.loc, "tensors are recovered in the forward block, not in backward");
    }
    for (size_t i = firstNew; i < syms_.tensors.size(); ++i) {
      const TensorSymbol &g = syms_.tensors[i];
      if (g.role == TensorRole::GradOut && !g.definition)
        diags_.error(b.loc, fmt::format("the backward block does not define '{}'", g.name),
                     fmt::format("add '{}[...] = ...' (write 0 if nothing flows into {})", g.name, g.name.substr(5)));
    }
  }

  void checkRequirement(ast::Requirement &r) {
    Type t = checkExpr(*r.condition);
    if (t != Type::Bool && t != Type::Unknown)
      diags_.error(r.condition->loc, "a requirement must be a condition", "e.g. require in_channels % groups == 0");
    syms_.requirements.push_back(&r);
  }

  // ---- statements ---------------------------------------------------------------------------------
  void constrain(const std::string &var, const Expr *extent, std::string from, SourceLoc loc) {
    IndexInfo &info = indices_[var];
    if (!extent || badSizes_.count(extent)) {
      info.reported = true; // the dimension itself was reported; say nothing about its ranges
      return;
    }
    if (!info.extent) {
      info.extent = extent;
      info.extentFrom = std::move(from);
      info.extentLoc = loc;
      return;
    }
    if (sizeText(*info.extent) == sizeText(*extent) || info.reported) return;
    info.reported = true;
    Diagnostic &d = diags_.error(loc, fmt::format("conflicting ranges for index '{}': {} is {}, but {} is {}", var, from,
                                                  sizeText(*extent), info.extentFrom, sizeText(*info.extent)),
                                 "an index must range over dimensions of the same size; use a different index name");
    d.notes.push_back({info.extentLoc, fmt::format("'{}' got its range here", var)});
  }

  void checkStatement(ast::Statement &s) {
    if (!s.moreTargets.empty()) // then checked as a definition of its first tensor, so nothing cascades
      diags_.error(s.target.loc, "only a network's call of a sub-layer with several outputs defines several tensors",
                   "define one tensor per statement: Y[b, c] = ...");
    current_ = &s;
    indices_.clear();
    scope_.clear();
    reductions_.clear();
    readsPoisoned_ = false;
    int errorsBefore = diags_.errorCount();
    const std::string &name = s.target.text;

    TensorSymbol *target = findTensor(name);
    bool isOutput = false;
    bool isUpdate = false;
    bool isRecovery = false;
    int errorsBeforeTarget = diags_.errorCount();
    if (s.recover) {
      if (!target || (target->role != TensorRole::Input && !(target->role == TensorRole::Temp && target->definition)) ||
          target->inBackward) {
        diags_.error(s.target.loc, fmt::format("only an input or an intermediate defined before can be recovered; '{}' is {}",
                                               name, whatIs(name).empty() ? "not one" : whatIs(name)),
                     "recover X[b, c] = ... expresses an input X through what the forward pass keeps (its output)");
      } else {
        isRecovery = true;
      }
    } else if (s.update) {
      if (!target || target->role != TensorRole::Buffer) {
        diags_.error(s.target.loc, fmt::format("only buffers are updated with '<-'; '{}' is {}", name,
                                               whatIs(name).empty() ? "not a buffer" : whatIs(name)),
                     "define tensors with '='");
      } else if (updated_.count(name)) {
        diags_.error(s.target.loc, fmt::format("buffer '{}' is updated twice", name), "combine the updates in one statement");
      } else {
        isUpdate = true;
        updated_.insert(name);
      }
    } else if (target) {
      if ((target->role == TensorRole::Output || target->role == TensorRole::GradOut) && !target->definition) {
        isOutput = true;
      } else if (target->definition) {
        Diagnostic &d = diags_.error(s.target.loc, fmt::format("'{}' is defined twice", name),
                                     "each tensor has exactly one definition; give the new one another name");
        d.notes.push_back({target->definition->target.loc, "first definition here"});
      } else {
        diags_.error(s.target.loc, fmt::format("cannot define '{}': it is {} {} of layer '{}'", name,
                                               target->role == TensorRole::Input ? "an" : "a", roleName(target->role),
                                               layer_.name.text),
                     target->role == TensorRole::Buffer ? fmt::format("update a buffer with '<-': {}[...] <- ...", name)
                                                        : "define a new tensor with another name");
      }
    } else if (std::string what = whatIs(name); !what.empty()) {
      diags_.error(s.target.loc,
                   fmt::format("cannot define '{}': it is {} of layer '{}'", name, what, layer_.name.text),
                   "define a new tensor with another name");
    } else if (layerNames_.count(name)) {
      diags_.error(s.target.loc, fmt::format("cannot define '{}': the name is already used in layer '{}'", name,
                                             layer_.name.text));
    }

    // Left side: distinct plain index names.
    for (size_t i = 0; i < s.indices.size(); ++i) {
      Expr &ix = *s.indices[i];
      if (ix.kind != Expr::Kind::Ident) {
        diags_.error(ix.loc, fmt::format("index {} of '{}' on the left side must be a plain index name", i + 1, name),
                     "index arithmetic belongs on the right side, as in Y[h] = X[2 * h]");
        bindQuietly(ix);
        continue;
      }
      if (std::string what = whatIs(ix.name); !what.empty()) {
        diags_.error(ix.loc, fmt::format("index '{}' has the name of {}", ix.name, what),
                     "index names are usually lower case: b, c, i, k");
        continue;
      }
      if (indices_.count(ix.name)) {
        diags_.error(ix.loc, fmt::format("index '{}' appears twice on the left side of '{}'", ix.name, name),
                     "a diagonal is written with two indices and a guard, e.g. Y[i, j] = X[i] where i == j");
        continue;
      }
      ix.ref = Ref::IndexVar;
      ix.type = Type::Int;
      IndexInfo &info = indices_[ix.name];
      info.loc = ix.loc;
      info.free = true;
      scope_.push_back(ix.name);
    }
    // The left side's ranges: from an output's or buffer's declaration, or a declared shape.
    std::vector<const Expr *> declared;
    std::string declaredWhat =
        fmt::format("{} '{}'", isUpdate ? "buffer" : isRecovery ? "recovered tensor" : "output", name);
    if (isOutput || isUpdate || isRecovery) {
      declared = target->shape;
      if (!s.shape.empty())
        diags_.error(s.shape[0]->loc, fmt::format("{} already has a shape; only intermediates declare one here",
                                                  declaredWhat));
    } else if (!s.shape.empty()) {
      declaredWhat = fmt::format("'{}'", name);
      std::string where = fmt::format("intermediate '{}'", name);
      for (ast::ExprPtr &d : s.shape) {
        if (!checkSizeExpr(*d, /*allowSizes=*/true, where.c_str())) badSizes_.insert(d.get());
        declared.push_back(d.get());
      }
    }
    if ((isOutput || isUpdate || isRecovery || !s.shape.empty()) && declared.size() != s.indices.size()) {
      Diagnostic &d = diags_.error(s.target.loc,
                                   fmt::format("{} is declared with {} dimension{} but defined with {} ind{}", declaredWhat,
                                               declared.size(), declared.size() == 1 ? "" : "s",
                                               s.indices.size(), s.indices.size() == 1 ? "ex" : "ices"));
      if (target) d.notes.push_back({target->loc, "declared here"});
    } else {
      for (size_t i = 0; i < declared.size(); ++i)
        if (s.indices[i]->ref == Ref::IndexVar)
          constrain(s.indices[i]->name, declared[i], fmt::format("dimension {} of {}", i, declaredWhat), declared[i]->loc);
    }

    Type vt = checkExpr(*s.value);
    if (vt == Type::Bool)
      diags_.error(s.value->loc, fmt::format("the value of '{}' is a bool", name),
                   "tensors hold numbers; use select(condition, a, b)");
    if (s.guard) {
      Type gt = checkExpr(*s.guard);
      if (gt != Type::Bool && gt != Type::Unknown)
        diags_.error(s.guard->loc, "a 'where' guard must be a condition",
                     s.recover ? "a recovery holds under a condition on hyper-parameters, as in 'where activation == "
                                 "leaky_relu'"
                               : "compare indices, as in 'where h < H'");
    }
    if (isRecovery && readsTensor(*s.value, name))
      diags_.error(s.value->loc, fmt::format("the recovery of '{}' reads '{}' itself", name, name),
                   "express it through tensors the forward pass keeps, such as its output");

    // Every index needs a range (not worth saying when the target itself is wrong).
    bool targetBad = diags_.errorCount() > errorsBeforeTarget && !isOutput && (target || layerNames_.count(name));
    s.indexExtents.clear();
    for (auto &ix : s.indices) {
      if (ix->ref != Ref::IndexVar) {
        s.indexExtents.push_back(nullptr);
        continue;
      }
      IndexInfo &info = indices_[ix->name];
      if (!info.extent && !targetBad && !info.reported)
        diags_.error(ix->loc, fmt::format("cannot infer the range of index '{}'", ix->name),
                     fmt::format("use '{}' directly as an index of a tensor with a known shape on the right side", ix->name));
      s.indexExtents.push_back(info.extent);
    }
    // softmax normalizes over a free index, whose range is known only now.
    for (Expr *r : reductions_)
      for (size_t i = 0; i < r->vars.size(); ++i)
        if (auto it = indices_.find(r->vars[i].text); it != indices_.end() && it->second.free)
          r->varExtents[i] = it->second.extent;

    bool ok = diags_.errorCount() == errorsBefore;
    if (isRecovery) {
      syms_.recoveries.push_back(&s);
    } else if (s.recover) {
      // Wrong, and reported: defines nothing.
    } else if (isUpdate) {
      syms_.updates.push_back(&s);
    } else if (isOutput) {
      target->definition = &s;
    } else if (!target && !s.update) {
      TensorSymbol t{name, TensorRole::Temp, {}, false, s.target.loc, &s};
      for (const Expr *e : s.indexExtents) t.shape.push_back(e);
      syms_.tensors.push_back(std::move(t));
    }
    // Reading a poisoned tensor leaves indices without ranges (quietly): poisoned as well.
    if (!ok || readsPoisoned_) poisoned_.insert(name);
    current_ = nullptr;
  }

  static bool readsTensor(const Expr &e, const std::string &name) {
    if (e.kind == Expr::Kind::Access && e.name == name) return true;
    for (const ast::ExprPtr &a : e.args)
      if (readsTensor(*a, name)) return true;
    return false;
  }

  // The plain names inside a malformed left-side index, bound as indices so that their uses
  // on the right side are not reported as unknown as well.
  void bindQuietly(const Expr &e) {
    if (e.kind == Expr::Kind::Ident && !inScope(e.name) && whatIs(e.name).empty()) {
      IndexInfo &info = indices_[e.name];
      info.loc = e.loc;
      info.free = true;
      info.reported = true;
      scope_.push_back(e.name);
    }
    for (const ast::ExprPtr &a : e.args) bindQuietly(*a);
  }

  bool inScope(const std::string &n) const {
    for (const std::string &s : scope_)
      if (s == n) return true;
    return false;
  }

  // ---- expressions --------------------------------------------------------------------------------
  Type checkExpr(Expr &e) {
    e.type = checkExprImpl(e);
    return e.type;
  }

  Type checkExprImpl(Expr &e) {
    switch (e.kind) {
    case Expr::Kind::IntLit: return Type::Int;
    case Expr::Kind::FloatLit: return Type::Float;
    case Expr::Kind::BoolLit: return Type::Bool;
    case Expr::Kind::Ident: return checkIdent(e);
    case Expr::Kind::Access: return checkAccess(e);
    case Expr::Kind::Call: return checkCall(e);
    case Expr::Kind::Reduce: return checkReduce(e);
    case Expr::Kind::Unary: {
      Type t = checkExpr(*e.args[0]);
      if (e.op == "!") {
        if (t != Type::Bool && t != Type::Unknown) {
          diags_.error(e.loc, "'!' needs a condition");
          return Type::Unknown;
        }
        return Type::Bool;
      }
      if (t == Type::Bool) {
        diags_.error(e.loc, "cannot negate a bool", "use '!' for logical not");
        return Type::Unknown;
      }
      return t;
    }
    case Expr::Kind::Binary: return checkBinary(e);
    }
    return Type::Unknown;
  }

  Type checkIdent(Expr &e) {
    if (current_ && inScope(e.name)) {
      e.ref = Ref::IndexVar;
      return Type::Int;
    }
    if (const ast::HyperParam *hp = syms_.hyperParam(e.name)) {
      if (hp->type.kind == ast::HyperParamType::Kind::Int2) {
        pairWithoutComponent(e);
        return Type::Unknown;
      }
      e.ref = Ref::HyperParam;
      return hyperParamType(*hp);
    }
    // training: true in a training pass, false in evaluation. distributed: the layer runs in
    // a process group of more than one process (its allreduces sum over processes).
    if (e.name == "training" || e.name == "distributed") {
      e.ref = Ref::Implicit;
      return Type::Bool;
    }
    if (e.name == "inf") {
      e.ref = Ref::Constant;
      e.floatValue = std::numeric_limits<double>::infinity();
      return Type::Float;
    }
    if (auto it = enumerators_.find(e.name); it != enumerators_.end()) {
      e.ref = Ref::EnumValue;
      e.enumValue = it->second;
      return Type::Int;
    }
    for (const SizeSymbol &s : syms_.sizes)
      if (s.name == e.name) {
        e.ref = Ref::SizeSymbol;
        return Type::Int;
      }
    if (TensorSymbol *t = findTensor(e.name)) {
      if (t->shape.empty() && current_) {
        e.ref = Ref::Tensor;
        return Type::Float;
      }
      diags_.error(e.loc, fmt::format("{} '{}' is used without indices", roleName(t->role), e.name),
                   fmt::format("write {}[...] with {} ind{}", e.name, t->shape.size(), t->shape.size() == 1 ? "ex" : "ices"));
      return Type::Unknown;
    }
    if (!current_) {
      diags_.error(e.loc, fmt::format("unknown name '{}'", e.name), "only hyper-parameters can be used here");
      return Type::Unknown;
    }
    diags_.error(e.loc, fmt::format("unknown name '{}'", e.name),
                 fmt::format("an index must appear on the left side of '{}' or be reduced over, as in sum({}: ...)",
                             current_->target.text, e.name));
    indices_[e.name].reported = true;
    return Type::Unknown;
  }

  Type checkAccess(Expr &e) {
    if (isPair(e.name) && !findTensor(e.name)) return pairComponent(e);
    for (ast::ExprPtr &a : e.args) checkExpr(*a);
    if (!current_) {
      diags_.error(e.loc, fmt::format("tensor access '{}' is not allowed here", e.name),
                   "initializers and shapes may only use hyper-parameters");
      return Type::Unknown;
    }
    TensorSymbol *t = findTensor(e.name);
    if (!t && e.name == current_->target.text) {
      diags_.error(e.nameLoc, fmt::format("'{}' is used in its own definition", e.name),
                   "a tensor cannot depend on itself; define a new tensor");
      return Type::Unknown;
    }
    if (!t) {
      for (const ast::Statement &later : layer_.forward->statements)
        if (later.target.text == e.name) {
          Diagnostic &d = diags_.error(e.nameLoc, fmt::format("'{}' is used before it is defined", e.name),
                                       "move its definition above this line");
          d.notes.push_back({later.target.loc, fmt::format("'{}' is defined here", e.name)});
          return Type::Unknown;
        }
      if (definedByDroppedStatement(e.name)) return Type::Unknown;
      std::string hint;
      if (inScope(e.name)) hint = fmt::format("'{}' is an index, not a tensor", e.name);
      else if (syms_.hyperParam(e.name)) hint = fmt::format("'{}' is a hyper-parameter, not a tensor", e.name);
      else if (const TensorSymbol *near = closestTensor(e.name))
        hint = fmt::format("did you mean '{}'?", near->name);
      diags_.error(e.nameLoc, fmt::format("unknown tensor '{}'", e.name), hint);
      return Type::Unknown;
    }
    e.ref = Ref::Tensor;
    // An update reads the buffer's old value; anything else reading its own target is a cycle.
    if (t->definition == current_ || (t->name == current_->target.text && !t->definition && !current_->update)) {
      diags_.error(e.nameLoc, fmt::format("'{}' is used in its own definition", e.name),
                   "a tensor cannot depend on itself; define a new tensor");
      return Type::Unknown;
    }
    if ((t->role == TensorRole::Output || t->role == TensorRole::Temp) && !t->definition) {
      Diagnostic &d = diags_.error(e.nameLoc, fmt::format("'{}' is used before it is defined", e.name),
                                   "move its definition above this line");
      for (const ast::Statement &later : layer_.forward->statements)
        if (later.target.text == e.name) {
          d.notes.push_back({later.target.loc, fmt::format("'{}' is defined here", e.name)});
          break;
        }
      return Type::Unknown;
    }
    if (poisoned_.count(t->name)) {
      markReported(e);
      readsPoisoned_ = true;
      return Type::Float;
    }
    if (t->shape.size() != e.args.size()) {
      Diagnostic &d = diags_.error(e.loc, fmt::format("'{}' has {} dimension{} but is indexed with {}", e.name,
                                                      t->shape.size(), t->shape.size() == 1 ? "" : "s", e.args.size()));
      d.notes.push_back({t->loc, fmt::format("'{}' declared here", e.name)});
      markReported(e);
      return Type::Float;
    }
    for (size_t i = 0; i < e.args.size(); ++i) {
      Expr &a = *e.args[i];
      if (a.type == Type::Float || a.type == Type::Bool) {
        diags_.error(a.loc, fmt::format("index {} of '{}' is {}, not an integer", i + 1, e.name, typeWord(a.type)),
                     a.type == Type::Float ? "'/' divides exactly; use '//' for integer division" : "");
        continue;
      }
      if (a.kind == Expr::Kind::Ident && a.ref == Ref::IndexVar)
        constrain(a.name, t->shape[i], fmt::format("dimension {} of '{}'", i, e.name), a.loc);
    }
    return Type::Float;
  }

  // An access that was reported (or reads a tensor whose definition was) gives its indices no
  // range; don't report them again as having none.
  void markReported(const Expr &access) {
    for (const ast::ExprPtr &a : access.args)
      if (a->kind == Expr::Kind::Ident && a->ref == Ref::IndexVar) indices_[a->name].reported = true;
  }

  Type checkCall(Expr &e) {
    auto it = kFunctions.find(e.name);
    // min and max are also functions of two arguments. The arguments are not checked: the index
    // the reduction was meant to bind would only show up as unknown there.
    bool asFunction = it != kFunctions.end() && e.args.size() == static_cast<size_t>(it->second);
    if (kReductions.count(e.name) && !asFunction) {
      diags_.error(e.loc, fmt::format("'{}' needs the index it reduces over", e.name),
                   fmt::format("write {}(i: expression)", e.name));
      return Type::Unknown;
    }
    std::vector<Type> types;
    for (ast::ExprPtr &a : e.args) types.push_back(checkExpr(*a));
    for (const ast::Name &n : e.argNames)
      if (!n.text.empty()) {
        diags_.error(n.loc, fmt::format("'{}' takes no named arguments", e.name),
                     "named arguments (name=value) are for sub-layers, declared in a network as conv1 = Conv2d(...)");
        return Type::Unknown;
      }
    if (it == kFunctions.end()) {
      std::string hint = "functions are " + functionList();
      if (TensorSymbol *t = findTensor(e.name)) hint = fmt::format("'{}' is a tensor: index it with [...]", t->name);
      diags_.error(e.nameLoc, fmt::format("unknown function '{}'", e.name), hint);
      return Type::Unknown;
    }
    if (e.name == "rand") {
      // rand(i, j, ...): a uniform number in [0, 1) fixed by the indices, the seed and the pass.
      if (e.args.empty() || e.args.size() > 4) {
        diags_.error(e.loc, fmt::format("'rand' takes 1 to 4 integer arguments, given {}", e.args.size()));
        return Type::Unknown;
      }
      for (size_t i = 0; i < types.size(); ++i)
        if (types[i] != Type::Int && types[i] != Type::Unknown)
          diags_.error(e.args[i]->loc, fmt::format("argument {} of 'rand' is {}, not an integer", i + 1, typeWord(types[i])),
                       "rand takes indices, as in rand(b, c, i)");
      return Type::Float;
    }
    if (e.name == "allreduce") {
      // allreduce(x): x summed over every process of the group, element by element. Each
      // process must compute the same elements, so it may not sit inside a reduction (whose
      // index could range over a per-process size such as the batch).
      if (!current_) {
        diags_.error(e.loc, "allreduce is only allowed in a statement of a layer");
        return Type::Unknown;
      }
      if (reductionDepth_ > 0)
        diags_.error(e.loc, "allreduce may not appear inside a reduction",
                     "reduce first, then sum over processes: allreduce(sum(i: ...))");
    }
    if (e.args.size() != static_cast<size_t>(it->second)) {
      diags_.error(e.loc, fmt::format("'{}' takes {} argument{}, given {}", e.name, it->second, it->second == 1 ? "" : "s",
                                      e.args.size()));
      return Type::Unknown;
    }
    if (e.name == "select") {
      if (types[0] != Type::Bool && types[0] != Type::Unknown)
        diags_.error(e.args[0]->loc, "the first argument of select must be a condition", "e.g. select(x > 0, x, 0)");
      for (int i = 1; i < 3; ++i)
        if (types[i] == Type::Bool) diags_.error(e.args[i]->loc, "select chooses between numbers, not bools");
      if (types[1] == Type::Float || types[2] == Type::Float) return Type::Float;
      return types[1] == Type::Int && types[2] == Type::Int ? Type::Int : Type::Unknown;
    }
    for (size_t i = 0; i < types.size(); ++i)
      if (types[i] == Type::Bool)
        diags_.error(e.args[i]->loc, fmt::format("argument {} of '{}' is a bool, not a number", i + 1, e.name),
                     "use select(condition, a, b) to turn a condition into a number");
    if (e.name == "min" || e.name == "max")
      return types[0] == Type::Int && types[1] == Type::Int ? Type::Int : Type::Float;
    if (e.name == "int") return Type::Int;
    return Type::Float;
  }

  Type checkReduce(Expr &e) {
    if (!kReductions.count(e.name)) {
      diags_.error(e.nameLoc, fmt::format("unknown reduction '{}'", e.name),
                   kFunctions.count(e.name) ? fmt::format("'{}' is a function; call it as {}(x)", e.name, e.name)
                                            : "reductions are sum, max, min, mean, prod, softmax and logsumexp");
      return Type::Unknown;
    }
    if (!current_) {
      diags_.error(e.loc, "a reduction is not allowed here");
      return Type::Unknown;
    }
    bool softmax = e.name == "softmax";
    if (softmax && e.vars.size() != 1) diags_.error(e.loc, "softmax normalizes over exactly one index");
    // Each reduction binds fresh indices: a sibling reduction reusing the name has its own range.
    std::vector<std::pair<std::string, std::optional<IndexInfo>>> added; // with what they shadow
    for (const ast::Name &v : e.vars) {
      auto it = indices_.find(v.text);
      bool bound = it != indices_.end() && inScope(v.text);
      bool mine = std::any_of(added.begin(), added.end(), [&](const auto &a) { return a.first == v.text; });
      if (softmax) {
        if (bound && it->second.free) continue;
        diags_.error(v.loc, fmt::format("softmax({}: ...) normalizes over a free index, but '{}' is not on the left side of '{}'",
                                        v.text, v.text, current_->target.text),
                     fmt::format("add '{}' to the left side, or use logsumexp({}: ...) to reduce over it", v.text, v.text));
        // Bound below like a reduction index, so its uses in the body do not cascade.
      } else if (mine) {
        diags_.error(v.loc, fmt::format("index '{}' appears twice in {}(...)", v.text, e.name));
        continue;
      } else if (bound && it->second.free) {
        diags_.error(v.loc, fmt::format("index '{}' of {}({}: ...) is also a free index of '{}'", v.text, e.name, v.text,
                                        current_->target.text),
                     fmt::format("a reduction index must not appear on the left side; drop it from {}[...] or rename it",
                                 current_->target.text));
        continue;
      } else if (bound) {
        diags_.error(v.loc, fmt::format("index '{}' is already bound by an enclosing reduction", v.text),
                     "give the inner reduction's index another name");
        continue;
      } else if (std::string what = whatIs(v.text); !what.empty()) {
        diags_.error(v.loc, fmt::format("reduction index '{}' has the name of {}", v.text, what),
                     "index names are usually lower case: b, c, i, k");
        continue;
      }
      if (bound || mine) continue;
      std::optional<IndexInfo> shadowed;
      if (it != indices_.end()) shadowed = it->second;
      added.emplace_back(v.text, std::move(shadowed));
      IndexInfo &info = indices_[v.text];
      info = IndexInfo{};
      info.loc = v.loc;
      scope_.push_back(v.text);
    }
    // Explicit bounds (kh < K) come first: they are the range, and uses must agree.
    for (size_t i = 0; i < e.varBounds.size(); ++i) {
      if (!e.varBounds[i]) continue;
      std::string where = fmt::format("the bound of '{}'", e.vars[i].text);
      if (!checkSizeExpr(*e.varBounds[i], /*allowSizes=*/true, where.c_str())) {
        badSizes_.insert(e.varBounds[i].get());
        continue;
      }
      if (std::any_of(added.begin(), added.end(), [&](const auto &a) { return a.first == e.vars[i].text; }))
        constrain(e.vars[i].text, e.varBounds[i].get(), where, e.varBounds[i]->loc);
    }
    ++reductionDepth_;
    Type body = checkExpr(*e.args[0]);
    --reductionDepth_;
    if (body == Type::Bool)
      diags_.error(e.args[0]->loc, fmt::format("the body of {} is a bool, not a number", e.name),
                   "use select(condition, 1, 0) to count");
    // Ranges of this reduction's own indices come from its body alone: settle them now.
    e.varExtents.assign(e.vars.size(), nullptr);
    for (auto &[name, shadowed] : added) {
      IndexInfo &info = indices_[name];
      if (!info.extent && !info.reported)
        diags_.error(info.loc, fmt::format("cannot infer the range of reduction index '{}'", name),
                     fmt::format("use '{}' directly as an index of a tensor inside the {}", name, e.name));
      for (size_t i = 0; i < e.vars.size(); ++i)
        if (e.vars[i].text == name) e.varExtents[i] = info.extent;
      scope_.erase(std::find(scope_.begin(), scope_.end(), name));
      if (shadowed) info = *shadowed;
      else indices_.erase(name);
    }
    reductions_.push_back(&e);
    return Type::Float;
  }

  Type checkBinary(Expr &e) {
    Type l = checkExpr(*e.args[0]);
    Type r = checkExpr(*e.args[1]);
    const std::string &op = e.op;
    if (op == "&&" || op == "||") {
      if ((l != Type::Bool && l != Type::Unknown) || (r != Type::Bool && r != Type::Unknown))
        diags_.error(e.loc, fmt::format("'{}' needs conditions on both sides", op));
      return Type::Bool;
    }
    if (l == Type::Bool || r == Type::Bool) {
      diags_.error(e.loc, fmt::format("a condition (bool) cannot be used with '{}'", op),
                   "use select(condition, a, b) to turn a condition into a number");
      return Type::Unknown;
    }
    if (op == "<" || op == "<=" || op == ">" || op == ">=" || op == "==" || op == "!=") return Type::Bool;
    if (op == "//" || op == "%") {
      if (l == Type::Float || r == Type::Float) {
        diags_.error(e.loc, fmt::format("'{}' needs integer operands", op),
                     op == "//" ? "use '/' to divide numbers"
                                : "'%' is the remainder of index arithmetic, as in h % 2");
        return Type::Unknown;
      }
      return l == Type::Unknown || r == Type::Unknown ? Type::Unknown : Type::Int;
    }
    if (op == "/" || op == "^") return Type::Float;
    if (l == Type::Unknown || r == Type::Unknown) return Type::Unknown;
    return l == Type::Float || r == Type::Float ? Type::Float : Type::Int;
  }
};

} // namespace

CheckedModule check(ast::Module &module, DiagnosticEngine &diags) {
  CheckedModule out;
  std::map<std::string, SourceLoc> seen;
  for (auto &layer : module.layers) {
    auto [it, inserted] = seen.emplace(layer->name.text, layer->name.loc);
    if (!inserted) {
      Diagnostic &d = diags.error(layer->name.loc, fmt::format("layer '{}' is defined twice", layer->name.text));
      d.notes.push_back({it->second, "first definition here"});
    }
    out.layers.push_back(LayerChecker(*layer, diags).run());
  }
  return out;
}

} // namespace enc
