#include "runtime/CpuJit.h"
#include "runtime/Hash.h"
#include "support/Error.h"

#include "CliTestSupport.h"

#include <gtest/gtest.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <latch>
#include <random>
#include <thread>
#include <vector>

using namespace enc;

namespace {

using SumFn = void (*)(float *, int64_t, float *);
using ScaleFn = void (*)(double *, int64_t, double);

// void name(float *x, int64_t n, float *out) { float acc = 0; for (i < n) acc += x[i]; *out = acc; }
// The fadd is reassociable, so O3 may vectorize the reduction.
void addSum(llvm::Module &m, const std::string &name) {
  llvm::LLVMContext &ctx = m.getContext();
  llvm::IRBuilder<> b(ctx);
  auto *i64 = b.getInt64Ty();
  auto *f32 = b.getFloatTy();
  auto *fty = llvm::FunctionType::get(b.getVoidTy(), {b.getPtrTy(), i64, b.getPtrTy()}, false);
  auto *fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, name, m);
  llvm::Value *x = fn->getArg(0), *n = fn->getArg(1), *out = fn->getArg(2);

  auto *entry = llvm::BasicBlock::Create(ctx, "entry", fn);
  auto *loop = llvm::BasicBlock::Create(ctx, "loop", fn);
  auto *exit = llvm::BasicBlock::Create(ctx, "exit", fn);
  b.SetInsertPoint(entry);
  b.CreateCondBr(b.CreateICmpSGT(n, b.getInt64(0)), loop, exit);

  b.SetInsertPoint(loop);
  llvm::PHINode *i = b.CreatePHI(i64, 2, "i");
  llvm::PHINode *acc = b.CreatePHI(f32, 2, "acc");
  llvm::Value *xi = b.CreateLoad(f32, b.CreateGEP(f32, x, i), "xi");
  llvm::FastMathFlags fmf;
  fmf.setAllowReassoc();
  fmf.setNoSignedZeros();
  fmf.setAllowContract();
  b.setFastMathFlags(fmf);
  llvm::Value *acc2 = b.CreateFAdd(acc, xi, "acc.next");
  llvm::Value *i2 = b.CreateAdd(i, b.getInt64(1), "i.next", /*HasNUW=*/true, /*HasNSW=*/true);
  i->addIncoming(b.getInt64(0), entry);
  i->addIncoming(i2, loop);
  acc->addIncoming(llvm::ConstantFP::get(f32, 0.0), entry);
  acc->addIncoming(acc2, loop);
  b.CreateCondBr(b.CreateICmpSLT(i2, n), loop, exit);

  b.SetInsertPoint(exit);
  llvm::PHINode *result = b.CreatePHI(f32, 2, "result");
  result->addIncoming(llvm::ConstantFP::get(f32, 0.0), entry);
  result->addIncoming(acc2, loop);
  b.CreateStore(result, out);
  b.CreateRetVoid();
}

// void name(double *x, int64_t n, double s) { for (i < n) x[i] *= s; }
void addScale(llvm::Module &m, const std::string &name) {
  llvm::LLVMContext &ctx = m.getContext();
  llvm::IRBuilder<> b(ctx);
  auto *i64 = b.getInt64Ty();
  auto *f64 = b.getDoubleTy();
  auto *fty = llvm::FunctionType::get(b.getVoidTy(), {b.getPtrTy(), i64, f64}, false);
  auto *fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, name, m);
  fn->addParamAttr(0, llvm::Attribute::NoAlias);
  llvm::Value *x = fn->getArg(0), *n = fn->getArg(1), *s = fn->getArg(2);

  auto *entry = llvm::BasicBlock::Create(ctx, "entry", fn);
  auto *loop = llvm::BasicBlock::Create(ctx, "loop", fn);
  auto *exit = llvm::BasicBlock::Create(ctx, "exit", fn);
  b.SetInsertPoint(entry);
  b.CreateCondBr(b.CreateICmpSGT(n, b.getInt64(0)), loop, exit);

  b.SetInsertPoint(loop);
  llvm::PHINode *i = b.CreatePHI(i64, 2, "i");
  llvm::Value *p = b.CreateGEP(f64, x, i);
  b.CreateStore(b.CreateFMul(b.CreateLoad(f64, p), s), p);
  llvm::Value *i2 = b.CreateAdd(i, b.getInt64(1), "i.next", true, true);
  i->addIncoming(b.getInt64(0), entry);
  i->addIncoming(i2, loop);
  b.CreateCondBr(b.CreateICmpSLT(i2, n), loop, exit);

  b.SetInsertPoint(exit);
  b.CreateRetVoid();
}

// addScale with volatile accesses (which no vectorizer touches) and a request to vectorize
// the loop, so that LLVM reports the request it could not honour.
void addUnvectorizableScale(llvm::Module &m, const std::string &name) {
  addScale(m, name);
  llvm::Function *fn = m.getFunction(name);
  llvm::LLVMContext &ctx = m.getContext();
  for (llvm::BasicBlock &bb : *fn)
    for (llvm::Instruction &inst : bb) {
      if (auto *load = llvm::dyn_cast<llvm::LoadInst>(&inst)) load->setVolatile(true);
      if (auto *store = llvm::dyn_cast<llvm::StoreInst>(&inst)) store->setVolatile(true);
    }
  llvm::BasicBlock &loop = *std::next(fn->begin());
  llvm::Metadata *enable[] = {llvm::MDString::get(ctx, "llvm.loop.vectorize.enable"),
                              llvm::ConstantAsMetadata::get(llvm::ConstantInt::getTrue(ctx))};
  llvm::TempMDTuple placeholder = llvm::MDNode::getTemporary(ctx, {});
  llvm::Metadata *ops[] = {placeholder.get(), llvm::MDNode::get(ctx, enable)};
  llvm::MDNode *loopId = llvm::MDNode::getDistinct(ctx, ops);
  loopId->replaceOperandWith(0, loopId);
  loop.getTerminator()->setMetadata(llvm::LLVMContext::MD_loop, loopId);
}

// Keys are process-wide; a fresh suffix per use keeps tests independent (and --gtest_repeat working). The
// disk cache outlives the process, so the suffix also names this process: otherwise a later run would load
// this run's objects and compile nothing.
std::string freshKey(const std::string &base) {
  static const std::string run = std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
  static std::atomic<int> counter{0};
  return base + "." + run + "." + std::to_string(counter++);
}

struct Built {
  std::unique_ptr<llvm::LLVMContext> ctx;
  std::unique_ptr<llvm::Module> module;
};

Built build(const std::string &moduleName, const std::function<void(llvm::Module &)> &fill) {
  Built out;
  out.ctx = std::make_unique<llvm::LLVMContext>();
  out.module = CpuJit::instance().newModule(moduleName, *out.ctx);
  fill(*out.module);
  return out;
}

void *compileBuilt(Built built, const std::string &entry, const std::string &key) {
  return CpuJit::instance().compile(std::move(built.ctx), std::move(built.module), entry, key);
}

void expectSumWorks(SumFn sum) {
  for (int64_t n : {0, 1, 7, 8, 17, 1003, 4096}) {
    std::vector<float> x(static_cast<size_t>(n));
    double expected = 0;
    for (int64_t i = 0; i < n; ++i) {
      x[static_cast<size_t>(i)] = 0.25f * static_cast<float>((i * 37) % 101) - 3.0f;
      expected += x[static_cast<size_t>(i)];
    }
    float out = -1.0f;
    sum(x.data(), n, &out);
    EXPECT_NEAR(out, expected, 1e-4 * (1.0 + std::fabs(expected)) + 1e-3) << "n=" << n;
  }
}

void expectScaleWorks(ScaleFn scale) {
  for (int64_t n : {0, 1, 5, 64, 1001}) {
    std::vector<double> x(static_cast<size_t>(n)), expected(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      x[static_cast<size_t>(i)] = 0.5 * static_cast<double>(i) - 7.0;
      expected[static_cast<size_t>(i)] = x[static_cast<size_t>(i)] * -1.75;
    }
    scale(x.data(), n, -1.75);
    EXPECT_EQ(x, expected) << "n=" << n;
  }
}

} // namespace

TEST(CpuJit, HostInfo) {
  CpuJit &jit = CpuJit::instance();
  EXPECT_EQ(&jit, &CpuJit::instance());
  EXPECT_FALSE(jit.hostCpu().empty());
  EXPECT_FALSE(jit.hostTriple().empty());
  llvm::LLVMContext ctx;
  auto m = jit.newModule("host", ctx);
  EXPECT_EQ(m->getTargetTriple(), jit.hostTriple());
  EXPECT_FALSE(m->getDataLayout().isDefault());
}

TEST(CpuJit, CompilesAndRunsSumAndScale) {
  CpuJit &jit = CpuJit::instance();
  std::string key = freshKey("test.sum_f32");
  EXPECT_EQ(jit.lookup(key), nullptr);
  void *sum = compileBuilt(build("sum", [](llvm::Module &m) { addSum(m, "sum_f32"); }), "sum_f32", key);
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(jit.lookup(key), sum);
  expectSumWorks(reinterpret_cast<SumFn>(sum));

  void *scale = compileBuilt(build("scale", [](llvm::Module &m) { addScale(m, "scale_f64"); }), "scale_f64",
                             freshKey("test.scale_f64"));
  ASSERT_NE(scale, nullptr);
  expectScaleWorks(reinterpret_cast<ScaleFn>(scale));
}

TEST(CpuJit, SameKeyCompilesOnce) {
  CpuJit &jit = CpuJit::instance();
  std::string key = freshKey("test.once");
  CpuJit::Stats before = jit.stats();
  void *a = compileBuilt(build("s1", [](llvm::Module &m) { addSum(m, "sum_f32"); }), "sum_f32", key);
  void *b = compileBuilt(build("s2", [](llvm::Module &m) { addSum(m, "sum_f32"); }), "sum_f32", key);
  CpuJit::Stats after = jit.stats();
  EXPECT_EQ(a, b);
  EXPECT_EQ(after.compiles - before.compiles, 1);
  EXPECT_EQ(after.memoryHits - before.memoryHits, 1);
  EXPECT_EQ(after.diskHits, before.diskHits); // a key no process used before
  EXPECT_GT(after.compileSeconds, before.compileSeconds);
  expectSumWorks(reinterpret_cast<SumFn>(b));
}

TEST(CpuJit, DifferentKeysMayDefineTheSameEntry) {
  void *sum = compileBuilt(build("k1", [](llvm::Module &m) { addSum(m, "kernel"); }), "kernel",
                           freshKey("test.kernel.sum"));
  void *scale = compileBuilt(build("k2", [](llvm::Module &m) { addScale(m, "kernel"); }), "kernel",
                             freshKey("test.kernel.scale"));
  ASSERT_NE(sum, nullptr);
  ASSERT_NE(scale, nullptr);
  EXPECT_NE(sum, scale);
  expectSumWorks(reinterpret_cast<SumFn>(sum));
  expectScaleWorks(reinterpret_cast<ScaleFn>(scale));
}

TEST(CpuJit, BrokenModuleGivesVerifierError) {
  CpuJit &jit = CpuJit::instance();
  std::string key = freshKey("test.broken");
  CpuJit::Stats before = jit.stats();
  auto broken = [](llvm::Module &m) {
    auto *fty = llvm::FunctionType::get(llvm::Type::getVoidTy(m.getContext()), false);
    auto *fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, "bad", m);
    llvm::BasicBlock::Create(m.getContext(), "entry", fn); // no terminator
  };
  try {
    compileBuilt(build("bad", broken), "bad", key);
    FAIL() << "expected enc::Error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("verifier"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("terminator"), std::string::npos) << e.what();
  }
  EXPECT_EQ(jit.lookup(key), nullptr);
  EXPECT_EQ(jit.stats().compiles, before.compiles);

  // The key is not poisoned: a good module under it compiles afterwards.
  void *good = compileBuilt(build("good", [](llvm::Module &m) { addSum(m, "bad"); }), "bad", key);
  expectSumWorks(reinterpret_cast<SumFn>(good));

  llvm::LLVMContext ctx;
  auto m = jit.newModule("bad", ctx);
  broken(*m);
  EXPECT_THROW(jit.optimizeAndPrint(*m), Error);
}

TEST(CpuJit, MissingEntryIsAnError) {
  std::string key = freshKey("test.missing");
  try {
    compileBuilt(build("m", [](llvm::Module &m) { addSum(m, "sum_f32"); }), "nope", key);
    FAIL() << "expected enc::Error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << e.what();
  }
  EXPECT_EQ(CpuJit::instance().lookup(key), nullptr);
}

TEST(CpuJit, ConcurrentCompilesOfOneKeyCompileOnce) {
  CpuJit &jit = CpuJit::instance();
  std::string key = freshKey("test.concurrent");
  CpuJit::Stats before = jit.stats();
  constexpr int kThreads = 8;
  std::vector<void *> results(kThreads, nullptr);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      Built built = build("c", [](llvm::Module &m) { addSum(m, "sum_f32"); });
      start.arrive_and_wait();
      results[static_cast<size_t>(t)] = compileBuilt(std::move(built), "sum_f32", key);
    });
  for (std::thread &t : threads) t.join();
  CpuJit::Stats after = jit.stats();
  EXPECT_EQ(after.compiles - before.compiles, 1);
  EXPECT_EQ(after.memoryHits - before.memoryHits, kThreads - 1);
  for (void *r : results) EXPECT_EQ(r, results[0]);
  expectSumWorks(reinterpret_cast<SumFn>(results[0]));
}

TEST(CpuJit, ConcurrentCompilesOfDifferentKeys) {
  constexpr int kThreads = 4;
  std::vector<void *> results(kThreads, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      results[static_cast<size_t>(t)] =
          compileBuilt(build("d", [](llvm::Module &m) { addScale(m, "kernel"); }), "kernel",
                       freshKey("test.parallel"));
    });
  for (std::thread &t : threads) t.join();
  for (void *r : results) {
    ASSERT_NE(r, nullptr);
    expectScaleWorks(reinterpret_cast<ScaleFn>(r));
  }
}

// What LLVM says about a loop it did not vectorize as asked is not printed, unless
// ENC_JIT_REMARKS is set (ENC_JIT_STATS, its one line at exit, does not); the kernel still
// compiles and runs.
TEST(CpuJit, OptimizerRemarksAreQuietUnlessAskedFor) {
  enc::testing::ScopedEnv statsLine("ENC_JIT_STATS", "1");
  const char *old = std::getenv("ENC_JIT_REMARKS");
  const std::string saved = old ? old : "";
  for (bool stats : {false, true}) {
    if (stats) ::setenv("ENC_JIT_REMARKS", "1", 1);
    else ::unsetenv("ENC_JIT_REMARKS");
    ::testing::internal::CaptureStderr();
    auto scale = reinterpret_cast<ScaleFn>(
        compileBuilt(build("volatile_scale", [](llvm::Module &m) { addUnvectorizableScale(m, "volatile_scale"); }),
                     "volatile_scale", freshKey("volatile_scale")));
    const std::string printed = ::testing::internal::GetCapturedStderr();
    ASSERT_NE(scale, nullptr);
    expectScaleWorks(scale);
    if (stats) {
      EXPECT_NE(printed.find("encc: LLVM note: "), std::string::npos) << printed;
      EXPECT_NE(printed.find("loop not vectorized"), std::string::npos) << printed;
    } else {
      EXPECT_EQ(printed, "") << printed;
    }
  }
  if (old) ::setenv("ENC_JIT_REMARKS", saved.c_str(), 1);
  else ::unsetenv("ENC_JIT_REMARKS");
}

TEST(CpuJit, OptimizeAndPrintVectorizes) {
  llvm::LLVMContext ctx;
  auto m = CpuJit::instance().newModule("sum", ctx);
  addSum(*m, "sum_f32");
  std::string ir = CpuJit::instance().optimizeAndPrint(*m);
  bool vectorized = false;
  for (const char *type : {"<4 x float>", "<8 x float>", "<16 x float>"})
    vectorized = vectorized || ir.find(type) != std::string::npos;
  EXPECT_TRUE(vectorized) << ir;
  EXPECT_NE(ir.find("define"), std::string::npos);
  EXPECT_NE(ir.find("sum_f32"), std::string::npos);
}
