#include "runtime/DiskCache.h"
#include "support/Error.h"

#include <fmt/format.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

using namespace enc;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed afterwards.
struct ScratchDir {
  ScratchDir() {
    std::random_device rd;
    path = fs::temp_directory_path() /
           ("encc-diskcache-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path);
    // Whatever the umask: a cache refuses a directory its group or others may write.
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::replace);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

std::string readFile(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const fs::path &p, const std::string &data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

// Temp files (in flight or left behind) in `dir`.
int countTemps(const fs::path &dir) {
  int n = 0;
  for (const auto &e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(".tmp-")) ++n;
  return n;
}

// mtime granularity is a kernel tick, so LRU order needs the operations spread out.
void tick() { std::this_thread::sleep_for(std::chrono::milliseconds(30)); }

std::string bigPayload(size_t n) {
  std::string s(n, '\0');
  std::mt19937 rng(42);
  for (char &c : s) c = static_cast<char>(rng());
  return s;
}

} // namespace

TEST(DiskCache, MissThenHit) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 1 << 20);
  EXPECT_FALSE(cache.get("k1"));
  cache.put("k1", "hello");
  auto v = cache.get("k1");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "hello");
  DiskCacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 1);
  EXPECT_GT(s.bytes, 5);
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.corrupt, 0);
  auto entries = cache.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].key, "k1");
  EXPECT_EQ(entries[0].bytes, s.bytes);
  // put replaces an existing entry.
  cache.put("k1", "world");
  EXPECT_EQ(cache.get("k1").value_or(""), "world");
  EXPECT_EQ(cache.stats().entries, 1);
}

TEST(DiskCache, BinaryAndLargePayloads) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 64 << 20);
  std::string nul("a\0b\0\0c", 6);
  cache.put("nul", nul);
  EXPECT_EQ(cache.get("nul").value_or(""), nul);
  cache.put("empty", "");
  auto e = cache.get("empty");
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->empty());
  std::string big = bigPayload(5 << 20);
  cache.put("big", big);
  auto v = cache.get("big");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, big);
}

TEST(DiskCache, TruncatedEntryIsCorrupt) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 1 << 20);
  cache.put("k", bigPayload(1000));
  fs::path p = cache.entryPath("k");
  ASSERT_TRUE(fs::exists(p));
  fs::resize_file(p, fs::file_size(p) / 2);
  EXPECT_FALSE(cache.get("k"));
  EXPECT_EQ(cache.stats().corrupt, 1);
  EXPECT_FALSE(fs::exists(p));
  cache.put("k", "fresh");
  EXPECT_EQ(cache.get("k").value_or(""), "fresh");
}

TEST(DiskCache, FlippedPayloadByteIsCorrupt) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 1 << 20);
  cache.put("k", bigPayload(1000));
  fs::path p = cache.entryPath("k");
  std::string data = readFile(p);
  data[data.size() - 10] ^= 0x01;
  writeFile(p, data);
  EXPECT_FALSE(cache.get("k"));
  EXPECT_EQ(cache.stats().corrupt, 1);
  EXPECT_FALSE(fs::exists(p));
  cache.put("k", "fresh");
  EXPECT_EQ(cache.get("k").value_or(""), "fresh");
}

TEST(DiskCache, FlippedHeaderBytesAreCorrupt) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 1 << 20);
  // Magic, version, key length, key bytes, payload length and checksum in turn.
  std::string key = "header-key";
  size_t keyStart = 8 + 4 + 4;
  std::vector<size_t> offsets = {0, 8, 12, keyStart + 3, keyStart + key.size() + 1,
                                 keyStart + key.size() + 8 + 5};
  int corrupt = 0;
  for (size_t off : offsets) {
    cache.put(key, "payload bytes");
    fs::path p = cache.entryPath(key);
    std::string data = readFile(p);
    ASSERT_LT(off, data.size());
    data[off] ^= 0x20;
    writeFile(p, data);
    EXPECT_FALSE(cache.get(key)) << "offset " << off;
    EXPECT_EQ(cache.stats().corrupt, ++corrupt) << "offset " << off;
    EXPECT_FALSE(fs::exists(p)) << "offset " << off;
  }
  cache.put(key, "fresh");
  EXPECT_EQ(cache.get(key).value_or(""), "fresh");
}

TEST(DiskCache, ForeignFilesAreRejected) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 1 << 20);
  // A file that is not a cache entry at all.
  writeFile(cache.entryPath("a"), "not a cache entry");
  EXPECT_FALSE(cache.get("a"));
  EXPECT_FALSE(fs::exists(cache.entryPath("a")));
  // A valid entry for another key under this key's name (what a hash collision would look like).
  cache.put("b", "b's payload");
  fs::copy_file(cache.entryPath("b"), cache.entryPath("c"));
  EXPECT_FALSE(cache.get("c"));
  EXPECT_FALSE(fs::exists(cache.entryPath("c")));
  EXPECT_EQ(cache.stats().corrupt, 2);
  EXPECT_EQ(cache.get("b").value_or(""), "b's payload");
  // Files that are not named like entries are ignored by list/stats and left alone by clear.
  writeFile(dir / "README", "hi");
  EXPECT_EQ(cache.list().size(), 1u);
  cache.clear();
  EXPECT_TRUE(fs::exists(dir / "README"));
}

TEST(DiskCache, EvictsLeastRecentlyUsed) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  std::string payload = bigPayload(1000);
  // Measure one entry's size on disk to set a bound of exactly three entries.
  int64_t entryBytes;
  {
    DiskCache probe(dir, 1 << 20);
    probe.put("k0", payload);
    entryBytes = probe.stats().bytes;
    probe.clear();
  }
  int64_t bound = 3 * entryBytes + entryBytes / 2;
  DiskCache cache(dir, bound);
  for (const char *k : {"k1", "k2", "k3"}) {
    cache.put(k, payload);
    tick();
  }
  EXPECT_EQ(cache.stats().entries, 3);
  EXPECT_TRUE(cache.get("k1")); // k1 becomes the most recently used; k2 is now the oldest
  tick();
  cache.put("k4", payload);
  DiskCacheStats s = cache.stats();
  EXPECT_LE(s.bytes, bound);
  EXPECT_EQ(s.entries, 3);
  EXPECT_EQ(s.evictions, 1);
  EXPECT_FALSE(fs::exists(cache.entryPath("k2")));
  for (const char *k : {"k1", "k3", "k4"}) EXPECT_TRUE(cache.get(k)) << k;
  // An entry larger than the whole bound is not stored and evicts nothing.
  cache.put("huge", bigPayload(static_cast<size_t>(bound)));
  EXPECT_FALSE(fs::exists(cache.entryPath("huge")));
  EXPECT_EQ(cache.stats().entries, 3);
}

TEST(DiskCache, DisabledCacheDoesNothing) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir / "sub", 1 << 20, /*enabled=*/false);
  EXPECT_FALSE(cache.enabled());
  cache.put("k", "v");
  EXPECT_FALSE(cache.get("k"));
  EXPECT_FALSE(fs::exists(dir / "sub"));
  EXPECT_EQ(cache.stats().misses, 1);
  EXPECT_EQ(cache.stats().entries, 0);
}

TEST(DiskCache, ClearEmptiesTheCache) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 1 << 20);
  for (int i = 0; i < 5; ++i) cache.put("k" + std::to_string(i), "v");
  writeFile(dir / ".tmp-stray", "half-written");
  EXPECT_EQ(cache.stats().entries, 5);
  cache.clear();
  EXPECT_EQ(cache.stats().entries, 0);
  EXPECT_EQ(cache.stats().bytes, 0);
  EXPECT_TRUE(cache.list().empty());
  EXPECT_EQ(countTemps(dir), 0);
  EXPECT_FALSE(cache.get("k0"));
}

TEST(DiskCache, UnwritableDirectoryIsSkipped) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  // A regular file where the directory should be: create_directories fails, put must not throw.
  writeFile(dir / "blocker", "x");
  DiskCache cache(dir / "blocker" / "cache", 1 << 20);
  EXPECT_NO_THROW(cache.put("k", "v"));
  EXPECT_FALSE(cache.get("k"));
  EXPECT_EQ(cache.stats().entries, 0);
}

TEST(DiskCache, ConcurrentProcessesPutSameKey) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  constexpr int kChildren = 8;
  std::string payload = bigPayload(256 << 10);
  // Children block on the pipe until the parent closes it, so they all write at once.
  int gate[2];
  ASSERT_EQ(::pipe(gate), 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(gate[1]);
      char c;
      (void)::read(gate[0], &c, 1);
      DiskCache cache(dir, 64 << 20);
      cache.put("shared", payload);
      auto v = cache.get("shared");
      ::_exit(v && *v == payload ? 0 : 1);
    }
    pids.push_back(pid);
  }
  ::close(gate[0]);
  ::close(gate[1]);
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << pid;
  }
  DiskCache cache(dir, 64 << 20);
  auto entries = cache.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].key, "shared");
  EXPECT_EQ(cache.get("shared").value_or(""), payload);
  EXPECT_EQ(countTemps(dir), 0);
}

TEST(DiskCache, ConcurrentThreadsPutDifferentKeys) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 64 << 20);
  constexpr int kThreads = 4, kPerThread = 20;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
        cache.put(key, "payload of " + key);
      }
    });
  for (auto &th : threads) th.join();
  EXPECT_EQ(cache.stats().entries, kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPerThread; ++i) {
      std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
      EXPECT_EQ(cache.get(key).value_or(""), "payload of " + key);
    }
  EXPECT_EQ(cache.stats().hits, kThreads * kPerThread);
  EXPECT_EQ(countTemps(dir), 0);
}

// ---- hostile directory contents ---------------------------------------------------------------------

TEST(DiskCache, FifoUnderAnEntryNameIsAMissNotAHang) {
  ScratchDir scratch;
  DiskCache cache(scratch.path, 1 << 20);
  fs::path p = cache.entryPath("k");
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  auto got = std::async(std::launch::async, [&] { return cache.get("k"); });
  if (got.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    // Let the blocked reader see end-of-file so the test can finish and report.
    int w = ::open(p.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
    FAIL() << "get() blocked on a FIFO";
  }
  EXPECT_FALSE(got.get());
  EXPECT_EQ(cache.stats().corrupt, 1);
  // put() replaces it with a real entry.
  cache.put("k", "v");
  EXPECT_EQ(cache.get("k").value_or(""), "v");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(p)));
}

TEST(DiskCache, SymlinkedEntryIsNotFollowed) {
  ScratchDir scratch;
  fs::path elsewhere = scratch.path / "elsewhere";
  fs::create_directories(elsewhere);
  fs::permissions(elsewhere, fs::perms::owner_all, fs::perm_options::replace);
  DiskCache other(elsewhere, 1 << 20);
  other.put("k", "planted");
  ASSERT_TRUE(other.get("k"));
  fs::path cacheDir = scratch.path / "cache";
  DiskCache cache(cacheDir, 1 << 20);
  cache.put("unrelated", "x"); // creates the directory
  fs::create_symlink(other.entryPath("k"), cache.entryPath("k"));
  EXPECT_FALSE(cache.get("k"));
  // The link's target is left alone; put() replaces the link itself.
  EXPECT_EQ(other.get("k").value_or(""), "planted");
  cache.put("k", "own");
  EXPECT_EQ(cache.get("k").value_or(""), "own");
  EXPECT_FALSE(fs::is_symlink(cache.entryPath("k")));
  EXPECT_EQ(other.get("k").value_or(""), "planted");
}

// Whatever lies under a name ending in ".entry" is listed; what get() would refuse is marked with why.
TEST(DiskCache, ListAllShowsUnreadableFilesAndWhy) {
  ScratchDir scratch;
  const fs::path &dir = scratch.path;
  DiskCache cache(dir, 1 << 20);
  cache.put("good", "payload");
  cache.put("cut", "a payload cut short");
  std::string cut = readFile(cache.entryPath("cut"));
  writeFile(cache.entryPath("cut"), cut.substr(0, cut.size() - 3));
  cache.put("flipped", "a payload with a flipped byte");
  std::string flipped = readFile(cache.entryPath("flipped"));
  flipped.back() ^= 0x20;
  writeFile(cache.entryPath("flipped"), flipped);
  writeFile(dir / "foreign.entry", "not a cache entry at all");
  ASSERT_EQ(::mkfifo((dir / "fifo.entry").c_str(), 0600), 0);
  fs::create_directory(dir / "dir.entry");
  fs::create_symlink(cache.entryPath("good"), dir / "link.entry");
  writeFile(dir / "README", "not named like an entry");

  auto listed = std::async(std::launch::async, [&] { return cache.listAll(/*checkPayloads=*/true); });
  ASSERT_EQ(listed.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "listAll() blocked on a FIFO";
  std::map<std::string, DiskCacheEntry> byFile;
  for (const DiskCacheEntry &e : listed.get()) byFile.emplace(e.file, e);
  auto problemOf = [&](const std::string &file) { return byFile.count(file) ? byFile.at(file).problem : "(not listed)"; };
  std::string good = cache.entryPath("good").filename().string();
  EXPECT_EQ(problemOf(good), "");
  EXPECT_EQ(byFile.at(good).key, "good");
  EXPECT_THAT(problemOf(cache.entryPath("cut").filename().string()), ::testing::HasSubstr("truncated"));
  EXPECT_THAT(problemOf(cache.entryPath("flipped").filename().string()), ::testing::HasSubstr("checksum"));
  EXPECT_THAT(problemOf("foreign.entry"), ::testing::HasSubstr("not an encc cache entry"));
  EXPECT_THAT(problemOf("fifo.entry"), ::testing::HasSubstr("a FIFO"));
  EXPECT_THAT(problemOf("dir.entry"), ::testing::HasSubstr("a directory"));
  EXPECT_THAT(problemOf("link.entry"), ::testing::HasSubstr("a symbolic link"));
  EXPECT_EQ(byFile.count("README"), 0u);
  EXPECT_EQ(byFile.size(), 7u);
  // Without checksums only the flipped payload passes for sound; list() gives the sound ones alone.
  for (const DiskCacheEntry &e : cache.listAll(/*checkPayloads=*/false))
    EXPECT_EQ(e.problem.empty(), e.key == "good" || e.key == "flipped") << e.file << ": " << e.problem;
  std::set<std::string> keys;
  for (const DiskCacheEntry &e : cache.list()) keys.insert(e.key);
  EXPECT_EQ(keys, (std::set<std::string>{"good", "flipped"}));
}

// clear() removes what is under the cache's names without opening it (a FIFO cannot block it) or following
// it (a link's target survives); a directory is removed only when empty, and one that is not is reported.
TEST(DiskCache, ClearRemovesOddFilesWithoutFollowingOrBlocking) {
  ScratchDir scratch;
  fs::path dir = scratch.path / "cache";
  fs::path outside = scratch.path / "outside";
  writeFile(outside, "someone else's file");
  DiskCache cache(dir, 1 << 20);
  cache.put("k", "v");
  cache.put("corrupt", "v");
  writeFile(cache.entryPath("corrupt"), "garbage");
  ASSERT_EQ(::mkfifo((dir / "fifo.entry").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo(cache.entryPath("fifo").c_str(), 0600), 0);
  fs::create_symlink(outside, dir / "link.entry");
  fs::create_directory(dir / "empty.entry");
  fs::create_directories(dir / "full.entry" / "inside");
  writeFile(dir / "README", "left alone");

  auto cleared = std::async(std::launch::async, [&] { return cache.clear(); });
  if (cleared.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    for (const fs::path &fifo : {dir / "fifo.entry", cache.entryPath("fifo")}) {
      int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (w >= 0) ::close(w);
    }
    FAIL() << "clear() blocked on a FIFO";
  }
  DiskCacheCleared done = cleared.get();
  EXPECT_EQ(done.entries, 2);
  std::set<std::string> others;
  for (const DiskCacheEntry &e : done.otherThings) others.insert(e.file);
  EXPECT_EQ(others, (std::set<std::string>{"fifo.entry", cache.entryPath("fifo").filename().string(), "link.entry",
                                           "empty.entry"}));
  ASSERT_EQ(done.left.size(), 1u);
  EXPECT_EQ(done.left[0].file, "full.entry");
  EXPECT_THAT(done.left[0].problem, ::testing::HasSubstr("not empty"));
  EXPECT_EQ(readFile(outside), "someone else's file");
  EXPECT_TRUE(fs::exists(dir / "full.entry" / "inside"));
  EXPECT_TRUE(fs::exists(dir / "README"));
  std::set<std::string> remaining;
  for (const auto &e : fs::directory_iterator(dir)) remaining.insert(e.path().filename().string());
  EXPECT_EQ(remaining, (std::set<std::string>{"full.entry", "README"}));
}

// A sparse 8 GiB entry file: were it read whole, this would allocate 8 GiB (or fail with bad_alloc).
void makeHugeEntry(const fs::path &p, const std::string &validHeaderSource) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, validHeaderSource.data(), validHeaderSource.size()),
            static_cast<ssize_t>(validHeaderSource.size()));
  ASSERT_EQ(::ftruncate(fd, off_t{8} << 30), 0);
  ::close(fd);
}

TEST(DiskCache, OversizedEntryIsRejectedWithoutReadingIt) {
  ScratchDir scratch;
  // Larger than the bound (which put() never writes), and, with a bound that allows it, longer than its
  // header says: both are refused after reading the header only.
  for (int64_t bound : {int64_t{1} << 20, int64_t{1} << 40}) {
    DiskCache cache(scratch.path, bound);
    cache.put("k", "small payload");
    std::string entry = readFile(cache.entryPath("k"));
    makeHugeEntry(cache.entryPath("k"), entry);
    auto start = std::chrono::steady_clock::now();
    std::optional<std::string> v;
    EXPECT_NO_THROW(v = cache.get("k")) << "bound " << bound;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_FALSE(v) << "bound " << bound;
    EXPECT_LT(seconds, 2.0) << "bound " << bound << ": the entry was read, not just its header";
    EXPECT_FALSE(fs::exists(cache.entryPath("k"))) << "bound " << bound;
    EXPECT_EQ(cache.stats().corrupt, 1) << "bound " << bound;
    // list() reads headers only and leaves the bad file out.
    makeHugeEntry(cache.entryPath("k"), entry);
    EXPECT_TRUE(cache.list().empty()) << "bound " << bound;
    fs::remove(cache.entryPath("k"));
  }
}

// ---- whose directory ------------------------------------------------------------------------------

TEST(DiskCache, CreatesItsDirectoryPrivate) {
  ScratchDir scratch;
  fs::path dir = scratch.path / "a" / "cache";
  DiskCache cache(dir, 1 << 20);
  cache.put("k", "v");
  EXPECT_EQ(cache.get("k").value_or(""), "v");
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(cache.entryPath("k").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << "entries are private too";
  EXPECT_EQ(untrustedCacheDir(dir), "");
}

TEST(DiskCache, DirectoryOthersCanWriteIsRefused) {
  ScratchDir scratch;
  for (auto [mode, who] : {std::pair{0777, "others"}, std::pair{0770, "its group"}, std::pair{0702, "others"}}) {
    fs::path dir = scratch.path / fmt::format("mode{:o}", mode);
    fs::create_directories(dir);
    ASSERT_EQ(::chmod(dir.c_str(), static_cast<mode_t>(mode)), 0);
    std::string why = untrustedCacheDir(dir);
    EXPECT_NE(why.find(fmt::format("writable by {}", who)), std::string::npos) << fmt::format("{:o}: {}", mode, why);
    // A planted entry is never read, and nothing is written.
    DiskCache planter(dir, 1 << 20);
    {
      DiskCache trusting(scratch.path / "staging", 1 << 20);
      trusting.put("k", "planted code");
      fs::copy_file(trusting.entryPath("k"), planter.entryPath("k"));
    }
    ::testing::internal::CaptureStderr();
    DiskCache cache(dir, 1 << 20);
    EXPECT_FALSE(cache.usable());
    EXPECT_FALSE(cache.get("k"));
    cache.put("k2", "v");
    EXPECT_FALSE(cache.get("k2"));
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_FALSE(fs::exists(cache.entryPath("k2")));
    EXPECT_TRUE(fs::exists(cache.entryPath("k"))) << "a refused directory is left alone";
    // One warning per cache, naming the directory and why.
    size_t first = err.find("warning: not using the kernel cache");
    EXPECT_NE(first, std::string::npos) << err;
    EXPECT_EQ(err.find("warning:", first + 1), std::string::npos) << err;
    EXPECT_NE(err.find(dir.string()), std::string::npos) << err;
  }
}

// A directory that cannot be made (under a file, or where nobody may create one) runs
// uncached with the same one warning, saying why; it ran uncached silently.
TEST(DiskCache, DirectoryThatCannotBeMadeWarnsOnce) {
  ScratchDir scratch;
  std::ofstream(scratch.path / "afile") << "x";
  ::testing::internal::CaptureStderr();
  DiskCache cache(scratch.path / "afile" / "cache", 1 << 20);
  EXPECT_FALSE(cache.usable());
  cache.put("k", "v");
  EXPECT_FALSE(cache.get("k"));
  std::string err = ::testing::internal::GetCapturedStderr();
  size_t first = err.find("warning: not using the kernel cache " + (scratch.path / "afile" / "cache").string() +
                          ": cannot create it: Not a directory");
  EXPECT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("warning:", first + 1), std::string::npos) << err;
}

TEST(DiskCache, DirectoryOfAnotherUserIsRefused) {
  ScratchDir scratch;
  fs::path dir = "/"; // root's, unless this is root
  if (::geteuid() == 0) {
    dir = scratch.path / "theirs";
    fs::create_directories(dir);
    ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);
    ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  }
  std::string why = untrustedCacheDir(dir);
  EXPECT_NE(why.find("belongs to uid"), std::string::npos) << why;
  ::testing::internal::CaptureStderr();
  DiskCache cache(dir, 1 << 20);
  EXPECT_FALSE(cache.usable());
  cache.put("k", "v");
  EXPECT_FALSE(cache.get("k"));
  EXPECT_FALSE(fs::exists(cache.entryPath("k")));
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("belongs to uid"), std::string::npos);
}

// ---- ENC_CACHE_MAX_MB ------------------------------------------------------------------------------

TEST(DiskCache, MaxBytesFromEnvironment) {
  constexpr int64_t kMiB = int64_t{1} << 20;
  EXPECT_EQ(cacheMaxBytesFromEnv(nullptr), 1024 * kMiB);
  EXPECT_EQ(cacheMaxBytesFromEnv("0"), 0);
  EXPECT_EQ(cacheMaxBytesFromEnv("64"), 64 * kMiB);
  int64_t largest = std::numeric_limits<int64_t>::max() / kMiB;
  EXPECT_EQ(cacheMaxBytesFromEnv(std::to_string(largest).c_str()), largest * kMiB);
  // Values whose byte count would wrap (2^44 MiB and up) and non-sizes are errors, never a silent bound.
  for (std::string bad : {std::to_string(largest + 1), std::string("17592186044416"), std::string("-1"),
                          std::string("64M"), std::string(""), std::string("99999999999999999999999")}) {
    try {
      cacheMaxBytesFromEnv(bad.c_str());
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find("ENC_CACHE_MAX_MB='" + bad + "'"), std::string::npos) << e.what();
    }
  }
}
