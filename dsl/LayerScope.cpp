// The questions both of sema's checkers ask about a layer's names (LayerScope.h).
#include "dsl/LayerScope.h"

#include "support/Suggest.h"

#include <fmt/format.h>

namespace enc::sema {

LayerScope::LayerScope(ast::Layer &layer, DiagnosticEngine &diags) : decl(layer), diags(diags) { syms.layer = &layer; }

TensorSymbol *LayerScope::findTensor(const std::string &name) { return syms.tensors.find(name); }

std::string LayerScope::whatIs(const std::string &name) {
  if (syms.hyperParam(name)) return "a hyper-parameter";
  if (isSize(name)) return "a size";
  if (enumerators.count(name)) return "an enumerator";
  if (const TensorSymbol *t = findTensor(name))
    return fmt::format("{} {}", t->role == TensorRole::Input || t->role == TensorRole::Output ? "an" : "a",
                       roleName(t->role));
  return "";
}

const TensorSymbol *LayerScope::closestTensor(const std::string &name) const {
  const TensorSymbol *best = nullptr;
  size_t bestDist = name.size() >= 6 ? 3 : 2;
  const std::string key = suggest_detail::lower(name);
  for (const TensorSymbol &t : syms.tensors) {
    size_t d = suggest_detail::editDistance(key, suggest_detail::lower(t.name));
    if (d < bestDist) {
      bestDist = d;
      best = &t;
    }
  }
  return best;
}

bool LayerScope::isSize(const std::string &name) const {
  for (const SizeSymbol &sz : syms.sizes)
    if (sz.name == name) return true;
  return false;
}

bool LayerScope::declareName(const ast::Name &n, const char *what) {
  auto [it, inserted] = names.emplace(n.text, n.loc);
  if (inserted) return true;
  Diagnostic &d = diags.error(n.loc, fmt::format("{} '{}' reuses a name already declared in layer '{}'", what, n.text,
                                                 decl.name.text));
  d.notes.push_back({it->second, fmt::format("'{}' first declared here", n.text)});
  return false;
}

bool LayerScope::definedByDroppedStatement(const std::string &name) const {
  std::string_view t = forwardText;
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

Type LayerScope::hyperParamType(const ast::HyperParam &hp) {
  switch (hp.type.kind) {
  case ast::HyperParamType::Kind::Float: return Type::Float;
  case ast::HyperParamType::Kind::Bool: return Type::Bool;
  default: return Type::Int;
  }
}

bool LayerScope::isPair(const std::string &name) const {
  const ast::HyperParam *hp = syms.hyperParam(name);
  return hp && hp->type.kind == ast::HyperParamType::Kind::Int2;
}

bool LayerScope::pairWithoutComponent(const Expr &e) {
  diags.error(e.loc, fmt::format("'{}' is a pair (int2)", e.name),
              fmt::format("use {0}[0] or {0}[1]", e.name));
  return false;
}

// kernel_size[0]: one component of an int2 hyper-parameter.
Type LayerScope::pairComponent(Expr &e) {
  if (e.args.size() != 1 || e.args[0]->kind != Expr::Kind::IntLit || e.args[0]->intValue < 0 || e.args[0]->intValue > 1) {
    diags.error(e.loc, fmt::format("'{}' is a pair (int2): index it with [0] or [1]", e.name));
    return Type::Unknown;
  }
  e.ref = Ref::HyperParam;
  e.enumValue = e.args[0]->intValue;
  e.type = Type::Int;
  return Type::Int;
}

} // namespace enc::sema
