#include "runtime/Nvrtc.h"

#include "runtime/DiskCache.h"
#include "runtime/Hash.h"

#include "support/Error.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <mutex>
#include <optional>

#ifdef ENC_HAVE_NVRTC
#include <nvrtc.h>
#endif

namespace enc::cuda {

namespace {

struct ArchSpec {
  int number = 0;
  std::string suffix; // "", "a" or "f" (arch-specific / family-specific features)
};

std::optional<ArchSpec> tryParseArch(std::string_view arch) {
  std::string s(arch);
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view v = s;
  for (std::string_view prefix : {"compute_", "compute", "sm_", "sm"}) {
    if (v.starts_with(prefix)) {
      v.remove_prefix(prefix.size());
      break;
    }
  }
  ArchSpec spec;
  if (v.size() > 1 && (v.back() == 'a' || v.back() == 'f')) {
    spec.suffix = std::string(1, v.back());
    v.remove_suffix(1);
  }
  if (v.size() < 2 || v.size() > 3 || !std::ranges::all_of(v, [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  for (char c : v) spec.number = spec.number * 10 + (c - '0');
  if (spec.number < 10) return std::nullopt; // "05": not a compute capability
  return spec;
}

std::string supportedArchList() {
  std::vector<int> archs = nvrtcSupportedArchs();
  if (archs.empty()) return "none (encc was built without NVRTC)";
  std::vector<std::string> names;
  for (int a : archs) names.push_back(fmt::format("sm_{}", a));
  return fmt::format("{}", fmt::join(names, ", "));
}

ArchSpec parseArchSpec(std::string_view arch) {
  if (auto spec = tryParseArch(arch)) return *spec;
  throw Error(fmt::format("'{}' is not a CUDA architecture", arch),
              fmt::format("write it as sm_90, compute_90 or 90; NVRTC supports {}", supportedArchList()));
}

#ifdef ENC_HAVE_NVRTC

// Computed once; magic statics make the first call thread-safe and the result is read-only after.
const std::vector<int> &cachedArchs() {
  static const std::vector<int> archs = [] {
    int n = 0;
    std::vector<int> out;
    if (nvrtcGetNumSupportedArchs(&n) != NVRTC_SUCCESS || n <= 0) return out;
    out.resize(static_cast<size_t>(n));
    if (nvrtcGetSupportedArchs(out.data()) != NVRTC_SUCCESS) out.clear();
    std::ranges::sort(out);
    return out;
  }();
  return archs;
}

// Owns one nvrtcProgram; programs are never shared between threads.
class Program {
public:
  Program(const std::string &source, const std::string &name) {
    nvrtcResult r = nvrtcCreateProgram(&prog_, source.c_str(), name.c_str(), 0, nullptr, nullptr);
    if (r != NVRTC_SUCCESS)
      throw Error(fmt::format("NVRTC could not create a program for {}: {}", name, nvrtcGetErrorString(r)));
  }
  ~Program() {
    if (prog_) nvrtcDestroyProgram(&prog_);
  }
  Program(const Program &) = delete;
  Program &operator=(const Program &) = delete;
  nvrtcProgram get() const { return prog_; }

private:
  nvrtcProgram prog_ = nullptr;
};

// NVRTC's size queries count the terminating NUL; strings here should not carry it.
void stripNuls(std::string &s) {
  while (!s.empty() && s.back() == '\0') s.pop_back();
}

std::string programLog(nvrtcProgram prog) {
  size_t size = 0;
  if (nvrtcGetProgramLogSize(prog, &size) != NVRTC_SUCCESS || size == 0) return {};
  std::string log(size, '\0');
  if (nvrtcGetProgramLog(prog, log.data()) != NVRTC_SUCCESS) return {};
  stripNuls(log);
  return log;
}

#endif // ENC_HAVE_NVRTC

} // namespace

bool nvrtcAvailable() {
#ifdef ENC_HAVE_NVRTC
  return true;
#else
  return false;
#endif
}

std::string nvrtcVersion() {
#ifdef ENC_HAVE_NVRTC
  int major = 0, minor = 0;
  if (::nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return {};
  return fmt::format("{}.{}", major, minor);
#else
  return {};
#endif
}

std::vector<int> nvrtcSupportedArchs() {
#ifdef ENC_HAVE_NVRTC
  return cachedArchs();
#else
  return {};
#endif
}

int parseArch(std::string_view arch) { return parseArchSpec(arch).number; }

void requireSupportedArch(std::string_view arch) {
  int number = parseArch(arch);
  std::vector<int> archs = nvrtcSupportedArchs();
  if (archs.empty() || std::ranges::binary_search(archs, number)) return; // without NVRTC, compile() says so
  throw Error(fmt::format("NVRTC {} cannot compile for sm_{}", nvrtcVersion(), number),
              fmt::format("use one of the architectures it supports: {}", supportedArchList()));
}

CompileResult compile(const std::string &source, const CompileOptions &opts) {
#ifndef ENC_HAVE_NVRTC
  (void)source;
  (void)opts;
  throw Error("encc was built without NVRTC, so it cannot compile CUDA code",
              "install the CUDA toolkit and reconfigure (ENC_WITH_CUDA=ON, ENC_CUDA_ROOT=<toolkit>), "
              "or run on the CPU");
#else
  ArchSpec spec = parseArchSpec(opts.arch);
  const std::vector<int> &archs = cachedArchs();

  CompileResult result;
  result.arch = spec.number;
  result.isCubin = !opts.wantPtx;
  std::string suffix = spec.suffix;
  if (!std::ranges::binary_search(archs, spec.number)) {
    // Newer than this NVRTC (or a gap in its list): PTX for the newest arch below, which the driver can
    // JIT for the real GPU. Arch-specific "a"/"f" features are not forward compatible, so drop them.
    auto it = std::ranges::lower_bound(archs, spec.number);
    if (it == archs.begin())
      throw Error(fmt::format("CUDA architecture sm_{} is older than anything NVRTC {} can compile for",
                              spec.number, nvrtcVersion()),
                  fmt::format("NVRTC supports {}", supportedArchList()));
    result.arch = *std::prev(it);
    result.isCubin = false;
    suffix.clear();
  }

  std::vector<std::string> options;
  options.push_back(fmt::format("-arch={}_{}{}", result.isCubin ? "sm" : "compute", result.arch, suffix));
#ifdef ENC_CUDA_INCLUDE_DIR
  options.push_back(std::string("-I") + ENC_CUDA_INCLUDE_DIR); // for <cuda_fp16.h> and friends
#endif
  options.push_back("--std=c++17");
  options.push_back("-default-device");
  options.insert(options.end(), opts.extraOptions.begin(), opts.extraOptions.end());
  std::vector<const char *> argv;
  for (const std::string &o : options) argv.push_back(o.c_str());

  Program prog(source, opts.sourceName);
  nvrtcResult r = nvrtcCompileProgram(prog.get(), static_cast<int>(argv.size()), argv.data());
  result.log = programLog(prog.get());
  if (r == NVRTC_ERROR_COMPILATION)
    throw Error(fmt::format("NVRTC failed to compile {} ({}):\n{}", opts.sourceName, options.front(),
                            result.log));
  if (r != NVRTC_SUCCESS)
    throw Error(fmt::format("NVRTC failed on {}: {} (options: {})\n{}", opts.sourceName,
                            nvrtcGetErrorString(r), fmt::join(options, " "), result.log));

  std::string &out = result.isCubin ? result.cubin : result.ptx;
  size_t size = 0;
  r = result.isCubin ? nvrtcGetCUBINSize(prog.get(), &size) : nvrtcGetPTXSize(prog.get(), &size);
  if (r == NVRTC_SUCCESS) {
    out.assign(size, '\0');
    r = result.isCubin ? nvrtcGetCUBIN(prog.get(), out.data()) : nvrtcGetPTX(prog.get(), out.data());
  }
  if (r != NVRTC_SUCCESS)
    throw Error(fmt::format("NVRTC compiled {} but could not return the {}: {}", opts.sourceName,
                            result.isCubin ? "cubin" : "PTX", nvrtcGetErrorString(r)));
  if (!result.isCubin) stripNuls(out); // a cubin is binary: keep every byte
  return result;
#endif
}

std::string compileCacheKey(const std::string &source, const CompileOptions &opts) {
  // Readable in `encc cache list`: what it is and for which GPU, then the hash of the rest.
  return fmt::format("encc-nvrtc-1 {} {} {}", opts.arch, opts.wantPtx ? "ptx" : "cubin",
                     sha256Hex(fmt::format("{}\n{}\n{}\n{}\n{}\n{}", nvrtcVersion(), opts.arch, opts.wantPtx,
                                           fmt::join(opts.extraOptions, " "), opts.sourceName, source)));
}

namespace {

// Payload: 'C' (cubin) or 'P' (PTX), the arch as 4 decimal digits, then the bytes.
void store(const std::string &key, const CompileResult &r) {
  DiskCache::global().put(key, fmt::format("{}{:04}", r.isCubin ? 'C' : 'P', r.arch) + (r.isCubin ? r.cubin : r.ptx));
}

} // namespace

CompileResult compileCached(const std::string &source, const CompileOptions &opts, bool *cached) {
  std::string key = compileCacheKey(source, opts);
  if (cached) *cached = false;
  if (auto hit = DiskCache::global().get(key); hit && hit->size() >= 5 && ((*hit)[0] == 'C' || (*hit)[0] == 'P')) {
    CompileResult r;
    r.isCubin = (*hit)[0] == 'C';
    r.arch = std::atoi(hit->substr(1, 4).c_str());
    (r.isCubin ? r.cubin : r.ptx) = hit->substr(5);
    if (cached) *cached = true;
    return r;
  }
  CompileResult r = compile(source, opts);
  store(key, r);
  return r;
}

CompileResult compileCachedAndLoad(const std::string &source, const CompileOptions &opts,
                                   const std::function<void(const CompileResult &)> &load) {
  bool cached = false;
  CompileResult r = compileCached(source, opts, &cached);
  if (!cached) {
    load(r);
    return r;
  }
  try {
    load(r);
    return r;
  } catch (const Error &e) {
    // Said once per process: the cache is meant to be invisible, and one bad entry is enough to know about.
    static std::once_flag once;
    std::call_once(once, [&] {
      std::cerr << fmt::format("encc: warning: the cached {} of {} did not load; compiled it again and replaced "
                               "the cache entry\n  ({})\n",
                               r.isCubin ? "cubin" : "PTX", opts.sourceName, e.what());
    });
  }
  r = compile(source, opts);
  store(compileCacheKey(source, opts), r);
  load(r);
  return r;
}

} // namespace enc::cuda
