// The CPU JIT's object-code cache (runtime/CpuObjectCache.h): the key changes with everything an
// object depends on, and entries store and load by it.
#include "CliTestSupport.h"
#include "FakeElfObject.h"

#include "runtime/CpuObjectCache.h"
#include "runtime/DiskCache.h"

#include <gtest/gtest.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/MemoryBuffer.h>

namespace enc {
namespace {

using namespace enc::testing;

CpuObjectKeyParts someParts() {
  return {"jitkey", "irhash", "x86_64-pc-linux-gnu", "znver3", "+avx2,+fma,-avx512f", "19.1.7"};
}

TEST(CpuObjectCache, KeyChangesWithEveryPart) {
  std::string base = cpuObjectKey(someParts());
  EXPECT_TRUE(base.starts_with(fmt::format("{} x86_64-pc-linux-gnu znver3 ", kCpuObjectFormat))) << base;
  EXPECT_EQ(cpuObjectKey(someParts()), base);
  std::vector<std::string CpuObjectKeyParts::*> fields = {
      &CpuObjectKeyParts::jitKey, &CpuObjectKeyParts::irHash,   &CpuObjectKeyParts::triple,
      &CpuObjectKeyParts::cpu,    &CpuObjectKeyParts::features, &CpuObjectKeyParts::llvmVersion};
  for (auto field : fields) {
    CpuObjectKeyParts p = someParts();
    p.*field += "x";
    EXPECT_NE(cpuObjectKey(p), base) << p.*field;
  }
  // A feature flipped on or off is another CPU as far as the object is concerned.
  CpuObjectKeyParts noAvx2 = someParts();
  noAvx2.features = "-avx2,+fma,-avx512f";
  EXPECT_NE(cpuObjectKey(noAvx2), base);
  // Parts cannot trade characters.
  CpuObjectKeyParts shifted = someParts();
  shifted.jitKey = "jitkeyi";
  shifted.irHash = "rhash";
  EXPECT_NE(cpuObjectKey(shifted), base);
}

TEST(CpuObjectCache, StoresAndLoadsByModuleKey) {
  fs::path dir = fs::temp_directory_path() / fmt::format("encc-cpuobjcache-{}", ::getpid());
  fs::remove_all(dir);
  {
    DiskCache disk(dir, 1 << 20);
    CpuObjectCache cache(disk);
    llvm::LLVMContext ctx;
    llvm::Module module("m", ctx);
    std::string object = fakeElfObject();

    // Untagged modules are not cached at all.
    EXPECT_EQ(CpuObjectCache::keyOf(module), "");
    EXPECT_EQ(cache.getObject(&module), nullptr);
    cache.notifyObjectCompiled(&module, llvm::MemoryBufferRef(object, "m"));
    EXPECT_TRUE(disk.list().empty());

    CpuObjectCache::tagKey(module, "k1");
    CpuObjectCache::tagKey(module, "k2"); // retagging replaces
    EXPECT_EQ(CpuObjectCache::keyOf(module), "k2");
    EXPECT_EQ(cache.getObject(&module), nullptr);
    cache.notifyObjectCompiled(&module, llvm::MemoryBufferRef(object, "m"));
    std::unique_ptr<llvm::MemoryBuffer> hit = cache.getObject(&module);
    ASSERT_NE(hit, nullptr);
    EXPECT_EQ(hit->getBuffer().str(), object);
    ASSERT_EQ(disk.list().size(), 1u);
    EXPECT_EQ(disk.list()[0].key, "k2");

    // An intact entry that is not an object file never reaches the linker.
    disk.put("k2", "not an object file");
    EXPECT_EQ(cache.getObject(&module), nullptr);
    // A corrupt one is a miss too (and removed by DiskCache).
    cache.notifyObjectCompiled(&module, llvm::MemoryBufferRef(object, "m"));
    fs::resize_file(disk.entryPath("k2"), fs::file_size(disk.entryPath("k2")) - 1);
    EXPECT_EQ(cache.getObject(&module), nullptr);
    EXPECT_FALSE(fs::exists(disk.entryPath("k2")));
  }
  fs::remove_all(dir);
}

} // namespace
} // namespace enc
