// The CUDA emulator (tools/cuda-emulator), loaded directly: CUDA semantics the generated kernels
// rely on (shared memory and __syncthreads across a block, warp shuffles, atomics, 2-D indices,
// 16-bit conversions), checked against plain loops here, and its strictness: a barrier that not
// every thread reaches fails the launch with a description instead of hanging.
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "compiler/HyperParams.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <functional>
#include <cstdint>
#include <string>
#include <vector>

#ifdef ENC_CUDA_EMULATOR

namespace {

using CUresult = int;
using CUdeviceptr = unsigned long long;
struct CUmod_st;
struct CUfunc_st;

// The entry points this test calls, from the emulator library.
struct Emulator {
  void *lib = nullptr;
  CUresult (*loadSource)(CUmod_st **, const char *) = nullptr;
  CUresult (*getFunction)(CUfunc_st **, CUmod_st *, const char *) = nullptr;
  CUresult (*launch)(CUfunc_st *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **,
                     void **) = nullptr;
  CUresult (*alloc)(CUdeviceptr *, size_t) = nullptr;
  CUresult (*free)(CUdeviceptr) = nullptr;
  CUresult (*errorString)(CUresult, const char **) = nullptr;

  Emulator() {
    lib = dlopen(ENC_CUDA_EMULATOR, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    resolve(loadSource, "encemuModuleLoadSource");
    resolve(getFunction, "cuModuleGetFunction");
    resolve(launch, "cuLaunchKernel");
    resolve(alloc, "cuMemAlloc_v2");
    resolve(free, "cuMemFree_v2");
    resolve(errorString, "cuGetErrorString");
  }
  template <typename F> void resolve(F &f, const char *name) { f = reinterpret_cast<F>(dlsym(lib, name)); }

  std::string lastError(CUresult r) const {
    const char *text = nullptr;
    errorString(r, &text);
    return text ? text : "";
  }
  CUfunc_st *kernel(const std::string &source, const char *name) const {
    CUmod_st *m = nullptr;
    CUresult r = loadSource(&m, source.c_str());
    EXPECT_EQ(r, 0) << lastError(r);
    if (r) return nullptr;
    CUfunc_st *f = nullptr;
    r = getFunction(&f, m, name);
    EXPECT_EQ(r, 0) << lastError(r);
    return f;
  }
  template <typename T> T *device(size_t n) const {
    CUdeviceptr p = 0;
    EXPECT_EQ(alloc(&p, n * sizeof(T)), 0);
    return reinterpret_cast<T *>(p); // the emulator's device memory is host memory
  }
};

const Emulator &emulator() {
  static const Emulator e;
  return e;
}

class CudaEmulator : public ::testing::Test {
protected:
  void SetUp() override {
    if (!emulator().lib) FAIL() << "cannot load " << ENC_CUDA_EMULATOR << ": " << dlerror();
  }
  const Emulator &emu = emulator();
};

// A block-wide tree sum through shared memory: wrong without __syncthreads between levels.
TEST_F(CudaEmulator, SharedMemoryAndBarriers) {
  CUfunc_st *f = emu.kernel(R"(
extern "C" __global__ void __launch_bounds__(256) block_sums(float *out, const float *in) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  for (int half = 128; half > 0; half >>= 1) {
    if (t < half) s[t] += s[t + half];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
})",
                            "block_sums");
  ASSERT_TRUE(f);
  const unsigned blocks = 5;
  float *in = emu.device<float>(blocks * 256), *out = emu.device<float>(blocks);
  for (unsigned i = 0; i < blocks * 256; ++i) in[i] = static_cast<float>((i * 7) % 13) - 6.0f;
  void *args[] = {&out, &in};
  ASSERT_EQ(emu.launch(f, blocks, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr), 0);
  for (unsigned b = 0; b < blocks; ++b) {
    double want = 0;
    for (unsigned i = 0; i < 256; ++i) want += in[b * 256 + i];
    EXPECT_EQ(out[b], want) << b;
  }
}

// Asynchronous copies (the generated code's enc_async_copy, cp.async on a GPU) land no
// earlier than a wait allows: before the wait a thread still reads what shared memory held;
// waiting with one group in flight lands the older group only; a failed guard fills zeros.
TEST_F(CudaEmulator, AsyncCopiesLandAtTheirWait) {
  CUfunc_st *f = emu.kernel(R"(
extern "C" __global__ void __launch_bounds__(256) copies(float *out, const float *in) {
  __shared__ float s[3 * 256];
  const int t = threadIdx.x;
  s[t] = -1.0f;
  s[256 + t] = -1.0f;
  s[512 + t] = -1.0f;
  enc_async_copy(&s[t], &in[t], true);
  enc_async_commit();
  enc_async_copy(&s[256 + t], &in[256 + t], true);
  enc_async_copy(&s[512 + t], &in[512 + t], (t & 1) == 0);
  enc_async_commit();
  out[t] = s[t];
  enc_async_wait<1>();
  out[256 + t] = s[t];
  out[512 + t] = s[256 + t];
  enc_async_wait<0>();
  out[768 + t] = s[256 + t];
  out[1024 + t] = s[512 + t];
})",
                            "copies");
  ASSERT_TRUE(f);
  float *in = emu.device<float>(3 * 256), *out = emu.device<float>(5 * 256);
  for (unsigned i = 0; i < 3 * 256; ++i) in[i] = static_cast<float>(i) + 0.5f;
  void *args[] = {&out, &in};
  ASSERT_EQ(emu.launch(f, 1, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr), 0);
  for (unsigned t = 0; t < 256; ++t) {
    EXPECT_EQ(out[t], -1.0f) << t;                 // nothing landed before a wait
    EXPECT_EQ(out[256 + t], in[t]) << t;           // the older group landed
    EXPECT_EQ(out[512 + t], -1.0f) << t;           // the newer one is still in flight
    EXPECT_EQ(out[768 + t], in[256 + t]) << t;     // all landed
    EXPECT_EQ(out[1024 + t], t % 2 == 0 ? in[512 + t] : 0.0f) << t; // zeros where the guard failed
  }
}

// Butterfly sums with __shfl_xor_sync give every lane its warp's total; __shfl_down_sync and
// __shfl_sync move values between lanes as on the GPU. Doubles are shuffled whole.
TEST_F(CudaEmulator, WarpShuffles) {
  CUfunc_st *f = emu.kernel(R"(
extern "C" __global__ void shuffles(double *total, int *down, int *bcast) {
  const int t = threadIdx.x, lane = t & 31;
  double v = 1.0 + t * 0.5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  total[t] = v;
  down[t] = __shfl_down_sync(0xffffffffu, t * 10, 3u);
  bcast[t] = __shfl_sync(0xffffffffu, t, 5);
})",
                            "shuffles");
  ASSERT_TRUE(f);
  double *total = emu.device<double>(64);
  int *down = emu.device<int>(64), *bcast = emu.device<int>(64);
  void *args[] = {&total, &down, &bcast};
  ASSERT_EQ(emu.launch(f, 1, 1, 1, 64, 1, 1, 0, nullptr, args, nullptr), 0);
  for (int t = 0; t < 64; ++t) {
    const int w = t / 32 * 32, lane = t % 32;
    double want = 0;
    for (int i = w; i < w + 32; ++i) want += 1.0 + i * 0.5;
    EXPECT_EQ(total[t], want) << t;
    EXPECT_EQ(down[t], (lane + 3 < 32 ? t + 3 : t) * 10) << t;
    EXPECT_EQ(bcast[t], w + 5) << t;
  }
}

// Atomics from every thread of several blocks; 2-D blocks and grids index as CUDA does.
TEST_F(CudaEmulator, AtomicsAndTwoDimensionalIndices) {
  CUfunc_st *f = emu.kernel(R"(
extern "C" __global__ void grid2d(float *sum, int *where, int width) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  where[y * width + x] = y * 1000 + x;
  atomicAdd(sum, 1.0f);
})",
                            "grid2d");
  ASSERT_TRUE(f);
  const int width = 3 * 8, height = 2 * 4;
  float *sum = emu.device<float>(1);
  int *where = emu.device<int>(width * height);
  *sum = 0;
  int w = width;
  void *args[] = {&sum, &where, &w};
  ASSERT_EQ(emu.launch(f, 3, 2, 1, 8, 4, 1, 0, nullptr, args, nullptr), 0);
  EXPECT_EQ(*sum, static_cast<float>(width * height));
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) EXPECT_EQ(where[y * width + x], y * 1000 + x);
}

// The toolkit's __half / __nv_bfloat16 round to nearest even, as on the device.
TEST_F(CudaEmulator, SixteenBitConversions) {
  CUfunc_st *f = emu.kernel(R"(#include <cuda_fp16.h>
#include <cuda_bf16.h>
extern "C" __global__ void narrow(float *out, const float *in) {
  const int t = threadIdx.x;
  out[2 * t] = __half2float(__float2half_rn(in[t]));
  out[2 * t + 1] = __bfloat162float(__float2bfloat16_rn(in[t]));
})",
                            "narrow");
  ASSERT_TRUE(f);
  float *in = emu.device<float>(32), *out = emu.device<float>(64);
  for (int i = 0; i < 32; ++i) in[i] = 1.0f + static_cast<float>(i) * (1.0f / 4096.0f); // between f16 steps
  void *args[] = {&out, &in};
  ASSERT_EQ(emu.launch(f, 1, 1, 1, 32, 1, 1, 0, nullptr, args, nullptr), 0);
  for (int i = 0; i < 32; ++i) {
    // f16 has 10 fraction bits (steps of 1/1024 at 1), bf16 7 (1/128): nearest, ties to even.
    auto nearest = [](double v, double step) {
      double q = v / step, r = std::nearbyint(q); // the default rounding mode: ties to even
      return r * step;
    };
    EXPECT_EQ(out[2 * i], nearest(in[i], 1.0 / 1024)) << i;
    EXPECT_EQ(out[2 * i + 1], nearest(in[i], 1.0 / 128)) << i;
  }
}

// __syncthreads inside a branch that some threads skip deadlocks (or worse) on a GPU; here the
// launch fails and says how many threads got where.
TEST_F(CudaEmulator, DivergentBarrierFailsTheLaunch) {
  CUfunc_st *f = emu.kernel(R"(
extern "C" __global__ void divergent(float *p) {
  if (threadIdx.x < 100) __syncthreads();
  p[threadIdx.x] = 1.0f;
})",
                            "divergent");
  ASSERT_TRUE(f);
  float *p = emu.device<float>(128);
  void *args[] = {&p};
  CUresult r = emu.launch(f, 1, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr);
  EXPECT_EQ(r, 719); // CUDA_ERROR_LAUNCH_FAILED
  const std::string why = emu.lastError(r);
  EXPECT_NE(why.find("kernel divergent"), std::string::npos) << why;
  EXPECT_NE(why.find("100 wait at __syncthreads"), std::string::npos) << why;
  EXPECT_NE(why.find("28 have returned"), std::string::npos) << why;
}

// A full-warp shuffle that half the warp skips fails the same way.
TEST_F(CudaEmulator, ShuffleInDivergentCodeFailsTheLaunch) {
  CUfunc_st *f = emu.kernel(R"(
extern "C" __global__ void half_warp(float *p) {
  float v = p[threadIdx.x];
  if ((threadIdx.x & 31) < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  p[threadIdx.x] = v;
})",
                            "half_warp");
  ASSERT_TRUE(f);
  float *p = emu.device<float>(32);
  void *args[] = {&p};
  CUresult r = emu.launch(f, 1, 1, 1, 32, 1, 1, 0, nullptr, args, nullptr);
  EXPECT_EQ(r, 719);
  EXPECT_NE(emu.lastError(r).find("16 wait at a warp shuffle"), std::string::npos) << emu.lastError(r);
}

// Source the host compiler rejects: CUDA_ERROR_INVALID_SOURCE with the compiler's message.
TEST_F(CudaEmulator, CompileErrorsCarryTheCompilersMessage) {
  CUmod_st *m = nullptr;
  CUresult r = emu.loadSource(&m, "extern \"C\" __global__ void broken(float *p) { p[0] = undeclared_name; }\n");
  EXPECT_EQ(r, 300);
  EXPECT_NE(emu.lastError(r).find("undeclared_name"), std::string::npos) << emu.lastError(r);
}

// A store one past the end, in code from encc's own generator with bounds checks on: the
// thread traps, the launch fails, and the message names the kernel, buffer, index and size.
TEST_F(CudaEmulator, BoundsChecksCatchAnAccessPastTheEnd) {
  using namespace enc;
  auto lib = Library::shipped();
  const LayerSymbols &sym = lib->get("ReLU");
  auto hyper = resolveHyperParams(sym, {});
  hyper["training"] = ir::boolImm(true);
  hyper["N"] = ir::intImm(10); // ReLU's input is X[N]
  ir::LoopProgram loops = ir::lowerToLoops(ir::Pipeline().forward(sym, hyper), ir::Target::GPU);
  ASSERT_EQ(loops.kernels.size(), 1u);
  // The kernel's store, moved one element on: the last thread writes Y[10].
  std::function<ir::Stmt(const ir::Stmt &)> shift = [&](const ir::Stmt &st) -> ir::Stmt {
    auto copy = std::make_shared<ir::StmtNode>(*st);
    if (copy->kind == ir::StmtKind::Store) copy->index = copy->index + ir::intImm(1);
    for (ir::Stmt &c : copy->body) c = shift(c);
    return copy;
  };
  loops.kernels[0].body = shift(loops.kernels[0].body);
  const std::string source = codegen::emitCuda(loops, {.checkBounds = true});
  CUfunc_st *f = emu.kernel(source, loops.kernels[0].name.c_str());
  ASSERT_TRUE(f);
  float *y = emu.device<float>(11), *x = emu.device<float>(10); // one spare element: no real overrun
  for (int i = 0; i < 10; ++i) x[i] = static_cast<float>(i) - 4.5f;
  void *args[] = {&y, &x};
  ASSERT_EQ(loops.kernels[0].buffers, (std::vector<std::string>{"Y", "X"}));
  ::testing::internal::CaptureStdout();
  CUresult r = emu.launch(f, 1, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr);
  const std::string printed = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(r, 719);
  EXPECT_NE(emu.lastError(r).find("__trap"), std::string::npos) << emu.lastError(r);
  EXPECT_NE(printed.find("out-of-bounds access " + loops.kernels[0].name + ": Y[10] (10 elements)"), std::string::npos)
      << printed;
}

} // namespace

#else
TEST(CudaEmulator, NotBuilt) { GTEST_SKIP() << "the CUDA emulator needs the CUDA toolkit's headers at configure time"; }
#endif
