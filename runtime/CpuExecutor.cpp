// The CPU executor: each kernel JIT-compiled by LLVM (cached in memory and on disk by the hash
// of its loop IR), its parallel loop split across the thread pool.
#include "runtime/Executor.h"

#include "compiler/CanonicalKernel.h"
#include "compiler/codegen/llvm/LLVMCodegen.h"
#include "runtime/CpuJit.h"
#include "runtime/Hash.h"
#include "runtime/Layer.h"
#include "runtime/ThreadPool.h"
#include "support/InternalError.h"

#include <fmt/format.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <cstring>
#include <mutex>
#include <set>
#include <vector>

namespace enc {

namespace {

class CpuExecutor : public Executor {
public:
  explicit CpuExecutor(const ir::LoopProgram &loops) : loops_(loops) {
    const ir::ElementTypes &types = loops.types;
    // The key names everything canonically, and the function is named after the key: kernels
    // that differ only in names compile once. Those not compiled yet compile in parallel.
    std::vector<std::string> keys(loops.kernels.size());
    std::map<std::string, size_t> missing; // key -> a kernel that has it
    for (size_t i = 0; i < loops.kernels.size(); ++i) {
      const ir::Kernel &k = loops.kernels[i];
      if (k.collective) continue;
      std::string stored;
      for (const std::string &b : k.buffers) stored += fmt::format("{};", ir::elemTypeName(types.of(b)));
      keys[i] = sha256Hex(fmt::format("encc-cpu-3;{};{}\n{}", ir::elemTypeName(types.compute), stored,
                                      ir::printStmt(ir::canonicalKernel(k).body)));
      if (!CpuJit::instance().lookup(keys[i])) missing.emplace(keys[i], i);
    }
    std::vector<size_t> toCompile;
    for (const auto &[key, i] : missing) toCompile.push_back(i);
    ThreadPool::global().parallelFor(0, static_cast<int64_t>(toCompile.size()), [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        size_t i = toCompile[static_cast<size_t>(j)];
        const std::string entry = "enc_" + keys[i].substr(0, 32);
        // The kernel is a function of its key: a cached object needs no IR.
        if (CpuJit::instance().loadCached(keys[i], entry)) continue;
        ir::Kernel named = loops.kernels[i];
        named.name = entry;
        auto ctx = std::make_unique<llvm::LLVMContext>();
        auto mod = CpuJit::instance().newModule(named.name, *ctx);
        codegen::emitLLVMKernel(named, types, *mod);
        CpuJit::instance().compile(std::move(ctx), std::move(mod), named.name, keys[i], CpuJit::CacheBy::Key);
      }
    });
    for (size_t i = 0; i < loops.kernels.size(); ++i) {
      if (loops.kernels[i].collective) {
        fns_.push_back(nullptr);
        continue;
      }
      void *addr = CpuJit::instance().lookup(keys[i]);
      ENC_INTERNAL_ASSERT(addr, "kernel {} was not compiled", loops.kernels[i].name);
      fns_.push_back(reinterpret_cast<codegen::CpuKernelFn>(addr));
    }
  }

  void launch(size_t i, std::map<std::string, Tensor> &buffers, int64_t randomSeed, bool zeroOutput) override {
    const ir::Kernel &k = loops_.kernels[i];
    if (zeroOutput) {
      Tensor &out = buffers.at(k.buffers[0]);
      std::memset(out.data(), 0, out.nbytes());
    }
    std::vector<void *> ptrs;
    for (const std::string &b : k.buffers) ptrs.push_back(buffers.at(b).data());
    std::vector<int64_t> params(k.params.size(), randomSeed); // only the seed is left
    codegen::CpuKernelFn fn = fns_[i];
    int64_t extent = evalInt(k.launchExtent);
    if (k.scatters && k.launch == ir::ForKind::Parallel && extent > 1) {
      // Iterations may add to the same element: each chunk adds into a zeroed private copy
      // of the output, and the copies are summed in afterwards.
      Tensor &target = buffers.at(k.buffers[0]);
      std::mutex mu;
      ThreadPool::global().parallelFor(0, extent, [&](int64_t b, int64_t e) {
        Tensor mine(target.dtype(), target.shape());
        std::vector<void *> own = ptrs;
        own[0] = mine.data();
        fn(own.data(), params.data(), b, e);
        std::lock_guard<std::mutex> lock(mu);
        if (isHalfPrecision(target.dtype())) internalError("kernel {} scatters into a 16-bit buffer", k.name);
        if (target.dtype() == DType::F32) addInto<float>(target, mine);
        else addInto<double>(target, mine);
      });
    } else if (k.launch == ir::ForKind::Parallel && extent > 1) {
      ThreadPool::global().parallelFor(0, extent, [&](int64_t b, int64_t e) { fn(ptrs.data(), params.data(), b, e); });
    } else {
      fn(ptrs.data(), params.data(), 0, extent);
    }
  }

private:
  const ir::LoopProgram &loops_;
  std::vector<codegen::CpuKernelFn> fns_; // one per kernel (nullptr for a collective)

  template <typename T> static void addInto(Tensor &target, const Tensor &part) {
    T *t = target.dataAs<T>();
    const T *p = part.dataAs<T>();
    for (int64_t j = 0, n = target.numel(); j < n; ++j) t[j] += p[j];
  }
};

} // namespace

std::unique_ptr<Executor> makeCpuExecutor(const ir::LoopProgram &loops) { return std::make_unique<CpuExecutor>(loops); }

} // namespace enc
