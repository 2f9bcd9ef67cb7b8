// Sema's statement-level checks (StatementChecker.h): a statement's target and index ranges,
// and the type and references of every expression.
#include "dsl/StatementChecker.h"

#include "dsl/Intrinsics.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <set>

namespace enc::sema {

namespace {

// Functions by name and argument count: the intrinsics (dsl/Intrinsics.h) and the operators
// written as calls.
const std::map<std::string, int> kFunctions = [] {
  std::map<std::string, int> f = {{"pow", 2}, {"min", 2}, {"max", 2}, {"select", 3}, {"float", 1}, {"int", 1}};
  for (const IntrinsicInfo &i : intrinsics()) f[i.name] = i.minArgs;
  return f;
}();

// "exp(x), log(x), ..." for the hint on an unknown function.
std::string functionList() {
  std::string out;
  for (const IntrinsicInfo &i : intrinsics()) out += std::string(i.signature) + ", ";
  return out + "pow(x, y), min(a, b), max(a, b), select(cond, a, b), float(n), int(x)";
}
const std::set<std::string> kReductions = {"sum", "max", "min", "mean", "prod", "softmax", "logsumexp"};

const char *typeWord(Type t) {
  switch (t) {
  case Type::Int: return "an integer";
  case Type::Float: return "a float";
  case Type::Bool: return "a bool";
  default: return "unknown";
  }
}

} // namespace

void StatementChecker::check(ast::Statement &s) {
  if (!s.moreTargets.empty()) // then checked as a definition of its first tensor, so nothing cascades
    layer_.diags.error(s.target.loc, "only a network's call of a sub-layer with several outputs defines several tensors",
                       "define one tensor per statement: Y[b, c] = ...");
  current_ = &s;
  int errorsBefore = layer_.diags.errorCount();
  const std::string &name = s.target.text;

  TensorSymbol *target = layer_.findTensor(name);
  bool isOutput = false;
  bool isUpdate = false;
  bool isRecovery = false;
  int errorsBeforeTarget = layer_.diags.errorCount();
  if (s.recover) {
    if (!target || (target->role != TensorRole::Input && !(target->role == TensorRole::Temp && target->definition)) ||
        target->inBackward) {
      layer_.diags.error(s.target.loc, fmt::format("only an input or an intermediate defined before can be recovered; '{}' is {}",
                                                   name, layer_.whatIs(name).empty() ? "not one" : layer_.whatIs(name)),
                         "recover X[b, c] = ... expresses an input X through what the forward pass keeps (its output)");
    } else {
      isRecovery = true;
    }
  } else if (s.update) {
    if (!target || target->role != TensorRole::Buffer) {
      layer_.diags.error(s.target.loc, fmt::format("only buffers are updated with '<-'; '{}' is {}", name,
                                                   layer_.whatIs(name).empty() ? "not a buffer" : layer_.whatIs(name)),
                         "define tensors with '='");
    } else if (layer_.updated.count(name)) {
      layer_.diags.error(s.target.loc, fmt::format("buffer '{}' is updated twice", name), "combine the updates in one statement");
    } else {
      isUpdate = true;
      layer_.updated.insert(name);
    }
  } else if (target) {
    if ((target->role == TensorRole::Output || target->role == TensorRole::GradOut) && !target->definition) {
      isOutput = true;
    } else if (target->definition) {
      Diagnostic &d = layer_.diags.error(s.target.loc, fmt::format("'{}' is defined twice", name),
                                         "each tensor has exactly one definition; give the new one another name");
      d.notes.push_back({target->definition->target.loc, "first definition here"});
    } else {
      layer_.diags.error(s.target.loc, fmt::format("cannot define '{}': it is {} {} of layer '{}'", name,
                                                   target->role == TensorRole::Input ? "an" : "a", roleName(target->role),
                                                   layer_.decl.name.text),
                         target->role == TensorRole::Buffer ? fmt::format("update a buffer with '<-': {}[...] <- ...", name)
                                                      : "define a new tensor with another name");
    }
  } else if (std::string what = layer_.whatIs(name); !what.empty()) {
    layer_.diags.error(s.target.loc,
                       fmt::format("cannot define '{}': it is {} of layer '{}'", name, what, layer_.decl.name.text),
                       "define a new tensor with another name");
  } else if (layer_.names.count(name)) {
    layer_.diags.error(s.target.loc, fmt::format("cannot define '{}': the name is already used in layer '{}'", name,
                                                 layer_.decl.name.text));
  }

  // Left side: distinct plain index names.
  for (size_t i = 0; i < s.indices.size(); ++i) {
    Expr &ix = *s.indices[i];
    if (ix.kind != Expr::Kind::Ident) {
      layer_.diags.error(ix.loc, fmt::format("index {} of '{}' on the left side must be a plain index name", i + 1, name),
                         "index arithmetic belongs on the right side, as in Y[h] = X[2 * h]");
      bindQuietly(ix);
      continue;
    }
    if (std::string what = layer_.whatIs(ix.name); !what.empty()) {
      layer_.diags.error(ix.loc, fmt::format("index '{}' has the name of {}", ix.name, what),
                         "index names are usually lower case: b, c, i, k");
      continue;
    }
    if (indices_.count(ix.name)) {
      layer_.diags.error(ix.loc, fmt::format("index '{}' appears twice on the left side of '{}'", ix.name, name),
                         "a diagonal is written with two indices and a guard, e.g. Y[i, j] = X[i] where i == j");
      continue;
    }
    ix.ref = Ref::IndexVar;
    ix.type = Type::Int;
    IndexInfo &info = indices_[ix.name];
    info.loc = ix.loc;
    info.free = true;
    visible_.push_back(ix.name);
  }
  // The left side's ranges: from an output's or buffer's declaration, or a declared shape.
  std::vector<const Expr *> declared;
  std::string declaredWhat =
      fmt::format("{} '{}'", isUpdate ? "buffer" : isRecovery ? "recovered tensor" : "output", name);
  if (isOutput || isUpdate || isRecovery) {
    declared = target->shape;
    if (!s.shape.empty())
      layer_.diags.error(s.shape[0]->loc, fmt::format("{} already has a shape; only intermediates declare one here",
                                                      declaredWhat));
  } else if (!s.shape.empty()) {
    declaredWhat = fmt::format("'{}'", name);
    std::string where = fmt::format("intermediate '{}'", name);
    for (ast::ExprPtr &d : s.shape) {
      if (!checkSizeExpr(*d, /*allowSizes=*/true, where.c_str())) layer_.badSizes.insert(d.get());
      declared.push_back(d.get());
    }
  }
  if ((isOutput || isUpdate || isRecovery || !s.shape.empty()) && declared.size() != s.indices.size()) {
    Diagnostic &d = layer_.diags.error(s.target.loc,
                                       fmt::format("{} is declared with {} dimension{} but defined with {} ind{}", declaredWhat,
                                                   declared.size(), declared.size() == 1 ? "" : "s",
                                                   s.indices.size(), s.indices.size() == 1 ? "ex" : "ices"));
    if (target) d.notes.push_back({target->loc, "declared here"});
  } else {
    for (size_t i = 0; i < declared.size(); ++i)
      if (s.indices[i]->ref == Ref::IndexVar)
        constrain(s.indices[i]->name, declared[i], fmt::format("dimension {} of {}", i, declaredWhat), declared[i]->loc);
  }

  Type vt = checkExpr(*s.value);
  if (vt == Type::Bool)
    layer_.diags.error(s.value->loc, fmt::format("the value of '{}' is a bool", name),
                       "tensors hold numbers; use select(condition, a, b)");
  if (s.guard) {
    Type gt = checkExpr(*s.guard);
    if (gt != Type::Bool && gt != Type::Unknown)
      layer_.diags.error(s.guard->loc, "a 'where' guard must be a condition",
                         s.recover ? "a recovery holds under a condition on hyper-parameters, as in 'where activation == "
                               "leaky_relu'"
                             : "compare indices, as in 'where h < H'");
  }
  if (isRecovery && readsTensor(*s.value, name))
    layer_.diags.error(s.value->loc, fmt::format("the recovery of '{}' reads '{}' itself", name, name),
                       "express it through tensors the forward pass keeps, such as its output");

  // Every index needs a range (not worth saying when the target itself is wrong).
  bool targetBad = layer_.diags.errorCount() > errorsBeforeTarget && !isOutput && (target || layer_.names.count(name));
  s.indexExtents.clear();
  for (auto &ix : s.indices) {
    if (ix->ref != Ref::IndexVar) {
      s.indexExtents.push_back(nullptr);
      continue;
    }
    IndexInfo &info = indices_[ix->name];
    if (!info.extent && !targetBad && !info.reported)
      layer_.diags.error(ix->loc, fmt::format("cannot infer the range of index '{}'", ix->name),
                         fmt::format("use '{}' directly as an index of a tensor with a known shape on the right side", ix->name));
    s.indexExtents.push_back(info.extent);
  }
  // softmax normalizes over a free index, whose range is known only now.
  for (Expr *r : reductions_)
    for (size_t i = 0; i < r->vars.size(); ++i)
      if (auto it = indices_.find(r->vars[i].text); it != indices_.end() && it->second.free)
        r->varExtents[i] = it->second.extent;

  bool ok = layer_.diags.errorCount() == errorsBefore;
  if (isRecovery) {
    layer_.syms.recoveries.push_back(&s);
  } else if (s.recover) {
    // Wrong, and reported: defines nothing.
  } else if (isUpdate) {
    layer_.syms.updates.push_back(&s);
  } else if (isOutput) {
    target->definition = &s;
  } else if (!target && !s.update) {
    TensorSymbol t{name, TensorRole::Temp, {}, false, s.target.loc, &s};
    for (const Expr *e : s.indexExtents) t.shape.push_back(e);
    layer_.syms.tensors.push_back(std::move(t));
  }
  // Reading a poisoned tensor leaves indices without ranges (quietly): poisoned as well.
  if (!ok || readsPoisoned_) layer_.poisoned.insert(name);
  current_ = nullptr;
}

void StatementChecker::constrain(const std::string &var, const Expr *extent, std::string from, SourceLoc loc) {
  IndexInfo &info = indices_[var];
  if (!extent || layer_.badSizes.count(extent)) {
    info.reported = true; // the dimension itself was reported; say nothing about its ranges
    return;
  }
  if (!info.extent) {
    info.extent = extent;
    info.extentFrom = std::move(from);
    info.extentLoc = loc;
    return;
  }
  if (sizeText(*info.extent) == sizeText(*extent) || info.reported) return;
  info.reported = true;
  Diagnostic &d = layer_.diags.error(loc, fmt::format("conflicting ranges for index '{}': {} is {}, but {} is {}", var, from,
                                                      sizeText(*extent), info.extentFrom, sizeText(*info.extent)),
                                     "an index must range over dimensions of the same size; use a different index name");
  d.notes.push_back({info.extentLoc, fmt::format("'{}' got its range here", var)});
}

bool StatementChecker::readsTensor(const Expr &e, const std::string &name) {
  if (e.kind == Expr::Kind::Access && e.name == name) return true;
  for (const ast::ExprPtr &a : e.args)
    if (readsTensor(*a, name)) return true;
  return false;
}

// The plain names inside a malformed left-side index, bound as indices so that their uses
// on the right side are not reported as unknown as well.
void StatementChecker::bindQuietly(const Expr &e) {
  if (e.kind == Expr::Kind::Ident && !inScope(e.name) && layer_.whatIs(e.name).empty()) {
    IndexInfo &info = indices_[e.name];
    info.loc = e.loc;
    info.free = true;
    info.reported = true;
    visible_.push_back(e.name);
  }
  for (const ast::ExprPtr &a : e.args) bindQuietly(*a);
}

bool StatementChecker::inScope(const std::string &n) const {
  for (const std::string &s : visible_)
    if (s == n) return true;
  return false;
}

bool StatementChecker::checkSizeExpr(Expr &e, bool allowSizes, const char *where) {
  switch (e.kind) {
  case Expr::Kind::IntLit:
    e.type = Type::Int;
    if (e.intValue < 0) {
      layer_.diags.error(e.loc, fmt::format("a dimension of {} is negative", where));
      return false;
    }
    return true;
  case Expr::Kind::Ident: {
    if (const ast::HyperParam *hp = layer_.syms.hyperParam(e.name)) {
      e.ref = Ref::HyperParam;
      e.type = Type::Int;
      if (hp->type.kind == ast::HyperParamType::Kind::Int2) return layer_.pairWithoutComponent(e);
      if (hp->type.kind != ast::HyperParamType::Kind::Int) {
        layer_.diags.error(e.loc, fmt::format("dimension '{}' of {} is a {} hyper-parameter; dimensions must be integers", e.name,
                                              where, layer_.hyperParamType(*hp) == Type::Float ? "float" : "non-integer"));
        return false;
      }
      return true;
    }
    for (const SizeSymbol &s : layer_.syms.sizes)
      if (s.name == e.name && allowSizes) {
        e.ref = Ref::SizeSymbol;
        e.type = Type::Int;
        return true;
      }
    layer_.diags.error(e.loc,
                       fmt::format("'{}' in the shape of {} is not {}", e.name, where,
                                   allowSizes ? "a hyper-parameter or a size of an input" : "an integer hyper-parameter"),
                       allowSizes ? fmt::format("name it in an input's shape or add '{}: int' to the layer's hyper-parameters", e.name)
                            : fmt::format("parameter shapes are fixed when the layer is created; add '{}: int' to the "
                                          "layer's hyper-parameters",
                                          e.name));
    return false;
  }
  case Expr::Kind::Binary:
    if (e.op == "+" || e.op == "-" || e.op == "*" || e.op == "//" || e.op == "%") {
      bool ok = checkSizeExpr(*e.args[0], allowSizes, where);
      ok = checkSizeExpr(*e.args[1], allowSizes, where) && ok;
      e.type = Type::Int;
      return ok;
    }
    break;
  case Expr::Kind::Access:
    if (layer_.isPair(e.name)) return layer_.pairComponent(e) != Type::Unknown;
    break;
  case Expr::Kind::Call:
    // select(cond, a, b), min(a, b), max(a, b) of sizes: e.g. a stride that defaults to the kernel.
    if ((e.name == "select" && e.args.size() == 3) || ((e.name == "min" || e.name == "max") && e.args.size() == 2)) {
      bool ok = true;
      size_t first = 0;
      if (e.name == "select") {
        Type c = checkExpr(*e.args[0]);
        if (c != Type::Bool && c != Type::Unknown) {
          layer_.diags.error(e.args[0]->loc, "the first argument of select must be a condition");
          ok = false;
        }
        first = 1;
      }
      for (size_t i = first; i < e.args.size(); ++i) ok = checkSizeExpr(*e.args[i], allowSizes, where) && ok;
      e.type = Type::Int;
      return ok;
    }
    break;
  case Expr::Kind::Unary:
    // Literals are never negative: '-2' is a negation.
    if (e.op == "-" && e.args[0]->kind == Expr::Kind::IntLit) {
      layer_.diags.error(e.loc, fmt::format("a dimension of {} is negative", where));
      return false;
    }
    break;
  default: break;
  }
  layer_.diags.error(e.loc, fmt::format("a dimension of {} must be integer arithmetic (+ - * // %) on sizes and constants", where),
                     e.kind == Expr::Kind::Binary && e.op == "/" ? "use '//' for integer division" : "");
  return false;
}

Type StatementChecker::checkExpr(Expr &e) {
  e.type = checkExprImpl(e);
  return e.type;
}

Type StatementChecker::checkExprImpl(Expr &e) {
  switch (e.kind) {
  case Expr::Kind::IntLit: return Type::Int;
  case Expr::Kind::FloatLit: return Type::Float;
  case Expr::Kind::BoolLit: return Type::Bool;
  case Expr::Kind::Ident: return checkIdent(e);
  case Expr::Kind::Access: return checkAccess(e);
  case Expr::Kind::Call: return checkCall(e);
  case Expr::Kind::Reduce: return checkReduce(e);
  case Expr::Kind::Unary: {
    Type t = checkExpr(*e.args[0]);
    if (e.op == "!") {
      if (t != Type::Bool && t != Type::Unknown) {
        layer_.diags.error(e.loc, "'!' needs a condition");
        return Type::Unknown;
      }
      return Type::Bool;
    }
    if (t == Type::Bool) {
      layer_.diags.error(e.loc, "cannot negate a bool", "use '!' for logical not");
      return Type::Unknown;
    }
    return t;
  }
  case Expr::Kind::Binary: return checkBinary(e);
  }
  return Type::Unknown;
}

Type StatementChecker::checkIdent(Expr &e) {
  if (current_ && inScope(e.name)) {
    e.ref = Ref::IndexVar;
    return Type::Int;
  }
  if (const ast::HyperParam *hp = layer_.syms.hyperParam(e.name)) {
    if (hp->type.kind == ast::HyperParamType::Kind::Int2) {
      layer_.pairWithoutComponent(e);
      return Type::Unknown;
    }
    e.ref = Ref::HyperParam;
    return layer_.hyperParamType(*hp);
  }
  // training: true in a training pass, false in evaluation. distributed: the layer runs in
  // a process group of more than one process (its allreduces sum over processes).
  if (e.name == "training" || e.name == "distributed") {
    e.ref = Ref::Implicit;
    return Type::Bool;
  }
  if (e.name == "inf") {
    e.ref = Ref::Constant;
    e.floatValue = std::numeric_limits<double>::infinity();
    return Type::Float;
  }
  if (auto it = layer_.enumerators.find(e.name); it != layer_.enumerators.end()) {
    e.ref = Ref::EnumValue;
    e.enumValue = it->second;
    return Type::Int;
  }
  for (const SizeSymbol &s : layer_.syms.sizes)
    if (s.name == e.name) {
      e.ref = Ref::SizeSymbol;
      return Type::Int;
    }
  if (TensorSymbol *t = layer_.findTensor(e.name)) {
    if (t->shape.empty() && current_) {
      e.ref = Ref::Tensor;
      return Type::Float;
    }
    layer_.diags.error(e.loc, fmt::format("{} '{}' is used without indices", roleName(t->role), e.name),
                       fmt::format("write {}[...] with {} ind{}", e.name, t->shape.size(), t->shape.size() == 1 ? "ex" : "ices"));
    return Type::Unknown;
  }
  if (!current_) {
    layer_.diags.error(e.loc, fmt::format("unknown name '{}'", e.name), "only hyper-parameters can be used here");
    return Type::Unknown;
  }
  layer_.diags.error(e.loc, fmt::format("unknown name '{}'", e.name),
                     fmt::format("an index must appear on the left side of '{}' or be reduced over, as in sum({}: ...)",
                                 current_->target.text, e.name));
  indices_[e.name].reported = true;
  return Type::Unknown;
}

Type StatementChecker::checkAccess(Expr &e) {
  if (layer_.isPair(e.name) && !layer_.findTensor(e.name)) return layer_.pairComponent(e);
  for (ast::ExprPtr &a : e.args) checkExpr(*a);
  if (!current_) {
    layer_.diags.error(e.loc, fmt::format("tensor access '{}' is not allowed here", e.name),
                       "initializers and shapes may only use hyper-parameters");
    return Type::Unknown;
  }
  TensorSymbol *t = layer_.findTensor(e.name);
  if (!t && e.name == current_->target.text) {
    layer_.diags.error(e.nameLoc, fmt::format("'{}' is used in its own definition", e.name),
                       "a tensor cannot depend on itself; define a new tensor");
    return Type::Unknown;
  }
  if (!t) {
    for (const ast::Statement &later : layer_.decl.forward->statements)
      if (later.target.text == e.name) {
        Diagnostic &d = layer_.diags.error(e.nameLoc, fmt::format("'{}' is used before it is defined", e.name),
                                           "move its definition above this line");
        d.notes.push_back({later.target.loc, fmt::format("'{}' is defined here", e.name)});
        return Type::Unknown;
      }
    if (layer_.definedByDroppedStatement(e.name)) return Type::Unknown;
    std::string hint;
    if (inScope(e.name)) hint = fmt::format("'{}' is an index, not a tensor", e.name);
    else if (layer_.syms.hyperParam(e.name)) hint = fmt::format("'{}' is a hyper-parameter, not a tensor", e.name);
    else if (const TensorSymbol *near = layer_.closestTensor(e.name))
      hint = fmt::format("did you mean '{}'?", near->name);
    layer_.diags.error(e.nameLoc, fmt::format("unknown tensor '{}'", e.name), hint);
    return Type::Unknown;
  }
  e.ref = Ref::Tensor;
  // An update reads the buffer's old value; anything else reading its own target is a cycle.
  if (t->definition == current_ || (t->name == current_->target.text && !t->definition && !current_->update)) {
    layer_.diags.error(e.nameLoc, fmt::format("'{}' is used in its own definition", e.name),
                       "a tensor cannot depend on itself; define a new tensor");
    return Type::Unknown;
  }
  if ((t->role == TensorRole::Output || t->role == TensorRole::Temp) && !t->definition) {
    Diagnostic &d = layer_.diags.error(e.nameLoc, fmt::format("'{}' is used before it is defined", e.name),
                                       "move its definition above this line");
    for (const ast::Statement &later : layer_.decl.forward->statements)
      if (later.target.text == e.name) {
        d.notes.push_back({later.target.loc, fmt::format("'{}' is defined here", e.name)});
        break;
      }
    return Type::Unknown;
  }
  if (layer_.poisoned.count(t->name)) {
    markReported(e);
    readsPoisoned_ = true;
    return Type::Float;
  }
  if (t->shape.size() != e.args.size()) {
    Diagnostic &d = layer_.diags.error(e.loc, fmt::format("'{}' has {} dimension{} but is indexed with {}", e.name,
                                                          t->shape.size(), t->shape.size() == 1 ? "" : "s", e.args.size()));
    d.notes.push_back({t->loc, fmt::format("'{}' declared here", e.name)});
    markReported(e);
    return Type::Float;
  }
  for (size_t i = 0; i < e.args.size(); ++i) {
    Expr &a = *e.args[i];
    if (a.type == Type::Float || a.type == Type::Bool) {
      layer_.diags.error(a.loc, fmt::format("index {} of '{}' is {}, not an integer", i + 1, e.name, typeWord(a.type)),
                         a.type == Type::Float ? "'/' divides exactly; use '//' for integer division" : "");
      continue;
    }
    if (a.kind == Expr::Kind::Ident && a.ref == Ref::IndexVar)
      constrain(a.name, t->shape[i], fmt::format("dimension {} of '{}'", i, e.name), a.loc);
  }
  return Type::Float;
}

// An access that was reported (or reads a tensor whose definition was) gives its indices no
// range; don't report them again as having none.
void StatementChecker::markReported(const Expr &access) {
  for (const ast::ExprPtr &a : access.args)
    if (a->kind == Expr::Kind::Ident && a->ref == Ref::IndexVar) indices_[a->name].reported = true;
}

Type StatementChecker::checkCall(Expr &e) {
  auto it = kFunctions.find(e.name);
  // min and max are also functions of two arguments. The arguments are not checked: the index
  // the reduction was meant to bind would only show up as unknown there.
  bool asFunction = it != kFunctions.end() && e.args.size() == static_cast<size_t>(it->second);
  if (kReductions.count(e.name) && !asFunction) {
    layer_.diags.error(e.loc, fmt::format("'{}' needs the index it reduces over", e.name),
                       fmt::format("write {}(i: expression)", e.name));
    return Type::Unknown;
  }
  std::vector<Type> types;
  for (ast::ExprPtr &a : e.args) types.push_back(checkExpr(*a));
  for (const ast::Name &n : e.argNames)
    if (!n.text.empty()) {
      layer_.diags.error(n.loc, fmt::format("'{}' takes no named arguments", e.name),
                         "named arguments (name=value) are for sub-layers, declared in a network as conv1 = Conv2d(...)");
      return Type::Unknown;
    }
  if (it == kFunctions.end()) {
    std::string hint = "functions are " + functionList();
    if (TensorSymbol *t = layer_.findTensor(e.name)) hint = fmt::format("'{}' is a tensor: index it with [...]", t->name);
    layer_.diags.error(e.nameLoc, fmt::format("unknown function '{}'", e.name), hint);
    return Type::Unknown;
  }
  if (e.name == "rand") {
    // rand(i, j, ...): a uniform number in [0, 1) fixed by the indices, the seed and the pass.
    if (e.args.empty() || e.args.size() > 4) {
      layer_.diags.error(e.loc, fmt::format("'rand' takes 1 to 4 integer arguments, given {}", e.args.size()));
      return Type::Unknown;
    }
    for (size_t i = 0; i < types.size(); ++i)
      if (types[i] != Type::Int && types[i] != Type::Unknown)
        layer_.diags.error(e.args[i]->loc, fmt::format("argument {} of 'rand' is {}, not an integer", i + 1, typeWord(types[i])),
                           "rand takes indices, as in rand(b, c, i)");
    return Type::Float;
  }
  if (e.name == "allreduce") {
    // allreduce(x): x summed over every process of the group, element by element. Each
    // process must compute the same elements, so it may not sit inside a reduction (whose
    // index could range over a per-process size such as the batch).
    if (!current_) {
      layer_.diags.error(e.loc, "allreduce is only allowed in a statement of a layer");
      return Type::Unknown;
    }
    if (reductionDepth_ > 0)
      layer_.diags.error(e.loc, "allreduce may not appear inside a reduction",
                         "reduce first, then sum over processes: allreduce(sum(i: ...))");
  }
  if (e.args.size() != static_cast<size_t>(it->second)) {
    layer_.diags.error(e.loc, fmt::format("'{}' takes {} argument{}, given {}", e.name, it->second, it->second == 1 ? "" : "s",
                                          e.args.size()));
    return Type::Unknown;
  }
  if (e.name == "select") {
    if (types[0] != Type::Bool && types[0] != Type::Unknown)
      layer_.diags.error(e.args[0]->loc, "the first argument of select must be a condition", "e.g. select(x > 0, x, 0)");
    for (int i = 1; i < 3; ++i)
      if (types[i] == Type::Bool) layer_.diags.error(e.args[i]->loc, "select chooses between numbers, not bools");
    if (types[1] == Type::Float || types[2] == Type::Float) return Type::Float;
    return types[1] == Type::Int && types[2] == Type::Int ? Type::Int : Type::Unknown;
  }
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] == Type::Bool)
      layer_.diags.error(e.args[i]->loc, fmt::format("argument {} of '{}' is a bool, not a number", i + 1, e.name),
                         "use select(condition, a, b) to turn a condition into a number");
  if (e.name == "min" || e.name == "max")
    return types[0] == Type::Int && types[1] == Type::Int ? Type::Int : Type::Float;
  if (e.name == "int") return Type::Int;
  return Type::Float;
}

Type StatementChecker::checkReduce(Expr &e) {
  if (!kReductions.count(e.name)) {
    layer_.diags.error(e.nameLoc, fmt::format("unknown reduction '{}'", e.name),
                       kFunctions.count(e.name) ? fmt::format("'{}' is a function; call it as {}(x)", e.name, e.name)
                                          : "reductions are sum, max, min, mean, prod, softmax and logsumexp");
    return Type::Unknown;
  }
  if (!current_) {
    layer_.diags.error(e.loc, "a reduction is not allowed here");
    return Type::Unknown;
  }
  bool softmax = e.name == "softmax";
  if (softmax && e.vars.size() != 1) layer_.diags.error(e.loc, "softmax normalizes over exactly one index");
  // Each reduction binds fresh indices: a sibling reduction reusing the name has its own range.
  std::vector<std::pair<std::string, std::optional<IndexInfo>>> added; // with what they shadow
  for (const ast::Name &v : e.vars) {
    auto it = indices_.find(v.text);
    bool bound = it != indices_.end() && inScope(v.text);
    bool mine = std::any_of(added.begin(), added.end(), [&](const auto &a) { return a.first == v.text; });
    if (softmax) {
      if (bound && it->second.free) continue;
      layer_.diags.error(v.loc, fmt::format("softmax({}: ...) normalizes over a free index, but '{}' is not on the left side of '{}'",
                                            v.text, v.text, current_->target.text),
                         fmt::format("add '{}' to the left side, or use logsumexp({}: ...) to reduce over it", v.text, v.text));
      // Bound below like a reduction index, so its uses in the body do not cascade.
    } else if (mine) {
      layer_.diags.error(v.loc, fmt::format("index '{}' appears twice in {}(...)", v.text, e.name));
      continue;
    } else if (bound && it->second.free) {
      layer_.diags.error(v.loc, fmt::format("index '{}' of {}({}: ...) is also a free index of '{}'", v.text, e.name, v.text,
                                            current_->target.text),
                         fmt::format("a reduction index must not appear on the left side; drop it from {}[...] or rename it",
                                     current_->target.text));
      continue;
    } else if (bound) {
      layer_.diags.error(v.loc, fmt::format("index '{}' is already bound by an enclosing reduction", v.text),
                         "give the inner reduction's index another name");
      continue;
    } else if (std::string what = layer_.whatIs(v.text); !what.empty()) {
      layer_.diags.error(v.loc, fmt::format("reduction index '{}' has the name of {}", v.text, what),
                         "index names are usually lower case: b, c, i, k");
      continue;
    }
    if (bound || mine) continue;
    std::optional<IndexInfo> shadowed;
    if (it != indices_.end()) shadowed = it->second;
    added.emplace_back(v.text, std::move(shadowed));
    IndexInfo &info = indices_[v.text];
    info = IndexInfo{};
    info.loc = v.loc;
    visible_.push_back(v.text);
  }
  // Explicit bounds (kh < K) come first: they are the range, and uses must agree.
  for (size_t i = 0; i < e.varBounds.size(); ++i) {
    if (!e.varBounds[i]) continue;
    std::string where = fmt::format("the bound of '{}'", e.vars[i].text);
    if (!checkSizeExpr(*e.varBounds[i], /*allowSizes=*/true, where.c_str())) {
      layer_.badSizes.insert(e.varBounds[i].get());
      continue;
    }
    if (std::any_of(added.begin(), added.end(), [&](const auto &a) { return a.first == e.vars[i].text; }))
      constrain(e.vars[i].text, e.varBounds[i].get(), where, e.varBounds[i]->loc);
  }
  ++reductionDepth_;
  Type body = checkExpr(*e.args[0]);
  --reductionDepth_;
  if (body == Type::Bool)
    layer_.diags.error(e.args[0]->loc, fmt::format("the body of {} is a bool, not a number", e.name),
                       "use select(condition, 1, 0) to count");
  // Ranges of this reduction's own indices come from its body alone: settle them now.
  e.varExtents.assign(e.vars.size(), nullptr);
  for (auto &[name, shadowed] : added) {
    IndexInfo &info = indices_[name];
    if (!info.extent && !info.reported)
      layer_.diags.error(info.loc, fmt::format("cannot infer the range of reduction index '{}'", name),
                         fmt::format("use '{}' directly as an index of a tensor inside the {}", name, e.name));
    for (size_t i = 0; i < e.vars.size(); ++i)
      if (e.vars[i].text == name) e.varExtents[i] = info.extent;
    visible_.erase(std::find(visible_.begin(), visible_.end(), name));
    if (shadowed) info = *shadowed;
    else indices_.erase(name);
  }
  reductions_.push_back(&e);
  return Type::Float;
}

Type StatementChecker::checkBinary(Expr &e) {
  Type l = checkExpr(*e.args[0]);
  Type r = checkExpr(*e.args[1]);
  const std::string &op = e.op;
  if (op == "&&" || op == "||") {
    if ((l != Type::Bool && l != Type::Unknown) || (r != Type::Bool && r != Type::Unknown))
      layer_.diags.error(e.loc, fmt::format("'{}' needs conditions on both sides", op));
    return Type::Bool;
  }
  if (l == Type::Bool || r == Type::Bool) {
    layer_.diags.error(e.loc, fmt::format("a condition (bool) cannot be used with '{}'", op),
                       "use select(condition, a, b) to turn a condition into a number");
    return Type::Unknown;
  }
  if (op == "<" || op == "<=" || op == ">" || op == ">=" || op == "==" || op == "!=") return Type::Bool;
  if (op == "//" || op == "%") {
    if (l == Type::Float || r == Type::Float) {
      layer_.diags.error(e.loc, fmt::format("'{}' needs integer operands", op),
                         op == "//" ? "use '/' to divide numbers"
                              : "'%' is the remainder of index arithmetic, as in h % 2");
      return Type::Unknown;
    }
    return l == Type::Unknown || r == Type::Unknown ? Type::Unknown : Type::Int;
  }
  if (op == "/" || op == "^") return Type::Float;
  if (l == Type::Unknown || r == Type::Unknown) return Type::Unknown;
  return l == Type::Float || r == Type::Float ? Type::Float : Type::Int;
}

} // namespace enc::sema
