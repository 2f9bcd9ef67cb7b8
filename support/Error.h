// Errors that reach a user: a message, and optionally a hint on how to fix it.
// Front-end problems in .enc text are reported through dsl/Diagnostics instead;
// this type carries run-time and tool-level failures (bad .npy, wrong shapes, ...).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace enc {

class Error : public std::runtime_error {
public:
  explicit Error(std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), hint_(std::move(hint)) {}

  const std::string &hint() const { return hint_; }

  // "error: message\n  hint: ..." as the CLI prints it.
  std::string render() const {
    std::string out = fmt::format("error: {}", what());
    if (!hint_.empty()) out += fmt::format("\n  hint: {}", hint_);
    return out;
  }

private:
  std::string hint_;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args &&...args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

} // namespace enc
