#include "dsl/Sema.h"

#include "dsl/LayerScope.h"
#include "dsl/StatementChecker.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <cctype>
#include <functional>
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

const TensorSymbol *LayerSymbols::find(const std::string &name) const { return tensors.find(name); }

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

using sema::LayerScope;
using sema::StatementChecker;

const std::map<std::string, int> kInitializers = {{"uniform", 2}, {"normal", 2}, {"zeros", 0}, {"ones", 0}, {"constant", 1}};

bool numeric(Type t) { return t == Type::Int || t == Type::Float || t == Type::Unknown; }

// Sema's layer-level checks: hyper-parameters, parameters and buffers, the signature, sub-layers,
// requirements, and that every output gets defined; each statement is checked by a
// StatementChecker of its own.
class LayerChecker {
public:
  LayerChecker(ast::Layer &layer, DiagnosticEngine &diags) : layer_(layer, diags) {}

  LayerSymbols run() {
    checkHyperParams();
    for (ast::TensorDecl &p : layer_.decl.params) declareStateTensor(p, TensorRole::Param);
    for (ast::TensorDecl &b : layer_.decl.buffers) declareStateTensor(b, TensorRole::Buffer);
    if (!layer_.decl.forward) {
      if (!layer_.decl.forwardFailed)
        layer_.diags.error(layer_.decl.name.loc, fmt::format("layer '{}' has no forward block", layer_.decl.name.text),
                           "add forward(X: [B, C]) -> Y: [B, C] { Y[b, c] = ... }");
      return std::move(layer_.syms);
    }
    ast::Forward &f = *layer_.decl.forward;
    noteSyntaxErrors(f);
    if (!layer_.decl.subLayers.empty()) return checkNetwork(f);
    for (ast::TensorDecl &in : f.inputs) declareInput(in);
    for (ast::TensorDecl &out : f.outputs) declareOutput(out);
    for (ast::Statement &s : f.statements) StatementChecker(layer_).check(s);
    if (layer_.decl.backward) checkBackward(*layer_.decl.backward);
    for (ast::Requirement &r : layer_.decl.requirements) checkRequirement(r);
    for (ast::Requirement &r : f.requirements) checkRequirement(r);
    for (const TensorSymbol &t : layer_.syms.tensors)
      if (t.role == TensorRole::Output && !t.definition && !layer_.definedByDroppedStatement(t.name))
        layer_.diags.error(t.loc, fmt::format("output '{}' is never defined", t.name),
                           fmt::format("add a statement '{}[...] = ...' to the forward block", t.name));
    return std::move(layer_.syms);
  }

private:
  LayerScope layer_;

  // An expression outside any statement: a condition, an initializer's argument, a requirement.
  Type checkExpr(Expr &e) { return StatementChecker(layer_).checkExpr(e); }
  bool checkSizeExpr(Expr &e, bool allowSizes, const char *where) {
    return StatementChecker(layer_).checkSizeExpr(e, allowSizes, where);
  }

  // A network's members and signature; its statements use sub-layers and whole tensors, and are
  // checked after expansion, when the sub-layers' shapes are known.
  LayerSymbols checkNetwork(ast::Forward &f) {
    layer_.syms.network = true;
    for (ast::SubLayer &sub : layer_.decl.subLayers) layer_.declareName(sub.name, "sub-layer");
    if (layer_.decl.backward)
      layer_.diags.error(layer_.decl.backward->loc, "a network's gradients are derived: it cannot have a backward block",
                         "move the hand-written gradient into a layer of its own and use that as a sub-layer");
    for (ast::TensorDecl &in : f.inputs) {
      for (const ast::Dim &d : in.dims)
        if (d.variadic)
          layer_.diags.error(d.size->loc, "a network's inputs have a fixed rank: '...' is for layers",
                             "name each dimension, as in X: [B, C, H, W]");
      declareInput(in);
    }
    for (ast::TensorDecl &out : f.outputs) layer_.declareName(out.name, "output");
    for (const ast::Statement &s : f.statements) {
      checkNotSubLayer(s.target);
      for (const ast::Name &t : s.moreTargets) checkNotSubLayer(t);
      checkSubLayersCalled(s);
    }
    for (ast::Requirement &r : layer_.decl.requirements) checkRequirement(r);
    for (ast::Requirement &r : f.requirements) checkRequirement(r);
    return std::move(layer_.syms);
  }

  // A tensor may not take a sub-layer's name: `a(X)` and `a` would mean different things.
  void checkNotSubLayer(const ast::Name &target) {
    for (const ast::SubLayer &sub : layer_.decl.subLayers)
      if (sub.name.text == target.text) {
        Diagnostic &d = layer_.diags.error(target.loc, fmt::format("cannot define '{}': it is a sub-layer of layer '{}'",
                                                                   target.text, layer_.decl.name.text),
                                           "define a new tensor with another name");
        d.notes.push_back({sub.loc, fmt::format("sub-layer '{}' declared here", sub.name.text)});
      }
  }

  // A sub-layer named without a call, `Y = a`, is no tensor (expanded, the network would call it an
  // unknown name). Index variables, the statement's own and a sum's, may share a sub-layer's name.
  void checkSubLayersCalled(const ast::Statement &s) {
    if (!s.value || layer_.decl.subLayers.empty()) return;
    std::set<std::string> indices;
    for (const ast::ExprPtr &i : s.indices)
      if (i && i->kind == ast::Expr::Kind::Ident) indices.insert(i->name);
    std::function<void(const ast::Expr &)> walk = [&](const ast::Expr &e) {
      if (e.kind == ast::Expr::Kind::Reduce)
        for (const ast::Name &v : e.vars) indices.insert(v.text);
      if (e.kind == ast::Expr::Kind::Ident && !indices.count(e.name))
        for (const ast::SubLayer &sub : layer_.decl.subLayers)
          if (sub.name.text == e.name) {
            Diagnostic &d = layer_.diags.error(e.loc, fmt::format("sub-layer '{}' is used without being called", e.name),
                                               fmt::format("call it on its input, as in {}(X)", e.name));
            d.notes.push_back({sub.loc, fmt::format("sub-layer '{}' declared here", sub.name.text)});
          }
      for (const ast::ExprPtr &a : e.args)
        if (a) walk(*a);
    };
    walk(*s.value);
  }

  // The parser drops a statement it cannot parse (and an unterminated block ends early).
  // Remember the block's text then, so a tensor such a statement defines is not reported as
  // unknown or never defined as well.
  void noteSyntaxErrors(const ast::Forward &f) {
    const std::string &text = f.loc.file->text();
    uint32_t end = f.closeLoc.valid() ? f.closeLoc.offset : static_cast<uint32_t>(text.size());
    for (const Diagnostic &d : layer_.diags.diagnostics())
      if (d.severity == Severity::Error && d.loc.file == f.loc.file && d.loc.offset > f.loc.offset &&
          d.loc.offset <= end) {
        layer_.forwardText = std::string_view(text).substr(f.loc.offset, end - f.loc.offset);
        return;
      }
  }

  void checkHyperParams() {
    for (ast::HyperParam &hp : layer_.decl.hyperParams) {
      layer_.declareName(hp.name, "hyper-parameter");
      using K = ast::HyperParamType::Kind;
      if (hp.type.kind == K::Enum) {
        std::set<std::string> seen;
        for (size_t i = 0; i < hp.type.enumerators.size(); ++i) {
          const ast::Name &e = hp.type.enumerators[i];
          if (!seen.insert(e.text).second)
            layer_.diags.error(e.loc, fmt::format("enumerator '{}' appears twice in the type of '{}'", e.text, hp.name.text));
          else if (layer_.enumerators.count(e.text) && layer_.enumerators[e.text] != static_cast<int64_t>(i))
            layer_.diags.error(e.loc, fmt::format("enumerator '{}' already names another position in another enumeration", e.text),
                               "enumerators shared between hyper-parameters must be at the same position");
          layer_.enumerators[e.text] = static_cast<int64_t>(i);
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
        layer_.diags.error(d.loc, fmt::format("default value of hyper-parameter '{}' must be {}; found '{}'", hp.name.text, want,
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
            layer_.diags.error(part->loc, fmt::format("default value of hyper-parameter '{}' must be an integer or a pair "
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

  void declareStateTensor(ast::TensorDecl &d, TensorRole role) {
    // A parameter may share its name with a hyper-parameter (PyTorch's `bias` flag and `bias`
    // tensor): an indexed use is the tensor, a bare one the hyper-parameter.
    if (!layer_.syms.hyperParam(d.name.text) || layer_.findTensor(d.name.text)) layer_.declareName(d.name, roleName(role));
    if (d.condition) {
      Type t = checkExpr(*d.condition);
      if (t != Type::Bool && t != Type::Unknown)
        layer_.diags.error(d.condition->loc, fmt::format("the condition of {} '{}' must be a bool", roleName(role), d.name.text),
                           "e.g. 'where bias' with a bool hyper-parameter bias");
    }
    TensorSymbol t{d.name.text, role, {}, false, d.loc, nullptr};
    std::string where = fmt::format("{} '{}'", roleName(role), d.name.text);
    for (ast::Dim &dim : d.dims) {
      if (!checkSizeExpr(*dim.size, /*allowSizes=*/false, where.c_str())) layer_.badSizes.insert(dim.size.get());
      t.shape.push_back(dim.size.get());
    }
    layer_.syms.tensors.push_back(std::move(t));
    if (d.init) checkInitializer(d, *d.init);
  }

  void checkInitializer(const ast::TensorDecl &d, Expr &init) {
    std::string name = init.kind == Expr::Kind::Call || init.kind == Expr::Kind::Ident ? init.name : "";
    auto it = kInitializers.find(name);
    if (it == kInitializers.end()) {
      layer_.diags.error(init.loc, fmt::format("unknown initializer '{}' for '{}'", name.empty() ? ast::printExpr(init) : name,
                                               d.name.text),
                         "initializers are uniform(lo, hi), normal(mean, std), zeros, ones and constant(v)");
      return;
    }
    size_t given = init.kind == Expr::Kind::Call ? init.args.size() : 0;
    if (given != static_cast<size_t>(it->second)) {
      layer_.diags.error(init.loc, fmt::format("initializer '{}' takes {} argument{}, given {}", name, it->second,
                                               it->second == 1 ? "" : "s", given));
      return;
    }
    for (ast::ExprPtr &a : init.args) {
      Type t = checkExpr(*a);
      if (!numeric(t) || t == Type::Unknown) continue;
    }
  }

  void declareInput(ast::TensorDecl &d) {
    layer_.declareName(d.name, "input");
    TensorSymbol t{d.name.text, TensorRole::Input, {}, false, d.loc, nullptr};
    std::string where = fmt::format("input '{}'", d.name.text);
    for (size_t i = 0; i < d.dims.size(); ++i) {
      Expr &e = *d.dims[i].size;
      // A bare name that is not a hyper-parameter introduces a size symbol.
      if (e.kind == Expr::Kind::Ident && !layer_.syms.hyperParam(e.name)) {
        bool known = false;
        for (const SizeSymbol &s : layer_.syms.sizes) known |= s.name == e.name;
        if (!known) {
          if (layer_.names.count(e.name)) {
            layer_.declareName({e.name, e.loc}, "size");
          }
          layer_.syms.sizes.push_back({e.name, e.loc, d.name.text, static_cast<int>(i)});
        } else if (d.dims[i].variadic) {
          layer_.diags.error(e.loc, fmt::format("variadic size '{}' must not appear in another shape", e.name),
                             "name the collapsed dimensions with a fresh size, as in [B, D, N...]");
        }
        e.ref = Ref::SizeSymbol;
        e.type = Type::Int;
      } else {
        if (d.dims[i].variadic)
          layer_.diags.error(e.loc, "'...' must follow a fresh size name, not a hyper-parameter or expression");
        if (!checkSizeExpr(e, /*allowSizes=*/true, where.c_str())) layer_.badSizes.insert(&e);
      }
      t.shape.push_back(&e);
      t.expands.push_back(d.dims[i].variadic);
      t.counts.push_back(d.dims[i].count.get());
      if (d.dims[i].count) {
        std::string what = fmt::format("the count of '{}...'", e.name);
        if (!checkSizeExpr(*d.dims[i].count, /*allowSizes=*/false, what.c_str())) layer_.badSizes.insert(d.dims[i].count.get());
      }
      t.variadic = d.dims[i].variadic && !d.dims[i].count;
    }
    layer_.syms.tensors.push_back(std::move(t));
  }

  void declareOutput(ast::TensorDecl &d) {
    layer_.declareName(d.name, "output");
    if (d.shapeOmitted)
      layer_.diags.error(d.loc, fmt::format("output '{}' needs its shape", d.name.text),
                         "outputs are declared with their shape, Y: [B, K, D]; only a network's may leave it to its definition");
    TensorSymbol t{d.name.text, TensorRole::Output, {}, false, d.loc, nullptr};
    std::string where = fmt::format("output '{}'", d.name.text);
    for (ast::Dim &dim : d.dims) {
      if (!checkSizeExpr(*dim.size, /*allowSizes=*/true, where.c_str())) layer_.badSizes.insert(dim.size.get());
      if (dim.variadic && !isVariadicSize(*dim.size))
        layer_.diags.error(dim.size->loc, fmt::format("'{}...' in output '{}' must name the variadic size of an input",
                                                      ast::printExpr(*dim.size), d.name.text),
                           "an output dimension N... expands to the dimensions an input's N... collapsed");
      if (dim.count) layer_.diags.error(dim.count->loc, "an output's N... takes no count: it expands to what the input's collapsed");
      t.shape.push_back(dim.size.get());
      t.expands.push_back(dim.variadic);
      t.counts.push_back(nullptr);
    }
    t.variadic = !d.dims.empty() && d.dims.back().variadic;
    layer_.syms.tensors.push_back(std::move(t));
  }

  bool isVariadicSize(const Expr &e) const {
    if (e.kind != Expr::Kind::Ident) return false;
    for (const TensorSymbol &t : layer_.syms.tensors)
      if (t.role == TensorRole::Input)
        for (size_t i = 0; i < t.shape.size(); ++i)
          if (t.expands[i] && sizeText(*t.shape[i]) == e.name) return true;
    return false;
  }

  // A hand-written backward block sees every forward tensor, grad_Y for each output, and
  // must define grad_X for each input and parameter (same shapes as X).
  void checkBackward(ast::Forward &b) {
    std::vector<TensorSymbol> added;
    for (const TensorSymbol &t : layer_.syms.tensors) {
      TensorRole role;
      if (t.role == TensorRole::Output) role = TensorRole::GradSeed;
      else if (t.role == TensorRole::Input || t.role == TensorRole::Param) role = TensorRole::GradOut;
      else continue;
      TensorSymbol g{"grad_" + t.name, role, t.shape, t.variadic, b.loc, nullptr};
      g.inBackward = true;
      added.push_back(std::move(g));
    }
    size_t firstNew = layer_.syms.tensors.size();
    for (TensorSymbol &g : added) {
      if (layer_.findTensor(g.name))
        layer_.diags.error(layer_.findTensor(g.name)->loc, fmt::format("'{}' is the name of a gradient in the backward block", g.name),
                           "rename this tensor");
      layer_.syms.tensors.push_back(std::move(g));
    }
    for (ast::Statement &s : b.statements) {
      size_t before = layer_.syms.tensors.size();
      StatementChecker(layer_).check(s);
      for (size_t i = before; i < layer_.syms.tensors.size(); ++i) {
        TensorSymbol &t = layer_.syms.tensors[i];
        t.inBackward = true;
        // A temporary named as a gradient is most likely one of a misspelt or missing tensor.
        if (t.name.starts_with("grad_"))
          layer_.diags.warning(s.target.loc,
                               fmt::format("'{}' is no input's or parameter's gradient: a temporary of the backward block",
                                           t.name),
                               "the block defines grad_NAME for each input and parameter NAME; rename a temporary");
      }
      if (s.update) layer_.diags.error(s.target.loc, "buffers are updated in the forward block, not in backward");
      if (s.recover) layer_.diags.error(s.target.loc, "tensors are recovered in the forward block, not in backward");
    }
    for (size_t i = firstNew; i < layer_.syms.tensors.size(); ++i) {
      const TensorSymbol &g = layer_.syms.tensors[i];
      if (g.role == TensorRole::GradOut && !g.definition)
        layer_.diags.error(b.loc, fmt::format("the backward block does not define '{}'", g.name),
                           fmt::format("add '{}[...] = ...' (write 0 if nothing flows into {})", g.name, g.name.substr(5)));
    }
  }

  void checkRequirement(ast::Requirement &r) {
    Type t = checkExpr(*r.condition);
    if (t != Type::Bool && t != Type::Unknown)
      layer_.diags.error(r.condition->loc, "a requirement must be a condition", "e.g. require in_channels % groups == 0");
    layer_.syms.requirements.push_back(&r);
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
