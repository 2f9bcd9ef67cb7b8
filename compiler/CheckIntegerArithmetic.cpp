// Integer arithmetic that has no value once hyper-parameters and sizes are constants (a
// division by a size that is 0, K * K past 64 bits) is the user's error, reported at the
// statement; the code generators would compile it as undefined behaviour. So is arithmetic on
// index variables that leaves 64 bits for some index in its range: it would wrap around and
// read another element without a word (X[i * 2^62 * 4 + i] read X[i]).
#include "compiler/Passes.h"
#include "support/Error.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>

namespace enc::ir {

namespace {

// The operation as the language writes it (floor division is //).
std::string spelled(const Expr &op) {
  if (op->kind != ExprKind::Binary || op->binOp != BinOp::Div) return print(op);
  return fmt::format("{} // {}", print(op->args[0]), print(op->args[1]));
}

void check(const Expr &e, const std::string &tensor, SourceLoc loc) {
  std::optional<UndefinedArithmetic> bad = undefinedArithmetic(e);
  if (!bad) return;
  throw Error(fmt::format("{}: in the definition of '{}': the integer operation {} {}", loc.where(), tensor,
                          spelled(bad->op), bad->why),
              bad->hint());
}

// The values of a definition's integer expressions over its index variables' ranges, computed
// exactly (128-bit), each expression walked once. Parts whose range is unknown (a symbolic size,
// int() of data) are not checked: the index variables' ranges are what this decides.
class IndexOverflowCheck {
public:
  IndexOverflowCheck(const Definition &d) : d_(d) {
    for (const IndexVar &v : d.indices) bind(v.name, v.extent);
  }

  void run() {
    for (const IndexVar &v : d_.indices) range(v.extent);
    range(d_.value);
    for (const Expr &s : d_.scatter) range(s);
  }

private:
  struct Range {
    __int128 lo, hi;
  };

  void bind(const std::string &name, const Expr &extent) {
    int64_t n = 0;
    if (isConst(extent, &n) && n > 0) extents_[name] = n;
    else extents_.erase(name);
  }

  [[noreturn]] void fail(const Expr &op) const {
    std::set<std::string> vars;
    visit(op, [&](const Expr &n) {
      if (n->kind == ExprKind::Var && extents_.count(n->name)) vars.insert(n->name);
      return true;
    });
    std::string ranges;
    for (const std::string &v : vars) ranges += fmt::format("{}{} < {}", ranges.empty() ? "" : ", ", v, extents_.at(v));
    throw Error(fmt::format("{}: in the definition of '{}': the integer operation {} leaves 64 bits for some {} ({}), "
                            "where it would wrap around to another element",
                            d_.loc.where(), d_.tensor, spelled(op), vars.size() == 1 ? "index" : "indices", ranges),
                "keep index arithmetic within 64 bits: smaller constants, strides or sizes");
  }

  Range checked(const Expr &op, __int128 lo, __int128 hi) const {
    if (lo < std::numeric_limits<int64_t>::min() || hi > std::numeric_limits<int64_t>::max()) fail(op);
    return {lo, hi};
  }

  static __int128 floorDiv(__int128 a, __int128 b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

  std::optional<Range> range(const Expr &e) {
    if (!e) return std::nullopt;
    switch (e->kind) {
    case ExprKind::IntImm: return Range{e->intValue, e->intValue};
    case ExprKind::Var: {
      auto it = extents_.find(e->name);
      if (e->varKind != VarKind::Index || it == extents_.end()) return std::nullopt;
      return Range{0, it->second - 1};
    }
    case ExprKind::Reduce: {
      std::map<std::string, int64_t> outer = extents_;
      for (const ReduceVar &v : e->rvars) {
        range(v.extent);
        bind(v.name, v.extent);
      }
      range(e->args[0]);
      extents_ = std::move(outer);
      return std::nullopt;
    }
    case ExprKind::Unary: {
      std::optional<Range> a = range(e->args[0]);
      if (e->unOp == UnOp::Neg && e->type == Type::Int && a) return checked(e, -a->hi, -a->lo);
      return std::nullopt;
    }
    case ExprKind::Binary: {
      std::optional<Range> a = range(e->args[0]), b = range(e->args[1]);
      if (e->type != Type::Int || !a || !b) return std::nullopt;
      switch (e->binOp) {
      case BinOp::Add: return checked(e, a->lo + b->lo, a->hi + b->hi);
      case BinOp::Sub: return checked(e, a->lo - b->hi, a->hi - b->lo);
      case BinOp::Mul: {
        // Each factor fits in 64 bits, so each product fits in 128.
        __int128 p[4] = {a->lo * b->lo, a->lo * b->hi, a->hi * b->lo, a->hi * b->hi};
        return checked(e, *std::min_element(p, p + 4), *std::max_element(p, p + 4));
      }
      case BinOp::Div:
        if (b->lo != b->hi || b->lo <= 0) return std::nullopt;
        return Range{floorDiv(a->lo, b->lo), floorDiv(a->hi, b->lo)};
      case BinOp::Mod:
        if (b->lo != b->hi || b->lo <= 0) return std::nullopt;
        return Range{0, b->lo - 1};
      case BinOp::Min: return Range{std::min(a->lo, b->lo), std::min(a->hi, b->hi)};
      case BinOp::Max: return Range{std::max(a->lo, b->lo), std::max(a->hi, b->hi)};
      default: return std::nullopt;
      }
    }
    default:
      for (const Expr &a : e->args) range(a);
      return std::nullopt;
    }
  }

  const Definition &d_;
  std::map<std::string, int64_t> extents_; // index variables in scope with a constant extent
};

} // namespace

void checkIntegerArithmetic(const Program &p) {
  auto definition = [&](const Definition &d) {
    for (const IndexVar &v : d.indices) check(v.extent, d.tensor, d.loc);
    check(d.value, d.tensor, d.loc);
    for (const Expr &s : d.scatter) check(s, d.tensor, d.loc);
    IndexOverflowCheck(d).run();
  };
  for (const Definition &d : p.defs) definition(d);
  for (const Recovery &r : p.recoveries) definition(r.def);
}

} // namespace enc::ir
