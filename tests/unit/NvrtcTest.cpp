#include "runtime/Nvrtc.h"

#include "support/Error.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

namespace enc::cuda {
namespace {

constexpr const char *kSaxpy = R"(extern "C" __global__ void saxpy(float a, const float *x, float *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
)";

#define SKIP_WITHOUT_NVRTC()                                                                                \
  if (!nvrtcAvailable()) GTEST_SKIP() << "encc was built without NVRTC (no CUDA toolkit at configure time)"

bool isElf(const std::string &image) { return image.size() > 4 && image.compare(0, 4, "\x7f" "ELF") == 0; }

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(Nvrtc, VersionAndArchs) {
  SKIP_WITHOUT_NVRTC();
  EXPECT_FALSE(nvrtcVersion().empty());
  std::vector<int> archs = nvrtcSupportedArchs();
  ASSERT_FALSE(archs.empty());
  EXPECT_TRUE(std::is_sorted(archs.begin(), archs.end()));
  EXPECT_NE(std::find(archs.begin(), archs.end(), 90), archs.end());
}

TEST(Nvrtc, ParseArchSpellings) {
  for (const char *spelling :
       {"sm_90", "sm90", "90", "compute_90", "compute90", "SM_90", "sm_90a", "compute_90a"})
    EXPECT_EQ(parseArch(spelling), 90) << spelling;
  EXPECT_EQ(parseArch("sm_80"), 80);
  EXPECT_EQ(parseArch("sm_120"), 120);
  EXPECT_EQ(parseArch("999"), 999); // unknown to NVRTC but well formed: compile() decides what to do
}

TEST(Nvrtc, ParseArchRejectsGarbage) {
  for (const char *bad : {"sm_abc", "gpu", "", "sm_", "sm_9", "sm_1000", "compute_9x", "90b", "sm_05", "a"})
    EXPECT_THROW(parseArch(bad), Error) << "'" << bad << "'";
  try {
    parseArch("sm_abc");
    FAIL() << "no exception";
  } catch (const Error &e) {
    EXPECT_TRUE(contains(e.what(), "sm_abc")) << e.what();
    if (nvrtcAvailable()) {
      EXPECT_TRUE(contains(e.hint(), "sm_90")) << e.hint();
    }
  }
}

TEST(Nvrtc, CubinForSm80AndSm90) {
  SKIP_WITHOUT_NVRTC();
  for (int arch : {80, 90}) {
    CompileOptions opts;
    opts.arch = fmt::format("sm_{}", arch);
    CompileResult r = compile(kSaxpy, opts);
    EXPECT_TRUE(r.isCubin) << arch;
    EXPECT_EQ(r.arch, arch);
    EXPECT_TRUE(isElf(r.cubin)) << arch << ": cubin of " << r.cubin.size() << " bytes";
    EXPECT_TRUE(r.ptx.empty());
  }
}

TEST(Nvrtc, PtxWhenAsked) {
  SKIP_WITHOUT_NVRTC();
  CompileOptions opts;
  opts.arch = "sm_90";
  opts.wantPtx = true;
  CompileResult r = compile(kSaxpy, opts);
  EXPECT_FALSE(r.isCubin);
  EXPECT_EQ(r.arch, 90);
  EXPECT_TRUE(r.cubin.empty());
  EXPECT_TRUE(contains(r.ptx, ".entry saxpy")) << r.ptx;
  EXPECT_TRUE(contains(r.ptx, ".target sm_90")) << r.ptx;
  EXPECT_EQ(r.ptx.find('\0'), std::string::npos); // no trailing NUL inside the string
}

TEST(Nvrtc, HalfPrecisionHeader) {
  SKIP_WITHOUT_NVRTC();
  const char *source = R"(#include <cuda_fp16.h>
extern "C" __global__ void addHalf(const __half *x, __half *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __hadd(x[i], __float2half(1.0f));
}
)";
  CompileResult r = compile(source, {});
  EXPECT_TRUE(r.isCubin);
  EXPECT_TRUE(isElf(r.cubin));
}

TEST(Nvrtc, SyntaxErrorCarriesLog) {
  SKIP_WITHOUT_NVRTC();
  CompileOptions opts;
  opts.sourceName = "broken_kernel.cu";
  try {
    compile("extern \"C\" __global__ void k(float *x) { x[0] = ; }\n", opts);
    FAIL() << "no exception";
  } catch (const Error &e) {
    EXPECT_TRUE(contains(e.what(), "broken_kernel.cu(1)")) << e.what();
    EXPECT_TRUE(contains(e.what(), "error")) << e.what();
  }
}

TEST(Nvrtc, LineDirectivesReachTheLog) {
  SKIP_WITHOUT_NVRTC();
  // Generated sources point errors back at the .enc file; the log must keep those locations.
  const char *source = "#line 41 \"layers/mlp.enc\"\n"
                       "extern \"C\" __global__ void k(float *x) {\n"
                       "  x[0] = undefined_name;\n"
                       "}\n";
  try {
    compile(source, {});
    FAIL() << "no exception";
  } catch (const Error &e) {
    EXPECT_TRUE(contains(e.what(), "layers/mlp.enc(42): error")) << e.what();
    EXPECT_TRUE(contains(e.what(), "undefined_name")) << e.what();
  }
}

TEST(Nvrtc, NewerArchFallsBackToPtx) {
  SKIP_WITHOUT_NVRTC();
  std::vector<int> archs = nvrtcSupportedArchs();
  ASSERT_FALSE(archs.empty());
  int newest = archs.back();
  if (newest >= 999) GTEST_SKIP() << "NVRTC supports every arch parseArch can spell";
  CompileOptions opts;
  opts.arch = fmt::format("sm_{}", newest + 1);
  CompileResult r = compile(kSaxpy, opts);
  EXPECT_FALSE(r.isCubin);
  EXPECT_EQ(r.arch, newest);
  EXPECT_TRUE(r.cubin.empty());
  EXPECT_TRUE(contains(r.ptx, fmt::format(".target sm_{}", newest))) << r.ptx;
}

TEST(Nvrtc, OlderArchThrows) {
  SKIP_WITHOUT_NVRTC();
  std::vector<int> archs = nvrtcSupportedArchs();
  ASSERT_FALSE(archs.empty());
  if (archs.front() <= 10) GTEST_SKIP() << "NVRTC supports every old arch";
  CompileOptions opts;
  opts.arch = fmt::format("sm_{}", archs.front() - 1);
  EXPECT_THROW(compile(kSaxpy, opts), Error);
}

TEST(Nvrtc, NoFastMathUnlessAsked) {
  SKIP_WITHOUT_NVRTC();
  const char *source =
      "extern \"C\" __global__ void divide(float *x, const float *y) { x[0] = x[0] / y[0]; }\n";
  CompileOptions opts;
  opts.wantPtx = true;
  CompileResult precise = compile(source, opts);
  EXPECT_TRUE(contains(precise.ptx, "div.rn.f32")) << precise.ptx;
  opts.extraOptions = {"--use_fast_math"};
  CompileResult fast = compile(source, opts);
  EXPECT_FALSE(contains(fast.ptx, "div.rn.f32")) << fast.ptx;
}

TEST(Nvrtc, ConcurrentCompiles) {
  SKIP_WITHOUT_NVRTC();
  constexpr int kThreads = 4;
  std::vector<std::string> failures(kThreads);
  std::vector<size_t> sizes(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        CompileOptions opts;
        opts.arch = t % 2 ? "sm_80" : "sm_90";
        opts.sourceName = fmt::format("thread{}.cu", t);
        sizes[t] = compile(kSaxpy, opts).cubin.size();
      } catch (const std::exception &e) {
        failures[t] = e.what();
      }
    });
  }
  for (std::thread &th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], "") << "thread " << t;
    EXPECT_GT(sizes[t], 0u) << "thread " << t;
  }
}

TEST(Nvrtc, WithoutNvrtcCompileThrows) {
  if (nvrtcAvailable()) GTEST_SKIP() << "encc was built with NVRTC";
  EXPECT_EQ(nvrtcVersion(), "");
  EXPECT_TRUE(nvrtcSupportedArchs().empty());
  try {
    compile(kSaxpy, {});
    FAIL() << "no exception";
  } catch (const Error &e) {
    EXPECT_TRUE(contains(e.what(), "encc was built without NVRTC")) << e.what();
  }
}

} // namespace
} // namespace enc::cuda
