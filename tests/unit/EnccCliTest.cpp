// End-to-end tests of the encc command line: the real binary (ENCC_BINARY), run through the shell with
// stdout and stderr captured separately, each test in a temporary directory of its own.
#include "dsl/Parser.h"
#include "runtime/CudaDriver.h"
#include "runtime/Library.h"
#include "runtime/Npy.h"
#include "runtime/Nvrtc.h"
#include "runtime/Tensor.h"

#include "CliTestSupport.h"
#include "ReferenceMath.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace enc {
namespace {

using namespace enc::testing;

std::string shippedLayerDir() { return fs::path(ENC_TEST_DIR).parent_path() / "layers"; }

std::vector<std::string> shippedLayerFiles() {
  std::vector<std::string> files;
  for (const auto &e : fs::directory_iterator(shippedLayerDir()))
    if (e.path().extension() == ".enc")
      files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

class EnccCli : public CliTest {};

// ---- help ---------------------------------------------------------------------------------------------

TEST_F(EnccCli, HelpListsSubcommands) {
  CliResult r = encc("--help");
  ASSERT_EQ(r.status, 0) << r;
  for (const char *s : {"check", "emit", "eval", "--version"})
    EXPECT_TRUE(contains(r.out, s)) << s << "\n" << r;
  r = encc("--version");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "encc")) << r;
}

TEST_F(EnccCli, SubcommandHelpListsOptions) {
  struct Case {
    const char *sub;
    std::vector<std::string> options;
  };
  const Case cases[] = {
      {"check", {"files"}},
      {"emit", {"--emit", "--layer", "--set", "--arch", "--target", "--dtype", "ast", "ptx", "llvm"}},
      {"eval",
       {"--layer", "--set", "--dtype", "--device", "--seed", "--input", "--param", "--grad", "--out",
        "random:"}},
  };
  for (const Case &c : cases) {
    CliResult r = encc(fmt::format("{} --help", c.sub));
    EXPECT_EQ(r.status, 0) << c.sub << "\n" << r;
    for (const std::string &o : c.options)
      EXPECT_TRUE(contains(r.out, o)) << c.sub << ": " << o << "\n" << r;
  }
}

// ---- check --------------------------------------------------------------------------------------------

TEST_F(EnccCli, CheckShippedLayers) {
  std::string args;
  for (const std::string &f : shippedLayerFiles())
    args += " " + quote(f);
  ASSERT_FALSE(args.empty());
  CliResult r = encc("check" + args);
  EXPECT_EQ(r.status, 0) << r;
  for (const std::string &f : shippedLayerFiles())
    EXPECT_TRUE(contains(r.out, f + ": ok")) << f << "\n" << r;
  for (const std::string &layer : Library::shipped()->layerNames())
    EXPECT_TRUE(contains(r.out, layer)) << r;
  EXPECT_FALSE(contains(r.err, "error")) << r;
}

// A directory where a .enc file is read is an error saying so, whichever command reads it.
TEST_F(EnccCli, DirectoryIsNotAnEncFile) {
  fs::create_directories(path("layers.d"));
  const std::string said = "layers.d is a directory, not a .enc file";
  expectFailure(encc("check layers.d"), {said});
  expectFailure(encc("emit layers.d --layer A"), {said});
  expectFailure(encc("emit --emit=ast layers.d"), {said});
  expectFailure(encc("eval layers.d --layer ReLU --input X=random:3 --out out"), {said});
  CliResult r = encc("repl layers.d < /dev/null");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, said)) << r;
  std::ofstream(path("session.txt")) << ":load layers.d\n";
  r = encc("repl < session.txt");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, said)) << r;
  EXPECT_FALSE(contains(r.err, "no layer in that text")) << r;
}

TEST_F(EnccCli, CheckBrokenFile) {
  std::ofstream(path("broken.enc")) << "layer Broken() {\n"
                                       "  forward(X: [N]) -> Y: [N] {\n"
                                       "    Y[i] = X[j] + 1\n"
                                       "  }\n"
                                       "}\n";
  CliResult r = encc("check broken.enc");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "broken.enc:3:")) << r;
  EXPECT_TRUE(contains(r.err, "error:")) << r;
  EXPECT_TRUE(contains(r.err, "Y[i] = X[j] + 1")) << "the source line\n" << r;
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"((^|\n) *\^)"))) << "a caret line\n" << r;
  EXPECT_FALSE(contains(r.out, "broken.enc: ok")) << r;

  // A broken file among good ones: the good ones are still reported, the status is still 1.
  r = encc("check broken.enc " + quote(shippedLayerFiles().front()));
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.out, shippedLayerFiles().front() + ": ok")) << r;

  // A syntax error, too.
  std::ofstream(path("syntax.enc")) << "layer S( {\n}\n";
  r = encc("check syntax.enc");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "syntax.enc:1:")) << r;
  EXPECT_TRUE(contains(r.err, "^")) << r;

  r = encc("check does-not-exist.enc");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "does-not-exist.enc")) << r;
}

// Expressions as deep as the language allows go through every stage (checks, lowering, autodiff,
// code generation, the JIT); some thousands of levels, which overflowed the stack of the parser or
// of the stages after it, are an error with the location instead.
TEST_F(EnccCli, DeeplyNestedExpressions) {
  auto repeat = [](const std::string &s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  const int n = kMaxExpressionDepth - 2; // X[i] takes two levels itself
  std::string chain = "X[i]";
  for (int i = 0; i < n; ++i) chain += i % 2 ? " + X[i]" : " * X[i]";
  std::ofstream(path("deepest.enc")) << "layer Deep() {\n  forward(X: [N]) -> Y: [N] {\n"
                                     << "    A[i] = " << repeat("-", n) << "X[i]\n"
                                     << "    B[i] = " << repeat("relu(", n) << "X[i]" << repeat(")", n) << "\n"
                                     << "    C[i] = " << chain << "\n"
                                     << "    D[i] = " << repeat("select(X[i] > 0, ", n - 1) << "X[i]"
                                     << repeat(", -X[i])", n - 1) << "\n"
                                     << "    E[i] = " << repeat("(", n) << "X[i]" << repeat(")", n) << "\n"
                                     << "    Y[i] = A[i] + B[i] + C[i] + D[i] + E[i]\n  }\n}\n";
  CliResult r = encc("eval deepest.enc --layer Deep --device cpu --input X=random:3 --grad Y=random:3 --out out");
  EXPECT_EQ(r.status, 0) << r;

  struct Case {
    const char *open, *close;
    int levels;
  };
  for (const Case &c : {Case{"-", "", 12000}, Case{"!", "", 6000}, Case{"(", ")", 6000}, Case{"X[", "]", 6000},
                        Case{"sum(j: ", ")", 6000}, Case{"select(true, ", ", 0)", 6000}}) {
    std::ofstream(path("deep.enc")) << "layer Deep() {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = "
                                    << repeat(c.open, c.levels) << "X[i]" << repeat(c.close, c.levels)
                                    << "\n  }\n}\n";
    r = encc("check deep.enc");
    EXPECT_EQ(r.status, 1) << c.open << "\n" << r;
    EXPECT_TRUE(contains(r.err, "deep.enc:3:")) << c.open << "\n" << r;
    EXPECT_TRUE(contains(r.err, fmt::format("expression nested too deeply (more than {} levels)", kMaxExpressionDepth)))
        << c.open << "\n" << r;
    EXPECT_TRUE(contains(r.err, "1 error generated.")) << c.open << "\n" << r;
  }
}

// ---- emit ---------------------------------------------------------------------------------------------

TEST_F(EnccCli, EmitStagesOfEncoding) {
  CliResult r = encc("emit --emit=ast --layer Encoding");
  EXPECT_EQ(r.status, 0) << r;
  for (const char *s : {"Encoding", "codewords", "scale", "softmax"})
    EXPECT_TRUE(contains(r.out, s)) << s << "\n" << r;

  r = encc("emit --emit=ir --layer Encoding");
  EXPECT_EQ(r.status, 0) << r;
  // softmax is expanded into a max and a sum of exps.
  for (const char *s : {"codewords", "scale", "max(", "sum(", "exp("})
    EXPECT_TRUE(contains(r.out, s)) << s << "\n" << r;

  r = encc("emit --emit=ir --layer Encoding --set D=128 --set K=32");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "128")) << r;
  EXPECT_TRUE(contains(r.out, "32")) << r;

  for (const char *target : {"cpu", "gpu"}) {
    r = encc(fmt::format("emit --emit=loops --target {} --layer Encoding --set D=4 --set K=3", target));
    EXPECT_EQ(r.status, 0) << target << "\n" << r;
    EXPECT_TRUE(contains(r.out, "kernel")) << r;
    EXPECT_TRUE(contains(r.out, "for")) << r;
  }

  r = encc("emit --emit=cuda --layer Encoding");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "extern \"C\" __global__")) << r;
  EXPECT_TRUE(contains(r.out, "#line")) << r;
  EXPECT_TRUE(contains(r.out, "encoding.enc")) << r;
  r = encc("emit --emit=cuda --dtype f64 --layer Encoding");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "double*")) << r;

  r = encc("emit --emit=llvm --layer Encoding --set D=4 --set K=3");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "define")) << r;
}

// Without --layer, emit prints every layer of the file it is given.
TEST_F(EnccCli, EmitEveryLayerOfAFile) {
  for (const std::string &file : shippedLayerFiles()) {
    CliResult r = encc("emit --emit=ir " + quote(file));
    EXPECT_EQ(r.status, 0) << r;
    for (const std::string &layer : Library::fromFile(file)->layerNames())
      EXPECT_TRUE(contains(r.out, "layer " + layer)) << layer << "\n" << r;
  }
  // Neither a file nor a layer: an error that says what to give.
  CliResult r = encc("emit --emit=ir");
  expectFailure(r, {"--layer"});
}

TEST_F(EnccCli, EmitPtx) {
  if (!cuda::nvrtcAvailable())
    GTEST_SKIP() << "encc was built without NVRTC (no CUDA toolkit at configure time)";
  CliResult r = encc("emit --emit=ptx --arch sm_80 --layer Encoding");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, ".target sm_80")) << r;
  EXPECT_TRUE(contains(r.out, ".entry")) << r;
  // An architecture NVRTC does not know is an error listing those it does, not PTX for another one.
  for (const char *arch : {"sm_999", "sm_10", "sm_81"}) {
    r = encc(fmt::format("emit --emit=ptx --arch {} --layer Encoding", arch));
    expectFailure(r, {std::string(arch).substr(3), "sm_80", "sm_90"});
  }
}

// emit refuses what a run refuses: sizes too small for the kernel (it printed loops of
// negative extents), a false requirement (it printed var / 0), an integer division by zero.
TEST_F(EnccCli, EmitWithSizesChecksAsARunDoes) {
  CliResult r = encc("emit --emit=loops --layer Conv2d --set in_channels=1 --set out_channels=1 --set kernel_size=3 "
                     "--size H=1 --size W=1");
  expectFailure(r, {"'Y' would have dimension 2 of size -1", "too small"});
  r = encc("emit --emit=ir --layer SyncBatchNorm --set num_features=3 --size B=1 --size L=1");
  expectFailure(r, {"layer SyncBatchNorm requires", "B * L > 1", "B = 1", "L = 1"});
  std::ofstream(path("down.enc")) << "layer Down(s: int = 2) {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = X[i // s]\n  }\n}\n";
  expectFailure(encc("emit --emit=loops down.enc --layer Down --set s=0"), {"down.enc:3:5", "i // 0 divides by zero"});
  r = encc("emit --emit=loops down.enc --layer Down --set s=2 --size N=8");
  EXPECT_EQ(r.status, 0) << r;
}

// --size fixes input sizes as a run would: the GPU stages then show split reductions,
// tiles and fused sums; --backward shows the backward pass's kernels.
TEST_F(EnccCli, EmitWithSizesShowsTheGpuSchedule) {
  CliResult r = encc("emit --emit=loops --target gpu --layer SyncBatchNorm --set num_features=256 --size B=32 --size L=3136");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "kernel k0_s_here_part(s_here_part, q_here_part, X, running_mean)")) << r;
  EXPECT_TRUE(contains(r.out, "gpu_warps for _o in 0..8192")) << r;
  r = encc("emit --emit=loops --target gpu --backward --layer SyncBatchNorm --set num_features=256 --size B=32 --size L=3136");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "# writes grad_var_sum1_part, grad_mu_sum2_part,")) << r;
  r = encc("emit --emit=cuda --layer GramMatrix --size B=2 --size C=64 --size H=8 --size W=8");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "__shared__ __align__(32) float _as[1040];")) << r;
  EXPECT_TRUE(contains(r.out, "for (int _red = 0; _red < 4; ++_red)")) << r;
  EXPECT_TRUE(contains(r.out, "__syncthreads();")) << r;
  // The loops show the same schedule: tiles, shared arrays, the threads' register blocks.
  r = encc("emit --emit=loops --target gpu --layer GramMatrix --size B=2 --size C=64 --size H=8 --size W=8");
  EXPECT_EQ(r.status, 0) << r;
  for (const char *line : {"gpu_tiles for _tile in 0..2:", "shared _as: float[1040]", "gpu_block_threads for _t in 0..256:",
                           "alloc _accs: float[16]", "barrier", "_accs[_i * 4 + _j] = _accs[_i * 4 + _j] + _ak * _bk[_j]"})
    EXPECT_TRUE(contains(r.out, line)) << line << "\n" << r;
  // Gram is symmetric in c and e: of 3 x 3 tiles per batch element, the 6 on and above the
  // diagonal run, those off it storing each output twice.
  r = encc("emit --emit=loops --target gpu --layer GramMatrix --size B=2 --size C=130 --size H=8 --size W=8");
  EXPECT_EQ(r.status, 0) << r;
  for (const char *line : {"gpu_tiles for _tile in 0..12:", "let _tri: int = _tile % 6",
                           "_ti = _ti + select(_tri >= (_s + 1) * 3 - (_s + 1) * _s / 2, 1, 0)",
                           "let _col0: int = (_ti + _tri - (_ti * 3 - _ti * (_ti - 1) / 2)) * 64",
                           "Y[(b * 130 + c) * 130 + e] = _acc / 8320.0", "if _row0 != _col0:",
                           "Y[(b * 130 + e) * 130 + c] = _acc / 8320.0"})
    EXPECT_TRUE(contains(r.out, line)) << line << "\n" << r;
  // Stored in 16 bits, the same contraction runs on tensor cores.
  r = encc("emit --emit=loops --target gpu --dtype bf16 --layer GramMatrix --size B=2 --size C=64 --size H=8 --size W=8");
  EXPECT_EQ(r.status, 0) << r;
  for (const char *line : {"shared _as: bf16[2560]", "fragments _fa: matrix_a bf16[2]", "matrix_mma _fc[_i + _j] += _fa[_i] * _fb[_j]",
                           "matrix_store _cs[_w * 256..], ld 16 = _fc[_f]", "warp_barrier"})
    EXPECT_TRUE(contains(r.out, line)) << line << "\n" << r;
  r = encc("emit --emit=cuda --dtype f16 --layer GramMatrix --size B=2 --size C=64 --size H=8 --size W=8");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "#include <mma.h>")) << r;
  EXPECT_TRUE(contains(r.out, "nvcuda::wmma::mma_sync(")) << r;
  // f32 only with TF32 allowed: operands rounded to TF32 as they are loaded.
  const std::string gram = "emit --emit=cuda --layer GramMatrix --size B=2 --size C=64 --size H=8 --size W=8";
  r = encc(gram);
  EXPECT_FALSE(contains(r.out, "nvcuda::wmma")) << r;
  r = encc(gram + " --allow-tf32");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "nvcuda::wmma::precision::tf32")) << r;
  EXPECT_TRUE(contains(r.out, "nvcuda::wmma::__float_to_tf32(")) << r;
  // Without sizes the same layer keeps the warp schedule and 64-bit indices.
  r = encc("emit --emit=cuda --layer GramMatrix");
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_FALSE(contains(r.out, "__shared__")) << r;
  EXPECT_TRUE(contains(r.out, "long long _o")) << r;
  r = encc("emit --emit=loops --layer GramMatrix --size Q=3");
  expectFailure(r, {"--size Q", "GramMatrix", "no input size 'Q'"});
  r = encc("emit --emit=loops --layer GramMatrix --size B=-2");
  expectFailure(r, {"--size B=-2", "non-negative"});
}

// Loops over log vectorize into calls of glibc's vector math library (libmvec) on x86-64;
// ENC_VECTOR_MATH=0 keeps them scalar. f32 exp is inline arithmetic, no call (its libmvec
// version leaves the fast path for arguments below about -87: CpuExpTest).
TEST_F(EnccCli, LogLoopsCallTheVectorMathLibrary) {
#if !defined(__x86_64__) || !defined(__GLIBC__)
  GTEST_SKIP() << "libmvec is used on x86-64 glibc only";
#endif
  std::ofstream(path("log.enc")) << "layer Log() {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = log(X[i])\n  }\n}\n";
  CliResult r = encc(fmt::format("emit --emit=llvm --layer Log {}", quote(path("log.enc").string())));
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "_ZGVdN8v_logf")) << r.out.substr(0, 3000);
  std::string cmd = fmt::format("cd {} && ENC_VECTOR_MATH=0 {} emit --emit=llvm --layer Log log.enc > scalar.ll",
                                quote(dir.string()), quote(ENCC_BINARY));
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string scalar = slurp(path("scalar.ll"));
  EXPECT_TRUE(contains(scalar, "define")) << scalar.substr(0, 2000);
  EXPECT_FALSE(contains(scalar, "_ZGV")) << scalar.substr(0, 3000);
  r = encc("emit --emit=llvm --layer Softmax");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "define")) << r.out.substr(0, 2000);
  EXPECT_FALSE(contains(r.out, "expf")) << r.out.substr(0, 3000);
}

TEST_F(EnccCli, EmitUnknownKind) {
  CliResult r = encc("emit --emit=foo --layer Encoding");
  expectFailure(r, {"foo", "ast", "ptx"});
}

// A bad --target, --dtype or --arch is an error at every stage, not only at those that use it.
TEST_F(EnccCli, EmitBadTargetOrDtypeAtAnyStage) {
  for (const char *stage : {"ir", "grad", "loops", "llvm", "cuda"}) {
    SCOPED_TRACE(stage);
    expectFailure(encc(fmt::format("emit --emit={} --layer ReLU --target tpu", stage)), {"unknown --target 'tpu'", "cpu or gpu"});
    expectFailure(encc(fmt::format("emit --emit={} --layer ReLU --dtype f8", stage)), {"f8", "bf16"});
    expectFailure(encc(fmt::format("emit --emit={} --layer ReLU --arch bogus", stage)),
                  {"'bogus' is not a CUDA architecture"});
  }
}

// ---- eval ---------------------------------------------------------------------------------------------

// Naive Encoding (DESIGN.md) on tensors; X may be [B, D, N] or [B, D, H, W].
std::vector<double> encodingRef(const Tensor &x, const Tensor &cw, const Tensor &sc) {
  auto values = [](const Tensor &t) {
    std::vector<double> v(static_cast<size_t>(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.at(i);
    return v;
  };
  int64_t B = x.dim(0), D = x.dim(1);
  return testing::encodingRef(values(x), values(cw), values(sc), B, D, x.numel() / (B * D), cw.dim(0));
}

Tensor randomTensor(DType dtype, const Shape &shape, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Tensor t(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, u(gen));
  return t;
}

double relError(const Tensor &actual, const std::vector<double> &expected) {
  double diff = 0, ref = 1;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    diff = std::max(diff, std::abs(actual.at(i) - expected[static_cast<size_t>(i)]));
    ref = std::max(ref, std::abs(expected[static_cast<size_t>(i)]));
  }
  return std::isnan(diff) ? INFINITY : diff / ref;
}

TEST_F(EnccCli, EvalEncoding4DMatchesReference) {
  Tensor x = randomTensor(DType::F64, {2, 4, 3, 5}, 1);
  writeNpy(path("x.npy").string(), x);
  CliResult r =
      encc("eval --layer Encoding --set D=4 --set K=3 --dtype f64 --seed 5 --input X=x.npy --out out");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(contains(r.out, "Y")) << r;
  Tensor y = readNpy(path("out/Y.npy").string());
  Tensor cw = readNpy(path("out/params/codewords.npy").string());
  Tensor sc = readNpy(path("out/params/scale.npy").string());
  EXPECT_EQ(y.dtype(), DType::F64);
  ASSERT_EQ(shapeString(y.shape()), "[2, 3, 4]");
  ASSERT_EQ(shapeString(cw.shape()), "[3, 4]");
  ASSERT_EQ(shapeString(sc.shape()), "[3]");
  EXPECT_LE(relError(y, encodingRef(x, cw, sc)), 1e-12);
  // The seed's params are within their init ranges.
  for (int64_t i = 0; i < cw.numel(); ++i)
    EXPECT_LE(std::abs(cw.at(i)), 1 / std::sqrt(12.0));
  for (int64_t i = 0; i < sc.numel(); ++i)
    EXPECT_TRUE(sc.at(i) >= -1 && sc.at(i) < 0) << sc.at(i);

  // Same seed, same result; another seed, other params.
  r = encc("eval --layer Encoding --set D=4 --set K=3 --dtype f64 --seed 5 --input X=x.npy --out again");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(slurp(path("out/Y.npy")), slurp(path("again/Y.npy")));
  r = encc("eval --layer Encoding --set D=4 --set K=3 --dtype f64 --seed 6 --input X=x.npy --out other");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_NE(slurp(path("out/params/codewords.npy")), slurp(path("other/params/codewords.npy")));
}

TEST_F(EnccCli, EvalF32InputConvertedFromF64) {
  // An f64 file is converted to the layer's dtype (f32 by default).
  Tensor x = randomTensor(DType::F64, {2, 4, 7}, 2);
  writeNpy(path("x.npy").string(), x);
  CliResult r = encc("eval --layer Encoding --set D=4 --set K=5 --input X=x.npy --out out");
  ASSERT_EQ(r.status, 0) << r;
  Tensor y = readNpy(path("out/Y.npy").string());
  EXPECT_EQ(y.dtype(), DType::F32);
  ASSERT_EQ(shapeString(y.shape()), "[2, 5, 4]");
  Tensor cw = readNpy(path("out/params/codewords.npy").string()),
         sc = readNpy(path("out/params/scale.npy").string());
  EXPECT_LE(relError(y, encodingRef(x.to(DType::F32), cw, sc)), 1e-5);
}

TEST_F(EnccCli, EvalParamIsHonored) {
  Tensor x = randomTensor(DType::F64, {3, 4, 2, 3}, 3);
  Tensor c = randomTensor(DType::F64, {3, 4}, 4, -2, 2); // outside the init range: clearly not initialized
  Tensor s = randomTensor(DType::F64, {3}, 5, -3, -1);
  writeNpy(path("x.npy").string(), x);
  writeNpy(path("c.npy").string(), c);
  writeNpy(path("s.npy").string(), s);
  CliResult r =
      encc("eval --layer Encoding --set D=4 --set K=3 --dtype f64 --input X=x.npy --param codewords=c.npy "
           "--out out");
  ASSERT_EQ(r.status, 0) << r;
  Tensor cw = readNpy(path("out/params/codewords.npy").string());
  Tensor sc = readNpy(path("out/params/scale.npy").string());
  ASSERT_EQ(cw.shape(), c.shape());
  for (int64_t i = 0; i < c.numel(); ++i)
    EXPECT_EQ(cw.at(i), c.at(i)) << i;
  Tensor y = readNpy(path("out/Y.npy").string());
  EXPECT_LE(relError(y, encodingRef(x, c, sc)), 1e-12);

  r = encc("eval --layer Encoding --set D=4 --set K=3 --dtype f64 --input X=x.npy --param codewords=c.npy "
           "--param scale=s.npy --out both");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_LE(relError(readNpy(path("both/Y.npy").string()), encodingRef(x, c, s)), 1e-12);

  // A param of the wrong shape or name is an error.
  writeNpy(path("c_bad.npy").string(), randomTensor(DType::F64, {4, 3}, 6));
  r = encc("eval --layer Encoding --set D=4 --set K=3 --input X=x.npy --param codewords=c_bad.npy --out bad");
  expectFailure(r, {"codewords", "[3, 4]", "[4, 3]"});
  r = encc("eval --layer Encoding --set D=4 --set K=3 --input X=x.npy --param weights=c.npy --out bad");
  expectFailure(r, {"weights", "codewords"});
}

// random: makes inputs and output gradients; for a parameter it is an error saying so.
TEST_F(EnccCli, EvalRandomParamSaysRandomIsForInputs) {
  CliResult r = encc("eval --layer Linear --set in_features=3 --set out_features=2 --param weight=random:2,3 "
                     "--input X=random:4,3 --out bad");
  expectFailure(r, {"--param weight=random:2,3", "hint: random:D0,D1,... makes only inputs and output gradients"});
}

TEST_F(EnccCli, EvalRandomInput) {
  CliResult r = encc("eval --layer ReLU --input X=random:2,3,4 --out out");
  ASSERT_EQ(r.status, 0) << r;
  Tensor y = readNpy(path("out/Y.npy").string());
  ASSERT_EQ(shapeString(y.shape()), "[2, 3, 4]");
  bool positive = false;
  for (int64_t i = 0; i < y.numel(); ++i) {
    EXPECT_TRUE(y.at(i) >= 0 && y.at(i) <= 1) << y.at(i); // relu of U[-1, 1), rounded to f32
    positive |= y.at(i) > 0;
  }
  EXPECT_TRUE(positive);

  r = encc("eval --layer Encoding --set D=3 --set K=2 --input X=random:2,3,4 --out enc");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(shapeString(readNpy(path("enc/Y.npy").string()).shape()), "[2, 2, 3]");

  r = encc("eval --layer ReLU --input X=random:2,x,4 --out bad");
  expectFailure(r, {"random:2,x,4"});
  // Every dimension is given: none empty, at least one.
  for (const char *spec : {"random:", "random:3,", "random:,3", "random:2,,3", "random:-2", "random: 3"}) {
    r = encc(fmt::format("eval --layer ReLU --input 'X={}' --out bad", spec));
    expectFailure(r, {"--input X", fmt::format("'{}'", spec)});
    r = encc(fmt::format("eval --layer ReLU --input X=random:3 --grad 'Y={}' --out bad", spec));
    expectFailure(r, {"--grad Y", fmt::format("'{}'", spec)});
  }
}

// NAME= without a value says that the value is missing, not that "" cannot be read.
TEST_F(EnccCli, EvalEmptyValueIsMissing) {
  expectFailure(encc("eval --layer ReLU --input X= --out bad"), {"--input X=: the value is missing"});
  expectFailure(encc("eval --layer ReLU --input X=random:3 --grad Y= --out bad"), {"--grad Y=: the value is missing"});
  expectFailure(encc("eval --layer ReLU --input X=random:3 --param W= --out bad"), {"--param W=: the value is missing"});
}

// A negative seed is an error, not 2^64 - 1.
TEST_F(EnccCli, EvalSeedIsNotNegative) {
  for (const char *seed : {"--seed -1", "--seed=-1", "--seed 1.5", "--seed x"}) {
    CliResult r = encc(fmt::format("eval --layer ReLU --input X=random:3 {} --out bad", seed));
    expectFailure(r, {"--seed"});
  }
  CliResult r = encc("eval --layer ReLU --input X=random:3 --seed 18446744073709551615 --out ok");
  EXPECT_EQ(r.status, 0) << r;
}

// ---- eval errors --------------------------------------------------------------------------------------

TEST_F(EnccCli, EvalMissingInputFile) {
  CliResult r = encc("eval --layer Encoding --set D=4 --set K=3 --input X=missing.npy --out out");
  expectFailure(r, {"missing.npy"});
  EXPECT_FALSE(fs::exists(path("out/Y.npy")));
}

TEST_F(EnccCli, EvalCorruptNpy) {
  std::ofstream(path("garbage.npy"), std::ios::binary)
      << std::string("\x01\x02garbage bytes, not numpy\xff\xfe");
  CliResult r = encc("eval --layer Encoding --set D=4 --set K=3 --input X=garbage.npy --out out");
  expectFailure(r, {"garbage.npy"});

  // A valid header with its data cut short.
  std::string bytes = serializeNpy(randomTensor(DType::F32, {2, 4, 8}, 7));
  std::ofstream(path("short.npy"), std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  r = encc("eval --layer Encoding --set D=4 --set K=3 --input X=short.npy --out out");
  expectFailure(r, {"short.npy"});
  EXPECT_FALSE(fs::exists(path("out/Y.npy")));
}

TEST_F(EnccCli, EvalWrongInputShape) {
  writeNpy(path("x.npy").string(), Tensor(DType::F32, {2, 5, 3}));
  CliResult r = encc("eval --layer Encoding --set D=4 --set K=3 --input X=x.npy --out out");
  expectFailure(r, {"Encoding", "'X'", "[2, 5, 3]", "[B, D, N...]"});
  EXPECT_FALSE(fs::exists(path("out/Y.npy")));

  r = encc("eval --layer GramMatrix --input X=random:2,3 --out out");
  expectFailure(r, {"GramMatrix", "'X'", "[2, 3]", "[B, C, H, W]"});
}

TEST_F(EnccCli, EvalUnknownLayerListsLayers) {
  CliResult r = encc("eval --layer NoSuchLayer --input X=random:2,3 --out out");
  std::vector<std::string> mentions = Library::shipped()->layerNames();
  mentions.push_back("NoSuchLayer");
  expectFailure(r, mentions);
}

TEST_F(EnccCli, EvalUnknownInputName) {
  CliResult r = encc("eval --layer ReLU --input Z=random:2,3 --out out");
  expectFailure(r, {"'Z'", "X"});
}

TEST_F(EnccCli, EvalBadSettings) {
  CliResult r = encc("eval --layer Encoding --set D=4 --set K=3 --set Q=1 --input X=random:2,4,3 --out out");
  expectFailure(r, {"'Q'", "D", "K"});
  r = encc("eval --layer Encoding --set D=abc --set K=3 --input X=random:2,4,3 --out out");
  expectFailure(r, {"'D'", "int", "abc"});
  r = encc("eval --layer Encoding --set D=4.5 --set K=3 --input X=random:2,4,3 --out out");
  expectFailure(r, {"'D'", "int"});
  r = encc("eval --layer LeakyReLU --set negative_slope=steep --input X=random:2,4,3 --out out");
  expectFailure(r, {"'negative_slope'", "float", "steep"});
  r = encc("eval --layer Encoding --set K=3 --input X=random:2,4,3 --out out");
  expectFailure(r, {"'D'"});
  r = encc("eval --layer Encoding --set D --set K=3 --input X=random:2,4,3 --out out");
  expectFailure(r, {"NAME=VALUE"});
  r = encc("eval --layer Encoding --set D=4 --set K=3 --dtype f8 --input X=random:2,4,3 --out out");
  expectFailure(r, {"'f8'", "bf16"});
}

// ENC_PROFILE=1: at exit, the time of each kernel that ran, named by layer, kernel and .enc line.
TEST_F(EnccCli, ProfilePrintsEveryKernel) {
  ScopedEnv profile("ENC_PROFILE", "1");
  CliResult r = encc("eval --layer SyncBatchNorm --set num_features=3 --device cpu --input X=random:4,3,5 "
                     "--grad Y=random:4,3,5 --out out");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_NE(r.err.find("encc: kernel profile"), std::string::npos) << r;
  for (const char *kernel : {"SyncBatchNorm k0_s_here", "SyncBatchNorm k4_Y", "grad_X"})
    EXPECT_NE(r.err.find(kernel), std::string::npos) << kernel << "\n" << r;
  EXPECT_NE(r.err.find("batchnorm.enc:"), std::string::npos) << r;
  ScopedEnv off("ENC_PROFILE", nullptr);
  r = encc("eval --layer ReLU --device cpu --input X=random:4,3 --out out2");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_EQ(r.err.find("kernel profile"), std::string::npos) << r;
}

// --dtype f16 / bf16: 16-bit inputs, outputs and gradients (f16 files as '<f2', bf16 ones
// widened to '<f4'), parameters in f32, matching an f64 run on the same values.
TEST_F(EnccCli, EvalSixteenBitStorage) {
  // Values exact in both 16-bit types (bf16's 8-bit significands, none tiny), stored as f16.
  auto sixteenBit = [](uint64_t seed) { return randomTensor(DType::F64, {2, 3, 5}, seed).to(DType::BF16).to(DType::F16); };
  Tensor x = sixteenBit(31), dy = sixteenBit(32);
  writeNpy(path("x16.npy").string(), x);
  writeNpy(path("dy16.npy").string(), dy);
  const std::string args = "eval --layer SyncBatchNorm --set num_features=3 --input X=x16.npy --grad Y=dy16.npy";
  CliResult r = encc(args + " --dtype f64 --out ref");
  ASSERT_EQ(r.status, 0) << r;
  for (const char *dtype : {"f16", "bf16"}) {
    SCOPED_TRACE(dtype);
    r = encc(fmt::format("{} --dtype {} --out {}", args, dtype, dtype));
    ASSERT_EQ(r.status, 0) << r;
    EXPECT_NE(r.out.find(fmt::format("Y: {} [2, 3, 5]", dtype)), std::string::npos) << r;
    bool half = std::string(dtype) == "f16";
    double tol = half ? 1e-3 : 8e-3; // about one unit in the last place of the stored type
    for (const char *file : {"Y.npy", "grad/X.npy", "grad/weight.npy", "params/running_mean.npy"}) {
      SCOPED_TRACE(file);
      Tensor got = readNpy(path(std::string(dtype) + "/" + file).string());
      Tensor want = readNpy(path(std::string("ref/") + file).string());
      bool activation = std::string(file) == "Y.npy" || std::string(file) == "grad/X.npy";
      EXPECT_EQ(got.dtype(), activation && half ? DType::F16 : DType::F32);
      ASSERT_EQ(got.shape(), want.shape());
      double scale = 1e-30, worst = 0;
      for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::abs(want.at(i)));
      for (int64_t i = 0; i < want.numel(); ++i) worst = std::max(worst, std::abs(got.at(i) - want.at(i)));
      EXPECT_LE(worst / scale, activation ? tol : 1e-5);
    }
  }
}

// --grad (the brief of this test predates autodiff, which now backs it): ReLU's gradient exactly, and
// Encoding's against a central difference along a random direction of (X, codewords, scale).
TEST_F(EnccCli, EvalGrad) {
  Tensor x = randomTensor(DType::F64, {2, 4, 5}, 21), dy = randomTensor(DType::F64, {2, 4, 5}, 22);
  writeNpy(path("x.npy").string(), x);
  writeNpy(path("dy.npy").string(), dy);
  CliResult r = encc("eval --layer ReLU --dtype f64 --input X=x.npy --grad Y=dy.npy --out relu");
  ASSERT_EQ(r.status, 0) << r;
  Tensor dx = readNpy(path("relu/grad/X.npy").string());
  ASSERT_EQ(dx.shape(), x.shape());
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_EQ(dx.at(i), x.at(i) > 0 ? dy.at(i) : 0.0) << i;

  Tensor x4 = randomTensor(DType::F64, {2, 4, 3, 2}, 23), c = randomTensor(DType::F64, {3, 4}, 24);
  Tensor s = randomTensor(DType::F64, {3}, 25, -1, 0), g = randomTensor(DType::F64, {2, 3, 4}, 26);
  Tensor vx = randomTensor(DType::F64, x4.shape(), 27), vc = randomTensor(DType::F64, c.shape(), 28);
  Tensor vs = randomTensor(DType::F64, s.shape(), 29);
  auto run = [&](const std::string &tag, double h, bool grad) {
    auto shifted = [&](const Tensor &t, const Tensor &v) {
      Tensor out = t.clone();
      for (int64_t i = 0; i < t.numel(); ++i)
        out.set(i, t.at(i) + h * v.at(i));
      return out;
    };
    writeNpy(path(tag + "_x.npy").string(), shifted(x4, vx));
    writeNpy(path(tag + "_c.npy").string(), shifted(c, vc));
    writeNpy(path(tag + "_s.npy").string(), shifted(s, vs));
    writeNpy(path("g.npy").string(), g);
    std::string args =
        fmt::format("eval --layer Encoding --set D=4 --set K=3 --dtype f64 --input X={0}_x.npy "
                    "--param codewords={0}_c.npy --param scale={0}_s.npy --out {0}",
                    tag);
    CliResult res = encc(args + (grad ? " --grad Y=g.npy" : ""));
    EXPECT_EQ(res.status, 0) << res;
    return res.status == 0;
  };
  ASSERT_TRUE(run("base", 0, true));
  const double h = 1e-5;
  ASSERT_TRUE(run("plus", h, false));
  ASSERT_TRUE(run("minus", -h, false));
  auto dot = [](const Tensor &a, const Tensor &b) {
    double acc = 0;
    for (int64_t i = 0; i < a.numel(); ++i)
      acc += a.at(i) * b.at(i);
    return acc;
  };
  Tensor gx = readNpy(path("base/grad/X.npy").string());
  Tensor gc = readNpy(path("base/grad/codewords.npy").string());
  Tensor gs = readNpy(path("base/grad/scale.npy").string());
  ASSERT_EQ(gx.shape(), x4.shape()); // the gradient of a 4-D input is 4-D
  ASSERT_EQ(gc.shape(), c.shape());
  ASSERT_EQ(gs.shape(), s.shape());
  double analytic = dot(gx, vx) + dot(gc, vc) + dot(gs, vs);
  double numeric =
      (dot(g, readNpy(path("plus/Y.npy").string())) - dot(g, readNpy(path("minus/Y.npy").string()))) /
      (2 * h);
  EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)));

  // A seed of the wrong shape, or for an output the layer doesn't have.
  writeNpy(path("g_bad.npy").string(), Tensor(DType::F64, {2, 3, 5}));
  r = encc("eval --layer Encoding --set D=4 --set K=3 --dtype f64 --input X=base_x.npy --grad Y=g_bad.npy "
           "--out bad");
  EXPECT_EQ(r.status, 1) << r;
  for (const char *m : {"error:", "'Y'", "[2, 3, 5]", "[2, 3, 4]"})
    EXPECT_TRUE(contains(r.err, m)) << m << "\n" << r;
  r = encc(
      "eval --layer Encoding --set D=4 --set K=3 --dtype f64 --input X=base_x.npy --grad Z=g.npy --out bad");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "'Z'")) << r;
}

TEST_F(EnccCli, EvalCudaWithoutGpu) {
  CliResult r =
      encc("eval --layer Encoding --set D=4 --set K=3 --input X=random:2,4,5 --device cuda --out out");
  if (cuda::Driver::get()) GTEST_SKIP() << "a CUDA driver and GPU are present; the no-driver message cannot be checked";
  std::vector<std::string> mentions = {"--device cuda"};
  if (contains(cuda::Driver::unavailableReason(), "no CUDA driver"))
    mentions.push_back("no CUDA driver");
  expectFailure(r, mentions);
  EXPECT_TRUE(contains(r.err, "--device cpu")) << "the hint\n" << r;
}

// With a GPU, eval runs there by default and agrees with --device cpu: outputs, parameters and
// gradients, written to .npy the same way.
TEST_F(EnccCli, EvalOnTheGpuMatchesTheCpu) {
  if (!cuda::Driver::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  writeNpy(path("x.npy").string(), randomTensor(DType::F64, {2, 6, 7}, 31));
  writeNpy(path("g.npy").string(), randomTensor(DType::F64, {2, 5, 6}, 32));
  const std::string common = "eval --layer Encoding --set D=6 --set K=5 --dtype f64 --input X=x.npy --grad Y=g.npy";
  CliResult gpu = encc(common + " --out gpu");
  ASSERT_EQ(gpu.status, 0) << gpu;
  CliResult cpu = encc(common + " --device cpu --out cpu");
  ASSERT_EQ(cpu.status, 0) << cpu;
  for (const char *file : {"Y.npy", "grad/X.npy", "grad/codewords.npy", "grad/scale.npy", "params/codewords.npy"}) {
    Tensor a = readNpy(path(std::string("gpu/") + file).string()), b = readNpy(path(std::string("cpu/") + file).string());
    ASSERT_EQ(a.shape(), b.shape()) << file;
    std::vector<double> want(static_cast<size_t>(b.numel()));
    for (int64_t i = 0; i < b.numel(); ++i) want[static_cast<size_t>(i)] = b.at(i);
    EXPECT_LE(relError(a, want), 1e-10) << file;
  }
}

// encc bench: both passes timed (median and minimum), the forward's tensor bytes counted.
TEST_F(EnccCli, BenchTimesBothPasses) {
  CliResult r = encc("bench --layer SyncBatchNorm --set num_features=8 --input X=random:4,8,1000 --runs 3 --device cpu");
  ASSERT_EQ(r.status, 0) << r;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(SyncBatchNorm \(f32, cpu, 3 runs\): forward ([0-9.]+) ms \(min ([0-9.]+)\), )"
                                                     R"(backward [0-9.]+ ms \(min [0-9.]+\); forward inputs \+ outputs ([0-9.]+) MB)")))
      << r;
  EXPECT_LE(std::stod(m[2]), std::stod(m[1])); // min <= median
  EXPECT_EQ(m[3].str(), "0.3");                 // X and Y: 2 x 4*8*1000 floats = 0.256 MB

  CliResult fwd = encc("bench --layer ReLU --input X=random:100 --forward-only --dtype f64 --device cpu");
  ASSERT_EQ(fwd.status, 0) << fwd;
  EXPECT_TRUE(contains(fwd.out, "ReLU (f64, cpu, 20 runs): forward")) << fwd;
  EXPECT_FALSE(contains(fwd.out, "backward")) << fwd;

  expectFailure(encc("bench --layer ReLU --input X=random:100 --runs 0"), {"--runs 0"});
  expectFailure(encc("bench --layer Nope --input X=random:100"), {"Nope"});
  expectFailure(encc("bench --layer ReLU --input X=random:4 --grad Y=random:5 --device cpu"), {"Y"});
  // --forward-only runs no backward pass for a --grad to seed.
  expectFailure(encc("bench --layer ReLU --input X=random:4 --grad Y=random:4 --forward-only --device cpu"),
                {"--forward-only", "--grad"});

  // A rank-0 output (a loss) gets a random gradient of its shape too.
  std::ofstream(path("loss.enc")) << "layer Loss() {\n  forward(X: [N]) -> Y: [] {\n    Y = sum(i: X[i] ^ 2)\n  }\n}\n";
  CliResult loss = encc("bench loss.enc --layer Loss --input X=random:10 --runs 1 --device cpu");
  ASSERT_EQ(loss.status, 0) << loss;
  EXPECT_TRUE(contains(loss.out, "backward")) << loss;
}

// Command-line errors exit with 1 and the usual "encc: error:" prefix, as docs/cli.md says.
TEST_F(EnccCli, EvalWithoutOut) {
  CliResult r = encc("eval --layer Encoding --set D=4 --set K=3 --input X=random:2,4,5");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_TRUE(contains(r.err, "encc: error:")) << r;
  EXPECT_TRUE(contains(r.err, "--out")) << r;
  EXPECT_TRUE(r.out.empty()) << r;
}

// A misspelt subcommand, layer or hyper-parameter: the error suggests the nearest name, ignoring case
// and accepting abbreviations; the deprecated BatchNorm aliases are names too.
TEST_F(EnccCli, SuggestsTheNearestName) {
  CliResult r = encc("evl --layer ReLU");
  expectFailure(r, {"unknown subcommand 'evl'; did you mean 'eval'?", "check, emit, eval"});
  r = encc("nonsense");
  expectFailure(r, {"unknown subcommand 'nonsense'"});
  EXPECT_FALSE(contains(r.err, "did you mean")) << r;
  struct Case {
    std::string layer, meant;
  };
  for (const Case &c : {Case{"Conv2D", "Conv2d"}, Case{"conv2d", "Conv2d"}, Case{"SyncBN", "SyncBatchNorm"},
                        Case{"batchnorm2d", "BatchNorm2d"}, Case{"Encodng", "Encoding"}}) {
    r = encc(fmt::format("eval --layer {} --device cpu --input X=random:2,3 --out out", c.layer));
    expectFailure(r, {fmt::format("no layer named '{}'; did you mean '{}'?", c.layer, c.meant), "BatchNorm2d"});
    r = encc(fmt::format("emit --emit=ir --layer {}", c.layer));
    expectFailure(r, {fmt::format("did you mean '{}'?", c.meant)});
  }
  r = encc("eval --layer Conv2d --set in_channels=3 --set out_channels=4 --set kernel_size=3 --set paddin=1 "
           "--device cpu --input X=random:1,3,5,5 --out out");
  expectFailure(r, {"no hyper-parameter 'paddin'; did you mean 'padding'?", "dilation"});
}

// An empty path ("$STATE" with STATE unset) was taken for no path: eval ran with fresh parameters
// instead of loading them, or skipped the save, and said nothing.
TEST_F(EnccCli, EmptyPathsAreErrors) {
  const std::string run = "--layer ReLU --device cpu --input X=random:3";
  for (const std::string &args : {"eval " + run + " --out out --load-state ''", "eval " + run + " --out out --save-state ''",
                                  "eval " + run + " --out ''"})
    expectFailure(encc(args), {"the path is empty", "hint:"});
  for (const std::string &args :
       std::vector<std::string>{"eval '' " + run + " --out out", "emit '' --layer ReLU", "repl ''"})
    expectFailure(encc(args + " </dev/null"), {"the .enc file: the path is empty"});
  EXPECT_FALSE(fs::exists(path("out"))) << "nothing ran";
}

// A file without layers (empty, or only comments) has no names to list: the hint says so.
TEST_F(EnccCli, AFileWithoutLayersSaysSo) {
  std::ofstream(path("empty.enc")) << "# only a comment\n";
  CliResult r = encc("eval empty.enc --layer A --device cpu --input X=random:3 --out out");
  expectFailure(r, {"no layer named 'A'", "hint: the .enc source defines no layers"});
  EXPECT_FALSE(contains(r.err, "available layers")) << r;
}

// The default device on a machine without a CUDA driver is the CPU, quietly; asking for auto
// explicitly says when it falls back.
TEST_F(EnccCli, CpuFallbackIsMentionedOnlyWhenAutoIsAskedFor) {
  if (cuda::Driver::get()) GTEST_SKIP() << "a GPU is present: there is no fallback to mention";
  if (!contains(cuda::Driver::unavailableReason(), "no CUDA driver"))
    GTEST_SKIP() << "a CUDA driver is present but unusable, which is always mentioned: "
                 << cuda::Driver::unavailableReason();
  CliResult quiet = encc("eval --layer ReLU --input X=random:3 --out out");
  ASSERT_EQ(quiet.status, 0) << quiet;
  EXPECT_EQ(quiet.err, "") << quiet;
  CliResult asked = encc("eval --layer ReLU --input X=random:3 --device auto --out out");
  ASSERT_EQ(asked.status, 0) << asked;
  EXPECT_EQ(asked.err, "encc: no CUDA driver found, using the CPU\n") << asked;
  CliResult bench = encc("bench --layer ReLU --input X=random:3 --runs 1 --forward-only");
  EXPECT_FALSE(contains(bench.err, "using the CPU")) << bench;
}

// ENC_JIT_STATS=1 is the one line docs/runtime.md shows, however much LLVM has to say while it
// compiles (that is ENC_JIT_REMARKS=1).
TEST_F(EnccCli, JitStatsIsOneLine) {
  ScopedEnv stats("ENC_JIT_STATS", "1");
  CliResult r = encc("eval --layer SyncBatchNorm --set num_features=8 --device cpu --input X=random:4,8,16 "
                     "--grad Y=random:4,8,16 --out out");
  ASSERT_EQ(r.status, 0) << r;
  EXPECT_TRUE(std::regex_match(r.err, std::regex(R"(encc: cpu jit: [1-9][0-9]* compiled \([0-9.]+ s\), 0 from the )"
                                                 R"(disk cache \([0-9.]+ s\), [0-9]+ from memory\n)")))
      << r;
}

TEST_F(EnccCli, UnknownOptionAndMissingSubcommand) {
  CliResult bogus = encc("eval --bogus");
  EXPECT_EQ(bogus.status, 1) << bogus;
  EXPECT_TRUE(contains(bogus.err, "encc: error:")) << bogus;
  CliResult none = encc("");
  EXPECT_EQ(none.status, 1) << none;
  EXPECT_TRUE(contains(none.err, "encc: error:")) << none;
}

} // namespace
} // namespace enc
