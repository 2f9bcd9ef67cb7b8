#include "runtime/DiskCache.h"

#include "runtime/Hash.h"
#include "support/Env.h"
#include "support/Error.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <mutex>

namespace fs = std::filesystem;

namespace enc {

namespace {

constexpr std::string_view kMagic = "ENCCACHE";
constexpr uint32_t kVersion = 1;
constexpr size_t kChecksumLen = 64;
// Keys are normally 64-char hashes; the cap only stops a garbage length from driving a huge read.
constexpr uint32_t kMaxKeyLen = 1 << 20;
constexpr std::string_view kEntrySuffix = ".entry";
constexpr std::string_view kTempPrefix = ".tmp-";
// A temp file this old belongs to a writer that died; anything younger may still be in flight.
constexpr auto kStaleTemp = std::chrono::hours(1);

size_t headerSize(size_t keyLen) { return kMagic.size() + 4 + 4 + keyLen + 8 + kChecksumLen; }

// Fixed little-endian encoding, so the format does not depend on the host.
void putLE(std::string &out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t getLE(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

std::string encodeHeader(const std::string &key, std::string_view payload) {
  std::string h;
  h.reserve(headerSize(key.size()));
  h.append(kMagic);
  putLE(h, kVersion, 4);
  putLE(h, key.size(), 4);
  h.append(key);
  putLE(h, payload.size(), 8);
  h.append(sha256Hex(payload));
  return h;
}

struct Header {
  std::string_view key;
  uint64_t payloadLen = 0;
  std::string_view checksum;
  size_t size = 0; // bytes before the payload
};

// Parses the header at the start of `data` (which may be only a prefix of the file).
std::optional<Header> parseHeader(std::string_view data) {
  size_t fixed = kMagic.size() + 8;
  if (data.size() < fixed || data.substr(0, kMagic.size()) != kMagic) return std::nullopt;
  if (getLE(data, kMagic.size(), 4) != kVersion) return std::nullopt;
  uint64_t keyLen = getLE(data, kMagic.size() + 4, 4);
  if (keyLen > kMaxKeyLen || data.size() < headerSize(keyLen)) return std::nullopt;
  Header h;
  h.key = data.substr(fixed, keyLen);
  h.payloadLen = getLE(data, fixed + keyLen, 8);
  h.checksum = data.substr(fixed + keyLen + 8, kChecksumLen);
  h.size = headerSize(keyLen);
  return h;
}

bool isEntryName(const std::string &name) {
  return name.size() == 64 + kEntrySuffix.size() && name.ends_with(kEntrySuffix) && name[0] != '.';
}

bool isTempName(const std::string &name) { return name.starts_with(kTempPrefix); }

// The names the cache owns: whatever is under one is listed (as unreadable when it is not an entry)
// and cleared, even if encc would never have written it (a directory, a FIFO, a name of the wrong length).
bool isCacheName(const std::string &name) {
  return isTempName(name) || (name.ends_with(kEntrySuffix) && name.size() > kEntrySuffix.size() && name[0] != '.');
}

// What lstat() found, in words, for anything but a regular file.
std::string kindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

bool readAll(int fd, char *buf, size_t n) {
  while (n > 0) {
    ssize_t got = ::read(fd, buf, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    buf += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool writeAll(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t put = ::write(fd, buf, n);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    buf += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

// Opens an entry for reading without following a symlink or blocking on a FIFO; `st` describes what was
// opened. Only a regular file is returned (-1 otherwise, with `opened` telling whether something was
// opened and stat'ed at all), so a planted FIFO or device can neither hang nor feed a read.
int openEntry(const fs::path &path, struct stat &st, bool &opened) {
  opened = false;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return -1;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return -1;
  }
  opened = true;
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The header bytes (magic to checksum) of the open entry file of `fileSize` bytes, read without trusting
// its length fields further than the file reaches; nullopt when the file cannot hold a header.
std::optional<std::string> readHeaderBytes(int fd, uint64_t fileSize) {
  size_t fixed = headerSize(0);
  if (fileSize < fixed) return std::nullopt;
  std::string head(fixed, '\0');
  if (!readAll(fd, head.data(), head.size()) || !head.starts_with(kMagic)) return std::nullopt;
  // The key sits inside the header, so read its bytes and the header is complete.
  uint64_t keyLen = getLE(head, kMagic.size() + 4, 4);
  if (keyLen > kMaxKeyLen || headerSize(keyLen) > fileSize) return std::nullopt;
  head.resize(headerSize(keyLen));
  if (!readAll(fd, head.data() + fixed, keyLen)) return std::nullopt;
  return head;
}

// The payload of the open entry file of `fileSize` bytes, if it is a sound entry for `key`. The sizes are
// checked against the header and the cache's bound before anything is allocated: put() never writes an
// entry larger than the bound, so a huge (or sparse) file costs no more than reading its header.
std::optional<std::string> readPayload(int fd, const std::string &key, uint64_t fileSize, int64_t maxBytes) {
  if (maxBytes < 0 || fileSize > static_cast<uint64_t>(maxBytes)) return std::nullopt;
  std::optional<std::string> head = readHeaderBytes(fd, fileSize);
  if (!head) return std::nullopt;
  std::optional<Header> h = parseHeader(*head);
  if (!h || h->key != key || h->payloadLen != fileSize - h->size) return std::nullopt;
  std::string payload;
  try {
    payload.resize(static_cast<size_t>(h->payloadLen));
  } catch (const std::bad_alloc &) {
    return std::nullopt;
  }
  if (!readAll(fd, payload.data(), payload.size()) || sha256Hex(payload) != h->checksum) return std::nullopt;
  return payload;
}

// Removes `path` only if it is still the file we opened: another process may have renamed a good
// entry over the bad one since we read it, and that one must survive.
void removeIfSame(const fs::path &path, const struct stat &opened) {
  struct stat now;
  if (::stat(path.c_str(), &now) == 0 && now.st_dev == opened.st_dev && now.st_ino == opened.st_ino)
    ::unlink(path.c_str());
}

// Why the regular file `path` (named `name`) is not an entry get() would use, or "" when it is one (`key` is
// then set). Reads the header only, unless `checkPayload` asks for the checksum too; nothing larger than
// the size bound is read.
std::string inspectEntry(const fs::path &path, const std::string &name, int64_t maxBytes, bool checkPayload,
                         std::string &key) {
  struct stat st;
  bool opened = false;
  int fd = openEntry(path, st, opened);
  if (fd < 0) {
    if (opened) return kindOf(st.st_mode) + ", not a cache entry";
    return fmt::format("cannot be opened: {}", std::strerror(errno));
  }
  auto fileSize = static_cast<uint64_t>(st.st_size);
  auto readAt = [&](std::string &buf, uint64_t at) {
    return ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(at)) == static_cast<ssize_t>(buf.size());
  };
  std::string why;
  std::string head(std::min<uint64_t>(fileSize, headerSize(0)), '\0');
  if (!readAt(head, 0)) why = "cannot read its header";
  else if (fileSize == 0)
    why = "an empty file";
  else if (!head.starts_with(kMagic.substr(0, std::min(head.size(), kMagic.size()))))
    why = "not an encc cache entry (it does not start with ENCCACHE)";
  else if (head.size() < headerSize(0))
    why = fmt::format("truncated: {} bytes, shorter than an entry's header", fileSize);
  else if (getLE(head, kMagic.size(), 4) != kVersion)
    why = fmt::format("written in another entry format (version {}; this encc reads version {})",
                      getLE(head, kMagic.size(), 4), kVersion);
  else if (maxBytes < 0 || fileSize > static_cast<uint64_t>(maxBytes))
    why = fmt::format("larger than the cache's size bound ({} bytes)", maxBytes);
  else if (uint64_t keyLen = getLE(head, kMagic.size() + 4, 4); keyLen > kMaxKeyLen || headerSize(keyLen) > fileSize)
    why = fmt::format("truncated inside its header (which announces a key of {} bytes)", keyLen);
  else {
    head.resize(headerSize(keyLen));
    std::optional<Header> h;
    if (readAt(head, 0)) h = parseHeader(head);
    if (!h) why = "cannot read its header";
    else if (h->size + h->payloadLen > fileSize)
      why = fmt::format("truncated: its header announces {} payload bytes, the file holds {}", h->payloadLen,
                        fileSize - h->size);
    else if (h->size + h->payloadLen < fileSize)
      why = fmt::format("{} bytes after the payload its header announces", fileSize - h->size - h->payloadLen);
    else if (sha256Hex(h->key) + std::string(kEntrySuffix) != name)
      why = "its key belongs under another name (a file copied or renamed here)";
    else if (checkPayload) {
      std::string payload(h->payloadLen, '\0');
      if (!readAt(payload, h->size)) why = "cannot read its payload";
      else if (sha256Hex(payload) != h->checksum) why = "its payload does not match its checksum";
    }
    if (why.empty()) key = std::string(h->key);
  }
  ::close(fd);
  return why;
}

struct Scanned {
  fs::path path;
  int64_t bytes;
  fs::file_time_type mtime;
};

// Entry files in `dir` (unverified); also removes temp files left behind by dead writers.
std::vector<Scanned> scanEntries(const fs::path &dir, bool sweepTemps) {
  std::vector<Scanned> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) return out;
  auto now = fs::file_time_type::clock::now();
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    std::error_code fec;
    std::string name = it->path().filename().string();
    if (isTempName(name)) {
      if (sweepTemps) {
        auto t = fs::last_write_time(it->path(), fec);
        if (!fec && now - t > kStaleTemp) fs::remove(it->path(), fec);
      }
      continue;
    }
    if (!isEntryName(name) || !fs::is_regular_file(it->symlink_status(fec))) continue;
    auto size = fs::file_size(it->path(), fec);
    if (fec) continue; // vanished under us (another process evicted it)
    auto t = fs::last_write_time(it->path(), fec);
    if (fec) continue;
    out.push_back({it->path(), static_cast<int64_t>(size), t});
  }
  return out;
}

// The fallback under the temp directory is per user: a directory shared by all users is one that another
// user could create first and fill with object code (the trust check would then refuse it).
fs::path defaultDir() {
  if (const char *d = std::getenv("ENC_CACHE_DIR"); d && *d) return d;
  if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "encc";
  if (const char *h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "encc";
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  return (ec ? fs::path("/tmp") : tmp) / fmt::format("encc-cache-{}", ::geteuid());
}

bool defaultEnabled() {
  return !envFlag("ENC_CACHE_DISABLE");
}

} // namespace

int64_t cacheMaxBytesFromEnv(const char *text) {
  constexpr int64_t kMiB = int64_t{1} << 20;
  constexpr int64_t kMaxMiB = std::numeric_limits<int64_t>::max() / kMiB;
  if (!text) return 1024 * kMiB;
  std::optional<int64_t> mb = parseInteger(text);
  if (!mb || *mb < 0 || *mb > kMaxMiB)
    throw Error(fmt::format("ENC_CACHE_MAX_MB='{}' is not a size in megabytes from 0 to {}", text, kMaxMiB),
                "unset it for the default (1024), or set ENC_CACHE_DISABLE=1 to run without the kernel cache");
  return *mb * kMiB;
}

std::string untrustedCacheDir(const fs::path &dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return fmt::format("cannot inspect it: {}", std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return "it is not a directory";
  if (st.st_uid != ::geteuid()) return fmt::format("it belongs to uid {}, not to this user (uid {})", st.st_uid, ::geteuid());
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return fmt::format("it is writable by {} (mode {:04o})", st.st_mode & S_IWOTH ? "others" : "its group",
                       st.st_mode & 07777);
  return {};
}

DiskCache &DiskCache::global() {
  static DiskCache cache(defaultDir(), cacheMaxBytesFromEnv(std::getenv("ENC_CACHE_MAX_MB")), defaultEnabled());
  return cache;
}

DiskCache::DiskCache(fs::path dir, int64_t maxBytes, bool enabled)
    : dir_(std::move(dir)), maxBytes_(maxBytes), enabled_(enabled) {}

bool DiskCache::usable() {
  if (!enabled_) return false;
  std::call_once(checked_, [this] {
    // The parents are made as any program makes directories; the cache itself is private (0700).
    fs::path dir = dir_.has_filename() ? dir_ : dir_.parent_path();
    std::error_code ec;
    if (dir.has_parent_path()) fs::create_directories(dir.parent_path(), ec);
    std::string why;
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      why = fmt::format("cannot create it: {}", std::strerror(errno));
    else
      why = untrustedCacheDir(dir);
    if (why.empty()) {
      usable_ = true;
      return;
    }
    std::cerr << fmt::format("encc: warning: not using the kernel cache {}: {}\n"
                             "  hint: kernels are compiled afresh each run; use a directory only you can write "
                             "(chmod 700 it, or set ENC_CACHE_DIR)\n",
                             dir_.string(), why);
  });
  return usable_;
}

fs::path DiskCache::entryPath(const std::string &key) const {
  return dir_ / (sha256Hex(key) + std::string(kEntrySuffix));
}

std::optional<std::string> DiskCache::get(const std::string &key) {
  if (!usable()) {
    ++misses_;
    return std::nullopt;
  }
  fs::path path = entryPath(key);
  struct stat st;
  bool opened = false;
  int fd = openEntry(path, st, opened);
  if (fd < 0) {
    // Something other than a regular file under an entry's name (a FIFO, a device) is never an entry.
    if (opened) {
      removeIfSame(path, st);
      ++corrupt_;
    }
    ++misses_;
    return std::nullopt;
  }
  std::optional<std::string> payload = readPayload(fd, key, static_cast<uint64_t>(st.st_size), maxBytes_);
  if (!payload) {
    // A bad entry is a miss too; drop it so the next put() can replace it.
    removeIfSame(path, st);
    ::close(fd);
    ++corrupt_;
    ++misses_;
    return std::nullopt;
  }
  ::futimens(fd, nullptr); // mtime is the LRU clock; best effort
  ::close(fd);
  ++hits_;
  return payload;
}

void DiskCache::put(const std::string &key, std::string_view bytes) {
  if (!enabled_) return;
  std::string header = encodeHeader(key, bytes);
  // An entry that cannot fit would only evict everything else and then itself.
  if (static_cast<int64_t>(header.size() + bytes.size()) > maxBytes_) return;
  if (!usable()) return;

  // Unique per process and per call, so concurrent writers never share a temp file.
  static std::atomic<uint64_t> counter{0};
  std::string hash = sha256Hex(key);
  fs::path tmp = dir_ / fmt::format("{}{}-{}-{}-{}", kTempPrefix, hash, ::getpid(), counter++,
                                    std::chrono::steady_clock::now().time_since_epoch().count());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return;
  bool ok = writeAll(fd, header.data(), header.size()) && writeAll(fd, bytes.data(), bytes.size());
  ok = (::close(fd) == 0) && ok;
  fs::path dest = dir_ / (hash + std::string(kEntrySuffix));
  // rename() replaces atomically: readers see the old entry or the new one, never a mix.
  if (!ok || ::rename(tmp.c_str(), dest.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return;
  }
  evict(dest);
}

void DiskCache::remove(const std::string &key) {
  if (!usable()) return;
  std::error_code ec;
  fs::remove(entryPath(key), ec);
}

void DiskCache::evict(const fs::path &keep) {
  std::vector<Scanned> entries = scanEntries(dir_, /*sweepTemps=*/true);
  int64_t total = 0;
  for (const Scanned &e : entries) total += e.bytes;
  if (total <= maxBytes_) return;
  auto byUse = [](const Scanned &a, const Scanned &b) { return a.mtime < b.mtime; };
  std::sort(entries.begin(), entries.end(), byUse);
  for (const Scanned &e : entries) {
    if (total <= maxBytes_) break;
    if (e.path == keep) continue; // the entry just written is the most recently used one
    std::error_code ec;
    if (fs::remove(e.path, ec)) ++evictions_;
    // Gone either way: removed here or by a concurrent evictor.
    if (!ec) total -= e.bytes;
  }
}

std::vector<DiskCacheEntry> DiskCache::list() const {
  std::vector<DiskCacheEntry> out;
  for (DiskCacheEntry &e : listAll(/*checkPayloads=*/false))
    if (e.problem.empty()) out.push_back(std::move(e));
  return out;
}

std::vector<DiskCacheEntry> DiskCache::listAll(bool checkPayloads) const {
  std::vector<DiskCacheEntry> out;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (isTempName(name) || !isCacheName(name)) continue;
    struct stat lst;
    if (::lstat(it->path().c_str(), &lst) != 0) continue; // gone (another process evicted it)
    DiskCacheEntry e{{}, name, 0, fs::file_time_type::min(), {}};
    if (!S_ISREG(lst.st_mode)) {
      e.problem = kindOf(lst.st_mode) + ", not a cache entry";
      if (S_ISLNK(lst.st_mode)) e.problem += " (encc never follows links here)";
      out.push_back(std::move(e));
      continue;
    }
    e.bytes = static_cast<int64_t>(lst.st_size);
    std::error_code tec;
    e.lastUsed = fs::last_write_time(it->path(), tec);
    e.problem = inspectEntry(it->path(), name, maxBytes_, checkPayloads, e.key);
    out.push_back(std::move(e));
  }
  auto byUse = [](const DiskCacheEntry &a, const DiskCacheEntry &b) { return a.lastUsed < b.lastUsed; };
  std::stable_sort(out.begin(), out.end(), byUse);
  return out;
}

DiskCacheStats DiskCache::stats() const {
  DiskCacheStats s;
  for (const Scanned &e : scanEntries(dir_, /*sweepTemps=*/false)) {
    ++s.entries;
    s.bytes += e.bytes;
  }
  s.hits = hits_;
  s.misses = misses_;
  s.corrupt = corrupt_;
  s.evictions = evictions_;
  return s;
}

DiskCacheCleared DiskCache::clear() {
  DiskCacheCleared done;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec), end;
  std::vector<fs::path> doomed;
  for (; !ec && it != end; it.increment(ec))
    if (isCacheName(it->path().filename().string())) doomed.push_back(it->path());
  for (const fs::path &p : doomed) {
    struct stat lst;
    if (::lstat(p.c_str(), &lst) != 0) continue;
    DiskCacheEntry e{{}, p.filename().string(), 0, {}, kindOf(lst.st_mode)};
    if (S_ISDIR(lst.st_mode)) {
      // rmdir() removes only an empty directory: what is inside one encc did not make is the user's to look at.
      if (::rmdir(p.c_str()) == 0) done.otherThings.push_back(std::move(e));
      else if (errno != ENOENT) {
        e.problem = errno == ENOTEMPTY || errno == EEXIST
                        ? "a directory that is not empty: encc writes no directories here, so it leaves its contents "
                          "for you to look at and remove"
                        : fmt::format("a directory that cannot be removed: {}", std::strerror(errno));
        done.left.push_back(std::move(e));
      }
      continue;
    }
    // unlink() never opens what it removes (a FIFO cannot block it) nor follows a link out of the directory.
    if (::unlink(p.c_str()) != 0) {
      if (errno != ENOENT) {
        e.problem = fmt::format("cannot be removed: {}", std::strerror(errno));
        done.left.push_back(std::move(e));
      }
      continue;
    }
    if (S_ISREG(lst.st_mode)) {
      if (!isTempName(e.file)) ++done.entries;
    } else {
      done.otherThings.push_back(std::move(e));
    }
  }
  return done;
}

} // namespace enc
