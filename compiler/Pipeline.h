// The one place that says which passes run, in which order (see Pipeline.cpp).
//
// A layer goes through four sequences:
//   forward   checked layer + hyper-parameters -> fused tensor program      (encc emit --emit=ir)
//   backward  fused forward program -> fused backward tensor program         (--emit=grad)
//   sizes     a tensor program + input sizes -> every size a constant        (--size)
//   lower     a specialized program -> loop IR for one target                (--emit=loops)
// The runtime (Layer), encc emit, the REPL and the benchmarks all compile through a Pipeline,
// so what `encc emit` prints is what a run compiles.
//
// Every step is named. `print-after` (encc emit --print-after=PASS, ENC_PRINT_AFTER=PASS,...)
// prints the IR after each run of the named passes ("all": after every pass) to standard error;
// `verifyEach` (ENC_VERIFY_EACH=1, on in the tests) checks the IR after every pass
// (compiler/Verifier.h) and reports a broken invariant as an InternalError naming the pass;
// `afterTensorPass` hands each tensor-level step's program to a callback; `passTime`
// (ENC_TIME_PASSES=1 prints it) receives each step's wall time.
#pragma once

#include "compiler/Autodiff.h"
#include "compiler/GradientBuckets.h"
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"

#include <functional>
#include <iosfwd>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace enc::ir {

// One row of the pipeline's table: a pass of a sequence, when it runs and why it is there.
struct PassInfo {
  const char *sequence; // "forward", "backward", "sizes" or "lower"
  const char *name;     // what --print-after takes
  const char *when;     // the condition under which it runs; "" = always
  const char *why;
};

// How a layer's tensor programs are built.
struct BuildOptions {
  // false: no fusion, every statement keeps its own stored tensor (the benchmarks' baseline).
  bool fuse = true;
  // The layer runs in a process group of more than one process: its allreduces are kept as
  // collectives; otherwise they are dropped before anything else.
  bool distributed = false;
};

// How a specialized program becomes loop IR.
struct TargetOptions {
  Target target = Target::CPU;
  bool fuse = true;                 // splitting and kernel fusion, as BuildOptions::fuse
  ElementTypes types;               // storage types (16-bit storage; f64 layers)
  SplitReductionOptions split = {}; // GPU: how long reductions are cut
  GradientBuckets averageGradients; // data-parallel backward: the parameter gradients, in buckets
  bool allowTf32 = false;           // GPU: f32 contractions may multiply in TF32 on tensor cores
  std::map<std::string, std::string> tileShapes; // GPU: a tile shape by name per contraction's tensor (autotuned)
};

class Pipeline {
public:
  struct Instrumentation {
    std::set<std::string> printAfter; // pass names; "all" prints after every pass
    std::ostream *out = nullptr;      // where printed IR goes (nullptr: standard error)
    bool verifyEach = false;
    // Called with the tensor program after each tensor-level step (a backward step's: its
    // gradient's program), not after loop-level ones: how a test sees every pass's result.
    std::function<void(const char *sequence, const char *pass, const Program &)> afterTensorPass;
    // Called after each step with its wall time in seconds (the pass alone: not the verifier,
    // printing or afterTensorPass).
    std::function<void(const char *sequence, const char *pass, double seconds)> passTime;
    // ENC_PRINT_AFTER (comma-separated pass names), ENC_VERIFY_EACH=1 and ENC_TIME_PASSES=1
    // (each step's time to standard error, `# time PASS (SEQUENCE): SECONDS s`).
    static Instrumentation fromEnvironment();
  };

  Pipeline() : Pipeline(Instrumentation::fromEnvironment()) {}
  explicit Pipeline(Instrumentation instrumentation);

  // A checked layer with its hyper-parameters (sizes from inputs stay symbolic) as a fused
  // tensor program. `hyperParams` may leave some unset (encc emit without --set).
  Program forward(const LayerSymbols &layer, const std::map<std::string, Expr> &hyperParams,
                  const BuildOptions &options = {}) const;
  // The backward pass of `forward` (a program forward() built with the same arguments): the
  // layer's hand-written backward block if it has one, else the derived one; fused.
  Gradient backward(const LayerSymbols &layer, const Program &forward, const std::map<std::string, Expr> &hyperParams,
                    const BuildOptions &options = {}) const;
  // Input sizes (and anything else still symbolic) replaced by constants and folded.
  Program specializeSizes(const Program &p, const std::map<std::string, Expr> &sizes) const;
  // The loop program the code generators print for `target`. With every size a constant the
  // long reductions are split first; with symbolic sizes they are left whole.
  LoopProgram lower(const Program &specialized, const TargetOptions &target) const;

  // Every sequence's passes, in order: the table in Pipeline.cpp.
  static const std::vector<PassInfo> &passes();
  // Whether `name` is a pass of some sequence (or "all").
  static bool isPassName(const std::string &name);
  // The table as text, one sequence after another (encc emit --print-pipeline; the same text
  // stands in docs/compiler.md, and a test keeps the two equal).
  static std::string describe();

  class Run; // one run of one sequence (Pipeline.cpp)

private:
  Instrumentation instr_;
};

} // namespace enc::ir
