// Run-time compilation of generated CUDA C++ with NVRTC.
//
// encc builds without the CUDA toolkit too (ENC_HAVE_NVRTC undefined): then nvrtcAvailable() is false
// and compile() throws. Nothing here needs a GPU or the driver; loading the result is CudaDriver's job.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace enc::cuda {

// True when encc was built against NVRTC.
bool nvrtcAvailable();
// "13.0"; "" when unavailable.
std::string nvrtcVersion();
// The real architectures NVRTC can emit cubins for, ascending ({75, 80, 86, ...}); empty when unavailable.
std::vector<int> nvrtcSupportedArchs();

// "sm_90", "sm90", "90", "compute_90" (any case, an optional arch-specific "a"/"f" suffix as in "sm_90a")
// -> 90. Any 2-3 digit number is accepted, supported or not; anything else throws enc::Error whose hint
// lists the supported architectures.
int parseArch(std::string_view arch);
// For an architecture a user names (encc emit --arch): an Error naming the architectures NVRTC
// supports unless it is one of them. compile() itself falls back to PTX for an older architecture,
// which a GPU newer than the toolkit needs, but a made-up sm_999 must not pass as that.
void requireSupportedArch(std::string_view arch);

struct CompileOptions {
  std::string arch = "sm_90";        // any spelling parseArch accepts
  bool wantPtx = false;              // PTX for compute_XX instead of a cubin for sm_XX
  std::string sourceName = "kernel.cu"; // appears in the log: "kernel.cu(12): error: ..."
  std::vector<std::string> extraOptions; // appended verbatim, e.g. "--use_fast_math", "-lineinfo"
};

struct CompileResult {
  std::string ptx;      // set when !isCubin, without the trailing NUL (c_str() is what the driver wants)
  std::string cubin;    // set when isCubin: an ELF image for sm_<arch>
  bool isCubin = false;
  int arch = 0;         // the architecture actually targeted (lower than asked for after a PTX fallback)
  std::string log;      // NVRTC's log (warnings); empty when it had nothing to say
};

// Compiles one translation unit. Without wantPtx this gives a cubin for sm_XX when NVRTC knows that
// architecture, and otherwise PTX for the newest compute_YY below it, which the driver JIT-compiles for
// the newer GPU. Always passes -I<toolkit include>, --std=c++17 and -default-device; no --use_fast_math
// unless asked for in extraOptions. Compile errors throw enc::Error carrying the NVRTC log verbatim.
// Safe to call from several threads at once.
CompileResult compile(const std::string &source, const CompileOptions &opts = {});

// compile() through the on-disk cache (DiskCache::global()), keyed by the SHA-256 of the
// source, the options, the NVRTC version and encc's code-generation version: a second
// compile of the same kernels, in any process, reads the cubin/PTX back. `cached` (if given)
// says whether it did.
CompileResult compileCached(const std::string &source, const CompileOptions &opts = {}, bool *cached = nullptr);

// The disk cache key compileCached uses for `source` and `opts`.
std::string compileCacheKey(const std::string &source, const CompileOptions &opts);

// compileCached(), handing the image to `load` (which throws enc::Error when the driver rejects it). An
// image read from the disk cache that does not load is compiled afresh, its entry replaced, and loaded
// again, with a warning once per process: an intact entry whose code will not load must not break every
// later run. Returns the image that loaded; an image compiled here that does not load is load's error.
CompileResult compileCachedAndLoad(const std::string &source, const CompileOptions &opts,
                                   const std::function<void(const CompileResult &)> &load);

} // namespace enc::cuda
