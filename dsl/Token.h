// Tokens of the .enc language.
#pragma once

#include "dsl/Source.h"

#include <string>

namespace enc {

enum class Tok {
  Eof, Newline, Ident, IntLit, FloatLit,
  // keywords
  KwLayer, KwParam, KwBuffer, KwForward, KwWhere, KwRequire, KwTrue, KwFalse,
  // punctuation
  LParen, RParen, LBracket, RBracket, LBrace, RBrace, Comma, Colon, Semicolon,
  Assign, Plus, Minus, Star, Slash, SlashSlash, Percent, Caret, Less, LessEq, Greater, GreaterEq,
  EqEq, NotEq, AndAnd, OrOr, Bang, Arrow, LeftArrow, Ellipsis,
  Error, // a malformed token; the lexer has already reported it
};

const char *tokSpelling(Tok t); // "'('", "identifier", "end of file", ...

struct Token {
  Tok kind = Tok::Eof;
  SourceLoc loc;
  std::string text;
};

} // namespace enc
