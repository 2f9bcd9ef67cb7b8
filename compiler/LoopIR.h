// The loop IR: one kernel per materialized tensor, as explicit loop nests over flat buffers.
// The same tensor program lowers to a CPU schedule (nested loops, the outermost split across
// threads) or a GPU schedule (a flattened output index spread over threads, or over warps
// whose lanes share a reduction).
#pragma once

#include "compiler/TensorProgram.h"

#include <memory>
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
};
const char *forKindName(ForKind k);

enum class StmtKind { Block, For, Let, Assign, Store, WarpReduce, IfLaneZero };

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
  SourceLoc loc;
};

struct LoopProgram {
  Target target = Target::CPU;
  Program tensors; // shapes of every buffer
  std::vector<Kernel> kernels;
};

LoopProgram lowerToLoops(const Program &p, Target target);

std::string printStmt(const Stmt &s, int indent = 0);
std::string printLoops(const LoopProgram &p);

} // namespace enc::ir
