#include "compiler/Verifier.h"

#include "compiler/Passes.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "support/InternalError.h"

#include <fmt/format.h>

#include <set>

namespace enc::ir {

namespace {

class ProgramVerifier {
public:
  ProgramVerifier(const Program &p, const VerifyState &state) : p_(p), state_(state) {}

  void run() {
    std::set<std::string> names;
    for (const TensorDecl &t : p_.tensors)
      ENC_INTERNAL_ASSERT(names.insert(t.name).second, "tensor '{}' is declared twice", t.name);
    for (const SizeParam &s : p_.sizes) sizes_.insert(s.name);
    std::set<std::string> defined;
    for (const Definition &d : p_.defs) {
      const TensorDecl *t = p_.tensor(d.tensor);
      ENC_INTERNAL_ASSERT(t, "a definition of undeclared tensor '{}'", d.tensor);
      ENC_INTERNAL_ASSERT(d.isScatter() || defined.insert(d.tensor).second, "tensor '{}' is defined twice", d.tensor);
      where_ = d.tensor;
      const size_t rank = d.isScatter() ? d.scatter.size() : d.indices.size();
      ENC_INTERNAL_ASSERT(rank == t->shape.size(), "{} is defined with {} indices but has {} dimensions", d.tensor, rank,
                          t->shape.size());
      std::set<std::string> bound;
      for (size_t i = 0; i < d.indices.size(); ++i) {
        const IndexVar &v = d.indices[i];
        ENC_INTERNAL_ASSERT(bound.insert(v.name).second, "{} binds index {} twice", d.tensor, v.name);
        expr(v.extent, {});
        int64_t extent = 0, dim = 0;
        if (!d.isScatter() && isConst(v.extent, &extent) && isConst(t->shape[i], &dim))
          ENC_INTERNAL_ASSERT(extent == dim, "{}'s index {} runs to {} but dimension {} has {}", d.tensor, v.name, extent,
                              i, dim);
      }
      for (const Expr &s : d.scatter) expr(s, bound);
      expr(d.value, bound);
      if (state_.oneReductionPerDefinition) {
        int reductions = 0;
        visit(d.value, [&](const Expr &n) {
          reductions += n->kind == ExprKind::Reduce;
          return true;
        });
        ENC_INTERNAL_ASSERT(reductions <= 1, "{} holds {} reductions after hoisting: {}", d.tensor, reductions,
                            print(d.value));
      }
      if (state_.allreducesIsolated && containsAllreduce(d.value))
        ENC_INTERNAL_ASSERT(isCollective(d), "{} reads an allreduce that is not a collective definition: {}", d.tensor,
                            print(d.value));
    }
  }

private:
  const Program &p_;
  const VerifyState &state_;
  std::set<std::string> sizes_;
  std::string where_;

  void expr(const Expr &e, const std::set<std::string> &bound) {
    ENC_INTERNAL_ASSERT(e, "{} has a missing expression", where_);
    switch (e->kind) {
    case ExprKind::Var:
      if (e->varKind == VarKind::Index)
        ENC_INTERNAL_ASSERT(bound.count(e->name), "{} reads unbound index {}", where_, e->name);
      else if (e->varKind == VarKind::Size || e->varKind == VarKind::Param)
        ENC_INTERNAL_ASSERT(sizes_.count(e->name), "{} reads '{}', which is no size or hyper-parameter of the layer",
                            where_, e->name);
      else
        internalError("{} reads the loop-level local {} in the tensor IR", where_, e->name);
      return;
    case ExprKind::Load: internalError("{} has a loop-level load of {} in the tensor IR", where_, e->name);
    case ExprKind::Access: {
      const TensorDecl *t = p_.tensor(e->name);
      ENC_INTERNAL_ASSERT(t, "{} reads undeclared tensor '{}'", where_, e->name);
      ENC_INTERNAL_ASSERT(e->args.size() == t->shape.size(), "{} reads {} with {} indices but it has {} dimensions",
                          where_, e->name, e->args.size(), t->shape.size());
      break;
    }
    case ExprKind::Reduce: {
      std::set<std::string> inner = bound;
      for (const ReduceVar &v : e->rvars) {
        expr(v.extent, inner);
        inner.insert(v.name);
      }
      for (const Expr &a : e->args) expr(a, inner);
      return;
    }
    default: break;
    }
    for (const Expr &a : e->args) expr(a, bound);
  }
};

bool allowedOn(Target target, ForKind k) {
  switch (k) {
  case ForKind::Serial:
  case ForKind::Unrolled: return true;
  case ForKind::Parallel:
  case ForKind::Vectorized: return target == Target::CPU;
  case ForKind::GpuThreads:
  case ForKind::GpuWarps:
  case ForKind::GpuLanes:
  case ForKind::GpuTiles:
  case ForKind::GpuRows:
  case ForKind::GpuRowThreads:
  case ForKind::GpuBlockThreads: return target == Target::GPU;
  }
  return false;
}

class KernelVerifier {
public:
  KernelVerifier(const LoopProgram &p, const Kernel &k) : p_(p), k_(k) {}

  void run() {
    ENC_INTERNAL_ASSERT(!k_.buffers.empty() && k_.outputs >= 1 && static_cast<size_t>(k_.outputs) <= k_.buffers.size(),
                        "kernel {} has {} outputs among {} buffers", k_.name, k_.outputs, k_.buffers.size());
    for (const std::string &b : k_.buffers)
      ENC_INTERNAL_ASSERT(p_.tensors.tensor(b), "kernel {} uses undeclared buffer '{}'", k_.name, b);
    outputs_ = kernelWrites(k_);
    buffers_.insert(k_.buffers.begin(), k_.buffers.end());
    for (const SizeParam &s : k_.params) params_.insert(s.name);
    if (k_.bucket) {
      ENC_INTERNAL_ASSERT(k_.collective && static_cast<size_t>(k_.outputs) == k_.buffers.size(),
                          "bucket kernel {} reads what it does not write", k_.name);
      return;
    }
    if (k_.collective) {
      ENC_INTERNAL_ASSERT(k_.buffers.size() == 2, "collective kernel {} has {} buffers", k_.name, k_.buffers.size());
      return;
    }
    stmt(k_.body);
  }

private:
  const LoopProgram &p_;
  const Kernel &k_;
  std::set<std::string> outputs_, buffers_, params_, arrays_, sharedArrays_, fragments_;
  // The names bound where the statement being checked stands, and those each scope around it
  // bound (innermost last), unbound when it ends: a kernel that merged a thousand others binds
  // thousands of names, and copying them into each scope cost as much.
  std::set<std::string> bound_;
  std::vector<std::string> boundInScopes_;
  // Whether every thread of the block reaches the statement being checked the same number of
  // times: inside a gpu_block_threads loop, outside any condition or thread-strided loop.
  bool blockUniform_ = false;

  void bind(const std::string &name) {
    if (bound_.insert(name).second) boundInScopes_.push_back(name);
  }
  size_t scope() const { return boundInScopes_.size(); }
  void endScope(size_t scope) {
    for (; boundInScopes_.size() > scope; boundInScopes_.pop_back()) bound_.erase(boundInScopes_.back());
  }

  // A body is a scope: what its statements bind is unbound after it.
  void body(const Stmt &s, bool uniform) {
    const size_t outerScope = scope();
    bool outer = blockUniform_;
    blockUniform_ = uniform;
    for (const Stmt &c : s->body) stmt(c);
    blockUniform_ = outer;
    endScope(outerScope);
  }

  // Statements of one body see what earlier statements of that body bound.
  void stmt(const Stmt &s) {
    ENC_INTERNAL_ASSERT(s, "kernel {} has a missing statement", k_.name);
    switch (s->kind) {
    case StmtKind::Block: body(s, blockUniform_); return;
    case StmtKind::IfLaneZero: body(s, false); return;
    case StmtKind::If:
      ENC_INTERNAL_ASSERT(p_.target == Target::GPU, "kernel {}: a condition statement in a CPU program", k_.name);
      ENC_INTERNAL_ASSERT(s->value && s->value->type == Type::Bool, "kernel {} has a condition that is no bool", k_.name);
      expr(s->value);
      body(s, false);
      return;
    case StmtKind::Barrier:
      ENC_INTERNAL_ASSERT(p_.target == Target::GPU && blockUniform_,
                          "kernel {} has a barrier that not every thread of its block reaches alike", k_.name);
      return;
    case StmtKind::Matrix:
      ENC_INTERNAL_ASSERT(p_.target == Target::GPU && blockUniform_,
                          "kernel {} has a matrix operation on {} that not every lane of its warp reaches alike",
                          k_.name, s->name);
      ENC_INTERNAL_ASSERT(s->matrixOp == MatrixOp::Store ? sharedArrays_.count(s->name) > 0 : fragments_.count(s->name) > 0,
                          "kernel {}: a matrix operation on {}, which is no {}", k_.name, s->name,
                          s->matrixOp == MatrixOp::Store ? "shared array" : "fragment array");
      expr(s->index);
      expr(s->value);
      return;
    case StmtKind::AsyncCopy: {
      ENC_INTERNAL_ASSERT(p_.target == Target::GPU && sharedArrays_.count(s->name),
                          "kernel {}: an asynchronous copy into {}, which is no shared array", k_.name, s->name);
      std::optional<AsyncCopySource> source = asyncCopySource(s->value);
      ENC_INTERNAL_ASSERT(source && !arrays_.count(source->load->name),
                          "kernel {}: an asynchronous copy into {} of {}, which is no read of a buffer", k_.name,
                          s->name, print(s->value));
      ENC_INTERNAL_ASSERT(s->width == 1 || s->width == 2 || s->width == 4 || s->width == 8,
                          "kernel {}: an asynchronous copy of {} elements into {} (1, 2, 4 or 8)", k_.name, s->width,
                          s->name);
      expr(s->index);
      expr(s->value);
      return;
    }
    case StmtKind::AsyncCommit:
    case StmtKind::AsyncWait: {
      int64_t n = 0;
      ENC_INTERNAL_ASSERT(p_.target == Target::GPU && (s->kind == StmtKind::AsyncCommit || (isConst(s->value, &n) && n >= 0)),
                          "kernel {}: a misplaced or malformed asynchronous-copy {}", k_.name,
                          s->kind == StmtKind::AsyncCommit ? "commit" : "wait");
      return;
    }
    case StmtKind::For: {
      ENC_INTERNAL_ASSERT(allowedOn(p_.target, s->forKind), "kernel {}: a {} loop in a {} program", k_.name,
                          forKindName(s->forKind), p_.target == Target::CPU ? "CPU" : "GPU");
      expr(s->value);
      int64_t extent = 0;
      if (s->forKind == ForKind::GpuBlockThreads)
        ENC_INTERNAL_ASSERT(isConst(s->value, &extent) && extent == codegen::kCudaBlockSize,
                            "kernel {}: a gpu_block_threads loop of {} iterations (the block has {} threads)", k_.name,
                            print(s->value), codegen::kCudaBlockSize);
      const size_t outerScope = scope();
      bind(s->name);
      bool uniform = s->forKind == ForKind::GpuBlockThreads ||
                     (blockUniform_ && (s->forKind == ForKind::Serial || s->forKind == ForKind::Unrolled));
      body(s, uniform);
      endScope(outerScope);
      return;
    }
    case StmtKind::Let:
      expr(s->value);
      bind(s->name);
      return;
    case StmtKind::Assign:
      ENC_INTERNAL_ASSERT(bound_.count(s->name), "kernel {} assigns undeclared local {}", k_.name, s->name);
      expr(s->value);
      return;
    case StmtKind::Alloc:
      ENC_INTERNAL_ASSERT(!s->shared || p_.target == Target::GPU, "kernel {}: a shared array in a CPU program", k_.name);
      ENC_INTERNAL_ASSERT(s->fragment == Fragment::None || p_.target == Target::GPU,
                          "kernel {}: tensor-core fragments in a CPU program", k_.name);
      if (s->shared) sharedArrays_.insert(s->name);
      if (s->fragment != Fragment::None) fragments_.insert(s->name);
      bind(s->name);
      arrays_.insert(s->name);
      return;
    case StmtKind::Store:
      ENC_INTERNAL_ASSERT(outputs_.count(s->name) || arrays_.count(s->name), "kernel {} stores into {}, not one of its outputs",
                          k_.name, s->name);
      expr(s->index);
      expr(s->value);
      return;
    case StmtKind::WarpReduce:
      ENC_INTERNAL_ASSERT(p_.target == Target::GPU, "kernel {}: a warp reduction in a CPU program", k_.name);
      ENC_INTERNAL_ASSERT(bound_.count(s->name), "kernel {} reduces undeclared local {}", k_.name, s->name);
      return;
    }
  }

  void expr(const Expr &e) {
    ENC_INTERNAL_ASSERT(e, "kernel {} has a missing expression", k_.name);
    visit(e, [&](const Expr &n) {
      switch (n->kind) {
      case ExprKind::Access:
      case ExprKind::Reduce: internalError("kernel {} has a tensor-level expression: {}", k_.name, print(n));
      case ExprKind::Load: {
        ENC_INTERNAL_ASSERT(arrays_.count(n->name) || buffers_.count(n->name), "kernel {} loads {}, which it does not list", k_.name, n->name);
        break;
      }
      case ExprKind::Var:
        if (n->varKind == VarKind::Size || n->varKind == VarKind::Param)
          ENC_INTERNAL_ASSERT(params_.count(n->name), "kernel {} reads '{}', which is not among its parameters",
                              k_.name, n->name);
        else
          ENC_INTERNAL_ASSERT(bound_.count(n->name), "kernel {} reads unbound variable {}", k_.name, n->name);
        break;
      default: break;
      }
      return true;
    });
  }
};

} // namespace

void verifyProgram(const Program &p, const VerifyState &state) { ProgramVerifier(p, state).run(); }

void verifyLoops(const LoopProgram &p) {
  for (const Kernel &k : p.kernels) KernelVerifier(p, k).run();
}

} // namespace enc::ir
