// The loop IR: one kernel per materialized tensor, as explicit loop nests over flat buffers.
// The same tensor program lowers to a CPU schedule (nested loops, the outermost split across
// threads) or a GPU schedule (a flattened output index spread over threads, or over warps
// whose lanes share a reduction).
#pragma once

#include "compiler/TensorProgram.h"

#include <functional>
#include <map>
#include <memory>
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

// Alloc: a local float array of `value` (a constant) elements, read and written like a
// buffer (Load / Store by name): private to one thread (on the CPU it lives in registers when
// every access is at a constant position), or, with `shared`, one per GPU thread block.
// If: the body runs where `value` (a bool) holds. Barrier: every thread of the GPU block waits
// until all reach it (shared arrays written before are visible after).
enum class StmtKind { Block, For, Let, Assign, Store, WarpReduce, IfLaneZero, Alloc, If, Barrier };

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
  bool shared = false;     // Alloc: one array per GPU thread block
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
// The same statement under another name (loop variable, local or buffer).
Stmt withName(const Stmt &s, std::string name);

// ---- traversal (as IR.h's for expressions) ---------------------------------------------------
// Pre-order walk over statements: fn sees a statement before its body; false skips the body.
void visit(const Stmt &s, const std::function<bool(const Stmt &)> &fn);
// Pre-order walk over every expression of s and its body (a loop's extent, a let's, assign's or
// store's value, a store's index), statement by statement; false skips a node's operands.
void visitExprs(const Stmt &s, const std::function<bool(const Expr &)> &fn);
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
  // Tensors it writes: buffers[0 .. outputs). More than one after fuseSiblingReductions.
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
enum class ElemType : uint8_t { F16, BF16, F32, F64 };
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
LoopProgram lowerToLoops(const Program &p, Target target);
// CPU: a kernel whose parallel loop has one iteration around a single loop makes that loop the
// parallel one, so the threads still have work to share (a batch of one).
LoopProgram moveParallelismInward(const LoopProgram &p);

// The tensors a kernel reads (buffers[outputs ..]) and writes (buffers[0 .. outputs)).
std::set<std::string> kernelReads(const Kernel &k);
std::set<std::string> kernelWrites(const Kernel &k);
// `merged` (a body doing the work of `a` and then `b`) with the interface of both: a's
// outputs, b's outputs, then every tensor either reads; b's parameters added to a's.
Kernel mergedInterface(Kernel merged, const Kernel &a, const Kernel &b);

// Merges reduction kernels over the same output and reduction domains (GPU warp reductions,
// CPU plain reduction loops) into one kernel with an accumulator each, when no kernel between
// them produces what the later one reads: sibling reductions (the batch-norm gradient's sums
// over dY and X) then read their inputs in one pass. See FuseSiblingReductions.cpp.
LoopProgram fuseSiblingReductions(const LoopProgram &p);
// GPU: a pointwise kernel over a warp reduction's outputs that reads them only at its own
// position moves into the reduction's lane-0 epilogue (batch norm's mu, var and running
// statistics: one launch instead of five). See FuseEpilogues.cpp.
LoopProgram fuseReductionEpilogues(const LoopProgram &p);


std::string printStmt(const Stmt &s, int indent = 0);
std::string printLoops(const LoopProgram &p);

} // namespace enc::ir
