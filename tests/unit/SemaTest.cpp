// Unit tests of semantic checks: name resolution and types written into the AST, index
// range inference, symbol tables, and the diagnostics for programs that do not check.
#include "dsl/Sema.h"
#include "dsl/Parser.h"
#include "runtime/Library.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace enc;
using ast::Expr;
using Ref = ast::Expr::Ref;
using Type = ast::Expr::Type;

namespace {

// Symbols point into the AST and the AST into its file: keep all of them together.
struct Checked {
  std::unique_ptr<SourceFile> file;
  DiagnosticEngine diags;
  ast::Module module;
  CheckedModule checked;
  const LayerSymbols &layer(size_t i = 0) const { return checked.layers.at(i); }
  const ast::Forward &forward(size_t i = 0) const { return *module.layers.at(i)->forward; }
};

std::unique_ptr<Checked> checkText(std::string text) {
  auto c = std::make_unique<Checked>();
  c->file = std::make_unique<SourceFile>("test.enc", std::move(text));
  c->module = parse(*c->file, c->diags);
  EXPECT_FALSE(c->diags.hasErrors()) << "syntax errors:\n" << c->diags.render();
  c->checked = check(c->module, c->diags);
  return c;
}

std::vector<std::string> messages(const DiagnosticEngine &d) {
  std::vector<std::string> out;
  for (const Diagnostic &x : d.diagnostics()) out.push_back(fmt::format("{}: {}", x.loc.line(), x.message));
  return out;
}

void walk(const Expr &e, const std::function<void(const Expr &)> &fn) {
  fn(e);
  for (const ast::ExprPtr &a : e.args) walk(*a, fn);
}

// Every node of a statement's value and guard, in pre-order.
std::vector<const Expr *> nodesOf(const ast::Statement &s) {
  std::vector<const Expr *> out;
  walk(*s.value, [&](const Expr &e) { out.push_back(&e); });
  if (s.guard) walk(*s.guard, [&](const Expr &e) { out.push_back(&e); });
  return out;
}

const Expr *findNode(const ast::Statement &s, Expr::Kind kind, const std::string &name, int nth = 0) {
  for (const Expr *e : nodesOf(s))
    if (e->kind == kind && e->name == name && nth-- == 0) return e;
  return nullptr;
}

const Expr *findBinary(const ast::Statement &s, const std::string &op) {
  for (const Expr *e : nodesOf(s))
    if (e->kind == Expr::Kind::Binary && e->op == op) return e;
  return nullptr;
}

std::string text(const Expr *e) { return e ? sizeText(*e) : "<none>"; }

std::vector<std::string> texts(const std::vector<const Expr *> &exprs) {
  std::vector<std::string> out;
  for (const Expr *e : exprs) out.push_back(text(e));
  return out;
}

std::vector<std::string> indexExtents(const ast::Statement &s) { return texts(s.indexExtents); }

std::vector<std::string> reduceExtents(const ast::Statement &s, const std::string &op, int nth = 0) {
  const Expr *r = findNode(s, Expr::Kind::Reduce, op, nth);
  EXPECT_NE(r, nullptr) << op;
  return r ? texts(r->varExtents) : std::vector<std::string>{"<no reduction>"};
}

using Strings = std::vector<std::string>;

} // namespace

TEST(Sema, ResolutionAnnotations) {
  auto c = checkText(
      "layer L(D: int, eps: float = 1e-5, act: {none, leaky_relu} = none, flag: bool = false) {\n"
      "  param w[D] = uniform(-1, 1)\n"
      "  forward(X: [B, D]) -> Y: [B, D] {\n"
      "    S = sum(b, d: X[b, d])\n"
      "    Y[b, d] = select(act == leaky_relu && !flag, X[b, d] * w[d] + eps, float(B + D + b)) - S\n"
      "  }\n"
      "}\n");
  ASSERT_FALSE(c->diags.hasErrors()) << c->diags.render();
  const ast::Layer &l = *c->module.layers[0];

  // Defaults are typed; an enum default names its position.
  EXPECT_EQ(l.hyperParams[1].defaultValue->type, Type::Float);
  EXPECT_EQ(l.hyperParams[2].defaultValue->ref, Ref::EnumValue);
  EXPECT_EQ(l.hyperParams[2].defaultValue->enumValue, 0);
  EXPECT_EQ(l.hyperParams[3].defaultValue->type, Type::Bool);
  // Shapes: a hyper-parameter and a size taken from an input.
  EXPECT_EQ(l.params[0].dims[0].size->ref, Ref::HyperParam);
  EXPECT_EQ(l.forward->inputs[0].dims[0].size->ref, Ref::SizeSymbol);
  EXPECT_EQ(l.forward->inputs[0].dims[1].size->ref, Ref::HyperParam);

  const ast::Statement &y = l.forward->statements[1];
  struct Want {
    Expr::Kind kind;
    const char *name;
    Ref ref;
    Type type;
  };
  const Want wants[] = {
      {Expr::Kind::Ident, "act", Ref::HyperParam, Type::Int},
      {Expr::Kind::Ident, "leaky_relu", Ref::EnumValue, Type::Int},
      {Expr::Kind::Ident, "flag", Ref::HyperParam, Type::Bool},
      {Expr::Kind::Ident, "eps", Ref::HyperParam, Type::Float},
      {Expr::Kind::Ident, "B", Ref::SizeSymbol, Type::Int},
      {Expr::Kind::Ident, "D", Ref::HyperParam, Type::Int},
      {Expr::Kind::Ident, "b", Ref::IndexVar, Type::Int},
      {Expr::Kind::Ident, "S", Ref::Tensor, Type::Float}, // a scalar temporary is used without []
      {Expr::Kind::Access, "X", Ref::Tensor, Type::Float},
      {Expr::Kind::Access, "w", Ref::Tensor, Type::Float},
      {Expr::Kind::Call, "select", Ref::None, Type::Float},
      {Expr::Kind::Call, "float", Ref::None, Type::Float},
  };
  for (const Want &w : wants) {
    const Expr *e = findNode(y, w.kind, w.name);
    ASSERT_NE(e, nullptr) << w.name;
    EXPECT_EQ(e->ref, w.ref) << w.name;
    EXPECT_EQ(e->type, w.type) << w.name;
  }
  EXPECT_EQ(findNode(y, Expr::Kind::Ident, "leaky_relu")->enumValue, 1);
  // Index variables of the left side, and inside the reduction of S.
  for (const ast::ExprPtr &ix : y.indices) {
    EXPECT_EQ(ix->ref, Ref::IndexVar);
    EXPECT_EQ(ix->type, Type::Int);
  }
  const ast::Statement &s = l.forward->statements[0];
  EXPECT_EQ(findNode(s, Expr::Kind::Ident, "d")->ref, Ref::IndexVar);
  EXPECT_EQ(findNode(s, Expr::Kind::Reduce, "sum")->type, Type::Float);
  // Operator types.
  EXPECT_EQ(findBinary(y, "==")->type, Type::Bool);
  EXPECT_EQ(findBinary(y, "&&")->type, Type::Bool);
  EXPECT_EQ(findBinary(y, "*")->type, Type::Float);
  EXPECT_EQ(findBinary(y, "+")->type, Type::Float); // X * w + eps
  EXPECT_EQ(y.value->type, Type::Float);
  const Expr *sizes = findNode(y, Expr::Kind::Call, "float")->args[0].get();
  EXPECT_EQ(sizes->type, Type::Int); // B + D + b
}

TEST(Sema, ShippedLayerRanges) {
  auto lib = Library::shipped();
  {
    const ast::Forward &f = *lib->get("Encoding").layer->forward;
    ASSERT_EQ(f.statements.size(), 3u);
    EXPECT_EQ(indexExtents(f.statements[0]), (Strings{"B", "N", "K", "D"}));
    EXPECT_EQ(indexExtents(f.statements[1]), (Strings{"B", "K", "N"}));
    EXPECT_EQ(reduceExtents(f.statements[1], "softmax"), (Strings{"K"}));
    EXPECT_EQ(reduceExtents(f.statements[1], "sum"), (Strings{"D"}));
    EXPECT_EQ(indexExtents(f.statements[2]), (Strings{"B", "K", "D"}));
    EXPECT_EQ(reduceExtents(f.statements[2], "sum"), (Strings{"N"}));
  }
  {
    const ast::Forward &f = *lib->get("GramMatrix").layer->forward;
    EXPECT_EQ(indexExtents(f.statements[0]), (Strings{"B", "C", "C"}));
    EXPECT_EQ(reduceExtents(f.statements[0], "sum"), (Strings{"H", "W"}));
  }
  {
    const ast::Forward &f = *lib->get("Softmax").layer->forward;
    EXPECT_EQ(indexExtents(f.statements[0]), (Strings{"B", "C", "L"}));
    EXPECT_EQ(reduceExtents(f.statements[0], "softmax"), (Strings{"C"}));
  }
  EXPECT_EQ(indexExtents(lib->get("LeakyReLU").layer->forward->statements[0]), (Strings{"N"}));
  EXPECT_EQ(indexExtents(lib->get("ReLU").layer->forward->statements[0]), (Strings{"N"}));
}

TEST(Sema, SmallProgramRanges) {
  auto c = checkText("layer L(C: int) {\n"
                     "  forward(X: [B, C * 2], Z: [H]) -> (Y: [B], V: [H], W: [B, C]) {\n"
                     "    T[b, j] = X[b, j] * 2\n"
                     "    Y[b] = sum(j: T[b, j]) + max(h: Z[h])\n"
                     "    V[h] = X[0, 2 * h] where h < C\n"
                     "    W[b, c] = 1.0\n"
                     "  }\n"
                     "}\n");
  ASSERT_FALSE(c->diags.hasErrors()) << c->diags.render();
  const ast::Forward &f = c->forward();
  EXPECT_EQ(indexExtents(f.statements[0]), (Strings{"B", "C * 2"}));
  EXPECT_EQ(indexExtents(f.statements[1]), (Strings{"B"}));
  EXPECT_EQ(reduceExtents(f.statements[1], "sum"), (Strings{"C * 2"}));
  EXPECT_EQ(reduceExtents(f.statements[1], "max"), (Strings{"H"}));
  // Index arithmetic does not constrain; the output's declared shape does.
  EXPECT_EQ(indexExtents(f.statements[2]), (Strings{"H"}));
  EXPECT_EQ(indexExtents(f.statements[3]), (Strings{"B", "C"}));
  // The temporary's shape is the extents of its indices.
  const TensorSymbol *t = c->layer().find("T");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->role, TensorRole::Temp);
  EXPECT_EQ(texts(t->shape), (Strings{"B", "C * 2"}));
}

TEST(Sema, UninferableRanges) {
  auto c = checkText("layer L() {\n"
                     "  forward(X: [N]) -> Y: [N] {\n"
                     "    T[h] = X[2 * h]\n"
                     "    Y[i] = X[i] + sum(j: float(j))\n"
                     "  }\n"
                     "}\n");
  EXPECT_EQ(messages(c->diags), (Strings{"3: cannot infer the range of index 'h'",
                                         "4: cannot infer the range of reduction index 'j'"}));
}

TEST(Sema, ConflictingRanges) {
  auto c = checkText("layer L() {\n"
                     "  forward(X: [B, C], Z: [B, D]) -> Y: [B, C] {\n"
                     "    Y[b, c] = X[b, c] + Z[b, c] * Z[b, c]\n"
                     "  }\n"
                     "}\n");
  // Reported once, however often the index is used again.
  ASSERT_EQ(c->diags.diagnostics().size(), 1u) << c->diags.render();
  const Diagnostic &d = c->diags.diagnostics()[0];
  EXPECT_EQ(d.message,
            "conflicting ranges for index 'c': dimension 1 of 'Z' is D, but dimension 1 of output 'Y' is C");
  EXPECT_EQ(d.loc.line(), 3);
  EXPECT_EQ(d.loc.col(), 30); // the 'c' in the first Z[b, c]
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_EQ(d.notes[0].second, "'c' got its range here");
  EXPECT_EQ(d.notes[0].first.line(), 2);

  // Inside a reduction too, and between two tensors on the right side.
  auto r = checkText("layer L() {\n"
                     "  forward(X: [B, N], Z: [B, M]) -> Y: [B] {\n"
                     "    Y[b] = sum(i: X[b, i] * Z[b, i])\n"
                     "  }\n"
                     "}\n");
  EXPECT_EQ(
      messages(r->diags),
      (Strings{"3: conflicting ranges for index 'i': dimension 1 of 'Z' is M, but dimension 1 of 'X' is N"}));
}

// Reductions scope their index (nesting the same name is an error), so two sibling
// reductions that reuse a name bind two different variables with their own ranges.
TEST(Sema, SiblingReductionsHaveIndependentRanges) {
  auto c = checkText("layer L() {\n"
                     "  forward(X: [B, N], Z: [B, M]) -> Y: [B] {\n"
                     "    Y[b] = sum(i: X[b, i]) + sum(i: Z[b, i])\n"
                     "  }\n"
                     "}\n");
  EXPECT_FALSE(c->diags.hasErrors()) << c->diags.render();
  const ast::Statement &s = c->forward().statements[0];
  EXPECT_EQ(reduceExtents(s, "sum", 0), (Strings{"N"}));
  EXPECT_EQ(reduceExtents(s, "sum", 1), (Strings{"M"}));

  // A sibling must not lend its range to an index that has none of its own.
  auto u = checkText("layer L() {\n"
                     "  forward(X: [B, N]) -> Y: [B] {\n"
                     "    Y[b] = sum(i: X[b, i]) + sum(i: float(i))\n"
                     "  }\n"
                     "}\n");
  EXPECT_EQ(messages(u->diags), (Strings{"3: cannot infer the range of reduction index 'i'"}));
}

TEST(Sema, VariadicInputs) {
  auto lib = Library::shipped();
  const LayerSymbols &enc = lib->get("Encoding");
  const TensorSymbol *x = enc.find("X");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->role, TensorRole::Input);
  EXPECT_TRUE(x->variadic);
  EXPECT_EQ(texts(x->shape), (Strings{"B", "D", "N"}));
  ASSERT_EQ(enc.sizes.size(), 2u); // D is a hyper-parameter, not a size
  EXPECT_EQ(enc.sizes[0].name, "B");
  EXPECT_EQ(enc.sizes[0].input, "X");
  EXPECT_EQ(enc.sizes[0].dim, 0);
  EXPECT_EQ(enc.sizes[1].name, "N");
  EXPECT_EQ(enc.sizes[1].dim, 2);
  EXPECT_FALSE(enc.find("codewords")->variadic);

  const LayerSymbols &relu = lib->get("LeakyReLU");
  EXPECT_TRUE(relu.find("X")->variadic);
  EXPECT_EQ(texts(relu.find("X")->shape), (Strings{"N"}));
  EXPECT_TRUE(relu.find("Y")->variadic); // Y: [N...] expands back to X's shape

  auto reused = checkText("layer L() {\n"
                          "  forward(X: [B, N...], Z: [N...]) -> Y: [B] {\n"
                          "    Y[b] = X[b, 0]\n"
                          "  }\n"
                          "}\n");
  EXPECT_EQ(messages(reused->diags), (Strings{"2: variadic size 'N' must not appear in another shape"}));

  auto hyper = checkText("layer L(D: int) {\n"
                         "  forward(X: [B, D...]) -> Y: [B] {\n"
                         "    Y[b] = X[b, 0]\n"
                         "  }\n"
                         "}\n");
  EXPECT_EQ(messages(hyper->diags),
            (Strings{"2: '...' must follow a fresh size name, not a hyper-parameter or expression"}));
}

TEST(Sema, SymbolsOfEncoding) {
  auto lib = Library::shipped();
  const LayerSymbols &enc = lib->get("Encoding");
  const ast::Forward &f = *enc.layer->forward;
  struct Want {
    const char *name;
    TensorRole role;
    Strings shape;
    const ast::Statement *definition;
  };
  const Want wants[] = {
      {"codewords", TensorRole::Param, {"K", "D"}, nullptr},
      {"scale", TensorRole::Param, {"K"}, nullptr},
      {"X", TensorRole::Input, {"B", "D", "N"}, nullptr},
      {"Y", TensorRole::Output, {"B", "K", "D"}, &f.statements[2]},
      {"R", TensorRole::Temp, {"B", "N", "K", "D"}, &f.statements[0]},
      {"A", TensorRole::Temp, {"B", "K", "N"}, &f.statements[1]},
  };
  EXPECT_EQ(enc.tensors.size(), std::size(wants));
  for (const Want &w : wants) {
    const TensorSymbol *t = enc.find(w.name);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_EQ(t->role, w.role) << w.name;
    EXPECT_EQ(texts(t->shape), w.shape) << w.name;
    EXPECT_EQ(t->definition, w.definition) << w.name;
  }
  // Temporaries come after every declared tensor, in definition order.
  auto pos = [&](const char *n) { return enc.find(n) - enc.tensors.data(); };
  EXPECT_GT(pos("R"), pos("Y"));
  EXPECT_GT(pos("A"), pos("R"));
  EXPECT_EQ(enc.hyperParam("K")->name.text, "K");
  EXPECT_EQ(enc.hyperParam("X"), nullptr);
  EXPECT_EQ(enc.find("nope"), nullptr);
}

TEST(Sema, OutputDefinitions) {
  auto c = checkText("layer L() {\n"
                     "  forward(X: [N]) -> (Y: [N], Z: [N]) {\n"
                     "    Y[i] = X[i]\n"
                     "  }\n"
                     "}\n");
  EXPECT_EQ(messages(c->diags), (Strings{"2: output 'Z' is never defined"}));
  EXPECT_EQ(c->layer().find("Y")->definition, &c->forward().statements[0]);
  EXPECT_EQ(c->layer().find("Z")->definition, nullptr);

  auto dims = checkText("layer L() {\n"
                        "  forward(X: [N]) -> Y: [N] {\n"
                        "    Y[i, j] = X[i]\n"
                        "  }\n"
                        "}\n");
  ASSERT_FALSE(dims->diags.diagnostics().empty());
  EXPECT_EQ(dims->diags.diagnostics()[0].message,
            "output 'Y' is declared with 1 dimension but defined with 2 indices");
}

TEST(Sema, DefinitionErrors) {
  auto c = checkText("layer L(K: int) {\n"
                     "  forward(X: [N]) -> Y: [N] {\n"
                     "    T[i] = T[i] + X[i]\n"         // 3
                     "    U[i] = Y[i] + X[i]\n"         // 4
                     "    Y[i] = X[i]\n"                // 5
                     "    Y[i] = X[i] * 2\n"            // 6
                     "    V[i] = X[i] / 2 + X[i / 2]\n" // 7
                     "    W[i] = sum(i: X[i])\n"        // 8
                     "    Q[i] = X[i] + q\n"            // 9
                     "  }\n"
                     "}\n");
  EXPECT_EQ(messages(c->diags), (Strings{
                                    "3: 'T' is used in its own definition",
                                    "4: 'Y' is used before it is defined",
                                    "6: 'Y' is defined twice",
                                    "7: index 1 of 'X' is a float, not an integer",
                                    "8: index 'i' of sum(i: ...) is also a free index of 'W'",
                                    "9: unknown name 'q'",
                                }));

  // softmax normalizes over an index of the left side.
  auto s = checkText("layer L() {\n"
                     "  forward(X: [N]) -> Y: [N] {\n"
                     "    Y[i] = softmax(j: X[i])\n"
                     "  }\n"
                     "}\n");
  ASSERT_FALSE(s->diags.diagnostics().empty());
  EXPECT_EQ(s->diags.diagnostics()[0].message,
            "softmax(j: ...) normalizes over a free index, but 'j' is not on the left side of 'Y'");
}

TEST(Sema, DuplicateLayerAndNames) {
  auto c = checkText("layer L(D: int, D: int) {\n"
                     "  forward(X: [N]) -> Y: [N] {\n"
                     "    Y[i] = X[i]\n"
                     "  }\n"
                     "}\n"
                     "layer L() {\n"
                     "  forward(X: [N]) -> Y: [N] {\n"
                     "    Y[i] = X[i]\n"
                     "  }\n"
                     "}\n");
  EXPECT_EQ(messages(c->diags), (Strings{"1: hyper-parameter 'D' reuses a name already declared in layer 'L'",
                                         "6: layer 'L' is defined twice"}));
  EXPECT_EQ(c->checked.layers.size(), 2u);
}

namespace {

// recover X[...] = ... where cond: X is an input or an intermediate defined before, shaped as
// declared; the value does not read X; the condition is a condition; only in forward blocks.
TEST(Sema, Recoveries) {
  auto ok = checkText(R"(layer L(on: bool = true) {
  forward(X: [B, C]) -> Y: [B, C] {
    T[b, c] = X[b, c] * 2
    Y[b, c] = T[b, c] + 1
    recover X[b, c] = (Y[b, c] - 1) / 2 where on
    recover T[b, c] = Y[b, c] - 1
  }
}
)");
  EXPECT_FALSE(ok->diags.hasErrors()) << ok->diags.render();
  ASSERT_EQ(ok->layer().recoveries.size(), 2u);
  EXPECT_EQ(ok->layer().recoveries[0]->target.text, "X");
  ASSERT_TRUE(ok->layer().find("X"));
  EXPECT_EQ(ok->layer().find("X")->role, TensorRole::Input); // still the input, not redefined

  auto bad = checkText(R"(layer L() {
  param w[4] = ones
  forward(X: [B, 4]) -> Y: [B, 4] {
    Y[b, c] = X[b, c] * w[c]
    recover Q[b, c] = Y[b, c]
    recover w[c] = 1
    recover Y[b, c] = X[b, c]
    recover X[b] = Y[b, 0]
    recover X[b, c] = X[b, c] + Y[b, c]
    recover X[b, c] = Y[b, c] where 3
  }
  backward {
    recover X[b, c] = grad_Y[b, c]
    grad_X[b, c] = grad_Y[b, c]
    grad_w[c] = 0
  }
}
)");
  std::vector<std::string> m = messages(bad->diags);
  auto has = [&](const std::string &text) {
    return std::any_of(m.begin(), m.end(), [&](const std::string &s) { return s.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(has("5: only an input or an intermediate defined before can be recovered; 'Q' is not one")) << bad->diags.render();
  EXPECT_TRUE(has("6: only an input or an intermediate defined before can be recovered; 'w' is")) << bad->diags.render();
  EXPECT_TRUE(has("7: only an input or an intermediate defined before can be recovered; 'Y' is")) << bad->diags.render();
  EXPECT_TRUE(has("8: recovered tensor 'X' is declared with 2 dimensions but defined with 1 index")) << bad->diags.render();
  EXPECT_TRUE(has("9: the recovery of 'X' reads 'X' itself")) << bad->diags.render();
  EXPECT_TRUE(has("10: a 'where' guard must be a condition")) << bad->diags.render();
  EXPECT_TRUE(has("13: tensors are recovered in the forward block, not in backward")) << bad->diags.render();
}

// A backward block's temporary named like a gradient (grad_Q for no input or parameter Q) is
// most likely a misspelt gradient: a warning at it; the gradients themselves are no warning.
TEST(Sema, BackwardTemporaryNamedLikeAGradientIsAWarning) {
  auto c = checkText(R"(layer L() {
  forward(X: [B]) -> Y: [B] {
    Y[b] = X[b] * 2
  }
  backward {
    grad_X[b] = grad_Y[b] * 2
    grad_Q[b] = grad_Y[b]
    t[b]: [B] = grad_Y[b]
  }
}
)");
  EXPECT_FALSE(c->diags.hasErrors()) << c->diags.render();
  EXPECT_EQ(messages(c->diags),
            (std::vector<std::string>{"7: 'grad_Q' is no input's or parameter's gradient: a temporary of the backward block"}));
}

} // namespace
