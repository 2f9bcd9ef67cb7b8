// What a CUDA kernel sees when the emulator compiles it for the host: the thread and block
// indices, __syncthreads, warp shuffles, atomics and the device math functions encc's
// generated code calls, each with its CUDA meaning, on top of the host C++ compiler.
//
// The module builder passes this file to the compiler with -include, ahead of the generated
// source. The emulator's scheduler includes it too, with ENCEMU_CONTEXT_ONLY defined, so both
// sides agree on ThreadContext's layout.
#pragma once

#include <cstdint>
#include <cstring>

namespace encemu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// One per launch, shared by every emulated thread: the scheduler rewrites `thread` before it
// resumes a thread, so kernel code reads its own index.
struct ThreadContext {
  Dim3 thread, block, blockSize, gridSize; // threadIdx, blockIdx, blockDim, gridDim
  void *scheduler = nullptr;
  void (*syncBlock)(void *scheduler) = nullptr; // __syncthreads
  void (*syncWarp)(void *scheduler) = nullptr;  // all lanes of the calling thread's warp
  void (*trap)(void *scheduler) = nullptr;      // __trap: ends the thread, fails the launch
  uint64_t *exchange = nullptr;                 // two banks of one slot per thread, for shuffles
  unsigned *shuffles = nullptr;                 // per thread: how many shuffles it has made
  unsigned threads = 0;                         // in the block
};

} // namespace encemu

#ifndef ENCEMU_CONTEXT_ONLY

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <type_traits>
#include <utility>

// The toolkit's 16-bit types work in host code; they come first, as their headers define the
// CUDA keywords that are redefined below.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

static encemu::ThreadContext *encemu_ctx = nullptr;
extern "C" void encemu_bind(encemu::ThreadContext *context) { encemu_ctx = context; }

#define threadIdx (encemu_ctx->thread)
#define blockIdx (encemu_ctx->block)
#define blockDim (encemu_ctx->blockSize)
#define gridDim (encemu_ctx->gridSize)

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Statics are shared by the block's threads, and the emulator runs one block at a time.
#define __shared__ static

inline void __syncthreads() { encemu_ctx->syncBlock(encemu_ctx->scheduler); }
[[noreturn]] inline void __trap() {
  std::fflush(stdout); // what the kernel printed comes before the launch's error
  encemu_ctx->trap(encemu_ctx->scheduler);
  __builtin_unreachable();
}

namespace encemu {
inline unsigned linearThread() {
  const ThreadContext &c = *encemu_ctx;
  return c.thread.x + c.blockSize.x * (c.thread.y + c.blockSize.y * c.thread.z);
}
// Every lane publishes its value, the warp meets, and each reads its source lane. Shuffles
// alternate between two banks of slots: a lane can write a bank again only after the warp has
// met at the next shuffle, when every lane has read what it needed from it.
template <typename T> T shuffle(T v, unsigned srcLane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffled values are at most 8 bytes");
  ThreadContext &c = *encemu_ctx;
  const unsigned self = linearThread();
  uint64_t *bank = c.exchange + (c.shuffles[self]++ & 1u) * c.threads;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bank[self] = bits;
  c.syncWarp(c.scheduler);
  const uint64_t got = bank[(self & ~31u) | (srcLane & 31u)];
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}
} // namespace encemu

template <typename T> T __shfl_xor_sync(unsigned, T v, int laneMask) {
  return encemu::shuffle(v, (encemu::linearThread() & 31u) ^ static_cast<unsigned>(laneMask));
}
template <typename T> T __shfl_down_sync(unsigned, T v, unsigned delta) {
  const unsigned lane = encemu::linearThread() & 31u;
  return encemu::shuffle(v, lane + delta < 32 ? lane + delta : lane);
}
template <typename T> T __shfl_sync(unsigned, T v, int srcLane) { return encemu::shuffle(v, static_cast<unsigned>(srcLane)); }

// One host thread runs every emulated thread, switching only at barriers: atomics are plain.
template <typename T> T atomicAdd(T *p, std::type_identity_t<T> v) {
  T old = *p;
  *p = old + v;
  return old;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
using std::max;
using std::min;
inline long long min(long long a, int b) { return a < b ? a : b; }
inline long long max(long long a, int b) { return a > b ? a : b; }
inline long long min(int a, long long b) { return a < b ? a : b; }
inline long long max(int a, long long b) { return a > b ? a : b; }
using std::fmax;
using std::fmin;
using std::isinf;
using std::isnan;

namespace encemu {
// Calls a kernel with the driver's argument array: a[i] points at the i-th parameter's value.
template <typename... P, std::size_t... I> void callKernel(void (*f)(P...), void **a, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<P>> *>(a[I])...);
}
template <typename... P> void callKernel(void (*f)(P...), void **a) { callKernel(f, a, std::index_sequence_for<P...>{}); }
} // namespace encemu

#endif // ENCEMU_CONTEXT_ONLY
