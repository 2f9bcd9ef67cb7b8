// On/off switches from the environment (ENC_CUDA_SYNC, ENC_POISON, ENC_JIT_STATS, ...), all
// read the same way: unset means the default; empty or "0" means off; anything else on.
#pragma once

#include <cstdlib>
#include <string_view>

namespace enc {

inline bool envFlag(const char *name, bool whenUnset = false) {
  const char *v = std::getenv(name);
  if (!v) return whenUnset;
  std::string_view s(v);
  return !s.empty() && s != "0";
}

} // namespace enc
