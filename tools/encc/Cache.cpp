// encc cache: the on-disk kernel cache.
#include "tools/encc/Commands.h"

#include "runtime/DiskCache.h"

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>

namespace enc::cli {

int runCache(const std::string &action) {
  DiskCache &cache = DiskCache::global();
  if (action == "clear") {
    size_t n = cache.list().size();
    cache.clear();
    std::cout << fmt::format("removed {} entr{} from {}\n", n, n == 1 ? "y" : "ies", cache.dir().string());
    return 0;
  }
  std::vector<DiskCacheEntry> entries = cache.list();
  if (action == "list") {
    for (const DiskCacheEntry &e : entries) std::cout << fmt::format("{}  {:>10} bytes\n", e.key, e.bytes);
    return 0;
  }
  DiskCacheStats s = cache.stats();
  std::string state = cache.enabled() ? "" : " (disabled by ENC_CACHE_DISABLE)";
  std::error_code ec;
  if (cache.enabled() && std::filesystem::exists(cache.dir(), ec))
    if (std::string why = untrustedCacheDir(cache.dir()); !why.empty()) state = fmt::format(" (not used: {})", why);
  std::cout << fmt::format("directory: {}{}\nentries:   {}\nbytes:     {}\n", cache.dir().string(), state, s.entries,
                           s.bytes);
  // By kind: the first word of the key.
  std::map<std::string, std::pair<int64_t, int64_t>> kinds;
  for (const DiskCacheEntry &e : entries) {
    std::string kind = e.key.substr(0, e.key.find(' '));
    kind = kind == "encc-cpu-object-1" ? "CPU object code"
           : kind == "encc-nvrtc-1"    ? "NVRTC cubin/PTX"
           : kind == "encc-gpu-tile-1" ? "GPU tile shapes (autotuned)"
                                       : "other";
    kinds[kind].first += 1;
    kinds[kind].second += e.bytes;
  }
  for (const auto &[kind, n] : kinds) std::cout << fmt::format("  {}: {} entries, {} bytes\n", kind, n.first, n.second);
  return 0;
}

} // namespace enc::cli
