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
    int64_t chunk = (length + chunks - 1) / chunks;
    chunks = (length + chunk - 1) / chunk;

    std::set<std::string> indexNames;
    for (const IndexVar &v : d.indices) indexNames.insert(v.name);
    for (const ReduceVar &v : r->rvars) indexNames.insert(v.name);
    std::string s = freshName("split_s", indexNames), j = freshName("split_j", indexNames);
    Expr sVar = var(s, Type::Int, VarKind::Index), jVar = var(j, Type::Int, VarKind::Index);

    // Position in the flattened reduction, and each reduction variable decoded from it.
    Expr pos = sVar * intImm(chunk) + jVar;
    std::map<std::string, Expr> decoded;
    Expr rest = pos;
    for (size_t i = r->rvars.size(); i-- > 0;) {
      const ReduceVar &v = r->rvars[i];
      decoded[v.name] = i == 0 ? rest : rest % v.extent;
      rest = rest / v.extent;
    }
    Expr body = substitute(r->args[0], [&](const std::string &n, VarKind k) -> Expr {
      if (k != VarKind::Index) return nullptr;
      auto it = decoded.find(n);
      return it == decoded.end() ? nullptr : it->second;
    });
    if (chunk * chunks != length)
      body = select(binary(BinOp::Lt, pos, intImm(length)), body, reduceIdentity(r->reduceOp, Type::Float));

    std::string partName = freshName(d.tensor + "_part", tensorNames);
    tensorNames.insert(partName);
    TensorDecl part;
    part.name = partName;
    part.role = TensorRole::Temp;
    part.loc = d.loc;
    part.shape = outExtents;
    part.shape.push_back(intImm(chunks));
    out.tensors.push_back(part);

    Definition partial;
    partial.tensor = partName;
    partial.indices = d.indices;
    partial.indices.push_back({s, intImm(chunks)});
    partial.value = reduce(r->reduceOp, {{j, intImm(chunk)}}, body);
    partial.loc = d.loc;
    out.defs.push_back(partial);

    std::vector<Expr> partIndex;
    for (const IndexVar &v : d.indices) partIndex.push_back(var(v.name, Type::Int, VarKind::Index));
    partIndex.push_back(sVar);
    Expr combined = reduce(r->reduceOp, {{s, intImm(chunks)}}, access(partName, partIndex, d.loc));
    Definition final = d;
    final.value = mutate(d.value, [&](const Expr &n) -> Expr { return n.get() == r ? combined : nullptr; });
    out.defs.push_back(final);
  }
  return out;
}

} // namespace enc::ir
