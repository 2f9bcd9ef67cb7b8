// What every fuzz target counts as a finding. An enc::Error (CompileError included) is what a
// user should get for bad input: a good outcome. An enc::InternalError, any other exception,
// a crash, a sanitizer report or a hang (libFuzzer's -timeout) is a bug: the input is printed
// where it fits and the process aborts, so libFuzzer writes the reproducer (crash-<sha1>).
#pragma once

#include "support/Error.h"
#include "support/InternalError.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <typeinfo>

namespace enc::fuzz {

// Runs `body` on one input; aborts on anything but success or an enc::Error.
template <typename Body> void guarded(std::string_view input, bool printInput, Body &&body) {
  try {
    body();
    return;
  } catch (const InternalError &e) {
    std::fprintf(stderr, "fuzz: %s\n", e.render().c_str());
  } catch (const Error &) {
    return; // a diagnostic: what bad input should get
  } catch (const std::exception &e) {
    std::fprintf(stderr, "fuzz: not an enc::Error: %s: %s\n", typeid(e).name(), e.what());
  } catch (...) {
    std::fprintf(stderr, "fuzz: a thrown value that is not a std::exception\n");
  }
  if (printInput) std::fprintf(stderr, "--- input ---\n%.*s\n--- end ---\n", static_cast<int>(input.size()), input.data());
  std::abort();
}

} // namespace enc::fuzz
