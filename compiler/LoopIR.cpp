#include "compiler/LoopIR.h"

#include <fmt/format.h>

#include <algorithm>

namespace enc::ir {

const char *forKindName(ForKind k) {
  switch (k) {
  case ForKind::Serial: return "for";
  case ForKind::Parallel: return "parallel for";
  case ForKind::GpuThreads: return "gpu_threads for";
  case ForKind::GpuWarps: return "gpu_warps for";
  case ForKind::GpuLanes: return "gpu_lanes for";
  case ForKind::GpuTiles: return "gpu_tiles for";
  case ForKind::GpuRows: return "gpu_rows for";
  case ForKind::GpuRowThreads: return "gpu_row_threads for";
  case ForKind::GpuBlockThreads: return "gpu_block_threads for";
  case ForKind::Unrolled: return "unrolled for";
  case ForKind::Vectorized: return "vectorized for";
  }
  return "for";
}

static std::shared_ptr<StmtNode> stmt(StmtKind k) {
  auto s = std::make_shared<StmtNode>();
  s->kind = k;
  return s;
}

Stmt block(std::vector<Stmt> body) {
  auto s = stmt(StmtKind::Block);
  s->body = std::move(body);
  return s;
}

Stmt forLoop(std::string var, Expr extent, ForKind kind, std::vector<Stmt> body) {
  auto s = stmt(StmtKind::For);
  s->name = std::move(var);
  s->value = std::move(extent);
  s->forKind = kind;
  s->body = std::move(body);
  return s;
}

Stmt let(std::string name, Type type, Expr value) {
  auto s = stmt(StmtKind::Let);
  s->name = std::move(name);
  s->type = type;
  s->value = std::move(value);
  return s;
}

Stmt assign(std::string name, Expr value) {
  auto s = stmt(StmtKind::Assign);
  s->name = std::move(name);
  s->value = std::move(value);
  return s;
}

Stmt store(std::string buffer, Expr index, Expr value, SourceLoc loc, bool accumulate) {
  auto s = stmt(StmtKind::Store);
  s->accumulate = accumulate;
  s->name = std::move(buffer);
  s->index = std::move(index);
  s->value = std::move(value);
  s->loc = loc;
  return s;
}

Stmt warpReduce(std::string local, ReduceOp op) {
  auto s = stmt(StmtKind::WarpReduce);
  s->name = std::move(local);
  s->reduceOp = op;
  return s;
}

Stmt ifLaneZero(std::vector<Stmt> body) {
  auto s = stmt(StmtKind::IfLaneZero);
  s->body = std::move(body);
  return s;
}

// An array of `size` elements; the other Alloc fields stay at their defaults.
static std::shared_ptr<StmtNode> array(std::string name, int64_t size) {
  auto s = stmt(StmtKind::Alloc);
  s->name = std::move(name);
  s->value = intImm(size);
  return s;
}

Stmt alloc(std::string name, int64_t size) { return array(std::move(name), size); }

Stmt sharedAlloc(std::string name, int64_t size) {
  auto s = array(std::move(name), size);
  s->shared = true;
  return s;
}

Stmt ifThen(Expr cond, std::vector<Stmt> body) {
  auto s = stmt(StmtKind::If);
  s->value = std::move(cond);
  s->body = std::move(body);
  return s;
}

Stmt barrier() { return stmt(StmtKind::Barrier); }

Stmt warpBarrier() {
  auto s = stmt(StmtKind::Barrier);
  s->warp = true;
  return s;
}

Stmt typedAlloc(std::string name, int64_t size, ElemType elem, bool shared) {
  auto s = array(std::move(name), size);
  s->elem = elem;
  s->shared = shared;
  return s;
}

Stmt fragmentAlloc(std::string name, int64_t count, Fragment fragment, ElemType elem, int depth) {
  auto s = array(std::move(name), count);
  s->fragment = fragment;
  s->elem = elem;
  s->fragmentDepth = depth;
  return s;
}

Stmt asyncCopy(std::string shared, Expr index, Expr value, int64_t width) {
  auto s = stmt(StmtKind::AsyncCopy);
  s->name = std::move(shared);
  s->index = std::move(index);
  s->value = std::move(value);
  s->width = width;
  return s;
}
std::optional<AsyncCopySource> asyncCopySource(const Expr &value) {
  if (value->kind == ExprKind::Load) return AsyncCopySource{nullptr, value};
  if (value->kind == ExprKind::Select && value->args[1]->kind == ExprKind::Load &&
      value->args[2]->kind == ExprKind::FloatImm && value->args[2]->floatValue == 0)
    return AsyncCopySource{value->args[0], value->args[1]};
  return std::nullopt;
}
Stmt asyncCommit() { return stmt(StmtKind::AsyncCommit); }
Stmt asyncWait(int64_t inFlight) {
  auto s = stmt(StmtKind::AsyncWait);
  s->value = intImm(inFlight);
  return s;
}

static std::shared_ptr<StmtNode> matrix(MatrixOp op, std::string name, Expr index, Expr value, int64_t ld) {
  auto s = stmt(StmtKind::Matrix);
  s->matrixOp = op;
  s->name = std::move(name);
  s->index = std::move(index);
  s->value = std::move(value);
  s->ld = ld;
  return s;
}

Stmt matrixFill(std::string fragments, Expr index, Expr value) {
  return matrix(MatrixOp::Fill, std::move(fragments), std::move(index), std::move(value), 0);
}
Stmt matrixLoad(std::string fragments, Expr index, Expr sharedElement, int64_t ld) {
  return matrix(MatrixOp::Load, std::move(fragments), std::move(index), std::move(sharedElement), ld);
}
Stmt matrixMma(std::string accumulators, Expr index, Expr product) {
  return matrix(MatrixOp::Mma, std::move(accumulators), std::move(index), std::move(product), 0);
}
Stmt matrixStore(std::string shared, Expr position, Expr accumulator, int64_t ld) {
  return matrix(MatrixOp::Store, std::move(shared), std::move(position), std::move(accumulator), ld);
}

static const char *fragmentName(Fragment f) {
  switch (f) {
  case Fragment::MatrixA: return "matrix_a";
  case Fragment::MatrixB: return "matrix_b";
  case Fragment::Accumulator: return "accumulator";
  case Fragment::None: break;
  }
  return "";
}

void decodeIndices(std::vector<Stmt> &out, const std::vector<IndexVar> &vars, const Expr &flat) {
  Expr rest = flat;
  for (size_t i = vars.size(); i-- > 0;) {
    if (i == 0) {
      out.push_back(let(vars[i].name, Type::Int, rest));
    } else {
      out.push_back(let(vars[i].name, Type::Int, rest % vars[i].extent));
      rest = rest / vars[i].extent;
    }
  }
}

void visit(const Stmt &s, const std::function<bool(const Stmt &)> &fn) {
  if (!fn(s)) return;
  for (const Stmt &c : s->body) visit(c, fn);
}

bool anyStmt(const Stmt &s, const std::function<bool(const Stmt &)> &pred) {
  bool found = false;
  if (s)
    visit(s, [&](const Stmt &n) {
      found = found || pred(n);
      return !found;
    });
  return found;
}

void visitExprs(const Stmt &s, const std::function<bool(const Expr &)> &fn) {
  visit(s, [&](const Stmt &n) {
    for (const Expr *e : {&n->value, &n->index})
      if (*e) visit(*e, fn);
    return true;
  });
}

Stmt mutate(const Stmt &s, const std::function<Stmt(const Stmt &)> &fn) {
  std::vector<Stmt> body;
  bool changed = false;
  for (const Stmt &c : s->body) {
    body.push_back(mutate(c, fn));
    changed |= body.back() != c;
  }
  Stmt rebuilt = s;
  if (changed) {
    auto copy = std::make_shared<StmtNode>(*s);
    copy->body = std::move(body);
    rebuilt = copy;
  }
  Stmt replaced = fn(rebuilt);
  return replaced ? replaced : rebuilt;
}

// s with `rebuild` applied to each of its and its body's expressions as a whole.
static Stmt withEachExpr(const Stmt &s, const std::function<Expr(const Expr &)> &rebuild) {
  return mutate(s, [&](const Stmt &n) -> Stmt {
    Expr value = n->value ? rebuild(n->value) : nullptr, index = n->index ? rebuild(n->index) : nullptr;
    if (value == n->value && index == n->index) return nullptr;
    auto copy = std::make_shared<StmtNode>(*n);
    copy->value = value;
    copy->index = index;
    return copy;
  });
}

Stmt mutateExprs(const Stmt &s, const std::function<Expr(const Expr &)> &fn) {
  return withEachExpr(s, [&](const Expr &e) { return mutate(e, fn); });
}

Stmt substitute(const Stmt &s, const std::function<Expr(const std::string &name, VarKind kind)> &lookup) {
  return withEachExpr(s, [&](const Expr &e) { return substitute(e, lookup); });
}

std::vector<Stmt> withoutBlocks(const std::vector<Stmt> &body) {
  std::vector<Stmt> out;
  for (const Stmt &s : body) {
    if (s->kind != StmtKind::Block) {
      out.push_back(s);
      continue;
    }
    std::vector<Stmt> inner = withoutBlocks(s->body);
    out.insert(out.end(), inner.begin(), inner.end());
  }
  return out;
}

Stmt withName(const Stmt &s, std::string name) {
  auto copy = std::make_shared<StmtNode>(*s);
  copy->name = std::move(name);
  return copy;
}

std::string printStmt(const Stmt &s, int indent) {
  std::string pad(static_cast<size_t>(indent) * 2, ' ');
  std::string out;
  auto children = [&] {
    for (const Stmt &c : s->body) out += printStmt(c, indent + 1);
  };
  switch (s->kind) {
  case StmtKind::Block:
    for (const Stmt &c : s->body) out += printStmt(c, indent);
    break;
  case StmtKind::For:
    out += fmt::format("{}{} {} in 0..{}:\n", pad, forKindName(s->forKind), s->name, print(s->value));
    children();
    break;
  case StmtKind::Let: out += fmt::format("{}let {}: {} = {}\n", pad, s->name, typeName(s->type), print(s->value)); break;
  case StmtKind::Assign: out += fmt::format("{}{} = {}\n", pad, s->name, print(s->value)); break;
  case StmtKind::Store:
    out += fmt::format("{}{}[{}] {}= {}\n", pad, s->name, print(s->index), s->accumulate ? "+" : "", print(s->value));
    break;
  case StmtKind::WarpReduce:
    out += fmt::format("{}{} = warp_{}({})\n", pad, s->name, reduceOpName(s->reduceOp), s->name);
    break;
  case StmtKind::Alloc: {
    std::string elem = s->elem ? elemTypeName(*s->elem) : "float";
    if (s->fragment != Fragment::None)
      out += fmt::format("{}fragments {}: {} {}[{}], k {}\n", pad, s->name, fragmentName(s->fragment),
                         s->fragment != Fragment::Accumulator && elem == std::string("f32") ? "tf32" : elem,
                         print(s->value), s->fragmentDepth);
    else
      out += fmt::format("{}{} {}: {}[{}]\n", pad, s->shared ? "shared" : "alloc", s->name, elem, print(s->value));
    break;
  }
  case StmtKind::Matrix:
    switch (s->matrixOp) {
    case MatrixOp::Fill: out += fmt::format("{}matrix_fill {}[{}] = {}\n", pad, s->name, print(s->index), print(s->value)); break;
    case MatrixOp::Load:
      out += fmt::format("{}matrix_load {}[{}] = block at {}, ld {}\n", pad, s->name, print(s->index), print(s->value), s->ld);
      break;
    case MatrixOp::Mma: out += fmt::format("{}matrix_mma {}[{}] += {}\n", pad, s->name, print(s->index), print(s->value)); break;
    case MatrixOp::Store:
      out += fmt::format("{}matrix_store {}[{}..], ld {} = {}\n", pad, s->name, print(s->index), s->ld, print(s->value));
      break;
    }
    break;
  case StmtKind::If:
    out += fmt::format("{}if {}:\n", pad, print(s->value));
    children();
    break;
  case StmtKind::Barrier: out += fmt::format("{}{}\n", pad, s->warp ? "warp_barrier" : "barrier"); break;
  case StmtKind::AsyncCopy:
    if (s->width > 1)
      out += fmt::format("{}async_copy {}[{} ..+{}] = {} ..+{}\n", pad, s->name, print(s->index), s->width, print(s->value), s->width);
    else
      out += fmt::format("{}async_copy {}[{}] = {}\n", pad, s->name, print(s->index), print(s->value));
    break;
  case StmtKind::AsyncCommit: out += fmt::format("{}async_commit\n", pad); break;
  case StmtKind::AsyncWait: out += fmt::format("{}async_wait {}\n", pad, print(s->value)); break;
  case StmtKind::IfLaneZero:
    out += fmt::format("{}if lane == 0:\n", pad);
    children();
    break;
  }
  return out;
}

bool usesFragments(const Kernel &k) {
  return anyStmt(k.body, [](const Stmt &s) { return s->kind == StmtKind::Alloc && s->fragment != Fragment::None; });
}

bool usesAsyncCopies(const Kernel &k) {
  return anyStmt(k.body, [](const Stmt &s) { return s->kind == StmtKind::AsyncCopy; });
}

std::set<std::string> kernelReads(const Kernel &k) { return {k.buffers.begin() + k.outputs, k.buffers.end()}; }
std::set<std::string> kernelWrites(const Kernel &k) { return {k.buffers.begin(), k.buffers.begin() + k.outputs}; }

bool meets(const std::set<std::string> &a, const std::set<std::string> &b) {
  return std::any_of(a.begin(), a.end(), [&](const std::string &n) { return b.count(n); });
}

Kernel mergedInterface(Kernel merged, const Kernel &a, const Kernel &b) {
  MergedInterface i(a);
  i.add(b);
  i.applyTo(merged);
  return merged;
}

MergedInterface::MergedInterface(const Kernel &first)
    : outputs_(first.buffers.begin(), first.buffers.begin() + first.outputs), writes_(kernelWrites(first)),
      reads_(kernelReads(first)), params_(first.params) {
  for (const SizeParam &p : params_) paramNames_.insert(p.name);
}

void MergedInterface::add(const Kernel &b) {
  const std::set<std::string> bWrites = kernelWrites(b);
  outputs_.insert(outputs_.end(), b.buffers.begin(), b.buffers.begin() + b.outputs);
  writes_.insert(bWrites.begin(), bWrites.end());
  for (const std::string &w : bWrites) reads_.erase(w); // an output now
  lastReads_.clear();
  for (const std::string &r : kernelReads(b))
    if (!writes_.count(r) && reads_.insert(r).second) lastReads_.insert(r);
  for (const SizeParam &p : b.params)
    if (paramNames_.insert(p.name).second) params_.push_back(p);
}

void MergedInterface::applyTo(Kernel &k) const {
  k.buffers = outputs_;
  for (const std::string &r : reads_)
    if (!lastReads_.count(r)) k.buffers.push_back(r);
  k.buffers.insert(k.buffers.end(), lastReads_.begin(), lastReads_.end());
  k.outputs = static_cast<int>(outputs_.size());
  k.params = params_;
}

std::string printLoops(const LoopProgram &p) {
  std::string out;
  if (!p.types.stored.empty()) {
    std::string stored;
    for (const auto &[name, t] : p.types.stored) stored += fmt::format("{}{} {}", stored.empty() ? "" : ", ", name, elemTypeName(t));
    out += fmt::format("# computed in {}; stored narrow: {}\n", elemTypeName(p.types.compute), stored);
  }
  for (const Kernel &k : p.kernels) {
    std::string bufs, params;
    for (size_t i = 0; i < k.buffers.size(); ++i) bufs += (i ? ", " : "") + k.buffers[i];
    for (size_t i = 0; i < k.params.size(); ++i) params += (i ? ", " : "") + k.params[i].name;
    std::string writes;
    for (int i = 0; i < k.outputs; ++i) writes += (i ? ", " : "") + k.buffers[static_cast<size_t>(i)];
    if (k.bucket) {
      out += fmt::format("bucket {}: average({}) over the group  # {} elements\n", k.name, bufs, print(k.launchExtent));
      continue;
    }
    if (k.collective) {
      out += fmt::format("collective {}: {} = allreduce({})  # message {}, line {}\n", k.name, k.buffers[0], k.buffers[1],
                         k.message, k.loc.line());
      continue;
    }
    out += fmt::format("kernel {}({}{}{})  # writes {}, line {}\n", k.name, bufs, params.empty() ? "" : "; ", params,
                       writes, k.loc.line());
    out += printStmt(k.body, 1);
  }
  return out;
}

} // namespace enc::ir
