#include "runtime/HyperParams.h"

#include "support/Error.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace enc {

static std::string typeText(const ast::HyperParamType &t) {
  switch (t.kind) {
  case ast::HyperParamType::Kind::Int: return "an int";
  case ast::HyperParamType::Kind::Float: return "a float";
  case ast::HyperParamType::Kind::Bool: return "a bool";
  case ast::HyperParamType::Kind::Enum: {
    std::string s = "one of {";
    for (size_t i = 0; i < t.enumerators.size(); ++i) s += (i ? ", " : "") + t.enumerators[i].text;
    return s + "}";
  }
  }
  return "a value";
}

static ir::Expr parseValue(const LayerSymbols &layer, const ast::HyperParam &hp, const std::string &text) {
  auto bad = [&]() -> ir::Expr {
    throw Error(fmt::format("hyper-parameter '{}' of layer {} is {}; got '{}'", hp.name.text, layer.layer->name.text,
                            typeText(hp.type), text),
                fmt::format("e.g. --set {}={}", hp.name.text,
                            hp.type.kind == ast::HyperParamType::Kind::Float  ? "0.1"
                            : hp.type.kind == ast::HyperParamType::Kind::Bool ? "true"
                            : hp.type.kind == ast::HyperParamType::Kind::Enum ? hp.type.enumerators[0].text
                                                                              : "4"));
  };
  switch (hp.type.kind) {
  case ast::HyperParamType::Kind::Int: {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size()) return bad();
    return ir::intImm(v);
  }
  case ast::HyperParamType::Kind::Float: {
    char *end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v)) return bad();
    return ir::floatImm(v);
  }
  case ast::HyperParamType::Kind::Bool:
    if (text == "true" || text == "True" || text == "1") return ir::boolImm(true);
    if (text == "false" || text == "False" || text == "0") return ir::boolImm(false);
    return bad();
  case ast::HyperParamType::Kind::Enum:
    for (size_t i = 0; i < hp.type.enumerators.size(); ++i)
      if (hp.type.enumerators[i].text == text) return ir::intImm(static_cast<int64_t>(i));
    return bad();
  }
  return bad();
}

static ir::Expr defaultValue(const ast::HyperParam &hp) {
  const ast::Expr &d = *hp.defaultValue;
  const ast::Expr *lit = d.kind == ast::Expr::Kind::Unary ? d.args[0].get() : &d;
  double sign = d.kind == ast::Expr::Kind::Unary ? -1 : 1;
  switch (hp.type.kind) {
  case ast::HyperParamType::Kind::Int: return ir::intImm(static_cast<int64_t>(sign) * lit->intValue);
  case ast::HyperParamType::Kind::Float:
    return ir::floatImm(sign * (lit->kind == ast::Expr::Kind::IntLit ? static_cast<double>(lit->intValue) : lit->floatValue));
  case ast::HyperParamType::Kind::Bool: return ir::boolImm(lit->boolValue);
  case ast::HyperParamType::Kind::Enum: return ir::intImm(d.enumValue);
  }
  return ir::intImm(0);
}

std::map<std::string, ir::Expr> resolveHyperParams(const LayerSymbols &layer,
                                                   const std::map<std::string, std::string> &settings,
                                                   bool allowMissing) {
  std::map<std::string, ir::Expr> values;
  for (const auto &[name, text] : settings) {
    const ast::HyperParam *hp = layer.hyperParam(name);
    if (!hp) {
      std::string names;
      for (const ast::HyperParam &h : layer.layer->hyperParams) names += (names.empty() ? "" : ", ") + h.name.text;
      throw Error(fmt::format("layer {} has no hyper-parameter '{}'", layer.layer->name.text, name),
                  names.empty() ? "this layer takes no hyper-parameters" : "its hyper-parameters are " + names);
    }
    values[name] = parseValue(layer, *hp, text);
  }
  for (const ast::HyperParam &hp : layer.layer->hyperParams) {
    if (values.count(hp.name.text)) continue;
    if (hp.defaultValue) {
      values[hp.name.text] = defaultValue(hp);
    } else if (!allowMissing) {
      throw Error(fmt::format("layer {} needs a value for hyper-parameter '{}' ({})", layer.layer->name.text, hp.name.text,
                              typeText(hp.type)),
                  fmt::format("pass --set {}=VALUE", hp.name.text));
    }
  }
  return values;
}

} // namespace enc
