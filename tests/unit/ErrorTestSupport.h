// Checking the message of an enc::Error a call throws.
#pragma once

#include "support/Error.h"

#include <gtest/gtest.h>

#include <string>

namespace enc::testing {

// Runs `fn`, expects an enc::Error, and returns its message (with the hint).
template <typename Fn> std::string errorOf(Fn fn) {
  try {
    fn();
  } catch (const Error &e) {
    return std::string(e.what()) + "\n" + e.hint();
  } catch (const std::exception &e) {
    ADD_FAILURE() << "threw a non-enc::Error: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no exception";
  return "";
}

} // namespace enc::testing

#define EXPECT_MENTIONS(message, part) EXPECT_NE((message).find(part), std::string::npos) << "'" << (message) << "'"
