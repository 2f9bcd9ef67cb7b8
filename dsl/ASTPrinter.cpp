// Printing of the syntax tree for `encc emit --emit=ast`.
#include "dsl/AST.h"

#include <fmt/format.h>

namespace enc::ast {

static int precedence(const std::string &op) {
  if (op == "||") return 1;
  if (op == "&&") return 2;
  if (op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=") return 3;
  if (op == "+" || op == "-") return 4;
  if (op == "*" || op == "/" || op == "//" || op == "%") return 5;
  if (op == "^") return 7;
  return 0;
}

static std::string joinArgs(const std::vector<ExprPtr> &args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) out += (i ? ", " : "") + printExpr(*args[i]);
  return out;
}

std::string printExpr(const Expr &e) {
  switch (e.kind) {
  case Expr::Kind::IntLit: return std::to_string(e.intValue);
  case Expr::Kind::FloatLit: return fmt::format("{}", e.floatValue);
  case Expr::Kind::BoolLit: return e.boolValue ? "true" : "false";
  case Expr::Kind::Ident: return e.name;
  case Expr::Kind::Access: return fmt::format("{}[{}]", e.name, joinArgs(e.args));
  case Expr::Kind::Call: {
    if (e.argNames.empty()) return fmt::format("{}({})", e.name, joinArgs(e.args));
    std::string args;
    for (size_t i = 0; i < e.args.size(); ++i) {
      const std::string &n = i < e.argNames.size() ? e.argNames[i].text : "";
      args += (i ? ", " : "") + (n.empty() ? "" : n + "=") + printExpr(*e.args[i]);
    }
    return fmt::format("{}({})", e.name, args);
  }
  case Expr::Kind::Reduce: {
    std::string vars;
    for (size_t i = 0; i < e.vars.size(); ++i) {
      vars += (i ? ", " : "") + e.vars[i].text;
      if (i < e.varBounds.size() && e.varBounds[i]) vars += " < " + printExpr(*e.varBounds[i]);
    }
    return fmt::format("{}({}: {})", e.name, vars, printExpr(*e.args[0]));
  }
  case Expr::Kind::Unary: {
    const Expr &a = *e.args[0];
    bool wrap = a.kind == Expr::Kind::Binary && precedence(a.op) < 7;
    return e.op + (wrap ? "(" + printExpr(a) + ")" : printExpr(a));
  }
  case Expr::Kind::Binary: {
    int p = precedence(e.op);
    auto side = [&](const Expr &a, bool right) {
      bool wrap = (a.kind == Expr::Kind::Binary &&
                   (precedence(a.op) < p || (right && precedence(a.op) == p && e.op != "^") ||
                    (!right && e.op == "^" && precedence(a.op) == p))) ||
                  (e.op == "^" && a.kind == Expr::Kind::Unary && !right);
      return wrap ? "(" + printExpr(a) + ")" : printExpr(a);
    };
    return fmt::format("{} {} {}", side(*e.args[0], false), e.op, side(*e.args[1], true));
  }
  }
  return "?";
}

static std::string printShape(const std::vector<Dim> &dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    out += (i ? ", " : "") + printExpr(*dims[i].size) + (dims[i].variadic ? "..." : "");
  return out + "]";
}

static std::string typeName(const HyperParamType &t) {
  switch (t.kind) {
  case HyperParamType::Kind::Int: return "int";
  case HyperParamType::Kind::Float: return "float";
  case HyperParamType::Kind::Bool: return "bool";
  case HyperParamType::Kind::Int2: return "int2";
  case HyperParamType::Kind::Enum: {
    std::string out = "{";
    for (size_t i = 0; i < t.enumerators.size(); ++i) out += (i ? ", " : "") + t.enumerators[i].text;
    return out + "}";
  }
  }
  return "?";
}

std::string printAST(const Module &m) {
  std::string out;
  for (const auto &layer : m.layers) {
    out += fmt::format("Layer {}  ({}:{})\n", layer->name.text, layer->loc.line(), layer->loc.col());
    for (const HyperParam &hp : layer->hyperParams)
      out += fmt::format("  HyperParam {}: {}{}\n", hp.name.text, typeName(hp.type),
                         !hp.defaultValue   ? ""
                         : hp.defaultSecond ? fmt::format(" = ({}, {})", printExpr(*hp.defaultValue), printExpr(*hp.defaultSecond))
                                            : " = " + printExpr(*hp.defaultValue));
    auto state = [&](const char *kind, const TensorDecl &d) {
      out += fmt::format("  {} {}{}{}{}\n", kind, d.name.text, printShape(d.dims), d.init ? " = " + printExpr(*d.init) : "",
                         d.condition ? " where " + printExpr(*d.condition) : "");
    };
    for (const TensorDecl &p : layer->params) state("Param", p);
    for (const TensorDecl &b : layer->buffers) state("Buffer", b);
    for (const Requirement &r : layer->requirements) out += fmt::format("  Require {}\n", printExpr(*r.condition));
    for (const SubLayer &sub : layer->subLayers) {
      std::string items;
      for (size_t i = 0; i < sub.items.size(); ++i) items += (i ? ", " : "") + printExpr(*sub.items[i]);
      if (sub.repeatCount) items += fmt::format(" for {} < {}", sub.repeatVar.text, printExpr(*sub.repeatCount));
      out += fmt::format("  SubLayer {} = {}{}{}\n", sub.name.text, sub.sequence ? "[" + items + "]" : items,
                         sub.condition ? " where " + printExpr(*sub.condition) : "", "");
    }
    auto block = [&](const Forward &f) {
      for (const Requirement &r : f.requirements) out += fmt::format("    Require {}\n", printExpr(*r.condition));
      for (const Statement &s : f.statements) {
        std::string idx, shape;
        for (size_t i = 0; i < s.indices.size(); ++i) idx += (i ? ", " : "") + printExpr(*s.indices[i]);
        for (size_t i = 0; i < s.shape.size(); ++i) shape += (i ? ", " : "") + printExpr(*s.shape[i]);
        out += fmt::format("    {} {}[{}]{} {} {}{}  ({}:{})\n", s.update ? "Update" : "Define", s.target.text, idx,
                           shape.empty() ? "" : ": [" + shape + "]", s.update ? "<-" : "=", printExpr(*s.value),
                           s.guard ? " where " + printExpr(*s.guard) : "", s.loc.line(), s.loc.col());
      }
    };
    if (layer->forward) {
      out += "  Forward\n";
      for (const TensorDecl &in : layer->forward->inputs)
        out += fmt::format("    Input {}: {}\n", in.name.text, printShape(in.dims));
      for (const TensorDecl &o : layer->forward->outputs)
        out += fmt::format("    Output {}: {}\n", o.name.text, o.shapeOmitted ? "(the shape of its definition)" : printShape(o.dims));
      block(*layer->forward);
    }
    if (layer->backward) {
      out += "  Backward\n";
      block(*layer->backward);
    }
  }
  return out;
}

} // namespace enc::ast
