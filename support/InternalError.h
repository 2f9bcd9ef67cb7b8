// A broken invariant inside encc: a compiler or runtime bug, never the user's mistake.
//
// enc::Error is for what a user can fix (a bad .npy, a wrong shape) and carries a hint;
// InternalError is for what only encc's developers can fix. It is deliberately not an
// enc::Error, so code that handles user errors does not swallow it, and the tests and fuzzers
// that count user errors as good diagnostics fail on it. The compiler pipeline adds the pass
// and the layer it was running as the error passes through (compiler/Pipeline.cpp).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace enc {

class InternalError : public std::logic_error {
public:
  explicit InternalError(std::string message) : std::logic_error(message), message_(std::move(message)) {}

  const std::string &message() const { return message_; }
  // The compiler pass or run-time component that found the broken invariant ("" if unknown).
  const std::string &pass() const { return pass_; }
  const std::string &layer() const { return layer_; }
  // Fills in where it happened, unless something closer to the failure already did.
  void locate(const std::string &pass, const std::string &layer) {
    if (pass_.empty()) pass_ = pass;
    if (layer_.empty()) layer_ = layer;
  }

  // What the command line and the REPL print.
  std::string render() const {
    std::string where;
    if (!pass_.empty()) where += fmt::format(" in {}", pass_);
    if (!layer_.empty()) where += fmt::format(" compiling layer {}", layer_);
    return fmt::format("internal compiler error{}: {}\n  this is a bug in encc, not in your input: please report it "
                       "with the .enc file and the command that shows it",
                       where, message_);
  }

private:
  std::string message_, pass_, layer_;
};

template <typename... Args>
[[noreturn]] void internalError(fmt::format_string<Args...> f, Args &&...args) {
  throw InternalError(fmt::format(f, std::forward<Args>(args)...));
}

} // namespace enc

// Checks an invariant of encc itself; on failure throws enc::InternalError with the message.
#define ENC_INTERNAL_ASSERT(condition, ...)                                                                            \
  do {                                                                                                                 \
    if (!(condition)) ::enc::internalError(__VA_ARGS__);                                                               \
  } while (false)
