// encc: the command line of the encc compiler and runtime.
#include "tools/encc/Commands.h"

#include "support/Error.h"
#include "support/InternalError.h"
#include "support/Suggest.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iostream>

using namespace enc;
using namespace enc::cli;

namespace {
constexpr const char *kVersion = "0.1.0";
// An internal compiler error exits with EX_SOFTWARE (sysexits.h), apart from a user's errors (1).
constexpr int kInternalErrorExit = 70;
} // namespace

int main(int argc, char **argv) {
  CLI::App app{"encc: a compiler and runtime for neural-network layers written in the .enc language"};
  app.set_version_flag("--version", fmt::format("encc {}", kVersion));
  app.require_subcommand(1);

  std::vector<std::string> checkFiles;
  auto *check = app.add_subcommand("check", "Check .enc files and print diagnostics (exit status 1 on errors)");
  check->add_option("files", checkFiles, "the .enc files")->required();

  EmitOptions emit;
  auto *emitCmd = app.add_subcommand("emit", "Print a layer at one compilation stage");
  emitCmd->add_option("--emit", emit.kind, "stage: ast, ir, grad, loops, cuda, ptx or llvm")->capture_default_str();
  emitCmd->add_option("file", emit.file, "a .enc file (default: the shipped layer library)");
  emitCmd->add_option("--layer", emit.layer, "the layer to print (default: every layer of the file)");
  emitCmd->add_option("--set", emit.sets, "a hyper-parameter value, NAME=VALUE (repeatable)");
  emitCmd->add_option("--arch", emit.arch, "GPU architecture for --emit=ptx")->capture_default_str();
  emitCmd->add_option("--target", emit.target, "schedule shown by --emit=loops: cpu or gpu")->capture_default_str();
  emitCmd->add_option("--dtype", emit.dtype, "element type of generated code: f32, f64, or f16/bf16 (f32 arithmetic, inputs and outputs stored in 16 bits)")->capture_default_str();
  emitCmd->add_option("--mode", emit.mode, "train or eval: the pass to show")->capture_default_str();
  emitCmd->add_option("--size", emit.sizes, "an input size, NAME=N (repeatable): fixes it as a run would, so GPU code shows split reductions");
  emitCmd->add_option("--print-after", emit.printAfter,
                      "print the IR after each run of this pass to standard error (repeatable; 'all': every pass)")
      ->delimiter(',');
  emitCmd->add_flag("--print-pipeline", emit.printPipeline, "list the compiler's pass sequences and exit");
  emitCmd->add_flag("--backward", emit.backward, "show the backward pass's kernels (loops, cuda, ptx, llvm)");
  emitCmd->add_flag("--distributed", emit.distributed,
                    "as the layer runs in a group of several processes: allreduce(...) as collectives");
  emitCmd->add_flag("--data-parallel", emit.dataParallel,
                    "with --backward: as data-parallel training runs it, parameter gradients averaged in buckets "
                    "(implies --distributed)");
  const char *tf32Help = "GPU: f32 contractions may multiply on tensor cores in TF32 (10 fraction bits), as torch's "
                         "allow_tf32; off by default (ENC_ALLOW_TF32=1 turns it on too)";
  emitCmd->add_flag("--allow-tf32", emit.allowTf32, tf32Help);

  EvalOptions eval;
  auto *evalCmd = app.add_subcommand("eval", "Run a layer on .npy inputs and write .npy outputs");
  evalCmd->add_option("file", eval.file, "a .enc file (default: the shipped layer library)");
  evalCmd->add_option("--layer", eval.layer, "the layer to run")->required();
  evalCmd->add_option("--set", eval.sets, "a hyper-parameter value, NAME=VALUE (repeatable)");
  evalCmd->add_option("--dtype", eval.dtype, "f32, f64, f16 or bf16 (f16/bf16: f32 arithmetic and parameters, inputs, outputs and gradients in 16 bits)")->capture_default_str();
  evalCmd->add_flag("--allow-tf32", eval.allowTf32, tf32Help);
  evalCmd->add_option("--device", eval.device, "auto (the GPU if there is one), cpu or cuda")->capture_default_str();
  evalCmd->add_option("--mode", eval.mode, "train or eval")->capture_default_str();
  // Checked: CLI11 reads "-1" into the unsigned seed as 2^64 - 1.
  evalCmd->add_option("--seed", eval.seed, "seed of parameter initialization")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string &s) { return s.starts_with('-') ? "the seed is a non-negative integer; got " + s : ""; },
          ""));
  evalCmd->add_option("--input", eval.inputs, "an input, NAME=FILE.npy or NAME=random:D0,D1,... (repeatable)");
  auto *loadStateOption = evalCmd->add_option("--load-state", eval.loadState,
                      "parameters and buffers from a safetensors file (torch state_dict names; before --param)");
  evalCmd->add_flag("--partial-state", eval.partialState,
                    "with --load-state: set the tensors the file and the layer share, list the others on standard "
                    "error (torch's strict=False)")
      ->needs(loadStateOption);
  evalCmd->add_option("--param", eval.params, "a parameter value, NAME=FILE.npy (repeatable)");
  evalCmd->add_option("--save-state", eval.saveState,
                      "write the parameters and buffers after the passes to a safetensors file");
  evalCmd->add_option("--grad", eval.grads, "the gradient of an output, NAME=FILE.npy: also runs backward and writes DIR/grad/*.npy");
  evalCmd->add_option("--out", eval.out, "directory for the outputs")->required();
  evalCmd->footer("Under encc launch (or torchrun), allreduce(...) in layers sums over the processes, and "
                  "\"{rank}\" in file names is the process's rank: --input X=x{rank}.npy --out out{rank}");

  EvalOptions bench;
  int benchRuns = 20;
  bool benchForwardOnly = false;
  auto *benchCmd = app.add_subcommand("bench", "Time a layer's forward and backward passes");
  benchCmd->add_option("file", bench.file, "a .enc file (default: the shipped layer library)");
  benchCmd->add_option("--layer", bench.layer, "the layer to time")->required();
  benchCmd->add_option("--set", bench.sets, "a hyper-parameter value, NAME=VALUE (repeatable)");
  benchCmd->add_option("--input", bench.inputs, "an input, NAME=FILE.npy or NAME=random:D0,D1,... (repeatable)")->required();
  benchCmd->add_option("--param", bench.params, "a parameter value, NAME=FILE.npy (repeatable)");
  auto *benchGrad =
      benchCmd->add_option("--grad", bench.grads, "an output's gradient, NAME=FILE.npy or NAME=random:... (default: random)");
  benchCmd->add_option("--dtype", bench.dtype, "f32, f64, f16 or bf16")->capture_default_str();
  benchCmd->add_flag("--allow-tf32", bench.allowTf32, tf32Help);
  benchCmd->add_option("--device", bench.device, "auto (the GPU if there is one), cpu or cuda")->capture_default_str();
  benchCmd->add_option("--mode", bench.mode, "train or eval")->capture_default_str();
  benchCmd->add_option("--runs", benchRuns, "timed runs after the first (which compiles)")->capture_default_str();
  benchCmd->add_flag("--forward-only", benchForwardOnly, "time the forward pass alone")->excludes(benchGrad);

  std::string cacheAction;
  auto *cacheCmd = app.add_subcommand("cache", "Inspect or clear the on-disk kernel cache ($ENC_CACHE_DIR)");
  cacheCmd->add_option("action", cacheAction, "list, stats or clear")
      ->required()
      ->check(CLI::IsMember({"list", "stats", "clear"}));

  std::string replFile;
  auto *replCmd = app.add_subcommand("repl", "Interactive: define layers, print any stage, run and time them");
  replCmd->add_option("file", replFile, "a .enc file whose layers to start with (the shipped layers are always there)");

  LaunchOptions launch;
  auto *launchCmd = app.add_subcommand(
      "launch", "Run a program in N processes that form one process group (sets RANK, WORLD_SIZE, MASTER_ADDR, "
                "MASTER_PORT as torchrun does)");
  launchCmd->add_option("-n,--nproc", launch.processes, "number of processes on this machine")
      ->required()
      ->check(CLI::Range(1, 4096));
  launchCmd->add_option("--nnodes", launch.nodes, "machines taking part, each running encc launch")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  launchCmd->add_option("--node-rank", launch.nodeRank, "this machine's place among them (0 runs rank 0)")
      ->capture_default_str();
  launchCmd->add_option("--master-addr", launch.masterAddr, "address of node 0, where rank 0 serves the rendezvous")
      ->capture_default_str()
      ->check([](const std::string &a) { return a.empty() ? std::string("an empty address") : std::string(); });
  launchCmd->add_option("--master-port", launch.masterPort, "rank 0's rendezvous port (default: a free one; needed with --nnodes)")
      ->check(CLI::Range(1, 65535));
  // The ranks read ENC_DIST_TIMEOUT as 1 to 86400 seconds (runtime/ProcessGroup.cpp); --grace shares the bound.
  launchCmd->add_option("--grace", launch.graceSeconds, "seconds the others get to exit after one rank fails (0 to 86400)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400));
  launchCmd->add_option("--timeout", launch.timeoutSeconds,
                        "ENC_DIST_TIMEOUT for the ranks: seconds a collective waits (1 to 86400)")
      ->check(CLI::Range(1, 86400));
  launchCmd->add_option("--backend", launch.backend,
                        "ENC_DIST_BACKEND for the ranks: nccl (CUDA tensors summed on the GPUs, one GPU per rank), gloo "
                        "(through host memory) or auto (NCCL where every rank can use it)")
      ->check(CLI::IsMember({"auto", "nccl", "gloo"}));
  launchCmd->add_option("command", launch.command, "the program and its arguments, after --")->required();

  // CLI11 would take an unknown first word for a stray argument and say only that a subcommand
  // is required.
  std::vector<std::string> names;
  for (const CLI::App *sub : app.get_subcommands({})) names.push_back(sub->get_name());
  if (argc > 1 && argv[1][0] != '-' && std::find(names.begin(), names.end(), argv[1]) == names.end()) {
    std::cerr << fmt::format("encc: error: unknown subcommand '{}'{}\n  hint: the subcommands are {}\n", argv[1],
                             didYouMean(argv[1], names), fmt::join(names, ", "));
    return 1;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success &e) {
    return app.exit(e); // --help, --version
  } catch (const CLI::ParseError &e) {
    std::cerr << fmt::format("encc: error: {}\n  hint: run '{} --help' for the options\n", e.what(),
                             app.get_subcommands().empty() ? "encc" : "encc " + app.get_subcommands()[0]->get_name());
    return 1;
  }

  // A path given as '' (an unset shell variable, "$STATE") is an error: taken as no path, it
  // ran with the shipped layers or fresh parameters, or skipped the save.
  for (CLI::App *cmd : {emitCmd, evalCmd, benchCmd, replCmd})
    for (const char *name : {"file", "--load-state", "--save-state", "--out"}) {
      const CLI::Option *opt = cmd->get_option_no_throw(name);
      if (!*cmd || !opt || opt->count() == 0) continue;
      const std::vector<std::string> &given = opt->results();
      if (std::any_of(given.begin(), given.end(), [](const std::string &v) { return v.empty(); })) {
        std::cerr << fmt::format("encc: error: {}: the path is empty\n  hint: give a path (a shell variable that is "
                                 "unset or empty gives '')\n",
                                 name[0] == '-' ? std::string(name) : "the .enc file");
        return 1;
      }
    }

  eval.deviceGiven = evalCmd->count("--device") > 0;
  bench.deviceGiven = benchCmd->count("--device") > 0;

  try {
    // Under encc launch or torchrun: layers sum their allreduce(...) over the group.
    if (*evalCmd || *benchCmd) initDistributed();
    if (*check) return runCheck(checkFiles);
    if (*emitCmd) return runEmit(emit);
    if (*evalCmd) return runEval(eval);
    if (*benchCmd) return runBench(bench, benchRuns, !benchForwardOnly);
    if (*cacheCmd) return runCache(cacheAction);
    if (*replCmd) return runRepl(replFile);
    if (*launchCmd) return runLaunch(launch);
  } catch (const CompileError &e) {
    std::cerr << e.what();
    return 1;
  } catch (const Error &e) {
    std::cerr << "encc: " << e.render() << "\n";
    return 1;
  } catch (const InternalError &e) {
    std::cerr << "encc: " << e.render() << "\n";
    return kInternalErrorExit;
  } catch (const std::exception &e) {
    std::cerr << "encc: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
