#include "compiler/IR.h"

#include "compiler/Intrinsics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

namespace enc::ir {

const char *typeName(Type t) {
  switch (t) {
  case Type::Int: return "int";
  case Type::Float: return "float";
  case Type::Bool: return "bool";
  }
  return "?";
}

const char *binOpSpelling(BinOp op) {
  switch (op) {
  case BinOp::Add: return "+";
  case BinOp::Sub: return "-";
  case BinOp::Mul: return "*";
  case BinOp::Div: return "/";
  case BinOp::Mod: return "%";
  case BinOp::Pow: return "^";
  case BinOp::Min: return "min";
  case BinOp::Max: return "max";
  case BinOp::Lt: return "<";
  case BinOp::Le: return "<=";
  case BinOp::Gt: return ">";
  case BinOp::Ge: return ">=";
  case BinOp::Eq: return "==";
  case BinOp::Ne: return "!=";
  case BinOp::And: return "&&";
  case BinOp::Or: return "||";
  }
  return "?";
}

const char *reduceOpName(ReduceOp op) {
  switch (op) {
  case ReduceOp::Sum: return "sum";
  case ReduceOp::Max: return "max";
  case ReduceOp::Min: return "min";
  case ReduceOp::Prod: return "prod";
  }
  return "?";
}

static std::shared_ptr<ExprNode> node(ExprKind k, Type t) {
  auto n = std::make_shared<ExprNode>();
  n->kind = k;
  n->type = t;
  return n;
}

Expr intImm(int64_t v) {
  auto n = node(ExprKind::IntImm, Type::Int);
  n->intValue = v;
  return n;
}

Expr floatImm(double v) {
  auto n = node(ExprKind::FloatImm, Type::Float);
  n->floatValue = v;
  return n;
}

Expr boolImm(bool v) {
  auto n = node(ExprKind::BoolImm, Type::Bool);
  n->boolValue = v;
  return n;
}

Expr var(std::string name, Type type, VarKind kind) {
  auto n = node(ExprKind::Var, type);
  n->name = std::move(name);
  n->varKind = kind;
  return n;
}

Expr indexVar(std::string name) { return var(std::move(name), Type::Int, VarKind::Index); }

Expr access(std::string tensor, std::vector<Expr> indices, SourceLoc loc) {
  auto n = node(ExprKind::Access, Type::Float);
  n->name = std::move(tensor);
  n->args = std::move(indices);
  n->loc = loc;
  return n;
}

Expr load(std::string buffer, Expr flatIndex) {
  auto n = node(ExprKind::Load, Type::Float);
  n->name = std::move(buffer);
  n->args = {std::move(flatIndex)};
  return n;
}

bool isConst(const Expr &e, int64_t *value) {
  if (e->kind != ExprKind::IntImm) return false;
  if (value) *value = e->intValue;
  return true;
}

static bool isFloatConst(const Expr &e, double v) { return e->kind == ExprKind::FloatImm && e->floatValue == v; }
static bool isIntConst(const Expr &e, int64_t v) { return e->kind == ExprKind::IntImm && e->intValue == v; }

Expr cast(Type t, Expr a) {
  if (a->type == t) return a;
  if (t == Type::Float && a->kind == ExprKind::IntImm) return floatImm(static_cast<double>(a->intValue));
  if (t == Type::Float && a->kind == ExprKind::BoolImm) return floatImm(a->boolValue ? 1.0 : 0.0);
  if (t == Type::Int && a->kind == ExprKind::BoolImm) return intImm(a->boolValue ? 1 : 0);
  auto n = node(ExprKind::Cast, t);
  n->args = {std::move(a)};
  return n;
}

Expr unary(UnOp op, Expr a) {
  if (op == UnOp::Neg) {
    if (int64_t r = 0; a->kind == ExprKind::IntImm && !__builtin_sub_overflow(int64_t{0}, a->intValue, &r))
      return intImm(r);
    if (a->kind == ExprKind::FloatImm) return floatImm(-a->floatValue);
  } else if (a->kind == ExprKind::BoolImm) {
    return boolImm(!a->boolValue);
  }
  auto n = node(ExprKind::Unary, op == UnOp::Not ? Type::Bool : a->type);
  n->unOp = op;
  n->args = {std::move(a)};
  return n;
}

static int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
static int64_t floorMod(int64_t a, int64_t b) { return a - floorDiv(a, b) * b; }

// x^y by squaring, or false when a step overflows (y >= 0).
static bool checkedPow(int64_t x, int64_t y, int64_t &out) {
  int64_t r = 1;
  while (y > 0) {
    if ((y & 1) && __builtin_mul_overflow(r, x, &r)) return false;
    y >>= 1;
    if (y > 0 && __builtin_mul_overflow(x, x, &x)) return false;
  }
  out = r;
  return true;
}

static bool isComparison(BinOp op) { return op >= BinOp::Lt && op <= BinOp::Ne; }

Expr binary(BinOp op, Expr a, Expr b) {
  bool logical = op == BinOp::And || op == BinOp::Or;
  if (!logical && (a->type == Type::Float || b->type == Type::Float)) {
    a = cast(Type::Float, a);
    b = cast(Type::Float, b);
  } else if (!logical && (a->type == Type::Bool) != (b->type == Type::Bool)) {
    a = cast(Type::Int, a);
    b = cast(Type::Int, b);
  }
  Type result = isComparison(op) || logical ? Type::Bool : a->type;

  // Constant folding. Integer results that do not fit in 64 bits are left unfolded, never wrapped: a
  // size that stays symbolic is reported where it is needed (evalInt), a wrapped one would be wrong.
  if (a->kind == ExprKind::IntImm && b->kind == ExprKind::IntImm) {
    int64_t x = a->intValue, y = b->intValue, r = 0;
    bool minOverMinusOne = x == std::numeric_limits<int64_t>::min() && y == -1;
    switch (op) {
    case BinOp::Add: if (!__builtin_add_overflow(x, y, &r)) return intImm(r); break;
    case BinOp::Sub: if (!__builtin_sub_overflow(x, y, &r)) return intImm(r); break;
    case BinOp::Mul: if (!__builtin_mul_overflow(x, y, &r)) return intImm(r); break;
    case BinOp::Div: if (y != 0 && !minOverMinusOne) return intImm(floorDiv(x, y)); break;
    case BinOp::Mod: if (y != 0 && !minOverMinusOne) return intImm(floorMod(x, y)); break;
    case BinOp::Min: return intImm(std::min(x, y));
    case BinOp::Max: return intImm(std::max(x, y));
    case BinOp::Lt: return boolImm(x < y);
    case BinOp::Le: return boolImm(x <= y);
    case BinOp::Gt: return boolImm(x > y);
    case BinOp::Ge: return boolImm(x >= y);
    case BinOp::Eq: return boolImm(x == y);
    case BinOp::Ne: return boolImm(x != y);
    case BinOp::Pow:
      if (y >= 0 && checkedPow(x, y, r)) return intImm(r);
      break;
    default: break;
    }
  }
  if (a->kind == ExprKind::FloatImm && b->kind == ExprKind::FloatImm) {
    double x = a->floatValue, y = b->floatValue;
    switch (op) {
    case BinOp::Add: return floatImm(x + y);
    case BinOp::Sub: return floatImm(x - y);
    case BinOp::Mul: return floatImm(x * y);
    case BinOp::Div: return floatImm(x / y);
    case BinOp::Pow: return floatImm(std::pow(x, y));
    case BinOp::Min: return floatImm(std::min(x, y));
    case BinOp::Max: return floatImm(std::max(x, y));
    case BinOp::Lt: return boolImm(x < y);
    case BinOp::Le: return boolImm(x <= y);
    case BinOp::Gt: return boolImm(x > y);
    case BinOp::Ge: return boolImm(x >= y);
    case BinOp::Eq: return boolImm(x == y);
    case BinOp::Ne: return boolImm(x != y);
    default: break;
    }
  }
  if (a->kind == ExprKind::BoolImm && b->kind == ExprKind::BoolImm) {
    if (op == BinOp::And) return boolImm(a->boolValue && b->boolValue);
    if (op == BinOp::Or) return boolImm(a->boolValue || b->boolValue);
    if (op == BinOp::Eq) return boolImm(a->boolValue == b->boolValue);
    if (op == BinOp::Ne) return boolImm(a->boolValue != b->boolValue);
  }
  // Constants gathered across one level: (x + 2) - 3 -> x - 1, (x * 2) * 2 -> x * 4 (integers).
  if (a->type == Type::Int && b->kind == ExprKind::IntImm && a->kind == ExprKind::Binary &&
      a->args[1]->kind == ExprKind::IntImm) {
    // Only when the gathered constant fits: otherwise the two steps stay as written.
    int64_t c1 = a->args[1]->intValue, c2 = b->intValue, r = 0;
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    bool addA = a->binOp == BinOp::Add || a->binOp == BinOp::Sub;
    if (addA && (op == BinOp::Add || op == BinOp::Sub) && c1 != kMin && c2 != kMin &&
        !__builtin_add_overflow(a->binOp == BinOp::Add ? c1 : -c1, op == BinOp::Add ? c2 : -c2, &r) && r != kMin)
      return r >= 0 ? binary(BinOp::Add, a->args[0], intImm(r)) : binary(BinOp::Sub, a->args[0], intImm(-r));
    if (a->binOp == BinOp::Mul && op == BinOp::Mul && !__builtin_mul_overflow(c1, c2, &r))
      return binary(BinOp::Mul, a->args[0], intImm(r));
  }
  // A multiple of k passes through floor division and modulo by k exactly, for any integers:
  // (x*m + y) / k = x*(m/k) + y / k and (x*m + y) % k = y % k when k > 0 divides m. Decoded
  // positions ((s * 3136 + j) / 3136) shrink to what range folding can finish.
  if ((op == BinOp::Div || op == BinOp::Mod) && a->type == Type::Int && b->kind == ExprKind::IntImm &&
      b->intValue > 0 && a->kind == ExprKind::Binary && a->binOp == BinOp::Add) {
    const int64_t k = b->intValue;
    for (int side = 0; side < 2; ++side) {
      const Expr &term = a->args[side], &other = a->args[1 - side];
      if (term->kind != ExprKind::Binary || term->binOp != BinOp::Mul || term->args[1]->kind != ExprKind::IntImm ||
          term->args[1]->intValue % k != 0)
        continue;
      if (op == BinOp::Mod) return binary(BinOp::Mod, other, b);
      return binary(BinOp::Add, binary(BinOp::Mul, term->args[0], intImm(term->args[1]->intValue / k)),
                    binary(BinOp::Div, other, b));
    }
  }
  // A position decoded and re-encoded: (p / k) * k + p % k = p (floor semantics, k constant).
  if (op == BinOp::Add && a->type == Type::Int) {
    for (int side = 0; side < 2; ++side) {
      const Expr &scaled = side ? b : a, &rest = side ? a : b;
      if (scaled->kind != ExprKind::Binary || scaled->binOp != BinOp::Mul || rest->kind != ExprKind::Binary ||
          rest->binOp != BinOp::Mod || rest->args[1]->kind != ExprKind::IntImm)
        continue;
      const Expr &quotient = scaled->args[0];
      if (isIntConst(scaled->args[1], rest->args[1]->intValue) && quotient->kind == ExprKind::Binary &&
          quotient->binOp == BinOp::Div && isIntConst(quotient->args[1], rest->args[1]->intValue) &&
          structurallyEqual(quotient->args[0], rest->args[0]))
        return rest->args[0];
    }
  }
  // Identities that keep index arithmetic readable after specialization.
  auto zero = [](const Expr &e) { return isIntConst(e, 0) || isFloatConst(e, 0.0); };
  auto one = [](const Expr &e) { return isIntConst(e, 1) || isFloatConst(e, 1.0); };
  switch (op) {
  case BinOp::Add:
    if (zero(b)) return a;
    if (zero(a)) return b;
    break;
  case BinOp::Sub:
    if (zero(b)) return a;
    break;
  case BinOp::Mul:
    if (one(b)) return a;
    if (one(a)) return b;
    if (isIntConst(a, 0) || isIntConst(b, 0)) return intImm(0);
    break;
  case BinOp::Div:
    if (one(b)) return a;
    break;
  case BinOp::Mod:
    if (isIntConst(b, 1)) return intImm(0);
    break;
  case BinOp::Pow:
    if (one(b)) return a;
    break;
  case BinOp::And:
    if (a->kind == ExprKind::BoolImm) return a->boolValue ? b : a;
    if (b->kind == ExprKind::BoolImm) return b->boolValue ? a : b;
    break;
  case BinOp::Or:
    if (a->kind == ExprKind::BoolImm) return a->boolValue ? a : b;
    if (b->kind == ExprKind::BoolImm) return b->boolValue ? b : a;
    break;
  default: break;
  }
  auto n = node(ExprKind::Binary, result);
  n->binOp = op;
  n->args = {std::move(a), std::move(b)};
  return n;
}

// Value of a scalar function on constants, for folding initializers and hyper-parameters.
static bool foldCall(const std::string &fn, const std::vector<Expr> &args, double &out) {
  if (args.empty()) return false;
  std::vector<double> values;
  for (const Expr &a : args) {
    if (a->kind != ExprKind::FloatImm) return false;
    values.push_back(a->floatValue);
  }
  const IntrinsicInfo *f = findIntrinsic(fn);
  std::optional<double> v = f ? foldIntrinsic(f->id, values) : std::nullopt;
  if (v) out = *v;
  return v.has_value();
}

Expr call(std::string fn, std::vector<Expr> args) {
  // rand's arguments are integers: the seed and the indices that pick the number.
  if (fn != "rand")
    for (Expr &a : args) a = cast(Type::Float, a);
  if (double v = 0; foldCall(fn, args, v)) return floatImm(v);
  auto n = node(ExprKind::Call, Type::Float);
  n->name = std::move(fn);
  n->args = std::move(args);
  return n;
}

Expr select(Expr cond, Expr a, Expr b) {
  if (a->type == Type::Float || b->type == Type::Float) {
    a = cast(Type::Float, a);
    b = cast(Type::Float, b);
  }
  if (cond->kind == ExprKind::BoolImm) return cond->boolValue ? a : b;
  auto n = node(ExprKind::Select, a->type);
  n->args = {std::move(cond), std::move(a), std::move(b)};
  return n;
}

Expr reduce(ReduceOp op, std::vector<ReduceVar> vars, Expr body) {
  body = cast(Type::Float, body);
  auto n = node(ExprKind::Reduce, Type::Float);
  n->reduceOp = op;
  n->rvars = std::move(vars);
  n->args = {std::move(body)};
  return n;
}

Expr reduceIdentity(ReduceOp op, Type t) {
  double inf = std::numeric_limits<double>::infinity();
  switch (op) {
  case ReduceOp::Sum: return t == Type::Int ? intImm(0) : floatImm(0);
  case ReduceOp::Prod: return t == Type::Int ? intImm(1) : floatImm(1);
  case ReduceOp::Max: return floatImm(-inf);
  case ReduceOp::Min: return floatImm(inf);
  }
  return floatImm(0);
}

void visit(const Expr &e, const std::function<bool(const Expr &)> &fn) {
  if (!fn(e)) return;
  for (const Expr &a : e->args) visit(a, fn);
  for (const ReduceVar &v : e->rvars) visit(v.extent, fn);
}

Expr withArgs(const Expr &e, std::vector<Expr> args) {
  switch (e->kind) {
  case ExprKind::Access: return access(e->name, std::move(args), e->loc);
  case ExprKind::Load: return load(e->name, args[0]);
  case ExprKind::Unary: return unary(e->unOp, args[0]);
  case ExprKind::Binary: return binary(e->binOp, args[0], args[1]);
  case ExprKind::Call: return call(e->name, std::move(args));
  case ExprKind::Select: return select(args[0], args[1], args[2]);
  case ExprKind::Reduce: return reduce(e->reduceOp, e->rvars, args[0]);
  case ExprKind::Cast: return cast(e->type, args[0]);
  default: return e;
  }
}

Expr mutate(const Expr &e, const std::function<Expr(const Expr &)> &fn) {
  bool changed = false;
  std::vector<Expr> args;
  args.reserve(e->args.size());
  for (const Expr &a : e->args) {
    args.push_back(mutate(a, fn));
    changed |= args.back() != a;
  }
  std::vector<ReduceVar> rvars = e->rvars;
  for (ReduceVar &v : rvars) {
    Expr ext = mutate(v.extent, fn);
    changed |= ext != v.extent;
    v.extent = ext;
  }
  Expr rebuilt = e;
  if (changed) {
    if (e->kind == ExprKind::Reduce) rebuilt = reduce(e->reduceOp, rvars, args[0]);
    else rebuilt = withArgs(e, std::move(args));
  }
  Expr replaced = fn(rebuilt);
  return replaced ? replaced : rebuilt;
}

Expr substitute(const Expr &e, const std::function<Expr(const std::string &, VarKind)> &lookup) {
  return mutate(e, [&](const Expr &n) -> Expr {
    if (n->kind != ExprKind::Var) return nullptr;
    Expr r = lookup(n->name, n->varKind);
    if (!r) return nullptr;
    return n->type == Type::Float ? cast(Type::Float, r) : r;
  });
}

Expr swapIndices(const Expr &e, const std::string &a, const std::string &b) {
  return substituteIndices(e, {{a, indexVar(b)}, {b, indexVar(a)}});
}

Expr substituteIndices(const Expr &e, const std::map<std::string, Expr> &values) {
  if (values.empty()) return e;
  // A reduction binds its variables: a sum(c: ...) inside e keeps its own c (autodiff
  // substitutes a read's index c into adjoints that may recompute such a sum), and a value
  // that mentions c does not fall under the sum's c: the sum's c is renamed first
  // (h -> j - (kh - 1) into sum(kh: X[h + kh - 1]) is sum(kh1: X[j - (kh - 1) + kh1 - 1])).
  if (e->kind == ExprKind::Reduce) {
    std::map<std::string, Expr> inner = values;
    for (const ReduceVar &v : e->rvars) inner.erase(v.name);
    std::set<std::string> captured; // bound names free in a value substituted inside
    for (const std::string &n : freeIndexVars(e->args[0]))
      if (auto it = inner.find(n); it != inner.end())
        for (const std::string &f : freeIndexVars(it->second)) captured.insert(f);
    bool renames = std::any_of(e->rvars.begin(), e->rvars.end(), [&](const ReduceVar &v) { return captured.count(v.name); });
    if (renames || inner.size() != values.size()) {
      std::set<std::string> taken = captured;
      visit(e, [&](const Expr &n) {
        if (n->kind == ExprKind::Var && n->varKind == VarKind::Index) taken.insert(n->name);
        for (const ReduceVar &v : n->rvars) taken.insert(v.name);
        return true;
      });
      for (const auto &[name, value] : values) taken.insert(name);
      std::vector<ReduceVar> rvars = e->rvars;
      for (ReduceVar &v : rvars) {
        v.extent = substituteIndices(v.extent, values);
        if (!captured.count(v.name)) continue;
        std::string fresh = freshName(v.name, taken);
        inner[v.name] = indexVar(fresh);
        v.name = fresh;
      }
      return reduce(e->reduceOp, rvars, substituteIndices(e->args[0], inner));
    }
  }
  if (e->kind == ExprKind::Reduce || !e->args.empty()) {
    bool changed = false;
    std::vector<Expr> args;
    for (const Expr &a : e->args) {
      args.push_back(substituteIndices(a, values));
      changed |= args.back() != a;
    }
    std::vector<ReduceVar> rvars = e->rvars;
    for (ReduceVar &v : rvars) {
      Expr ext = substituteIndices(v.extent, values);
      changed |= ext != v.extent;
      v.extent = ext;
    }
    if (!changed) return e;
    return e->kind == ExprKind::Reduce ? reduce(e->reduceOp, rvars, args[0]) : withArgs(e, std::move(args));
  }
  return substitute(e, [&](const std::string &n, VarKind k) -> Expr {
    if (k != VarKind::Index) return nullptr;
    auto it = values.find(n);
    return it == values.end() ? nullptr : it->second;
  });
}

std::optional<UndefinedArithmetic> undefinedArithmetic(const Expr &e) {
  const std::string tooLarge = "is too large: its value does not fit in 64 bits";
  std::optional<UndefinedArithmetic> found;
  visit(e, [&](const Expr &n) {
    if (found || n->type != Type::Int) return !found;
    if (n->kind == ExprKind::Unary && n->unOp == UnOp::Neg && n->args[0]->kind == ExprKind::IntImm)
      found = UndefinedArithmetic{n, tooLarge, true};
    if (n->kind != ExprKind::Binary) return !found;
    const Expr &a = n->args[0], &b = n->args[1];
    bool byZero = b->kind == ExprKind::IntImm && b->intValue == 0;
    if ((n->binOp == BinOp::Div || n->binOp == BinOp::Mod) && byZero)
      found = UndefinedArithmetic{n, n->binOp == BinOp::Div ? "divides by zero" : "takes a remainder by zero", false};
    else if (a->kind == ExprKind::IntImm && b->kind == ExprKind::IntImm)
      found = n->binOp == BinOp::Pow && b->intValue < 0
                  ? UndefinedArithmetic{n, "is an integer to a negative power", false}
                  : UndefinedArithmetic{n, tooLarge, true};
    return !found;
  });
  return found;
}

std::string UndefinedArithmetic::hint() const {
  return overflow ? "use smaller hyper-parameters or inputs"
                  : "a divisor is 0 (as written, or through a hyper-parameter or an input's size); a `require` in "
                    "the layer states which values it accepts (require s > 0)";
}

std::string freshName(const std::string &name, std::set<std::string> &taken) {
  std::string fresh = name;
  if (taken.count(fresh)) {
    std::string stem = name;
    while (!stem.empty() && std::isdigit(static_cast<unsigned char>(stem.back()))) stem.pop_back();
    for (int i = 1; taken.count(fresh = stem + std::to_string(i)); ++i) {
    }
  }
  taken.insert(fresh);
  return fresh;
}

std::string TakenNames::fresh(const std::string &name) {
  std::string fresh = name;
  if (contains(fresh)) {
    std::string stem = name;
    while (!stem.empty() && std::isdigit(static_cast<unsigned char>(stem.back()))) stem.pop_back();
    int &i = next_.try_emplace(stem, 1).first->second;
    while (contains(fresh = stem + std::to_string(i))) ++i;
  }
  insert(fresh);
  return fresh;
}

bool anyNode(const Expr &e, const std::function<bool(const Expr &)> &pred) {
  bool found = false;
  visit(e, [&](const Expr &n) {
    if (pred(n)) found = true;
    return !found;
  });
  return found;
}

const ExprNode *firstReduce(const Expr &e) {
  const ExprNode *r = nullptr;
  visit(e, [&](const Expr &n) {
    if (n->kind == ExprKind::Reduce && !r) r = n.get();
    return !r;
  });
  return r;
}

namespace {
void collectFactors(const Expr &e, std::vector<Expr> &out) {
  if (e->kind == ExprKind::Binary && e->type == Type::Float && e->binOp == BinOp::Mul) {
    collectFactors(e->args[0], out);
    collectFactors(e->args[1], out);
  } else if (e->kind == ExprKind::Binary && e->type == Type::Float && e->binOp == BinOp::Div) {
    collectFactors(e->args[0], out);
    out.push_back(floatImm(1) / e->args[1]);
  } else if (e->kind == ExprKind::Unary && e->unOp == UnOp::Neg) {
    out.push_back(floatImm(-1));
    collectFactors(e->args[0], out);
  } else {
    out.push_back(e);
  }
}
} // namespace

std::vector<Expr> productFactors(const Expr &e) {
  std::vector<Expr> out;
  collectFactors(e, out);
  return out;
}

Expr product(const std::vector<Expr> &factors) {
  Expr p;
  for (const Expr &f : factors) p = p ? p * f : f;
  return p ? p : floatImm(1);
}

bool mentionsVar(const Expr &e, const std::string &name) {
  return anyNode(e, [&](const Expr &n) { return n->kind == ExprKind::Var && n->name == name; });
}

bool mentionsVar(const Expr &e, const std::string &name, VarKind kind) {
  return anyNode(e, [&](const Expr &n) { return n->kind == ExprKind::Var && n->varKind == kind && n->name == name; });
}

bool containsReduce(const Expr &e) {
  return anyNode(e, [](const Expr &n) { return n->kind == ExprKind::Reduce; });
}

static void collectFree(const Expr &e, std::set<std::string> &bound, std::vector<std::string> &out) {
  if (e->kind == ExprKind::Var && e->varKind == VarKind::Index) {
    if (!bound.count(e->name) && std::find(out.begin(), out.end(), e->name) == out.end()) out.push_back(e->name);
    return;
  }
  if (e->kind == ExprKind::Reduce) {
    std::vector<std::string> added;
    for (const ReduceVar &v : e->rvars)
      if (bound.insert(v.name).second) added.push_back(v.name);
    collectFree(e->args[0], bound, out);
    for (const std::string &n : added) bound.erase(n);
    return;
  }
  for (const Expr &a : e->args) collectFree(a, bound, out);
}

std::vector<std::string> freeIndexVars(const Expr &e) {
  std::set<std::string> bound;
  std::vector<std::string> out;
  collectFree(e, bound, out);
  return out;
}

int costOf(const Expr &e) {
  int cost = 0;
  visit(e, [&](const Expr &n) {
    switch (n->kind) {
    case ExprKind::Call: cost += 8; break;
    case ExprKind::Binary: cost += (n->binOp == BinOp::Div || n->binOp == BinOp::Pow) ? 4 : 1; break;
    case ExprKind::Reduce: cost += 100; break;
    default: break;
    }
    return true;
  });
  return cost;
}

bool structurallyEqual(const Expr &a, const Expr &b) {
  if (a == b) return true;
  if (a->kind != b->kind || a->type != b->type || a->args.size() != b->args.size()) return false;
  switch (a->kind) {
  case ExprKind::IntImm: return a->intValue == b->intValue;
  case ExprKind::FloatImm: return a->floatValue == b->floatValue;
  case ExprKind::BoolImm: return a->boolValue == b->boolValue;
  case ExprKind::Var: return a->name == b->name && a->varKind == b->varKind;
  case ExprKind::Binary: if (a->binOp != b->binOp) return false; break;
  case ExprKind::Unary: if (a->unOp != b->unOp) return false; break;
  case ExprKind::Access:
  case ExprKind::Load:
  case ExprKind::Call: if (a->name != b->name) return false; break;
  case ExprKind::Reduce:
    if (a->reduceOp != b->reduceOp || a->rvars.size() != b->rvars.size()) return false;
    for (size_t i = 0; i < a->rvars.size(); ++i)
      if (a->rvars[i].name != b->rvars[i].name || !structurallyEqual(a->rvars[i].extent, b->rvars[i].extent))
        return false;
    break;
  default: break;
  }
  for (size_t i = 0; i < a->args.size(); ++i)
    if (!structurallyEqual(a->args[i], b->args[i])) return false;
  return true;
}

// ---- printing -----------------------------------------------------------------------------------
static int precedence(const Expr &e) {
  // A negative literal prints with a leading '-', so it binds like unary minus.
  bool negativeLiteral = (e->kind == ExprKind::IntImm && e->intValue < 0) ||
                         (e->kind == ExprKind::FloatImm && std::signbit(e->floatValue));
  if (e->kind == ExprKind::Unary || negativeLiteral) return 6;
  if (e->kind != ExprKind::Binary) return 10;
  switch (e->binOp) {
  case BinOp::Or: return 1;
  case BinOp::And: return 2;
  case BinOp::Lt: case BinOp::Le: case BinOp::Gt: case BinOp::Ge: case BinOp::Eq: case BinOp::Ne: return 3;
  case BinOp::Add: case BinOp::Sub: return 4;
  case BinOp::Mul: case BinOp::Div: case BinOp::Mod: return 5;
  case BinOp::Pow: return 7;
  case BinOp::Min: case BinOp::Max: return 10;
  }
  return 10;
}

static std::string printList(const std::vector<Expr> &args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) out += (i ? ", " : "") + print(args[i]);
  return out;
}

static std::string formatFloat(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::isnan(v)) return "nan"; // its sign bit depends on the machine that folded it
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string print(const Expr &e) {
  switch (e->kind) {
  case ExprKind::IntImm: return std::to_string(e->intValue);
  case ExprKind::FloatImm: return formatFloat(e->floatValue);
  case ExprKind::BoolImm: return e->boolValue ? "true" : "false";
  case ExprKind::Var: return e->name;
  case ExprKind::Access: return fmt::format("{}[{}]", e->name, printList(e->args));
  case ExprKind::Load: return fmt::format("{}[{}]", e->name, print(e->args[0]));
  case ExprKind::Call: return fmt::format("{}({})", e->name, printList(e->args));
  case ExprKind::Select: return fmt::format("select({})", printList(e->args));
  case ExprKind::Cast: return fmt::format("{}({})", typeName(e->type), print(e->args[0]));
  case ExprKind::Reduce: {
    std::string vars;
    for (size_t i = 0; i < e->rvars.size(); ++i) vars += (i ? ", " : "") + e->rvars[i].name;
    return fmt::format("{}({}: {})", reduceOpName(e->reduceOp), vars, print(e->args[0]));
  }
  case ExprKind::Unary: {
    std::string inner = print(e->args[0]);
    if (precedence(e->args[0]) < 6) inner = "(" + inner + ")";
    return (e->unOp == UnOp::Neg ? "-" : "!") + inner;
  }
  case ExprKind::Binary: {
    if (e->binOp == BinOp::Min || e->binOp == BinOp::Max)
      return fmt::format("{}({})", binOpSpelling(e->binOp), printList(e->args));
    int p = precedence(e);
    std::string l = print(e->args[0]), r = print(e->args[1]);
    if (precedence(e->args[0]) < p || (e->binOp == BinOp::Pow && precedence(e->args[0]) <= p)) l = "(" + l + ")";
    if (precedence(e->args[1]) < p || (precedence(e->args[1]) == p && e->binOp != BinOp::Pow)) r = "(" + r + ")";
    return fmt::format("{} {} {}", l, binOpSpelling(e->binOp), r);
  }
  }
  return "?";
}

} // namespace enc::ir
