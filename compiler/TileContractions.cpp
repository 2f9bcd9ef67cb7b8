// Register blocking of contractions for the CPU.
//
// A contraction out[b, i, j, ...] = epilogue(sum(r...: body)) gets one of two schedules:
//
//  outer product — some output index j has unit stride in the body's reads that move with
//    the reduction (Conv2d's w, Encoding's i, Linear-like backward passes): a tile of
//    rows of another output index i (8 at 32 lanes, 16 at 16) by up to 32 consecutive j accumulates in a
//    local array kept in registers; the body runs vectorized along j (vector loads of the
//    unit-stride reads, broadcasts of the reads that do not depend on j) and unrolled
//    along i, so each vector load is reused once per row;
//
//  dot product — otherwise, when the innermost unit-stride index is a reduction index r
//    (GramMatrix's w, Conv2d's weight gradient), a tile of up to 4 x 4 outputs keeps 16
//    vector accumulators along r, each load reused 4 times, summed across lanes at the end.
//
// and two variants of the outer product:
//
//  gathered — when j is far-strided in the output and the reduction short (a projection
//    Y[b, i, k] = sum(d: W[k, d] * X[b, d, i]), whose input gradient
//    grad_X[b, d, i] = sum(k: g[b, i, k] * W[k, d]) sums over 32 outputs), the scattered stores
//    would cost as much as the reduction: j becomes the output's unit-stride index, and the
//    reads strided along it are gathered once per block of j into a local [k][lane] array
//    that every row block then reads with vector loads;
//
//  sliced — when only indices[0] could be j (the projection's weight gradient grad_W[k, d] =
//    sum(b, i: g[b, i, k] * X[b, d, i])), iteration p0 of the parallel loop computes all of
//    indices[0] for a slice of another index (see the end of tileContraction);
//
//  packed — when j's extent fills no whole tile (a convolution's 28 or 56 columns) and another
//    output index p is read only by the weights, those reads are copied once per block of p
//    as [reduction][lane]; the tile vectorizes along p with j as its rows.
//
// A dot product over a long reduction runs in chunks of it outside the tiles, each tile adding
// its chunk's sum into the output (ReductionChunks). A dot product symmetric in its two blocked
// indices (GramMatrix's forward) computes the tiles on and after the diagonal only, storing
// each output twice (symmetricTiles). An outer product copies column panels whose rows alias
// in cache (aliasedPanels), computes a broadcast factor made of several reads once per parallel
// iteration (broadcastStageOf), and takes 64-lane tiles where its rows are few.
//
// Tiles are cut from each blocked index as full blocks followed by a remainder loop that
// uses blocks of one (for the vectorized index: scalar code), so every extent works,
// including 0 and 1 and symbolic ones. indices[0] is not blocked (except in the sliced
// variant): it stays the loop that the runtime splits across threads.
#include "compiler/TileContractions.h"

#include "compiler/AddedSums.h"
#include "compiler/IndexRange.h"
#include "compiler/Intrinsics.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>

namespace enc::ir {
namespace {

// Outer product: the tile's rows times its lanes; 8 rows of 32 lanes (or of two overlapping
// vectors: 28 columns of a stride-2 convolution's phase) or 16 of 16 keep 16 AVX-512 f32
// vectors of accumulators.
constexpr int64_t kAccumulatorLanes = 256;
constexpr int64_t kPairedRowsMax = 12; // outer product: rows over two short indices, at most (24 accumulators)
constexpr int64_t kSlicedRows = 4;   // sliced outer product: rows (a projection's grad_W with D / K = 4 per slice)
constexpr int64_t kGatheredRows = 8; // gathered outer product: rows (more rows share each gathered vector)
constexpr int64_t kLongReduction = 4096; // dot product: a reduction this long runs in chunks (see reductionChunks)
constexpr int64_t kChunkPositions = 1024; // ... of at least this many positions
constexpr int64_t kPackedMinLanes = 32;  // packed outer product: the packed index spans at least one full tile
constexpr int64_t kPackedPositions = 2048; // ... and the reduction at most this long (the copy, 32 lanes wide, stays in L2)
constexpr int64_t kPackedRowsMin = 6, kPackedRowsMax = 12; // ... rows per tile (of 32 lanes: 12 to 24 accumulators)
constexpr int64_t kDotTile = 4;  // dot product: outputs along each of two indices
constexpr int64_t kDotWholeMax = 3, kDotAccumulatorsMax = 18; // ... and a third index of up to 3 whole (see tileContraction)
constexpr int64_t kDotLanes = 16; // dot product: lanes along the reduction (one AVX-512 f32 vector)
constexpr int64_t kMinLanes = 8;  // the narrowest vector tile of a remainder (one AVX f32 vector)
constexpr int64_t kFarStore = 256;      // outer product: an output stride (elements) that makes stores along j scatter
constexpr int64_t kShortReduction = 64; // ... and a reduction short enough for those stores to dominate
constexpr int64_t kMinParallel = 16;    // parallelIndex, parallelRows: iterations a parallel loop should have
constexpr int64_t kMinParallelDot = 8;  // ... with dot-product tiles, whose iterations each stream the whole reduction
constexpr int64_t kParallelRows = 8;    // outer product with the parallel index as rows: its block
constexpr int64_t kParallelChunk = 64;  // ... and the most rows per parallel iteration (see parallelRows)
constexpr int64_t kAliasedStride = 1024;  // outer product: rows this many elements apart (or a multiple) alias in cache
constexpr int64_t kAliasedIterations = 4, kAliasedChunk = 256; // ... then parallel chunks of up to 256 rows, 4 to share
constexpr int64_t kAliasedRowBlocks = 8; // ... or, with another index as rows, at least 8 row blocks to share
constexpr int64_t kFewRows = 6, kWideLanes = 64; // outer product: rows this few take tiles this wide
constexpr int64_t kBroadcastStage = 16384; // outer product: a computed broadcast factor staged, elements at most (64 KiB of f32)
constexpr int64_t kBroadcastReuse = 64;    // ... when each element is read at least this often

// The AVX-512 vectors one row of a tile `width` lanes wide takes (at least one).
int64_t vectorsPerRow(int64_t width) { return std::max<int64_t>(1, width / kDotLanes); }

// The vectors per row that tiles of halving widths take for a remainder of r positions: one
// tile per power of two from kMinLanes up that r holds, and one more kMinLanes tile (masked or
// overlapping) for r % kMinLanes.
int64_t tierVectors(int64_t r) {
  int64_t vectors = r % kMinLanes ? vectorsPerRow(kMinLanes) : 0;
  for (int64_t width = kMinLanes; width <= r; width *= 2)
    if (r & width) vectors += vectorsPerRow(width);
  return vectors;
}

struct DotBlocking {
  std::vector<size_t> indices; // positions in Contraction::indices
  double fmasPerLoad = 0;
};

bool isClamp(const Expr &e) {
  return e->kind == ExprKind::Binary && e->binOp == BinOp::Min && e->args[0]->kind == ExprKind::Binary &&
         e->args[0]->binOp == BinOp::Max && isConst(e->args[0]->args[1], nullptr) && e->args[0]->args[1]->intValue == 0;
}

std::vector<Expr> loadsOf(const Expr &e) {
  std::vector<Expr> out;
  visit(e, [&](const Expr &n) {
    if (n->kind == ExprKind::Load) out.push_back(n);
    return true;
  });
  return out;
}

// Whether the blocked code generator can widen `body`: arithmetic, selects, casts, loads,
// abs and sqrt (no transcendental library calls, no random numbers, no general powers).
} // namespace

bool vectorizable(const Expr &body, bool allowReads) {
  return !anyNode(body, [&](const Expr &n) {
    if (n->kind == ExprKind::Call) return !intrinsicInfo(intrinsicOf(*n)).widens;
    if (n->kind == ExprKind::Binary && n->binOp == BinOp::Pow) {
      const Expr &p = n->args[1];
      double v = p->kind == ExprKind::IntImm ? static_cast<double>(p->intValue)
                                             : (p->kind == ExprKind::FloatImm ? p->floatValue : -1);
      return !(v == 1 || v == 2 || v == 3 || v == 0.5);
    }
    return n->kind == ExprKind::Reduce || (n->kind == ExprKind::Access && !allowReads);
  });
}

namespace {

// Whether v appears under an integer division or modulo (kept scalar-only in blocked code).
bool underDivMod(const Expr &e, const std::string &v) {
  return anyNode(e, [&](const Expr &n) {
    return n->kind == ExprKind::Binary && (n->binOp == BinOp::Div || n->binOp == BinOp::Mod) && n->type == Type::Int &&
           mentionsVar(n, v);
  });
}

// How a read's index moves along an index v: not at all, one element per step, a few
// elements per step (a strided convolution's input: up to kMaxVectorLoadStride, one wider
// vector load and a shuffle), or otherwise (a gather).
enum class Access { Uniform, Contiguous, SmallStride, Strided };

Access accessIn(const Expr &load, const std::string &v) {
  Expr ix = unclampedIndex(load->args[0]);
  if (!mentionsVar(ix, v)) return Access::Uniform;
  std::optional<int64_t> s = strideIn(ix, v);
  if (s && *s == 1) return Access::Contiguous;
  return s && *s >= 2 && *s <= kMaxVectorLoadStride ? Access::SmallStride : Access::Strided;
}

struct Dim {
  std::string name;
  Expr extent;
  int64_t block = 1; // 1: not blocked
  ForKind lane = ForKind::Unrolled;
  Expr offset = nullptr; // the first position of the index's range (a slice), or nullptr for 0
};

// min(e, 1) for e >= 0: 1 when e is positive, else 0 (a loop that runs once or not at all).
Expr atLeastOne(Expr e) { return binary(BinOp::Min, std::move(e), intImm(1)); }

struct Lane {
  std::string var;
  int64_t block;
  ForKind kind;
};

// Reads of a gathered outer product that move along the vectorized index j and the reduction
// only: each block of j copies them once into a local array laid out [reduction][lane], and
// the tile's rows read that with vector loads instead of gathering again for every row block.
struct Staging {
  std::string var;         // j
  std::vector<Expr> loads; // the reads (Load nodes of the body)
  int64_t positions = 0;   // the reduction's length (a constant: gathered tiles need a short one)

  // Stages `load` unless an equal read already is (the body may read it in several places).
  void add(const Expr &load) {
    if (std::none_of(loads.begin(), loads.end(), [&](const Expr &s) { return structurallyEqual(s, load); }))
      loads.push_back(load);
  }
};

// A long reduction cut into chunks that loop outside the tiles: the reduction indices before
// `split` entirely, and rvars[split] in `outer` chunks of `inner` positions. Each tile sums one
// chunk and adds it into the output (the first chunk stores), so the operands of a chunk stay
// in cache while every tile reads them.
struct ReductionChunks {
  size_t split = 0;
  int64_t inner = 0, outer = 0; // 0: no chunks
};

// Whether e reads the buffer `name`.
bool readsBuffer(const Expr &e, const std::string &name) {
  return anyNode(e, [&](const Expr &n) { return n->kind == ExprKind::Load && n->name == name; });
}

// Whether the sum or its epilogue reads the output it writes.
bool readsOutput(const Contraction &c) { return readsBuffer(c.body, c.output) || readsBuffer(c.epilogue, c.output); }

// `sum` plus `body` as a chain of accumulations: a sum of terms adds one term at a time, so
// each product is one multiply-add (sum + (p + q) cost a multiply, an add and a multiply-add
// per element), and a term's constant factor scales the factor that varies least across the
// tile (`spread`: how many values it takes per reduction step), not the product: Encoding's
// grad_X term -2 * (grad_A[k, i] * codewords[k, d]) scales grad_A's two vectors once per step
// instead of each of the 8 rows' products. Terms with a quotient stay as they are.
Expr accumulated(Expr sum, const Expr &body, const std::function<int64_t(const Expr &)> &spread) {
  for (auto [term, negated] : signedAddends(body)) {
    std::vector<Expr> factors = productFactors(term), moving;
    double scale = 1;
    bool quotient = false;
    for (const Expr &f : factors) {
      if (f->kind == ExprKind::FloatImm) scale *= f->floatValue;
      else if (f->kind == ExprKind::IntImm) scale *= static_cast<double>(f->intValue);
      else moving.push_back(f);
      quotient = quotient || (f->kind == ExprKind::Binary && f->binOp == BinOp::Div);
    }
    if (!quotient && !moving.empty()) {
      if (scale < 0) {
        negated = !negated;
        scale = -scale;
      }
      if (scale != 1) {
        auto least = std::min_element(moving.begin(), moving.end(),
                                      [&](const Expr &a, const Expr &b) { return spread(a) < spread(b); });
        *least = floatImm(scale) * *least;
      }
      term = product(moving);
    }
    sum = negated ? sum - term : sum + term;
  }
  return sum;
}

// The reduction position, row-major over the (constant-extent) reduction indices.
Expr reductionPositionOf(const Contraction &c) {
  Expr at = intImm(0);
  for (const ReduceVar &r : c.rvars) at = at * r.extent + indexVar(r.name);
  return at;
}

class Tiler {
public:
  Tiler(const Contraction &c, std::vector<Dim> dims, std::string dotVar, int64_t dotLanes, Staging staging = {},
        ReductionChunks chunks = {})
      : c_(c), dims_(std::move(dims)), dotVar_(std::move(dotVar)), dotLanes_(dotLanes), staging_(std::move(staging)),
        chunks_(chunks) {}

  // Dot product tiles that also store each output at `flatOut`, the transposed element of a
  // symmetric contraction (see symmetricTiles).
  Tiler &mirrored(Expr flatOut) {
    mirror_ = std::move(flatOut);
    return *this;
  }

  Stmt run() {
    ranges_[c_.indices[0].name] = c_.indices[0].extent;
    for (const ReduceVar &r : c_.rvars) ranges_[r.name] = r.extent;
    if (!chunks_.outer) return block(gen(0, {}, {}));
    const ReduceVar &r = c_.rvars[chunks_.split];
    ranges_[r.name + ".c"] = intImm(chunks_.outer);
    ranges_[r.name + ".i"] = intImm(chunks_.inner);
    std::map<std::string, Expr> subst = {{r.name, indexVar(r.name + ".c") * intImm(chunks_.inner) + indexVar(r.name + ".i")}};
    if (!ownChunkLoops_) return block(gen(0, subst, {}));
    Stmt s = chunkLoops(c_, chunks_, gen(0, subst, {}));
    if (plainSum()) return s;
    return block({s, epiloguePass()});
  }

  // The loops over the chunks of the reduction around `body`.
  static Stmt chunkLoops(const Contraction &c, ReductionChunks chunks, std::vector<Stmt> body) {
    const ReduceVar &r = c.rvars[chunks.split];
    Stmt s = forLoop(r.name + ".c", intImm(chunks.outer), ForKind::Serial, std::move(body));
    for (size_t i = chunks.split; i-- > 0;) s = forLoop(c.rvars[i].name, c.rvars[i].extent, ForKind::Serial, {s});
    return s;
  }

  // With chunks, the tiles for one chunk only: the caller puts them inside chunkLoops and
  // applies the epilogue after (symmetricTiles, whose tiles store outputs outside their own
  // dims and whose loop over row blocks runs inside the chunks).
  Tiler &insideChunkLoops() {
    ownChunkLoops_ = false;
    return *this;
  }

  // With chunks, outputs hold the sums once the last chunk is done: a pass over this parallel
  // iteration's outputs (dims) applies the epilogue to them (nothing for a plain sum).
  Stmt epiloguePassAlone() const { return plainSum() ? block({}) : epiloguePass(); }

private:
  const Contraction &c_;
  std::vector<Dim> dims_;
  std::string dotVar_; // the vectorized reduction index (dot product), or empty
  int64_t dotLanes_;
  Staging staging_;
  ReductionChunks chunks_;
  Expr mirror_; // the transposed output element's flat index, or nullptr
  bool ownChunkLoops_ = true;
  // The extent of each loop variable on the path gen() is building (set before it recurses),
  // for folding the bounds checks a tile's ranges decide.
  std::map<std::string, Expr> ranges_;

  bool plainSum() const { return c_.epilogue->kind == ExprKind::Var && c_.epilogue->name == "_acc"; }

  // With chunks, the outputs hold the sums when the last chunk is done: a pass over this
  // parallel iteration's outputs applies the epilogue to them.
  Stmt epiloguePass() const {
    std::map<std::string, Expr> subst;
    for (const Dim &d : dims_) {
      Expr v = indexVar(d.name + ".f");
      subst[d.name] = d.offset ? d.offset + v : v;
    }
    Expr flatOut = sub(c_.flatOut, subst);
    Expr value = substitute(sub(c_.epilogue, subst), [&](const std::string &name, VarKind kind) -> Expr {
      return kind == VarKind::Local && name == "_acc" ? load(c_.output, flatOut) : nullptr;
    });
    Stmt s = store(c_.output, flatOut, value, c_.loc);
    for (size_t i = dims_.size(); i-- > 0;) s = forLoop(dims_[i].name + ".f", dims_[i].extent, ForKind::Serial, {s});
    return s;
  }

  // Whether the loops over the chunks are at the reduction's first chunk.
  Expr firstChunk() const {
    Expr first = binary(BinOp::Eq, indexVar(c_.rvars[chunks_.split].name + ".c"), intImm(0));
    for (size_t i = 0; i < chunks_.split; ++i)
      first = binary(BinOp::And, binary(BinOp::Eq, indexVar(c_.rvars[i].name), intImm(0)), first);
    return first;
  }

  static std::string stageName(size_t m) { return "_stage" + std::to_string(m); }
  Expr reductionPosition() const { return reductionPositionOf(c_); }
  // The copies into the local arrays, for the block of j whose positions `subst` gives.
  std::vector<Stmt> stage(const std::map<std::string, Expr> &subst, const Dim &j) const {
    std::vector<Stmt> out;
    std::string lane = j.name + ".i";
    Expr at = reductionPosition() * intImm(j.block) + indexVar(lane);
    for (size_t m = 0; m < staging_.loads.size(); ++m) {
      out.push_back(alloc(stageName(m), staging_.positions * j.block));
      Stmt copy = forLoop(lane, intImm(j.block), ForKind::Vectorized,
                          {store(stageName(m), at, sub(staging_.loads[m], subst), SourceLoc{})});
      for (size_t i = c_.rvars.size(); i-- > 0;) copy = forLoop(c_.rvars[i].name, c_.rvars[i].extent, ForKind::Serial, {copy});
      out.push_back(copy);
    }
    return out;
  }
  // The body with the staged reads replaced by the local arrays (inside a full block of j).
  Expr stagedBody(const std::vector<Lane> &lanes) const {
    auto lane = std::find_if(lanes.begin(), lanes.end(), [&](const Lane &l) { return l.var == staging_.var + ".i"; });
    if (staging_.loads.empty() || lane == lanes.end()) return c_.body;
    Expr at = reductionPosition() * intImm(lane->block) + indexVar(lane->var);
    return mutate(c_.body, [&](const Expr &n) -> Expr {
      if (n->kind != ExprKind::Load) return nullptr;
      for (size_t m = 0; m < staging_.loads.size(); ++m)
        if (structurallyEqual(n, staging_.loads[m])) return load(stageName(m), at);
      return nullptr;
    });
  }

  // A loop over `var` (its extent recorded in ranges_) around what gen(k + 1, ...) builds.
  Stmt loop(const std::string &var, Expr extent, size_t k, const std::map<std::string, Expr> &subst,
            const std::vector<Lane> &lanes) {
    ranges_[var] = extent;
    return forLoop(var, extent, ForKind::Serial, gen(k + 1, subst, lanes));
  }

  // Whether the body bounds-checks an index computed from v (a select's condition or a clamp
  // mentions it): a padded convolution's input read along its rows.
  bool checksAlong(const std::string &v) const {
    return anyNode(c_.body, [&](const Expr &n) {
      return (n->kind == ExprKind::Select && mentionsVar(n->args[0], v)) ||
             (n->kind == ExprKind::Binary && (n->binOp == BinOp::Min || n->binOp == BinOp::Max) &&
              n->type == Type::Int && mentionsVar(n, v));
    });
  }

  // Loops over dims_[k...]: full blocks, then the remainder with blocks of one (a vectorized
  // index: vectorTiles). Where the body bounds-checks the rows' index and there are at least
  // three full blocks, the first and the last block run apart from the interior ones, whose
  // checks the ranges decide (tile() folds them away: each row of a packed tile broadcasts
  // its read unchecked).
  std::vector<Stmt> gen(size_t k, std::map<std::string, Expr> subst, std::vector<Lane> lanes) {
    if (k == dims_.size()) return {tile(subst, lanes)};
    const Dim &d = dims_[k];
    auto at = [&](Expr pos) { return d.offset ? d.offset + pos : pos; };
    if (d.block == 1) {
      subst[d.name] = at(indexVar(d.name));
      return {loop(d.name, d.extent, k, subst, lanes)};
    }
    if (d.lane == ForKind::Vectorized) return vectorTiles(k, d, subst, lanes);
    std::vector<Stmt> out;
    Expr b = intImm(d.block);
    Expr full = d.extent / b;
    auto l = lanes;
    l.push_back({d.name + ".i", d.block, d.lane});
    ranges_[d.name + ".i"] = b;
    // Blocks first, first + 1, ... of `count`, counted by `var`.
    auto blocks = [&](const std::string &var, Expr first, Expr count) {
      if (isZero(count)) return;
      auto s = subst;
      s[d.name] = at((indexVar(var) + first) * b + indexVar(d.name + ".i"));
      out.push_back(loop(var, count, k, s, l));
    };
    if (int64_t n = 0; isConst(full, &n) && n >= 3 && !d.offset && checksAlong(d.name)) {
      blocks(d.name + ".o", intImm(0), intImm(1));
      blocks(d.name + ".m", intImm(1), intImm(n - 2));
      blocks(d.name + ".e", intImm(n - 1), intImm(1));
    } else {
      blocks(d.name + ".o", intImm(0), full);
    }
    Expr rest = d.extent % b;
    if (!isZero(rest)) {
      subst[d.name] = at(full * b + indexVar(d.name + ".t"));
      out.push_back(loop(d.name + ".t", rest, k, subst, lanes));
    }
    return out;
  }

  // The vectorized index d, extent n: tiles of d.block lanes, then the rest in tiles of
  // half, a quarter ... of that width down to kMinLanes (56 columns: 32 + 16 + 8), then what
  // is left (n % kMinLanes) in one more kMinLanes tile that ends at n, overlapping the
  // previous one: its first columns are computed twice, with the same result, and stored
  // again, cheaper than one scalar tile per column. Where one overlapping tile of the next
  // width up covers the rest in fewer vectors than the tiers, it does (28 columns: 16 + one
  // 16-lane tile over 12..27). Only an extent below kMinLanes runs scalar.
  std::vector<Stmt> vectorTiles(size_t k, const Dim &d, const std::map<std::string, Expr> &subst,
                                const std::vector<Lane> &lanes) {
    auto at = [&](Expr pos) { return d.offset ? d.offset + pos : pos; };
    const Expr &n = d.extent;
    std::vector<Stmt> out;
    auto tileAt = [&](const std::string &loop, Expr count, Expr first, int64_t width) {
      if (isZero(count)) return;
      auto s = subst;
      auto l = lanes;
      s[d.name] = at(first + indexVar(d.name + ".i"));
      l.push_back({d.name + ".i", width, d.lane});
      ranges_[loop] = count;
      ranges_[d.name + ".i"] = intImm(width);
      Dim tiled = d;
      tiled.block = width;
      std::vector<Stmt> inner = d.name == staging_.var && !staging_.loads.empty() ? stage(s, tiled) : std::vector<Stmt>{};
      for (Stmt &st : gen(k + 1, s, l)) inner.push_back(std::move(st));
      out.push_back(forLoop(loop, count, ForKind::Serial, inner));
    };
    // Computing a column twice would read what the first pass stored.
    const bool overlap = !readsOutput(c_);
    // An extent between half a tile and a tile (28 columns in tiles of 32): one tile whose rows
    // are two overlapping vectors (0..15 and 12..27), each row's broadcast read serving both.
    if (int64_t nc = 0; overlap && isConst(n, &nc) && 2 * nc > d.block && nc < d.block && d.block / 2 >= kMinLanes &&
                        d.name != staging_.var) {
      const int64_t width = d.block / 2;
      auto s = subst;
      auto l = lanes;
      const std::string half = d.name + ".h", lane = d.name + ".i";
      s[d.name] = at(indexVar(half) * intImm(nc - width) + indexVar(lane));
      l.push_back({half, 2, ForKind::Unrolled});
      l.push_back({lane, width, d.lane});
      ranges_[half] = intImm(2);
      ranges_[lane] = intImm(width);
      return gen(k + 1, s, l);
    }
    // One overlapping tile instead of the tiers, where that takes fewer vectors per row: the
    // rest r of full tiles in one tile of the next width up from r, ending at n (28 columns in
    // tiles of 16: 16 + one 16-lane tile over 12..27, not 16 + 8 + 8).
    // A staged extent below one tile (28 channels in tiles of 32: each tile copies its own
    // lanes) takes two overlapping tiles of half the next width up (16 + 16 over 12..27).
    if (int64_t nc = 0; overlap && isConst(n, &nc) && nc > kMinLanes && nc % d.block != 0) {
      const int64_t r = nc % d.block, tiers = tierVectors(r);
      int64_t one = kMinLanes;
      while (one < r) one *= 2;
      if (nc > d.block && vectorsPerRow(one) < tiers) {
        tileAt(d.name + ".o", n / intImm(d.block), indexVar(d.name + ".o") * intImm(d.block), d.block);
        tileAt(d.name + ".l", intImm(1), n - intImm(one) + indexVar(d.name + ".l"), one);
        return out;
      }
      if (nc < d.block && one == d.block && 2 * vectorsPerRow(one / 2) < tiers) {
        tileAt(d.name + ".o" + std::to_string(one / 2), intImm(1), indexVar(d.name + ".o" + std::to_string(one / 2)),
               one / 2);
        tileAt(d.name + ".l", intImm(1), n - intImm(one / 2) + indexVar(d.name + ".l"), one / 2);
        return out;
      }
    }
    // Tier `width` starts where the wider tiles end (a multiple of 2 * width) and covers what
    // they leave, n % (2 * width), in tiles of width.
    int64_t last = d.block;
    for (int64_t width = d.block; width >= kMinLanes; width /= 2) {
      std::string loop = d.name + ".o" + (width == d.block ? "" : std::to_string(width));
      Expr w = intImm(width), twice = intImm(2 * width);
      if (width == d.block) tileAt(loop, n / w, indexVar(loop) * w, width);
      else tileAt(loop, n % twice / w, n / twice * twice + indexVar(loop) * w, width);
      last = width;
    }
    Expr w = intImm(last);
    if (overlap) tileAt(d.name + ".l", atLeastOne(n / w) * atLeastOne(n % w), n - w + indexVar(d.name + ".l"), last);
    Expr rest = overlap ? (intImm(1) - atLeastOne(n / w)) * n : n % w;
    if (!isZero(rest)) {
      auto s = subst;
      s[d.name] = at(n - rest + indexVar(d.name + ".t"));
      out.push_back(loop(d.name + ".t", rest, k, s, lanes));
    }
    return out;
  }

  static bool isZero(const Expr &e) {
    int64_t v;
    return isConst(e, &v) && v == 0;
  }

  Expr sub(const Expr &e, const std::map<std::string, Expr> &s) const {
    return substitute(e, [&](const std::string &name, VarKind kind) -> Expr {
      if (kind != VarKind::Index) return nullptr;
      auto it = s.find(name);
      return it == s.end() ? nullptr : it->second;
    });
  }

  // The loops over `lanes` (unrolled ones outside, the vectorized one innermost) around body.
  static Stmt wrap(std::vector<Lane> lanes, std::vector<Stmt> body) {
    std::stable_sort(lanes.begin(), lanes.end(),
                     [](const Lane &a, const Lane &b) { return a.kind == ForKind::Unrolled && b.kind != ForKind::Unrolled; });
    Stmt s = block(std::move(body));
    for (size_t i = lanes.size(); i-- > 0;) s = forLoop(lanes[i].var, intImm(lanes[i].block), lanes[i].kind, {s});
    return s;
  }

  Stmt tile(const std::map<std::string, Expr> &subst, std::vector<Lane> lanes) const {
    // Position of the tile element in the accumulator array, row-major over the lanes with
    // the vectorized one last (unit stride), in the order wrap() nests them.
    std::stable_sort(lanes.begin(), lanes.end(),
                     [](const Lane &a, const Lane &b) { return a.kind == ForKind::Unrolled && b.kind != ForKind::Unrolled; });
    Expr at = intImm(0);
    int64_t size = 1;
    for (const Lane &l : lanes) {
      at = at * intImm(l.block) + indexVar(l.var);
      size *= l.block;
    }
    Expr body = foldByIndexRanges(sub(stagedBody(lanes), subst), ranges_);
    Expr flatOut = sub(c_.flatOut, subst);
    auto epilogue = [&](Expr reduced) {
      Expr e = sub(c_.epilogue, subst);
      return substitute(e, [&](const std::string &name, VarKind kind) -> Expr {
        return kind == VarKind::Local && name == "_acc" ? reduced : nullptr;
      });
    };
    // How many values a factor of the body takes per reduction step: one per vector of the
    // lanes it moves along, one per row.
    auto spread = [&](const Expr &factor) {
      int64_t n = 1;
      for (const Lane &l : lanes)
        if (mentionsVar(factor, l.var)) n *= l.kind == ForKind::Vectorized ? vectorsPerRow(l.block) : l.block;
      return n;
    };
    auto accumulate = [&](const Expr &index, const Expr &value) {
      return store("_acc", index, accumulated(load("_acc", index), value, spread), SourceLoc{});
    };
    // Lanes where `keep` is false keep their partial sums (one masked multiply-add, where
    // adding a selected 0 took a multiply, a blend and an add).
    auto accumulateWhere = [&](const Expr &index, const Expr &keep, const Expr &value) {
      Expr sum = load("_acc", index);
      return store("_acc", index, select(keep, accumulated(sum, value, spread), sum), SourceLoc{});
    };
    // Reduction loops around `inner`, outermost first, skipping `skip` (and those the chunks
    // loop over outside the tile; of the split index, one chunk).
    auto reductionLoops = [&](std::vector<Stmt> inner, const std::string &skip) {
      Stmt s = block(std::move(inner));
      for (size_t i = c_.rvars.size(); i-- > 0;) {
        const ReduceVar &r = c_.rvars[i];
        if (r.name == skip || (chunks_.outer && i < chunks_.split)) continue;
        if (chunks_.outer && i == chunks_.split) s = forLoop(r.name + ".i", intImm(chunks_.inner), ForKind::Serial, {s});
        else s = forLoop(r.name, r.extent, ForKind::Serial, {s});
      }
      return s;
    };

    std::vector<Stmt> out;
    if (dotVar_.empty()) {
      out.push_back(alloc("_acc", size));
      out.push_back(wrap(lanes, {store("_acc", at, floatImm(0), SourceLoc{})}));
      out.push_back(reductionLoops({wrap(lanes, {accumulate(at, body)})}, ""));
      out.push_back(wrap(lanes, {store(c_.output, flatOut, epilogue(load("_acc", at)), c_.loc)}));
      return block(out);
    }

    // Dot product: dotLanes_ partial sums per output along the reduction index r.
    const ReduceVar *r = nullptr;
    for (const ReduceVar &v : c_.rvars)
      if (v.name == dotVar_) r = &v;
    std::string lane = dotVar_ + ".l";
    Expr L = intImm(dotLanes_);
    Expr atL = at * L + indexVar(lane);
    std::vector<Lane> all = lanes;
    all.push_back({lane, dotLanes_, ForKind::Vectorized});
    auto withR = [&](Expr value) {
      return substitute(body, [&](const std::string &name, VarKind kind) -> Expr {
        return kind == VarKind::Index && name == dotVar_ ? value : nullptr;
      });
    };
    out.push_back(alloc("_acc", size * dotLanes_));
    out.push_back(wrap(all, {store("_acc", atL, floatImm(0), SourceLoc{})}));
    std::vector<Stmt> inner;
    Expr full = r->extent / L;
    if (!isZero(full))
      inner.push_back(forLoop(dotVar_ + ".o", full, ForKind::Serial,
                              {wrap(all, {accumulate(atL, withR(indexVar(dotVar_ + ".o") * L + indexVar(lane)))})}));
    // The remainder after at least one full step: one more full-width step ending at n whose
    // lanes before the n % L positions left add 0 (its loads stay in bounds and contiguous;
    // counting those positions twice would be wrong), where the narrower steps below would
    // take two or more (W = 28: 16 + masked 16, not 16 + 8 + masked 8; W = 56 keeps 48 + 8,
    // whose 8-lane step needs no mask).
    const Expr &n = r->extent;
    int64_t nc = 0;
    const bool fewerSteps = !isConst(n, &nc) || nc < dotLanes_ || tierVectors(nc % dotLanes_) >= 2;
    const Expr big = fewerSteps ? atLeastOne(n / L) : intImm(0);
    Expr maskedFull = big * atLeastOne(n % L);
    if (!isZero(maskedFull)) {
      Expr keep = binary(BinOp::Ge, indexVar(lane), L - n % L);
      inner.push_back(forLoop(dotVar_ + ".m", maskedFull, ForKind::Serial,
                              {wrap(all, {accumulateWhere(atL, keep, withR(n - L + indexVar(lane)))})}));
    }
    // Shorter than one full step: tiles of half as many lanes (into the first lanes of the
    // partial sums) down to kMinLanes, then the same masked step at kMinLanes lanes. Only
    // n < kMinLanes runs scalar.
    int64_t last = dotLanes_;
    for (int64_t t = dotLanes_ / 2; t >= kMinLanes; t /= 2) {
      Expr done = n / intImm(2 * t) * intImm(2 * t);
      Expr count = (intImm(1) - big) * (n % intImm(2 * t) / intImm(t));
      last = t;
      if (isZero(count)) continue;
      std::string outer = dotVar_ + ".o" + std::to_string(t);
      std::vector<Lane> narrow = lanes;
      narrow.push_back({lane, t, ForKind::Vectorized});
      inner.push_back(forLoop(outer, count, ForKind::Serial,
                              {wrap(narrow, {accumulate(atL, withR(done + indexVar(outer) * intImm(t) + indexVar(lane)))})}));
    }
    Expr W = intImm(last), left = n % W;
    Expr masked = (intImm(1) - big) * atLeastOne(n / W) * atLeastOne(left);
    if (!isZero(masked)) {
      std::vector<Lane> narrow = lanes;
      narrow.push_back({lane, last, ForKind::Vectorized});
      Expr keep = binary(BinOp::Ge, indexVar(lane), W - left);
      inner.push_back(forLoop(dotVar_ + ".n", masked, ForKind::Serial,
                              {wrap(narrow, {accumulateWhere(atL, keep, withR(n - W + indexVar(lane)))})}));
    }
    Expr rest = (intImm(1) - atLeastOne(n / W)) * n;
    if (!isZero(rest))
      inner.push_back(forLoop(dotVar_ + ".t", rest, ForKind::Serial,
                              {wrap(lanes, {accumulate(at * L, withR(indexVar(dotVar_ + ".t")))})}));
    out.push_back(reductionLoops(inner, dotVar_));
    Expr sum = var("_sum", Type::Float, VarKind::Local);
    // With chunks each chunk's sum is added into the output (the epilogue comes after them).
    Expr result = chunks_.outer ? select(firstChunk(), floatImm(0), load(c_.output, flatOut)) + sum : epilogue(sum);
    std::vector<Stmt> reduce = {let("_sum", Type::Float, floatImm(0)),
                                forLoop(lane, L, ForKind::Vectorized, {assign("_sum", sum + load("_acc", atL))}),
                                store(c_.output, flatOut, result, c_.loc)};
    if (mirror_) {
      // With chunks the transposed element adds the chunk's sum into its own partial sum.
      Expr mirrorAt = sub(mirror_, subst);
      Expr mirrored = chunks_.outer ? select(firstChunk(), floatImm(0), load(c_.output, mirrorAt)) + sum : result;
      reduce.push_back(store(c_.output, mirrorAt, mirrored, c_.loc));
    }
    out.push_back(wrap(lanes, reduce));
    return block(out);
  }
};

std::optional<int64_t> constExtent(const Expr &e) {
  int64_t v;
  if (isConst(e, &v)) return v;
  return std::nullopt;
}

// A block for an index of extent e: `want`, or the extent when it is a smaller constant.
int64_t blockFor(const Expr &e, int64_t want) {
  std::optional<int64_t> n = constExtent(e);
  return n ? std::max<int64_t>(1, std::min(*n, want)) : want;
}

bool dependsOnReduction(const Expr &load, const std::vector<ReduceVar> &rvars) {
  for (const ReduceVar &r : rvars)
    if (mentionsVar(load->args[0], r.name)) return true;
  return false;
}

// Whether some reduction's extent depends on the output index v (a strided convolution's
// input gradient: kh.t < (3 - (j2.r + 1) % 2 + 1) / 2 after its stride phases). Such an index
// is never blocked: the reduction loops run outside a tile's lanes.
bool boundsReduction(const Contraction &c, const std::string &v) {
  return std::any_of(c.rvars.begin(), c.rvars.end(), [&](const ReduceVar &r) { return mentionsVar(r.extent, v); });
}

// Outer product: the output index (from `first` on) with the most unit-stride reads that
// move with the reduction, none of them strided; the last index wins ties. -1 if none.
int vectorIndexOf(const Contraction &c, const std::vector<Expr> &loads, size_t first) {
  int best = -1, bestScore = 0;
  for (size_t j = first; j < c.indices.size(); ++j) {
    const std::string &v = c.indices[j].name;
    std::optional<int64_t> n = constExtent(c.indices[j].extent);
    if ((n && *n < 8) || underDivMod(c.body, v) || underDivMod(c.epilogue, v) || boundsReduction(c, v)) continue;
    int score = 0; // unit-stride reads count twice, short-strided ones once
    bool strided = false;
    for (const Expr &l : loads) {
      if (!dependsOnReduction(l, c.rvars)) continue;
      Access a = accessIn(l, v);
      if (a == Access::Strided) strided = true;
      if (a == Access::Contiguous) score += 2;
      if (a == Access::SmallStride) score += 1;
    }
    if (!strided && score > 0 && score >= bestScore) {
      best = static_cast<int>(j);
      bestScore = score;
    }
  }
  return best;
}

// Dot product: the innermost reduction index along which every read that moves is
// unit-stride, or "" when there is none.
std::string dotIndexOf(const Contraction &c, const std::vector<Expr> &loads) {
  for (size_t i = c.rvars.size(); i-- > 0;) {
    const ReduceVar &r = c.rvars[i];
    std::optional<int64_t> n = constExtent(r.extent);
    if ((n && *n < kDotLanes) || underDivMod(c.body, r.name)) continue;
    int contiguous = 0;
    bool strided = false;
    for (const Expr &l : loads) {
      Access a = accessIn(l, r.name);
      if (a == Access::Strided) strided = true;
      if (a == Access::Contiguous) ++contiguous;
    }
    if (!strided && contiguous > 0) return r.name;
  }
  return "";
}

// The output indices (never indices[0]) a dot-product tile along `dot` blocks: one or two,
// each some moving read does not depend on, chosen for the most multiply-adds per vector
// load (the tile's accumulators over the loads one step of `dot` makes). GramMatrix: i and j,
// 16 per 8; Conv2d's weight gradient over kernel rows and columns only 9 per 10, which is why
// parallelIndex moves its output channels out of the parallel loop.
DotBlocking dotBlocking(const Contraction &c, const std::vector<Expr> &loads, const std::string &dot) {
  std::vector<Expr> moving;
  for (const Expr &l : loads)
    if (mentionsVar(l->args[0], dot)) moving.push_back(l);
  std::vector<size_t> candidates; // from the last index: it wins ties, as before scoring
  for (size_t i = c.indices.size(); i-- > 1;)
    if (!boundsReduction(c, c.indices[i].name))
      for (const Expr &l : moving)
        if (!mentionsVar(l->args[0], c.indices[i].name)) {
          candidates.push_back(i);
          break;
        }
  auto score = [&](const std::vector<size_t> &set) {
    double accumulators = 1, vectorLoads = 0;
    for (size_t i : set) accumulators *= static_cast<double>(blockFor(c.indices[i].extent, kDotTile));
    for (const Expr &l : moving) {
      double n = 1;
      for (size_t i : set)
        if (mentionsVar(l->args[0], c.indices[i].name)) n *= static_cast<double>(blockFor(c.indices[i].extent, kDotTile));
      vectorLoads += n;
    }
    return vectorLoads > 0 ? accumulators / vectorLoads : 0.0;
  };
  DotBlocking best;
  best.fmasPerLoad = moving.empty() ? 0.0 : 1.0 / static_cast<double>(moving.size());
  for (size_t a = 0; a < candidates.size(); ++a) {
    std::vector<std::vector<size_t>> sets = {{candidates[a]}};
    for (size_t b = a + 1; b < candidates.size(); ++b) sets.push_back({candidates[a], candidates[b]});
    for (const auto &set : sets)
      if (double v = score(set); v > best.fmasPerLoad + 1e-9 || (set.size() > best.indices.size() && v >= best.fmasPerLoad - 1e-9)) {
        best.indices = set;
        best.fmasPerLoad = v;
      }
  }
  return best;
}

// select(c, x * select(c, y, 0), 0) -> x * select(c, y, 0): a gradient's guard around a
// product one of whose factors is the same bounds-checked read (Conv2d's grad_X) already
// vanishes where c fails. The inner select is a masked load; the outer one would cost a
// compare and a blend per multiply-add.
Expr withoutRepeatedGuards(const Expr &e) {
  auto isZero = [](const Expr &z) {
    return (z->kind == ExprKind::FloatImm && z->floatValue == 0) || (z->kind == ExprKind::IntImm && z->intValue == 0);
  };
  return mutate(e, [&](const Expr &n) -> Expr {
    if (n->kind != ExprKind::Select || !isZero(n->args[2]) || n->args[1]->type != Type::Float) return nullptr;
    for (const Expr &f : productFactors(n->args[1]))
      if (f->kind == ExprKind::Select && isZero(f->args[2]) && structurallyEqual(f->args[0], n->args[0])) return n->args[1];
    return nullptr;
  });
}

// Index arithmetic the ranges decide (Conv2d's group o // (out_channels // groups) with one
// group) folds first, so reads that only seemed to depend on an index are independent of it;
// then a strided convolution's gradient splits into its stride phases.
Contraction foldedByRanges(const Contraction &contraction) {
  std::map<std::string, Expr> extents;
  for (const IndexVar &v : contraction.indices) extents[v.name] = v.extent;
  for (const ReduceVar &v : contraction.rvars) extents[v.name] = v.extent;
  Contraction c = contraction;
  c.body = foldByIndexRanges(c.body, extents);
  c.epilogue = foldByIndexRanges(c.epilogue, extents);
  c = splitStridePhases(c);
  c.body = withoutRepeatedGuards(c.body);
  return c;
}

// Whether some read that moves along `moving` (the vectorized or dot index) does not depend
// on indices[i]: blocking indices[i] reuses its vector loads.
bool reusedAcross(const Contraction &c, const std::vector<Expr> &loads, size_t i, const std::string &moving) {
  if (boundsReduction(c, c.indices[i].name)) return false; // never blocked
  return std::any_of(loads.begin(), loads.end(), [&](const Expr &l) {
    return dependsOnReduction(l, c.rvars) && mentionsVar(l->args[0], moving) && !mentionsVar(l->args[0], c.indices[i].name);
  });
}

// The parallel index as the tile's rows: iteration p of the parallel loop `<index>.p` computes
// the chunk of rows [p * chunk, min((p + 1) * chunk, n)) in blocks of `rows`.
struct ParallelRows {
  Dim dim;           // the chunk, blocked by rows
  int64_t chunk = 0; // rows per iteration of the parallel loop
};

// Chunks as long as kParallelChunk allows while leaving minIterations to share among threads
// (of a constant extent; a symbolic one takes chunks of one block). The tile loops over the
// rows of a chunk innermost, so each block of the other operand is loaded into cache once and
// then read by every row block of the chunk (Linear's gradients: a 64 KiB column panel of X
// per 64 rows of gY, where one block of 8 rows per parallel iteration streamed all of X).
// Nothing when even chunks of one block leave too few iterations.
std::optional<ParallelRows> parallelRows(const IndexVar &index, int64_t rows, int64_t minIterations = kMinParallel,
                                         int64_t maxChunk = kParallelChunk) {
  std::optional<int64_t> n = constExtent(index.extent);
  if (n && *n < minIterations * rows) return std::nullopt;
  int64_t chunk = rows;
  while (n && chunk * 2 <= maxChunk && *n >= minIterations * chunk * 2) chunk *= 2;
  Expr p = indexVar(index.name + ".p");
  Dim d{index.name,
        n && *n % chunk == 0 ? intImm(chunk) : binary(BinOp::Min, intImm(chunk), index.extent - p * intImm(chunk))};
  d.block = rows;
  d.offset = p * intImm(chunk);
  return ParallelRows{d, chunk};
}

// The kernel's parallel loop around a tile: over indices[0], or over its chunks of `rows`.
Stmt parallelLoop(const IndexVar &index, int64_t rows, Stmt tile) {
  if (rows == 1) return forLoop(index.name, index.extent, ForKind::Parallel, {std::move(tile)});
  return forLoop(index.name + ".p", (index.extent + intImm(rows - 1)) / intImm(rows), ForKind::Parallel, {std::move(tile)});
}

// Packed outer product: an output index p (not indices[0]) whose moving reads are all strided
// along it and depend on no other output index but indices[0] (a convolution's weights
// W[o, c, kh, kw] along o), while the other moving reads do not depend on it (X: broadcasts).
// Copied as [reduction][lane] once per block of p, those reads become vector loads, so the
// tile vectorizes along p whatever the spatial extents are. Returns p, or -1.
int packedIndexOf(const Contraction &c, const std::vector<Expr> &loads) {
  for (size_t p = 1; p < c.indices.size(); ++p) {
    const std::string &v = c.indices[p].name;
    std::optional<int64_t> n = constExtent(c.indices[p].extent);
    if (!n || *n < kPackedMinLanes || underDivMod(c.body, v) || underDivMod(c.epilogue, v) || boundsReduction(c, v))
      continue;
    bool packs = false, broadcasts = false, fits = true;
    for (const Expr &l : loads) {
      if (!dependsOnReduction(l, c.rvars)) continue;
      if (!mentionsVar(l->args[0], v)) {
        broadcasts = true;
        continue;
      }
      packs = true;
      fits = fits && accessIn(l, v) == Access::Strided;
      for (size_t i = 1; i < c.indices.size(); ++i)
        fits = fits && (i == p || !mentionsVar(l->args[0], c.indices[i].name));
    }
    if (packs && broadcasts && fits) return static_cast<int>(p);
  }
  return -1;
}

// Rows of a packed tile along an index of extent n: the largest divisor of n from
// kPackedRowsMin to kPackedRowsMax (28 columns: 7 rows, no remainder), else kGatheredRows.
int64_t packedRows(const Expr &extent) {
  std::optional<int64_t> n = constExtent(extent);
  if (!n) return kGatheredRows;
  for (int64_t r = kPackedRowsMax; r >= kPackedRowsMin; --r)
    if (*n % r == 0) return r;
  return std::min<int64_t>(*n, kGatheredRows);
}

// Chunks for a dot product's reduction of at least kLongReduction positions (a convolution's
// weight gradient sums over B * H * W): whole outer reduction indices, then the next one cut
// into the fewest positions that make a chunk of at least kChunkPositions (Conv2d at 56 x 56:
// b, then h in 2 chunks of 28 rows, 1568 positions; Encoding's codeword gradient over B * N:
// whole b). The raw sums are added into the output chunk by chunk, so only where neither the
// sum nor its epilogue reads the output, every extent is a constant and the dot index lies
// inside the chunk, and the parallel index has more than one iteration. Nothing otherwise.
ReductionChunks reductionChunks(const Contraction &c, const std::string &dot) {
  // A parallel index of one iteration hands its threads to the loop inside it, which must not
  // be a loop over chunks (they add into the same outputs).
  if (readsOutput(c) || constExtent(c.indices[0].extent) == std::optional<int64_t>(1)) return {};
  int64_t total = 1;
  std::vector<int64_t> extents;
  for (const ReduceVar &r : c.rvars) {
    std::optional<int64_t> n = constExtent(r.extent);
    if (!n) return {};
    extents.push_back(*n);
    total *= *n;
  }
  if (total < kLongReduction) return {};
  int64_t inside = 1; // positions of the indices after i
  bool dotInside = false;
  for (size_t i = c.rvars.size(); i-- > 0;) {
    if (c.rvars[i].name == dot || inside * extents[i] < kChunkPositions) { // the dot index is never cut
      dotInside = dotInside || c.rvars[i].name == dot;
      inside *= extents[i];
      continue;
    }
    if (!dotInside) return {};
    int64_t part = 1;
    while (inside * part < kChunkPositions || extents[i] % part != 0) ++part;
    return {i, part, extents[i] / part};
  }
  return {};
}
} // namespace

Expr unclampedIndex(const Expr &e) {
  if (isClamp(e)) return e->args[0]->args[0];
  // What range folding leaves of a clamp whose other side cannot bind: max(x, 0), min(x, n - 1).
  if (e->kind == ExprKind::Binary && e->type == Type::Int &&
      ((e->binOp == BinOp::Max && isConst(e->args[1], nullptr) && e->args[1]->intValue == 0) ||
       (e->binOp == BinOp::Min && isConst(e->args[1], nullptr))))
    return e->args[0];
  if (e->kind != ExprKind::Binary || e->type != Type::Int) return e;
  if (e->binOp != BinOp::Add && e->binOp != BinOp::Sub && e->binOp != BinOp::Mul) return e;
  return binary(e->binOp, unclampedIndex(e->args[0]), unclampedIndex(e->args[1]));
}

std::optional<int64_t> strideIn(const Expr &e, const std::string &v) {
  if (!mentionsVar(e, v)) return 0;
  if (e->kind == ExprKind::Var) return e->name == v ? 1 : 0;
  if (e->kind != ExprKind::Binary || e->type != Type::Int) return std::nullopt;
  std::optional<int64_t> a = strideIn(e->args[0], v), b = strideIn(e->args[1], v);
  if (!a || !b) return std::nullopt;
  int64_t k;
  switch (e->binOp) {
  case BinOp::Add: return *a + *b;
  case BinOp::Sub: return *a - *b;
  case BinOp::Mul:
    if (*a == 0 && isConst(e->args[0], &k)) return k * *b;
    if (*b == 0 && isConst(e->args[1], &k)) return k * *a;
    return std::nullopt;
  default: return std::nullopt;
  }
}

// Outer product with the parallel index as rows: the vector operands whose rows along the
// reduction lie a multiple of kAliasedStride elements apart (4 KiB of f32: Linear's X[b, i]
// over b at 1024 features, W[o, i] over o at 1024 inputs). Every row of a tile's column panel
// then falls into the same few sets of L1 and L2, so the panel, which each row block reads
// again, stays in neither (Linear's gradients ran 30 % slower per multiply-add at 1024
// features than at 1000). Such reads are copied once per block of j into a contiguous
// [reduction][lane] array (Staging), which the caller amortizes over parallel chunks of up to
// kAliasedChunk rows. Nothing when the reduction is not a constant of at most kPackedPositions.
Staging aliasedPanels(const Contraction &c, const std::vector<Expr> &loads, const std::string &j,
                      std::optional<int64_t> positions) {
  Staging staging{j, {}, positions ? *positions : 0};
  if (!positions || *positions > kPackedPositions) return staging;
  for (const Expr &l : loads) {
    if (!dependsOnReduction(l, c.rvars) || accessIn(l, j) != Access::Contiguous) continue;
    Expr ix = unclampedIndex(l->args[0]);
    std::optional<int64_t> nearest;
    bool known = true; // a stride that is no constant (a non-affine index): not this read
    for (const ReduceVar &r : c.rvars) {
      std::optional<int64_t> st = strideIn(ix, r.name);
      known = known && st;
      if (st && *st != 0 && (!nearest || std::abs(*st) < *nearest)) nearest = std::abs(*st);
    }
    if (known && nearest && *nearest % kAliasedStride == 0) staging.add(l);
  }
  return staging;
}

// Outer product with rows: a factor of the body computed from several reads of the rows and
// the reduction only (GramMatrix's gradient (gY[b, c, e] + gY[b, e, c]) * X[b, e, h, w], the sum
// of gY and its transpose) would be evaluated in scalar code per row and step and then
// broadcast: a load, an add and a shuffle beside each row's two multiply-adds. Such a factor is
// computed once per parallel iteration into a local [rows][reduction] array of at most
// kBroadcastStage elements (`stageBroadcasts` rewrites the body to read it; `precompute` fills
// it), when the other output indices give each element at least kBroadcastReuse uses.
struct BroadcastStage {
  Expr factor;      // the body's factor (nullptr: none)
  std::string rows; // the rows' index
  int64_t extent = 0, positions = 0;

  Expr at() const { return indexVar(rows) * intImm(positions); }
};

BroadcastStage broadcastStageOf(const Contraction &c, int rows, std::optional<int64_t> positions) {
  BroadcastStage none;
  std::optional<int64_t> extent = constExtent(c.indices[static_cast<size_t>(rows)].extent);
  if (!positions || !extent || *extent * *positions > kBroadcastStage) return none;
  int64_t reuse = 1; // the other output indices' positions (indices[0] aside)
  for (size_t i = 1; i < c.indices.size(); ++i) {
    if (static_cast<int>(i) == rows) continue;
    std::optional<int64_t> n = constExtent(c.indices[i].extent);
    if (!n) return none;
    reuse *= *n;
  }
  if (reuse < kBroadcastReuse) return none;
  const std::string &r = c.indices[static_cast<size_t>(rows)].name;
  auto allowed = [&](const std::string &v) {
    if (v == r || v == c.indices[0].name) return true;
    return std::any_of(c.rvars.begin(), c.rvars.end(), [&](const ReduceVar &rv) { return rv.name == v; });
  };
  for (auto [term, negated] : signedAddends(c.body))
    for (const Expr &f : productFactors(term)) {
      // (Not a factor that reads the output: the tiles may change it after the copy.)
      if (f->kind == ExprKind::Load || loadsOf(f).size() < 2 || !mentionsVar(f, r, VarKind::Index) ||
          readsBuffer(f, c.output) ||
          !dependsOnReduction(f, c.rvars) ||
          anyNode(f, [&](const Expr &n) { return n->kind == ExprKind::Var && n->varKind == VarKind::Index && !allowed(n->name); }))
        continue;
      return {f, r, *extent, *positions};
    }
  return none;
}

constexpr const char *kBroadcastArray = "_bcast";

// The contraction whose body reads the staged factor from the local array.
Contraction stageBroadcasts(const Contraction &c, const BroadcastStage &stage) {
  Expr position = reductionPositionOf(c);
  Contraction out = c;
  out.body = mutate(c.body, [&](const Expr &n) -> Expr {
    return structurallyEqual(n, stage.factor) ? load(kBroadcastArray, stage.at() + position) : nullptr;
  });
  return out;
}

// The loops that fill the array: rows outside, the reduction's positions inside.
Stmt precompute(const Contraction &c, const BroadcastStage &stage) {
  Stmt s = store(kBroadcastArray, stage.at() + reductionPositionOf(c), stage.factor, c.loc);
  for (size_t i = c.rvars.size(); i-- > 0;) s = forLoop(c.rvars[i].name, c.rvars[i].extent, ForKind::Serial, {s});
  s = forLoop(stage.rows, intImm(stage.extent), ForKind::Serial, {s});
  return block({alloc(kBroadcastArray, stage.extent * stage.positions), s});
}

// Whether products a and b have the same factors, in any order.
bool sameFactors(const Expr &a, const Expr &b) {
  std::vector<Expr> rest = productFactors(b);
  for (const Expr &f : productFactors(a)) {
    auto match = std::find_if(rest.begin(), rest.end(), [&](const Expr &g) { return structurallyEqual(f, g); });
    if (match == rest.end()) return false;
    rest.erase(match);
  }
  return rest.empty();
}

// Whether the contraction is symmetric in output indices i and j (GramMatrix's
// Y[b, c, e] = sum(h, w: X[b, c, h, w] * X[b, e, h, w]) in c and e): equal extents, and
// swapping them gives the same terms, each the same factors in any order, and the same
// epilogue. Its output then holds each value twice, at [.., c, e] and [.., e, c].
bool symmetricIn(const Contraction &c, size_t i, size_t j) {
  const std::string &a = c.indices[i].name, &b = c.indices[j].name;
  if (!structurallyEqual(c.indices[i].extent, c.indices[j].extent) || readsOutput(c)) return false;
  auto swapped = [&](const Expr &e) { return swapIndices(e, a, b); };
  if (!structurallyEqual(swapped(c.epilogue), c.epilogue) || structurallyEqual(swapped(c.flatOut), c.flatOut))
    return false;
  // Each term of the swapped body matches a term of its own, of the same sign and factors.
  auto rest = signedAddends(c.body);
  for (const auto &[term, negated] : signedAddends(swapped(c.body))) {
    auto match = std::find_if(rest.begin(), rest.end(), [&, &term = term, negated = negated](const auto &t) {
      return t.second == negated && sameFactors(t.first, term);
    });
    if (match == rest.end()) return false;
    rest.erase(match);
  }
  return rest.empty();
}

// Dot-product tiles of a contraction symmetric in indices i and j (positions in
// c.indices; dims[i - 1] and dims[j - 1] blocked alike): for each full block s of i, the
// diagonal tile [s, s], then the tiles of j after it, each also storing its transposed
// outputs; the square of both remainders last. About half the tiles of the full square
// (GramMatrix's forward: 528 of 1024 at 128 channels), as BLAS's syrk does.
Stmt symmetricTiles(const Contraction &c, const std::vector<Dim> &dims, size_t i, size_t j, const std::string &dot,
                    ReductionChunks chunks) {
  const Dim &row = dims[i - 1];
  const Expr &extent = row.extent;
  const int64_t size = row.block;
  const std::string s = row.name + ".s";
  Expr first = indexVar(s) * intImm(size), full = extent / intImm(size) * intImm(size);
  auto tiles = [&](Dim r, Dim col, Expr mirror) {
    std::vector<Dim> d = dims;
    d[i - 1] = std::move(r);
    d[j - 1] = std::move(col);
    Tiler t(c, d, dot, kDotLanes, {}, chunks);
    if (mirror) t.mirrored(std::move(mirror));
    return t.insideChunkLoops().run();
  };
  auto dim = [&](const Dim &like, Expr n, Expr offset, int64_t b) {
    Dim d = like;
    d.extent = std::move(n);
    d.offset = std::move(offset);
    d.block = b;
    return d;
  };
  const Dim &col = dims[j - 1];
  Expr mirror = swapIndices(c.flatOut, row.name, col.name);
  std::vector<Stmt> out;
  out.push_back(forLoop(s, extent / intImm(size), ForKind::Serial,
                        {tiles(dim(row, intImm(size), first, size), dim(col, intImm(size), first, size), nullptr),
                         tiles(dim(row, intImm(size), first, size),
                               dim(col, extent - first - intImm(size), first + intImm(size), size), mirror)}));
  Expr rest = extent % intImm(size);
  if (int64_t v = 0; !isConst(rest, &v) || v != 0)
    out.push_back(tiles(dim(row, rest, full, 1), dim(col, rest, full, 1), nullptr));
  if (!chunks.outer) return block(out);
  // With chunks, every row block's tiles inside each chunk (whose slice of the operands stays
  // in cache for all of them), then the epilogue once over every output, the transposed ones
  // included.
  return block({Tiler::chunkLoops(c, chunks, out), Tiler(c, dims, dot, kDotLanes, {}, chunks).epiloguePassAlone()});
}

Stmt tileContraction(const Contraction &contraction) {
  // A first index of one position (Inspiration's one target t < 1) is 0 throughout: the next
  // index becomes the parallel one, and the schedules see the indices that have extents.
  if (contraction.indices.size() >= 3 && constExtent(contraction.indices[0].extent) == std::optional<int64_t>(1)) {
    Contraction c = contraction;
    const std::string unit = c.indices[0].name;
    auto zero = [&](const Expr &e) { return substituteIndices(e, {{unit, intImm(0)}}); };
    c.body = zero(c.body);
    c.epilogue = zero(c.epilogue);
    c.flatOut = zero(c.flatOut);
    c.indices.erase(c.indices.begin());
    return tileContraction(c);
  }
  Contraction c = foldedByRanges(contraction);
  if (c.indices.empty() || c.rvars.empty() || !vectorizable(c.body) || !vectorizable(c.epilogue)) return nullptr;
  std::vector<Expr> loads = loadsOf(c.body);
  // One output index (a convolution's bias gradient, sum(b, h, w: grad_Y[b, o, h, w])): each
  // output a dot product along the reduction's unit-stride index, 16 lanes of partial sums.
  if (c.indices.size() == 1) {
    std::string dot = dotIndexOf(c, loads);
    return dot.empty() ? nullptr : parallelLoop(c.indices[0], 1, Tiler(c, {}, dot, kDotLanes).run());
  }

  auto vectorIndex = [&](size_t first) { return vectorIndexOf(c, loads, first); };
  // Rows: the index (other than indices[0] and the vectorized one) whose blocking reuses the
  // most vector loads (those that do not depend on it), or -1.
  auto rowIndex = [&](int best) {
    int rows = -1, rowScore = 0;
    for (size_t i = 1; i < c.indices.size(); ++i) {
      if (static_cast<int>(i) == best || boundsReduction(c, c.indices[i].name)) continue;
      int score = 0;
      for (const Expr &l : loads)
        if (dependsOnReduction(l, c.rvars) && accessIn(l, c.indices[static_cast<size_t>(best)].name) != Access::Uniform &&
            !mentionsVar(l->args[0], c.indices[i].name))
          ++score;
      if (score > rowScore) {
        rows = static_cast<int>(i);
        rowScore = score;
      }
    }
    return rows;
  };
  // Lanes per tile: 32 from 17 positions up (below 32, two overlapping vectors per row).
  auto vectorBlock = [](const Expr &extent) -> int64_t {
    std::optional<int64_t> n = constExtent(extent);
    return !n || *n > 16 ? 32 : (*n == 16 ? 16 : 8);
  };
  std::vector<Dim> dims;
  for (size_t i = 1; i < c.indices.size(); ++i) dims.push_back({c.indices[i].name, c.indices[i].extent});
  int best = vectorIndex(1);
  // When that index is far-strided in the output and the reduction is short, so that the
  // tile's scattered stores cost as much as its reduction (a projection's grad_X[b, d, i] =
  // sum(k: g[b, i, k] * W[k, d]) over K = 32 outputs, vectorized along d, stores each
  // element N floats from the previous one), vectorize along the output's unit-stride index
  // instead, gathering the reads that are strided along it.
  bool gathers = false;
  std::optional<int64_t> storeStride =
      best > 0 ? strideIn(unclampedIndex(c.flatOut), c.indices[static_cast<size_t>(best)].name) : std::nullopt;
  std::optional<int64_t> positions = 1; // the reduction's length, when it is a constant
  for (const ReduceVar &r : c.rvars) {
    std::optional<int64_t> n = constExtent(r.extent);
    positions = positions && n ? std::optional<int64_t>(*positions * *n) : std::nullopt;
  }
  if (best > 0 && positions && *positions <= kShortReduction && (!storeStride || std::abs(*storeStride) >= kFarStore))
    for (size_t j = c.indices.size(); j-- > 1;) {
      const std::string &v = c.indices[j].name;
      std::optional<int64_t> n = constExtent(c.indices[j].extent);
      if ((n && *n < 8) || underDivMod(c.body, v) || underDivMod(c.epilogue, v)) continue;
      if (strideIn(unclampedIndex(c.flatOut), v) == std::optional<int64_t>(1)) {
        best = static_cast<int>(j);
        gathers = true;
        break;
      }
    }
  // The outer product along an index whose extent is no multiple of a full tile (Conv2d's 56
  // columns: tiles of 32, 16 and 8 lanes, the narrow ones with a load per 8 multiply-adds; 28
  // columns of a strided convolution: 8 rows of two overlapping vectors, 4 columns computed
  // twice and a broadcast per 2 multiply-adds) packs the
  // weights instead and vectorizes along their output index, with the old vector index as rows.
  if (std::optional<int64_t> n = best > 0 ? constExtent(c.indices[static_cast<size_t>(best)].extent) : std::nullopt;
      !gathers && n && *n % 32 != 0 && positions && *positions <= kPackedPositions)
    if (int packed = packedIndexOf(c, loads); packed > 0) {
      Dim &j = dims[static_cast<size_t>(packed) - 1];
      j.block = vectorBlock(j.extent);
      j.lane = ForKind::Vectorized;
      Dim &rows = dims[static_cast<size_t>(best) - 1];
      rows.block = packedRows(rows.extent);
      Staging staging{j.name, {}, *positions};
      for (const Expr &l : loads)
        if (dependsOnReduction(l, c.rvars) && mentionsVar(l->args[0], j.name)) staging.add(l);
      // The blocks of the packed index outermost: each block's copy is read by every tile.
      std::rotate(dims.begin(), dims.begin() + (packed - 1), dims.begin() + packed);
      return parallelLoop(c.indices[0], 1, Tiler(c, dims, "", 0, staging).run());
    }
  if (best > 0) {
    Dim &j = dims[static_cast<size_t>(best) - 1];
    j.block = vectorBlock(j.extent);
    j.lane = ForKind::Vectorized;
    int rows = rowIndex(best), secondRows = -1;
    if (rows > 0)
      dims[static_cast<size_t>(rows) - 1].block =
          blockFor(dims[static_cast<size_t>(rows) - 1].extent, gathers ? kGatheredRows : kAccumulatorLanes / j.block);
    // Rows of a few positions (a kernel's 3 rows of taps) take a second index's positions too
    // (its 3 columns: 9 rows of 32 lanes, 18 accumulators), where both are constants whose
    // product stays within kPairedRowsMax.
    if (rows > 0 && !gathers)
      if (std::optional<int64_t> r = constExtent(c.indices[static_cast<size_t>(rows)].extent);
          r && *r * 2 < kAccumulatorLanes / j.block) {
        int second = -1;
        int64_t most = 0;
        for (size_t i = 1; i < c.indices.size(); ++i) {
          if (static_cast<int>(i) == best || static_cast<int>(i) == rows || boundsReduction(c, c.indices[i].name))
            continue;
          std::optional<int64_t> e = constExtent(c.indices[i].extent);
          if (e && *e > 1 && *r * *e <= kPairedRowsMax && *e > most) {
            second = static_cast<int>(i);
            most = *e;
          }
        }
        if (second > 0) dims[static_cast<size_t>(second) - 1].block = most;
        secondRows = second;
      }
    // Rows of a few positions and no second index to pair them with (the input gradient of a
    // convolution with 3 input channels: 3 rows of 32 lanes keep 6 accumulators, fewer
    // independent multiply-add chains than the FMA pipes need to stay busy): tiles of 64
    // lanes, at most kFewRows x 4 vectors.
    if (rows > 0 && !gathers && secondRows <= 0 && j.block == 32)
      if (std::optional<int64_t> r = constExtent(c.indices[static_cast<size_t>(rows)].extent),
          n = constExtent(j.extent);
          r && *r <= kFewRows && n && *n >= kWideLanes && !underDivMod(c.body, j.name)) {
        j.block = kWideLanes;
        dims[static_cast<size_t>(rows) - 1].block = *r;
      }
    // A broadcast factor computed from several reads (Gram's gY + gY^T): once per parallel
    // iteration into a local array (broadcastStageOf), which `staged` reads.
    BroadcastStage broadcasts = rows > 0 && !gathers ? broadcastStageOf(c, rows, positions) : BroadcastStage{};
    const Contraction staged = broadcasts.factor ? stageBroadcasts(c, broadcasts) : c;
    auto withBroadcasts = [&](Stmt tile) { return broadcasts.factor ? block({precompute(c, broadcasts), tile}) : tile; };
    // Rows of another index (Inspiration's Y[n, c, h, w] = sum(k: P[k, c] * X[n, k, h, w]), 8
    // channels c per tile): column panels whose rows alias in cache (X over k at 32 x 32 maps)
    // are copied once per block of j, with the row blocks innermost so that all of them read
    // the copy. With fewer than kAliasedRowBlocks row blocks (Encoding's 32 codewords: 4) the
    // copy cost more than it saved.
    if (rows > 0 && !gathers && secondRows <= 0)
      if (std::optional<int64_t> n = constExtent(c.indices[static_cast<size_t>(rows)].extent);
          n && *n >= kAliasedRowBlocks * dims[static_cast<size_t>(rows) - 1].block) {
        Staging aliased = aliasedPanels(staged, loadsOf(staged.body), c.indices[static_cast<size_t>(best)].name, positions);
        if (!aliased.loads.empty()) {
          std::rotate(dims.begin() + (rows - 1), dims.begin() + rows, dims.end());
          return parallelLoop(c.indices[0], 1, withBroadcasts(Tiler(staged, dims, "", 0, aliased).run()));
        }
      }
    // No other index to block as rows (Linear's gradients grad_weight[o, i] =
    // sum(b: gY[b, o] * X[b, i]) and grad_X[b, i] = sum(o: gY[b, o] * W[o, i])): the parallel
    // index becomes the rows when some moving read does not depend on it. Column panels whose
    // rows alias in cache are copied, in longer chunks so that more row blocks read each copy.
    if (rows <= 0 && !gathers && reusedAcross(c, loads, 0, c.indices[static_cast<size_t>(best)].name)) {
      Staging aliased = aliasedPanels(c, loads, c.indices[static_cast<size_t>(best)].name, positions);
      std::optional<ParallelRows> r = aliased.loads.empty()
                                          ? parallelRows(c.indices[0], kParallelRows)
                                          : parallelRows(c.indices[0], kParallelRows, kAliasedIterations, kAliasedChunk);
      if (r) {
        dims.push_back(r->dim); // after j: each block of j is copied once, then read by every row block
        return parallelLoop(c.indices[0], r->chunk, Tiler(c, dims, "", 0, aliased).run());
      }
    }
    // With gathers, the blocks of j loop outermost, so that the gathered rows of a block stay
    // in cache while every row block reads them.
    if (!gathers) return parallelLoop(c.indices[0], 1, withBroadcasts(Tiler(staged, dims, "", 0).run()));
    std::rotate(dims.begin(), dims.begin() + (best - 1), dims.begin() + best);
    // Reads strided along j that depend on nothing else of the output but the parallel index:
    // copied once per block of j (the reduction is short, so the copy is small).
    Staging staging{c.indices[static_cast<size_t>(best)].name, {}, *positions};
    for (const Expr &l : loads) {
      if (!dependsOnReduction(l, c.rvars) || accessIn(l, staging.var) != Access::Strided) continue;
      bool other = false;
      for (size_t i = 1; i < c.indices.size(); ++i)
        if (static_cast<int>(i) != best && mentionsVar(l->args[0], c.indices[i].name)) other = true;
      if (!other) staging.add(l);
    }
    return parallelLoop(c.indices[0], 1, Tiler(c, dims, "", 0, staging).run());
  }

  // Dot product along the innermost reduction index whose moving reads are all unit-stride.
  std::string dot = dotIndexOf(c, loads);
  if (!dot.empty()) {
    std::vector<size_t> blocked = dotBlocking(c, loads, dot).indices;
    for (size_t i : blocked) dims[i - 1].block = blockFor(dims[i - 1].extent, kDotTile);
    // A third index of a few positions that some moving read does not depend on (a kernel's
    // rows kh in Conv2d's weight gradient, besides o and kw) is taken whole, a block of 4
    // halved while the tile would exceed kDotAccumulatorsMax: 2 x 3 x 3 sums the whole window,
    // reading each row of grad_Y once per tile instead of once per kernel row (the weight
    // gradients of Conv2d and UpsampleConv2d 8-10 % faster than 4 x 3 with kh outside).
    bool whole = false;
    if (blocked.size() == 2)
      for (size_t i = 1; i < c.indices.size(); ++i) {
        std::optional<int64_t> e = constExtent(c.indices[i].extent);
        if (std::find(blocked.begin(), blocked.end(), i) != blocked.end() || !e || *e < 2 || *e > kDotWholeMax ||
            boundsReduction(c, c.indices[i].name) || !reusedAcross(c, loads, i, dot))
          continue;
        int64_t &b0 = dims[blocked[0] - 1].block, &b1 = dims[blocked[1] - 1].block;
        int64_t h0 = b0, h1 = b1; // the two blocks, halved from 4 to 2 while the tile is too large
        if (*e * h0 * h1 > kDotAccumulatorsMax && h0 == kDotTile) h0 = kDotTile / 2;
        if (*e * h0 * h1 > kDotAccumulatorsMax && h1 == kDotTile) h1 = kDotTile / 2;
        if (*e * h0 * h1 <= kDotAccumulatorsMax) {
          b0 = h0;
          b1 = h1;
          dims[i - 1].block = *e;
          whole = true;
        }
        break;
      }
    // A tile along one index only (Linear's Y[b, o] = sum(i: X[b, i] * W[o, i]): 4 outputs
    // per 5 loads) also blocks the parallel index when a moving read does not depend on it
    // (4 x 4 outputs per 8 loads).
    if (blocked.size() == 1 && reusedAcross(c, loads, 0, dot))
      if (std::optional<ParallelRows> r = parallelRows(c.indices[0], kDotTile, kMinParallelDot)) {
        dims.push_back(r->dim);
        return parallelLoop(c.indices[0], r->chunk, Tiler(c, dims, dot, kDotLanes, {}, reductionChunks(c, dot)).run());
      }
    // A contraction symmetric in the two blocked indices computes the tiles on and after the
    // diagonal only (with reduction chunks too: a diagonal tile computes its outputs itself,
    // and the others add each chunk into their transposed elements as into their own).
    if (blocked.size() == 2 && !whole && dims[blocked[0] - 1].block == dims[blocked[1] - 1].block &&
        symmetricIn(c, blocked[0], blocked[1]))
      return parallelLoop(c.indices[0], 1,
                          symmetricTiles(c, dims, std::min(blocked[0], blocked[1]), std::max(blocked[0], blocked[1]), dot,
                                         reductionChunks(c, dot)));
    // A long reduction in chunks, and the parallel index in groups inside them: the chunk of
    // the operand that does not depend on it (Conv2d's weight gradient: grad_Y's rows of all
    // output channels) is read from cache by the whole group.
    if (ReductionChunks chunks = reductionChunks(c, dot); chunks.outer) {
      std::optional<ParallelRows> group = parallelRows(c.indices[0], 1, kMinParallelDot);
      if (!group || group->chunk == 1) return parallelLoop(c.indices[0], 1, Tiler(c, dims, dot, kDotLanes, {}, chunks).run());
      dims.insert(dims.begin(), group->dim);
      return parallelLoop(c.indices[0], group->chunk, Tiler(c, dims, dot, kDotLanes, {}, chunks).run());
    }
    return parallelLoop(c.indices[0], 1, Tiler(c, dims, dot, kDotLanes).run());
  }

  // Sliced outer product: only the parallel index p0 = indices[0] vectorizes (a projection's
  // grad_W[k, d] = sum(b, i: g[b, i, k] * X[b, d, i]): k is unit-stride in g, d and i
  // are strided somewhere). Iteration p0 of the parallel loop then computes every p0 for a
  // slice of another index p, [p0 * P / P0, (p0 + 1) * P / P0) (the slices partition 0..P),
  // with the outer-product tile vectorized along indices[0] and blocked along p as rows.
  if (vectorIndex(0) != 0) return nullptr;
  int rows = rowIndex(0);
  size_t p = rows > 0 ? static_cast<size_t>(rows) : 1;
  const IndexVar &first = c.indices[0], &sliced = c.indices[p];
  Expr p0 = indexVar(first.name);
  Expr start = p0 * sliced.extent / first.extent;
  Expr end = (p0 + intImm(1)) * sliced.extent / first.extent;
  std::vector<Dim> slicedDims;
  Dim s{sliced.name, end - start};
  s.offset = start;
  if (rows > 0) s.block = kSlicedRows;
  slicedDims.push_back(s);
  for (size_t i = 0; i < c.indices.size(); ++i) {
    if (i == p) continue;
    slicedDims.push_back({c.indices[i].name, c.indices[i].extent});
    if (i == 0) {
      slicedDims.back().block = vectorBlock(first.extent);
      slicedDims.back().lane = ForKind::Vectorized;
    }
  }
  return parallelLoop(c.indices[0], 1, Tiler(c, slicedDims, "", 0).run());
}

size_t parallelIndex(const Contraction &contraction) {
  Contraction c = foldedByRanges(contraction);
  if (c.indices.size() < 3 || c.rvars.empty() || !vectorizable(c.body) || !vectorizable(c.epilogue)) return 0;
  std::vector<Expr> loads = loadsOf(c.body);
  if (vectorIndexOf(c, loads, 1) > 0) return 0; // an outer product: its rows already reuse loads
  std::string dot = dotIndexOf(c, loads);
  if (dot.empty()) return 0;
  double current = dotBlocking(c, loads, dot).fmasPerLoad;
  size_t best = 0;
  double bestScore = current;
  for (size_t p = 1; p < c.indices.size(); ++p) {
    // Enough iterations to share among threads, and still a dot product with p outermost.
    std::optional<int64_t> n = constExtent(c.indices[p].extent);
    if (n && *n < kMinParallel) continue;
    Contraction moved = c;
    std::rotate(moved.indices.begin(), moved.indices.begin() + static_cast<long>(p),
                moved.indices.begin() + static_cast<long>(p) + 1);
    if (vectorIndexOf(moved, loads, 1) > 0 || dotIndexOf(moved, loads) != dot) continue;
    double v = dotBlocking(moved, loads, dot).fmasPerLoad;
    if (v > bestScore * 1.25) {
      best = p;
      bestScore = v;
    }
  }
  return best;
}

} // namespace enc::ir
