// Every shipped layer's generated CUDA compiles with NVRTC, for sm_80 and sm_90, f32, f64 and 16-bit storage, with
// hyper-parameters symbolic and set; the cubin/PTX holds each kernel of the loop program, and the source
// points back at the .enc statements with #line directives. Needs NVRTC, not a GPU.
#include "compiler/Autodiff.h"
#include "compiler/GpuTiling.h"
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "compiler/HyperParams.h"
#include "runtime/Library.h"
#include "runtime/Nvrtc.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace enc {
namespace {

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

bool isElf(const std::string &image) {
  return image.size() > 4 && image[0] == '\x7f' && image.compare(1, 3, "ELF") == 0;
}

std::shared_ptr<const Library> shippedOrNull() {
  try {
    return Library::shipped();
  } catch (const std::exception &) {
    return nullptr; // reported by CudaCompile.ShippedLibraryLoads
  }
}

// Layer names from the library itself, so a new layer is covered without editing this file.
std::vector<std::string> shippedLayerNames() {
  auto lib = shippedOrNull();
  return lib ? lib->layerNames() : std::vector<std::string>{};
}

std::vector<std::string> fileLines(const std::string &path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

// A value of the right type for every hyper-parameter, distinct per name so that sizes don't coincide.
std::map<std::string, std::string> settingsForAll(const LayerSymbols &sym) {
  std::map<std::string, std::string> out;
  int i = 0;
  for (const ast::HyperParam &hp : sym.layer->hyperParams) {
    switch (hp.type.kind) {
    case ast::HyperParamType::Kind::Int:
      // Small and even, so divisibility requirements (groups) hold.
      out[hp.name.text] = hp.name.text == "groups" ? "1" : std::to_string(2 + 2 * (i % 2));
      break;
    case ast::HyperParamType::Kind::Int2:
      out[hp.name.text] = hp.name.text == "padding" ? "1" : "2,3";
      break;
    case ast::HyperParamType::Kind::Float:
      out[hp.name.text] = "0.25";
      break;
    case ast::HyperParamType::Kind::Bool:
      out[hp.name.text] = "true";
      break;
    case ast::HyperParamType::Kind::Enum:
      out[hp.name.text] = hp.type.enumerators.back().text;
      break;
    }
    ++i;
  }
  return out;
}

TEST(CudaCompile, ShippedLibraryLoads) {
  std::shared_ptr<const Library> lib;
  ASSERT_NO_THROW(lib = Library::shipped());
  EXPECT_FALSE(lib->layerNames().empty());
}

// ENC_CUDA_UNROLL: a factor from 1 to 16, else an error that names the value.
TEST(CudaCompile, UnrollFactorFromTheEnvironment) {
  const char *old = std::getenv("ENC_CUDA_UNROLL");
  const std::string saved = old ? old : "";
  ::unsetenv("ENC_CUDA_UNROLL");
  EXPECT_EQ(codegen::cudaCodegenOptionsFromEnvironment(false).strideUnroll, 4);
  ::setenv("ENC_CUDA_UNROLL", "1", 1);
  EXPECT_EQ(codegen::cudaCodegenOptionsFromEnvironment(false).strideUnroll, 1);
  for (const char *bad : {"0", "17", "four", ""}) {
    ::setenv("ENC_CUDA_UNROLL", bad, 1);
    try {
      codegen::cudaCodegenOptionsFromEnvironment(false);
      ADD_FAILURE() << "no error for ENC_CUDA_UNROLL='" << bad << "'";
    } catch (const Error &e) {
      EXPECT_TRUE(contains(e.what(), std::string("ENC_CUDA_UNROLL='") + bad + "'")) << e.what();
    }
  }
  if (old) ::setenv("ENC_CUDA_UNROLL", saved.c_str(), 1);
  else ::unsetenv("ENC_CUDA_UNROLL");
}

using Param = std::tuple<std::string, std::string>; // layer, dtype (f32, f64, f16, bf16)

class CudaCompile : public ::testing::TestWithParam<Param> {};

TEST_P(CudaCompile, CubinAndPtxForSm80AndSm90) {
  if (!cuda::nvrtcAvailable())
    GTEST_SKIP() << "encc was built without NVRTC (no CUDA toolkit at configure time)";
  const auto &[layerName, dtype] = GetParam();
  const ir::ElemType storage = *ir::parseElemType(dtype);
  const bool f64 = storage == ir::ElemType::F64;
  auto lib = shippedOrNull();
  ASSERT_TRUE(lib);
  const LayerSymbols &sym = lib->get(layerName);
  const std::string encPath = sym.layer->loc.file->name();
  const std::vector<std::string> encLines = fileLines(encPath);
  ASSERT_FALSE(encLines.empty()) << "cannot read " << encPath;
  std::set<int> statementLines;
  for (const ast::Statement &s : sym.layer->forward->statements)
    statementLines.insert(s.loc.line());
  ASSERT_FALSE(statementLines.empty());

  struct Variant {
    const char *what;
    std::map<std::string, ir::Expr> hyper;
  };
  std::vector<Variant> variants = {
      {"symbolic", resolveHyperParams(sym, {}, /*allowMissing=*/true)},
      {"set", resolveHyperParams(sym, settingsForAll(sym))},
      {"set, sizes constant", resolveHyperParams(sym, settingsForAll(sym))},
  };
  for (size_t i = 1; i < variants.size(); ++i) variants[i].hyper["training"] = ir::boolImm(true);
  // The last variant also fixes every input size, so kernels see only constants (folded index math).
  int nextSize = 17; // large enough for tiled contractions (16 rows and columns)
  const ir::Pipeline pipeline;
  for (const ir::SizeParam &s : pipeline.forward(sym, {}).sizes)
    if (s.kind == ir::VarKind::Size && !variants.back().hyper.count(s.name)) {
      variants.back().hyper[s.name] = ir::intImm(nextSize);
      nextSize += 2;
    }
  // 16-bit storage only changes loads and stores: the variant with every size known suffices.
  if (ir::isNarrow(storage)) variants.erase(variants.begin(), variants.end() - 1);
  for (const Variant &v : variants) {
    SCOPED_TRACE(fmt::format("{} {} hyper-parameters {}", layerName, dtype, v.what));
    ir::LoopProgram loops;
    std::string source;
    try {
      ir::Program prog = pipeline.specializeSizes(pipeline.forward(sym, {}), v.hyper);
      // With constant sizes, also the split reductions the runtime makes on a GPU (options
      // that split even these small sizes) and its kernel fusion.
      loops = pipeline.lower(prog, {.target = ir::Target::GPU,
                                    .fuse = &v == &variants.back(),
                                    .types = ir::forwardStorage(prog, storage),
                                    .split = {.targetWarps = 64, .minChunk = 2}});
      source = codegen::emitCuda(loops);
    } catch (const std::exception &e) {
      ADD_FAILURE() << "code generation threw: " << e.what();
      continue;
    }
    ASSERT_FALSE(loops.kernels.empty());
    if (&v == &variants.back())
      for (const ir::Kernel &k : loops.kernels)
        EXPECT_TRUE(k.params.empty()) << k.name << " still reads sizes";
    EXPECT_TRUE(contains(source, "extern \"C\" __global__")) << source;
    for (const ir::Kernel &k : loops.kernels)
      EXPECT_TRUE(contains(source, " " + k.name + "(")) << k.name;
    // Buffers have the element type asked for (the shared prelude mentions both types); with
    // 16-bit storage, parameters stay f32 and the inputs and outputs are 16-bit.
    EXPECT_EQ(std::regex_search(source, std::regex(R"(\bdouble\s*\*)")), f64) << source;
    if (!ir::isNarrow(storage)) EXPECT_EQ(std::regex_search(source, std::regex(R"(\bfloat\s*\*)")), !f64) << source;
    if (storage == ir::ElemType::F16) EXPECT_TRUE(std::regex_search(source, std::regex(R"(\b__half\s*\*)"))) << source;
    if (storage == ir::ElemType::BF16)
      EXPECT_TRUE(std::regex_search(source, std::regex(R"(\b__nv_bfloat16\s*\*)"))) << source;

    // #line directives that name the .enc file point at one of its statements.
    static const std::regex lineDirective(R"re(#line (\d+) "([^"]*)")re");
    int toEnc = 0;
    for (auto it = std::sregex_iterator(source.begin(), source.end(), lineDirective);
         it != std::sregex_iterator(); ++it) {
      if ((*it)[2] != encPath)
        continue;
      ++toEnc;
      int line = std::stoi((*it)[1]);
      EXPECT_TRUE(statementLines.count(line)) << it->str() << " is not a statement line of " << encPath;
      ASSERT_GE(line, 1);
      ASSERT_LE(line, static_cast<int>(encLines.size())) << it->str();
      const std::string &text = encLines[static_cast<size_t>(line - 1)];
      EXPECT_TRUE(std::regex_search(text, std::regex(R"(^\s*[A-Za-z_]\w*\s*(\[|=|<-))")))
          << it->str() << ": '" << text << "'";
    }
    EXPECT_GE(toEnc, static_cast<int>(loops.kernels.size())) << "every kernel stores from an .enc statement\n"
                                                             << source;

    for (int arch : {80, 90}) {
      for (bool ptx : {false, true}) {
        if (ptx && ir::isNarrow(storage)) continue;
        SCOPED_TRACE(fmt::format("sm_{} {}", arch, ptx ? "PTX" : "cubin"));
        cuda::CompileOptions opts;
        opts.arch = fmt::format("sm_{}", arch);
        opts.wantPtx = ptx;
        opts.sourceName = layerName + ".cu";
        cuda::CompileResult r;
        try {
          r = cuda::compile(source, opts);
        } catch (const Error &e) {
          ADD_FAILURE() << "NVRTC failed: " << e.what() << "\n" << source;
          continue;
        }
        EXPECT_EQ(r.arch, arch);
        if (ptx) {
          EXPECT_FALSE(r.isCubin);
          EXPECT_TRUE(contains(r.ptx, fmt::format(".target sm_{}", arch)));
          for (const ir::Kernel &k : loops.kernels)
            EXPECT_TRUE(contains(r.ptx, ".entry " + k.name + "(")) << k.name << "\n" << r.ptx;
        } else {
          EXPECT_TRUE(r.isCubin);
          EXPECT_TRUE(isElf(r.cubin)) << r.cubin.size() << " bytes";
          // Symbol names sit NUL-terminated in the ELF string tables.
          for (const ir::Kernel &k : loops.kernels)
            EXPECT_TRUE(contains(r.cubin, k.name + std::string(1, '\0'))) << k.name;
        }
      }
    }
  }
}

// The backward pass of every shipped layer, sizes constant and reductions split as on a GPU,
// compiles for sm_80 and sm_90.
TEST_P(CudaCompile, BackwardCubinsForSm80AndSm90) {
  if (!cuda::nvrtcAvailable())
    GTEST_SKIP() << "encc was built without NVRTC (no CUDA toolkit at configure time)";
  const auto &[layerName, dtype] = GetParam();
  const ir::ElemType storage = *ir::parseElemType(dtype);
  auto lib = shippedOrNull();
  ASSERT_TRUE(lib);
  const LayerSymbols &sym = lib->get(layerName);
  std::map<std::string, ir::Expr> hyper = resolveHyperParams(sym, settingsForAll(sym));
  hyper["training"] = ir::boolImm(true);
  const ir::Pipeline pipeline;
  ir::Program forward = pipeline.forward(sym, hyper);
  std::map<std::string, ir::Expr> sizes;
  int nextSize = 17; // large enough for tiled contractions (16 rows and columns)
  for (const ir::SizeParam &s : forward.sizes)
    if (s.kind == ir::VarKind::Size && !hyper.count(s.name)) {
      sizes[s.name] = ir::intImm(nextSize);
      nextSize += 2;
    }
  std::string source;
  ir::LoopProgram loops;
  try {
    ir::Gradient g = pipeline.backward(sym, forward, hyper);
    loops = pipeline.lower(pipeline.specializeSizes(g.program, sizes),
                           {.target = ir::Target::GPU,
                            .types = ir::backwardStorage(g, forward, storage),
                            .split = {.targetWarps = 64, .minChunk = 2}});
    source = codegen::emitCuda(loops);
  } catch (const std::exception &e) {
    FAIL() << "code generation threw: " << e.what();
  }
  for (int arch : {80, 90}) {
    SCOPED_TRACE(fmt::format("{} backward sm_{}", layerName, arch));
    cuda::CompileOptions opts;
    opts.arch = fmt::format("sm_{}", arch);
    opts.sourceName = layerName + "_backward.cu";
    try {
      cuda::CompileResult r = cuda::compile(source, opts);
      EXPECT_TRUE(r.isCubin && isElf(r.cubin));
      for (const ir::Kernel &k : loops.kernels)
        EXPECT_TRUE(contains(r.cubin, k.name + std::string(1, '\0'))) << k.name;
    } catch (const Error &e) {
      ADD_FAILURE() << "NVRTC failed: " << e.what() << "\n" << source;
    }
  }
  // With bounds checks (ENC_CUDA_CHECK_BOUNDS, the emulator's default) every read and write
  // of a buffer goes through enc_checked, and the result still compiles.
  if (std::string(dtype) != "f32") return;
  std::string checked = codegen::emitCuda(loops, {.checkBounds = true});
  for (const ir::Kernel &k : loops.kernels)
    for (const std::string &b : k.buffers) {
      std::regex unchecked("(^|[^A-Za-z0-9_%])" + b + "\\[(?!enc_checked\\()"); // not printf's %s[
      EXPECT_FALSE(std::regex_search(checked, unchecked)) << b << " is accessed unchecked in\n" << checked;
      EXPECT_TRUE(contains(checked, b + "[enc_checked(")) << b;
    }
  cuda::CompileOptions opts;
  opts.sourceName = layerName + "_backward_checked.cu";
  EXPECT_NO_THROW(cuda::compile(checked, opts));
}

// The schedules that only constant, realistic sizes bring out (split reductions, a row per
// block, tiles uncovered by folding unit indices), forward and backward as the runtime
// builds them, compile with NVRTC for sm_80 and sm_90.
TEST(CudaCompile, SizedSchedulesForSm80AndSm90) {
  if (!cuda::nvrtcAvailable())
    GTEST_SKIP() << "encc was built without NVRTC (no CUDA toolkit at configure time)";
  struct Case {
    const char *layer;
    std::map<std::string, std::string> settings;
    std::map<std::string, int64_t> sizes;
  };
  const std::vector<Case> cases = {
      {"SyncBatchNorm", {{"num_features", "256"}}, {{"B", 32}, {"L", 3136}}},
      {"GlobalAvgPool2d", {}, {{"B", 2}, {"C", 3}, {"H", 16}, {"W", 32}}},
      {"Inspiration", {{"C", "64"}}, {{"N", 2}, {"H", 16}, {"W", 16}}},
      {"GramMatrix", {}, {{"B", 2}, {"C", 64}, {"H", 16}, {"W", 16}}},
      {"LeakyReLU", {}, {{"N", 100000}}},
  };
  auto lib = shippedOrNull();
  ASSERT_TRUE(lib);
  std::set<ir::ForKind> launches;
  for (const Case &c : cases) {
    const LayerSymbols &sym = lib->get(c.layer);
    std::map<std::string, ir::Expr> hyper = resolveHyperParams(sym, c.settings);
    hyper["training"] = ir::boolImm(true);
    std::map<std::string, ir::Expr> sizes;
    for (const auto &[n, v] : c.sizes) sizes[n] = ir::intImm(v);
    const ir::Pipeline pipeline;
    const ir::Program forward = pipeline.forward(sym, hyper);
    const ir::Gradient gradient = pipeline.backward(sym, forward, hyper);
    for (bool backward : {false, true}) {
      SCOPED_TRACE(fmt::format("{} {}", c.layer, backward ? "backward" : "forward"));
      ir::LoopProgram loops = pipeline.lower(
          pipeline.specializeSizes(backward ? gradient.program : forward, sizes),
          {.target = ir::Target::GPU,
           .types = backward ? ir::backwardStorage(gradient, forward, ir::ElemType::F32)
                             : ir::forwardStorage(forward, ir::ElemType::F32)});
      for (const ir::Kernel &k : loops.kernels) launches.insert(k.launch);
      const std::string source = codegen::emitCuda(loops);
      for (int arch : {80, 90}) {
        cuda::CompileOptions opts;
        opts.arch = fmt::format("sm_{}", arch);
        opts.sourceName = std::string(c.layer) + ".cu";
        try {
          cuda::CompileResult r = cuda::compile(source, opts);
          EXPECT_TRUE(r.isCubin && isElf(r.cubin)) << "sm_" << arch;
        } catch (const Error &e) {
          ADD_FAILURE() << "NVRTC failed for sm_" << arch << ": " << e.what() << "\n" << source;
        }
      }
    }
  }
  // Every GPU schedule is among them.
  for (ir::ForKind k : {ir::ForKind::GpuThreads, ir::ForKind::GpuWarps, ir::ForKind::GpuTiles, ir::ForKind::GpuRows})
    EXPECT_TRUE(launches.count(k)) << ir::forKindName(k);
}

// Every tile shape's kernels compile with NVRTC for sm_80 and sm_90: FMA tiles in f32,
// tensor-core tiles with bf16 storage and in TF32, for GramMatrix's forward (factors that are
// plain reads: two-stage FMA tiles stage both by asynchronous copies; tensor-core tiles copy
// a factor stored as their shared array, 16 bytes at a time where H x W is a multiple of 8,
// else f32 elements one by one with two stages and 16-bit ones through registers) and its
// gradient (a factor gY + gY^T, staged through registers; X, a plain read across the
// reduction, copied by TF32's two-stage tiles), with partial tiles on every side.
TEST(CudaCompile, EveryTileShapeForSm80AndSm90) {
  if (!cuda::nvrtcAvailable())
    GTEST_SKIP() << "encc was built without NVRTC (no CUDA toolkit at configure time)";
  auto lib = shippedOrNull();
  ASSERT_TRUE(lib);
  const LayerSymbols &sym = lib->get("GramMatrix");
  const ir::Pipeline pipeline;
  const ir::Program forward = pipeline.forward(sym, {});
  const ir::Gradient gradient = pipeline.backward(sym, forward, {});
  for (const ir::TileShape &shape : ir::gpuTileShapes()) {
    setenv("ENC_GPU_TILE", ir::tileShapeName(shape).c_str(), 1);
    std::vector<ir::ElemType> storages{ir::ElemType::F32};
    if (shape.tensorCores) storages = {ir::ElemType::BF16, ir::ElemType::F32};
    for (ir::ElemType storage : storages)
      for (bool backward : {false, true})
        for (bool aligned : {false, true}) {
        SCOPED_TRACE(fmt::format("{} {} {} {}", ir::tileShapeName(shape), ir::elemTypeName(storage),
                                 backward ? "backward" : "forward", aligned ? "9 x 8" : "5 x 9"));
        std::map<std::string, ir::Expr> sizes{{"B", ir::intImm(2)},
                                              {"C", ir::intImm(130)},
                                              {"H", ir::intImm(aligned ? 9 : 5)},
                                              {"W", ir::intImm(aligned ? 8 : 9)}};
        ir::LoopProgram loops = pipeline.lower(
            pipeline.specializeSizes(backward ? gradient.program : forward, sizes),
            {.target = ir::Target::GPU,
             .types = backward ? ir::backwardStorage(gradient, forward, storage) : ir::forwardStorage(forward, storage),
             .allowTf32 = shape.tensorCores});
        int tiled = 0, asyncCopies = 0;
        int64_t widest = 0;
        for (const ir::Kernel &k : loops.kernels) {
          tiled += k.launch == ir::ForKind::GpuTiles;
          ir::visit(k.body, [&](const ir::Stmt &s) {
            asyncCopies += s->kind == ir::StmtKind::AsyncCopy;
            if (s->kind == ir::StmtKind::AsyncCopy) widest = std::max(widest, s->width);
            return true;
          });
        }
        EXPECT_EQ(tiled, 1);
        const bool twoStages = shape.stages == 2, f32 = storage == ir::ElemType::F32;
        const bool wide = shape.tensorCores && aligned && !backward;
        const bool async = wide || (twoStages && (shape.tensorCores ? f32 : !backward));
        EXPECT_EQ(asyncCopies > 0, async) << asyncCopies << " asynchronous copies";
        EXPECT_EQ(widest, wide ? (f32 ? 4 : 8) : async ? 1 : 0);
        const std::string source = codegen::emitCuda(loops);
        for (int arch : {80, 90}) {
          cuda::CompileOptions opts;
          opts.arch = fmt::format("sm_{}", arch);
          opts.sourceName = "GramMatrix.cu";
          try {
            cuda::CompileResult r = cuda::compile(source, opts);
            EXPECT_TRUE(r.isCubin && isElf(r.cubin)) << "sm_" << arch;
          } catch (const Error &e) {
            ADD_FAILURE() << "NVRTC failed for sm_" << arch << ": " << e.what() << "\n" << source;
          }
        }
      }
  }
  unsetenv("ENC_GPU_TILE");
}

INSTANTIATE_TEST_SUITE_P(Shipped, CudaCompile,
                         ::testing::Combine(::testing::ValuesIn(shippedLayerNames()),
                                            ::testing::Values("f32", "f64", "f16", "bf16")),
                         [](const ::testing::TestParamInfo<Param> &info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CudaCompile);

} // namespace
} // namespace enc
