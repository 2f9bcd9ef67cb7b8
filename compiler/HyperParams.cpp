#include "compiler/HyperParams.h"

#include "compiler/Passes.h"
#include "support/Error.h"
#include "support/Suggest.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string_view>

namespace enc {

static std::string typeText(const ast::HyperParamType &t) {
  switch (t.kind) {
  case ast::HyperParamType::Kind::Int: return "an int";
  case ast::HyperParamType::Kind::Float: return "a float";
  case ast::HyperParamType::Kind::Bool: return "a bool";
  case ast::HyperParamType::Kind::Int2: return "an int or a pair of ints";
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
                            : hp.type.kind == ast::HyperParamType::Kind::Int2 ? "3,5"
                                                                              : "4"));
  };
  switch (hp.type.kind) {
  case ast::HyperParamType::Kind::Int: {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc::result_out_of_range && p == text.data() + text.size())
      throw Error(fmt::format("hyper-parameter '{}' of layer {}: {} is out of range", hp.name.text,
                              layer.layer->name.text, text),
                  "integers are 64-bit, from -9223372036854775808 to 9223372036854775807");
    if (ec != std::errc() || p != text.data() + text.size()) return bad();
    return ir::intImm(v);
  }
  case ast::HyperParamType::Kind::Int2: break; // see parsePair
  case ast::HyperParamType::Kind::Float: {
    // A decimal number as the language writes one (strtod would take 0x10, inf, nan and spaces too),
    // with an optional '+'.
    std::string_view digits = text;
    if (digits.starts_with('+') && !digits.starts_with("+-")) digits.remove_prefix(1);
    double v = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, std::chars_format::general);
    if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() || !std::isfinite(v)) return bad();
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

// "3" (both) or "3,5" / "(3, 5)" for an int2 hyper-parameter: one integer or two separated by a
// comma, optionally inside one pair of parentheses, with spaces around the numbers.
static std::pair<int64_t, int64_t> parsePair(const LayerSymbols &layer, const ast::HyperParam &hp, const std::string &text) {
  auto bad = [&]() -> int64_t {
    throw Error(fmt::format("hyper-parameter '{}' of layer {} is an int or a pair of ints; got '{}'", hp.name.text,
                            layer.layer->name.text, text),
                fmt::format("e.g. --set {}=3 or --set {}=3,5", hp.name.text, hp.name.text));
  };
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
  };
  auto number = [&](std::string_view s) {
    s = trim(s);
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return bad();
    return v;
  };
  std::string_view t = trim(text);
  bool open = t.starts_with('('), close = t.ends_with(')');
  if (open != close || (open && t.size() < 2)) bad();
  if (open) t = t.substr(1, t.size() - 2);
  size_t comma = t.find(',');
  if (comma == std::string_view::npos) {
    int64_t v = number(t);
    return {v, v};
  }
  return {number(t.substr(0, comma)), number(t.substr(comma + 1))};
}

static int64_t literalInt(const ast::Expr &e) {
  return e.kind == ast::Expr::Kind::Unary ? -e.args[0]->intValue : e.intValue;
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
  case ast::HyperParamType::Kind::Int2: break; // two values: see resolveHyperParams
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
      std::vector<std::string> known;
      for (const ast::HyperParam &h : layer.layer->hyperParams) known.push_back(h.name.text);
      throw Error(fmt::format("layer {} has no hyper-parameter '{}'{}", layer.layer->name.text, name, didYouMean(name, known)),
                  names.empty() ? "this layer takes no hyper-parameters" : "its hyper-parameters are " + names);
    }
    if (hp->type.kind == ast::HyperParamType::Kind::Int2) {
      auto [a, b] = parsePair(layer, *hp, text);
      values[ir::pairComponentName(name, 0)] = ir::intImm(a);
      values[ir::pairComponentName(name, 1)] = ir::intImm(b);
      continue;
    }
    values[name] = parseValue(layer, *hp, text);
  }
  for (const ast::HyperParam &hp : layer.layer->hyperParams) {
    if (values.count(hp.name.text) || values.count(ir::pairComponentName(hp.name.text, 0))) continue;
    if (hp.defaultValue && hp.type.kind == ast::HyperParamType::Kind::Int2) {
      int64_t a = literalInt(*hp.defaultValue);
      values[ir::pairComponentName(hp.name.text, 0)] = ir::intImm(a);
      values[ir::pairComponentName(hp.name.text, 1)] = ir::intImm(hp.defaultSecond ? literalInt(*hp.defaultSecond) : a);
    } else if (hp.defaultValue) {
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
