// The GPU executor: a pass is one CUDA translation unit (one function per distinct kernel),
// compiled for this GPU's architecture through the kernel cache (memory, then disk) and loaded
// once per process; its kernels are launched in order on the GPU's stream with the geometry
// codegen gives them.
#include "runtime/Executor.h"

#include "compiler/codegen/cuda/CudaCodegen.h"
#include "runtime/Gpu.h"
#include "runtime/Hash.h"
#include "runtime/Layer.h"
#include "runtime/Nvrtc.h"

#include <fmt/format.h>

#include <vector>

namespace enc {

namespace {

class GpuExecutor : public Executor {
public:
  GpuExecutor(const ir::LoopProgram &loops, const std::string &layer)
      : loops_(loops), layer_(layer), gpu_(cuda::Gpu::require()) {
    // Bounds checks cost little on the emulator, which exists to find such bugs.
    // One function per distinct kernel: a network's repeated blocks compile once.
    codegen::CudaModuleSource module =
        codegen::emitCudaModule(loops, codegen::cudaCodegenOptionsFromEnvironment(gpu_.loadsSource()));
    const std::string &source = module.source;
    cuda::CompileOptions opts;
    opts.arch = fmt::format("sm_{}", gpu_.computeCapability());
    opts.sourceName = layer + ".cu";
    const std::string key = sha256Hex(opts.arch + "\n" + source);
    cuda::CUmodule loaded =
        gpu_.loadsSource() ? gpu_.loadSourceModule(key, source) : gpu_.loadModule(key, source, opts);
    for (const std::string &f : module.functions) fns_.push_back(f.empty() ? nullptr : gpu_.function(loaded, f));
  }

  void launch(size_t i, std::map<std::string, Tensor> &buffers, int64_t randomSeed, bool zeroOutput) override {
    const ir::Kernel &k = loops_.kernels[i];
    if (zeroOutput) { // it adds into its output atomically
      Tensor &out = buffers.at(k.buffers[0]);
      gpu_.fill(reinterpret_cast<cuda::CUdeviceptr>(out.data()), 0, out.nbytes());
    }
    const int64_t extent = evalInt(k.launchExtent);
    if (extent <= 0) return;
    std::vector<cuda::CUdeviceptr> ptrs;
    for (const std::string &b : k.buffers) ptrs.push_back(reinterpret_cast<cuda::CUdeviceptr>(buffers.at(b).data()));
    std::vector<int64_t> params(k.params.size(), randomSeed); // only the seed is left
    std::vector<void *> args;
    for (cuda::CUdeviceptr &p : ptrs) args.push_back(&p);
    for (int64_t &p : params) args.push_back(&p);
    const codegen::CudaLaunch geometry = codegen::cudaLaunch(k, extent, gpu_.multiprocessors());
    gpu_.launch(fns_[i], static_cast<unsigned>(geometry.blocks), static_cast<unsigned>(geometry.threadsPerBlock),
                args.data(),
                fmt::format("kernel {} of layer {}{}", k.name, layer_,
                            k.loc.valid() ? fmt::format(" ({}:{})", k.loc.file->name(), k.loc.line()) : ""));
  }

  void finish() override { gpu_.synchronize(fmt::format("the kernels of layer {}", layer_)); }

private:
  const ir::LoopProgram &loops_;
  std::string layer_;
  cuda::Gpu &gpu_;
  std::vector<cuda::CUfunction> fns_; // one per kernel (nullptr for a collective)
};

} // namespace

std::unique_ptr<Executor> makeGpuExecutor(const ir::LoopProgram &loops, const std::string &layer) {
  return std::make_unique<GpuExecutor>(loops, layer);
}

} // namespace enc
