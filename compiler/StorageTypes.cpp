#include "compiler/StorageTypes.h"

#include "support/Error.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <set>

namespace enc::ir {

const char *elemTypeName(ElemType t) {
  switch (t) {
  case ElemType::F16: return "f16";
  case ElemType::BF16: return "bf16";
  case ElemType::F32: return "f32";
  case ElemType::F64: return "f64";
  }
  return "?";
}

int elemTypeBytes(ElemType t) { return t == ElemType::F64 ? 8 : t == ElemType::F32 ? 4 : 2; }

ElemType ElementTypes::of(const std::string &buffer) const {
  auto it = stored.find(buffer);
  return it == stored.end() ? compute : it->second;
}

std::optional<ElemType> parseElemType(std::string_view name) {
  for (ElemType t : {ElemType::F16, ElemType::BF16, ElemType::F32, ElemType::F64})
    if (name == elemTypeName(t)) return t;
  return std::nullopt;
}

bool isNarrow(ElemType t) { return t == ElemType::F16 || t == ElemType::BF16; }

namespace {

ElementTypes computeTypesFor(ElemType storage) {
  ElementTypes types;
  types.compute = storage == ElemType::F64 ? ElemType::F64 : ElemType::F32;
  return types;
}

bool exchanged(const Program &forward, const std::string &name) {
  const TensorDecl *t = forward.tensor(name);
  return t && (t->role == TensorRole::Input || t->role == TensorRole::Output);
}

} // namespace

ElementTypes forwardStorage(const Program &forward, ElemType storage) {
  ElementTypes types = computeTypesFor(storage);
  if (!isNarrow(storage)) return types;
  for (const TensorDecl &t : forward.tensors)
    if (exchanged(forward, t.name)) types.stored[t.name] = storage;
  return types;
}

ElementTypes backwardStorage(const Gradient &gradient, const Program &forward, ElemType storage) {
  ElementTypes types = computeTypesFor(storage);
  if (!isNarrow(storage)) return types;
  for (const auto &[output, seed] : gradient.seedOf) types.stored[seed] = storage;
  for (const auto &[x, grad] : gradient.gradOf) {
    const TensorDecl *t = forward.tensor(x);
    if (t && t->role == TensorRole::Input) types.stored[grad] = storage;
  }
  for (const std::string &s : gradient.saved)
    if (exchanged(forward, s)) types.stored[s] = storage;
  return types;
}

namespace {

// Whether `s` adds into `buffer` or reads it back.
bool accumulatesInto(const Stmt &s, const std::string &buffer) {
  bool found = anyStmt(s, [&](const Stmt &n) {
    return n->kind == StmtKind::Store && n->name == buffer && n->accumulate;
  });
  visitExprs(s, [&](const Expr &n) {
    found |= n->kind == ExprKind::Load && n->name == buffer;
    return !found;
  });
  return found;
}

// For mutate: a load of `from` becomes a load of `to`.
std::function<Expr(const Expr &)> loadsRenamed(const std::string &from, const std::string &to) {
  return [from, to](const Expr &n) -> Expr {
    return n->kind == ExprKind::Load && n->name == from ? load(to, n->args[0]) : nullptr;
  };
}

Expr renamedLoads(const Expr &e, const std::string &from, const std::string &to) {
  return e ? mutate(e, loadsRenamed(from, to)) : e;
}

// Stores into and loads of `from` go to `to`.
Stmt renamed(const Stmt &s, const std::string &from, const std::string &to) {
  Stmt stores = mutate(s, [&](const Stmt &n) -> Stmt {
    return n->kind == StmtKind::Store && n->name == from ? withName(n, to) : nullptr;
  });
  return mutateExprs(stores, loadsRenamed(from, to));
}

void rename(Kernel &k, const std::string &from, const std::string &to) {
  for (std::string &b : k.buffers)
    if (b == from) b = to;
  if (k.output == from) k.output = to;
  k.body = renamed(k.body, from, to);
}

bool writes(const Kernel &k, const std::string &buffer) {
  for (int i = 0; i < k.outputs; ++i)
    if (k.buffers[static_cast<size_t>(i)] == buffer) return true;
  return false;
}

// out[i] = in[i] over every element, one element per iteration (a thread on the GPU). The
// sizes the element count reads (symbolic before specialization) are its parameters.
Kernel conversionKernel(const std::string &out, const std::string &in, const Expr &elements, const Program &program,
                        Target target, SourceLoc loc) {
  Kernel k;
  k.name = "kcvt_" + out;
  k.output = out;
  k.buffers = {out, in};
  k.loc = loc;
  k.launch = target == Target::CPU ? ForKind::Parallel : ForKind::GpuThreads;
  k.launchExtent = elements;
  Expr i = var("_i", Type::Int, VarKind::Index);
  k.body = forLoop("_i", elements, k.launch, {store(out, i, load(in, i), loc)});
  for (const SizeParam &p : program.sizes)
    if (mentionsVar(elements, p.name, p.kind)) k.params.push_back(p);
  return k;
}

} // namespace

LoopProgram accumulateInComputeType(LoopProgram out) {
  std::set<std::string> wide; // narrow outputs that some kernel accumulates into
  for (const Kernel &k : out.kernels)
    for (int i = 0; i < k.outputs; ++i) {
      const std::string &b = k.buffers[static_cast<size_t>(i)];
      if (isNarrow(out.types.of(b)) && (k.scatters || accumulatesInto(k.body, b))) wide.insert(b);
    }
  for (const std::string &name : wide) {
    std::string tmp = name + "_acc";
    while (out.tensors.tensor(tmp)) tmp += "_";
    const TensorDecl *decl = out.tensors.tensor(name);
    if (!decl) internalError("kernel output '{}' is not declared", name);
    Expr elements = intImm(1);
    for (const Expr &d : decl->shape) elements = elements * d;
    out.tensors.tensors.push_back({tmp, TensorRole::Temp, decl->shape, decl->loc});
    size_t first = out.kernels.size(), last = 0;
    for (size_t i = 0; i < out.kernels.size(); ++i)
      if (writes(out.kernels[i], name)) {
        first = std::min(first, i);
        last = i;
      }
    for (size_t i = first; i <= last; ++i) rename(out.kernels[i], name, tmp);
    Kernel convert = conversionKernel(name, tmp, elements, out.tensors, out.target, out.kernels[last].loc);
    out.kernels.insert(out.kernels.begin() + static_cast<long>(last) + 1, convert);
  }
  return out;
}

} // namespace enc::ir
