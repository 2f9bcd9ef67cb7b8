// Unit tests of the .enc parser: the shape of the syntax tree, operator precedence and
// associativity, reductions versus calls, and error recovery.
#include "dsl/Parser.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

using namespace enc;
using ast::Expr;

namespace {

// The AST points into its SourceFile, so the file lives as long as the module.
struct Parsed {
  std::unique_ptr<SourceFile> file;
  DiagnosticEngine diags;
  ast::Module module;
};

std::unique_ptr<Parsed> parseText(std::string text) {
  auto p = std::make_unique<Parsed>();
  p->file = std::make_unique<SourceFile>("test.enc", std::move(text));
  p->module = parse(*p->file, p->diags);
  return p;
}

// Fully parenthesized prefix form, so a test sees the tree and not just its printed text.
std::string tree(const Expr &e) {
  auto list = [](const std::vector<ast::ExprPtr> &args, const char *sep) {
    std::string out;
    for (size_t i = 0; i < args.size(); ++i) out += (i ? sep : "") + tree(*args[i]);
    return out;
  };
  switch (e.kind) {
  case Expr::Kind::IntLit: return std::to_string(e.intValue);
  case Expr::Kind::FloatLit: return fmt::format("{}f", e.floatValue);
  case Expr::Kind::BoolLit: return e.boolValue ? "true" : "false";
  case Expr::Kind::Ident: return e.name;
  case Expr::Kind::Access: return e.name + "[" + list(e.args, " ") + "]";
  case Expr::Kind::Call: return "(call " + e.name + (e.args.empty() ? "" : " ") + list(e.args, " ") + ")";
  case Expr::Kind::Reduce: {
    std::string vars;
    for (const ast::Name &v : e.vars) vars += " " + v.text;
    return "(" + e.name + vars + ": " + tree(*e.args[0]) + ")";
  }
  case Expr::Kind::Unary: return "(" + e.op + " " + tree(*e.args[0]) + ")";
  case Expr::Kind::Binary: return "(" + e.op + " " + tree(*e.args[0]) + " " + tree(*e.args[1]) + ")";
  }
  return "?";
}

// Parses `expr` as the value of a statement in a minimal layer.
struct ParsedExpr {
  std::unique_ptr<Parsed> parsed;
  const Expr *expr = nullptr;
};

ParsedExpr parseExpr(const std::string &expr) {
  ParsedExpr out;
  out.parsed = parseText("layer L() {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = " + expr + "\n  }\n}\n");
  EXPECT_FALSE(out.parsed->diags.hasErrors()) << expr << "\n" << out.parsed->diags.render();
  const ast::Module &m = out.parsed->module;
  if (m.layers.size() == 1 && m.layers[0]->forward && m.layers[0]->forward->statements.size() == 1)
    out.expr = m.layers[0]->forward->statements[0].value.get();
  EXPECT_NE(out.expr, nullptr) << expr;
  return out;
}

std::string treeOf(const std::string &expr) {
  ParsedExpr p = parseExpr(expr);
  return p.expr ? tree(*p.expr) : "<no parse>";
}

// "line: message" in source order (the lexer reports a whole file before the parser starts).
std::vector<std::string> messages(const DiagnosticEngine &d) {
  std::vector<const Diagnostic *> sorted;
  for (const Diagnostic &x : d.diagnostics()) sorted.push_back(&x);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Diagnostic *a, const Diagnostic *b) { return a->loc.offset < b->loc.offset; });
  std::vector<std::string> out;
  for (const Diagnostic *x : sorted) out.push_back(fmt::format("{}: {}", x->loc.line(), x->message));
  return out;
}

} // namespace

TEST(Parser, LayerDeclarations) {
  auto p =
      parseText("layer Norm(C: int, eps: float = 1e-5, affine: bool = true, act: {none, leaky_relu} = none,\n"
                "           k: int = 3, slope: float = -0.5) {\n"
                "  param weight[C] = ones\n"
                "  param bias[C] = uniform(-1, 1)\n"
                "  buffer running[C, 2 * k] = zeros\n"
                "  forward(X: [B, C, L...], M: [B]) -> (Y: [B, C, L], S: [C]) {\n"
                "    Y[b, c, l] = X[b, c, l] * weight[c] where c < C\n"
                "    S[c] = sum(b, l: X[b, c, l])\n"
                "  }\n"
                "}\n");
  ASSERT_FALSE(p->diags.hasErrors()) << p->diags.render();
  ASSERT_EQ(p->module.layers.size(), 1u);
  const ast::Layer &l = *p->module.layers[0];
  EXPECT_EQ(l.name.text, "Norm");
  EXPECT_EQ(l.loc.line(), 1);
  EXPECT_EQ(l.loc.col(), 1);

  using K = ast::HyperParamType::Kind;
  ASSERT_EQ(l.hyperParams.size(), 6u);
  EXPECT_EQ(l.hyperParams[0].name.text, "C");
  EXPECT_EQ(l.hyperParams[0].type.kind, K::Int);
  EXPECT_EQ(l.hyperParams[0].defaultValue, nullptr);
  EXPECT_EQ(l.hyperParams[1].type.kind, K::Float);
  ASSERT_NE(l.hyperParams[1].defaultValue, nullptr);
  EXPECT_EQ(l.hyperParams[1].defaultValue->kind, Expr::Kind::FloatLit);
  EXPECT_DOUBLE_EQ(l.hyperParams[1].defaultValue->floatValue, 1e-5);
  EXPECT_EQ(l.hyperParams[2].type.kind, K::Bool);
  EXPECT_EQ(l.hyperParams[2].defaultValue->kind, Expr::Kind::BoolLit);
  EXPECT_TRUE(l.hyperParams[2].defaultValue->boolValue);
  EXPECT_EQ(l.hyperParams[3].type.kind, K::Enum);
  ASSERT_EQ(l.hyperParams[3].type.enumerators.size(), 2u);
  EXPECT_EQ(l.hyperParams[3].type.enumerators[0].text, "none");
  EXPECT_EQ(l.hyperParams[3].type.enumerators[1].text, "leaky_relu");
  EXPECT_EQ(l.hyperParams[3].defaultValue->kind, Expr::Kind::Ident);
  EXPECT_EQ(l.hyperParams[3].defaultValue->name, "none");
  // The enum type's location spans the braces.
  EXPECT_EQ(l.hyperParams[3].typeLoc.length, std::string("{none, leaky_relu}").size());
  EXPECT_EQ(l.hyperParams[4].defaultValue->intValue, 3);
  EXPECT_EQ(tree(*l.hyperParams[5].defaultValue), "(- 0.5f)");

  ASSERT_EQ(l.params.size(), 2u);
  EXPECT_EQ(l.params[0].name.text, "weight");
  ASSERT_EQ(l.params[0].dims.size(), 1u);
  EXPECT_EQ(tree(*l.params[0].dims[0].size), "C");
  EXPECT_EQ(tree(*l.params[0].init), "ones"); // an initializer without arguments is a bare name
  EXPECT_EQ(tree(*l.params[1].init), "(call uniform (- 1) 1)");
  ASSERT_EQ(l.buffers.size(), 1u);
  EXPECT_EQ(l.buffers[0].name.text, "running");
  ASSERT_EQ(l.buffers[0].dims.size(), 2u);
  EXPECT_EQ(tree(*l.buffers[0].dims[1].size), "(* 2 k)");
  EXPECT_FALSE(l.buffers[0].dims[1].variadic);

  ASSERT_NE(l.forward, nullptr);
  const ast::Forward &f = *l.forward;
  ASSERT_EQ(f.inputs.size(), 2u);
  EXPECT_EQ(f.inputs[0].name.text, "X");
  ASSERT_EQ(f.inputs[0].dims.size(), 3u);
  EXPECT_FALSE(f.inputs[0].dims[0].variadic);
  EXPECT_FALSE(f.inputs[0].dims[1].variadic);
  EXPECT_TRUE(f.inputs[0].dims[2].variadic);
  EXPECT_EQ(tree(*f.inputs[0].dims[2].size), "L");
  EXPECT_EQ(f.inputs[1].name.text, "M");
  ASSERT_EQ(f.outputs.size(), 2u);
  EXPECT_EQ(f.outputs[0].name.text, "Y");
  EXPECT_EQ(f.outputs[0].dims.size(), 3u);
  EXPECT_EQ(f.outputs[1].name.text, "S");

  ASSERT_EQ(f.statements.size(), 2u);
  const ast::Statement &y = f.statements[0];
  EXPECT_EQ(y.target.text, "Y");
  ASSERT_EQ(y.indices.size(), 3u);
  EXPECT_EQ(tree(*y.indices[2]), "l");
  EXPECT_EQ(tree(*y.value), "(* X[b c l] weight[c])");
  ASSERT_NE(y.guard, nullptr);
  EXPECT_EQ(tree(*y.guard), "(< c C)");
  // A statement spans from its target to the end of its guard.
  EXPECT_EQ(y.loc.line(), 7);
  EXPECT_EQ(y.loc.col(), 5);
  EXPECT_EQ(y.loc.length, std::string("Y[b, c, l] = X[b, c, l] * weight[c] where c < C").size());
  const ast::Statement &s = f.statements[1];
  EXPECT_EQ(s.guard, nullptr);
  EXPECT_EQ(tree(*s.value), "(sum b l: X[b c l])");
  EXPECT_EQ(f.closeLoc.line(), 9);

  EXPECT_EQ(ast::printAST(p->module), "Layer Norm  (1:1)\n"
                                      "  HyperParam C: int\n"
                                      "  HyperParam eps: float = 1e-05\n"
                                      "  HyperParam affine: bool = true\n"
                                      "  HyperParam act: {none, leaky_relu} = none\n"
                                      "  HyperParam k: int = 3\n"
                                      "  HyperParam slope: float = -0.5\n"
                                      "  Param weight[C] = ones\n"
                                      "  Param bias[C] = uniform(-1, 1)\n"
                                      "  Buffer running[C, 2 * k] = zeros\n"
                                      "  Forward\n"
                                      "    Input X: [B, C, L...]\n"
                                      "    Input M: [B]\n"
                                      "    Output Y: [B, C, L]\n"
                                      "    Output S: [C]\n"
                                      "    Define Y[b, c, l] = X[b, c, l] * weight[c] where c < C  (7:5)\n"
                                      "    Define S[c] = sum(b, l: X[b, c, l])  (8:5)\n");
}

TEST(Parser, OutputsWithoutParensAndSemicolons) {
  auto p = parseText("layer L() { forward(X: [N]) -> Y: [N], Z: [N] { Y[i] = X[i]; Z[i] = -X[i] } }");
  ASSERT_FALSE(p->diags.hasErrors()) << p->diags.render();
  const ast::Forward &f = *p->module.layers[0]->forward;
  ASSERT_EQ(f.outputs.size(), 2u);
  EXPECT_EQ(f.outputs[1].name.text, "Z");
  ASSERT_EQ(f.statements.size(), 2u);
  EXPECT_EQ(tree(*f.statements[1].value), "(- X[i])");
  EXPECT_TRUE(p->module.layers[0]->hyperParams.empty());
}

TEST(Parser, NumberValues) {
  EXPECT_EQ(treeOf("3"), "3");
  EXPECT_EQ(treeOf(".5"), "0.5f");
  EXPECT_EQ(treeOf("1."), "1f");
  EXPECT_EQ(treeOf("2.5E+3"), "2500f");
  EXPECT_EQ(treeOf("true && false"), "(&& true false)");
  ParsedExpr e = parseExpr("1e-5");
  ASSERT_NE(e.expr, nullptr);
  EXPECT_EQ(e.expr->kind, Expr::Kind::FloatLit);
  EXPECT_DOUBLE_EQ(e.expr->floatValue, 1e-5);
  ParsedExpr i = parseExpr("9223372036854775807");
  ASSERT_NE(i.expr, nullptr);
  EXPECT_EQ(i.expr->intValue, INT64_MAX);
}

TEST(Parser, IntegerLiteralTooLarge) {
  auto p = parseText("layer L() {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = 99999999999999999999\n  }\n}\n");
  EXPECT_EQ(messages(p->diags),
            (std::vector<std::string>{"3: integer literal '99999999999999999999' is too large"}));
}

// A number past the double range read as inf silently; inf is written `inf`.
TEST(Parser, NumberTooLarge) {
  auto p = parseText("layer L() {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = X[i] * 1e999999 + 1.5e308\n  }\n}\n");
  EXPECT_EQ(messages(p->diags), (std::vector<std::string>{"3: number '1e999999' is too large"}));
}

// Each case: source, tree, and the text printExpr gives back (which must parse to the same tree).
TEST(Parser, PrecedenceAndAssociativity) {
  struct Case {
    const char *src, *tree, *printed;
  };
  const Case cases[] = {
      {"-x^2", "(- (^ x 2))", "-x ^ 2"},
      {"2^3^2", "(^ 2 (^ 3 2))", "2 ^ 3 ^ 2"},
      {"(2^3)^2", "(^ (^ 2 3) 2)", "(2 ^ 3) ^ 2"},
      {"(-x)^2", "(^ (- x) 2)", "(-x) ^ 2"},
      {"2^-x", "(^ 2 (- x))", "2 ^ -x"},
      {"x ^ 2 ^ -y", "(^ x (^ 2 (- y)))", "x ^ 2 ^ -y"},
      {"a ^ b * c", "(* (^ a b) c)", "a ^ b * c"},
      {"a ^ (b * c)", "(^ a (* b c))", "a ^ (b * c)"},
      {"(a - b) ^ 2", "(^ (- a b) 2)", "(a - b) ^ 2"},
      {"a-b-c", "(- (- a b) c)", "a - b - c"},
      {"a-(b-c)", "(- a (- b c))", "a - (b - c)"},
      {"a/b/c", "(/ (/ a b) c)", "a / b / c"},
      {"a/(b*c)", "(/ a (* b c))", "a / (b * c)"},
      {"a+b*c", "(+ a (* b c))", "a + b * c"},
      {"(a+b)*c", "(* (+ a b) c)", "(a + b) * c"},
      {"a // b % c * d", "(* (% (// a b) c) d)", "a // b % c * d"},
      {"a // (b % c)", "(// a (% b c))", "a // (b % c)"},
      {"a + b // c - d % 2", "(- (+ a (// b c)) (% d 2))", "a + b // c - d % 2"},
      {"-x * y", "(* (- x) y)", "-x * y"},
      {"a * -b", "(* a (- b))", "a * -b"},
      {"-(a+b)", "(- (+ a b))", "-(a + b)"},
      {"+x", "x", "x"},
      {"!(a < b)", "(! (< a b))", "!(a < b)"},
      {"a + 1 < b * 2", "(< (+ a 1) (* b 2))", "a + 1 < b * 2"},
      {"a < b && c == d || !e", "(|| (&& (< a b) (== c d)) (! e))", "a < b && c == d || !e"},
      {"a || b && c", "(|| a (&& b c))", "a || b && c"},
      {"(a || b) && c", "(&& (|| a b) c)", "(a || b) && c"},
      {"a && b && c", "(&& (&& a b) c)", "a && b && c"},
      {"a == b != c", "(!= (== a b) c)", "a == b != c"},
      {"i >= 0 && i + 1 <= N", "(&& (>= i 0) (<= (+ i 1) N))", "i >= 0 && i + 1 <= N"},
      {"exp(-x) * sum(i: X[i]) / N", "(/ (* (call exp (- x)) (sum i: X[i])) N)",
       "exp(-x) * sum(i: X[i]) / N"},
  };
  for (const Case &c : cases) {
    ParsedExpr p = parseExpr(c.src);
    ASSERT_NE(p.expr, nullptr) << c.src;
    EXPECT_EQ(tree(*p.expr), c.tree) << c.src;
    std::string printed = ast::printExpr(*p.expr);
    EXPECT_EQ(printed, c.printed) << c.src;
    EXPECT_EQ(treeOf(printed), c.tree) << "round trip of " << c.src << " via " << printed;
  }
}

TEST(Parser, GuardIsParsedAsExpression) {
  auto p = parseText(
      "layer L() {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = X[i] * 2 where i < N && i % 2 == 0\n  }\n}\n");
  ASSERT_FALSE(p->diags.hasErrors()) << p->diags.render();
  const ast::Statement &s = p->module.layers[0]->forward->statements[0];
  EXPECT_EQ(tree(*s.value), "(* X[i] 2)");
  ASSERT_NE(s.guard, nullptr);
  EXPECT_EQ(tree(*s.guard), "(&& (< i N) (== (% i 2) 0))");
}

TEST(Parser, ReductionsVersusCalls) {
  EXPECT_EQ(treeOf("sum(i: X[i])"), "(sum i: X[i])");
  EXPECT_EQ(treeOf("sum(h, w: X[h, w] * 2)"), "(sum h w: (* X[h w] 2))");
  EXPECT_EQ(treeOf("max(k: x)"), "(max k: x)");
  EXPECT_EQ(treeOf("max(a, b: c)"), "(max a b: c)");
  EXPECT_EQ(treeOf("max(a, b)"), "(call max a b)");
  EXPECT_EQ(treeOf("sum(i)"), "(call sum i)"); // no ':' — a call; sema says what is wrong
  EXPECT_EQ(treeOf("f()"), "(call f)");
  EXPECT_EQ(treeOf("select(a < b, a, b)"), "(call select (< a b) a b)");
  EXPECT_EQ(treeOf("leaky_relu(X[i], 0.5)"), "(call leaky_relu X[i] 0.5f)");
  EXPECT_EQ(treeOf("exp(sum(i: x))"), "(call exp (sum i: x))");
  EXPECT_EQ(treeOf("softmax(k: s[k] * sum(d: R[k, d] ^ 2))"), "(softmax k: (* s[k] (sum d: (^ R[k d] 2))))");
  EXPECT_EQ(treeOf("X[]"), "X[]");
  EXPECT_EQ(treeOf("X[b, 2 * h + 1]"), "X[b (+ (* 2 h) 1)]");

  ParsedExpr r = parseExpr("sum(h, w: X[h, w])");
  ASSERT_NE(r.expr, nullptr);
  EXPECT_EQ(r.expr->kind, Expr::Kind::Reduce);
  EXPECT_EQ(r.expr->name, "sum");
  ASSERT_EQ(r.expr->vars.size(), 2u);
  EXPECT_EQ(r.expr->vars[1].text, "w");
  EXPECT_EQ(r.expr->args.size(), 1u);
  EXPECT_EQ(ast::printExpr(*r.expr), "sum(h, w: X[h, w])");
  // The reduction spans its whole text; its name location is the operator's name.
  EXPECT_EQ(r.expr->loc.length, std::string("sum(h, w: X[h, w])").size());
  EXPECT_EQ(r.expr->nameLoc.length, 3u);
  EXPECT_EQ(r.expr->vars[1].loc.offset - r.expr->loc.offset, 7u);

  ParsedExpr a = parseExpr("X[b, d]");
  ASSERT_NE(a.expr, nullptr);
  EXPECT_EQ(a.expr->kind, Expr::Kind::Access);
  EXPECT_EQ(a.expr->loc.length, 7u);
  EXPECT_EQ(a.expr->nameLoc.length, 1u);
}

TEST(Parser, RecoversAndReportsEachErrorOnce) {
  auto p = parseText("layer L(D: int) {\n"                   // 1
                     "  param w[D] = uniform(-1, 1)\n"       // 2
                     "  forward(X: [B, D]) -> Y: [B, D] {\n" // 3
                     "    T[b, d] = X[b, d] * )\n"           // 4: missing operand
                     "    U[b, d] = X[b, d] * 2\n"           // 5
                     "    V[b, d] X[b, d]\n"                 // 6: missing '='
                     "    W[b, d] = 3 4\n"                   // 7: junk after the value
                     "    Z[b, d] = 1.2.3 + X[b, d]\n"       // 8: malformed number (lexer)
                     "    Y[b, d] = U[b, d] + w[d]\n"        // 9
                     "  }\n"                                 // 10
                     "}\n"                                   // 11
                     "paramx\n"                              // 12: not a layer
                     "layer M() {\n"                         // 13
                     "  bogus x\n"                           // 14: not a member
                     "  forward(X: [N]) -> Y: [N] {\n"       // 15
                     "    Y[i] = X[i]\n"                     // 16
                     "  }\n"
                     "}\n");
  EXPECT_EQ(messages(p->diags), (std::vector<std::string>{
                                    "4: expected an expression, found ')'",
                                    "6: expected '=', found identifier 'X'",
                                    "7: expected end of line, found number '4'",
                                    "8: malformed number '1.2.3'",
                                    "12: expected 'layer', found identifier 'paramx'",
                                    "14: expected 'param', 'buffer', a sub-layer or 'forward', found identifier 'bogus'",
                                }));
  EXPECT_EQ(p->diags.errorCount(), 6);
  ASSERT_EQ(p->module.layers.size(), 2u);
  const ast::Layer &l = *p->module.layers[0];
  EXPECT_EQ(l.name.text, "L");
  ASSERT_EQ(l.params.size(), 1u);
  ASSERT_NE(l.forward, nullptr);
  ASSERT_EQ(l.forward->statements.size(), 2u);
  EXPECT_EQ(l.forward->statements[0].target.text, "U");
  EXPECT_EQ(tree(*l.forward->statements[0].value), "(* X[b d] 2)");
  EXPECT_EQ(l.forward->statements[1].target.text, "Y");
  const ast::Layer &m = *p->module.layers[1];
  EXPECT_EQ(m.name.text, "M");
  ASSERT_NE(m.forward, nullptr);
  EXPECT_EQ(m.forward->statements.size(), 1u);
}

TEST(Parser, UnterminatedLayerDoesNotSwallowTheNext) {
  auto p = parseText("layer A() {\n"
                     "  forward(X: [N]) -> Y: [N] {\n"
                     "    Y[i] = X[i]\n"
                     "  }\n"
                     "layer B() {\n"
                     "  forward(X: [N]) -> Y: [N] {\n"
                     "    Y[i] = -X[i]\n"
                     "  }\n"
                     "}\n");
  EXPECT_EQ(messages(p->diags), (std::vector<std::string>{"1: unterminated block of layer 'A'"}));
  ASSERT_EQ(p->module.layers.size(), 2u);
  EXPECT_EQ(p->module.layers[0]->forward->statements.size(), 1u);
  EXPECT_EQ(p->module.layers[1]->name.text, "B");
  EXPECT_EQ(p->module.layers[1]->forward->statements.size(), 1u);
}

TEST(Parser, DeclarationErrors) {
  auto reserved = parseText("layer L(where: int) {\n}\n");
  EXPECT_EQ(messages(reserved->diags),
            (std::vector<std::string>{"1: expected a hyper-parameter name, found 'where'"}));
  EXPECT_EQ(reserved->diags.diagnostics()[0].hint, "this word is reserved; choose another name");

  auto type = parseText("layer L(a: double) {\n}\n");
  EXPECT_EQ(messages(type->diags),
            (std::vector<std::string>{"1: unknown type 'double' for hyper-parameter 'a'"}));

  auto variadic = parseText("layer L() {\n"
                            "  param w[N...]\n"
                            "  forward(X: [N..., C]) -> Y: [C] {\n"
                            "    Y[c] = X[0, c]\n"
                            "  }\n"
                            "}\n");
  EXPECT_EQ(messages(variadic->diags),
            (std::vector<std::string>{"2: '...' is only allowed in the shapes of a forward block's inputs and outputs",
                                      "3: only the last dimension of a shape can be variadic ('...')"}));
  // The declarations themselves still parse.
  ASSERT_EQ(variadic->module.layers.size(), 1u);
  EXPECT_EQ(variadic->module.layers[0]->params.size(), 1u);
  EXPECT_EQ(variadic->module.layers[0]->forward->statements.size(), 1u);

  // '<-' parses as a buffer update (sema decides whether the target is a buffer).
  auto arrow = parseText("layer L() {\n"
                         "  forward(X: [N]) -> Y: [N] {\n"
                         "    Y[i] <- X[i]\n"
                         "    Y[i] = X[i]\n"
                         "  }\n"
                         "}\n");
  EXPECT_TRUE(messages(arrow->diags).empty());
  ASSERT_EQ(arrow->module.layers[0]->forward->statements.size(), 2u);
  EXPECT_TRUE(arrow->module.layers[0]->forward->statements[0].update);
  EXPECT_FALSE(arrow->module.layers[0]->forward->statements[1].update);

  auto twice = parseText("layer L() {\n"
                         "  forward(X: [N]) -> Y: [N] {\n"
                         "    Y[i] = X[i]\n"
                         "  }\n"
                         "  forward(X: [N]) -> Y: [N] {\n"
                         "    Y[i] = X[i]\n"
                         "  }\n"
                         "}\n");
  EXPECT_EQ(messages(twice->diags), (std::vector<std::string>{"5: layer 'L' has a second forward block"}));
  ASSERT_EQ(twice->module.layers.size(), 1u);
  EXPECT_EQ(twice->module.layers[0]->forward->loc.line(), 2);
}

// Every construct that nests, at the deepest accepted depth and far past it (some 6,000 levels of
// these overflowed the parser's stack; the stages after it recursed as deep as the tree).
TEST(Parser, NestingDeeperThanTheLimitIsAnError) {
  struct Construct {
    const char *name;
    std::string open, close; // one level, around the innermost operand X[i]
  };
  const Construct constructs[] = {
      {"parentheses", "(", ")"},          {"access", "X[", "]"},
      {"reduction", "sum(j: ", ")"},      {"call", "select(true, ", ", 0)"},
      {"not", "!", ""},                   {"minus", "-", ""},
      {"power", "2 ^ ", ""},              {"function", "exp(", ")"},
  };
  auto nest = [](const Construct &c, int n) {
    std::string e;
    for (int i = 0; i < n; ++i) e += c.open;
    e += "X[i]";
    for (int i = 0; i < n; ++i) e += c.close;
    return e;
  };
  auto parseStatement = [](const std::string &value) {
    return parseText("layer L() {\n  forward(X: [N]) -> Y: [N] {\n    Y[i] = " + value + "\n  }\n}\n");
  };
  const std::string tooDeep = fmt::format("3: expression nested too deeply (more than {} levels)", kMaxExpressionDepth);
  const int column = 12; // of the value in "    Y[i] = "
  for (const Construct &c : constructs) {
    // X[i] takes two levels itself.
    auto deepest = parseStatement(nest(c, kMaxExpressionDepth - 2));
    EXPECT_TRUE(messages(deepest->diags).empty()) << c.name << "\n" << deepest->diags.render();
    auto over = parseStatement(nest(c, kMaxExpressionDepth - 1));
    EXPECT_EQ(messages(over->diags), std::vector<std::string>{tooDeep}) << c.name;

    // Reported at the level past the limit, once; the statement is dropped and the layer kept.
    auto far = parseStatement(nest(c, 20000));
    EXPECT_EQ(messages(far->diags), std::vector<std::string>{tooDeep}) << c.name;
    ASSERT_EQ(far->diags.diagnostics().size(), 1u) << c.name;
    // Within the level past the limit (a call's first argument is a level of its own).
    int level = static_cast<int>(c.open.size()), col = far->diags.diagnostics()[0].loc.col();
    EXPECT_GT(col, column + (kMaxExpressionDepth - 1) * level) << c.name;
    EXPECT_LE(col, column + kMaxExpressionDepth * level) << c.name;
    ASSERT_EQ(far->module.layers.size(), 1u) << c.name;
    EXPECT_TRUE(far->module.layers[0]->forward->statements.empty()) << c.name;
  }

  // An operator chain nests one level per operator though the parser does not recurse on it; the
  // error points at the chain's start.
  auto chain = [](int operators) {
    std::string e = "X[i]";
    for (int i = 0; i < operators; ++i) e += i % 2 ? " * X[i]" : " + X[i]";
    return e;
  };
  EXPECT_TRUE(messages(parseStatement(chain(kMaxExpressionDepth - 2))->diags).empty());
  auto longChain = parseStatement(chain(100000));
  EXPECT_EQ(messages(longChain->diags), std::vector<std::string>{tooDeep});
  ASSERT_EQ(longChain->diags.diagnostics().size(), 1u);
  EXPECT_EQ(longChain->diags.diagnostics()[0].loc.col(), column);

  // Wherever an expression stands: a hyper-parameter's default, a shape, a requirement.
  std::string deepInt = std::string(20000, '(') + "1" + std::string(20000, ')');
  const std::string forward = "  forward(X: [N]) -> Y: [N] {\n    Y[i] = X[i]\n  }\n}\n";
  auto elsewhere = parseText("layer A(n: int = " + deepInt + ") {\n" + forward +   // 1
                             "layer B() {\n  param w[" + deepInt + "]\n" + forward + // 6, 7
                             "layer C() {\n  require " + deepInt + " > 0\n" + forward); // 12, 13
  EXPECT_EQ(messages(elsewhere->diags), (std::vector<std::string>{
                                            tooDeep.substr(3).insert(0, "1: "),
                                            tooDeep.substr(3).insert(0, "7: "),
                                            tooDeep.substr(3).insert(0, "13: "),
                                        }));
}
