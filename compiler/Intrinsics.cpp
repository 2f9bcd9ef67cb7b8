#include "compiler/Intrinsics.h"

#include "support/InternalError.h"

#include <cmath>

namespace enc::ir {

Intrinsic intrinsicOf(const ExprNode &call) {
  const IntrinsicInfo *f = findIntrinsic(call.name);
  ENC_INTERNAL_ASSERT(call.kind == ExprKind::Call && f, "'{}' is not an intrinsic", call.name);
  return f->id;
}

std::optional<double> foldIntrinsic(Intrinsic f, const std::vector<double> &args) {
  const double x = args.at(0);
  switch (f) {
  case Intrinsic::Exp: return std::exp(x);
  case Intrinsic::Log: return std::log(x);
  case Intrinsic::Sqrt: return std::sqrt(x);
  case Intrinsic::Rsqrt: return 1.0 / std::sqrt(x);
  case Intrinsic::Tanh: return std::tanh(x);
  case Intrinsic::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
  case Intrinsic::Abs: return std::fabs(x);
  case Intrinsic::Relu: return x > 0 ? x : 0;
  case Intrinsic::Sin: return std::sin(x);
  case Intrinsic::Cos: return std::cos(x);
  case Intrinsic::Floor: return std::floor(x);
  case Intrinsic::Ceil: return std::ceil(x);
  case Intrinsic::LeakyRelu: return x > 0 ? x : x * args.at(1);
  case Intrinsic::Rand:      // depends on the pass's seed
  case Intrinsic::Allreduce: // depends on the other processes
    return std::nullopt;
  }
  return std::nullopt;
}

Expr intrinsicAdjoint(const Expr &e, const Expr &adj, size_t arg, const Expr &result) {
  const Expr &x = e->args[0];
  const Expr zero = floatImm(0), one = floatImm(1);
  const Expr positive = binary(BinOp::Gt, x, zero);
  // x > 0 exactly where the activation's result is: relu, and leaky_relu with a constant slope >= 0.
  auto nonNegativeConstant = [](const Expr &s) {
    return (s->kind == ExprKind::FloatImm && s->floatValue >= 0) || (s->kind == ExprKind::IntImm && s->intValue >= 0);
  };
  const bool signKept = result && (intrinsicOf(*e) == Intrinsic::Relu ||
                                   (intrinsicOf(*e) == Intrinsic::LeakyRelu && nonNegativeConstant(e->args[1])));
  const Expr active = signKept ? binary(BinOp::Gt, result, zero) : positive;
  const Expr value = result ? result : e;
  switch (intrinsicOf(*e)) {
  // Every process's x adds into every process's result: the adjoint of x is the sum of the
  // result's adjoints over the group.
  case Intrinsic::Allreduce: return call("allreduce", {adj});
  case Intrinsic::Exp: return adj * value;
  case Intrinsic::Log: return adj / x;
  case Intrinsic::Sqrt: return adj * floatImm(0.5) / value;
  case Intrinsic::Rsqrt: return adj * floatImm(-0.5) * value / x;
  case Intrinsic::Tanh: return adj * (one - value * value);
  case Intrinsic::Sigmoid: return adj * value * (one - value);
  case Intrinsic::Sin: return adj * call("cos", {x});
  case Intrinsic::Cos: return unary(UnOp::Neg, adj) * call("sin", {x});
  case Intrinsic::Abs:
    return select(positive, adj, select(binary(BinOp::Lt, x, zero), unary(UnOp::Neg, adj), zero));
  case Intrinsic::Relu: return select(active, adj, zero);
  case Intrinsic::LeakyRelu: {
    const Expr &s = e->args[1];
    return arg == 0 ? select(active, adj, adj * s) : select(positive, zero, adj * x);
  }
  case Intrinsic::Floor: // piecewise constant
  case Intrinsic::Ceil:
  case Intrinsic::Rand: // of integer indices
    return nullptr;
  }
  return nullptr;
}

} // namespace enc::ir
