// SHA-256 (runtime/Hash.h), the key of every cache, against the standard's test vectors.
#include "runtime/Hash.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

using namespace enc;

TEST(Hash, Sha256KnownVectors) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(sha256Hex(std::string_view("a\0b", 3)).size(), 64u);
  EXPECT_NE(sha256Hex(std::string_view("a\0b", 3)), sha256Hex("a"));
}

