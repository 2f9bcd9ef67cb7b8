// Horizontal fusion of reductions (GPU warp reductions, and the CPU's plain reduction loops).
//
// The GPU schedule lowers each reduction to its own kernel: one warp per output, its lanes
// striding through the reduction, then a warp-wide combine and a store from lane 0. Sibling
// reductions over the same domains, such as the batch-norm gradient's per-channel sums of dY
// and dY * x, would each read dY and X once more. Here such kernels become one kernel with
// an accumulator per reduction, so their inputs are read once:
//
//   gpu_warps for _o in 0..N:            (decoded output indices, shared)
//     let _acc = 0;  let _acc1 = 0
//     gpu_lanes for _r in 0..R:          (decoded reduction indices, shared)
//       _acc = _acc + ...;  _acc1 = _acc1 + ...
//     _acc = warp_sum(_acc);  _acc1 = warp_sum(_acc1)
//     if lane == 0:  A[_o] = f(_acc);  B[_o] = g(_acc1)
//
// On the CPU the same holds for plain reduction loop nests (parallel over the outputs, the
// reduction's loops inside), merged when their loops have the same extents.
//
// A later kernel joins an earlier one only when it reads nothing that the earlier one or any
// kernel between them writes, so moving it up keeps every value it sees.
#include "compiler/LoopIR.h"

#include <map>
#include <optional>
#include <set>

namespace enc::ir {
namespace {

// A kernel of the shape gpuBody produces for a reduction (or an earlier fusion of such).
struct WarpReduction {
  Expr total, rTotal;
  std::string outVar, laneVar;   // "_o", "_r"
  std::vector<Stmt> outLets;     // indices decoded from _o
  std::vector<Stmt> accumulators; // float lets
  std::vector<Stmt> laneLets;    // indices decoded from _r
  std::vector<Stmt> updates;     // accumulator assignments
  std::vector<Stmt> reduces;     // warp reductions
  std::vector<Stmt> stores;      // lane 0's stores
};

std::optional<WarpReduction> match(const Kernel &k) {
  if (k.launch != ForKind::GpuWarps || k.scatters) return std::nullopt;
  const Stmt &top = k.body;
  if (top->kind != StmtKind::For || top->forKind != ForKind::GpuWarps) return std::nullopt;
  WarpReduction w;
  w.total = top->value;
  w.outVar = top->name;
  size_t i = 0;
  const std::vector<Stmt> &b = top->body;
  for (; i < b.size() && b[i]->kind == StmtKind::Let && b[i]->type == Type::Int; ++i) w.outLets.push_back(b[i]);
  for (; i < b.size() && b[i]->kind == StmtKind::Let && b[i]->type == Type::Float; ++i) w.accumulators.push_back(b[i]);
  if (w.accumulators.empty() || i >= b.size() || b[i]->kind != StmtKind::For || b[i]->forKind != ForKind::GpuLanes)
    return std::nullopt;
  const Stmt &lanes = b[i++];
  w.rTotal = lanes->value;
  w.laneVar = lanes->name;
  size_t j = 0;
  for (; j < lanes->body.size() && lanes->body[j]->kind == StmtKind::Let && lanes->body[j]->type == Type::Int; ++j)
    w.laneLets.push_back(lanes->body[j]);
  for (; j < lanes->body.size(); ++j) {
    if (lanes->body[j]->kind != StmtKind::Assign) return std::nullopt;
    w.updates.push_back(lanes->body[j]);
  }
  for (; i < b.size() && b[i]->kind == StmtKind::WarpReduce; ++i) w.reduces.push_back(b[i]);
  if (i + 1 != b.size() || b[i]->kind != StmtKind::IfLaneZero) return std::nullopt;
  for (const Stmt &s : b[i]->body)
    if (s->kind != StmtKind::Store || s->accumulate) return std::nullopt;
  w.stores = b[i]->body;
  if (w.updates.size() != w.accumulators.size() || w.reduces.size() != w.accumulators.size()) return std::nullopt;
  return w;
}

// Decoded indices of `b` matched to those of `a` (same values in the same order): b's name -> a's.
bool matchLets(const std::vector<Stmt> &a, const std::vector<Stmt> &b, const std::string &aVar, const std::string &bVar,
               std::map<std::string, std::string> &rename) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto renamed = [&](const Expr &e) {
      return substitute(e, [&](const std::string &n, VarKind) -> Expr {
        if (n == bVar) return var(aVar, Type::Int, VarKind::Local);
        auto it = rename.find(n);
        return it == rename.end() ? nullptr : var(it->second, Type::Int, VarKind::Index);
      });
    };
    if (!structurallyEqual(a[i]->value, renamed(b[i]->value))) return false;
    rename[b[i]->name] = a[i]->name;
  }
  return true;
}

// For substitute: variables named in `rename` under their new names (accumulators stay float).
std::function<Expr(const std::string &, VarKind)> renaming(const std::map<std::string, std::string> &rename) {
  return [&rename](const std::string &n, VarKind k) -> Expr {
    auto it = rename.find(n);
    if (it == rename.end()) return nullptr;
    Type t = k == VarKind::Local && n.rfind("_acc", 0) == 0 ? Type::Float : Type::Int;
    return var(it->second, t, k);
  };
}

// Locals, loop variables and the variables expressions read, renamed (buffers keep their names).
Stmt renamed(const Stmt &s, const std::map<std::string, std::string> &rename) {
  Stmt names = mutate(s, [&](const Stmt &n) -> Stmt {
    auto it = rename.find(n->name);
    return it != rename.end() && n->kind != StmtKind::Store ? withName(n, it->second) : nullptr;
  });
  return substitute(names, renaming(rename));
}

// The CPU form of a plain reduction kernel:
//   parallel for o in 0..N:  let _acc = 0;  for r0: for r1: _acc = ...;  out[...] = f(_acc)
struct LoopReduction {
  std::string outVar;
  Expr outExtent;
  std::vector<Stmt> accumulators;
  std::vector<std::pair<std::string, Expr>> loops; // the reduction's loops, outermost first
  std::vector<Stmt> updates;
  std::vector<Stmt> stores;
};

// Statements with nested blocks spliced in.
std::vector<Stmt> flattened(const std::vector<Stmt> &body) {
  std::vector<Stmt> out;
  for (const Stmt &s : body) {
    if (s->kind == StmtKind::Block) {
      std::vector<Stmt> inner = flattened(s->body);
      out.insert(out.end(), inner.begin(), inner.end());
    } else {
      out.push_back(s);
    }
  }
  return out;
}

std::optional<LoopReduction> matchCpu(const Kernel &k) {
  if (k.launch != ForKind::Parallel || k.scatters) return std::nullopt;
  const Stmt &top = k.body;
  if (top->kind != StmtKind::For || top->forKind != ForKind::Parallel) return std::nullopt;
  LoopReduction w;
  w.outVar = top->name;
  w.outExtent = top->value;
  const std::vector<Stmt> b = flattened(top->body);
  size_t i = 0;
  for (; i < b.size() && b[i]->kind == StmtKind::Let && b[i]->type == Type::Float; ++i) w.accumulators.push_back(b[i]);
  if (w.accumulators.empty() || i >= b.size() || b[i]->kind != StmtKind::For || b[i]->forKind != ForKind::Serial)
    return std::nullopt;
  Stmt loop = b[i++];
  std::vector<Stmt> inner;
  while (true) {
    w.loops.push_back({loop->name, loop->value});
    inner = flattened(loop->body);
    if (inner.size() == 1 && inner[0]->kind == StmtKind::For && inner[0]->forKind == ForKind::Serial) {
      loop = inner[0];
      continue;
    }
    break;
  }
  for (const Stmt &s : inner) {
    if (s->kind != StmtKind::Assign) return std::nullopt;
    w.updates.push_back(s);
  }
  for (; i < b.size(); ++i) {
    if (b[i]->kind != StmtKind::Store || b[i]->accumulate) return std::nullopt;
    w.stores.push_back(b[i]);
  }
  if (w.stores.empty() || w.updates.size() != w.accumulators.size()) return std::nullopt;
  return w;
}

// b's accumulators get names a's do not use (_acc1, _acc2, ...).
void renameAccumulators(const std::vector<Stmt> &a, const std::vector<Stmt> &b, std::map<std::string, std::string> &rename) {
  std::set<std::string> taken;
  for (const Stmt &s : a) taken.insert(s->name);
  for (const Stmt &s : b) {
    std::string n = s->name;
    for (int i = 1; taken.count(n); ++i) n = "_acc" + std::to_string(i);
    taken.insert(n);
    rename[s->name] = n;
  }
}

// `b` folded into `a`, or nullopt when their shapes differ.
std::optional<Kernel> merge(const Kernel &a, const Kernel &b) {
  auto wa = match(a), wb = match(b);
  if (!wa || !wb || !structurallyEqual(wa->total, wb->total) || !structurallyEqual(wa->rTotal, wb->rTotal))
    return std::nullopt;
  std::map<std::string, std::string> rename;
  if (!matchLets(wa->outLets, wb->outLets, wa->outVar, wb->outVar, rename)) return std::nullopt;
  if (!matchLets(wa->laneLets, wb->laneLets, wa->laneVar, wb->laneVar, rename)) return std::nullopt;
  rename[wb->outVar] = wa->outVar;
  rename[wb->laneVar] = wa->laneVar;
  renameAccumulators(wa->accumulators, wb->accumulators, rename);

  std::vector<Stmt> inner = wa->outLets;
  for (const Stmt &s : wa->accumulators) inner.push_back(s);
  for (const Stmt &s : wb->accumulators) inner.push_back(renamed(s, rename));
  std::vector<Stmt> laneBody = wa->laneLets;
  for (const Stmt &s : wa->updates) laneBody.push_back(s);
  for (const Stmt &s : wb->updates) laneBody.push_back(renamed(s, rename));
  inner.push_back(forLoop(wa->laneVar, wa->rTotal, ForKind::GpuLanes, laneBody));
  for (const Stmt &s : wa->reduces) inner.push_back(s);
  for (const Stmt &s : wb->reduces) inner.push_back(renamed(s, rename));
  std::vector<Stmt> stores = wa->stores;
  for (const Stmt &s : wb->stores) stores.push_back(renamed(s, rename));
  inner.push_back(ifLaneZero(stores));

  Kernel k = a;
  k.body = forLoop(wa->outVar, wa->total, ForKind::GpuWarps, inner);
  return mergedInterface(k, a, b);
}

std::optional<Kernel> mergeCpu(const Kernel &a, const Kernel &b) {
  auto wa = matchCpu(a), wb = matchCpu(b);
  if (!wa || !wb || !structurallyEqual(wa->outExtent, wb->outExtent) || wa->loops.size() != wb->loops.size())
    return std::nullopt;
  std::map<std::string, std::string> rename;
  rename[wb->outVar] = wa->outVar;
  for (size_t i = 0; i < wa->loops.size(); ++i) {
    if (!structurallyEqual(wa->loops[i].second, wb->loops[i].second)) return std::nullopt;
    rename[wb->loops[i].first] = wa->loops[i].first;
  }
  renameAccumulators(wa->accumulators, wb->accumulators, rename);
  std::vector<Stmt> updates = wa->updates;
  for (const Stmt &s : wb->updates) updates.push_back(renamed(s, rename));
  Stmt loop;
  for (size_t i = wa->loops.size(); i-- > 0;)
    loop = forLoop(wa->loops[i].first, wa->loops[i].second, ForKind::Serial, loop ? std::vector<Stmt>{loop} : updates);
  std::vector<Stmt> inner = wa->accumulators;
  for (const Stmt &s : wb->accumulators) inner.push_back(renamed(s, rename));
  inner.push_back(loop);
  for (const Stmt &s : wa->stores) inner.push_back(s);
  for (const Stmt &s : wb->stores) inner.push_back(renamed(s, rename));
  Kernel k = a;
  k.body = forLoop(wa->outVar, wa->outExtent, ForKind::Parallel, inner);
  return mergedInterface(k, a, b);
}

} // namespace

LoopProgram fuseSiblingReductions(const LoopProgram &p) {
  bool gpu = p.target == Target::GPU;
  LoopProgram out = p;
  std::vector<Kernel> &ks = out.kernels;
  for (size_t i = 0; i < ks.size(); ++i) {
    if (gpu ? !match(ks[i]) : !matchCpu(ks[i])) continue;
    std::set<std::string> written = kernelWrites(ks[i]);
    for (size_t j = i + 1; j < ks.size();) {
      std::set<std::string> r = kernelReads(ks[j]);
      bool independent = std::none_of(r.begin(), r.end(), [&](const std::string &n) { return written.count(n); });
      std::optional<Kernel> merged = !independent ? std::nullopt : gpu ? merge(ks[i], ks[j]) : mergeCpu(ks[i], ks[j]);
      if (merged) {
        ks[i] = *merged;
        written = kernelWrites(ks[i]);
        // Kernels between i and j still count as written before anything later.
        for (size_t m = i + 1; m < j; ++m)
          for (const std::string &w : kernelWrites(ks[m])) written.insert(w);
        ks.erase(ks.begin() + static_cast<long>(j));
        continue;
      }
      for (const std::string &w : kernelWrites(ks[j])) written.insert(w);
      ++j;
    }
  }
  return out;
}

} // namespace enc::ir
