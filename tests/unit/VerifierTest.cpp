// The IR verifier (compiler/Verifier.cpp) accepts a well-formed program and its loops, and rejects broken
// tensor IR and loop IR with an InternalError that says what is wrong.
#include "CliTestSupport.h"
#include "SmallProgram.h"

#include "compiler/Pipeline.h"
#include "compiler/Verifier.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/InternalError.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::testing;

namespace {

TEST(Verifier, AcceptsAWellFormedProgramAndItsLoops) {
  EXPECT_NO_THROW(ir::verifyProgram(smallProgram(), {.oneReductionPerDefinition = true}));
  EXPECT_NO_THROW(ir::verifyLoops(ir::lowerToLoops(smallProgram(), ir::Target::CPU)));
  EXPECT_NO_THROW(ir::verifyLoops(ir::lowerToLoops(smallProgram(), ir::Target::GPU)));
}

// Runs `fn`, expects an InternalError (not a user's enc::Error), returns its message.
template <typename Fn> std::string internalErrorOf(Fn fn) {
  try {
    fn();
  } catch (const InternalError &e) {
    return e.message();
  } catch (const std::exception &e) {
    ADD_FAILURE() << "not an InternalError: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(Verifier, RejectsBrokenTensorIR) {
  ir::Program unbound = smallProgram();
  unbound.defs[0].value = ir::access("X", {ir::var("j", ir::Type::Int, ir::VarKind::Index)});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(unbound); }), "unbound index j"));

  ir::Program arity = smallProgram();
  ir::Expr i = ir::var("i", ir::Type::Int, ir::VarKind::Index);
  arity.defs[0].value = ir::access("X", {i, i});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(arity); }), "with 2 indices"));

  ir::Program undeclared = smallProgram();
  undeclared.defs[0].value = ir::access("Z", {i});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(undeclared); }), "undeclared tensor 'Z'"));

  ir::Program extent = smallProgram();
  extent.defs[0].indices[0].extent = ir::intImm(5);
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(extent); }), "runs to 5"));

  ir::Program twoSums = smallProgram();
  ir::Expr s = ir::reduce(ir::ReduceOp::Sum, {{"r", ir::intImm(4)}},
                          ir::access("X", {ir::var("r", ir::Type::Int, ir::VarKind::Index)}));
  twoSums.defs[0].value = s + s * ir::access("X", {i});
  EXPECT_NO_THROW(ir::verifyProgram(twoSums));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyProgram(twoSums, {.oneReductionPerDefinition = true}); }),
                       "2 reductions"));
}

TEST(Verifier, RejectsBrokenLoopIR) {
  ir::LoopProgram loops = ir::lowerToLoops(smallProgram(), ir::Target::CPU);
  ir::LoopProgram intoInput = loops;
  intoInput.kernels[0].body = ir::store("X", ir::intImm(0), ir::floatImm(1), {});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(intoInput); }), "not one of its outputs"));

  ir::LoopProgram unbound = loops;
  unbound.kernels[0].body =
      ir::store("Y", ir::var("q", ir::Type::Int, ir::VarKind::Local), ir::floatImm(1), {});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(unbound); }), "unbound variable q"));

  ir::LoopProgram gpuLoopOnCpu = loops;
  gpuLoopOnCpu.kernels[0].body = ir::forLoop("t", ir::intImm(4), ir::ForKind::GpuThreads, {});
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(gpuLoopOnCpu); }), "gpu_threads for"));

  // A barrier must be reached by every thread of the block alike: inside gpu_block_threads,
  // not under a condition, and that loop must have one iteration per thread.
  ir::LoopProgram gpu = ir::lowerToLoops(smallProgram(), ir::Target::GPU);
  auto withBody = [&](ir::Stmt body) {
    ir::LoopProgram p = gpu;
    p.kernels[0].body = std::move(body);
    return p;
  };
  auto threads = [](int64_t n, std::vector<ir::Stmt> body) {
    return ir::forLoop("_t", ir::intImm(n), ir::ForKind::GpuBlockThreads, std::move(body));
  };
  EXPECT_NO_THROW(ir::verifyLoops(withBody(threads(256, {ir::barrier()}))));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(withBody(ir::barrier())); }), "barrier"));
  auto conditional = withBody(threads(256, {ir::ifThen(ir::boolImm(true), {ir::barrier()})}));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(conditional); }), "barrier"));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(withBody(threads(100, {}))); }), "gpu_block_threads"));
  auto sharedOnCpu = loops;
  sharedOnCpu.kernels[0].body = ir::sharedAlloc("s", 4);
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(sharedOnCpu); }), "shared array"));

  // An asynchronous copy goes into a shared array from a read of a buffer (zero-padded or not),
  // and a wait names how many groups may stay in flight.
  const ir::Expr x0 = ir::load("X", ir::intImm(0));
  auto copy = [&](std::string into, ir::Expr value) {
    return withBody(threads(256, {ir::sharedAlloc("s", 4), ir::alloc("r", 4),
                                  ir::asyncCopy(std::move(into), ir::intImm(0), std::move(value)), ir::asyncCommit(),
                                  ir::asyncWait(0)}));
  };
  EXPECT_NO_THROW(ir::verifyLoops(copy("s", x0)));
  EXPECT_NO_THROW(ir::verifyLoops(copy("s", ir::select(ir::boolImm(true), x0, ir::floatImm(0)))));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(copy("r", x0)); }), "no shared array"));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(copy("s", x0 * x0)); }), "no read of a buffer"));
  const ir::Expr c = ir::var("c", ir::Type::Bool, ir::VarKind::Param);
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(copy("s", ir::select(c, x0, ir::floatImm(1)))); }),
                       "no read of a buffer"));
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(copy("s", ir::load("r", ir::intImm(0)))); }),
                       "no read of a buffer"));
  auto asyncOnCpu = loops;
  asyncOnCpu.kernels[0].body = ir::asyncCommit();
  EXPECT_TRUE(contains(internalErrorOf([&] { ir::verifyLoops(asyncOnCpu); }), "asynchronous-copy commit"));
}

} // namespace
