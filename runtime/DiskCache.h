// A persistent, process-safe, size-bounded on-disk cache for compiled kernels (NVRTC cubin/PTX, CPU
// object code). The cache is an optimization: a bad entry reads as a miss and an I/O failure while
// writing is silently skipped, so callers never have to handle errors from it.
//
// Each entry is one file, named after sha256Hex(key), holding a self-describing header (magic, format
// version, the full key, payload length and payload checksum) followed by the payload. Writers fill a
// unique temp file and rename() it into place, so readers in any process see either no entry or a
// complete one. The file's modification time is its last-use time; eviction removes the least recently
// used entries until the directory fits the size bound.
//
// Entries are object code that encc links and runs, so the directory must be one no one else can
// write: it is created 0700, and one that belongs to another user or that its group or others may write
// is refused (with a warning, once) and the cache runs as disabled. Only regular files are read, never
// through a symlink, and never more than the header and the size bound allow.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace enc {

struct DiskCacheStats {
  int64_t entries = 0;   // entry files in the directory now
  int64_t bytes = 0;     // their total size on disk (headers included)
  int64_t hits = 0;      // the rest are counted by this process (this DiskCache object) only
  int64_t misses = 0;
  int64_t corrupt = 0;
  int64_t evictions = 0;
};

struct DiskCacheEntry {
  std::string key;    // empty when the file is unreadable
  std::string file;   // the name of the file in the cache directory
  int64_t bytes;      // size of the entry file on disk (0 for what is not a regular file)
  std::filesystem::file_time_type lastUsed;
  std::string problem; // why it is not a usable entry ("truncated: ..."); empty for a sound one
};

// What clear() removed and what it left.
struct DiskCacheCleared {
  int64_t entries = 0;                     // regular files under entry names, readable or not
  std::vector<DiskCacheEntry> otherThings; // removed FIFOs, links, empty directories, ...; `problem` says which
  std::vector<DiskCacheEntry> left;        // not removed; `problem` says why
};

// The size bound in bytes that ENC_CACHE_MAX_MB (`text`, nullptr when unset) asks for: 1024 MiB when unset;
// enc::Error naming the variable for anything but a whole number of megabytes whose byte count fits.
int64_t cacheMaxBytesFromEnv(const char *text);

// Why `dir` must not hold a cache whose code this process runs ("it is writable by others (mode 0777)"),
// or "" when it is a directory of this user that neither its group nor others can write.
std::string untrustedCacheDir(const std::filesystem::path &dir);

class DiskCache {
public:
  // Directory: $ENC_CACHE_DIR, else $XDG_CACHE_HOME/encc, else ~/.cache/encc, else (no HOME)
  // $TMPDIR/encc-cache-<uid>. Size bound: $ENC_CACHE_MAX_MB (default 1024; a bad value throws enc::Error).
  // Disabled (get always misses, put does nothing) when ENC_CACHE_DISABLE=1.
  static DiskCache &global();

  DiskCache(std::filesystem::path dir, int64_t maxBytes, bool enabled = true);

  bool enabled() const { return enabled_; }
  const std::filesystem::path &dir() const { return dir_; }
  int64_t maxBytes() const { return maxBytes_; }

  // Where the entry for `key` lives (whether or not it exists).
  std::filesystem::path entryPath(const std::string &key) const;

  // The payload stored under `key`, or nullopt. A corrupt, truncated, oversized or foreign entry (or
  // anything but a regular file under its name) counts as corrupt, is removed, and reads as a miss. A hit
  // refreshes the entry's last-use time.
  std::optional<std::string> get(const std::string &key);

  // Stores `bytes` under `key` atomically (temp file + rename), then evicts least-recently-used entries
  // until the total fits the bound. Skipped silently on I/O failure or when the entry alone exceeds it.
  void put(const std::string &key, std::string_view bytes);

  // Whether get and put use the directory: enabled, and the directory exists (made 0700 if missing) and is
  // trusted (see untrustedCacheDir). Decided on first use; a refused directory is reported once on stderr.
  bool usable();

  // Removes the entry under `key`, if any: one whose payload the caller found unusable.
  void remove(const std::string &key);

  // Every readable entry, oldest use first (only headers are read). Unreadable files are left out.
  std::vector<DiskCacheEntry> list() const;

  // Every file whose name ends in ".entry", oldest use first: the readable entries and, with `problem`
  // set, what get() would refuse (anything but a regular file, a bad header, a size that disagrees with
  // it, a key filed under another name). `checkPayloads` also reads each payload and checks its
  // checksum. Nothing is opened through a symlink or waited for (a FIFO).
  std::vector<DiskCacheEntry> listAll(bool checkPayloads) const;

  DiskCacheStats stats() const;

  // Removes every entry and stray temp file: whatever is under a name ending in ".entry" or starting
  // with ".tmp-", unlinked without being opened, so a FIFO cannot block it and a symlink is removed,
  // never followed. A directory under such a name (encc writes none) is removed only when empty.
  DiskCacheCleared clear();

private:
  void evict(const std::filesystem::path &keep);

  std::filesystem::path dir_;
  int64_t maxBytes_;
  bool enabled_;
  std::once_flag checked_;
  bool usable_ = false;
  std::atomic<int64_t> hits_{0}, misses_{0}, corrupt_{0}, evictions_{0};
};

} // namespace enc
