// NCCL, loaded at run time with dlopen("libnccl.so.2") as the CUDA driver is (CudaDriver.h):
// one encc binary runs with or without it. Only what encc calls is declared here, with the
// values nccl.h gives them, so the file builds without the header.
#pragma once

#include "runtime/CudaDriver.h"

#include <cstddef>
#include <string>

struct ncclComm;

namespace enc::nccl {

using ncclComm_t = ::ncclComm *;
using ncclResult_t = int;
inline constexpr ncclResult_t ncclSuccess = 0, ncclRemoteError = 6, ncclInProgress = 7;
inline constexpr int kUniqueIdBytes = 128;
struct ncclUniqueId {
  char internal[kUniqueIdBytes];
};
enum ncclDataType_t : int { ncclFloat32 = 7, ncclFloat64 = 8 };
enum ncclRedOp_t : int { ncclSum = 0, ncclAvg = 4 };

class Library {
public:
  // The process's NCCL, loaded once; nullptr when it cannot be (unavailableReason says why).
  // The library is libnccl.so.2, or the path in $ENC_NCCL_LIBRARY (tests point it at
  // tools/nccl-emulator). Thread-safe.
  static Library *get();
  static const std::string &unavailableReason();

  int version() const { return version_; } // 22809 for 2.28.9
  std::string versionText() const;         // "2.28.9"
  // "ncclRemoteError (remote process exited or there was a network error)" and NCCL's last
  // message for `comm`, when it has one.
  std::string describe(ncclResult_t result, ncclComm_t comm = nullptr) const;

  ncclResult_t (*ncclGetVersion)(int *version) = nullptr;
  ncclResult_t (*ncclGetUniqueId)(ncclUniqueId *id) = nullptr;
  ncclResult_t (*ncclCommInitRank)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) = nullptr;
  ncclResult_t (*ncclAllReduce)(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                                ncclComm_t comm, cuda::CUstream stream) = nullptr;
  ncclResult_t (*ncclCommGetAsyncError)(ncclComm_t comm, ncclResult_t *error) = nullptr;
  ncclResult_t (*ncclGroupStart)() = nullptr;
  ncclResult_t (*ncclGroupEnd)() = nullptr;
  ncclResult_t (*ncclCommAbort)(ncclComm_t comm) = nullptr;
  ncclResult_t (*ncclCommDestroy)(ncclComm_t comm) = nullptr;
  const char *(*ncclGetErrorString)(ncclResult_t result) = nullptr;
  const char *(*ncclGetLastError)(ncclComm_t comm) = nullptr;
  // Only encc's NCCL emulator has this: how many all-reduces it has run (tests).
  long (*encemuNcclAllReduceCalls)() = nullptr;

  Library(const Library &) = delete;
  Library &operator=(const Library &) = delete;

private:
  Library() = default;
  friend struct LibraryLoader;
  int version_ = 0;
};

} // namespace enc::nccl
