#include "dsl/Parser.h"

#include "dsl/Lexer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace enc {
namespace {

using ast::Expr;
using ast::ExprPtr;

// Thrown to unwind to the nearest recovery point after a syntax error was reported.
struct SyntaxError {};

class Parser {
public:
  Parser(const SourceFile &file, DiagnosticEngine &diags) : diags_(diags), toks_(lex(file, diags)) {}

  ast::Module run() {
    ast::Module m;
    skipNewlines();
    while (!at(Tok::Eof)) {
      if (at(Tok::KwLayer)) {
        try {
          m.layers.push_back(parseLayer());
        } catch (SyntaxError &) {
          recoverToTopLevel();
        }
      } else {
        if (!at(Tok::Error))
          diags_.error(cur().loc, fmt::format("expected 'layer', found {}", describe(cur())),
                       "a .enc file is a list of 'layer Name(hyper-parameters) { ... }' blocks");
        recoverToTopLevel();
      }
      skipNewlines();
    }
    return m;
  }

private:
  DiagnosticEngine &diags_;
  std::vector<Token> toks_;
  size_t pos_ = 0;
  bool unterminatedReported_ = false; // the current layer's forward block ran into its end
  int depth_ = 0;                      // expression levels being parsed now (see kMaxExpressionDepth)

  const Token &cur() const { return toks_[pos_]; }
  const Token &peekTok(size_t n) const { return toks_[std::min(pos_ + n, toks_.size() - 1)]; }
  bool at(Tok k) const { return cur().kind == k; }
  const Token &advance() {
    const Token &t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool accept(Tok k) {
    if (!at(k)) return false;
    advance();
    return true;
  }
  void skipNewlines() {
    while (at(Tok::Newline) || at(Tok::Semicolon)) advance();
  }

  static std::string describe(const Token &t) {
    switch (t.kind) {
    case Tok::Ident: return fmt::format("identifier '{}'", t.text);
    case Tok::IntLit:
    case Tok::FloatLit: return fmt::format("number '{}'", t.text);
    case Tok::Eof:
    case Tok::Newline: return tokSpelling(t.kind);
    default: return fmt::format("'{}'", t.text);
    }
  }

  [[noreturn]] void errorHere(const std::string &what, const std::string &hint = {}) {
    // A malformed token was already reported by the lexer; don't pile a second error on it.
    if (!at(Tok::Error)) diags_.error(cur().loc, fmt::format("expected {}, found {}", what, describe(cur())), hint);
    throw SyntaxError{};
  }

  const Token &expect(Tok k, const std::string &hint = {}) {
    if (!at(k)) errorHere(tokSpelling(k), hint);
    return advance();
  }

  // A closing ')' or ']': when it is missing, point back at the bracket it should close,
  // since the error itself may land lines later (newlines do not end a statement inside brackets).
  const Token &expectClosing(Tok k, SourceLoc open, const std::string &hint = {}) {
    if (at(k)) return advance();
    if (!at(Tok::Error)) {
      Diagnostic &d =
          diags_.error(cur().loc, fmt::format("expected {}, found {}", tokSpelling(k), describe(cur())), hint);
      Tok opening = k == Tok::RParen ? Tok::LParen : Tok::LBracket;
      d.notes.push_back({open, fmt::format("to match this {}", tokSpelling(opening))});
    }
    throw SyntaxError{};
  }

  ast::Name expectName(const char *what) {
    if (!at(Tok::Ident)) {
      const char *hint = "";
      if (cur().kind >= Tok::KwLayer && cur().kind <= Tok::KwFalse) hint = "this word is reserved; choose another name";
      errorHere(what, hint);
    }
    const Token &t = advance();
    return {t.text, t.loc};
  }

  void recoverToTopLevel() {
    // Skip to the next line starting with 'layer'.
    while (!at(Tok::Eof)) {
      if (at(Tok::KwLayer) && (pos_ == 0 || toks_[pos_ - 1].kind == Tok::Newline)) return;
      advance();
    }
  }

  // Skip the rest of a statement line (balanced braces respected). A line ending in an operator
  // or a comma was meant to go on: skip its continuation too rather than report it as well.
  void recoverToLineEnd() {
    while (!at(Tok::Eof) && !at(Tok::RBrace) && !at(Tok::Semicolon)) {
      if (at(Tok::Newline)) {
        Tok last = pos_ > 0 ? toks_[pos_ - 1].kind : Tok::Newline;
        if (!((last >= Tok::Plus && last <= Tok::OrOr) || last == Tok::Comma)) break;
      }
      advance();
    }
  }

  // After a forward or backward block's header failed: skip the rest of the header and, when its
  // '{' follows on that line, the whole block, whose statements would otherwise be read (and
  // reported) as members of the layer.
  void recoverPastBlock() {
    while (!at(Tok::Eof) && !at(Tok::Newline) && !at(Tok::LBrace) && !at(Tok::RBrace) && !at(Tok::KwLayer)) advance();
    if (!at(Tok::LBrace)) return;
    int depth = 0;
    do {
      if (at(Tok::LBrace)) ++depth;
      else if (at(Tok::RBrace)) --depth;
      advance();
    } while (depth > 0 && !at(Tok::Eof) && !at(Tok::KwLayer));
  }

  // ---- declarations -------------------------------------------------------------------------------
  std::unique_ptr<ast::Layer> parseLayer() {
    auto layer = std::make_unique<ast::Layer>();
    SourceLoc start = expect(Tok::KwLayer).loc;
    layer->name = expectName("a layer name");
    layer->loc = SourceLoc::join(start, layer->name.loc);
    expect(Tok::LParen, "a layer's hyper-parameters follow its name: layer Name(D: int, K: int = 4)");
    if (!at(Tok::RParen)) {
      do {
        layer->hyperParams.push_back(parseHyperParam());
      } while (accept(Tok::Comma));
    }
    expect(Tok::RParen);
    skipNewlines();
    SourceLoc open = expect(Tok::LBrace).loc;
    skipNewlines();
    unterminatedReported_ = false;
    while (!at(Tok::RBrace)) {
      // Keep what was parsed so sema still checks it. An unterminated forward block already
      // said where the '}' is missing; one error is enough.
      if (at(Tok::Eof) || at(Tok::KwLayer)) {
        if (!unterminatedReported_)
          diags_.error(open, fmt::format("unterminated block of layer '{}'", layer->name.text),
                       "add the closing '}' at the end of the layer");
        return layer;
      }
      bool forward = at(Tok::KwForward), block = forward || (at(Tok::Ident) && cur().text == "backward");
      try {
        parseMember(*layer);
      } catch (SyntaxError &) {
        layer->forwardFailed |= forward;
        // Stop before a following layer: it must not become part of this one.
        if (block) recoverPastBlock();
        else if (!at(Tok::KwLayer)) recoverToLineEnd();
      }
      skipNewlines();
    }
    expect(Tok::RBrace);
    return layer;
  }

  ast::HyperParam parseHyperParam() {
    ast::HyperParam hp;
    hp.name = expectName("a hyper-parameter name");
    expect(Tok::Colon, "hyper-parameters are written 'name: int', 'name: float = 0.1', 'name: {a, b} = a'");
    hp.typeLoc = cur().loc;
    if (accept(Tok::LBrace)) {
      hp.type.kind = ast::HyperParamType::Kind::Enum;
      do {
        hp.type.enumerators.push_back(expectName("an enumerator name"));
      } while (accept(Tok::Comma));
      hp.typeLoc = SourceLoc::join(hp.typeLoc, expect(Tok::RBrace).loc);
    } else {
      ast::Name t = expectName("a type (int, float, bool or {a, b, ...})");
      if (t.text == "int") hp.type.kind = ast::HyperParamType::Kind::Int;
      else if (t.text == "float") hp.type.kind = ast::HyperParamType::Kind::Float;
      else if (t.text == "bool") hp.type.kind = ast::HyperParamType::Kind::Bool;
      else if (t.text == "int2") hp.type.kind = ast::HyperParamType::Kind::Int2;
      else {
        diags_.error(t.loc, fmt::format("unknown type '{}' for hyper-parameter '{}'", t.text, hp.name.text),
                     "hyper-parameter types are int, int2, float, bool, or an enumeration such as {none, leaky_relu}");
        throw SyntaxError{};
      }
    }
    if (accept(Tok::Assign)) {
      // An int2 default is one int for both, or a pair: (3, 5).
      if (hp.type.kind == ast::HyperParamType::Kind::Int2 && at(Tok::LParen)) {
        SourceLoc open = advance().loc;
        hp.defaultValue = parseExpr();
        expect(Tok::Comma, "an int2 pair is written (3, 5)");
        hp.defaultSecond = parseExpr();
        expectClosing(Tok::RParen, open);
      } else {
        hp.defaultValue = parseExpr();
      }
    }
    return hp;
  }

  void parseMember(ast::Layer &layer) {
    if (at(Tok::KwParam) || at(Tok::KwBuffer)) {
      bool isParam = advance().kind == Tok::KwParam;
      ast::TensorDecl d;
      d.name = expectName(isParam ? "a parameter name" : "a buffer name");
      d.loc = d.name.loc;
      d.dims = parseShape(/*allowVariadic=*/false);
      if (accept(Tok::Assign)) d.init = parseExpr();
      if (accept(Tok::KwWhere)) d.condition = parseExpr();
      expectStatementEnd();
      (isParam ? layer.params : layer.buffers).push_back(std::move(d));
      return;
    }
    if (at(Tok::KwRequire)) {
      layer.requirements.push_back(parseRequirement());
      return;
    }
    if (at(Tok::Ident) && peekTok(1).kind == Tok::Assign) {
      layer.subLayers.push_back(parseSubLayer());
      return;
    }
    // `backward` is not reserved: it starts a block only where a member may start.
    if (at(Tok::Ident) && cur().text == "backward" && peekTok(1).kind == Tok::LBrace) {
      if (layer.backward) {
        Diagnostic &d = diags_.error(cur().loc, fmt::format("layer '{}' has a second backward block", layer.name.text));
        d.notes.push_back({layer.backward->loc, "first backward block here"});
      }
      auto b = std::make_unique<ast::Forward>();
      b->loc = advance().loc;
      parseBlockBody(*b, "backward");
      if (!layer.backward) layer.backward = std::move(b);
      return;
    }
    if (at(Tok::KwForward)) {
      if (layer.forward) {
        Diagnostic &d = diags_.error(cur().loc, fmt::format("layer '{}' has a second forward block", layer.name.text));
        d.notes.push_back({layer.forward->loc, "first forward block here"});
        parseForward(); // parse it to keep going, then drop it
        return;
      }
      layer.forward = parseForward();
      return;
    }
    errorHere("'param', 'buffer', a sub-layer or 'forward'",
              "a layer holds parameter and buffer declarations, sub-layers (conv1 = Conv2d(...)) and one forward block");
  }

  // name = Layer(args) | [Layer(args), ...] | [Layer(args) for i < count], then `where cond`.
  ast::SubLayer parseSubLayer() {
    ast::SubLayer sub;
    sub.name = expectName("a sub-layer name");
    expect(Tok::Assign);
    auto item = [&] {
      const char *hint = "a sub-layer is declared as name = Layer(hyper-parameter=value, ...)";
      if (!at(Tok::Ident) || peekTok(1).kind != Tok::LParen) errorHere("a layer name and its arguments", hint);
      const Token &t = advance();
      sub.items.push_back(parseCall(t));
    };
    if (at(Tok::LBracket)) {
      SourceLoc open = advance().loc;
      sub.sequence = true;
      skipNewlines();
      item();
      if (at(Tok::Ident) && cur().text == "for") {
        advance();
        sub.repeatVar = expectName("the repetition index, as in [Block(...) for i < N]");
        expect(Tok::Less, "a repetition is written [Block(...) for i < N]");
        sub.repeatCount = parseExpr();
      } else {
        while (accept(Tok::Comma)) {
          skipNewlines();
          if (at(Tok::RBracket)) break;
          item();
        }
      }
      skipNewlines();
      sub.loc = SourceLoc::join(sub.name.loc, expectClosing(Tok::RBracket, open).loc);
    } else {
      item();
      sub.loc = SourceLoc::join(sub.name.loc, sub.items.back()->loc);
    }
    if (accept(Tok::KwWhere)) sub.condition = parseExpr();
    expectStatementEnd();
    return sub;
  }

  std::vector<ast::Dim> parseShape(bool allowVariadic, bool output = false) {
    std::vector<ast::Dim> dims;
    expect(Tok::LBracket, "a shape is written [B, C, N]");
    if (!at(Tok::RBracket)) {
      do {
        ast::Dim dim;
        dim.size = parseExpr();
        if (at(Tok::Ellipsis)) {
          SourceLoc l = advance().loc;
          if (!allowVariadic) diags_.error(l, "'...' is only allowed in the shapes of a forward block's inputs and outputs");
          else if (dim.size->kind != Expr::Kind::Ident)
            diags_.error(dim.size->loc, "'...' must follow a size name, as in [B, C, N...]");
          dim.variadic = true;
          if (at(Tok::LParen)) {
            SourceLoc open = advance().loc;
            dim.count = parseExpr();
            expectClosing(Tok::RParen, open, "a counted variadic dimension is written A...(n)");
          }
        }
        dims.push_back(std::move(dim));
      } while (accept(Tok::Comma));
    }
    expect(Tok::RBracket);
    // An output may expand several variadic sizes; an input may collapse a counted run
    // anywhere but an open-ended one only at the end.
    if (!output)
      for (size_t i = 0; i + 1 < dims.size(); ++i)
        if (dims[i].variadic && !dims[i].count)
          diags_.error(dims[i].size->loc, "only the last dimension of a shape can be variadic ('...')",
                       "write the collapsing dimension last, as in X: [B, D, N...], or give its count: A...(n)");
    return dims;
  }

  ast::TensorDecl parseTensorSignature(bool input) {
    ast::TensorDecl d;
    d.name = expectName(input ? "an input name" : "an output name");
    d.loc = d.name.loc;
    // A network's output may leave its shape to its definition (sema allows that only there).
    if (!input && !at(Tok::Colon)) {
      d.shapeOmitted = true;
      return d;
    }
    expect(Tok::Colon, input ? "inputs are declared with their shape: X: [B, D, N]"
                             : "outputs are declared with their shape: Y: [B, K, D]");
    d.dims = parseShape(/*allowVariadic=*/true, /*output=*/!input);
    return d;
  }

  std::unique_ptr<ast::Forward> parseForward() {
    auto f = std::make_unique<ast::Forward>();
    f->loc = expect(Tok::KwForward).loc;
    expect(Tok::LParen, "forward(X: [B, C]) -> Y: [B, C] { ... }");
    if (!at(Tok::RParen)) {
      do {
        f->inputs.push_back(parseTensorSignature(true));
      } while (accept(Tok::Comma));
    }
    expect(Tok::RParen);
    expect(Tok::Arrow, "the outputs follow '->': forward(X: [B, C]) -> Y: [B, C] { ... }");
    bool paren = accept(Tok::LParen);
    do {
      f->outputs.push_back(parseTensorSignature(false));
    } while (accept(Tok::Comma));
    if (paren) expect(Tok::RParen);
    parseBlockBody(*f, "forward");
    return f;
  }

  // '{' statements and requirements '}' of a forward or backward block.
  void parseBlockBody(ast::Forward &f, const char *what) {
    SourceLoc open = expect(Tok::LBrace).loc;
    skipNewlines();
    while (!at(Tok::RBrace)) {
      if (at(Tok::Eof) || at(Tok::KwLayer) || at(Tok::KwParam) || at(Tok::KwBuffer) || at(Tok::KwForward)) {
        // Keep the statements read so far; the layer goes on with what follows.
        diags_.error(open, fmt::format("unterminated {} block", what), "add the closing '}' after the last statement");
        unterminatedReported_ = true;
        return;
      }
      try {
        if (at(Tok::KwRequire)) f.requirements.push_back(parseRequirement());
        else f.statements.push_back(parseStatement());
      } catch (SyntaxError &) {
        recoverToLineEnd();
      }
      skipNewlines();
    }
    f.closeLoc = expect(Tok::RBrace).loc;
    expectStatementEnd();
  }

  ast::Requirement parseRequirement() {
    ast::Requirement r;
    r.loc = expect(Tok::KwRequire).loc;
    r.condition = parseExpr();
    r.loc = SourceLoc::join(r.loc, r.condition->loc);
    expectStatementEnd();
    return r;
  }

  void expectStatementEnd() {
    if (at(Tok::Newline) || at(Tok::Semicolon) || at(Tok::RBrace) || at(Tok::Eof)) return;
    bool operand = at(Tok::Ident) || at(Tok::IntLit) || at(Tok::FloatLit) || at(Tok::LParen);
    errorHere("end of line",
              operand ? "is an operator missing before it?" : "put one statement or declaration on each line");
  }

  ast::Statement parseStatement() {
    ast::Statement s;
    // A line that starts with an operator is most likely the rest of the previous statement.
    if ((cur().kind >= Tok::Plus && cur().kind <= Tok::OrOr) || at(Tok::KwWhere))
      errorHere("a tensor definition such as Y[b, c] = ...",
                "a statement ends at the end of its line; wrap a multi-line expression in parentheses");
    if (at(Tok::LParen)) {
      // (A, B) = head(X): the outputs of a sub-layer with several (checked when the network
      // expands; a layer's own statements define one tensor each).
      SourceLoc open = advance().loc;
      s.target = expectName("the first tensor a sub-layer call defines, as in (Y, S) = head(X)");
      while (accept(Tok::Comma)) s.moreTargets.push_back(expectName("a tensor name"));
      expect(Tok::RParen);
      if (s.moreTargets.empty())
        diags_.error(open, "parentheses around one tensor name", "write Y = ..., or name every output: (Y, S) = head(X)");
      expect(Tok::Assign, "a sub-layer's outputs are defined with '=': (Y, S) = head(X)");
      s.value = parseExpr();
      s.loc = SourceLoc::join(open, s.value->loc);
      expectStatementEnd();
      return s;
    }
    // `recover` is not reserved: it starts a recovery only before a tensor name.
    if (at(Tok::Ident) && cur().text == "recover" && peekTok(1).kind == Tok::Ident) {
      advance();
      s.recover = true;
    }
    s.target = expectName("a tensor definition such as Y[b, c] = ...");
    if (accept(Tok::LBracket)) {
      if (!at(Tok::RBracket)) {
        do {
          s.indices.push_back(parseExpr());
        } while (accept(Tok::Comma));
      }
      expect(Tok::RBracket);
    }
    if (at(Tok::Colon)) {
      // A declared shape, for an intermediate whose indices are not all used plainly.
      advance();
      for (ast::Dim &d : parseShape(/*allowVariadic=*/false)) s.shape.push_back(std::move(d.size));
    }
    if (!s.recover && accept(Tok::LeftArrow)) s.update = true;
    else expect(Tok::Assign, "a statement defines a tensor: Y[b, c] = expression, or updates a buffer: B[c] <- expression");
    s.value = parseExpr();
    if (accept(Tok::KwWhere)) s.guard = parseExpr();
    s.loc = SourceLoc::join(s.target.loc, (s.guard ? s.guard : s.value)->loc);
    expectStatementEnd();
    return s;
  }

  // ---- expressions (lowest precedence first) ----------------------------------------------------
  // Every nested expression is parsed through parseUnary, which counts the levels, so the parser's
  // own recursion stops at kMaxExpressionDepth. Operator chains nest without recursion; an
  // outermost expression is measured once it is built.
  ExprPtr parseExpr() {
    bool outermost = depth_ == 0;
    ExprPtr e = parseOr();
    if (outermost) checkDepth(*e);
    return e;
  }

  [[noreturn]] void tooDeep(SourceLoc loc) {
    diags_.error(loc, fmt::format("expression nested too deeply (more than {} levels)", kMaxExpressionDepth),
                 "define parts of it as intermediate tensors; brackets, calls, reductions, unary operators and "
                 "each operator of a chain such as a + b + c count as levels");
    throw SyntaxError{};
  }

  // Counts one level of nesting for its scope.
  class Nesting {
  public:
    explicit Nesting(Parser &p) : p_(p) {
      if (p_.depth_ >= kMaxExpressionDepth) p_.tooDeep(p_.cur().loc);
      ++p_.depth_;
    }
    ~Nesting() { --p_.depth_; }
    Nesting(const Nesting &) = delete;
    Nesting &operator=(const Nesting &) = delete;

  private:
    Parser &p_;
  };

  // The tree's height, walked without recursion, left to right: the leftmost node past the limit
  // is reported (for a chain a + b + c + ..., the start of the chain).
  void checkDepth(const Expr &root) {
    std::vector<std::pair<const Expr *, int>> todo{{&root, 1}};
    while (!todo.empty()) {
      auto [e, depth] = todo.back();
      todo.pop_back();
      if (depth > kMaxExpressionDepth) tooDeep(e->loc);
      for (auto a = e->args.rbegin(); a != e->args.rend(); ++a) todo.push_back({a->get(), depth + 1});
      for (auto b = e->varBounds.rbegin(); b != e->varBounds.rend(); ++b)
        if (*b) todo.push_back({b->get(), depth + 1});
    }
  }

  ExprPtr binary(std::string op, ExprPtr l, ExprPtr r) {
    auto e = std::make_unique<Expr>(Expr::Kind::Binary, SourceLoc::join(l->loc, r->loc));
    e->op = std::move(op);
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  ExprPtr parseOr() {
    ExprPtr l = parseAnd();
    while (at(Tok::OrOr)) {
      advance();
      l = binary("||", std::move(l), parseAnd());
    }
    return l;
  }
  ExprPtr parseAnd() {
    ExprPtr l = parseCompare();
    while (at(Tok::AndAnd)) {
      advance();
      l = binary("&&", std::move(l), parseCompare());
    }
    return l;
  }
  ExprPtr parseCompare() {
    ExprPtr l = parseAdd();
    while (at(Tok::Less) || at(Tok::LessEq) || at(Tok::Greater) || at(Tok::GreaterEq) || at(Tok::EqEq) ||
           at(Tok::NotEq)) {
      std::string op = advance().text;
      l = binary(op, std::move(l), parseAdd());
    }
    return l;
  }
  ExprPtr parseAdd() {
    ExprPtr l = parseMul();
    while (at(Tok::Plus) || at(Tok::Minus)) {
      std::string op = advance().text;
      l = binary(op, std::move(l), parseMul());
    }
    return l;
  }
  ExprPtr parseMul() {
    ExprPtr l = parseUnary();
    while (at(Tok::Star) || at(Tok::Slash) || at(Tok::SlashSlash) || at(Tok::Percent)) {
      std::string op = advance().text;
      l = binary(op, std::move(l), parseUnary());
    }
    return l;
  }
  ExprPtr parseUnary() {
    Nesting level(*this);
    if (at(Tok::Minus) || at(Tok::Bang) || at(Tok::Plus)) {
      const Token &t = advance();
      ExprPtr operand = parseUnary();
      if (t.kind == Tok::Plus) return operand;
      auto e = std::make_unique<Expr>(Expr::Kind::Unary, SourceLoc::join(t.loc, operand->loc));
      e->op = t.text;
      e->args.push_back(std::move(operand));
      return e;
    }
    return parsePower();
  }
  // '^' binds tighter than unary minus (-x^2 is -(x^2)) and is right-associative.
  ExprPtr parsePower() {
    ExprPtr base = parsePrimary();
    if (at(Tok::Caret)) {
      advance();
      return binary("^", std::move(base), parseUnary());
    }
    return base;
  }

  // After NAME '(': a ':' before the matching ')' makes it a reduction, as in sum(i: ...) or
  // max(kh < K, kw < K: ...); a call has none.
  bool looksLikeReduction() const {
    int depth = 0;
    for (size_t i = 2; pos_ + i < toks_.size(); ++i) {
      switch (peekTok(i).kind) {
      case Tok::LParen:
      case Tok::LBracket:
        // Nesting this deep is an error anyway; stop rather than rescan it at every level.
        if (++depth > kMaxExpressionDepth) return false;
        break;
      case Tok::RParen:
      case Tok::RBracket:
        if (depth-- == 0) return false;
        break;
      case Tok::Colon:
        if (depth == 0) return true;
        break;
      case Tok::Eof:
      case Tok::Newline:
      case Tok::LBrace:
      case Tok::RBrace: return false;
      default: break;
      }
    }
    return false;
  }

  ExprPtr parsePrimary() {
    const Token &t = cur();
    switch (t.kind) {
    case Tok::IntLit: {
      advance();
      auto e = std::make_unique<Expr>(Expr::Kind::IntLit, t.loc);
      auto [ptr, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), e->intValue);
      if (ec != std::errc()) {
        diags_.error(t.loc, fmt::format("integer literal '{}' is too large", t.text), "integers are 64-bit");
      }
      return e;
    }
    case Tok::FloatLit: {
      advance();
      auto e = std::make_unique<Expr>(Expr::Kind::FloatLit, t.loc);
      e->floatValue = std::strtod(t.text.c_str(), nullptr);
      if (std::isinf(e->floatValue))
        diags_.error(t.loc, fmt::format("number '{}' is too large", t.text),
                     "numbers are 64-bit floating point (at most about 1.8e308); write inf for infinity");
      return e;
    }
    case Tok::KwTrue:
    case Tok::KwFalse: {
      advance();
      auto e = std::make_unique<Expr>(Expr::Kind::BoolLit, t.loc);
      e->boolValue = t.kind == Tok::KwTrue;
      return e;
    }
    case Tok::LParen: {
      SourceLoc open = advance().loc;
      ExprPtr inner = parseExpr();
      expectClosing(Tok::RParen, open);
      return inner;
    }
    case Tok::Ident: {
      bool reduction = peekTok(1).kind == Tok::LParen && looksLikeReduction();
      advance();
      if (at(Tok::LBracket)) return parseAccess(t);
      if (at(Tok::LParen)) return reduction ? parseReduce(t) : parseCall(t);
      auto e = std::make_unique<Expr>(Expr::Kind::Ident, t.loc);
      e->name = t.text;
      return e;
    }
    default:
      errorHere("an expression", at(Tok::Newline) ? "a statement ends at the end of its line; wrap a multi-line "
                                                    "expression in parentheses"
                                                  : "");
    }
  }

  ExprPtr parseAccess(const Token &name) {
    auto e = std::make_unique<Expr>(Expr::Kind::Access, name.loc);
    e->name = name.text;
    e->nameLoc = name.loc;
    SourceLoc open = expect(Tok::LBracket).loc;
    if (!at(Tok::RBracket)) {
      do {
        e->args.push_back(parseExpr());
      } while (accept(Tok::Comma));
    }
    e->loc = SourceLoc::join(name.loc, expectClosing(Tok::RBracket, open).loc);
    return e;
  }

  ExprPtr parseCall(const Token &name) {
    auto e = std::make_unique<Expr>(Expr::Kind::Call, name.loc);
    e->name = name.text;
    e->nameLoc = name.loc;
    SourceLoc open = expect(Tok::LParen).loc;
    if (!at(Tok::RParen)) {
      do {
        // name=value: a named argument (sub-layers' hyper-parameters and inputs).
        ast::Name argName;
        if (at(Tok::Ident) && peekTok(1).kind == Tok::Assign) {
          argName = {cur().text, cur().loc};
          advance();
          advance();
        } else if (!e->argNames.empty() && !e->argNames.back().text.empty()) {
          errorHere("a named argument (name=value)", "positional arguments come before named ones");
        }
        e->argNames.push_back(std::move(argName));
        e->args.push_back(parseExpr());
      } while (accept(Tok::Comma));
    }
    // Plain calls keep argNames empty, so only calls with a named argument carry them.
    if (std::all_of(e->argNames.begin(), e->argNames.end(), [](const ast::Name &n) { return n.text.empty(); }))
      e->argNames.clear();
    e->loc = SourceLoc::join(name.loc, expectClosing(Tok::RParen, open).loc);
    return e;
  }

  ExprPtr parseReduce(const Token &name) {
    auto e = std::make_unique<Expr>(Expr::Kind::Reduce, name.loc);
    e->name = name.text;
    e->nameLoc = name.loc;
    SourceLoc open = expect(Tok::LParen).loc;
    do {
      const Token &v = expect(Tok::Ident);
      e->vars.push_back({v.text, v.loc});
      e->varBounds.push_back(accept(Tok::Less) ? parseAdd() : nullptr);
    } while (accept(Tok::Comma));
    expect(Tok::Colon, "a reduction is written sum(i: expression) or sum(i < N: expression)");
    e->args.push_back(parseExpr());
    const Token &close = expectClosing(Tok::RParen, open, "a reduction is written sum(i: expression)");
    e->loc = SourceLoc::join(name.loc, close.loc);
    return e;
  }
};

} // namespace

ast::Module parse(const SourceFile &file, DiagnosticEngine &diags) { return Parser(file, diags).run(); }

} // namespace enc
