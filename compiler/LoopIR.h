// The loop IR: one kernel per materialized tensor, as explicit loop nests over flat buffers.
// The same tensor program lowers to a CPU schedule (nested loops, the outermost split across
// threads) or a GPU schedule (a flattened output index spread over threads, or over warps
// whose lanes share a reduction).
#pragma once

#include "compiler/TensorProgram.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace enc::ir {

enum class Target { CPU, GPU };

enum class ForKind {
  Serial,
  Parallel,   // CPU: the runtime hands each thread a [begin, end) slice of this loop
  GpuThreads, // one iteration per thread (grid-stride)
  GpuWarps,   // one iteration per warp (grid-stride over warps)
  GpuLanes,   // iterations strided over the 32 lanes of a warp
  GpuTiles,   // one iteration per thread block, which computes a tile of a contraction
  GpuRows,    // one iteration per thread block (grid-stride over blocks): a row of the output
  GpuRowThreads, // iterations strided over the threads of a block: the elements of its row
  GpuBlockThreads, // each thread of the block runs exactly one iteration (the extent is the
                   // block size), so barriers inside are reached by every thread
  // CPU register blocking (compiler/TileContractions.cpp); the extent is a constant.
  Unrolled,   // the body is repeated once per iteration, the variable a constant in each copy
  Vectorized, // the body runs once on vectors of `extent` lanes: loads and stores that are
              // unit-stride in the variable become vector loads and stores, others gathers and
              // scatters; a float local declared outside the loop and assigned `s = s + x`
              // inside it receives the sum of x over the lanes
};
const char *forKindName(ForKind k);

// How a buffer's elements are stored (see ElementTypes below).
enum class ElemType : uint8_t { F16, BF16, F32, F64 };

// Alloc: an array of `value` (a constant) elements of the compute type (or `elem`), read and
// written like a buffer (Load / Store by name): private to one thread (on the CPU it lives in
// registers when every access is at a constant position), or, with `shared`, one per GPU
// thread block. With `fragment` it is an array of `value` tensor-core fragments of one warp
// (16 x 16 x `fragmentDepth`; elements `elem`, where f32 operands mean TF32: 16 x 16 x 8),
// read and written only by Matrix statements.
// If: the body runs where `value` (a bool) holds. Barrier: every thread of the GPU block (with
// `warp`, of the warp) waits until all reach it; shared writes before are visible after.
// Matrix: a warp-wide tensor-core operation, which every lane of the warp executes alike.
// AsyncCopy: the shared array `name`[index] = `value`, a Load of a kernel buffer or
// select(c, that Load, 0) (zeros where c fails), copied without passing through registers
// (cp.async); with `width` > 1 the `width` consecutive elements from there on, as one copy
// (16-bit elements need at least two: cp.async moves 4, 8 or 16 bytes); the copy joins the
// thread's open group. AsyncCommit closes the group.
// AsyncWait waits until at most `value` (a constant) of the thread's closed groups are in
// flight: only then has the thread's copy landed, and other threads see it after a barrier.
enum class StmtKind { Block, For, Let, Assign, Store, WarpReduce, IfLaneZero, Alloc, If, Barrier, Matrix, AsyncCopy,
                      AsyncCommit, AsyncWait };

enum class Fragment : uint8_t { None, MatrixA, MatrixB, Accumulator };
// The Matrix statements, on fragment arrays (name[index] names one fragment):
//   Fill:  name[index] = every element `value` (a constant)
//   Load:  name[index] = the 16 x 16 block of a shared array whose first element `value` (a
//          Load of the array at that position) is, rows (A: of m; B: of n) `ld` apart
//   Mma:   name[index] += a[i] * b[j], `value` being Load(a, i) * Load(b, j)
//   Store: the shared array `name`, from position `index` on, rows `ld` apart, = the
//          accumulator `value` (a Load of the fragment array at its index)
enum class MatrixOp : uint8_t { Fill, Load, Mma, Store };
constexpr int kFragmentSize = 16;     // m = n of every fragment, k of 16-bit ones
constexpr int kTf32FragmentDepth = 8; // k of TF32 ones

struct StmtNode;
using Stmt = std::shared_ptr<const StmtNode>;

struct StmtNode {
  StmtKind kind;
  std::string name;  // For: loop variable; Let/Assign/WarpReduce: local; Store: buffer
  ForKind forKind = ForKind::Serial;
  Expr value;        // For: extent; Let/Assign/Store: value
  Expr index;        // Store: flat index
  Type type = Type::Float; // Let: type of the local
  ReduceOp reduceOp = ReduceOp::Sum; // WarpReduce
  bool accumulate = false; // Store: buffer[index] += value (atomically on the GPU)
  bool shared = false;     // Alloc: one array per GPU thread block; Barrier: false with `warp`
  bool warp = false;       // Barrier: only the warp's lanes meet
  std::optional<ElemType> elem;         // Alloc: element type when not the compute type
  Fragment fragment = Fragment::None;   // Alloc
  int fragmentDepth = kFragmentSize;    // Alloc fragments: k of the multiply-adds they take part in
  MatrixOp matrixOp = MatrixOp::Fill;   // Matrix
  int64_t ld = 0;                       // Matrix Load / Store: elements between rows
  int64_t width = 1;                    // AsyncCopy: consecutive elements copied
  std::vector<Stmt> body;
  SourceLoc loc;     // the statement of the .enc file this came from
};

Stmt block(std::vector<Stmt> body);
Stmt forLoop(std::string var, Expr extent, ForKind kind, std::vector<Stmt> body);
Stmt let(std::string name, Type type, Expr value);
Stmt assign(std::string name, Expr value);
Stmt store(std::string buffer, Expr index, Expr value, SourceLoc loc, bool accumulate = false);
Stmt warpReduce(std::string local, ReduceOp op);
Stmt ifLaneZero(std::vector<Stmt> body);
Stmt alloc(std::string name, int64_t size);
Stmt sharedAlloc(std::string name, int64_t size);
Stmt ifThen(Expr cond, std::vector<Stmt> body);
Stmt barrier();
Stmt warpBarrier();
Stmt typedAlloc(std::string name, int64_t size, ElemType elem, bool shared);
Stmt fragmentAlloc(std::string name, int64_t count, Fragment fragment, ElemType elem, int depth);
Stmt matrixFill(std::string fragments, Expr index, Expr value);
Stmt matrixLoad(std::string fragments, Expr index, Expr sharedElement, int64_t ld);
Stmt matrixMma(std::string accumulators, Expr index, Expr product);
Stmt matrixStore(std::string shared, Expr position, Expr accumulator, int64_t ld);
Stmt asyncCopy(std::string shared, Expr index, Expr value, int64_t width = 1);
// An asynchronous copy's source taken apart: `value` is a Load (cond null) or
// select(cond, Load, 0) with the float constant 0; nullopt when it is neither.
struct AsyncCopySource {
  Expr cond; // null when the copy is unconditional
  Expr load;
};
std::optional<AsyncCopySource> asyncCopySource(const Expr &value);
Stmt asyncCommit();
Stmt asyncWait(int64_t inFlight);
// Lets binding each of `vars` (row-major, innermost last) from the flat position `flat`.
void decodeIndices(std::vector<Stmt> &out, const std::vector<IndexVar> &vars, const Expr &flat);
// The same statement under another name (loop variable, local or buffer).
Stmt withName(const Stmt &s, std::string name);

// ---- traversal (as IR.h's for expressions) ---------------------------------------------------
// Pre-order walk over statements: fn sees a statement before its body; false skips the body.
void visit(const Stmt &s, const std::function<bool(const Stmt &)> &fn);
// Pre-order walk over every expression of s and its body (a loop's extent, a let's, assign's or
// store's value, a store's index), statement by statement; false skips a node's operands.
void visitExprs(const Stmt &s, const std::function<bool(const Expr &)> &fn);
// Whether some statement of s (s itself or one in its body, at any depth) satisfies pred;
// false for a null s (a collective kernel has no body).
bool anyStmt(const Stmt &s, const std::function<bool(const Stmt &)> &pred);
// Post-order rebuild: fn sees each statement after its body was rebuilt and may return a
// replacement (nullptr keeps it). Unchanged statements are shared, not copied.
Stmt mutate(const Stmt &s, const std::function<Stmt(const Stmt &)> &fn);
// Every expression of s and its body rebuilt with fn, as mutate(Expr) applies it.
Stmt mutateExprs(const Stmt &s, const std::function<Expr(const Expr &)> &fn);
// Replaces variables by name in every expression of s (statement names are left alone).
Stmt substitute(const Stmt &s, const std::function<Expr(const std::string &name, VarKind kind)> &lookup);
// The statements of `body` with the bodies of nested blocks spliced in where the blocks stand.
std::vector<Stmt> withoutBlocks(const std::vector<Stmt> &body);

struct Kernel {
  std::string name;                 // C identifier
  std::string output;               // the tensor it writes
  std::vector<std::string> buffers; // output first, then every tensor it reads
  std::vector<SizeParam> params;    // size / hyper-parameter variables it reads
  Stmt body;
  ForKind launch = ForKind::Serial; // CPU: Parallel if the outer loop is split; GPU: GpuThreads or GpuWarps
  Expr launchExtent;                // iterations of the outermost loop (CPU) or of the flattened index (GPU)
  // A scatter kernel: it adds into its output (buffers[0]) at computed places. On the CPU
  // each thread adds into a zeroed private copy that is summed into the output afterwards.
  bool scatters = false;
  // Tensors it writes: buffers[0 .. outputs). More than one after fuseSiblingReductions
  // or fusePointwiseKernels.
  int outputs = 1;
  // An all-reduce over the process group, run by the runtime between kernels: buffers[0] is
  // the element-wise sum over every process of buffers[1]. `body` is empty.
  bool collective = false;
  // Collectives with one message number travel together (one all-reduce). Numbered when
  // lowered, from the tensor program alone, so that every process, whatever its sizes and
  // whatever later fusion moves between them, sends the same messages.
  int message = 0;
  // A gradient bucket (collective too; bucketGradients): buffers[0 .. outputs) are averaged
  // over the group in place. The runtime starts the all-reduce here and waits for it at the
  // end of the pass; `message` numbers the buckets.
  bool bucket = false;
  SourceLoc loc;
};

// How a buffer's elements are stored. Kernels compute in `compute` (f32 or f64); a buffer
// stored in a 16-bit type is converted on every load (exactly) and store (rounded to nearest
// even), so memory-bound layers move half the bytes while sums still accumulate in f32.
const char *elemTypeName(ElemType t); // "f16", "bf16", "f32", "f64"
int elemTypeBytes(ElemType t);

struct ElementTypes {
  ElemType compute = ElemType::F32;
  std::map<std::string, ElemType> stored; // buffers not stored in `compute`
  ElemType of(const std::string &buffer) const;
  bool f64() const { return compute == ElemType::F64; }
};

struct LoopProgram {
  Target target = Target::CPU;
  Program tensors; // shapes of every buffer
  std::vector<Kernel> kernels;
  ElementTypes types;
};

// One kernel per stored tensor (collectives: a body-less kernel each), in definition order.
// Run sinkCollectives first so that collectives of one stage share a message.
// How GPU contractions are tiled. With `tensorCores` (a 16-bit type, or f32 for TF32) they
// multiply on tensor cores, their factors rounded to that type, accumulating in f32.
// `tileShapes` names a tile shape (gpuTileShapes() by tileShapeName) for the contraction
// defining a tensor, overriding the choice by size (autotuning's results). `types` is the
// buffers' storage.
struct GpuTiling {
  std::optional<ElemType> tensorCores;
  std::map<std::string, std::string> tileShapes;
  ElementTypes types; // how buffers are stored: tiles copy the factors stored as their shared arrays
};
LoopProgram lowerToLoops(const Program &p, Target target, const GpuTiling &tiling = {});
// CPU: a kernel whose parallel loop has one iteration around a single loop makes that loop the
// parallel one, so the threads still have work to share (a batch of one).
LoopProgram moveParallelismInward(LoopProgram p);

// Whether a kernel declares tensor-core fragments.
bool usesFragments(const Kernel &k);
// Whether a kernel has asynchronous copies (AsyncCopy statements).
bool usesAsyncCopies(const Kernel &k);
// The tensors a kernel reads (buffers[outputs ..]) and writes (buffers[0 .. outputs)).
std::set<std::string> kernelReads(const Kernel &k);
std::set<std::string> kernelWrites(const Kernel &k);
// Whether two sets of buffer names have one in common (what one kernel writes and another reads).
bool meets(const std::set<std::string> &a, const std::set<std::string> &b);
// The most buffers a kernel that fusion merged from several writes (fuseSlabKernels,
// fuseSiblingReductions, fusePointwiseKernels stop merging into a kernel there). LLVM's optimizer
// takes time super-linear in a function's size, its alias analysis in the number of buffers: a
// chain of 200 Linear layers, merged whole into one kernel per pass, took 72 s to compile, in
// kernels of at most 16 outputs 2 s, and their repeats compile once (bench/RESULTS.md).
inline constexpr int kMaxMergedOutputs = 16;
// `merged` (a body doing the work of `a` and then `b`) with the interface of both: a's
// outputs, b's outputs, then every tensor either reads (a's, then b's others, each in name
// order); b's parameters added to a's.
Kernel mergedInterface(Kernel merged, const Kernel &a, const Kernel &b);
// The interface of kernels merged one after another into the first, as mergedInterface gives it
// merge by merge, kept as they join: the thousandth kernel to join costs what it adds, not what
// the kernels before it read.
class MergedInterface {
public:
  explicit MergedInterface(const Kernel &first);
  void add(const Kernel &b);
  const std::set<std::string> &reads() const { return reads_; }
  const std::set<std::string> &writes() const { return writes_; }
  int outputs() const { return static_cast<int>(outputs_.size()); }
  // k's buffers, outputs and parameters set to the merged kernel's.
  void applyTo(Kernel &k) const;

private:
  std::vector<std::string> outputs_;
  std::set<std::string> writes_, reads_;
  std::set<std::string> lastReads_; // what the last kernel to join added to reads_
  std::vector<SizeParam> params_;
  std::set<std::string> paramNames_;
};

// Merges reduction kernels over the same output and reduction domains (GPU warp reductions,
// CPU plain reduction loops) into one kernel with an accumulator each, when no kernel between
// them produces what the later one reads: sibling reductions (the batch-norm gradient's sums
// over dY and X) then read their inputs in one pass. See FuseSiblingReductions.cpp.
LoopProgram fuseSiblingReductions(LoopProgram p);
// GPU: a pointwise kernel over a warp reduction's outputs that reads them only at its own
// position moves into the reduction's lane-0 epilogue (batch norm's mu, var and running
// statistics: one launch instead of five). See FuseEpilogues.cpp.
LoopProgram fuseReductionEpilogues(const LoopProgram &p);
// Pointwise kernels whose loop nests are equal level by level become one kernel with an output
// each, when none reads another's output at any position but the one the same iteration
// stores (an optimizer step: one kernel). See FusePointwiseKernels.cpp.
LoopProgram fusePointwiseKernels(LoopProgram p);
// CPU: neighbour kernels whose bodies are parallel loops of one extent, each iteration touching
// only its own slab of what one writes and the other reads, become one kernel running both
// bodies per iteration (softmax's max, sum and quotient). See FuseSlabKernels.cpp.
LoopProgram fuseSlabKernels(LoopProgram p);


std::string printStmt(const Stmt &s, int indent = 0);
std::string printLoops(const LoopProgram &p);

} // namespace enc::ir
