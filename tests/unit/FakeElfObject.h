// The smallest buffer llvm::identify_magic calls a relocatable ELF object (and no linker accepts):
// a cache entry that looks like object code to the CPU object cache but does not load.
#pragma once

#include <string>

namespace enc::testing {

inline std::string fakeElfObject() {
  std::string bytes = std::string("\x7f" "ELF\x02\x01\x01", 7) + std::string(9, '\0');
  bytes += std::string("\x01\x00", 2); // e_type = ET_REL
  bytes += std::string(46, '\0');
  return bytes;
}

} // namespace enc::testing
