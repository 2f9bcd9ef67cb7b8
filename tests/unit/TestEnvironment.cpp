// Defaults every test process runs with, however it was started (ctest, or the binary by hand):
// kernels are cached under the build tree, never in the user's cache, and fresh host and device
// memory is NaN-filled so a kernel that leaves an element unwritten fails its test, and the
// compiler verifies its IR after every pass (ENC_VERIFY_EACH). On the CUDA emulator
// (ENC_CUDA_DRIVER, the emulated.* tests), NCCL is the NCCL emulator, which works with its
// host-memory "GPU" (the real NCCL would not). A variable already set wins. (Set here rather than in ctest's ENVIRONMENT property, which
// gtest_discover_tests cannot pass more than one variable through.)
#include <cstdlib>
#include <cstring>

namespace {
const bool kApplied = [] {
  setenv("ENC_CACHE_DIR", ENC_TEST_CACHE_DIR, 0);
  setenv("ENC_POISON", "1", 0);
  setenv("ENC_VERIFY_EACH", "1", 0);
#if defined(ENC_CUDA_EMULATOR) && defined(ENC_NCCL_EMULATOR)
  if (const char *driver = std::getenv("ENC_CUDA_DRIVER"); driver && std::strcmp(driver, ENC_CUDA_EMULATOR) == 0)
    setenv("ENC_NCCL_LIBRARY", ENC_NCCL_EMULATOR, 0);
#endif
  return true;
}();
} // namespace
