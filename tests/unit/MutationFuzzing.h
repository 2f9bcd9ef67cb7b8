// What the MutationFuzz suites share: the shipped layer files, a seeded mutator of .enc text, and
// a mutated text compiled as a user's run would (compileEverything) and run on a device (runLayers).
#pragma once

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


namespace enc::testing {

// The seeds to try: [first, first + count), 0:3000 unless ENC_FUZZ_SEEDS says otherwise.
inline std::pair<uint64_t, uint64_t> seedRange() {
  const char *text = std::getenv("ENC_FUZZ_SEEDS");
  if (!text) return {0, 3000};
  std::string s(text);
  size_t colon = s.find(':');
  std::optional<int64_t> first = parseInteger(s.substr(0, colon).c_str());
  std::optional<int64_t> count = colon == std::string::npos ? std::nullopt : parseInteger(s.substr(colon + 1).c_str());
  if (!first || !count || *first < 0 || *count < 1) {
    ADD_FAILURE() << "ENC_FUZZ_SEEDS='" << s << "' is not FIRST:COUNT";
    return {0, 3000};
  }
  return {static_cast<uint64_t>(*first), static_cast<uint64_t>(*first + *count)};
}

namespace fs = std::filesystem;

inline std::vector<std::string> shippedTexts() {
  std::vector<std::string> texts;
  for (const auto &e : fs::directory_iterator(fs::path(ENC_TEST_DIR).parent_path() / "layers")) {
    if (e.path().extension() != ".enc") continue;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    texts.push_back(ss.str());
  }
  std::sort(texts.begin(), texts.end());
  return texts;
}

// Words and symbols of the language, to splice in where they do not belong.
inline const std::vector<std::string> kTokens = {
    "layer", "forward", "backward", "param", "buffer", "require", "sum", "max", "min", "mean", "softmax",
    "select", "where", "int", "float", "bool", "int2", "X", "Y", "i", "j", "N", "B", "[", "]", "(", ")",
    "{", "}", ":", ",", "=", "<-", "->", "+", "-", "*", "/", "%", "^", "<", ">", "==", "&&", "...", "0",
    "1", "-1", "2.5", "1e309", "999999999999", "#", "\n", " ", "float(", "exp(", "rsqrt(", "true", "allreduce(",
    "distributed"};

inline std::string mutate(const std::string &text, std::mt19937_64 &rng) {
  std::string s = text;
  auto pick = [&](size_t n) { return n ? static_cast<size_t>(rng() % n) : 0; };
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    size_t at = pick(s.size()), len = 1 + pick(std::min<size_t>(12, s.size() - at));
    switch (rng() % 5) {
    case 0: s.erase(at, len); break;                                         // delete a few characters
    case 1: s.insert(at, s.substr(pick(s.size()), len)); break;              // copy a piece elsewhere
    case 2: s.insert(at, kTokens[pick(kTokens.size())]); break;              // splice in a token
    case 3: s.replace(at, len, kTokens[pick(kTokens.size())]); break;        // replace by a token
    case 4: std::swap(s[at], s[pick(s.size())]); break;                      // swap two characters
    }
  }
  return s;
}

// Everything a user's run would do with the text: check, then per layer build, differentiate
// and lower for both targets with every size set to a small number.
inline void compileEverything(const std::string &text) {
  auto lib = Library::fromSource("fuzz.enc", text);
  for (const std::string &name : lib->layerNames()) {
    const LayerSymbols &sym = lib->get(name);
    std::map<std::string, ir::Expr> hyper;
    try {
      hyper = resolveHyperParams(sym, {}, /*allowMissing=*/true);
    } catch (const Error &) {
      continue;
    }
    hyper["training"] = ir::boolImm(true);
    // In one process and, for layers with allreduce, in a group (collectives kept).
    for (bool distributed : {false, true}) {
    const ir::Pipeline pipeline;
    const ir::BuildOptions build{.fuse = true, .distributed = distributed};
    ir::Program forward = pipeline.forward(sym, hyper, build);
    if (distributed && forward.defs.end() == std::find_if(forward.defs.begin(), forward.defs.end(), ir::isCollective))
      continue;
    std::map<std::string, ir::Expr> sizes;
    for (const ir::SizeParam &p : forward.sizes)
      if (p.kind == ir::VarKind::Size && !hyper.count(p.name)) sizes[p.name] = ir::intImm(3);
    // Down to generated code (LLVM IR and CUDA C++), without compiling it.
    auto generate = [&](const ir::Program &p, const ir::ElementTypes &types) {
      ir::LoopProgram cpu = pipeline.lower(p, {.target = ir::Target::CPU, .types = types});
      llvm::LLVMContext ctx;
      llvm::Module module("fuzz", ctx);
      for (const ir::Kernel &k : cpu.kernels) codegen::emitLLVMKernel(k, cpu.types, module);
      codegen::emitCuda(pipeline.lower(p, {.target = ir::Target::GPU, .types = types}));
    };
    generate(pipeline.specializeSizes(forward, sizes), ir::forwardStorage(forward, ir::ElemType::F32));
    ir::Gradient g = pipeline.backward(sym, forward, hyper, build);
    generate(pipeline.specializeSizes(g.program, sizes), ir::backwardStorage(g, forward, ir::ElemType::F32));
    }
  }
}

// Every layer of the text run for real on `device` (JIT-compiled on the CPU), f64, forward
// and backward, with hyper-parameters that have no default set to small values, every input
// size 3, and seeded random inputs and output gradients. Returns, per layer, its outputs
// and gradients (on the host), named "LAYER output NAME" / "LAYER gradient NAME".
inline std::map<std::string, Tensor> runLayers(const std::string &text, Device device) {
  std::map<std::string, Tensor> results;
  auto lib = Library::fromSource("fuzz.enc", text);
  for (const std::string &name : lib->layerNames()) {
    const LayerSymbols &sym = lib->get(name);
    std::map<std::string, std::string> settings;
    for (const ast::HyperParam &h : sym.layer->hyperParams) {
      if (h.defaultValue) continue;
      using K = ast::HyperParamType::Kind;
      settings[h.name.text] = h.type.kind == K::Float ? "0.5" : h.type.kind == K::Bool ? "true" : "3";
    }
    Layer layer(lib, name, settings, LayerOptions{DType::F64, 1, true, true, device});
    const ir::Program &p = layer.program();
    std::map<std::string, ir::Expr> sizes;
    for (const ir::SizeParam &sp : p.sizes)
      if (sp.kind == ir::VarKind::Size) sizes[sp.name] = ir::intImm(3);
    const ir::Program fixed = ir::specialize(p, sizes);
    std::map<std::string, Tensor> inputs;
    Rng rng(7, "fuzz");
    bool makeable = true;
    for (const ir::TensorDecl &t : fixed.tensors) {
      if (t.role != TensorRole::Input) continue;
      Shape shape;
      for (const ir::Expr &d : t.shape) {
        int64_t v = 0;
        makeable &= ir::isConst(d, &v) && v >= 0 && v <= 64; // else a shape this test does not make
        shape.push_back(v);
      }
      if (!makeable) break;
      Tensor x(DType::F64, shape);
      for (int64_t i = 0; i < x.numel(); ++i) x.set(i, rng.uniform(-1, 1));
      inputs[t.name] = x;
    }
    if (!makeable) continue;
    std::map<std::string, Tensor> seeds;
    for (const auto &[out, y] : layer.forward(inputs)) {
      results[name + " output " + out] = y.cpu();
      Tensor g(DType::F64, y.shape());
      for (int64_t i = 0; i < g.numel(); ++i) g.set(i, rng.uniform(-1, 1));
      seeds[out] = g;
    }
    for (const auto &[in, g] : layer.backward(seeds)) results[name + " gradient " + in] = g.cpu();
  }
  return results;
}

} // namespace enc::testing
