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
#include <vector>

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

inline void __syncwarp(unsigned = 0xffffffffu) { encemu_ctx->syncWarp(encemu_ctx->scheduler); }
// nvcuda::wmma (tensor cores), 16 x 16 x 16 fragments: here every lane holds a fragment's whole
// matrix, which it loads, multiplies and stores by itself (products summed in f32 in k order),
// so that the collective operations need no exchange between lanes. The generated code uses
// fragments only through these functions, whose meaning does not depend on how a warp
// distributes the elements. (The toolkit's <mma.h> is kept out: its guard is defined here.)
#define __CUDA_MMA_H__
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {}; // operands held as floats, rounded with __float_to_tf32
} // namespace precision
enum layout_t { mem_row_major, mem_col_major };
template <typename T> struct element { using type = T; };
template <> struct element<precision::tf32> { using type = float; };
template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
  using E = typename element<T>::type;
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols;
  E x[rows * cols]; // row-major, whatever the memory layout it is loaded from
};
// To nearest with ties away from zero, keeping 10 fraction bits (cvt.rna.tf32.f32).
inline float __float_to_tf32(float v) {
  if (!std::isfinite(v)) return v;
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = (bits + 0x1000u) & 0xffffe000u;
  std::memcpy(&v, &bits, 4);
  return v;
}
template <typename Use, int M, int N, int K, typename T, typename L, typename V>
void fill_fragment(fragment<Use, M, N, K, T, L> &f, const V &v) {
  using E = typename fragment<Use, M, N, K, T, L>::E;
  for (E &e : f.x) e = static_cast<E>(static_cast<float>(v));
}
template <typename Use, int M, int N, int K, typename T, typename L, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const P *p, unsigned ld) {
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = std::is_same_v<L, col_major> ? p[c * ld + r] : p[r * ld + c];
}
template <int M, int N, int K, typename T>
void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, T> &f, unsigned ld, layout_t layout) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (layout == mem_row_major ? p[r * ld + c] : p[c * ld + r]) = f.x[r * N + c];
}
template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
              const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
  float out[M * N];
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      float s = c.x[m * N + n];
      for (int k = 0; k < K; ++k) s += static_cast<float>(a.x[m * K + k]) * static_cast<float>(b.x[k * N + n]);
      out[m * N + n] = s;
    }
  std::copy(out, out + M * N, d.x);
}
} // namespace nvcuda::wmma
// Asynchronous copies (cp.async), as late as their meaning allows: each thread's copies wait
// in its groups and land only when a wait leaves fewer groups in flight, so a kernel that
// reads shared memory before waiting reads what was there before. Source elements are read
// when they land (kernels do not write what they copy from).
#define ENC_ASYNC_COPY
namespace encemu {
struct AsyncCopy {
  void *dst;
  const void *src; // null: fill with zeros
  unsigned bytes;
};
struct AsyncCopies {
  Dim3 block;
  bool used = false;
  std::vector<AsyncCopy> open;
  std::vector<std::vector<AsyncCopy>> closed; // oldest first
};
// The calling thread's copies: a thread of another block starts with none.
inline AsyncCopies &asyncCopies() {
  static std::vector<AsyncCopies> threads;
  const unsigned self = linearThread();
  if (threads.size() < encemu_ctx->threads) threads.resize(encemu_ctx->threads);
  AsyncCopies &t = threads[self];
  const Dim3 &b = encemu_ctx->block;
  if (!t.used || t.block.x != b.x || t.block.y != b.y || t.block.z != b.z) t = AsyncCopies{b, true, {}, {}};
  return t;
}
} // namespace encemu
template <typename T> void enc_async_copy(T *dst, const T *src, bool valid) {
  encemu::asyncCopies().open.push_back({dst, valid ? src : nullptr, static_cast<unsigned>(sizeof(T))});
}
// N elements as one copy: cp.async requires both addresses aligned to its size, and the tiler
// promises them (the generated code's fallback for others is not taken here: a misaligned
// copy traps, so that a wrong promise fails the launch).
template <int N, typename T> void enc_async_copy_n(T *dst, const T *src, bool valid) {
  constexpr unsigned bytes = N * sizeof(T);
  static_assert(bytes == 4 || bytes == 8 || bytes == 16, "cp.async copies 4, 8 or 16 bytes");
  if (((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & (bytes - 1)) != 0) {
    std::printf("encc emulator: a %u-byte asynchronous copy from %p to %p, not aligned to its size\n", bytes,
                static_cast<const void *>(src), static_cast<void *>(dst));
    __trap();
  }
  encemu::asyncCopies().open.push_back({dst, valid ? src : nullptr, bytes});
}
inline void enc_async_commit() {
  encemu::AsyncCopies &t = encemu::asyncCopies();
  t.closed.push_back(std::move(t.open));
  t.open.clear();
}
template <int N> void enc_async_wait() {
  encemu::AsyncCopies &t = encemu::asyncCopies();
  while (t.closed.size() > static_cast<size_t>(N)) {
    for (const encemu::AsyncCopy &c : t.closed.front()) {
      if (c.src)
        std::memcpy(c.dst, c.src, c.bytes);
      else
        std::memset(c.dst, 0, c.bytes);
    }
    t.closed.erase(t.closed.begin());
  }
}

namespace encemu {
// Calls a kernel with the driver's argument array: a[i] points at the i-th parameter's value.
template <typename... P, std::size_t... I> void callKernel(void (*f)(P...), void **a, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<P>> *>(a[I])...);
}
template <typename... P> void callKernel(void (*f)(P...), void **a) { callKernel(f, a, std::index_sequence_for<P...>{}); }
} // namespace encemu

#endif // ENCEMU_CONTEXT_ONLY
