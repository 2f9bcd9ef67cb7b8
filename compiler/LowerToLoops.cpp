// Tensor IR -> loop IR, for the CPU or the GPU.
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"

#include "compiler/GpuTiling.h"
#include "compiler/IndexRange.h"
#include "compiler/TileContractions.h"
#include "compiler/codegen/cuda/CudaCodegen.h"

#include "support/Error.h"
#include "support/InternalError.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace enc::ir {
namespace {

Expr local(const std::string &name, Type t = Type::Float) { return var(name, t, VarKind::Local); }

Expr combine(ReduceOp op, Expr acc, Expr v) {
  switch (op) {
  case ReduceOp::Sum: return acc + v;
  case ReduceOp::Prod: return acc * v;
  case ReduceOp::Max: return binary(BinOp::Max, acc, v);
  case ReduceOp::Min: return binary(BinOp::Min, acc, v);
  }
  return acc;
}

// Row-major flat index of `indices` into `shape`.
Expr flatten(const std::vector<Expr> &indices, const std::vector<Expr> &shape) {
  if (indices.size() != shape.size())
    internalError("{} indices into a tensor of rank {}", indices.size(), shape.size());
  Expr flat = intImm(0);
  for (size_t i = 0; i < indices.size(); ++i) flat = flat * shape[i] + indices[i];
  return flat;
}

bool sameExtents(const auto &a, const auto &b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const auto &x, const auto &y) { return structurallyEqual(x.extent, y.extent); });
}

// A program's sums by their domains (the extents of the definition's indices and of the sum's),
// so that asking whether a definition has a sibling sum is a lookup, not a walk over every
// definition: a network has thousands.
class SumDomains {
public:
  explicit SumDomains(const Program &p) {
    for (const Definition &d : p.defs) {
      const ExprNode *r = d.isScatter() ? nullptr : firstReduce(d.value);
      if (r && r->reduceOp == ReduceOp::Sum) byText_[text(d.indices, r->rvars)].push_back({&d, r});
    }
  }

  // Whether a definition other than `d` sums over the domain of d's indices and `reduction`'s.
  bool anotherSums(const Definition &d, const ExprNode &reduction) const {
    auto it = byText_.find(text(d.indices, reduction.rvars));
    if (it == byText_.end()) return false;
    return std::any_of(it->second.begin(), it->second.end(), [&](const Sum &other) {
      return other.def != &d && sameExtents(other.def->indices, d.indices) &&
             sameExtents(other.reduction->rvars, reduction.rvars);
    });
  }

private:
  struct Sum {
    const Definition *def;
    const ExprNode *reduction;
  };
  // Equal extents print alike; sameExtents decides among those that print alike.
  std::map<std::string, std::vector<Sum>> byText_;

  static std::string text(const std::vector<IndexVar> &indices, const std::vector<ReduceVar> &rvars) {
    std::string out;
    for (const IndexVar &v : indices) out += print(v.extent) + ", ";
    out += "|";
    for (const ReduceVar &v : rvars) out += ", " + print(v.extent);
    return out;
  }
};

class KernelLowerer {
public:
  KernelLowerer(const Program &p, const SumDomains &sums, const Definition &d, Target target, int ordinal,
                const GpuTiling &tiling)
      : prog_(p), sums_(sums), def_(d), target_(target), ordinal_(ordinal), tiling_(tiling) {}

  Kernel run() {
    Kernel k;
    k.name = fmt::format("k{}_{}", ordinal_, def_.tensor);
    k.output = def_.tensor;
    k.loc = def_.loc;
    k.buffers.push_back(def_.tensor);
    for (const IndexVar &v : def_.indices) extents_[v.name] = v.extent;

    // Split off the main reduction (after hoisting there is at most one, at top level).
    Expr reduction;
    visit(def_.value, [&](const Expr &n) {
      if (n->kind == ExprKind::Reduce && !reduction) reduction = n;
      return !reduction;
    });
    if (reduction)
      for (const ReduceVar &v : reduction->rvars) extents_[v.name] = v.extent;

    Expr value = toLoads(def_.value);
    const TensorDecl *out = prog_.tensor(def_.tensor);
    Expr flatOut;
    if (def_.isScatter()) {
      // Accumulate into the target; out-of-range targets add zero to a clamped address. (Its
      // domain's indices need not match the target's rank.) A target index that reads a
      // tensor, as X[1, int(T[b])]'s adjoint does, loads it like any other read.
      std::vector<Expr> target;
      for (const Expr &ix : def_.scatter) target.push_back(toLoads(ix));
      auto [inBounds, safe] = boundsChecked(target, out->shape);
      flatOut = flatten(safe, out->shape);
      scatterGuard_ = inBounds;
    } else {
      std::vector<Expr> outIdx;
      for (const IndexVar &v : def_.indices) outIdx.push_back(indexVar(v.name));
      flatOut = flatten(outIdx, out->shape);
    }

    k.body = target_ == Target::CPU ? cpuBody(k, value, flatOut) : gpuBody(k, value, flatOut);
    for (const std::string &b : reads_)
      if (std::find(k.buffers.begin(), k.buffers.end(), b) == k.buffers.end()) k.buffers.push_back(b);
    collectParams(k);
    return k;
  }

private:
  const Program &prog_;
  const SumDomains &sums_;
  const Definition &def_;
  Target target_;
  const GpuTiling &tiling_;
  int ordinal_;
  std::map<std::string, Expr> extents_;
  std::vector<std::string> reads_;
  Expr scatterGuard_; // set for scatter definitions

  // Access -> Load on the flat buffer. Indices that are not plain, in-range variables get a
  // bounds check: out-of-range reads are zero (zero padding), and the address is clamped.
  Expr toLoads(const Expr &e) {
    return mutate(e, [&](const Expr &n) -> Expr {
      if (n->kind != ExprKind::Access) return nullptr;
      const TensorDecl *t = prog_.tensor(n->name);
      if (!t) internalError("access to undeclared tensor '{}'", n->name);
      if (std::find(reads_.begin(), reads_.end(), n->name) == reads_.end()) reads_.push_back(n->name);
      auto [inBounds, safe] = boundsChecked(n->args, t->shape);
      Expr l = load(n->name, flatten(safe, t->shape));
      return select(inBounds, l, floatImm(0));
    });
  }

  // The in-bounds condition of `indices` into `shape`, and the indices clamped into range.
  // Plain index variables whose extent is the dimension need neither.
  std::pair<Expr, std::vector<Expr>> boundsChecked(const std::vector<Expr> &indices, const std::vector<Expr> &shape) {
    Expr inBounds = boolImm(true);
    std::vector<Expr> safe;
    for (size_t i = 0; i < indices.size(); ++i) {
      const Expr &ix = indices[i];
      auto ext = ix->kind == ExprKind::Var ? extents_.find(ix->name) : extents_.end();
      if (ext != extents_.end() && structurallyEqual(ext->second, shape[i])) {
        safe.push_back(ix);
        continue;
      }
      // An index that provably stays inside a constant dimension needs no check either.
      int64_t dim = 0;
      auto range = indexRange(ix, extents_);
      if (range && isConst(shape[i], &dim) && range->lo >= 0 && range->hi < dim) {
        safe.push_back(ix);
        continue;
      }
      inBounds = binary(BinOp::And, inBounds,
                        binary(BinOp::And, binary(BinOp::Ge, ix, intImm(0)), binary(BinOp::Lt, ix, shape[i])));
      safe.push_back(binary(BinOp::Min, binary(BinOp::Max, ix, intImm(0)), shape[i] - intImm(1)));
    }
    return {inBounds, safe};
  }

  // The statement that writes the kernel's result.
  Stmt result(Expr index, Expr value) {
    if (scatterGuard_) return store(def_.tensor, index, select(scatterGuard_, value, floatImm(0)), def_.loc, true);
    return store(def_.tensor, index, value, def_.loc);
  }

  static Expr replaceReduce(const Expr &value, const Expr &acc) {
    return mutate(value, [&](const Expr &n) -> Expr { return n->kind == ExprKind::Reduce ? acc : nullptr; });
  }

  static const ExprNode *findReduce(const Expr &value) {
    const ExprNode *r = nullptr;
    visit(value, [&](const Expr &n) {
      if (n->kind == ExprKind::Reduce && !r) r = n.get();
      return !r;
    });
    return r;
  }

  // Whether index `v` is the last index of some tensor read in `e` (unit stride).
  static bool contiguousIn(const Expr &e, const std::string &v) {
    bool found = false;
    visit(e, [&](const Expr &n) {
      if (n->kind == ExprKind::Access && !n->args.empty()) {
        const Expr &last = n->args.back();
        if (last->kind == ExprKind::Var && last->name == v) found = true;
      }
      return !found;
    });
    return found;
  }

  // A reduction whose own indices never have unit stride while the definition's last index
  // does (grad_X[b, c, h, w] = sum(e: g[b, c, e] * X[b, e, h, w])) runs better with the
  // reduction outside that last loop, accumulating in the output row, so the inner loop
  // streams through memory and vectorizes. Reads of no output index (a per-term weight such
  // as softmax's scale[k]) are the same for every output and stay in cache: they do not count.
  bool accumulateInOutputRow(const ExprNode *r) const {
    if (!r || def_.isScatter() || def_.indices.size() < 2) return false;
    const Expr body = mutate(r->args[0], [&](const Expr &n) -> Expr {
      if (n->kind != ExprKind::Access) return nullptr;
      for (const IndexVar &v : def_.indices)
        if (mentionsVar(n, v.name)) return nullptr;
      return floatImm(0);
    });
    for (const ReduceVar &v : r->rvars)
      if (contiguousIn(body, v.name)) return false;
    return contiguousIn(body, def_.indices.back().name);
  }

  // Whether another definition sums over the same domain as this one (batch norm's sums of X
  // and X^2 per channel): fuseSiblingReductions makes such plain reduction loops one pass.
  bool hasSiblingSum() const {
    const ExprNode *mine = firstReduce(def_.value);
    return mine && sums_.anotherSums(def_, *mine);
  }

  // A max or min whose innermost reduction index r reads unit-stride (a row's max over a
  // classifier's classes): 16 lanes, each the max of every 16th element, then their max.
  // LLVM's vectorizer leaves maxnum/minnum reductions scalar, one dependent step per element.
  // The last vector overlaps the one before where 16 does not divide r's extent: max and min
  // take an element twice without harm. Leaves _acc holding the result.
  static constexpr int64_t kReductionLanes = 16;
  std::optional<std::vector<Stmt>> maxAcrossLanes(const ExprNode &r) const {
    if ((r.reduceOp != ReduceOp::Max && r.reduceOp != ReduceOp::Min) || def_.isScatter()) return std::nullopt;
    const ReduceVar &last = r.rvars.back();
    int64_t n = 0;
    const Expr &body = r.args[0];
    if (!isConst(last.extent, &n) || n < 2 * kReductionLanes || !vectorizable(body)) return std::nullopt;
    bool unitStride = true;
    visit(body, [&](const Expr &e) {
      if (e->kind == ExprKind::Load) {
        std::optional<int64_t> stride = strideIn(unclampedIndex(e->args[0]), last.name);
        unitStride = unitStride && stride && (*stride == 0 || *stride == 1);
      }
      return unitStride;
    });
    if (!unitStride) return std::nullopt;
    const Expr identity = reduceIdentity(r.reduceOp, Type::Float);
    const std::string lane = last.name + ".l";
    auto at = [&](Expr first) {
      return combine(r.reduceOp, load("_lanes", indexVar(lane)),
                     substituteIndices(body, {{last.name, first + indexVar(lane)}}));
    };
    auto vector = [&](Stmt s) { return forLoop(lane, intImm(kReductionLanes), ForKind::Vectorized, {s}); };
    Stmt loop = forLoop(last.name + ".o", intImm(n / kReductionLanes), ForKind::Serial,
                        {vector(store("_lanes", indexVar(lane), at(indexVar(last.name + ".o") * intImm(kReductionLanes)), {}))});
    if (n % kReductionLanes) loop = block({loop, vector(store("_lanes", indexVar(lane), at(intImm(n - kReductionLanes)), {}))});
    for (size_t i = r.rvars.size() - 1; i-- > 0;) loop = forLoop(r.rvars[i].name, r.rvars[i].extent, ForKind::Serial, {loop});
    return std::vector<Stmt>{alloc("_lanes", kReductionLanes), vector(store("_lanes", indexVar(lane), identity, {})), loop,
                             let("_acc", Type::Float, identity),
                             vector(assign("_acc", combine(r.reduceOp, local("_acc"), load("_lanes", indexVar(lane)))))};
  }

  Stmt cpuBody(Kernel &k, const Expr &value, const Expr &flatOut) {
    const ExprNode *r = findReduce(value);
    // Contractions (sums of products of reads) get register-blocked tiles; a sum over one
    // output index only without a sibling to share its pass with.
    if (r && r->reduceOp == ReduceOp::Sum && !def_.isScatter() && (def_.indices.size() != 1 || !hasSiblingSum())) {
      Contraction c{def_.tensor, def_.indices, r->rvars, r->args[0], replaceReduce(value, local("_acc")), flatOut, def_.loc};
      // p > 0 only with three indices or more; a scalar output (no index) has nothing to move.
      if (size_t p = parallelIndex(c); p > 0)
        std::rotate(c.indices.begin(), c.indices.begin() + static_cast<long>(p), c.indices.begin() + static_cast<long>(p) + 1);
      if (Stmt tiled = tileContraction(c)) {
        k.launch = ForKind::Parallel;
        k.launchExtent = tiled->value;
        return tiled;
      }
    }
    bool interchange = accumulateInOutputRow(findReduce(def_.value));
    size_t outer = interchange ? def_.indices.size() - 1 : def_.indices.size();
    std::vector<Stmt> inner;
    if (interchange) {
      const IndexVar &last = def_.indices.back();
      Expr current = load(def_.tensor, flatOut);
      auto row = [&](Stmt s) { return forLoop(last.name, last.extent, ForKind::Serial, {s}); };
      inner.push_back(row(store(def_.tensor, flatOut, reduceIdentity(r->reduceOp, Type::Float), def_.loc)));
      Stmt loop = row(store(def_.tensor, flatOut, combine(r->reduceOp, current, r->args[0]), def_.loc));
      for (size_t i = r->rvars.size(); i-- > 0;)
        loop = forLoop(r->rvars[i].name, r->rvars[i].extent, ForKind::Serial, {loop});
      inner.push_back(loop);
      Expr epilogue = replaceReduce(value, current);
      if (epilogue != current) inner.push_back(row(store(def_.tensor, flatOut, epilogue, def_.loc)));
    } else if (std::optional<std::vector<Stmt>> lanes = r ? maxAcrossLanes(*r) : std::nullopt) {
      inner.insert(inner.end(), lanes->begin(), lanes->end());
      inner.push_back(result(flatOut, replaceReduce(value, local("_acc"))));
    } else if (r) {
      inner.push_back(let("_acc", Type::Float, reduceIdentity(r->reduceOp, Type::Float)));
      Stmt loop = assign("_acc", combine(r->reduceOp, local("_acc"), r->args[0]));
      for (size_t i = r->rvars.size(); i-- > 0;)
        loop = forLoop(r->rvars[i].name, r->rvars[i].extent, ForKind::Serial, {loop});
      inner.push_back(loop);
      inner.push_back(result(flatOut, replaceReduce(value, local("_acc"))));
    } else {
      inner.push_back(result(flatOut, value));
    }
    // Scatter kernels run in parallel too: the runtime gives each thread a private output.
    bool parallel = !def_.indices.empty();
    k.scatters = def_.isScatter();
    Stmt body = block(inner);
    for (size_t i = outer; i-- > 0;) {
      ForKind kind = i == 0 && parallel ? ForKind::Parallel : ForKind::Serial;
      body = forLoop(def_.indices[i].name, def_.indices[i].extent, kind, {body});
    }
    k.launch = parallel ? ForKind::Parallel : ForKind::Serial;
    k.launchExtent = parallel ? def_.indices[0].extent : intImm(1);
    return body;
  }

  // Element-wise with long rows that reads some tensor once per row (a channel's statistics,
  // a bias): each thread block takes whole rows, its threads the row's elements. What the row
  // reads is then loaded once per row rather than once per element, and an element decodes
  // only its place in the row. A row is the shortest run of trailing dimensions that some
  // load does not read and that keeps a block's threads busy: at least a block long, and a
  // whole number of blocks unless it is several blocks long. Otherwise one flat loop.
  std::optional<Stmt> gpuRows(Kernel &k, const Expr &value) {
    if (def_.isScatter() || def_.indices.size() < 2) return std::nullopt;
    const int64_t block = codegen::kCudaBlockSize;
    const size_t n = def_.indices.size();
    int64_t length = 1;
    size_t first = n; // the row is def_.indices[first ..]
    for (size_t i = n; i-- > 1;) {
      int64_t extent = 0;
      if (!isConst(def_.indices[i].extent, &extent)) return std::nullopt;
      length *= extent;
      if (length < block || (length % block != 0 && length < 4 * block)) continue;
      const bool readsPerRow = anyNode(value, [&](const Expr &e) {
        if (e->kind != ExprKind::Load) return false;
        for (size_t j = i; j < n; ++j)
          if (mentionsVar(e, def_.indices[j].name, VarKind::Index)) return false;
        return true;
      });
      if (readsPerRow) first = i;
      break;
    }
    if (first == n) return std::nullopt;
    std::vector<IndexVar> rowVars, elementVars;
    Expr rows = intImm(1);
    for (size_t i = 0; i < n; ++i) {
      const IndexVar &v = def_.indices[i];
      (i < first ? rowVars : elementVars).push_back(v);
      if (i < first) rows = rows * v.extent;
    }
    // One trailing dimension is the loop's own variable; several are decoded from it.
    const std::string element = elementVars.size() == 1 ? elementVars[0].name : "_e";
    std::vector<Stmt> elementBody;
    if (elementVars.size() > 1) decodeIndices(elementBody, elementVars, local(element, Type::Int));
    elementBody.push_back(let("_o", Type::Int, local("_row", Type::Int) * intImm(length) + local(element, Type::Int)));
    elementBody.push_back(result(local("_o", Type::Int), value));
    std::vector<Stmt> rowBody;
    decodeIndices(rowBody, rowVars, local("_row", Type::Int));
    rowBody.push_back(forLoop(element, intImm(length), ForKind::GpuRowThreads, elementBody));
    k.launch = ForKind::GpuRows;
    k.launchExtent = rows;
    return forLoop("_row", rows, ForKind::GpuRows, rowBody);
  }

  Stmt gpuBody(Kernel &k, const Expr &value, const Expr &flatOut) {
    Expr total = intImm(1);
    for (const IndexVar &v : def_.indices) total = total * v.extent;
    k.launchExtent = total;
    const ExprNode *r = findReduce(value);
    if (!r)
      if (std::optional<Stmt> rows = gpuRows(k, value)) return *rows;
    std::vector<Stmt> inner;
    decodeIndices(inner, def_.indices, local("_o", Type::Int));
    if (!r) {
      inner.push_back(result(def_.isScatter() ? flatOut : local("_o", Type::Int), value));
      k.launch = ForKind::GpuThreads;
      k.scatters = def_.isScatter();
      return forLoop("_o", total, ForKind::GpuThreads, inner);
    }
    // Contractions: shared-memory tiles (GpuTiling.cpp), written out as loop IR.
    if (!def_.isScatter()) {
      auto shape = tiling_.tileShapes.find(def_.tensor);
      if (auto t = tileForGpu(def_.indices, *r, replaceReduce(value, local("_acc")), flatOut, tiling_.tensorCores,
                              shape == tiling_.tileShapes.end() ? nullptr : &shape->second)) {
        k.launch = ForKind::GpuTiles;
        k.launchExtent = intImm(t->tiles());
        return t->shape.tensorCores ? tensorCoreBody(*t, def_.tensor, def_.loc, *tiling_.tensorCores, tiling_.types)
                                    : tiledContractionBody(*t, def_.tensor, def_.loc);
      }
    }
    // One warp per output element; its lanes stride through the (flattened) reduction.
    std::vector<IndexVar> rVars;
    Expr rTotal = intImm(1);
    for (const ReduceVar &v : r->rvars) {
      rVars.push_back({v.name, v.extent});
      rTotal = rTotal * v.extent;
    }
    std::vector<Stmt> laneBody;
    decodeIndices(laneBody, rVars, local("_r", Type::Int));
    laneBody.push_back(assign("_acc", combine(r->reduceOp, local("_acc"), r->args[0])));
    inner.push_back(let("_acc", Type::Float, reduceIdentity(r->reduceOp, Type::Float)));
    inner.push_back(forLoop("_r", rTotal, ForKind::GpuLanes, laneBody));
    inner.push_back(warpReduce("_acc", r->reduceOp));
    inner.push_back(
        ifLaneZero({result(def_.isScatter() ? flatOut : local("_o", Type::Int), replaceReduce(value, local("_acc")))}));
    k.launch = ForKind::GpuWarps;
    k.scatters = def_.isScatter();
    return forLoop("_o", total, ForKind::GpuWarps, inner);
  }

  void collectParams(Kernel &k) {
    std::set<std::string> used;
    visitExprs(k.body, [&](const Expr &n) {
      if (n->kind == ExprKind::Var && (n->varKind == VarKind::Size || n->varKind == VarKind::Param)) used.insert(n->name);
      return true;
    });
    for (const SizeParam &s : prog_.sizes)
      if (used.count(s.name)) k.params.push_back(s);
  }
};


} // namespace

// A collective definition: no loops, the runtime sums buffers[1] over the group into buffers[0].
Kernel collectiveKernel(const Program &p, const Definition &d, int ordinal) {
  Kernel k;
  k.name = fmt::format("k{}_{}_allreduce", ordinal, d.tensor);
  k.output = d.tensor;
  k.buffers = {d.tensor, d.value->args[0]->name};
  k.collective = true;
  k.body = block({});
  Expr elements = intImm(1);
  for (const Expr &e : p.tensor(d.tensor)->shape) elements = elements * e;
  k.launchExtent = elements;
  k.loc = d.loc;
  return k;
}

LoopProgram lowerToLoops(const Program &p, Target target, const GpuTiling &tiling) {
  LoopProgram out;
  out.target = target;
  out.tensors = p;
  int ordinal = 0, message = 0;
  bool lastWasCollective = false;
  const SumDomains sums(p);
  for (const Definition &d : p.defs) {
    if (isCollective(d)) {
      out.kernels.push_back(collectiveKernel(p, d, ordinal++));
      out.kernels.back().message = message;
      lastWasCollective = true;
      continue;
    }
    if (lastWasCollective) ++message;
    lastWasCollective = false;
    out.kernels.push_back(KernelLowerer(p, sums, d, target, ordinal++, tiling).run());
  }
  return out;
}

// Whether every store of `loop`'s body into a buffer depends on the loop's variable, so that
// its iterations write apart (a loop over a reduction's chunks, which add into the same
// outputs, does not).
static bool iterationsWriteApart(const Stmt &loop) {
  return !anyStmt(loop, [&](const Stmt &n) {
    return n->kind == StmtKind::Store && !n->name.starts_with("_") && !mentionsVar(n->index, loop->name);
  });
}

// The CPU splits the outermost loop across threads. When that loop has one iteration (a
// batch of one, Inspiration's single target t < 1) around a single loop whose iterations
// write apart, the inner loop (often the outer loop of a register tile) is the one to split.
static void moveParallelismInward(Kernel &k) {
  while (k.launch == ForKind::Parallel && !k.scatters) {
    const Stmt &top = k.body;
    int64_t n = 0;
    if (top->kind != StmtKind::For || top->forKind != ForKind::Parallel || !isConst(top->value, &n) || n != 1) return;
    const std::vector<Stmt> *body = &top->body;
    while (body->size() == 1 && (*body)[0]->kind == StmtKind::Block) body = &(*body)[0]->body;
    if (body->size() != 1 || (*body)[0]->kind != StmtKind::For || (*body)[0]->forKind != ForKind::Serial ||
        !iterationsWriteApart((*body)[0]))
      return;
    const std::string &unit = top->name;
    auto inner = std::make_shared<StmtNode>(*substitute(
        (*body)[0], [&](const std::string &n, VarKind) -> Expr { return n == unit ? intImm(0) : nullptr; }));
    inner->forKind = ForKind::Parallel;
    k.body = inner;
    k.launchExtent = inner->value;
  }
}

LoopProgram moveParallelismInward(LoopProgram out) {
  if (out.target == Target::CPU)
    for (Kernel &k : out.kernels) moveParallelismInward(k);
  return out;
}

} // namespace enc::ir
