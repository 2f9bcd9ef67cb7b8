#include "compiler/TensorProgram.h"

#include <fmt/format.h>

namespace enc::ir {

const TensorDecl *Program::tensor(const std::string &name) const { return tensors.find(name); }

std::string Program::unusedTensorName(const std::string &base) const {
  std::string name = base;
  for (int i = 2; tensor(name); ++i) name = base + std::to_string(i);
  return name;
}

const Definition *Program::definitionOf(const std::string &name) const {
  for (const Definition &d : defs)
    if (d.tensor == name && !d.isScatter()) return &d;
  return nullptr;
}

std::vector<std::string> Program::namesWithRole(TensorRole role) const {
  std::vector<std::string> out;
  for (const TensorDecl &t : tensors)
    if (t.role == role) out.push_back(t.name);
  return out;
}

static std::string shapeText(const std::vector<Expr> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + print(shape[i]);
  return out + "]";
}

namespace {

void noteReads(const Expr &e, std::set<std::string> &read) {
  visit(e, [&](const Expr &n) {
    if (n->kind == ExprKind::Access) read.insert(n->name);
    return true;
  });
}

// A scatter's target indices read tensors too (X[1, int(T[b])]'s adjoint reads T).
void noteReads(const Definition &d, std::set<std::string> &read) {
  noteReads(d.value, read);
  for (const Expr &ix : d.scatter) noteReads(ix, read);
}

} // namespace

std::set<std::string> tensorsRead(const Expr &e) {
  std::set<std::string> read;
  noteReads(e, read);
  return read;
}

std::set<std::string> tensorsRead(const Definition &d) {
  std::set<std::string> read;
  noteReads(d, read);
  return read;
}

std::set<std::string> tensorsRead(const Program &p) {
  std::set<std::string> read;
  for (const Definition &d : p.defs) noteReads(d, read);
  return read;
}

std::vector<IndexVar> boundIndices(const IndexScope &scope, const std::set<std::string> &names) {
  std::vector<IndexVar> out;
  for (const auto &[name, extent] : scope) {
    if (!names.count(name)) continue;
    std::erase_if(out, [&](const IndexVar &v) { return v.name == name; });
    out.push_back({name, extent});
  }
  return out;
}

std::string printProgram(const Program &p) {
  std::string out = fmt::format("layer {}\n", p.layer);
  for (const TensorDecl &t : p.tensors)
    if (t.role != TensorRole::Temp && t.role != TensorRole::Update)
      out += fmt::format("  {} {}{}\n", roleName(t.role), t.name, shapeText(t.shape));
  for (const Requirement &r : p.requirements)
    if (!(r.condition->kind == ExprKind::BoolImm && r.condition->boolValue))
      out += fmt::format("  require {}\n", print(r.condition));
  for (const Definition &d : p.defs) {
    std::string idx;
    for (size_t i = 0; i < d.indices.size(); ++i)
      idx += fmt::format("{}{}<{}", i ? ", " : "", d.indices[i].name, print(d.indices[i].extent));
    const TensorDecl *t = p.tensor(d.tensor);
    std::string prefix = t && t->role == TensorRole::Temp ? "temp " : "";
    if (auto u = p.updates.find(d.tensor); u != p.updates.end()) prefix = fmt::format("update {} <- ", u->second);
    if (d.isScatter()) {
      std::string target;
      for (size_t i = 0; i < d.scatter.size(); ++i) target += (i ? ", " : "") + print(d.scatter[i]);
      out += fmt::format("  {}{}[{}] += {}  for {}\n", prefix, d.tensor, target, print(d.value), idx);
      continue;
    }
    out += fmt::format("  {}{}[{}] = {}\n", prefix, d.tensor, idx, print(d.value));
  }
  for (const Recovery &r : p.recoveries) {
    if (r.condition->kind == ExprKind::BoolImm && !r.condition->boolValue) continue; // does not apply
    std::string idx;
    for (size_t i = 0; i < r.def.indices.size(); ++i)
      idx += fmt::format("{}{}<{}", i ? ", " : "", r.def.indices[i].name, print(r.def.indices[i].extent));
    out += fmt::format("  recover {}[{}] = {}  where {}\n", r.def.tensor, idx, print(r.def.value), print(r.condition));
  }
  return out;
}

} // namespace enc::ir
