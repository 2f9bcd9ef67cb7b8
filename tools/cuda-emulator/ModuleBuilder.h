// Turns the CUDA C++ source of a module into host code: the source, behind Prelude.h, plus one
// thunk per __global__ function that calls it from the driver's argument array, compiled by the
// host C++ compiler into a shared object and loaded.
//
// Objects are kept under $ENC_CACHE_DIR/emulator (else a per-user directory in /tmp), named by a
// hash of what was compiled, next to that text; a hit is used only if the stored text matches.
#pragma once

#include "BlockScheduler.h"

#include <map>
#include <memory>
#include <string>

namespace encemu {

struct Module {
  void *handle = nullptr; // dlopen's
  std::map<std::string, KernelThunk> kernels;
  ThreadContext context; // what the module's kernels read their indices from
  ~Module();
};

// Throws std::runtime_error with the compiler's messages when the source does not compile.
std::unique_ptr<Module> buildModule(const std::string &source);

} // namespace encemu
