#include "runtime/Nccl.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <dlfcn.h>

#include <cstdlib>
#include <memory>
#include <type_traits>
#include <vector>

namespace enc::nccl {

struct LibraryLoader {
  std::unique_ptr<Library> library;
  std::string reason;

  LibraryLoader() {
    dlerror();
    const char *chosen = std::getenv("ENC_NCCL_LIBRARY");
    const std::string path = chosen && *chosen ? chosen : "libnccl.so.2";
    void *lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char *err = dlerror();
      reason = fmt::format("NCCL not found (dlopen {}: {})", path, err ? err : "unknown error");
      return;
    }
    std::unique_ptr<Library> l(new Library());
    std::vector<std::string> missing;
    auto resolve = [&](auto &fn, const char *name) {
      void *sym = dlsym(lib, name);
      if (!sym) missing.emplace_back(name);
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(sym);
    };
#define ENC_RESOLVE(name) resolve(l->name, #name)
    ENC_RESOLVE(ncclGetVersion);
    ENC_RESOLVE(ncclGetUniqueId);
    ENC_RESOLVE(ncclCommInitRank);
    ENC_RESOLVE(ncclAllReduce);
    ENC_RESOLVE(ncclCommGetAsyncError);
    ENC_RESOLVE(ncclGroupStart);
    ENC_RESOLVE(ncclGroupEnd);
    ENC_RESOLVE(ncclCommAbort);
    ENC_RESOLVE(ncclCommDestroy);
    ENC_RESOLVE(ncclGetErrorString);
    ENC_RESOLVE(ncclGetLastError);
#undef ENC_RESOLVE
    l->encemuNcclAllReduceCalls = reinterpret_cast<long (*)()>(dlsym(lib, "encemuNcclAllReduceCalls"));
    if (!missing.empty()) {
      reason = fmt::format("NCCL ({}) is too old: it lacks {}", path, fmt::join(missing, ", "));
      dlclose(lib);
      return;
    }
    // ncclAvg came with 2.10.
    if (l->ncclGetVersion(&l->version_) != ncclSuccess || l->version_ < 21000) {
      reason = fmt::format("NCCL ({}) is too old: encc needs 2.10 or later, this is {}", path, l->versionText());
      dlclose(lib);
      return;
    }
    library = std::move(l);
  }
};

namespace {
const LibraryLoader &loader() {
  static const LibraryLoader instance;
  return instance;
}
} // namespace

Library *Library::get() { return loader().library.get(); }
const std::string &Library::unavailableReason() { return loader().reason; }

std::string Library::versionText() const {
  // NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch since 2.9 (before: * 1000 + * 100).
  return fmt::format("{}.{}.{}", version_ / 10000, version_ / 100 % 100, version_ % 100);
}

std::string Library::describe(ncclResult_t result, ncclComm_t comm) const {
  std::string text = fmt::format("NCCL error {} ({})", result, ncclGetErrorString(result));
  const char *last = ncclGetLastError(comm);
  if (last && *last) text += fmt::format(": {}", last);
  return text;
}

} // namespace enc::nccl
