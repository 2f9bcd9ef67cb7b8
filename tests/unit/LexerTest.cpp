// Unit tests of the .enc lexer: token kinds and texts, numbers, comments, newline rules,
// locations and diagnostics for characters and literals it cannot use.
#include "dsl/Lexer.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <memory>
#include <sstream>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

using namespace enc;

namespace enc {
// Readable token kinds in failure messages.
[[maybe_unused]] static void PrintTo(Tok t, std::ostream *os) { *os << tokSpelling(t); }
} // namespace enc

namespace {

// Tokens point into their SourceFile, so the file lives as long as the tokens.
struct Lexed {
  std::unique_ptr<SourceFile> file;
  DiagnosticEngine diags;
  std::vector<Token> toks;
};

std::unique_ptr<Lexed> lexText(std::string text) {
  auto l = std::make_unique<Lexed>();
  l->file = std::make_unique<SourceFile>("test.enc", std::move(text));
  l->toks = lex(*l->file, l->diags);
  return l;
}

std::vector<Tok> kinds(const std::vector<Token> &toks) {
  std::vector<Tok> out;
  for (const Token &t : toks) out.push_back(t.kind);
  return out;
}

std::vector<std::string> texts(const std::vector<Token> &toks) {
  std::vector<std::string> out;
  for (const Token &t : toks) out.push_back(t.text);
  return out;
}

// Kinds without the trailing Newline and Eof every non-empty input ends with.
std::vector<Tok> kindsOf(const std::string &text) {
  auto l = lexText(text);
  std::vector<Tok> k = kinds(l->toks);
  EXPECT_GE(k.size(), 2u);
  if (k.size() >= 2 && k[k.size() - 2] == Tok::Newline && k.back() == Tok::Eof) k.resize(k.size() - 2);
  return k;
}

} // namespace

TEST(Lexer, EveryPunctuation) {
  struct Case {
    const char *text;
    Tok kind;
  };
  const Case cases[] = {
      {"(", Tok::LParen},     {")", Tok::RParen}, {"[", Tok::LBracket},    {"]", Tok::RBracket},
      {"{", Tok::LBrace},     {"}", Tok::RBrace}, {",", Tok::Comma},       {":", Tok::Colon},
      {";", Tok::Semicolon},  {"=", Tok::Assign}, {"+", Tok::Plus},        {"-", Tok::Minus},
      {"*", Tok::Star},       {"/", Tok::Slash},  {"//", Tok::SlashSlash}, {"%", Tok::Percent},
      {"^", Tok::Caret},      {"<", Tok::Less},   {"<=", Tok::LessEq},     {">", Tok::Greater},
      {">=", Tok::GreaterEq}, {"==", Tok::EqEq},  {"!=", Tok::NotEq},      {"&&", Tok::AndAnd},
      {"||", Tok::OrOr},      {"!", Tok::Bang},   {"->", Tok::Arrow},      {"<-", Tok::LeftArrow},
      {"...", Tok::Ellipsis},
  };
  // One at a time, then all in one line separated by spaces.
  std::string all;
  std::vector<Tok> allKinds;
  std::vector<std::string> allTexts;
  for (const Case &c : cases) {
    auto l = lexText(c.text);
    ASSERT_EQ(l->toks.size(), 3u) << c.text;
    EXPECT_EQ(l->toks[0].kind, c.kind) << c.text;
    EXPECT_EQ(l->toks[0].text, c.text);
    EXPECT_EQ(l->toks[0].loc.offset, 0u);
    EXPECT_EQ(l->toks[0].loc.length, std::string(c.text).size()) << c.text;
    EXPECT_EQ(l->toks[1].kind, Tok::Newline);
    EXPECT_EQ(l->toks[2].kind, Tok::Eof);
    EXPECT_FALSE(l->diags.hasErrors()) << c.text;
    all += std::string(c.text) + " ";
    allKinds.push_back(c.kind);
    allTexts.push_back(c.text);
  }
  auto l = lexText(all);
  EXPECT_FALSE(l->diags.hasErrors());
  allKinds.push_back(Tok::Newline);
  allKinds.push_back(Tok::Eof);
  allTexts.push_back("");
  allTexts.push_back("");
  EXPECT_EQ(kinds(l->toks), allKinds);
  EXPECT_EQ(texts(l->toks), allTexts);
}

TEST(Lexer, LongestMatchBetweenGluedOperators) {
  EXPECT_EQ(kindsOf("a<-b"), (std::vector<Tok>{Tok::Ident, Tok::LeftArrow, Tok::Ident}));
  EXPECT_EQ(kindsOf("a< -b"), (std::vector<Tok>{Tok::Ident, Tok::Less, Tok::Minus, Tok::Ident}));
  EXPECT_EQ(kindsOf("a<=-1"), (std::vector<Tok>{Tok::Ident, Tok::LessEq, Tok::Minus, Tok::IntLit}));
  EXPECT_EQ(kindsOf("a//b"), (std::vector<Tok>{Tok::Ident, Tok::SlashSlash, Tok::Ident}));
  EXPECT_EQ(kindsOf("a/ /b"), (std::vector<Tok>{Tok::Ident, Tok::Slash, Tok::Slash, Tok::Ident}));
  EXPECT_EQ(kindsOf("a--b"), (std::vector<Tok>{Tok::Ident, Tok::Minus, Tok::Minus, Tok::Ident}));
  EXPECT_EQ(kindsOf("a- >b"), (std::vector<Tok>{Tok::Ident, Tok::Minus, Tok::Greater, Tok::Ident}));
  EXPECT_EQ(kindsOf("a===b"), (std::vector<Tok>{Tok::Ident, Tok::EqEq, Tok::Assign, Tok::Ident}));
  EXPECT_EQ(kindsOf("!!a"), (std::vector<Tok>{Tok::Bang, Tok::Bang, Tok::Ident}));
  EXPECT_EQ(kindsOf("a&&!b||c"),
            (std::vector<Tok>{Tok::Ident, Tok::AndAnd, Tok::Bang, Tok::Ident, Tok::OrOr, Tok::Ident}));
  // A variadic size: the dots are not part of the name or number before them.
  EXPECT_EQ(kindsOf("[N...]"), (std::vector<Tok>{Tok::LBracket, Tok::Ident, Tok::Ellipsis, Tok::RBracket}));
  EXPECT_EQ(kindsOf("3..."), (std::vector<Tok>{Tok::IntLit, Tok::Ellipsis}));
}

TEST(Lexer, KeywordsAndIdentifiers) {
  auto l = lexText("layer param buffer forward where true false");
  EXPECT_EQ(kinds(l->toks),
            (std::vector<Tok>{Tok::KwLayer, Tok::KwParam, Tok::KwBuffer, Tok::KwForward, Tok::KwWhere,
                              Tok::KwTrue, Tok::KwFalse, Tok::Newline, Tok::Eof}));
  EXPECT_EQ(l->toks[3].text, "forward");

  // Keywords are whole, case-sensitive words; types and functions are plain identifiers.
  auto m = lexText("layers Param forward_ _where x1 True int float bool sum softmax _ a_b2");
  std::vector<Tok> k = kinds(m->toks);
  ASSERT_EQ(k.size(), 15u);
  for (size_t i = 0; i < 13; ++i) EXPECT_EQ(k[i], Tok::Ident) << m->toks[i].text;
  EXPECT_EQ(texts(m->toks)[0], "layers");
  EXPECT_EQ(texts(m->toks)[3], "_where");
  EXPECT_EQ(texts(m->toks)[12], "a_b2");
  EXPECT_FALSE(m->diags.hasErrors());
}

TEST(Lexer, IntegerAndFloatLiterals) {
  auto l = lexText("3 .5 1. 1e-5 2.5E+3 0 1234567 1e5 0.25 7E0");
  EXPECT_FALSE(l->diags.hasErrors()) << l->diags.render();
  EXPECT_EQ(kinds(l->toks), (std::vector<Tok>{Tok::IntLit, Tok::FloatLit, Tok::FloatLit, Tok::FloatLit,
                                              Tok::FloatLit, Tok::IntLit, Tok::IntLit, Tok::FloatLit,
                                              Tok::FloatLit, Tok::FloatLit, Tok::Newline, Tok::Eof}));
  EXPECT_EQ(texts(l->toks), (std::vector<std::string>{"3", ".5", "1.", "1e-5", "2.5E+3", "0", "1234567",
                                                      "1e5", "0.25", "7E0", "", ""}));
  // A number followed by an operator is two tokens.
  EXPECT_EQ(kindsOf("2*x"), (std::vector<Tok>{Tok::IntLit, Tok::Star, Tok::Ident}));
  EXPECT_EQ(kindsOf("1e-5-x"), (std::vector<Tok>{Tok::FloatLit, Tok::Minus, Tok::Ident}));
  EXPECT_EQ(kindsOf("x-1"), (std::vector<Tok>{Tok::Ident, Tok::Minus, Tok::IntLit}));
}

TEST(Lexer, MalformedNumberIsOneErrorTokenAndOneDiagnostic) {
  for (const char *bad : {"1.2.3", "1e", "1e+", "3x", "2.5e-x", "1_000", ".5.5", "1e5e5", "0x1F"}) {
    auto l = lexText(std::string("a = ") + bad + " + b");
    std::vector<Tok> k = kinds(l->toks);
    ASSERT_EQ(k, (std::vector<Tok>{Tok::Ident, Tok::Assign, Tok::Error, Tok::Plus, Tok::Ident, Tok::Newline,
                                   Tok::Eof}))
        << bad;
    EXPECT_EQ(l->toks[2].text, bad);
    EXPECT_EQ(l->toks[2].loc.offset, 4u);
    EXPECT_EQ(l->toks[2].loc.length, std::string(bad).size());
    ASSERT_EQ(l->diags.diagnostics().size(), 1u) << bad << "\n" << l->diags.render();
    const Diagnostic &d = l->diags.diagnostics()[0];
    EXPECT_EQ(d.severity, Severity::Error);
    EXPECT_EQ(d.message, std::string("malformed number '") + bad + "'");
    EXPECT_EQ(d.loc.offset, 4u);
    EXPECT_EQ(d.loc.length, std::string(bad).size());
    EXPECT_FALSE(d.hint.empty());
  }
}

TEST(Lexer, CommentsRunToEndOfLine) {
  // Brackets inside a comment do not change newline handling.
  auto l = lexText("x # comment ( [ { \ny # another\n");
  EXPECT_EQ(kinds(l->toks), (std::vector<Tok>{Tok::Ident, Tok::Newline, Tok::Ident, Tok::Newline, Tok::Eof}));
  EXPECT_EQ(l->toks[2].text, "y");
  // A comment at the very end of a file without a newline.
  EXPECT_EQ(kinds(lexText("x # c")->toks), (std::vector<Tok>{Tok::Ident, Tok::Newline, Tok::Eof}));
  // A file of comments and blank lines is empty.
  EXPECT_EQ(kinds(lexText("# only\n\n   # comments\n")->toks), (std::vector<Tok>{Tok::Eof}));
  // '#' inside an expression starts a comment too.
  EXPECT_EQ(kindsOf("a + #b\n"), (std::vector<Tok>{Tok::Ident, Tok::Plus}));
  EXPECT_FALSE(l->diags.hasErrors());
}

TEST(Lexer, NewlinesSuppressedInsideParensAndBrackets) {
  EXPECT_EQ(kinds(lexText("f(a,\n  b)\n")->toks),
            (std::vector<Tok>{Tok::Ident, Tok::LParen, Tok::Ident, Tok::Comma, Tok::Ident, Tok::RParen,
                              Tok::Newline, Tok::Eof}));
  EXPECT_EQ(kinds(lexText("X[\n1\n,\n2]\n")->toks),
            (std::vector<Tok>{Tok::Ident, Tok::LBracket, Tok::IntLit, Tok::Comma, Tok::IntLit, Tok::RBracket,
                              Tok::Newline, Tok::Eof}));
  // Nested: only the outermost close ends suppression.
  EXPECT_EQ(kinds(lexText("f(X[\n1], (\n2))\ny")->toks),
            (std::vector<Tok>{Tok::Ident, Tok::LParen, Tok::Ident, Tok::LBracket, Tok::IntLit, Tok::RBracket,
                              Tok::Comma, Tok::LParen, Tok::IntLit, Tok::RParen, Tok::RParen, Tok::Newline,
                              Tok::Ident, Tok::Newline, Tok::Eof}));
}

TEST(Lexer, NewlinesKeptInsideBracesAndCollapsed) {
  EXPECT_EQ(kinds(lexText("{\n}\n")->toks),
            (std::vector<Tok>{Tok::LBrace, Tok::Newline, Tok::RBrace, Tok::Newline, Tok::Eof}));
  // Parens inside braces: suppressed only inside the parens.
  EXPECT_EQ(kinds(lexText("{ f(\n) \n }")->toks),
            (std::vector<Tok>{Tok::LBrace, Tok::Ident, Tok::LParen, Tok::RParen, Tok::Newline, Tok::RBrace,
                              Tok::Newline, Tok::Eof}));
  // Blank lines, comment lines and CRLF collapse into one Newline; leading ones vanish.
  auto l = lexText("\n\n a\n\n  \n# c\r\n\r\nb\n\n\n");
  EXPECT_EQ(kinds(l->toks), (std::vector<Tok>{Tok::Ident, Tok::Newline, Tok::Ident, Tok::Newline, Tok::Eof}));
  // A '(' left open inside braces ends at the closing '}': the lines after it still end statements.
  EXPECT_EQ(kinds(lexText("{ f(\n}\na\n")->toks),
            (std::vector<Tok>{Tok::LBrace, Tok::Ident, Tok::LParen, Tok::RBrace, Tok::Newline, Tok::Ident,
                              Tok::Newline, Tok::Eof}));
  // An unmatched ')' does not make the depth negative: the next newline still counts.
  EXPECT_EQ(kinds(lexText(")\na")->toks),
            (std::vector<Tok>{Tok::RParen, Tok::Newline, Tok::Ident, Tok::Newline, Tok::Eof}));
}

TEST(Lexer, FinalNewlineBeforeEof) {
  EXPECT_EQ(kinds(lexText("a")->toks), (std::vector<Tok>{Tok::Ident, Tok::Newline, Tok::Eof}));
  EXPECT_EQ(kinds(lexText("a\n")->toks), (std::vector<Tok>{Tok::Ident, Tok::Newline, Tok::Eof}));
  EXPECT_EQ(kinds(lexText("")->toks), (std::vector<Tok>{Tok::Eof}));
  EXPECT_EQ(kinds(lexText("   \t ")->toks), (std::vector<Tok>{Tok::Eof}));
  // Even when the file ends inside an unclosed parenthesis.
  EXPECT_EQ(kinds(lexText("f(a")->toks),
            (std::vector<Tok>{Tok::Ident, Tok::LParen, Tok::Ident, Tok::Newline, Tok::Eof}));
  // The synthesized Newline and Eof sit at the end of the text, with no length.
  auto l = lexText("ab");
  EXPECT_EQ(l->toks[1].loc.offset, 2u);
  EXPECT_EQ(l->toks[1].loc.length, 0u);
  EXPECT_EQ(l->toks[2].loc.offset, 2u);
}

TEST(Lexer, TokenLocations) {
  auto l = lexText("a\n  bc = 1.5  # x\n\tz <- X[i]\n");
  ASSERT_EQ(kinds(l->toks),
            (std::vector<Tok>{Tok::Ident, Tok::Newline, Tok::Ident, Tok::Assign, Tok::FloatLit, Tok::Newline,
                              Tok::Ident, Tok::LeftArrow, Tok::Ident, Tok::LBracket, Tok::Ident,
                              Tok::RBracket, Tok::Newline, Tok::Eof}));
  struct Where {
    size_t tok;
    int line, col;
    uint32_t length;
  };
  const Where expected[] = {
      {0, 1, 1, 1},   // a
      {1, 1, 2, 1},   // the '\n' after a
      {2, 2, 3, 2},   // bc
      {3, 2, 6, 1},   // =
      {4, 2, 8, 3},   // 1.5
      {5, 2, 16, 1},  // the '\n' after the comment
      {6, 3, 2, 1},   // z (after a tab: columns count bytes)
      {7, 3, 4, 2},   // <-
      {8, 3, 7, 1},   // X
      {9, 3, 8, 1},   // [
      {11, 3, 10, 1}, // ]
  };
  for (const Where &w : expected) {
    const Token &t = l->toks[w.tok];
    EXPECT_EQ(t.loc.line(), w.line) << "token " << w.tok << " '" << t.text << "'";
    EXPECT_EQ(t.loc.col(), w.col) << "token " << w.tok << " '" << t.text << "'";
    EXPECT_EQ(t.loc.length, w.length) << "token " << w.tok;
    EXPECT_EQ(t.loc.file, l->file.get());
  }
}

TEST(Lexer, UnexpectedCharacters) {
  auto l = lexText("a $ b @\n");
  EXPECT_EQ(kinds(l->toks),
            (std::vector<Tok>{Tok::Ident, Tok::Error, Tok::Ident, Tok::Error, Tok::Newline, Tok::Eof}));
  ASSERT_EQ(l->diags.diagnostics().size(), 2u);
  EXPECT_EQ(l->diags.errorCount(), 2);
  EXPECT_EQ(l->diags.diagnostics()[0].message, "unexpected character '$'");
  EXPECT_EQ(l->diags.diagnostics()[0].loc.col(), 3);
  EXPECT_EQ(l->diags.diagnostics()[0].loc.length, 1u);
  EXPECT_EQ(l->diags.diagnostics()[1].message, "unexpected character '@'");
  EXPECT_EQ(l->diags.diagnostics()[1].loc.col(), 7);

  // A single '&' or '|' gets a hint toward the logical operators.
  for (const char *op : {"&", "|"}) {
    auto m = lexText(std::string("a ") + op + " b");
    ASSERT_EQ(m->diags.diagnostics().size(), 1u) << op;
    EXPECT_EQ(m->diags.diagnostics()[0].message, std::string("unexpected character '") + op + "'");
    EXPECT_EQ(m->diags.diagnostics()[0].hint, "logical operators are '&&' and '||'");
    EXPECT_EQ(m->toks[1].kind, Tok::Error);
    EXPECT_EQ(m->toks[1].text, op);
  }
  // Unprintable bytes are shown escaped.
  auto c = lexText(std::string("a \x01 b"));
  ASSERT_EQ(c->diags.diagnostics().size(), 1u);
  EXPECT_EQ(c->diags.diagnostics()[0].message, "unexpected character '\\x01'");
  EXPECT_TRUE(c->diags.diagnostics()[0].hint.empty());
  // A lone '.' or '..' is not the start of a number or an ellipsis.
  auto d = lexText("a . b .. c");
  EXPECT_EQ(kinds(d->toks), (std::vector<Tok>{Tok::Ident, Tok::Error, Tok::Ident, Tok::Error, Tok::Error,
                                              Tok::Ident, Tok::Newline, Tok::Eof}));
  EXPECT_EQ(d->diags.errorCount(), 3);
}

// A diagnostic in a very long line (generated source) shows a window of it around the column, with
// the caret under the character; it printed the whole line.
TEST(Lexer, LongLineIsShownAroundTheError) {
  std::string line;
  for (int i = 0; i < 10000; ++i) line += "X[i] + ";
  const size_t at = line.size();
  line += "$ + Y[i]";
  for (int i = 0; i < 10000; ++i) line += " + Z[i]";
  auto l = lexText(line + "\n");
  ASSERT_EQ(l->diags.errorCount(), 1) << l->diags.render().substr(0, 2000);
  std::string out = l->diags.render();
  EXPECT_LT(out.size(), 600u) << out.substr(0, 2000);
  std::istringstream lines(out);
  std::string head, shown, marker;
  std::getline(lines, head);
  std::getline(lines, shown);
  std::getline(lines, marker);
  EXPECT_NE(head.find(fmt::format(":1:{}: error: unexpected character '$'", at + 1)), std::string::npos) << head;
  EXPECT_EQ(shown.substr(0, 5), "  ...");
  EXPECT_EQ(shown.substr(shown.size() - 3), "...");
  ASSERT_EQ(marker.back(), '^') << out;
  EXPECT_EQ(shown[marker.size() - 1], '$') << shown << "\n" << marker;
  // A short line is shown whole.
  auto s = lexText("a = $ + b\n");
  EXPECT_NE(s->diags.render().find("\n  a = $ + b\n      ^\n"), std::string::npos) << s->diags.render();
}

// A character outside ASCII is one character: one diagnostic and one Error token covering all
// of its UTF-8 bytes, not one "unexpected character '\xce'" per byte.
TEST(Lexer, NonAsciiCharacterIsOneError) {
  auto l = lexText("a = \xce\xb1 + b\n"); // a = α + b
  EXPECT_EQ(kinds(l->toks), (std::vector<Tok>{Tok::Ident, Tok::Assign, Tok::Error, Tok::Plus, Tok::Ident,
                                              Tok::Newline, Tok::Eof}));
  EXPECT_EQ(l->diags.errorCount(), 1) << l->diags.render();
  ASSERT_GE(l->toks.size(), 3u);
  EXPECT_EQ(l->toks[2].loc.length, 2u);
}

// A UTF-8 byte order mark at the start (some editors write one) is skipped; elsewhere it is an
// unexpected character as any other.
TEST(Lexer, ByteOrderMarkAtTheStartIsSkipped) {
  auto l = lexText("\xEF\xBB\xBF" "a = b\n");
  EXPECT_EQ(kinds(l->toks), (std::vector<Tok>{Tok::Ident, Tok::Assign, Tok::Ident, Tok::Newline, Tok::Eof}));
  EXPECT_EQ(l->diags.errorCount(), 0) << l->diags.render();
  EXPECT_EQ(l->toks[0].loc.offset, 3u);
  EXPECT_EQ(lexText("a = \xEF\xBB\xBF b\n")->diags.errorCount(), 1);
}

// Past the first 20 errors (a binary file gave 759) only their count is rendered.
TEST(Lexer, RenderingStopsAfterTwentyErrors) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "x = 1.2.3\n";
  auto l = lexText(text);
  EXPECT_EQ(l->diags.errorCount(), 30);
  std::string out = l->diags.render();
  size_t shown = 0;
  for (size_t at = out.find("error: malformed"); at != std::string::npos; at = out.find("error: malformed", at + 1)) ++shown;
  EXPECT_EQ(shown, 20u) << out;
  EXPECT_NE(out.find("test.enc:20:5: error"), std::string::npos) << out;
  EXPECT_EQ(out.find("test.enc:21:5: error"), std::string::npos) << out;
  EXPECT_NE(out.find("(the first 20 errors are shown)\n30 errors generated.\n"), std::string::npos) << out;
}

TEST(Lexer, DiagnosticRendersLineAndCaret) {
  auto l = lexText("x = 1\ny = 1.2.3\n");
  std::string out = l->diags.render();
  EXPECT_EQ(out, "test.enc:2:5: error: malformed number '1.2.3'\n"
                 "  y = 1.2.3\n"
                 "      ^~~~~\n"
                 "  hint: numbers look like 3, 0.5, .5 or 1e-5\n"
                 "1 error generated.\n");
}

TEST(Lexer, TokSpelling) {
  EXPECT_STREQ(tokSpelling(Tok::SlashSlash), "'//'");
  EXPECT_STREQ(tokSpelling(Tok::LeftArrow), "'<-'");
  EXPECT_STREQ(tokSpelling(Tok::Ellipsis), "'...'");
  EXPECT_STREQ(tokSpelling(Tok::Newline), "end of line");
  EXPECT_STREQ(tokSpelling(Tok::Eof), "end of file");
  EXPECT_STREQ(tokSpelling(Tok::KwWhere), "'where'");
}
