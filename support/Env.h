// On/off switches from the environment (ENC_CUDA_SYNC, ENC_POISON, ENC_JIT_STATS, ...), all
// read the same way: unset means the default; empty or "0" means off; anything else on.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

namespace enc {

inline bool envFlag(const char *name, bool whenUnset = false) {
  const char *v = std::getenv(name);
  if (!v) return whenUnset;
  std::string_view s(v);
  return !s.empty() && s != "0";
}

// A decimal integer that is the whole of `text` (strtoll's syntax; out-of-range values
// clamp as strtoll does), or nullopt: for integer environment variables (ENC_NUM_THREADS,
// RANK, ENC_CUDA_DEVICE, ...), whose callers check the range.
inline std::optional<int64_t> parseInteger(const char *text) {
  if (!text || *text == '\0') return std::nullopt;
  char *end = nullptr;
  long long n = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0') return std::nullopt;
  return n;
}

} // namespace enc
