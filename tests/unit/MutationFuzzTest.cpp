// Bad .enc text gets an error, never a crash or a hang: the shipped layer files, mutated at
// random (characters and tokens deleted, duplicated, swapped or replaced by other tokens of
// the language), go through the checker and, where they still check, through the tensor
// program, autodiff, both loop schedules and both code generators (LLVM IR, CUDA C++) with
// small sizes, and the first few hundred run forward and backward on the CPU. Every outcome must be a
// result or an enc::Error (CompileError included); anything else fails, and a crash kills
// the test. Seeded: a failure names the seed and the mutated text. ENC_FUZZ_SEEDS=FIRST:COUNT
// runs other seeds than the default 0:3000 (for a longer hunt than a test run affords).
#include "MutationFuzzing.h"

#include "compiler/Autodiff.h"
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "compiler/codegen/llvm/LLVMCodegen.h"
#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "compiler/HyperParams.h"
#include "runtime/Layer.h"
#include "runtime/Npy.h"
#include "runtime/Rng.h"
#include "runtime/Library.h"
#include "support/Env.h"
#include "support/Error.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

TEST(MutationFuzz, BadTextGivesErrorsNotCrashes) {
  const std::vector<std::string> texts = shippedTexts();
  ASSERT_FALSE(texts.empty());
  int errors = 0, clean = 0;
  const int kRuns = 300;
  const auto [firstSeed, endSeed] = seedRange();
  for (uint64_t seed = firstSeed; seed < endSeed; ++seed) {
    std::mt19937_64 rng(seed);
    const std::string text = mutate(texts[seed % texts.size()], rng);
    try {
      compileEverything(text);
      // The first few hundred that compile also run (JIT compiles take milliseconds each).
      if (clean++ < kRuns) runLayers(text, Device::CPU);
    } catch (const Error &) {
      ++errors; // CompileError (diagnostics) or a run-time Error: both are what a user should get
    } catch (const std::exception &e) {
      ADD_FAILURE() << "seed " << seed << ": " << typeid(e).name() << ": " << e.what() << "\n--- text ---\n" << text;
    }
  }
  // Most mutations break the text; some leave it valid (in a comment, say): both happen.
  EXPECT_GT(errors, static_cast<int>(endSeed - firstSeed) / 2);
  EXPECT_GT(clean, 0);
}

// Corrupt .npy bytes (valid files of every dtype and a few shapes, with bytes flipped,
// dropped, inserted or the file cut short) are read into a tensor of the size the header
// promises, or refused with an enc::Error: never a crash or an out-of-bounds read.
TEST(MutationFuzz, CorruptNpyGivesErrorsNotCrashes) {
  std::vector<std::string> valid;
  for (DType d : {DType::F16, DType::BF16, DType::F32, DType::F64})
    for (const Shape &shape : {Shape{}, Shape{5}, Shape{2, 3}, Shape{2, 0, 4}, Shape{3, 1, 2, 2}}) {
      Tensor t(d, shape);
      for (int64_t i = 0; i < t.numel(); ++i) t.set(i, static_cast<double>(i) * 0.5 - 1);
      valid.push_back(serializeNpy(t));
    }
  int refused = 0, read = 0;
  for (uint64_t seed = 0; seed < 20000; ++seed) {
    std::mt19937_64 rng(seed);
    std::string bytes = valid[seed % valid.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 4) {
      case 0: bytes[at] = static_cast<char>(rng()); break;        // flip a byte
      case 1: bytes.erase(at, 1 + rng() % 4); break;              // drop a few
      case 2: bytes.insert(at, 1, static_cast<char>(rng())); break; // insert one
      case 3: bytes.resize(at); break;                            // cut short
      }
    }
    try {
      Tensor t = parseNpy(bytes, "fuzz.npy");
      // What was read is complete: every element the shape promises is there to read.
      double sum = 0;
      for (int64_t i = 0; i < t.numel(); ++i) sum += std::abs(t.at(i)) > 1e300 ? 0 : 1;
      EXPECT_LE(sum, static_cast<double>(t.numel()));
      ++read;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find("fuzz.npy"), std::string::npos) << "the error names the file: " << e.what();
      ++refused;
    } catch (const std::exception &e) {
      ADD_FAILURE() << "seed " << seed << ": " << typeid(e).name() << ": " << e.what();
    }
  }
  EXPECT_GT(refused, 10000);
  EXPECT_GT(read, 0); // a flipped data byte still reads
}

} // namespace
} // namespace enc
