// libFuzzer target: bytes as a .npy file (parseNpy, the reader readNpy uses after reading the
// file). A file that reads must write back as a file that reads as the same tensor.
#include "FuzzSupport.h"

#include "runtime/Npy.h"

#include <cstring>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char *>(data), size);
  enc::fuzz::guarded(bytes, /*printInput=*/false, [&] {
    const enc::Tensor t = enc::parseNpy(bytes, "fuzz.npy");
    const std::string again = enc::serializeNpy(t);
    const enc::Tensor u = enc::parseNpy(again, "fuzz-again.npy");
    if (u.dtype() != t.dtype() || u.shape() != t.shape() || u.nbytes() != t.nbytes() ||
        (t.nbytes() > 0 && std::memcmp(u.data(), t.data(), t.nbytes()) != 0))
      enc::internalError("a .npy that reads does not read back the same after writing it");
  });
  return 0;
}
