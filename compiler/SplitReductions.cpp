// Reduction splitting for the GPU (Halide's rfactor, in its simplest form).
//
// The GPU schedule gives each output of a reduction one warp. A definition with few outputs
// and a long reduction, such as batch-norm statistics (256 channels, each a sum over
// B * H * W values), would keep a few hundred warps busy on a GPU that holds tens of
// thousands. Its reduction is flattened and cut into S chunks:
//
//   T[o] = f(sum(r0, r1: body))
//     ->  T_part[o, s] = sum(j < C: select(s * C + j < R, body[r0, r1 := decode(s * C + j)], 0))
//         T[o]         = f(sum(s < S: T_part[o, s]))
//
// so outputs * S warps share the work and the second pass reads only S values per output.
// Consecutive j are consecutive positions of the flattened reduction, so when its last
// variable is the unit-stride index of the reads (as in batch norm) the lanes of a warp still
// read consecutive addresses.
#include "compiler/IndexRange.h"
#include "compiler/Passes.h"

#include "support/Error.h"

#include <algorithm>
#include <set>

namespace enc::ir {
namespace {

bool allConst(const std::vector<Expr> &extents, int64_t *product) {
  int64_t p = 1;
  for (const Expr &e : extents) {
    int64_t v = 0;
    if (!isConst(e, &v) || v < 0) return false;
    p *= v;
  }
  *product = p;
  return true;
}

std::string freshName(const std::string &base, const std::set<std::string> &taken) {
  std::string name = base;
  for (int i = 1; taken.count(name); ++i) name = base + std::to_string(i);
  return name;
}

// Cuts d's reduction (`red`, over `length` positions) into `chunks` partial reductions: a
// partial tensor indexed by the output's indices and the chunk (the chunk last, or first
// with `chunkFirst`), then d combining its chunks.
void splitDefinition(const Definition &d, const ExprNode &red, int64_t length, int64_t chunks, bool chunkFirst,
                     Program &out, std::set<std::string> &tensorNames) {
  int64_t chunk = (length + chunks - 1) / chunks;
  chunks = (length + chunk - 1) / chunk;
  std::set<std::string> indexNames;
  for (const IndexVar &v : d.indices) indexNames.insert(v.name);
  for (const ReduceVar &v : red.rvars) indexNames.insert(v.name);
  std::string s = freshName("split_s", indexNames), j = freshName("split_j", indexNames);
  Expr sVar = var(s, Type::Int, VarKind::Index), jVar = var(j, Type::Int, VarKind::Index);

  // Position in the flattened reduction, and each reduction variable decoded from it.
  Expr pos = sVar * intImm(chunk) + jVar;
  std::map<std::string, Expr> decoded;
  Expr rest = pos;
  for (size_t i = red.rvars.size(); i-- > 0;) {
    const ReduceVar &v = red.rvars[i];
    decoded[v.name] = i == 0 ? rest : rest % v.extent;
    rest = rest / v.extent;
  }
  Expr body = substitute(red.args[0], [&](const std::string &n, VarKind k) -> Expr {
    if (k != VarKind::Index) return nullptr;
    auto it = decoded.find(n);
    return it == decoded.end() ? nullptr : it->second;
  });
  // With chunks a multiple of the inner extents the decoding is free: (s*3136 + j) / 3136 is s.
  body = foldByIndexRanges(body, {{s, intImm(chunks)}, {j, intImm(chunk)}});
  if (chunk * chunks != length)
    body = select(binary(BinOp::Lt, pos, intImm(length)), body, reduceIdentity(red.reduceOp, Type::Float));

  std::string partName = freshName(d.tensor + "_part", tensorNames);
  tensorNames.insert(partName);
  auto place = [&](auto items, auto chunkItem) {
    if (chunkFirst) items.insert(items.begin(), chunkItem);
    else items.push_back(chunkItem);
    return items;
  };
  TensorDecl part;
  part.name = partName;
  part.role = TensorRole::Temp;
  part.loc = d.loc;
  std::vector<Expr> outExtents;
  for (const IndexVar &v : d.indices) outExtents.push_back(v.extent);
  part.shape = place(outExtents, intImm(chunks));
  out.tensors.push_back(part);

  Definition partial;
  partial.tensor = partName;
  partial.indices = place(d.indices, IndexVar{s, intImm(chunks)});
  partial.value = reduce(red.reduceOp, {{j, intImm(chunk)}}, body);
  partial.loc = d.loc;
  out.defs.push_back(partial);

  std::vector<Expr> partIndex;
  for (const IndexVar &v : d.indices) partIndex.push_back(var(v.name, Type::Int, VarKind::Index));
  Expr combined = reduce(red.reduceOp, {{s, intImm(chunks)}}, access(partName, place(partIndex, sVar), d.loc));
  Definition final = d;
  final.value = mutate(d.value, [&](const Expr &n) -> Expr { return n.get() == &red ? combined : nullptr; });
  out.defs.push_back(final);
}

} // namespace

Program splitReductions(const Program &p, const SplitReductionOptions &options) {
  Program out = p;
  out.defs.clear();
  std::set<std::string> tensorNames;
  for (const TensorDecl &t : p.tensors) tensorNames.insert(t.name);

  for (const Definition &d : p.defs) {
    const ExprNode *r = d.isScatter() ? nullptr : firstReduce(d.value);
    std::vector<Expr> outExtents, redExtents;
    for (const IndexVar &v : d.indices) outExtents.push_back(v.extent);
    if (r)
      for (const ReduceVar &v : r->rvars) redExtents.push_back(v.extent);
    int64_t outputs = 0, length = 0;
    if (!r || !allConst(outExtents, &outputs) || !allConst(redExtents, &length) || outputs == 0 ||
        length < 2 * options.minChunk) {
      out.defs.push_back(d);
      continue;
    }
    // A contraction becomes 64 x 64 tiles: with few of them (Encoding's codeword gradient,
    // 32 x 512 outputs over B * N positions), the reduction is what has to be shared out.
    std::set<std::string> outVars;
    for (const IndexVar &v : d.indices) outVars.insert(v.name);
    int64_t parallel = options.targetWarps, have = outputs;
    if (r->reduceOp == ReduceOp::Sum && isContraction(r->args[0], outVars)) {
      parallel = options.targetTiles;
      have = (outputs + 4095) / 4096;
    }
    if (have >= parallel) {
      out.defs.push_back(d);
      continue;
    }
    int64_t chunks = std::min((parallel + have - 1) / have, length / options.minChunk);
    if (chunks < 2) {
      out.defs.push_back(d);
      continue;
    }
    // A chunk count that divides the length (within a factor of two of the target) needs no
    // guard against positions past the end.
    for (int64_t c = chunks; c * 2 > chunks; --c)
      if (length % c == 0) {
        chunks = c;
        break;
      }
    splitDefinition(d, *r, length, chunks, /*chunkFirst=*/false, out, tensorNames);
  }
  return out;
}

Program splitColumnReductions(const Program &p, int64_t chunks) {
  Program out = p;
  out.defs.clear();
  std::set<std::string> tensorNames;
  for (const TensorDecl &t : p.tensors) tensorNames.insert(t.name);
  for (const Definition &d : p.defs) {
    const ExprNode *r = d.isScatter() || d.indices.size() != 1 ? nullptr : firstReduce(d.value);
    if (!r) {
      out.defs.push_back(d);
      continue;
    }
    std::vector<Expr> redExtents;
    for (const ReduceVar &v : r->rvars) redExtents.push_back(v.extent);
    int64_t outputs = 0, length = 0;
    const std::string &o = d.indices[0].name;
    // A read whose last index is o (unit stride) while the reduction's own indices are not
    // last in any read: the column sums LowerToLoops would run with o strided innermost.
    bool column = allConst({d.indices[0].extent}, &outputs) && allConst(redExtents, &length) &&
                  outputs >= 8 && outputs <= 1024 && length >= 32 * chunks;
    if (column) {
      bool contiguous = false;
      visit(r->args[0], [&](const Expr &n) {
        if (n->kind != ExprKind::Access || n->args.empty()) return true;
        const Expr &last = n->args.back();
        if (last->kind == ExprKind::Var && last->name == o) contiguous = true;
        for (const ReduceVar &v : r->rvars)
          if (last->kind == ExprKind::Var && last->name == v.name && mentionsVar(n, o)) column = false;
        return true;
      });
      column = column && contiguous;
    }
    if (!column) {
      out.defs.push_back(d);
      continue;
    }
    splitDefinition(d, *r, length, chunks, /*chunkFirst=*/true, out, tensorNames);
  }
  return out;
}

} // namespace enc::ir
