#include "runtime/CpuObjectCache.h"

#include "runtime/DiskCache.h"
#include "runtime/Hash.h"

#include <fmt/format.h>

#include <llvm/BinaryFormat/Magic.h>
#include <llvm/IR/Metadata.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/MemoryBuffer.h>

#include <optional>

namespace enc {

namespace {

constexpr const char *kKeyMetadata = "encc.object_cache_key";

} // namespace

std::string cpuObjectKey(const CpuObjectKeyParts &p) {
  // Length-prefixed parts: no two different part lists can produce the same hashed text.
  std::string all;
  for (const std::string &part : {std::string(kCpuObjectFormat), p.jitKey, p.irHash, p.triple, p.cpu, p.features,
                                  p.llvmVersion})
    all += fmt::format("{}:{}\n", part.size(), part);
  return fmt::format("{} {} {} {}", kCpuObjectFormat, p.triple, p.cpu, sha256Hex(all));
}

void CpuObjectCache::tagKey(llvm::Module &module, const std::string &key) {
  llvm::LLVMContext &ctx = module.getContext();
  llvm::NamedMDNode *md = module.getOrInsertNamedMetadata(kKeyMetadata);
  md->clearOperands();
  md->addOperand(llvm::MDNode::get(ctx, llvm::MDString::get(ctx, key)));
}

std::string CpuObjectCache::keyOf(const llvm::Module &module) {
  const llvm::NamedMDNode *md = module.getNamedMetadata(kKeyMetadata);
  if (!md || md->getNumOperands() != 1) return {};
  const llvm::MDNode *node = md->getOperand(0);
  if (node->getNumOperands() != 1) return {};
  auto *str = llvm::dyn_cast_or_null<llvm::MDString>(node->getOperand(0).get());
  return str ? str->getString().str() : std::string();
}

std::unique_ptr<llvm::MemoryBuffer> CpuObjectCache::getObject(const llvm::Module *module) {
  std::string key = keyOf(*module);
  if (key.empty()) return nullptr;
  return load(key, module->getModuleIdentifier());
}

std::unique_ptr<llvm::MemoryBuffer> CpuObjectCache::load(const std::string &key, const std::string &name) {
  std::optional<std::string> bytes = disk_.get(key);
  if (!bytes) return nullptr;
  // The checksum proves the bytes are what was stored; this only keeps a payload that was never an
  // object (a hand-made or foreign entry) away from the linker. The next compile overwrites it.
  switch (llvm::identify_magic(*bytes)) {
  case llvm::file_magic::elf_relocatable:
  case llvm::file_magic::macho_object:
  case llvm::file_magic::coff_object: break;
  default: return nullptr;
  }
  return llvm::MemoryBuffer::getMemBufferCopy(*bytes, name);
}

void CpuObjectCache::notifyObjectCompiled(const llvm::Module *module, llvm::MemoryBufferRef object) {
  std::string key = keyOf(*module);
  if (key.empty()) return;
  disk_.put(key, std::string_view(object.getBufferStart(), object.getBufferSize()));
}

void CpuObjectCache::forget(const std::string &key) { disk_.remove(key); }

} // namespace enc
