// File helpers the tensor file formats (.npy, .safetensors) share: an owned descriptor, reads that
// either get every byte asked for or fail, and writes that replace a file atomically.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace enc {

// A file descriptor, closed when it goes out of scope.
class Fd {
public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  ~Fd();
  int get() const { return fd_; }
  // Closes now and reports the error; close() can be the first to see a failed write on some filesystems.
  bool close();

private:
  int fd_;
};

// The text of the current errno ("No such file or directory").
std::string errnoText();

// Text read from a file as it can safely appear in a message: control and non-ASCII bytes escaped,
// long text cut short.
std::string printableText(std::string_view s);

// Reads exactly `n` bytes at `offset` of `fd`, or throws enc::Error naming `path` (a file that ends
// early shrank while it was read: callers check sizes against fstat first).
void preadFully(int fd, void *dst, size_t n, uint64_t offset, const std::string &path);

// Writes the concatenation of `parts` to a temporary file in the same directory and renames it over
// `path`, so a concurrent reader sees either the old file or the complete new one. enc::Error
// "cannot write PATH: ..." when that fails (no temporary file is left behind).
void writeFileAtomically(const std::string &path, const std::vector<std::string_view> &parts);

} // namespace enc
