// encc cache: the on-disk kernel cache.
#include "tools/encc/Commands.h"

#include "runtime/DiskCache.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>

namespace enc::cli {

int runCache(const std::string &action) {
  DiskCache &cache = DiskCache::global();
  if (action == "clear") {
    DiskCacheCleared done = cache.clear();
    for (const DiskCacheEntry &e : done.otherThings)
      std::cout << fmt::format("removed {} ({}, not a cache entry)\n", (cache.dir() / e.file).string(), e.problem);
    for (const DiskCacheEntry &e : done.left)
      std::cerr << fmt::format("encc: warning: left {}: {}\n", (cache.dir() / e.file).string(), e.problem);
    std::cout << fmt::format("removed {} entr{} from {}\n", done.entries, done.entries == 1 ? "y" : "ies",
                             cache.dir().string());
    return 0;
  }
  if (action == "list") {
    // Unreadable files are listed where they sort, so that a user sees what get() would refuse.
    int unreadable = 0;
    for (const DiskCacheEntry &e : cache.listAll(/*checkPayloads=*/true)) {
      if (e.problem.empty()) {
        std::cout << fmt::format("{}  {:>10} bytes\n", e.key, e.bytes);
        continue;
      }
      std::cout << fmt::format("{}  {:>10} bytes  unreadable: {}\n", e.file, e.bytes, e.problem);
      ++unreadable;
    }
    if (unreadable)
      std::cout << fmt::format("{} unreadable: a run that needs one rebuilds it; encc cache clear removes them now\n",
                               unreadable);
    return 0;
  }
  std::vector<DiskCacheEntry> entries = cache.list();
  DiskCacheStats s = cache.stats();
  std::string state = cache.enabled() ? "" : " (disabled by ENC_CACHE_DISABLE)";
  std::error_code ec;
  if (cache.enabled() && std::filesystem::exists(cache.dir(), ec))
    if (std::string why = untrustedCacheDir(cache.dir()); !why.empty()) state = fmt::format(" (not used: {})", why);
  std::cout << fmt::format("directory: {}{}\nentries:   {}\nbytes:     {}\n", cache.dir().string(), state, s.entries,
                           s.bytes);
  std::vector<DiskCacheEntry> all = cache.listAll(/*checkPayloads=*/false);
  if (auto bad = std::count_if(all.begin(), all.end(), [](const DiskCacheEntry &e) { return !e.problem.empty(); }))
    std::cout << fmt::format("unreadable: {} (encc cache list shows them)\n", bad);
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
