// Compile time against depth: a network of thousands of layers compiles in time about linear in
// its depth (bench/RESULTS.md, `enc_bench_networks sequence`). Time is no test on a shared
// machine; what the compiler allocates is a deterministic measure of its work, and a pass that
// walks, copies or rebuilds the program once per definition allocates quadratically. The kernels
// LLVM compiles stay of bounded size and few. Also: the sweep the kernel fusions share
// (compiler/KernelMerging.h) merges what walking every later kernel for each kernel merged, and
// the index of NamedList follows its list.
#include "bench/DeepSequence.h"
#include "compiler/CanonicalKernel.h"
#include "compiler/HyperParams.h"
#include "compiler/LoopIR.h"
#include "compiler/Pipeline.h"
#include "compiler/PointwiseNest.h"
#include "compiler/ReductionNest.h"
#include "compiler/StorageTypes.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "support/NamedList.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

// Every heap allocation of this test binary, counted (each test runs in a process of its own).
namespace {
std::atomic<long> gAllocations{0};
} // namespace

void *operator new(std::size_t n) {
  gAllocations.fetch_add(1, std::memory_order_relaxed);
  if (void *p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }

namespace enc {
namespace {

// `kind` at `depth` through the forward and backward sequences, and the sizes a run would bind.
struct DeepPasses {
  std::shared_ptr<const Library> lib; // what the programs' source locations point into
  LayerInstance instance;
  ir::Program forward;
  ir::Gradient gradient;
  std::map<std::string, ir::Expr> sizes;
};
DeepPasses deepPasses(const ir::Pipeline &pipeline, const std::string &kind, int depth) {
  DeepPasses out;
  out.lib = Library::fromSource("deep.enc", bench::deepSequenceSource(kind, depth));
  const LayerSymbols &declared = out.lib->get("Deep");
  std::map<std::string, ir::Expr> hyper = resolveHyperParams(declared, {});
  hyper["training"] = ir::boolImm(true);
  out.instance = instantiateLayer(*out.lib, declared, hyper);
  out.forward = pipeline.forward(*out.instance.symbols, hyper);
  out.gradient = pipeline.backward(*out.instance.symbols, out.forward, hyper);
  out.sizes = {{"B", ir::intImm(4)}};
  if (kind == "convs") out.sizes = {{"B", ir::intImm(2)}, {"H", ir::intImm(8)}, {"W", ir::intImm(8)}};
  return out;
}

// Allocations made compiling `kind` at `depth` through every sequence: expansion, forward,
// backward, sizes, and lowering of both passes for the CPU and the GPU (no code generation).
long compileAllocations(const std::string &kind, int depth) {
  const long before = gAllocations.load();
  const ir::Pipeline pipeline;
  const DeepPasses passes = deepPasses(pipeline, kind, depth);
  const ir::Program &forward = passes.forward;
  const ir::Gradient &gradient = passes.gradient;
  const std::map<std::string, ir::Expr> &sizes = passes.sizes;
  for (ir::Target target : {ir::Target::CPU, ir::Target::GPU}) {
    ir::TargetOptions t;
    t.target = target;
    t.types = ir::forwardStorage(forward, ir::ElemType::F32);
    pipeline.lower(pipeline.specializeSizes(forward, sizes), t);
    t.types = ir::backwardStorage(gradient, forward, ir::ElemType::F32);
    pipeline.lower(pipeline.specializeSizes(gradient.program, sizes), t);
  }
  return gAllocations.load() - before;
}

// Eight times the layers, about eight times the allocations: a pass that is quadratic in the
// depth makes it sixty-four. `flat`'s chain of activations fuses into definitions of at most
// inlinePointwise's 32 nested calls, whose gradients recompute the chain below each level: linear
// in the depth past a few such definitions (one definition of 500 levels derived 375000 nodes).
TEST(DeepSequence, CompilerWorkGrowsLinearlyWithDepth) {
  for (const char *kind : {"calls", "repeat", "convs", "flat"}) {
    const int depth = std::string(kind) == "convs" ? 12 : std::string(kind) == "flat" ? 64 : 48;
    const long small = compileAllocations(kind, depth), large = compileAllocations(kind, 8 * depth);
    EXPECT_LT(static_cast<double>(large), 10.0 * static_cast<double>(small))
        << kind << ": " << small << " allocations at depth " << depth << ", " << large << " at " << 8 * depth;
  }
}

// Kernels over `extent` positions (a pointwise one, or a row sum over 3 when `sum`) writing
// `out` from `in` at the iteration's own position, or at the next one when `shifted`.
ir::Kernel kernel(const std::string &out, const std::vector<std::string> &in, int64_t extent, bool sum, bool shifted) {
  using namespace ir;
  Kernel k;
  k.name = "k_" + out;
  k.output = out;
  k.buffers = {out};
  for (const std::string &b : in)
    if (b != out && std::find(k.buffers.begin(), k.buffers.end(), b) == k.buffers.end()) k.buffers.push_back(b);
  k.launch = ForKind::Parallel;
  k.launchExtent = intImm(extent);
  Expr o = indexVar("o");
  Expr at = shifted ? o + intImm(1) : o;
  if (!sum) {
    Expr value = floatImm(1);
    for (const std::string &b : in) value = value + load(b, at);
    k.body = forLoop("o", intImm(extent), ForKind::Parallel, {store(out, o, value, {})});
    return k;
  }
  Expr r = indexVar("r"), acc = var("_acc", Type::Float, VarKind::Local);
  Expr term = floatImm(1);
  for (const std::string &b : in) term = term * load(b, at * intImm(3) + r);
  k.body = forLoop("o", intImm(extent), ForKind::Parallel,
                   {let("_acc", Type::Float, floatImm(0)),
                    forLoop("r", intImm(3), ForKind::Serial, {assign("_acc", acc + term)}),
                    store(out, o, acc, {})});
  return k;
}

// The merges as the passes made them before KernelMerging.h: for each kernel i of the kind, every
// later kernel in order, kept track of what the kernels passed over read and write; a pass run on
// the two kernels alone decides whether one joins the other.
ir::LoopProgram walkEveryLaterKernel(ir::LoopProgram p, bool pointwise) {
  using namespace ir;
  auto pass = pointwise ? fusePointwiseKernels : fuseSiblingReductions;
  std::vector<Kernel> &ks = p.kernels;
  for (size_t i = 0; i < ks.size(); ++i) {
    if (pointwise ? !pointwiseNest(ks[i]) : !reductionNest(ks[i])) continue;
    std::set<std::string> betweenReads, betweenWrites;
    for (size_t j = i + 1; j < ks.size();) {
      const std::set<std::string> reads = kernelReads(ks[j]), writes = kernelWrites(ks[j]);
      const bool movable = pointwise ? !meets(reads, betweenWrites) && !meets(writes, betweenWrites) &&
                                           !meets(writes, betweenReads)
                                     : !meets(reads, betweenWrites);
      if (movable) {
        LoopProgram two = p;
        two.kernels = {ks[i], ks[j]};
        two = pass(two);
        if (two.kernels.size() == 1) {
          ks[i] = two.kernels[0];
          ks.erase(ks.begin() + static_cast<long>(j));
          continue;
        }
      }
      betweenReads.insert(reads.begin(), reads.end());
      betweenWrites.insert(writes.begin(), writes.end());
      ++j;
    }
  }
  return p;
}

// Random programs of kernels over two domains, each reading a few of the buffers before it (some
// at a shifted position, which the pointwise fusion refuses), a few writing a buffer again.
TEST(DeepSequence, KernelMergingSweepMergesWhatTheWalkMerged) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    const bool pointwise = round % 2 == 0;
    ir::LoopProgram p;
    p.target = ir::Target::CPU;
    std::vector<std::string> buffers = {"X0", "X1"};
    const int n = 4 + static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      std::vector<std::string> in;
      for (int r = 0, reads = 1 + static_cast<int>(rng() % 3); r < reads; ++r) in.push_back(buffers[rng() % buffers.size()]);
      std::string out = rng() % 6 == 0 ? buffers[rng() % buffers.size()] : "T" + std::to_string(k);
      if (out[0] == 'X') out = "T" + std::to_string(k); // inputs stay inputs
      if (std::find(buffers.begin(), buffers.end(), out) == buffers.end()) buffers.push_back(out);
      const int64_t extent = rng() % 3 == 0 ? 6 : 8;
      p.kernels.push_back(kernel(out, in, extent, !pointwise || rng() % 4 == 0, rng() % 5 == 0));
    }
    ir::LoopProgram swept = pointwise ? ir::fusePointwiseKernels(p) : ir::fuseSiblingReductions(p);
    ir::LoopProgram walked = walkEveryLaterKernel(p, pointwise);
    ASSERT_EQ(ir::printLoops(swept), ir::printLoops(walked)) << "round " << round << ", from\n" << ir::printLoops(p);
  }
}

// fuseSlabKernels merged each kernel into the one before pairwise; its groups make the same kernels.
TEST(DeepSequence, SlabGroupsMergeWhatPairwiseMergesMerged) {
  std::mt19937 rng(11);
  for (int round = 0; round < 100; ++round) {
    ir::LoopProgram p;
    p.target = ir::Target::CPU;
    std::vector<std::string> buffers = {"X"};
    for (int k = 0, n = 3 + static_cast<int>(rng() % 10); k < n; ++k) {
      std::vector<std::string> in = {buffers[rng() % buffers.size()], buffers[rng() % buffers.size()]};
      std::string out = "T" + std::to_string(k);
      buffers.push_back(out);
      p.kernels.push_back(kernel(out, in, rng() % 4 == 0 ? 6 : 8, rng() % 3 == 0, rng() % 4 == 0));
    }
    ir::LoopProgram pairwise = p;
    std::vector<ir::Kernel> &ks = pairwise.kernels;
    for (size_t i = 0; i + 1 < ks.size();) {
      ir::LoopProgram two = p;
      two.kernels = {ks[i], ks[i + 1]};
      two = ir::fuseSlabKernels(two);
      if (two.kernels.size() == 1) {
        ks[i] = two.kernels[0];
        ks.erase(ks.begin() + static_cast<long>(i) + 1);
      } else {
        ++i;
      }
    }
    ASSERT_EQ(ir::printLoops(ir::fuseSlabKernels(p)), ir::printLoops(pairwise)) << "round " << round << ", from\n"
                                                                                 << ir::printLoops(p);
  }
}

// The CPU kernels of `kind` at `depth`, forward and backward, and how many of them are distinct
// up to names (what LLVM compiles: CpuExecutor keys kernels by their canonical form).
struct Kernels {
  size_t count = 0, distinct = 0;
  int mostOutputs = 0;
};
Kernels cpuKernels(const std::string &kind, int depth) {
  const ir::Pipeline pipeline;
  const DeepPasses passes = deepPasses(pipeline, kind, depth);
  const ir::Program &forward = passes.forward;
  const ir::Gradient &gradient = passes.gradient;
  const std::map<std::string, ir::Expr> &sizes = passes.sizes;
  Kernels out;
  std::set<std::string> forms;
  for (const ir::Program *p : {&forward, &gradient.program}) {
    ir::TargetOptions t;
    t.types = p == &forward ? ir::forwardStorage(forward, ir::ElemType::F32)
                            : ir::backwardStorage(gradient, forward, ir::ElemType::F32);
    for (const ir::Kernel &k : pipeline.lower(pipeline.specializeSizes(*p, sizes), t).kernels) {
      ++out.count;
      out.mostOutputs = std::max(out.mostOutputs, k.outputs);
      forms.insert(ir::printStmt(ir::canonicalKernel(k).body));
    }
  }
  out.distinct = forms.size();
  return out;
}

// The fusions stop merging at kMaxMergedOutputs outputs: a chain of layers becomes many kernels
// of bounded size rather than one kernel per pass that grows with the depth (LLVM's time is
// super-linear in a function's size), and the repeated ones are the same kernel up to names, so
// the kernels LLVM compiles do not grow with the depth.
TEST(DeepSequence, MergedKernelsStayBoundedAndRepeat) {
  for (const char *kind : {"calls", "repeat", "convs"}) {
    const int depth = std::string(kind) == "convs" ? 16 : 64;
    const Kernels small = cpuKernels(kind, depth), large = cpuKernels(kind, 4 * depth);
    EXPECT_LE(large.mostOutputs, ir::kMaxMergedOutputs) << kind;
    EXPECT_GT(large.count, 3 * small.count) << kind;
    EXPECT_LE(large.distinct, small.distinct + 8) << kind << ": " << small.distinct << " distinct kernels at depth "
                                                   << depth << ", " << large.distinct << " at " << 4 * depth;
  }
}

struct Named {
  std::string name;
  int value = 0;
};

TEST(DeepSequence, NamedListFindsWhatItHolds) {
  NamedList<Named> list{{"a", 1}, {"b", 2}};
  list.push_back({"c", 3});
  list.push_back({"a", 4}); // a broken program's second declaration: the first is found
  ASSERT_NE(list.find("c"), nullptr);
  EXPECT_EQ(list.find("c")->value, 3);
  EXPECT_EQ(list.find("a")->value, 1);
  EXPECT_EQ(list.find("d"), nullptr);
  list.eraseIf([](const Named &n) { return n.value == 1 || n.value == 2; });
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list.find("a")->value, 4);
  EXPECT_EQ(list.find("b"), nullptr);
  EXPECT_EQ(&list[0], list.find("c"));
}

} // namespace
} // namespace enc
