#include "runtime/CpuJit.h"

#include "runtime/CpuCodegenHash.h"

#include "runtime/CpuObjectCache.h"
#include "runtime/DiskCache.h"
#include "runtime/Hash.h"

#include "support/Env.h"
#include "support/Error.h"

#include <llvm/Analysis/TargetLibraryInfo.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/Orc/CompileUtils.h>
#include <llvm/ExecutionEngine/Orc/IRCompileLayer.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/DiagnosticInfo.h>
#include <llvm/IR/DiagnosticPrinter.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>
#include <llvm/TargetParser/SubtargetFeature.h>
#include <llvm/Transforms/Utils/Cloning.h>

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace enc {

namespace {

[[noreturn]] void failWith(const std::string &what, llvm::Error err) {
  fail("{}: {}", what, llvm::toString(std::move(err)));
}

template <typename T> T unwrap(llvm::Expected<T> value, const std::string &what) {
  if (!value) failWith(what, value.takeError());
  return std::move(*value);
}

// LLVM's optimizer says when a loop that encc asked it to vectorize (a width hint) was not,
// and what it vectorized, as remarks and warnings about "<unknown>:0:0": nothing a user can act
// on, and whether they appear depends on the host CPU. Shown with ENC_JIT_REMARKS=1 (for
// whoever tunes code generation; ENC_JIT_STATS stays one line); errors always.
void reportLLVMDiagnostic(const llvm::DiagnosticInfo *diagnostic, void *) {
  const llvm::DiagnosticInfo &info = *diagnostic;
  if (info.getSeverity() != llvm::DS_Error && !envFlag("ENC_JIT_REMARKS")) return;
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::DiagnosticPrinterRawOStream printer(os);
  info.print(printer);
  os.flush();
  std::fprintf(stderr, "encc: LLVM %s: %s\n", info.getSeverity() == llvm::DS_Error ? "error" : "note", text.c_str());
}

// Why a materialization failed (the linker's reason) reaches the ExecutionSession's error reporter, on the
// thread that materialized, apart from the lookup's own error ("Failed to materialize symbols"). While
// lookups are in flight the reasons are kept, and a failed lookup joins them to its error; any other is
// printed as LLVM would. (Two lookups failing at once may trade reasons: the errors stay, only their
// detail may land on the other one.)
struct SessionErrors {
  std::mutex mu;
  int lookups = 0;
  std::string text;
};

SessionErrors &sessionErrors() {
  static SessionErrors *errors = new SessionErrors; // never destroyed, like the JIT that reports to it
  return *errors;
}

void reportSessionError(llvm::Error err) {
  std::string text = llvm::toString(std::move(err));
  SessionErrors &e = sessionErrors();
  std::lock_guard<std::mutex> lock(e.mu);
  if (e.lookups > 0)
    e.text += (e.text.empty() ? "" : "; ") + text;
  else
    std::fprintf(stderr, "JIT session error: %s\n", text.c_str());
}

std::string verifierText(const llvm::Module &module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  if (!llvm::verifyModule(module, &os)) return {};
  os.flush();
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text.empty() ? std::string("module is broken") : text;
}

// glibc's vector math library. Loaded with RTLD_GLOBAL, so the JIT's lookup in the process
// finds its functions, it lets loops over log (and f64 exp) vectorize into calls of its 4- and
// 8-lane versions (_ZGVdN8v_logf) instead of one libm call per element (f32 exp is inline
// arithmetic: the code generator's expF32). Without it (not glibc, not x86-64), or with
// ENC_VECTOR_MATH=0, the loops stay scalar.
bool vectorMathAvailable() {
#if defined(__x86_64__) && defined(__GLIBC__)
  static const bool loaded = [] {
    if (!envFlag("ENC_VECTOR_MATH", true)) return false;
    return dlopen("libmvec.so.1", RTLD_NOW | RTLD_GLOBAL) != nullptr;
  }();
  return loaded;
#else
  return false;
#endif
}

// O3 for the host target machine. Each call makes its own TargetMachine and analysis managers, so it is
// safe to run on several threads at once (each module has its own context).
llvm::Error optimizeModule(llvm::orc::JITTargetMachineBuilder tmb, llvm::Module &module) {
  auto tm = tmb.createTargetMachine();
  if (!tm) return tm.takeError();

  // Record the target on every definition: TTI and the inliner then see one consistent subtarget, and
  // printed IR says what it was tuned for.
  std::string features = tmb.getFeatures().getString();
  for (llvm::Function &f : module) {
    if (f.isDeclaration()) continue;
    if (!f.hasFnAttribute("target-cpu")) f.addFnAttr("target-cpu", (*tm)->getTargetCPU());
    if (!f.hasFnAttribute("target-features") && !features.empty()) f.addFnAttr("target-features", features);
  }

  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PipelineTuningOptions pto;
  pto.LoopVectorization = true;
  pto.SLPVectorization = true;
  pto.LoopInterleaving = true;
  pto.LoopUnrolling = true;
  llvm::PassBuilder pb(tm->get(), pto);
  // Registered before the defaults, so this library info (with the vector functions) wins.
  llvm::Triple triple(module.getTargetTriple());
  llvm::TargetLibraryInfoImpl tlii(triple);
  if (vectorMathAvailable()) tlii.addVectorizableFunctionsFromVecLib(llvm::TargetLibraryInfoImpl::LIBMVEC_X86, triple);
  fam.registerPass([&] { return llvm::TargetLibraryAnalysis(tlii); });
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(module, mam);
  return llvm::Error::success();
}

// LLJIT's compile function: the disk cache first, and only on a miss O3 + codegen (then the object is stored).
// The optimizer runs here rather than in an IR transform layer so that a hit skips it too.
class CachingCompiler : public llvm::orc::IRCompileLayer::IRCompiler {
public:
  CachingCompiler(llvm::orc::JITTargetMachineBuilder tmb, CpuObjectCache &cache,
                  std::function<void(const std::string &diskKey)> onDiskHit)
      : IRCompiler(llvm::orc::irManglingOptionsFromTargetOptions(tmb.getOptions())), tmb_(tmb), codegen_(tmb),
        cache_(cache), onDiskHit_(std::move(onDiskHit)) {}

  llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> operator()(llvm::Module &module) override {
    if (std::unique_ptr<llvm::MemoryBuffer> object = cache_.getObject(&module)) {
      onDiskHit_(CpuObjectCache::keyOf(module));
      return object;
    }
    // Here, not where the caller made the context: ORC may compile a copy in a context of its own.
    module.getContext().setDiagnosticHandlerCallBack(reportLLVMDiagnostic);
    if (llvm::Error err = optimizeModule(tmb_, module)) return err;
    // ConcurrentIRCompiler: a TargetMachine per call, so several threads may compile at once.
    llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> object = codegen_(module);
    if (object) cache_.notifyObjectCompiled(&module, (*object)->getMemBufferRef());
    return object;
  }

private:
  llvm::orc::JITTargetMachineBuilder tmb_;
  llvm::orc::ConcurrentIRCompiler codegen_;
  CpuObjectCache &cache_;
  std::function<void(const std::string &)> onDiskHit_;
};

std::string printModule(const llvm::Module &module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os, nullptr);
  os.flush();
  return text;
}

} // namespace

struct CpuJit::Impl {
  std::string cpu;
  llvm::orc::JITTargetMachineBuilder tmb{llvm::Triple()};
  CpuObjectCache objectCache{DiskCache::global()};
  std::unique_ptr<llvm::orc::LLJIT> jit; // after objectCache: its compile function uses it
  std::atomic<uint64_t> nextDylib{0};

  // A key is in `cache` from the moment a thread starts compiling it; `addr` is set once it is done, and
  // `ready` lets other threads asking for the same key wait for that one compile.
  struct Entry {
    void *addr = nullptr;
    std::shared_future<void *> ready;
  };
  mutable std::mutex mu;
  std::unordered_map<std::string, Entry> cache;
  // Disk keys whose object the compile function loaded from disk; compile() takes its key out to learn
  // whether its module was compiled or loaded. One compile per key is in flight, so keys do not clash.
  std::unordered_set<std::string> loadedFromDisk;
  Stats stats;

  void noteDiskHit(const std::string &diskKey) {
    std::lock_guard<std::mutex> lock(mu);
    loadedFromDisk.insert(diskKey);
  }

  bool takeDiskHit(const std::string &diskKey) {
    if (diskKey.empty()) return false;
    std::lock_guard<std::mutex> lock(mu);
    return loadedFromDisk.erase(diskKey) > 0;
  }

  // The disk cache key of `module` (already verified and prepared): it names the JIT key, the exact IR, and
  // the host and LLVM that would compile it, so a foreign or stale object never matches.
  std::string diskKey(const llvm::Module &module, const std::string &key) const {
    return objectKey(key, sha256Hex(printModule(module)));
  }
  // The disk cache key of CacheBy::Key: the module is a function of `key`, `entry` and the code generator.
  std::string keyedDiskKey(const std::string &key, const std::string &entry) const {
    return objectKey(key + " " + entry, std::string("codegen ") + kCpuCodegenHash);
  }
  std::string objectKey(const std::string &jitKey, const std::string &irHash) const {
    CpuObjectKeyParts parts;
    parts.jitKey = jitKey;
    parts.irHash = irHash;
    parts.triple = jit->getTargetTriple().str();
    parts.cpu = cpu;
    // Objects that call libmvec only for processes that have it.
    parts.features = tmb.getFeatures().getString() + (vectorMathAvailable() ? ";libmvec" : "");
    parts.llvmVersion = LLVM_VERSION_STRING;
    return cpuObjectKey(parts);
  }

  void checkModule(const llvm::Module &module, const std::string &key) const {
    std::string broken = verifierText(module);
    if (!broken.empty())
      throw Error(fmt::format("CpuJit: LLVM verifier rejected module '{}'{}:\n{}", module.getName().str(),
                              key.empty() ? "" : fmt::format(" (key {})", key), broken),
                  "this is a bug in the code generator");
  }

  void prepare(llvm::Module &module) const {
    if (module.getTargetTriple().empty()) module.setTargetTriple(jit->getTargetTriple().str());
    if (module.getDataLayout().isDefault()) module.setDataLayout(jit->getDataLayout());
  }

  // Takes `ctx` and `module` only once the module is handed to the JIT; until then the caller owns both.
  // `diskKeyOut` is set once the module is tagged for the disk cache, so the caller can learn (and on an
  // error forget) whether the compile function loaded it from disk.
  void *compileNow(std::unique_ptr<llvm::LLVMContext> &ctx, std::unique_ptr<llvm::Module> &module,
                   const std::string &entry, const std::string &key, CacheBy cacheBy, std::string &diskKeyOut) {
    checkModule(*module, key);
    llvm::Function *fn = module->getFunction(entry);
    if (!fn || fn->isDeclaration())
      fail("CpuJit: module '{}' (key {}) defines no function '{}'", module->getName().str(), key, entry);
    if (fn->hasLocalLinkage())
      fail("CpuJit: entry function '{}' of module '{}' has local linkage", entry, module->getName().str());
    prepare(*module);
    // Hashing the IR costs a print of the module; not worth it when nothing will be read or written.
    if (objectCacheEnabled()) {
      diskKeyOut = cacheBy == CacheBy::Key ? keyedDiskKey(key, entry) : diskKey(*module, key);
      CpuObjectCache::tagKey(*module, diskKeyOut);
    }

    // A copy of the IR, compiled instead if the object the disk cache hands over does not link (an intact
    // entry whose code fails to load must not break every later run).
    std::unique_ptr<llvm::Module> spare = diskKeyOut.empty() ? nullptr : llvm::CloneModule(*module);
    llvm::orc::ThreadSafeModule tsm(std::move(module), std::move(ctx));
    llvm::orc::ThreadSafeModule spareTsm;
    if (spare) spareTsm = llvm::orc::ThreadSafeModule(std::move(spare), tsm.getContext());

    llvm::Expected<llvm::orc::ExecutorAddr> addr = link(std::move(tsm), entry, key);
    if (!addr && takeDiskHit(diskKeyOut) && spareTsm) {
      warnUnloadableObject(entry, key, addr.takeError());
      objectCache.forget(diskKeyOut); // so the compile function misses, compiles, and stores a fresh object
      addr = link(std::move(spareTsm), entry, key);
    }
    if (!addr) failWith(fmt::format("CpuJit: compiling '{}' (key {}) failed", entry, key), addr.takeError());
    return addr->toPtr<void *>();
  }

  // Adds `tsm` in a JITDylib of its own and looks up `entry`, which materializes it (the compile function:
  // disk cache, else O3 + codegen; then the linker) and waits for that. A failed lookup drops the JITDylib
  // and returns the error.
  llvm::Expected<llvm::orc::ExecutorAddr> link(llvm::orc::ThreadSafeModule tsm, const std::string &entry,
                                               const std::string &key) {
    return linkInNewDylib(key, entry, [&](llvm::orc::JITDylib &jd) { return jit->addIRModule(jd, std::move(tsm)); });
  }

  // Adds what `add` adds to a JITDylib of its own and looks up `entry` there; a failed lookup drops the
  // JITDylib and returns the error.
  template <typename Add>
  llvm::Expected<llvm::orc::ExecutorAddr> linkInNewDylib(const std::string &key, const std::string &entry, Add &&add) {
    // A JITDylib per key keeps symbols of different keys apart (many kernels are all called "kernel").
    std::string dylibName = fmt::format("enc.{}.{}", nextDylib++, key.substr(0, 64));
    llvm::Expected<llvm::orc::JITDylib &> created = jit->createJITDylib(dylibName);
    if (!created) failWith("CpuJit: cannot create a JITDylib", created.takeError());
    llvm::orc::JITDylib &jd = *created;
    auto dropDylib = [&] { llvm::consumeError(jit->getExecutionSession().removeJITDylib(jd)); };
    if (llvm::Error err = add(jd)) {
      dropDylib();
      failWith(fmt::format("CpuJit: cannot add module for key {}", key), std::move(err));
    }
    SessionErrors &errors = sessionErrors();
    {
      std::lock_guard<std::mutex> lock(errors.mu);
      ++errors.lookups;
    }
    llvm::Expected<llvm::orc::ExecutorAddr> addr = jit->lookup(jd, entry);
    std::string reasons;
    {
      std::lock_guard<std::mutex> lock(errors.mu);
      if (!addr) reasons = std::exchange(errors.text, {});
      if (--errors.lookups == 0) errors.text.clear();
    }
    if (addr) return addr;
    dropDylib();
    std::string why = llvm::toString(addr.takeError());
    if (!reasons.empty()) why = reasons + " (" + why + ")";
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "%s", why.c_str());
  }

  // Said once per process: the cache is meant to be invisible, and one bad entry is enough to know about.
  static void warnUnloadableObject(const std::string &entry, const std::string &key, llvm::Error err) {
    static std::once_flag once;
    std::string why = llvm::toString(std::move(err));
    std::call_once(once, [&] {
      std::fprintf(stderr,
                   "encc: warning: the cached object code of kernel '%s' (key %s) did not load; compiled it again "
                   "and replaced the cache entry\n  (%s)\n",
                   entry.c_str(), key.substr(0, 16).c_str(), why.c_str());
    });
  }

  static bool objectCacheEnabled() { return DiskCache::global().usable(); }
};

CpuJit::CpuJit() : impl_(std::make_unique<Impl>()) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::InitializeNativeTargetAsmParser();

  auto tmb = unwrap(llvm::orc::JITTargetMachineBuilder::detectHost(), "CpuJit: cannot detect the host");
  // Name the CPU and its features explicitly so codegen and the vectorizer use AVX2 / AVX-512 where present.
  impl_->cpu = llvm::sys::getHostCPUName().str();
  tmb.setCPU(impl_->cpu);
  llvm::SubtargetFeatures features;
  for (const auto &feature : llvm::sys::getHostCPUFeatures())
    features.AddFeature(feature.first(), feature.second);
  tmb.getFeatures() = features;
  tmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  impl_->tmb = tmb;

  // Concurrent compilation: lookups from different threads materialize (disk cache or optimize + codegen)
  // in parallel, each with its own TargetMachine.
  Impl *impl = impl_.get();
  vectorMathAvailable(); // before any object that calls it is linked (disk-cache hits too)
  impl_->jit = unwrap(llvm::orc::LLJITBuilder()
                          .setJITTargetMachineBuilder(tmb)
                          .setSupportConcurrentCompilation(true)
                          .setCompileFunctionCreator(
                              [impl](llvm::orc::JITTargetMachineBuilder jtmb)
                                  -> llvm::Expected<std::unique_ptr<llvm::orc::IRCompileLayer::IRCompiler>> {
                                return std::make_unique<CachingCompiler>(
                                    std::move(jtmb), impl->objectCache,
                                    [impl](const std::string &diskKey) { impl->noteDiskHit(diskKey); });
                              })
                          .create(),
                      "CpuJit: cannot create the LLVM JIT");
  impl_->jit->getExecutionSession().setErrorReporter(reportSessionError);
}

CpuJit::~CpuJit() = default;

namespace {

std::atomic<CpuJit *> createdJit{nullptr};

// ENC_JIT_STATS=1: one line at exit saying where this process's kernels came from. A static destructor,
// not atexit in instance(), so a process that never JIT-compiled says so too.
struct PrintStatsAtExit {
  ~PrintStatsAtExit() {
    if (!envFlag("ENC_JIT_STATS")) return;
    CpuJit::Stats s;
    if (CpuJit *jit = createdJit.load()) s = jit->stats();
    std::string line = fmt::format("encc: cpu jit: {} compiled ({:.3f} s), {} from the disk cache ({:.3f} s), "
                                   "{} from memory\n",
                                   s.compiles, s.compileSeconds, s.diskHits, s.diskSeconds, s.memoryHits);
    std::fputs(line.c_str(), stderr);
  }
} printStatsAtExit;

} // namespace

CpuJit &CpuJit::instance() {
  // Never destroyed: kernels may still be called from other static destructors or detached threads.
  static CpuJit *jit = [] {
    auto *created = new CpuJit();
    createdJit = created;
    return created;
  }();
  return *jit;
}

std::unique_ptr<llvm::Module> CpuJit::newModule(const std::string &name, llvm::LLVMContext &ctx) const {
  auto module = std::make_unique<llvm::Module>(name, ctx);
  module->setTargetTriple(impl_->jit->getTargetTriple().str());
  module->setDataLayout(impl_->jit->getDataLayout());
  return module;
}

void *CpuJit::compile(std::unique_ptr<llvm::LLVMContext> ctx, std::unique_ptr<llvm::Module> module,
                      const std::string &entry, const std::string &key, CacheBy cacheBy) {
  // Locals are destroyed in reverse order, so the module always dies before its context (parameters give no
  // such guarantee, and a context deletes the modules it still has, which would free the module twice).
  std::unique_ptr<llvm::LLVMContext> ownedCtx = std::move(ctx);
  std::unique_ptr<llvm::Module> ownedModule = std::move(module);
  if (!ownedCtx || !ownedModule) fail("CpuJit::compile: null module or context (key {})", key);
  if (&ownedModule->getContext() != ownedCtx.get())
    fail("CpuJit::compile: module '{}' does not belong to the given context", ownedModule->getName().str());

  std::promise<void *> promise;
  std::shared_future<void *> pending;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->cache.find(key);
    if (it == impl_->cache.end()) {
      impl_->cache.emplace(key, Impl::Entry{nullptr, promise.get_future().share()});
    } else {
      ++impl_->stats.memoryHits;
      pending = it->second.ready;
      if (it->second.addr) return it->second.addr;
    }
  }
  if (pending.valid()) {
    ownedModule.reset();
    ownedCtx.reset();
    return pending.get(); // waits for the compiling thread; rethrows its error
  }

  auto start = std::chrono::steady_clock::now();
  std::string diskKey;
  try {
    void *addr = impl_->compileNow(ownedCtx, ownedModule, entry, key, cacheBy, diskKey);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bool fromDisk = impl_->takeDiskHit(diskKey);
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      impl_->cache[key].addr = addr;
      ++(fromDisk ? impl_->stats.diskHits : impl_->stats.compiles);
      (fromDisk ? impl_->stats.diskSeconds : impl_->stats.compileSeconds) += seconds;
    }
    promise.set_value(addr);
    return addr;
  } catch (...) {
    // Forget the key so a later call may try again; threads already waiting get this error.
    impl_->takeDiskHit(diskKey);
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      impl_->cache.erase(key);
    }
    promise.set_exception(std::current_exception());
    throw;
  }
}

void *CpuJit::loadCached(const std::string &key, const std::string &entry) {
  if (!Impl::objectCacheEnabled()) return nullptr;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (auto it = impl_->cache.find(key); it != impl_->cache.end()) return it->second.addr; // or compiling now
  }
  auto start = std::chrono::steady_clock::now();
  const std::string diskKey = impl_->keyedDiskKey(key, entry);
  std::unique_ptr<llvm::MemoryBuffer> object = impl_->objectCache.load(diskKey, entry);
  if (!object) return nullptr;
  llvm::Expected<llvm::orc::ExecutorAddr> addr = impl_->linkInNewDylib(
      key, entry, [&](llvm::orc::JITDylib &jd) { return impl_->jit->addObjectFile(jd, std::move(object)); });
  if (!addr) {
    Impl::warnUnloadableObject(entry, key, addr.takeError());
    impl_->objectCache.forget(diskKey);
    return nullptr;
  }
  void *found = addr->toPtr<void *>();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto [it, fresh] = impl_->cache.emplace(key, Impl::Entry{found, {}});
  if (!fresh) return it->second.addr ? it->second.addr : found; // another thread got there first
  ++impl_->stats.diskHits;
  impl_->stats.diskSeconds += seconds;
  return found;
}

void *CpuJit::lookup(const std::string &key) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->cache.find(key);
  return it == impl_->cache.end() ? nullptr : it->second.addr;
}

CpuJit::Stats CpuJit::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

std::string CpuJit::hostCpu() const { return impl_->cpu; }

std::string CpuJit::hostTriple() const { return impl_->jit->getTargetTriple().str(); }

std::string CpuJit::optimizeAndPrint(llvm::Module &module) const {
  impl_->checkModule(module, {});
  impl_->prepare(module);
  if (llvm::Error err = optimizeModule(impl_->tmb, module))
    failWith(fmt::format("CpuJit: cannot optimize module '{}'", module.getName().str()), std::move(err));
  return printModule(module);
}

} // namespace enc
