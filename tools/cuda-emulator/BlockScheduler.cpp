#include "BlockScheduler.h"

#include <fmt/format.h>

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

// Switching threads is the emulator's inner loop (a warp reduction switches ten times per lane):
// on x86-64 it saves the callee-saved registers and swaps stacks, without the signal-mask system
// call swapcontext makes. Elsewhere ucontext does it.
#if defined(__x86_64__)
extern "C" void encemu_switch(void **saveStack, void *nextStack);
asm(R"(
  .text
  .globl encemu_switch
  .hidden encemu_switch
  .type encemu_switch, @function
encemu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size encemu_switch, .-encemu_switch
)");
#define ENCEMU_FAST_SWITCH 1
#endif

namespace encemu {

namespace {
// Generated kernels keep small register tiles on the stack; a guard page below each stack turns
// an overflow into a fault rather than silent corruption of a neighbour.
constexpr size_t kStackBytes = 256 * 1024;

thread_local BlockScheduler *tlsRunning = nullptr;
} // namespace

struct BlockScheduler::MainContext {
  ucontext_t uc;
  void *stack = nullptr; // where encemu_switch left the scheduler's registers
};

struct BlockScheduler::Fiber {
  ucontext_t uc;
  void *stack = nullptr;
  char *mapping = nullptr;
  size_t mappingBytes = 0;
  Wait wait = Wait::Done;
  Dim3 index;

  Fiber() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    mappingBytes = kStackBytes + page;
    void *p = mmap(nullptr, mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("the emulator could not map a thread stack");
    mapping = static_cast<char *>(p);
    mprotect(mapping, page, PROT_NONE);
  }
  ~Fiber() { munmap(mapping, mappingBytes); }
  char *stackBase() const { return mapping + (mappingBytes - kStackBytes); }
};

BlockScheduler::BlockScheduler() : main_(std::make_unique<MainContext>()) {}
BlockScheduler::~BlockScheduler() = default;

void BlockScheduler::fiberMain() {
  BlockScheduler *s = tlsRunning;
  s->thunk_(s->args_);
  Fiber &f = *s->fibers_[s->current_];
  f.wait = Wait::Done;
#if ENCEMU_FAST_SWITCH
  encemu_switch(&f.stack, s->main_->stack); // never resumed
  __builtin_unreachable();
#endif
  // Returning resumes uc_link: the scheduler's loop.
}

// A fresh thread's stack, laid out as if encemu_switch had saved it inside a call from fiberMain:
// six register slots, then fiberMain as the return address, 16-byte aligned as a call leaves it.
void BlockScheduler::prepare(Fiber &f) {
#if ENCEMU_FAST_SWITCH
  auto top = reinterpret_cast<uintptr_t>(f.stackBase() + kStackBytes) & ~uintptr_t{15};
  auto *slots = reinterpret_cast<void **>(top) - 8;
  for (int i = 0; i < 6; ++i) slots[i] = nullptr;
  slots[6] = reinterpret_cast<void *>(&BlockScheduler::fiberMain);
  slots[7] = nullptr;
  f.stack = slots;
#else
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stackBase();
  f.uc.uc_stack.ss_size = kStackBytes;
  f.uc.uc_link = &main_->uc;
  makecontext(&f.uc, &BlockScheduler::fiberMain, 0);
#endif
}

void BlockScheduler::resume(Fiber &f) {
#if ENCEMU_FAST_SWITCH
  encemu_switch(&main_->stack, f.stack);
#else
  swapcontext(&main_->uc, &f.uc);
#endif
}

void BlockScheduler::syncBlock(void *self) { static_cast<BlockScheduler *>(self)->waitAt(Wait::Block); }
void BlockScheduler::syncWarp(void *self) { static_cast<BlockScheduler *>(self)->waitAt(Wait::Warp); }

// The thread ends here (its fiber is never resumed) and the block fails once the others stop.
void BlockScheduler::trap(void *self) {
  auto *s = static_cast<BlockScheduler *>(self);
  s->trapped_ = true;
  s->waitAt(Wait::Done);
  std::abort(); // not reached: a finished thread is never resumed
}

void BlockScheduler::waitAt(Wait barrier) {
  Fiber &f = *fibers_[current_];
  f.wait = barrier;
#if ENCEMU_FAST_SWITCH
  encemu_switch(&f.stack, main_->stack);
#else
  swapcontext(&f.uc, &main_->uc);
#endif
}

std::string BlockScheduler::runBlock(ThreadContext &context, KernelThunk thunk, void **args) {
  const Dim3 dims = context.blockSize;
  threads_ = dims.x * dims.y * dims.z;
  while (fibers_.size() < threads_) fibers_.push_back(std::make_unique<Fiber>());
  exchange_.assign(2 * size_t{threads_}, 0);
  shuffles_.assign(threads_, 0);
  thunk_ = thunk;
  args_ = args;
  context.scheduler = this;
  context.syncBlock = &BlockScheduler::syncBlock;
  context.syncWarp = &BlockScheduler::syncWarp;
  context.trap = &BlockScheduler::trap;
  trapped_ = false;
  context.exchange = exchange_.data();
  context.shuffles = shuffles_.data();
  context.threads = threads_;
  for (unsigned i = 0; i < threads_; ++i) {
    Fiber &f = *fibers_[i];
    prepare(f);
    f.wait = Wait::Runnable;
    f.index = Dim3{i % dims.x, (i / dims.x) % dims.y, i / (dims.x * dims.y)};
  }
  BlockScheduler *outer = tlsRunning;
  tlsRunning = this;
  std::string error;
  for (;;) {
    // Each runnable thread runs until it waits at a barrier or returns.
    for (unsigned i = 0; i < threads_; ++i) {
      Fiber &f = *fibers_[i];
      if (f.wait != Wait::Runnable) continue;
      current_ = i;
      context.thread = f.index;
      resume(f);
    }
    if (trapped_) {
      const Dim3 &b = context.block;
      error = fmt::format("a thread of block ({},{},{}) called __trap() (the kernel's message, if any, is on stdout)", b.x, b.y, b.z);
      break;
    }
    if (std::all_of(fibers_.begin(), fibers_.begin() + threads_, [](const auto &f) { return f->wait == Wait::Done; })) break;
    error = releaseBarriers(context);
    if (!error.empty()) break;
  }
  tlsRunning = outer;
  return error;
}

// Every thread is now waiting or done. Warps whose lanes all wait at a shuffle go on first; else
// the block goes on when every thread waits at __syncthreads. Anything else can never go on.
std::string BlockScheduler::releaseBarriers(const ThreadContext &context) {
  bool released = false;
  for (unsigned w = 0; w * 32 < threads_; ++w) {
    const unsigned begin = w * 32, end = std::min(threads_, begin + 32);
    unsigned atWarp = 0;
    for (unsigned i = begin; i < end; ++i) atWarp += fibers_[i]->wait == Wait::Warp;
    if (atWarp != end - begin) continue;
    for (unsigned i = begin; i < end; ++i) fibers_[i]->wait = Wait::Runnable;
    released = true;
  }
  if (released) return "";
  unsigned atBlock = 0, atWarp = 0, done = 0;
  for (unsigned i = 0; i < threads_; ++i) {
    Wait w = fibers_[i]->wait;
    atBlock += w == Wait::Block;
    atWarp += w == Wait::Warp;
    done += w == Wait::Done;
  }
  if (atBlock == threads_) {
    for (unsigned i = 0; i < threads_; ++i) fibers_[i]->wait = Wait::Runnable;
    return "";
  }
  const Dim3 &b = context.block;
  return fmt::format("block ({},{},{}) cannot go on: of its {} threads, {} wait at __syncthreads, {} wait at a warp "
                     "shuffle that not all lanes of their warp reach, and {} have returned",
                     b.x, b.y, b.z, threads_, atBlock, atWarp, done);
}

} // namespace encemu
