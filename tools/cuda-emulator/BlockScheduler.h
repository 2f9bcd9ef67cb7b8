// Runs the threads of one CUDA block on the calling host thread, as cooperative fibers that
// switch only where CUDA threads wait for each other: __syncthreads and warp shuffles.
//
// Being strict where the hardware is forgiving finds bugs a GPU hides: a barrier that some
// threads of the block (or lanes of the warp) never reach, or reach after exiting, is reported
// as an error rather than left to hang or to race.
#pragma once

#define ENCEMU_CONTEXT_ONLY
#include "Prelude.h"
#undef ENCEMU_CONTEXT_ONLY

#include <memory>
#include <string>
#include <vector>

namespace encemu {

using KernelThunk = void (*)(void **args);

class BlockScheduler {
public:
  BlockScheduler();
  ~BlockScheduler();
  BlockScheduler(const BlockScheduler &) = delete;
  BlockScheduler &operator=(const BlockScheduler &) = delete;

  // Runs block `blockIdx` of a launch of `thunk` to completion. `context` is the one the
  // kernel's module was bound to. Returns "" on success, else what went wrong.
  std::string runBlock(ThreadContext &context, KernelThunk thunk, void **args);

private:
  struct Fiber;
  enum class Wait { Runnable, Block, Warp, Done };

  static void fiberMain();
  void prepare(Fiber &f);
  void resume(Fiber &f);
  static void syncBlock(void *self);
  static void syncWarp(void *self);
  [[noreturn]] static void trap(void *self);
  void waitAt(Wait barrier);
  std::string releaseBarriers(const ThreadContext &context);

  std::vector<std::unique_ptr<Fiber>> fibers_;
  std::vector<uint64_t> exchange_;
  std::vector<unsigned> shuffles_;
  unsigned threads_ = 0, current_ = 0;
  bool trapped_ = false;
  KernelThunk thunk_ = nullptr;
  void **args_ = nullptr;
  struct MainContext;
  std::unique_ptr<MainContext> main_;
};

} // namespace encemu
