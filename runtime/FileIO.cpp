#include "runtime/FileIO.h"

#include "support/Error.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <system_error>

namespace enc {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

bool Fd::close() { return ::close(std::exchange(fd_, -1)) == 0; }

std::string errnoText() { return std::error_code(errno, std::generic_category()).message(); }

void preadFully(int fd, void *dst, size_t n, uint64_t offset, const std::string &path) {
  auto *p = static_cast<char *>(dst);
  while (n > 0) {
    ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("cannot read {}: {}", path, errnoText());
    if (got == 0) fail("{}: truncated: the file shrank while it was being read", path);
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

namespace {

bool writeFully(int fd, std::string_view bytes) {
  const char *p = bytes.data();
  size_t n = bytes.size();
  while (n > 0) {
    ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) return false;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

} // namespace

void writeFileAtomically(const std::string &path, const std::vector<std::string_view> &parts) {
  // The temporary file sits next to `path` so that rename() stays on one filesystem and is atomic. O_EXCL
  // with pid and counter keeps concurrent writers apart; mode 0666 lets the umask decide, as for any new
  // file.
  static std::atomic<unsigned> counter{0};
  std::string tmp;
  int raw = -1;
  for (int attempt = 0; raw < 0; ++attempt) {
    tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter++);
    raw = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (raw < 0 && (errno != EEXIST || attempt == 100)) fail("cannot write {}: {}", path, errnoText());
  }
  Fd fd(raw);
  bool ok = true;
  for (std::string_view part : parts) ok = ok && writeFully(fd.get(), part);
  ok = ok && fd.close() && ::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    std::string why = errnoText();
    ::unlink(tmp.c_str());
    fail("cannot write {}: {}", path, why);
  }
}

std::string printableText(std::string_view s) {
  constexpr size_t kMaxShown = 120;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > kMaxShown) out += "...";
  return out;
}

} // namespace enc
