#include "compiler/Autodiff.h"

#include "compiler/Intrinsics.h"
#include "compiler/Passes.h"
#include "compiler/SoftmaxForm.h"
#include "support/Error.h"
#include "support/InternalError.h"

#include <algorithm>
#include <optional>
#include <set>

namespace enc::ir {

std::string gradientName(const std::string &tensor) { return "grad_" + tensor; }

namespace {


bool readsTensor(const Expr &e) {
  return anyNode(e, [](const Expr &n) { return n->kind == ExprKind::Access; });
}


// d e / d v for an integer index expression, if e is affine in v; nullopt otherwise.
std::optional<Expr> linearCoefficient(const Expr &e, const std::string &v) {
  if (!mentionsVar(e, v, VarKind::Index)) return intImm(0);
  switch (e->kind) {
  case ExprKind::Var: return intImm(1);
  case ExprKind::Unary:
    if (e->unOp != UnOp::Neg) return std::nullopt;
    if (auto c = linearCoefficient(e->args[0], v)) return unary(UnOp::Neg, *c);
    return std::nullopt;
  case ExprKind::Binary: {
    auto a = linearCoefficient(e->args[0], v), b = linearCoefficient(e->args[1], v);
    if (!a || !b) return std::nullopt;
    switch (e->binOp) {
    case BinOp::Add: return *a + *b;
    case BinOp::Sub: return *a - *b;
    case BinOp::Mul:
      if (isConst(*a, nullptr) && (*a)->intValue == 0) return e->args[0] * *b;
      if (isConst(*b, nullptr) && (*b)->intValue == 0) return *a * e->args[1];
      return std::nullopt;
    default: return std::nullopt;
    }
  }
  default: return std::nullopt;
  }
}

struct Scatter {
  std::vector<IndexVar> domain;
  std::vector<Expr> target;
  Expr value;
  SourceLoc loc;
};

class Differentiator {
public:
  explicit Differentiator(const Program &fwd) : fwd_(fwd) {
    for (const Definition &d : fwd_.defs)
      if (!d.isScatter()) definitionOf_.emplace(d.tensor, &d); // the first, as Program::definitionOf
  }

  Gradient run() {
    out_.layer = fwd_.layer;
    out_.source = fwd_.source;
    out_.sizes = fwd_.sizes;
    chooseCanonicalNames();
    for (const TensorDecl &t : fwd_.tensors)
      if (t.role == TensorRole::Output) {
        std::string seed = gradientName(t.name);
        grad_.seedOf[t.name] = seed;
        out_.tensors.push_back({seed, TensorRole::Input, t.shape, t.loc});
      }
    for (auto it = fwd_.defs.rbegin(); it != fwd_.defs.rend(); ++it) {
      if (it->isScatter()) internalError("differentiating a scatter definition of '{}'", it->tensor);
      std::string g = finalize(it->tensor);
      if (!g.empty()) backpropDefinition(*it, g);
    }
    for (const TensorDecl &t : fwd_.tensors)
      if (t.role == TensorRole::Input || t.role == TensorRole::Param) grad_.gradOf[t.name] = finalize(t.name);
    // Forward tensors read by the backward pass become its inputs.
    std::set<std::string> read = tensorsRead(out_);
    for (const TensorDecl &t : fwd_.tensors)
      if (read.count(t.name)) {
        grad_.saved.push_back(t.name);
        out_.tensors.push_back({t.name, TensorRole::Input, t.shape, t.loc});
      }
    grad_.program = std::move(out_);
    return std::move(grad_);
  }

private:
  const Program &fwd_;
  std::map<std::string, const Definition *> definitionOf_; // fwd_'s, by tensor
  Program out_;
  Gradient grad_;
  std::map<std::string, std::vector<std::string>> canon_;
  std::map<std::string, std::vector<Expr>> gathers_;
  std::map<std::string, std::vector<Scatter>> scatters_;
  int fresh_ = 0;

  // Index names of each gradient definition: the tensor's own definition's, or those of the
  // first plain read of it (so grad_X[b, d, i] reads like the forward pass), else j0, j1, ...
  void chooseCanonicalNames() {
    for (const Definition &d : fwd_.defs) {
      std::vector<std::string> names;
      for (const IndexVar &v : d.indices) names.push_back(v.name);
      canon_.emplace(d.tensor, names);
    }
    for (const Definition &d : fwd_.defs)
      visit(d.value, [&](const Expr &n) {
        if (n->kind != ExprKind::Access || canon_.count(n->name)) return true;
        std::vector<std::string> names;
        for (const Expr &a : n->args)
          if (a->kind == ExprKind::Var && a->varKind == VarKind::Index &&
              std::find(names.begin(), names.end(), a->name) == names.end())
            names.push_back(a->name);
        if (names.size() == n->args.size()) canon_[n->name] = names;
        return true;
      });
    for (const TensorDecl &t : fwd_.tensors)
      if (!canon_.count(t.name)) {
        std::vector<std::string> names;
        for (size_t i = 0; i < t.shape.size(); ++i) names.push_back(fmt::format("j{}", i));
        canon_[t.name] = names;
      }
  }

  std::string freshName(const std::string &base) { return fmt::format("{}_g{}", base, ++fresh_); }

  // Emits the gradient of `tensor` (its gathered contributions, then its scatters) and
  // returns the tensor holding it, or "" when nothing flows into a temporary.
  std::string finalize(const std::string &tensor) {
    const TensorDecl *t = fwd_.tensor(tensor);
    bool any = !gathers_[tensor].empty() || !scatters_[tensor].empty();
    std::string name = gradientName(tensor);
    Expr value;
    switch (t->role) {
    case TensorRole::Buffer:
    case TensorRole::Update: return "";
    case TensorRole::Temp:
      if (!any) return "";
      break;
    case TensorRole::Output:
      if (!any) return name;
      value = access(name, indexVars(tensor));
      name += "_total";
      break;
    default: break;
    }
    TensorRole role = t->role == TensorRole::Input || t->role == TensorRole::Param ? TensorRole::Output : TensorRole::Temp;
    out_.tensors.push_back({name, role, t->shape, t->loc});
    for (const Expr &g : gathers_[tensor]) value = value ? value + g : g;
    Definition d;
    d.tensor = name;
    d.loc = t->loc;
    if (auto fd = definitionOf_.find(tensor); fd != definitionOf_.end()) d.loc = fd->second->loc;
    for (size_t i = 0; i < t->shape.size(); ++i) d.indices.push_back({canon_[tensor][i], t->shape[i]});
    d.value = value ? value : floatImm(0);
    out_.defs.push_back(d);
    for (const Scatter &s : scatters_[tensor]) out_.defs.push_back(Definition{name, s.domain, s.value, s.loc, s.target});
    return name;
  }

  std::vector<Expr> indexVars(const std::string &tensor) {
    std::vector<Expr> out;
    for (const std::string &n : canon_[tensor]) out.push_back(indexVar(n));
    return out;
  }

  // `tensor` read at definition d's own indices.
  static Expr atOwnIndices(const std::string &tensor, const Definition &d) {
    std::vector<Expr> vars;
    for (const IndexVar &v : d.indices) vars.push_back(indexVar(v.name));
    return access(tensor, vars);
  }

  void backpropDefinition(const Definition &d, const std::string &gradTensor) {
    current_ = &d;
    backprop(d.value, atOwnIndices(gradTensor, d), d.indices);
  }

  const Definition *current_ = nullptr;

  // The stored result where e is the current definition's whole value, else e itself
  // (recomputed in the backward pass).
  Expr storedOr(const Expr &e) const { return current_->value == e ? atOwnIndices(current_->tensor, *current_) : e; }

  void backprop(const Expr &e, const Expr &adj, const std::vector<IndexVar> &domain) {
    if (e->type != Type::Float || !readsTensor(e)) return;
    const Expr &a = e->args.empty() ? e : e->args[0];
    switch (e->kind) {
    case ExprKind::Access: return contribute(e, adj, domain);
    case ExprKind::Reduce: return backpropReduce(e, adj, domain);
    case ExprKind::Unary: return backprop(a, unary(UnOp::Neg, adj), domain);
    case ExprKind::Select:
      backprop(e->args[1], select(e->args[0], adj, floatImm(0)), domain);
      backprop(e->args[2], select(e->args[0], floatImm(0), adj), domain);
      return;
    case ExprKind::Binary: return backpropBinary(e, adj, domain);
    case ExprKind::Call: return backpropCall(e, adj, domain);
    default: return; // casts from integers, constants: no gradient
    }
  }

  void backpropBinary(const Expr &e, const Expr &adj, const std::vector<IndexVar> &domain) {
    const Expr &a = e->args[0], &b = e->args[1];
    switch (e->binOp) {
    case BinOp::Add:
      if (backpropLogSumExp(e, adj, domain)) return;
      backprop(a, adj, domain);
      backprop(b, adj, domain);
      return;
    case BinOp::Sub:
      backprop(a, adj, domain);
      backprop(b, unary(UnOp::Neg, adj), domain);
      return;
    case BinOp::Mul:
      backprop(a, adj * b, domain);
      backprop(b, adj * a, domain);
      return;
    case BinOp::Div:
      if (backpropSoftmax(e, adj, domain)) return;
      backprop(a, adj / b, domain);
      backprop(b, unary(UnOp::Neg, adj) * a / (b * b), domain);
      return;
    case BinOp::Pow: {
      // d(a^b)/da = b * a^(b-1); d(a^b)/db = log(a) * a^b
      Expr bf = cast(Type::Float, b);
      bool square = (b->kind == ExprKind::IntImm && b->intValue == 2) || (b->kind == ExprKind::FloatImm && b->floatValue == 2);
      Expr da = square ? floatImm(2) * a : bf * binary(BinOp::Pow, a, bf - floatImm(1));
      backprop(a, adj * da, domain);
      backprop(b, adj * call("log", {a}) * e, domain);
      return;
    }
    case BinOp::Min:
    case BinOp::Max: {
      Expr aWins = binary(e->binOp == BinOp::Max ? BinOp::Ge : BinOp::Le, a, b);
      backprop(a, select(aWins, adj, floatImm(0)), domain);
      backprop(b, select(aWins, floatImm(0), adj), domain);
      return;
    }
    default:
      fail("cannot differentiate '{}' (operator {})", print(e), binOpSpelling(e->binOp));
    }
  }

  // Softmax's own adjoint (SoftmaxForm.h): the logits get s * (adj - sum(k': adj * s)), with s
  // the stored probabilities where the quotient is its definition's whole value; nothing flows
  // into the max and the sum the forward pass shares with it.
  bool backpropSoftmax(const Expr &e, const Expr &adj, const std::vector<IndexVar> &domain) {
    std::optional<SoftmaxForm> softmax = matchSoftmax(e, domain, fwd_);
    if (!softmax) return false;
    Expr s = storedOr(e);
    const IndexVar &k = softmax->over;
    std::string k2 = freshName(k.name);
    Expr weighted = reduce(ReduceOp::Sum, {{k2, k.extent}}, substituteIndices(adj * s, {{k.name, indexVar(k2)}}));
    backprop(softmax->logits, s * (adj - weighted), domain);
    return true;
  }

  // logsumexp's adjoint (SoftmaxForm.h): adj * exp(x - M) / S into each logit, over the
  // reduction variable added to the domain as a sum's body gets it.
  bool backpropLogSumExp(const Expr &e, const Expr &adj, const std::vector<IndexVar> &domain) {
    const std::string placeholder = "k.lse"; // no index of a tensor program has a dot in its name
    std::optional<LogSumExpForm> lse = matchLogSumExp(e, placeholder, fwd_);
    if (!lse) return false;
    std::string k = freshName("k");
    Expr x = substituteIndices(lse->logits, {{placeholder, indexVar(k)}});
    std::vector<IndexVar> inner = domain;
    inner.push_back({k, lse->extent});
    backprop(x, adj * call("exp", {x - lse->maxRead}) / lse->sumRead, inner);
    return true;
  }

  // An activation around a sum that is its definition's whole value (relu(sum(...) + b)) reads
  // the stored result for its own value and mask: recomputing them would redo the sum, per tap
  // where the adjoint flows through a convolution's window.
  void backpropCall(const Expr &e, const Expr &adj, const std::vector<IndexVar> &domain) {
    const Expr stored = storedOr(e);
    const Expr result = stored != e && containsReduce(e) ? stored : nullptr;
    for (size_t i = 0; i < e->args.size(); ++i)
      if (Expr a = intrinsicAdjoint(e, adj, i, result)) backprop(e->args[i], a, domain);
  }

  void backpropReduce(const Expr &r, const Expr &adj, const std::vector<IndexVar> &domain) {
    // The reduced value: the stored result when the definition is exactly the reduction,
    // otherwise the reduction itself (hoisted into a temporary of the backward pass).
    Expr total = storedOr(r);
    const Expr &body = r->args[0];
    Expr adjBody;
    switch (r->reduceOp) {
    case ReduceOp::Sum: adjBody = adj; break;
    case ReduceOp::Max:
    case ReduceOp::Min: adjBody = select(binary(BinOp::Eq, body, total), adj, floatImm(0)); break;
    case ReduceOp::Prod: adjBody = adj * total / body; break;
    }
    std::vector<IndexVar> inner = domain;
    for (const ReduceVar &v : r->rvars) inner.push_back({v.name, v.extent});
    backprop(body, adjBody, inner);
  }

  // A domain variable read only as v // r and v % r (r a constant: the pixel shuffle's
  // y // r and y % r) becomes two, its quotient and remainder digits (v = r * vq + vr), which
  // other indices can then solve for one by one. Returns the guard that keeps r * vq + vr
  // inside v's extent when r does not divide it.
  Expr splitDigits(std::vector<Expr> &args, Expr &adj, std::vector<IndexVar> &domain) {
    Expr guard = boolImm(true);
    for (size_t d = 0, n = domain.size(); d < n; ++d) {
      const std::string v = domain[d].name;
      auto digitOf = [&](const Expr &e, int64_t *r) {
        return e->kind == ExprKind::Binary && (e->binOp == BinOp::Div || e->binOp == BinOp::Mod) && e->type == Type::Int &&
               e->args[0]->kind == ExprKind::Var && e->args[0]->name == v && isConst(e->args[1], r) && *r > 1;
      };
      std::optional<int64_t> radix;
      bool bare = false;
      for (const Expr &a : args)
        visit(a, [&](const Expr &e) {
          int64_t r = 0;
          if (digitOf(e, &r)) {
            if (radix && *radix != r) bare = true;
            radix = r;
            return false;
          }
          if (e->kind == ExprKind::Var && e->name == v) bare = true;
          return true;
        });
      if (!radix || bare) continue;
      Expr r = intImm(*radix);
      std::string q = freshName(v), rem = freshName(v);
      for (Expr &a : args)
        a = mutate(a, [&](const Expr &e) -> Expr {
          int64_t k = 0;
          if (!digitOf(e, &k)) return nullptr;
          return e->binOp == BinOp::Div ? indexVar(q) : indexVar(rem);
        });
      adj = substituteIndices(adj, {{v, r * indexVar(q) + indexVar(rem)}});
      Expr whole = domain[d].extent;
      int64_t n0 = 0;
      if (!(isConst(whole, &n0) && n0 % *radix == 0))
        guard = binary(BinOp::And, guard, binary(BinOp::Lt, r * indexVar(q) + indexVar(rem), whole));
      // The digits take v's place, so loops over what stays unsolved keep their order.
      domain[d] = {q, (whole + r - intImm(1)) / r};
      domain.insert(domain.begin() + static_cast<long>(d) + 1, {rem, r});
      ++d;
      ++n;
    }
    return guard;
  }

  // e = j where e = sum of c_k * v_k over the open variables (each in no other index), whose
  // constant coefficients are the place values of mixed-radix digits: c_0 = 1 and
  // c_{k+1} = c_k * extent(v_k), sorted (the pixel shuffle's channel c * r^2 + yr * r + xr).
  // Then v_k = (j - rest) // c_k % extent(v_k), the last one without the modulo.
  bool solveDigits(const Expr &e, const Expr &j, const std::vector<std::string> &open, const std::vector<Expr> &args,
                   size_t p, const std::map<std::string, Expr> &extent, std::map<std::string, Expr> &solved, Expr &guard) {
    if (open.size() < 2) return false;
    std::vector<std::pair<int64_t, std::string>> digits;
    std::map<std::string, Expr> zero;
    for (const std::string &v : open) {
      for (size_t q = 0; q < args.size(); ++q)
        if (q != p && mentionsVar(args[q], v, VarKind::Index)) return false;
      auto c = linearCoefficient(e, v);
      int64_t cv = 0;
      if (!c || !isConst(*c, &cv) || cv <= 0) return false;
      digits.push_back({cv, v});
      zero[v] = intImm(0);
    }
    std::sort(digits.begin(), digits.end());
    int64_t place = 1;
    for (size_t k = 0; k < digits.size(); ++k) {
      if (digits[k].first != place) return false;
      if (k + 1 == digits.size()) break;
      int64_t n = 0;
      if (!isConst(extent.at(digits[k].second), &n) || n <= 0) return false;
      place *= n;
    }
    Expr num = j - substituteIndices(e, zero);
    for (size_t k = 0; k < digits.size(); ++k) {
      const auto &[c, v] = digits[k];
      Expr digit = num / intImm(c);
      if (k + 1 < digits.size()) {
        solved[v] = digit % extent.at(v);
      } else {
        solved[v] = digit;
        guard = binary(BinOp::And, guard,
                       binary(BinOp::And, binary(BinOp::Ge, num, intImm(0)), binary(BinOp::Lt, digit, extent.at(v))));
      }
    }
    return true;
  }

  // adjoint of one read U[args] over `domain` -> a contribution to grad_U.
  void contribute(const Expr &read, Expr adj, std::vector<IndexVar> domain) {
    const TensorDecl *u = fwd_.tensor(read->name);
    if (!u || u->role == TensorRole::Buffer) return;
    const std::vector<std::string> &canon = canon_[read->name];
    std::set<std::string> canonSet(canon.begin(), canon.end());
    // Keep the domain's names apart from the gradient's index names.
    std::map<std::string, Expr> rename;
    for (IndexVar &v : domain)
      if (canonSet.count(v.name)) {
        std::string n = freshName(v.name);
        rename[v.name] = indexVar(n);
        v.name = n;
      }
    std::vector<Expr> args;
    for (const Expr &a : read->args) args.push_back(substituteIndices(a, rename));
    adj = substituteIndices(adj, rename);
    Expr guard = splitDigits(args, adj, domain);
    std::map<std::string, Expr> extent;
    for (const IndexVar &v : domain) extent[v.name] = v.extent;

    std::map<std::string, Expr> solved; // eliminated domain variable -> its value
    bool invertible = true;
    for (size_t p = 0; p < args.size() && invertible; ++p) {
      Expr e = substituteIndices(args[p], solved);
      Expr j = indexVar(canon[p]);
      std::vector<std::string> open;
      for (const IndexVar &v : domain)
        if (!solved.count(v.name) && mentionsVar(e, v.name, VarKind::Index)) open.push_back(v.name);
      if (e->kind == ExprKind::Var && !open.empty()) {
        solved[e->name] = j;
        if (!structurallyEqual(extent[e->name], u->shape[p]))
          guard = binary(BinOp::And, guard, binary(BinOp::Lt, j, extent[e->name]));
        continue;
      }
      if (open.empty()) {
        guard = binary(BinOp::And, guard, binary(BinOp::Eq, j, e));
        continue;
      }
      if (solveDigits(e, j, open, args, p, extent, solved, guard)) continue;
      // Solve e = j for a variable that occurs linearly here and in no other index.
      bool done = false;
      for (const std::string &v : open) {
        bool elsewhere = false;
        for (size_t q = 0; q < args.size(); ++q) elsewhere |= q != p && mentionsVar(args[q], v, VarKind::Index);
        auto c = linearCoefficient(e, v);
        if (elsewhere || !c) continue;
        bool coefficientOpen = false;
        for (const IndexVar &w : domain) coefficientOpen |= mentionsVar(*c, w.name, VarKind::Index);
        int64_t cv = 0;
        if (coefficientOpen || (isConst(*c, &cv) && cv == 0)) continue;
        Expr rest = substituteIndices(e, {{v, intImm(0)}});
        Expr num = j - rest;
        Expr sol = num;
        if (isConst(*c, &cv) && cv == -1) {
          sol = unary(UnOp::Neg, num);
        } else if (!(isConst(*c, &cv) && cv == 1)) {
          sol = num / *c;
          guard = binary(BinOp::And, guard, binary(BinOp::Eq, num % *c, intImm(0)));
        }
        guard = binary(BinOp::And, guard,
                       binary(BinOp::And, binary(BinOp::Ge, sol, intImm(0)), binary(BinOp::Lt, sol, extent[v])));
        solved[v] = sol;
        done = true;
        break;
      }
      invertible = done;
    }
    if (!invertible) {
      scatters_[read->name].push_back({domain, args, adj, current_->loc});
      return;
    }
    // Later solutions may name variables solved earlier: substitute to a fixpoint.
    for (size_t round = 0; round <= solved.size(); ++round)
      for (auto &[v, s] : solved) s = substituteIndices(s, solved);
    guard = substituteIndices(guard, solved);
    Expr value = select(guard, substituteIndices(adj, solved), floatImm(0));
    std::vector<ReduceVar> remaining;
    for (const IndexVar &v : domain)
      if (!solved.count(v.name)) remaining.push_back({v.name, v.extent});
    if (!remaining.empty()) value = reduce(ReduceOp::Sum, remaining, value);
    gathers_[read->name].push_back(value);
  }
};

} // namespace

Gradient differentiate(const Program &forward) { return Differentiator(forward).run(); }

Gradient unfusedGradientOf(const LayerSymbols &layer, const Program &forward,
                           const std::map<std::string, Expr> &hyperParams) {
  if (!layer.layer->backward) return differentiate(forward);
  Gradient g;
  g.program = specialize(lowerBackwardBlock(layer), hyperParams);
  for (const TensorDecl &t : forward.tensors) {
    if (t.role == TensorRole::Output) g.seedOf[t.name] = gradientName(t.name);
    // A parameter the forward pass no longer has (bias = false) has no gradient either.
    if (t.role == TensorRole::Input || t.role == TensorRole::Param) g.gradOf[t.name] = gradientName(t.name);
  }
  g.program.tensors.eraseIf([&](const TensorDecl &t) {
    return t.role == TensorRole::Output && t.name.rfind("grad_", 0) == 0 && !g.gradOf.count(t.name.substr(5));
  });
  std::erase_if(g.program.defs, [&](const Definition &d) {
    return d.tensor.rfind("grad_", 0) == 0 && !g.program.tensor(d.tensor);
  });
  g.saved = forwardTensorsRead(g.program, forward);
  return g;
}

std::vector<std::string> forwardTensorsRead(const Program &backward, const Program &forward) {
  std::set<std::string> read = tensorsRead(backward);
  std::vector<std::string> saved;
  for (const TensorDecl &t : forward.tensors)
    if (t.role != TensorRole::Temp && t.role != TensorRole::Update && read.count(t.name)) saved.push_back(t.name);
  return saved;
}

} // namespace enc::ir
