// Content hashing for cache keys (compiled kernels, generated sources).
#pragma once

#include <string>
#include <string_view>

namespace enc {

// SHA-256 of `data` as 64 lowercase hex digits.
std::string sha256Hex(std::string_view data);

} // namespace enc
