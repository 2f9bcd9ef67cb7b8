// The tensor IR evaluated by its definition (rules in ReferenceInterpreter.h): nested loops
// over each definition's indices, and over each reduction's, with every expression node
// computed as the language reference states it.
#include "compiler/ReferenceInterpreter.h"

#include "compiler/Intrinsics.h"
#include "compiler/Passes.h"
#include "support/Error.h"
#include "support/InternalError.h"

#include <algorithm>
#include <cmath>
#include <optional>

namespace enc::ir {

ReferenceInterpreter::ReferenceInterpreter(Program p, std::map<std::string, double> variables)
    : p_(std::move(p)), variables_(std::move(variables)) {}

void ReferenceInterpreter::setTensor(const std::string &name, std::vector<double> values) {
  size_t n = 1;
  for (int64_t s : shape(name)) n *= static_cast<size_t>(s);
  if (values.size() != n)
    fail("reference interpreter: tensor {} has {} elements, {} given", name, n, values.size());
  buffers_[name] = std::move(values);
}

void ReferenceInterpreter::run() {
  for (const Definition &d : p_.defs) define(d);
}

const std::vector<double> &ReferenceInterpreter::tensor(const std::string &name) const {
  auto it = buffers_.find(name);
  if (it == buffers_.end()) fail("reference interpreter: tensor {} has no values", name);
  return it->second;
}

std::vector<int64_t> ReferenceInterpreter::shape(const std::string &name) {
  auto known = shapes_.find(name);
  if (known != shapes_.end()) return known->second;
  const TensorDecl *t = p_.tensor(name);
  if (!t) fail("reference interpreter: program {} declares no tensor {}", p_.layer, name);
  std::vector<int64_t> out;
  for (const Expr &s : t->shape) out.push_back(static_cast<int64_t>(eval(s)));
  return shapes_[name] = out;
}

int64_t ReferenceInterpreter::offsetOf(const std::vector<int64_t> &shape, const std::vector<int64_t> &position) {
  int64_t offset = 0;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (position[i] < 0 || position[i] >= shape[i]) return -1;
    offset = offset * shape[i] + position[i];
  }
  return offset;
}

// A definition writes its tensor at its own indices; a scatter adds at its scatter indices.
void ReferenceInterpreter::define(const Definition &d) {
  std::vector<int64_t> tensorShape = shape(d.tensor);
  size_t elements = 1;
  for (int64_t s : tensorShape) elements *= static_cast<size_t>(s);
  std::vector<double> &out = buffers_[d.tensor];
  if (!d.isScatter() || out.empty()) out.assign(elements, 0.0);

  std::vector<int64_t> extents;
  for (const IndexVar &v : d.indices) extents.push_back(static_cast<int64_t>(eval(v.extent)));
  ENC_INTERNAL_ASSERT((d.isScatter() ? d.scatter.size() : extents.size()) == tensorShape.size(),
                      "definition of {} has the wrong number of indices", d.tensor);
  for (int64_t e : extents)
    if (e <= 0) return;

  std::vector<int64_t> at(extents.size(), 0);
  while (true) {
    for (size_t i = 0; i < at.size(); ++i) indices_[d.indices[i].name] = at[i];
    double value = eval(d.value);
    if (d.isScatter()) {
      std::vector<int64_t> position;
      for (const Expr &ix : d.scatter) position.push_back(static_cast<int64_t>(eval(ix)));
      int64_t offset = offsetOf(tensorShape, position);
      if (offset >= 0) out[static_cast<size_t>(offset)] += value;
    } else {
      int64_t offset = offsetOf(tensorShape, at);
      if (offset >= 0) out[static_cast<size_t>(offset)] = value;
    }
    size_t i = at.size();
    while (i > 0 && ++at[i - 1] == extents[i - 1]) at[--i] = 0; // row-major increment
    if (i == 0) break;
  }
  for (const IndexVar &v : d.indices) indices_.erase(v.name);
}

double ReferenceInterpreter::eval(const Expr &e) {
  switch (e->kind) {
  case ExprKind::IntImm: return static_cast<double>(e->intValue);
  case ExprKind::FloatImm: return e->floatValue;
  case ExprKind::BoolImm: return e->boolValue ? 1.0 : 0.0;
  case ExprKind::Var: {
    if (e->varKind == VarKind::Index) {
      auto it = indices_.find(e->name);
      ENC_INTERNAL_ASSERT(it != indices_.end(), "index {} read where nothing binds it", e->name);
      return static_cast<double>(it->second);
    }
    auto it = variables_.find(e->name);
    if (it == variables_.end()) fail("reference interpreter: no value for variable {}", e->name);
    return it->second;
  }
  case ExprKind::Access: return read(*e);
  case ExprKind::Unary: return e->unOp == UnOp::Neg ? -eval(e->args[0]) : (eval(e->args[0]) != 0 ? 0.0 : 1.0);
  case ExprKind::Cast: {
    double v = eval(e->args[0]);
    if (e->type != Type::Int || e->args[0]->type != Type::Float) return v;
    // int(x) saturates at the 64-bit limits; NaN is 0.
    return std::isnan(v) ? 0.0 : std::clamp(std::trunc(v), -0x1p63, 0x1p63 - 1024);
  }
  case ExprKind::Select: return eval(e->args[0]) != 0 ? eval(e->args[1]) : eval(e->args[2]);
  case ExprKind::Call: return call(*e);
  case ExprKind::Binary: return binary(*e);
  case ExprKind::Reduce: return reduce(*e, 0);
  case ExprKind::Load: internalError("the reference interpreter evaluates tensor IR; {} is loop IR", print(e));
  }
  internalError("unknown expression kind");
}

double ReferenceInterpreter::read(const ExprNode &access) {
  std::vector<int64_t> tensorShape = shape(access.name);
  ENC_INTERNAL_ASSERT(tensorShape.size() == access.args.size(), "read of {} with {} indices", access.name,
                      access.args.size());
  std::vector<int64_t> position;
  for (const Expr &ix : access.args) position.push_back(static_cast<int64_t>(eval(ix)));
  int64_t offset = offsetOf(tensorShape, position);
  if (offset < 0) return 0.0;
  return tensor(access.name)[static_cast<size_t>(offset)];
}

// An intrinsic's value is the one its table row gives constants (compiler/Intrinsics.h), except
// the two that depend on more than their arguments.
double ReferenceInterpreter::call(const ExprNode &e) {
  std::vector<double> args;
  for (const Expr &a : e.args) args.push_back(eval(a));
  const Intrinsic f = intrinsicOf(e);
  if (f == Intrinsic::Rand) {
    std::vector<int64_t> indices;
    for (size_t i = 1; i < args.size(); ++i) indices.push_back(static_cast<int64_t>(args[i]));
    return randomUniform(static_cast<int64_t>(args.at(0)), indices);
  }
  if (f == Intrinsic::Allreduce) return args.at(0);
  std::optional<double> value = foldIntrinsic(f, args);
  ENC_INTERNAL_ASSERT(value, "no value for function '{}'", e.name);
  return *value;
}

double ReferenceInterpreter::binary(const ExprNode &e) {
  const double a = eval(e.args[0]), b = eval(e.args[1]);
  const bool integers = e.args[0]->type == Type::Int && e.args[1]->type == Type::Int;
  switch (e.binOp) {
  case BinOp::Add: return a + b;
  case BinOp::Sub: return a - b;
  case BinOp::Mul: return a * b;
  case BinOp::Div: return integers ? std::floor(a / b) : a / b;
  case BinOp::Mod: return a - std::floor(a / b) * b;
  case BinOp::Pow: return std::pow(a, b);
  case BinOp::Min: return std::min(a, b);
  case BinOp::Max: return std::max(a, b);
  case BinOp::Lt: return a < b;
  case BinOp::Le: return a <= b;
  case BinOp::Gt: return a > b;
  case BinOp::Ge: return a >= b;
  case BinOp::Eq: return a == b;
  case BinOp::Ne: return a != b;
  case BinOp::And: return a != 0 && b != 0;
  case BinOp::Or: return a != 0 || b != 0;
  }
  internalError("unknown binary operator");
}

// Nested loops over the reduction's variables, outermost first; a variable may shadow an
// index bound outside the reduction, which it binds again afterwards.
double ReferenceInterpreter::reduce(const ExprNode &r, size_t var) {
  if (var == r.rvars.size()) return eval(r.args[0]);
  const ReduceVar &v = r.rvars[var];
  const auto extent = static_cast<int64_t>(eval(v.extent));
  auto outer = indices_.find(v.name);
  std::optional<int64_t> shadowed = outer != indices_.end() ? std::optional(outer->second) : std::nullopt;
  double acc = eval(reduceIdentity(r.reduceOp, Type::Float));
  for (int64_t i = 0; i < extent; ++i) {
    indices_[v.name] = i;
    double x = reduce(r, var + 1);
    switch (r.reduceOp) {
    case ReduceOp::Sum: acc += x; break;
    case ReduceOp::Prod: acc *= x; break;
    case ReduceOp::Max: acc = std::max(acc, x); break;
    case ReduceOp::Min: acc = std::min(acc, x); break;
    }
  }
  if (shadowed)
    indices_[v.name] = *shadowed;
  else
    indices_.erase(v.name);
  return acc;
}

} // namespace enc::ir
