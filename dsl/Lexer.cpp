#include "dsl/Lexer.h"

#include <cctype>
#include <unordered_map>

namespace enc {

const char *tokSpelling(Tok t) {
  switch (t) {
  case Tok::Eof: return "end of file";
  case Tok::Newline: return "end of line";
  case Tok::Ident: return "identifier";
  case Tok::IntLit: return "integer literal";
  case Tok::FloatLit: return "number";
  case Tok::KwLayer: return "'layer'";
  case Tok::KwParam: return "'param'";
  case Tok::KwBuffer: return "'buffer'";
  case Tok::KwForward: return "'forward'";
  case Tok::KwWhere: return "'where'";
  case Tok::KwRequire: return "'require'";
  case Tok::KwTrue: return "'true'";
  case Tok::KwFalse: return "'false'";
  case Tok::LParen: return "'('";
  case Tok::RParen: return "')'";
  case Tok::LBracket: return "'['";
  case Tok::RBracket: return "']'";
  case Tok::LBrace: return "'{'";
  case Tok::RBrace: return "'}'";
  case Tok::Comma: return "','";
  case Tok::Colon: return "':'";
  case Tok::Semicolon: return "';'";
  case Tok::Assign: return "'='";
  case Tok::Plus: return "'+'";
  case Tok::Minus: return "'-'";
  case Tok::Star: return "'*'";
  case Tok::Slash: return "'/'";
  case Tok::SlashSlash: return "'//'";
  case Tok::Percent: return "'%'";
  case Tok::Caret: return "'^'";
  case Tok::Less: return "'<'";
  case Tok::LessEq: return "'<='";
  case Tok::Greater: return "'>'";
  case Tok::GreaterEq: return "'>='";
  case Tok::EqEq: return "'=='";
  case Tok::NotEq: return "'!='";
  case Tok::AndAnd: return "'&&'";
  case Tok::OrOr: return "'||'";
  case Tok::Bang: return "'!'";
  case Tok::Arrow: return "'->'";
  case Tok::LeftArrow: return "'<-'";
  case Tok::Ellipsis: return "'...'";
  case Tok::Error: return "invalid token";
  }
  return "token";
}

namespace {

class Lexer {
public:
  Lexer(const SourceFile &file, DiagnosticEngine &diags) : file_(file), src_(file.text()), diags_(diags) {}

  std::vector<Token> run() {
    if (src_.starts_with("\xEF\xBB\xBF")) pos_ = 3; // a UTF-8 byte order mark, as some editors write
    while (true) {
      skipSpaceAndComments();
      if (pos_ >= src_.size()) break;
      lexOne();
    }
    if (!out_.empty() && out_.back().kind != Tok::Newline) push(Tok::Newline, pos_, 0);
    push(Tok::Eof, pos_, 0);
    return std::move(out_);
  }

private:
  const SourceFile &file_;
  const std::string &src_;
  DiagnosticEngine &diags_;
  std::vector<Token> out_;
  uint32_t pos_ = 0;
  int nesting_ = 0; // depth of ( and [, where newlines are not statement ends
  // nesting_ at each open '{': its '}' restores it, so an unclosed '(' cannot swallow the
  // newlines of the rest of the file (an enumeration's braces inside '(' keep their depth).
  std::vector<int> braceNesting_;

  SourceLoc loc(uint32_t begin, uint32_t len) const { return SourceLoc{&file_, begin, len}; }
  char peek(uint32_t ahead = 0) const { return pos_ + ahead < src_.size() ? src_[pos_ + ahead] : '\0'; }

  void push(Tok kind, uint32_t begin, uint32_t len) {
    out_.push_back(Token{kind, loc(begin, len), src_.substr(begin, len)});
  }

  // A line ending in an operator, '=', '<-', '->', ',' or ':' goes on on the next line.
  static bool continuesLine(Tok last) {
    switch (last) {
    case Tok::Plus: case Tok::Minus: case Tok::Star: case Tok::Slash: case Tok::SlashSlash: case Tok::Percent:
    case Tok::Caret: case Tok::Less: case Tok::LessEq: case Tok::Greater: case Tok::GreaterEq: case Tok::EqEq:
    case Tok::NotEq: case Tok::AndAnd: case Tok::OrOr: case Tok::Assign: case Tok::LeftArrow: case Tok::Arrow:
    case Tok::Comma: case Tok::Colon: case Tok::KwWhere: return true;
    default: return false;
    }
  }

  void skipSpaceAndComments() {
    while (pos_ < src_.size()) {
      char c = src_[pos_];
      if (c == '#') {
        while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
      } else if (c == '\n') {
        if (nesting_ == 0 && !out_.empty() && out_.back().kind != Tok::Newline && !continuesLine(out_.back().kind))
          push(Tok::Newline, pos_, 1);
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  void lexOne() {
    uint32_t begin = pos_;
    char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') return lexIdent();
    if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && std::isdigit(static_cast<unsigned char>(peek(1)))))
      return lexNumber();
    auto two = [&](char second, Tok yes, Tok no) {
      if (peek(1) == second) {
        pos_ += 2;
        push(yes, begin, 2);
      } else {
        pos_ += 1;
        push(no, begin, 1);
      }
    };
    switch (c) {
    case '(': ++nesting_; ++pos_; return push(Tok::LParen, begin, 1);
    case '[': ++nesting_; ++pos_; return push(Tok::LBracket, begin, 1);
    case ')': if (nesting_ > 0) --nesting_; ++pos_; return push(Tok::RParen, begin, 1);
    case ']': if (nesting_ > 0) --nesting_; ++pos_; return push(Tok::RBracket, begin, 1);
    case '{': braceNesting_.push_back(nesting_); ++pos_; return push(Tok::LBrace, begin, 1);
    case '}':
      if (!braceNesting_.empty()) {
        nesting_ = braceNesting_.back();
        braceNesting_.pop_back();
      }
      ++pos_;
      return push(Tok::RBrace, begin, 1);
    case ',': ++pos_; return push(Tok::Comma, begin, 1);
    case ':': ++pos_; return push(Tok::Colon, begin, 1);
    case ';': ++pos_; return push(Tok::Semicolon, begin, 1);
    case '+': ++pos_; return push(Tok::Plus, begin, 1);
    case '*': ++pos_; return push(Tok::Star, begin, 1);
    case '/': return two('/', Tok::SlashSlash, Tok::Slash);
    case '%': ++pos_; return push(Tok::Percent, begin, 1);
    case '^': ++pos_; return push(Tok::Caret, begin, 1);
    case '-': return two('>', Tok::Arrow, Tok::Minus);
    case '=': return two('=', Tok::EqEq, Tok::Assign);
    case '>': return two('=', Tok::GreaterEq, Tok::Greater);
    case '!': return two('=', Tok::NotEq, Tok::Bang);
    case '<':
      if (peek(1) == '-') {
        pos_ += 2;
        return push(Tok::LeftArrow, begin, 2);
      }
      return two('=', Tok::LessEq, Tok::Less);
    case '&':
    case '|':
      if (peek(1) == c) {
        pos_ += 2;
        return push(c == '&' ? Tok::AndAnd : Tok::OrOr, begin, 2);
      }
      break;
    case '.':
      if (peek(1) == '.' && peek(2) == '.') {
        pos_ += 3;
        return push(Tok::Ellipsis, begin, 3);
      }
      break;
    default: break;
    }
    ++pos_;
    auto byte = static_cast<unsigned char>(c);
    std::string shown = std::isprint(byte) ? std::string(1, c) : fmt::format("\\x{:02x}", byte);
    std::string hint = c == '&' || c == '|' ? "logical operators are '&&' and '||'" : "";
    const char *what = "character";
    if (byte >= 0xc0) {
      // A run of UTF-8 characters (such as 'α') is one error, shown as written.
      int count = 1;
      for (; pos_ < src_.size() && static_cast<unsigned char>(src_[pos_]) >= 0x80; ++pos_)
        count += (static_cast<unsigned char>(src_[pos_]) & 0xc0) != 0x80;
      shown = src_.substr(begin, pos_ - begin);
      what = count == 1 ? "character" : "characters";
      hint = "names are made of ASCII letters, digits and '_'";
    }
    diags_.error(loc(begin, pos_ - begin), fmt::format("unexpected {} '{}'", what, shown), hint);
    push(Tok::Error, begin, pos_ - begin);
  }

  void lexIdent() {
    static const std::unordered_map<std::string, Tok> keywords = {
        {"layer", Tok::KwLayer}, {"param", Tok::KwParam}, {"buffer", Tok::KwBuffer}, {"forward", Tok::KwForward},
        {"where", Tok::KwWhere}, {"require", Tok::KwRequire}, {"true", Tok::KwTrue},   {"false", Tok::KwFalse}};
    uint32_t begin = pos_;
    while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    std::string text = src_.substr(begin, pos_ - begin);
    auto it = keywords.find(text);
    push(it == keywords.end() ? Tok::Ident : it->second, begin, pos_ - begin);
  }

  // Numbers: 12, 1.5, .5, 1., 1e-5, 2.5E+3. Anything glued on (1.2.3, 1e, 3x) is one bad literal.
  void lexNumber() {
    uint32_t begin = pos_;
    bool isFloat = false;
    auto digits = [&] {
      uint32_t s = pos_;
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++pos_;
      return pos_ > s;
    };
    bool bad = false;
    digits();
    if (peek() == '.' && peek(1) != '.') {
      isFloat = true;
      ++pos_;
      digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      isFloat = true;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digits()) bad = true;
    }
    // Swallow whatever is glued to the literal so the error covers all of it.
    while (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_' || (peek() == '.' && peek(1) != '.')) {
      bad = true;
      ++pos_;
    }
    uint32_t len = pos_ - begin;
    if (bad) {
      diags_.error(loc(begin, len), fmt::format("malformed number '{}'", src_.substr(begin, len)),
                   "numbers look like 3, 0.5, .5 or 1e-5");
      push(Tok::Error, begin, len);
      return;
    }
    push(isFloat ? Tok::FloatLit : Tok::IntLit, begin, len);
  }
};

} // namespace

std::vector<Token> lex(const SourceFile &file, DiagnosticEngine &diags) { return Lexer(file, diags).run(); }

} // namespace enc
