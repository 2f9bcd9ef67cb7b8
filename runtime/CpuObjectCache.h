// LLVM's ObjectCache on top of enc::DiskCache: the CPU JIT's object files persist across processes, so a
// later process links a kernel's object instead of optimizing and compiling its IR again.
//
// A module takes part by carrying its disk key (tagKey); modules without one are never cached. The key
// names everything the object depends on (see objectKey), so an entry written on another CPU, target or
// LLVM never matches. Bad entries read as misses (DiskCache checks the checksum; getObject also rejects a
// payload that is not an object file), and the caller then compiles and stores a fresh object.
#pragma once

#include <llvm/ExecutionEngine/ObjectCache.h>

#include <memory>
#include <string>
#include <string_view>

namespace enc {

class DiskCache;

// Bump when anything about how encc turns IR into objects changes (optimization pipeline, codegen level,
// code model): old entries then stop matching instead of being linked.
inline constexpr std::string_view kCpuObjectFormat = "encc-cpu-object-1";

// What a CPU object depends on besides encc's own format version.
struct CpuObjectKeyParts {
  std::string jitKey;   // CpuJit::compile's key: hash of the kernel's loop IR and dtype
  std::string irHash;   // hash of the LLVM IR handed to the JIT (catches code generator changes)
  std::string triple;   // target triple
  std::string cpu;      // host CPU name
  std::string features; // host CPU feature string
  std::string llvmVersion;
};

// The DiskCache key: "<format> <triple> <cpu> <sha256 of every part>", readable in `encc cache list`.
std::string cpuObjectKey(const CpuObjectKeyParts &parts);

class CpuObjectCache : public llvm::ObjectCache {
public:
  explicit CpuObjectCache(DiskCache &disk) : disk_(disk) {}

  // Records `key` in `module` (named metadata) so getObject/notifyObjectCompiled can find its entry.
  static void tagKey(llvm::Module &module, const std::string &key);
  // The key recorded by tagKey, or "" for a module that is not cached.
  static std::string keyOf(const llvm::Module &module);

  // The cached object for `module`, or nullptr (untagged module, miss, corrupt entry, not an object).
  std::unique_ptr<llvm::MemoryBuffer> getObject(const llvm::Module *module) override;
  // The cached object under `key` (named `name`), or nullptr, as getObject.
  std::unique_ptr<llvm::MemoryBuffer> load(const std::string &key, const std::string &name);
  // Stores `object` under the module's key; does nothing for an untagged module.
  void notifyObjectCompiled(const llvm::Module *module, llvm::MemoryBufferRef object) override;
  // Drops the entry under `key`: its object did not link, so the next getObject must miss.
  void forget(const std::string &key);

private:
  DiskCache &disk_;
};

} // namespace enc
