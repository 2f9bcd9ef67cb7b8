// Process-wide LLVM ORC JIT for CPU kernels: optimizes modules with O3 for the host CPU (so loops vectorize
// with its SIMD width), compiles them, and caches the entry addresses by key for the life of the process.
// The object code also goes to the on-disk cache (DiskCache::global(), via CpuObjectCache), so another
// process on the same CPU links it instead of optimizing and compiling again.
//
// ENC_JIT_STATS=1 prints one line of stats() to stderr at exit; ENC_JIT_REMARKS=1 prints what
// LLVM's optimizer says about vectorizing the kernels.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace llvm {
class LLVMContext;
class Module;
} // namespace llvm

namespace enc {

class CpuJit {
public:
  // Process-wide instance; the first call initializes LLVM's native target (thread-safe).
  static CpuJit &instance();

  CpuJit(const CpuJit &) = delete;
  CpuJit &operator=(const CpuJit &) = delete;
  ~CpuJit();

  // An empty module set up for the host: the target triple and data layout of the JIT's target machine.
  std::unique_ptr<llvm::Module> newModule(const std::string &name, llvm::LLVMContext &ctx) const;

  // How compile() names a module's object in the disk cache.
  enum class CacheBy {
    IR,  // by its key and its exact IR (printed and hashed): safe for any module
    Key, // by its key, its entry and this build's code generator (kCpuCodegenHash: the hash of the
         // sources that turn loop IR into objects): for modules that are a function of their key,
         // as CpuExecutor's kernels are; loadCached() finds them without generating any IR
  };

  // Verifies `module` (created in `ctx`, which it owns nothing beyond), runs the O3 pipeline for the host
  // CPU, compiles it and returns the address of function `entry`. If `key` was compiled before in this
  // process the cached address is returned and the module is dropped. If the disk cache holds an object for
  // `key` and this module (as `cacheBy` names it; same host CPU and features, target, LLVM), that object is
  // linked instead: neither the optimizer nor codegen runs. Two threads compiling the same key at once
  // compile it once; different keys compile concurrently. Each key gets its own JITDylib, so modules of
  // different keys may define the same symbols. Throws enc::Error on a broken module, a missing entry
  // function or a JIT failure (and the key stays uncompiled).
  void *compile(std::unique_ptr<llvm::LLVMContext> ctx, std::unique_ptr<llvm::Module> module,
                const std::string &entry, const std::string &key, CacheBy cacheBy = CacheBy::IR);

  // The address of `entry` linked from the disk cache's object for `key` and `entry` stored by compile()
  // with CacheBy::Key by this build, without generating IR; nullptr where there is none, or where it does
  // not load (the entry is then dropped, with a warning, and the caller compiles). Thread-safe.
  void *loadCached(const std::string &key, const std::string &entry);

  // The address compiled for `key`, or nullptr if it has not been compiled (or is still compiling).
  void *lookup(const std::string &key) const;

  struct Stats {
    int64_t compiles = 0;      // modules actually optimized and compiled
    int64_t diskHits = 0;      // modules whose object came from the disk cache
    int64_t memoryHits = 0;    // compile() calls answered from the in-memory cache
    double compileSeconds = 0; // wall time of compile() calls that compiled, summed
    double diskSeconds = 0;    // wall time of compile() calls answered by the disk cache, summed
  };
  Stats stats() const;

  std::string hostCpu() const;    // e.g. "znver3" / "skylake-avx512"
  std::string hostTriple() const; // e.g. "x86_64-pc-linux-gnu"

  // Runs the same O3 pipeline as compile() on `module` in place, without compiling it, and returns the
  // optimized IR as text (for `encc emit --emit=llvm`). Throws enc::Error if the module is broken.
  std::string optimizeAndPrint(llvm::Module &module) const;

private:
  CpuJit();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace enc
