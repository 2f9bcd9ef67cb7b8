// Unit tests of the compiler passes: AST lowering (softmax, mean, logsumexp expansion),
// reduction hoisting and sharing, pointwise inlining, specialization, and loop lowering for
// the CPU and the GPU.
#include "compiler/Autodiff.h"
#include "compiler/LoopIR.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/ReferenceInterpreter.h"
#include "compiler/HyperParams.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

using namespace enc;
using namespace enc::ir;

namespace {

// A checked one-layer program; throws CompileError (with the diagnostics) if it does not check.
struct Source {
  std::shared_ptr<const Library> lib;
  const LayerSymbols *layer = nullptr;
};

Source compile(const std::string &text) {
  Source s;
  s.lib = Library::fromSource("test.enc", text);
  std::vector<std::string> names = s.lib->layerNames();
  EXPECT_EQ(names.size(), 1u);
  s.layer = &s.lib->get(names.at(0));
  return s;
}

// A one-statement layer around `body`.
Source compileBody(const std::string &hyper, const std::string &signature, const std::string &body) {
  return compile("layer L(" + hyper + ") {\n  forward" + signature + " {\n    " + body + "\n  }\n}\n");
}

// A layer's fused forward and backward programs, as the runtime builds them.
Program forwardProgram(const LayerSymbols &layer, const std::map<std::string, Expr> &hyper = {}) {
  return Pipeline().forward(layer, hyper);
}
Gradient backwardOf(const LayerSymbols &layer, const Program &forward, const std::map<std::string, Expr> &hyper) {
  return Pipeline().backward(layer, forward, hyper);
}

const std::shared_ptr<const Library> &shipped() {
  static std::shared_ptr<const Library> lib = Library::shipped();
  return lib;
}

int64_t intOf(const Expr &e) {
  EXPECT_EQ(e->kind, ExprKind::IntImm) << print(e);
  return e->intValue;
}

std::string valueOf(const Program &p, const std::string &tensor) {
  const Definition *d = p.definitionOf(tensor);
  return d ? print(d->value) : "<no definition of " + tensor + ">";
}

std::vector<Expr> reductionsIn(const Expr &e) {
  std::vector<Expr> out;
  visit(e, [&](const Expr &n) {
    if (n->kind == ExprKind::Reduce) out.push_back(n);
    return true;
  });
  return out;
}

int countReduce(const Expr &e, ReduceOp op) {
  int n = 0;
  for (const Expr &r : reductionsIn(e)) n += r->reduceOp == op;
  return n;
}

bool hasCall(const Expr &e, const std::string &fn) {
  bool found = false;
  visit(e, [&](const Expr &n) {
    found |= n->kind == ExprKind::Call && n->name == fn;
    return true;
  });
  return found;
}

std::vector<std::string> defNames(const Program &p) {
  std::vector<std::string> out;
  for (const Definition &d : p.defs) out.push_back(d.tensor);
  return out;
}

// Every statement of a loop body, with its loop depth (0 = the kernel's outermost level).
void walkStmts(const Stmt &s, int depth, const std::function<void(const Stmt &, int)> &fn) {
  fn(s, depth);
  int inner = s->kind == StmtKind::For || s->kind == StmtKind::IfLaneZero ? depth + 1 : depth;
  for (const Stmt &c : s->body) walkStmts(c, inner, fn);
}

std::vector<Stmt> stmtsOf(const Kernel &k, StmtKind kind) {
  std::vector<Stmt> out;
  walkStmts(k.body, 0, [&](const Stmt &s, int) {
    if (s->kind == kind) out.push_back(s);
  });
  return out;
}

const Kernel *kernelFor(const LoopProgram &lp, const std::string &tensor) {
  for (const Kernel &k : lp.kernels)
    if (k.output == tensor) return &k;
  return nullptr;
}

// `p`'s tensor `output`, evaluated by the reference interpreter with `sizes` and those of `inputs`
// that `p` declares.
std::vector<double> evaluate(const Program &p, const std::map<std::string, double> &sizes,
                             const std::map<std::string, std::vector<double>> &inputs, const std::string &output) {
  ReferenceInterpreter in(p, sizes);
  for (const auto &[name, values] : inputs)
    if (p.tensor(name)) in.setTensor(name, values);
  in.run();
  return in.tensor(output);
}

// Deterministic values in [-1, 1).
size_t occurrences(const std::string &text, const std::string &what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::vector<double> data(size_t n, int seed) {
  std::vector<double> out;
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out.push_back((x % 2000) / 1000.0 - 1.0);
  }
  return out;
}

void expectNear(const std::vector<double> &a, const std::vector<double> &b, const std::string &what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12) << what << " at " << i;
}

// The fused program `p` of a layer gives the same outputs as its plain lowering, on inputs
// of the given sizes filled by data() (a seed per input, in order).
void expectSameAsPlain(const Source &s, const Program &p, const std::map<std::string, double> &sizes,
                       const std::vector<std::pair<std::string, size_t>> &inputs, const std::vector<std::string> &outs) {
  Program plain = hoistReductions(lowerLayer(*s.layer));
  for (const std::string &out : outs) {
    std::map<std::string, std::vector<double>> values;
    int seed = 1;
    for (const auto &[name, n] : inputs) values[name] = data(n, seed++);
    expectNear(evaluate(plain, sizes, values, out), evaluate(p, sizes, values, out), out + "\n" + printProgram(p));
  }
}

} // namespace

TEST(Passes, LowerExpandsSoftmax) {
  Program p = lowerLayer(shipped()->get("Softmax"));
  ASSERT_EQ(p.defs.size(), 1u);
  const Definition &d = p.defs[0];
  EXPECT_EQ(d.tensor, "Y");
  ASSERT_EQ(d.indices.size(), 3u);
  EXPECT_EQ(d.indices[1].name, "c");
  EXPECT_EQ(print(d.indices[1].extent), "C");
  // exp(x - max) / sum(exp(x - max)), with fresh names for the bound copies of c.
  EXPECT_EQ(print(d.value), "exp(X[b, c, l] - max(c_r1: X[b, c_r1, l])) / "
                            "sum(c_r2: exp(X[b, c_r2, l] - max(c_r1: X[b, c_r1, l])))");
  EXPECT_EQ(countReduce(d.value, ReduceOp::Max), 2);
  EXPECT_EQ(countReduce(d.value, ReduceOp::Sum), 1);
  EXPECT_FALSE(hasCall(d.value, "softmax"));
  EXPECT_EQ(freeIndexVars(d.value), (std::vector<std::string>{"b", "c", "l"}));
  EXPECT_EQ(printProgram(p), "layer Softmax\n"
                             "  input X[B, C, L]\n"
                             "  output Y[B, C, L]\n"
                             "  Y[b<B, c<C, l<L] = exp(X[b, c, l] - max(c_r1: X[b, c_r1, l])) / "
                             "sum(c_r2: exp(X[b, c_r2, l] - max(c_r1: X[b, c_r1, l])))\n");
}

TEST(Passes, LowerExpandsMeanAndLogsumexp) {
  Source mean = compileBody("", "(X: [B, H, W]) -> Y: [B]", "Y[b] = mean(h, w: X[b, h, w])");
  EXPECT_EQ(valueOf(lowerLayer(*mean.layer), "Y"), "sum(h, w: X[b, h, w]) / float(H * W)");

  Source one = compileBody("", "(X: [B, N]) -> Y: [B]", "Y[b] = mean(i: X[b, i]) * 2");
  EXPECT_EQ(valueOf(lowerLayer(*one.layer), "Y"), "sum(i: X[b, i]) / float(N) * 2.0");

  Source lse = compileBody("", "(X: [B, N]) -> Y: [B]", "Y[b] = logsumexp(i: X[b, i])");
  Program p = lowerLayer(*lse.layer);
  const Expr &v = p.definitionOf("Y")->value;
  EXPECT_EQ(print(v), "max(i: X[b, i]) + log(sum(i: exp(X[b, i] - max(i: X[b, i]))))");
  EXPECT_EQ(countReduce(v, ReduceOp::Max), 2);
  EXPECT_EQ(countReduce(v, ReduceOp::Sum), 1);

  Source guard = compileBody("", "(X: [N]) -> Y: [N]", "Y[i] = X[i] * 2 where i % 2 == 0");
  EXPECT_EQ(valueOf(lowerLayer(*guard.layer), "Y"), "select(i % 2 == 0, X[i] * 2.0, 0.0)");
}

TEST(Passes, LowerKeepsHyperParametersSymbolic) {
  Program p = lowerLayer(shipped()->get("Encoding"));
  EXPECT_EQ(defNames(p), (std::vector<std::string>{"R", "A", "Y"}));
  EXPECT_EQ(valueOf(p, "R"), "X[b, d, i] - codewords[k, d]");
  EXPECT_EQ(valueOf(p, "Y"), "sum(i: A[b, k, i] * R[b, i, k, d])");
  std::vector<std::string> sizes;
  for (const SizeParam &s : p.sizes) sizes.push_back(s.name);
  EXPECT_EQ(sizes, (std::vector<std::string>{"D", "K", "training", "distributed", "rng_seed", "B", "N"}));
  const TensorDecl *cw = p.tensor("codewords");
  ASSERT_NE(cw, nullptr);
  EXPECT_EQ(cw->role, TensorRole::Param);
  ASSERT_EQ(cw->shape.size(), 2u);
  EXPECT_EQ(cw->shape[0]->kind, ExprKind::Var);
  EXPECT_EQ(cw->shape[0]->varKind, VarKind::Size);
  EXPECT_EQ(p.namesWithRole(TensorRole::Temp), (std::vector<std::string>{"R", "A"}));

  Program lr = lowerLayer(shipped()->get("LeakyReLU"));
  const Expr &v = lr.definitionOf("Y")->value;
  EXPECT_EQ(print(v), "leaky_relu(X[i], negative_slope)");
  ASSERT_EQ(v->args.size(), 2u);
  EXPECT_EQ(v->args[1]->varKind, VarKind::Param);
  EXPECT_EQ(v->args[1]->type, Type::Float);
}

TEST(Passes, HoistLeavesOneReductionPerDefinition) {
  Program p = hoistReductions(lowerLayer(shipped()->get("Encoding")));
  for (const Definition &d : p.defs) {
    std::vector<Expr> rs = reductionsIn(d.value);
    EXPECT_LE(rs.size(), 1u) << d.tensor << " = " << print(d.value);
    // The one left is the definition's own: its free indices are the definition's indices.
    if (rs.size() == 1) {
      std::set<std::string> idx;
      for (const IndexVar &v : d.indices) idx.insert(v.name);
      std::vector<std::string> free = freeIndexVars(rs[0]);
      EXPECT_EQ(std::set<std::string>(free.begin(), free.end()), idx) << d.tensor;
    }
  }
  // ||x_i - c_k||^2 appears three times in the expanded softmax (in A[b, k, i]'s scope and
  // twice over k_r1 in scopes b, k, i, k_r1) and is computed once, laid out as A.
  std::vector<std::string> sumOverD;
  int maxOverK = 0;
  for (const Definition &d : p.defs)
    for (const Expr &r : reductionsIn(d.value)) {
      if (r->reduceOp == ReduceOp::Sum && r->rvars.size() == 1 && r->rvars[0].name == "d")
        sumOverD.push_back(d.tensor);
      if (r->reduceOp == ReduceOp::Max) ++maxOverK;
    }
  ASSERT_EQ(sumOverD.size(), 1u);
  EXPECT_EQ(maxOverK, 1);
  const TensorDecl *t = p.tensor(sumOverD[0]);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->role, TensorRole::Temp);
  ASSERT_EQ(t->shape.size(), 3u);
  EXPECT_EQ(print(t->shape[0]) + print(t->shape[1]) + print(t->shape[2]), "BKN");
  // A itself reads the shared temporaries and holds no reduction.
  const Definition *a = p.definitionOf("A");
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(containsReduce(a->value));
  EXPECT_EQ(print(a->value), "exp(scale[k] * " + sumOverD[0] + "[b, k, i] - A_max2[b, i]) / A_sum3[b, i]");
  EXPECT_EQ(valueOf(p, "A_max2"), "max(k_r1: scale[k_r1] * " + sumOverD[0] + "[b, k_r1, i])");
  EXPECT_EQ(valueOf(p, "A_sum3"),
            "sum(k_r2: exp(scale[k_r2] * " + sumOverD[0] + "[b, k_r2, i] - A_max2[b, i]))");
  // Y's own reduction stays in Y.
  EXPECT_EQ(valueOf(p, "Y"), "sum(i: A[b, k, i] * R[b, i, k, d])");
}

TEST(Passes, HoistSharesLogsumexpMax) {
  Source lse = compileBody("", "(X: [B, N]) -> Y: [B]", "Y[b] = logsumexp(i: X[b, i])");
  Program p = hoistReductions(lowerLayer(*lse.layer));
  // max(i: X[b, i]) occurs twice and is computed once; Y itself is pointwise.
  int maxDefs = 0;
  for (const Definition &d : p.defs) maxDefs += countReduce(d.value, ReduceOp::Max);
  EXPECT_EQ(maxDefs, 1);
  ASSERT_EQ(p.defs.size(), 3u);
  EXPECT_EQ(p.defs.back().tensor, "Y");
  EXPECT_FALSE(containsReduce(p.defs.back().value));
  EXPECT_EQ(print(p.defs.back().value), "Y_max1[b] + log(Y_sum2[b])");
  EXPECT_EQ(valueOf(p, "Y_sum2"), "sum(i: exp(X[b, i] - Y_max1[b]))");
}

// Sharing is only for equal reductions: -(2 ^ x) and (-2) ^ x differ.
TEST(Passes, HoistDoesNotShareDifferentReductions) {
  Source s =
      compileBody("", "(X: [B, N]) -> Y: [B]", "Y[b] = sum(i: (-2.0) ^ X[b, i]) - sum(i: -2.0 ^ X[b, i])");
  Program p = hoistReductions(lowerLayer(*s.layer));
  std::vector<std::string> bodies;
  for (const Definition &d : p.defs)
    for (const Expr &r : reductionsIn(d.value)) bodies.push_back(print(r));
  EXPECT_EQ(bodies.size(), 2u) << printProgram(p);
  // Y is not x - x.
  const Definition *y = p.definitionOf("Y");
  ASSERT_NE(y, nullptr);
  ASSERT_EQ(y->value->kind, ExprKind::Binary);
  EXPECT_FALSE(structurallyEqual(y->value->args[0], y->value->args[1])) << print(y->value);
}

// A temporary's name never repeats a tensor's: the layer's own (Y_sum1 here), or one an earlier
// run of the pass made (the backward pipeline hoists twice). A clash made a later reduction
// read the other tensor positionally: a crash, or silently wrong values.
TEST(Passes, HoistNamesAvoidExistingTensors) {
  Source s = compileBody("", "(X: [B, N]) -> Y: [B]",
                         "Y_sum1[b] = X[b, 0] * 2\n    Y[b] = sum(i: X[b, i]) * sum(i: X[b, i] * X[b, i]) + Y_sum1[b]");
  Program p = hoistReductions(hoistReductions(lowerLayer(*s.layer)));
  std::map<std::string, int> declared, defined;
  for (const TensorDecl &t : p.tensors) ++declared[t.name];
  for (const Definition &d : p.defs) ++defined[d.tensor];
  for (const auto &[name, n] : declared) EXPECT_EQ(n, 1) << name << "\n" << printProgram(p);
  for (const auto &[name, n] : defined) EXPECT_EQ(n, 1) << name << "\n" << printProgram(p);
  LayerOptions o;
  o.dtype = DType::F64;
  Layer layer(s.lib, "L", {}, o);
  Tensor x(DType::F64, {1, 3});
  for (int64_t i = 0; i < 3; ++i) x.set(i, static_cast<double>(i + 1));
  EXPECT_EQ(layer.forward({{"X", x}}).at("Y").at(0), 6.0 * 14.0 + 2.0);
}

TEST(Passes, InlinePointwiseRemovesResidualsKeepsSoftmax) {
  Program p = forwardProgram(shipped()->get("Encoding"));
  for (const Definition &d : p.defs) EXPECT_LT(d.indices.size(), 4u) << d.tensor << " = " << print(d.value);
  EXPECT_EQ(p.tensor("R"), nullptr);
  EXPECT_EQ(p.definitionOf("R"), nullptr);
  // The softmax weights are expensive and feed a reduction: stored, not recomputed per d.
  ASSERT_NE(p.definitionOf("A"), nullptr);
  EXPECT_EQ(p.tensor("A")->role, TensorRole::Temp);
  // The aggregation is distributed into a contraction and a plain sum (distributeSums).
  EXPECT_EQ(valueOf(p, "Y"), "sum(i: A[b, k, i] * X[b, d, i]) + codewords[k, d] * (-1.0 * Y_sum1[b, k])");
  EXPECT_EQ(valueOf(p, "Y_sum1"), "sum(i: A[b, k, i])");
  ASSERT_EQ(p.defs.size(), 6u);
  // The squared distances, read by A[b, k, i] itself and, over the softmax's k_r1, by its max
  // and its sum (scopes that list b, i before k), are one temporary laid out as A.
  EXPECT_EQ(p.defs[0].tensor, "A_sum1");
  EXPECT_EQ(print(p.defs[0].value), "sum(d: (X[b, d, i] - codewords[k_r1, d]) ^ 2.0)");
  ASSERT_EQ(p.defs[0].indices.size(), 3u);
  EXPECT_EQ(p.defs[0].indices[1].name, "k_r1");
  EXPECT_EQ(p.defs[0].indices[2].name, "i");
  EXPECT_EQ(valueOf(p, "A_max2"), "max(k_r1: scale[k_r1] * A_sum1[b, k_r1, i])");
  EXPECT_EQ(defNames(p), (std::vector<std::string>{"A_sum1", "A_max2", "A_sum3", "A", "Y_sum1", "Y"}));
}

TEST(Passes, InlinePointwiseRules) {
  // A cheap chain collapses into its consumer.
  Source cheap = compile("layer L() {\n"
                         "  forward(X: [N]) -> Y: [N] {\n"
                         "    T[i] = X[i] + 1\n"
                         "    U[i] = T[i] * 2\n"
                         "    Y[i] = U[i] - T[i]\n"
                         "  }\n"
                         "}\n");
  Program c = forwardProgram(*cheap.layer);
  EXPECT_EQ(defNames(c), (std::vector<std::string>{"Y"}));
  EXPECT_EQ(valueOf(c, "Y"), "(X[i] + 1.0) * 2.0 - (X[i] + 1.0)");
  EXPECT_EQ(c.namesWithRole(TensorRole::Temp), std::vector<std::string>{});

  // Expensive but consumed over the same domain, pointwise: recomputing costs nothing extra.
  Source same = compile("layer L() {\n"
                        "  forward(X: [N]) -> Y: [N] {\n"
                        "    T[i] = exp(X[i])\n"
                        "    Y[i] = T[i] * 2\n"
                        "  }\n"
                        "}\n");
  EXPECT_EQ(defNames(forwardProgram(*same.layer)), (std::vector<std::string>{"Y"}));

  // Expensive and consumed by a reduction: kept.
  Source red = compile("layer L() {\n"
                       "  forward(X: [B, N]) -> Y: [B] {\n"
                       "    T[b, i] = exp(X[b, i])\n"
                       "    Y[b] = sum(i: T[b, i])\n"
                       "  }\n"
                       "}\n");
  Program r = forwardProgram(*red.layer);
  EXPECT_EQ(defNames(r), (std::vector<std::string>{"T", "Y"}));
  EXPECT_EQ(valueOf(r, "Y"), "sum(i: T[b, i])");

  // Nobody reads it: dropped.
  Source dead = compile("layer L() {\n"
                        "  forward(X: [B, N]) -> Y: [B, N] {\n"
                        "    T[b] = sum(i: X[b, i])\n"
                        "    Y[b, i] = X[b, i]\n"
                        "  }\n"
                        "}\n");
  Program dp = forwardProgram(*dead.layer);
  EXPECT_EQ(defNames(dp), (std::vector<std::string>{"Y"}));
  EXPECT_EQ(dp.tensor("T"), nullptr);
}

TEST(Passes, SpecializeSubstitutesAndFolds) {
  Program p =
      specialize(forwardProgram(shipped()->get("Encoding")), {{"D", intImm(3)}, {"K", intImm(6)}});
  const TensorDecl *cw = p.tensor("codewords");
  ASSERT_NE(cw, nullptr);
  ASSERT_EQ(cw->shape.size(), 2u);
  EXPECT_EQ(intOf(cw->shape[0]), 6);
  EXPECT_EQ(intOf(cw->shape[1]), 3);
  const Definition *y = p.definitionOf("Y");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(print(y->indices[0].extent), "B");
  EXPECT_EQ(intOf(y->indices[1].extent), 6);
  EXPECT_EQ(intOf(y->indices[2].extent), 3);
  std::vector<std::string> left;
  for (const SizeParam &s : p.sizes) left.push_back(s.name);
  EXPECT_EQ(left, (std::vector<std::string>{"training", "rng_seed", "B", "N"}));
  // Extents inside reductions are specialized too.
  const Definition *s1 = p.definitionOf("A_sum1");
  ASSERT_NE(s1, nullptr);
  ASSERT_EQ(s1->value->kind, ExprKind::Reduce);
  EXPECT_EQ(intOf(s1->value->rvars[0].extent), 3);

  // Float and bool hyper-parameters, and integer arithmetic that folds away.
  Source src = compile("layer L(K: int, slope: float = 0.01, flip: bool = false) {\n"
                       "  forward(X: [N]) -> Y: [N] {\n"
                       "    Y[i] = select(flip, -X[i], leaky_relu(X[i], slope)) * (K * 2 - 1) + K // 2\n"
                       "  }\n"
                       "}\n");
  Program base = forwardProgram(*src.layer);
  Program q = specialize(base, {{"K", intImm(3)}, {"slope", floatImm(0.5)}, {"flip", boolImm(false)}});
  EXPECT_EQ(valueOf(q, "Y"), "leaky_relu(X[i], 0.5) * 5.0 + 1.0");
  Program unit = specialize(base, {{"K", intImm(1)}, {"flip", boolImm(true)}});
  EXPECT_EQ(valueOf(unit, "Y"), "-X[i]");
  // The unspecialized program is untouched.
  EXPECT_NE(valueOf(base, "Y").find("slope"), std::string::npos);
}

TEST(Passes, CpuLoopsParallelOuterSerialInner) {
  LoopProgram lp = lowerToLoops(forwardProgram(shipped()->get("Encoding")), Target::CPU);
  EXPECT_EQ(lp.target, Target::CPU);
  ASSERT_EQ(lp.kernels.size(), 6u);
  for (const Kernel &k : lp.kernels) {
    EXPECT_EQ(k.launch, ForKind::Parallel) << k.name;
    ASSERT_EQ(k.body->kind, StmtKind::For) << k.name;
    EXPECT_EQ(k.body->forKind, ForKind::Parallel) << k.name;
    EXPECT_EQ(print(k.launchExtent), "B") << k.name;
    EXPECT_EQ(k.buffers.at(0), k.output);
    walkStmts(k.body, 0, [&](const Stmt &s, int depth) {
      if (s->kind == StmtKind::For && depth > 0)
        EXPECT_TRUE(s->forKind == ForKind::Serial || s->forKind == ForKind::Unrolled ||
                    s->forKind == ForKind::Vectorized)
            << k.name << " " << s->name;
      EXPECT_NE(s->kind, StmtKind::WarpReduce) << k.name;
    });
    // Register-blocked contractions store their output from each kind of tile (full
    // blocks and remainders); the softmax's reductions over k, strided in A_sum1[b, k, i],
    // accumulate in their output row of i (set, then updated); the other kernels store once.
    bool tiled = !stmtsOf(k, StmtKind::Alloc).empty();
    bool rows = k.name.find("A_max2") != std::string::npos || k.name.find("A_sum3") != std::string::npos;
    if (!tiled) ASSERT_EQ(stmtsOf(k, StmtKind::Store).size(), rows ? 2u : 1u) << k.name;
  }
  // Contractions: a register tile of accumulators set to zero, updated in the reduction
  // loop (A[b, k, i] and X[b, d, i] both unit-stride along the reduction's i: a dot product,
  // 16 lanes along i for 4 x 4 outputs of k and d), summed across lanes and stored once.
  const Kernel *y = kernelFor(lp, "Y");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->buffers, (std::vector<std::string>{"Y", "A", "X", "codewords", "Y_sum1"}));
  std::vector<Stmt> allocs = stmtsOf(*y, StmtKind::Alloc);
  ASSERT_FALSE(allocs.empty());
  EXPECT_EQ(allocs[0]->name, "_acc");
  EXPECT_EQ(print(allocs[0]->value), "256");
  bool vectorizedI = false, unrolledK = false, unrolledD = false;
  walkStmts(y->body, 0, [&](const Stmt &s, int) {
    if (s->kind == StmtKind::For && s->forKind == ForKind::Vectorized && s->name == "i.l") vectorizedI = true;
    if (s->kind == StmtKind::For && s->forKind == ForKind::Unrolled && s->name == "k.i") unrolledK = true;
    if (s->kind == StmtKind::For && s->forKind == ForKind::Unrolled && s->name == "d.i") unrolledD = true;
  });
  EXPECT_TRUE(vectorizedI);
  EXPECT_TRUE(unrolledK);
  EXPECT_TRUE(unrolledD);
  std::string text = printStmt(y->body);
  EXPECT_NE(text.find("A[(b * K + (k.o * 4 + k.i)) * N + (i.o * 16 + i.l)] * X[(b * D + (d.o * 4 + d.i)) * N + (i.o * 16 + i.l)]"),
            std::string::npos)
      << text;
  // The max kernel starts from -inf, in its output row of i (k is strided in A_sum1).
  const Kernel *m = kernelFor(lp, "A_max2");
  ASSERT_NE(m, nullptr);
  std::string mt = printStmt(m->body);
  EXPECT_NE(mt.find("A_max2[b * N + i] = -inf"), std::string::npos) << mt;
  EXPECT_NE(mt.find("A_max2[b * N + i] = max(A_max2[b * N + i], "), std::string::npos) << mt;
  // A pointwise kernel has no accumulator.
  const Kernel *a = kernelFor(lp, "A");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(stmtsOf(*a, StmtKind::Let).empty());
}

TEST(Passes, GpuThreadsForPointwiseWarpsForReductions) {
  LoopProgram lp = lowerToLoops(forwardProgram(shipped()->get("Encoding")), Target::GPU);
  EXPECT_EQ(lp.target, Target::GPU);
  const Kernel *a = kernelFor(lp, "A");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->launch, ForKind::GpuThreads);
  ASSERT_EQ(a->body->kind, StmtKind::For);
  EXPECT_EQ(a->body->forKind, ForKind::GpuThreads);
  EXPECT_EQ(print(a->launchExtent), "B * K * N");
  EXPECT_EQ(stmtsOf(*a, StmtKind::For).size(), 1u);
  EXPECT_TRUE(stmtsOf(*a, StmtKind::WarpReduce).empty());

  for (const char *name : {"A_sum1", "A_max2", "A_sum3", "Y"}) {
    const Kernel *k = kernelFor(lp, name);
    ASSERT_NE(k, nullptr) << name;
    EXPECT_EQ(k->launch, ForKind::GpuWarps) << name;
    ASSERT_EQ(k->body->kind, StmtKind::For);
    EXPECT_EQ(k->body->forKind, ForKind::GpuWarps) << name;
    std::vector<Stmt> fors = stmtsOf(*k, StmtKind::For);
    ASSERT_EQ(fors.size(), 2u) << name;
    EXPECT_EQ(fors[1]->forKind, ForKind::GpuLanes) << name;
    std::vector<Stmt> wr = stmtsOf(*k, StmtKind::WarpReduce);
    ASSERT_EQ(wr.size(), 1u) << name;
    EXPECT_EQ(wr[0]->reduceOp, std::string(name) == "A_max2" ? ReduceOp::Max : ReduceOp::Sum) << name;
    // Only lane 0 writes the result.
    std::vector<Stmt> ifs = stmtsOf(*k, StmtKind::IfLaneZero);
    ASSERT_EQ(ifs.size(), 1u) << name;
    ASSERT_EQ(ifs[0]->body.size(), 1u);
    EXPECT_EQ(ifs[0]->body[0]->kind, StmtKind::Store);
  }
  EXPECT_EQ(print(kernelFor(lp, "Y")->launchExtent), "B * K * D");
}

// An element-wise kernel that reads something once per long row takes a row per block: batch
// norm's Y over [B, C, L] reads four per-channel values; GlobalAvgPool2d's gradient over
// [B, C, H, W] reads grad_Y[b, c] for a row of H * W elements (two dimensions, decoded in the
// row). Short rows, and rows nothing is read once for, keep the flat loop.
TEST(Passes, GpuRowsForLongRowsWithPerRowReads) {
  auto forwardLoops = [](const char *layer, std::map<std::string, std::string> settings,
                         std::map<std::string, int64_t> sizes, bool backward) {
    const LayerSymbols &sym = shipped()->get(layer);
    std::map<std::string, Expr> hyper = resolveHyperParams(sym, settings);
    hyper["training"] = boolImm(true);
    for (const auto &[n, v] : sizes) hyper[n] = intImm(v);
    Program p = forwardProgram(sym, hyper);
    if (backward) p = backwardOf(sym, p, hyper).program;
    return lowerToLoops(p, Target::GPU);
  };
  LoopProgram bn = forwardLoops("SyncBatchNorm", {{"num_features", "8"}}, {{"B", 4}, {"L", 1100}}, false);
  const Kernel *y = kernelFor(bn, "Y");
  ASSERT_NE(y, nullptr) << printLoops(bn);
  EXPECT_EQ(y->launch, ForKind::GpuRows) << printLoops(bn);
  EXPECT_EQ(print(y->launchExtent), "32");
  std::vector<Stmt> fors = stmtsOf(*y, StmtKind::For);
  ASSERT_EQ(fors.size(), 2u);
  EXPECT_EQ(fors[1]->forKind, ForKind::GpuRowThreads);
  EXPECT_EQ(fors[1]->name, "l");
  EXPECT_EQ(print(fors[1]->value), "1100");

  LoopProgram pool = forwardLoops("GlobalAvgPool2d", {}, {{"B", 2}, {"C", 3}, {"H", 16}, {"W", 32}}, true);
  const Kernel *gx = kernelFor(pool, "grad_X");
  ASSERT_NE(gx, nullptr) << printLoops(pool);
  EXPECT_EQ(gx->launch, ForKind::GpuRows) << printLoops(pool);
  EXPECT_EQ(print(gx->launchExtent), "6");
  fors = stmtsOf(*gx, StmtKind::For);
  ASSERT_EQ(fors.size(), 2u);
  EXPECT_EQ(fors[1]->name, "_e");
  EXPECT_EQ(print(fors[1]->value), "512");

  // 300 elements a row: not a whole number of blocks, nor several blocks long.
  LoopProgram shortRows = forwardLoops("SyncBatchNorm", {{"num_features", "8"}}, {{"B", 4}, {"L", 300}}, false);
  EXPECT_EQ(kernelFor(shortRows, "Y")->launch, ForKind::GpuThreads);
  // LeakyReLU reads nothing per row.
  LoopProgram leaky = forwardLoops("LeakyReLU", {}, {{"N", 4096}}, false);
  EXPECT_EQ(leaky.kernels[0].launch, ForKind::GpuThreads);
}

TEST(Passes, OutOfRangeAccessIsBoundsChecked) {
  Source s = compileBody("", "(X: [B, N]) -> Y: [B, N]", "Y[b, i] = X[b, i + 1] - X[b, i]");
  LoopProgram lp = lowerToLoops(forwardProgram(*s.layer), Target::CPU);
  ASSERT_EQ(lp.kernels.size(), 1u);
  std::vector<Stmt> stores = stmtsOf(lp.kernels[0], StmtKind::Store);
  ASSERT_EQ(stores.size(), 1u);
  EXPECT_EQ(print(stores[0]->index), "b * N + i");
  // i + 1 may reach N: read zero there, and clamp the address. X[b, i] needs no check.
  EXPECT_EQ(print(stores[0]->value),
            "select(i + 1 >= 0 && i + 1 < N, X[b * N + min(max(i + 1, 0), N - 1)], 0.0) - X[b * N + i]");

  LoopProgram gpu = lowerToLoops(forwardProgram(*s.layer), Target::GPU);
  std::vector<Stmt> gstores = stmtsOf(gpu.kernels[0], StmtKind::Store);
  ASSERT_EQ(gstores.size(), 1u);
  EXPECT_EQ(gstores[0]->value->kind, ExprKind::Binary);
  EXPECT_EQ(gstores[0]->value->args[0]->kind, ExprKind::Select);
}

TEST(Passes, PrintLoopsPointwise) {
  Source s = compile("layer Scale(alpha: float = 2.0) {\n"
                     "  forward(X: [B, C]) -> Y: [B, C] {\n"
                     "    Y[b, c] = X[b, c] * alpha\n"
                     "  }\n"
                     "}\n");
  Program p = forwardProgram(*s.layer);
  EXPECT_EQ(printLoops(lowerToLoops(p, Target::CPU)), "kernel k0_Y(Y, X; alpha, B, C)  # writes Y, line 3\n"
                                                      "  parallel for b in 0..B:\n"
                                                      "    for c in 0..C:\n"
                                                      "      Y[b * C + c] = X[b * C + c] * alpha\n");
  EXPECT_EQ(printLoops(lowerToLoops(p, Target::GPU)), "kernel k0_Y(Y, X; alpha, B, C)  # writes Y, line 3\n"
                                                      "  gpu_threads for _o in 0..B * C:\n"
                                                      "    let c: int = _o % C\n"
                                                      "    let b: int = _o / C\n"
                                                      "    Y[_o] = X[b * C + c] * alpha\n");
}

// (exp keeps the CPU loop plain: a sum the blocked code can widen becomes a dot-product tile.)
TEST(Passes, PrintLoopsReduction) {
  Source s = compile("layer RowSum() {\n"
                     "  forward(X: [B, N]) -> Y: [B] {\n"
                     "    Y[b] = sum(i: exp(X[b, i]))\n"
                     "  }\n"
                     "}\n");
  Program p = forwardProgram(*s.layer);
  LoopProgram cpu = lowerToLoops(p, Target::CPU);
  EXPECT_EQ(printLoops(cpu), "kernel k0_Y(Y, X; B, N)  # writes Y, line 3\n"
                             "  parallel for b in 0..B:\n"
                             "    let _acc: float = 0.0\n"
                             "    for i in 0..N:\n"
                             "      _acc = _acc + exp(X[b * N + i])\n"
                             "    Y[b] = _acc\n");
  LoopProgram gpu = lowerToLoops(p, Target::GPU);
  EXPECT_EQ(printLoops(gpu), "kernel k0_Y(Y, X; B, N)  # writes Y, line 3\n"
                             "  gpu_warps for _o in 0..B:\n"
                             "    let b: int = _o\n"
                             "    let _acc: float = 0.0\n"
                             "    gpu_lanes for _r in 0..N:\n"
                             "      let i: int = _r\n"
                             "      _acc = _acc + exp(X[b * N + i])\n"
                             "    _acc = warp_sum(_acc)\n"
                             "    if lane == 0:\n"
                             "      Y[_o] = _acc\n");
  // printStmt indents by the given level.
  EXPECT_EQ(printStmt(gpu.kernels[0].body->body.back(), 0), "if lane == 0:\n  Y[_o] = _acc\n");
  ASSERT_EQ(cpu.kernels[0].params.size(), 2u);
  EXPECT_EQ(cpu.kernels[0].params[1].name, "N");
  EXPECT_EQ(cpu.kernels[0].params[1].kind, VarKind::Size);
}

// Each stage computes what the unoptimized program computes, on the shipped layers.
TEST(Passes, StagesPreserveValues) {
  struct Case {
    const char *layer;
    std::map<std::string, double> sizes;
    std::map<std::string, size_t> inputs; // name -> element count
  };
  const Case cases[] = {
      {"Encoding", {{"D", 3}, {"K", 4}, {"B", 2}, {"N", 5}}, {{"X", 30}, {"codewords", 12}, {"scale", 4}}},
      {"GramMatrix", {{"B", 2}, {"C", 3}, {"H", 2}, {"W", 3}}, {{"X", 36}}},
      {"Softmax", {{"B", 2}, {"C", 4}, {"L", 3}}, {{"X", 24}}},
  };
  for (const Case &c : cases) {
    const LayerSymbols &l = shipped()->get(c.layer);
    Program lowered = lowerLayer(l);
    Program hoisted = hoistReductions(lowered);
    Program fused = inlinePointwise(hoisted);
    std::vector<std::vector<double>> results;
    for (const Program *p : {&lowered, &hoisted, &fused}) {
      std::map<std::string, std::vector<double>> values;
      int seed = 0;
      for (const auto &[name, n] : c.inputs) values[name] = data(n, ++seed);
      results.push_back(evaluate(*p, c.sizes, values, "Y"));
    }
    expectNear(results[0], results[1], std::string(c.layer) + ": hoistReductions");
    expectNear(results[0], results[2], std::string(c.layer) + ": inlinePointwise");
  }
  // A sanity check of the reference itself: softmax rows sum to one.
  std::vector<double> y =
      evaluate(lowerLayer(shipped()->get("Softmax")), {{"B", 1}, {"C", 4}, {"L", 1}}, {{"X", {0.5, -1, 2, 0}}}, "Y");
  EXPECT_NEAR(y[0] + y[1] + y[2] + y[3], 1.0, 1e-12);
  EXPECT_NEAR(y[2] / y[0], std::exp(1.5), 1e-12);
}

// An out-of-range read of a temporary gives 0 (zero padding) whether or not the temporary
// is stored: inlining T[i] = X[i] + 1 into T[i + 1] must not turn the padding into 0 + 1.
TEST(Passes, InliningKeepsZeroPaddingOfTemporaries) {
  for (const char *value : {"X[i] + 1", "exp(X[i])"}) {
    Source s = compile(std::string("layer L() {\n"
                                   "  forward(X: [N]) -> Y: [N] {\n"
                                   "    T[i] = ") +
                       value +
                       "\n"
                       "    Y[i] = T[i + 1] * 2\n"
                       "  }\n"
                       "}\n");
    Program stored = hoistReductions(lowerLayer(*s.layer));
    Program fused = forwardProgram(*s.layer);
    std::vector<double> ya = evaluate(stored, {{"N", 3}}, {{"X", {1, 2, 3}}}, "Y");
    ASSERT_EQ(ya.size(), 3u);
    EXPECT_EQ(ya[2], 0.0) << value; // T[3] is outside T
    expectNear(ya, evaluate(fused, {{"N", 3}}, {{"X", {1, 2, 3}}}, "Y"), std::string(value) + "\nfused: " + printProgram(fused));
  }
}

// Hoisting and fusion on programs that share, nest and guard reductions across definitions.
TEST(Passes, TrickyProgramsKeepTheirValues) {
  const char *programs[] = {
      // The same reductions in two definitions.
      "layer L() {\n"
      "  forward(X: [B, N]) -> (Y: [B, N], Z: [B, N]) {\n"
      "    Y[b, i] = X[b, i] - max(j: X[b, j])\n"
      "    Z[b, i] = X[b, i] / (sum(j: X[b, j] ^ 2) + 1) + max(j: X[b, j])\n"
      "  }\n"
      "}\n",
      // A reduction in the guard and the value; one nested in another, over the outer's index.
      "layer L() {\n"
      "  forward(X: [B, N], W: [N, M]) -> (Y: [B, N], Z: [B, N]) {\n"
      "    Y[b, i] = sum(j: X[b, j]) * X[b, i] where sum(j: X[b, j]) > 0\n"
      "    Z[b, i] = sum(k: X[b, k] * max(j: W[k, j])) + sum(k: X[b, k]) * sum(j: W[i, j])\n"
      "  }\n"
      "}\n",
      // Transposed uses of a cheap temporary inside a reduction, and a mean.
      "layer L() {\n"
      "  forward(X: [B, N]) -> (Y: [N, N], Z: [B, N]) {\n"
      "    T[b, i] = X[b, i] * 2 + 1\n"
      "    Y[i, j] = sum(b: T[b, i] * T[b, j])\n"
      "    Z[b, i] = T[b, i] - mean(j: T[b, j])\n"
      "  }\n"
      "}\n",
  };
  int n = 0;
  for (const char *text : programs) {
    ++n;
    Source s = compile(text);
    Program lowered = lowerLayer(*s.layer);
    Program hoisted = hoistReductions(lowered);
    Program fused = inlinePointwise(hoisted);
    for (const std::string &out : lowered.namesWithRole(TensorRole::Output)) {
      std::vector<std::vector<double>> results;
      for (const Program *p : {&lowered, &hoisted, &fused}) {
        results.push_back(evaluate(*p, {{"B", 2}, {"N", 3}, {"M", 4}}, {{"X", data(6, 1)}, {"W", data(12, 2)}}, out));
      }
      expectNear(results[0], results[1],
                 fmt::format("program {} {}: hoisted\n{}", n, out, printProgram(hoisted)));
      expectNear(results[0], results[2],
                 fmt::format("program {} {}: fused\n{}", n, out, printProgram(fused)));
    }
  }
}

// splitReductions cuts long reductions with few outputs into partial sums and a combine,
// and the result is the same (sum, max and mean; lengths that the chunks divide and don't).
TEST(Passes, SplitReductionsKeepValues) {
  const char *text = "layer L() {\n"
                     "  forward(X: [B, C, N]) -> (Y: [C], Z: [C], M: [C, B]) {\n"
                     "    Y[c] = sum(b, i: X[b, c, i]) / 2\n"
                     "    Z[c] = max(b, i: X[b, c, i] * 3)\n"
                     "    M[c, b] = mean(i: X[b, c, i])\n"
                     "  }\n"
                     "}\n";
  Source s = compile(text);
  for (int64_t n : {40, 37}) {
    std::map<std::string, double> sizes = {{"B", 3}, {"C", 2}, {"N", static_cast<double>(n)}};
    std::map<std::string, Expr> values = {{"B", intImm(3)}, {"C", intImm(2)}, {"N", intImm(n)}};
    Program p = specialize(forwardProgram(*s.layer), values);
    Program split = splitReductions(p, {.targetWarps = 16, .minChunk = 4});
    // Y and Z (2 outputs, 3n positions) and M (6 outputs, n positions) each get a partial.
    EXPECT_EQ(split.defs.size(), p.defs.size() + 3) << printProgram(split);
    ASSERT_TRUE(split.tensor("Y_part")) << printProgram(split);
    EXPECT_EQ(split.tensor("Y_part")->role, TensorRole::Temp);
    int64_t chunks = 0;
    ASSERT_TRUE(isConst(split.tensor("Y_part")->shape.back(), &chunks));
    EXPECT_EQ(chunks, 8); // 16 warps / 2 outputs
    std::vector<double> x = data(static_cast<size_t>(3 * 2 * n), 7);
    for (const char *out : {"Y", "Z", "M"}) {
      expectNear(evaluate(p, sizes, {{"X", x}}, out), evaluate(split, sizes, {{"X", x}}, out), std::string(out) + " n=" + std::to_string(n) + "\n" + printProgram(split));
    }
  }
  // Enough outputs already, a short reduction, or sizes still symbolic: unchanged.
  Program symbolic = forwardProgram(*s.layer);
  EXPECT_EQ(printProgram(splitReductions(symbolic, {.targetWarps = 16, .minChunk = 4})), printProgram(symbolic));
  Program small = specialize(symbolic, {{"B", intImm(2)}, {"C", intImm(2)}, {"N", intImm(3)}});
  EXPECT_EQ(printProgram(splitReductions(small, {.targetWarps = 16, .minChunk = 4})), printProgram(small));
  Program wide = specialize(symbolic, {{"B", intImm(2)}, {"C", intImm(64)}, {"N", intImm(300)}});
  EXPECT_EQ(printProgram(splitReductions(wide, {.targetWarps = 16, .minChunk = 4})), printProgram(wide));
}

// Sibling reductions over the same domains share one GPU kernel; a reduction that reads
// another's result (or a tensor defined between them) stays apart.
TEST(Passes, FuseSiblingReductionsMergesIndependentSums) {
  Source s = compile("layer L() {\n"
                     "  forward(X: [B, N], G: [B, N]) -> (S: [B], T: [B], U: [B], V: [B, N]) {\n"
                     "    S[b] = sum(i: X[b, i])\n"
                     "    T[b] = max(j: G[b, j] * X[b, j])\n"
                     "    U[b] = sum(i: X[b, i] - S[b])\n"
                     "    V[b, i] = X[b, i] * 2\n"
                     "  }\n"
                     "}\n");
  Program p = forwardProgram(*s.layer);
  LoopProgram fused = fuseSiblingReductions(lowerToLoops(p, Target::GPU));
  ASSERT_EQ(fused.kernels.size(), 3u) << printLoops(fused);
  const Kernel &k = fused.kernels[0];
  EXPECT_EQ(k.outputs, 2);
  EXPECT_EQ(k.buffers[0], "S");
  EXPECT_EQ(k.buffers[1], "T");
  std::string text = printLoops(fused);
  EXPECT_NE(text.find("_acc1 = max(_acc1, G[b * N + i] * X[b * N + i])"), std::string::npos) << text;
  EXPECT_NE(text.find("_acc1 = warp_max(_acc1)"), std::string::npos) << text;
  EXPECT_NE(text.find("T[_o] = _acc1"), std::string::npos) << text;
  EXPECT_EQ(fused.kernels[1].buffers[0], "U"); // reads S: not merged
  EXPECT_EQ(fused.kernels[1].outputs, 1);
  // The CPU's plain reduction loops merge the same way.
  LoopProgram cpu = fuseSiblingReductions(lowerToLoops(p, Target::CPU));
  ASSERT_EQ(cpu.kernels.size(), 3u) << printLoops(cpu);
  EXPECT_EQ(cpu.kernels[0].outputs, 2);
  std::string cpuText = printLoops(cpu);
  EXPECT_NE(cpuText.find("_acc1 = max(_acc1, G[b * N + i] * X[b * N + i])"), std::string::npos) << cpuText;
  EXPECT_NE(cpuText.find("T[b] = _acc1"), std::string::npos) << cpuText;
}

// A pointwise kernel over a warp reduction's outputs that reads them only at its own position
// becomes part of the reduction's lane-0 epilogue; one that reads another position, or
// iterates another domain, stays a kernel of its own.
TEST(Passes, FuseReductionEpiloguesMovesPerOutputKernelsIn) {
  Source s = compile("layer L() {\n"
                     "  forward(X: [B, N], W: [B]) -> (S: [B], M: [B], P: [B], Q: [B, N]) {\n"
                     "    S[b] = sum(i: X[b, i])\n"
                     "    M[b] = S[b] * 3 + W[b]\n"
                     "    P[b] = S[B - 1 - b] * 2\n"
                     "    Q[b, i] = X[b, i] * S[b]\n"
                     "  }\n"
                     "}\n");
  Program p = forwardProgram(*s.layer);
  LoopProgram loops = Pipeline().lower(p, {.target = Target::GPU});
  std::string text = printLoops(loops);
  ASSERT_EQ(loops.kernels.size(), 3u) << text;
  EXPECT_EQ(loops.kernels[0].outputs, 2) << text;
  EXPECT_EQ(loops.kernels[0].buffers[1], "M") << text;
  EXPECT_NE(text.find("      M[_o] = S[b_e1] * 3.0 + W[b_e1]"), std::string::npos) << text; // inside `if lane == 0`
  EXPECT_EQ(loops.kernels[1].buffers[0], "P") << text;
  EXPECT_EQ(loops.kernels[2].buffers[0], "Q") << text;
  // The CPU keeps its kernels.
  EXPECT_EQ(fuseReductionEpilogues(lowerToLoops(p, Target::CPU)).kernels.size(), 4u);
}

// distributeSums splits a sum over a difference only where that makes a contraction, and
// the values stay the same.
TEST(Passes, DistributeSumsMakesContractionsOnly) {
  Source s = compile("layer L() {\n"
                     "  forward(A: [B, N, K], X: [B, D, N], C: [K, D], M: [B, D]) -> (Y: [B, K, D], Z: [B, D]) {\n"
                     "    Y[b, k, d] = sum(i: A[b, i, k] * (X[b, d, i] - C[k, d])) * 2\n"
                     "    Z[b, d] = sum(i: (X[b, d, i] - M[b, d]) * X[b, d, i])\n"
                     "  }\n"
                     "}\n");
  Program p = forwardProgram(*s.layer);
  EXPECT_EQ(valueOf(p, "Y"), "(sum(i: A[b, i, k] * X[b, d, i]) + C[k, d] * (-1.0 * Y_sum1[b, k])) * 2.0") << printProgram(p);
  // Z's factors read the same outputs: no contraction to gain, the difference stays.
  EXPECT_EQ(valueOf(p, "Z"), "sum(i: (X[b, d, i] - M[b, d]) * X[b, d, i])");
  expectSameAsPlain(s, p, {{"B", 2}, {"N", 5}, {"K", 3}, {"D", 4}}, {{"A", 30}, {"X", 40}, {"C", 12}, {"M", 8}},
                    {"Y", "Z"});
}

// factorSums moves what does not read a sum's indices out of it; equal sums that remain are
// computed once; the values stay the same.
TEST(Passes, FactorSumsSharesWhatRemains) {
  Source s = compile("layer L() {\n"
                     "  forward(X: [B, C], W: [C], V: [C]) -> (Y: [C], Z: [C], P: [C]) {\n"
                     "    Y[c] = sum(b: W[c] * X[b, c] / (V[c] + 1))\n"
                     "    Z[c] = sum(b: -(X[b, c] * 2 * W[c]))\n"
                     "    P[c] = sum(b: X[b, c] * V[c] * X[b, c])\n"
                     "  }\n"
                     "}\n");
  Program p = forwardProgram(*s.layer);
  const std::string text = printProgram(p);
  EXPECT_EQ(occurrences(text, "sum("), 2u) << text; // sum(b: X[b, c]) once, and P's
  EXPECT_EQ(valueOf(p, "P"), "V[c] * sum(b: X[b, c] * X[b, c])") << text;
  expectSameAsPlain(s, p, {{"B", 5}, {"C", 3}}, {{"X", 15}, {"W", 3}, {"V", 3}}, {"Y", "Z", "P"});
}

// foldUnitIndices: an index of extent 1 is 0. Inspiration's gradient of P (read as P[0, k, c])
// then has no select left around its sum and is a contraction; a sum over an index of extent
// 1 is its one term; the values stay the same.
TEST(Passes, FoldUnitIndicesUncoversContractions) {
  const LayerSymbols &insp = shipped()->get("Inspiration");
  std::map<std::string, Expr> hyper = resolveHyperParams(insp, {{"C", "8"}});
  Program forward = forwardProgram(insp, hyper);
  Program grad = backwardOf(insp, forward, hyper).program;
  const Definition *gp = grad.definitionOf("grad_P");
  ASSERT_NE(gp, nullptr) << printProgram(grad);
  EXPECT_EQ(print(gp->value), "sum(n, h, w: grad_Y[n, j, h, w] * X[n, i, h, w])") << printProgram(grad);
  EXPECT_TRUE(isContraction(gp->value->args[0], {"t", "i", "j"}));

  Source s = compile("layer L() {\n"
                     "  forward(X: [B, N], P: [1, N], Q: [N, 1]) -> (Y: [1, N], Z: [N]) {\n"
                     "    Y[t, i] = sum(b: select(t == 0, X[b, i] * P[t, i], 0))\n"
                     "    Z[i] = sum(u: Q[i, u] * 3) + sum(b: X[b, i])\n"
                     "  }\n"
                     "}\n");
  Program p = forwardProgram(*s.layer);
  const std::string text = printProgram(p);
  EXPECT_EQ(valueOf(p, "Y"), "P[0, i] * Y_sum1[i]") << text; // the sum Z has too, computed once
  EXPECT_EQ(valueOf(p, "Y_sum1"), "sum(b: X[b, i])") << text;
  EXPECT_EQ(text.find("sum(u"), std::string::npos) << text;
  expectSameAsPlain(s, p, {{"B", 4}, {"N", 3}}, {{"X", 12}, {"P", 3}, {"Q", 3}}, {"Y", "Z"});
}

// The batch-norm gradient's four per-channel sums (of grad_var, grad_mu, grad_weight and
// grad_bias) have their per-channel factors outside (factorSums) and are two distinct sums,
// each computed once (hoistReductions). Then dropCenteredSums: a sum of X - m, m the mean of
// that X, is zero; one of another tensor minus m is not.
TEST(Passes, BatchNormGradientSumsAndCenteredSums) {
  const LayerSymbols &bn = shipped()->get("SyncBatchNorm");
  for (bool training : {true, false}) {
    std::map<std::string, Expr> hyper = resolveHyperParams(bn, {{"num_features", "4"}});
    hyper["training"] = boolImm(training);
    Program forward = forwardProgram(bn, hyper);
    Program grad = backwardOf(bn, forward, hyper).program;
    std::string text = printProgram(grad);
    EXPECT_EQ(occurrences(text, "sum("), 2u) << text;
    EXPECT_NE(text.find("sum(b, l: grad_Y[b, c, l])"), std::string::npos) << text;
    const char *centered = training ? "sum(b, l: grad_Y[b, c, l] * (X[b, c, l] - mu[c]))"
                                    : "sum(b, l: grad_Y[b, c, l] * (X[b, c, l] - running_mean[c]))";
    EXPECT_NE(text.find(centered), std::string::npos) << text;
  }
  // Against a forward program with m[c] = mean(b: W[b, c]): a sum of W - m is zero, a sum of
  // X - m is not.
  Source s = compile("layer L() {\n"
                     "  forward(X: [B, C], W: [B, C]) -> Y: [C] {\n"
                     "    m[c] = mean(b: W[b, c])\n"
                     "    Y[c] = m[c] * exp(m[c])\n"
                     "  }\n"
                     "}\n");
  Program f = forwardProgram(*s.layer);
  ASSERT_NE(f.definitionOf("m"), nullptr) << printProgram(f);
  auto idx = [](const char *n) { return var(n, Type::Int, VarKind::Index); };
  auto centeredOn = [&](const char *tensor) {
    Program g;
    g.tensors = f.tensors;
    Definition d;
    d.tensor = "Y";
    d.indices = {{"c", var("C", Type::Int, VarKind::Size)}};
    d.value = reduce(ReduceOp::Sum, {{"b2", var("B", Type::Int, VarKind::Size)}},
                     floatImm(3) * (access(tensor, {idx("b2"), idx("c")}) - access("m", {idx("c")})));
    g.defs.push_back(d);
    return g;
  };
  EXPECT_EQ(print(dropCenteredSums(centeredOn("W"), f).defs[0].value), "0.0");
  Program x = centeredOn("X");
  EXPECT_EQ(printProgram(dropCenteredSums(x, f)), printProgram(x));
}

// Each link of this chain reads the one before twice: inlining everything would double the
// expression with each of the 60 links. Fusion stops at a size bound, keeps some links stored,
// and the layer still computes Y = 1.5^60 X.
TEST(Passes, InliningStopsBeforeAChainExplodes) {
  std::string text = "layer Chain() {\n  forward(X: [N]) -> Y: [N] {\n    T0[i] = X[i]\n";
  for (int k = 1; k < 60; ++k) text += fmt::format("    T{}[i] = T{}[i] * 0.5 + T{}[i]\n", k, k - 1, k - 1);
  text += "    Y[i] = T59[i] * 0.5 + T59[i]\n  }\n}\n";
  Source s = compile(text);
  Program p = forwardProgram(*s.layer);
  EXPECT_GT(p.defs.size(), 1u) << "some links stay stored";
  Layer layer(s.lib, "Chain", {}, LayerOptions{DType::F64});
  Tensor x(DType::F64, {3});
  for (int64_t i = 0; i < 3; ++i) x.set(i, 0.25 * static_cast<double>(i + 1));
  Tensor y = layer.forward({{"X", x}}).at("Y");
  for (int64_t i = 0; i < 3; ++i) EXPECT_NEAR(y.at(i), std::pow(1.5, 60) * x.at(i), 1e-9 * std::pow(1.5, 60)) << i;
}

// ... but only to a loop whose iterations write apart: a loop over a reduction's chunks, each
// adding into the same outputs, would race.
TEST(Passes, CpuParallelismStaysOffLoopsThatAddIntoTheSameOutputs) {
  auto program = [](Expr index) {
    LoopProgram p;
    p.target = Target::CPU;
    Kernel k;
    k.name = "k0_Y";
    k.output = "Y";
    k.buffers = {"Y"};
    k.launch = ForKind::Parallel;
    k.launchExtent = intImm(1);
    Stmt add = store("Y", index, load("Y", index) + floatImm(1), SourceLoc{});
    k.body = forLoop("t", intImm(1), ForKind::Parallel, {forLoop("n", intImm(8), ForKind::Serial, {add})});
    p.kernels.push_back(k);
    return p;
  };
  LoopProgram same = moveParallelismInward(program(intImm(0)));
  EXPECT_EQ(same.kernels[0].body->name, "t") << printLoops(same);
  LoopProgram apart = moveParallelismInward(program(indexVar("n")));
  EXPECT_EQ(apart.kernels[0].body->name, "n") << printLoops(apart);
  EXPECT_EQ(apart.kernels[0].body->forKind, ForKind::Parallel);
}

// Inspiration's gradient grad_P[t < 1, i, j] splits its row blocks, not its one target: the
// tiler drops the unit index (t = 0) and runs parallel over chunks of rows of i; a parallel
// loop of one iteration left around a single loop hands the threads to that loop.
TEST(Passes, CpuParallelismMovesPastUnitLoops) {
  const LayerSymbols &insp = shipped()->get("Inspiration");
  std::map<std::string, Expr> hyper = resolveHyperParams(insp, {{"C", "128"}});
  hyper["training"] = boolImm(true);
  Program grad = backwardOf(insp, forwardProgram(insp, hyper), hyper).program;
  LoopProgram lp = moveParallelismInward(lowerToLoops(grad, Target::CPU));
  const Kernel *k = kernelFor(lp, "grad_P");
  ASSERT_NE(k, nullptr) << printLoops(lp);
  EXPECT_EQ(k->launch, ForKind::Parallel);
  EXPECT_EQ(k->body->forKind, ForKind::Parallel);
  EXPECT_EQ(k->body->name, "i.p") << printLoops(lp);
  EXPECT_EQ(print(k->launchExtent), "8");
  // The unit index is gone from the addresses (t = 0).
  EXPECT_EQ(printStmt(k->body).find("t *"), std::string::npos) << printStmt(k->body);
  // A loop of one iteration around several statements stays as it is.
  for (const Kernel &other : lp.kernels)
    if (other.body->kind == StmtKind::For && other.body->forKind == ForKind::Parallel && print(other.launchExtent) == "1")
      EXPECT_NE(other.body->body.size(), 1u) << other.name;
}
