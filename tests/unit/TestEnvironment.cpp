// Defaults every test process runs with, however it was started (ctest, or the binary by hand):
// kernels are cached under the build tree, never in the user's cache, and fresh host and device
// memory is NaN-filled so a kernel that leaves an element unwritten fails its test, and the
// compiler verifies its IR after every pass (ENC_VERIFY_EACH). A variable
// already set wins. (Set here rather than in ctest's ENVIRONMENT property, which
// gtest_discover_tests cannot pass more than one variable through.)
#include <cstdlib>

namespace {
const bool kApplied = [] {
  setenv("ENC_CACHE_DIR", ENC_TEST_CACHE_DIR, 0);
  setenv("ENC_POISON", "1", 0);
  setenv("ENC_VERIFY_EACH", "1", 0);
  return true;
}();
} // namespace
