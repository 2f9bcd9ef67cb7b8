// Annotated AST -> tensor IR.
#include "compiler/Passes.h"

#include "support/Error.h"
#include "support/InternalError.h"

namespace enc::ir {
namespace {

using AExpr = ast::Expr;

class Lowerer {
public:
  explicit Lowerer(const LayerSymbols &layer) : layer_(layer) {}

  // The forward pass, or (`backward`) the layer's hand-written backward block: its inputs are
  // the forward pass's inputs, parameters, buffers and outputs and the output gradients; the
  // forward temporaries it reads are recomputed from their definitions.
  Program run(bool backward = false) {
    Program p;
    p.layer = layer_.layer->name.text;
    p.source = layer_.layer->loc.file;
    for (const ast::HyperParam &hp : layer_.layer->hyperParams) {
      using K = ast::HyperParamType::Kind;
      Type t = hp.type.kind == K::Float ? Type::Float : hp.type.kind == K::Bool ? Type::Bool : Type::Int;
      if (hp.type.kind == K::Int2) {
        p.sizes.push_back({pairComponentName(hp.name.text, 0), Type::Int, VarKind::Size});
        p.sizes.push_back({pairComponentName(hp.name.text, 1), Type::Int, VarKind::Size});
      } else {
        p.sizes.push_back({hp.name.text, t, t == Type::Int ? VarKind::Size : VarKind::Param});
      }
    }
    p.sizes.push_back({"training", Type::Bool, VarKind::Param});
    p.sizes.push_back({"distributed", Type::Bool, VarKind::Param});
    p.sizes.push_back({kRandomSeed, Type::Int, VarKind::Size});
    for (const SizeSymbol &s : layer_.sizes) p.sizes.push_back({s.name, Type::Int, VarKind::Size});
    for (const TensorSymbol &t : layer_.tensors) {
      if (t.inBackward && !backward) continue;
      TensorRole role = t.role;
      if (backward) {
        if (role == TensorRole::Param || role == TensorRole::Buffer || role == TensorRole::Output ||
            role == TensorRole::GradSeed)
          role = TensorRole::Input;
        else if (role == TensorRole::GradOut)
          role = TensorRole::Output;
      }
      TensorDecl d{t.name, role, {}, t.loc};
      for (const AExpr *e : t.shape) d.shape.push_back(lower(*e));
      p.tensors.push_back(std::move(d));
    }
    std::vector<const ast::Statement *> statements;
    for (const ast::Statement &s : layer_.layer->forward->statements) {
      if (s.recover) continue; // below
      if (!backward || (!s.update && layer_.find(s.target.text)->role == TensorRole::Temp)) statements.push_back(&s);
    }
    if (backward)
      for (const ast::Statement &s : layer_.layer->backward->statements) statements.push_back(&s);
    for (const ast::Statement *sp : statements) {
      const ast::Statement &s = *sp;
      Definition d;
      d.tensor = s.target.text;
      if (s.update) {
        // The buffer's new value is a tensor of its own, copied back after the pass.
        d.tensor = s.target.text + "_next";
        p.updates[d.tensor] = s.target.text;
        p.tensors.push_back({d.tensor, TensorRole::Update, p.tensor(s.target.text)->shape, s.loc});
      }
      d.loc = s.loc;
      for (size_t i = 0; i < s.indices.size(); ++i) d.indices.push_back({s.indices[i]->name, lower(*s.indexExtents[i])});
      d.value = lower(*s.value);
      if (s.guard) d.value = select(lower(*s.guard), d.value, floatImm(0));
      d.value = cast(Type::Float, d.value);
      p.defs.push_back(std::move(d));
    }
    for (const ast::Requirement *r : layer_.requirements)
      p.requirements.push_back({lower(*r->condition), r->loc, ast::printExpr(*r->condition)});
    if (!backward)
      for (const ast::Statement *s : layer_.recoveries) {
        Recovery r;
        r.def.tensor = s->target.text;
        r.def.loc = s->loc;
        for (size_t i = 0; i < s->indices.size(); ++i) r.def.indices.push_back({s->indices[i]->name, lower(*s->indexExtents[i])});
        r.def.value = cast(Type::Float, lower(*s->value));
        r.condition = s->guard ? lower(*s->guard) : boolImm(true);
        p.recoveries.push_back(std::move(r));
      }
    return p;
  }

private:
  const LayerSymbols &layer_;
  int fresh_ = 0;

public:
  Expr lower(const AExpr &e) {
    switch (e.kind) {
    case AExpr::Kind::IntLit: return intImm(e.intValue);
    case AExpr::Kind::FloatLit: return floatImm(e.floatValue);
    case AExpr::Kind::BoolLit: return boolImm(e.boolValue);
    case AExpr::Kind::Ident: return lowerIdent(e);
    case AExpr::Kind::Access: {
      if (e.ref == AExpr::Ref::HyperParam) return var(pairComponentName(e.name, e.enumValue), Type::Int, VarKind::Size);
      std::vector<Expr> idx;
      for (const auto &a : e.args) idx.push_back(lower(*a));
      return access(e.name, std::move(idx), e.loc);
    }
    case AExpr::Kind::Call: return lowerCall(e);
    case AExpr::Kind::Reduce: return lowerReduce(e);
    case AExpr::Kind::Unary: {
      Expr a = lower(*e.args[0]);
      return unary(e.op == "!" ? UnOp::Not : UnOp::Neg, a);
    }
    case AExpr::Kind::Binary: return lowerBinary(e);
    }
    internalError("unknown expression kind");
  }

private:
  Expr lowerIdent(const AExpr &e) {
    switch (e.ref) {
    case AExpr::Ref::IndexVar: return var(e.name, Type::Int, VarKind::Index);
    case AExpr::Ref::EnumValue: return intImm(e.enumValue);
    case AExpr::Ref::SizeSymbol: return var(e.name, Type::Int, VarKind::Size);
    case AExpr::Ref::Tensor: return access(e.name, {}, e.loc);
    case AExpr::Ref::Implicit: return var(e.name, Type::Bool, VarKind::Param);
    case AExpr::Ref::Constant: return floatImm(e.floatValue);
    case AExpr::Ref::HyperParam: {
      const ast::HyperParam *hp = layer_.hyperParam(e.name);
      using K = ast::HyperParamType::Kind;
      if (hp->type.kind == K::Float) return var(e.name, Type::Float, VarKind::Param);
      if (hp->type.kind == K::Bool) return var(e.name, Type::Bool, VarKind::Param);
      return var(e.name, Type::Int, VarKind::Size);
    }
    case AExpr::Ref::None: break;
    }
    internalError("unresolved name '{}'", e.name);
  }

  Expr lowerCall(const AExpr &e) {
    std::vector<Expr> args;
    for (const auto &a : e.args) args.push_back(lower(*a));
    if (e.name == "select") return select(args[0], args[1], args[2]);
    if (e.name == "min") return binary(BinOp::Min, args[0], args[1]);
    if (e.name == "max") return binary(BinOp::Max, args[0], args[1]);
    if (e.name == "pow") return binary(BinOp::Pow, cast(Type::Float, args[0]), args[1]);
    if (e.name == "float") return cast(Type::Float, args[0]);
    if (e.name == "int") return cast(Type::Int, args[0]);
    if (e.name == "rand") {
      // The seed is a run-time value (it changes every pass), never folded into the kernel.
      args.insert(args.begin(), var(kRandomSeed, Type::Int, VarKind::Size));
      return call("rand", std::move(args));
    }
    return call(e.name, std::move(args));
  }

  Expr lowerBinary(const AExpr &e) {
    Expr a = lower(*e.args[0]), b = lower(*e.args[1]);
    const std::string &op = e.op;
    if (op == "+") return a + b;
    if (op == "-") return a - b;
    if (op == "*") return a * b;
    if (op == "/") return binary(BinOp::Div, cast(Type::Float, a), cast(Type::Float, b));
    if (op == "//") return binary(BinOp::Div, a, b);
    if (op == "%") return binary(BinOp::Mod, a, b);
    if (op == "^") return binary(BinOp::Pow, cast(Type::Float, a), b);
    if (op == "<") return binary(BinOp::Lt, a, b);
    if (op == "<=") return binary(BinOp::Le, a, b);
    if (op == ">") return binary(BinOp::Gt, a, b);
    if (op == ">=") return binary(BinOp::Ge, a, b);
    if (op == "==") return binary(BinOp::Eq, a, b);
    if (op == "!=") return binary(BinOp::Ne, a, b);
    if (op == "&&") return binary(BinOp::And, a, b);
    if (op == "||") return binary(BinOp::Or, a, b);
    internalError("unknown operator '{}'", op);
  }

  // A bound index that cannot clash with user names (they cannot contain '_r').
  std::string freshName(const std::string &base) { return fmt::format("{}_r{}", base, ++fresh_); }

  static Expr rename(const Expr &e, const std::string &from, const std::string &to) {
    return substituteIndices(e, {{from, indexVar(to)}});
  }

  Expr lowerReduce(const AExpr &e) {
    Expr body = lower(*e.args[0]);
    std::vector<ReduceVar> vars;
    Expr count = intImm(1);
    for (size_t i = 0; i < e.vars.size(); ++i) {
      Expr extent = e.varExtents[i] ? lower(*e.varExtents[i]) : intImm(1);
      vars.push_back({e.vars[i].text, extent});
      count = count * extent;
    }
    if (e.name == "sum") return reduce(ReduceOp::Sum, vars, body);
    if (e.name == "prod") return reduce(ReduceOp::Prod, vars, body);
    if (e.name == "max") return reduce(ReduceOp::Max, vars, body);
    if (e.name == "min") return reduce(ReduceOp::Min, vars, body);
    if (e.name == "mean") return reduce(ReduceOp::Sum, vars, body) / cast(Type::Float, count);
    if (e.name == "logsumexp") {
      // m + log(sum(exp(x - m))) with m = max(x): exact and free of overflow.
      Expr m = reduce(ReduceOp::Max, vars, body);
      return m + call("log", {reduce(ReduceOp::Sum, vars, call("exp", {body - m}))});
    }
    if (e.name == "softmax") {
      // softmax(k: x)[k] = exp(x[k] - m) / sum(k': exp(x[k'] - m)), m = max(k': x[k']).
      const std::string &k = e.vars[0].text;
      std::string km = freshName(k), ks = freshName(k);
      Expr m = reduce(ReduceOp::Max, {{km, vars[0].extent}}, rename(body, k, km));
      Expr s = reduce(ReduceOp::Sum, {{ks, vars[0].extent}}, call("exp", {rename(body, k, ks) - m}));
      return call("exp", {body - m}) / s;
    }
    internalError("unknown reduction '{}'", e.name);
  }
};

} // namespace

Program lowerLayer(const LayerSymbols &layer) { return Lowerer(layer).run(); }

Program lowerBackwardBlock(const LayerSymbols &layer) { return Lowerer(layer).run(/*backward=*/true); }

std::string pairComponentName(const std::string &name, int64_t i) { return fmt::format("{}_{}", name, i); }

static uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double randomUniform(int64_t seed, const std::vector<int64_t> &indices) {
  uint64_t h = static_cast<uint64_t>(seed);
  for (int64_t a : indices) h = splitmix64(h ^ (static_cast<uint64_t>(a) * 0x9e3779b97f4a7c15ULL));
  return static_cast<double>(h >> 40) * 0x1.0p-24;
}

Expr lowerExpr(const ast::Expr &e, const LayerSymbols &layer) { return Lowerer(layer).lower(e); }

Program dropDisabledState(Program p, const LayerSymbols &layer, const std::map<std::string, Expr> &hyperParams) {
  std::set<std::string> read, dropped; // what the definitions read (once some state is off), what goes
  bool readKnown = false;
  for (const auto *decls : {&layer.layer->params, &layer.layer->buffers})
    for (const ast::TensorDecl &d : *decls) {
      if (!d.condition) continue;
      Expr on = substitute(lowerExpr(*d.condition, layer), [&](const std::string &n, VarKind) -> Expr {
        auto it = hyperParams.find(n);
        return it == hyperParams.end() ? nullptr : it->second;
      });
      if (on->kind != ExprKind::BoolImm || on->boolValue) continue; // on, or not known yet
      if (!readKnown) {
        for (const Definition &def : p.defs)
          for (const std::string &t : tensorsRead(def.value)) read.insert(t);
        readKnown = true;
      }
      if (read.count(d.name.text))
        throw Error(fmt::format("layer {} reads '{}', which does not exist with these hyper-parameters ({})", p.layer,
                                d.name.text, ast::printExpr(*d.condition)),
                    fmt::format("guard its use with select({}, ..., 0)", ast::printExpr(*d.condition)));
      dropped.insert(d.name.text);
    }
  p.tensors.eraseIf([&](const TensorDecl &t) { return dropped.count(t.name) > 0; });
  return p;
}

Program dropBufferUpdates(Program p) {
  std::erase_if(p.defs, [&](const Definition &d) { return p.updates.count(d.tensor) > 0; });
  p.tensors.eraseIf([&](const TensorDecl &t) { return t.role == TensorRole::Update; });
  p.updates.clear();
  return p;
}

} // namespace enc::ir
