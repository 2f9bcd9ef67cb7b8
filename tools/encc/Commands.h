// The subcommands of encc, shared by the command line (main.cpp) and the REPL (Repl.cpp).
#pragma once

#include "dsl/Sema.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Tensor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace enc::cli {

// NAME=VALUE pairs from repeated options; `option` names them in errors ("--set").
std::map<std::string, std::string> splitPairs(const std::vector<std::string> &items, const char *option);
// Output paths, checked before a run (OutputPaths.cpp). `option` names them in errors ("--out").
// Creates `dir` and its parents; enc::Error naming the path when it cannot.
void makeOutputDirectory(const std::string &option, const std::string &dir);
// enc::Error unless `path` could be written as a file: its directory exists, it is not one.
void checkOutputFile(const std::string &option, const std::string &path);
// The shipped layers when `file` is empty.
std::shared_ptr<const Library> loadLibrary(const std::string &file);
DType parseDTypeOption(const std::string &s);
// "2,3,4": uniform in [-1, 1), from the seed and the tensor's name.
Tensor randomTensor(const std::string &dims, DType dtype, uint64_t seed, const std::string &name);
// The same values for a shape given as such (rank 0 included, which "random:" cannot spell).
Tensor randomTensor(const Shape &shape, DType dtype, uint64_t seed, const std::string &name);
// "min ...  max ...  mean ...", or "no elements" for an empty tensor (whose min and max do not exist)
std::string summary(const Tensor &t);

int runCheck(const std::vector<std::string> &files);

struct EmitOptions {
  std::string kind = "ir";
  std::string file;
  std::string layer;
  std::vector<std::string> sets;
  std::string arch = "sm_90";
  std::string target = "cpu";
  std::string dtype = "f32";
  std::string mode = "train";
  std::vector<std::string> sizes; // NAME=N: input sizes fixed as at run time
  bool backward = false;          // the kernels of the backward pass
  bool distributed = false;       // as run in a process group: allreduce(...) kept as collectives
  bool dataParallel = false;      // --backward: parameter gradients averaged in buckets (implies distributed)
  bool allowTf32 = false;         // GPU f32 contractions on tensor cores in TF32
  std::vector<std::string> printAfter; // pass names (or "all"): the IR after them, to standard error
  bool printPipeline = false;          // the pass sequences instead of a layer
};
// One layer at the stage o.kind (not "ast").
std::string emitOne(const EmitOptions &o, const Library &lib, const LayerSymbols &layer);
int runEmit(const EmitOptions &o);

struct EvalOptions {
  std::string file, layer, dtype = "f32", device = "auto", mode = "train", out;
  bool deviceGiven = false; // --device named: "auto" then says when it falls back to the CPU
  bool allowTf32 = false;   // LayerOptions::allowTf32
  uint64_t seed = 0;
  std::vector<std::string> sets, inputs, params, grads;
  std::string loadState, saveState; // safetensors files: read before --param, written after the passes
  bool partialState = false;         // loadState sets the keys file and layer share (torch's strict=False)
};
// The Layer and inputs an eval or bench of o.layer runs with (the device chosen, parameters
// and inputs read or drawn).
struct PreparedRun {
  std::unique_ptr<Layer> layer;
  std::map<std::string, Tensor> inputs;
  DType dtype = DType::F32;
};
PreparedRun prepareRun(const std::shared_ptr<const Library> &lib, const EvalOptions &o);
// An output gradient from NAME=FILE.npy or NAME=random:D0,D1,...
Tensor gradientSeed(const std::string &name, const std::string &spec, const EvalOptions &o, DType dtype);

struct EvalResult {
  std::map<std::string, Tensor> outputs, params, grads; // on the host; grads only with o.grads
};
// Runs o.layer of `lib` as `encc eval` does (o.out and o.file are not used; o.saveState is written).
// randomGrads: backward too, the outputs o.grads does not name seeded with random gradients of
// their shapes (rank 0 included).
EvalResult evalLayer(const std::shared_ptr<const Library> &lib, const EvalOptions &o, bool randomGrads = false);
int runEval(const EvalOptions &o);

// encc bench: o.layer's passes timed on one Layer instance, inputs already on its device, the
// device synchronized around each pass. Output gradients are random unless o.grads names them.
struct BenchResult {
  std::string device;                         // "cpu" or the GPU's name
  std::vector<double> forwardMs, backwardMs;  // one per timed run, sorted ascending
  int64_t tensorBytes = 0;                    // inputs and outputs of one forward
};
BenchResult benchLayer(const std::shared_ptr<const Library> &lib, const EvalOptions &o, int runs, bool backward);
// "forward median 1.234 ms (min 1.200), backward ..., N MB in and out: X GB/s"
std::string benchSummary(const BenchResult &r, bool backward);
int runBench(const EvalOptions &o, int runs, bool backward);

int runCache(const std::string &action);

// The interactive loop of `encc repl`: reads from stdin (line editing and history on a
// terminal), writes to stdout and stderr. Returns the exit status.
int runRepl(const std::string &file);

struct LaunchOptions {
  int processes = 0;       // on this machine
  int nodes = 1;           // machines, each running its own encc launch
  int nodeRank = 0;        // this machine's place among them
  std::string masterAddr = "127.0.0.1";
  int masterPort = 0;      // 0: a free port (one machine only)
  int graceSeconds = 30;   // after one rank fails, before the rest are killed
  int timeoutSeconds = 0;  // ENC_DIST_TIMEOUT for the ranks (0: leave it as it is)
  std::string backend;     // ENC_DIST_BACKEND for the ranks ("": leave it as it is)
  std::vector<std::string> command;
};
// encc launch: the command in o.processes processes forming one group; the exit status of
// the first rank that failed, else 0.
int runLaunch(LaunchOptions o);

} // namespace enc::cli
