// libFuzzer target: bytes as a kernel cache entry file (DiskCache::get, the reader every cached
// compile goes through, on a real file in a private directory). A sound entry must come back
// byte for byte; anything else must read as a miss and be removed. Never an exception: the
// cache reports nothing to its callers.
#include "FuzzSupport.h"

#include "runtime/DiskCache.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

namespace {

namespace fs = std::filesystem;

// The key the seeds' entries are stored under (fuzz/SeedGenerator.cpp writes them).
const std::string kKey = "fuzz-key";

// A private directory (0700, mkdtemp) for the run, removed at exit.
const fs::path &cacheDir() {
  static const fs::path dir = [] {
    std::string base = fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    std::string pattern = base + "/encc-fuzz-cache-XXXXXX";
    if (!::mkdtemp(pattern.data())) std::abort();
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(cacheDir(), ec);
    });
    return fs::path(pattern);
  }();
  return dir;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char *>(data), size);
  enc::fuzz::guarded(bytes, /*printInput=*/false, [&] {
    enc::DiskCache cache(cacheDir(), /*maxBytes=*/int64_t(1) << 20);
    const fs::path path = cache.entryPath(kKey);
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!out) enc::internalError("fuzz: cannot write {}", path.string());
    }
    (void)cache.list();
    (void)cache.stats();
    const std::optional<std::string> payload = cache.get(kKey);
    if (payload) {
      // A hit is what put() would have written for that payload, and the entry stays.
      enc::DiskCache other(cacheDir() / "again", int64_t(1) << 20);
      other.put(kKey, *payload);
      std::ifstream in(other.entryPath(kKey), std::ios::binary);
      const std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (written != bytes) enc::internalError("fuzz: a cache hit on an entry put() does not write that way");
      if (!fs::exists(path)) enc::internalError("fuzz: a cache hit removed its entry");
      other.clear();
    } else if (fs::exists(path)) {
      enc::internalError("fuzz: an entry that reads as a miss was left in place");
    }
    std::error_code ec;
    fs::remove(path, ec);
  });
  return 0;
}
