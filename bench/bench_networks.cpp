// Networks: what compiling a network whole costs and buys (bench/RESULTS.md).
//
//   enc_bench_networks compile [DEPTHS...]   cold compile time against depth, CPU (and NVRTC
//                                             source generation), then the same from the disk cache
//   enc_bench_networks blocks [B C HW N]      a ResNet-style stack (Conv-BN-ReLU x2 + residual)
//                                             fwd+bwd: one network against the same layers run
//                                             as separate Layers (time, kernels, peak memory)
//   enc_bench_networks sequence KIND [--no-llvm] [DEPTHS...]
//                                             compile time of a deep sequence (bench/DeepSequence.h:
//                                             flat, calls, repeat, convs) phase by phase, CPU, cold
//                                             (--no-llvm: encc's own time only, no JIT)
//   enc_bench_networks sequence-source KIND DEPTH
//                                             that sequence's .enc source, for encc emit
//
// Ratios are measured side by side in one run: this machine is shared and noisy.
#include <enc/enc.h>

#include "BlockStack.h"
#include "DeepSequence.h"

#include "compiler/Pipeline.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "compiler/HyperParams.h"
#include "compiler/StorageTypes.h"
#include "runtime/Executor.h"
#include "runtime/Nvrtc.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

using namespace enc;

namespace {

using Settings = std::map<std::string, std::string>;

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Conv-BN-ReLU blocks with a residual every two: `depth` layers (a convolution and a batch norm
// count as two, as in the usual depth of a ResNet counts its convolutions).
const char *kNetworks = R"(
layer ConvBnRelu(C: int) {
  conv = Conv2d(in_channels=C, out_channels=C, kernel_size=3, padding=1, bias=false)
  bn = SyncBatchNorm(num_features=C)
  forward(X: [B, C, H, W]) -> Y {
    Y = relu(bn(conv(X)))
  }
}

layer Bottleneck(inplanes: int, planes: int, stride: int = 1) {
  conv1 = Conv2d(in_channels=inplanes, out_channels=planes, kernel_size=1, bias=false)
  bn1 = SyncBatchNorm(num_features=planes)
  conv2 = Conv2d(in_channels=planes, out_channels=planes, kernel_size=3, stride=stride, padding=1, bias=false)
  bn2 = SyncBatchNorm(num_features=planes)
  conv3 = Conv2d(in_channels=planes, out_channels=planes * 4, kernel_size=1, bias=false)
  bn3 = SyncBatchNorm(num_features=planes * 4)
  downsample = [Conv2d(in_channels=inplanes, out_channels=planes * 4, kernel_size=1, stride=stride, bias=false),
                SyncBatchNorm(num_features=planes * 4)] where stride != 1 || inplanes != planes * 4
  forward(X: [B, inplanes, H, W]) -> Y {
    F = relu(bn1(conv1(X)))
    G = relu(bn2(conv2(F)))
    Y = relu(bn3(conv3(G)) + select(stride != 1 || inplanes != planes * 4, downsample(X), X))
  }
}

# torchvision's resnet50, layer for layer (53 convolutions, 53 batch norms, the classifier).
layer ResNet50(classes: int = 1000) {
  conv1 = Conv2d(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3, bias=false)
  bn1 = SyncBatchNorm(num_features=64)
  maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1)
  layer1 = [Bottleneck(inplanes=select(i == 0, 64, 256), planes=64) for i < 3]
  layer2 = [Bottleneck(inplanes=select(i == 0, 256, 512), planes=128, stride=select(i == 0, 2, 1)) for i < 4]
  layer3 = [Bottleneck(inplanes=select(i == 0, 512, 1024), planes=256, stride=select(i == 0, 2, 1)) for i < 6]
  layer4 = [Bottleneck(inplanes=select(i == 0, 1024, 2048), planes=512, stride=select(i == 0, 2, 1)) for i < 3]
  fc = Linear(in_features=2048, out_features=classes)
  forward(X: [B, 3, H, W]) -> Y {
    F = maxpool(relu(bn1(conv1(X))))
    Y = fc(spatial_mean(layer4(layer3(layer2(layer1(F))))))
  }
}
)";

std::shared_ptr<const Library> networks() {
  static auto lib = Library::fromSource("networks.enc", std::string(kNetworks) + bench::kStackSource);
  return lib;
}

Tensor randomTensor(Shape shape, uint64_t seed) { return uniform(shape, -1, 1, seed, DType::F32); }

// One process's cold compile of a stack of `depth` layers, forward and backward.
// depth 50 stands for torchvision's ResNet-50 (input [2, 3, 64, 64]); others for a stack of
// residual blocks of 8 channels.
void compileOnce(int depth, bool fromCache) {
  const bool resnet50 = depth == 50;
  const int blocks = std::max(1, depth / 4); // a Residual block: 2 convolutions + 2 batch norms
  auto t0 = std::chrono::steady_clock::now();
  Layer net = resnet50 ? Layer(networks(), "ResNet50", {{"classes", "10"}})
                       : Layer(networks(), "Stack", {{"C", "8"}, {"N", std::to_string(blocks)}});
  double build = seconds(t0);
  Tensor x = resnet50 ? randomTensor({2, 3, 64, 64}, 1) : randomTensor({2, 8, 8, 8}, 1);
  Tensor gy;
  auto pass = [&](double &forward, double &backward) {
    auto t1 = std::chrono::steady_clock::now();
    Tensor y = net.forward({{"X", x}}).at("Y");
    forward = seconds(t1);
    if (!gy.defined()) gy = randomTensor(y.shape(), 2);
    auto t2 = std::chrono::steady_clock::now();
    net.backward({{"Y", gy}});
    backward = seconds(t2);
  };
  double firstF, firstB, runF, runB;
  pass(firstF, firstB); // compiles, then runs
  pass(runF, runB);     // runs
  // NVRTC needs no GPU: the forward pass's CUDA C++, generated and compiled to a cubin for sm_90
  // as a GPU run would (uncached).
  double nvrtcSource = 0, nvrtcCompile = 0;
  std::string gpuKernels;
  if (!fromCache && cuda::nvrtcAvailable()) {
    auto t3 = std::chrono::steady_clock::now();
    ir::Program sized = ir::Pipeline().specializeSizes(net.program(), {{"B", ir::intImm(x.dim(0))},
                                                                       {"H", ir::intImm(x.dim(2))},
                                                                       {"W", ir::intImm(x.dim(3))}});
    ir::LoopProgram gpuLoops = ir::Pipeline().lower(sized, {.target = ir::Target::GPU});
    codegen::CudaModuleSource module = codegen::emitCudaModule(gpuLoops); // as GpuExecutor compiles it
    const std::string &src = module.source;
    gpuKernels = fmt::format("{} kernels, {} distinct", gpuLoops.kernels.size(), module.distinct);
    nvrtcSource = seconds(t3);
    auto t4 = std::chrono::steady_clock::now();
    cuda::compile(src, {.arch = "sm_90"});
    nvrtcCompile = seconds(t4);
  }
  double forward = std::max(0.0, firstF - runF), backward = std::max(0.0, firstB - runB);
  fmt::print("{:>6} {:>7} {:>8} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>8} {:>8} {:>9.3f}\n", depth,
             resnet50 ? std::string("RN-50") : std::to_string(blocks * 4), fromCache ? "disk" : "cold", build, forward,
             backward, build + forward + backward, net.lastForwardLoops().kernels.size(),
             net.lastBackwardLoops().kernels.size(), runF + runB);
  if (!fromCache) {
    Layer::PassMemory f = net.forwardMemory(), b = net.backwardMemory();
    fmt::print("{:>6} memory plan: forward temporaries {:.1f} MiB in the arena of {:.1f} MiB unplanned, backward {:.1f} "
               "of {:.1f} MiB\n",
               "", f.arenaBytes / 1048576.0, f.unplannedBytes / 1048576.0, b.arenaBytes / 1048576.0,
               b.unplannedBytes / 1048576.0);
    std::fflush(stdout); // before NVRTC, whose helper processes would inherit the buffer
  }
  if (!fromCache && cuda::nvrtcAvailable())
    fmt::print("{:>6} GPU forward pass ({}): CUDA C++ generated in {:.3f} s, NVRTC (sm_90, cold) {:.3f} s\n", "",
               gpuKernels, nvrtcSource, nvrtcCompile);
}

int compileTimes(const std::vector<int> &depths, const char *self) {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("enc-bench-networks-{}", ::getpid());
  std::filesystem::create_directories(dir);
  ::setenv("ENC_CACHE_DIR", dir.c_str(), 1);
  // Compile: the first pass's time less the second's (which only runs); "make" is Layer's
  // constructor (expansion, checking, the forward tensor program, parameter initialization).
  fmt::print("{:>6} {:>7} {:>8} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>9}\n", "depth", "layers", "cache", "make s",
             "fwd comp s", "bwd comp s", "total s", "fwd krn", "bwd krn", "run s");
  for (int d : depths) {
    // Cold: an empty cache of its own for each depth (the blocks' kernels are shared within it).
    auto sub = dir / std::to_string(d);
    std::filesystem::create_directories(sub);
    ::setenv("ENC_CACHE_DIR", sub.c_str(), 1);
    std::fflush(stdout);
    std::string cmd = fmt::format("{} compile-one {} cold", self, d);
    if (std::system(cmd.c_str()) != 0) return 1;
    cmd = fmt::format("{} compile-one {} disk", self, d);
    if (std::system(cmd.c_str()) != 0) return 1;
  }
  std::filesystem::remove_all(dir);
  return 0;
}

// One process's compile of a deep sequence at `depth`, phase by phase: checking the file, expanding
// the network, the forward, backward, sizes and lowering sequences (CPU, forward and backward
// passes), then LLVM (generating and JIT-compiling the distinct kernels, cold) apart from encc's
// own time; the three slowest passes last. [B, C] = [4, 8]; convs [B, C, H, W] = [2, 4, 8, 8].
void sequenceOnce(const std::string &kind, int depth, bool llvm) {
  using Clock = std::chrono::steady_clock;
  std::map<std::string, double> passTimes; // "sequence pass" -> seconds, over every run of it
  ir::Pipeline::Instrumentation instr = ir::Pipeline::Instrumentation::fromEnvironment();
  instr.passTime = [&, print = instr.passTime](const char *sequence, const char *pass, double s) {
    passTimes[fmt::format("{} {}", sequence, pass)] += s;
    if (print) print(sequence, pass, s); // ENC_TIME_PASSES=1: each one as well
  };
  const ir::Pipeline pipeline(instr);
  const std::string source = bench::deepSequenceSource(kind, depth);

  auto t = Clock::now();
  auto lib = Library::fromSource("deep.enc", source);
  const double check = seconds(t);
  t = Clock::now();
  const LayerSymbols &declared = lib->get("Deep");
  std::map<std::string, ir::Expr> hyper = resolveHyperParams(declared, {});
  hyper["training"] = ir::boolImm(true);
  const LayerInstance instance = instantiateLayer(*lib, declared, hyper);
  const double expand = seconds(t);
  t = Clock::now();
  const ir::Program forward = pipeline.forward(*instance.symbols, hyper);
  const double forwardSeconds = seconds(t);
  t = Clock::now();
  const ir::Gradient gradient = pipeline.backward(*instance.symbols, forward, hyper);
  const double backwardSeconds = seconds(t);
  t = Clock::now();
  std::map<std::string, ir::Expr> sizes = {{"B", ir::intImm(4)}};
  if (kind == "flat") sizes["C"] = ir::intImm(8);
  if (kind == "convs") sizes = {{"B", ir::intImm(2)}, {"H", ir::intImm(8)}, {"W", ir::intImm(8)}};
  const ir::Program sizedForward = pipeline.specializeSizes(forward, sizes);
  const ir::Program sizedBackward = pipeline.specializeSizes(gradient.program, sizes);
  const double sizesSeconds = seconds(t);
  t = Clock::now();
  ir::TargetOptions target;
  target.types = ir::forwardStorage(forward, ir::ElemType::F32);
  const ir::LoopProgram forwardLoops = pipeline.lower(sizedForward, target);
  target.types = ir::backwardStorage(gradient, forward, ir::ElemType::F32);
  const ir::LoopProgram backwardLoops = pipeline.lower(sizedBackward, target);
  const double lower = seconds(t);
  t = Clock::now();
  std::unique_ptr<Executor> forwardExecutor, backwardExecutor;
  if (llvm) {
    forwardExecutor = makeCpuExecutor(forwardLoops);
    backwardExecutor = makeCpuExecutor(backwardLoops);
  }
  const std::string llvmSeconds = llvm ? fmt::format("{:.3f}", seconds(t)) : "-";

  std::vector<std::pair<double, std::string>> slowest;
  for (const auto &[pass, s] : passTimes) slowest.push_back({s, pass});
  std::sort(slowest.rbegin(), slowest.rend());
  std::string top;
  for (size_t i = 0; i < std::min<size_t>(3, slowest.size()); ++i)
    top += fmt::format("{}{} {:.2f}", i ? ", " : "", slowest[i].second, slowest[i].first);
  const double encc = check + expand + forwardSeconds + backwardSeconds + sizesSeconds + lower;
  fmt::print("{:>7} {:>6} {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>8.3f} {:>7} {:>5} {:>5}  {}\n", kind,
             depth, check, expand, forwardSeconds, backwardSeconds, sizesSeconds, lower, encc, llvmSeconds,
             forwardLoops.kernels.size(), backwardLoops.kernels.size(), top);
}

int sequenceTimes(const std::string &kind, const std::vector<int> &depths, bool llvm, const char *self) {
  if (bench::deepSequenceSource(kind, 1).empty()) {
    std::cerr << "enc_bench_networks sequence: unknown kind '" << kind << "' (flat, calls, repeat or convs)\n";
    return 2;
  }
  auto dir = std::filesystem::temp_directory_path() / fmt::format("enc-bench-sequence-{}", ::getpid());
  fmt::print("{:>7} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>5} {:>5}  {}\n", "kind", "depth", "check",
             "expand", "fwd", "bwd", "sizes", "lower", "encc s", "llvm s", "kfwd", "kbwd", "slowest passes (s)");
  for (int d : depths) {
    // Each depth cold, in a process and an empty kernel cache of its own.
    auto sub = dir / std::to_string(d);
    std::filesystem::create_directories(sub);
    ::setenv("ENC_CACHE_DIR", sub.c_str(), 1);
    std::fflush(stdout);
    if (std::system(fmt::format("{} sequence-one {} {} {}", self, kind, d, llvm ? "llvm" : "no-llvm").c_str()) != 0)
      return 1;
  }
  std::filesystem::remove_all(dir);
  return 0;
}

struct PassStats {
  double seconds = 0;
  size_t kernels = 0;
  int64_t peakBytes = 0;
};

// fwd+bwd of the stack, one way, on the CPU: time, kernels and peak host memory.
PassStats measure(bench::BlockStack &stack, int reps) {
  stack.pass(); // compiles
  stack.pass(); // the forward pass planned once the backward pass exists
  PassStats s;
  resetAllocationStats();
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) stack.pass();
  s.seconds = seconds(t0) / reps;
  s.peakBytes = allocationStats().peakBytes;
  s.kernels = stack.kernels();
  return s;
}

int blockStack(int64_t b, int64_t c, int64_t hw, int n) {
  const int reps = 3;
  fmt::print("ResNet-style stack: {} x (Conv-BN-ReLU, Conv-BN, + X, ReLU), {} channels, {}x{}, batch {}, f32 CPU, "
             "fwd+bwd, mean of {}\n",
             n, c, hw, hw, b, reps);
  bench::WholeStack wholeStack(networks(), b, c, hw, n, Device::CPU);
  PassStats whole = measure(wholeStack, reps);
  bench::SeparateStack separateStack(b, c, hw, n, Device::CPU);
  PassStats separate = measure(separateStack, reps);
  fmt::print("{:<22} {:>10} {:>8} {:>14}\n", "", "ms", "kernels", "peak host MiB");
  fmt::print("{:<22} {:>10.1f} {:>8} {:>14.1f}\n", "one network", whole.seconds * 1e3, whole.kernels,
             whole.peakBytes / 1048576.0);
  fmt::print("{:<22} {:>10.1f} {:>8} {:>14.1f}\n", "separate layers", separate.seconds * 1e3, separate.kernels,
             separate.peakBytes / 1048576.0);
  fmt::print("network / separate: time {:.2f}, kernels {:.2f}, peak memory {:.2f}\n", whole.seconds / separate.seconds,
             static_cast<double>(whole.kernels) / static_cast<double>(separate.kernels),
             static_cast<double>(whole.peakBytes) / static_cast<double>(separate.peakBytes));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "compile-one" && argc == 4) {
      compileOnce(std::atoi(argv[2]), std::string(argv[3]) == "disk");
      return 0;
    }
    if (mode == "sequence-one" && argc == 5) {
      sequenceOnce(argv[2], std::atoi(argv[3]), std::string(argv[4]) == "llvm");
      return 0;
    }
    if (mode == "sequence-source" && argc == 4) {
      std::cout << bench::deepSequenceSource(argv[2], std::atoi(argv[3]));
      return 0;
    }
    if (mode == "sequence" && argc > 2) {
      std::vector<int> depths;
      bool llvm = true;
      for (int i = 3; i < argc; ++i) {
        if (std::string(argv[i]) == "--no-llvm") llvm = false;
        else depths.push_back(std::atoi(argv[i]));
      }
      if (depths.empty()) depths = {500, 1000, 2000, 5000, 10000, 20000};
      return sequenceTimes(argv[2], depths, llvm, argv[0]);
    }
    if (mode == "compile") {
      std::vector<int> depths;
      for (int i = 2; i < argc; ++i) depths.push_back(std::atoi(argv[i]));
      if (depths.empty()) depths = {10, 50, 150};
      return compileTimes(depths, argv[0]);
    }
    if (mode == "blocks") {
      auto arg = [&](int i, int64_t d) { return argc > i ? std::atoll(argv[i]) : d; };
      return blockStack(arg(2, 16), arg(3, 64), arg(4, 56), static_cast<int>(arg(5, 2)));
    }
    std::cerr << "usage: enc_bench_networks compile [DEPTHS...] | blocks [B C HW N] | sequence KIND [--no-llvm] [DEPTHS...] | "
                 "sequence-source KIND DEPTH\n";
    return 2;
  } catch (const Error &e) {
    std::cerr << "enc_bench_networks: " << e.render() << "\n";
    return 1;
  }
}
